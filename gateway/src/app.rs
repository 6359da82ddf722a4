//! Wiring for `switchboard serve`: opens the store, registers flows, loads credentials,
//! starts the runner and serves HTTP until SIGINT/SIGTERM (SIGHUP reloads flows).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context;

use crate::auth::Auth;
use crate::auth::limits::Limits;
use crate::bus::Bus;
use crate::config::ServeConfig;
use crate::flows::{Registry, parse, registry};
use crate::http::{self, AppState, Gate};
use crate::llm::Llm;
use crate::runner::Runner;
use crate::store::{Location, MakeCurrent, Store};

/// Name of the admin token file in the data dir (mode 0600).
pub const TOKEN_FILE: &str = "token";

pub async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let started = Instant::now();
    crate::telemetry::install();
    if cfg.ops.otlp_endpoint.is_some() {
        crate::trace::enable();
    }
    create_private_dir(&cfg.data_dir)?;
    let store = open_store(&cfg)?;
    let registry = Registry::default();
    let mcp = crate::mcp::Hub::new(&cfg.mcp);
    load_flows(&store, &cfg.flows_dir, &registry, &mcp).await?;
    for (group, members) in &cfg.groups {
        store
            .set_group(group, members)
            .await
            .with_context(|| format!("cannot store the group `{group}` from the config"))?;
    }
    let (token, generated) = admin_token(&cfg.data_dir, cfg.auth_token.as_deref())?;
    let token_file = cfg
        .auth_token
        .is_none()
        .then(|| cfg.data_dir.join(TOKEN_FILE));
    let auth = Auth::load(store.clone(), &token, token_file, cfg.pairing_ttl).await?;
    let limits = Limits::new(cfg.limits.clone()).map_err(anyhow::Error::msg)?;
    let reach = Arc::new(crate::auth::reach::Reach::default());
    publish_hosted_channels(&store, &reach, &cfg).await?;
    let (changes, changed) = tokio::sync::watch::channel(0u64);
    let runner = if cfg.no_runner {
        crate::follow::api_follower(store.clone(), changes).await?;
        None
    } else if store.is_shared() {
        standby_runner(&store, &registry, &cfg, &mcp, changes).await?;
        None
    } else {
        let fence = crate::follow::hold_lease(&store, false).await?;
        Some(start_runner(&store.fenced(fence), &registry, &cfg, &mcp, true).await?)
    };
    // A node with a runner on a shared store claims the runs it starts as it starts them.
    let store = if store.is_shared() && !cfg.no_runner {
        store.driving_as(&crate::follow::holder())
    } else {
        store
    };
    let paused = store.meta("gateway_paused").await?.as_deref() == Some("1");
    let (down_tx, down_rx) = tokio::sync::watch::channel(false);
    let down_rx_bridge = down_rx.clone();
    let auth = Arc::new(auth);
    let state = AppState::new(http::Shared {
        store: store.clone(),
        registry: registry.clone(),
        runner,
        started,
        gate: Gate {
            auth: auth.clone(),
            limits: Arc::new(limits),
            body_limit: cfg.body_limit,
            visitor_key: Arc::new(crate::auth::new_secret("visitor_")),
        },
        paused: Arc::new(AtomicBool::new(paused)),
        flows_dir: cfg.flows_dir.clone(),
        shutdown: down_rx,
        keep_alive: cfg.sse_keepalive,
        triggers: Arc::new(cfg.triggers.clone()),
        openai_timeout: cfg.openai_timeout,
        openai_sessions: Default::default(),
        reach,
        net: Arc::new(cfg.security.net.clone()),
        streams: http::sse::StreamCounts::new(cfg.security.max_streams),
        max_payload: cfg.security.max_payload,
        mcp: mcp.clone(),
        public_url: cfg.public_url.clone(),
        link_key: Default::default(),
        vapid: Default::default(),
    });
    tokio::spawn(apply_changes(
        changed,
        store.clone(),
        auth.clone(),
        registry.clone(),
        state.paused.clone(),
    ));
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.addr))?;
    let addr = listener.local_addr()?;
    let web = crate::channels::web_app(
        &store,
        &auth,
        addr,
        &cfg.data_dir,
        cfg.public_url.as_deref(),
    )
    .await
    .context("cannot set up the web app")?;
    let app = http::router(state, Some(web));
    // Small writes (SSE events, short JSON) go out at once instead of waiting for Nagle.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    if generated {
        println!(
            "generated an admin token (saved in {}, mode 0600):",
            cfg.data_dir.join(TOKEN_FILE).display()
        );
        println!("  {token}");
    }
    let base = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    print_pairing(&auth, &base).await;
    start_bridges(&cfg, &auth, addr, down_rx_bridge).await?;
    println!("switchboard listening on http://{addr}");
    tracing::info!(%addr, flows = registry.list().len(), paused, no_runner = cfg.no_runner, "switchboard serving");
    tokio::spawn(reload_on_hangup(
        store.clone(),
        cfg.flows_dir.clone(),
        registry,
        mcp,
    ));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown().await;
        tracing::info!("shutting down: closing streams, finishing in-flight writes");
        let _ = down_tx.send(true);
    })
    .await?;
    store.flush().await?;
    if !cfg.no_runner {
        store
            .release_lease(crate::follow::LEASE, &crate::follow::holder())
            .await?;
    }
    tracing::info!("switchboard stopped");
    Ok(())
}

