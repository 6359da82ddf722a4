//! Wire types of the HTTP contract (paths and JSON shapes kept compatible with
//! AbstractGateway's client contract). Plain data: no I/O, no behaviour beyond helpers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the contract this crate speaks; reported by `/api/gateway/discovery/capabilities`.
pub const CONTRACT_VERSION: &str = "1";

/// Lifecycle of a run. `completed`, `failed` and `cancelled` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Waiting,
    Paused,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [RunStatus; 6] = [
        Self::Running,
        Self::Waiting,
        Self::Paused,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => Self::Running,
            "waiting" => Self::Waiting,
            "paused" => Self::Paused,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// What a run waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum WaitReason {
    /// A person's answer (an `ask`).
    User,
    /// A timer (`wait`).
    Until,
    /// An event (`wait_event`).
    Event,
    /// A child run (`call`).
    Subworkflow,
    /// A schedule's next firing (the parent run of a schedule).
    Schedule,
    /// A reason this client does not know (a newer gateway's).
    #[serde(other)]
    Other,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Until => "until",
            Self::Event => "event",
            Self::Subworkflow => "subworkflow",
            Self::Schedule => "schedule",
            Self::Other => "other",
        }
    }

    /// Whether a `resume` command with the wait's key answers it: a person's answer, or
    /// the awaited event delivered by hand. Timers, children and schedules resume on their own.
    pub fn takes_an_answer(self) -> bool {
        matches!(self, Self::User | Self::Event)
    }
}

/// Why a run waits, and how to answer it (`wait_key` goes into a `resume` command).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Waiting {
    pub reason: WaitReason,
    pub wait_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default)]
    pub choices: Vec<String>,
    #[serde(default)]
    pub allow_free_text: bool,
    /// When a timer (or an `ask` timeout) fires, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_run_id: Option<String>,
    /// The wait is a person's approval of a model's tool call (`allow`/`deny`). MCP clients
    /// cannot answer these: the model must not approve its own calls.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approval: bool,
    /// Who may answer (`person:alice`, `group:ops`, `telegram:111`, `email:@example.com`,
    /// `key:ci-bot`, `device:phone`, `admin`); empty: anyone with the `command` scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// Distinct approvers who must give the same choice (with `approvers`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quorum: u32,
    /// The votes so far (with `approvers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub votes: Vec<Vote>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Waiting {
    /// Whether a person answers it (an `ask`): what inboxes, buttons and mail show.
    pub fn is_for_a_person(&self) -> bool {
        self.reason == WaitReason::User
    }
}

/// `GET /api/gateway/runs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunSummary {
    pub run_id: String,
    pub bundle_id: String,
    pub flow_id: String,
    pub flow_hash: String,
    pub status: RunStatus,
    #[serde(default)]
    pub waiting: Option<Waiting>,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub parent_run_id: Option<String>,
    #[serde(default)]
    pub notify: Vec<String>,
    /// Per-run ledger length (the `seq` of its last record).
    pub ledger_len: u64,
    pub created_at: String,
    pub updated_at: String,
}

/// Page of `GET /api/gateway/runs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunList {
    pub items: Vec<RunSummary>,
    pub count: usize,
    pub offset: usize,
    pub has_more: bool,
}

/// The status of one ledger record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    Started,
    Completed,
    Waiting,
    Failed,
    Cancelled,
}

/// What a record did to or asked of the outside world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Effect {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub payload: Value,
}

/// Who caused a record: the runner, or the principal and channel that sent a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Actor {
    /// `runner` or `client`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Whose vote an answer to a prompt with approvers is (`person:alice`, or the one
    /// identity that matched: `telegram:111`, `key:ci-bot`…); set by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voter: Option<String>,
}

impl Actor {
    pub fn runner() -> Self {
        Self {
            kind: "runner".into(),
            principal: None,
            client_id: None,
            channel: None,
            voter: None,
        }
    }
}

