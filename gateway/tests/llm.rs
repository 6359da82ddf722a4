//! LLM steps against a loopback OpenAI-compatible fake: streaming deltas over SSE, recorded
//! replies, session history, provider errors and retries.

use e2e::app::{Opts, records, spawn_app, spawn_with, spawn_with_env};
use serde_json::{Value, json};

#[tokio::test]
async fn chat_streams_deltas_records_the_reply_and_keeps_history() {
    let (url, fake) = e2e::llm_fake::start().await;
    let app = spawn_with(Opts {
        llm_url: Some(url),
        ..Default::default()
    })
    .await;
    let (st, b) = app
        .post("/api/gateway/runs/start", &json!({"bundle_id": "chat", "input_data": {"text": "hello there"}, "session_id": "s-1"}))
        .await;
    assert_eq!(st, 200, "{b}");
    let run = b["run_id"].as_str().unwrap().to_owned();
    let path = format!("/api/gateway/runs/{run}/ledger/stream?after=0");
    let evs = app
        .sse(&path, None, |e| {
            records(e).iter().any(|r| r["status"] == "waiting")
        })
        .await;
    let deltas: String = evs
        .iter()
        .filter(|e| e.event == "llm.delta")
        .map(|e| e.data["delta"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(deltas, "echo: hello there");
    let ledger = app.ledger(&run).await;
    let reply = ledger
        .iter()
        .find(|r| r["step_id"] == "reply.1" && r["status"] == "completed")
        .expect("llm record");
    assert_eq!(reply["result"]["text"], "echo: hello there");
    let started = ledger
        .iter()
        .find(|r| r["step_id"] == "reply.1" && r["status"] == "started")
        .unwrap();
    assert_eq!(started["idempotency_key"], format!("{run}:reply.1:1"));
    let said = ledger
        .iter()
        .find(|r| r["effect"]["type"] == "say")
        .unwrap();
    assert_eq!(said["effect"]["payload"]["text"], "echo: hello there");

    // The next turn sees the session's history.
    app.answer_waiting("t2", &run, json!("and again")).await;
    let path = format!("/api/gateway/runs/{run}/ledger/stream?after=0");
    app.sse(&path, None, |e| {
        records(e)
            .iter()
            .any(|r| r["step_id"] == "reply.2" && r["status"] == "completed")
    })
    .await;
    let reqs = fake.requests();
    let last: Vec<Value> = reqs.last().unwrap()["messages"].as_array().unwrap().clone();
    let contents: Vec<&str> = last
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["hello there", "echo: hello there", "and again"]);
    assert_eq!(reqs.last().unwrap()["model"], "fake-model");

    // A new run in the same session sees the earlier turns; compact_memory trims them.
    let (st, b) = app
        .post(
            "/api/gateway/runs/start",
            &json!({"bundle_id": "chat", "input_data": {"text": "third"}, "session_id": "s-1"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let run2 = b["run_id"].as_str().unwrap().to_owned();
    app.wait_for_status(&run2, "waiting").await;
    let msgs = fake.requests().last().unwrap()["messages"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(msgs, 5, "four earlier turns + this prompt");
    let (st, b) = app
        .command("cm", &run2, "compact_memory", json!({"keep_last": 2}))
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        app.get("/api/gateway/commands/cm").await.1["result"]["removed"],
        4
    );
    // A run without a session has its own, empty history.
    let run3 = app.start_run("chat", json!({"text": "alone"})).await;
    app.wait_for_status(&run3, "waiting").await;
    assert_eq!(
        fake.requests().last().unwrap()["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn http_steps_call_out_with_an_idempotency_key() {
    let (url, _fake) = e2e::llm_fake::start().await;
    let echo = url.replace("/v1", "/echo");
    // The fake listens on loopback, which flows reach only when the operator allows it.
    let app = spawn_with_env(&[("SWITCHBOARD_HTTP_ALLOW", "127.0.0.1")]).await;
    let run = app.start_run("caller", json!({"url": echo, "x": 3})).await;
    let s = app.wait_for_status(&run, "completed").await;
    assert_eq!(s["output"]["status"], 200);
    assert_eq!(s["output"]["body"]["got"], json!({"x": 3}));
    assert_eq!(s["output"]["body"]["x_api_key"], "secret");
    assert_eq!(
        s["output"]["body"]["idempotency_key"],
        format!("{run}:h.1:1")
    );
    let ledger = app.ledger(&run).await;
    let started = ledger
        .iter()
        .find(|r| r["status"] == "started" && r["step_id"] == "h.1")
        .unwrap();
    assert!(
        !started.to_string().contains("secret"),
        "header values stay out of the ledger"
    );
    let bad = app
        .start_run(
            "caller",
            json!({"url": "http://127.0.0.1:9/nothing", "x": 1}),
        )
        .await;
    let f = app.wait_for_status(&bad, "failed").await;
    assert!(f["error"].as_str().unwrap().contains("127.0.0.1:9"), "{f}");
}

#[tokio::test]
async fn provider_errors_fail_the_step_with_a_clear_message() {
    let (url, _fake) = e2e::llm_fake::start().await;
    let app = spawn_with(Opts {
        llm_url: Some(url),
        ..Default::default()
    })
    .await;
    let run = app
        .start_run("slowllm", json!({"text": "please FAIL"}))
        .await;
    let s = app.wait_for_status(&run, "failed").await;
    let err = s["error"].as_str().unwrap();
    assert!(
        err.contains("500") && err.contains("overloaded") && err.contains("`r`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_flaky_provider_is_retried_when_the_flow_asks() {
    let (url, _fake) = e2e::llm_fake::start().await;
    let app = spawn_with(Opts {
        llm_url: Some(url),
        ..Default::default()
    })
    .await;
    let run = app.start_run("flaky", json!({"text": "FLAKY hi"})).await;
    let s = app.wait_for_status(&run, "completed").await;
    assert_eq!(s["output"], "echo: FLAKY hi");
    let attempts: Vec<(String, u64)> = app
        .ledger(&run)
        .await
        .iter()
        .filter(|r| r["step_id"] == "r.1")
        .map(|r| {
            (
                r["status"].as_str().unwrap().to_owned(),
                r["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            ("started".into(), 1),
            ("failed".into(), 1),
            ("started".into(), 2),
            ("completed".into(), 2)
        ]
    );
}

#[tokio::test]
async fn without_a_provider_the_step_says_what_to_set() {
    let app = spawn_app().await;
    let run = app.start_run("slowllm", json!({"text": "hi"})).await;
    let s = app.wait_for_status(&run, "failed").await;
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .contains("SWITCHBOARD_LLM_BASE_URL"),
        "{s}"
    );
}
