//! Table-driven engine tests: every step type, and every kind of input that resumes a run
//! (an answer, a timer, an event, a child's end, an effect's result) and every refusal,
//! each a short script of inputs with what each transition must show. Then determinism: the
//! same script over flows that ask, wait and call an LLM gives the same transitions twice.

use protocol::{Actor, RunStatus, WaitReason};
use serde_json::{Value, json};

use super::super::*;
use super::ctx;
use crate::flows::parse::compile;

/// What one input gives.
#[derive(Debug)]
enum Expect {
    /// The run ends or blocks with this status (and maybe this output).
    Status(RunStatus),
    /// The run completes with this output (JSON text).
    Output(&'static str),
    /// The run waits for this.
    Waits(WaitReason),
    /// The run asks the runner to perform this effect (`llm`, `http`).
    Effect(&'static str),
    /// The run starts a child of this flow.
    Spawns(&'static str),
    /// The run emits this event.
    Emits(&'static str),
    /// The input is refused, the error naming this.
    Refused(&'static str),
    /// Nothing changes (a timer that is not due yet).
    Nothing,
}

/// An input, built from the state it resumes (for the current wait key).
type MakeInput = fn(&RunState) -> Input;

struct Case {
    name: &'static str,
    flow: &'static str,
    turns: &'static [(i64, MakeInput, Expect)],
}

fn key(st: &RunState) -> String {
    st.pending
        .as_ref()
        .map(|p| p.wait_key().to_owned())
        .unwrap_or_default()
}

fn advance(_: &RunState) -> Input {
    Input::Advance
}

fn timer(_: &RunState) -> Input {
    Input::TimerDue
}

fn answer_with(st: &RunState, response: Value) -> Input {
    Input::Answer {
        wait_key: key(st),
        response,
        actor: Actor::runner(),
    }
}

fn approve(st: &RunState) -> Input {
    answer_with(st, json!("approve"))
}

fn maybe(st: &RunState) -> Input {
    answer_with(st, json!("maybe"))
}

fn an_object(st: &RunState) -> Input {
    answer_with(st, json!({"not": "text"}))
}

fn stale(_: &RunState) -> Input {
    Input::Answer {
        wait_key: "gone.1".into(),
        response: json!("approve"),
        actor: Actor::runner(),
    }
}

fn event(st: &RunState) -> Input {
    Input::Event {
        wait_key: key(st),
        name: "go".into(),
        payload: json!({"n": 7}),
        actor: Actor::runner(),
    }
}

fn child_done(_: &RunState) -> Input {
    Input::ChildDone {
        status: RunStatus::Completed,
        output: Some(json!({"child": "ok"})),
        error: None,
    }
}

fn child_failed(_: &RunState) -> Input {
    Input::ChildDone {
        status: RunStatus::Failed,
        output: None,
        error: Some("the child broke".into()),
    }
}

fn effect_ok(_: &RunState) -> Input {
    Input::EffectDone {
        result: Ok(json!({"text": "hello", "status": 200, "body": {"ok": true}})),
    }
}

fn effect_err(_: &RunState) -> Input {
    Input::EffectDone {
        result: Err("the provider said no".into()),
    }
}

const CASES: &[Case] = &[
    Case {
        name: "say, set, if/else and output",
        flow: "steps:\n  - say: hello\n  - set: {n: 3}\n  - if: \"vars.n > 2\"\n    then: [{set: {big: true}}]\n    else: [{set: {big: false}}]\n  - output: \"{{ vars.big }}\"\n",
        turns: &[(0, advance, Expect::Output(r#"true"#))],
    },
    Case {
        name: "a bounded loop",
        flow: "steps:\n  - set: {i: 0}\n  - loop:\n      max: 3\n      steps:\n        - set: {i: \"{{ vars.i + 1 }}\"}\n  - output: \"{{ vars.i }}\"\n",
        turns: &[(0, advance, Expect::Output(r#"3"#))],
    },
    Case {
        name: "ask: refusals, then an answer",
        flow: "steps:\n  - id: q\n    ask: ship?\n    choices: [approve, reject]\n  - output: \"{{ steps.q.response }}\"\n",
        turns: &[
            (0, advance, Expect::Waits(WaitReason::User)),
            (1, maybe, Expect::Refused("not one of the choices")),
            (1, an_object, Expect::Refused("must be text")),
            (1, stale, Expect::Refused("not waiting on `gone.1`")),
            (2, approve, Expect::Output(r#""approve""#)),
        ],
    },
    Case {
        name: "ask: a timeout answers the default",
        flow: "steps:\n  - id: q\n    ask: ship?\n    timeout: 30s\n    default: later\n  - output: \"{{ steps.q.response }}\"\n",
        turns: &[
            (0, advance, Expect::Waits(WaitReason::User)),
            (10, timer, Expect::Nothing),
            (30, timer, Expect::Output(r#""later""#)),
        ],
    },
    Case {
        name: "wait: a timer",
        flow: "steps:\n  - wait: 5s\n  - output: done\n",
        turns: &[
            (0, advance, Expect::Waits(WaitReason::Until)),
            (4, timer, Expect::Nothing),
            (5, timer, Expect::Output(r#""done""#)),
        ],
    },
    Case {
        name: "wait_event: an event",
        flow: "steps:\n  - id: e\n    wait_event: go\n  - output: \"{{ steps.e.payload.n }}\"\n",
        turns: &[
            (0, advance, Expect::Waits(WaitReason::Event)),
            (1, stale, Expect::Refused("not waiting on `gone.1`")),
            (1, event, Expect::Output(r#"7"#)),
        ],
    },
    Case {
        name: "emit",
        flow: "steps:\n  - emit: go\n    payload: {n: 1}\n  - output: sent\n",
        turns: &[(0, advance, Expect::Emits("go"))],
    },
    Case {
        name: "call: a child that completes",
        flow: "steps:\n  - id: c\n    call: echo\n    input: {text: hi}\n  - output: \"{{ steps.c.output.child }}\"\n",
        turns: &[
            (0, advance, Expect::Spawns("echo")),
            (1, child_done, Expect::Output(r#""ok""#)),
        ],
    },
    Case {
        name: "call: a child that fails fails the run",
        flow: "steps:\n  - id: c\n    call: echo\n  - output: never\n",
        turns: &[
            (0, advance, Expect::Waits(WaitReason::Subworkflow)),
            (1, child_failed, Expect::Status(RunStatus::Failed)),
        ],
    },
    Case {
        name: "llm: an effect's result, then the flow moves on",
        flow: "steps:\n  - id: r\n    llm: hi\n  - output: \"{{ steps.r.text }}\"\n",
        turns: &[
            (0, advance, Expect::Effect("llm")),
            (1, effect_ok, Expect::Status(RunStatus::Running)),
            (1, advance, Expect::Output(r#""hello""#)),
        ],
    },
    Case {
        name: "http: an effect's result",
        flow: "steps:\n  - id: h\n    http: https://api.example.com/x\n  - output: \"{{ steps.h.body.ok }}\"\n",
        turns: &[
            (0, advance, Expect::Effect("http")),
            (1, effect_ok, Expect::Status(RunStatus::Running)),
            (1, advance, Expect::Output(r#"true"#)),
        ],
    },
    Case {
        name: "an effect that fails fails the run, with no wait left",
        flow: "steps:\n  - id: r\n    llm: hi\n  - output: never\n",
        turns: &[
            (0, advance, Expect::Effect("llm")),
            (1, effect_err, Expect::Status(RunStatus::Failed)),
        ],
    },
    Case {
        name: "nothing to answer",
        flow: "steps:\n  - output: done\n",
        turns: &[
            (0, advance, Expect::Output(r#""done""#)),
            (1, approve, Expect::Refused("")),
        ],
    },
];

fn check(case: &Case, turn: usize, expect: &Expect, got: &Result<Transition, Reject>) {
    let at = format!("{} (turn {turn}: {expect:?})", case.name);
    match (expect, got) {
        (Expect::Refused(what), Err(e)) => {
            assert!(e.to_string().contains(what), "{at}: {e}");
        }
        (Expect::Refused(_), Ok(t)) => panic!("{at}: not refused: {t:?}"),
        (_, Err(e)) => panic!("{at}: refused: {e}"),
        (Expect::Status(s), Ok(t)) => {
            assert_eq!(t.status(), *s, "{at}");
            if *s == RunStatus::Failed {
                assert!(t.waiting.is_none() && t.wake_at.is_none(), "{at}: {t:?}");
                assert!(
                    t.records
                        .iter()
                        .any(|r| r.effect.as_ref().is_some_and(|e| e.kind == "run_failed")),
                    "{at}"
                );
            }
        }
        (Expect::Output(v), Ok(t)) => {
            assert_eq!(t.status(), RunStatus::Completed, "{at}: {t:?}");
            let want: Value = serde_json::from_str(v).unwrap_or_else(|e| panic!("{at}: {e}"));
            assert_eq!(t.output.as_ref(), Some(&want), "{at}");
        }
        (Expect::Waits(r), Ok(t)) => {
            assert_eq!(t.status(), RunStatus::Waiting, "{at}");
            assert_eq!(t.waiting.as_ref().map(|w| w.reason), Some(*r), "{at}");
        }
        (Expect::Effect(kind), Ok(t)) => {
            let started = t.records.iter().find_map(|r| r.effect.as_ref());
            assert_eq!(started.map(|e| e.kind.as_str()), Some(*kind), "{at}: {t:?}");
            assert_eq!(t.status(), RunStatus::Running, "{at}");
        }
        (Expect::Spawns(flow), Ok(t)) => {
            assert_eq!(
                t.spawn.as_ref().map(|c| c.bundle_id.as_str()),
                Some(*flow),
                "{at}"
            );
        }
        (Expect::Emits(name), Ok(t)) => {
            assert!(t.emits.iter().any(|e| e.name == *name), "{at}: {t:?}");
        }
        (Expect::Nothing, Ok(t)) => {
            assert!(t.records.is_empty() && t.status.is_none(), "{at}: {t:?}");
        }
    }
}

#[test]
fn every_step_type_and_every_resume_input() {
    let input = json!({});
    for case in CASES {
        let f = compile("t.yaml", "t", case.flow).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let mut st = RunState::default();
        for (i, (at, make, expect)) in case.turns.iter().enumerate() {
            let mut trial = st.clone();
            let got = step(&f, &mut trial, &ctx(&input, *at), make(&st));
            check(case, i, expect, &got);
            if got.is_ok() {
                st = trial;
            } else {
                assert_eq!(trial, st, "{}: a refusal changes no state", case.name);
            }
        }
    }
}

/// A script over flows that ask, wait and call an LLM, run on a fresh state.
fn transcript(flow: &crate::flows::Flow, script: &[(i64, MakeInput)]) -> Vec<(String, RunState)> {
    let input = json!({"text": "hi"});
    let mut st = RunState::default();
    script
        .iter()
        .map(|(at, make)| {
            let i = make(&st);
            let t = step(flow, &mut st, &ctx(&input, *at), i);
            (format!("{t:?}"), st.clone())
        })
        .collect()
}

#[test]
fn the_same_script_gives_the_same_transitions() {
    let f = compile(
        "t.yaml",
        "t",
        "steps:\n  - id: q\n    ask: ship?\n    choices: [approve, reject]\n  - wait: 5s\n  - id: r\n    llm: \"{{ steps.q.response }}\"\n  - output: \"{{ steps.r.text }}\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let script: &[(i64, MakeInput)] = &[
        (0, advance),
        (1, maybe),
        (2, approve),
        (4, timer),
        (7, timer),
        (8, effect_ok),
        (8, advance),
    ];
    let (a, b) = (transcript(&f, script), transcript(&f, script));
    assert_eq!(a, b);
    assert!(
        a.last().is_some_and(|(t, _)| t.contains("Completed")),
        "{a:?}"
    );
}
