//! What a blocked run shows while it waits: the ledger record of the wait and the run
//! summary's `waiting` (prompt and choices of an ask or an approval, a timer's time, an
//! event's name, a child run).

use protocol::{WaitReason, Waiting};
use serde_json::{Value, json};

use super::Pending;

/// When the wait's timer fires: a timer's time, an ask's deadline, or a team prompt's next
/// reminder or escalation, whichever is first (rounded up to a millisecond).
pub(super) fn wake_at(p: &Pending) -> Option<chrono::DateTime<chrono::Utc>> {
    let at = match p {
        Pending::Timer { until, .. } => Some(*until),
        Pending::Ask { deadline, team, .. } => {
            let team = team.as_ref().and_then(super::TeamState::next_due);
            match (*deadline, team) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        _ => None,
    };
    at.map(super::exec::ceil_ms)
}

pub(super) fn ids(p: &Pending) -> (String, String) {
    match p {
        Pending::Ask { step_id, node, .. }
        | Pending::Timer { step_id, node, .. }
        | Pending::Event { step_id, node, .. }
        | Pending::Child { step_id, node, .. }
        | Pending::Effect { step_id, node, .. } => (step_id.clone(), node.clone()),
    }
}

/// The ledger effect and the run summary's `waiting` for a wait.
pub(super) fn describe_wait(p: &Pending) -> (&'static str, Value, Waiting) {
    let mut w = Waiting {
        reason: WaitReason::User,
        wait_key: p.wait_key().to_owned(),
        prompt: None,
        choices: Vec::new(),
        allow_free_text: false,
        until: None,
        event: None,
        child_run_id: None,
        approval: false,
        approvers: Vec::new(),
        quorum: 0,
        votes: Vec::new(),
    };
    let (kind, payload) = match p {
        Pending::Ask {
            prompt,
            choices,
            allow_free_text,
            deadline,
            tool,
            team,
            ..
        } => {
            w.reason = WaitReason::User;
            w.prompt = Some(prompt.clone());
            w.choices = choices.clone();
            w.allow_free_text = *allow_free_text;
            w.until = deadline.map(super::ts);
            w.approval = tool.is_some();
            let mut payload = json!({"wait_key": w.wait_key, "prompt": prompt, "choices": choices,
                "allow_free_text": allow_free_text, "timeout_at": w.until});
            if let Some(tool) = tool {
                payload["approval"] = tool.clone();
            }
            if let Some(t) = team {
                w.approvers = t.approvers.clone();
                w.quorum = t.quorum;
                w.votes = t.votes.clone();
                payload["approvers"] = json!(t.approvers);
                payload["quorum"] = json!(t.quorum);
            }
            ("ask", payload)
        }
        Pending::Timer { until, .. } => {
            w.reason = WaitReason::Until;
            w.until = Some(super::ts(*until));
            ("wait", json!({"wait_key": w.wait_key, "until": w.until}))
        }
        Pending::Event { event, key, .. } => {
            w.reason = WaitReason::Event;
            w.event = Some(event.clone());
            (
                "wait_event",
                json!({"wait_key": w.wait_key, "event": event, "key": key}),
            )
        }
        Pending::Child { child_run_id, .. } => {
            w.reason = WaitReason::Subworkflow;
            w.child_run_id = Some(child_run_id.clone());
            (
                "call",
                json!({"wait_key": w.wait_key, "child_run_id": child_run_id}),
            )
        }
        Pending::Effect { .. } => ("effect", Value::Null),
    };
    (kind, payload, w)
}
