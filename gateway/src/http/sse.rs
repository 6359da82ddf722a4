//! Server-Sent Events: a run's ledger (`id:` = per-run seq) and the global ledger (`id:` =
//! global cursor). Each stream subscribes to the bus first, then replays stored records
//! after the client's cursor (`after` or `Last-Event-ID`), then follows the live tail,
//! skipping what it already sent. A stream that lags behind the bus is closed; the client
//! resumes from its cursor. Streams never slow the runner.
//!
//! Events are framed here rather than with axum's `Sse`, so that a catch-up page of
//! hundreds of records leaves as one write instead of one small packet per record.
//!
//! Each principal may hold `SWITCHBOARD_MAX_STREAMS` streams (and `/v1` completions, which
//! follow a run the same way) at once; one more is a 429. The admin token is exempt: it is
//! the operator's, for load tools and scripts.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_stream::stream;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, ApiQuery};
use crate::bus::BusEvent;
use crate::store::Store;

/// Open streams per principal.
#[derive(Clone)]
pub(crate) struct StreamCounts {
    max: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open stream; dropping it (the stream ended or the client left) frees the place.
pub(crate) struct StreamSlot {
    counts: StreamCounts,
    who: String,
}

impl StreamCounts {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// A place for one more stream of `who`, or a 429.
    pub(crate) fn acquire(&self, who: &Principal) -> Result<Option<StreamSlot>, ApiError> {
        if who.kind == "admin" {
            return Ok(None);
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(who.id.clone()).or_default();
        if *n >= self.max {
            return Err(ApiError::TooManyRequests(
                format!(
                    "this token already has {} event streams open (SWITCHBOARD_MAX_STREAMS); close one first",
                    self.max
                ),
                1,
            ));
        }
        *n += 1;
        Ok(Some(StreamSlot {
            counts: self.clone(),
            who: who.id.clone(),
        }))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.who) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.who);
            }
        }
    }
}

const PAGE: u32 = 500;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
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

/// Appends one `step` event (`json` is a stored record: UTF-8 JSON on one line).
fn step(out: &mut Vec<u8>, cursor: u64, json: &[u8]) {
    let mut n = itoa::Buffer::new();
    let n = n.format(cursor).as_bytes();
    out.reserve(json.len() + 2 * n.len() + 48);
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(n);
    out.extend_from_slice(b"\nevent: step\ndata: {\"cursor\":");
    out.extend_from_slice(n);
    out.extend_from_slice(b",\"record\":");
    out.extend_from_slice(json);
    out.extend_from_slice(b"}\n\n");
}

fn done(status: &str) -> Bytes {
    match status {
        "completed" => Bytes::from_static(b"event: done\ndata: {\"status\":\"completed\"}\n\n"),
        "failed" => Bytes::from_static(b"event: done\ndata: {\"status\":\"failed\"}\n\n"),
        "cancelled" => Bytes::from_static(b"event: done\ndata: {\"status\":\"cancelled\"}\n\n"),
        other => Bytes::from(format!("event: done\ndata: {{\"status\":\"{other}\"}}\n\n")),
    }
}

