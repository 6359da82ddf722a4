use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use protocol::{Actor, Effect, LedgerRecord, RecordStatus};

use super::spans::{OpenSteps, RunInfo, spans_of};
use super::*;

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_valid_traceparent_gives_the_trace_and_the_callers_span() {
    let t = parse_traceparent(TP).unwrap();
    assert_eq!(
        format!("{:032x}", t.trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(t.parent, SpanId::from_hex("00f067aa0ba902b7").ok());
    assert_eq!(
        RunTrace::of(Some(&t.stored()), "r1"),
        t,
        "stored and read back"
    );
}

#[test]
fn a_malformed_traceparent_is_ignored() {
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
    ] {
        assert!(parse_traceparent(bad).is_none(), "{bad}");
    }
    // A later version may carry more fields.
    assert!(parse_traceparent(&TP.replace("00-", "01-").replacen("-01", "-01-x", 1)).is_some());
}

#[test]
fn ids_are_stable_and_distinct() {
    assert_eq!(run_span("a"), run_span("a"));
    assert_ne!(run_span("a"), run_span("b"));
    assert_ne!(effect_span("a", "k", 1), effect_span("a", "k", 2));
    let derived = RunTrace::of(None, "r1");
    assert_eq!(
        derived,
        RunTrace::of(None, "r1"),
        "a run stored without a trace"
    );
    assert_ne!(derived.trace_id, TraceId::INVALID);
}

fn rec(seq: u64, step: &str, status: RecordStatus, effect: &str) -> LedgerRecord {
    LedgerRecord {
        seq,
        run_id: "r1".into(),
        step_id: step.into(),
        node_id: "n".into(),
        status,
        effect: (!effect.is_empty()).then(|| Effect {
            kind: effect.into(),
            payload: serde_json::Value::Null,
        }),
        result: None,
        error: None,
        started_at: format!("2026-11-30T10:00:0{seq}.000Z"),
        ended_at: (status != RecordStatus::Started && status != RecordStatus::Waiting)
            .then(|| format!("2026-11-30T10:00:0{seq}.500Z")),
        attempt: 1,
        idempotency_key: None,
        actor: Actor::runner(),
        prev_hash: String::new(),
        record_hash: String::new(),
    }
}

#[test]
fn records_become_spans_under_the_run_span() {
    let trace = parse_traceparent(TP).unwrap();
    let run = RunInfo {
        run_id: "r1".into(),
        flow: "agent".into(),
        trace,
        remote_parent: true,
        created_at: "2026-11-30T10:00:00.000Z".into(),
        from_start: true,
    };
    let mut open = OpenSteps::new();
    let mut start = rec(1, "start", RecordStatus::Started, "run_started");
    start.actor.kind = "client".into();
    let spans = spans_of(&start, &run, &mut open);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "command run_started");

    let mut call = rec(2, "answer", RecordStatus::Started, "llm");
    call.idempotency_key = Some("r1:answer:1".into());
    assert!(
        spans_of(&call, &run, &mut open).is_empty(),
        "an effect opens"
    );
    let mut done = rec(3, "answer", RecordStatus::Completed, "");
    done.idempotency_key = Some("r1:answer:1".into());
    let spans = spans_of(&done, &run, &mut open);
    let s = &spans[0];
    assert_eq!(s.name, "llm answer");
    assert_eq!(
        s.span_context.span_id(),
        effect_span("r1", "r1:answer:1", 1)
    );
    assert_eq!(s.parent_span_id, run_span("r1"));
    assert_eq!(s.span_kind, SpanKind::Client);
    assert_eq!(s.span_context.trace_id(), trace.trace_id);
    assert!(s.end_time > s.start_time, "from the call to its result");

    let mut failed = rec(4, "run", RecordStatus::Failed, "run_failed");
    failed.error = Some("boom".into());
    let spans = spans_of(&failed, &run, &mut open);
    let root = &spans[0];
    assert_eq!(root.name, "run agent");
    assert_eq!(root.span_context.span_id(), run_span("r1"));
    assert_eq!(
        Some(root.parent_span_id),
        trace.parent,
        "under the caller's span"
    );
    assert!(root.parent_span_is_remote);
    assert_eq!(root.status, Status::error("boom"));
    assert!(open.is_empty());
}
