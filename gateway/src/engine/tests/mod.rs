//! The engine is pure: these tests drive flows with fixed inputs and clocks.

use chrono::{TimeZone, Utc};
use protocol::{Actor, RecordStatus, RunStatus};
use serde_json::{Value, json};

use super::*;
use crate::flows::parse::compile;

fn flow(src: &str) -> crate::flows::Flow {
    compile("t.yaml", "t", src).unwrap()
}

fn ctx<'a>(input: &'a Value, now_s: i64) -> Ctx<'a> {
    Ctx {
        run_id: "r1",
        bundle_id: "t",
        session_id: Some("s1"),
        input,
        history: &[],
        now: Utc.timestamp_opt(1_700_000_000 + now_s, 0).unwrap(),
    }
}

/// An effect that failed with "boom".
fn boom() -> Input {
    Input::EffectDone {
        result: Err("boom".into()),
    }
}

fn answer(key: &str, r: Value) -> Input {
    Input::Answer {
        wait_key: key.into(),
        response: r,
        actor: Actor::runner(),
    }
}

#[test]
fn approval_flow_waits_then_completes() {
    let f = flow(crate::flows::registry::EMBEDDED[2].1);
    let input = json!({"text": "deploy"});
    let mut st = RunState::default();
    let t = step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    assert_eq!(t.status(), RunStatus::Waiting);
    let w = t.waiting.unwrap();
    assert_eq!((w.wait_key.as_str(), w.choices.len()), ("decide.1", 2));
    assert_eq!(t.records[0].status, RecordStatus::Waiting);

    // (Refusals of this wait are in the table: `table::CASES`, "ask: refusals".)
    let t = step(&f, &mut st, &ctx(&input, 1), answer("decide.1", json!("2"))).unwrap();
    assert_eq!(t.status(), RunStatus::Completed);
    assert_eq!(t.output, Some(json!({"decision": "reject"})));
    let kinds: Vec<_> = t
        .records
        .iter()
        .map(|r| r.effect.as_ref().map(|e| e.kind.clone()))
        .collect();
    assert_eq!(kinds[1], Some("say".into()));
}

#[test]
fn same_inputs_give_the_same_transition() {
    let f = flow("steps:\n  - set: {n: \"{{ input.n * 2 }}\"}\n  - output: \"{{ vars.n }}\"\n");
    let input = json!({"n": 21});
    let (mut a, mut b) = (RunState::default(), RunState::default());
    let ta = step(&f, &mut a, &ctx(&input, 5), Input::Advance).unwrap();
    let tb = step(&f, &mut b, &ctx(&input, 5), Input::Advance).unwrap();
    assert_eq!(ta.records, tb.records);
    assert_eq!(a, b);
    assert_eq!(ta.output, Some(json!(42)));
}

#[test]
fn loops_stop_at_max_and_while() {
    let f = flow(
        "steps:\n  - set: {i: 0}\n  - loop:\n      max: 5\n      while: \"vars.i < 3\"\n      steps:\n        - set: {i: \"{{ vars.i + 1 }}\"}\n  - output: \"{{ vars.i }}\"\n",
    );
    let input = json!({});
    let t = step(
        &f,
        &mut RunState::default(),
        &ctx(&input, 0),
        Input::Advance,
    )
    .unwrap();
    assert_eq!(t.output, Some(json!(3)));
    let f = flow(
        "steps:\n  - set: {i: 0}\n  - loop:\n      max: 4\n      steps:\n        - set: {i: \"{{ vars.i + 1 }}\"}\n  - output: \"{{ vars.i }}\"\n",
    );
    let t = step(
        &f,
        &mut RunState::default(),
        &ctx(&input, 0),
        Input::Advance,
    )
    .unwrap();
    assert_eq!(t.output, Some(json!(4)));
}

