//! Web Push over HTTP: the gateway's VAPID public key, and a caller's own push
//! subscriptions (a browser subscribes with the credential it signed in with; it is
//! notified of the prompts that credential may answer). Checks what serde cannot: the
//! endpoint (https, not a private address unless allowed) and the keys' sizes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use protocol::{PushKey, PushSubscriptionInfo, PushSubscriptionList, PushSubscriptionRequest};

use super::AppState;
use super::error::{ApiError, ApiJson};
use crate::auth::{Principal, Scope};
use crate::push::Vapid;
use crate::store::{HookKind, Webhook};

async fn vapid(app: &AppState) -> Result<&Vapid, ApiError> {
    Ok(app
        .vapid
        .get_or_try_init(|| Vapid::load(&app.store))
        .await?)
}

fn info(w: Webhook, owner: String) -> PushSubscriptionInfo {
    let service = url::Url::parse(&w.info.url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    PushSubscriptionInfo {
        id: w.info.id,
        service,
        owner,
        created_at: w.info.created_at,
    }
}

#[utoipa::path(get, path = "/api/gateway/push/key", tag = "approvals", responses((status = 200, description = "the key to pass to `pushManager.subscribe`", body = protocol::PushKey), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn key(State(app): State<AppState>) -> Result<Json<PushKey>, ApiError> {
    let public_key = vapid(&app).await?.public_key();
    Ok(Json(PushKey { public_key }))
}

#[utoipa::path(post, path = "/api/gateway/push/subscriptions", tag = "approvals", request_body = protocol::PushSubscriptionRequest, responses((status = 201, description = "subscribed: this browser is notified of the prompts the caller may answer", body = protocol::PushSubscriptionInfo), (status = 400, body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 409, description = "the caller holds too many subscriptions", body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn subscribe(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
    ApiJson(req): ApiJson<PushSubscriptionRequest>,
) -> Result<(StatusCode, Json<PushSubscriptionInfo>), ApiError> {
    // Notifications are of prompts to answer: subscribing takes what answering takes.
    if !who.allows(Scope::Command) {
        return Err(ApiError::Forbidden(
            "subscribing to notifications needs the `command` scope".into(),
        ));
    }
    // The admin token's id outlives its secret (rotation), so it could not stop them.
    if who.kind == "admin" {
        return Err(ApiError::Forbidden(
            "the admin token cannot subscribe to notifications; pair a device or use a key".into(),
        ));
    }
    let keys = crate::push::check_subscription(&req, &app.net)
        .map_err(|m| ApiError::BadRequest("invalid_subscription", m))?;
    let keys = serde_json::to_string(&keys).map_err(|e| ApiError::Internal(e.to_string()))?;
    let w = Webhook {
        info: protocol::WebhookInfo {
            id: format!("push_{}", uuid::Uuid::new_v4().simple()),
            url: req.endpoint,
            events: Vec::new(),
            flows: Vec::new(),
            created_at: crate::engine::ts(chrono::Utc::now()),
        },
        secret: keys,
        from_gseq: 0,
        kind: HookKind::Push,
        owner: Some(who.id.clone()),
    };
    let w = app.store.subscribe_push(w).await?;
    Ok((StatusCode::CREATED, Json(info(w, who.label()))))
}

#[utoipa::path(get, path = "/api/gateway/push/subscriptions", tag = "approvals", responses((status = 200, description = "the caller's subscriptions (an admin's: everyone's)", body = protocol::PushSubscriptionList), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn list(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
) -> Result<Json<PushSubscriptionList>, ApiError> {
    let admin = who.allows(Scope::Admin);
    let subs = app
        .store
        .push_subscriptions((!admin).then(|| who.id.clone()))
        .await?;
    let labels: std::collections::HashMap<String, String> = if admin {
        let tokens = app.store.tokens().await?.into_iter();
        tokens
            .map(|t| {
                let label = match t.kind.as_str() {
                    "admin" => "admin".to_owned(),
                    k => format!("{k}:{}", t.name),
                };
                (t.id, label)
            })
            .collect()
    } else {
        std::iter::once((who.id.clone(), who.label())).collect()
    };
    let items = subs
        .into_iter()
        .map(|w| {
            let owner = w.owner.as_ref().and_then(|o| labels.get(o)).cloned();
            info(w, owner.unwrap_or_default())
        })
        .collect();
    Ok(Json(PushSubscriptionList { items }))
}

#[utoipa::path(delete, path = "/api/gateway/push/subscriptions/{id}", tag = "approvals", params(("id" = String, Path, description = "the subscription id")), responses((status = 200, description = "unsubscribed; its pending notifications are dropped", body = protocol::PushSubscriptionDeleted), (status = 404, description = "no such subscription of the caller's", body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn unsubscribe(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<protocol::PushSubscriptionDeleted>, ApiError> {
    let owner = (!who.allows(Scope::Admin)).then(|| who.id.clone());
    app.store.unsubscribe_push(&id, owner).await?;
    Ok(Json(protocol::PushSubscriptionDeleted { deleted: id }))
}