/// Starts the channel bridges this process hosts.
async fn start_bridges(
    cfg: &ServeConfig,
    auth: &Auth,
    addr: SocketAddr,
    down: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if let Some(tg) = &cfg.telegram {
        crate::channels::spawn_telegram(tg, auth, addr, &cfg.data_dir, down.clone())
            .await
            .context("cannot start the telegram bridge")?;
        println!("telegram bridge started");
    }
    if let Some(em) = &cfg.email {
        let public = cfg.public_url.clone();
        crate::channels::spawn_email(em, auth, addr, &cfg.data_dir, public, down)
            .await
            .context("cannot start the email bridge")?;
        println!("email bridge started");
    }
    Ok(())
}

/// How webhooks and Web Push notifications go out.
fn sender(cfg: &ServeConfig, out: crate::net::Outbound) -> crate::webhooks::Sender {
    crate::webhooks::Sender {
        policy: cfg.webhook_retry,
        out,
        contact: crate::push::contact(
            cfg.security.push_contact.as_deref(),
            cfg.public_url.as_deref(),
        ),
    }
}

async fn start_runner(
    store: &Store,
    registry: &Registry,
    cfg: &ServeConfig,
    mcp: &crate::mcp::Hub,
    webhooks: bool,
) -> anyhow::Result<Runner> {
    // The LLM's URL is the operator's; `http` steps and webhooks go where flows and API
    // callers say, so they get the client that reaches public addresses only.
    let llm_http = reqwest::Client::builder()
        .build()
        .context("cannot build the HTTP client")?;
    let outbound = crate::net::Outbound::new(cfg.security.net.clone())
        .context("cannot build the HTTP client for flows and webhooks")?;
    let runner = Runner::new(
        store.clone(),
        registry.clone(),
        Llm::new(cfg.llm.clone(), llm_http),
        outbound.clone(),
        mcp.clone(),
    );
    let resumed = runner.start().await.context("cannot start the runner")?;
    tracing::info!(resumed, "runner started");
    // Webhooks are sent by the process that holds the runner lease (one sender at a time).
    if webhooks {
        crate::webhooks::spawn(store.clone(), sender(cfg, outbound));
        crate::retention::spawn(store.clone(), &cfg.ops);
        match &cfg.ops.otlp_endpoint {
            Some(url) => crate::trace::spawn(store.clone(), url)
                .await
                .context("cannot start the trace exporter")?,
            None => crate::trace::forget(store).await?,
        }
    }
    Ok(runner)
}

