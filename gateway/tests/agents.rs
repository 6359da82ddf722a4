//! `llm` steps with tools, against the LLM fake (which speaks `tool_calls`, streamed and
//! not): flow tools as child runs, approvals answered over the API, the model hearing of a
//! denial, and the ledger recording every turn, call and result.

use e2e::app::{Opts, TestApp, spawn_with};
use serde_json::{Value, json};

async fn agent_app() -> (TestApp, e2e::llm_fake::Fake) {
    let (url, fake) = e2e::llm_fake::start().await;
    let app = spawn_with(Opts {
        llm_url: Some(url),
        ..Default::default()
    })
    .await;
    (app, fake)
}

fn find<'a>(ledger: &'a [Value], step_id: &str, status: &str) -> &'a Value {
    ledger
        .iter()
        .find(|r| r["step_id"] == step_id && r["status"] == status)
        .unwrap_or_else(|| panic!("no {status} record {step_id} in {ledger:#?}"))
}

/// The assistant's reply the fake gave last (the `say` of the shipped agent flow).
async fn last_said(app: &TestApp, run: &str) -> String {
    let ledger = app.ledger(run).await;
    let said = ledger.iter().rev().find(|r| r["effect"]["type"] == "say");
    said.and_then(|r| r["effect"]["payload"]["text"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_allowed_flow_tool_runs_as_a_child_and_its_output_reaches_the_model() {
    for (prompt, streamed) in [
        (r#"CALL echo {"text": "hi there"}"#, true),
        (r#"NOSTREAM CALL echo {"text": "hi there"}"#, false),
    ] {
        let (app, fake) = agent_app().await;
        let run = app.start_run("agent", json!({"text": prompt})).await;
        let w = app.wait_for_status(&run, "waiting").await;
        assert_eq!(w["waiting"]["wait_key"], "think.1/approve1.1", "{w}");
        assert_eq!(w["waiting"]["choices"], json!(["allow", "deny"]));
        let question = w["waiting"]["prompt"].as_str().unwrap();
        assert!(question.contains(r#"echo(text: "hi there")"#), "{question}");
        assert!(question.contains("flow:echo"), "{question}");

        let (st, b) = app
            .answer("a1", &run, "think.1/approve1.1", json!("allow"))
            .await;
        assert_eq!(st, 200, "{b}");
        app.wait_on(&run, "next.1").await;
        assert_eq!(last_said(&app, &run).await, r#"done: {"text":"hi there"}"#);

        let ledger = app.ledger(&run).await;
        let call = find(&ledger, "think.1/tool1.1", "started");
        assert_eq!(call["effect"]["type"], "tool");
        assert_eq!(call["effect"]["payload"]["name"], "echo");
        assert_eq!(
            call["effect"]["payload"]["arguments"],
            json!({"text": "hi there"})
        );
        assert_eq!(call["effect"]["payload"]["call_id"], "call_0");
        let result = find(&ledger, "think.1/tool1.1", "completed");
        assert_eq!(result["result"]["output"], json!({"text": "hi there"}));
        let child = result["result"]["child_run_id"].as_str().unwrap();
        assert_eq!(app.run(child).await["parent_run_id"], run.as_str());
        find(&ledger, "think.1/llm2", "completed");

        // The fake saw the tools, and the call and its result in the second turn.
        let reqs = fake.requests();
        let first = &reqs[0];
        assert_eq!(first["stream"], true);
        let names: Vec<&str> = first["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["echo", "approval"]);
        assert_eq!(
            first["tools"][0]["function"]["parameters"]["properties"]["text"]["type"],
            "string"
        );
        let second = reqs[1]["messages"].as_array().unwrap();
        let n = second.len();
        assert_eq!(
            second[n - 2]["tool_calls"][0]["function"]["arguments"],
            r#"{"text": "hi there"}"#
        );
        assert_eq!(second[n - 1]["role"], "tool");
        assert_eq!(second[n - 1]["tool_call_id"], "call_0");
        let _ = streamed;
    }
}

#[tokio::test]
async fn a_denied_call_is_not_run_and_the_model_hears_who_denied_it() {
    let (app, _fake) = agent_app().await;
    let run = app
        .start_run("agent", json!({"text": r#"CALL echo {"text": "rm -rf"}"#}))
        .await;
    app.wait_for_status(&run, "waiting").await;
    let (st, b) = app
        .answer("d1", &run, "think.1/approve1.1", json!("deny"))
        .await;
    assert_eq!(st, 200, "{b}");
    app.wait_on(&run, "next.1").await;
    let said = last_said(&app, &run).await;
    assert!(
        said.starts_with("done: error: the call was denied by "),
        "{said}"
    );
    let ledger = app.ledger(&run).await;
    let approval = find(&ledger, "think.1/approve1.1", "completed");
    assert_eq!(approval["result"]["response"], "deny");
    assert_eq!(approval["actor"]["kind"], "client");
    assert!(
        ledger.iter().all(|r| r["effect"]["type"] != "tool"),
        "the call never ran"
    );
    assert!(app.runs_of("echo").await.is_empty());

    // A second answer to the same approval is refused: the first answer won.
    let (st, b) = app
        .answer("d2", &run, "think.1/approve1.1", json!("allow"))
        .await;
    assert!(st == 409 || st == 200, "{st} {b}");
    assert!(app.runs_of("echo").await.is_empty());
}

#[tokio::test]
async fn abstractgateway_style_approvals_and_a_flow_tools_input_schema() {
    let (app, _fake) = agent_app().await;
    let run = app
        .start_run("agent", json!({"text": r#"CALL echo {"text": "yes"}"#}))
        .await;
    app.wait_on(&run, "think.1/approve1.1").await;
    let (st, b) = app
        .answer("ag1", &run, "think.1/approve1.1", json!({"approved": true}))
        .await;
    assert_eq!(st, 200, "{b}");
    app.wait_on(&run, "next.1").await;
    assert_eq!(last_said(&app, &run).await, r#"done: {"text":"yes"}"#);

    // A flow called as a tool checks its input against its schema; the model reads why not.
    let flow = "steps:\n  - id: think\n    llm:\n      prompt: \"{{ input.text }}\"\n      tools: [\"flow:typed\"]\n  - output: \"{{ steps.think.text }}\"\n";
    let (st, b) = app.upload("typer.yaml", flow).await;
    assert_eq!(st, 200, "{b}");
    let run = app
        .start_run("typer", json!({"text": r#"CALL typed {"n": "many"}"#}))
        .await;
    let done = app.wait_for_status(&run, "completed").await;
    let out = done["output"].as_str().unwrap();
    assert!(
        out.starts_with("done: error: ") && out.contains("input_data/n"),
        "{out}"
    );
}

#[tokio::test]
async fn a_tool_the_model_invents_gets_an_error_result_and_rounds_are_bounded() {
    let (app, _fake) = agent_app().await;
    let flow = "steps:\n  - id: think\n    llm:\n      prompt: \"{{ input.text }}\"\n      tools: [\"flow:echo\"]\n      max_tool_rounds: 1\n  - output: \"{{ steps.think.text }}\"\n";
    let (st, b) = app.upload("bounded.yaml", flow).await;
    assert_eq!(st, 200, "{b}");
    let run = app
        .start_run("bounded", json!({"text": "CALL shell {\"cmd\": \"ls\"}"}))
        .await;
    let done = app.wait_for_status(&run, "completed").await;
    assert_eq!(
        done["output"],
        "done: error: there is no tool `shell`; call one of the tools you were given"
    );

    let run = app
        .start_run("bounded", json!({"text": "CALL echo {} ; CALL echo {}"}))
        .await;
    let failed = app.wait_for_status(&run, "failed").await;
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("max_tool_rounds: 1"), "{error}");
}

#[tokio::test]
async fn a_flow_naming_an_unknown_server_or_flow_is_refused_with_its_position() {
    let (app, _fake) = agent_app().await;
    for (tool, message) in [
        ("mcp:nowhere/add", "no MCP server `nowhere` is configured"),
        ("flow:nosuch", "no flow `nosuch`"),
    ] {
        let src = format!("steps:\n  - llm:\n      prompt: hi\n      tools: [\"{tool}\"]\n");
        let (st, b) = app.upload("bad.yaml", &src).await;
        assert_eq!(st, 400, "{b}");
        let msg = b["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("bad.yaml:4:15") && msg.contains(message),
            "{msg}"
        );
    }
}
