//! Configuration: command-line flags, `SWITCHBOARD_*` environment variables and an optional
//! TOML file (flags win over the environment, which wins over the file), validated once at
//! start with every problem listed and how to fix it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

mod admin;
mod groups;
mod integrations;
mod mcp;
mod ops;
mod security;

pub use admin::{AdminCommand, GroupsAction, PeopleAction, TokenAction};
pub use ops::{OpsArgs, OpsConfig};
pub use security::{SecurityArgs, SecurityConfig};

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Durable AI workflow gateway with multi-channel clients"
)]
pub struct Cli {
    /// TOML config file (keys: host, port, data_dir, flows_dir, auth_token, log_format, [llm] base_url/api_key/model, [mcp.servers.NAME], [security], [triggers.NAME], [groups.NAME] members).
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (HTTP API + runner; `--no-runner` for the API alone).
    Serve(ServeArgs),
    /// Run only the runner, beside `serve --no-runner` on the same data dir.
    Runner(ServeArgs),
    /// Check what `serve` needs: settings, data dir, store, disk, clock, the LLM provider,
    /// the bridges' credentials and the MCP servers. Each check says ok or what to fix.
    Doctor(ServeArgs),
    /// Start `serve` at boot or login: a systemd unit or a launchd property list.
    #[command(subcommand)]
    Service(crate::service::ServiceCommand),
    /// Copy a data dir while its gateway serves: the embedded store (one consistent
    /// commit) and the other files (token, keys, the bridges' state).
    Backup {
        #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Set on PostgreSQL, where these commands refuse (use pg_dump).
        #[arg(long, env = "SWITCHBOARD_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// A new (or empty) directory for the copy.
        out: PathBuf,
    },
    /// Lay a backup into a data dir that holds no store, for `serve` to pick up.
    Restore {
        #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        #[arg(long, env = "SWITCHBOARD_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// The backup's directory.
        input: PathBuf,
    },
    /// Delete runs that ended longer ago than `--older-than`, with their ledgers, inbox rows
    /// and finished children, on a stopped gateway (while it serves: SWITCHBOARD_RETENTION).
    Prune {
        #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        #[arg(long, env = "SWITCHBOARD_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// e.g. `30d`.
        #[arg(long)]
        older_than: String,
        /// Count what would go; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Copy an embedded store into an empty PostgreSQL database (stop the gateway first).
    Migrate {
        /// `sqlite:PATH`: a data dir, or its `switchboard.db`.
        #[arg(long)]
        from: String,
        /// `postgres://user@host:port/db` (to keep a password out of `ps`, set the URL in
        /// `SWITCHBOARD_MIGRATE_TO` instead).
        #[arg(long, env = "SWITCHBOARD_MIGRATE_TO", hide_env_values = true)]
        to: String,
    },
    /// Work with flow files.
    #[command(subcommand)]
    Flows(FlowsCommand),
    /// List runs.
    Runs {
        #[command(flatten)]
        client: ClientArgs,
        /// Only runs with this status.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// List schedules: next fire time and last result.
    Schedules {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a run of FLOW.
    Start {
        #[command(flatten)]
        client: ClientArgs,
        flow: String,
        /// Input as JSON (e.g. '{"text":"hi"}').
        #[arg(long)]
        input: Option<String>,
        #[arg(long)]
        session: Option<String>,
    },
    /// Follow a run's ledger live until it ends.
    Tail {
        #[command(flatten)]
        client: ClientArgs,
        run: String,
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Administration: pairing, devices, API keys, token rotation, people and groups.
    #[command(flatten)]
    Admin(AdminCommand),
    /// Run a channel bridge alone, against a gateway.
    #[command(subcommand)]
    Bridge(crate::channels::BridgeCommand),
    /// Answer the prompt RUN waits on.
    Answer {
        #[command(flatten)]
        client: ClientArgs,
        run: String,
        text: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum FlowsCommand {
    /// Check flow files; prints `file:line:column: problem` for each broken one.
    Check { files: Vec<PathBuf> },
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Gateway URL.
    #[arg(long, env = "SWITCHBOARD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API token (default: the token file in the data dir).
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, env = "SWITCHBOARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Serve the API without a runner (run `switchboard runner` on the same store).
    #[arg(long)]
    pub(crate) no_runner: bool,
    /// A `postgres://user@host:port/db` URL: the store several gateway nodes share
    /// (default: the embedded SQLite file in the data dir).
    #[arg(long, env = "SWITCHBOARD_DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,
    #[arg(long, env = "SWITCHBOARD_HOST")]
    pub(crate) host: Option<String>,
    #[arg(long, env = "SWITCHBOARD_PORT")]
    pub(crate) port: Option<u16>,
    #[arg(long, env = "SWITCHBOARD_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    #[arg(long, env = "SWITCHBOARD_FLOWS_DIR")]
    pub(crate) flows_dir: Option<PathBuf>,
    #[arg(long, env = "SWITCHBOARD_AUTH_TOKEN", hide_env_values = true)]
    pub(crate) auth_token: Option<String>,
    /// `text` or `json`.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT")]
    pub(crate) log_format: Option<String>,
    #[arg(long, env = "SWITCHBOARD_LLM_BASE_URL")]
    pub(crate) llm_base_url: Option<String>,
    #[arg(long, env = "SWITCHBOARD_LLM_API_KEY", hide_env_values = true)]
    pub(crate) llm_api_key: Option<String>,
    #[arg(long, env = "SWITCHBOARD_LLM_MODEL")]
    pub(crate) llm_model: Option<String>,
    /// Comma-separated glob patterns of allowed `Origin`s.
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS")]
    pub(crate) allowed_origins: Option<String>,
    /// Requests per second per device, API key or anonymous address (burst: twice that).
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT")]
    pub(crate) rate_limit: Option<u32>,
    /// Bad tokens from one address before it is locked out.
    #[arg(long, env = "SWITCHBOARD_LOCKOUT_AFTER")]
    pub(crate) lockout_after: Option<u32>,
    /// First lockout length (doubles with each further bad token), e.g. `1s`.
    #[arg(long, env = "SWITCHBOARD_LOCKOUT_BASE")]
    pub(crate) lockout_base: Option<String>,
    /// How long a pairing code stays valid, e.g. `10m`.
    #[arg(long, env = "SWITCHBOARD_PAIRING_TTL")]
    pub(crate) pairing_ttl: Option<String>,
    /// Largest request body in bytes.
    #[arg(long, env = "SWITCHBOARD_BODY_LIMIT")]
    pub(crate) body_limit: Option<usize>,
    /// The URL people reach this gateway at (for pairing links and QR codes).
    #[arg(long, env = "SWITCHBOARD_PUBLIC_URL")]
    pub(crate) public_url: Option<String>,
    /// How often an idle event stream gets a `: keep-alive` comment, e.g. `15s`.
    #[arg(long, env = "SWITCHBOARD_SSE_KEEPALIVE")]
    pub(crate) sse_keepalive: Option<String>,
    /// Events the in-process bus holds for a slow stream before dropping it (it resumes
    /// from its cursor).
    #[arg(long, env = "SWITCHBOARD_BUS_CAPACITY")]
    pub(crate) bus_capacity: Option<usize>,
    /// Triggers as `name=flow,…` (secrets: `SWITCHBOARD_TRIGGER_SECRET_<NAME>`).
    #[arg(long, env = "SWITCHBOARD_TRIGGERS")]
    pub(crate) triggers: Option<String>,
    /// How far a signed trigger's timestamp may be from now, e.g. `5m`.
    #[arg(long, env = "SWITCHBOARD_TRIGGER_WINDOW")]
    pub(crate) trigger_window: Option<String>,
    /// First webhook retry delay (doubles per failure), e.g. `2s`.
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_RETRY_BASE")]
    pub(crate) webhook_retry_base: Option<String>,
    /// Attempts before a webhook delivery is marked failed.
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_MAX_ATTEMPTS")]
    pub(crate) webhook_max_attempts: Option<u32>,
    /// How long `POST /v1/chat/completions` waits for its run to stop, e.g. `5m`.
    #[arg(long, env = "SWITCHBOARD_OPENAI_TIMEOUT")]
    pub(crate) openai_timeout: Option<String>,
    #[command(flatten)]
    pub(crate) security: SecurityArgs,
    #[command(flatten)]
    pub(crate) ops: OpsArgs,
    #[command(flatten)]
    pub(crate) telegram: crate::channels::TelegramArgs,
    #[command(flatten)]
    pub(crate) email: crate::channels::EmailArgs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    data_dir: Option<PathBuf>,
    flows_dir: Option<PathBuf>,
    auth_token: Option<String>,
    log_format: Option<String>,
    allowed_origins: Option<String>,
    rate_limit: Option<u32>,
    lockout_after: Option<u32>,
    lockout_base: Option<String>,
    pairing_ttl: Option<String>,
    body_limit: Option<usize>,
    public_url: Option<String>,
    sse_keepalive: Option<String>,
    bus_capacity: Option<usize>,
    trigger_window: Option<String>,
    webhook_retry_base: Option<String>,
    webhook_max_attempts: Option<u32>,
    openai_timeout: Option<String>,
    retention: Option<String>,
    retention_interval: Option<String>,
    otlp_endpoint: Option<String>,
    #[serde(default)]
    llm: FileLlm,
    /// `[security]`: trusted_proxies, http_allow, http_max_body, max_streams, max_payload.
    #[serde(default)]
    security: security::FileSecurity,
    #[serde(default)] // `[mcp.servers.NAME]`
    mcp: mcp::FileMcp,
    /// `[triggers.NAME] flow = "...", secret = "..."`.
    #[serde(default)]
    triggers: std::collections::BTreeMap<String, FileTrigger>,
    /// `[groups.NAME] members = [...]`: approver groups.
    #[serde(default)]
    groups: std::collections::BTreeMap<String, groups::FileGroup>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTrigger {
    flow: Option<String>,
    secret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLlm {
    base_url: Option<String>,
    api_key: Option<String>,
    model: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration of `switchboard serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub(crate) no_runner: bool,
    /// Where runs are stored: the data dir's SQLite file or a shared PostgreSQL database.
    pub(crate) store: crate::store::Location,
    pub(crate) addr: SocketAddr,
    pub(crate) data_dir: PathBuf,
    pub(crate) flows_dir: PathBuf,
    pub(crate) auth_token: Option<String>,
    pub log_format: LogFormat,
    pub(crate) llm: crate::llm::LlmConfig,
    pub(crate) limits: crate::auth::limits::LimitConfig,
    pub(crate) pairing_ttl: std::time::Duration,
    pub(crate) body_limit: usize,
    pub(crate) public_url: Option<String>,
    pub(crate) sse_keepalive: std::time::Duration,
    pub(crate) bus_capacity: usize,
    pub(crate) triggers: crate::triggers::TriggerConfig,
    pub(crate) webhook_retry: crate::webhooks::RetryPolicy,
    pub(crate) openai_timeout: std::time::Duration,
    pub(crate) security: SecurityConfig,
    /// The Telegram bridge, when `SWITCHBOARD_TELEGRAM_BOT_TOKEN` is set.
    pub(crate) telegram: Option<crate::channels::TelegramSettings>,
    /// The email bridge, when `SWITCHBOARD_EMAIL_IMAP_HOST` is set.
    pub(crate) email: Option<crate::channels::EmailSettings>,
    pub(crate) mcp: crate::mcp::McpConfig,
    /// Approver groups from the file, written to the store at start.
    pub(crate) groups: Vec<(String, Vec<String>)>,
    /// Retention and traces.
    pub(crate) ops: OpsConfig,
}

/// The default origin allowlist.
pub(crate) const DEFAULT_ORIGINS: &str = "http://localhost:*,http://127.0.0.1:*";

pub(super) fn duration(
    v: Option<String>,
    default: &str,
    what: &str,
    problems: &mut Vec<String>,
) -> std::time::Duration {
    let s = v.unwrap_or_else(|| default.to_owned());
    humantime::parse_duration(&s).unwrap_or_else(|e| {
        problems.push(format!(
            "{what} `{s}` is not a duration like 30s or 10m: {e}"
        ));
        humantime::parse_duration(default).unwrap_or_default()
    })
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

pub const DEFAULT_DATA_DIR: &str = "switchboard-data";

impl ServeConfig {
    /// Merges flags/environment over the optional TOML file and checks everything.
    pub fn resolve(mut args: ServeArgs, file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut f: FileConfig = match file {
            None => FileConfig::default(),
            Some(p) => match std::fs::read_to_string(p) {
                Ok(s) => toml::from_str(&s).unwrap_or_else(|e| {
                    problems.push(format!("config file {}: {e}", p.display()));
                    FileConfig::default()
                }),
                Err(e) => {
                    problems.push(format!("cannot read config file {}: {e}", p.display()));
                    FileConfig::default()
                }
            },
        };
        let more = integrations::resolve(&mut args, &mut f, &mut problems);
        let ops = std::mem::take(&mut args.ops).resolve(&mut f, &mut problems);
        if let Some(keep) = ops.retention
            && keep < more.triggers.window.saturating_mul(2)
        {
            problems.push(format!(
                "SWITCHBOARD_RETENTION must be at least twice SWITCHBOARD_TRIGGER_WINDOW ({}): a trigger delivery is refused again for that long",
                humantime::format_duration(more.triggers.window)
            ));
        }
        let security = std::mem::take(&mut args.security)
            .resolve(std::mem::take(&mut f.security), &mut problems);
        let mcp = std::mem::take(&mut f.mcp).resolve(&mut problems);
        let groups = groups::resolve(std::mem::take(&mut f.groups), &mut problems);
        let telegram = std::mem::take(&mut args.telegram).resolve(&mut problems);
        let email = std::mem::take(&mut args.email).resolve(&mut problems);
        let host = args.host.or(f.host).unwrap_or_else(|| "127.0.0.1".into());
        let port = args.port.or(f.port).unwrap_or(8080);
        let ip: Option<IpAddr> = match host.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                problems.push(format!(
                    "host `{host}` is not an IP address (use 127.0.0.1, 0.0.0.0 or ::1)"
                ));
                None
            }
        };
        let auth_token = args.auth_token.or(f.auth_token).filter(|t| !t.is_empty());
        if let Some(t) = &auth_token
            && t.len() < 16
        {
            problems.push("SWITCHBOARD_AUTH_TOKEN must be at least 16 characters".into());
        }
        if let Some(ip) = ip
            && !ip.is_loopback()
            && auth_token.is_none()
        {
            problems.push(format!(
                "refusing to listen on {ip} (not loopback) without an explicit token: set SWITCHBOARD_AUTH_TOKEN"
            ));
        }
        let log_format = match args.log_format.or(f.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                problems.push(format!("log format `{other}` must be text or json"));
                LogFormat::Text
            }
        };
        let llm = crate::llm::LlmConfig {
            base_url: args
                .llm_base_url
                .or(f.llm.base_url)
                .filter(|s| !s.is_empty()),
            api_key: args.llm_api_key.or(f.llm.api_key).filter(|s| !s.is_empty()),
            model: args.llm_model.or(f.llm.model).filter(|s| !s.is_empty()),
        };
        if let Some(u) = &llm.base_url
            && url::Url::parse(u).is_err()
        {
            problems.push(format!(
                "SWITCHBOARD_LLM_BASE_URL `{u}` is not a URL (e.g. http://127.0.0.1:11434/v1)"
            ));
        }
        let origins = args
            .allowed_origins
            .or(f.allowed_origins)
            .unwrap_or_else(|| DEFAULT_ORIGINS.into());
        let limits = crate::auth::limits::LimitConfig {
            allowed_origins: origins
                .split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            rate_per_sec: args.rate_limit.or(f.rate_limit).unwrap_or(200),
            lockout_after: args.lockout_after.or(f.lockout_after).unwrap_or(5),
            lockout_base: duration(
                args.lockout_base.or(f.lockout_base),
                "1s",
                "SWITCHBOARD_LOCKOUT_BASE",
                &mut problems,
            ),
            trusted_proxies: security.trusted_proxies.clone(),
        };
        for o in &limits.allowed_origins {
            if let Err(e) = glob::Pattern::new(o) {
                problems.push(format!(
                    "SWITCHBOARD_ALLOWED_ORIGINS: `{o}` is not a glob pattern: {e}"
                ));
            }
        }
        if limits.rate_per_sec == 0 || limits.lockout_after == 0 {
            problems.push(
                "SWITCHBOARD_RATE_LIMIT and SWITCHBOARD_LOCKOUT_AFTER must be at least 1".into(),
            );
        }
        let pairing_ttl = duration(
            args.pairing_ttl.or(f.pairing_ttl),
            "10m",
            "SWITCHBOARD_PAIRING_TTL",
            &mut problems,
        );
        let body_limit = args
            .body_limit
            .or(f.body_limit)
            .unwrap_or(crate::http::BODY_LIMIT);
        let sse_keepalive = duration(
            args.sse_keepalive.or(f.sse_keepalive),
            "15s",
            "SWITCHBOARD_SSE_KEEPALIVE",
            &mut problems,
        );
        let bus_capacity = args.bus_capacity.or(f.bus_capacity).unwrap_or(8192);
        if !(16..=1_000_000).contains(&bus_capacity) {
            problems.push(format!(
                "SWITCHBOARD_BUS_CAPACITY {bus_capacity} must be from 16 to 1000000"
            ));
        }
        let public_url = args.public_url.or(f.public_url).filter(|u| !u.is_empty());
        if let Some(u) = &public_url
            && url::Url::parse(u).is_err()
        {
            problems.push(format!("SWITCHBOARD_PUBLIC_URL `{u}` is not a URL"));
        }
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        let data_dir: PathBuf = args
            .data_dir
            .or(f.data_dir)
            .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        let store = crate::store::Location::new(args.database_url.or(f.database_url), &data_dir)
            .map_err(|e| ConfigError(vec![e]))?;
        Ok(Self {
            store,
            triggers: more.triggers,
            webhook_retry: more.webhook_retry,
            openai_timeout: more.openai_timeout,
            telegram,
            email,
            mcp,
            groups,
            ops,
            security,
            no_runner: args.no_runner,
            sse_keepalive,
            bus_capacity,
            limits,
            pairing_ttl,
            body_limit,
            public_url,
            addr: SocketAddr::new(ip.unwrap_or(IpAddr::from([127, 0, 0, 1])), port),
            data_dir,
            flows_dir: args
                .flows_dir
                .or(f.flows_dir)
                .unwrap_or_else(|| "flows".into()),
            auth_token,
            log_format,
            llm,
        })
    }
}

#[cfg(test)]
mod tests;
