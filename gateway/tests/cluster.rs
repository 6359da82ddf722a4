//! Several gateway nodes on one PostgreSQL database, as real processes: a run crosses nodes,
//! every node's global stream is the ledger table in cursor order, a dead or paused runner
//! node loses nothing and repeats nothing (the fence stops a paused one), and schedules and
//! webhooks act once. These run in
//! `scripts/test`'s PostgreSQL pass and skip on the embedded store.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use e2e::app::{Opts, TestApp, eventually, records};
use e2e::cluster::{global_stream, lease_holder, ledger_table, nodes, on_postgres, repeated_steps};
use futures::StreamExt;
use serde_json::json;

async fn two() -> (TestApp, TestApp) {
    let mut v = nodes(2, Opts::default).await;
    let b = v.pop().unwrap();
    (v.pop().unwrap(), b)
}

/// Starts `n` runs of `flow`, alternating between the nodes, 32 at a time.
async fn start_many(nodes: &[&TestApp], flow: &str, n: usize) -> Vec<String> {
    futures::stream::iter(0..n)
        .map(|i| nodes[i % nodes.len()].start_run(flow, json!({"text": format!("r{i}")})))
        .buffer_unordered(32)
        .collect()
        .await
}

#[tokio::test]
async fn a_run_started_on_one_node_is_answered_and_streamed_on_the_other() {
    if !on_postgres() {
        return;
    }
    let (a, b) = two().await;
    let run = a.start_run("approval", json!({"text": "cross"})).await;
    let s = b.wait_for_status(&run, "waiting").await;
    let key = s["waiting"]["wait_key"].as_str().unwrap().to_owned();
    let path = format!("/api/gateway/runs/{run}/ledger/stream?after=0");
    let before = b.streams().await;
    let (evs, _) = tokio::join!(
        b.sse(&path, None, |e| e.last().is_some_and(|e| e.event == "done")),
        async {
            b.wait_streams(before + 1).await;
            b.answer("cross-b", &run, &key, json!("approve")).await
        }
    );
    assert_eq!(evs.last().unwrap().event, "done", "{evs:?}");
    assert_eq!(records(&evs), a.ledger(&run).await);
    assert_eq!(a.run(&run).await["output"], json!({"decision": "approve"}));
    // The web app signs forms with one key on every node: a page from A posts to B.
    assert_eq!(web_csrf(&a).await, web_csrf(&b).await);
}

#[tokio::test]
async fn credentials_flows_and_the_pause_changed_on_one_node_hold_on_the_other() {
    if !on_postgres() {
        return;
    }
    let (a, b) = two().await;
    // A key made on A works on B; revoked on A, B refuses it.
    let made = a.create_key("dashboard", &["read"]).await;
    let key = made["token"].as_str().unwrap();
    let (_, keys) = a.get("/api/gateway/keys").await;
    let id = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "dashboard")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let on_b = |want: u16| {
        let b = &b;
        async move {
            let (st, _) = b.with_token(key).get("/api/gateway/runs").await;
            (st == want).then_some(())
        }
    };
    eventually(10, "B to accept a key made on A", || on_b(200)).await;
    let st = a
        .http
        .delete(a.url(&format!("/api/gateway/keys/{id}")))
        .bearer_auth(e2e::app::TOKEN)
        .send()
        .await
        .unwrap()
        .status();
    assert!(st.is_success(), "{st}");
    eventually(10, "B to refuse a key revoked on A", || on_b(401)).await;
    // A flow uploaded to A starts on B, in its new version.
    let (st, body) = a
        .upload("fresh.yaml", "steps:\n  - output: {fresh: 1}\n")
        .await;
    assert!(st < 300, "{body}");
    let run = eventually(10, "B to know the flow uploaded to A", || async {
        let (st, r) = b
            .post("/api/gateway/runs/start", &json!({"bundle_id": "fresh"}))
            .await;
        (st == 200).then(|| r["run_id"].as_str().unwrap().to_owned())
    })
    .await;
    assert_eq!(
        b.wait_for_status(&run, "completed").await["output"],
        json!({"fresh": 1})
    );
    // A gateway-wide pause set on A holds on B, and lifting it on B frees A.
    let (st, _) = a.post("/api/gateway/pause", &json!({})).await;
    assert_eq!(st, 200);
    eventually(10, "B to refuse starts while paused", || async {
        let (st, r) = b
            .post("/api/gateway/runs/start", &json!({"bundle_id": "echo"}))
            .await;
        (st == 503 && r["error"]["code"] == "gateway_paused").then_some(())
    })
    .await;
    let (st, _) = b.post("/api/gateway/resume", &json!({})).await;
    assert_eq!(st, 200);
    eventually(10, "A to start runs again", || async {
        let (st, _) = a
            .post("/api/gateway/runs/start", &json!({"bundle_id": "echo"}))
            .await;
        (st == 200).then_some(())
    })
    .await;
}

