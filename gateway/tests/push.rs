//! Web Push against a loopback push service that checks each request's VAPID token and
//! decrypts its aes128gcm payload with the subscription's keys (`e2e::push_fake`, node's
//! crypto): the approvers who have not voted get the prompt and its reminder, with the
//! choices as actions; nobody else does; a subscription the service says is gone is
//! dropped; bad subscriptions are refused naming the field.

use e2e::app::{TestApp, spawn_with_env};
use e2e::call::assert_refused;
use e2e::push_fake::PushFake;
use e2e::wait::eventually;
use serde_json::{Value, json};

const GATE: &str = "steps:\n  - id: gate\n    ask: \"Ship {{ input.text }}?\"\n    choices: [approve, reject]\n    approvers: [\"key:alice\", \"key:bob\"]\n    quorum: 2\n    remind: 3s\n    remind_max: 1\n  - output: \"{{ steps.gate.response }}\"\n";

async fn key(app: &TestApp, name: &str, scopes: &[&str]) -> String {
    let k = app.create_key(name, scopes).await;
    k["token"].as_str().unwrap().to_owned()
}

/// Subscribes a new "browser" of the holder of `token`; returns its subscription.
async fn subscribe(app: &TestApp, fake: &PushFake, token: &str) -> Value {
    let (st, k) = app.with_token(token).get("/api/gateway/push/key").await;
    assert_eq!(st, 200, "{k}");
    let sub = fake.subscribe(k["public_key"].as_str().unwrap()).await;
    let (st, b) = app
        .with_token(token)
        .post("/api/gateway/push/subscriptions", &sub)
        .await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(b["service"], fake.url);
    assert!(
        b.get("keys").is_none() && b.get("endpoint").is_none(),
        "{b}"
    );
    sub
}

fn seq_of(ledger: &[Value], step: &str) -> Option<u64> {
    let r = ledger.iter().find(|r| r["step_id"] == step)?;
    r["seq"].as_u64()
}

