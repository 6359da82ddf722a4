//! Commands: idempotency, refusals with reasons, pause/resume/cancel in every live state,
//! cascades, events, and each command's fate.

use e2e::app::{assert_refused, spawn_app};
use serde_json::json;

#[tokio::test]
async fn same_command_twice_is_a_duplicate_applied_once() {
    let app = spawn_app().await;
    let run = app.start_run("ask", json!({})).await;
    let key = &app.wait_key(&run).await;
    let (s1, b1) = app.answer("dup-1", &run, key, json!("once")).await;
    let (s2, b2) = app.answer("dup-1", &run, key, json!("once")).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(b1["duplicate"], false);
    assert_eq!(b2["duplicate"], true);
    assert_eq!(b1["seq"], b2["seq"]);
    app.wait_for_status(&run, "completed").await;
    let answers = app
        .ledger(&run)
        .await
        .into_iter()
        .filter(|r| r["step_id"] == key.as_str() && r["status"] == "completed")
        .count();
    assert_eq!(answers, 1);
    let (st, c) = app.get("/api/gateway/commands/dup-1").await;
    assert_eq!(st, 200);
    assert_eq!(c["status"], "applied");
}

#[tokio::test]
async fn same_command_id_with_another_payload_is_a_conflict() {
    let app = spawn_app().await;
    let run = app.start_run("ask", json!({})).await;
    let key = &app.wait_key(&run).await;
    app.answer("c-x", &run, key, json!("a")).await;
    let (st, b) = app.answer("c-x", &run, key, json!("b")).await;
    assert_eq!(st, 409, "{b}");
    assert_eq!(b["error"]["code"], "conflict");
    assert!(b["error"]["message"].as_str().unwrap().contains("c-x"));
}

