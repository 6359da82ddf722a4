"""An MCP test server, written with the official Python SDK (`mcp` on PyPI), that runs on
both of its lines: 1.x (`FastMCP`, initialize handshake) and 2.x (`MCPServer`, stateless
protocol revisions).

    python calc_server.py stdio
    python calc_server.py http PORT

Tools: `add` (counts each call, with the idempotency key the client sent in `_meta`, in
the file named by CALC_COUNT_FILE, and writes the `_meta.traceparent` it got to
CALC_TRACE_FILE), `slow` (never answers), `crash` (the process exits
mid-call), `fail` (the tool reports an error), `unlock` (adds a tool `secret` and sends
`notifications/tools/list_changed`).
"""

import os
import sys
import time

try:
    from mcp.server.mcpserver import Context, MCPServer as Server  # mcp 2.x

    LINE = 2
except ImportError:
    from mcp.server.fastmcp import Context, FastMCP as Server  # mcp 1.x

    LINE = 1

mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
if LINE == 1 and mode == "http":
    mcp = Server("calc", host="127.0.0.1", port=port)
else:
    mcp = Server("calc")


def meta_value(ctx, name: str) -> str:
    try:
        meta = ctx.request_context.meta
    except Exception:
        return "-"
    if meta is None:
        return "-"
    if isinstance(meta, dict):
        return str(meta.get(name, "-"))
    value = getattr(meta, name, None)
    extra = getattr(meta, "model_extra", None) or {}
    return str(value or extra.get(name, "-"))


@mcp.tool()
def add(a: int, b: int, ctx: Context) -> int:
    """Adds two whole numbers."""
    path = os.environ.get("CALC_COUNT_FILE")
    if path:
        with open(path, "a") as f:
            f.write(f"add {meta_value(ctx, 'idempotency_key')}\n")
    path = os.environ.get("CALC_TRACE_FILE")
    if path:
        with open(path, "a") as f:
            f.write(f"{meta_value(ctx, 'traceparent')}\n")
    return a + b


@mcp.tool()
def slow() -> str:
    """Never answers (for timeouts)."""
    time.sleep(3600)
    return "late"


@mcp.tool()
def crash() -> str:
    """Ends the server's process in the middle of the call."""
    os._exit(3)


@mcp.tool()
def fail() -> str:
    """Reports an error."""
    raise ValueError("the calculator is out of order")


@mcp.tool()
async def unlock(ctx: Context) -> str:
    """Adds the tool `secret` and tells the client that the tool list changed."""

    def secret() -> str:
        """Exists only after `unlock`."""
        return "42"

    mcp.add_tool(secret)
    await ctx.session.send_tool_list_changed()
    return "unlocked"


if __name__ == "__main__":
    if mode == "stdio":
        mcp.run()
    elif LINE == 1:
        mcp.run(transport="streamable-http")
    else:
        mcp.run("streamable-http", host="127.0.0.1", port=port)
