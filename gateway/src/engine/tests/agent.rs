//! The tool loop of an `llm` step: turns, calls, approvals and limits, driven with fixed
//! inputs (the runner's part, the tool definitions and the calls, is faked as data).

use protocol::{Actor, RecordStatus, RunStatus};
use serde_json::{Value, json};

use super::{answer, ctx, flow};
use crate::engine::*;

const AGENT: &str = "steps:\n  - id: think\n    llm:\n      prompt: \"{{ input.text }}\"\n      tools: [\"mcp:calc/*\", \"flow:lookup\"]\n      approve: [\"mcp:calc/add\"]\n      max_tool_rounds: 2\n  - output: {answer: \"{{ steps.think.text }}\"}\n";

/// The LLM turn's result: text, or calls of `(id, name, tool, arguments)`.
fn turn(text: &str, calls: &[(&str, &str, Option<&str>, &str)]) -> Input {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, tool, args)| json!({"id": id, "name": name, "tool": tool, "arguments": args}))
        .collect();
    Input::EffectDone {
        result: Ok(json!({"text": text, "tool_calls": calls})),
    }
}

fn person(name: &str) -> Actor {
    Actor {
        kind: "client".into(),
        principal: Some(name.into()),
        client_id: None,
        channel: Some("telegram".into()),
        voter: None,
    }
}

fn pending_request(st: &RunState) -> EffectRequest {
    match &st.pending {
        Some(Pending::Effect { request, .. }) => request.clone(),
        other => panic!("not an effect: {other:?}"),
    }
}

#[test]
fn a_call_runs_its_result_goes_back_and_the_answer_ends_the_step() {
    let f = flow(AGENT);
    let input = json!({"text": "what is 2+3"});
    let mut st = RunState::default();
    step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    let EffectRequest::Llm { tools, .. } = pending_request(&st) else {
        panic!("an llm turn first");
    };
    assert_eq!(tools, ["mcp:calc/*", "flow:lookup"]);

    let t = step(
        &f,
        &mut st,
        &ctx(&input, 1),
        turn(
            "",
            &[("c1", "calc_mul", Some("mcp:calc/mul"), "{\"a\":2,\"b\":3}")],
        ),
    )
    .unwrap();
    assert_eq!(t.status(), RunStatus::Running);
    let EffectRequest::Tool {
        tool,
        arguments,
        call_id,
        ..
    } = pending_request(&st)
    else {
        panic!("the call runs as an effect");
    };
    assert_eq!((tool.as_str(), call_id.as_str()), ("mcp:calc/mul", "c1"));
    assert_eq!(arguments, json!({"a": 2, "b": 3}));
    let started = t
        .records
        .iter()
        .find(|r| r.step_id == "think.1/tool1.1")
        .unwrap();
    assert_eq!(started.status, RecordStatus::Started);
    assert_eq!(started.effect.as_ref().unwrap().payload["name"], "calc_mul");

    let t = step(
        &f,
        &mut st,
        &ctx(&input, 2),
        Input::EffectDone {
            result: Ok(json!({"output": "6"})),
        },
    )
    .unwrap();
    let done = t
        .records
        .iter()
        .find(|r| r.step_id == "think.1/tool1.1")
        .unwrap();
    assert_eq!(done.result.as_ref().unwrap()["output"], "6");
    let EffectRequest::Llm { messages, .. } = pending_request(&st) else {
        panic!("the next turn follows");
    };
    let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "tool"]);
    assert_eq!(
        messages[1].tool_calls[0].function.arguments,
        "{\"a\":2,\"b\":3}"
    );
    assert_eq!(messages[2].tool_call_id.as_deref(), Some("c1"));

    let t = step(&f, &mut st, &ctx(&input, 3), turn("it is 6", &[])).unwrap();
    let t2 = step(&f, &mut st, &ctx(&input, 3), Input::Advance).unwrap();
    assert_eq!(t.status(), RunStatus::Running);
    assert_eq!(t2.output, Some(json!({"answer": "it is 6"})));
    assert!(st.agent.is_none());
}

