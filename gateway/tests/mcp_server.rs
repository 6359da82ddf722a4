//! `/mcp`: Switchboard as an MCP server, driven by the official Python MCP client (the
//! SDK's 1.x and 2.x lines): flows listed as tools with their input schemas, a flow called
//! and its output returned, a run that waits for a person reported with its prompt and
//! link, then listed and answered over MCP; scopes checked per tool.

use e2e::app::spawn_app;
use e2e::mcp;
use serde_json::{Value, json};

async fn client(line: u8, url: &str, token: &str, scenario: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mcp_client.py");
    let out = tokio::process::Command::new(mcp::python(line))
        .args([script, url, token, scenario])
        .output()
        .await
        .expect("run python");
    assert!(
        out.status.success(),
        "mcp_client.py ({line}.x) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

#[tokio::test]
async fn an_mcp_client_lists_flows_calls_one_and_answers_a_waiting_run() {
    let app = spawn_app().await;
    let url = app.url("/mcp");
    for line in mcp::LINES {
        let out = client(line, &url, e2e::app::TOKEN, "full").await;
        let tools: Vec<&str> = out["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        for t in ["echo", "approval", "agent", "list_waiting", "answer"] {
            assert!(tools.contains(&t), "mcp {line}.x: no tool {t} in {tools:?}");
        }
        assert_eq!(out["schemas"]["typed"]["required"], json!(["n"]));

        assert_eq!(out["echo"]["is_error"], false, "{out}");
        assert_eq!(
            out["echo"]["structured"]["output"],
            json!({"text": "hello from mcp"})
        );
        assert_eq!(out["echo"]["structured"]["status"], "completed");

        let waiting = &out["approval"]["structured"];
        assert_eq!(waiting["status"], "waiting", "{out}");
        assert_eq!(waiting["prompt"], "Approve or reject: ship it");
        let run = waiting["run_id"].as_str().unwrap();
        assert_eq!(
            waiting["url"],
            format!("{}/app/runs/{run}", app.url("").trim_end_matches('/'))
        );
        let text = out["approval"]["text"].as_str().unwrap();
        assert!(text.contains(run) && text.contains("/app/runs/"), "{text}");
        let listed = out["waiting"]["structured"]["waiting"].as_array().unwrap();
        assert!(listed.iter().any(|w| w["run_id"] == run));
        assert_eq!(out["answer"]["structured"]["accepted"], true, "{out}");

        let done = app.wait_for_status(run, "completed").await;
        assert_eq!(done["output"], json!({"decision": "approve"}));
        let answer = app.answers(run).await;
        assert_eq!(answer[0]["actor"]["channel"], "mcp");

        assert_eq!(out["bad"]["is_error"], true, "{out}");
        let bad = out["bad"]["text"].as_str().unwrap();
        assert!(bad.contains("input_data/n"), "{bad}");
    }
}

/// One MCP request (JSON-RPC over streamable HTTP, stateless) with the admin token.
async fn rpc(app: &e2e::app::TestApp, method: &str, params: Value) -> Value {
    let r = reqwest::Client::new()
        .post(app.url("/mcp"))
        .bearer_auth(e2e::app::TOKEN)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn an_mcp_client_cannot_approve_a_models_tool_call() {
    let (llm, _fake) = e2e::llm_fake::start().await;
    let app = e2e::app::spawn_with(e2e::app::Opts {
        llm_url: Some(llm),
        ..Default::default()
    })
    .await;
    let run = app
        .start_run(
            "agent",
            json!({"text": r#"CALL echo {"text": "rm -rf /"}"#}),
        )
        .await;
    app.wait_on(&run, "think.1/approve1.1").await;
    let listed = rpc(
        &app,
        "tools/call",
        json!({"name": "list_waiting", "arguments": {}}),
    )
    .await;
    let waiting = listed["result"]["structuredContent"]["waiting"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        waiting.iter().all(|w| w["run_id"] != run.as_str()),
        "{listed}"
    );
    let args = json!({"run_id": run, "response": "allow"});
    let answered = rpc(
        &app,
        "tools/call",
        json!({"name": "answer", "arguments": args}),
    )
    .await;
    assert_eq!(answered["result"]["isError"], true, "{answered}");
    let text = answered["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("a person answers it"), "{text}");
    let r = app.run(&run).await;
    assert_eq!(r["waiting"]["wait_key"], "think.1/approve1.1");
    assert_eq!(r["waiting"]["approval"], true);
    assert!(app.runs_of("echo").await.is_empty());
}

#[tokio::test]
async fn a_read_only_token_sees_no_tools_and_cannot_start_a_flow() {
    let app = spawn_app().await;
    let key = app.create_key("viewer", &["read"]).await;
    let token = key["token"].as_str().unwrap();
    let out = client(2, &app.url("/mcp"), token, "readonly").await;
    assert_eq!(out["tools"], json!([]));
    assert_eq!(out["echo"]["is_error"], true);
    assert!(
        out["echo"]["text"]
            .as_str()
            .unwrap()
            .contains("lacks the `run` scope")
    );
    assert!(app.runs_of("echo").await.is_empty());

    // No token, no MCP.
    let r = reqwest::Client::new()
        .post(app.url("/mcp"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