#[tokio::test]
async fn approvers_phones_get_the_prompt_and_reminders_sealed_and_signed() {
    let fake = PushFake::start().await;
    let app = spawn_with_env(&[
        ("SWITCHBOARD_HTTP_ALLOW", "127.0.0.1"),
        ("SWITCHBOARD_PUSH_SERVICES", "http://127.0.0.1"),
    ])
    .await;
    let (alice, bob, carol) = (
        key(&app, "alice", &["read", "command"]).await,
        key(&app, "bob", &["read", "command"]).await,
        key(&app, "carol", &["read", "command"]).await,
    );
    let (a, b, c) = (
        subscribe(&app, &fake, &alice).await,
        subscribe(&app, &fake, &bob).await,
        subscribe(&app, &fake, &carol).await,
    );
    let endpoint = |s: &Value| s["endpoint"].as_str().unwrap().to_owned();
    // Bob's second browser has since unsubscribed: the service answers 410 Gone.
    let b2 = subscribe(&app, &fake, &bob).await;
    fake.unsubscribe(&endpoint(&b2)).await;
    let (st, mine) = app
        .with_token(&bob)
        .get("/api/gateway/push/subscriptions")
        .await;
    assert_eq!(
        (st, mine["items"].as_array().unwrap().len()),
        (200, 2),
        "{mine}"
    );

    assert_eq!(app.upload("release", GATE).await.0, 200);
    let run = app.start_run("release", json!({"text": "v2"})).await;
    let got = eventually(30, "alice's and bob's phones buzz", || async {
        let (a, b) = (
            fake.received_by(&endpoint(&a)).await,
            fake.received_by(&endpoint(&b)).await,
        );
        (!a.is_empty() && !b.is_empty()).then_some((a, b))
    })
    .await;
    for push in [&got.0[0], &got.1[0]] {
        assert!(
            push.get("error").is_none(),
            "the push service refused it: {push}"
        );
        let n = &push["notice"];
        assert_eq!(n["kind"], "prompt");
        assert_eq!(n["body"], "Ship v2?");
        assert_eq!(n["choices"], json!(["approve", "reject"]));
        assert_eq!(n["run_id"], run.as_str());
        assert_eq!(n["url"], format!("/app/runs/{run}"));
        assert_eq!(push["claims"]["aud"], fake.url);
        assert_eq!(push["urgency"], "high");
        assert!(push["ttl"].as_u64().unwrap() > 0 && push["topic"].as_str().unwrap().len() == 32);
    }
    // Alice votes; the reminder then goes only to who has not.
    let (st, body) = app
        .with_token(&alice)
        .post(&format!("/api/gateway/runs/{run}/approve"), &json!({}))
        .await;
    assert_eq!(st, 200, "{body}");
    let reminded = eventually(30, "bob's reminder", || async {
        let b = fake.received_by(&endpoint(&b)).await;
        b.into_iter().find(|p| p["notice"]["kind"] == "reminder")
    })
    .await;
    assert_eq!(
        reminded["notice"]["tag"], got.1[0]["notice"]["tag"],
        "it replaces the prompt"
    );
    assert_eq!(reminded["topic"], got.1[0]["topic"]);
    let ledger = app.ledger(&run).await;
    let (voted, remind) = (
        seq_of(&ledger, "gate.1/vote1"),
        seq_of(&ledger, "gate.1/remind1"),
    );
    let alice_reminded = fake.received_by(&endpoint(&a)).await.len() > 1;
    assert!(remind.is_some(), "a reminder record: {ledger:?}");
    if voted.is_some_and(|v| Some(v) < remind) {
        assert!(
            !alice_reminded,
            "alice voted before the reminder: she is not reminded"
        );
    }
    // Carol may not answer: nothing reached her phone. Bob's gone browser is dropped.
    let (st, mine) = app
        .with_token(&bob)
        .get("/api/gateway/push/subscriptions")
        .await;
    assert_eq!(st, 200);
    eventually(30, "the gone subscription is dropped", || async {
        let (_, mine) = app
            .with_token(&bob)
            .get("/api/gateway/push/subscriptions")
            .await;
        (mine["items"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    assert!(mine["items"].is_array());
    assert!(
        fake.received_by(&endpoint(&c)).await.is_empty(),
        "carol is no approver"
    );
    let (st, log) = app
        .get("/api/gateway/webhooks/deliveries?status=failed")
        .await;
    assert_eq!(st, 200);
    assert!(log.to_string().contains("gone"), "{log}");
    // Bob's vote ends it; the gateway's answer is the run's.
    let (st, body) = app
        .with_token(&bob)
        .post(&format!("/api/gateway/runs/{run}/approve"), &json!({}))
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        app.wait_for_status(&run, "completed").await["output"],
        "approve"
    );
    assert!(
        fake.received()
            .await
            .iter()
            .all(|p| p.get("error").is_none())
    );
}

#[tokio::test]
async fn a_subscription_is_checked_and_belongs_to_its_holder() {
    let fake = PushFake::start().await;
    let app = spawn_with_env(&[
        ("SWITCHBOARD_HTTP_ALLOW", "127.0.0.1"),
        ("SWITCHBOARD_PUSH_SERVICES", "http://127.0.0.1"),
    ])
    .await;
    let alice = key(&app, "alice", &["read", "command"]).await;
    let viewer = key(&app, "viewer", &["read"]).await;
    let (_, k) = app.with_token(&alice).get("/api/gateway/push/key").await;
    let (_, k2) = app.with_token(&viewer).get("/api/gateway/push/key").await;
    assert_eq!(k["public_key"], k2["public_key"], "one key for the gateway");
    assert_eq!(
        k["public_key"].as_str().unwrap().len(),
        87,
        "65 bytes, base64url"
    );
    let sub = fake.subscribe(k["public_key"].as_str().unwrap()).await;
    let post = |token: &str, body: Value| {
        let token = token.to_owned();
        let app = &app;
        async move {
            app.with_token(&token)
                .post("/api/gateway/push/subscriptions", &body)
                .await
        }
    };
    let (st, b) = post(&viewer, sub.clone()).await;
    assert_refused(st, &b, 403, "command");
    let (st, b) = app.post("/api/gateway/push/subscriptions", &sub).await;
    assert_refused(st, &b, 403, "admin token");
    let mut bad = sub.clone();
    bad["keys"]["auth"] = json!("c2hvcnQ");
    let (st, b) = post(&alice, bad).await;
    assert_refused(st, &b, 400, "keys.auth");
    let mut bad = sub.clone();
    bad["endpoint"] = json!("http://169.254.169.254/latest");
    let (st, b) = post(&alice, bad).await;
    assert_refused(st, &b, 400, "endpoint");
    let (st, b) = post(&alice, json!({"endpoint": "https://x.example/1"})).await;
    assert_refused(st, &b, 400, "keys");
    // Only the push services the operator names (here the loopback one) are reachable.
    let mut bad = sub.clone();
    bad["endpoint"] = json!("https://fcm.googleapis.com/fcm/send/x");
    let (st, b) = post(&alice, bad).await;
    assert_refused(st, &b, 400, "SWITCHBOARD_PUSH_SERVICES");
    let (st, created) = post(&alice, sub.clone()).await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["owner"], "key:alice");
    // The same browser subscribing again replaces its row.
    let (st, again) = post(&alice, sub.clone()).await;
    assert_eq!(st, 201);
    // Another credential cannot take this browser's subscription over.
    let mallory = key(&app, "mallory", &["read", "command"]).await;
    let (st, b) = post(&mallory, sub.clone()).await;
    assert_refused(st, &b, 409, "another credential");
    let (_, mine) = app
        .with_token(&alice)
        .get("/api/gateway/push/subscriptions")
        .await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine["items"][0]["id"], again["id"]);
    // Only its holder (or an admin) removes it; webhooks never list it.
    let path = format!(
        "/api/gateway/push/subscriptions/{}",
        again["id"].as_str().unwrap()
    );
    let (st, b) = app.with_token(&viewer).delete(&path).await;
    assert_refused(st, &b, 404, "push subscription");
    let (_, hooks) = app.get("/api/gateway/webhooks").await;
    assert_eq!(hooks["items"], json!([]));
    let (_, all) = app.get("/api/gateway/push/subscriptions").await;
    assert_eq!(all["items"][0]["owner"], "key:alice");
    let (st, _) = app.with_token(&alice).delete(&path).await;
    assert_eq!(st, 200);
    let (st, b) = app.with_token(&alice).delete(&path).await;
    assert_refused(st, &b, 404, "push subscription");
    // Revoking a credential drops its subscriptions: its browsers are told nothing more.
    let (st, _) = post(&alice, sub.clone()).await;
    assert_eq!(st, 201);
    let (_, keys) = app.get("/api/gateway/keys").await;
    let id = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "alice")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = app.with_token(e2e::app::TOKEN);
    let (st, b) = admin.delete(&format!("/api/gateway/keys/{id}")).await;
    assert_eq!(st, 200, "{b}");
    let (_, all) = app.get("/api/gateway/push/subscriptions").await;
    assert_eq!(all["items"], json!([]), "{all}");
}

