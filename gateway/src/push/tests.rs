use super::*;
use protocol::{PushSubscriptionRequest, Vote, WaitReason};
use serde_json::json;

type R<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn raw(s: &str) -> R<Vec<u8>> {
    Ok(URL_SAFE_NO_PAD.decode(s)?)
}

fn request(v: serde_json::Value) -> R<PushSubscriptionRequest> {
    Ok(serde_json::from_value(v)?)
}

const P256DH: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

#[test]
fn a_subscription_needs_a_known_push_service_and_real_keys() -> R {
    let net = crate::net::NetPolicy::default();
    let ok = |endpoint: &str| {
        request(json!({"endpoint": endpoint, "keys": {"p256dh": P256DH, "auth": AUTH}}))
            .map_err(|e| e.to_string())
            .and_then(|r| check_subscription(&r, &net).map(|_| ()))
    };
    assert_eq!(ok("https://fcm.googleapis.com/fcm/send/abc"), Ok(()));
    assert_eq!(ok("https://web.push.apple.com/QGuQ"), Ok(()));
    assert!(
        ok("http://fcm.googleapis.com/x")
            .unwrap_err()
            .contains("not a push service")
    );
    assert!(
        ok("https://push.example.com/x")
            .unwrap_err()
            .contains("SWITCHBOARD_PUSH_SERVICES")
    );
    assert!(ok("https://evil.com/fcm.googleapis.com").is_err());
    assert!(ok("https://push.apple.com.evil.com/x").is_err());
    assert!(ok("not a url").unwrap_err().contains("`endpoint`"));
    let long = format!("https://fcm.googleapis.com/{}", "a".repeat(2100));
    assert!(ok(&long).unwrap_err().contains("2048"));
    let keys = |p256dh: &str, auth: &str| {
        request(json!({"endpoint": "https://fcm.googleapis.com/1",
                       "keys": {"p256dh": p256dh, "auth": auth}}))
        .map_err(|e| e.to_string())
        .and_then(|r| check_subscription(&r, &net))
    };
    assert!(keys("AAAA", AUTH).unwrap_err().contains("keys.p256dh"));
    assert!(keys(P256DH, "AAAA").unwrap_err().contains("keys.auth"));
    assert!(
        keys(&P256DH.replace("BC", "AC"), AUTH)
            .unwrap_err()
            .contains("uncompressed")
    );
    let off_curve = format!("BA{}", &P256DH[2..]);
    assert!(
        keys(&off_curve, AUTH).unwrap_err().contains("curve"),
        "a point off the curve"
    );
    // Padding is accepted and dropped (the sealing code reads keys without it).
    let padded = keys(&format!("{P256DH}="), &format!("{AUTH}=="))?;
    assert_eq!(
        (padded.p256dh.as_str(), padded.auth.as_str()),
        (P256DH, AUTH)
    );
    // A browser's `toJSON()` carries `expirationTime`; anything else is refused by name.
    let extra = serde_json::from_value::<PushSubscriptionRequest>(json!({
        "endpoint": "https://x", "keys": {"p256dh": P256DH, "auth": AUTH}, "colour": 1}));
    assert!(extra.unwrap_err().to_string().contains("colour"));
    // A push service on this network only when the operator names it.
    let local = crate::net::NetPolicy {
        allow: vec![crate::net::AllowEntry::parse("127.0.0.1").ok_or("an address")?],
        push_services: vec!["http://127.0.0.1".into()],
        ..Default::default()
    };
    let r = request(
        json!({"endpoint": "http://127.0.0.1:9/p", "expirationTime": null,
                           "keys": {"p256dh": P256DH, "auth": AUTH}}),
    )?;
    assert!(check_subscription(&r, &local).is_ok());
    assert!(check_subscription(&r, &net).is_err());
    Ok(())
}

fn waiting(approvers: &[&str], votes: &[&str]) -> R<Waiting> {
    let mut w: Waiting = serde_json::from_value(json!({
        "reason": "user", "wait_key": "gate", "prompt": "Ship it?", "choices": ["approve", "reject"],
    }))?;
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
    Ok(w)
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
fn only_who_may_answer_and_has_not_voted_is_notified() -> R {
    let dir = Directory {
        people: vec![("device:alices-phone".into(), "alice".into())],
        groups: vec![("ops".into(), "person:alice".into())],
    };
    let phone = token("device", "alices-phone", &["read", "run", "command"]);
    let viewer = token("key", "dashboard", &["read"]);
    let other = token("device", "bobs-phone", &["read", "run", "command"]);
    let r = run()?;
    let told = |w: Waiting, t: &TokenRow| may_answer(&dir, &r, &w, t);
    assert!(told(waiting(&[], &[])?, &phone));
    assert!(
        !told(waiting(&[], &[])?, &viewer),
        "read-only keys cannot answer"
    );
    assert!(told(waiting(&["group:ops"], &[])?, &phone));
    assert!(!told(waiting(&["group:ops"], &[])?, &other));
    assert!(
        !told(waiting(&["group:ops"], &["person:alice"])?, &phone),
        "voted"
    );
    let mut revoked = phone.clone();
    revoked.revoked_at = Some("2026-01-01T00:00:00Z".into());
    assert!(!told(waiting(&[], &[])?, &revoked));
    // A conversation's turn is its owner's: nobody's phone is told.
    let mut chat = run()?;
    chat.session_id = Some("telegram:42".into());
    assert!(!may_answer(&dir, &chat, &waiting(&[], &[])?, &phone));
    assert!(may_answer(
        &dir,
        &chat,
        &waiting(&["group:ops"], &[])?,
        &phone
    ));
    Ok(())
}

fn run() -> R<RunSummary> {
    Ok(serde_json::from_value(json!({
        "run_id": "r1", "bundle_id": "release", "flow_id": "release", "flow_hash": "h",
        "status": "waiting", "ledger_len": 1, "created_at": "x", "updated_at": "x",
    }))?)
}

#[test]
fn a_notice_fits_a_push_message_whatever_the_script() -> R {
    let run = run()?;
    for text in ["é", "漢", "\u{1}", "\"", "a"] {
        let mut w = waiting(&[], &[])?;
        w.prompt = Some(text.repeat(5000));
        w.choices = (0..50)
            .map(|i| format!("{i}{}", text.repeat(100)))
            .collect();
        let n = notice("reminder", &run, &w);
        assert_eq!(
            (n.kind.as_str(), n.url.as_str(), n.tag.as_str()),
            ("reminder", "/app/runs/r1", "r1/gate")
        );
        assert!(n.title.contains("release"));
        assert!(
            n.choices.iter().zip(&w.choices).all(|(a, b)| a == b),
            "choices are never cut"
        );
        let bytes = serde_json::to_vec(&n)?.len() + 80; // + the delivery id
        assert!(
            bytes <= seal::MAX_PLAINTEXT,
            "{text:?}: {bytes} bytes do not fit"
        );
        // What fits goes out whole: it seals into one push body.
        let body = serde_json::to_vec(&n)?;
        let sealed = seal::seal(&raw(P256DH)?, &raw(AUTH)?, &body)?;
        assert!(sealed.len() <= 4096, "{text:?}");
    }
    let mut short = waiting(&[], &[])?;
    short.prompt = Some("Ship it?".into());
    assert_eq!(notice("prompt", &run, &short).body, "Ship it?");
    Ok(())
}
