//! Replay: pages, per-run and global SSE, Last-Event-ID, `done`.

use e2e::app::{TestStore, records, spawn_app};
use serde_json::{Value, json};

async fn finished_approval(app: &e2e::app::TestApp) -> String {
    let run = app.start_run("approval", json!({"text": "ship it"})).await;
    app.answer_waiting("c-a", &run, json!("approve")).await;
    app.wait_for_status(&run, "completed").await;
    run
}

#[tokio::test]
async fn pages_concatenate_to_the_full_ledger_and_never_pass_the_end() {
    let app = spawn_app().await;
    let run = finished_approval(&app).await;
    let (_, full) = app
        .get(&format!(
            "/api/gateway/runs/{run}/ledger?after=0&limit=1000"
        ))
        .await;
    let full = full["items"].as_array().unwrap().clone();
    let n = full.len() as u64;
    assert!(n >= 5);
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let (_, p) = app
            .get(&format!(
                "/api/gateway/runs/{run}/ledger?after={after}&limit=2"
            ))
            .await;
        let items = p["items"].as_array().unwrap();
        assert!(p["next_after"].as_u64().unwrap() <= n);
        if items.is_empty() {
            assert_eq!(p["next_after"].as_u64().unwrap(), n);
            break;
        }
        after = p["next_after"].as_u64().unwrap();
        paged.extend(items.iter().cloned());
    }
    assert_eq!(paged, full);
    let seqs: Vec<u64> = full.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
    let (_, past) = app
        .get(&format!("/api/gateway/runs/{run}/ledger?after=999"))
        .await;
    assert_eq!(
        past["next_after"].as_u64().unwrap(),
        n,
        "clamped to the end"
    );
    // The records are hash-chained.
    for w in full.windows(2) {
        assert_eq!(w[1]["prev_hash"], w[0]["record_hash"]);
    }
}

