//! `/mcp`: Switchboard as an MCP server (streamable HTTP, served by rmcp, stateless).
//!
//! Every current flow is a tool: its name is the bundle id, its description the flow's,
//! its input schema the flow's `input_schema`. Calling one starts a run (the `run` scope)
//! and answers when the run completes, fails, or waits for a person (then with the run id,
//! the prompt and a link to answer it). `list_waiting` and `answer` (the `command` scope)
//! let an MCP client see and answer what runs ask, except approvals of tool calls: a model
//! must not approve its own calls, so those are left to people on a channel. Requests pass
//! the same gates as the API (bearer token, rate limit, origin); this module reads the
//! caller from the request and never trusts anything an MCP message says about who sends
//! it, and it shows or answers only runs whose session the caller may reach.

use std::sync::Arc;
use std::time::Duration;

use protocol::{CommandRequest, RunStatus, RunSummary, WaitReason};
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::auth::reach;
use crate::auth::{Principal, Scope};
use crate::bus::BusEvent;

/// The tool that lists runs waiting for a person.
const LIST_WAITING: &str = "list_waiting";
/// The tool that answers a waiting run.
const ANSWER: &str = "answer";

/// The `/mcp` service, for `Router::nest_service` behind the API's gates.
pub(crate) fn service(
    app: AppState,
) -> rmcp::transport::StreamableHttpService<
    Tools,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    use rmcp::transport::StreamableHttpServerConfig;
    // Stateless: each POST stands alone, with the caller its own token names (no session
    // can carry one caller's rights into another's request). Host checks are the API's
    // gates' job (a bearer token is needed; a rebinding page has none).
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .disable_allowed_hosts()
        .with_max_request_body_bytes(app.gate.body_limit);
    rmcp::transport::StreamableHttpService::new(
        move || Ok(Tools { app: app.clone() }),
        Arc::default(),
        config,
    )
}

#[derive(Clone)]
pub(crate) struct Tools {
    app: AppState,
}

/// The caller the gates admitted (`auth::require` put it in the request).
fn caller(cx: &RequestContext<RoleServer>) -> Result<(Principal, String), ErrorData> {
    let parts = cx
        .extensions
        .get::<axum::http::request::Parts>()
        .ok_or_else(|| ErrorData::internal_error("no HTTP request in the MCP context", None))?;
    let who = parts
        .extensions
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| ErrorData::invalid_request("no credentials", None))?;
    let host = parts
        .headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    Ok((who, host))
}

