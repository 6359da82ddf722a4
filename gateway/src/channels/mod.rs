//! Channel bridges hosted by `switchboard serve` (or run alone by `switchboard bridge …`):
//! their settings, checked at start ([`telegram`], [`email`]), and the wiring that gives an
//! in-process bridge its own loopback URL and API key. A hosted bridge still talks to the
//! gateway over HTTP like any client; this module never hands it the store.

mod email;
mod telegram;

use std::net::SocketAddr;
use std::path::Path;

use clap::Subcommand;

use crate::auth::Auth;

pub(crate) use email::{EmailArgs, EmailSettings};
pub(crate) use telegram::{TelegramArgs, TelegramSettings, check_telegram};

#[derive(Debug, Subcommand)]
pub enum BridgeCommand {
    /// The Telegram bridge (long polling, or a webhook): `--gateway URL --token TOKEN` plus
    /// the `SWITCHBOARD_TELEGRAM_*` settings.
    Telegram {
        /// The gateway's URL.
        #[arg(long, env = "SWITCHBOARD_URL", default_value = "http://127.0.0.1:8080")]
        gateway: String,
        /// An API token with the read, run and command scopes.
        #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
        token: String,
        #[command(flatten)]
        telegram: TelegramArgs,
    },
    /// The email bridge (IMAP + SMTP): `--gateway URL --token TOKEN` plus the
    /// `SWITCHBOARD_EMAIL_*` settings.
    Email {
        /// The gateway's URL.
        #[arg(long, env = "SWITCHBOARD_URL", default_value = "http://127.0.0.1:8080")]
        gateway: String,
        /// An API token with the read, run and command scopes.
        #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
        token: String,
        /// The gateway's public URL, for links to runs in mails.
        #[arg(long, env = "SWITCHBOARD_PUBLIC_URL")]
        public_url: Option<String>,
        #[command(flatten)]
        email: Box<EmailArgs>,
    },
}

/// `switchboard bridge …`: one bridge alone against a gateway, until SIGINT or SIGTERM.
pub async fn run_bridge(cmd: BridgeCommand) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    match cmd {
        BridgeCommand::Telegram {
            gateway,
            token,
            telegram,
        } => {
            let settings = telegram.resolve(&mut problems);
            anyhow::ensure!(problems.is_empty(), "{}", problems.join("\n"));
            let Some(settings) = settings else {
                anyhow::bail!(
                    "no Telegram bot token: set SWITCHBOARD_TELEGRAM_BOT_TOKEN (or --telegram-bot-token)"
                );
            };
            let mut cfg = settings.bridge_config(gateway, token, Path::new("."));
            if settings.state.is_none() {
                cfg.state_path = "telegram-bridge.sqlite".into();
            }
            bridges::telegram::run(cfg, crate::app::shutdown()).await?;
        }
        BridgeCommand::Email {
            gateway,
            token,
            public_url,
            email,
        } => {
            let settings = (*email).resolve(&mut problems);
            anyhow::ensure!(problems.is_empty(), "{}", problems.join("\n"));
            let Some(settings) = settings else {
                anyhow::bail!(
                    "no IMAP server: set SWITCHBOARD_EMAIL_IMAP_HOST (or --email-imap-host)"
                );
            };
            let mut cfg = settings.bridge_config(gateway, token, Path::new("."), public_url);
            if settings.state.is_none() {
                cfg.state_path = "email-bridge.sqlite".into();
            }
            bridges::email::run(cfg, crate::app::shutdown()).await?;
        }
    }
    Ok(())
}

/// A URL that reaches the gateway listening on `addr` from this machine.
fn loopback_url(addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        match addr {
            SocketAddr::V4(_) => "127.0.0.1".to_owned(),
            SocketAddr::V6(_) => "[::1]".to_owned(),
        }
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    format!("http://{host}:{}", addr.port())
}

