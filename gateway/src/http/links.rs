//! One-click answers from mail: a link per recipient and prompt, signed by the gateway,
//! single use, expiring. The link opens a confirmation page in the web app; only the POST
//! from that page votes, so a link scanner or a preview that fetches it changes nothing.
//!
//! A token is `<payload hex>.<HMAC-SHA256 hex>` over `run_id \n wait_key \n recipient \n
//! expiry`, with a key the store keeps (the same on every node). Its vote is a `resume`
//! command from the recipient (`client_id` = `email:<address>`, channel `email`), with a
//! `command_id` derived from the token: a second POST is the same command, and is told
//! who answered.

use axum::Json;
use axum::extract::{Path, State};
use hmac::{Hmac, Mac};
use protocol::{
    CommandRequest, CommandResponse, LinkCreated, LinkInfo, LinkRequest, LinkVote, RunStatus,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::{ApiError, ApiJson};
use crate::auth::{Principal, Scope};

/// Longest a link works.
const MAX_TTL_SECS: u64 = 7 * 24 * 3600;
const KEY: &str = "answer_link_key";

struct Claims {
    run_id: String,
    wait_key: String,
    recipient: String,
    expires: i64,
}

/// The signing key: read (or made) once, then kept (no store write per request).
async fn key(app: &AppState) -> Result<String, ApiError> {
    let key = app
        .link_key
        .get_or_try_init(|| async {
            let fresh = crate::auth::new_secret("link_");
            app.store.meta_or_insert(KEY, &fresh).await
        })
        .await?;
    Ok(key.clone())
}

fn mac(key: &str, payload: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(payload);
    hex::encode(m.finalize().into_bytes())
}

fn sign(key: &str, c: &Claims) -> String {
    let payload = format!(
        "{}\n{}\n{}\n{}",
        c.run_id, c.wait_key, c.recipient, c.expires
    );
    format!("{}.{}", hex::encode(&payload), mac(key, payload.as_bytes()))
}

/// The claims of a token this gateway signed (whatever its expiry).
fn verify(key: &str, token: &str) -> Result<Claims, ApiError> {
    let bad = || {
        ApiError::Forbidden(
            "this answer link is not valid (it was not made here, or it was changed)".into(),
        )
    };
    let (payload, sig) = token.split_once('.').ok_or_else(bad)?;
    // One spelling per token: hex is lower case, so a token cannot be re-cased into a
    // "new" one.
    if token.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(bad());
    }
    let payload = hex::decode(payload).map_err(|_| bad())?;
    let expected = mac(key, &payload);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        expected.as_bytes(),
        sig.as_bytes(),
    )) {
        return Err(bad());
    }
    let text = String::from_utf8(payload).map_err(|_| bad())?;
    let parts: Vec<&str> = text.split('\n').collect();
    let [run_id, wait_key, recipient, expires] = parts[..] else {
        return Err(bad());
    };
    Ok(Claims {
        run_id: run_id.to_owned(),
        wait_key: wait_key.to_owned(),
        recipient: recipient.to_owned(),
        expires: expires.parse().map_err(|_| bad())?,
    })
}

fn expiry(c: &Claims) -> String {
    chrono::DateTime::from_timestamp(c.expires, 0)
        .map(crate::engine::ts)
        .unwrap_or_default()
}

#[utoipa::path(post, path = "/api/gateway/links", tag = "approvals", request_body = protocol::LinkRequest, responses((status = 200, body = protocol::LinkCreated), (status = 400, body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 404, body = protocol::ErrorBody), (status = 409, description = "the run does not wait on that prompt", body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn create(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<LinkRequest>,
) -> Result<Json<LinkCreated>, ApiError> {
    let Some(address) = req
        .recipient
        .strip_prefix("email:")
        .filter(|a| a.contains('@') && a.len() <= 254)
    else {
        return Err(ApiError::bad("recipient must be `email:<address>`"));
    };
    let run = app.store.run(&req.run_id).await?;
    let Some(w) = run.waiting.filter(|w| {
        run.status == RunStatus::Waiting && w.wait_key == req.wait_key && !w.choices.is_empty()
    }) else {
        return Err(ApiError::Conflict(format!(
            "run {} does not wait on `{}` with choices",
            req.run_id, req.wait_key
        )));
    };
    // Only someone the run asks: an address it notifies, its mail session, or an approver.
    let recipient = format!("email:{}", address.to_lowercase());
    let notified = run
        .notify
        .iter()
        .any(|n| n.eq_ignore_ascii_case(&recipient))
        || run
            .session_id
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(&recipient));
    let dir = app.store.directory().await?;
    let approver =
        crate::auth::approvers::admits(&dir, &w.approvers, std::slice::from_ref(&recipient));
    if !notified && !approver {
        return Err(ApiError::Forbidden(format!(
            "run {} does not ask {recipient}",
            req.run_id
        )));
    }
    let now = chrono::Utc::now();
    let ttl = req.ttl_secs.unwrap_or(MAX_TTL_SECS).clamp(1, MAX_TTL_SECS) as i64;
    let mut expires = now.timestamp() + ttl;
    if let Some(deadline) = w
        .until
        .as_deref()
        .and_then(|u| chrono::DateTime::parse_from_rfc3339(u).ok())
    {
        expires = expires.min(deadline.timestamp());
    }
    let claims = Claims {
        run_id: req.run_id,
        wait_key: req.wait_key,
        recipient: format!("email:{}", address.to_lowercase()),
        expires,
    };
    let token = sign(&key(&app).await?, &claims);
    Ok(Json(LinkCreated {
        token,
        expires_at: expiry(&claims),
    }))
}

