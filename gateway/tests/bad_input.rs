//! Bad input gets the right 4xx with a message naming what is wrong, and nothing is stored.

use e2e::app::{TOKEN, assert_refused, spawn_app};
use serde_json::{Value, json};

async fn run_count(app: &e2e::app::TestApp) -> usize {
    app.get("/api/gateway/runs?limit=1000").await.1["items"]
        .as_array()
        .unwrap()
        .len()
}

async fn raw(app: &e2e::app::TestApp, path: &str, body: &str) -> (u16, Value) {
    let r = app
        .http
        .post(app.url(path))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn malformed_json_is_a_400_with_the_position() {
    let app = spawn_app().await;
    let (st, b) = raw(&app, "/api/gateway/runs/start", "{\"bundle_id\": \"echo\",").await;
    assert_eq!(st, 400, "{b}");
    assert_eq!(b["error"]["code"], "invalid_json");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("line 1"),
        "{b}"
    );
    let (st, b) = raw(&app, "/api/gateway/commands", "[]").await;
    assert_eq!(st, 400, "a JSON array is not a command: {b}");
    assert_eq!(run_count(&app).await, 0);
}

/// Requests the gateway must refuse: where each goes, what it carries, the status, the
/// error code, and what the message must name for the caller to fix it.
#[rustfmt::skip]
fn refusals() -> Vec<(&'static str, Value, u16, &'static str, &'static str)> {
    let start = "/api/gateway/runs/start";
    vec![
        (start, json!({"bundle_id": "echo", "inputs": {}}), 400, "invalid_json", "inputs"),
        (start, json!({"bundle_id": "nope"}), 404, "not_found", "nope"),
        (start, json!({"bundle_id": "typed", "input_data": {"n": 0}}), 400, "invalid_input", "input_data/n"),
        (start, json!({"bundle_id": "typed", "input_data": {}}), 400, "invalid_input", "input_data"),
        (start, json!({"bundle_id": "echo", "notify": ["pigeon:42"]}), 400, "invalid_target", "pigeon"),
        ("/api/gateway/commands", json!({"run_id": "x", "type": "pause"}), 400, "invalid_json", "command_id"),
    ]
}

#[tokio::test]
async fn bad_requests_are_refused_with_what_to_fix_and_store_nothing() {
    let app = spawn_app().await;
    for (path, body, status, code, names) in refusals() {
        let (st, b) = app.post(path, &body).await;
        assert_refused(st, &b, status, names);
        assert_eq!(b["error"]["code"], code, "{path} {body}: {b}");
    }
    let (st, b) = app.get("/api/gateway/runs?status=sleeping").await;
    assert_refused(st, &b, 400, "sleeping");
    assert_eq!(run_count(&app).await, 0);
    // The same flow with good input runs.
    let run = app.start_run("typed", json!({"n": 3})).await;
    assert_eq!(app.wait_for_status(&run, "completed").await["output"], 3);
}

#[tokio::test]
async fn broken_yaml_upload_reports_line_and_column_and_changes_nothing() {
    let app = spawn_app().await;
    let before = app.get("/api/gateway/bundles").await.1;
    let src = "name: Broken\nsteps:\n  - say: hi\n  - sya: typo\n";
    let (st, b) = app.upload("echo.yaml", src).await;
    assert_eq!(st, 400, "{b}");
    assert_eq!(b["error"]["code"], "invalid_flow");
    assert_eq!(
        (b["error"]["line"].as_u64(), b["error"]["column"].as_u64()),
        (Some(4), Some(5)),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("echo.yaml:4:5"),
        "{b}"
    );
    assert_eq!(app.get("/api/gateway/bundles").await.1, before);
    let form = reqwest::multipart::Form::new().text("other", "x");
    let r = app
        .http
        .post(app.url("/api/gateway/bundles/upload"))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.unwrap();
    assert!(
        b["error"]["message"].as_str().unwrap().contains("`file`"),
        "{b}"
    );
}

#[tokio::test]
async fn missing_or_wrong_token_is_401_but_health_is_open() {
    let app = spawn_app().await;
    let (st, b) = app.anonymous().get("/api/gateway/runs").await;
    assert_refused(st, &b, 401, "Bearer");
    let (st, _) = app
        .with_token("wrong-token-wrong-token")
        .get("/api/gateway/runs")
        .await;
    assert_eq!(st, 401);
    let start = json!({"bundle_id": "echo"});
    let (st, _) = app
        .anonymous()
        .post("/api/gateway/runs/start", &start)
        .await;
    assert_eq!(st, 401);
    assert_eq!(app.anonymous().get("/api/health").await.0, 200);
    assert_eq!(run_count(&app).await, 0);
    let (st, b) = app.get("/api/gateway/nothing-here").await;
    assert_eq!((st, b["error"]["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn the_generated_token_is_private_and_printed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let (tok, generated) = gateway::app::admin_token(&dir_created(&dir), None).unwrap();
    assert!(generated && tok.len() > 40);
    let (again, generated) = gateway::app::admin_token(&dir, None).unwrap();
    assert_eq!((again.as_str(), generated), (tok.as_str(), false));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

fn dir_created(d: &std::path::Path) -> std::path::PathBuf {
    std::fs::create_dir_all(d).unwrap();
    d.to_owned()
}

#[tokio::test]
async fn the_data_dir_is_private() {
    let app = spawn_app().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&app.data_dir)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

#[tokio::test]
async fn flows_check_prints_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("bad.yaml");
    std::fs::write(&f, "steps:\n  - ask: ok?\n    choices: []\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("flows")
        .arg("check")
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bad.yaml:3:14") && text.contains("choices"),
        "{text}"
    );
    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/../flows/approval.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["flows", "check", good])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
