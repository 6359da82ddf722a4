//! The email bridge: a run's questions arrive as mail, and replies resume the run.
//!
//! Three loops share one context:
//! - [`outbound`] follows the gateway's global ledger stream from a cursor kept in the
//!   bridge's state file. Runs bound to an address (`notify: ["email:<addr>"]`, or a run
//!   started by mail in session `email:<addr>`) get one mail per `ask`, and with mode `all`
//!   their `say` output and end too. Mail goes into the outbox in the same transaction as
//!   the cursor, so each prompt is mailed once.
//! - [`smtp`] sends the outbox over SMTP (lettre), retrying with back-off.
//! - [`imap`] watches the mailbox (async-imap, IDLE, or polling when the server lacks it),
//!   and hands each new message to [`inbound`], which turns a verified reply into a durable
//!   `resume` command (command id from its Message-ID) or a new mail into a run start.
//!   A message is marked `\Seen` only after the gateway accepted its request.
//!
//! It talks to the gateway only through `protocol` and keeps its own state in [`state`].

pub mod authres;
pub mod compose;
pub mod extract;
mod imap;
mod inbound;
mod outbound;
mod smtp;
pub mod state;
pub mod token;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use state::State;

/// How a connection to a mail server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain text (loopback test servers only).
    None,
    /// Plain connection upgraded with STARTTLS.
    StartTls,
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Tls,
}

impl Tls {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "none" => Self::None,
            "starttls" => Self::StartTls,
            "tls" => Self::Tls,
            _ => return None,
        })
    }
}

/// A mail server and how to log in to it.
#[derive(Debug, Clone)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls: Tls,
}

/// Which of a run's records are mailed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only questions.
    AsksOnly,
    /// Questions, what the run says, and its end.
    All,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "all" => Some(Self::All),
            "asks_only" => Some(Self::AsksOnly),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::AsksOnly => "asks_only",
        }
    }
}

/// What the bridge needs; built from `SWITCHBOARD_EMAIL_*` by the `switchboard` binary.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub imap: Server,
    pub smtp: Server,
    /// The mailbox watched for replies.
    pub mailbox: String,
    /// The bridge's address (`bot@example.com`), also the domain of its Message-IDs.
    pub from: String,
    /// Addresses (`alice@example.com`) or domains (`@example.com`) whose mail is trusted:
    /// new mail from them starts a run; their replies answer any run's prompt.
    pub allowed_senders: Vec<String>,
    /// The authserv-id of the receiving mail server's `Authentication-Results`; when set,
    /// mail counts only with DMARC (or aligned DKIM) passing there ([`authres`]).
    pub authserv_id: Option<String>,
    /// The flow a new mail (not a reply) starts.
    pub default_flow: String,
    /// Mode of runs bound by `notify` (runs started by mail always mail everything).
    pub default_mode: Mode,
    /// Per-flow modes, overriding `default_mode`.
    pub flow_modes: Vec<(String, Mode)>,
    /// The gateway's base URL and a token with the `read`, `run` and `command` scopes.
    pub gateway_url: String,
    pub gateway_token: String,
    /// The gateway's public URL, for links to runs in the web app.
    pub public_url: Option<String>,
    /// The bridge's own SQLite file; the reply-token key lives beside it.
    pub state_path: PathBuf,
    /// How long one IMAP IDLE lasts before it is renewed (servers drop it after 30 min).
    pub idle_timeout: Duration,
    /// How often the mailbox is polled when the server lacks IDLE.
    pub poll_every: Duration,
    /// First SMTP retry delay (doubling) and how many attempts a mail gets.
    pub retry_base: Duration,
    pub max_attempts: u32,
}

impl EmailConfig {
    /// The key file for reply tokens, beside the state file.
    pub fn key_path(&self) -> PathBuf {
        self.state_path.with_extension("key")
    }

