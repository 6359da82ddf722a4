//! Traces against a loopback OTLP collector that decodes the protobuf it receives: a run
//! started with a W3C `traceparent` becomes one trace under the caller's span, with a span
//! per step, effect (LLM, MCP tool, HTTP) and command under the run's span, and keeps that
//! shape across a restart of the gateway mid-run; the same trace context reaches the LLM
//! provider, the MCP server and the `http` step's host. With no endpoint nothing is sent.

use std::collections::BTreeSet;

use e2e::app::{Opts, TestApp, spawn_with};
use e2e::otlp_sink::Span;
use serde_json::json;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

const FLOW: &str = r#"id: traced
steps:
  - id: fetch
    http:
      method: POST
      url: "{{ input.echo | safe }}"
      body: {x: 1}
  - id: think
    llm:
      prompt: "CALL add {\"a\": 2, \"b\": 3}"
      tools: ["mcp:calc/*"]
  - id: confirm
    ask: "Go on?"
    allow_free_text: true
  - output:
      fetched: "{{ steps.fetch.body.traceparent }}"
      said: "{{ steps.think.text }}"
"#;

struct Setup {
    app: TestApp,
    fake: e2e::llm_fake::Fake,
    llm_url: String,
    dir: tempfile::TempDir,
}

async fn gateway(otlp: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let table = format!(
        "[mcp.servers.calc]\ncommand = [{:?}, {:?}, \"stdio\"]\nenv = {{ CALC_TRACE_FILE = {:?} }}\ntimeout = \"20s\"\n",
        e2e::mcp::python(1).display().to_string(),
        e2e::mcp::calc_script().display().to_string(),
        dir.path().join("traceparents").display().to_string(),
    );
    let config = e2e::mcp::config_file(dir.path(), &[table]);
    let (llm_url, fake) = e2e::llm_fake::start().await;
    let mut env = vec![
        ("SWITCHBOARD_CONFIG", config),
        ("SWITCHBOARD_HTTP_ALLOW", "127.0.0.1".to_owned()),
    ];
    if let Some(u) = otlp {
        env.push(("SWITCHBOARD_OTLP_ENDPOINT", u.to_owned()));
    }
    let app = spawn_with(Opts {
        llm_url: Some(llm_url.clone()),
        env,
        ..Default::default()
    })
    .await;
    assert_eq!(app.upload("traced.yaml", FLOW).await.0, 200);
    Setup {
        app,
        fake,
        llm_url,
        dir,
    }
}

/// Starts the flow with `traceparent`, and waits until it asks.
async fn start(s: &Setup, traceparent: &str) -> String {
    let echo = s.llm_url.trim_end_matches("/v1").to_owned() + "/echo";
    let r = s
        .app
        .http
        .post(s.app.url("/api/gateway/runs/start"))
        .bearer_auth(e2e::app::TOKEN)
        .header("traceparent", traceparent)
        .json(&json!({"bundle_id": "traced", "input_data": {"echo": echo}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<serde_json::Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.app.wait_status(&id, "waiting", 30).await;
    id
}

fn of_run<'a>(spans: &'a [Span], run: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.attributes.get("switchboard.run_id").map(String::as_str) == Some(run))
        .collect()
}

/// `traceparent`'s span id, checked to be in our trace.
fn span_of(traceparent: &str) -> String {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1], TRACE, "the run's trace travels: {traceparent}");
    parts[2].to_owned()
}

