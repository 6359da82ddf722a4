//! Settings of the Telegram bridge (flags and `SWITCHBOARD_TELEGRAM_*`), checked at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bridges::telegram::webhook::{self, WebhookConfig};
use clap::Args;

#[derive(Debug, Clone, Args, Default)]
pub struct TelegramArgs {
    /// Telegram bot token (from @BotFather). When set, `serve` runs the Telegram bridge.
    #[arg(
        long = "telegram-bot-token",
        env = "SWITCHBOARD_TELEGRAM_BOT_TOKEN",
        hide_env_values = true
    )]
    pub(crate) bot_token: Option<String>,
    /// Bot API base URL (default https://api.telegram.org).
    #[arg(long = "telegram-api-url", env = "SWITCHBOARD_TELEGRAM_API_URL")]
    pub(crate) api_url: Option<String>,
    /// Comma-separated Telegram user ids allowed to use the bot (others must /pair).
    #[arg(
        long = "telegram-allowed-users",
        env = "SWITCHBOARD_TELEGRAM_ALLOWED_USERS"
    )]
    pub(crate) allowed_users: Option<String>,
    /// The flow a plain message starts (default `chat`).
    #[arg(
        long = "telegram-default-flow",
        env = "SWITCHBOARD_TELEGRAM_DEFAULT_FLOW"
    )]
    pub(crate) default_flow: Option<String>,
    /// The bridge's state file (default: telegram.sqlite in the data dir).
    #[arg(long = "telegram-state", env = "SWITCHBOARD_TELEGRAM_STATE")]
    pub(crate) state: Option<PathBuf>,
    /// Long-poll timeout of getUpdates, e.g. `10s` (at most 15s).
    #[arg(
        long = "telegram-poll-timeout",
        env = "SWITCHBOARD_TELEGRAM_POLL_TIMEOUT"
    )]
    pub(crate) poll_timeout: Option<String>,
    /// Webhook mode: the public URL Telegram posts updates to (instead of long polling).
    #[arg(
        long = "telegram-webhook-url",
        env = "SWITCHBOARD_TELEGRAM_WEBHOOK_URL"
    )]
    pub(crate) webhook_url: Option<String>,
    /// Where the webhook listener binds (default 127.0.0.1:8443; a proxy forwards to it).
    #[arg(
        long = "telegram-webhook-listen",
        env = "SWITCHBOARD_TELEGRAM_WEBHOOK_LISTEN"
    )]
    pub(crate) webhook_listen: Option<String>,
    /// The webhook's secret token (default: a fresh random one at every start).
    #[arg(
        long = "telegram-webhook-secret",
        env = "SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub(crate) webhook_secret: Option<String>,
}

/// Checked Telegram settings, without the gateway side (URL and token) yet.
#[derive(Debug, Clone)]
pub(crate) struct TelegramSettings {
    pub(crate) bot_token: String,
    pub(crate) api_url: Option<url::Url>,
    pub(crate) allowed_users: Vec<u64>,
    pub(crate) default_flow: String,
    pub(crate) state: Option<PathBuf>,
    pub(crate) poll_timeout: Duration,
    pub(crate) webhook: Option<WebhookConfig>,
}

impl TelegramArgs {
    /// None when no bot token is set (the bridge is off); problems are collected.
    pub(crate) fn resolve(self, problems: &mut Vec<String>) -> Option<TelegramSettings> {
        let bot_token = self.bot_token.filter(|t| !t.trim().is_empty())?;
        let api_url = self.api_url.filter(|u| !u.is_empty()).and_then(|u| {
            url::Url::parse(&u)
                .map_err(|e| {
                    problems.push(format!(
                        "SWITCHBOARD_TELEGRAM_API_URL `{u}` is not a URL ({e}); e.g. https://api.telegram.org"
                    ))
                })
                .ok()
        });
        let mut allowed_users = Vec::new();
        for id in self.allowed_users.iter().flat_map(|s| s.split(',')) {
            let id = id.trim();
            if id.is_empty() {
                continue;
            }
            match id.parse::<u64>() {
                Ok(n) => allowed_users.push(n),
                Err(_) => problems.push(format!(
                    "SWITCHBOARD_TELEGRAM_ALLOWED_USERS: `{id}` is not a numeric Telegram user id"
                )),
            }
        }
        let poll_timeout = match self.poll_timeout.as_deref().map(humantime::parse_duration) {
            None => Duration::from_secs(10),
            Some(Ok(d)) if d <= Duration::from_secs(15) => d,
            Some(_) => {
                problems.push(
                    "SWITCHBOARD_TELEGRAM_POLL_TIMEOUT must be a duration of at most 15s, e.g. `10s`"
                        .into(),
                );
                Duration::from_secs(10)
            }
        };
        let webhook = resolve_webhook(
            self.webhook_url,
            self.webhook_listen,
            self.webhook_secret,
            problems,
        );
        Some(TelegramSettings {
            webhook,
            bot_token,
            api_url,
            allowed_users,
            default_flow: self.default_flow.unwrap_or_else(|| "chat".into()),
            state: self.state,
            poll_timeout,
        })
    }
}

