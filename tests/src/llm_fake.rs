//! A loopback server speaking OpenAI's chat-completions format (JSON and streaming SSE).
//! It replies `echo: <last user message>`; a message containing FAIL gets a 500 with an
//! OpenAI error body; HOLD waits at a gate until the test [`Fake::release`]s it (so a test
//! knows a call is in flight, and chooses when it ends); FLAKY fails the first attempt of
//! each idempotency key; DRIP streams one word every 300 ms (for watching a reply grow).
//! A request that offers `tools` is answered with tool calls as its message scripts them
//! (see `llm_tools`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

#[derive(Clone)]
pub struct Fake {
    pub requests: Arc<Mutex<Vec<Value>>>,
    seen_keys: Arc<Mutex<HashSet<String>>>,
    /// HOLD calls wait here for a permit.
    gate: Arc<tokio::sync::Semaphore>,
    held: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
    /// The `traceparent` header of each chat request that had one.
    traceparents: Arc<Mutex<Vec<String>>>,
}

impl Default for Fake {
    fn default() -> Self {
        Self {
            requests: Arc::default(),
            seen_keys: Arc::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            held: Arc::default(),
            answered: Arc::default(),
            traceparents: Arc::default(),
        }
    }
}

impl Fake {
    /// The `traceparent` headers chat requests carried.
    pub fn traceparents(&self) -> Vec<String> {
        self.traceparents.lock().expect("lock").clone()
    }

    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().expect("lock").clone()
    }

    /// Calls waiting at the gate now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Lets one HOLD call through.
    pub fn release(&self) {
        self.gate.add_permits(1);
    }

    /// Calls answered so far (their reply was handed to the connection).
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }
}

/// One call waiting at the gate (the count goes down when it leaves, however it leaves).
struct Held<'a>(&'a AtomicUsize);

impl<'a> Held<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Self(n)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts the fake; returns its base URL (`http://127.0.0.1:PORT/v1`).
pub async fn start() -> (String, Fake) {
    let fake = Fake::default();
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(chat))
        .route(
            "/v1/models",
            axum::routing::get(|| async {
                axum::Json(serde_json::json!({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}))
            }),
        )
        .route("/echo", axum::routing::post(echo))
        .with_state(fake.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}/v1"), fake)
}

async fn chat(State(f): State<Fake>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    f.requests.lock().expect("lock").push(body.clone());
    if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        f.traceparents.lock().expect("lock").push(tp.to_owned());
    }
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let flaky_first = last.contains("FLAKY")
        && f.seen_keys
            .lock()
            .expect("lock")
            .insert(key.rsplit_once(':').map(|k| k.0.to_owned()).unwrap_or(key));
    // With tools, HOLD holds the turns after a tool result (the first turn runs at once).
    let after_tool = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .is_some_and(|m| m["role"] == "tool");
    let with_tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    if last.contains("HOLD") && (!with_tools || after_tool) {
        // Counted while waiting; a caller that hangs up (the run was cancelled) drops this
        // future, and the guard takes the call off the count.
        let _waiting = Held::new(&f.held);
        if let Ok(p) = f.gate.acquire().await {
            p.forget();
        }
    }
    let reply = match crate::llm_tools::reply(&body, &last) {
        Some(r) if !(last.contains("FAIL") || flaky_first) => r,
        _ => answer(&body, &last, flaky_first),
    };
    f.answered.fetch_add(1, Ordering::SeqCst);
    reply
}

fn answer(body: &Value, last: &str, flaky_first: bool) -> Response {
    if last.contains("FAIL") || flaky_first {
        let err =
            json!({"error": {"message": "the fake model is overloaded", "type": "server_error"}});
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(err)).into_response();
    }
    let reply = format!("echo: {last}");
    if body["stream"] != true {
        return Json(
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]}),
        )
        .into_response();
    }
    let mut events: Vec<String> = reply
        .split_inclusive(' ')
        .map(|word| {
            let chunk = json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": word}}]});
            format!("data: {chunk}\n\n")
        })
        .collect();
    events.push("data: [DONE]\n\n".into());
    if !last.contains("DRIP") {
        return ([("content-type", "text/event-stream")], events.concat()).into_response();
    }
    // DRIP: one word every 300 ms, so a client can watch the reply grow.
    let drip = futures::stream::iter(events).then(|e| async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        Ok::<_, std::convert::Infallible>(e)
    });
    (
        [("content-type", "text/event-stream")],
        axum::body::Body::from_stream(drip),
    )
        .into_response()
}

/// For `http` steps: answers with what it received.
async fn echo(headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let auth = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Json(
        json!({"got": body, "idempotency_key": key, "x_api_key": auth, "traceparent": traceparent}),
    )
}
