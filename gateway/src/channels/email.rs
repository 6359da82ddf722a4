//! Settings of the email bridge (flags and `SWITCHBOARD_EMAIL_*`), checked at start: every
//! problem is named with the variable to fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bridges::email::{EmailConfig, Mode, Server, Tls};
use clap::Args;

#[derive(Debug, Clone, Args, Default)]
pub struct EmailArgs {
    /// IMAP server for replies. When set, `serve` runs the email bridge.
    #[arg(
        id = "email-imap-host",
        long = "email-imap-host",
        env = "SWITCHBOARD_EMAIL_IMAP_HOST"
    )]
    pub(crate) imap_host: Option<String>,
    /// IMAP port (default 993 with tls, else 143).
    #[arg(
        id = "email-imap-port",
        long = "email-imap-port",
        env = "SWITCHBOARD_EMAIL_IMAP_PORT"
    )]
    pub(crate) imap_port: Option<String>,
    #[arg(
        id = "email-imap-user",
        long = "email-imap-user",
        env = "SWITCHBOARD_EMAIL_IMAP_USER"
    )]
    pub(crate) imap_user: Option<String>,
    #[arg(
        id = "email-imap-password",
        long = "email-imap-password",
        env = "SWITCHBOARD_EMAIL_IMAP_PASSWORD",
        hide_env_values = true
    )]
    pub(crate) imap_password: Option<String>,
    /// `tls` (default), `starttls` or `none`.
    #[arg(
        id = "email-imap-tls",
        long = "email-imap-tls",
        env = "SWITCHBOARD_EMAIL_IMAP_TLS"
    )]
    pub(crate) imap_tls: Option<String>,
    /// The mailbox watched for replies (default INBOX).
    #[arg(
        id = "email-imap-mailbox",
        long = "email-imap-mailbox",
        env = "SWITCHBOARD_EMAIL_IMAP_MAILBOX"
    )]
    pub(crate) mailbox: Option<String>,
    /// SMTP server for outgoing mail.
    #[arg(
        id = "email-smtp-host",
        long = "email-smtp-host",
        env = "SWITCHBOARD_EMAIL_SMTP_HOST"
    )]
    pub(crate) smtp_host: Option<String>,
    /// SMTP port (default 465 with tls, 587 with starttls, else 25).
    #[arg(
        id = "email-smtp-port",
        long = "email-smtp-port",
        env = "SWITCHBOARD_EMAIL_SMTP_PORT"
    )]
    pub(crate) smtp_port: Option<String>,
    #[arg(
        id = "email-smtp-user",
        long = "email-smtp-user",
        env = "SWITCHBOARD_EMAIL_SMTP_USER"
    )]
    pub(crate) smtp_user: Option<String>,
    #[arg(
        id = "email-smtp-password",
        long = "email-smtp-password",
        env = "SWITCHBOARD_EMAIL_SMTP_PASSWORD",
        hide_env_values = true
    )]
    pub(crate) smtp_password: Option<String>,
    /// `starttls` (default), `tls` or `none`.
    #[arg(
        id = "email-smtp-tls",
        long = "email-smtp-tls",
        env = "SWITCHBOARD_EMAIL_SMTP_TLS"
    )]
    pub(crate) smtp_tls: Option<String>,
    /// The bridge's address, e.g. `Switchboard <switchboard@example.com>`.
    #[arg(id = "email-from", long = "email-from", env = "SWITCHBOARD_EMAIL_FROM")]
    pub(crate) from: Option<String>,
    /// Comma-separated addresses or `@domain`s trusted to start runs and answer any prompt.
    #[arg(
        id = "email-allowed-senders",
        long = "email-allowed-senders",
        env = "SWITCHBOARD_EMAIL_ALLOWED_SENDERS"
    )]
    pub(crate) allowed_senders: Option<String>,
    /// The authserv-id your receiving mail server writes in `Authentication-Results`
    /// (e.g. `mx.example.com`). When set, mail counts only if that server saw DMARC pass
    /// (or DKIM pass for the `From:` domain); set it whenever the mailbox receives mail
    /// from the internet, or a forged `From:` passes for an allowed sender.
    #[arg(
        id = "email-authserv-id",
        long = "email-authserv-id",
        env = "SWITCHBOARD_EMAIL_AUTHSERV_ID"
    )]
    pub(crate) authserv_id: Option<String>,
    /// The flow a new mail starts (default `chat`).
    #[arg(
        id = "email-default-flow",
        long = "email-default-flow",
        env = "SWITCHBOARD_EMAIL_DEFAULT_FLOW"
    )]
    pub(crate) default_flow: Option<String>,
    /// What runs bound by `notify` mail: `asks_only` (default) or `all`.
    #[arg(
        id = "email-notify",
        long = "email-notify",
        env = "SWITCHBOARD_EMAIL_NOTIFY"
    )]
    pub(crate) notify: Option<String>,
    /// Per-flow modes, e.g. `chat=all,approval=asks_only`.
    #[arg(
        id = "email-flow-notify",
        long = "email-flow-notify",
        env = "SWITCHBOARD_EMAIL_FLOW_NOTIFY"
    )]
    pub(crate) flow_notify: Option<String>,
    /// The bridge's state file (default: email.sqlite in the data dir).
    #[arg(
        id = "email-state",
        long = "email-state",
        env = "SWITCHBOARD_EMAIL_STATE"
    )]
    pub(crate) state: Option<PathBuf>,
    /// How long an IMAP IDLE lasts before it is renewed (default 10m, at most 29m).
    #[arg(
        id = "email-idle-timeout",
        long = "email-idle-timeout",
        env = "SWITCHBOARD_EMAIL_IDLE_TIMEOUT"
    )]
    pub(crate) idle_timeout: Option<String>,
    /// How often to poll when the server lacks IDLE (default 30s).
    #[arg(
        id = "email-poll-every",
        long = "email-poll-every",
        env = "SWITCHBOARD_EMAIL_POLL_EVERY"
    )]
    pub(crate) poll_every: Option<String>,
    /// First SMTP retry delay, doubling (default 5s).
    #[arg(
        id = "email-retry-base",
        long = "email-retry-base",
        env = "SWITCHBOARD_EMAIL_RETRY_BASE"
    )]
    pub(crate) retry_base: Option<String>,
    /// Attempts per mail before it is marked failed (default 10).
    #[arg(
        id = "email-max-attempts",
        long = "email-max-attempts",
        env = "SWITCHBOARD_EMAIL_MAX_ATTEMPTS"
    )]
    pub(crate) max_attempts: Option<u32>,
}

