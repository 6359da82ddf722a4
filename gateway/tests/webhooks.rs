//! Outbound webhooks against a loopback receiver: signed deliveries of run events, retries
//! from the durable outbox while the receiver is down (delivered once when it is back), and
//! the delivery log.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use e2e::app::{assert_refused, spawn_with_env};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
}

impl Receiver {
    fn bodies(&self) -> Vec<(HeaderMap, String)> {
        self.got.lock().unwrap().clone()
    }
}

/// Serves the receiver on `listener` (every POST is recorded and answered 200).
fn serve(listener: tokio::net::TcpListener, rx: Receiver) {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: HeaderMap, body: Bytes| {
            let rx = rx.clone();
            async move {
                rx.got
                    .lock()
                    .unwrap()
                    .push((h, String::from_utf8_lossy(&body).into_owned()));
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
}

fn verify(secret: &str, h: &HeaderMap, body: &str) -> bool {
    let ts = h["x-switchboard-timestamp"].to_str().unwrap();
    let sig = h["x-switchboard-signature"].to_str().unwrap();
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(format!("{ts}.{body}").as_bytes());
    sig == format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// A gateway whose webhooks may reach the receivers these tests run on loopback (by
/// default only public addresses are reached: see `attacks.rs`).
async fn app() -> e2e::app::TestApp {
    spawn_with_env(&[
        ("SWITCHBOARD_WEBHOOK_RETRY_BASE", "200ms"),
        ("SWITCHBOARD_HTTP_ALLOW", "127.0.0.1"),
    ])
    .await
}

async fn until<F: Fn() -> bool>(what: &str, f: F) {
    e2e::app::eventually(15, what, || async { f().then_some(()) }).await
}

/// The delivery log (filtered by `query`) once its first item satisfies `ok`.
async fn deliveries(app: &e2e::app::TestApp, query: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/api/gateway/webhooks/deliveries{query}");
    e2e::app::eventually(10, "the delivery log", || async {
        let log = app.get(&path).await.1;
        ok(&log["items"][0]).then_some(log)
    })
    .await
}

#[tokio::test]
async fn deliveries_are_signed_and_filtered_by_event_and_flow() {
    let app = app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let rx = Receiver::default();
    serve(listener, rx.clone());
    let (st, hook) = app
        .post(
            "/api/gateway/webhooks",
            &json!({"url": url, "events": ["run.waiting", "run.completed"], "flows": ["approval"]}),
        )
        .await;
    assert_eq!(st, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();

    // `echo` is filtered out; `approval` asks, then completes.
    app.start_run("echo", json!({})).await;
    let run = app.start_run("approval", json!({})).await;
    until("the run.waiting delivery", || rx.bodies().len() == 1).await;
    app.answer_waiting("a1", &run, json!("approve")).await;
    app.wait_for_status(&run, "completed").await;
    until("the run.completed delivery", || rx.bodies().len() == 2).await;

    let got = rx.bodies();
    let events: Vec<Value> = got
        .iter()
        .map(|(h, b)| {
            assert!(verify(&secret, h, b), "signature of {b}");
            assert!(!verify("whsec_wrong", h, b));
            let v: Value = serde_json::from_str(b).unwrap();
            assert_eq!(h["x-switchboard-event"].to_str().unwrap(), v["event"]);
            assert_eq!(
                h["x-switchboard-delivery"].to_str().unwrap(),
                v["delivery_id"]
            );
            v
        })
        .collect();
    assert_eq!(events[0]["event"], "run.waiting");
    assert_eq!(events[0]["run"]["run_id"], run.as_str());
    assert!(events[0]["prompt"]["prompt"].is_string());
    assert_eq!(events[1]["event"], "run.completed");
    // The list never shows secrets.
    let (_, list) = app.get("/api/gateway/webhooks").await;
    assert_eq!(list["items"][0]["url"], url.as_str());
    assert!(list["items"][0].get("secret").is_none());
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_the_delivery_once_it_is_back() {
    let mut app = app().await;
    // Reserve a port, then leave it closed: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let (st, _) = app
        .post(
            "/api/gateway/webhooks",
            &json!({"url": url, "events": ["run.completed"]}),
        )
        .await;
    assert_eq!(st, 201);
    let run = app.start_run("echo", json!({"text": "hi"})).await;
    app.wait_for_status(&run, "completed").await;

    // Attempts fail and are logged.
    let log = deliveries(&app, "", |d| d["attempts"].as_i64().unwrap_or(0) >= 2).await;
    let d = &log["items"][0];
    assert_eq!(d["status"], "pending", "{log}");
    assert!(d["attempts"].as_i64().unwrap() >= 2, "{log}");
    assert!(
        d["last_error"].as_str().unwrap().contains("cannot reach"),
        "{log}"
    );
    assert!(d["next_attempt_at"].is_string());

    // The gateway restarts in between: the outbox is durable.
    app.terminate().await;
    app.restart().await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let rx = Receiver::default();
    serve(listener, rx.clone());
    until("the delivery after the receiver came back", || {
        rx.bodies().len() == 1
    })
    .await;
    // The sender records the attempt after the receiver answered: wait for the log.
    let log = deliveries(&app, "?status=delivered", Value::is_object).await;
    let d = &log["items"][0];
    assert_eq!(d["status"], "delivered");
    assert_eq!(d["last_status"], 200);
    assert!(d["attempts"].as_i64().unwrap() >= 3);
    // Delivered once: the delivery is marked delivered, so the sender never takes it again.
    assert_eq!(rx.bodies().len(), 1);
    let v: Value = serde_json::from_str(&rx.bodies()[0].1).unwrap();
    assert_eq!(v["run"]["output"]["text"], "hi");
}

#[tokio::test]
async fn bad_webhook_requests_name_the_field() {
    let app = app().await;
    for (body, needle) in [
        (json!({}), "`url`"),
        (json!({"url": "not a url"}), "http(s)"),
        (
            json!({"url": "http://127.0.0.1:1/x", "events": ["run.exploded"]}),
            "run.exploded",
        ),
        (
            json!({"url": "http://127.0.0.1:1/x", "secret": "mine"}),
            "secret",
        ),
    ] {
        let (st, b) = app.post("/api/gateway/webhooks", &body).await;
        assert_refused(st, &b, 400, needle);
    }
    let (st, _) = app.get("/api/gateway/webhooks/deliveries?status=odd").await;
    assert_eq!(st, 400);
    let (st, _) = app
        .with_token(e2e::app::TOKEN)
        .delete("/api/gateway/webhooks/wh_none")
        .await;
    assert_eq!(st, 404);
}
