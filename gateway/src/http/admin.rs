//! Administration: pairing (public trade of a code for a device token; admins mint codes),
//! devices, scoped API keys, admin token rotation, gateway-wide pause and flow reload.

use axum::Json;
use axum::extract::{Path, State};
use protocol::{
    BundleVersion, BundleVersions, GatewayPause, KeyCreated, KeyRequest, PairRequest, Paired,
    PairingCode, Revoked, RotatedToken, TokenInfo, TokenList,
};

use super::AppState;
use super::auth::{ClientIp, Principal};
use super::error::{ApiError, ApiJson};
use crate::auth::{AuthError, Scope};
use crate::store::TokenRow;

fn check_name(name: &str, field: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > 64 {
        return Err(ApiError::bad(format!("{field} must be 1-64 characters")));
    }
    Ok(())
}

/// A stored credential as the API shows it (never its hash).
fn info(t: TokenRow) -> TokenInfo {
    TokenInfo {
        id: t.id,
        kind: t.kind,
        name: t.name,
        scopes: t.scopes,
        created_at: t.created_at,
        last_used_at: t.last_used_at,
        revoked_at: t.revoked_at,
    }
}

async fn list(app: &AppState, kind: &str) -> Result<Json<TokenList>, ApiError> {
    let items = app
        .gate
        .auth
        .list(kind)
        .await?
        .into_iter()
        .map(info)
        .collect();
    Ok(Json(TokenList { items }))
}

async fn revoke(app: &AppState, id: &str, kind: &str) -> Result<Json<Revoked>, ApiError> {
    let row = app.gate.auth.revoke(id, kind).await?;
    Ok(Json(Revoked { revoked: info(row) }))
}

/// `POST /api/gateway/pair`: no token needed; a bad code counts toward the address's
/// lockout (and, once it is locked out, is a 429), a valid one always pairs. Guessing is
/// bounded by the per-address rate limit of public routes, single use and the code's TTL.
#[utoipa::path(post, path = "/api/gateway/pair", tag = "auth", security(()), request_body = protocol::PairRequest, responses((status = 200, body = protocol::Paired), (status = 400, body = protocol::ErrorBody), (status = 401, description = "unknown, used or expired code", body = protocol::ErrorBody), (status = 429, body = protocol::ErrorBody)))]
pub(crate) async fn pair(
    State(app): State<AppState>,
    axum::Extension(ClientIp(ip)): axum::Extension<ClientIp>,
    ApiJson(b): ApiJson<PairRequest>,
) -> Result<Json<Paired>, ApiError> {
    let name = b.name.unwrap_or_else(|| "device".into());
    check_name(&name, "name")?;
    match app.gate.auth.pair(&b.code, &name).await {
        Ok((row, token)) => Ok(Json(Paired {
            device_id: row.id,
            name: row.name,
            scopes: row.scopes,
            token,
        })),
        Err(AuthError::Invalid(m)) => Err(app.gate.refuse(ip, ApiError::Unauthorized(m))),
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(post, path = "/api/gateway/pair/codes", tag = "auth", responses((status = 200, body = protocol::PairingCode), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn mint_code(State(app): State<AppState>) -> Result<Json<PairingCode>, ApiError> {
    let (code, expires) = app.gate.auth.mint_code().await?;
    Ok(Json(PairingCode {
        code,
        expires_at: crate::engine::ts(expires),
    }))
}

#[utoipa::path(get, path = "/api/gateway/devices", tag = "auth", responses((status = 200, body = protocol::TokenList), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn devices(State(app): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    list(&app, "device").await
}

#[utoipa::path(delete, path = "/api/gateway/devices/{id}", tag = "auth", params(("id" = String, Path)), responses((status = 200, body = protocol::Revoked), (status = 403, body = protocol::ErrorBody), (status = 404, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn revoke_device(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    revoke(&app, &id, "device").await
}

/// `DELETE /api/gateway/devices/self`: a device revokes its own token (sign-out). No other
/// credential is needed or used, so a device can end only itself.
#[utoipa::path(delete, path = "/api/gateway/devices/self", tag = "auth", responses((status = 200, body = protocol::Revoked), (status = 400, description = "the token is not a device's", body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn revoke_self(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
) -> Result<Json<Revoked>, ApiError> {
    if who.kind != "device" {
        return Err(ApiError::bad(format!(
            "only a device token can revoke itself; this is a {} token",
            who.kind
        )));
    }
    revoke(&app, &who.id, "device").await
}

/// `GET /api/gateway/whoami`: the caller's credential (any valid token).
#[utoipa::path(get, path = "/api/gateway/whoami", tag = "auth", responses((status = 200, body = protocol::WhoAmI), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn whoami(
    axum::Extension(who): axum::Extension<Principal>,
) -> Json<protocol::WhoAmI> {
    Json(protocol::WhoAmI {
        scopes: who.scope_names(),
        id: who.id,
        kind: who.kind,
        name: who.name,
    })
}

