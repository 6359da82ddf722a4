//! The terminal client (`switchboard runs|start|answer|tail`) against the real server.

use e2e::app::{TOKEN, spawn_app};

fn cli(app: &e2e::app::TestApp, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env("SWITCHBOARD_URL", &app.url)
        .env("SWITCHBOARD_TOKEN", TOKEN)
        .output()
        .expect("run the CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn start_answer_and_tail_a_run_from_the_terminal() {
    let app = spawn_app().await;
    let (ok, out, err) = cli(
        &app,
        &["start", "approval", "--input", r#"{"text":"release 2.0"}"#],
    );
    assert!(ok, "{err}");
    let run = out.trim().to_owned();
    app.wait_for_status(&run, "waiting").await;
    let (ok, out, _) = cli(&app, &["runs", "--status", "waiting"]);
    assert!(
        ok && out.contains(&run) && out.contains("Approve or reject: release 2.0"),
        "{out}"
    );
    let (ok, out, err) = cli(&app, &["answer", &run, "Approve."]);
    assert!(ok, "{err}");
    assert!(out.contains("answered decide.1"), "{out}");
    app.wait_for_status(&run, "completed").await;
    let (ok, out, err) = cli(&app, &["tail", &run]);
    assert!(ok, "{err}");
    assert!(
        out.contains("run_completed") && out.contains("Approved: release 2.0"),
        "{out}"
    );
    let (ok, _, err) = cli(&app, &["answer", &run, "again"]);
    assert!(!ok && err.contains("waits for no answer"), "{err}");
    let (ok, _, err) = cli(&app, &["start", "approval", "--input", "not json"]);
    assert!(!ok && err.contains("--input is not JSON"), "{err}");
}

#[tokio::test]
async fn pair_devices_and_keys_from_the_terminal() {
    let app = spawn_app().await;
    let (ok, out, err) = cli(&app, &["pair"]);
    assert!(ok, "{err}");
    let code = out
        .lines()
        .find_map(|l| l.strip_prefix("pairing code: "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(out.contains("/app/pair?code="), "{out}");
    let (st, b) = app
        .anonymous()
        .post(
            "/api/gateway/pair",
            &serde_json::json!({"code": code, "name": "tablet"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let (ok, out, _) = cli(&app, &["devices"]);
    assert!(
        ok && out.contains("tablet") && out.contains("active"),
        "{out}"
    );
    let id = out.split_whitespace().next().unwrap().to_owned();
    let (ok, _, err) = cli(&app, &["devices", "--revoke", &id]);
    assert!(ok, "{err}");
    assert!(cli(&app, &["devices"]).1.contains("revoked"));
    let (ok, out, err) = cli(&app, &["keys", "--create", "ci", "--scope", "read,run"]);
    assert!(ok, "{err}");
    let token = out.lines().nth(1).unwrap().trim().to_owned();
    let (st, _) = app.with_token(&token).get("/api/gateway/runs").await;
    assert_eq!(st, 200);
    assert!(cli(&app, &["keys"]).1.contains("read,run"));
    let (ok, _, err) = cli(&app, &["token", "rotate"]);
    assert!(
        !ok && err.contains("409"),
        "a configured token is rotated where it is configured: {err}"
    );
}

#[tokio::test]
async fn schedules_are_listed_in_the_terminal() {
    let app = spawn_app().await;
    let (st, b) = app
        .post("/api/gateway/runs/schedule", &serde_json::json!({"bundle_id": "echo", "cron": "30 8 * * 1", "timezone": "America/New_York"}))
        .await;
    assert_eq!(st, 200, "{b}");
    let (ok, out, err) = cli(&app, &["schedules"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(b["run_id"].as_str().unwrap())
            && out.contains("30 8 * * 1")
            && out.contains("waiting"),
        "{out}"
    );
}

#[tokio::test]
async fn the_telegram_bridge_refuses_to_start_with_bad_settings() {
    let app = spawn_app().await;
    let (ok, _, err) = cli(&app, &["bridge", "telegram"]);
    assert!(!ok);
    assert!(err.contains("set SWITCHBOARD_TELEGRAM_BOT_TOKEN"), "{err}");
    let (ok, _, err) = cli(
        &app,
        &[
            "bridge",
            "telegram",
            "--telegram-bot-token",
            "1:x",
            "--telegram-allowed-users",
            "12,bob",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("`bob` is not a numeric Telegram user id"),
        "{err}"
    );
}

#[tokio::test]
async fn people_and_groups_from_the_terminal() {
    let app = spawn_app().await;
    let (ok, out, err) = cli(
        &app,
        &[
            "people",
            "add",
            "alice",
            "--telegram",
            "111",
            "--email",
            "Alice@Example.com",
            "--device",
            "web: alices-phone",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("alice: telegram:111, email:alice@example.com, device:web: alices-phone"),
        "{out}"
    );
    let (ok, out, _) = cli(&app, &["people", "list"]);
    assert!(
        ok && out.contains("alice") && out.contains("telegram:111"),
        "{out}"
    );
    let (ok, _, err) = cli(&app, &["people", "add", "bob", "--telegram", "111"]);
    assert!(
        !ok && err.contains("belongs to alice"),
        "one identity, one person: {err}"
    );
    let (ok, out, err) = cli(&app, &["groups", "add", "ops", "person:alice", "key:ci"]);
    assert!(
        ok && out.contains("ops: person:alice, key:ci"),
        "{out}{err}"
    );
    let (ok, _, err) = cli(&app, &["groups", "add", "bad", "group:ops"]);
    assert!(!ok && err.contains("members[0]"), "no nested groups: {err}");
    assert!(cli(&app, &["people", "remove", "alice"]).0);
    let (ok, _, err) = cli(&app, &["people", "remove", "alice"]);
    assert!(!ok && err.contains("no person `alice`"), "{err}");
}
