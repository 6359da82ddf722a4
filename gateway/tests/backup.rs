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
    assert!(
        said.contains("backed up") && said.contains("runs"),
        "{said}"
    );
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(
        acked.lock().unwrap().len() > before.len(),
        "the load went on during the backup"
    );
    // A second backup into the same place is refused: it is not empty.
    let again = backup(&out).await;
    assert!(!again.status.success());
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
        if name.starts_with("switchboard.db-") {
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
    for id in &before {
        let (st, run) = app.get(&format!("/api/gateway/runs/{id}")).await;
        assert_eq!(st, 200, "acknowledged run {id} is served: {run}");
        assert!(!app.ledger(id).await.is_empty(), "with its ledger");
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