#[tokio::test]
async fn a_run_is_one_trace_under_the_callers_span_across_a_restart() {
    let (otlp, sink) = e2e::otlp_sink::start().await;
    let mut s = gateway(Some(&otlp)).await;
    let run = start(&s, &format!("00-{TRACE}-{CALLER}-01")).await;
    // Before the restart: the effects' spans are out.
    sink.wait("the effects' spans", |all| {
        of_run(all, &run)
            .iter()
            .filter(|s| s.name.starts_with("llm think"))
            .count()
            >= 2
    })
    .await;
    s.app.terminate().await;
    s.app.restart().await;
    let (st, b) = s.app.answer_waiting("go", &run, json!("yes")).await;
    assert_eq!(st, 200, "{b}");
    let done = s.app.wait_status(&run, "completed", 30).await;
    let all = sink
        .wait("the run's span", |all| {
            of_run(all, &run).iter().any(|s| s.name == "run traced")
        })
        .await;
    let spans = of_run(&all, &run);
    let root = spans.iter().find(|s| s.name == "run traced").unwrap();
    assert_eq!(root.trace_id, TRACE);
    assert_eq!(root.parent, CALLER, "the run hangs under the caller's span");
    assert_eq!(root.service, "switchboard");
    for sp in &spans {
        assert_eq!(sp.trace_id, TRACE, "one trace: {sp:?}");
        if sp.span_id != root.span_id {
            assert_eq!(sp.parent, root.span_id, "under the run's span: {sp:?}");
        }
        assert!(sp.end_ns >= sp.start_ns);
    }
    // Step ids in the ledger carry their visit (`fetch.1`); an agent's turns and calls
    // are steps of their own (`think.1/llm2`, `think.1/tool1.1`).
    let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "http fetch.1",
        "llm think.1",
        "llm think.1/llm2",
        "ask confirm.1",
        "command run_started",
    ] {
        assert!(names.contains(want), "{want} in {names:?}");
    }
    assert!(
        spans
            .iter()
            .any(|s| s.attributes.get("switchboard.effect").map(String::as_str) == Some("tool")),
        "a span for the MCP call: {names:?}"
    );
    assert!(
        spans.iter().any(|s| s.name.starts_with("command ")
            && s.attributes.get("switchboard.step_id").map(String::as_str) == Some("confirm.1")),
        "the answer, sent after the restart, is a command span: {names:?}"
    );
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    assert_eq!(ids.len(), spans.len(), "no span sent twice");

    // The same context went out with each call, naming the call's own span.
    let fetch = spans.iter().find(|s| s.name == "http fetch.1").unwrap();
    assert_eq!(
        span_of(done["output"]["fetched"].as_str().unwrap()),
        fetch.span_id
    );
    let llm_spans: BTreeSet<String> = spans
        .iter()
        .filter(|s| s.name.starts_with("llm think"))
        .map(|s| s.span_id.clone())
        .collect();
    let sent = s.fake.traceparents();
    assert!(!sent.is_empty());
    for tp in &sent {
        assert!(llm_spans.contains(&span_of(tp)), "{tp} names an llm span");
    }
    let mcp = std::fs::read_to_string(s.dir.path().join("traceparents")).unwrap();
    let tool = spans
        .iter()
        .find(|s| s.attributes.get("switchboard.effect").map(String::as_str) == Some("tool"))
        .unwrap();
    assert_eq!(span_of(mcp.lines().next().unwrap()), tool.span_id, "{mcp}");
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_traced() {
    let s = gateway(None).await;
    let run = start(&s, &format!("00-{TRACE}-{CALLER}-01")).await;
    s.app.answer_waiting("go", &run, json!("yes")).await;
    let done = s.app.wait_status(&run, "completed", 30).await;
    assert!(
        done["output"]["fetched"].is_null(),
        "no traceparent on the http step: {done}"
    );
    assert!(s.fake.traceparents().is_empty(), "none to the LLM");
    let mcp = std::fs::read_to_string(s.dir.path().join("traceparents")).unwrap_or_default();
    assert!(mcp.lines().count() >= 1, "the MCP tool was called");
    assert!(
        mcp.lines().all(|l| l == "-"),
        "none to the MCP server: {mcp}"
    );
}

#[tokio::test]
async fn a_broken_endpoint_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(e2e::process::binary())
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .env_clear()
        .env("SWITCHBOARD_OTLP_ENDPOINT", "collector:4318")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SWITCHBOARD_OTLP_ENDPOINT `collector:4318`"),
        "{err}"
    );
}
