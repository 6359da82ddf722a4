//! The OpenAI-compatible surface: `GET /v1/models` (flows that take a `text` input) and
//! `POST /v1/chat/completions` (one durable run per request; streaming as
//! `chat.completion.chunk` events ending with `data: [DONE]`). Errors use OpenAI's shape
//! `{"error":{"message","type","param","code"}}`.
//!
//! Sessions: the `X-Session-Id` header or the `user` field names one, within the caller's
//! own namespace: `user: "telegram:4242"` from a key is the session
//! `openai:<key id>:telegram:4242`, never that Telegram chat's (so a chat request can neither
//! read another principal's history through the LLM nor land as the answer to its prompt;
//! answering a prompt explicitly is a `resume` command, governed by the `command` scope). A
//! request in a session
//! whose run waits on an `ask` answers it (a durable `resume`); otherwise it starts a run
//! with the last user message as `input.text`, earlier messages seeding a new session's
//! history. Without a session a run that ends up waiting is cancelled once answered, since
//! nothing could answer it later. The message itself is assembled in `reply`.

mod follow;
mod reply;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Gate, Principal};
use super::error::{ApiError, ApiJson};
use crate::auth::Scope;
use crate::engine::ChatMessage;
use follow::{End, Piece};

/// Serialises requests of one session (a second waits for the first's run to stop). This
/// is the one lock held across `.await`s, deliberately: a request holds its session's
/// (async) lock for its whole life, from picking the run to the reply, so two requests of a
/// session never answer the same prompt. It is per session, never the map's: the map's own
/// `std` mutex is held only to fetch the session's lock.
#[derive(Default, Clone)]
pub(crate) struct SessionLocks(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

impl SessionLocks {
    fn get(&self, session: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 10_000 {
            m.retain(|_, l| Arc::strong_count(l) > 1);
        }
        m.entry(session.to_owned()).or_default().clone()
    }
}

pub(crate) fn routes(gate: &Gate) -> Router<AppState> {
    let read = Router::new().route("/v1/models", get(models)).route_layer(
        axum::middleware::from_fn_with_state(
            (gate.clone(), Some(Scope::Read)),
            super::auth::require,
        ),
    );
    let run = Router::new()
        .route("/v1/chat/completions", post(completions))
        .route_layer(axum::middleware::from_fn_with_state(
            (gate.clone(), Some(Scope::Run)),
            super::auth::require,
        ));
    read.merge(run)
        .layer(axum::middleware::from_fn(openai_errors))
}

/// Rewrites `{"error":{"code","message"}}` into OpenAI's error shape.
async fn openai_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !status.is_client_error() && !status.is_server_error() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return status.into_response();
    };
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let kind = match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    };
    let e = &v["error"];
    let out = json!({"error": {
        "message": e["message"].as_str().unwrap_or(status.canonical_reason().unwrap_or("error")),
        "type": kind,
        "param": e.get("param").cloned().unwrap_or(Value::Null),
        "code": e["code"],
    }});
    parts.headers.remove(header::CONTENT_LENGTH);
    (parts, Json(out)).into_response()
}

fn chat_capable(f: &crate::flows::Flow) -> bool {
    f.input_schema
        .as_ref()
        .is_some_and(|s| s["properties"].get("text").is_some())
}

