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
///
/// Lines are read straight from the chunk they arrived in; only a line cut by the end of a
/// chunk is copied (into `buf`, until its end comes). A chunk of a catch-up page (hundreds
/// of kilobytes) is therefore neither copied nor kept.
#[derive(Debug, Default)]
pub struct Parser {
    /// The start of a line whose end has not arrived yet.
    buf: Vec<u8>,
    /// The last chunk ended in `\r`: a `\n` starting the next one belongs to that line end.
    skip_lf: bool,
    cur: SseEvent,
    has_data: bool,
}

/// A line kept for a longer line than this is not kept between chunks (its buffer is let go).
const KEEP_LINE_BUF: usize = 64 * 1024;

impl Parser {
    /// Feeds bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut rest = bytes;
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            rest = rest.strip_prefix(b"\n").unwrap_or(rest);
        }
        if !self.buf.is_empty() {
            // The open line ends at the first line end of this chunk.
            let Some(end) = memchr::memchr2(b'\n', b'\r', rest) else {
                self.buf.extend_from_slice(rest);
                return out;
            };
            let mut line = std::mem::take(&mut self.buf);
            line.extend_from_slice(&rest[..end]);
            self.line(&line, &mut out);
            if line.capacity() <= KEEP_LINE_BUF {
                line.clear();
                self.buf = line;
            }
            rest = self.after_line_end(rest, end);
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', rest) {
            self.line(&rest[..end], &mut out);
            rest = self.after_line_end(rest, end);
        }
        self.buf.extend_from_slice(rest);
        out
    }

    /// What follows the line end at `rest[end]` (`\r\n` is one line end).
    fn after_line_end<'a>(&mut self, rest: &'a [u8], end: usize) -> &'a [u8] {
        let mut next = end + 1;
        if rest[end] == b'\r' {
            match rest.get(next) {
                Some(b'\n') => next += 1,
                None => self.skip_lf = true,
                Some(_) => {}
            }
        }
        &rest[next..]
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        // Valid UTF-8 (every Switchboard stream) is checked in one pass, not char by char.
        let line = match std::str::from_utf8(line) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(line),
        };
        if let Some(ev) = line_into(&mut self.cur, &mut self.has_data, &line) {
            out.push(ev);
        }
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
    fn a_line_across_three_chunks_and_lone_cr_line_ends() {
        let mut p = Parser::default();
        assert!(p.feed(b"id: 7\revent: st").is_empty());
        assert!(p.feed(b"e").is_empty());
        assert_eq!(p.feed(b"p\rdata: 1\r\r"), vec![ev("7", "step", "1")]);
        assert!(
            p.feed(b"\n").is_empty(),
            "the LF of a CRLF split across chunks"
        );
        assert_eq!(p.feed(b"data: 2\n\n"), vec![ev("", "message", "2")]);
    }

    #[test]
    fn only_the_open_line_of_a_chunk_is_kept() {
        let mut p = Parser::default();
        let mut chunk: Vec<u8> = (1..=1_000)
            .flat_map(|i| format!("id: {i}\nevent: step\ndata: {{}}\n\n").into_bytes())
            .collect();
        chunk.extend_from_slice(b"id: 1001\nevent: st");
        assert_eq!(p.feed(&chunk).len(), 1_000);
        assert_eq!(
            p.buf, b"event: st",
            "the parser holds the cut line, not the chunk"
        );
        assert_eq!(p.feed(b"ep\ndata: {}\n\n"), vec![ev("1001", "step", "{}")]);
        assert!(p.buf.is_empty());
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
