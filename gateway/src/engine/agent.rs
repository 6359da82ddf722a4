//! The tool loop of an `llm` step with `tools:`: after each LLM turn, the model's tool
//! calls run one by one (an MCP tool as an effect, a flow as a child run, each behind a
//! person's approval when `approve:` covers it), their results join the conversation, and
//! the next turn follows, until the model answers without calls or `max_tool_rounds` runs
//! out. Every turn, approval, call and result is a ledger record, so a restarted run
//! continues from the last recorded one. Pure, like the rest of the engine.

use protocol::{Actor, RecordStatus, RunStatus};
use serde_json::{Value, json};

use super::exec::Machine;
use super::{
    Agent, ChatMessage, ChildSpec, EffectRequest, Pending, ToolCall, WireCall, WireFunction,
};
use crate::flows::{AgentSpec, Instr, LlmStep, StepKind, ToolRef};

/// What a call's result gives the model, and what the ledger records for it.
pub(super) enum CallOutcome {
    Output(Value),
    Error(String),
}

impl Machine<'_> {
    /// The `llm` step the run is at, with its tools and retries.
    fn agent_step(&self) -> Option<(&LlmStep, &AgentSpec, u32)> {
        match self.flow.program.get(self.state.pc)? {
            Instr::Step(s) => match &s.kind {
                StepKind::Llm(l) => Some((l, l.agent.as_ref()?, s.retries)),
                _ => None,
            },
            _ => None,
        }
    }

    /// An LLM turn of a step with tools came back: finish the step, or run its calls.
    pub(super) fn turn_done(&mut self, value: &Value) -> bool {
        let Some((_, spec, _)) = self.agent_step() else {
            return self.lost_agent();
        };
        let max = spec.max_rounds;
        let Some(a) = self.state.agent.as_mut() else {
            return self.lost_agent();
        };
        let text = value["text"].as_str().unwrap_or_default().to_owned();
        let calls: Vec<ToolCall> =
            serde_json::from_value(value["tool_calls"].clone()).unwrap_or_default();
        if calls.is_empty() {
            return self.agent_finish(text);
        }
        if a.round > max {
            let node = a.node.clone();
            self.fail(
                &node,
                format!(
                    "the model still asked for tools after {max} rounds (max_tool_rounds: {max})"
                ),
            );
            return false;
        }
        let wire = calls
            .iter()
            .map(|c| WireCall {
                id: c.id.clone(),
                kind: "function".into(),
                function: WireFunction {
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                },
            })
            .collect();
        let mut msg = ChatMessage::text("assistant", text);
        msg.tool_calls = wire;
        a.messages.push(msg);
        a.calls = calls;
        a.done = 0;
        a.approved = false;
        self.next_call()
    }

    /// Runs the next call of the round (or the next turn when all are answered). Calls
    /// that cannot run (an unknown tool, arguments that are not a JSON object) are answered
    /// at once with an error the model can read. `false`: the run waits.
    pub(super) fn next_call(&mut self) -> bool {
        loop {
            let Some((llm, spec, retries)) = self.agent_step() else {
                return self.lost_agent();
            };
            let (llm, spec) = (llm.clone(), spec.clone());
            let Some(a) = self.state.agent.clone() else {
                return self.lost_agent();
            };
            let Some(call) = a.calls.get(a.done).cloned() else {
                self.next_turn(&llm, &spec, retries);
                return false;
            };
            let n = a.done + 1;
            let call_sid = format!("{}/tool{}.{n}", a.step_id, a.round);
            // A call that cannot run is answered with why, for the model to read.
            let runnable = call
                .tool
                .as_deref()
                .and_then(|t| ToolRef::parse(t).ok())
                .filter(|t| spec.allows(t))
                .ok_or_else(|| {
                    format!(
                        "there is no tool `{}`; call one of the tools you were given",
                        call.name
                    )
                })
                .and_then(|t| Ok((t, parse_arguments(&call.arguments)?)));
            let (tool, args) = match runnable {
                Ok(ok) => ok,
                Err(why) => {
                    let outcome = CallOutcome::Error(why);
                    self.call_record(&call_sid, &a.node, &call, &Value::Null, outcome);
                    continue;
                }
            };
            if spec.approve.needs(&tool) && !a.approved {
                if show_args(&args).chars().count() > MAX_SHOWN_ARGS {
                    let why = format!(
                        "the arguments are too long to be shown to the person who approves the call (at most {MAX_SHOWN_ARGS} characters); call it with shorter arguments"
                    );
                    self.call_record(
                        &call_sid,
                        &a.node,
                        &call,
                        &Value::Null,
                        CallOutcome::Error(why),
                    );
                    continue;
                }
                self.ask_approval(&a, n, &call, &tool, &args, &spec);
                return false;
            }
            self.run_call(&a, call_sid, &call, tool, args, retries);
            return false;
        }
    }

    fn run_call(
        &mut self,
        a: &Agent,
        call_sid: String,
        call: &ToolCall,
        tool: ToolRef,
        args: Value,
        retries: u32,
    ) {
        match tool {
            ToolRef::Flow(bundle) => {
                let name = format!("{}/{call_sid}", self.ctx.run_id);
                let child =
                    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string();
                let mut rec = self.draft(
                    &call_sid,
                    &a.node,
                    RecordStatus::Started,
                    Some(("tool", call_payload(call, &tool_name(&bundle), &args))),
                );
                rec.result = Some(json!({"child_run_id": child}));
                self.t.records.push(rec);
                self.t.spawn = Some(ChildSpec {
                    run_id: child.clone(),
                    bundle_id: bundle,
                    input: args,
                });
                // Waiting on the child (reason `subworkflow`), as a `call` step does.
                self.block(Pending::Child {
                    step_id: call_sid,
                    node: a.node.clone(),
                    child_run_id: child,
                    tool: true,
                });
            }
            mcp => {
                let request = EffectRequest::Tool {
                    tool: mcp.to_string(),
                    name: call.name.clone(),
                    arguments: args,
                    call_id: call.id.clone(),
                };
                self.start_effect(call_sid, &a.node, 1, retries, request);
            }
        }
    }

    fn ask_approval(
        &mut self,
        a: &Agent,
        n: usize,
        call: &ToolCall,
        tool: &ToolRef,
        args: &Value,
        spec: &AgentSpec,
    ) {
        let shown = show_args(args);
        let prompt = format!("Allow the tool call {}({shown}) ({tool})?", call.name);
        self.block(Pending::Ask {
            step_id: format!("{}/approve{}.{n}", a.step_id, a.round),
            node: a.node.clone(),
            prompt,
            choices: vec!["allow".into(), "deny".into()],
            allow_free_text: false,
            deadline: spec.approve_timeout.map(|t| self.ctx.now + t),
            default: spec.approve_default.clone(),
            tool: Some(call_payload(call, &tool.to_string(), args)),
            team: None,
        });
    }

    /// A person (or the timeout's default) answered an approval: `allow` runs the call,
    /// `deny` answers it with who denied it.
    pub(super) fn approval_answered(
        &mut self,
        step_id: &str,
        node: &str,
        answer: &str,
        mut result: Value,
        actor: Actor,
    ) -> bool {
        let who = who(&actor);
        let mut d = self.draft(step_id, node, RecordStatus::Completed, None);
        result["response"] = json!(answer);
        d.result = Some(result);
        d.actor = actor;
        d.ended_at = Some(self.ctx.now);
        self.t.records.push(d);
        self.state.pending = None;
        self.t.status = Some(RunStatus::Running);
        let Some(a) = self.state.agent.as_mut() else {
            return self.lost_agent();
        };
        if answer == "allow" {
            a.approved = true;
            return self.next_call();
        }
        let Some(call) = a.calls.get(a.done).cloned() else {
            return self.lost_agent();
        };
        let sid = format!("{}/tool{}.{}", a.step_id, a.round, a.done + 1);
        let node = a.node.clone();
        let why = format!("the call was denied by {who}; do not call it again");
        self.call_record(&sid, &node, &call, &Value::Null, CallOutcome::Error(why));
        self.next_call()
    }

    /// A call's result arrived (an MCP effect, a child run): record it, give it to the
    /// model, go on with the next call.
    pub(super) fn call_finished(
        &mut self,
        step_id: &str,
        node: &str,
        outcome: CallOutcome,
        extra: Value,
    ) -> bool {
        let Some(a) = self.state.agent.as_ref() else {
            return self.lost_agent();
        };
        let Some(call) = a.calls.get(a.done).cloned() else {
            return self.lost_agent();
        };
        self.state.pending = None;
        self.t.status = Some(RunStatus::Running);
        self.call_record(step_id, node, &call, &extra, outcome);
        self.next_call()
    }

    /// Records a call's result (`completed`, with the call for clients to show) and adds
    /// the `tool` message for the model.
    fn call_record(
        &mut self,
        step_id: &str,
        node: &str,
        call: &ToolCall,
        extra: &Value,
        outcome: CallOutcome,
    ) {
        let args = parse_arguments(&call.arguments).unwrap_or(Value::Null);
        let mut result = json!({
            "call_id": call.id, "name": call.name, "tool": call.tool, "arguments": args,
        });
        if let Value::Object(m) = extra {
            for (k, v) in m {
                result[k] = v.clone();
            }
        }
        let content = match outcome {
            CallOutcome::Output(v) => {
                let text = match &v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                result["output"] = v;
                text
            }
            CallOutcome::Error(e) => {
                let text = format!("error: {e}");
                result["error"] = json!(e);
                text
            }
        };
        let mut d = self.draft(step_id, node, RecordStatus::Completed, None);
        d.result = Some(result);
        self.t.records.push(d);
        if let Some(a) = self.state.agent.as_mut() {
            let mut msg = ChatMessage::text("tool", content);
            msg.tool_call_id = Some(call.id.clone());
            a.messages.push(msg);
            a.done += 1;
            a.approved = false;
        }
    }

    fn next_turn(&mut self, llm: &LlmStep, spec: &AgentSpec, retries: u32) {
        let Some(a) = self.state.agent.as_mut() else {
            self.lost_agent();
            return;
        };
        a.round += 1;
        let step_id = format!("{}/llm{}", a.step_id, a.round);
        let (node, messages) = (a.node.clone(), a.messages.clone());
        let request = EffectRequest::Llm {
            messages,
            model: llm.model.clone(),
            temperature: llm.temperature,
            max_tokens: llm.max_tokens,
            remember: None,
            tools: spec.tools.iter().map(ToString::to_string).collect(),
        };
        let total = messages_len(&request);
        self.start_effect(step_id, &node, 1, retries, request);
        // The turn's record holds what this round added (the calls and their results), not
        // the whole conversation again: the ledger grows with the conversation, not its
        // square.
        let added = 1 + self.state.agent.as_ref().map_or(0, |a| a.calls.len());
        if let Some(effect) = self.t.records.last_mut().and_then(|r| r.effect.as_mut())
            && let Some(Value::Array(msgs)) = effect.payload.get_mut("messages")
        {
            let keep = msgs.len().saturating_sub(added);
            msgs.drain(..keep);
            effect.payload["messages_total"] = json!(total);
        }
    }

    /// The model answered without calls: the step's result is that answer.
    fn agent_finish(&mut self, text: String) -> bool {
        let Some(a) = self.state.agent.take() else {
            return self.lost_agent();
        };
        if let Some(prompt) = a.remember {
            self.t.history.push(ChatMessage::text("user", prompt));
            self.t
                .history
                .push(ChatMessage::text("assistant", text.clone()));
        }
        self.state
            .steps
            .insert(a.node, json!({"text": text, "rounds": a.round}));
        self.state.pending = None;
        self.state.pc += 1;
        self.t.status = Some(RunStatus::Running);
        true
    }

    /// The state lost its tool loop (a flow changed under a run, or a bug): fail clearly.
    fn lost_agent(&mut self) -> bool {
        let node = self
            .state
            .agent
            .as_ref()
            .map_or_else(|| "run".to_owned(), |a| a.node.clone());
        self.fail(
            &node,
            "the tool loop of this llm step has no state to continue from".into(),
        );
        false
    }
}

