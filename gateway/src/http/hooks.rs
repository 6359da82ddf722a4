//! Triggers (`POST /api/gateway/triggers/{name}`: a signed or token-authorised request
//! starts a run, once per delivery id) and webhook subscriptions with their delivery log.
//! Verification lives in `crate::triggers`, delivery in `crate::webhooks`; handlers only
//! parse, check and call the store.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use protocol::{
    DeliveryList, TriggerFired, TriggerInfo, TriggerList, WebhookCreated, WebhookDeleted,
    WebhookList,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{ClientIp, Principal};
use super::error::{ApiError, ApiQuery};
use crate::auth::Scope;
use crate::store::Started;

const MAX_PAGE: u32 = 1000;

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[utoipa::path(get, path = "/api/gateway/triggers", tag = "triggers", responses((status = 200, body = protocol::TriggerList), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn list_triggers(State(app): State<AppState>) -> Json<TriggerList> {
    let items = app
        .triggers
        .list(&app.registry)
        .into_iter()
        .map(|t| TriggerInfo {
            path: format!("/api/gateway/triggers/{}", t.name),
            signed: t.secret.is_some(),
            name: t.name,
            flow: t.flow,
        })
        .collect();
    Json(TriggerList { items })
}

/// Who fired a trigger: a token holder with the `run` scope, or the signature's holder.
fn authorise(
    app: &AppState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    t: &crate::triggers::Resolved,
    body: &[u8],
) -> Result<Principal, ApiError> {
    if let Some(token) = super::auth::bearer(headers)? {
        let Some(p) = app.gate.auth.check(token) else {
            let e = ApiError::Unauthorized("invalid or revoked token".into());
            return Err(app.gate.refuse(ip, e));
        };
        if !p.allows(Scope::Run) {
            return Err(ApiError::Forbidden(
                "this token lacks the `run` scope".into(),
            ));
        }
        return Ok(p);
    }
    let Some(secret) = &t.secret else {
        return Err(ApiError::Unauthorized(format!(
            "trigger `{}` has no secret: send `Authorization: Bearer <token with the run scope>`, or set SWITCHBOARD_TRIGGER_SECRET_{}",
            t.name,
            crate::triggers::env_key(&t.name)
        )));
    };
    crate::triggers::check_signature(
        secret,
        header_str(headers, "x-switchboard-timestamp"),
        header_str(headers, "x-switchboard-signature"),
        body,
        app.triggers.window,
        chrono::Utc::now().timestamp(),
    )
    .map_err(|m| app.gate.refuse(ip, ApiError::Unauthorized(m)))?;
    Ok(Principal {
        id: format!("trigger:{}", t.name),
        kind: "trigger".into(),
        name: t.name.clone(),
        scopes: vec![Scope::Run],
    })
}

#[utoipa::path(post, path = "/api/gateway/triggers/{name}", tag = "triggers", security(()), params(("name" = String, Path, description = "the trigger name"), ("X-Switchboard-Signature" = Option<String>, Header, description = "`sha256=<hex HMAC-SHA256 of \"{timestamp}.{body}\">`"), ("X-Switchboard-Timestamp" = Option<String>, Header, description = "Unix seconds"), ("X-Switchboard-Delivery" = Option<String>, Header, description = "the sender's delivery id; a repeated one is refused (required with a signature)")), request_body(content = Object, description = "the run's input: any JSON object (checked against the flow's input_schema)"), responses((status = 200, description = "the run started", body = protocol::TriggerFired), (status = 400, body = protocol::ErrorBody), (status = 401, description = "bad signature, stale timestamp or bad token", body = protocol::ErrorBody), (status = 404, description = "unknown trigger", body = protocol::ErrorBody), (status = 409, description = "delivery id already accepted", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn fire(
    State(app): State<AppState>,
    axum::Extension(ClientIp(ip)): axum::Extension<ClientIp>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TriggerFired>, ApiError> {
    let Some(t) = app.triggers.resolve(&name, &app.registry) else {
        return Err(ApiError::NotFound(format!(
            "no trigger `{name}`; GET /api/gateway/triggers lists them"
        )));
    };
    let who = authorise(&app, ip, &headers, &t, &body)?;
    let delivery = match header_str(&headers, "x-switchboard-delivery").map(str::trim) {
        Some(d) if !d.is_empty() && d.len() <= 200 => d.to_owned(),
        Some(_) => {
            return Err(ApiError::bad(
                "X-Switchboard-Delivery must be 1-200 characters",
            ));
        }
        None if who.kind == "trigger" => {
            return Err(ApiError::bad(
                "missing X-Switchboard-Delivery: signed deliveries need an id so a replay can be refused",
            ));
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest("invalid_json", format!("the body is not JSON: {e}"))
        })?
    };
    if !input.is_object() {
        return Err(ApiError::BadRequest(
            "invalid_input",
            "the body must be a JSON object (it becomes the run's input)".into(),
        ));
    }
    let mut run = super::runs::new_run(&app, &who, t.flow.clone(), input, None, None)?;
    run.actor.channel = Some("trigger".into());
    run.actor.client_id = Some(delivery.clone());
    run.trace = crate::trace::new_trace(super::runs::traceparent(&headers));
    let mut keys = vec![(t.name.clone(), delivery.clone())];
    // A signed request is also keyed by its signature: the delivery id is not signed, so a
    // captured request sent again with a fresh id must still start nothing.
    if who.kind == "trigger"
        && let Some(sig) = header_str(&headers, "x-switchboard-signature")
    {
        keys.push((
            format!("{}#signature", t.name),
            sig.trim().to_ascii_lowercase(),
        ));
    }
    let s = match app.store.start_run_once_by(keys, run).await? {
        Started::Fresh(s, wake) => {
            app.wake(wake);
            s
        }
        Started::Earlier(s) => {
            return Err(ApiError::Conflict(format!(
                "this delivery of trigger `{}` was already accepted (run {}): a delivery id or signature is accepted once",
                t.name, s.run_id
            )));
        }
    };
    Ok(Json(TriggerFired {
        run_id: s.run_id,
        status: s.status,
        bundle_id: s.bundle_id,
        flow_hash: s.flow_hash,
        trigger: t.name,
        delivery_id: delivery,
    }))
}

#[utoipa::path(post, path = "/api/gateway/webhooks", tag = "webhooks", request_body = protocol::WebhookRequest, responses((status = 201, description = "the subscription, with its signing `secret` (shown only here)", body = protocol::WebhookCreated), (status = 400, body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn create_webhook(
    State(app): State<AppState>,
    super::error::ApiJson(req): super::error::ApiJson<protocol::WebhookRequest>,
) -> Result<(StatusCode, Json<WebhookCreated>), ApiError> {
    let w = crate::webhooks::new_webhook(req, &app.net)
        .map_err(|m| ApiError::BadRequest("invalid_webhook", m))?;
    let w = app.store.create_webhook(w).await?;
    let created = WebhookCreated {
        webhook: w.info,
        secret: w.secret,
    };
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/gateway/webhooks", tag = "webhooks", responses((status = 200, description = "the subscriptions (without secrets)", body = protocol::WebhookList), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn list_webhooks(
    State(app): State<AppState>,
) -> Result<Json<WebhookList>, ApiError> {
    let items = app
        .store
        .webhooks()
        .await?
        .into_iter()
        .filter(|w| w.kind == crate::store::HookKind::Webhook)
        .map(|w| w.info)
        .collect();
    Ok(Json(WebhookList { items }))
}

#[utoipa::path(delete, path = "/api/gateway/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "the webhook id")), responses((status = 200, description = "its pending deliveries are cancelled", body = protocol::WebhookDeleted), (status = 404, body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn delete_webhook(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WebhookDeleted>, ApiError> {
    app.store.delete_webhook(&id).await?;
    Ok(Json(WebhookDeleted { deleted: id }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveryQuery {
    /// `pending`, `delivered`, `failed` or `cancelled`.
    status: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

#[utoipa::path(get, path = "/api/gateway/webhooks/deliveries", tag = "webhooks", params(DeliveryQuery), responses((status = 200, description = "newest first", body = protocol::DeliveryList), (status = 400, body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn deliveries(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    if let Some(s) = &q.status
        && !["pending", "delivered", "failed", "cancelled"].contains(&s.as_str())
    {
        return Err(ApiError::bad(format!(
            "status `{s}` must be pending, delivered, failed or cancelled"
        )));
    }
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad(format!("limit must be 1-{MAX_PAGE}")));
    }
    let (items, has_more) = app
        .store
        .deliveries(q.status, limit, q.offset.unwrap_or(0))
        .await?;
    Ok(Json(DeliveryList { items, has_more }))
}
