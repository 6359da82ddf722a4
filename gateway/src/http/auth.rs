//! Request gates: the outer guard (origin allowlist, body size, security headers) and one
//! gate per scope (lockout → bearer token → scope → rate limit). Failures are JSON errors:
//! 401 (no or bad token), 403 (origin or scope), 413 (body), 429 (rate or lockout, with
//! `Retry-After`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::auth::limits::Limits;
use crate::auth::{Auth, Scope};

pub use crate::auth::Principal;

/// What the gates need.
#[derive(Clone)]
pub struct Gate {
    pub auth: Arc<Auth>,
    pub limits: Arc<Limits>,
    pub body_limit: usize,
}

fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

fn too_many(wait: Duration, why: &str) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut r = ApiError::TooManyRequests(format!("{why}; retry in {secs} s")).into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Every request: origin allowlist, early 413 on a declared oversize body, security headers.
pub async fn guard(State(g): State<Gate>, req: Request, next: Next) -> Response {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !g.limits.origin_allowed(origin) {
            return ApiError::Forbidden(format!(
                "origin `{origin}` is not allowed; set SWITCHBOARD_ALLOWED_ORIGINS"
            ))
            .into_response();
        }
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > g.body_limit) {
        return ApiError::TooLarge(format!("the body is larger than {} bytes", g.body_limit))
            .into_response();
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.entry("referrer-policy")
        .or_insert(HeaderValue::from_static("no-referrer"));
    // A page (the web app) may declare its own policies; everything else gets the strictest.
    h.entry("content-security-policy")
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// Routes anyone may call (health, pairing): rate-limited per address.
pub async fn public(State(g): State<Gate>, req: Request, next: Next) -> Response {
    let ip = client_ip(&req);
    if let Some(wait) = g.limits.locked(ip) {
        return too_many(wait, "too many bad credentials from this address");
    }
    if let Err(wait) = g.limits.check_rate(&format!("ip:{ip}")) {
        return too_many(wait, "rate limit exceeded");
    }
    next.run(req).await
}

/// The bearer token of a request: `None` without an Authorization header, an error when the
/// header is not `Bearer <token>`.
pub fn bearer(headers: &axum::http::HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(h) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    h.to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(|t| Some(t.trim()))
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
        })
}

/// Makes a gate middleware for one scope.
pub async fn require(
    State((g, scope)): State<(Gate, Scope)>,
    mut req: Request,
    next: Next,
) -> Response {
    let ip = client_ip(&req);
    if let Some(wait) = g.limits.locked(ip) {
        return too_many(wait, "too many bad credentials from this address");
    }
    let token = match bearer(req.headers()) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return ApiError::Unauthorized(
                "missing token: send `Authorization: Bearer <token>`".into(),
            )
            .into_response();
        }
        Err(e) => return e.into_response(),
    };
    let Some(p) = g.auth.check(token) else {
        if let Some(lock) = g.limits.failed(ip) {
            tracing::warn!(%ip, seconds = lock.as_secs(), "locking out an address after repeated bad tokens");
        }
        return ApiError::Unauthorized("invalid or revoked token".into()).into_response();
    };
    g.limits.succeeded(ip);
    if !p.allows(scope) {
        return ApiError::Forbidden(format!("this token lacks the `{}` scope", scope.as_str()))
            .into_response();
    }
    // The operator's own token is not rate-limited (bridges and load tools share it);
    // devices, API keys and anonymous callers are.
    if p.kind != "admin"
        && let Err(wait) = g.limits.check_rate(&p.id)
    {
        return too_many(wait, "rate limit exceeded");
    }
    g.auth.touch(&p);
    req.extensions_mut().insert(p);
    next.run(req).await
}
