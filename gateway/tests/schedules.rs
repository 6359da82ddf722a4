//! Schedules against the real server. Fire-time planning (cron across DST, catch-up, limits)
//! is unit-tested with fixed clocks in `schedule.rs`; these tests use the shortest interval
//! allowed, 1 s.

use std::time::Duration;

use e2e::app::{assert_refused, eventually, spawn_app};
use serde_json::{Value, json};

async fn schedule(app: &e2e::app::TestApp, body: Value) -> String {
    let (st, b) = app.post("/api/gateway/runs/schedule", &body).await;
    assert_eq!(st, 200, "{b}");
    b["run_id"].as_str().unwrap().to_owned()
}

async fn info(app: &e2e::app::TestApp, id: &str) -> Value {
    let (_, b) = app.get("/api/gateway/schedules?limit=100").await;
    b["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["run_id"] == id)
        .cloned()
        .expect("listed")
}

async fn children(app: &e2e::app::TestApp, id: &str) -> Vec<Value> {
    let (_, b) = app
        .get(&format!("/api/gateway/runs/{id}/history_bundle"))
        .await;
    b["children"].as_array().unwrap().clone()
}

async fn wait_fired(app: &e2e::app::TestApp, id: &str, n: u64) -> Value {
    eventually(10, &format!("schedule {id} to fire {n} times"), || async {
        let s = info(app, id).await;
        (s["fired"].as_u64().unwrap_or_default() >= n).then_some(s)
    })
    .await
}

#[tokio::test]
async fn an_interval_fires_repeat_count_times_then_completes() {
    let app = spawn_app().await;
    let id = schedule(&app, json!({"bundle_id": "echo", "input_data": {"text": "tick"}, "interval": "1s", "repeat_count": 3, "mode": "fixed_rate"})).await;
    let done = app.wait_for_status(&id, "completed").await;
    assert_eq!(done["output"]["fired"], 3);
    let kids = children(&app, &id).await;
    assert_eq!(kids.len(), 3);
    for k in &kids {
        assert_eq!(k["status"], "completed");
        assert_eq!(k["output"], json!({"text": "tick"}));
        assert_eq!(
            k["session_id"],
            format!("schedule:{id}"),
            "children share the schedule's session"
        );
    }
    let s = info(&app, &id).await;
    assert_eq!(s["last_result"]["status"], "completed");
    assert!(s["next_fire_at"].is_null());
    let fires: Vec<Value> = app
        .ledger(&id)
        .await
        .into_iter()
        .filter(|r| r["effect"]["type"] == "schedule_fire")
        .collect();
    assert_eq!(fires.len(), 3);
}

#[tokio::test]
async fn repeat_until_stops_the_schedule() {
    let app = spawn_app().await;
    let until = chrono::Utc::now() + chrono::Duration::milliseconds(2500);
    let until_s = until.to_rfc3339();
    let id = schedule(&app, json!({"bundle_id": "echo", "interval": "1s", "mode": "fixed_rate", "repeat_until": until_s})).await;
    let done = app.wait_for_status(&id, "completed").await;
    let fired = done["output"]["fired"].as_u64().unwrap();
    assert!((1..=3).contains(&fired), "{done}");
    for r in app
        .ledger(&id)
        .await
        .iter()
        .filter(|r| r["effect"]["type"] == "schedule_fire")
    {
        let due = chrono::DateTime::parse_from_rfc3339(
            r["effect"]["payload"]["due_at"].as_str().unwrap(),
        )
        .unwrap();
        assert!(due <= until, "fired after repeat_until: {r}");
    }
}

#[tokio::test]
async fn cron_in_a_time_zone_plans_local_time() {
    let app = spawn_app().await;
    let (st, b) = app
        .post(
            "/api/gateway/runs/schedule",
            &json!({"bundle_id": "echo", "cron": "0 9 * * *", "timezone": "Europe/Paris"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let next = chrono::DateTime::parse_from_rfc3339(b["next_fire_at"].as_str().unwrap()).unwrap();
    let local = next.with_timezone(&chrono_tz::Europe::Paris);
    assert_eq!(local.format("%H:%M").to_string(), "09:00");
    assert!(next > chrono::Utc::now() && next < chrono::Utc::now() + chrono::Duration::hours(25));
    let s = info(&app, b["run_id"].as_str().unwrap()).await;
    assert_eq!(s["status"], "waiting");
    assert_eq!(s["spec"]["mode"], "fixed_rate");
}

#[tokio::test]
async fn update_schedule_applies_now_or_is_refused_with_the_field() {
    let app = spawn_app().await;
    let id = schedule(&app, json!({"bundle_id": "echo", "interval": "1h", "start_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()})).await;
    assert_eq!(info(&app, &id).await["fired"], 0);
    // Without `apply`, a new interval waits for the next firing: the due time stays.
    let planned = info(&app, &id).await["next_fire_at"].clone();
    let (st, b) = app
        .command("u0", &id, "update_schedule", json!({"interval": "2h"}))
        .await;
    assert_eq!(st, 200, "{b}");
    let s = info(&app, &id).await;
    assert_eq!(s["next_fire_at"], planned);
    assert_eq!(s["spec"]["interval_ms"], 7_200_000);
    let (st, b) = app
        .command(
            "u1",
            &id,
            "update_schedule",
            json!({"interval": "1s", "mode": "fixed_rate", "apply": "now"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    wait_fired(&app, &id, 2).await;
    let (st, b) = app
        .command("u2", &id, "update_schedule", json!({"cron": "0 0 9 * * *"}))
        .await;
    assert_refused(st, &b, 400, "payload.cron");
    let (st, b) = app
        .command("u3", &id, "update_schedule", json!({"every": "1h"}))
        .await;
    assert_eq!(st, 400, "{b}");
    let plain = app.start_run("ask", json!({})).await;
    let (st, b) = app
        .command("u4", &plain, "update_schedule", json!({"interval": "1h"}))
        .await;
    assert_refused(st, &b, 409, "not a schedule");
}

#[tokio::test]
async fn a_paused_schedule_does_not_fire_until_resumed() {
    let app = spawn_app().await;
    let id = schedule(
        &app,
        json!({"bundle_id": "echo", "interval": "1s", "mode": "fixed_rate"}),
    )
    .await;
    wait_fired(&app, &id, 1).await;
    assert_eq!(app.command("p", &id, "pause", json!({})).await.0, 200);
    let s = info(&app, &id).await;
    let before = s["fired"].as_u64().unwrap();
    // Past the next due time (the clock is what this test waits for), nothing fired.
    let due = chrono::DateTime::parse_from_rfc3339(s["next_fire_at"].as_str().unwrap()).unwrap();
    let left = (due.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(200)).await;
    assert_eq!(
        info(&app, &id).await["fired"].as_u64().unwrap(),
        before,
        "no firing while paused"
    );
    assert_eq!(app.command("r", &id, "resume", json!({})).await.0, 200);
    wait_fired(&app, &id, before + 2).await;
    // The ledger's order says the same (a late scheduler would not pass this): no firing
    // between the pause and the resume.
    let ledger = app.ledger(&id).await;
    let at = |kind: &str| ledger.iter().position(|r| r["effect"]["type"] == kind);
    let (paused, resumed) = (at("pause").unwrap(), at("resume").unwrap());
    let fired_between = ledger[paused..resumed]
        .iter()
        .any(|r| r["effect"]["type"] == "schedule_fire");
    assert!(!fired_between, "{ledger:#?}");
}

#[tokio::test]
async fn cancelling_a_schedule_cancels_its_running_child() {
    let app = spawn_app().await;
    let id = schedule(
        &app,
        json!({"bundle_id": "ask", "interval": "1h", "share_context": false}),
    )
    .await;
    wait_fired(&app, &id, 1).await;
    let kid = children(&app, &id).await[0]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let k = app.wait_for_status(&kid, "waiting").await;
    assert!(
        k["session_id"].is_null(),
        "share_context false: the child has no shared session"
    );
    assert_eq!(app.command("x", &id, "cancel", json!({})).await.0, 200);
    assert_eq!(app.run(&id).await["status"], "cancelled");
    assert_eq!(app.run(&kid).await["status"], "cancelled");
    assert_eq!(info(&app, &id).await["status"], "cancelled");
}

#[tokio::test]
async fn a_restart_fires_a_missed_firing_once_not_in_a_burst() {
    let mut app = spawn_app().await;
    let id = schedule(
        &app,
        json!({"bundle_id": "echo", "interval": "1s", "mode": "fixed_rate"}),
    )
    .await;
    wait_fired(&app, &id, 1).await;
    app.kill9().await;
    tokio::time::sleep(Duration::from_millis(3000)).await; // about three firings missed
    let before = fired_on_disk(&app, &id).await;
    let restart = chrono::Utc::now();
    app.restart().await;
    wait_fired(&app, &id, before + 2).await; // the catch-up, then a regular firing
    // Since the restart, exactly one firing was for a due time before it: one catch-up,
    // not one per missed tick; every later firing was planned after the restart.
    let time =
        |r: &Value, k: &str| chrono::DateTime::parse_from_rfc3339(r[k].as_str().unwrap()).unwrap();
    let fires: Vec<Value> = app
        .ledger(&id)
        .await
        .into_iter()
        .filter(|r| r["effect"]["type"] == "schedule_fire" && time(r, "started_at") >= restart)
        .collect();
    let late: Vec<&Value> = fires
        .iter()
        .filter(|r| time(&r["effect"]["payload"], "due_at") < restart)
        .collect();
    assert_eq!(late.len(), 1, "one catch-up firing, not a burst: {fires:?}");
    assert!(fires.len() >= 2);
}

/// Firings recorded in the store while the server is down.
async fn fired_on_disk(app: &e2e::app::TestApp, id: &str) -> u64 {
    if let Some(url) = &app.database_url {
        let sql = format!("SELECT fired::text FROM schedules WHERE run_id = '{id}'");
        return e2e::pg::query_texts(url, &sql).await[0].parse().unwrap();
    }
    let c = rusqlite::Connection::open(app.data_dir.join("switchboard.db")).unwrap();
    c.query_row("SELECT fired FROM schedules WHERE run_id = ?1", [id], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap() as u64
}

#[tokio::test]
async fn bad_schedules_name_the_field() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({"bundle_id": "echo", "interval": "5x"}), "interval"),
        (json!({"bundle_id": "echo", "cron": "0 0 9 * * *"}), "cron"),
        (
            json!({"bundle_id": "echo", "cron": "0 9 * * *", "timezone": "Mars/Olympus"}),
            "timezone",
        ),
        (
            json!({"bundle_id": "echo", "interval": "1h", "repeat_count": 0}),
            "repeat_count",
        ),
        (json!({"bundle_id": "echo"}), "interval"),
        (
            json!({"bundle_id": "echo", "interval": "200ms"}),
            "interval",
        ),
        (
            json!({"bundle_id": "echo", "interval": "1h", "notify": ["pigeon:1"]}),
            "notify",
        ),
        (
            json!({"bundle_id": "echo", "interval": "1h", "session_id": ""}),
            "session_id",
        ),
    ] {
        let (st, b) = app.post("/api/gateway/runs/schedule", &body).await;
        assert_eq!(st, 400, "{body}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().starts_with(field),
            "{body}: {b}"
        );
    }
    let (st, _) = app
        .post(
            "/api/gateway/runs/schedule",
            &json!({"bundle_id": "nope", "interval": "1h"}),
        )
        .await;
    assert_eq!(st, 404);
    assert_eq!(
        app.get("/api/gateway/schedules").await.1["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn fixed_delay_counts_from_the_end_of_the_previous_child() {
    let app = spawn_app().await;
    let id = schedule(
        &app,
        json!({"bundle_id": "tick", "interval": "1s", "repeat_count": 2}),
    )
    .await;
    assert_eq!(
        info(&app, &id).await["spec"]["mode"],
        "fixed_delay",
        "the default for intervals"
    );
    let done = app.wait_status(&id, "completed", 15).await;
    assert_eq!(done["output"]["fired"], 2);
    let kids = children(&app, &id).await;
    let t =
        |v: &Value, k: &str| chrono::DateTime::parse_from_rfc3339(v[k].as_str().unwrap()).unwrap();
    let gap = t(&kids[1], "created_at") - t(&kids[0], "updated_at");
    assert!(
        gap >= chrono::Duration::milliseconds(990),
        "the second child starts after the first ended + 1 s: {gap}"
    );
}
