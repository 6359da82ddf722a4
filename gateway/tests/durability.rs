//! `kill -9` the server with 200 runs in flight and 50 waiting, restart it on the same data
//! dir, and check that nothing acknowledged was lost and nothing was recorded twice.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use e2e::app::spawn_app;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

#[tokio::test]
async fn kill_9_loses_no_acknowledged_write_and_records_no_step_twice() {
    let mut app = spawn_app().await;

    // 50 runs waiting for an answer.
    let mut waiting = Vec::new();
    for _ in 0..50 {
        waiting.push(app.start_run("ask", json!({"text": "q"})).await);
    }
    let mut keys = Vec::new();
    for r in &waiting {
        keys.push(app.wait_key(r).await);
    }

    // Timers armed before the crash (2 s, so they fall due around the restart).
    let mut armed = Vec::new();
    for _ in 0..5 {
        armed.push(app.start_run("tick", json!({})).await);
    }
    for r in &armed {
        app.wait_for_status(r, "waiting").await;
    }

    // 200 runs started concurrently (each arms a 2 s timer), and answers to half of the
    // waiting runs, while the server is killed part-way through.
    let acked_runs = Arc::new(Mutex::new(Vec::<String>::new()));
    let acked_cmds = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let base = app.url.clone();
    let http = app.http.clone();
    let mut tasks = Vec::new();
    for (i, (run, key)) in waiting.iter().zip(&keys).enumerate().take(25) {
        let (http, base, acked) = (http.clone(), base.clone(), acked_cmds.clone());
        let (run, key) = (run.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("ans-{i}");
            let body = json!({"command_id": id, "run_id": run, "type": "resume",
                "payload": {"wait_key": key, "payload": {"response": format!("a{i}")}}});
            let r = http
                .post(format!("{base}/api/gateway/commands"))
                .bearer_auth(e2e::app::TOKEN)
                .json(&body)
                .send()
                .await;
            if let Ok(r) = r
                && r.status() == 200
            {
                acked.lock().await.push((id, run));
            }
        }));
    }
    for i in 0..200 {
        let (http, base, acked) = (http.clone(), base.clone(), acked_runs.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(format!("{base}/api/gateway/runs/start"))
                .bearer_auth(e2e::app::TOKEN)
                .json(&json!({"bundle_id": "tick", "input_data": {"i": i}}))
                .send()
                .await;
            if let Ok(r) = r
                && r.status() == 200
                && let Ok(b) = r.json::<Value>().await
            {
                acked
                    .lock()
                    .await
                    .push(b["run_id"].as_str().unwrap_or_default().to_owned());
            }
        }));
    }
    // Kill once about half of the starts were acknowledged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acked_runs.lock().await.len() < 100 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    app.kill9().await;
    let killed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for t in tasks {
        let _ = t.await;
    }
    let acked_runs = acked_runs.lock().await.clone();
    let acked_cmds = acked_cmds.lock().await.clone();
    eprintln!(
        "acknowledged before kill -9: {} of 200 starts, {} of 25 answers",
        acked_runs.len(),
        acked_cmds.len()
    );
    assert!(
        acked_runs.len() >= 100,
        "only {} starts were acknowledged",
        acked_runs.len()
    );

    app.restart().await;

    // Every acknowledged start and command is there.
    for r in &acked_runs {
        let (st, b) = app.get(&format!("/api/gateway/runs/{r}")).await;
        assert_eq!(st, 200, "acknowledged run {r} is missing: {b}");
    }
    for (id, _) in &acked_cmds {
        let (st, b) = app.get(&format!("/api/gateway/commands/{id}")).await;
        assert_eq!(st, 200, "acknowledged command {id} is missing: {b}");
    }
    // Answer the rest (a repeat of an applied answer is a duplicate or a stale conflict).
    for (i, (run, key)) in waiting.iter().zip(&keys).enumerate() {
        let (st, b) = app
            .answer(&format!("ans-{i}"), run, key, json!(format!("a{i}")))
            .await;
        assert!(st == 200 || st == 409, "answer {i}: {st} {b}");
    }
    // Every run reaches its terminal state; timers armed before the crash fire after it.
    for r in acked_runs.iter().chain(&waiting).chain(&armed) {
        app.wait_for_status(r, "completed").await;
    }
    for (i, r) in waiting.iter().enumerate() {
        assert_eq!(
            app.run(r).await["output"],
            json!({"answer": format!("a{i}")})
        );
    }
    for r in acked_runs.iter().chain(&waiting) {
        check_ledger(&app.ledger(r).await);
    }
    // At least one timer was armed before the kill and fired after the restart.
    let mut crossed = 0;
    for r in acked_runs.iter().chain(&armed) {
        let l = app.ledger(r).await;
        let armed = l.iter().any(|x| {
            x["effect"]["type"] == "wait" && x["started_at"].as_str() < Some(killed_at.as_str())
        });
        let fired = l.iter().any(|x| {
            x["step_id"] == "wait_1.1"
                && x["status"] == "completed"
                && x["ended_at"].as_str() > Some(killed_at.as_str())
        });
        crossed += usize::from(armed && fired);
    }
    assert!(crossed > 0, "no timer crossed the crash");
    let started_runs: HashSet<_> = acked_runs.iter().collect();
    assert_eq!(started_runs.len(), acked_runs.len());
}

/// Contiguous seqs, a valid hash chain, no step recorded twice, one end record.
fn check_ledger(ledger: &[Value]) {
    let mut seen = HashSet::new();
    let mut prev = "0".repeat(64);
    for (i, r) in ledger.iter().enumerate() {
        assert_eq!(r["seq"].as_u64(), Some(i as u64 + 1), "{r}");
        assert_eq!(
            r["prev_hash"].as_str(),
            Some(prev.as_str()),
            "broken chain at {r}"
        );
        let rec: protocol::LedgerRecord = serde_json::from_value(r.clone()).unwrap();
        let mut blank = rec.clone();
        blank.record_hash = String::new();
        let h = hex::encode(Sha256::digest(serde_json::to_vec(&blank).unwrap()));
        assert_eq!(
            h, rec.record_hash,
            "record hash does not match its content: {r}"
        );
        prev = rec.record_hash.clone();
        let key = (
            rec.step_id.clone(),
            format!("{:?}", rec.status),
            rec.attempt,
        );
        assert!(seen.insert(key), "step recorded twice: {r}");
    }
    let ends = ledger
        .iter()
        .filter(|r| r["step_id"] == "run" && r["status"] != "started")
        .count();
    assert_eq!(ends, 1, "one end record: {ledger:?}");
}
