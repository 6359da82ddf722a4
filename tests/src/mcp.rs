//! Real MCP servers for tests: `gateway/tests/python/calc_server.py`, written with the
//! official Python SDK, on either of its lines (1.x: initialize handshake; 2.x: stateless
//! protocol revisions), over stdio (the gateway starts it) or streamable HTTP (started
//! here). `scripts/test` installs both lines in their own virtualenvs
//! (`SWITCHBOARD_MCP1_PYTHON`, `SWITCHBOARD_MCP2_PYTHON`).

use std::path::{Path, PathBuf};

use tokio::process::{Child, Command};

/// The Python `mcp` SDK's major versions tests run against.
pub const LINES: [u8; 2] = [1, 2];

/// The interpreter of the virtualenv holding `mcp` `line`.x.
pub fn python(line: u8) -> PathBuf {
    let var = format!("SWITCHBOARD_MCP{line}_PYTHON");
    if let Ok(p) = std::env::var(&var) {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let p = Path::new(&home).join(format!(".cache/switchboard/venv-mcp{line}/bin/python"));
    assert!(
        p.exists(),
        "no Python with mcp {line}.x: run scripts/test (it installs it) or set {var}"
    );
    p
}

/// The calculator test server's script.
pub fn calc_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/tests/python/calc_server.py")
}

/// A `[mcp.servers.NAME]` table for a stdio calc server on `line`, counting calls in
/// `count_file`, with a call timeout.
pub fn stdio_server(name: &str, line: u8, count_file: &Path, timeout: &str) -> String {
    format!(
        "[mcp.servers.{name}]\ncommand = [{:?}, {:?}, \"stdio\"]\nenv = {{ CALC_COUNT_FILE = {:?} }}\ntimeout = {timeout:?}\n",
        python(line).display().to_string(),
        calc_script().display().to_string(),
        count_file.display().to_string(),
    )
}

/// A `[mcp.servers.NAME]` table for a streamable HTTP server at `url`.
pub fn http_server(name: &str, url: &str) -> String {
    format!("[mcp.servers.{name}]\nurl = {url:?}\ntimeout = \"20s\"\n")
}

/// The calls of `add` a counting server saw, by idempotency key.
pub fn counted(count_file: &Path) -> Vec<String> {
    std::fs::read_to_string(count_file)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim_start_matches("add ").to_owned())
        .collect()
}

/// A calc server speaking streamable HTTP on loopback (killed on drop).
pub struct HttpCalc {
    _child: Child,
    /// `http://127.0.0.1:PORT/mcp`.
    pub url: String,
}

impl HttpCalc {
    pub async fn start(line: u8, count_file: &Path) -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let log = std::env::var("TEST_LOG").is_ok();
        let child = Command::new(python(line))
            .arg(calc_script())
            .arg("http")
            .arg(port.to_string())
            .env("CALC_COUNT_FILE", count_file)
            .stdout(std::process::Stdio::null())
            .stderr(if log {
                std::process::Stdio::inherit()
            } else {
                std::process::Stdio::null()
            })
            .kill_on_drop(true)
            .spawn()
            .expect("start the Python MCP server");
        let addr = format!("127.0.0.1:{port}");
        crate::wait::eventually(30, "the MCP server to listen", || async {
            tokio::net::TcpStream::connect(&addr).await.ok().map(|_| ())
        })
        .await;
        Self {
            _child: child,
            url: format!("http://{addr}/mcp"),
        }
    }
}

/// Writes `tables` as the gateway's config file in `dir`; the path for `SWITCHBOARD_CONFIG`.
pub fn config_file(dir: &Path, tables: &[String]) -> String {
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, tables.join("\n")).expect("write the config file");
    path.display().to_string()
}
