//! The configured MCP servers: started on first use, supervised (a server that exits is
//! started again after a back-off that grows with each quick failure), tool lists cached,
//! calls bounded by the server's timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, RequestMetaObject};
use rmcp::service::{Peer, ServiceError};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::conn::{self, Handler, START_TIMEOUT, ToolCache};
use super::{McpConfig, McpError, ServerConfig, ToolInfo};

/// The hub of all configured servers (cheap to clone).
#[derive(Clone, Default)]
pub(crate) struct Hub {
    servers: Arc<HashMap<String, Arc<Server>>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.servers.keys()).finish()
    }
}

/// What a tool call gave: its output, or the error the tool itself reported.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    Output(Value),
    ToolError(String),
}

#[derive(Clone)]
enum State {
    Idle,
    Starting,
    Up(Peer<RoleClient>),
    Failed(String),
}

struct Server {
    name: String,
    cfg: ServerConfig,
    state: watch::Sender<State>,
    supervised: AtomicBool,
    tools: ToolCache,
}

impl Hub {
    pub(crate) fn new(cfg: &McpConfig) -> Self {
        let servers = cfg
            .servers
            .iter()
            .map(|(name, c)| {
                let s = Server {
                    name: name.clone(),
                    cfg: c.clone(),
                    state: watch::channel(State::Idle).0,
                    supervised: AtomicBool::new(false),
                    tools: Arc::new(Mutex::new(None)),
                };
                (name.clone(), Arc::new(s))
            })
            .collect();
        Self {
            servers: Arc::new(servers),
        }
    }

    pub(crate) fn has(&self, server: &str) -> bool {
        self.servers.contains_key(server)
    }

    /// The configured servers' names, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.servers.keys().cloned().collect();
        n.sort();
        n
    }

    /// The server's tools (listed once, then cached until it says they changed).
    pub(crate) async fn tools(&self, server: &str) -> Result<Arc<Vec<ToolInfo>>, McpError> {
        let s = self.server(server)?;
        if let Some(t) = s.cached() {
            return Ok(t);
        }
        let peer = s.peer().await?;
        let listed = tokio::time::timeout(s.cfg.timeout, peer.list_all_tools())
            .await
            .map_err(|_| McpError::Timeout {
                server: server.to_owned(),
                tool: "tools/list".into(),
                secs: s.cfg.timeout.as_secs(),
            })?
            .map_err(|e| s.service_error(e))?;
        let tools: Arc<Vec<ToolInfo>> = Arc::new(
            listed
                .into_iter()
                .map(|t| ToolInfo {
                    name: t.name.to_string(),
                    description: t.description.as_deref().unwrap_or_default().to_owned(),
                    input_schema: Value::Object((*t.input_schema).clone()),
                })
                .collect(),
        );
        *s.tools.lock().unwrap_or_else(|p| p.into_inner()) = Some(tools.clone());
        Ok(tools)
    }

    /// Calls `tool` with `arguments`; `key` travels in `_meta.idempotency_key`, so a server
    /// can tell a call run again after a restart from a new one, and `traceparent` (when
    /// traces are on) in `_meta.traceparent`.
    pub(crate) async fn call(
        &self,
        server: &str,
        tool: &str,
        arguments: Map<String, Value>,
        key: &str,
        traceparent: Option<&str>,
    ) -> Result<Outcome, McpError> {
        let s = self.server(server)?;
        let peer = s.peer().await?;
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = Some(arguments);
        let mut meta = RequestMetaObject::default();
        meta.0.0.insert("idempotency_key".into(), json!(key));
        if let Some(tp) = traceparent {
            meta.0.0.insert("traceparent".into(), json!(tp));
        }
        params.meta = Some(meta);
        let result = tokio::time::timeout(s.cfg.timeout, peer.call_tool(params))
            .await
            .map_err(|_| McpError::Timeout {
                server: server.to_owned(),
                tool: tool.to_owned(),
                secs: s.cfg.timeout.as_secs(),
            })?
            .map_err(|e| s.service_error(e))?;
        let text = || {
            result
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
                .collect::<Vec<_>>()
                .join("\n")
        };
        if result.is_error == Some(true) {
            return Ok(Outcome::ToolError(text()));
        }
        // The text blocks are what the tool wrote for a model to read; structured content
        // alone (no text) is passed on as JSON.
        let text = text();
        Ok(Outcome::Output(match &result.structured_content {
            Some(v) if text.is_empty() => v.clone(),
            _ => Value::String(text),
        }))
    }

    /// The cached tool names of a server, without starting it.
    pub(crate) fn cached_names(&self, server: &str) -> Option<Vec<String>> {
        let s = self.servers.get(server)?;
        Some(s.cached()?.iter().map(|t| t.name.clone()).collect())
    }

    fn server(&self, server: &str) -> Result<&Arc<Server>, McpError> {
        self.servers
            .get(server)
            .ok_or_else(|| McpError::Unknown(server.to_owned()))
    }
}