/// `switchboard migrate --from sqlite:PATH --to postgres://…`: copies the embedded store into
/// an empty PostgreSQL database; returns what it copied. Blocking: call it off the runtime.
pub fn migrate(from: &str, to: &str) -> anyhow::Result<String> {
    let Some(path) = from.strip_prefix("sqlite:") else {
        anyhow::bail!("--from `{from}` must be sqlite:PATH (a data dir or its switchboard.db)");
    };
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        anyhow::bail!(
            "--to `{}` must be a postgres:// URL",
            crate::store::redact_url(to)
        );
    }
    let copied = crate::store::migrate_to_postgres(std::path::Path::new(path), to)
        .with_context(|| format!("cannot migrate {path} to {}", crate::store::redact_url(to)))?;
    let mut out = format!(
        "migrated {path} to {} (hash chains verified: {} records)",
        crate::store::redact_url(to),
        copied.verified
    );
    for (table, n) in copied.tables {
        out.push_str(&format!("\n  {table}: {n}"));
    }
    Ok(out)
}

/// Keeps this process's copies of shared settings (credentials, flows' current versions,
/// the gateway-wide pause) in step with changes other processes made (`Changes`).
async fn apply_changes(
    mut changed: tokio::sync::watch::Receiver<u64>,
    store: Store,
    auth: Arc<Auth>,
    registry: Registry,
    paused: Arc<AtomicBool>,
) {
    while changed.changed().await.is_ok() {
        if let Err(e) = auth.reload().await {
            tracing::warn!(error = %e, "cannot reload credentials");
        }
        if let Err(e) = sync_flows(&store, &registry).await {
            tracing::warn!(error = %e, "cannot reload flows");
        }
        match store.meta("gateway_paused").await {
            Ok(v) => paused.store(
                v.as_deref() == Some("1"),
                std::sync::atomic::Ordering::SeqCst,
            ),
            Err(e) => tracing::warn!(error = %e, "cannot read the gateway-wide pause"),
        }
    }
}

/// Opens the store the config names.
fn open_store(cfg: &ServeConfig) -> anyhow::Result<Store> {
    Store::open(&cfg.store, Bus::new(cfg.bus_capacity)).with_context(|| match &cfg.store {
        Location::Sqlite(dir) => format!("cannot open the store in {}", dir.display()),
        Location::Postgres(url) => format!(
            "cannot open the PostgreSQL store at {}",
            crate::store::redact_url(url)
        ),
    })
}

/// A node of a shared store: follows every node's commits at once, and starts its runner
/// when it wins the runner lease (at once, or when the node holding it dies).
async fn standby_runner(
    store: &Store,
    registry: &Registry,
    cfg: &ServeConfig,
    mcp: &crate::mcp::Hub,
    changes: crate::follow::Changes,
) -> anyhow::Result<()> {
    let slot = crate::follow::RunnerSlot::default();
    crate::follow::follow(store.clone(), true, slot.clone(), Some(changes)).await?;
    let _ = slot.set(shared_runner(store, registry, cfg, mcp).await?);
    Ok(())
}

/// A runner on a shared store: it drives every run it claims (each run is claimed by one
/// live node; see `store::claims`) at once, and sends webhooks once it holds the runner
/// lease (one sender at a time, fenced).
async fn shared_runner(
    store: &Store,
    registry: &Registry,
    cfg: &ServeConfig,
    mcp: &crate::mcp::Hub,
) -> anyhow::Result<Runner> {
    let me = crate::follow::holder();
    crate::follow::hold_node(store, &me).await?;
    let runner = start_runner(&store.driving_as(&me), registry, cfg, mcp, false).await?;
    let (store, cfg) = (store.clone(), cfg.clone());
    tokio::spawn(async move {
        let sender = async {
            let fence = crate::follow::hold_lease(&store, true).await?;
            let out = crate::net::Outbound::new(cfg.security.net.clone())?;
            crate::webhooks::spawn(store.fenced(fence), sender(&cfg, out));
            crate::retention::spawn(store.fenced(fence), &cfg.ops);
            match &cfg.ops.otlp_endpoint {
                Some(url) => crate::trace::spawn(store.fenced(fence), url).await?,
                None => crate::trace::forget(&store.fenced(fence)).await?,
            }
            anyhow::Ok(())
        };
        match sender.await {
            Ok(()) => tracing::info!("this node holds the runner lease: it sends webhooks"),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the webhook sender; stopping");
                std::process::exit(3);
            }
        }
    });
    Ok(runner)
}

