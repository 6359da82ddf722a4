//! The terminal client (`switchboard runs|start|answer|tail`) against the real server.

mod common;

use common::{TOKEN, spawn_app};

fn cli(app: &common::TestApp, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env("SWITCHBOARD_URL", &app.addr)
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