fn messages_len(r: &EffectRequest) -> usize {
    match r {
        EffectRequest::Llm { messages, .. } => messages.len(),
        _ => 0,
    }
}

/// The ledger payload of a call: what ran, with which arguments.
fn call_payload(call: &ToolCall, tool: &str, args: &Value) -> Value {
    json!({"call_id": call.id, "name": call.name, "tool": tool, "arguments": args})
}

fn tool_name(bundle: &str) -> String {
    format!("flow:{bundle}")
}

/// The model's arguments: a JSON object (an empty text is `{}`).
pub(super) fn parse_arguments(raw: &str) -> Result<Value, String> {
    if raw.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => Err(format!(
            "the arguments must be a JSON object, not {}",
            other.to_string().chars().take(80).collect::<String>()
        )),
        Err(e) => Err(format!("the arguments are not JSON: {e}")),
    }
}

/// Longest arguments (as shown) a call that needs approval may have: a person approves
/// exactly what runs, so they are shown whole, never cut.
const MAX_SHOWN_ARGS: usize = 2_000;

/// Arguments as a person reads them in a prompt: `a: 2, b: 3`.
fn show_args(args: &Value) -> String {
    match args {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// Who answered, for the model: the person (a channel's user id, else the credential)
/// and the channel.
fn who(a: &Actor) -> String {
    match (a.client_id.as_ref().or(a.principal.as_ref()), &a.channel) {
        _ if a.kind == "runner" => "the approval's timeout".into(),
        (Some(p), Some(c)) => format!("{p} via {c}"),
        (Some(p), None) => p.clone(),
        (None, Some(c)) => format!("someone via {c}"),
        (None, None) => "a person".into(),
    }
}
