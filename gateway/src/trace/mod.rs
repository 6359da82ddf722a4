//! Traces: each run is one OpenTelemetry trace, exported over OTLP/HTTP when
//! `SWITCHBOARD_OTLP_ENDPOINT` is set (off by default; when off no trace id is made, no
//! header sent, nothing followed).
//!
//! A run's trace id is stored with the run (`runs.trace`: `TRACEID` or `TRACEID-PARENT`),
//! taken from a W3C `traceparent` on `runs/start` or a trigger, else new; a child run
//! inherits its parent's. Every span id is a function of the run (its run span), of an
//! effect's idempotency key and attempt, or of a record's place in the ledger, so spans
//! made after a restart join the same trace under the same parents, and the `traceparent`
//! an `http` step, LLM call or MCP call carries names the span its effect is exported as.
//! Spans are made from committed ledger records by `export`, never by the engine.

mod export;
mod spans;

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{SpanId, TraceId};
use sha2::{Digest, Sha256};

pub(crate) use export::spawn;

/// At the start of a gateway with traces off: forgets the exporter's cursor (see `export`).
pub(crate) async fn forget(store: &crate::store::Store) -> Result<(), crate::store::StoreError> {
    store.clear_meta(export::CURSOR).await
}

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns traces on for this process (at start, when an endpoint is set).
pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A run's place in its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunTrace {
    pub(crate) trace_id: TraceId,
    /// The span the run's own span hangs under: a caller's (from `traceparent`) or the
    /// parent run's.
    pub(crate) parent: Option<SpanId>,
}

impl RunTrace {
    /// Reads `runs.trace`; a run stored without one (made while traces were off) gets a
    /// trace id derived from its id.
    pub(crate) fn of(stored: Option<&str>, run_id: &str) -> Self {
        let parsed = stored.and_then(|s| {
            let (t, p) = s.split_once('-').map_or((s, None), |(t, p)| (t, Some(p)));
            let trace_id = TraceId::from_hex(t)
                .ok()
                .filter(|t| *t != TraceId::INVALID)?;
            let parent = p.and_then(|p| SpanId::from_hex(p).ok());
            Some(Self { trace_id, parent })
        });
        parsed.unwrap_or_else(|| Self {
            trace_id: TraceId::from_bytes(digest(&["trace", run_id])),
            parent: None,
        })
    }

    fn stored(&self) -> String {
        match self.parent {
            Some(p) => format!("{:032x}-{:016x}", self.trace_id, p),
            None => format!("{:032x}", self.trace_id),
        }
    }
}

/// `runs.trace` for a new run: the caller's trace when `traceparent` is a valid W3C header,
/// else a new one; `None` when traces are off.
pub(crate) fn new_trace(traceparent: Option<&str>) -> Option<String> {
    if !enabled() {
        return None;
    }
    let t = traceparent
        .and_then(parse_traceparent)
        .unwrap_or_else(|| RunTrace {
            trace_id: TraceId::from_bytes(*uuid::Uuid::new_v4().as_bytes()),
            parent: None,
        });
    Some(t.stored())
}

/// `runs.trace` for a child of `parent_id`: the parent's trace, under the parent's span.
pub(crate) fn child_trace(parent_trace: Option<&str>, parent_id: &str) -> Option<String> {
    if !enabled() {
        return None;
    }
    let parent = RunTrace::of(parent_trace, parent_id);
    Some(
        RunTrace {
            trace_id: parent.trace_id,
            parent: Some(run_span(parent_id)),
        }
        .stored(),
    )
}

/// A W3C `traceparent` (`00-TRACEID-SPANID-FLAGS`): the trace and the caller's span.
/// Anything malformed (or all-zero ids, or version `ff`) is ignored, as the spec asks.
pub(crate) fn parse_traceparent(h: &str) -> Option<RunTrace> {
    let mut parts = h.trim().split('-');
    let (v, t, s, f) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |x: &str, n: usize| {
        x.len() == n
            && x.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(v, 2) || v == "ff" || !hex(t, 32) || !hex(s, 16) || !hex(f, 2) {
        return None;
    }
    if v == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id = TraceId::from_hex(t)
        .ok()
        .filter(|t| *t != TraceId::INVALID)?;
    let span = SpanId::from_hex(s).ok().filter(|s| *s != SpanId::INVALID)?;
    Some(RunTrace {
        trace_id,
        parent: Some(span),
    })
}

/// The `traceparent` an effect's outbound call carries: the effect's span in the run's
/// trace. `None` when traces are off.
pub(crate) fn traceparent(
    stored: Option<&str>,
    run_id: &str,
    key: &str,
    attempt: u32,
) -> Option<String> {
    enabled().then(|| {
        let t = RunTrace::of(stored, run_id);
        format!(
            "00-{:032x}-{:016x}-01",
            t.trace_id,
            effect_span(run_id, key, attempt)
        )
    })
}

/// The span of the run itself.
pub(crate) fn run_span(run_id: &str) -> SpanId {
    SpanId::from_bytes(digest(&["run", run_id]))
}

/// The span of one attempt of an effect.
pub(crate) fn effect_span(run_id: &str, key: &str, attempt: u32) -> SpanId {
    SpanId::from_bytes(digest(&["effect", run_id, key, &attempt.to_string()]))
}

/// The span of a step or command that opened at ledger record `seq`.
pub(crate) fn record_span(run_id: &str, seq: u64, what: &str) -> SpanId {
    SpanId::from_bytes(digest(&["record", run_id, &seq.to_string(), what]))
}

/// The first `N` bytes of a hash of `parts` (never all zero: that id is invalid).
fn digest<const N: usize>(parts: &[&str]) -> [u8; N] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let full = h.finalize();
    let mut out = [0u8; N];
    out.copy_from_slice(&full[..N]);
    if out.iter().all(|b| *b == 0) {
        out[N - 1] = 1;
    }
    out
}

#[cfg(test)]
mod tests;
