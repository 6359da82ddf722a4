//! Retention against the real server: `switchboard prune` on a stopped gateway and the
//! periodic prune of `SWITCHBOARD_RETENTION` while it serves. Pruned runs answer 404;
//! waiting runs and schedules stay; the database file shrinks; a global-stream client that
//! resumes from a cursor inside the pruned range gets the next record, and new records get
//! cursors never handed out before. Runs are made old by moving their end time back in the
//! store itself.

use std::path::Path;

use e2e::app::{Opts, TestApp, eventually, spawn_app, spawn_with};
use e2e::cluster::{Entry, global_stream, on_postgres};
use serde_json::json;

const LONG_AGO: &str = "2020-01-01T00:00:00.000Z";

/// Runs `sql` on the app's store (SQLite file or PostgreSQL database).
async fn sql(app: &TestApp, sql: &str) {
    match &app.database_url {
        Some(url) => {
            e2e::pg::query_texts(url, sql).await;
        }
        None => {
            let (path, sql) = (app.data_dir.join("switchboard.db"), sql.to_owned());
            tokio::task::spawn_blocking(move || {
                let c = rusqlite::Connection::open(path).unwrap();
                c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
                c.execute_batch(&sql).unwrap();
            })
            .await
            .unwrap();
        }
    }
}

/// Moves the end of every run but `keep` back to 2020.
async fn age_all_but(app: &TestApp, keep: &str) {
    sql(
        app,
        &format!("UPDATE runs SET updated_at = '{LONG_AGO}' WHERE run_id <> '{keep}'"),
    )
    .await;
}

