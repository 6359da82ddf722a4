//! `llm` steps calling tools on real MCP servers (the Python SDK's 1.x and 2.x lines, over
//! stdio and streamable HTTP): results reaching the model, a crashed server restarted, a
//! hanging tool timed out, a tool error given to the model, a call never run twice after
//! `kill -9`, and a server's changed tool list offered from the next turn.

use e2e::app::{Opts, TestApp, spawn_with};
use e2e::mcp;
use serde_json::json;

/// A flow whose `llm` step may call every tool of `server`.
fn calc_flow(id: &str, server: &str) -> String {
    format!(
        "id: {id}\nsteps:\n  - id: think\n    llm:\n      prompt: \"{{{{ input.text }}}}\"\n      tools: [\"mcp:{server}/*\"]\n  - output: \"{{{{ steps.think.text }}}}\"\n"
    )
}

struct Setup {
    app: TestApp,
    fake: e2e::llm_fake::Fake,
    dir: tempfile::TempDir,
}

/// A gateway with the LLM fake and `tables` as its `[mcp.servers]` config.
async fn gateway(tables: impl FnOnce(&std::path::Path) -> Vec<String>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = mcp::config_file(dir.path(), &tables(dir.path()));
    let (url, fake) = e2e::llm_fake::start().await;
    let app = spawn_with(Opts {
        llm_url: Some(url),
        env: vec![("SWITCHBOARD_CONFIG", config)],
        ..Default::default()
    })
    .await;
    Setup { app, fake, dir }
}

async fn upload(app: &TestApp, id: &str, server: &str) {
    let (st, b) = app
        .upload(&format!("{id}.yaml"), &calc_flow(id, server))
        .await;
    assert_eq!(st, 200, "{b}");
}