#[utoipa::path(get, path = "/api/gateway/links/{token}", tag = "approvals", params(("token" = String, Path)), security(()), responses((status = 200, body = protocol::LinkInfo), (status = 403, description = "not a link of this gateway", body = protocol::ErrorBody), (status = 404, body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn info(
    State(app): State<AppState>,
    Path(token): Path<String>,
) -> Result<Json<LinkInfo>, ApiError> {
    let c = verify(&key(&app).await?, &token)?;
    let run = app.store.run(&c.run_id).await?;
    let w = run
        .waiting
        .clone()
        .filter(|w| run.status == RunStatus::Waiting && w.wait_key == c.wait_key);
    let answered_by = match &w {
        Some(_) => None,
        None => answered_by(&app, &c).await,
    };
    let (prompt, choices) = match &w {
        Some(w) => (w.prompt.clone().unwrap_or_default(), w.choices.clone()),
        None => (String::new(), Vec::new()),
    };
    Ok(Json(LinkInfo {
        run_id: c.run_id.clone(),
        bundle_id: run.bundle_id,
        prompt,
        choices,
        recipient: c.recipient.clone(),
        expires_at: expiry(&c),
        open: w.is_some() && chrono::Utc::now().timestamp() < c.expires,
        answered_by,
    }))
}

#[utoipa::path(post, path = "/api/gateway/links/{token}", tag = "approvals", params(("token" = String, Path)), security(()), request_body = protocol::LinkVote, responses((status = 200, body = protocol::CommandResponse), (status = 400, body = protocol::ErrorBody), (status = 403, description = "not a link of this gateway, expired, or not an approver", body = protocol::ErrorBody), (status = 409, description = "already answered", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn vote(
    State(app): State<AppState>,
    Path(token): Path<String>,
    ApiJson(v): ApiJson<LinkVote>,
) -> Result<Json<CommandResponse>, ApiError> {
    let c = verify(&key(&app).await?, &token)?;
    if chrono::Utc::now().timestamp() >= c.expires {
        return Err(ApiError::Forbidden(
            "this answer link has expired; reply to the mail instead".into(),
        ));
    }
    let id = hex::encode(Sha256::digest(token.as_bytes()));
    let sig = token.rsplit_once('.').map_or("", |(_, s)| s);
    let req = CommandRequest {
        command_id: format!("link:{}", &sig[..32.min(sig.len())]),
        run_id: c.run_id.clone(),
        kind: "resume".into(),
        payload: json!({"wait_key": c.wait_key, "payload": {"response": v.choice}}),
        client_id: Some(c.recipient.clone()),
        channel: Some("email".into()),
    };
    // The link speaks for its recipient, as the email bridge would.
    let link = Principal {
        id: format!("link:{}", &id[..16]),
        kind: "key".into(),
        name: "answer-link".into(),
        scopes: vec![Scope::Command, Scope::Channel],
    };
    match super::commands::submit_command(&app, &link, req).await {
        Ok(r) if r.duplicate => Err(already(&app, &c).await),
        Ok(r) => Ok(Json(r)),
        // The same link again with another choice: the same command, another payload.
        Err(ApiError::Conflict(m)) if m.contains("was already used") => {
            Err(already(&app, &c).await)
        }
        Err(ApiError::Forbidden(_)) => Err(ApiError::Forbidden(format!(
            "{} may not answer this prompt",
            c.recipient
        ))),
        Err(e) => Err(e),
    }
}

async fn already(app: &AppState, c: &Claims) -> ApiError {
    match answered_by(app, c).await {
        Some(who) => ApiError::Conflict(format!("this prompt was already answered, by {who}")),
        None => ApiError::Conflict("this link was already used; its vote counts".into()),
    }
}

/// Who ended the wait `c` answers (from the run's ledger), as `client via channel`.
async fn answered_by(app: &AppState, c: &Claims) -> Option<String> {
    let run = app.store.run(&c.run_id).await.ok()?;
    let from = run.ledger_len.saturating_sub(200);
    let (texts, _) = app.store.ledger_page(&c.run_id, from, 200).await.ok()?;
    let records: Vec<protocol::LedgerRecord> = texts
        .iter()
        .filter_map(|t| serde_json::from_str(t).ok())
        .collect();
    let r = records
        .iter()
        .rev()
        .find(|r| r.step_id == c.wait_key && r.status == protocol::RecordStatus::Completed)?;
    let a = &r.actor;
    let who = a
        .voter
        .clone()
        .or(a.client_id.clone())
        .or(a.principal.clone())?;
    Some(match &a.channel {
        Some(ch) => format!("{who} via {ch}"),
        None => who,
    })
}