fn event(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

const HELLO: &str = "retry: 2000\n\n";
/// Sent when the server shuts down: reconnect soon (from your cursor).
const CLOSING: &str = "retry: 1000\n: server shutting down; reconnect with Last-Event-ID\n\n";

/// What the live tail saw next.
enum Next {
    Msg(Result<BusEvent, RecvError>),
    Idle,
    Shutdown,
}

/// Where a stream's live tail comes from: the global feed, or its run's own channel (so a
/// record wakes only that run's followers).
enum Rx {
    Global(tokio::sync::broadcast::Receiver<BusEvent>),
    Run(crate::bus::RunReceiver),
}

impl Rx {
    async fn recv(&mut self) -> Result<BusEvent, RecvError> {
        match self {
            Self::Global(rx) => rx.recv().await,
            Self::Run(rx) => rx.recv().await,
        }
    }

    /// An event already there: `None` when there is none yet (or the bus closed).
    fn ready(&mut self) -> Option<Result<BusEvent, RecvError>> {
        use tokio::sync::broadcast::error::TryRecvError;
        let got = match self {
            Self::Global(rx) => rx.try_recv(),
            Self::Run(rx) => rx.try_recv(),
        };
        match got {
            Ok(ev) => Some(Ok(ev)),
            Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
            Err(TryRecvError::Empty | TryRecvError::Closed) => None,
        }
    }
}

async fn next(
    rx: &mut Rx,
    down: &mut tokio::sync::watch::Receiver<bool>,
    keep_alive: Duration,
) -> Next {
    if *down.borrow() {
        return Next::Shutdown;
    }
    // A burst is drained without arming the keep-alive timer for each event.
    if let Some(m) = rx.ready() {
        return Next::Msg(m);
    }
    tokio::select! {
        m = rx.recv() => Next::Msg(m),
        _ = down.changed() => Next::Shutdown,
        _ = tokio::time::sleep(keep_alive) => Next::Idle,
    }
}

fn sse_response<S>(s: S) -> Response
where
    S: Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
{
    let mut r = Response::new(Body::from_stream(s));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    r
}

#[utoipa::path(get, path = "/api/gateway/runs/{id}/ledger/stream", tag = "replay", params(("id" = String, Path, description = "the run id"), StreamQuery, ("Last-Event-ID" = Option<u64>, Header, description = "resume after this cursor")), responses((status = 200, description = "text/event-stream: `event: step` (id = per-run seq, data = StepEvent), `event: llm.delta` (no id), `event: done`", content_type = "text/event-stream", body = protocol::StepEvent), (status = 404, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit, lockout or too many open streams", body = protocol::ErrorBody)))]
pub(crate) async fn run_stream(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<StreamQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    open(&app, &who, Feed::Run(id), &q, &headers).await
}

/// Opens a stream of `feed` for `who`: the cursor from the query or `Last-Event-ID`, a
/// stream slot, and the bus subscribed before the store is read (so nothing committed in
/// between is missed).
async fn open(
    app: &AppState,
    who: &Principal,
    feed: Feed,
    q: &StreamQuery,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let after = cursor(q, headers)?;
    let slot = app.streams.acquire(who)?;
    let rx = match &feed {
        Feed::Run(id) => {
            let rx = Rx::Run(app.store.bus().subscribe_run(id));
            app.store.run(id).await?;
            rx
        }
        Feed::Global => Rx::Global(app.store.bus().subscribe()),
    };
    Ok(sse_response(follow(app, feed, after, rx, slot)))
}

/// The newest global cursor: a client that wants only what happens from now on streams
/// `after` it (and renders the current state from the runs' summaries).
#[utoipa::path(get, path = "/api/gateway/ledger/head", tag = "replay", responses((status = 200, body = protocol::LedgerHead), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn global_head(
    State(app): State<AppState>,
) -> Result<axum::Json<protocol::LedgerHead>, ApiError> {
    let cursor = app.store.global_head().await?;
    Ok(axum::Json(protocol::LedgerHead { cursor }))
}

#[utoipa::path(get, path = "/api/gateway/ledger/stream", tag = "replay", params(StreamQuery, ("Last-Event-ID" = Option<u64>, Header, description = "resume after this global cursor")), responses((status = 200, description = "text/event-stream: `event: step` (id = global cursor), `event: llm.delta`", content_type = "text/event-stream", body = protocol::StepEvent), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn global_stream(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
    ApiQuery(q): ApiQuery<StreamQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    open(&app, &who, Feed::Global, &q, &headers).await
}

/// What a stream follows: one run's ledger (cursor = its `seq`) or every run's (cursor =
/// the global `gseq`).
enum Feed {
    Run(String),
    Global,
}

impl Feed {
    /// The next stored page after `cur`, framed: its text and the cursor after it, or
    /// `None` once caught up.
    async fn page(&self, store: &Store, cur: u64) -> Result<Option<(Vec<u8>, u64)>, ()> {
        match self {
            Self::Run(id) => match store.ledger_frames(id, cur, PAGE, step).await {
                Ok((text, next, true)) => Ok(Some((text, next))),
                Ok(_) => Ok(None),
                Err(_) => Err(()),
            },
            Self::Global => match store.global_frames(cur, PAGE, step).await {
                Ok((text, Some(last))) => Ok(Some((text, last))),
                Ok(_) => Ok(None),
                Err(_) => Err(()),
            },
        }
    }

    /// A run's end, when the run is over and everything was sent (a run's stream only).
    async fn ended(&self, store: &Store, cur: u64) -> Result<Option<&'static str>, ()> {
        let Self::Run(id) = self else {
            return Ok(None);
        };
        let run = store.run(id).await.map_err(|_| ())?;
        Ok((run.status.is_terminal() && cur >= run.ledger_len).then(|| run.status.as_str()))
    }

    /// A committed record's cursor in this feed, if the feed shows it.
    fn cursor_of(&self, r: &crate::bus::RecordEvent) -> Option<u64> {
        match self {
            Self::Run(id) => (r.run_id == *id).then_some(r.seq),
            Self::Global => Some(r.gseq),
        }
    }

    /// `r` framed for this feed: framed once, by the first stream that sends it; the
    /// others share those bytes.
    fn frame(&self, r: &crate::bus::RecordEvent) -> Bytes {
        let (cell, at) = match self {
            Self::Run(_) => (&r.frames.run, r.seq),
            Self::Global => (&r.frames.global, r.gseq),
        };
        cell.get_or_init(|| {
            let mut one = Vec::new();
            step(&mut one, at, r.json.as_bytes());
            Bytes::from(one)
        })
        .clone()
    }

    fn shows_delta(&self, d: &protocol::LlmDelta) -> bool {
        match self {
            Self::Run(id) => d.run_id == *id,
            Self::Global => true,
        }
    }

    /// Whether `r` ends what this feed follows (a run's stream closes with `done`).
    fn ends_with(&self, r: &crate::bus::RecordEvent) -> Option<&'static str> {
        match self {
            Self::Run(_) => r.end,
            Self::Global => None,
        }
    }
}

