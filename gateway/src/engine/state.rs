//! The engine's persistent state of a run (stored as JSON with the run row).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One turn of a session's conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChatMessage {
    pub(crate) role: String,
    pub(crate) content: String,
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