#[tokio::test]
async fn stdio_servers_of_both_sdk_lines_answer_tool_calls() {
    let s = gateway(|d| {
        mcp::LINES
            .iter()
            .map(|l| {
                mcp::stdio_server(&format!("calc{l}"), *l, &d.join(format!("count{l}")), "20s")
            })
            .collect()
    })
    .await;
    for line in mcp::LINES {
        let id = format!("sum{line}");
        upload(&s.app, &id, &format!("calc{line}")).await;
        let run = s
            .app
            .start_run(&id, json!({"text": r#"CALL add {"a": 2, "b": 3}"#}))
            .await;
        let done = s.app.wait_status(&run, "completed", 60).await;
        assert_eq!(done["output"], "done: 5", "mcp {line}.x");
        let keys = mcp::counted(&s.dir.path().join(format!("count{line}")));
        assert_eq!(
            keys,
            [format!("{run}:think.1/tool1.1")],
            "the key travels in _meta"
        );
        let ledger = s.app.ledger(&run).await;
        let result = ledger
            .iter()
            .find(|r| r["step_id"] == "think.1/tool1.1" && r["status"] == "completed")
            .expect("the call's result is recorded");
        assert_eq!(result["result"]["output"], "5");
        assert_eq!(result["result"]["tool"], format!("mcp:calc{line}/add"));
    }
    let (_, caps) = s.app.get("/api/gateway/discovery/capabilities").await;
    let tools = &caps["features"]["tools"];
    assert_eq!(tools["mcp_servers"], json!(["calc1", "calc2"]));
    assert_eq!(tools["kinds"], json!(["mcp", "flow"]));
    assert_eq!(tools["approvals"], true);
    assert_eq!(tools["mcp_endpoint"], "/mcp");
    // The model was offered every tool of the server, described by the server.
    let first = &s.fake.requests()[0];
    let tools = first["tools"].as_array().unwrap();
    let add = tools
        .iter()
        .find(|t| t["function"]["name"] == "calc1_add")
        .unwrap();
    assert_eq!(add["function"]["description"], "Adds two whole numbers.");
    assert_eq!(add["function"]["parameters"]["required"], json!(["a", "b"]));
}

#[tokio::test]
async fn streamable_http_servers_of_both_sdk_lines_answer_tool_calls() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Vec::new();
    for line in mcp::LINES {
        servers.push(mcp::HttpCalc::start(line, &dir.path().join(format!("count{line}"))).await);
    }
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let s = gateway(|_| {
        urls.iter()
            .zip(mcp::LINES)
            .map(|(u, l)| mcp::http_server(&format!("web{l}"), u))
            .collect()
    })
    .await;
    for line in mcp::LINES {
        let id = format!("websum{line}");
        upload(&s.app, &id, &format!("web{line}")).await;
        let run = s
            .app
            .start_run(&id, json!({"text": r#"CALL add {"a": 20, "b": 22}"#}))
            .await;
        let done = s.app.wait_status(&run, "completed", 60).await;
        assert_eq!(done["output"], "done: 42", "mcp {line}.x over HTTP");
        let keys = mcp::counted(&dir.path().join(format!("count{line}")));
        assert_eq!(keys, [format!("{run}:think.1/tool1.1")]);
    }
}

#[tokio::test]
async fn a_crashed_server_fails_the_step_clearly_and_is_restarted() {
    let s = gateway(|d| vec![mcp::stdio_server("calc", 1, &d.join("count"), "20s")]).await;
    upload(&s.app, "crashy", "calc").await;
    let run = s
        .app
        .start_run("crashy", json!({"text": "CALL crash {}"}))
        .await;
    let failed = s.app.wait_status(&run, "failed", 60).await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("MCP server `calc` went away during the call"),
        "{error}"
    );

    let run = s
        .app
        .start_run("crashy", json!({"text": r#"CALL add {"a": 1, "b": 1}"#}))
        .await;
    let done = s.app.wait_status(&run, "completed", 60).await;
    assert_eq!(done["output"], "done: 2", "the server was started again");
}

#[tokio::test]
async fn a_hanging_tool_times_out_and_a_tool_error_reaches_the_model() {
    let s = gateway(|d| vec![mcp::stdio_server("calc", 2, &d.join("count"), "1s")]).await;
    upload(&s.app, "hang", "calc").await;
    let run = s
        .app
        .start_run("hang", json!({"text": "CALL slow {}"}))
        .await;
    let failed = s.app.wait_status(&run, "failed", 60).await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("MCP server `calc` did not answer `slow` within 1s"),
        "{error}"
    );

    let run = s
        .app
        .start_run("hang", json!({"text": "CALL fail {}"}))
        .await;
    let done = s.app.wait_status(&run, "completed", 60).await;
    let out = done["output"].as_str().unwrap();
    assert!(
        out.starts_with("done: error: ") && out.contains("fail"),
        "{out}"
    );
}

#[tokio::test]
async fn a_recorded_call_is_not_run_again_after_kill_9() {
    let mut s = gateway(|d| vec![mcp::stdio_server("calc", 1, &d.join("count"), "20s")]).await;
    upload(&s.app, "durable", "calc").await;
    // HOLD: the turn after the tool's result waits at the fake, so the gateway is killed
    // after the result was recorded and before the next LLM turn came back.
    let run = s
        .app
        .start_run(
            "durable",
            json!({"text": r#"HOLD CALL add {"a": 2, "b": 2}"#}),
        )
        .await;
    e2e::wait::eventually(60, "the second LLM turn to be in flight", || async {
        (s.fake.held() == 1).then_some(())
    })
    .await;
    let ledger = s.app.ledger(&run).await;
    assert!(
        ledger
            .iter()
            .any(|r| r["step_id"] == "think.1/tool1.1" && r["status"] == "completed")
    );
    s.app.kill9().await;
    s.app.restart().await;
    s.fake.release();
    s.fake.release();
    let done = s.app.wait_status(&run, "completed", 60).await;
    assert_eq!(done["output"], "done: 4");
    let count = s.dir.path().join("count");
    assert_eq!(
        mcp::counted(&count).len(),
        1,
        "the MCP server counted one call, not two"
    );
}

#[tokio::test]
async fn a_flow_naming_a_tool_the_server_lacks_is_refused_with_its_position() {
    let s = gateway(|d| vec![mcp::stdio_server("calc", 2, &d.join("count"), "20s")]).await;
    let src = "steps:\n  - llm:\n      prompt: hi\n      tools: [\"mcp:calc/add\", \"mcp:calc/divide\"]\n";
    let (st, b) = s.app.upload("typo.yaml", src).await;
    assert_eq!(st, 400, "{b}");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("typo.yaml:4:31") && msg.contains("has no tool `divide`"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_changed_tool_list_is_offered_from_the_next_turn() {
    let s = gateway(|d| vec![mcp::stdio_server("calc", 1, &d.join("count"), "20s")]).await;
    upload(&s.app, "grow", "calc").await;
    let run = s
        .app
        .start_run("grow", json!({"text": "CALL unlock {} ; CALL secret {}"}))
        .await;
    let done = s.app.wait_status(&run, "completed", 60).await;
    assert_eq!(done["output"], "done: unlocked | 42");
    let offered = |i: usize| -> Vec<String> {
        s.fake.requests()[i]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(!offered(0).contains(&"calc_secret".to_owned()));
    assert!(
        offered(1).contains(&"calc_secret".to_owned()),
        "{:?}",
        offered(1)
    );
}
