//! Ledger records to spans (pure: no I/O). A step or effect opens with its `started` or
//! `waiting` record and becomes one span when a record of the same step ends it; a record
//! that opens and ends at once is a span of its own; a record a client caused (a start, an
//! answer, a pause, a cancel) is also a `command` span; the run's end record makes the run
//! span, whose start is the run's creation. Every span hangs under the run span, which
//! hangs under the caller's span or the parent run's.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use protocol::{LedgerRecord, RecordStatus};

use super::{RunTrace, effect_span, record_span, run_span};

/// What the exporter knows of a run.
#[derive(Debug, Clone)]
pub(crate) struct RunInfo {
    pub(crate) run_id: String,
    pub(crate) flow: String,
    pub(crate) trace: RunTrace,
    /// Whether the run span's parent is a caller's (remote) rather than a parent run's.
    pub(crate) remote_parent: bool,
    pub(crate) created_at: String,
    /// Whether its first record this process saw was its start: every step it opened since
    /// is known, and none needs looking up.
    pub(crate) from_start: bool,
}

/// A step waiting for the record that ends it.
#[derive(Debug, Clone)]
pub(crate) struct Open {
    start: SystemTime,
    name: String,
    span: opentelemetry::trace::SpanId,
    kind: SpanKind,
    /// The opening record's effect type.
    effect: String,
}

/// Open steps by `(run, step)`.
pub(crate) type OpenSteps = HashMap<(String, String), Open>;

fn time(ts: &str) -> SystemTime {
    chrono::DateTime::parse_from_rfc3339(ts)
        .map(SystemTime::from)
        .unwrap_or_else(|_| SystemTime::now())
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("switchboard")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

fn status_of(rec: &LedgerRecord) -> Status {
    match rec.status {
        RecordStatus::Failed => Status::error(rec.error.clone().unwrap_or_else(|| "failed".into())),
        RecordStatus::Cancelled => Status::error("cancelled"),
        _ => Status::Ok,
    }
}

fn status_text(s: RecordStatus) -> &'static str {
    match s {
        RecordStatus::Started => "started",
        RecordStatus::Completed => "completed",
        RecordStatus::Waiting => "waiting",
        RecordStatus::Failed => "failed",
        RecordStatus::Cancelled => "cancelled",
    }
}

struct Shape {
    name: String,
    span: opentelemetry::trace::SpanId,
    parent: opentelemetry::trace::SpanId,
    remote: bool,
    start: SystemTime,
    end: SystemTime,
    kind: SpanKind,
    effect: String,
}

fn span(run: &RunInfo, rec: &LedgerRecord, s: Shape) -> SpanData {
    let mut attributes = vec![
        KeyValue::new("switchboard.run_id", run.run_id.clone()),
        KeyValue::new("switchboard.flow", run.flow.clone()),
        KeyValue::new("switchboard.step_id", rec.step_id.clone()),
        KeyValue::new("switchboard.status", status_text(rec.status)),
        KeyValue::new("switchboard.seq", rec.seq as i64),
    ];
    if !s.effect.is_empty() {
        attributes.push(KeyValue::new("switchboard.effect", s.effect));
    }
    if rec.actor.kind == "client" {
        let who = rec.actor.principal.clone().unwrap_or_default();
        attributes.push(KeyValue::new("switchboard.actor", who));
    }
    SpanData {
        span_context: SpanContext::new(
            run.trace.trace_id,
            s.span,
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: s.parent,
        parent_span_is_remote: s.remote,
        span_kind: s.kind,
        name: Cow::Owned(s.name),
        start_time: s.start,
        end_time: s.end.max(s.start),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: status_of(rec),
        instrumentation_scope: scope(),
    }
}

pub(crate) fn is_run_end(rec: &LedgerRecord) -> bool {
    matches!(
        rec.effect_kind(),
        "run_completed" | "run_failed" | "run_cancelled"
    )
}

/// Whether `rec` ends a step that an earlier record opened (or ends at once).
pub(crate) fn closes(rec: &LedgerRecord) -> bool {
    !matches!(rec.status, RecordStatus::Started | RecordStatus::Waiting)
        && !is_run_end(rec)
        && rec.effect_kind() != "run_started"
}

/// Whether `rec` opens a step.
pub(crate) fn opens(rec: &LedgerRecord) -> bool {
    matches!(rec.status, RecordStatus::Started | RecordStatus::Waiting)
        && rec.effect_kind() != "run_started"
}

/// The spans `rec` completes (none for a record that only opens a step).
pub(crate) fn spans_of(rec: &LedgerRecord, run: &RunInfo, open: &mut OpenSteps) -> Vec<SpanData> {
    let mut out = Vec::new();
    let run_id = &run.run_id;
    let this_run = run_span(run_id);
    let at = time(&rec.started_at);
    let end = rec.ended_at.as_deref().map_or(at, time);
    if rec.actor.kind == "client" {
        let what = match rec.effect_kind() {
            "" => status_text(rec.status),
            k => k,
        };
        out.push(span(
            run,
            rec,
            Shape {
                name: format!("command {what}"),
                span: record_span(run_id, rec.seq, "command"),
                parent: this_run,
                remote: false,
                start: at,
                end,
                kind: SpanKind::Server,
                effect: rec.effect_kind().to_owned(),
            },
        ));
    }
    if is_run_end(rec) {
        open.retain(|(r, _), _| r != run_id);
        out.push(span(
            run,
            rec,
            Shape {
                name: format!("run {}", run.flow),
                span: this_run,
                parent: run
                    .trace
                    .parent
                    .unwrap_or(opentelemetry::trace::SpanId::INVALID),
                remote: run.remote_parent,
                start: time(&run.created_at),
                end,
                kind: SpanKind::Internal,
                effect: rec.effect_kind().to_owned(),
            },
        ));
        return out;
    }
    if rec.effect_kind() == "run_started" {
        return out;
    }
    let key = (run_id.clone(), rec.step_id.clone());
    let kind = rec.effect_kind();
    let span_id = match &rec.idempotency_key {
        Some(k) => effect_span(run_id, k, rec.attempt),
        None => record_span(run_id, rec.seq, "step"),
    };
    let name = match kind {
        "" => format!("step {}", rec.step_id),
        k => format!("{k} {}", rec.step_id),
    };
    if matches!(rec.status, RecordStatus::Started | RecordStatus::Waiting) {
        // An effect is a call out of the gateway; anything else (an ask, a timer) is not.
        let span_kind = if matches!(kind, "llm" | "tool" | "http") {
            SpanKind::Client
        } else {
            SpanKind::Internal
        };
        open.insert(
            key,
            Open {
                start: at,
                name,
                span: span_id,
                kind: span_kind,
                effect: kind.to_owned(),
            },
        );
        return out;
    }
    let shape = match open.remove(&key) {
        Some(o) => Shape {
            name: o.name,
            span: o.span,
            parent: this_run,
            remote: false,
            start: o.start,
            end,
            kind: o.kind,
            effect: o.effect,
        },
        None => Shape {
            name,
            span: span_id,
            parent: this_run,
            remote: false,
            start: at,
            end,
            kind: SpanKind::Internal,
            effect: kind.to_owned(),
        },
    };
    out.push(span(run, rec, shape));
    out
}
