//! The compiled form of a flow: a flat program of steps and jumps that the engine walks with
//! a program counter. Built only by `flows::parse`; read by the engine. No I/O here.

use std::time::Duration;

use protocol::EventScope;
use serde_json::Value;

/// A compiled template in the flow's template environment: its index, and whether it
/// builds a URL (then every value it substitutes is percent-encoded as a URL component,
/// unless marked `| safe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TplId {
    pub(crate) index: usize,
    pub(crate) url: bool,
}

impl TplId {
    pub(crate) fn name(self) -> String {
        if self.url {
            format!("{}{}", self.index, URL_TEMPLATE_SUFFIX)
        } else {
            self.index.to_string()
        }
    }
}

/// Names of URL templates end with this (see `flows::parse`'s formatter).
pub(crate) const URL_TEMPLATE_SUFFIX: &str = ".url";

/// A JSON value whose strings may be templates.
#[derive(Debug, Clone)]
pub(crate) enum ValueTpl {
    Lit(Value),
    /// A string rendered as text.
    Text(TplId),
    /// A string that is one `{{ expression }}`: evaluates to a native value (object, number…).
    Expr(TplId),
    Array(Vec<ValueTpl>),
    Object(Vec<(String, ValueTpl)>),
}

#[derive(Debug, Clone)]
pub(crate) struct AskStep {
    pub(crate) prompt: TplId,
    pub(crate) choices: Vec<String>,
    pub(crate) allow_free_text: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) default: Option<TplId>,
    /// Who may answer, and how many must agree (`approvers:` and what goes with it).
    pub(crate) team: Option<Team>,
}

/// A prompt for a team: approvers, quorum, reminders, escalation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Team {
    pub(crate) approvers: Vec<String>,
    pub(crate) quorum: u32,
    /// One vote for a choice other than the first ends the prompt at once.
    pub(crate) reject_on_any: bool,
    pub(crate) remind: Option<Duration>,
    pub(crate) remind_max: u32,
    pub(crate) escalate: Option<Escalation>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Escalation {
    pub(crate) after: Duration,
    /// Channel targets told of the prompt (`email:boss@example.com`, `telegram:<chat>`).
    pub(crate) notify: Vec<String>,
    /// Approvers added to the prompt.
    pub(crate) approvers: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct LlmStep {
    pub(crate) prompt: TplId,
    pub(crate) system: Option<TplId>,
    pub(crate) history: bool,
    pub(crate) model: Option<String>,
    pub(crate) temperature: Option<f64>,
    pub(crate) max_tokens: Option<u32>,
    /// The tools the model may call (`tools:`), if any.
    pub(crate) agent: Option<super::AgentSpec>,
}

#[derive(Debug, Clone)]
pub(crate) struct HttpStep {
    pub(crate) method: String,
    pub(crate) url: TplId,
    pub(crate) headers: Vec<(String, TplId)>,
    pub(crate) body: Option<ValueTpl>,
    pub(crate) timeout: Duration,
}

#[derive(Debug, Clone)]
pub(crate) enum WaitSpec {
    For(Duration),
    Until(TplId),
}

#[derive(Debug, Clone)]
pub(crate) enum StepKind {
    Say(TplId),
    Ask(AskStep),
    Llm(LlmStep),
    Wait(WaitSpec),
    WaitEvent {
        event: TplId,
        scope: EventScope,
    },
    Emit {
        event: TplId,
        scope: EventScope,
        payload: ValueTpl,
    },
    Set(Vec<(String, ValueTpl)>),
    Call {
        flow: String,
        input: ValueTpl,
    },
    Http(HttpStep),
    Output(ValueTpl),
}

impl StepKind {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Say(_) => "say",
            Self::Ask(_) => "ask",
            Self::Llm(_) => "llm",
            Self::Wait(_) => "wait",
            Self::WaitEvent { .. } => "wait_event",
            Self::Emit { .. } => "emit",
            Self::Set(_) => "set",
            Self::Call { .. } => "call",
            Self::Http(_) => "http",
            Self::Output(_) => "output",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Step {
    /// The step's id in the flow (`id:` or generated): the ledger's `node_id`.
    pub(crate) node: String,
    pub(crate) kind: StepKind,
    /// Extra attempts after a failed effect (llm, http).
    pub(crate) retries: u32,
}

/// One instruction of the compiled program.
#[derive(Debug, Clone)]
pub(crate) enum Instr {
    Step(Step),
    /// Jump to `target` unless the condition holds.
    JumpUnless {
        cond: TplId,
        target: usize,
    },
    Jump {
        target: usize,
    },
    /// Reset a loop's counter.
    LoopEnter {
        slot: usize,
    },
    /// Leave the loop (jump to `exit`) when `max` iterations ran or `cond` fails; else count one.
    LoopNext {
        slot: usize,
        max: u32,
        cond: Option<TplId>,
        exit: usize,
    },
}
