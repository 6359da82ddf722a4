//! Wire types of administration: who a token is, pairing, devices and API keys, token
//! rotation, the gateway-wide pause, flow versions, channel allowlists, health and
//! capabilities. Plain data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /api/gateway/whoami`: the principal a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhoAmI {
    /// The credential's id (a device's or key's id; `admin` for the admin token).
    pub id: String,
    /// `admin`, `device` or `key`.
    pub kind: String,
    pub name: String,
    /// `read`, `run`, `command`, `channel`, `admin`.
    pub scopes: Vec<String>,
}

/// `POST /api/gateway/pair`: trade a pairing code for a device token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PairRequest {
    pub code: String,
    /// What to call the device (default `device`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A new device: its token is shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Paired {
    pub device_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub token: String,
}

/// `POST /api/gateway/pair/codes`: a single-use pairing code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PairingCode {
    pub code: String,
    pub expires_at: String,
}

/// A device or API key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub id: String,
    /// `device` or `key` (or `admin`).
    pub kind: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    #[serde(default)]
    pub last_used_at: Option<String>,
    #[serde(default)]
    pub revoked_at: Option<String>,
}

/// `GET /api/gateway/devices`, `GET /api/gateway/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenList {
    pub items: Vec<TokenInfo>,
}

/// A revoked device or key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Revoked {
    pub revoked: TokenInfo,
}

/// `POST /api/gateway/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    pub name: String,
    /// Some of `read`, `run`, `command`, `channel`, `admin`.
    pub scopes: Vec<String>,
}

/// A new API key: its token is shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyCreated {
    pub key_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub token: String,
}

/// `POST /api/gateway/token/rotate`: the new admin token (the old one stopped working).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RotatedToken {
    pub token: String,
}

/// `POST /api/gateway/pause` and `/resume`: whether new runs are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GatewayPause {
    pub paused: bool,
}

/// A flow's version as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BundleVersion {
    pub bundle_id: String,
    pub bundle_version: String,
    pub flow_hash: String,
}

/// `POST /api/gateway/bundles/reload`: every current flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BundleVersions {
    pub items: Vec<BundleVersion>,
}

/// `PUT /api/gateway/channels/{channel}`: who a channel bridge may reach. A run's `notify`
/// targets on that channel (and its channel sessions) must be on this list unless the
/// starter has the `admin` or `channel` scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChannelAllowlist {
    /// Telegram: user or chat ids. Email: addresses, or `@domain` for a whole domain.
    pub allow: Vec<String>,
}

/// `GET /api/gateway/channels`: every published allowlist, by channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelList {
    pub channels: BTreeMap<String, Vec<String>>,
}

/// `DELETE /api/gateway/channels/{channel}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelRemoved {
    pub removed: bool,
}

/// The runner part of [`Health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunnerHealth {
    /// Whether this process runs the runner (not `serve --no-runner`).
    pub enabled: bool,
    pub active_runs: usize,
    #[serde(default)]
    pub lease_holder: Option<String>,
    #[serde(default)]
    pub lease_expires_at: Option<String>,
}

/// `GET /api/health` (no token needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok`.
    pub status: String,
    pub version: String,
    pub uptime_s: u64,
    pub runner: RunnerHealth,
    /// Open event streams.
    pub streams: usize,
    /// Gateway-wide pause: no new runs start.
    pub paused: bool,
}

/// Where the event streams are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamPaths {
    pub run: String,
    pub global: String,
}

/// What schedules can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleFeatures {
    pub interval: bool,
    pub cron: bool,
    pub timezones: bool,
    pub modes: Vec<String>,
}

/// What `llm` steps can call, and how MCP clients reach the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolFeatures {
    /// `mcp:<server>/<tool>` and `flow:<id>` in `tools:`.
    pub kinds: Vec<String>,
    /// The configured MCP servers, by name.
    pub mcp_servers: Vec<String>,
    /// MCP transports the gateway speaks as a client.
    pub mcp_transports: Vec<String>,
    /// Calls wait for a person's `allow`/`deny` when `approve:` covers them.
    pub approvals: bool,
    /// Where MCP clients call flows as tools (streamable HTTP).
    pub mcp_endpoint: String,
}

/// What this gateway offers beyond AbstractGateway's contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Features {
    pub command_status: bool,
    pub global_stream: bool,
    pub llm_deltas: bool,
    pub hash_chain: bool,
    pub schedules: ScheduleFeatures,
    pub pairing: bool,
    pub scoped_keys: bool,
    pub split_runner: bool,
    pub tools: ToolFeatures,
}

/// `GET /api/gateway/discovery/capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capabilities {
    pub contract_version: String,
    pub server: String,
    pub version: String,
    pub command_types: Vec<String>,
    pub step_types: Vec<String>,
    pub run_statuses: Vec<String>,
    pub event_scopes: Vec<String>,
    pub streams: StreamPaths,
    pub features: Features,
    pub channels: Vec<String>,
}