#[test]
fn wait_fires_only_when_due() {
    let f = flow("steps:\n  - wait: 10s\n  - output: done\n");
    let input = json!({});
    let mut st = RunState::default();
    let t = step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    assert_eq!(
        t.wake_at,
        Some(Utc.timestamp_opt(1_700_000_010, 0).unwrap())
    );
    let t = step(&f, &mut st, &ctx(&input, 5), Input::TimerDue).unwrap();
    assert!(t.records.is_empty() && t.status.is_none());
    let t = step(&f, &mut st, &ctx(&input, 10), Input::TimerDue).unwrap();
    assert_eq!(t.status(), RunStatus::Completed);
}

#[test]
fn a_timer_is_stored_due_no_earlier_than_the_engine_fires_it() {
    let f = flow("steps:\n  - wait: 10s\n  - output: done\n");
    let input = json!({});
    let mut st = RunState::default();
    // A clock between two milliseconds: the stored wake time must not round down.
    let mut c = ctx(&input, 0);
    c.now += chrono::Duration::nanoseconds(1_500_000);
    let t = step(&f, &mut st, &c, Input::Advance).unwrap();
    let wake = t.wake_at.unwrap();
    assert_eq!(wake, Utc.timestamp_opt(1_700_000_010, 2_000_000).unwrap());
    assert_eq!(crate::engine::ts(wake), "2023-11-14T22:13:30.002Z");
    // The timer loop finds it due at exactly that millisecond; so does the engine.
    let mut at = ctx(&input, 10);
    at.now = wake;
    let t = step(&f, &mut st, &at, Input::TimerDue).unwrap();
    assert_eq!(t.status(), RunStatus::Completed);
}

#[test]
fn ask_timeout_uses_the_default() {
    let f = flow(
        "steps:\n  - id: q\n    ask: go?\n    timeout: 1m\n    default: \"no\"\n  - output: \"{{ steps.q.response }}\"\n",
    );
    let input = json!({});
    let mut st = RunState::default();
    step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    let t = step(&f, &mut st, &ctx(&input, 60), Input::TimerDue).unwrap();
    assert_eq!(t.output, Some(json!("no")));
}

#[test]
fn failed_effects_retry_then_fail_the_run() {
    let f = flow("steps:\n  - id: r\n    llm: hi\n    retries: 1\n");
    let input = json!({});
    let mut st = RunState::default();
    let t = step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    assert_eq!(t.records[0].idempotency_key.as_deref(), Some("r1:r.1:1"));
    let t = step(&f, &mut st, &ctx(&input, 1), boom()).unwrap();
    assert_eq!(t.records.len(), 2, "failed attempt 1, started attempt 2");
    assert_eq!(t.records[1].attempt, 2);
    let t = step(&f, &mut st, &ctx(&input, 2), boom()).unwrap();
    assert_eq!(t.status(), RunStatus::Failed);
    assert!(t.error.unwrap().contains("boom"));
}

#[test]
fn choices_match_loosely() {
    let c = vec!["approve".to_string(), "reject".to_string()];
    for s in ["approve", "Approve.", " APPROVE ", "1"] {
        assert_eq!(
            match_choice(&json!(s), &c, false).unwrap(),
            json!("approve"),
            "{s}"
        );
    }
    assert_eq!(match_choice(&json!(2), &c, false).unwrap(), json!("reject"));
    assert!(match_choice(&json!("3"), &c, false).is_err());
    assert_eq!(
        match_choice(&json!("later"), &c, true).unwrap(),
        json!("later")
    );
}

mod agent;
mod table;
mod team;

#[test]
fn event_keys_name_their_scope_and_a_run_without_a_session_is_its_own() {
    use protocol::EventScope::{Global, Run, Session};
    let key = |scope, session| event_key(scope, "go", "r1", session);
    assert_eq!(key(Run, Some("s1")), "run:r1:go");
    assert_eq!(key(Session, Some("s1")), "session:s1:go");
    assert_eq!(key(Session, None), "session:run:r1:go");
    assert_eq!(key(Global, None), "global:go");
    assert_eq!(session_key("r1", None), "run:r1");
}