#[test]
fn a_denied_call_tells_the_model_who_denied_it() {
    let f = flow(AGENT);
    let input = json!({"text": "add"});
    let mut st = RunState::default();
    step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    let t = step(
        &f,
        &mut st,
        &ctx(&input, 1),
        turn(
            "",
            &[("c1", "calc_add", Some("mcp:calc/add"), "{\"a\":2,\"b\":3}")],
        ),
    )
    .unwrap();
    assert_eq!(t.status(), RunStatus::Waiting);
    let w = t.waiting.unwrap();
    assert_eq!(w.wait_key, "think.1/approve1.1");
    assert_eq!(w.choices, ["allow", "deny"]);
    assert!(w.prompt.unwrap().contains("calc_add(a: 2, b: 3)"));

    let deny = Input::Answer {
        wait_key: "think.1/approve1.1".into(),
        response: json!("deny"),
        actor: person("ann"),
    };
    step(&f, &mut st, &ctx(&input, 2), deny).unwrap();
    let EffectRequest::Llm { messages, .. } = pending_request(&st) else {
        panic!("the model hears of the denial");
    };
    let last = messages.last().unwrap();
    assert_eq!(last.role, "tool");
    assert!(
        last.content.contains("denied by ann via telegram"),
        "{}",
        last.content
    );
}

#[test]
fn an_allowed_call_runs_and_abstractgateway_answers_work() {
    let f = flow(AGENT);
    let input = json!({"text": "add"});
    let mut st = RunState::default();
    step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    step(
        &f,
        &mut st,
        &ctx(&input, 1),
        turn("", &[("c1", "calc_add", Some("mcp:calc/add"), "{}")]),
    )
    .unwrap();
    let bad = step(
        &f,
        &mut st,
        &ctx(&input, 2),
        answer("think.1/approve1.1", json!("maybe")),
    );
    assert!(bad.is_err(), "only allow or deny");
    step(
        &f,
        &mut st,
        &ctx(&input, 2),
        answer("think.1/approve1.1", json!({"approved": true})),
    )
    .unwrap();
    assert!(matches!(pending_request(&st), EffectRequest::Tool { .. }));
}

#[test]
fn unknown_tools_and_bad_arguments_are_answered_not_run() {
    let f = flow(AGENT);
    let input = json!({"text": "x"});
    let mut st = RunState::default();
    step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    let calls = [
        ("c1", "rm_rf", None, "{}"),
        ("c2", "calc_mul", Some("mcp:calc/mul"), "not json"),
        ("c3", "shell", Some("mcp:other/shell"), "{}"),
    ];
    step(&f, &mut st, &ctx(&input, 1), turn("", &calls)).unwrap();
    let EffectRequest::Llm { messages, .. } = pending_request(&st) else {
        panic!("straight to the next turn");
    };
    let tool_msgs: Vec<&str> = messages
        .iter()
        .filter(|m| m.role == "tool")
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(tool_msgs.len(), 3);
    assert!(tool_msgs[0].contains("no tool `rm_rf`"));
    assert!(tool_msgs[1].contains("not JSON"));
    assert!(
        tool_msgs[2].contains("no tool `shell`"),
        "a tool outside `tools:` is not run"
    );
}

#[test]
fn past_max_tool_rounds_the_step_fails() {
    let f = flow(AGENT);
    let input = json!({"text": "x"});
    let mut st = RunState::default();
    step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    for i in 1..=2 {
        step(
            &f,
            &mut st,
            &ctx(&input, i),
            turn("", &[("c", "calc_mul", Some("mcp:calc/mul"), "{}")]),
        )
        .unwrap();
        step(
            &f,
            &mut st,
            &ctx(&input, i),
            Input::EffectDone {
                result: Ok(json!({"output": 1})),
            },
        )
        .unwrap();
    }
    let t = step(
        &f,
        &mut st,
        &ctx(&input, 9),
        turn("", &[("c", "calc_mul", Some("mcp:calc/mul"), "{}")]),
    )
    .unwrap();
    assert_eq!(t.status(), RunStatus::Failed);
    assert!(t.error.unwrap().contains("max_tool_rounds: 2"));
}

#[test]
fn a_flow_tool_is_a_child_run_and_its_failure_is_a_result() {
    let f = flow(AGENT);
    let input = json!({"text": "x"});
    let mut st = RunState::default();
    step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    let t = step(
        &f,
        &mut st,
        &ctx(&input, 1),
        turn(
            "",
            &[("c1", "lookup", Some("flow:lookup"), "{\"q\":\"x\"}")],
        ),
    )
    .unwrap();
    let spawn = t.spawn.expect("a child run");
    assert_eq!(
        (spawn.bundle_id.as_str(), spawn.input.clone()),
        ("lookup", json!({"q": "x"}))
    );
    let done = Input::ChildDone {
        status: RunStatus::Failed,
        output: None,
        error: Some("input_data: bad".into()),
    };
    step(&f, &mut st, &ctx(&input, 2), done).unwrap();
    let EffectRequest::Llm { messages, .. } = pending_request(&st) else {
        panic!("the model reads the failure");
    };
    assert!(messages.last().unwrap().content.contains("input_data: bad"));
}

