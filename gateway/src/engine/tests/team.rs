//! Prompts for a team: votes, quorum, `reject_on: any`, reminders and escalation as the
//! run's timers.

use protocol::{Actor, RunStatus};
use serde_json::json;

use super::{ctx, flow};
use crate::engine::*;

const GATE: &str = "steps:\n  - id: gate\n    ask: Ship it?\n    choices: [approve, reject]\n    approvers: [\"person:alice\", \"person:bob\", \"key:ci\"]\n    quorum: 2\n    remind: 1h\n    remind_max: 2\n    escalate: {after: 4h, notify: [\"email:boss@example.com\"], approvers: [\"person:boss\"]}\n  - output: \"{{ steps.gate.response }}\"\n";

fn vote(voter: &str, choice: &str) -> Input {
    Input::Answer {
        wait_key: "gate.1".into(),
        response: json!(choice),
        actor: Actor {
            kind: "client".into(),
            principal: None,
            client_id: None,
            channel: Some("api".into()),
            voter: Some(voter.into()),
        },
    }
}

#[test]
fn the_second_agreeing_vote_ends_the_prompt_and_a_person_votes_once() {
    let f = flow(GATE);
    let input = json!({});
    let mut st = RunState::default();
    let t = step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    let w = t.waiting.unwrap();
    assert_eq!((w.quorum, w.approvers.len()), (2, 3));
    let t = step(
        &f,
        &mut st,
        &ctx(&input, 1),
        vote("person:alice", "approve"),
    )
    .unwrap();
    assert_eq!(t.status(), RunStatus::Waiting);
    assert_eq!(t.records.len(), 1, "a vote record, no new prompt");
    assert_eq!(
        t.records[0].result.as_ref().unwrap()["tally"],
        json!({"approve": 1, "reject": 0})
    );
    assert_eq!(t.waiting.unwrap().votes.len(), 1);
    let again = step(&f, &mut st, &ctx(&input, 2), vote("person:alice", "reject"));
    assert!(matches!(again, Err(Reject::AlreadyVoted(_))), "{again:?}");
    let t = step(&f, &mut st, &ctx(&input, 3), vote("person:bob", "reject")).unwrap();
    assert_eq!(t.status(), RunStatus::Waiting, "no quorum yet");
    let t = step(&f, &mut st, &ctx(&input, 4), vote("key:ci", "approve")).unwrap();
    assert_eq!(t.output, Some(json!("approve")));
}

#[test]
fn one_reject_ends_it_with_reject_on_any() {
    let f = flow(&GATE.replace("    quorum: 2\n", "    quorum: 2\n    reject_on: any\n"));
    let input = json!({});
    let mut st = RunState::default();
    step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    let t = step(&f, &mut st, &ctx(&input, 1), vote("person:bob", "reject")).unwrap();
    assert_eq!(t.output, Some(json!("reject")));
}

#[test]
fn reminders_and_escalation_are_timers_and_records() {
    let f = flow(GATE);
    let input = json!({});
    let mut st = RunState::default();
    let t = step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    let start = ctx(&input, 0).now;
    assert_eq!(t.wake_at, Some(start + chrono::Duration::hours(1)));
    let t = step(&f, &mut st, &ctx(&input, 3600), Input::TimerDue).unwrap();
    let kinds: Vec<_> = t
        .records
        .iter()
        .map(|r| r.effect.as_ref().unwrap().kind.as_str())
        .collect();
    assert_eq!(kinds, ["remind"]);
    assert_eq!(t.records[0].step_id, "gate.1/remind1");
    assert_eq!(t.wake_at, Some(start + chrono::Duration::hours(2)));
    let t = step(&f, &mut st, &ctx(&input, 7200), Input::TimerDue).unwrap();
    assert_eq!(t.records[0].step_id, "gate.1/remind2");
    assert_eq!(
        t.wake_at,
        Some(start + chrono::Duration::hours(4)),
        "remind_max reached: the escalation is next"
    );
    let t = step(&f, &mut st, &ctx(&input, 4 * 3600), Input::TimerDue).unwrap();
    assert_eq!(t.records[0].effect.as_ref().unwrap().kind, "escalate");
    assert_eq!(t.notify, ["email:boss@example.com"]);
    assert!(
        t.waiting
            .unwrap()
            .approvers
            .contains(&"person:boss".to_owned())
    );
    assert_eq!(t.wake_at, None);
}

#[test]
fn team_options_are_checked_where_they_are_written() {
    let cases = [
        ("    approvers: [\"alice\"]\n", "3:17", "is not an approver"),
        ("    quorum: 2\n", "3:13", "needs `approvers:`"),
        (
            "    approvers: [\"person:a\"]\n    reject_on: all\n",
            "4:16",
            "must be `any`",
        ),
        (
            "    approvers: [\"person:a\"]\n    escalate: {after: 1h}\n",
            "4:15",
            "`notify:` or `approvers:`",
        ),
        (
            "    approvers: [\"person:a\"]\n    escalate: {after: 1h, notify: [\"boss\"]}\n",
            "4:36",
            "not a channel target",
        ),
    ];
    for (opts, at, msg) in cases {
        let src = format!("steps:\n  - ask: ok?\n{opts}    choices: [yes, no]\n");
        let e = crate::flows::parse::compile("t.yaml", "t", &src)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("t.yaml:{at}:")) && e.contains(msg),
            "{opts}: {e}"
        );
    }
}

#[test]
fn a_timer_before_anything_is_due_changes_nothing() {
    let f = flow(GATE);
    let input = json!({});
    let mut st = RunState::default();
    step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    let t = step(&f, &mut st, &ctx(&input, 10), Input::TimerDue).unwrap();
    assert!(
        t.records.is_empty() && t.status.is_none(),
        "no transition: {t:?}"
    );
}

#[test]
fn a_team_prompt_cannot_default_to_approving_and_timers_are_bounded() {
    let src = "steps:\n  - ask: ok?\n    choices: [approve, reject]\n    approvers: [\"admin\"]\n    timeout: 1h\n    default: approve\n";
    let e = crate::flows::parse::compile("t.yaml", "t", src)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("t.yaml:6:14:") && e.contains("without its quorum"),
        "{e}"
    );
    let src = "steps:\n  - ask: ok?\n    choices: [approve, reject]\n    approvers: [\"admin\"]\n    remind: 0s\n";
    let e = crate::flows::parse::compile("t.yaml", "t", src)
        .unwrap_err()
        .to_string();
    assert!(e.contains("remind must be from 1s to 365d"), "{e}");
}