/// Most events one write of the live tail carries.
const BURST: usize = 256;

/// What the live tail does after a burst.
enum After {
    /// Wait for more.
    More,
    /// A cursor was skipped: read the store from the last one sent.
    Gap,
    /// The run ended with this status.
    End(&'static str),
    /// The stream fell behind the bus: it ends (the client resumes from its cursor).
    Lagged,
}

/// Frames `first` and the events already waiting behind it (up to [`BURST`]) as one write:
/// one wake-up and one write per burst, not per event, whatever the number of streams.
fn burst(
    feed: &Feed,
    rx: &mut Rx,
    first: BusEvent,
    cur: &mut u64,
    gaps_are_news: bool,
) -> (Option<Bytes>, After) {
    let mut parts: Vec<Bytes> = Vec::new();
    let mut next = Some(Ok(first));
    let after = loop {
        let ev = match next.take() {
            Some(Ok(ev)) => ev,
            Some(Err(_)) => break After::Lagged,
            None => break After::More,
        };
        match ev {
            BusEvent::Record(r) => {
                if let Some(at) = feed.cursor_of(&r).filter(|at| *at > *cur) {
                    if gaps_are_news && at > *cur + 1 {
                        break After::Gap;
                    }
                    *cur = at;
                    parts.push(feed.frame(&r));
                    if let Some(status) = feed.ends_with(&r) {
                        break After::End(status);
                    }
                }
            }
            BusEvent::Delta(d) if feed.shows_delta(&d) => {
                if let Ok(data) = serde_json::to_string(&*d) {
                    parts.push(event("llm.delta", &data));
                }
            }
            BusEvent::Delta(_) => {}
        }
        if parts.len() >= BURST {
            break After::More;
        }
        next = rx.ready();
    };
    let bytes = match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(Bytes::from(parts.concat())),
    };
    (bytes, after)
}

/// The one follow loop of both streams: catch up from the store (a page per write), then
/// the live tail from the bus (subscribed before the catch-up, so nothing is missed),
/// skipping what was sent and going back to the store over a gap. A lagging receiver ends
/// the stream (the client resumes from its cursor); so does shutdown, with a retry hint.
fn follow(
    app: &AppState,
    feed: Feed,
    after: u64,
    mut rx: Rx,
    slot: Option<StreamSlot>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let store = app.store.clone();
    let mut down = app.shutdown.clone();
    let keep_alive = app.keep_alive;
    // A gap in the cursors sends the stream back to the store. On a shared store global
    // cursors have gaps by design, and the bus carries every record in cursor order (the
    // follower feeds it from the store), so there the global stream trusts the bus.
    let gaps_are_news = !(store.is_shared() && matches!(feed, Feed::Global));
    stream! {
        let _slot = slot;
        yield Ok(Bytes::from_static(HELLO.as_bytes()));
        let mut cur = after;
        'outer: loop {
            loop {
                match feed.page(&store, cur).await {
                    Ok(Some((text, next))) => { cur = next; yield Ok(Bytes::from(text)); }
                    Ok(None) => break,
                    Err(()) => break 'outer,
                }
            }
            match feed.ended(&store, cur).await {
                Ok(Some(status)) => { yield Ok(done(status)); break; }
                Ok(None) => {}
                Err(()) => break,
            }
            loop {
                match next(&mut rx, &mut down, keep_alive).await {
                    Next::Shutdown => { yield Ok(Bytes::from_static(CLOSING.as_bytes())); break 'outer; }
                    Next::Idle => yield Ok(Bytes::from_static(b": keep-alive\n\n")),
                    Next::Msg(Ok(ev)) => {
                        let (bytes, after) = burst(&feed, &mut rx, ev, &mut cur, gaps_are_news);
                        if let Some(b) = bytes { yield Ok(b); }
                        match after {
                            After::More => {}
                            After::Gap => continue 'outer,
                            After::End(status) => { yield Ok(done(status)); break 'outer; }
                            After::Lagged => break 'outer,
                        }
                    }
                    Next::Msg(Err(_)) => break 'outer,
                }
            }
        }
    }
}
