//! The Telegram bridge: people chat with workflows and answer prompts from Telegram.
//!
//! Two loops share one context:
//! - [`inbound`] long-polls `getUpdates` (or, in webhook mode, [`webhook`] receives the
//!   updates Telegram pushes) and turns each update into at most one gateway
//!   request (a run start keyed by the update, or a command whose `command_id` derives from
//!   the update id). The Telegram offset is committed only after the gateway accepted it.
//! - [`outbound`] follows the gateway's global ledger stream from a cursor kept in the
//!   bridge's state file and shows the runs bound to a chat (its session `telegram:<chat>`,
//!   or `notify: ["telegram:<chat>"]`): what they say, LLM replies growing as they stream,
//!   prompts with buttons, answers and run ends.
//!
//! It talks to the gateway only through `protocol` and keeps its own state in [`state`].

pub mod api;
mod inbound;
mod outbound;
pub mod render;
pub mod state;
pub mod webhook;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use teloxide::adaptors::throttle::Limits;
use teloxide::prelude::{Requester, RequesterExt};

use state::State;

/// What the bridge needs; built from `SWITCHBOARD_TELEGRAM_*` by the `switchboard` binary.
#[derive(Debug, Clone)]
pub struct TelegramConfig {
    pub bot_token: String,
    /// Bot API base URL (default `https://api.telegram.org`).
    pub api_url: Option<url::Url>,
    /// The gateway's base URL and a token with the `read`, `run` and `command` scopes.
    pub gateway_url: String,
    pub gateway_token: String,
    /// Telegram user ids that may use the bot (others must `/pair`).
    pub allowed_users: Vec<u64>,
    /// The flow a plain message starts.
    pub default_flow: String,
    /// The bridge's own SQLite file.
    pub state_path: PathBuf,
    /// Long-poll timeout of `getUpdates`.
    pub poll_timeout: Duration,
    /// How often a streamed LLM reply's message is edited.
    pub edit_every: Duration,
    /// Webhook mode instead of long polling.
    pub webhook: Option<webhook::WebhookConfig>,
}

impl TelegramConfig {
    pub fn new(bot_token: String, gateway_url: String, gateway_token: String) -> Self {
        Self {
            bot_token,
            api_url: None,
            gateway_url,
            gateway_token,
            allowed_users: Vec::new(),
            default_flow: "chat".into(),
            state_path: PathBuf::from("telegram-bridge.sqlite"),
            poll_timeout: Duration::from_secs(10),
            edit_every: Duration::from_secs(1),
            webhook: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("{0}")]
    Config(String),
    #[error("bridge state: {0}")]
    State(String),
    #[error("bridge state: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("bridge state: {0}")]
    Db(#[from] crate::db::DbError),
    #[error("bridge state: {0}")]
    Json(#[from] serde_json::Error),
    #[error("telegram: {0}")]
    Telegram(#[from] teloxide::RequestError),
    #[error("gateway: {0}")]
    Gateway(#[from] protocol::ClientError),
}

/// What both loops share.
pub(crate) struct Ctx {
    pub bot: api::Bot,
    pub client: protocol::Client,
    pub state: State,
    pub cfg: TelegramConfig,
    /// The bot's own user id (part of every command id, so two bots never collide).
    pub bot_id: u64,
    /// Signs button data, binding each button to its chat (`render::Callback`).
    pub key: crate::keys::MacKey,
}

impl Ctx {
    pub async fn allowed(&self, user_id: u64) -> Result<bool, BridgeError> {
        Ok(self.cfg.allowed_users.contains(&user_id) || self.state.is_paired(user_id).await?)
    }

    /// Tells the gateway whom runs may notify here: allowed and paired users.
    pub async fn publish_allowlist(&self) {
        let mut ids: Vec<u64> = self.cfg.allowed_users.clone();
        match self.state.paired_users().await {
            Ok(p) => ids.extend(p),
            Err(e) => tracing::warn!(error = %e, "telegram bridge cannot read its paired users"),
        }
        ids.sort_unstable();
        ids.dedup();
        let allow = ids.iter().map(u64::to_string).collect();
        crate::reconnect::publish_allowlist(&self.client, "telegram", allow).await
    }
}

/// Runs the bridge until `shutdown` resolves. Fails fast on a bad configuration or state
/// file; Telegram and gateway outages are waited out.
pub async fn run(
    cfg: TelegramConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), BridgeError> {
    if cfg.bot_token.trim().is_empty() {
        return Err(BridgeError::Config(
            "the Telegram bot token is empty: set SWITCHBOARD_TELEGRAM_BOT_TOKEN".into(),
        ));
    }
    let state = State::open(&cfg.state_path)?;
    let key =
        crate::keys::MacKey::load_or_create(&cfg.state_path.with_extension("key"), "button key")
            .map_err(BridgeError::Config)?;
    let client = protocol::Client::new(&cfg.gateway_url, Some(cfg.gateway_token.clone()))?;
    let mut bot = teloxide::Bot::new(cfg.bot_token.clone());
    if let Some(url) = &cfg.api_url {
        bot = bot.set_api_url(url.clone());
    }
    let bot = bot.throttle(Limits::default());
    let me = api::retrying("getMe", || {
        let req = bot.get_me();
        async move { req.await }
    })
    .await?;
    tracing::info!(bot = %me.username(), id = me.id.0, "telegram bridge connected");
    let hook = cfg.webhook.clone();
    let ctx = Arc::new(Ctx {
        bot,
        client,
        state,
        bot_id: me.id.0,
        cfg,
        key,
    });
    let publish = {
        let ctx = ctx.clone();
        tokio::spawn(async move { ctx.publish_allowlist().await })
    };
    let inbound = match hook {
        Some(w) => webhook::start(ctx.clone(), w).await?,
        None => {
            // Long polling and a webhook exclude each other; polling is the default.
            api::retrying("deleteWebhook", || {
                let req = ctx.bot.delete_webhook();
                async move { req.await }
            })
            .await?;
            tokio::spawn(inbound::poll(ctx.clone()))
        }
    };
    let outbound = tokio::spawn(outbound::follow(ctx));
    shutdown.await;
    publish.abort();
    inbound.abort();
    outbound.abort();
    tracing::info!("telegram bridge stopped");
    Ok(())
}
