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

mod exec;
mod resume;
mod state;

use chrono::{DateTime, Utc};
use protocol::{Actor, Effect, RecordStatus, RunStatus, Waiting};
use serde_json::Value;

pub use resume::match_choice;
pub use state::*;

/// Steps one call may execute without blocking before the run fails (loops are bounded,
/// but nested loops multiply).
pub const STEP_BUDGET: usize = 100_000;

/// Everything the engine may read besides the flow and the state.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    pub run_id: &'a str,
    pub bundle_id: &'a str,
    pub session_id: Option<&'a str>,
    pub input: &'a Value,
    pub history: &'a [ChatMessage],
    pub now: DateTime<Utc>,
}

impl Ctx<'_> {
    /// The session an event of scope `session` travels in (the run itself when it has none).
    pub fn session_key(&self) -> String {
        self.session_id
            .map_or_else(|| format!("run:{}", self.run_id), str::to_owned)
    }
}

/// What happened to the run since the engine last saw it.
#[derive(Debug, Clone)]
pub enum Input {
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
pub struct Draft {
    pub step_id: String,
    pub node_id: String,
    pub status: RecordStatus,
    pub effect: Option<Effect>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub attempt: u32,
    pub idempotency_key: Option<String>,
    pub actor: Actor,
}

/// A child run a `call` step starts.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildSpec {
    pub run_id: String,
    pub bundle_id: String,
    pub input: Value,
}

/// An event an `emit` step sends: runs waiting on `key` wake up.
#[derive(Debug, Clone, PartialEq)]
pub struct EmitSpec {
    pub key: String,
    pub name: String,
    pub payload: Value,
}

/// The outcome of one [`step`].
#[derive(Debug, Clone, Default)]
pub struct Transition {
    pub records: Vec<Draft>,
    /// `running` (maybe with an effect to perform), `waiting`, `completed` or `failed`.
    pub status: Option<RunStatus>,
    pub waiting: Option<Waiting>,
    pub wake_at: Option<DateTime<Utc>>,
    /// The scoped event key a `wait_event` listens on.
    pub event_key: Option<String>,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub spawn: Option<ChildSpec>,
    pub emits: Vec<EmitSpec>,
    /// Turns to append to the session's history.
    pub history: Vec<ChatMessage>,
}

impl Transition {
    pub fn status(&self) -> RunStatus {
        self.status.unwrap_or(RunStatus::Running)
    }
}

/// Why an input was refused; the state is unchanged.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum Reject {
    #[error("the run is not waiting on `{given}`; {current}")]
    StaleWaitKey { given: String, current: String },
    #[error("`{given}` is not one of the choices: {choices}")]
    NotAChoice { given: String, choices: String },
    #[error("the answer must be text (or a number for a choice)")]
    BadAnswer,
    #[error("nothing to resume: {0}")]
    Nothing(String),
}

/// Applies `input` to `state` and runs the flow forward until it blocks or ends.
///
/// An effect's result is applied alone (the flow does not move on in the same call): an
/// effect can finish while its run is paused, and the runner moves the flow on only once
/// the run is not paused.
pub fn step(
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