    /// The domain of the bridge's address.
    pub fn domain(&self) -> String {
        self.from
            .rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('>').to_owned())
            .unwrap_or_else(|| "localhost".into())
    }

    /// The bridge's bare address, lower-case.
    pub fn address(&self) -> String {
        let f = self.from.trim();
        let bare = match (f.rfind('<'), f.rfind('>')) {
            (Some(a), Some(b)) if a < b => &f[a + 1..b],
            _ => f,
        };
        bare.trim().to_ascii_lowercase()
    }

    /// Whether mail from `address` is trusted.
    pub fn sender_allowed(&self, address: &str) -> bool {
        let a = address.to_ascii_lowercase();
        self.allowed_senders.iter().any(|s| {
            let s = s.trim().to_ascii_lowercase();
            match s.strip_prefix('@').or_else(|| s.strip_prefix("*@")) {
                Some(domain) => a.rsplit_once('@').is_some_and(|(_, d)| d == domain),
                None => a == s,
            }
        })
    }

    /// Whom runs may mail (published to the gateway): the allowed senders, `*@d` as `@d`.
    pub fn reachable(&self) -> Vec<String> {
        self.allowed_senders
            .iter()
            .map(|s| {
                let s = s.trim().to_ascii_lowercase();
                s.strip_prefix('*').map(str::to_owned).unwrap_or(s)
            })
            .collect()
    }

    /// The mode of a run of `flow` bound by `notify`.
    pub fn mode_of(&self, flow: &str) -> Mode {
        self.flow_modes
            .iter()
            .find(|(f, _)| f == flow)
            .map(|(_, m)| *m)
            .unwrap_or(self.default_mode)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
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
    #[error("imap: {0}")]
    Imap(#[from] async_imap::error::Error),
    #[error("imap: {0}")]
    Io(#[from] std::io::Error),
    #[error("smtp: {0}")]
    Smtp(String),
    #[error("gateway: {0}")]
    Gateway(#[from] protocol::ClientError),
}

/// What the loops share.
pub(crate) struct Ctx {
    pub client: protocol::Client,
    pub state: State,
    pub signer: token::Signer,
    pub style: compose::Style,
    pub cfg: EmailConfig,
    /// Wakes the SMTP sender when mail was enqueued.
    pub outbox: tokio::sync::Notify,
}

/// Runs the bridge until `shutdown` resolves. Fails fast on a bad configuration or state
/// file; mail server and gateway outages are waited out.
pub async fn run(
    cfg: EmailConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), EmailError> {
    if !cfg.from.contains('@') {
        return Err(EmailError::Config(format!(
            "SWITCHBOARD_EMAIL_FROM `{}` is not an address; e.g. switchboard@example.com",
            cfg.from
        )));
    }
    let state = State::open(&cfg.state_path)?;
    let signer = token::Signer::load_or_create(&cfg.key_path())?;
    let client = protocol::Client::new(&cfg.gateway_url, Some(cfg.gateway_token.clone()))?;
    let style = compose::Style {
        domain: cfg.domain(),
        public_url: cfg.public_url.clone(),
    };
    let transport = smtp::transport(&cfg.smtp)?;
    let ctx = Arc::new(Ctx {
        client,
        state,
        signer,
        style,
        cfg,
        outbox: tokio::sync::Notify::new(),
    });
    tracing::info!(imap = %ctx.cfg.imap.host, smtp = %ctx.cfg.smtp.host, "email bridge started");
    let publish = {
        let ctx = ctx.clone();
        async move {
            crate::reconnect::publish_allowlist(&ctx.client, "email", ctx.cfg.reachable()).await
        }
    };
    let tasks = [
        tokio::spawn(publish),
        tokio::spawn(outbound::follow(ctx.clone())),
        tokio::spawn(smtp::send_loop(ctx.clone(), transport)),
        tokio::spawn(imap::watch(ctx)),
    ];
    shutdown.await;
    for t in tasks {
        t.abort();
    }
    tracing::info!("email bridge stopped");
    Ok(())
}

/// `switchboard doctor`: logs in to the IMAP server and greets the SMTP server with the
/// configured credentials; what each said.
pub async fn check_servers(cfg: &EmailConfig) -> Vec<(&'static str, Result<String, String>)> {
    let login = async {
        let mut session = imap::connect(&cfg.imap).await?;
        let _ = session.logout().await;
        Ok::<_, EmailError>(())
    };
    let imap = match tokio::time::timeout(std::time::Duration::from_secs(30), login).await {
        Ok(Ok(())) => Ok(format!("logged in to {}:{}", cfg.imap.host, cfg.imap.port)),
        Ok(Err(e)) => Err(format!("{e}: check SWITCHBOARD_EMAIL_IMAP_*")),
        Err(_) => Err(format!(
            "{}:{} did not finish a login within 30 s: check SWITCHBOARD_EMAIL_IMAP_*",
            cfg.imap.host, cfg.imap.port
        )),
    };
    let smtp = match smtp::transport(&cfg.smtp) {
        Ok(t) => match t.test_connection().await {
            Ok(true) => Ok(format!("{}:{} answers", cfg.smtp.host, cfg.smtp.port)),
            Ok(false) => Err(format!(
                "{}:{} does not answer",
                cfg.smtp.host, cfg.smtp.port
            )),
            Err(e) => Err(format!("{e}: check SWITCHBOARD_EMAIL_SMTP_*")),
        },
        Err(e) => Err(format!("{e}: check SWITCHBOARD_EMAIL_SMTP_*")),
    };
    vec![("email imap", imap), ("email smtp", smtp)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EmailConfig {
        EmailConfig {
            imap: Server {
                host: "h".into(),
                port: 1,
                user: None,
                password: None,
                tls: Tls::None,
            },
            smtp: Server {
                host: "h".into(),
                port: 1,
                user: None,
                password: None,
                tls: Tls::None,
            },
            mailbox: "INBOX".into(),
            from: "Switchboard <Bot@Example.test>".into(),
            allowed_senders: vec!["alice@example.test".into(), "@corp.test".into()],
            authserv_id: None,
            default_flow: "chat".into(),
            default_mode: Mode::AsksOnly,
            flow_modes: vec![("chat".into(), Mode::All)],
            gateway_url: String::new(),
            gateway_token: String::new(),
            public_url: None,
            state_path: "x/email.sqlite".into(),
            idle_timeout: Duration::from_secs(60),
            poll_every: Duration::from_secs(30),
            retry_base: Duration::from_secs(1),
            max_attempts: 3,
        }
    }

    #[test]
    fn senders_match_by_address_or_domain() {
        let c = cfg();
        assert!(c.sender_allowed("Alice@Example.test"));
        assert!(c.sender_allowed("bob@corp.test"));
        assert!(!c.sender_allowed("bob@example.test"));
        assert!(!c.sender_allowed("mallory@evilcorp.test"));
    }

    #[test]
    fn the_bridge_address_domain_and_modes() {
        let c = cfg();
        assert_eq!(c.address(), "bot@example.test");
        assert_eq!(c.domain(), "Example.test");
        assert_eq!(c.mode_of("chat"), Mode::All);
        assert_eq!(c.mode_of("approval"), Mode::AsksOnly);
        assert_eq!(c.key_path(), PathBuf::from("x/email.key"));
        assert_eq!(Tls::parse("STARTTLS"), Some(Tls::StartTls));
        assert_eq!(Tls::parse("ssl"), None);
    }
}
