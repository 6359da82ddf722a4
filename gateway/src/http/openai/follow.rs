//! Follows one run from a cursor for a chat request: stored records first, then the bus
//! (records and LLM deltas), until the run ends, waits for a person, or the request's time
//! is up. Yields text pieces (from `reply::Assembler`) and one end; `sse` frames them as
//! OpenAI `chat.completion.chunk` events.

use std::convert::Infallible;
use std::time::Duration;

use async_stream::stream;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use futures::{Stream, StreamExt};
use protocol::{LedgerRecord, RecordStatus, RunStatus};
use serde_json::json;
use tokio::sync::broadcast::{Receiver, error::RecvError};

use super::reply::Assembler;
use crate::auth::Principal;
use crate::bus::BusEvent;
use crate::http::AppState;
use crate::http::error::ApiError;

pub(crate) enum Piece {
    Text(String),
    End(End),
}

/// How a chat request's run stopped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum End {
    Completed,
    /// Waiting for a person (an `ask`); the next request in the session answers it.
    Waiting,
    Failed(String),
    Cancelled,
    Timeout,
    Gone(String),
}

impl End {
    pub(crate) fn finish_reason(&self) -> &'static str {
        "stop"
    }

    pub(crate) fn status(&self) -> &'static str {
        match self {
            End::Completed => "completed",
            End::Waiting => "waiting",
            End::Failed(_) => "failed",
            End::Cancelled => "cancelled",
            End::Timeout | End::Gone(_) => "running",
        }
    }

    /// The error a request reports instead of a message, if any.
    pub(crate) fn error(&self) -> Option<ApiError> {
        match self {
            End::Failed(e) => Some(ApiError::RunFailed(format!("the run failed: {e}"))),
            End::Cancelled => Some(ApiError::Conflict("the run was cancelled".into())),
            End::Timeout => Some(ApiError::Unavailable(
                "the run did not stop within SWITCHBOARD_OPENAI_TIMEOUT; follow it on /api/gateway/runs".into(),
            )),
            End::Gone(e) => Some(ApiError::Internal(e.clone())),
            _ => None,
        }
    }
}

fn texts(v: Vec<String>) -> impl Iterator<Item = Piece> {
    v.into_iter().map(Piece::Text)
}

pub(crate) fn follow(
    app: AppState,
    run_id: String,
    after: u64,
    mut rx: Receiver<BusEvent>,
    timeout: Duration,
) -> impl Stream<Item = Piece> {
    let store = app.store.clone();
    let deadline = tokio::time::Instant::now() + timeout;
    stream! {
        let mut asm = Assembler::default();
        let mut cur = after;
        'outer: loop {
            loop {
                let (items, next) = match store.ledger_page(&run_id, cur, 500).await {
                    Ok(p) => p,
                    Err(e) => { yield Piece::End(End::Gone(e.to_string())); break 'outer; }
                };
                if items.is_empty() { break; }
                for json in &items {
                    if let Ok(r) = serde_json::from_str::<LedgerRecord>(json) {
                        for p in texts(asm.record(&r)) { yield p; }
                    }
                }
                cur = next;
            }
            let run = match store.run(&run_id).await {
                Ok(r) => r,
                Err(e) => { yield Piece::End(End::Gone(e.to_string())); break; }
            };
            if cur >= run.ledger_len && cur > after {
                let end = match run.status {
                    RunStatus::Completed => { for p in texts(asm.completed(run.output.as_ref())) { yield p; } Some(End::Completed) }
                    RunStatus::Failed => Some(End::Failed(run.error.clone().unwrap_or_default())),
                    RunStatus::Cancelled => Some(End::Cancelled),
                    RunStatus::Waiting => match run.waiting.as_ref().filter(|w| w.is_for_a_person()) {
                        Some(w) => {
                            for p in texts(asm.ask(w.prompt.as_deref().unwrap_or_default(), &w.choices)) { yield p; }
                            Some(End::Waiting)
                        }
                        None => None,
                    },
                    _ => None,
                };
                if let Some(end) = end { yield Piece::End(end); break; }
            }
            loop {
                let ev = tokio::select! {
                    ev = rx.recv() => ev,
                    _ = tokio::time::sleep_until(deadline) => { yield Piece::End(End::Timeout); break 'outer; }
                };
                match ev {
                    Ok(BusEvent::Record(r)) if r.run_id == run_id => {
                        if r.seq <= cur { continue; }
                        if r.seq > cur + 1 { continue 'outer; }
                        cur = r.seq;
                        let Ok(rec) = serde_json::from_str::<LedgerRecord>(&r.json) else { continue };
                        for p in texts(asm.record(&rec)) { yield p; }
                        let stops = r.end.is_some() || (rec.status == RecordStatus::Waiting && rec.effect_kind() == "ask");
                        if stops { continue 'outer; }
                    }
                    Ok(BusEvent::Delta(d)) if d.run_id == run_id => {
                        for p in texts(asm.delta(&d.delta)) { yield p; }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => continue 'outer,
                    Err(RecvError::Closed) => { yield Piece::End(End::Gone("the gateway is shutting down".into())); break 'outer; }
                }
            }
        }
    }
}

/// Cancels a run left waiting by a request without a session (nothing can answer it).
pub(crate) async fn cancel_orphan(app: &AppState, who: &Principal, run_id: &str) {
    let cmd = protocol::CommandRequest {
        command_id: format!("openai-cancel-{run_id}"),
        run_id: run_id.to_owned(),
        kind: "cancel".into(),
        payload: json!({"reason": "an OpenAI request without a session left it waiting; send X-Session-Id or `user` to answer prompts"}),
        client_id: None,
        channel: Some("openai".into()),
    };
    if let Err(e) = crate::http::commands::submit_command(app, who, cmd).await {
        tracing::warn!(run = run_id, error = %e, "cannot cancel a sessionless chat run");
    }
}

fn chunk(
    id: &str,
    created: i64,
    model: &str,
    delta: serde_json::Value,
    finish: Option<&str>,
) -> serde_json::Value {
    json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

fn data(v: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// Frames pieces as OpenAI stream chunks, ending with `data: [DONE]`.
pub(crate) fn sse<S, F, G>(
    pieces: S,
    id: String,
    created: i64,
    model: String,
    run_id: String,
    finish: F,
    guard: G,
) -> Response
where
    S: Stream<Item = Piece> + Send + 'static,
    F: Fn(&End) + Send + 'static,
    G: Send + 'static,
{
    let body = stream! {
        let _guard = guard; // the session stays locked until the stream ends
        yield Ok::<_, Infallible>(data(&chunk(&id, created, &model, json!({"role": "assistant", "content": ""}), None)));
        futures::pin_mut!(pieces);
        while let Some(p) = pieces.next().await {
            match p {
                Piece::Text(t) => yield Ok(data(&chunk(&id, created, &model, json!({"content": t}), None))),
                Piece::End(end) => {
                    finish(&end);
                    if let Some(e) = end.error() {
                        let err = json!({"error": {"message": e.to_string(), "type": "api_error", "param": null, "code": end.status()}});
                        yield Ok(data(&err));
                    } else {
                        let mut last = chunk(&id, created, &model, json!({}), Some(end.finish_reason()));
                        last["switchboard"] = json!({"run_id": run_id, "status": end.status()});
                        yield Ok(data(&last));
                    }
                    break;
                }
            }
        }
        yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_default()
}
