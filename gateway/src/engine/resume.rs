//! Applying an [`Input`] to a blocked run: answers, timers, events, child results and
//! effect results. Validation happens before any change, so a refused input leaves the
//! state as it was.

use protocol::{Actor, RecordStatus, RunStatus};
use serde_json::{Value, json};

use super::agent::CallOutcome;
use super::exec::Machine;
use super::{ChatMessage, EffectRequest, Input, Pending, Reject};

impl Machine<'_> {
    /// `Ok(true)`: the wait is over and the program should continue.
    pub(crate) fn resume(&mut self, input: Input) -> Result<bool, Reject> {
        let pending = self.state.pending.clone();
        match (input, pending) {
            (Input::Advance, p) => Ok(p.is_none()),
            (
                Input::Answer {
                    wait_key,
                    response,
                    actor,
                },
                Some(p @ Pending::Ask { team: Some(_), .. }),
            ) => {
                if wait_key != p.wait_key() {
                    return Err(stale(&wait_key, p.wait_key()));
                }
                self.vote(p, &response, actor)
            }
            (
                Input::Answer {
                    wait_key,
                    response,
                    actor,
                },
                Some(Pending::Ask {
                    step_id,
                    node,
                    choices,
                    allow_free_text,
                    tool,
                    ..
                }),
            ) => {
                if wait_key != step_id {
                    return Err(stale(&wait_key, &step_id));
                }
                if let Some(tool) = tool {
                    let answer = approval_answer(&response, &choices)?;
                    let result = json!({"approval": tool});
                    return Ok(self.approval_answered(&step_id, &node, &answer, result, actor));
                }
                let response = match_choice(&response, &choices, allow_free_text)?;
                self.finish_wait(&step_id, &node, json!({"response": response}), actor);
                Ok(true)
            }
            (Input::Answer { wait_key, .. }, p) => Err(match p {
                Some(p) => stale(&wait_key, p.wait_key()),
                None => Reject::StaleWaitKey {
                    given: wait_key,
                    current: "it is not waiting for an answer".into(),
                },
            }),
            (Input::TimerDue, Some(p)) => Ok(self.timer_due(p)),
            (Input::TimerDue, None) => Ok(false),
            (
                Input::Event {
                    wait_key,
                    name,
                    payload,
                    actor,
                },
                Some(Pending::Event { step_id, node, .. }),
            ) => {
                if wait_key != step_id {
                    return Err(stale(&wait_key, &step_id));
                }
                let result = json!({"name": name, "payload": payload});
                self.finish_wait(&step_id, &node, result, actor);
                Ok(true)
            }
            (Input::Event { wait_key, .. }, p) => {
                Err(stale(&wait_key, p.as_ref().map_or("", |p| p.wait_key())))
            }
            (
                Input::ChildDone {
                    status,
                    output,
                    error,
                },
                Some(Pending::Child {
                    step_id,
                    node,
                    child_run_id,
                    tool,
                }),
            ) => {
                if tool {
                    let outcome = match (status, output, error) {
                        (RunStatus::Completed, output, _) => {
                            CallOutcome::Output(output.unwrap_or(Value::Null))
                        }
                        (s, _, e) => CallOutcome::Error(format!(
                            "the flow's run {child_run_id} ended {}: {}",
                            s.as_str(),
                            e.unwrap_or_else(|| "no error given".into())
                        )),
                    };
                    let extra = json!({"child_run_id": child_run_id});
                    return Ok(self.call_finished(&step_id, &node, outcome, extra));
                }
                if status != RunStatus::Completed {
                    let why = error.unwrap_or_else(|| format!("it was {}", status.as_str()));
                    self.fail(
                        &node,
                        format!("called run {child_run_id} did not complete: {why}"),
                    );
                    return Ok(false);
                }
                let result = json!({"run_id": child_run_id, "status": status, "output": output});
                self.finish_wait(&step_id, &node, result, Actor::runner());
                Ok(true)
            }
            (Input::EffectDone { result }, Some(p @ Pending::Effect { .. })) => {
                Ok(self.effect_done(result, p))
            }
            (_, p) => Err(Reject::Nothing(match p {
                Some(p) => format!("the run waits on `{}`", p.wait_key()),
                None => "the run is not waiting".into(),
            })),
        }
    }

    /// A timer or an `ask` deadline, if due: `true` when the run goes on.
    fn timer_due(&mut self, p: Pending) -> bool {
        match p {
            Pending::Timer {
                step_id,
                node,
                until,
            } if self.ctx.now >= until => {
                let result = json!({"until": super::ts(until)});
                self.finish_wait(&step_id, &node, result, Actor::runner());
                true
            }
            Pending::Ask {
                step_id,
                node,
                deadline: Some(deadline),
                default,
                tool,
                ..
            } if self.ctx.now >= deadline => match default {
                Some(answer) if tool.is_some() => {
                    let result = json!({"approval": tool, "timed_out": true});
                    self.approval_answered(&step_id, &node, &answer, result, Actor::runner())
                }
                Some(answer) => {
                    let result = json!({"response": answer, "timed_out": true});
                    self.finish_wait(&step_id, &node, result, Actor::runner());
                    true
                }
                None => {
                    self.fail(
                        &node,
                        "no answer before the timeout, and the ask has no default".into(),
                    );
                    false
                }
            },
            p @ Pending::Ask { team: Some(_), .. } => self.team_timer(p),
            _ => false,
        }
    }

    /// Appends the record that ends a wait, stores the step's result and moves on.
    /// Records the end of a wait (by `actor`, with `result`) and moves on.
    fn finish_wait(&mut self, step_id: &str, node: &str, result: Value, actor: Actor) {
        let mut d = self.draft(step_id, node, RecordStatus::Completed, None);
        d.result = Some(result.clone());
        d.actor = actor;
        self.done_waiting(d, node, result);
    }

    fn done_waiting(&mut self, mut d: super::Draft, node: &str, result: Value) {
        d.ended_at = Some(self.ctx.now);
        self.t.records.push(d);
        self.state.steps.insert(node.to_owned(), result);
        self.state.pending = None;
        self.state.pc += 1;
        self.t.status = Some(RunStatus::Running);
    }

    /// Applies an effect's result: record it, retry it (as the flow allows) or fail the run.
    /// `true` when the run goes on.
    fn effect_done(&mut self, result: Result<Value, String>, pending: Pending) -> bool {
        let Pending::Effect {
            step_id,
            node,
            attempt,
            retries,
            idempotency_key: key,
            request,
        } = pending
        else {
            return false;
        };
        match result {
            Ok(value) if matches!(request, EffectRequest::Tool { .. }) => {
                let outcome = match value.get("error").and_then(Value::as_str) {
                    Some(e) => CallOutcome::Error(e.to_owned()),
                    None => CallOutcome::Output(value["output"].clone()),
                };
                let extra = json!({"attempt": attempt, "idempotency_key": key});
                self.call_finished(&step_id, &node, outcome, extra)
            }
            Ok(value) => {
                let mut d = self.draft(&step_id, &node, RecordStatus::Completed, None);
                d.result = Some(value.clone());
                d.attempt = attempt;
                d.idempotency_key = Some(key);
                if let EffectRequest::Llm { tools, .. } = &request
                    && !tools.is_empty()
                {
                    self.t.records.push(d);
                    self.state.pending = None;
                    return self.turn_done(&value);
                }
                if let EffectRequest::Llm {
                    remember: Some(prompt),
                    ..
                } = &request
                {
                    let text = value
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    self.t
                        .history
                        .push(ChatMessage::text("user", prompt.clone()));
                    self.t.history.push(ChatMessage::text("assistant", text));
                }
                self.done_waiting(d, &node, value);
                true
            }
            Err(error) if attempt <= retries => {
                let mut d = self.draft(&step_id, &node, RecordStatus::Failed, None);
                d.error = Some(error);
                d.attempt = attempt;
                d.idempotency_key = Some(key);
                self.t.records.push(d);
                self.start_effect(step_id, &node, attempt + 1, retries, request);
                false
            }
            Err(error) => {
                let tries = if attempt > 1 {
                    format!(" (after {attempt} attempts)")
                } else {
                    String::new()
                };
                self.fail_effect(&step_id, &node, attempt, key, format!("{error}{tries}"));
                false
            }
        }
    }

    fn fail_effect(&mut self, step_id: &str, node: &str, attempt: u32, key: String, msg: String) {
        let mut d = self.draft(step_id, node, RecordStatus::Failed, None);
        d.error = Some(msg.clone());
        d.attempt = attempt;
        d.idempotency_key = Some(key);
        self.t.records.push(d);
        self.t
            .fail_run(format!("step `{node}` failed: {msg}"), self.ctx.now);
        self.state.pending = None;
        self.state.agent = None;
    }
}

