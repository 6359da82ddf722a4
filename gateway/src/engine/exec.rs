//! Walking the program: executes instructions from the program counter until the run blocks
//! (an ask, a timer, an event, a child run, an effect) or ends.

use chrono::{DateTime, Utc};
use protocol::{Actor, Effect, RecordStatus, RunStatus};
use serde_json::{Value, json};

use super::waits::{describe_wait, ids};
use super::{
    ChildSpec, Ctx, Draft, EffectRequest, EmitSpec, Pending, RunState, STEP_BUDGET, Transition,
};
use crate::flows::{Flow, Instr, Step, StepKind, WaitSpec};

pub(super) struct Machine<'a> {
    pub(crate) flow: &'a Flow,
    pub(crate) state: &'a mut RunState,
    pub(crate) ctx: &'a Ctx<'a>,
    pub(crate) t: &'a mut Transition,
}

/// A step that could not run; the run fails with this message.
pub(super) struct StepFailure(pub String);

impl From<crate::flows::RenderError> for StepFailure {
    fn from(e: crate::flows::RenderError) -> Self {
        Self(e.0)
    }
}

impl Machine<'_> {
    pub(crate) fn template_ctx(&self) -> minijinja::Value {
        let run = json!({
            "run_id": self.ctx.run_id,
            "session_id": self.ctx.session_id,
            "bundle_id": self.ctx.bundle_id,
        });
        minijinja::Value::from_serialize(json!({
            "input": self.ctx.input,
            "vars": self.state.vars,
            "steps": self.state.steps,
            "history": self.ctx.history,
            "run": run,
        }))
    }

    pub(crate) fn draft(
        &self,
        step_id: &str,
        node: &str,
        status: RecordStatus,
        effect: Option<(&str, Value)>,
    ) -> Draft {
        let now = self.ctx.now;
        Draft {
            step_id: step_id.to_owned(),
            node_id: node.to_owned(),
            status,
            effect: effect.map(|(k, p)| Effect {
                kind: k.to_owned(),
                payload: p,
            }),
            result: None,
            error: None,
            started_at: now,
            ended_at: (status != RecordStatus::Started && status != RecordStatus::Waiting)
                .then_some(now),
            attempt: 1,
            idempotency_key: None,
            actor: Actor::runner(),
        }
    }

    /// Runs until blocked or finished.
    pub(crate) fn run(&mut self) {
        for _ in 0..STEP_BUDGET {
            let Some(instr) = self.flow.program.get(self.state.pc) else {
                self.finish();
                return;
            };
            match self.exec(instr.clone()) {
                Ok(true) => continue,
                Ok(false) => return,
                Err((node, StepFailure(msg))) => {
                    self.fail(&node, msg);
                    return;
                }
            }
        }
        self.fail(
            "run",
            format!("more than {STEP_BUDGET} steps ran without waiting; check the flow's loops"),
        );
    }

    /// Executes one instruction; `Ok(false)` when the run blocked.
    fn exec(&mut self, instr: Instr) -> Result<bool, (String, StepFailure)> {
        let cond = |m: &Self, id| {
            m.flow
                .test(id, &m.template_ctx())
                .map_err(|e| ("run".to_owned(), e.into()))
        };
        match instr {
            Instr::Jump { target } => self.state.pc = target,
            Instr::JumpUnless { cond: c, target } => {
                self.state.pc = if cond(self, c)? {
                    self.state.pc + 1
                } else {
                    target
                };
            }
            Instr::LoopEnter { slot } => {
                self.set_loop(slot, 0);
                self.state.pc += 1;
            }
            Instr::LoopNext {
                slot,
                max,
                cond: c,
                exit,
            } => {
                let n = self.state.loops.get(slot).copied().unwrap_or(0);
                let go_on = n < max
                    && match c {
                        Some(c) => cond(self, c)?,
                        None => true,
                    };
                if go_on {
                    self.set_loop(slot, n + 1);
                    self.state.pc += 1;
                } else {
                    self.state.pc = exit;
                }
            }
            Instr::Step(step) => {
                let node = step.node.clone();
                return self.exec_step(step).map_err(|e| (node, e));
            }
        }
        Ok(true)
    }

    fn set_loop(&mut self, slot: usize, v: u32) {
        if self.state.loops.len() <= slot {
            self.state.loops.resize(slot + 1, 0);
        }
        self.state.loops[slot] = v;
    }

    fn next_step_id(&mut self, node: &str) -> String {
        let n = self.state.visits.entry(node.to_owned()).or_insert(0);
        *n += 1;
        format!("{node}.{n}")
    }

    fn exec_step(&mut self, step: Step) -> Result<bool, StepFailure> {
        let cx = self.template_ctx();
        let node = step.node.as_str();
        let step_id = self.next_step_id(node);
        match &step.kind {
            StepKind::Llm(_) | StepKind::Http(_) => {
                let request = self.effect_request(&step.kind, &cx)?;
                if let EffectRequest::Llm {
                    messages,
                    remember,
                    tools,
                    ..
                } = &request
                    && !tools.is_empty()
                {
                    self.state.agent = Some(super::Agent {
                        step_id: step_id.clone(),
                        node: node.to_owned(),
                        round: 1,
                        messages: messages.clone(),
                        calls: Vec::new(),
                        done: 0,
                        approved: false,
                        remember: remember.clone(),
                    });
                }
                self.start_effect(step_id, node, 1, step.retries, request);
                Ok(false)
            }
            StepKind::Ask(_)
            | StepKind::Wait(_)
            | StepKind::WaitEvent { .. }
            | StepKind::Call { .. } => self.waiting_step(&step.kind, step_id, node, &cx),
            _ => {
                self.immediate_step(&step.kind, &step_id, node, &cx)?;
                self.state.pc += 1;
                Ok(true)
            }
        }
    }

    /// `say`, `set`, `output`, `emit`: done at once.
    fn immediate_step(
        &mut self,
        kind: &StepKind,
        step_id: &str,
        node: &str,
        cx: &minijinja::Value,
    ) -> Result<(), StepFailure> {
        let f = self.flow;
        let step_id = step_id.to_owned();
        match kind {
            StepKind::Say(tpl) => {
                let text = f.render(*tpl, cx)?;
                self.complete(
                    &step_id,
                    node,
                    "say",
                    json!({"text": text}),
                    json!({"text": text}),
                );
            }
            StepKind::Set(vars) => {
                let mut values = serde_json::Map::new();
                for (k, v) in vars {
                    let val = f.eval(v, cx)?;
                    self.state.vars.insert(k.clone(), val.clone());
                    values.insert(k.clone(), val);
                }
                let values = Value::Object(values);
                self.complete(&step_id, node, "set", values.clone(), values);
            }
            StepKind::Output(v) => {
                let out = f.eval(v, cx)?;
                self.state.output = Some(out.clone());
                self.complete(&step_id, node, "output", out.clone(), out);
            }
            StepKind::Emit {
                event,
                scope,
                payload,
            } => {
                let name = f.render(*event, cx)?;
                let payload = f.eval(payload, cx)?;
                let key = self.event_key(*scope, &name);
                let p = json!({"name": name, "scope": scope.as_str(), "payload": payload});
                self.complete(&step_id, node, "emit", p, json!({"name": name}));
                self.t.emits.push(EmitSpec { key, name, payload });
            }
            other => {
                return Err(StepFailure(format!(
                    "`{}` is not an immediate step",
                    other.name()
                )));
            }
        }
        Ok(())
    }

    /// `ask`, `wait`, `wait_event`, `call`: block the run (a `wait` already due goes on).
    fn waiting_step(
        &mut self,
        kind: &StepKind,
        step_id: String,
        node: &str,
        cx: &minijinja::Value,
    ) -> Result<bool, StepFailure> {
        let f = self.flow;
        match kind {
            StepKind::Ask(ask) => {
                let prompt = f.render(ask.prompt, cx)?;
                let default = ask.default.map(|d| f.render(d, cx)).transpose()?;
                let deadline = ask.timeout.map(|t| self.ctx.now + t);
                let team = ask
                    .team
                    .as_ref()
                    .map(|t| super::team::start(t, self.ctx.now));
                let pending = Pending::Ask {
                    step_id: step_id.clone(),
                    node: node.to_owned(),
                    prompt,
                    choices: ask.choices.clone(),
                    allow_free_text: ask.allow_free_text,
                    deadline,
                    default,
                    tool: None,
                    team,
                };
                self.block(pending);
                return Ok(false);
            }
            StepKind::Wait(spec) => {
                let until = match spec {
                    WaitSpec::For(d) => self.ctx.now + *d,
                    WaitSpec::Until(tpl) => parse_time(&f.render(*tpl, cx)?)?,
                };
                if until <= self.ctx.now {
                    self.complete(
                        &step_id,
                        node,
                        "wait",
                        json!({"until": super::ts(until)}),
                        json!({"until": super::ts(until)}),
                    );
                } else {
                    self.block(Pending::Timer {
                        step_id,
                        node: node.to_owned(),
                        until,
                    });
                    return Ok(false);
                }
            }
            StepKind::WaitEvent { event, scope } => {
                let name = f.render(*event, cx)?;
                let key = self.event_key(*scope, &name);
                self.block(Pending::Event {
                    step_id,
                    node: node.to_owned(),
                    event: name,
                    key,
                });
                return Ok(false);
            }
            StepKind::Call { flow, input } => {
                let input = f.eval(input, cx)?;
                let name = format!("{}/{step_id}", self.ctx.run_id);
                let child =
                    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string();
                self.t.spawn = Some(ChildSpec {
                    run_id: child.clone(),
                    bundle_id: flow.clone(),
                    input,
                });
                self.block(Pending::Child {
                    step_id,
                    node: node.to_owned(),
                    child_run_id: child,
                    tool: false,
                });
                return Ok(false);
            }
            other => return Err(StepFailure(format!("`{}` does not wait", other.name()))),
        }
        self.state.pc += 1;
        Ok(true)
    }

    /// The request an `llm` or `http` step sends, rendered from the run's context.
    fn effect_request(
        &self,
        kind: &StepKind,
        cx: &minijinja::Value,
    ) -> Result<EffectRequest, StepFailure> {
        let f = self.flow;
        match kind {
            StepKind::Llm(llm) => {
                let prompt = f.render(llm.prompt, cx)?;
                let mut messages = Vec::new();
                if let Some(s) = llm.system {
                    messages.push(super::ChatMessage::text("system", f.render(s, cx)?));
                }
                if llm.history {
                    messages.extend(self.ctx.history.iter().cloned());
                }
                messages.push(super::ChatMessage::text("user", prompt.clone()));
                Ok(EffectRequest::Llm {
                    messages,
                    model: llm.model.clone(),
                    temperature: llm.temperature,
                    max_tokens: llm.max_tokens,
                    remember: llm.history.then_some(prompt),
                    tools: llm
                        .agent
                        .iter()
                        .flat_map(|a| a.tools.iter().map(ToString::to_string))
                        .collect(),
                })
            }
            StepKind::Http(h) => Ok(EffectRequest::Http {
                method: h.method.clone(),
                url: f.render(h.url, cx)?,
                headers: h
                    .headers
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), f.render(*v, cx)?)))
                    .collect::<Result<Vec<_>, StepFailure>>()?,
                body: h.body.as_ref().map(|b| f.eval(b, cx)).transpose()?,
                timeout_ms: h.timeout.as_millis() as u64,
            }),
            other => Err(StepFailure(format!("`{}` is not an effect", other.name()))),
        }
    }

    pub(crate) fn event_key(&self, scope: protocol::EventScope, name: &str) -> String {
        super::event_key(scope, name, self.ctx.run_id, self.ctx.session_id)
    }

    /// Records a step that finished at once and stores its result under `steps.<node>`.
    pub(crate) fn complete(
        &mut self,
        step_id: &str,
        node: &str,
        kind: &str,
        payload: Value,
        result: Value,
    ) {
        let mut d = self.draft(
            step_id,
            node,
            RecordStatus::Completed,
            Some((kind, payload)),
        );
        d.result = Some(result.clone());
        self.t.records.push(d);
        self.state.steps.insert(node.to_owned(), result);
    }

    /// Records that the run now waits, and what for.
    pub(crate) fn block(&mut self, pending: Pending) {
        let (kind, payload, waiting) = describe_wait(&pending);
        let (step_id, node) = ids(&pending);
        let rec = self.draft(
            &step_id,
            &node,
            RecordStatus::Waiting,
            Some((kind, payload)),
        );
        self.t.records.push(rec);
        self.t.wake_at = super::waits::wake_at(&pending);
        if let Pending::Event { key, .. } = &pending {
            self.t.event_key = Some(key.clone());
        }
        self.t.status = Some(RunStatus::Waiting);
        self.t.waiting = Some(waiting);
        self.state.pending = Some(pending);
    }

    /// Records an effect's `started` (with its idempotency key) and leaves it to the runner.
    pub(crate) fn start_effect(
        &mut self,
        step_id: String,
        node: &str,
        attempt: u32,
        retries: u32,
        request: EffectRequest,
    ) {
        // A tool call keeps one key across attempts: a call retried after a timeout may
        // have run already, and the server can tell it is the same call.
        let key = match &request {
            EffectRequest::Tool { .. } => format!("{}:{step_id}", self.ctx.run_id),
            _ => format!("{}:{step_id}:{attempt}", self.ctx.run_id),
        };
        let (kind, payload) = match &request {
            EffectRequest::Llm {
                messages,
                model,
                tools,
                ..
            } if tools.is_empty() => ("llm", json!({"messages": messages, "model": model})),
            EffectRequest::Llm {
                messages,
                model,
                tools,
                ..
            } => (
                "llm",
                json!({"messages": messages, "model": model, "tools": tools}),
            ),
            EffectRequest::Tool {
                tool,
                name,
                arguments,
                call_id,
            } => (
                "tool",
                json!({"call_id": call_id, "name": name, "tool": tool, "arguments": arguments}),
            ),
            EffectRequest::Http {
                method,
                url,
                headers,
                body,
                ..
            } => {
                let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
                (
                    "http",
                    json!({"method": method, "url": url, "headers": names, "body": body}),
                )
            }
        };
        let mut rec = self.draft(&step_id, node, RecordStatus::Started, Some((kind, payload)));
        rec.attempt = attempt;
        rec.idempotency_key = Some(key.clone());
        self.t.records.push(rec);
        self.t.status = Some(RunStatus::Running);
        self.state.pending = Some(Pending::Effect {
            step_id,
            node: node.to_owned(),
            attempt,
            retries,
            idempotency_key: key,
            request,
        });
    }

    fn finish(&mut self) {
        let out = self.state.output.clone().unwrap_or(Value::Null);
        let mut d = self.draft(
            "run",
            "end",
            RecordStatus::Completed,
            Some(("run_completed", Value::Null)),
        );
        d.result = Some(out.clone());
        self.t.records.push(d);
        self.t.status = Some(RunStatus::Completed);
        self.t.output = Some(out);
        self.t.waiting = None;
        self.t.wake_at = None;
    }

    /// Fails the step `node` and the run.
    pub(crate) fn fail(&mut self, node: &str, msg: String) {
        let step_id = match self.state.visits.get(node) {
            Some(n) => format!("{node}.{n}"),
            None => node.to_owned(),
        };
        let mut d = self.draft(&step_id, node, RecordStatus::Failed, None);
        d.error = Some(msg.clone());
        self.t.records.push(d);
        self.t
            .fail_run(format!("step `{node}` failed: {msg}"), self.ctx.now);
        self.state.pending = None;
        self.state.agent = None;
    }
}

/// `t` rounded up to a whole millisecond. The store keeps `wake_at` as text with
/// milliseconds and the timer loop compares it with the clock truncated to milliseconds; a
/// `wake_at` truncated below the true instant looked due up to a millisecond before the
/// engine agreed, and the timer loop then slept until its next timer (up to a minute).
pub(crate) fn ceil_ms(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    match t.timestamp_subsec_nanos() % 1_000_000 {
        0 => t,
        sub => t + chrono::Duration::nanoseconds(i64::from(1_000_000 - sub)),
    }
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, StepFailure> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StepFailure(format!("wait until `{s}` is not an RFC 3339 time: {e}")))
}