impl Server {
    fn cached(&self) -> Option<Arc<Vec<ToolInfo>>> {
        self.tools.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn service_error(&self, e: ServiceError) -> McpError {
        let server = self.name.clone();
        match e {
            ServiceError::McpError(e) => McpError::Refused {
                server,
                why: e.message.to_string(),
            },
            other => McpError::Closed {
                server,
                why: other.to_string(),
            },
        }
    }

    /// A live session: starts the supervisor on first use, then waits (at most the start
    /// timeout) for the server to be up; a server that failed to start fails the call.
    async fn peer(self: &Arc<Self>) -> Result<Peer<RoleClient>, McpError> {
        if !self.supervised.swap(true, Ordering::SeqCst) {
            self.state.send_replace(State::Starting);
            let me = self.clone();
            tokio::spawn(async move {
                // A supervisor that panicked (a bug) must not leave the server "starting"
                // forever: the next use starts a new one.
                if let Err(e) = tokio::spawn(supervise(me.clone())).await {
                    tracing::error!(server = %me.name, error = %e, "MCP supervisor stopped");
                    me.state
                        .send_replace(State::Failed("its supervisor stopped".into()));
                    me.supervised.store(false, Ordering::SeqCst);
                }
            });
        }
        let mut rx = self.state.subscribe();
        let wait = async {
            loop {
                match &*rx.borrow_and_update() {
                    State::Up(p) if !p.is_transport_closed() => return Ok(p.clone()),
                    State::Failed(why) => {
                        return Err(McpError::Start {
                            server: self.name.clone(),
                            why: why.clone(),
                        });
                    }
                    _ => {}
                }
                if rx.changed().await.is_err() {
                    return Err(self.start_error("the supervisor stopped".into()));
                }
            }
        };
        tokio::time::timeout(START_TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| Err(self.start_error("it is still starting".into())))
    }

    fn start_error(&self, why: String) -> McpError {
        McpError::Start {
            server: self.name.clone(),
            why,
        }
    }
}

/// Keeps a server running: start, wait for it to exit, start again after a back-off
/// (0.5 s doubling to 30 s; reset once a session lived a minute).
async fn supervise(s: Arc<Server>) {
    let mut failures = 0u32;
    loop {
        s.state.send_replace(State::Starting);
        let handler = || Handler {
            server: s.name.clone(),
            tools: s.tools.clone(),
        };
        match conn::open(&s.cfg.transport, handler).await {
            Ok(session) => {
                tracing::info!(server = %s.name, "MCP server started");
                let since = Instant::now();
                s.state.send_replace(State::Up(session.peer().clone()));
                let why = session.waiting().await;
                *s.tools.lock().unwrap_or_else(|p| p.into_inner()) = None;
                if since.elapsed() > Duration::from_secs(60) {
                    failures = 0;
                }
                tracing::warn!(server = %s.name, reason = ?why, "MCP server exited; restarting it");
                s.state.send_replace(State::Starting);
            }
            Err(why) => {
                tracing::warn!(server = %s.name, error = %why, "MCP server cannot start");
                s.state.send_replace(State::Failed(why));
            }
        }
        failures = failures.saturating_add(1);
        let backoff =
            Duration::from_millis(500u64 << (failures - 1).min(6)).min(Duration::from_secs(30));
        tokio::time::sleep(backoff).await;
    }
}
