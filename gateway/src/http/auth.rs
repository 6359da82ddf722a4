//! Request gates: the outer guard (origin allowlist, body size, security headers, the
//! client's address) and one gate per scope (bearer token → scope → rate limit; a bad
//! token counts toward its address's lockout). Failures are JSON errors: 401 (no or bad
//! token), 403 (origin or scope), 413 (body), 429 (rate or lockout, with `Retry-After`).
//!
//! The client's address is the peer's, or, from a trusted proxy, the `X-Forwarded-For`
//! hop it vouches for. The web app runs in this process and calls the API for its
//! visitors: the guard hands each `/app` request a visitor note (the visitor's address,
//! signed with a key that lives only in this process and replacing anything sent under
//! that header) that the app sends along, so its calls count as the visitor's, not as its
//! own. The note is believed from any peer, since only this process can sign one.
//!
//! Failed credentials are also held to the address's rate limit, so guessing costs as
//! much as any anonymous call; a lockout then refuses further failures, never a valid
//! credential (a credential is checked before any of this).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::auth::limits::Limits;
use crate::auth::{Auth, Scope};

pub(crate) use crate::auth::Principal;
pub(crate) use protocol::VISITOR_HEADER;

/// What the gates need.
#[derive(Clone)]
pub(crate) struct Gate {
    pub(crate) auth: Arc<Auth>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) body_limit: usize,
    /// Signs visitor notes (random per process; never leaves it).
    pub(crate) visitor_key: Arc<String>,
}

/// The address a request counts as coming from (rate limits, lockouts).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(pub IpAddr);

impl Gate {
    /// `<ip> sha256=<hmac>`: the web app's proof of whom it calls for.
    fn visitor_note(&self, ip: IpAddr) -> String {
        let ip = ip.to_string();
        let mac = crate::signing::sign(&self.visitor_key, "visitor", ip.as_bytes());
        format!("{ip} {mac}")
    }

    fn visitor(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let note = headers.get(VISITOR_HEADER)?.to_str().ok()?;
        let (ip, mac) = note.split_once(' ')?;
        crate::signing::verify(&self.visitor_key, "visitor", ip.as_bytes(), mac)
            .then(|| ip.parse().ok())
            .flatten()
    }

    /// Who a request is from: a verified visitor note (the web app calling for a
    /// visitor), else the client behind a trusted proxy, else the peer.
    fn address_of(&self, req: &Request) -> IpAddr {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip().to_canonical());
        if let Some(ip) = self.visitor(req.headers()) {
            return ip;
        }
        let xff: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        self.limits.client_behind(peer, &xff)
    }

    /// A failed credential from `ip`: counted, and 429 once the address is locked out or
    /// over its rate.
    pub(crate) fn refuse(&self, ip: IpAddr, err: ApiError) -> ApiError {
        if let Some(wait) = self.limits.locked(ip) {
            return locked_out(wait);
        }
        if let Err(wait) = self.limits.check_address(ip) {
            let secs = retry_secs(wait);
            return ApiError::TooManyRequests(
                format!("too many requests from this address; retry in {secs} s"),
                secs,
            );
        }
        if let Some(lock) = self.limits.failed(ip) {
            tracing::warn!(%ip, seconds = lock.as_secs(), "locking out an address after repeated bad credentials");
        }
        err
    }
}

/// The address the guard fixed for this request.
pub(crate) fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ClientIp>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0)
}

fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

fn locked_out(wait: Duration) -> ApiError {
    let secs = retry_secs(wait);
    ApiError::TooManyRequests(
        format!("too many bad credentials from this address; retry in {secs} s"),
        secs,
    )
}

fn too_many(wait: Duration) -> Response {
    let secs = retry_secs(wait);
    ApiError::TooManyRequests(format!("rate limit exceeded; retry in {secs} s"), secs)
        .into_response()
}

/// Every request: origin allowlist, early 413 on a declared oversize body, the client's
/// address (and a visitor note for the web app), security headers.
pub(crate) async fn guard(State(g): State<Gate>, mut req: Request, next: Next) -> Response {
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
    let ip = g.address_of(&req);
    req.extensions_mut().insert(ClientIp(ip));
    if req.uri().path().starts_with("/app") {
        // Whatever the visitor sent under this name is replaced by the gateway's own note.
        match HeaderValue::from_str(&g.visitor_note(ip)) {
            Ok(v) => req.headers_mut().insert(VISITOR_HEADER, v),
            Err(_) => req.headers_mut().remove(VISITOR_HEADER),
        };
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

/// Routes anyone may call (health, pairing, triggers): rate-limited per address. Their
/// handlers count failed credentials themselves ([`Gate::refuse`]).
pub(crate) async fn public(State(g): State<Gate>, req: Request, next: Next) -> Response {
    let ip = client_ip(&req);
    if let Err(wait) = g.limits.check_address(ip) {
        return too_many(wait);
    }
    next.run(req).await
}

/// The bearer token of a request: `None` without an Authorization header, an error when the
/// header is not `Bearer <token>`.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Result<Option<&str>, ApiError> {
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

/// Makes a gate middleware for one scope (`None`: any valid credential).
pub(crate) async fn require(
    State((g, scope)): State<(Gate, Option<Scope>)>,
    mut req: Request,
    next: Next,
) -> Response {
    let ip = client_ip(&req);
    let token = match bearer(req.headers()) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return ApiError::Unauthorized(
                "missing token: send `Authorization: Bearer <token>`".into(),
            )
            .into_response();
        }
        Err(e) => return g.refuse(ip, e).into_response(),
    };
    // The credential is checked before any lockout: a valid one is never refused because
    // somebody else sent bad ones from the same address.
    let Some(p) = g.auth.check(token) else {
        let e = ApiError::Unauthorized("invalid or revoked token".into());
        return g.refuse(ip, e).into_response();
    };
    if let Some(scope) = scope
        && !p.allows(scope)
    {
        return ApiError::Forbidden(format!("this token lacks the `{}` scope", scope.as_str()))
            .into_response();
    }
    // The operator's own token is not rate-limited (bridges and load tools share it);
    // devices, API keys and anonymous callers are.
    if p.kind != "admin"
        && let Err(wait) = g.limits.check_rate(&p.id)
    {
        return too_many(wait);
    }
    g.auth.touch(&p);
    req.extensions_mut().insert(p);
    next.run(req).await
}