#[utoipa::path(get, path = "/api/gateway/keys", tag = "auth", responses((status = 200, body = protocol::TokenList), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn keys(State(app): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    list(&app, "key").await
}

#[utoipa::path(post, path = "/api/gateway/keys", tag = "auth", request_body = protocol::KeyRequest, responses((status = 200, description = "the key, with its token (shown once)", body = protocol::KeyCreated), (status = 400, body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn create_key(
    State(app): State<AppState>,
    ApiJson(b): ApiJson<KeyRequest>,
) -> Result<Json<KeyCreated>, ApiError> {
    check_name(&b.name, "name")?;
    if b.scopes.is_empty() {
        return Err(ApiError::bad(
            "scopes must name at least one of read, run, command, channel, admin",
        ));
    }
    let scopes = b
        .scopes
        .iter()
        .map(|s| {
            Scope::parse(s).ok_or_else(|| {
                ApiError::bad(format!(
                    "scope `{s}` must be read, run, command, channel or admin"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (row, token) = app.gate.auth.create_key(&b.name, &scopes).await?;
    Ok(Json(KeyCreated {
        key_id: row.id,
        name: row.name,
        scopes: row.scopes,
        token,
    }))
}

#[utoipa::path(delete, path = "/api/gateway/keys/{id}", tag = "auth", params(("id" = String, Path)), responses((status = 200, body = protocol::Revoked), (status = 403, body = protocol::ErrorBody), (status = 404, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn revoke_key(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    revoke(&app, &id, "key").await
}

#[utoipa::path(post, path = "/api/gateway/token/rotate", tag = "auth", responses((status = 200, body = protocol::RotatedToken), (status = 403, body = protocol::ErrorBody), (status = 409, description = "the token is configured, not generated", body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn rotate_token(
    State(app): State<AppState>,
) -> Result<Json<RotatedToken>, ApiError> {
    let token = app.gate.auth.rotate_admin().await?;
    Ok(Json(RotatedToken { token }))
}

async fn set_paused(app: &AppState, paused: bool) -> Result<Json<GatewayPause>, ApiError> {
    app.store
        .set_meta("gateway_paused", if paused { "1" } else { "0" })
        .await?;
    app.paused
        .store(paused, std::sync::atomic::Ordering::SeqCst);
    tracing::info!(paused, "gateway-wide pause changed");
    Ok(Json(GatewayPause { paused }))
}

#[utoipa::path(post, path = "/api/gateway/pause", tag = "admin", responses((status = 200, body = protocol::GatewayPause), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn pause_gateway(
    State(app): State<AppState>,
) -> Result<Json<GatewayPause>, ApiError> {
    set_paused(&app, true).await
}

#[utoipa::path(post, path = "/api/gateway/resume", tag = "admin", responses((status = 200, body = protocol::GatewayPause), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn resume_gateway(
    State(app): State<AppState>,
) -> Result<Json<GatewayPause>, ApiError> {
    set_paused(&app, false).await
}

/// Re-reads the flows directory: changed files become new versions; runs stay pinned.
#[utoipa::path(post, path = "/api/gateway/bundles/reload", tag = "flows", responses((status = 200, body = protocol::BundleVersions), (status = 400, description = "broken flow file", body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn reload_flows(
    State(app): State<AppState>,
) -> Result<Json<BundleVersions>, ApiError> {
    crate::app::load_flows(&app.store, &app.flows_dir, &app.registry, &app.mcp)
        .await
        .map_err(|e| match e {
            crate::app::LoadError::Flow(f) => ApiError::Flow(f),
            other => ApiError::Internal(other.to_string()),
        })?;
    let items = app
        .registry
        .list()
        .iter()
        .map(|v| BundleVersion {
            bundle_id: v.flow.bundle_id.clone(),
            bundle_version: v.version.to_string(),
            flow_hash: v.flow.hash.clone(),
        })
        .collect();
    Ok(Json(BundleVersions { items }))
}
