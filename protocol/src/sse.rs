//! Reading Switchboard's Server-Sent Event streams into typed items.
//!
//! Owns the mapping from SSE events (`step`, `done`, `llm.delta`) to [`StreamItem`]; it does
//! not reconnect on its own: callers keep the last cursor and open a new stream after it.

use futures::{Stream, StreamExt};
use serde::Deserialize;

use crate::client::ClientError;
use crate::types::{LlmDelta, StepEvent};

/// A raw SSE event as it came off the wire.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: String,
}

/// A typed item of a Switchboard stream.
#[derive(Debug, Clone)]
pub enum StreamItem {
    Step(Box<StepEvent>),
    Delta(LlmDelta),
    /// The run is terminal and every record was delivered.
    Done,
    /// An event this client does not know; kept so newer gateways do not break older clients.
    Other(SseEvent),
}

#[derive(Deserialize)]
struct Anything {}

/// Turns a byte stream (a `reqwest` response body) into typed stream items.
pub fn items<S, B, E>(body: S) -> impl Stream<Item = Result<StreamItem, ClientError>>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    use eventsource_stream::Eventsource;
    body.eventsource().map(|ev| {
        let ev = ev.map_err(|e| ClientError::Stream(e.to_string()))?;
        parse(SseEvent {
            id: ev.id,
            event: ev.event,
            data: ev.data,
        })
    })
}

fn parse(ev: SseEvent) -> Result<StreamItem, ClientError> {
    let decode =
        |e: serde_json::Error| ClientError::Stream(format!("bad `{}` event: {e}", ev.event));
    Ok(match ev.event.as_str() {
        "step" => StreamItem::Step(Box::new(serde_json::from_str(&ev.data).map_err(decode)?)),
        "llm.delta" => StreamItem::Delta(serde_json::from_str(&ev.data).map_err(decode)?),
        "done" => {
            let _: Option<Anything> = serde_json::from_str(&ev.data).ok();
            StreamItem::Done
        }
        _ => StreamItem::Other(ev),
    })
}
