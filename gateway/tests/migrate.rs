//! `switchboard migrate`: a populated embedded store copied into PostgreSQL answers the same
//! through a PostgreSQL node (runs, ledgers with verified hash chains, the inbox, schedules,
//! credentials), and a waiting run carries on there. Runs in `scripts/test`'s PostgreSQL pass.

use e2e::app::{Opts, TestStore, spawn_with};
use protocol::LedgerRecord;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[tokio::test]
async fn an_embedded_store_migrated_to_postgres_answers_the_same() {
    if !e2e::cluster::on_postgres() {
        return;
    }
    let mut old = embedded().await;
    let done = old.start_run("echo", json!({"text": "before"})).await;
    old.wait_for_status(&done, "completed").await;
    let waiting = old.start_run("ask", json!({"text": "still there?"})).await;
    old.wait_for_status(&waiting, "waiting").await;
    // An answer in the inbox, and a schedule that has not fired yet.
    let parked = old.start_run("waiter", json!({})).await;
    old.wait_for_status(&parked, "waiting").await;
    let (st, s) = old
        .post(
            "/api/gateway/runs/schedule",
            &json!({"bundle_id": "echo", "interval": "1h", "mode": "fixed_rate"}),
        )
        .await;
    assert_eq!(st, 200, "{s}");
    let schedule = s["run_id"].as_str().unwrap().to_owned();
    let key = old.create_key("reader", &["read"]).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let inboxed = old
        .start_run("ask", json!({"text": "answered while no runner ran"}))
        .await;
    old.wait_for_status(&inboxed, "waiting").await;
    let ids = [&done, &waiting, &parked, &schedule];
    let mut before = Vec::new();
    for id in ids {
        before.push((old.run(id).await, old.ledger(id).await));
    }
    // An answer accepted while no runner runs stays in the inbox.
    old.terminate().await;
    old.args = vec!["--no-runner"];
    old.restart().await;
    let (st, b) = old
        .answer_waiting("inboxed", &inboxed, json!("later"))
        .await;
    assert!(st < 300, "{b}");
    old.terminate().await;

    let url = TestStore::Postgres.create_database().await.unwrap();
    let from = format!("sqlite:{}", old.data_dir.display());
    let out = migrate(&from, &url).await;
    let said = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}{err}");
    assert!(said.contains("hash chains verified"), "{said}");
    // Into a database that already holds a store, it refuses.
    let again = migrate(&from, &url).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));

    let new = spawn_with(Opts {
        store: TestStore::Postgres,
        database_url: Some(url),
        ..Default::default()
    })
    .await;
    for (id, (run, ledger)) in ids.iter().zip(&before) {
        assert_eq!(&new.run(id).await, run);
        let copied = new.ledger(id).await;
        assert_eq!(&copied, ledger);
        verify_chain(&copied);
    }
    let (st, _) = new.with_token(&key).get("/api/gateway/runs").await;
    assert_eq!(st, 200, "the API key still works");
    let (_, list) = new.get("/api/gateway/schedules").await;
    assert_eq!(list["items"][0]["run_id"], schedule.as_str());
    // The inbox, the waiting runs and the event waits carry on.
    let run = new.wait_for_status(&inboxed, "completed").await;
    assert_eq!(run["output"]["answer"], "later");
    let (st, b) = new
        .command(
            "ev-after",
            &waiting,
            "emit_event",
            json!({"name": "go", "scope": "global", "payload": {"n": 1}}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    new.wait_for_status(&parked, "completed").await;
    new.answer_waiting("after-migrate", &waiting, json!("yes"))
        .await;
    let run = new.wait_for_status(&waiting, "completed").await;
    assert_eq!(run["output"]["answer"], "yes");
}

#[tokio::test]
async fn a_tampered_ledger_or_a_bad_address_is_refused_and_nothing_is_copied() {
    if !e2e::cluster::on_postgres() {
        return;
    }
    let mut old = embedded().await;
    let run = old.start_run("echo", json!({"text": "genuine"})).await;
    old.wait_for_status(&run, "completed").await;
    // While a gateway still serves the store, nothing is copied.
    let url = TestStore::Postgres.create_database().await.unwrap();
    let from = format!("sqlite:{}", old.data_dir.display());
    let live = migrate(&from, &url).await;
    let err = String::from_utf8_lossy(&live.stderr);
    assert!(
        !live.status.success() && err.contains("stop it first"),
        "{err}"
    );
    old.terminate().await;
    let db = rusqlite::Connection::open(old.data_dir.join("switchboard.db")).unwrap();
    db.execute(
        "UPDATE ledger SET record = replace(record, 'genuine', 'forged!') WHERE seq = 2",
        [],
    )
    .unwrap();
    drop(db);
    let out = migrate(&from, &url).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("run `{run}` record 2")) && err.contains("hash"),
        "{err}"
    );
    let tables = e2e::pg::query_texts(
        &url,
        "SELECT COUNT(*)::text FROM pg_tables WHERE tablename = 'runs'",
    )
    .await;
    if tables[0] == "1" {
        let runs = e2e::pg::query_texts(&url, "SELECT COUNT(*)::text FROM runs").await;
        assert_eq!(runs, ["0"], "nothing was copied");
    }
    for (from, to, says) in [
        ("/no/prefix", url.as_str(), "must be sqlite:PATH"),
        (
            "sqlite:/does/not/exist",
            url.as_str(),
            "no Switchboard store",
        ),
        (from.as_str(), "mysql://x", "must be a postgres:// URL"),
    ] {
        let out = migrate(from, to).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{err}");
    }
}

/// A gateway on the embedded store, to migrate from.
async fn embedded() -> e2e::app::TestApp {
    spawn_with(Opts {
        store: TestStore::Sqlite,
        ..Default::default()
    })
    .await
}

async fn migrate(from: &str, to: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["migrate", "--from", from, "--to", to])
        .output()
        .await
        .unwrap()
}

/// Each record's hash covers its contents and the record before it.
fn verify_chain(ledger: &[Value]) {
    let mut prev = "0".repeat(64);
    for v in ledger {
        let rec: LedgerRecord = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(
            rec.prev_hash, prev,
            "record {} links to the one before",
            rec.seq
        );
        let mut blank = rec.clone();
        blank.record_hash = String::new();
        let hash = hex::encode(Sha256::digest(serde_json::to_vec(&blank).unwrap()));
        assert_eq!(hash, rec.record_hash, "record {} hash", rec.seq);
        prev = rec.record_hash;
    }
}