/// One vote on a prompt with approvers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Vote {
    pub voter: String,
    pub choice: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// One append-only ledger record. `seq` counts from 1 per run; `prev_hash`/`record_hash`
/// chain the records of a run so that tampering is detectable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerRecord {
    pub seq: u64,
    pub run_id: String,
    pub step_id: String,
    pub node_id: String,
    pub status: RecordStatus,
    #[serde(default)]
    pub effect: Option<Effect>,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub error: Option<String>,
    pub started_at: String,
    #[serde(default)]
    pub ended_at: Option<String>,
    pub attempt: u32,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    pub actor: Actor,
    pub prev_hash: String,
    pub record_hash: String,
}

impl LedgerRecord {
    /// The effect type, or "" when the record has none.
    pub fn effect_kind(&self) -> &str {
        self.effect.as_ref().map(|e| e.kind.as_str()).unwrap_or("")
    }

    /// The effect's payload, or `null` when the record has none.
    pub fn effect_payload(&self) -> &Value {
        const NULL: &Value = &Value::Null;
        self.effect.as_ref().map_or(NULL, |e| &e.payload)
    }

    /// How the run ended, for the record that ends it (`run_completed`, `run_failed`,
    /// `run_cancelled`); `None` for any other record.
    pub fn run_end(&self) -> Option<RunStatus> {
        match self.effect_kind() {
            "run_completed" => Some(RunStatus::Completed),
            "run_failed" => Some(RunStatus::Failed),
            "run_cancelled" => Some(RunStatus::Cancelled),
            _ => None,
        }
    }

    /// The question an `ask` record poses; `None` for any other record. What a gateway
    /// left out means what it would have: the step id is the wait key, and an answer is
    /// free text when there are no choices.
    pub fn question(&self) -> Option<Question> {
        if self.effect_kind() != "ask" {
            return None;
        }
        let p = self.effect_payload();
        let choices: Vec<String> = p["choices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect();
        Some(Question {
            wait_key: p["wait_key"].as_str().unwrap_or(&self.step_id).to_owned(),
            prompt: p["prompt"].as_str().map(str::to_owned),
            allow_free_text: p["allow_free_text"].as_bool().unwrap_or(choices.is_empty()),
            choices,
        })
    }
}

/// What an `ask` record asks (its effect's payload, read by [`LedgerRecord::question`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// Goes into the `resume` command that answers it.
    pub wait_key: String,
    pub prompt: Option<String>,
    /// The answers offered (empty: free text).
    pub choices: Vec<String>,
    /// Whether an answer outside `choices` is taken.
    pub allow_free_text: bool,
}

/// `GET /api/gateway/runs/{id}/ledger`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerPage {
    pub items: Vec<LedgerRecord>,
    /// Pass as `after` to get the next page; never beyond the ledger's end.
    pub next_after: u64,
}

/// `POST /api/gateway/runs/start`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartRunRequest {
    pub bundle_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    #[serde(default)]
    pub input_data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Channels to show the run on, e.g. `telegram:<chat_id>` or `email:alice@example.test`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StartRunResponse {
    pub run_id: String,
    pub status: RunStatus,
    pub bundle_id: String,
    pub flow_hash: String,
    #[serde(default)]
    pub session_id: Option<String>,
}

/// `POST /api/gateway/commands`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    pub command_id: String,
    pub run_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The channel a human used (`telegram`, `email`, `web`, `tray`, `cli`…), for the ledger's actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommandResponse {
    pub accepted: bool,
    pub duplicate: bool,
    pub seq: u64,
}

/// `GET /api/gateway/commands/{command_id}`: a command's fate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommandStatus {
    pub command_id: String,
    pub run_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub payload: Value,
    pub seq: u64,
    /// `pending`, `applied` or `rejected`.
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// What an applied command did (e.g. `{"delivered": 2}` for `emit_event`).
    #[serde(default)]
    pub result: Option<Value>,
    pub created_at: String,
    #[serde(default)]
    pub applied_at: Option<String>,
}

