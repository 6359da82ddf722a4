//! Web Push: what a browser sends to subscribe (the shape of `PushSubscription.toJSON()`),
//! the gateway's VAPID public key, and the notification each subscription receives
//! (encrypted end to end: only the browser reads it).

use serde::{Deserialize, Serialize};

/// The browser's keys for one subscription, base64url without padding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PushKeys {
    /// The browser's P-256 public key (65 bytes, uncompressed).
    pub p256dh: String,
    /// The shared authentication secret (16 bytes).
    pub auth: String,
}

/// `POST /api/gateway/push/subscriptions`: a browser's `PushSubscription` as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PushSubscriptionRequest {
    /// The push service URL the browser was given (https).
    pub endpoint: String,
    pub keys: PushKeys,
    /// What browsers send (usually `null`); not used.
    #[serde(
        default,
        rename = "expirationTime",
        skip_serializing_if = "Option::is_none"
    )]
    pub expiration_time: Option<i64>,
}

/// A stored push subscription (never its keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushSubscriptionInfo {
    pub id: String,
    /// The push service's origin (the rest of the endpoint is the browser's secret).
    pub service: String,
    /// The credential it belongs to (`device:<name>`, `key:<name>`, `admin`).
    pub owner: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushSubscriptionList {
    pub items: Vec<PushSubscriptionInfo>,
}

/// `DELETE /api/gateway/push/subscriptions/{id}`: the subscription removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushSubscriptionDeleted {
    pub deleted: String,
}

/// `GET /api/gateway/push/key`: the key browsers pass to `pushManager.subscribe` as
/// `applicationServerKey`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushKey {
    /// The VAPID public key (P-256, uncompressed, base64url without padding).
    pub public_key: String,
}

/// The notification a subscription receives (the decrypted push message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushNotice {
    /// `prompt` (a new question), `reminder` or `escalation`.
    pub kind: String,
    pub title: String,
    /// The prompt (shortened to fit a push message).
    pub body: String,
    pub run_id: String,
    pub wait_key: String,
    /// The prompt's choices: the notification's actions.
    pub choices: Vec<String>,
    /// The app page that answers it.
    pub url: String,
    /// One notification per prompt: a reminder replaces the prompt's.
    pub tag: String,
}
