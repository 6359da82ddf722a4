//! The deterministic step interpreter.
//!
//! Given a flow, a run's state, a context (input, session history, the clock) and one input
//! (an answer, a timer, an event, an effect's result…), [`step`] computes the next state and
//! a [`Transition`]: the ledger records to append and what the run now waits for. The same
//! arguments always give the same transition.
//!
//! The engine performs no I/O: it never calls an LLM, the network, the clock or the store.
//! Effects are described (`Pending::Effect`) and performed by the runner, which feeds the
//! result back as [`Input::EffectDone`].

mod agent;
mod exec;
mod resume;
mod state;
mod team;
mod waits;

use chrono::{DateTime, Utc};
use protocol::{Actor, Effect, RecordStatus, RunStatus, Waiting};
use serde_json::Value;

pub(crate) use resume::match_choice;
pub(crate) use state::*;

/// Steps one call may execute without blocking before the run fails (loops are bounded,
/// but nested loops multiply).
pub(crate) const STEP_BUDGET: usize = 100_000;

/// Everything the engine may read besides the flow and the state.
#[derive(Debug, Clone)]
pub(crate) struct Ctx<'a> {
    pub(crate) run_id: &'a str,
    pub(crate) bundle_id: &'a str,
    pub(crate) session_id: Option<&'a str>,
    pub(crate) input: &'a Value,
    pub(crate) history: &'a [ChatMessage],
    pub(crate) now: DateTime<Utc>,
}

/// The session a run belongs to: its `session_id`, or (without one) a session of its own,
/// `run:<run_id>`. Its chat history and session-scoped events live under this key.
pub(crate) fn session_key(run_id: &str, session_id: Option<&str>) -> String {
    session_id.map_or_else(|| format!("run:{run_id}"), str::to_owned)
}

/// The key an event named `name` travels under, emitted (or awaited) by `run_id` in
/// `session_id` with `scope`: a waiting run wakes when the keys match. The engine and the
/// store's `emit_event` command both use it, so the two cannot drift.
pub(crate) fn event_key(
    scope: protocol::EventScope,
    name: &str,
    run_id: &str,
    session_id: Option<&str>,
) -> String {
    use protocol::EventScope;
    match scope {
        EventScope::Run => format!("run:{run_id}:{name}"),
        EventScope::Session => format!("session:{}:{name}", session_key(run_id, session_id)),
        EventScope::Global => format!("global:{name}"),
    }
}

/// What happened to the run since the engine last saw it.
#[derive(Debug, Clone)]
pub(crate) enum Input {
    /// Nothing new: continue from the program counter.
    Advance,
    Answer {
        wait_key: String,
        response: Value,
        actor: Actor,
    },
    /// A timer or an `ask` timeout is due (the engine checks against `ctx.now`).
    TimerDue,
    Event {
        wait_key: String,
        name: String,
        payload: Value,
        actor: Actor,
    },
    ChildDone {
        status: RunStatus,
        output: Option<Value>,
        error: Option<String>,
    },
    EffectDone {
        result: Result<Value, String>,
    },
}

/// A ledger record before the store gives it its `seq` and hashes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Draft {
    pub(crate) step_id: String,
    pub(crate) node_id: String,
    pub(crate) status: RecordStatus,
    pub(crate) effect: Option<Effect>,
    pub(crate) result: Option<Value>,
    pub(crate) error: Option<String>,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) ended_at: Option<DateTime<Utc>>,
    pub(crate) attempt: u32,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) actor: Actor,
}

/// A child run a `call` step starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChildSpec {
    pub(crate) run_id: String,
    pub(crate) bundle_id: String,
    pub(crate) input: Value,
}

/// An event an `emit` step sends: runs waiting on `key` wake up.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EmitSpec {
    pub(crate) key: String,
    pub(crate) name: String,
    pub(crate) payload: Value,
}

/// The outcome of one [`step`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Transition {
    pub(crate) records: Vec<Draft>,
    /// `running` (maybe with an effect to perform), `waiting`, `completed` or `failed`.
    pub(crate) status: Option<RunStatus>,
    pub(crate) waiting: Option<Waiting>,
    pub(crate) wake_at: Option<DateTime<Utc>>,
    /// The scoped event key a `wait_event` listens on.
    pub(crate) event_key: Option<String>,
    pub(crate) output: Option<Value>,
    pub(crate) error: Option<String>,
    pub(crate) spawn: Option<ChildSpec>,
    pub(crate) emits: Vec<EmitSpec>,
    /// Turns to append to the session's history.
    pub(crate) history: Vec<ChatMessage>,
    /// Channel targets to add to the run's `notify` (an escalation).
    pub(crate) notify: Vec<String>,
}

impl Transition {
    pub(crate) fn status(&self) -> RunStatus {
        self.status.unwrap_or(RunStatus::Running)
    }

    /// Ends the run as failed with `error`: its `run_failed` record, and no wait or timer
    /// left. The one way a run fails, whether a step failed in the engine or the runner
    /// could not drive it.
    pub(crate) fn fail_run(&mut self, error: String, now: DateTime<Utc>) {
        self.records.push(Draft {
            step_id: "run".into(),
            node_id: "end".into(),
            status: protocol::RecordStatus::Failed,
            effect: Some(protocol::Effect {
                kind: "run_failed".into(),
                payload: Value::Null,
            }),
            result: None,
            error: Some(error.clone()),
            started_at: now,
            ended_at: Some(now),
            attempt: 1,
            idempotency_key: None,
            actor: protocol::Actor::runner(),
        });
        self.status = Some(RunStatus::Failed);
        self.error = Some(error);
        self.waiting = None;
        self.wake_at = None;
    }
}

/// Why an input was refused; the state is unchanged.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub(crate) enum Reject {
    #[error("the run is not waiting on `{given}`; {current}")]
    StaleWaitKey { given: String, current: String },
    #[error("`{given}` is not one of the choices: {choices}")]
    NotAChoice { given: String, choices: String },
    #[error("the answer must be text (or a number for a choice)")]
    BadAnswer,
    #[error("nothing to resume: {0}")]
    Nothing(String),
    #[error("{0}")]
    NotApprover(String),
    #[error("{0}")]
    AlreadyVoted(String),
}

/// Applies `input` to `state` and runs the flow forward until it blocks or ends.
///
/// An effect's result is applied alone (the flow does not move on in the same call): an
/// effect can finish while its run is paused, and the runner moves the flow on only once
/// the run is not paused.
pub(crate) fn step(
    flow: &crate::flows::Flow,
    state: &mut RunState,
    ctx: &Ctx,
    input: Input,
) -> Result<Transition, Reject> {
    let mut t = Transition::default();
    let hold = matches!(input, Input::EffectDone { .. });
    let mut m = exec::Machine {
        flow,
        state,
        ctx,
        t: &mut t,
    };
    if m.resume(input)? && !hold {
        m.run();
    }
    Ok(t)
}

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests;