fn refused(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

fn object(v: &Value) -> Arc<JsonObject> {
    match v {
        Value::Object(m) => Arc::new(m.clone()),
        _ => Arc::new(JsonObject::new()),
    }
}

impl ServerHandler for Tools {
    fn get_info(&self) -> InitializeResult {
        let mut info = InitializeResult::new(ServerCapabilities::builder().enable_tools().build());
        info.server_info = Implementation::new("switchboard", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "Each tool runs a Switchboard workflow. A run that needs a person's answer returns its run id, prompt and a link; answer with the `answer` tool or on any channel.".into(),
        );
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let (who, _) = caller(&cx)?;
        let mut tools = Vec::new();
        if who.allows(Scope::Run) {
            for v in self.app.registry.list() {
                let f = &v.flow;
                if [LIST_WAITING, ANSWER].contains(&f.bundle_id.as_str()) {
                    continue;
                }
                let (about, schema) = f.as_tool();
                tools.push(Tool::new(f.bundle_id.clone(), about, object(&schema)));
            }
        }
        if who.allows(Scope::Command) && who.allows(Scope::Read) {
            tools.push(Tool::new(
                LIST_WAITING,
                "Lists the runs waiting for a person's answer, with their prompts and choices.",
                object(&json!({"type": "object", "properties": {}})),
            ));
            tools.push(Tool::new(
                ANSWER,
                "Answers a waiting run (its prompt's choice, or free text where it allows it).",
                object(&json!({"type": "object", "required": ["run_id", "response"], "properties": {
                    "run_id": {"type": "string"},
                    "response": {"description": "the answer: a choice, its number, or text"},
                    "wait_key": {"type": "string", "description": "the wait answered (default: the run's current one)"}
                }})),
            ));
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (who, host) = caller(&cx)?;
        let args = Value::Object(request.arguments.unwrap_or_default());
        let result = match request.name.as_ref() {
            LIST_WAITING | ANSWER if !(who.allows(Scope::Command) && who.allows(Scope::Read)) => {
                refused("this token lacks the `read` and `command` scopes")
            }
            LIST_WAITING => self.list_waiting(&who, &host).await,
            ANSWER => self.answer(&who, &args).await,
            _ if !who.allows(Scope::Run) => refused("this token lacks the `run` scope"),
            flow => self.run_flow(&who, &host, flow, args).await,
        };
        Ok(CallToolResponse::Complete(result))
    }
}

impl Tools {
    fn link(&self, host: &str, run_id: &str) -> String {
        let base = self
            .app
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{host}"));
        format!("{}/app/runs/{run_id}", base.trim_end_matches('/'))
    }

    /// Starts `flow` with `input` and waits (up to the OpenAI surface's timeout) until the
    /// run stops: its output, its error, or what it waits for.
    async fn run_flow(
        &self,
        who: &Principal,
        host: &str,
        flow: &str,
        input: Value,
    ) -> CallToolResult {
        let app = &self.app;
        let run = match super::runs::new_run(app, who, flow.to_owned(), input, None, None) {
            Ok(r) => r,
            Err(e) => return refused(public_message(e)),
        };
        let mut events = app.store.bus().subscribe();
        let summary = match app.start_run(run).await {
            Ok(s) => s,
            Err(e) => return refused(public_message(e.into())),
        };
        let id = summary.run_id.clone();
        let deadline = tokio::time::Instant::now() + app.openai_timeout;
        loop {
            let s = match app.store.run(&id).await {
                Ok(s) => s,
                Err(e) => return refused(public_message(e.into())),
            };
            if s.status.is_terminal() {
                return self.outcome(host, &s);
            }
            if let Some(asking) = self.asking(&s).await {
                return self.outcome(host, &asking);
            }
            let next = async {
                loop {
                    match events.recv().await {
                        Ok(BusEvent::Record(r)) if r.run_id == id => return,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                        Err(_) => std::future::pending::<()>().await,
                    }
                }
            };
            let wait = Duration::from_millis(500).min(deadline - tokio::time::Instant::now());
            if tokio::time::Instant::now() >= deadline {
                let link = self.link(host, &id);
                let mut r = CallToolResult::structured(
                    json!({"run_id": id, "status": "running", "url": link}),
                );
                r.content = vec![ContentBlock::text(format!(
                    "Run {id} is still running; follow it at {link}."
                ))];
                return r;
            }
            let _ = tokio::time::timeout(wait, next).await;
        }
    }

    /// The run (`s`, or a child it waits on, to a depth of 8) that waits for a person.
    async fn asking(&self, s: &RunSummary) -> Option<RunSummary> {
        let mut cur = s.clone();
        for _ in 0..8 {
            let w = cur
                .waiting
                .as_ref()
                .filter(|_| cur.status == RunStatus::Waiting)?;
            match (w.reason, w.child_run_id.clone()) {
                (WaitReason::User, _) => return Some(cur),
                (WaitReason::Subworkflow, Some(child)) => {
                    cur = self.app.store.run(&child).await.ok()?
                }
                _ => return None,
            }
        }
        None
    }

    fn outcome(&self, host: &str, s: &RunSummary) -> CallToolResult {
        let id = &s.run_id;
        match s.status {
            RunStatus::Completed => {
                let out = s.output.clone().unwrap_or(Value::Null);
                let text = match &out {
                    Value::String(t) => t.clone(),
                    other => other.to_string(),
                };
                let mut r = CallToolResult::structured(
                    json!({"run_id": id, "status": "completed", "output": out}),
                );
                r.content = vec![ContentBlock::text(text)];
                r
            }
            RunStatus::Waiting => {
                let w = s.waiting.clone();
                let prompt = w
                    .as_ref()
                    .and_then(|w| w.prompt.clone())
                    .unwrap_or_default();
                let choices = w.as_ref().map(|w| w.choices.clone()).unwrap_or_default();
                let key = w.as_ref().map(|w| w.wait_key.clone()).unwrap_or_default();
                let link = self.link(host, id);
                let text = format!(
                    "Run {id} is waiting for a person: {prompt}{} Answer it at {link}, on any channel, or with the `answer` tool (run_id {id}).",
                    if choices.is_empty() {
                        String::new()
                    } else {
                        format!(" (choices: {})", choices.join(", "))
                    }
                );
                let mut r = CallToolResult::structured(json!({
                    "run_id": id, "status": "waiting", "wait_key": key, "prompt": prompt,
                    "choices": choices, "url": link,
                }));
                r.content = vec![ContentBlock::text(text)];
                r
            }
            other => {
                let error = s
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("the run was {}", other.as_str()));
                let mut r = CallToolResult::structured_error(
                    json!({"run_id": id, "status": other.as_str(), "error": error}),
                );
                r.content = vec![ContentBlock::text(format!(
                    "Run {id} {}: {error}",
                    other.as_str()
                ))];
                r
            }
        }
    }

    async fn list_waiting(&self, who: &Principal, host: &str) -> CallToolResult {
        let (runs, _) = match self
            .app
            .store
            .list_runs(Some(RunStatus::Waiting), 200, 0)
            .await
        {
            Ok(r) => r,
            Err(e) => return refused(public_message(e.into())),
        };
        let items: Vec<Value> = runs
            .iter()
            .filter_map(|s| {
                let w = s
                    .waiting
                    .as_ref()
                    .filter(|w| w.reason == WaitReason::User && !w.approval)?;
                if let Some(session) = &s.session_id
                    && reach::check_session(who, session).is_err()
                {
                    return None;
                }
                Some(json!({
                    "run_id": s.run_id, "bundle_id": s.bundle_id, "wait_key": w.wait_key,
                    "prompt": w.prompt, "choices": w.choices, "allow_free_text": w.allow_free_text,
                    "url": self.link(host, &s.run_id),
                }))
            })
            .collect();
        let text = if items.is_empty() {
            "No run waits for an answer.".to_owned()
        } else {
            serde_json::to_string_pretty(&items).unwrap_or_default()
        };
        let mut r = CallToolResult::structured(json!({"waiting": items}));
        r.content = vec![ContentBlock::text(text)];
        r
    }

    async fn answer(&self, who: &Principal, args: &Value) -> CallToolResult {
        let Some(run_id) = args["run_id"].as_str() else {
            return refused("`run_id` (a string) is required");
        };
        if args.get("response").is_none_or(Value::is_null) {
            return refused("`response` is required");
        }
        let run = match self.app.store.run(run_id).await {
            Ok(s) => s,
            Err(e) => return refused(public_message(e.into())),
        };
        if let Some(session) = &run.session_id
            && let Err(e) = reach::check_session(who, session)
        {
            return refused(public_message(e.into()));
        }
        let Some(w) = run.waiting.filter(|_| run.status == RunStatus::Waiting) else {
            return refused(format!("run {run_id} is not waiting for an answer"));
        };
        if w.approval {
            return refused(
                "this wait approves a model's tool call: a person answers it on a channel (the web app, Telegram, email, the tray), not an MCP client",
            );
        }
        // The wait the caller saw, or the current one: a run that moved on since refuses
        // an answer meant for an earlier wait.
        let wait_key = args["wait_key"].as_str().map_or(w.wait_key, str::to_owned);
        let req = CommandRequest {
            command_id: format!("mcp:{}", uuid::Uuid::new_v4()),
            run_id: run_id.to_owned(),
            kind: "resume".into(),
            payload: json!({"wait_key": wait_key, "response": args["response"]}),
            client_id: None,
            channel: Some("mcp".into()),
        };
        match super::commands::submit_command(&self.app, who, req).await {
            Ok(c) => {
                let mut r = CallToolResult::structured(
                    json!({"accepted": c.accepted, "run_id": run_id, "wait_key": wait_key}),
                );
                r.content = vec![ContentBlock::text(format!(
                    "Answered run {run_id} ({wait_key})."
                ))];
                r
            }
            Err(e) => refused(public_message(e)),
        }
    }
}

/// An API error as a tool's error text; an internal one says only that (it is logged).
fn public_message(e: ApiError) -> String {
    match e {
        ApiError::Internal(detail) => {
            tracing::error!(error = %detail, "mcp: internal error");
            "internal error (see the gateway's log)".into()
        }
        other => other.to_string(),
    }
}
