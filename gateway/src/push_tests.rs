use super::*;
use protocol::{PushSubscriptionRequest, Vote, WaitReason};
use serde_json::json;

fn request(v: serde_json::Value) -> PushSubscriptionRequest {
    serde_json::from_value(v).unwrap()
}

const P256DH: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

#[test]
fn a_subscription_needs_an_https_push_service_and_real_keys() {
    let net = crate::net::NetPolicy::default();
    let ok = |endpoint: &str| {
        check_subscription(
            &request(json!({"endpoint": endpoint, "keys": {"p256dh": P256DH, "auth": AUTH}})),
            &net,
        )
    };
    assert_eq!(ok("https://fcm.googleapis.com/fcm/send/abc"), Ok(()));
    assert!(
        ok("http://push.example.com/x")
            .unwrap_err()
            .contains("https")
    );
    assert!(
        ok("https://10.0.0.1/x")
            .unwrap_err()
            .contains("SWITCHBOARD_HTTP_ALLOW")
    );
    assert!(ok("not a url").unwrap_err().contains("`endpoint`"));
    let long = format!("https://push.example.com/{}", "a".repeat(2100));
    assert!(ok(&long).unwrap_err().contains("2048"));
    let keys = |p256dh: &str, auth: &str| {
        check_subscription(
            &request(json!({"endpoint": "https://push.example.com/1",
                            "keys": {"p256dh": p256dh, "auth": auth}})),
            &net,
        )
    };
    assert!(keys("AAAA", AUTH).unwrap_err().contains("keys.p256dh"));
    assert!(keys(P256DH, "AAAA").unwrap_err().contains("keys.auth"));
    assert!(
        keys(&P256DH.replace("BC", "AC"), AUTH)
            .unwrap_err()
            .contains("uncompressed")
    );
    // A browser's `toJSON()` carries `expirationTime`; anything else is refused by name.
    let extra = serde_json::from_value::<PushSubscriptionRequest>(json!({
        "endpoint": "https://x", "keys": {"p256dh": P256DH, "auth": AUTH}, "colour": 1}));
    assert!(extra.unwrap_err().to_string().contains("colour"));
    let browser = request(
        json!({"endpoint": "https://push.example.com/1", "expirationTime": null,
                                 "keys": {"p256dh": P256DH, "auth": AUTH}}),
    );
    assert_eq!(check_subscription(&browser, &net), Ok(()));
    // A push service on this network only when the operator allows it.
    let local = crate::net::NetPolicy {
        allow: vec![crate::net::AllowEntry::parse("127.0.0.1").unwrap()],
        ..Default::default()
    };
    let r = request(
        json!({"endpoint": "http://127.0.0.1:9/p", "keys": {"p256dh": P256DH, "auth": AUTH}}),
    );
    assert_eq!(check_subscription(&r, &local), Ok(()));
    assert!(check_subscription(&r, &net).is_err());
}

fn waiting(approvers: &[&str], votes: &[&str]) -> Waiting {
    let mut w: Waiting = serde_json::from_value(json!({
        "reason": "user", "wait_key": "gate", "prompt": "Ship it?", "choices": ["approve", "reject"],
    }))
    .unwrap();
    assert_eq!(w.reason, WaitReason::User);
    w.approvers = approvers.iter().map(|s| s.to_string()).collect();
    w.votes = votes
        .iter()
        .map(|v| Vote {
            voter: v.to_string(),
            choice: "approve".into(),
            channel: None,
        })
        .collect();
    w
}

fn token(kind: &str, name: &str, scopes: &[&str]) -> TokenRow {
    TokenRow {
        id: format!("t-{name}"),
        kind: kind.into(),
        name: name.into(),
        hash: String::new(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        created_at: String::new(),
        last_used_at: None,
        revoked_at: None,
    }
}

#[test]
fn only_who_may_answer_and_has_not_voted_is_notified() {
    let dir = Directory {
        people: vec![("device:alices-phone".into(), "alice".into())],
        groups: vec![("ops".into(), "person:alice".into())],
    };
    let phone = token("device", "alices-phone", &["read", "run", "command"]);
    let viewer = token("key", "dashboard", &["read"]);
    let other = token("device", "bobs-phone", &["read", "run", "command"]);
    assert!(may_answer(&dir, &waiting(&[], &[]), &phone));
    assert!(
        !may_answer(&dir, &waiting(&[], &[]), &viewer),
        "read-only keys cannot answer"
    );
    assert!(may_answer(&dir, &waiting(&["group:ops"], &[]), &phone));
    assert!(!may_answer(&dir, &waiting(&["group:ops"], &[]), &other));
    assert!(
        !may_answer(&dir, &waiting(&["group:ops"], &["person:alice"]), &phone),
        "voted"
    );
    let mut revoked = phone.clone();
    revoked.revoked_at = Some("2026-01-01T00:00:00Z".into());
    assert!(!may_answer(&dir, &waiting(&[], &[]), &revoked));
}

#[test]
fn a_notice_fits_a_push_message() {
    let run: RunSummary = serde_json::from_value(json!({
        "run_id": "r1", "bundle_id": "release", "flow_id": "release", "flow_hash": "h",
        "status": "waiting", "ledger_len": 1, "created_at": "x", "updated_at": "x",
    }))
    .unwrap();
    let mut w = waiting(&[], &[]);
    w.prompt = Some("é".repeat(5000));
    w.choices = (0..50).map(|i| format!("{i}{}", "x".repeat(500))).collect();
    let n = notice("reminder", &run, &w);
    assert_eq!(n.kind, "reminder");
    assert!(n.title.contains("release"));
    assert_eq!(n.choices.len(), MAX_CHOICES);
    assert_eq!(n.url, "/app/runs/r1");
    assert_eq!(n.tag, "r1/gate");
    let bytes = serde_json::to_vec(&n).unwrap().len() + 80; // + the delivery id
    assert!(bytes <= 3052, "{bytes} bytes do not fit");
}