/// The CSRF value of a web app form, for the admin's session.
async fn web_csrf(node: &TestApp) -> String {
    let page = node
        .http
        .get(node.url("/app/schedules"))
        .header("cookie", format!("sb_session={}", e2e::app::TOKEN))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = page
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF field");
    let rest = &page[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn concurrent_starts_on_two_nodes_reach_every_global_stream_once_in_cursor_order() {
    if !on_postgres() {
        return;
    }
    let (a, b) = two().await;
    // Each `echo` run writes three records; the readers follow while both nodes commit.
    let want = 400 * 3;
    let both = [&a, &b];
    let (on_a, on_b, ids) = tokio::join!(
        global_stream(&a, want),
        global_stream(&b, want),
        start_many(&both, "echo", 400)
    );
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 400);
    let table = ledger_table(&a).await;
    assert_eq!(table.len(), want);
    for got in [on_a, on_b] {
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "cursors increase");
        assert_eq!(got, table, "every record once, in the table's cursor order");
    }
    // Both nodes' runners drove runs (each run claimed by one of them).
    assert_eq!(owners(&a).await.len(), 2);
}

/// The nodes that drive runs, as the `runs` table says.
async fn owners(node: &TestApp) -> Vec<String> {
    let url = node.database_url.as_deref().unwrap();
    e2e::pg::query_texts(
        url,
        "SELECT DISTINCT owner FROM runs WHERE owner IS NOT NULL",
    )
    .await
}

#[tokio::test]
async fn killing_the_runner_node_loses_no_acknowledged_write_and_repeats_no_step() {
    if !on_postgres() {
        return;
    }
    let (mut a, b) = two().await;
    let asks = start_many(&[&a, &b], "ask", 50).await;
    for id in &asks {
        b.wait_for_status(id, "waiting").await;
    }
    // 200 runs in flight with timers armed (`tick` waits 2 s), started through both nodes.
    let ticks = start_many(&[&a, &b], "tick", 200).await;
    a.kill9().await;
    // B takes the runner lease within its TTL and finishes every acknowledged run.
    for (i, id) in asks.iter().enumerate() {
        let (st, body) = b
            .answer_waiting(&format!("after-kill-{i}"), id, json!("yes"))
            .await;
        assert!(st == 200 || st == 202, "{st} {body}");
    }
    for id in ticks.iter().chain(&asks) {
        b.wait_status(id, "completed", 30).await;
        let ledger = b.ledger(id).await;
        assert_eq!(
            repeated_steps(&ledger),
            Vec::<(String, String)>::new(),
            "{id}"
        );
    }
}

