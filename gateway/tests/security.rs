//! The security baseline and operability rules, each against the real server.

use e2e::app::{Opts, TOKEN, assert_refused, spawn_app, spawn_with, spawn_with_env};
use reqwest::Method;
use serde_json::{Value, json};

async fn pair(app: &e2e::app::TestApp, code: &str, name: &str) -> (u16, Value) {
    let (s, b) = app
        .anonymous()
        .post("/api/gateway/pair", &json!({"code": code, "name": name}))
        .await;
    (s, b)
}

#[tokio::test]
async fn pairing_trades_a_printed_code_for_a_device_token_once() {
    let app = spawn_app().await;
    let code = app.printed_pairing_code();
    let (st, b) = pair(&app, &code.to_lowercase(), "alice's phone").await;
    assert_eq!(st, 200, "{b}");
    let device = b["token"].as_str().unwrap().to_owned();
    assert_eq!(b["scopes"], json!(["read", "run", "command"]));
    // The device can start, read and answer runs, but not administer.
    let (st, r) = app
        .with_token(&device)
        .post("/api/gateway/runs/start", &json!({"bundle_id": "ask"}))
        .await;
    assert_eq!(st, 200, "{r}");
    let (st, _) = app.with_token(&device).get("/api/gateway/runs").await;
    assert_eq!(st, 200);
    let (st, b) = app.with_token(&device).get("/api/gateway/devices").await;
    assert_eq!(st, 403, "{b}");
    // The run's ledger says which device started it.
    let run = r["run_id"].as_str().unwrap();
    assert_eq!(
        app.ledger(run).await[0]["actor"]["principal"],
        "device:alice's phone"
    );
    // A code works once.
    let (st, b) = pair(&app, &code, "again").await;
    assert_refused(st, &b, 401, "already used");
    let (st, b) = pair(&app, "ZZZZ-ZZZZ", "guess").await;
    assert_refused(st, &b, 401, "unknown");
    // Admins list devices and revoke them; a revoked token is refused at once.
    let (_, list) = app.get("/api/gateway/devices").await;
    let d = &list["items"][0];
    assert_eq!(d["name"], "alice's phone");
    assert!(d.get("hash").is_none(), "no secret material is listed");
    let (st, _) = app.post("/api/gateway/pair/codes", &json!({})).await;
    assert_eq!(st, 200);
    let id = d["id"].as_str().unwrap();
    let r = app
        .http
        .delete(app.url(&format!("/api/gateway/devices/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (st, b) = app.with_token(&device).get("/api/gateway/runs").await;
    assert_eq!(st, 401, "{b}");
}

#[tokio::test]
async fn pairing_codes_expire() {
    let app = spawn_with_env(&[("SWITCHBOARD_PAIRING_TTL", "1s")]).await;
    let (_, b) = app.post("/api/gateway/pair/codes", &json!({})).await;
    let code = b["code"].as_str().unwrap().to_owned();
    // Waits for the clock to pass the code's expiry (the event this test is about).
    let expires = chrono::DateTime::parse_from_rfc3339(b["expires_at"].as_str().unwrap()).unwrap();
    let left = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(left + std::time::Duration::from_millis(50)).await;
    let (st, b) = pair(&app, &code, "late").await;
    assert_refused(st, &b, 401, "expired");
}

#[tokio::test]
async fn scoped_keys_are_refused_outside_their_scope() {
    let app = spawn_app().await;
    let b = app.create_key("dashboard", &["read"]).await;
    let key = b["token"].as_str().unwrap().to_owned();
    let (st, _) = app.with_token(&key).get("/api/gateway/runs").await;
    assert_eq!(st, 200);
    let (st, b) = app
        .with_token(&key)
        .post("/api/gateway/runs/start", &json!({"bundle_id": "echo"}))
        .await;
    assert_refused(st, &b, 403, "`run`");
    let (st, _) = app
        .with_token(&key)
        .post(
            "/api/gateway/commands",
            &json!({"command_id": "c", "run_id": "r", "type": "pause"}),
        )
        .await;
    assert_eq!(st, 403);
    let (st, _) = app.with_token(&key).post_empty("/api/gateway/pause").await;
    assert_eq!(st, 403);
    let (st, b) = app
        .post(
            "/api/gateway/keys",
            &json!({"name": "x", "scopes": ["root"]}),
        )
        .await;
    assert_refused(st, &b, 400, "root");
    let (_, list) = app.get("/api/gateway/keys").await;
    let items = list["items"].as_array().unwrap();
    let dashboard = items.iter().find(|k| k["name"] == "dashboard").unwrap();
    let id = dashboard["id"].as_str().unwrap();
    app.http
        .delete(app.url(&format!("/api/gateway/keys/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let (st, _) = app.with_token(&key).get("/api/gateway/runs").await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn a_disallowed_origin_is_forbidden_and_responses_carry_security_headers() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(app.url("/api/gateway/runs"))
        .bearer_auth(TOKEN)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .http
        .get(app.url("/api/gateway/runs"))
        .bearer_auth(TOKEN)
        .header("Origin", "http://localhost:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let app = spawn_with_env(&[("SWITCHBOARD_BODY_LIMIT", "4096")]).await;
    let big = json!({"bundle_id": "echo", "input_data": {"text": "x".repeat(8192)}});
    let (st, b) = app.post("/api/gateway/runs/start", &big).await;
    assert_eq!(st, 413, "{b}");
    assert_eq!(b["error"]["code"], "payload_too_large");
    assert_eq!(
        app.get("/api/gateway/runs").await.1["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn clients_over_their_rate_get_429_with_retry_after() {
    let app = spawn_with_env(&[("SWITCHBOARD_RATE_LIMIT", "2")]).await;
    let b = app.create_key("busy", &["read"]).await;
    let key = b["token"].as_str().unwrap().to_owned();
    let mut limited = None;
    for _ in 0..10 {
        let (st, h, b) = app
            .call(Method::GET, "/api/gateway/runs", Some(&key), None)
            .await;
        if st == 429 {
            limited = Some((h, b));
            break;
        }
    }
    let (h, b) = limited.expect("the 10th request within a second is over a 2/s limit");
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(b["error"]["code"], "too_many_requests");
}

#[tokio::test]
async fn a_non_loopback_bind_without_a_token_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--data-dir"])
        .arg(tmp.path())
        .env_remove("SWITCHBOARD_AUTH_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SWITCHBOARD_AUTH_TOKEN") && err.contains("0.0.0.0"),
        "{err}"
    );
}

/// Every file under `dir`, as bytes.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

#[tokio::test]
async fn tokens_are_stored_hashed_and_the_admin_token_rotates() {
    let mut app = spawn_with(Opts {
        env: vec![("SWITCHBOARD_AUTH_TOKEN", String::new())],
        ..Default::default()
    })
    .await;
    let admin = std::fs::read_to_string(app.data_dir.join("token"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        app.stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&admin)),
        "printed once at first start"
    );
    let code = app.printed_pairing_code();
    let device = pair(&app, &code, "phone").await.1["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, k) = app
        .with_token(&admin)
        .post(
            "/api/gateway/keys",
            &json!({"name": "ci", "scopes": ["run"]}),
        )
        .await;
    let key = k["token"].as_str().unwrap().to_owned();
    assert_eq!(app.terminate().await.code(), Some(0));
    for (path, bytes) in files(&app.data_dir) {
        let text = String::from_utf8_lossy(&bytes);
        let is_token_file = path.file_name().unwrap() == "token";
        assert_eq!(
            text.contains(&admin),
            is_token_file,
            "admin token in {}",
            path.display()
        );
        assert!(
            !text.contains(&device) && !text.contains(&key),
            "a plain secret in {}",
            path.display()
        );
        assert!(
            !text.contains(&e2e::app::normalize(&code)),
            "a plain pairing code in {}",
            path.display()
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(app.data_dir.join("token"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    // Restarted, the token is not printed again; the admin token rotates.
    app.restart().await;
    let printed = app
        .stdout
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(&admin))
        .count();
    assert_eq!(printed, 1, "the admin token is printed at first start only");
    let (st, b) = app
        .with_token(&admin)
        .post_empty("/api/gateway/token/rotate")
        .await;
    assert_eq!(st, 200, "{b}");
    let new = b["token"].as_str().unwrap().to_owned();
    assert_eq!(app.with_token(&admin).get("/api/gateway/runs").await.0, 401);
    assert_eq!(app.with_token(&new).get("/api/gateway/runs").await.0, 200);
    assert_eq!(
        std::fs::read_to_string(app.data_dir.join("token"))
            .unwrap()
            .trim(),
        new
    );
    assert_eq!(
        app.with_token(&device).get("/api/gateway/runs").await.0,
        200,
        "devices survive"
    );
}

#[tokio::test]
async fn a_configured_admin_token_cannot_be_rotated_through_the_api() {
    let app = spawn_app().await;
    let (st, b) = app.post("/api/gateway/token/rotate", &json!({})).await;
    assert_refused(st, &b, 409, "SWITCHBOARD_AUTH_TOKEN");
}

#[tokio::test]
async fn a_paused_gateway_starts_no_runs_but_finishes_the_ones_it_has() {
    let mut app = spawn_app().await;
    let run = app.start_run("ask", json!({})).await;
    let s = app.wait_for_status(&run, "waiting").await;
    assert_eq!(
        app.post("/api/gateway/pause", &json!({})).await.1["paused"],
        true
    );
    let (st, b) = app
        .post("/api/gateway/runs/start", &json!({"bundle_id": "echo"}))
        .await;
    assert_eq!(st, 503);
    assert_eq!(b["error"]["code"], "gateway_paused");
    app.answer(
        "a",
        &run,
        s["waiting"]["wait_key"].as_str().unwrap(),
        json!("yes"),
    )
    .await;
    app.wait_for_status(&run, "completed").await;
    app.kill9().await;
    app.restart().await;
    assert_eq!(
        app.get("/api/health").await.1["paused"],
        true,
        "the pause survives a restart"
    );
    app.post("/api/gateway/resume", &json!({})).await;
    app.start_run("echo", json!({})).await;
}

#[tokio::test]
async fn flows_reload_without_a_restart_and_a_broken_file_changes_nothing() {
    let app = spawn_app().await;
    std::fs::write(
        app.flows_dir.join("greet.yaml"),
        "steps:\n  - output: hello\n",
    )
    .unwrap();
    let (st, b) = app.post("/api/gateway/bundles/reload", &json!({})).await;
    assert_eq!(st, 200, "{b}");
    let run = app.start_run("greet", json!({})).await;
    assert_eq!(
        app.wait_for_status(&run, "completed").await["output"],
        "hello"
    );
    std::fs::write(
        app.flows_dir.join("greet.yaml"),
        "steps:\n  - output: bye\n  - oops: 1\n",
    )
    .unwrap();
    let (st, b) = app.post("/api/gateway/bundles/reload", &json!({})).await;
    assert_eq!(st, 400);
    assert_eq!(b["error"]["line"], 3, "{b}");
    let run = app.start_run("greet", json!({})).await;
    assert_eq!(
        app.wait_for_status(&run, "completed").await["output"],
        "hello",
        "the old version stays current"
    );
}

#[tokio::test]
async fn metrics_expose_runs_commands_appends_streams_latency_and_commits() {
    let app = spawn_app().await;
    let run = app.start_run("ask", json!({})).await;
    app.answer_waiting("m1", &run, json!("x")).await;
    app.wait_for_status(&run, "completed").await;
    let r = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    for needle in [
        "switchboard_runs{status=\"completed\"} 1",
        "switchboard_commands_total{type=\"resume\"} 1",
        "switchboard_ledger_appends_total",
        "switchboard_sse_clients",
        "switchboard_http_request_duration_seconds_bucket",
        "route=\"/api/gateway/runs/start\"",
        "switchboard_store_commit_seconds",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    assert_eq!(app.anonymous().get("/metrics").await.0, 401);
}

#[tokio::test]
async fn sigterm_closes_streams_with_a_retry_hint_and_exits_cleanly() {
    let mut app = spawn_app().await;
    let run = app.start_run("ask", json!({})).await;
    app.wait_for_status(&run, "waiting").await;
    let before = app.streams().await;
    let resp = app
        .http
        .get(app.url(&format!("/api/gateway/runs/{run}/ledger/stream")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let reader = tokio::spawn(async move { resp.text().await.unwrap_or_default() });
    app.wait_streams(before + 1).await;
    let status = app.terminate().await;
    assert_eq!(status.code(), Some(0));
    let body = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap();
    assert!(
        body.contains("server shutting down") && body.contains("retry: 1000"),
        "{body}"
    );
}

#[tokio::test]
async fn structured_logs_are_json_lines() {
    use tokio::io::AsyncBufReadExt;
    let tmp = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--port", "0", "--log-format", "json", "--data-dir"])
        .arg(tmp.path())
        .env("SWITCHBOARD_AUTH_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let l = lines.next_line().await.unwrap().expect("a log line");
            if l.contains("switchboard serving") {
                return l;
            }
        }
    })
    .await
    .expect("the start is logged");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["fields"]["message"], "switchboard serving");
    assert!(
        v["fields"]["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{v}"
    );
    child.kill().await.unwrap();
}
