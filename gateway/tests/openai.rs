//! The OpenAI-compatible surface, driven by the official `openai` Python package (installed
//! by scripts/test into its virtualenv) against the real server, with the loopback LLM fake
//! behind the `chat` flow: models, a plain and a streamed completion, history seeding, an
//! `ask` answered by the next request of the session, and OpenAI-shaped errors.

use e2e::app::{Opts, TOKEN, eventually, spawn_with};
use serde_json::{Value, json};

/// The virtualenv's Python: `SWITCHBOARD_VENV` (scripts/test sets it), else the first
/// `~/.cache/switchboard/venv*` that has the `openai` package.
fn python() -> std::path::PathBuf {
    let has_openai = |py: &std::path::Path| {
        std::process::Command::new(py)
            .args(["-c", "import openai"])
            .status()
            .is_ok_and(|s| s.success())
    };
    let candidates: Vec<std::path::PathBuf> = match std::env::var("SWITCHBOARD_VENV") {
        Ok(venv) => vec![venv.into()],
        Err(_) => {
            let cache = std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/switchboard");
            let mut dirs: Vec<_> = std::fs::read_dir(&cache)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("venv"))
                })
                .collect();
            dirs.sort();
            dirs.reverse();
            dirs
        }
    };
    let found = candidates
        .iter()
        .map(|venv| venv.join("bin/python"))
        .find(|py| has_openai(py));
    match found {
        Some(py) => py,
        None => panic!(
            "no virtualenv with the `openai` package among {candidates:?}: run scripts/test \
             (it installs one) or point SWITCHBOARD_VENV at a venv that has it"
        ),
    }
}

#[tokio::test]
async fn the_official_openai_client_works_against_switchboard() {
    let py = python();
    let (url, fake) = e2e::llm_fake::start().await;
    let app = spawn_with(Opts {
        llm_url: Some(url),
        ..Default::default()
    })
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/openai_sdk.py");
    let out = tokio::process::Command::new(py)
        .args([script, &app.url("/v1"), TOKEN])
        .output()
        .await
        .expect("run python");
    assert!(
        out.status.success(),
        "openai_sdk.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON from the script");

    let models: Vec<&str> = r["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        models.contains(&"chat") && models.contains(&"approval"),
        "{models:?}"
    );
    assert!(
        !models.contains(&"typed"),
        "a flow without a text input cannot chat"
    );

    assert_eq!(
        r["plain"],
        json!({"content": "echo: hello", "role": "assistant", "finish_reason": "stop", "object": "chat.completion"})
    );
    assert_eq!(r["stream"]["text"], "echo: streaming please");
    assert_eq!(r["stream"]["last_finish"], "stop");
    assert_eq!(r["stream"]["object"], "chat.completion.chunk");
    assert!(
        r["stream"]["pieces"].as_u64().unwrap() >= 3,
        "role, deltas, finish"
    );

    assert_eq!(r["history"], "echo: second");
    let seeded = fake
        .requests()
        .iter()
        .find(|q| q["messages"].as_array().unwrap().last().unwrap()["content"] == "second")
        .cloned()
        .expect("the history request");
    let contents: Vec<&str> = seeded["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["first", "echo: first", "second"]);

    assert_eq!(
        r["ask"]["question"],
        "Approve or reject: deploy v2\n1. approve\n2. reject"
    );
    assert_eq!(r["ask"]["answer"], "Approved: deploy v2");
    assert_eq!(r["session"], json!(["echo: one", "echo: two"]));
    let last = fake.requests().last().unwrap().clone();
    assert_eq!(
        last["messages"].as_array().unwrap().len(),
        3,
        "turn two sees turn one"
    );

    let e = &r["errors"];
    assert_eq!(e["unknown_model"]["status"], 404);
    assert_eq!(e["unknown_model"]["body"]["type"], "not_found_error");
    assert!(
        e["unknown_model"]["body"]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    assert_eq!(e["last_not_user"]["status"], 400);
    assert_eq!(e["last_not_user"]["body"]["param"], "messages");
    assert_eq!(e["bad_key"]["status"], 401);
    assert_eq!(e["bad_key"]["body"]["type"], "authentication_error");

    // Every request was a durable run, and the session's `approval` run completed.
    let (_, runs) = app.get("/api/gateway/runs?limit=100").await;
    let approval: Vec<&Value> = runs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["bundle_id"] == "approval")
        .collect();
    assert_eq!(approval.len(), 1);
    assert_eq!(approval[0]["status"], "completed");
    // `/v1` sessions live in the caller's namespace (here the admin token's).
    assert_eq!(approval[0]["session_id"], "openai:admin:alice");
    // Sessionless chat runs are cancelled once answered (nothing could answer their next
    // prompt); the one in session s-42 waits for its next turn.
    let waiting = eventually(10, "one waiting run", || async {
        let (_, w) = app.get("/api/gateway/runs?status=waiting").await;
        let waiting = w["items"].as_array().cloned().unwrap_or_default();
        (waiting.len() == 1).then_some(waiting)
    })
    .await;
    assert_eq!(waiting[0]["session_id"], "openai:admin:s-42");
    let (_, c) = app.get("/api/gateway/runs?status=cancelled").await;
    assert_eq!(
        c["items"].as_array().unwrap().len(),
        3,
        "plain, stream and history runs"
    );
}