#[tokio::test]
async fn the_web_app_hands_a_browsers_subscription_to_the_gateway_as_its_visitor() {
    let fake = PushFake::start().await;
    let app = spawn_with_env(&[
        ("SWITCHBOARD_HTTP_ALLOW", "127.0.0.1"),
        ("SWITCHBOARD_PUSH_SERVICES", "http://127.0.0.1"),
    ])
    .await;
    let alice = key(&app, "alice", &["read", "run", "command"]).await;
    let cookie = format!("sb_session={alice}");
    let web = |path: &str| {
        app.http
            .get(app.url(path))
            .header("cookie", &cookie)
            .header("x-requested-with", "fetch")
    };
    let page = web("/app/inbox")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = page
        .find(r#"data-csrf=""#)
        .expect("the notify button carries the form key");
    let csrf = &page[at + 11..];
    let csrf = &csrf[..csrf.find('"').unwrap()];
    let k: Value = web("/app/push/key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, api_key) = app.with_token(&alice).get("/api/gateway/push/key").await;
    assert_eq!(k["public_key"], api_key["public_key"]);
    let sub = fake.subscribe(k["public_key"].as_str().unwrap()).await;
    let post = |csrf: &str, auth: &str| {
        let form = [
            ("csrf", csrf),
            ("endpoint", sub["endpoint"].as_str().unwrap()),
            ("p256dh", sub["keys"]["p256dh"].as_str().unwrap()),
            ("auth", auth),
        ];
        app.http
            .post(app.url("/app/push"))
            .header("cookie", &cookie)
            .header("origin", app.url("").trim_end_matches('/'))
            .header("x-requested-with", "fetch")
            .form(&form)
            .send()
    };
    let r = post("forged", sub["keys"]["auth"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = post(csrf, "short").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("keys.auth"),
        "{body}"
    );
    let r = post(csrf, sub["keys"]["auth"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, mine) = app
        .with_token(&alice)
        .get("/api/gateway/push/subscriptions")
        .await;
    assert_eq!(mine["items"][0]["owner"], "key:alice", "{mine}");
}