/// An approval's answer: `allow` or `deny` (or their number, as for any choice), or
/// AbstractGateway's `{"approved": true|false}`.
fn approval_answer(response: &Value, choices: &[String]) -> Result<String, Reject> {
    if let Some(b) = response.get("approved").and_then(Value::as_bool) {
        return Ok(if b { "allow" } else { "deny" }.into());
    }
    match match_choice(response, choices, false)? {
        Value::String(s) => Ok(s),
        _ => Err(Reject::BadAnswer),
    }
}

fn stale(given: &str, current: &str) -> Reject {
    Reject::StaleWaitKey {
        given: given.to_owned(),
        current: if current.is_empty() {
            "it is not waiting".into()
        } else {
            format!("the current wait_key is `{current}`")
        },
    }
}

/// Normalises an answer: "2", "approve", " Approve. " all pick choice 2 `approve`.
pub(crate) fn match_choice(
    response: &Value,
    choices: &[String],
    free_text: bool,
) -> Result<Value, Reject> {
    let text = match response {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) if free_text => b.to_string(),
        _ if free_text && !response.is_null() => return Ok(response.clone()),
        _ => return Err(Reject::BadAnswer),
    };
    if !choices.is_empty() {
        let norm = |s: &str| {
            s.trim()
                .trim_end_matches(['.', '!', '?'])
                .trim()
                .to_lowercase()
        };
        let wanted = norm(&text);
        if let Some(c) = choices.iter().find(|c| norm(c) == wanted) {
            return Ok(Value::String(c.clone()));
        }
        if let Ok(i) = wanted.parse::<usize>()
            && (1..=choices.len()).contains(&i)
        {
            return Ok(Value::String(choices[i - 1].clone()));
        }
    }
    if free_text {
        return Ok(Value::String(text));
    }
    Err(Reject::NotAChoice {
        given: text,
        choices: choices
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} {c}", i + 1))
            .collect::<Vec<_>>()
            .join(", "),
    })
}
