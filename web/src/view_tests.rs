use protocol::{Actor, Effect, LedgerRecord, RecordStatus};
use serde_json::{Value, json};

use super::*;

fn record(status: RecordStatus, kind: &str, payload: Value) -> LedgerRecord {
    LedgerRecord {
        seq: 1,
        run_id: "r".into(),
        step_id: "s".into(),
        node_id: "n".into(),
        status,
        effect: (!kind.is_empty()).then(|| Effect {
            kind: kind.into(),
            payload,
        }),
        result: None,
        error: None,
        started_at: "2026-11-27T10:11:12Z".into(),
        ended_at: None,
        attempt: 1,
        idempotency_key: None,
        actor: Actor::runner(),
        prev_hash: String::new(),
        record_hash: String::new(),
    }
}

#[test]
fn a_ledger_reads_as_a_timeline() {
    let say = entry(&record(
        RecordStatus::Completed,
        "say",
        json!({"text": "Hello"}),
    ));
    assert_eq!(
        say,
        Some(Entry {
            kind: "say",
            text: "Hello".into(),
            who: None,
            at: "10:11:12".into(),
            detail: None,
        })
    );
    let ask = entry(&record(
        RecordStatus::Waiting,
        "ask",
        json!({"prompt": "Approve?"}),
    ));
    assert_eq!(
        ask.map(|e| (e.kind, e.text)),
        Some(("ask", "Approve?".into()))
    );
    let mut answer = record(RecordStatus::Completed, "", json!({}));
    answer.result = Some(json!({"response": "approve"}));
    answer.actor = Actor {
        kind: "principal".into(),
        principal: Some("device:1".into()),
        client_id: Some("telegram:1001".into()),
        channel: Some("telegram".into()),
        voter: None,
    };
    let a = entry(&answer).unwrap_or_else(|| panic!("answer"));
    assert_eq!((a.kind, a.text.as_str()), ("answer", "approve"));
    assert_eq!(a.who.as_deref(), Some("telegram:1001 via telegram"));
    let mut llm = record(RecordStatus::Completed, "", json!({}));
    llm.idempotency_key = Some("r:s:1".into());
    llm.result = Some(json!({"text": "echo: hi"}));
    assert_eq!(entry(&llm).map(|e| e.kind), Some("llm"));
    let mut failed = record(RecordStatus::Failed, "run_failed", json!({}));
    failed.error = Some("boom".into());
    assert_eq!(entry(&failed).map(|e| e.text), Some("Failed: boom".into()));
    let timer = entry(&record(
        RecordStatus::Waiting,
        "wait",
        json!({"until": "2026-11-27T11:00:00Z"}),
    ));
    assert_eq!(timer.map(|e| e.kind), Some("timer"));
    assert!(entry(&record(RecordStatus::Started, "llm", json!({}))).is_none());
}

#[test]
fn a_schema_becomes_a_labelled_form_and_back() {
    let schema = json!({"type": "object", "required": ["target"], "properties": {
        "text": {"type": "string", "description": "What needs approval."},
        "target": {"type": "string", "enum": ["staging", "production"]},
        "replicas": {"type": "integer", "default": 2},
        "ratio": {"type": "number"},
        "dry_run": {"type": "boolean"},
        "labels": {"type": "object"}
    }});
    let f = fields(&schema);
    let kinds: Vec<(&str, &str)> = f.iter().map(|f| (f.name.as_str(), f.kind)).collect();
    assert!(kinds.contains(&("text", "textarea")));
    assert!(kinds.contains(&("target", "select")));
    assert!(kinds.contains(&("replicas", "integer")));
    assert!(kinds.contains(&("dry_run", "checkbox")));
    assert!(kinds.contains(&("labels", "json")));
    let target = f
        .iter()
        .find(|f| f.name == "target")
        .cloned()
        .unwrap_or_else(|| panic!("target"));
    assert!(target.required);
    assert_eq!(target.options, vec!["staging", "production"]);
    let dry = f
        .iter()
        .find(|f| f.name == "dry_run")
        .map(|f| f.label.clone());
    assert_eq!(dry.as_deref(), Some("Dry run"));

    let form = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let ok = input(
        &f,
        &form(&[
            ("text", " ship v2 "),
            ("target", "staging"),
            ("replicas", "3"),
            ("dry_run", "on"),
            ("labels", "{\"a\":1}"),
        ]),
    );
    assert_eq!(
        ok,
        Ok(
            json!({"text": "ship v2", "target": "staging", "replicas": 3, "dry_run": true, "labels": {"a": 1}})
        )
    );
    let bad = input(&f, &form(&[("replicas", "many"), ("labels", "{")])).unwrap_err();
    assert!(bad.contains(&"Target is required".to_owned()), "{bad:?}");
    assert!(
        bad.contains(&"Replicas must be a whole number".to_owned()),
        "{bad:?}"
    );
    assert!(
        bad.contains(&"Labels must be valid JSON".to_owned()),
        "{bad:?}"
    );
    assert!(fields(&json!({})).is_empty());
}