#[tokio::test]
async fn a_paused_runner_node_that_lost_its_lease_cannot_commit_and_stops() {
    if !on_postgres() {
        return;
    }
    let (mut a, b) = two().await;
    let a_pid = a.pid().unwrap();
    assert!(lease_holder(&b).await.contains(&format!(":{a_pid}:")));
    // Runs that A drives, waiting on their timers.
    let ticks = start_many(&[&a], "tick", 20).await;
    for id in &ticks {
        b.wait_for_status(id, "waiting").await;
    }
    // Freeze A (as a long GC pause or a partition would) past the lease's TTL.
    signal("STOP", a_pid);
    let b_pid = b.pid().unwrap();
    eventually(20, "node B to take the runner lease", || async {
        lease_holder(&b)
            .await
            .contains(&format!(":{b_pid}:"))
            .then_some(())
    })
    .await;
    signal("CONT", a_pid);
    // A wakes with writes in flight: the fence refuses them, and A stops.
    let status = a.wait_exit(15).await.expect("the paused node stops");
    assert_eq!(status.code(), Some(3));
    for id in &ticks {
        b.wait_status(id, "completed", 30).await;
        assert_eq!(
            repeated_steps(&b.ledger(id).await),
            Vec::<(String, String)>::new()
        );
    }
    // B took A's runs over: B's node drives them now.
    let by = owners(&b).await;
    assert!(
        by.iter().all(|o| o.contains(&format!(":{b_pid}:"))),
        "{by:?}"
    );
}

#[tokio::test]
async fn a_schedule_fires_once_per_tick_and_a_webhook_is_delivered_once_with_two_nodes() {
    if !on_postgres() {
        return;
    }
    let opts = || Opts {
        env: vec![
            ("SWITCHBOARD_WEBHOOK_RETRY_BASE", "200ms".into()),
            ("SWITCHBOARD_HTTP_ALLOW", "127.0.0.1".into()),
        ],
        ..Default::default()
    };
    let v = nodes(2, opts).await;
    let (a, b) = (&v[0], &v[1]);
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let url = receiver(got.clone()).await;
    let (st, hook) = b
        .post(
            "/api/gateway/webhooks",
            &json!({"url": url, "events": ["run.completed"], "flows": ["echo"]}),
        )
        .await;
    assert_eq!(st, 201, "{hook}");
    let (st, s) = a
        .post(
            "/api/gateway/runs/schedule",
            &json!({"bundle_id": "echo", "interval": "1s", "repeat_count": 3, "mode": "fixed_rate"}),
        )
        .await;
    assert_eq!(st, 200, "{s}");
    let id = s["run_id"].as_str().unwrap();
    let done = b.wait_status(id, "completed", 30).await;
    assert_eq!(done["output"]["fired"], 3, "{done}");
    let children: Vec<String> = b
        .runs_of("echo")
        .await
        .iter()
        .filter(|r| r["parent_run_id"] == id)
        .map(|r| r["run_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(children.len(), 3, "one child per tick");
    // `run.completed` of `echo` runs: the three children and the schedule's own run.
    eventually(15, "a delivery per completed run", || async {
        (got.lock().unwrap().len() >= 4).then_some(())
    })
    .await;
    let log = b.get("/api/gateway/webhooks/deliveries").await.1;
    let mut runs: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["run_id"].as_str().unwrap())
        .collect();
    runs.sort_unstable();
    let mut want: Vec<&str> = children.iter().map(String::as_str).chain([id]).collect();
    want.sort_unstable();
    assert_eq!(runs, want, "{log}");
    let sent = got.lock().unwrap().clone();
    assert_eq!(sent.len(), 4, "each delivery sent once: {sent:?}");
    assert_eq!(sent.iter().collect::<HashSet<_>>().len(), 4);
}

/// A loopback webhook receiver that keeps each delivery's id; returns its URL.
async fn receiver(got: Arc<Mutex<Vec<String>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: axum::http::HeaderMap| {
            let got = got.clone();
            async move {
                let id = h["x-switchboard-delivery"].to_str().unwrap_or_default();
                got.lock().unwrap().push(id.to_owned());
                axum::http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn signal(sig: &str, pid: u32) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}
