//! Split mode: the API (`serve --no-runner`) and the runner (`runner`) as two processes on
//! one data dir, one runner at a time, and a runner restart that loses nothing.

use e2e::app::{Opts, TestStore, records, spawn_with};
use serde_json::json;

#[tokio::test]
async fn api_and_runner_processes_share_a_data_dir() {
    let app = spawn_with(Opts {
        args: vec!["--no-runner"],
        ..Default::default()
    })
    .await;
    let (_, h) = app.get("/api/health").await;
    assert_eq!(h["runner"]["enabled"], false);
    // With no runner, a run is accepted (durably) but does not move.
    let early = app.start_run("ask", json!({"text": "early?"})).await;
    assert_eq!(app.run(&early).await["status"], "running");

    let mut runner = app.spawn_runner().await;
    app.wait_for_status(&early, "waiting").await;
    let (_, h) = app.get("/api/health").await;
    assert!(
        h["runner"]["lease_holder"].as_str().unwrap().contains(':'),
        "{h}"
    );

    // Start, answer and SSE work across the two processes.
    let run = app.start_run("approval", json!({"text": "split"})).await;
    let s = app.wait_for_status(&run, "waiting").await;
    let path = format!("/api/gateway/runs/{run}/ledger/stream?after=0");
    let key = s["waiting"]["wait_key"].as_str().unwrap().to_owned();
    let before = app.streams().await;
    let (evs, _) = tokio::join!(
        app.sse(&path, None, |e| e.last().is_some_and(|e| e.event == "done")),
        async {
            app.wait_streams(before + 1).await;
            app.answer("split-a", &run, &key, json!("approve")).await
        }
    );
    assert_eq!(records(&evs), app.ledger(&run).await);
    assert_eq!(
        app.run(&run).await["output"],
        json!({"decision": "approve"})
    );

    // On the embedded store a second runner is refused while the first holds the lease (on
    // a shared store runners on several nodes share the runs: see the two-node tests).
    if app.store == TestStore::Sqlite {
        second_runner_waits(&app).await;
    }
    // ...and on the embedded store a serve with its own runner is refused outright (on a
    // shared store it waits for the lease: see the two-node tests).
    if app.store == TestStore::Sqlite {
        serve_is_refused(&app);
    }

    // kill -9 the runner with timers armed and answers pending; a new runner loses nothing.
    let ticks: Vec<String> = futures_join(&app, "tick", 5).await;
    for t in &ticks {
        app.wait_for_status(t, "waiting").await;
    }
    let waiting: Vec<String> = futures_join(&app, "ask", 3).await;
    let mut keys = Vec::new();
    for w in &waiting {
        keys.push(app.wait_key(w).await);
    }
    runner.start_kill().unwrap();
    runner.wait().await.unwrap();
    for (i, (w, k)) in waiting.iter().zip(&keys).enumerate() {
        let (st, b) = app
            .answer(&format!("after-kill-{i}"), w, k, json!(format!("a{i}")))
            .await;
        assert_eq!(st, 200, "commands are accepted while no runner runs: {b}");
    }
    let late = app.start_run("echo", json!({"text": "late"})).await;
    let _runner = app.spawn_runner().await;
    for (i, w) in waiting.iter().enumerate() {
        assert_eq!(
            app.wait_for_status(w, "completed").await["output"],
            json!({"answer": format!("a{i}")})
        );
    }
    for t in &ticks {
        app.wait_for_status(t, "completed").await;
    }
    app.wait_for_status(&late, "completed").await;

    // Schedules created through the API process fire in the runner process, once per tick.
    let (st, b) = app
        .post("/api/gateway/runs/schedule", &json!({"bundle_id": "echo", "interval": "1s", "repeat_count": 2, "mode": "fixed_rate"}))
        .await;
    assert_eq!(st, 200, "{b}");
    let sched = b["run_id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.wait_for_status(&sched, "completed").await["output"]["fired"],
        2
    );
    let fires = app
        .ledger(&sched)
        .await
        .into_iter()
        .filter(|r| r["effect"]["type"] == "schedule_fire")
        .count();
    assert_eq!(fires, 2);
}

async fn futures_join(app: &e2e::app::TestApp, flow: &str, n: usize) -> Vec<String> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(app.start_run(flow, json!({})).await);
    }
    v
}

fn serve_is_refused(app: &e2e::app::TestApp) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(&app.data_dir)
        .env("SWITCHBOARD_AUTH_TOKEN", e2e::app::TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lease"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A second runner waits for the lease instead of starting (so give up on it).
async fn second_runner_waits(app: &e2e::app::TestApp) {
    let mut second = app.process("runner").spawn().unwrap();
    let started = tokio::time::timeout(std::time::Duration::from_millis(1500), async {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(second.stdout.take().unwrap()).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if l.starts_with("switchboard runner started") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        started.is_err(),
        "a second runner must not start while the lease is held"
    );
    second.kill().await.unwrap();
}
