//! Server-Sent Events: a run's ledger (`id:` = per-run seq) and the global ledger (`id:` =
//! global cursor). Each stream subscribes to the bus first, then replays stored records
//! after the client's cursor (`after` or `Last-Event-ID`), then follows the live tail,
//! skipping what it already sent. A stream that lags behind the bus is closed; the client
//! resumes from its cursor. Streams never slow the runner.

use std::convert::Infallible;
use std::time::Duration;

use async_stream::stream;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::error::{ApiError, ApiQuery};
use crate::bus::BusEvent;

const PAGE: u32 = 500;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    after: Option<u64>,
}

fn cursor(q: &StreamQuery, headers: &HeaderMap) -> Result<u64, ApiError> {
    match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| ApiError::bad("Last-Event-ID must be a whole number (a cursor)")),
        None => Ok(q.after.unwrap_or(0)),
    }
}

fn step(cursor: u64, json: &str) -> Event {
    Event::default()
        .id(cursor.to_string())
        .event("step")
        .data(format!("{{\"cursor\":{cursor},\"record\":{json}}}"))
}

/// The next bus message, or `None` when the server is shutting down.
async fn next(
    rx: &mut tokio::sync::broadcast::Receiver<BusEvent>,
    down: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<Result<BusEvent, RecvError>> {
    if *down.borrow() {
        return None;
    }
    tokio::select! {
        m = rx.recv() => Some(m),
        _ = down.changed() => None,
    }
}

/// Sent when the server shuts down: reconnect soon (from your cursor).
fn closing() -> Event {
    Event::default()
        .retry(Duration::from_secs(1))
        .comment("server shutting down; reconnect with Last-Event-ID")
}

fn keep_alive() -> KeepAlive {
    KeepAlive::new()
        .interval(Duration::from_secs(15))
        .text("keep-alive")
}

#[utoipa::path(get, path = "/api/gateway/runs/{id}/ledger/stream", tag = "replay", params(("id" = String, Path, description = "the run id"), StreamQuery, ("Last-Event-ID" = Option<u64>, Header, description = "resume after this cursor")), responses((status = 200, description = "text/event-stream: `event: step` (id = per-run seq, data = StepEvent), `event: llm.delta` (no id), `event: done`", content_type = "text/event-stream", body = protocol::StepEvent), (status = 404, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub async fn run_stream(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let after = cursor(&q, &headers)?;
    let mut rx = app.store.bus().subscribe();
    app.store.run(&id).await?;
    let store = app.store.clone();
    let mut down = app.shutdown.clone();
    let s = stream! {
        yield Ok(Event::default().retry(Duration::from_secs(2)));
        let mut cur = after;
        'outer: loop {
            // Catch up from the store.
            loop {
                let Ok((items, next)) = store.ledger_page(&id, cur, PAGE).await else { break 'outer };
                if items.is_empty() { break; }
                let base = cur;
                for (i, json) in items.iter().enumerate() {
                    yield Ok(step(base + i as u64 + 1, json));
                }
                cur = next;
            }
            let Ok(run) = store.run(&id).await else { break };
            if run.status.is_terminal() && cur >= run.ledger_len {
                yield Ok(Event::default().event("done").data(format!("{{\"status\":\"{}\"}}", run.status.as_str())));
                break;
            }
            // Follow the live tail.
            loop {
                let Some(msg) = next(&mut rx, &mut down).await else {
                    yield Ok(closing());
                    break 'outer;
                };
                match msg {
                    Ok(BusEvent::Record(r)) if r.run_id == id => {
                        if r.seq <= cur { continue; }
                        if r.seq > cur + 1 { continue 'outer; }
                        cur = r.seq;
                        yield Ok(step(r.seq, &r.json));
                        if let Some(s) = r.end {
                            yield Ok(Event::default().event("done").data(format!("{{\"status\":\"{s}\"}}")));
                            break 'outer;
                        }
                    }
                    Ok(BusEvent::Delta(d)) if d.run_id == id => {
                        if let Ok(data) = serde_json::to_string(&*d) {
                            yield Ok(Event::default().event("llm.delta").data(data));
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break 'outer,
                }
            }
        }
    };
    Ok(Sse::new(s).keep_alive(keep_alive()))
}

#[utoipa::path(get, path = "/api/gateway/ledger/stream", tag = "replay", params(StreamQuery, ("Last-Event-ID" = Option<u64>, Header, description = "resume after this global cursor")), responses((status = 200, description = "text/event-stream: `event: step` (id = global cursor), `event: llm.delta`", content_type = "text/event-stream", body = protocol::StepEvent), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub async fn global_stream(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let after = cursor(&q, &headers)?;
    let mut rx = app.store.bus().subscribe();
    let store = app.store.clone();
    let mut down = app.shutdown.clone();
    let s = stream! {
        yield Ok(Event::default().retry(Duration::from_secs(2)));
        let mut cur = after;
        'outer: loop {
            loop {
                let Ok(items) = store.global_page(cur, PAGE).await else { break 'outer };
                if items.is_empty() { break; }
                for it in &items {
                    yield Ok(step(it.gseq, &it.json));
                    cur = it.gseq;
                }
            }
            loop {
                let Some(msg) = next(&mut rx, &mut down).await else {
                    yield Ok(closing());
                    break 'outer;
                };
                match msg {
                    Ok(BusEvent::Record(r)) => {
                        if r.gseq <= cur { continue; }
                        if r.gseq > cur + 1 { continue 'outer; }
                        cur = r.gseq;
                        yield Ok(step(r.gseq, &r.json));
                    }
                    Ok(BusEvent::Delta(d)) => {
                        if let Ok(data) = serde_json::to_string(&*d) {
                            yield Ok(Event::default().event("llm.delta").data(data));
                        }
                    }
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break 'outer,
                }
            }
        }
    };
    Ok(Sse::new(s).keep_alive(keep_alive()))
}
