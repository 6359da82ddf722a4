//! `switchboard backup` while the gateway serves under load, and `switchboard restore` into
//! a data dir that `serve` then picks up: every run acknowledged before the backup began is
//! served, with its ledger; the admin token and the web app's key come along; a damaged
//! backup, a non-empty target and a data dir that holds a store are refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use e2e::app::spawn_app;

/// `switchboard ARGS…`, to its end.
async fn sb(args: &[&std::ffi::OsStr]) -> std::process::Output {
    tokio::process::Command::new(e2e::process::binary())
        .args(args)
        .env_clear()
        .output()
        .await
        .unwrap()
}
use e2e::cluster::on_postgres;
use serde_json::json;

#[tokio::test]
async fn a_backup_under_load_restores_every_acknowledged_run() {
    if on_postgres() {
        return; // the store is the database's: pg_dump (see the README)
    }
    let mut app = spawn_app().await;
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (url, http) = (app.url.clone(), app.http.clone());
        let (acked, stop) = (acked.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = http
                    .post(format!("{url}/api/gateway/runs/start"))
                    .bearer_auth(e2e::app::TOKEN)
                    .json(&json!({"bundle_id": "echo", "input_data": {"text": "hi"}}))
                    .send()
                    .await;
                if let Ok(r) = r
                    && r.status().is_success()
                    && let Ok(b) = r.json::<serde_json::Value>().await
                    && let Some(id) = b["run_id"].as_str()
                {
                    acked.lock().unwrap().push(id.to_owned());
                }
            }
        })
    };
    e2e::wait::eventually(30, "runs under way", || async {
        (acked.lock().unwrap().len() >= 50).then_some(())
    })
    .await;
    let before: Vec<String> = acked.lock().unwrap().clone();
    // A bridge's own SQLite state, its last commit still in the WAL (not checkpointed).
    let bridge = rusqlite::Connection::open(app.data_dir.join("bridge.sqlite")).unwrap();
    bridge
        .execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE cursor (v INTEGER); INSERT INTO cursor VALUES (42);",
        )
        .unwrap();
    let out = app.data_dir.parent().unwrap().join("backup");
    let backup = |out: &std::path::Path| {
        let args = [
            "backup".as_ref(),
            "--data-dir".as_ref(),
            app.data_dir.as_os_str(),
            out.as_os_str(),
        ];
        let args: Vec<std::ffi::OsString> = args
            .iter()
            .map(|a: &&std::ffi::OsStr| a.to_os_string())
            .collect();
        async move { sb(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>()).await }
    };
    let made = backup(&out).await;
    assert!(made.status.success(), "{made:?}");
    let said = String::from_utf8_lossy(&made.stdout);
    let runs: usize = said
        .split(": ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a run count in {said:?}"));
    assert!(runs >= before.len(), "{said}");
    assert!(!out.join("bridge.sqlite-wal").exists() && !out.join("switchboard.db-wal").exists());
    let copied = rusqlite::Connection::open(out.join("bridge.sqlite")).unwrap();
    let v: i64 = copied
        .query_row("SELECT v FROM cursor", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        v, 42,
        "a bridge's database is copied with what its WAL holds"
    );
    drop((copied, bridge));
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(
        acked.lock().unwrap().len() > before.len(),
        "the load went on during the backup"
    );
    // A second backup into the same place is refused (not empty), and so is one inside
    // the data dir (it would copy itself).
    assert!(!backup(&out).await.status.success());
    let inside = backup(&app.data_dir.join("backups/today")).await;
    let why = String::from_utf8_lossy(&inside.stderr);
    assert!(why.contains("inside the data dir"), "{why}");
    // What the source holds now, to compare the restored ledgers with.
    let all: Vec<String> = acked.lock().unwrap().clone();
    let mut source = std::collections::HashMap::new();
    for id in &all {
        source.insert(id.clone(), app.ledger(id).await);
    }
    app.terminate().await;

    // Restore into the app's data dir, the old one moved aside; refused while it is there.
    let restore = [
        "restore".as_ref(),
        "--data-dir".as_ref(),
        app.data_dir.as_os_str(),
        out.as_os_str(),
    ];
    let refused = sb(&restore).await;
    assert!(
        !refused.status.success(),
        "a data dir with a store is not overwritten"
    );
    let aside = app.data_dir.with_extension("old");
    std::fs::rename(&app.data_dir, &aside).unwrap();
    let restored = sb(&restore).await;
    assert!(restored.status.success(), "{restored:?}");
    // Every file of the data dir comes along (keys still private), but the live WAL files.
    for e in std::fs::read_dir(&aside).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with("-wal") || name.ends_with("-shm") {
            continue;
        }
        assert!(app.data_dir.join(&name).exists(), "{name} comes along");
    }
    use std::os::unix::fs::PermissionsExt;
    let key = std::fs::metadata(app.data_dir.join("web.key")).unwrap();
    assert_eq!(
        key.permissions().mode() & 0o077,
        0,
        "the web app's key stays private"
    );
    app.restart().await;
    // Every run acknowledged before the backup is there, its start record as acknowledged;
    // a run caught mid-way is driven on by the restored gateway to the same end, step for
    // step; a run acknowledged during the backup is there that way or not at all.
    for id in &all {
        let (st, run) = app.get(&format!("/api/gateway/runs/{id}")).await;
        if st == 404 {
            assert!(!before.contains(id), "acknowledged run {id} is lost");
            continue;
        }
        assert_eq!(st, 200, "{run}");
        app.wait_for_status(id, "completed").await;
        let restored = app.ledger(id).await;
        let had = &source[id];
        assert_eq!(restored[0], had[0], "run {id}'s acknowledged start");
        let shape = |l: &[serde_json::Value]| -> Vec<String> {
            l.iter()
                .map(|r| {
                    format!(
                        "{} {} {} {}",
                        r["seq"], r["step_id"], r["status"], r["effect"]["type"]
                    )
                })
                .collect()
        };
        assert_eq!(shape(&restored), shape(had), "run {id}'s steps");
    }
    // And it goes on: a new run completes on the restored store.
    let run = app.start_run("echo", json!({"text": "after"})).await;
    app.wait_for_status(&run, "completed").await;
}

#[tokio::test]
async fn a_damaged_backup_is_refused() {
    if on_postgres() {
        return;
    }
    let app = spawn_app().await;
    let bad = app.data_dir.parent().unwrap().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("switchboard.db"), b"not a database, only text").unwrap();
    let target = app.data_dir.parent().unwrap().join("restored");
    let r = std::process::Command::new(e2e::process::binary())
        .args(["restore", "--data-dir"])
        .arg(&target)
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("damaged"),
        "{r:?}"
    );
    assert!(!target.join("switchboard.db").exists());
}