/// The webhook settings: off without a URL; the listen address and secret are checked.
fn resolve_webhook(
    url: Option<String>,
    listen: Option<String>,
    secret: Option<String>,
    problems: &mut Vec<String>,
) -> Option<WebhookConfig> {
    let url = url.filter(|u| !u.trim().is_empty())?;
    let url = match url::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") => u,
        _ => {
            problems.push(format!(
                "SWITCHBOARD_TELEGRAM_WEBHOOK_URL `{url}` is not an http(s) URL; e.g. https://bot.example.com/telegram"
            ));
            return None;
        }
    };
    let listen = listen.unwrap_or_else(|| "127.0.0.1:8443".into());
    let listen = match listen.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            problems.push(format!(
                "SWITCHBOARD_TELEGRAM_WEBHOOK_LISTEN `{listen}` is not an address; e.g. 127.0.0.1:8443"
            ));
            return None;
        }
    };
    let secret = secret.unwrap_or_else(webhook::random_secret);
    if let Err(why) = webhook::check_secret(&secret) {
        problems.push(format!("SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET {why}"));
        return None;
    }
    Some(WebhookConfig {
        url,
        listen,
        secret,
    })
}

impl TelegramSettings {
    /// The bridge's configuration against the gateway at `gateway_url`.
    pub(crate) fn bridge_config(
        &self,
        gateway_url: String,
        gateway_token: String,
        data_dir: &Path,
    ) -> bridges::telegram::TelegramConfig {
        let mut c = bridges::telegram::TelegramConfig::new(
            self.bot_token.clone(),
            gateway_url,
            gateway_token,
        );
        c.api_url = self.api_url.clone();
        c.allowed_users = self.allowed_users.clone();
        c.default_flow = self.default_flow.clone();
        c.state_path = self
            .state
            .clone()
            .unwrap_or_else(|| data_dir.join("telegram.sqlite"));
        c.poll_timeout = self.poll_timeout;
        c.webhook = self.webhook.clone();
        c
    }
}

/// `switchboard doctor`: asks Telegram who the bot is (`getMe`) with the configured token.
/// Errors never show the token (it is in the URL).
pub(crate) async fn check_telegram(
    http: &reqwest::Client,
    s: &TelegramSettings,
) -> Result<String, String> {
    let base = s
        .api_url
        .as_ref()
        .map_or("https://api.telegram.org".to_owned(), |u| {
            u.as_str().trim_end_matches('/').to_owned()
        });
    let reply = http
        .post(format!("{base}/bot{}/getMe", s.bot_token))
        .send()
        .await
        .map_err(|e| {
            format!(
                "cannot reach {base} ({})",
                crate::net::explain(&e.without_url())
            )
        })?;
    let status = reply.status();
    let body: serde_json::Value = reply.json().await.unwrap_or_default();
    match body["result"]["username"].as_str() {
        Some(name) if body["ok"] == true => Ok(format!("@{name}")),
        _ if status.as_u16() == 401 || status.as_u16() == 404 => Err(
            "Telegram refused the bot token: check SWITCHBOARD_TELEGRAM_BOT_TOKEN (from @BotFather)".into(),
        ),
        _ => Err(format!("getMe answered {status}: {}", body["description"].as_str().unwrap_or("no description"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_bot_token_means_no_bridge() {
        let mut problems = Vec::new();
        assert!(TelegramArgs::default().resolve(&mut problems).is_none());
        assert!(problems.is_empty());
    }

    #[test]
    fn bad_settings_name_the_variable_and_how_to_fix_it() {
        let args = TelegramArgs {
            bot_token: Some("1:x".into()),
            api_url: Some("not a url".into()),
            allowed_users: Some("12, alice".into()),
            poll_timeout: Some("1m".into()),
            ..Default::default()
        };
        let mut problems = Vec::new();
        let s = args.resolve(&mut problems);
        assert_eq!(s.map(|s| s.allowed_users), Some(vec![12]));
        let all = problems.join("\n");
        assert!(
            all.contains("SWITCHBOARD_TELEGRAM_API_URL `not a url`"),
            "{all}"
        );
        assert!(
            all.contains("`alice` is not a numeric Telegram user id"),
            "{all}"
        );
        assert!(all.contains("SWITCHBOARD_TELEGRAM_POLL_TIMEOUT"), "{all}");
    }

    #[test]
    fn webhook_settings_are_checked() {
        let with = |url: &str, listen: Option<&str>, secret: Option<&str>| {
            let args = TelegramArgs {
                bot_token: Some("1:x".into()),
                webhook_url: Some(url.into()),
                webhook_listen: listen.map(Into::into),
                webhook_secret: secret.map(Into::into),
                ..Default::default()
            };
            let mut problems = Vec::new();
            let s = args.resolve(&mut problems);
            (s.and_then(|s| s.webhook), problems.join("\n"))
        };
        let (w, problems) = with("https://bot.example.com/tg", None, None);
        let w = w.unwrap_or_else(|| panic!("{problems}"));
        assert_eq!(w.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(w.url.path(), "/tg");
        assert!(webhook::check_secret(&w.secret).is_ok());
        let (w, problems) = with("ftp://x", Some("nowhere"), Some("bad secret"));
        assert!(w.is_none());
        assert!(
            problems.contains("SWITCHBOARD_TELEGRAM_WEBHOOK_URL `ftp://x`"),
            "{problems}"
        );
        let (_, problems) = with("https://x/tg", Some("nowhere"), None);
        assert!(
            problems.contains("SWITCHBOARD_TELEGRAM_WEBHOOK_LISTEN `nowhere`"),
            "{problems}"
        );
        let (_, problems) = with("https://x/tg", None, Some("bad secret"));
        assert!(
            problems.contains("SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET must be"),
            "{problems}"
        );
    }
}
