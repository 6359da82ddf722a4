//! The client contract end to end: start → waiting → resume → completed, with the request
//! shapes AbstractGateway clients send.

use e2e::app::spawn_app;
use serde_json::{Value, json};

#[tokio::test]
async fn ask_run_waits_then_completes_with_the_answer() {
    let app = spawn_app().await;
    let run = app.start_run("ask", json!({"text": "Your name?"})).await;
    let s = app.wait_for_status(&run, "waiting").await;
    assert_eq!(s["waiting"]["reason"], "user");
    assert_eq!(s["waiting"]["prompt"], "Your name?");
    let wait_key = s["waiting"]["wait_key"].as_str().unwrap().to_owned();

    let ledger = app.ledger(&run).await;
    assert_eq!(ledger[0]["status"], "started");
    assert_eq!(ledger[1]["status"], "waiting");
    assert_eq!(
        ledger[1]["effect"]["payload"]["wait_key"],
        wait_key.as_str()
    );
    assert_eq!(ledger[1]["effect"]["payload"]["prompt"], "Your name?");

    let (st, body) = app.answer("c-1", &run, &wait_key, json!("Ada")).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        body,
        json!({"accepted": true, "duplicate": false, "seq": body["seq"]})
    );
    let done = app.wait_for_status(&run, "completed").await;
    assert_eq!(done["output"], json!({"answer": "Ada"}));
    let answered = app
        .ledger(&run)
        .await
        .into_iter()
        .find(|r| r["step_id"] == wait_key.as_str() && r["status"] == "completed");
    let answered = answered.expect("the answer is in the ledger");
    assert_eq!(answered["actor"]["kind"], "client");
    assert_eq!(answered["result"]["response"], "Ada");
}

#[tokio::test]
async fn echo_outputs_its_input_and_runs_are_listed() {
    let app = spawn_app().await;
    let run = app.start_run("echo", json!({"text": "hi"})).await;
    let s = app.wait_for_status(&run, "completed").await;
    assert_eq!(s["output"], json!({"text": "hi"}));
    for k in [
        "run_id",
        "bundle_id",
        "flow_id",
        "status",
        "waiting",
        "output",
        "error",
        "session_id",
        "parent_run_id",
        "created_at",
        "updated_at",
    ] {
        assert!(s.get(k).is_some(), "summary lacks {k}: {s}");
    }
    let (st, list) = app.get("/api/gateway/runs?status=completed&limit=10").await;
    assert_eq!(st, 200);
    assert_eq!(list["items"][0]["run_id"], run.as_str());
    assert_eq!(list["has_more"], false);
    assert_eq!(list["offset"], 0);
    let (_, input) = app
        .get(&format!("/api/gateway/runs/{run}/input_data"))
        .await;
    assert_eq!(input["input_data"], json!({"text": "hi"}));
    let (_, hb) = app
        .get(&format!("/api/gateway/runs/{run}/history_bundle"))
        .await;
    assert_eq!(
        hb["ledger"].as_array().unwrap().len(),
        app.ledger(&run).await.len()
    );
    assert!(hb["flow"]["source"].as_str().unwrap().contains("output"));
}

#[tokio::test]
async fn bundles_list_the_flows_with_their_schemas() {
    let app = spawn_app().await;
    let (st, b) = app.get("/api/gateway/bundles").await;
    assert_eq!(st, 200);
    let approval = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["bundle_id"] == "approval")
        .expect("approval");
    assert_eq!(approval["bundle_version"], "1");
    assert_eq!(approval["entrypoints"][0]["flow_id"], "approval");
    assert_eq!(
        approval["entrypoints"][0]["input_schema"]["properties"]["text"]["type"],
        "string"
    );
    let (st, caps) = app.get("/api/gateway/discovery/capabilities").await;
    assert_eq!(st, 200);
    assert!(
        caps["command_types"]
            .as_array()
            .unwrap()
            .contains(&json!("emit_event"))
    );
}