#[test]
fn tool_options_are_checked_where_they_are_written() {
    let cases = [
        ("      tools: [\"mcp:calc\"]\n", "3:15", "names no tool"),
        ("      tools: [\"shell:ls\"]\n", "3:15", "is not a tool"),
        (
            "      tools: [\"mcp:calc/add\"]\n      approve: [\"mcp:files/*\"]\n",
            "4:17",
            "not among `tools`",
        ),
        ("      approve: all\n", "3:16", "needs `tools:`"),
        (
            "      tools: [\"mcp:calc/add\"]\n      max_tool_rounds: 0\n",
            "4:24",
            "max_tool_rounds",
        ),
    ];
    for (opts, at, msg) in cases {
        let src = format!("steps:\n  - llm:\n{opts}      prompt: hi\n");
        let e = crate::flows::parse::compile("t.yaml", "t", &src)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("t.yaml:{at}:")) && e.contains(msg),
            "{opts}: {e}"
        );
    }
}

#[test]
fn an_unanswered_approval_takes_its_default_at_the_timeout() {
    let src = AGENT.replace(
        "      max_tool_rounds: 2\n",
        "      max_tool_rounds: 2\n      approve_timeout: 10m\n      approve_default: deny\n",
    );
    let f = flow(&src);
    let input = json!({"text": "add"});
    let mut st = RunState::default();
    step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    let add = ("c1", "calc_add", Some("mcp:calc/add"), "{}");
    let t = step(&f, &mut st, &ctx(&input, 1), turn("", &[add])).unwrap();
    assert!(t.wake_at.is_some(), "the timeout is armed");
    let early = step(&f, &mut st, &ctx(&input, 60), Input::TimerDue).unwrap();
    assert!(early.records.is_empty(), "not yet");
    let t = step(&f, &mut st, &ctx(&input, 601), Input::TimerDue).unwrap();
    let answer = t
        .records
        .iter()
        .find(|r| r.step_id == "think.1/approve1.1")
        .unwrap();
    assert_eq!(answer.result.as_ref().unwrap()["timed_out"], true);
    let EffectRequest::Llm { messages, .. } = pending_request(&st) else {
        panic!("the model hears of the denial");
    };
    assert!(
        messages
            .last()
            .unwrap()
            .content
            .contains("denied by the approval's timeout")
    );
}

#[test]
fn arguments_too_long_to_show_are_not_put_to_a_person() {
    let f = flow(AGENT);
    let input = json!({"text": "add"});
    let mut st = RunState::default();
    step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    let long = format!("{{\"a\": \"{}\"}}", "x".repeat(3000));
    let add = ("c1", "calc_add", Some("mcp:calc/add"), long.as_str());
    let t = step(&f, &mut st, &ctx(&input, 1), turn("", &[add])).unwrap();
    assert_ne!(t.status(), RunStatus::Waiting);
    let EffectRequest::Llm { messages, .. } = pending_request(&st) else {
        panic!("the model is told to shorten them");
    };
    assert!(
        messages
            .last()
            .unwrap()
            .content
            .contains("too long to be shown")
    );
}

#[test]
fn a_retried_tool_call_keeps_its_idempotency_key() {
    let src = AGENT.replace("    llm:\n", "    retries: 1\n    llm:\n");
    let f = flow(&src);
    let input = json!({"text": "x"});
    let mut st = RunState::default();
    step(&f, &mut st, &ctx(&input, 0), Input::Advance).unwrap();
    let mul = ("c1", "calc_mul", Some("mcp:calc/mul"), "{}");
    step(&f, &mut st, &ctx(&input, 1), turn("", &[mul])).unwrap();
    let key = |st: &RunState| match &st.pending {
        Some(Pending::Effect {
            idempotency_key,
            attempt,
            ..
        }) => (idempotency_key.clone(), *attempt),
        other => panic!("{other:?}"),
    };
    let first = key(&st);
    step(&f, &mut st, &ctx(&input, 2), super::boom()).unwrap();
    let second = key(&st);
    assert_eq!((first.1, second.1), (1, 2));
    assert_eq!(first.0, second.0);
    assert_eq!(first.0, "r1:think.1/tool1.1");
}