/// `switchboard runner`: the runner alone, beside `serve --no-runner` on the same data dir.
/// Waits for the runner lease (a previous runner's lapses within seconds of its death).
pub async fn run_runner(cfg: ServeConfig) -> anyhow::Result<()> {
    if cfg.ops.otlp_endpoint.is_some() {
        crate::trace::enable();
    }
    let store = open_store(&cfg)?;
    let registry = Registry::default();
    let mcp = crate::mcp::Hub::new(&cfg.mcp);
    load_flows(&store, &cfg.flows_dir, &registry, &mcp).await?;
    let runner = if store.is_shared() {
        shared_runner(&store, &registry, &cfg, &mcp).await?
    } else {
        let fence = crate::follow::hold_lease(&store, true).await?;
        start_runner(&store.fenced(fence), &registry, &cfg, &mcp, true).await?
    };
    let resumed = runner.resumed_at_start();
    crate::follow::runner_follower(store.clone(), runner.clone()).await?;
    // A command committed between the start's read and the follower's first look.
    runner
        .resume_interrupted()
        .await
        .context("cannot resume the interrupted runs")?;
    println!(
        "switchboard runner started on {} ({resumed} interrupted runs resumed)",
        cfg.data_dir.display()
    );
    shutdown().await;
    store.flush().await?;
    store
        .release_lease(crate::follow::LEASE, &crate::follow::holder())
        .await?;
    tracing::info!("runner stopped");
    Ok(())
}

/// Loads the channels' published allowlists, and publishes those of the bridges this
/// process hosts from their settings now, before any request is served (the bridges
/// publish again when they start, adding paired Telegram users).
async fn publish_hosted_channels(
    store: &Store,
    reach: &crate::auth::reach::Reach,
    cfg: &ServeConfig,
) -> anyhow::Result<()> {
    http::channels::load(store, reach)
        .await
        .map_err(|e| anyhow::anyhow!("cannot load the channel allowlists: {e}"))?;
    let mut hosted = Vec::new();
    if let Some(tg) = &cfg.telegram {
        let mut allow: Vec<String> = tg.allowed_users.iter().map(u64::to_string).collect();
        allow.extend(reach.get("telegram").unwrap_or_default());
        hosted.push(("telegram", allow));
    }
    if let Some(em) = &cfg.email {
        hosted.push(("email", em.config.reachable()));
    }
    for (channel, mut allow) in hosted {
        allow.sort();
        allow.dedup();
        http::channels::publish(store, reach, channel, allow)
            .await
            .map_err(|e| anyhow::anyhow!("cannot publish the {channel} allowlist: {e}"))?;
    }
    Ok(())
}

/// Prints a fresh pairing code, and a QR code of the pairing link for a phone.
async fn print_pairing(auth: &Auth, base: &str) {
    match auth.mint_code().await {
        Ok((code, expires)) => {
            let minutes = (expires - chrono::Utc::now()).num_minutes().max(1);
            let expiry = format!("expires in {minutes} min");
            print_pairing_code(&code, &expiry, base);
        }
        Err(e) => tracing::warn!(error = %e, "cannot mint a pairing code"),
    }
}