#[tokio::test]
async fn run_stream_replays_with_ids_resumes_after_last_event_id_and_ends_with_done() {
    let app = spawn_app().await;
    let run = finished_approval(&app).await;
    let ledger = app.ledger(&run).await;
    let path = format!("/api/gateway/runs/{run}/ledger/stream");
    let evs = app
        .sse(&path, None, |e| e.last().is_some_and(|e| e.event == "done"))
        .await;
    assert_eq!(records(&evs), ledger);
    let ids: Vec<String> = evs
        .iter()
        .filter(|e| e.event == "step")
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(
        ids,
        (1..=ledger.len())
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(evs.last().unwrap().data["status"], "completed");

    let evs = app
        .sse(&path, Some(3), |e| {
            e.last().is_some_and(|e| e.event == "done")
        })
        .await;
    assert_eq!(records(&evs), ledger[3..].to_vec());
}

#[tokio::test]
async fn live_stream_and_global_stream_deliver_the_same_records() {
    let app = spawn_app().await;
    let run = app.start_run("approval", json!({})).await;
    let key = app.wait_key(&run).await;
    let path = format!("/api/gateway/runs/{run}/ledger/stream?after=0");
    let before = app.streams().await;
    let live = {
        let app_ref = &app;
        let listen = app_ref.sse(&path, None, |e| e.last().is_some_and(|e| e.event == "done"));
        let act = async {
            app_ref.wait_streams(before + 1).await;
            app_ref.answer("c-live", &run, &key, json!("reject")).await
        };
        let (evs, (st, _)) = tokio::join!(listen, act);
        assert_eq!(st, 200);
        evs
    };
    let ledger = app.ledger(&run).await;
    assert_eq!(records(&live), ledger);

    let global = app
        .sse("/api/gateway/ledger/stream?after=0", None, |e| {
            records(e)
                .iter()
                .filter(|r| r["run_id"] == run.as_str())
                .count()
                == ledger.len()
        })
        .await;
    let mine: Vec<Value> = records(&global)
        .into_iter()
        .filter(|r| r["run_id"] == run.as_str())
        .collect();
    assert_eq!(mine, ledger);
    let cursors: Vec<u64> = global
        .iter()
        .filter(|e| e.event == "step")
        .map(|e| e.id.parse().unwrap())
        .collect();
    // Increasing, each record once (contiguous on SQLite; on PostgreSQL a cursor also
    // carries the writing transaction, so numbers are skipped, never records).
    assert!(
        cursors.windows(2).all(|w| w[1] > w[0]),
        "global cursors increase"
    );
    if app.store == TestStore::Sqlite {
        assert!(cursors.windows(2).all(|w| w[1] == w[0] + 1), "contiguous");
    }
    // Resuming the global stream after a cursor gives exactly what follows it.
    let from = cursors[1];
    let rest = app
        .sse("/api/gateway/ledger/stream", Some(from), |e| {
            records(e).len() == cursors.len() - 2
        })
        .await;
    assert_eq!(
        rest.iter().find(|e| e.event == "step").unwrap().id,
        cursors[2].to_string()
    );
}

#[tokio::test]
async fn a_catch_up_longer_than_a_page_arrives_whole_and_in_order() {
    let app = spawn_app().await;
    // About 1,200 records: the streams read them ahead in pages of 500.
    let src = "steps:\n  - loop:\n      max: 600\n      steps:\n        - set: {a: 1}\n        - set: {b: 2}\n";
    assert_eq!(app.upload("long.yaml", src).await.0, 200);
    let run = app.start_run("long", json!({})).await;
    app.wait_for_status(&run, "completed").await;
    let ledger = app.ledger(&run).await;
    assert!(ledger.len() > 1_000, "{}", ledger.len());

    let path = format!("/api/gateway/runs/{run}/ledger/stream?after=0");
    let evs = app
        .sse(&path, None, |e| e.last().is_some_and(|e| e.event == "done"))
        .await;
    assert_eq!(records(&evs), ledger);
    let ids: Vec<u64> = evs
        .iter()
        .filter(|e| e.event == "step")
        .map(|e| e.id.parse().unwrap())
        .collect();
    assert_eq!(ids, (1..=ledger.len() as u64).collect::<Vec<_>>());

    let global = app
        .sse("/api/gateway/ledger/stream?after=0", None, |e| {
            records(e).len() >= ledger.len()
        })
        .await;
    let cursors: Vec<u64> = global
        .iter()
        .filter(|e| e.event == "step")
        .map(|e| e.id.parse().unwrap())
        .collect();
    assert!(cursors.windows(2).all(|w| w[1] > w[0]), "{cursors:?}");
    if app.store == TestStore::Sqlite {
        assert_eq!(cursors, (1..=cursors.len() as u64).collect::<Vec<_>>());
    }
    let mine: Vec<Value> = records(&global)
        .into_iter()
        .filter(|r| r["run_id"] == run.as_str())
        .collect();
    assert_eq!(mine, ledger);
}

#[tokio::test]
async fn batch_reads_several_runs_at_once() {
    let app = spawn_app().await;
    let a = app.start_run("echo", json!({})).await;
    let b = app.start_run("echo", json!({})).await;
    app.wait_for_status(&a, "completed").await;
    app.wait_for_status(&b, "completed").await;
    let (st, body) = app
        .post(
            "/api/gateway/runs/ledger/batch",
            &json!({"limit": 2, "runs": [{"run_id": a, "after": 0}, {"run_id": b, "after": 1}]}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["runs"][&a]["items"].as_array().unwrap().len(), 2);
    assert_eq!(body["runs"][&b]["items"][0]["seq"], 2);
}

/// Reads a raw SSE body until it ends (or `limit` passes); the events it held.
async fn read_all(
    resp: reqwest::Response,
    limit: std::time::Duration,
) -> (Vec<protocol::SseEvent>, String) {
    use futures::StreamExt;
    let mut parser = protocol::sse::Parser::default();
    let (mut events, mut text) = (Vec::new(), String::new());
    let mut body = resp.bytes_stream();
    let _ = tokio::time::timeout(limit, async {
        while let Some(Ok(b)) = body.next().await {
            if text.len() < 4096 {
                text.push_str(&String::from_utf8_lossy(&b));
            }
            events.extend(parser.feed(&b));
        }
    })
    .await;
    (events, text)
}

#[tokio::test]
async fn idle_streams_get_keep_alive_comments() {
    let app = e2e::app::spawn_with(e2e::app::Opts {
        env: vec![("SWITCHBOARD_SSE_KEEPALIVE", "200ms".into())],
        ..Default::default()
    })
    .await;
    let run = app.start_run("ask", json!({})).await;
    app.wait_for_status(&run, "waiting").await;
    let resp = app
        .http
        .get(app.url(&format!("/api/gateway/runs/{run}/ledger/stream")))
        .bearer_auth(e2e::app::TOKEN)
        .send()
        .await
        .unwrap();
    let (_, text) = read_all(resp, std::time::Duration::from_millis(700)).await;
    assert!(text.matches(": keep-alive\n\n").count() >= 2, "{text}");
}

#[tokio::test]
async fn a_reader_that_falls_behind_is_dropped_without_slowing_the_run_and_resumes() {
    let app = e2e::app::spawn_with(e2e::app::Opts {
        env: vec![("SWITCHBOARD_BUS_CAPACITY", "16".into())],
        ..Default::default()
    })
    .await;
    // About 20,000 records of about 2 KB: far more than socket buffers hold.
    let filler = "x".repeat(1000);
    let src = format!(
        "steps:\n  - ask: go?\n  - loop:\n      max: 10000\n      steps:\n        - set: {{a: {filler}}}\n        - set: {{b: {filler}}}\n"
    );
    assert_eq!(app.upload("flood.yaml", &src).await.0, 200);
    let run = app.start_run("flood", json!({})).await;
    let s = app.wait_for_status(&run, "waiting").await;
    let after = s["ledger_len"].as_u64().unwrap();
    let slow = app
        .http
        .get(app.url(&format!(
            "/api/gateway/runs/{run}/ledger/stream?after={after}"
        )))
        .bearer_auth(e2e::app::TOKEN)
        .send()
        .await
        .unwrap();
    // The reader does not read while the run writes every record.
    app.answer_waiting("go", &run, json!("go")).await;
    let done = app.wait_for_status(&run, "completed").await;
    let total = done["ledger_len"].as_u64().unwrap();
    assert!(total > 20_000);
    // Now it reads: what was buffered, then the end of a stream that was dropped.
    let (events, _) = read_all(slow, std::time::Duration::from_secs(20)).await;
    assert!(
        events.iter().all(|e| e.event != "done"),
        "a dropped stream has no `done`"
    );
    let last: u64 = events
        .iter()
        .rev()
        .find(|e| e.event == "step")
        .map_or(after, |e| e.id.parse().unwrap());
    assert!(
        last < total,
        "it fell behind and was dropped at {last} of {total}"
    );
    // Resuming after its cursor gives exactly the rest, then `done`.
    let rest = app
        .http
        .get(app.url(&format!("/api/gateway/runs/{run}/ledger/stream")))
        .bearer_auth(e2e::app::TOKEN)
        .header("Last-Event-ID", last.to_string())
        .send()
        .await
        .unwrap();
    let (events, _) = read_all(rest, std::time::Duration::from_secs(20)).await;
    let ids: Vec<u64> = events
        .iter()
        .filter(|e| e.event == "step")
        .map(|e| e.id.parse().unwrap())
        .collect();
    assert_eq!(ids, ((last + 1)..=total).collect::<Vec<_>>());
    assert_eq!(events.last().unwrap().event, "done");
}
