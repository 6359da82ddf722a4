use protocol::{Actor, Effect, LedgerRecord, RecordStatus};
use serde_json::{Value, json};

use super::*;

fn rec(status: RecordStatus, kind: &str, payload: Value, result: Option<Value>) -> LedgerRecord {
    let mut r: LedgerRecord = serde_json::from_value(json!({
        "run_id": "r", "seq": 1, "step_id": "s.1", "node_id": "s", "status": "completed",
        "started_at": "2026-11-30T10:00:00.000Z", "actor": {"kind": "runner"}, "attempt": 1,
        "prev_hash": "", "record_hash": "",
    }))
    .unwrap();
    r.status = status;
    r.effect = (!kind.is_empty()).then(|| Effect {
        kind: kind.into(),
        payload,
    });
    r.result = result;
    r
}

#[test]
fn a_conversation_with_a_tool_call_reads_as_bubbles() {
    let mut turn = rec(
        RecordStatus::Completed,
        "",
        Value::Null,
        Some(json!({"text": "", "tool_calls": [{}]})),
    );
    turn.idempotency_key = Some("k1".into());
    let mut approval = rec(
        RecordStatus::Completed,
        "",
        Value::Null,
        Some(json!({
        "response": "allow", "approval": {"tool": "mcp:calc/add", "name": "calc_add"}})),
    );
    approval.actor = Actor {
        kind: "client".into(),
        principal: None,
        client_id: Some("telegram:7".into()),
        channel: Some("telegram".into()),
        voter: None,
    };
    let call = rec(
        RecordStatus::Completed,
        "",
        Value::Null,
        Some(json!({
        "call_id": "c1", "name": "calc_add", "tool": "mcp:calc/add",
        "arguments": {"a": 2, "b": 3}, "output": "5"})),
    );
    let mut reply = rec(
        RecordStatus::Completed,
        "",
        Value::Null,
        Some(json!({"text": "It is 5."})),
    );
    reply.idempotency_key = Some("k2".into());
    let say = rec(
        RecordStatus::Completed,
        "say",
        json!({"text": "It is 5."}),
        None,
    );
    let next = rec(
        RecordStatus::Completed,
        "",
        Value::Null,
        Some(json!({"response": "thanks"})),
    );
    let b = bubbles(
        &json!({"text": "2+3?"}),
        &[turn, approval, call, reply, say, next],
    );
    let sides: Vec<&str> = b.iter().map(|b| b.side).collect();
    assert_eq!(sides, ["user", "note", "tool", "bot", "user"]);
    assert_eq!(b[1].text, "allow: mcp:calc/add");
    assert_eq!(b[1].who.as_deref(), Some("telegram:7 via telegram"));
    assert_eq!(b[2].text, "🔧 add(2, 3) → 5");
    assert!(b[2].detail.as_deref().unwrap().contains("\"a\": 2"));
    assert_eq!(
        b[3].text, "It is 5.",
        "the say repeating the reply is shown once"
    );
    assert_eq!(b[4].text, "thanks");
}