/// Checked email settings, without the gateway side (URL and token) yet.
#[derive(Debug, Clone)]
pub(crate) struct EmailSettings {
    /// The bridge's configuration, but for the gateway side (URL, token, public URL) and
    /// the state file, which [`EmailSettings::bridge_config`] fills in.
    pub(crate) config: EmailConfig,
    /// The state file, when set explicitly (else it goes in the data dir).
    pub(crate) state: Option<PathBuf>,
}

fn list(s: Option<&str>) -> Vec<String> {
    s.into_iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn duration(
    v: Option<&str>,
    var: &str,
    default: Duration,
    max: Duration,
    problems: &mut Vec<String>,
) -> Duration {
    match v.map(humantime::parse_duration) {
        None => default,
        Some(Ok(d)) if !d.is_zero() && d <= max => d,
        Some(_) => {
            problems.push(format!(
                "{var} must be a duration between 1s and {}, e.g. `{}`",
                humantime::format_duration(max),
                humantime::format_duration(default)
            ));
            default
        }
    }
}

/// One server's settings (`which` is `IMAP` or `SMTP`).
#[allow(clippy::too_many_arguments)]
fn server(
    which: &str,
    host: Option<String>,
    port: Option<String>,
    user: Option<String>,
    password: Option<String>,
    tls: Option<String>,
    default_tls: Tls,
    ports: [u16; 3],
    problems: &mut Vec<String>,
) -> Server {
    let var = |v: &str| format!("SWITCHBOARD_EMAIL_{which}_{v}");
    let host = host.filter(|h| !h.trim().is_empty()).unwrap_or_else(|| {
        problems.push(format!(
            "{} is required for the email bridge (the {which} server's host name)",
            var("HOST")
        ));
        String::new()
    });
    let tls = match tls.as_deref() {
        None => default_tls,
        Some(t) => Tls::parse(t).unwrap_or_else(|| {
            problems.push(format!(
                "{} `{t}` must be `tls`, `starttls` or `none`",
                var("TLS")
            ));
            default_tls
        }),
    };
    let default_port = match tls {
        Tls::Tls => ports[0],
        Tls::StartTls => ports[1],
        Tls::None => ports[2],
    };
    let port = match port.as_deref().map(str::parse::<u16>) {
        None => default_port,
        Some(Ok(p)) if p > 0 => p,
        Some(_) => {
            problems.push(format!("{} must be a port number (1-65535)", var("PORT")));
            default_port
        }
    };
    Server {
        host,
        port,
        user: user.filter(|u| !u.is_empty()),
        password,
        tls,
    }
}

impl EmailArgs {
    /// None when no IMAP host is set (the bridge is off); problems are collected.
    pub(crate) fn resolve(self, problems: &mut Vec<String>) -> Option<EmailSettings> {
        self.imap_host.as_deref().filter(|h| !h.trim().is_empty())?;
        let imap = server(
            "IMAP",
            self.imap_host,
            self.imap_port,
            self.imap_user,
            self.imap_password,
            self.imap_tls,
            Tls::Tls,
            [993, 143, 143],
            problems,
        );
        if imap.user.is_none() || imap.password.is_none() {
            problems.push(
                "SWITCHBOARD_EMAIL_IMAP_USER and SWITCHBOARD_EMAIL_IMAP_PASSWORD are required to read replies"
                    .into(),
            );
        }
        let smtp = server(
            "SMTP",
            self.smtp_host,
            self.smtp_port,
            self.smtp_user,
            self.smtp_password,
            self.smtp_tls,
            Tls::StartTls,
            [465, 587, 25],
            problems,
        );
        let from = self.from.unwrap_or_default();
        if from.parse::<lettre_free::Mailbox>().is_err() {
            problems.push(format!(
                "SWITCHBOARD_EMAIL_FROM `{from}` must be an address, e.g. `Switchboard <switchboard@example.com>`"
            ));
        }
        let mode = |m: &str, var: &str, problems: &mut Vec<String>| {
            Mode::parse(m).unwrap_or_else(|| {
                problems.push(format!("{var}: `{m}` must be `all` or `asks_only`"));
                Mode::AsksOnly
            })
        };
        let default_mode = self
            .notify
            .as_deref()
            .map(|m| mode(m, "SWITCHBOARD_EMAIL_NOTIFY", problems))
            .unwrap_or(Mode::AsksOnly);
        let mut flow_modes = Vec::new();
        for entry in list(self.flow_notify.as_deref()) {
            match entry.split_once('=') {
                Some((flow, m)) => flow_modes.push((
                    flow.trim().to_owned(),
                    mode(m.trim(), "SWITCHBOARD_EMAIL_FLOW_NOTIFY", problems),
                )),
                None => problems.push(format!(
                    "SWITCHBOARD_EMAIL_FLOW_NOTIFY: `{entry}` must be `flow=all` or `flow=asks_only`"
                )),
            }
        }
        let allowed_senders = list(self.allowed_senders.as_deref());
        let plain = |s: &str| {
            let s = s.strip_prefix('*').unwrap_or(s);
            match s.strip_prefix('@') {
                Some(domain) => crate::auth::reach::plain_address(&format!("x@{domain}")),
                None => crate::auth::reach::plain_address(s),
            }
        };
        if let Some(bad) = allowed_senders.iter().find(|s| !plain(s)) {
            problems.push(format!(
                "SWITCHBOARD_EMAIL_ALLOWED_SENDERS: `{bad}` must be an address or `@domain`"
            ));
        }
        let config = EmailConfig {
            imap,
            smtp,
            mailbox: self.mailbox.unwrap_or_else(|| "INBOX".into()),
            from,
            allowed_senders,
            authserv_id: self
                .authserv_id
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
            default_flow: self.default_flow.unwrap_or_else(|| "chat".into()),
            default_mode,
            flow_modes,
            gateway_url: String::new(),
            gateway_token: String::new(),
            public_url: None,
            state_path: PathBuf::new(),
            idle_timeout: duration(
                self.idle_timeout.as_deref(),
                "SWITCHBOARD_EMAIL_IDLE_TIMEOUT",
                Duration::from_secs(600),
                Duration::from_secs(29 * 60),
                problems,
            ),
            poll_every: duration(
                self.poll_every.as_deref(),
                "SWITCHBOARD_EMAIL_POLL_EVERY",
                Duration::from_secs(30),
                Duration::from_secs(3600),
                problems,
            ),
            retry_base: duration(
                self.retry_base.as_deref(),
                "SWITCHBOARD_EMAIL_RETRY_BASE",
                Duration::from_secs(5),
                Duration::from_secs(3600),
                problems,
            ),
            max_attempts: self.max_attempts.unwrap_or(10).max(1),
        };
        Some(EmailSettings {
            config,
            state: self.state,
        })
    }
}

/// A tiny address check without pulling lettre into the gateway: `Name <a@b>` or `a@b`.
mod lettre_free {
    pub(crate) struct Mailbox;

    impl std::str::FromStr for Mailbox {
        type Err = ();

        fn from_str(s: &str) -> Result<Self, ()> {
            let s = s.trim();
            let addr = match (s.rfind('<'), s.rfind('>')) {
                (Some(a), Some(b)) if a < b && b == s.len() - 1 => &s[a + 1..b],
                (None, None) => s,
                _ => return Err(()),
            };
            match addr.split_once('@') {
                Some((l, d)) if !l.is_empty() && !d.is_empty() && !addr.contains(' ') => Ok(Self),
                _ => Err(()),
            }
        }
    }
}

impl EmailSettings {
    /// The bridge's configuration against the gateway at `gateway_url`.
    pub(crate) fn bridge_config(
        &self,
        gateway_url: String,
        gateway_token: String,
        data_dir: &Path,
        public_url: Option<String>,
    ) -> EmailConfig {
        EmailConfig {
            gateway_url,
            gateway_token,
            public_url,
            state_path: self
                .state
                .clone()
                .unwrap_or_else(|| data_dir.join("email.sqlite")),
            ..self.config.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> EmailArgs {
        EmailArgs {
            imap_host: Some("127.0.0.1".into()),
            imap_user: Some("bot@example.test".into()),
            imap_password: Some("secret".into()),
            imap_tls: Some("none".into()),
            smtp_host: Some("127.0.0.1".into()),
            smtp_port: Some("2525".into()),
            smtp_tls: Some("none".into()),
            from: Some("Switchboard <bot@example.test>".into()),
            allowed_senders: Some("alice@example.test, @corp.test".into()),
            flow_notify: Some("chat=all".into()),
            ..Default::default()
        }
    }

    #[test]
    fn no_imap_host_means_no_bridge() {
        let mut problems = Vec::new();
        assert!(EmailArgs::default().resolve(&mut problems).is_none());
        assert!(problems.is_empty());
    }

    #[test]
    fn good_settings_resolve_with_defaults() {
        let mut problems = Vec::new();
        let s = good().resolve(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let s = s.unwrap_or_else(|| panic!("settings"));
        let c = s.bridge_config("http://g".into(), "t".into(), Path::new("/d"), None);
        assert_eq!(c.state_path, PathBuf::from("/d/email.sqlite"));
        assert_eq!(c.gateway_url, "http://g");
        let s = c;
        assert_eq!((s.imap.port, s.imap.tls), (143, Tls::None));
        assert_eq!((s.smtp.port, s.smtp.tls), (2525, Tls::None));
        assert_eq!(s.allowed_senders, vec!["alice@example.test", "@corp.test"]);
        assert_eq!(s.flow_modes, vec![("chat".to_owned(), Mode::All)]);
        assert_eq!(s.default_mode, Mode::AsksOnly);
        assert_eq!(s.mailbox, "INBOX");
    }

    #[test]
    fn bad_settings_name_the_variable_and_how_to_fix_it() {
        let args = EmailArgs {
            imap_tls: Some("ssl".into()),
            imap_password: None,
            smtp_host: None,
            smtp_port: Some("99999".into()),
            from: Some("not an address".into()),
            notify: Some("everything".into()),
            flow_notify: Some("chat".into()),
            allowed_senders: Some("alice".into()),
            idle_timeout: Some("2h".into()),
            ..good()
        };
        let mut problems = Vec::new();
        args.resolve(&mut problems);
        let all = problems.join("\n");
        for needle in [
            "SWITCHBOARD_EMAIL_IMAP_TLS `ssl` must be `tls`, `starttls` or `none`",
            "SWITCHBOARD_EMAIL_IMAP_PASSWORD are required",
            "SWITCHBOARD_EMAIL_SMTP_HOST is required",
            "SWITCHBOARD_EMAIL_SMTP_PORT must be a port number",
            "SWITCHBOARD_EMAIL_FROM `not an address` must be an address",
            "SWITCHBOARD_EMAIL_NOTIFY: `everything` must be `all` or `asks_only`",
            "SWITCHBOARD_EMAIL_FLOW_NOTIFY: `chat` must be",
            "SWITCHBOARD_EMAIL_ALLOWED_SENDERS: `alice`",
            "SWITCHBOARD_EMAIL_IDLE_TIMEOUT must be a duration",
        ] {
            assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
        }
    }
}
