//! The engine's persistent state of a run (stored as JSON with the run row).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One message of a conversation, in OpenAI's chat format: a session's turns (`user`,
/// `assistant`), and within an `llm` step with tools also the model's tool calls and the
/// `tool` messages that answer them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChatMessage {
    pub(crate) role: String,
    #[serde(default)]
    pub(crate) content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) tool_calls: Vec<WireCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tool_call_id: Option<String>,
}

impl ChatMessage {
    pub(crate) fn text(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool call as the OpenAI format writes it in an assistant message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireCall {
    pub(crate) id: String,
    #[serde(rename = "type", default = "function_type")]
    pub(crate) kind: String,
    pub(crate) function: WireFunction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireFunction {
    pub(crate) name: String,
    pub(crate) arguments: String,
}

fn function_type() -> String {
    "function".into()
}

/// A tool call of the model, as the runner recorded it: the function name it called, the
/// tool that name stands for (`mcp:calc/add`, `flow:lookup`; `None` when it named none of
/// the step's tools) and its arguments as the model wrote them (JSON text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ToolCall {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) tool: Option<String>,
    #[serde(default)]
    pub(crate) arguments: String,
}

/// An `llm` step with tools between its turns: the conversation so far and the calls of
/// the current round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Agent {
    /// The step's ledger id (`think.1`); turns and calls are numbered under it.
    pub(crate) step_id: String,
    pub(crate) node: String,
    /// The current round (1 for the first LLM turn).
    pub(crate) round: u32,
    pub(crate) messages: Vec<ChatMessage>,
    pub(crate) calls: Vec<ToolCall>,
    /// Calls of this round answered so far.
    pub(crate) done: usize,
    /// A person allowed the current call.
    #[serde(default)]
    pub(crate) approved: bool,
    /// The prompt to append to the session's history with the final answer.
    #[serde(default)]
    pub(crate) remember: Option<String>,
}

/// Where a run is in its flow and what it has computed so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunState {
    pub(crate) pc: usize,
    #[serde(default)]
    pub(crate) vars: Map<String, Value>,
    /// Each step's result by step id (`steps.<id>` in templates).
    #[serde(default)]
    pub(crate) steps: Map<String, Value>,
    #[serde(default)]
    pub(crate) loops: Vec<u32>,
    /// Executions per step id, which numbers ledger step ids (`ask_1.1`, `ask_1.2`…).
    #[serde(default)]
    pub(crate) visits: BTreeMap<String, u32>,
    #[serde(default)]
    pub(crate) output: Option<Value>,
    #[serde(default)]
    pub(crate) pending: Option<Pending>,
    /// The tool loop of the `llm` step at `pc`, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) agent: Option<Agent>,
}

/// What a blocked run waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Pending {
    Ask {
        step_id: String,
        node: String,
        prompt: String,
        choices: Vec<String>,
        allow_free_text: bool,
        #[serde(default)]
        deadline: Option<chrono::DateTime<chrono::Utc>>,
        #[serde(default)]
        default: Option<String>,
        /// An approval of a tool call (`{call_id, tool, name, arguments}`), not a flow's `ask`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool: Option<Value>,
        /// A prompt for a team: who may answer, the votes, reminders and escalation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        team: Option<TeamState>,
    },
    Timer {
        step_id: String,
        node: String,
        until: chrono::DateTime<chrono::Utc>,
    },
    Event {
        step_id: String,
        node: String,
        event: String,
        key: String,
    },
    Child {
        step_id: String,
        node: String,
        child_run_id: String,
        /// The child answers a tool call (`flow:` tool) rather than a `call` step.
        #[serde(default)]
        tool: bool,
    },
    Effect {
        step_id: String,
        node: String,
        attempt: u32,
        retries: u32,
        idempotency_key: String,
        request: EffectRequest,
    },
}

impl Pending {
    /// The key a `resume` must name (the ledger step id of the wait).
    pub(crate) fn wait_key(&self) -> &str {
        match self {
            Self::Ask { step_id, .. }
            | Self::Timer { step_id, .. }
            | Self::Event { step_id, .. }
            | Self::Child { step_id, .. }
            | Self::Effect { step_id, .. } => step_id,
        }
    }
}

/// The votes and timers of a prompt with approvers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TeamState {
    pub(crate) approvers: Vec<String>,
    pub(crate) quorum: u32,
    #[serde(default)]
    pub(crate) reject_on_any: bool,
    #[serde(default)]
    pub(crate) votes: Vec<protocol::Vote>,
    /// Milliseconds between reminders, if any.
    #[serde(default)]
    pub(crate) remind_every_ms: Option<u64>,
    #[serde(default)]
    pub(crate) reminders: u32,
    #[serde(default)]
    pub(crate) remind_max: u32,
    #[serde(default)]
    pub(crate) next_remind: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub(crate) escalate_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub(crate) escalate_notify: Vec<String>,
    #[serde(default)]
    pub(crate) escalate_approvers: Vec<String>,
}

impl TeamState {
    /// The next instant a reminder or the escalation is due.
    pub(crate) fn next_due(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        match (self.next_remind, self.escalate_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// An effect the runner performs (its result comes back as `Input::EffectDone`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum EffectRequest {
    Llm {
        messages: Vec<ChatMessage>,
        #[serde(default)]
        model: Option<String>,
        #[serde(default)]
        temperature: Option<f64>,
        #[serde(default)]
        max_tokens: Option<u32>,
        /// The prompt of this turn, appended to the session with the reply.
        #[serde(default)]
        remember: Option<String>,
        /// The tools the model may call (`tools:` of the step, as written).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tools: Vec<String>,
    },
    /// A call of an MCP tool.
    Tool {
        /// `mcp:<server>/<tool>`.
        tool: String,
        /// The function name the model called it by.
        name: String,
        arguments: Value,
        call_id: String,
    },
    Http {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        #[serde(default)]
        body: Option<Value>,
        timeout_ms: u64,
    },
}
