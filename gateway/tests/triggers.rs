//! Inbound triggers: `POST /api/gateway/triggers/{name}` starts the declared flow when the
//! request is signed (HMAC over timestamp and body, within the window) or carries a token
//! with the `run` scope; bad signatures, stale timestamps and replayed delivery ids are
//! refused with clear 4xx and start nothing.

use e2e::app::{Opts, TOKEN, assert_refused, spawn_with};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "trigger-secret-42";

fn sign(ts: &str, body: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    m.update(format!("{ts}.{body}").as_bytes());
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn app() -> e2e::app::TestApp {
    spawn_with(Opts {
        env: vec![
            ("SWITCHBOARD_TRIGGER_SECRET_DEPLOY", SECRET.into()),
            ("SWITCHBOARD_TRIGGERS", "nightly=echo".into()),
            ("SWITCHBOARD_TRIGGER_SECRET_NIGHTLY", SECRET.into()),
        ],
        ..Default::default()
    })
    .await
}

/// Posts `body` to a trigger with the given signature headers.
async fn fire(
    app: &e2e::app::TestApp,
    name: &str,
    body: &str,
    headers: &[(&str, String)],
) -> (u16, Value) {
    let mut rb = app
        .http
        .post(app.url(&format!("/api/gateway/triggers/{name}")))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        rb = rb.header(*k, v);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

type Headers = Vec<(&'static str, String)>;

fn signed(body: &str, delivery: &str) -> Headers {
    let ts = now().to_string();
    vec![
        ("x-switchboard-signature", sign(&ts, body)),
        ("x-switchboard-timestamp", ts),
        ("x-switchboard-delivery", delivery.to_owned()),
    ]
}

async fn run_count(app: &e2e::app::TestApp) -> usize {
    app.get("/api/gateway/runs?limit=1000").await.1["items"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_signed_delivery_starts_its_flow_once() {
    let app = app().await;
    let body = r#"{"ref":"v1.2.3"}"#;
    let (st, b) = fire(&app, "deploy", body, &signed(body, "d-1")).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["bundle_id"], "hooked");
    assert_eq!(b["delivery_id"], "d-1");
    let run = b["run_id"].as_str().unwrap();
    let s = app.wait_for_status(run, "completed").await;
    assert_eq!(s["output"], json!({"deployed": "v1.2.3"}));
    let first = &app.ledger(run).await[0];
    assert_eq!(first["actor"]["principal"], "trigger:deploy");
    assert_eq!(first["actor"]["channel"], "trigger");

    // The same delivery again (freshly signed, so only the id repeats) is refused.
    let (st, b) = fire(&app, "deploy", body, &signed(body, "d-1")).await;
    assert_refused(st, &b, 409, run);
    // A trigger declared in the config starts its flow too.
    let (st, b) = fire(&app, "nightly", "{}", &signed("{}", "n-1")).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["bundle_id"], "echo");
    assert_eq!(run_count(&app).await, 2);
}

#[tokio::test]
async fn a_captured_signed_request_replayed_with_a_new_delivery_id_starts_nothing() {
    let app = app().await;
    let body = r#"{"ref":"v9"}"#;
    let captured = signed(body, "d-1");
    let (st, b) = fire(&app, "deploy", body, &captured).await;
    assert_eq!(st, 200, "{b}");
    let run = b["run_id"].as_str().unwrap().to_owned();
    // The attacker keeps the signature and timestamp and makes up delivery ids.
    for fresh in ["d-2", "d-3"] {
        let mut replay = captured.clone();
        replay[2].1 = fresh.to_owned();
        let (st, b) = fire(&app, "deploy", body, &replay).await;
        assert_refused(st, &b, 409, &run);
    }
    assert_eq!(run_count(&app).await, 1);
    // The sender's next delivery (a new body or timestamp, so a new signature) goes through.
    let next = r#"{"ref":"v10"}"#;
    let (st, b) = fire(&app, "deploy", next, &signed(next, "d-4")).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(run_count(&app).await, 2);
}

#[tokio::test]
async fn bad_signatures_stale_timestamps_and_missing_headers_are_refused() {
    let app = app().await;
    let body = r#"{"ref":"main"}"#;
    let ts = now().to_string();
    let cases: Vec<(&str, Headers, u16, &str)> = vec![
        (
            "wrong signature",
            vec![
                ("x-switchboard-signature", sign(&ts, r#"{"ref":"other"}"#)),
                ("x-switchboard-timestamp", ts.clone()),
                ("x-switchboard-delivery", "x1".into()),
            ],
            401,
            "does not match",
        ),
        (
            "stale timestamp",
            {
                let old = (now() - 3600).to_string();
                vec![
                    ("x-switchboard-signature", sign(&old, body)),
                    ("x-switchboard-timestamp", old),
                    ("x-switchboard-delivery", "x2".into()),
                ]
            },
            401,
            "stale",
        ),
        (
            "no signature",
            vec![("x-switchboard-timestamp", ts.clone())],
            401,
            "X-Switchboard-Signature",
        ),
        (
            "no delivery id",
            vec![
                ("x-switchboard-signature", sign(&ts, body)),
                ("x-switchboard-timestamp", ts.clone()),
            ],
            400,
            "X-Switchboard-Delivery",
        ),
    ];
    for (what, headers, status, needle) in cases {
        let (st, b) = fire(&app, "deploy", body, &headers).await;
        assert_eq!(st, status, "{what}: {b}");
        let msg = b["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{what}: {msg}");
    }
    // Input that fails the flow's schema, and a body that is not an object.
    let bad = r#"{"ref":7}"#;
    let (st, b) = fire(&app, "deploy", bad, &signed(bad, "x3")).await;
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (400, Some("invalid_input")),
        "{b}"
    );
    let (st, b) = fire(&app, "deploy", "[1]", &signed("[1]", "x4")).await;
    assert_refused(st, &b, 400, "JSON object");
    let (st, b) = fire(&app, "nope", "{}", &signed("{}", "x5")).await;
    assert_eq!(st, 404, "{b}");
    assert_eq!(run_count(&app).await, 0, "nothing started");
}

#[tokio::test]
async fn a_token_with_the_run_scope_may_fire_and_triggers_are_listed() {
    let app = app().await;
    // `unsigned` has no secret: only a token works.
    let (st, b) = fire(&app, "unsigned", r#"{"ref":"a"}"#, &[]).await;
    assert_refused(st, &b, 401, "SWITCHBOARD_TRIGGER_SECRET_UNSIGNED");
    let auth = [("authorization", format!("Bearer {TOKEN}"))];
    let (st, b) = fire(&app, "unsigned", r#"{"ref":"a"}"#, &auth).await;
    assert_eq!(st, 200, "{b}");
    // A read-only key is not enough.
    let k = app.create_key("ro", &["read"]).await;
    let ro = [(
        "authorization",
        format!("Bearer {}", k["token"].as_str().unwrap()),
    )];
    let (st, _) = fire(&app, "unsigned", r#"{"ref":"a"}"#, &ro).await;
    assert_eq!(st, 403);
    let (st, list) = app.get("/api/gateway/triggers").await;
    assert_eq!(st, 200);
    let names: Vec<(&str, &str, bool)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["flow"].as_str().unwrap(),
                t["signed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("deploy", "hooked", true),
            ("nightly", "echo", true),
            ("unsigned", "hooked", false)
        ]
    );
}
