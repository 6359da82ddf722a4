# Shell helpers for the project's scripts (source it). Starts `switchboard serve` on a free
# port with a throwaway data dir; sets SB_ADDR, SB_PID, SB_TOKEN, SB_TMP; stops it on exit.
start_switchboard() {
  local bin="$1"
  SB_TMP=$(mktemp -d)
  SB_TOKEN="tok-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  trap 'kill "$SB_PID" 2>/dev/null || true; rm -rf "$SB_TMP"' EXIT
  serve_on "$bin" "$SB_TMP/data" "$SB_TMP"
}

# `serve_on BIN DATA_DIR LOG_DIR`: starts `BIN serve` on a free port over DATA_DIR with the
# token SB_TOKEN, logs in LOG_DIR/out and LOG_DIR/err; sets SB_PID, and SB_ADDR once it
# listens (the caller stops it).
serve_on() {
  local bin="$1" data="$2" logs="$3"
  SWITCHBOARD_AUTH_TOKEN="$SB_TOKEN" "$bin" serve --port 0 --data-dir "$data" --flows-dir flows \
    >"$logs/out" 2>"$logs/err" &
  SB_PID=$!
  SB_ADDR=""
  for _ in $(seq 1 600); do
    SB_ADDR=$(grep -o 'listening on http://[0-9.:]*' "$logs/out" | cut -d' ' -f3 || true)
    [ -n "$SB_ADDR" ] && return 0
    kill -0 "$SB_PID" 2>/dev/null || break
    sleep 0.01
  done
  echo "the switchboard server did not start:" >&2
  cat "$logs/err" >&2
  return 1
}

# The Python interpreter for the test virtualenv: 3.13 or newer when the machine has one.
# Python 3.11.7 (the machine's default) has a CPython bug (gh-106905) that makes
# hypothesis, under schemathesis, fail now and then with "SystemError: AST constructor
# recursion depth mismatch" while it describes a recursive JSON strategy.
pick_python() {
  local c
  for c in python3.14 python3.13 \
    $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[3-9]*/bin/python3 2>/dev/null | sort -rV); do
    if "$c" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null; then
      echo "$c"
      return 0
    fi
  done
  echo python3
}

# The Python virtualenv the tests use (schemathesis for API fuzzing, the official `openai`
# package for the /v1 surface); installs what is missing. Sets SWITCHBOARD_VENV.
ensure_venv() {
  local base
  base=$(pick_python)
  if [ -z "${SWITCHBOARD_VENV:-}" ]; then
    local ver
    ver=$("$base" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    SWITCHBOARD_VENV="$HOME/.cache/switchboard/venv-$ver"
  fi
  export SWITCHBOARD_VENV
  local py="$SWITCHBOARD_VENV/bin/python"
  [ -x "$py" ] || "$base" -m venv "$SWITCHBOARD_VENV"
  if ! "$py" -c 'import schemathesis, openai' 2>/dev/null; then
    echo "installing schemathesis and openai into $SWITCHBOARD_VENV"
    "$SWITCHBOARD_VENV/bin/pip" install -q "schemathesis>=4,<5" "openai>=1,<3"
  fi
}

# The MCP test servers and client (gateway/tests/python): the official `mcp` SDK, its 1.x
# line (FastMCP, initialize handshake) and its 2.x line (MCPServer, stateless revisions),
# each in a virtualenv of its own. Sets SWITCHBOARD_MCP1_PYTHON and SWITCHBOARD_MCP2_PYTHON.
ensure_mcp_venvs() {
  local base line spec dir
  base=$(pick_python)
  for line in 1 2; do
    if [ "$line" = 1 ]; then spec="mcp>=1.30,<2"; else spec="mcp>=2.3,<3"; fi
    dir="$HOME/.cache/switchboard/venv-mcp$line"
    [ -x "$dir/bin/python" ] || "$base" -m venv "$dir"
    if ! "$dir/bin/python" -c "import mcp, importlib.metadata as m, sys; sys.exit(m.version('mcp').split('.')[0] != '$line')" 2>/dev/null; then
      echo "installing $spec into $dir"
      "$dir/bin/pip" install -q "$spec"
    fi
    export "SWITCHBOARD_MCP${line}_PYTHON=$dir/bin/python"
  done
}