/// The pairing code, a terminal QR code of its link, and the link.
pub(crate) fn print_pairing_code(code: &str, expiry: &str, base: &str) {
    let link = format!("{}/app/pair?code={code}", base.trim_end_matches('/'));
    println!("pairing code: {code} (single use, {expiry}; `switchboard pair` mints another)");
    if let Ok(qr) = qrcode::QrCode::new(link.as_bytes()) {
        println!(
            "{}",
            qr.render::<qrcode::render::unicode::Dense1x2>()
                .quiet_zone(true)
                .build()
        );
    }
    println!("pair a device: {link}");
}

/// `kill -HUP`: re-read the flows directory.
async fn reload_on_hangup(store: Store, dir: PathBuf, registry: Registry, mcp: crate::mcp::Hub) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            match load_flows(&store, &dir, &registry, &mcp).await {
                Ok(()) => tracing::info!(flows = registry.list().len(), "flows reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "flow reload failed; the previous flows stay")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (store, dir, registry, mcp);
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("{0}")]
    Flow(crate::flows::FlowError),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Registers the flows dir (or the embedded examples) in the store, then loads every stored
/// version into `reg` so that runs pinned to old versions keep working. A broken file, or
/// one naming an MCP server or flow that does not exist, changes nothing.
pub(crate) async fn load_flows(
    store: &Store,
    dir: &Path,
    reg: &Registry,
    mcp: &crate::mcp::Hub,
) -> Result<(), LoadError> {
    let flows = registry::load_dir(dir).map_err(|e| match e {
        registry::RegistryError::Flow(f) => LoadError::Flow(f),
        other => LoadError::Io(other.to_string()),
    })?;
    let loading: Vec<String> = flows.iter().map(|f| f.bundle_id.clone()).collect();
    let catalog = crate::mcp::Catalog {
        hub: mcp,
        registry: reg,
        loading: &loading,
    };
    for f in &flows {
        f.check_tools(&catalog).map_err(LoadError::Flow)?;
    }
    for f in flows {
        store
            .register_flow(&f.bundle_id, &f.hash, &f.source, "dir", MakeCurrent::IfNew)
            .await?;
    }
    sync_flows(store, reg).await
}

/// Loads into `reg` every stored version it lacks, and makes each bundle's current version
/// current (a version another process registered included).
pub(crate) async fn sync_flows(store: &Store, reg: &Registry) -> Result<(), LoadError> {
    for v in store.flow_versions().await? {
        let known = reg.by_hash(&v.hash).is_some();
        let is_current = reg
            .current(&v.bundle_id)
            .is_some_and(|c| c.flow.hash == v.hash);
        if known && (!v.current || is_current) {
            continue;
        }
        let name = format!("{} v{} (stored)", v.bundle_id, v.version);
        let flow = match parse::compile(&name, &v.bundle_id, &v.source) {
            Ok(f) => Arc::new(f),
            Err(e) => {
                tracing::warn!(error = %e, "a stored flow version no longer compiles; runs pinned to it will fail");
                continue;
            }
        };
        if v.current {
            reg.set_current(flow, v.version);
        } else {
            reg.add_version(flow);
        }
    }
    Ok(())
}

/// The configured token, or the one in the data dir, or a new one written there (0600).
/// Returns the token and whether it was generated now.
pub fn admin_token(dir: &Path, configured: Option<&str>) -> anyhow::Result<(String, bool)> {
    if let Some(t) = configured {
        return Ok((t.to_owned(), false));
    }
    let path = dir.join(TOKEN_FILE);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_owned();
        if !t.is_empty() {
            return Ok((t, false));
        }
    }
    let bytes: [u8; 32] = rand::random();
    let token = format!("sb_{}", hex::encode(bytes));
    write_private(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    Ok((token, true))
}

/// Creates `dir` (and its parents) so that only its owner may enter it: a data dir holds
/// the store and the token, a backup the same.
pub(crate) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {} to its owner", dir.display()))?;
    }
    Ok(())
}

/// A secret file (0600, replaced atomically; an existing file's mode does not survive).
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    protocol::secret_file::write_private(path, text)
}