/// `POST /api/gateway/runs/ledger/batch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchRequest {
    #[serde(default)]
    pub limit: Option<u32>,
    pub runs: Vec<BatchRun>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchRun {
    pub run_id: String,
    #[serde(default)]
    pub after: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchResponse {
    pub runs: std::collections::BTreeMap<String, LedgerPage>,
}

/// `GET /api/gateway/bundles`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BundleList {
    pub items: Vec<Bundle>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bundle {
    pub bundle_id: String,
    pub bundle_version: String,
    pub name: String,
    pub description: String,
    pub flow_hash: String,
    pub entrypoints: Vec<Entrypoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Entrypoint {
    pub flow_id: String,
    pub name: String,
    #[serde(default)]
    pub input_schema: Value,
}

/// The JSON error body of every non-2xx answer: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// Set on 5xx answers: the id under which the server logged the details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `data:` of an `event: step` on the per-run and global streams.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepEvent {
    /// Per-run `seq` on a run stream; the global cursor on the global stream.
    pub cursor: u64,
    pub record: LedgerRecord,
}

/// `data:` of an `event: llm.delta` (not stored; no `id:`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LlmDelta {
    pub run_id: String,
    pub step_id: String,
    pub delta: String,
}

/// `GET /api/gateway/ledger/head`: the newest global cursor (stream after it to see only
/// what happens from now on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerHead {
    pub cursor: u64,
}

/// `GET /api/gateway/runs/{id}/input_data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunInput {
    pub run_id: String,
    pub input_data: Value,
}

/// The flow a run is pinned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlowSource {
    pub bundle_id: String,
    pub flow_hash: String,
    /// The YAML, when this gateway still has that version.
    #[serde(default)]
    pub source: Option<String>,
}

/// `GET /api/gateway/runs/{id}/history_bundle`: a run with everything needed to read it
/// offline, bounded (10,000 records or 16 MiB, and 1,000 children; the flags say when it
/// stopped short, and `ledger_next_after` where to page on with `/ledger?after=`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryBundle {
    pub run: RunSummary,
    pub input_data: Value,
    pub flow: FlowSource,
    pub ledger: Vec<LedgerRecord>,
    pub ledger_truncated: bool,
    pub ledger_next_after: u64,
    pub children: Vec<RunSummary>,
    pub children_truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(kind: &str, payload: Value) -> LedgerRecord {
        serde_json::from_value(json!({
            "seq": 3, "run_id": "r", "step_id": "q.1", "node_id": "q", "status": "waiting",
            "effect": {"type": kind, "payload": payload},
            "started_at": "2026-11-30T00:00:00Z", "attempt": 1, "actor": {"kind": "runner"},
            "prev_hash": "", "record_hash": ""
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_ask_record_reads_as_its_question() {
        let r = record(
            "ask",
            json!({"wait_key": "q.1", "prompt": "Ship?", "choices": ["yes", "no"], "allow_free_text": false}),
        );
        let q = Question {
            wait_key: "q.1".into(),
            prompt: Some("Ship?".into()),
            choices: vec!["yes".into(), "no".into()],
            allow_free_text: false,
        };
        assert_eq!(r.question(), Some(q));
    }

    #[test]
    fn what_a_gateway_left_out_means_what_it_would_have() {
        let q = record("ask", json!({})).question();
        let expected = Question {
            wait_key: "q.1".into(),
            prompt: None,
            choices: Vec::new(),
            allow_free_text: true,
        };
        assert_eq!(q, Some(expected));
        assert_eq!(record("say", json!({"text": "hi"})).question(), None);
    }

    #[test]
    fn the_records_that_end_a_run_say_how() {
        let end = |kind: &str| record(kind, json!({})).run_end();
        assert_eq!(end("run_completed"), Some(RunStatus::Completed));
        assert_eq!(end("run_failed"), Some(RunStatus::Failed));
        assert_eq!(end("run_cancelled"), Some(RunStatus::Cancelled));
        assert_eq!(end("run_started"), None);
    }
}
