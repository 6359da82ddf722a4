//! Webhook mode: Telegram pushes updates to an HTTPS URL instead of being long-polled.
//!
//! At start the bridge calls `setWebhook` with the public URL, a secret token and
//! `max_connections = 1` (Telegram then delivers one update at a time, in order, and retries
//! an update until it gets a 2xx). The listener checks `X-Telegram-Bot-Api-Secret-Token` in
//! constant time, parses the update and hands it to one worker, which applies it exactly as
//! the poller does ([`super::inbound::apply`]). The answer is 200 only after the gateway
//! accepted the update's request and the offset was stored; while the gateway is
//! unreachable it is 503, so Telegram delivers the update again later. The same update ids
//! key the same run starts and commands, so a repeated delivery has one effect.
//! It owns the HTTP listener only; what an update means is [`super::inbound`]'s business.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use subtle::ConstantTimeEq;
use teloxide::payloads::SetWebhookSetters;
use teloxide::prelude::Requester;
use teloxide::types::{AllowedUpdate, Update};
use tokio::sync::{mpsc, oneshot};

use super::{BridgeError, Ctx, api, inbound};

/// The header Telegram puts the secret token in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// Where Telegram posts updates and how the bridge listens for them.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The public URL given to `setWebhook` (what Telegram posts to).
    pub url: url::Url,
    /// The local address the bridge listens on (a reverse proxy forwards the public URL).
    pub listen: SocketAddr,
    /// 1–256 characters of `A-Z a-z 0-9 _ -`, sent back by Telegram in every request.
    pub secret: String,
}

/// Checks a secret token against Telegram's rules.
pub fn check_secret(s: &str) -> Result<(), String> {
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if s.is_empty() || s.len() > 256 || !ok_chars {
        return Err("must be 1-256 characters of A-Z, a-z, 0-9, `_` and `-`".into());
    }
    Ok(())
}

/// A fresh random secret token.
pub fn random_secret() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(48)
        .map(char::from)
        .collect()
}

type Job = (Update, oneshot::Sender<bool>);

#[derive(Clone)]
struct Hook {
    secret: Arc<str>,
    jobs: mpsc::Sender<Job>,
}

/// Binds the listener (so a taken port fails the start), registers the webhook with
/// Telegram, and returns the task that serves it.
pub(crate) async fn start(
    ctx: Arc<Ctx>,
    cfg: WebhookConfig,
) -> Result<tokio::task::JoinHandle<()>, BridgeError> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| {
            BridgeError::Config(format!(
                "cannot listen for Telegram's webhook on {} ({e}): set SWITCHBOARD_TELEGRAM_WEBHOOK_LISTEN to a free address",
                cfg.listen
            ))
        })?;
    let offset = ctx.state.meta_u64(inbound::OFFSET).await?;
    let (tx, rx) = mpsc::channel::<Job>(16);
    let hook = Hook {
        secret: cfg.secret.clone().into(),
        jobs: tx,
    };
    let path = match cfg.url.path() {
        "" => "/".to_owned(),
        p => p.to_owned(),
    };
    let app = Router::new()
        .route(&path, axum::routing::post(receive))
        .with_state(hook);
    api::retrying("setWebhook", || {
        let req = ctx
            .bot
            .set_webhook(cfg.url.clone())
            .secret_token(cfg.secret.clone())
            .max_connections(1)
            .allowed_updates(vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery]);
        async move { req.await }
    })
    .await?;
    tracing::info!(url = %cfg.url, listen = %cfg.listen, "telegram webhook registered");
    let worker = tokio::spawn(work(ctx, rx, offset));
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "telegram webhook listener stopped");
        }
        worker.abort();
    }))
}

/// Applies updates one at a time, in the order they arrived.
async fn work(ctx: Arc<Ctx>, mut jobs: mpsc::Receiver<Job>, mut offset: u64) {
    while let Some((update, done)) = jobs.recv().await {
        let applied = inbound::apply(&ctx, &update, &mut offset).await;
        let _ = done.send(applied);
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

async fn receive(State(hook): State<Hook>, headers: HeaderMap, body: Bytes) -> Response {
    let given = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(given.ct_eq(hook.secret.as_bytes())) {
        tracing::warn!("telegram webhook: a request without the right secret token was refused");
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong X-Telegram-Bot-Api-Secret-Token",
        );
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            let msg = format!("the body is not a Telegram Update: {e}");
            return error(StatusCode::BAD_REQUEST, "invalid_update", &msg);
        }
    };
    let (tx, rx) = oneshot::channel();
    if hook.jobs.send((update, tx)).await.is_err() {
        return unavailable();
    }
    match rx.await {
        Ok(true) => (StatusCode::OK, axum::Json(json!({"ok": true}))).into_response(),
        _ => unavailable(),
    }
}

/// Telegram delivers the update again later.
fn unavailable() -> Response {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "gateway_unavailable",
        "the update could not be applied yet; deliver it again",
    );
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("2"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_follow_telegrams_rules() {
        assert!(check_secret("abc_DEF-123").is_ok());
        assert!(check_secret("").is_err());
        assert!(check_secret("has space").is_err());
        assert!(check_secret(&"x".repeat(257)).is_err());
        let s = random_secret();
        assert!(check_secret(&s).is_ok(), "{s}");
        assert_ne!(s, random_secret());
    }
}