async fn models(State(app): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = app
        .registry
        .list()
        .iter()
        .filter(|v| chat_capable(&v.flow))
        .map(|v| json!({"id": v.flow.bundle_id, "object": "model", "created": 0, "owned_by": "switchboard", "name": v.flow.name}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// A 400 naming the request field (OpenAI's `param`).
struct BadParam {
    param: String,
    message: String,
}

fn bad_param(param: &str, message: String) -> BadParam {
    BadParam {
        param: param.to_owned(),
        message,
    }
}

impl IntoResponse for BadParam {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": "invalid_request_error", "param": self.param, "code": "invalid_value"}});
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    }
}

/// A message's text: a string, or the `text` parts of a content array.
fn content_text(c: &Value) -> Option<String> {
    match c {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

struct ChatReq {
    model: String,
    history: Vec<ChatMessage>,
    text: String,
    stream: bool,
    session: Option<String>,
}

fn parse(body: &Value, headers: &HeaderMap) -> Result<ChatReq, BadParam> {
    let model = body["model"]
        .as_str()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            bad_param(
                "model",
                "`model` is required: a flow id from GET /v1/models".into(),
            )
        })?;
    let msgs = body["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad_param("messages", "`messages` must be a non-empty array".into()))?;
    let mut turns = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or_default();
        if !["system", "developer", "user", "assistant", "tool"].contains(&role) {
            return Err(bad_param(
                &format!("messages[{i}].role"),
                format!("messages[{i}].role `{role}` must be system, user, assistant or tool"),
            ));
        }
        let content = content_text(&m["content"]).ok_or_else(|| {
            bad_param(
                &format!("messages[{i}].content"),
                format!("messages[{i}].content must be a string or an array of text parts"),
            )
        })?;
        let role = if role == "developer" { "system" } else { role };
        turns.push(ChatMessage::text(role, content));
    }
    let last = turns.pop().filter(|m| m.role == "user").ok_or_else(|| {
        bad_param(
            "messages",
            "the last message must have role `user` (it is the run's input)".into(),
        )
    })?;
    let stream = match &body["stream"] {
        Value::Null => false,
        Value::Bool(b) => *b,
        _ => return Err(bad_param("stream", "`stream` must be true or false".into())),
    };
    let session = headers
        .get("x-session-id")
        .and_then(|v| v.to_str().ok())
        .or_else(|| body["user"].as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if session
        .as_ref()
        .is_some_and(|s| s.len() > 200 || s.chars().any(char::is_control))
    {
        return Err(bad_param(
            "user",
            "the session (`user` or X-Session-Id) must be at most 200 characters, without control characters".into(),
        ));
    }
    Ok(ChatReq {
        model: model.to_owned(),
        history: turns,
        text: last.content,
        stream,
        session,
    })
}

async fn completions(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Response {
    let req = match parse(&body, &headers) {
        Ok(r) => r,
        Err(bad) => return bad.into_response(),
    };
    // A completion follows its run like an event stream, and counts as one.
    let slot = match app.streams.acquire(&who) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match begin(&app, &who, &req).await {
        Ok(turn) => respond(app, who, req, turn, slot).await,
        Err(e) => e.into_response(),
    }
}

/// The run a request drives, where its new records start, and whether it owns the session.
struct Turn {
    run_id: String,
    after: u64,
    ephemeral: bool,
    rx: tokio::sync::broadcast::Receiver<crate::bus::BusEvent>,
    _lock: tokio::sync::OwnedMutexGuard<()>,
}

async fn begin(app: &AppState, who: &Principal, req: &ChatReq) -> Result<Turn, ApiError> {
    let (session, ephemeral) = match &req.session {
        Some(s) => (session_of(who, s), false),
        None => (session_of(who, &format!("~{}", uuid::Uuid::new_v4())), true),
    };
    let lock = app.openai_sessions.get(&session).lock_owned().await;
    if app.registry.current(&req.model).is_none() {
        return Err(ApiError::NotFound(format!(
            "the model `{}` does not exist: GET /v1/models lists the flows",
            req.model
        )));
    }
    // Subscribe before anything happens, so no delta or record is missed.
    let rx = app.store.bus().subscribe();
    if let Some(run_id) = app.store.waiting_in_session(&session, &req.model).await? {
        let s = app.store.run(&run_id).await?;
        if let Some(w) = s.waiting.filter(|w| w.is_for_a_person()) {
            if !who.allows(Scope::Command) {
                return Err(ApiError::Forbidden(
                    "answering a waiting run needs the `command` scope".into(),
                ));
            }
            let answer = protocol::Command::Answer {
                wait_key: w.wait_key,
                response: json!(req.text),
            };
            let id = format!("openai-{}", uuid::Uuid::new_v4());
            let cmd =
                protocol::CommandRequest::new(id, &run_id, &answer).from_client(None, "openai");
            super::commands::submit_command(app, who, cmd).await?;
            return Ok(Turn {
                run_id,
                after: s.ledger_len,
                ephemeral,
                rx,
                _lock: lock,
            });
        }
    }
    if !req.history.is_empty() {
        app.store
            .seed_history(&session, req.history.clone())
            .await?;
    }
    let mut run = super::runs::new_run(
        app,
        who,
        req.model.clone(),
        json!({"text": req.text}),
        Some(session),
        None,
    )?;
    run.actor.channel = Some("openai".into());
    let s = app.start_run(run).await?;
    Ok(Turn {
        run_id: s.run_id,
        after: 0,
        ephemeral,
        rx,
        _lock: lock,
    })
}

/// The session a `/v1` caller's session name stands for: `openai:<principal id>:<name>`.
fn session_of(who: &Principal, name: &str) -> String {
    format!("{}{}:{name}", crate::auth::reach::OPENAI_SESSION, who.id)
}

fn completion_id(run: &str, after: u64) -> String {
    format!("chatcmpl-{}-{after}", run.replace('-', ""))
}

async fn respond(
    app: AppState,
    who: Principal,
    req: ChatReq,
    turn: Turn,
    slot: Option<super::sse::StreamSlot>,
) -> Response {
    let id = completion_id(&turn.run_id, turn.after);
    let created = chrono::Utc::now().timestamp();
    let pieces = follow::follow(
        app.clone(),
        turn.run_id.clone(),
        turn.after,
        turn.rx,
        app.openai_timeout,
    );
    let run_id = turn.run_id.clone();
    let finish = move |end: &End| {
        if turn.ephemeral && matches!(end, End::Waiting) {
            let (app, who, run_id) = (app.clone(), who.clone(), run_id.clone());
            tokio::spawn(async move { follow::cancel_orphan(&app, &who, &run_id).await });
        }
    };
    if req.stream {
        return follow::sse(
            pieces,
            id,
            created,
            req.model,
            turn.run_id,
            finish,
            (turn._lock, slot),
        );
    }
    let mut text = String::new();
    let mut end = End::Timeout;
    futures::pin_mut!(pieces);
    while let Some(p) = futures::StreamExt::next(&mut pieces).await {
        match p {
            Piece::Text(t) => text.push_str(&t),
            Piece::End(e) => {
                end = e;
                break;
            }
        }
    }
    finish(&end);
    if let Some(err) = end.error() {
        return err.into_response();
    }
    Json(json!({
        "id": id, "object": "chat.completion", "created": created, "model": req.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": end.finish_reason()}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "switchboard": {"run_id": turn.run_id, "status": end.status()},
    }))
    .into_response()
}
