//! Reading Switchboard's Server-Sent Event streams into typed items.
//!
//! Owns SSE framing (`Parser`, linear in the bytes received: a catch-up of 20,000 records
//! arrives in large chunks, and a parser that copies its buffer per event goes quadratic)
//! and the mapping from SSE events (`step`, `done`, `llm.delta`) to [`StreamItem`]. It does
//! not reconnect on its own: callers keep the last cursor and open a new stream after it.

use futures::{Stream, StreamExt};

use crate::client::ClientError;
use crate::types::{LlmDelta, StepEvent};

/// A raw SSE event as it came off the wire.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    /// The `id:` of this event, or "" when it had none (not carried over from earlier events).
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

/// Incremental SSE parser (the WHATWG event-stream format: `field: value` lines, events
/// separated by a blank line, `:` comments ignored, `\n`, `\r\n` or `\r` line ends).
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    /// Where the next unparsed line starts in `buf`.
    pos: usize,
    cur: SseEvent,
    has_data: bool,
}

impl Parser {
    /// Feeds bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = memchr::memchr2(b'\n', b'\r', &self.buf[self.pos..]) {
            let end = self.pos + nl;
            // `\r\n` is one line end; a lone `\r` at the end of the buffer waits for more.
            let mut next = end + 1;
            if self.buf[end] == b'\r' {
                match self.buf.get(end + 1) {
                    Some(b'\n') => next += 1,
                    None => break,
                    _ => {}
                }
            }
            // Lines are borrowed from the buffer; only the fields an event keeps are copied.
            let line = String::from_utf8_lossy(&self.buf[self.pos..end]);
            if let Some(ev) = line_into(&mut self.cur, &mut self.has_data, &line) {
                out.push(ev);
            }
            self.pos = next;
        }
        // Drop consumed bytes once in a while, not per event (that would be quadratic).
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        out
    }
}

/// Applies one line to the event being built; returns the event a blank line completes.
fn line_into(cur: &mut SseEvent, has_data: &mut bool, line: &str) -> Option<SseEvent> {
    if line.is_empty() {
        let ev = std::mem::take(cur);
        let had = std::mem::replace(has_data, false);
        return (had || !ev.event.is_empty()).then(|| SseEvent {
            event: if ev.event.is_empty() {
                "message".into()
            } else {
                ev.event
            },
            ..ev
        });
    }
    if line.starts_with(':') {
        return None;
    }
    let (field, value) = match line.split_once(':') {
        Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
        None => (line, ""),
    };
    match field {
        "data" => {
            if *has_data {
                cur.data.push('\n');
            }
            cur.data.push_str(value);
            *has_data = true;
        }
        "event" => value.clone_into(&mut cur.event),
        "id" => value.clone_into(&mut cur.id),
        _ => {} // `retry` and unknown fields
    }
    None
}

/// Turns a byte stream into raw SSE events, undecoded (for tools that only count events or
/// that talk to gateways whose record shapes differ).
pub fn events<S, B, E>(body: S) -> impl Stream<Item = Result<SseEvent, ClientError>>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let mut parser = Parser::default();
    body.flat_map(move |chunk| {
        let evs: Vec<Result<SseEvent, ClientError>> = match chunk {
            Ok(b) => parser.feed(b.as_ref()).into_iter().map(Ok).collect(),
            Err(e) => vec![Err(ClientError::Stream(e.to_string()))],
        };
        futures::stream::iter(evs)
    })
}

/// Turns a byte stream (a `reqwest` response body) into typed stream items.
pub fn items<S, B, E>(body: S) -> impl Stream<Item = Result<StreamItem, ClientError>>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    events(body).map(|ev| ev.and_then(parse))
}

fn parse(ev: SseEvent) -> Result<StreamItem, ClientError> {
    let decode =
        |e: serde_json::Error| ClientError::Stream(format!("bad `{}` event: {e}", ev.event));
    Ok(match ev.event.as_str() {
        "step" => StreamItem::Step(Box::new(serde_json::from_str(&ev.data).map_err(decode)?)),
        "llm.delta" => StreamItem::Delta(serde_json::from_str(&ev.data).map_err(decode)?),
        "done" => StreamItem::Done,
        _ => StreamItem::Other(ev),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, event: &str, data: &str) -> SseEvent {
        SseEvent {
            id: id.into(),
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_split_across_chunks_and_line_ends() {
        let mut p = Parser::default();
        assert!(p.feed(b"retry: 2000\n\nid: 1\nevent: st").is_empty());
        assert_eq!(
            p.feed(b"ep\ndata: {\"a\":1}\n\n: keep-alive\n\n"),
            vec![ev("1", "step", "{\"a\":1}")]
        );
        assert_eq!(p.feed(b"event: done\r\ndata: x\r"), vec![]);
        assert_eq!(p.feed(b"\n\r\n"), vec![ev("", "done", "x")]);
        assert_eq!(
            p.feed(b"data: a\ndata: b\n\n"),
            vec![ev("", "message", "a\nb")]
        );
    }

    #[test]
    fn a_character_split_between_chunks_is_kept_whole() {
        let mut p = Parser::default();
        let bytes = "event: say\ndata: café ☕\n\n".as_bytes();
        let cut = bytes.iter().position(|b| *b == 0xc3).unwrap_or(0) + 1;
        assert!(p.feed(&bytes[..cut]).is_empty());
        assert_eq!(p.feed(&bytes[cut..]), vec![ev("", "say", "café ☕")]);
    }

    #[test]
    fn many_events_in_one_chunk_are_all_read() {
        let mut p = Parser::default();
        let chunk: String = (1..=20_000)
            .map(|i| format!("id: {i}\nevent: step\ndata: {{}}\n\n"))
            .collect();
        let got = p.feed(chunk.as_bytes());
        assert_eq!(got.len(), 20_000);
        assert_eq!(got[19_999].id, "20000");
    }
}
