//! One connection to an MCP server: spawning a stdio server (with a minimal environment) or
//! opening streamable HTTP, then starting the session the server speaks: `server/discover`
//! (stateless protocol revisions) or the `initialize` handshake of earlier ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient};

use super::{ToolInfo, Transport};

/// Longest a server may take to start and answer its first request.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variables a stdio server inherits from the gateway (and nothing else: the
/// gateway's tokens and keys stay out of tools' reach).
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"];

/// The cached tool list of a server, dropped when the server says its tools changed.
pub(super) type ToolCache = Arc<Mutex<Option<Arc<Vec<ToolInfo>>>>>;

/// Receives the server's notifications.
pub(super) struct Handler {
    pub(super) server: String,
    pub(super) tools: ToolCache,
}

impl ClientHandler for Handler {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::info!(server = %self.server, "MCP server: tool list changed");
        *self.tools.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.client_info = Implementation::new("switchboard", env!("CARGO_PKG_VERSION"));
        info
    }
}

pub(super) type Session = RunningService<RoleClient, Handler>;

/// Opens a session with the server (within [`START_TIMEOUT`]). Over HTTP, a server that
/// does not take `server/discover` (servers of the initialize-handshake era answer it
/// with an error the stateless client cannot place) is asked again with `initialize`.
pub(super) async fn open(
    transport: &Transport,
    handler: impl Fn() -> Handler,
) -> Result<Session, String> {
    let auto = ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::LATEST],
        legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
    };
    match transport {
        Transport::Stdio { command, env } => {
            let child = child(command, env)?;
            bounded(START_TIMEOUT, handler().serve_with_lifecycle(child, auto)).await
        }
        Transport::Http { url, headers } => {
            let first = bounded(
                DISCOVER_TIMEOUT,
                handler().serve_with_lifecycle(http(url, headers)?, auto),
            )
            .await;
            match first {
                Ok(s) => Ok(s),
                Err(why) => {
                    tracing::debug!(%url, error = %why, "MCP: server/discover failed; trying initialize");
                    let legacy = ClientLifecycleMode::Initialize;
                    bounded(
                        START_TIMEOUT,
                        handler().serve_with_lifecycle(http(url, headers)?, legacy),
                    )
                    .await
                }
            }
        }
    }
}

/// Longest the stateless `server/discover` may take before `initialize` is tried.
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(5);

async fn bounded<E: std::fmt::Display>(
    limit: Duration,
    start: impl Future<Output = Result<Session, E>>,
) -> Result<Session, String> {
    match tokio::time::timeout(limit, start).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {}s of starting", limit.as_secs())),
    }
}

fn child(
    command: &[String],
    env: &[(String, String)],
) -> Result<rmcp::transport::TokioChildProcess, String> {
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..]).env_clear().kill_on_drop(true);
    for k in INHERITED_ENV {
        if let Ok(v) = std::env::var(k) {
            cmd.env(k, v);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    rmcp::transport::TokioChildProcess::new(cmd)
        .map_err(|e| format!("cannot run `{}`: {e}", command[0]))
}

fn http(
    url: &str,
    headers: &[(String, String)],
) -> Result<impl rmcp::transport::Transport<RoleClient> + 'static, String> {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let mut map = HashMap::new();
    for (k, v) in headers {
        let name = http_name(k)?;
        let value = v
            .parse()
            .map_err(|_| format!("header `{k}` has a value HTTP cannot carry"))?;
        map.insert(name, value);
    }
    // The HTTP client is built with rustls and no crypto provider of its own: it uses the
    // process's (ring, as everywhere in the gateway). Installing it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(map);
    Ok(StreamableHttpClientTransport::from_config(cfg))
}

fn http_name(k: &str) -> Result<axum::http::HeaderName, String> {
    k.parse()
        .map_err(|_| format!("`{k}` is not an HTTP header name"))
}
