//! MCP: the servers `llm` steps call tools on (`hub`, `conn`).
//!
//! The hub owns the configured servers: each starts on first use, is supervised (restarted
//! with back-off when it exits), and its tool list is cached until the server says it
//! changed. A call has a timeout and carries the effect's idempotency key in `_meta`.
//! Nothing here decides whether a call may run (the engine's approvals do) or records
//! anything (the runner does).

mod catalog;
mod conn;
mod hub;

use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) use catalog::{Catalog, list_named};
pub(crate) use hub::{Hub, Outcome};

/// The configured servers (`[mcp.servers.NAME]`).
#[derive(Debug, Clone, Default)]
pub(crate) struct McpConfig {
    pub(crate) servers: BTreeMap<String, ServerConfig>,
}

impl McpConfig {
    /// The configured servers' names.
    pub(crate) fn names(&self) -> Vec<String> {
        self.servers.keys().cloned().collect()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    pub(crate) transport: Transport,
    /// Longest a tool call may take.
    pub(crate) timeout: Duration,
}

#[derive(Debug, Clone)]
pub(crate) enum Transport {
    /// A child process speaking MCP on stdin/stdout. It gets only `PATH`, `HOME`, `LANG`,
    /// `LC_ALL` and `TMPDIR` of the gateway's environment, plus `env` (no token or key the
    /// gateway holds in its environment). It runs as the gateway's user: run servers you
    /// trust, or under a user of their own (`command = ["sudo", "-u", "mcp", ...]`).
    Stdio {
        command: Vec<String>,
        env: Vec<(String, String)>,
    },
    /// Streamable HTTP.
    Http {
        url: String,
        headers: Vec<(String, String)>,
    },
}

/// A tool of a server, as the hub lists it.
#[derive(Debug, Clone)]
pub(crate) struct ToolInfo {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) input_schema: serde_json::Value,
}

/// Why a tool could not be listed or called. Each names the server and says what to check.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum McpError {
    #[error("no MCP server `{0}` is configured")]
    Unknown(String),
    #[error("MCP server `{server}` cannot start: {why}")]
    Start { server: String, why: String },
    #[error("MCP server `{server}` did not answer `{tool}` within {secs}s (its timeout)")]
    Timeout {
        server: String,
        tool: String,
        secs: u64,
    },
    #[error("MCP server `{server}` went away during the call ({why}); it is being restarted")]
    Closed { server: String, why: String },
    #[error("MCP server `{server}` refused the call: {why}")]
    Refused { server: String, why: String },
}