#[tokio::test]
async fn command_for_an_unknown_run_is_not_found_and_not_stored() {
    let app = spawn_app().await;
    let (st, b) = app
        .command("c-404", "no-such-run", "pause", json!({}))
        .await;
    assert_refused(st, &b, 404, "no-such-run");
    let (st, _) = app.get("/api/gateway/commands/c-404").await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn stale_wait_key_is_a_conflict_naming_the_current_one() {
    let app = spawn_app().await;
    let run = app.start_run("ask", json!({})).await;
    let key = &app.wait_key(&run).await;
    let (st, b) = app.answer("c-stale", &run, "question.0", json!("x")).await;
    assert_refused(st, &b, 409, key);
    app.answer("c-ok", &run, key, json!("x")).await;
    app.wait_for_status(&run, "completed").await;
    let (st, b) = app.answer("c-late", &run, key, json!("y")).await;
    assert_eq!(st, 409, "answer after completion: {b}");
}

#[tokio::test]
async fn an_answer_that_is_not_a_choice_is_refused_with_the_choices() {
    let app = spawn_app().await;
    let run = app.start_run("approval", json!({})).await;
    let (st, b) = app.answer_waiting("c-bad", &run, json!("maybe")).await;
    assert_eq!(st, 400, "{b}");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(msg.contains("approve") && msg.contains("reject"), "{msg}");
}

#[tokio::test]
async fn pause_resume_and_cancel_from_waiting_and_paused() {
    let app = spawn_app().await;
    let run = app.start_run("approval", json!({})).await;
    let key = &app.wait_key(&run).await;
    assert_eq!(app.command("p1", &run, "pause", json!({})).await.0, 200);
    assert_eq!(app.run(&run).await["status"], "paused");
    assert_eq!(
        app.command("p2", &run, "pause", json!({})).await.0,
        409,
        "already paused"
    );
    // An answer to a paused run is recorded and takes effect on resume.
    assert_eq!(app.answer("a1", &run, key, json!("approve")).await.0, 200);
    assert_eq!(
        app.get("/api/gateway/commands/a1").await.1["status"],
        "pending"
    );
    assert_eq!(app.command("r1", &run, "resume", json!({})).await.0, 200);
    let done = app.wait_for_status(&run, "completed").await;
    assert_eq!(done["output"], json!({"decision": "approve"}));
    assert_eq!(
        app.get("/api/gateway/commands/a1").await.1["status"],
        "applied"
    );
    // The ledger shows the order: the answer was applied only after the resume.
    let resumed = app
        .position(&run, |r| r["effect"]["type"] == "resume")
        .await;
    let answered = app
        .position(&run, |r| r["result"].get("response").is_some())
        .await;
    assert!(resumed < answered, "applied while paused");
    assert_eq!(
        app.command("r2", &run, "resume", json!({})).await.0,
        409,
        "not paused"
    );
    assert_eq!(
        app.command("x1", &run, "cancel", json!({})).await.0,
        409,
        "already completed"
    );

    let run2 = app.start_run("ask", json!({})).await;
    app.wait_for_status(&run2, "waiting").await;
    app.command("p3", &run2, "pause", json!({})).await;
    assert_eq!(app.command("x2", &run2, "cancel", json!({})).await.0, 200);
    let c = app.run(&run2).await;
    assert_eq!(c["status"], "cancelled");
    let last = app.ledger(&run2).await.pop().unwrap();
    assert_eq!(
        (last["status"].as_str(), last["step_id"].as_str()),
        (Some("cancelled"), Some("run"))
    );
    assert_eq!(last["actor"]["kind"], "client");
}

#[tokio::test]
async fn a_due_timer_does_not_move_a_paused_run() {
    let app = spawn_app().await;
    let run = app.start_run("tick", json!({})).await; // waits on a 2 s timer
    let w = app.wait_for_status(&run, "waiting").await;
    app.command("p", &run, "pause", json!({})).await;
    // Past the timer's due time (the one wait a timer test cannot avoid: the clock's), the
    // run is still paused; resumed, it goes on, and its ledger puts the timer after the resume.
    let due =
        chrono::DateTime::parse_from_rfc3339(w["waiting"]["until"].as_str().unwrap()).unwrap();
    let left = (due.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(left + std::time::Duration::from_millis(100)).await;
    assert_eq!(app.run(&run).await["status"], "paused");
    app.command("r", &run, "resume", json!({})).await;
    app.wait_for_status(&run, "completed").await;
    let resumed = app
        .position(&run, |r| r["effect"]["type"] == "resume")
        .await;
    let key = w["waiting"]["wait_key"].clone();
    let fired = app
        .position(&run, |r| r["step_id"] == key && r["status"] == "completed")
        .await;
    assert!(
        resumed < fired,
        "the timer moved the run while it was paused"
    );
}

#[tokio::test]
async fn pause_and_cancel_a_run_in_the_middle_of_an_llm_call() {
    let (url, fake) = e2e::llm_fake::start().await;
    let app = e2e::app::spawn_with(e2e::app::Opts {
        llm_url: Some(url),
        ..Default::default()
    })
    .await;
    let in_flight = || {
        e2e::app::eventually(10, "the LLM call in flight", || async {
            (fake.held() == 1).then_some(())
        })
    };
    // Paused mid-call: the reply is recorded, the run stays paused until resumed.
    let run = app.start_run("slowllm", json!({"text": "HOLD one"})).await;
    in_flight().await;
    assert_eq!(app.run(&run).await["status"], "running");
    assert_eq!(app.command("p", &run, "pause", json!({})).await.0, 200);
    fake.release();
    let path = format!("/api/gateway/runs/{run}/ledger/stream?after=0");
    let evs = app
        .sse(&path, None, |e| {
            e2e::app::records(e)
                .iter()
                .any(|r| r["step_id"] == "r.1" && r["status"] == "completed")
        })
        .await;
    assert!(
        e2e::app::records(&evs)
            .iter()
            .any(|r| r["step_id"] == "r.1" && r["status"] == "completed")
    );
    assert_eq!(
        app.run(&run).await["status"],
        "paused",
        "the reply is recorded, the run stays paused"
    );
    app.command("r", &run, "resume", json!({})).await;
    assert_eq!(
        app.wait_for_status(&run, "completed").await["output"],
        "echo: HOLD one"
    );

    // Cancelled mid-call: the call is abandoned (the runner hangs up: the fake sees its
    // caller leave) and nothing follows the cancellation.
    let run = app.start_run("slowllm", json!({"text": "HOLD two"})).await;
    in_flight().await;
    assert_eq!(app.command("x", &run, "cancel", json!({})).await.0, 200);
    assert_eq!(app.run(&run).await["status"], "cancelled");
    e2e::app::eventually(10, "the abandoned call to hang up", || async {
        (fake.held() == 0).then_some(())
    })
    .await;
    let last = app.ledger(&run).await.pop().unwrap();
    assert_eq!(last["status"], "cancelled");
    assert_eq!(app.run(&run).await["status"], "cancelled");
}

#[tokio::test]
async fn cancelling_a_parent_cancels_its_children() {
    let app = spawn_app().await;
    let parent = app.start_run("parent", json!({})).await;
    let s = app.wait_for_status(&parent, "waiting").await;
    let child = s["waiting"]["child_run_id"].as_str().unwrap().to_owned();
    app.wait_for_status(&child, "waiting").await;
    assert_eq!(app.command("cx", &parent, "cancel", json!({})).await.0, 200);
    assert_eq!(app.run(&parent).await["status"], "cancelled");
    let c = app.run(&child).await;
    assert_eq!(c["status"], "cancelled");
    assert!(c["error"].as_str().unwrap().contains(&parent));
}

#[tokio::test]
async fn answers_left_in_the_inbox_when_the_run_ends_are_rejected_with_it() {
    let app = spawn_app().await;
    let run = app.start_run("approval", json!({"text": "ship it"})).await;
    let key = &app.wait_key(&run).await;
    // Paused, the run takes no answer, so two queue up for the same question.
    assert_eq!(app.command("p1", &run, "pause", json!({})).await.0, 200);
    assert_eq!(app.answer("a1", &run, key, json!("approve")).await.0, 200);
    assert_eq!(app.answer("a2", &run, key, json!("reject")).await.0, 200);
    let (_, a2) = app.get("/api/gateway/commands/a2").await;
    assert_eq!(a2["status"], "pending");
    assert_eq!(app.command("r1", &run, "resume", json!({})).await.0, 200);
    let done = app.wait_for_status(&run, "completed").await;
    assert_eq!(done["output"]["decision"], "approve", "{done}");
    // The first answer ended the run; the second was rejected in the same commit.
    let (_, a1) = app.get("/api/gateway/commands/a1").await;
    assert_eq!(a1["status"], "applied", "{a1}");
    let (_, a2) = app.get("/api/gateway/commands/a2").await;
    assert_eq!(a2["status"], "rejected", "{a2}");
    assert_eq!(a2["reason"], "the run is completed");
}

#[tokio::test]
async fn emit_event_wakes_a_run_waiting_on_it() {
    let app = spawn_app().await;
    let w = app.start_run("waiter", json!({})).await;
    let s = app.wait_for_status(&w, "waiting").await;
    assert_eq!(s["waiting"]["reason"], "event");
    let other = app.start_run("ask", json!({})).await;
    app.wait_for_status(&other, "waiting").await;
    let (st, b) = app
        .command(
            "ev1",
            &other,
            "emit_event",
            json!({"name": "go", "scope": "global", "payload": {"n": 7}}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let done = app.wait_for_status(&w, "completed").await;
    assert_eq!(done["output"], json!({"n": 7}));
    let (_, c) = app.get("/api/gateway/commands/ev1").await;
    assert_eq!(c["result"]["delivered"], 1);
    let (st, b) = app.command("ev2", &other, "emit_event", json!({})).await;
    assert_refused(st, &b, 400, "payload.name");
}

#[tokio::test]
async fn an_emit_step_wakes_a_run_waiting_on_that_event() {
    let app = spawn_app().await;
    let w = app.start_run("waiter", json!({})).await;
    app.wait_for_status(&w, "waiting").await;
    let n = app.start_run("notifier", json!({"n": "5"})).await;
    app.wait_for_status(&n, "completed").await;
    assert_eq!(
        app.wait_for_status(&w, "completed").await["output"],
        json!({"n": "5"})
    );
}

#[tokio::test]
async fn unknown_command_type_names_the_valid_ones() {
    let app = spawn_app().await;
    let run = app.start_run("ask", json!({})).await;
    let (st, b) = app.command("u1", &run, "explode", json!({})).await;
    assert_refused(st, &b, 400, "pause");
}
