//! Wire types of the integration surface: schedules, inbound triggers, outbound webhooks
//! and their delivery log. Plain data.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::RunStatus;

/// How a schedule's due times are planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ScheduleMode {
    /// Due times follow the plan, whatever the runs take (no drift).
    FixedRate,
    /// The next firing is the interval after the previous child run ended.
    FixedDelay,
}

/// `POST /api/gateway/runs/schedule`: AbstractGateway's fields plus `cron`, `timezone`,
/// `mode` and `share_context`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    pub bundle_id: String,
    #[serde(default)]
    pub input_data: Value,
    /// `now` (default) or an ISO 8601 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    /// `30s`, `15m`, `1h`, `2d`… (or give `cron`); at least 1 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// 5 fields: minute hour day-of-month month day-of-week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA time zone for `cron` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_until: Option<String>,
    /// `fixed_rate` (default for cron) or `fixed_delay` (default for interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Children share the schedule's session (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_context: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Vec<String>>,
}

/// A new schedule: its parent run and first due time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleCreated {
    pub run_id: String,
    pub status: RunStatus,
    pub next_fire_at: String,
}

/// A schedule's plan, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub mode: ScheduleMode,
    pub start_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_until: Option<String>,
}

/// How a schedule's last firing ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LastResult {
    pub run_id: String,
    #[serde(default)]
    pub status: Option<RunStatus>,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub error: Option<String>,
}

/// A schedule as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleInfo {
    /// The schedule's parent run (pause, resume, cancel and `update_schedule` act on it).
    pub run_id: String,
    pub bundle_id: String,
    pub status: RunStatus,
    pub spec: ScheduleSpec,
    pub fired: u32,
    #[serde(default)]
    pub next_fire_at: Option<String>,
    #[serde(default)]
    pub last_fired_at: Option<String>,
    pub share_context: bool,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub last_result: Option<LastResult>,
}

/// `GET /api/gateway/schedules`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleList {
    pub items: Vec<ScheduleInfo>,
    pub has_more: bool,
}

/// A trigger and how it is authorised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TriggerInfo {
    pub name: String,
    /// The flow it starts.
    pub flow: String,
    /// Whether it takes signed requests (it has a secret).
    pub signed: bool,
    pub path: String,
}

/// `GET /api/gateway/triggers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TriggerList {
    pub items: Vec<TriggerInfo>,
}

/// `POST /api/gateway/triggers/{name}`: the run a delivery started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TriggerFired {
    pub run_id: String,
    pub status: RunStatus,
    pub bundle_id: String,
    pub flow_hash: String,
    pub trigger: String,
    pub delivery_id: String,
}

/// `POST /api/gateway/webhooks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// Where events are posted (http or https; a private address needs
    /// `SWITCHBOARD_HTTP_ALLOW`).
    pub url: String,
    /// Some of `run.waiting`, `run.completed`, `run.failed`, `run.cancelled` (default all).
    #[serde(default)]
    pub events: Vec<String>,
    /// Flow ids to limit it to (default every flow).
    #[serde(default)]
    pub flows: Vec<String>,
}

/// A webhook subscription (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookInfo {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub flows: Vec<String>,
    pub created_at: String,
}

/// A new subscription, with its signing secret (shown this once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookCreated {
    #[serde(flatten)]
    pub webhook: WebhookInfo,
    pub secret: String,
}

/// `GET /api/gateway/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookList {
    pub items: Vec<WebhookInfo>,
}

/// `DELETE /api/gateway/webhooks/{id}`: its pending deliveries are cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookDeleted {
    pub deleted: String,
}

/// One event for one subscriber, and how its delivery went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    pub run_id: String,
    /// `pending`, `delivered`, `failed` or `cancelled`.
    pub status: String,
    pub attempts: u32,
    #[serde(default)]
    pub last_status: Option<u16>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    #[serde(default)]
    pub delivered_at: Option<String>,
}

/// `GET /api/gateway/webhooks/deliveries`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryList {
    pub items: Vec<Delivery>,
    pub has_more: bool,
}
