//! A restart picks up only what it interrupted. Runs waiting for a person, an event or a
//! timer are rows, not tasks: a start reads none of them, so a store holding a million of
//! them starts as fast as an empty one (`scripts/bench-waiting` measures that). What a
//! restart must still find is here: runs that were running, runs whose answer came while
//! no runner ran, and runs waiting for a child (which may have ended while no runner ran).

use e2e::app::{Opts, TestApp, spawn_with};
use serde_json::json;

/// The number in the runner's last `switchboard runner started on … (N interrupted runs
/// resumed)` line.
fn resumed(app: &TestApp) -> usize {
    let line = app
        .printed("switchboard runner started on ")
        .pop()
        .expect("the runner printed its start");
    line.rsplit_once('(')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"))
}

/// Starts `parent`, which calls `ask`; returns the parent's id and its child's, once the
/// child waits for its answer.
async fn parent_and_child(app: &TestApp) -> (String, String) {
    let parent = app.start_run("parent", json!({})).await;
    let waiting = app.wait_for_status(&parent, "waiting").await;
    let child = waiting["waiting"]["child_run_id"]
        .as_str()
        .expect("the parent waits for a child")
        .to_owned();
    app.wait_for_status(&child, "waiting").await;
    (parent, child)
}

#[tokio::test]
async fn a_runner_start_resumes_the_interrupted_runs_and_leaves_waiting_ones_asleep() {
    let app = spawn_with(Opts {
        args: vec!["--no-runner"],
        ..Default::default()
    })
    .await;
    let mut runner = app.spawn_runner().await;
    assert_eq!(resumed(&app), 0);

    // Twenty runs wait for an answer; a parent waits for its child, which waits too.
    let mut asks = Vec::new();
    for i in 0..20 {
        asks.push(app.start_run("ask", json!({"text": format!("q{i}")})).await);
    }
    let mut keys = Vec::new();
    for r in &asks {
        keys.push(app.wait_key(r).await);
    }
    let (parent, child) = parent_and_child(&app).await;
    // A schedule whose first firing is an hour away.
    let at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (st, b) = app
        .post(
            "/api/gateway/runs/schedule",
            &json!({"bundle_id": "echo", "start_at": at, "interval": "1h", "repeat_count": 1}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let schedule = b["run_id"].as_str().expect("schedule id").to_owned();
    app.wait_for_status(&schedule, "waiting").await;

    // The runner dies. Meanwhile two answers arrive, the child is cancelled (the API
    // process applies a cancel itself) and a run is started.
    runner.start_kill().expect("kill the runner");
    runner.wait().await.expect("runner exit");
    for i in 0..2 {
        let (st, b) = app
            .answer(
                &format!("late-{i}"),
                &asks[i],
                &keys[i],
                json!(format!("a{i}")),
            )
            .await;
        assert_eq!(st, 200, "{b}");
    }
    let (st, b) = app
        .command("cancel-child", &child, "cancel", json!({}))
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(app.run(&child).await["status"], "cancelled");
    assert_eq!(app.run(&parent).await["status"], "waiting");
    let late = app.start_run("echo", json!({"text": "late"})).await;

    // The new runner resumes exactly the answered runs, the new one, the parent and the
    // schedule (a child's end wakes either in memory only); the eighteen that still wait
    // for a person are not touched.
    let _runner = app.spawn_runner().await;
    assert_eq!(resumed(&app), 5);
    for (i, run) in asks.iter().enumerate().take(2) {
        assert_eq!(
            app.wait_for_status(run, "completed").await["output"],
            json!({"answer": format!("a{i}")})
        );
    }
    app.wait_for_status(&late, "completed").await;
    let p = app.wait_for_status(&parent, "failed").await;
    assert!(
        p["error"].as_str().is_some_and(|e| e.contains(&child)),
        "the parent says which child did not complete: {p}"
    );
    for r in &asks[2..] {
        assert_eq!(app.run(r).await["status"], "waiting");
    }

    // A run left asleep wakes on its answer as any other.
    let (st, b) = app.answer("later", &asks[19], &keys[19], json!("z")).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        app.wait_for_status(&asks[19], "completed").await["output"],
        json!({"answer": "z"})
    );

    // With the runner up in its own process, a child cancelled through the API process
    // wakes its parent there too (the runner, woken for the ended child, wakes the parent).
    let (parent, child) = parent_and_child(&app).await;
    let (st, b) = app
        .command("cancel-child-2", &child, "cancel", json!({}))
        .await;
    assert_eq!(st, 200, "{b}");
    app.wait_for_status(&parent, "failed").await;
}