/// `switchboard prune ARGS…` on the app's store: (success, stdout, stderr).
async fn prune(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(e2e::process::binary());
    cmd.arg("prune")
        .arg("--data-dir")
        .arg(&app.data_dir)
        .args(args)
        .env_clear();
    if let Some(u) = &app.database_url {
        cmd.arg("--database-url").arg(u);
    }
    let out = cmd.output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The store's size on disk (the file and its WAL).
fn db_bytes(dir: &Path) -> u64 {
    ["switchboard.db", "switchboard.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Every record on the global stream up to `last`'s final one.
async fn global_until(app: &TestApp, last: &str) -> Vec<Entry> {
    let want = app.ledger(last).await.len();
    let mut n = 2000;
    loop {
        let all = global_stream(app, n).await;
        if all.iter().filter(|e| e.1 == last).count() >= want || all.len() < n {
            return all;
        }
        n *= 2;
    }
}

struct World {
    old: Vec<String>,
    waiting: String,
    schedule: String,
    recent: String,
}

/// 150 finished runs with bulky inputs, a run waiting on a question, a live schedule, and
/// one recent run.
async fn populate(app: &TestApp) -> World {
    let bulky = "x".repeat(4000);
    let mut old = Vec::new();
    for i in 0..150 {
        old.push(
            app.start_run("echo", json!({"text": format!("{i} {bulky}")}))
                .await,
        );
    }
    for id in &old {
        app.wait_for_status(id, "completed").await;
    }
    let waiting = app.start_run("ask", json!({"text": "still there?"})).await;
    app.wait_for_status(&waiting, "waiting").await;
    let (st, b) = app
        .post(
            "/api/gateway/runs/schedule",
            &json!({"bundle_id": "echo", "input_data": {"text": "tick"}, "interval": "1h"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let schedule = b["run_id"].as_str().unwrap().to_owned();
    let recent = app.start_run("echo", json!({"text": "recent"})).await;
    app.wait_for_status(&recent, "completed").await;
    World {
        old,
        waiting,
        schedule,
        recent,
    }
}

/// What must survive a prune, and what must not.
async fn assert_pruned(app: &TestApp, w: &World) {
    for id in w.old.iter().step_by(10) {
        let (st, b) = app.get(&format!("/api/gateway/runs/{id}")).await;
        assert_eq!(st, 404, "pruned run {id}: {}", b["status"]);
        let (st, _) = app.get(&format!("/api/gateway/runs/{id}/ledger")).await;
        assert_eq!(st, 404, "the ledger of pruned run {id}");
    }
    assert_eq!(app.run(&w.recent).await["status"], "completed");
    assert_eq!(app.run(&w.waiting).await["status"], "waiting");
    let (_, s) = app.get("/api/gateway/schedules").await;
    assert!(
        s["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["run_id"] == w.schedule),
        "the schedule stays: {s}"
    );
    // The waiting run still answers.
    let (st, b) = app
        .answer_waiting("after-prune", &w.waiting, json!("yes"))
        .await;
    assert_eq!(st, 200, "{b}");
    let done = app.wait_for_status(&w.waiting, "completed").await;
    assert_eq!(done["output"]["answer"], "yes");
}

#[tokio::test]
async fn prune_on_a_stopped_gateway_keeps_waiting_runs_and_shrinks_the_file() {
    let mut app = spawn_app().await;
    let w = populate(&app).await;
    let before = global_until(&app, &w.recent).await;
    app.terminate().await;
    age_all_but(&app, &w.recent).await;

    let (ok, out, err) = prune(&app, &["--older-than", "30d", "--dry-run"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("would delete 150 runs"), "{out}");
    let size = db_bytes(&app.data_dir);

    let (ok, out, err) = prune(&app, &["--older-than", "30d"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("deleted 150 runs"), "{out}");
    assert!(out.contains("kept 0 trees"), "{out}");
    if !on_postgres() {
        let after = db_bytes(&app.data_dir);
        assert!(
            after * 2 < size,
            "the file shrinks: {size} bytes before, {after} after ({out})"
        );
    }

    app.restart().await;
    assert_pruned(&app, &w).await;

    // A client that stopped inside the pruned range resumes at the next record kept.
    let pruned: Vec<&Entry> = before.iter().filter(|e| w.old.contains(&e.1)).collect();
    let cursor = pruned[pruned.len() / 2].0;
    let next = before
        .iter()
        .find(|e| e.0 > cursor && !w.old.contains(&e.1))
        .expect("a record kept after the cursor");
    let events = app
        .sse("/api/gateway/ledger/stream", Some(cursor), |e| {
            e.iter().any(|e| e.event == "step")
        })
        .await;
    let first = events.iter().find(|e| e.event == "step").expect("a record");
    assert_eq!(
        first.id,
        next.0.to_string(),
        "resumed at the next record kept"
    );
    assert_eq!(first.data["record"]["run_id"], next.1.as_str());

    // New records get cursors never handed out before, even if the newest were pruned.
    let newest = before.iter().map(|e| e.0).max().unwrap();
    let fresh = app.start_run("echo", json!({"text": "fresh"})).await;
    app.wait_for_status(&fresh, "completed").await;
    let after = global_until(&app, &fresh).await;
    assert!(
        after.iter().filter(|e| e.1 == fresh).all(|e| e.0 > newest),
        "fresh cursors are new"
    );
}

#[tokio::test]
async fn retention_prunes_while_the_gateway_serves() {
    let app = spawn_with(Opts {
        env: vec![
            ("SWITCHBOARD_RETENTION", "30d".into()),
            ("SWITCHBOARD_RETENTION_INTERVAL", "200ms".into()),
        ],
        ..Default::default()
    })
    .await;
    let w = populate(&app).await;
    age_all_but(&app, &w.recent).await;
    eventually(30, "the periodic prune", || async {
        for id in w.old.iter().step_by(10) {
            if app.get(&format!("/api/gateway/runs/{id}")).await.0 != 404 {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert_pruned(&app, &w).await;
    // The gateway goes on serving and writing.
    let fresh = app.start_run("echo", json!({"text": "fresh"})).await;
    app.wait_for_status(&fresh, "completed").await;
}

#[tokio::test]
async fn prune_refuses_a_running_gateway_and_bad_input() {
    let app = spawn_app().await;
    let (ok, _, err) = prune(&app, &["--older-than", "30d"]).await;
    assert!(!ok);
    assert!(err.contains("stop it first"), "{err}");
    let (ok, _, err) = prune(&app, &["--older-than", "thirty days"]).await;
    assert!(!ok);
    assert!(err.contains("--older-than `thirty days`"), "{err}");
    let (ok, _, err) = prune(&app, &["--older-than", "10m"]).await;
    assert!(!ok);
    assert!(err.contains("under 1h"), "{err}");
    // The same floor while serving, and twice the trigger window.
    let dir = tempfile::tempdir().unwrap();
    for (env, want) in [
        (
            vec![("SWITCHBOARD_RETENTION", "10m")],
            "SWITCHBOARD_RETENTION `10m` is under 1h",
        ),
        (
            vec![
                ("SWITCHBOARD_RETENTION", "2h"),
                ("SWITCHBOARD_TRIGGER_WINDOW", "90m"),
            ],
            "at least twice SWITCHBOARD_TRIGGER_WINDOW",
        ),
    ] {
        let out = tokio::process::Command::new(e2e::process::binary())
            .args(["serve", "--port", "0", "--data-dir"])
            .arg(dir.path())
            .env_clear()
            .envs(env)
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
    }
    let empty = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(e2e::process::binary())
        .args(["prune", "--older-than", "30d", "--data-dir"])
        .arg(empty.path())
        .env_clear()
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds no store"),
        "{out:?}"
    );
}

#[tokio::test]
async fn an_older_store_is_rewritten_once_and_then_gives_space_back() {
    if on_postgres() {
        return; // PostgreSQL's autovacuum reuses space by itself
    }
    let mut app = spawn_app().await;
    let w = populate(&app).await;
    app.terminate().await;
    // As a store made before incremental vacuum was turned on.
    sql(&app, "PRAGMA auto_vacuum = NONE; VACUUM;").await;
    age_all_but(&app, &w.recent).await;
    let size = db_bytes(&app.data_dir);
    let (ok, out, err) = prune(&app, &["--older-than", "30d"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("rewrote the database file"), "{out}");
    let after = db_bytes(&app.data_dir);
    assert!(after * 2 < size, "{size} bytes before, {after} after");
    let mode: i64 = rusqlite::Connection::open(app.data_dir.join("switchboard.db"))
        .unwrap()
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, 2, "incremental from now on");
    app.restart().await;
    assert_pruned(&app, &w).await;
}