/// A fresh API key (read, run, command) named `name`, revoking the previous start's.
async fn fresh_key(auth: &Auth, name: &str) -> anyhow::Result<String> {
    for old in auth.list("key").await? {
        if old.name == name && old.revoked_at.is_none() {
            auth.revoke(&old.id, "key").await?;
        }
    }
    let (_, secret) = auth.create_key(name, crate::auth::BRIDGE_SCOPES).await?;
    Ok(secret)
}

/// Runs `bridge` until `shutdown` turns true, logging how it ended.
fn spawn_until<F, E>(what: &'static str, shutdown: tokio::sync::watch::Receiver<bool>, bridge: F)
where
    F: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> E,
    E: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let mut shutdown = shutdown;
    let stop = Box::pin(async move {
        let _ = shutdown.wait_for(|down| *down).await;
    });
    let run = bridge(stop);
    tokio::spawn(async move {
        if let Err(e) = run.await {
            tracing::error!(error = %e, "the {what} bridge stopped");
        }
    });
}

/// Name of the web app's key file in the data dir (signs its CSRF tokens; mode 0600).
pub(crate) const WEB_KEY_FILE: &str = "web.key";

/// The web app (`/app`): it reaches the API on loopback like any client, with the
/// visitor's token and nothing else (it holds no credential of its own; a device signs
/// itself out with its own token). Its CSRF key lives in the data dir, so open pages stay
/// valid across restarts; on a shared store every node takes the one the first node
/// published, so a page served by one node can post to another.
pub(crate) async fn web_app(
    store: &crate::store::Store,
    auth: &Auth,
    addr: SocketAddr,
    data_dir: &Path,
    public_url: Option<&str>,
) -> anyhow::Result<axum::Router> {
    // Earlier versions gave the web app an admin key for sign-outs; none may stay live.
    for old in auth.list("key").await? {
        if old.name == "web:signout" && old.revoked_at.is_none() {
            auth.revoke(&old.id, "key").await?;
        }
    }
    let key_path = data_dir.join(WEB_KEY_FILE);
    let csrf_key = match std::fs::read_to_string(&key_path) {
        Ok(k) if k.trim().len() >= 32 => k.trim().to_owned(),
        _ => {
            let k = crate::auth::new_secret("");
            crate::app::write_private(&key_path, &k)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", key_path.display()))?;
            k
        }
    };
    let csrf_key = if store.is_shared() {
        store.meta_or_set("web_csrf_key", &csrf_key).await?
    } else {
        csrf_key
    };
    Ok(web::router(web::WebConfig {
        gateway_url: loopback_url(addr),
        csrf_key,
        secure_cookies: public_url.is_some_and(|u| u.starts_with("https://")),
    }))
}

/// Starts the Telegram bridge inside `serve`: a fresh API key replaces the previous start's,
/// and the bridge reaches the gateway on loopback.
pub(crate) async fn spawn_telegram(
    settings: &TelegramSettings,
    auth: &Auth,
    addr: SocketAddr,
    data_dir: &Path,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let secret = fresh_key(auth, "bridge:telegram").await?;
    let cfg = settings.bridge_config(loopback_url(addr), secret, data_dir);
    spawn_until("telegram", shutdown, |stop| async move {
        bridges::telegram::run(cfg, stop)
            .await
            .map_err(|e| e.to_string())
    });
    Ok(())
}

/// Starts the email bridge inside `serve`, like [`spawn_telegram`].
pub(crate) async fn spawn_email(
    settings: &EmailSettings,
    auth: &Auth,
    addr: SocketAddr,
    data_dir: &Path,
    public_url: Option<String>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let secret = fresh_key(auth, "bridge:email").await?;
    let cfg = settings.bridge_config(loopback_url(addr), secret, data_dir, public_url);
    spawn_until("email", shutdown, |stop| async move {
        bridges::email::run(cfg, stop)
            .await
            .map_err(|e| e.to_string())
    });
    Ok(())
}