#[tokio::test]
async fn uploaded_flow_gets_a_new_version_and_old_runs_stay_pinned() {
    let app = spawn_app().await;
    let run_v1 = app.start_run("ask", json!({})).await;
    let s = app.wait_for_status(&run_v1, "waiting").await;
    let src = "steps:\n  - output: {version: 2}\n";
    let (st, up) = app.upload("ask.yaml", src).await;
    assert_eq!(st, 200, "{up}");
    assert_eq!(up["bundle_version"], "2");
    let run_v2 = app.start_run("ask", json!({})).await;
    assert_eq!(
        app.wait_for_status(&run_v2, "completed").await["output"],
        json!({"version": 2})
    );
    // The run started on version 1 still follows version 1.
    let key = s["waiting"]["wait_key"].as_str().unwrap();
    app.answer("c-pinned", &run_v1, key, json!("still v1"))
        .await;
    assert_eq!(
        app.wait_for_status(&run_v1, "completed").await["output"],
        json!({"answer": "still v1"})
    );
}

#[tokio::test]
async fn call_runs_a_child_and_waits_for_it() {
    let app = spawn_app().await;
    let parent = app.start_run("parent", json!({})).await;
    let s = app.wait_for_status(&parent, "waiting").await;
    assert_eq!(s["waiting"]["reason"], "subworkflow");
    let child = s["waiting"]["child_run_id"].as_str().unwrap().to_owned();
    let c = app.wait_for_status(&child, "waiting").await;
    assert_eq!(c["parent_run_id"], parent.as_str());
    assert_eq!(c["waiting"]["prompt"], "from parent");
    app.answer_waiting("c-child", &child, json!("ok")).await;
    let p = app.wait_for_status(&parent, "completed").await;
    assert_eq!(p["output"], json!({"answer": "ok"}));
}

#[tokio::test]
async fn a_start_repeated_with_its_idempotency_key_answers_the_same_run() {
    let app = spawn_app().await;
    let start = |key: &'static str| {
        app.http
            .post(app.url("/api/gateway/runs/start"))
            .bearer_auth(e2e::app::TOKEN)
            .header("Idempotency-Key", key)
            .json(&json!({"bundle_id": "echo", "input_data": {"text": "once"}}))
            .send()
    };
    let first = start("telegram:1:42").await.expect("first start");
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.expect("json");
    let again = start("telegram:1:42").await.expect("second start");
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["run_id"], first["run_id"]);
    let other: Value = start("telegram:1:43")
        .await
        .expect("other")
        .json()
        .await
        .expect("json");
    assert_ne!(other["run_id"], first["run_id"]);
    let runs = app.get("/api/gateway/runs?limit=100").await.1;
    assert_eq!(runs["count"], 2, "{runs}");

    let bad = start("has space").await.expect("bad key");
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_idempotency_key");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Idempotency-Key")
    );
}

/// A run's first steps are committed with its start, in one transaction: the start answers
/// with the run as those steps left it, and its ledger already holds them.
#[tokio::test]
async fn a_start_commits_the_runs_first_steps_with_it() {
    if e2e::cluster::on_postgres() {
        return; // A shared store's runner follows the ledger: a start takes the usual path.
    }
    let app = spawn_app().await;
    let body = json!({"bundle_id": "ask", "input_data": {"text": "Now?"}});
    let (st, asked) = app.post("/api/gateway/runs/start", &body).await;
    assert_eq!(st, 200, "{asked}");
    assert_eq!(asked["status"], "waiting", "{asked}");
    let run = asked["run_id"].as_str().expect("run_id");
    let ledger = app.ledger(run).await;
    let kinds: Vec<&Value> = ledger.iter().map(|r| &r["effect"]["type"]).collect();
    assert_eq!(kinds, [&json!("run_started"), &json!("ask")], "{ledger:?}");
    assert_eq!(app.run(run).await["waiting"]["prompt"], "Now?");

    let body = json!({"bundle_id": "echo", "input_data": {"text": "at once"}});
    let (st, echoed) = app.post("/api/gateway/runs/start", &body).await;
    assert_eq!(st, 200, "{echoed}");
    assert_eq!(echoed["status"], "completed", "{echoed}");
    let run = echoed["run_id"].as_str().expect("run_id");
    assert_eq!(app.run(run).await["output"], json!({"text": "at once"}));
    let ledger = app.ledger(run).await;
    assert_eq!(
        ledger.last().map(|r| &r["effect"]["type"]),
        Some(&json!("run_completed"))
    );
    let seqs: Vec<u64> = ledger.iter().filter_map(|r| r["seq"].as_u64()).collect();
    assert_eq!(
        seqs,
        (1..=ledger.len() as u64).collect::<Vec<_>>(),
        "one gap-free chain"
    );
}
