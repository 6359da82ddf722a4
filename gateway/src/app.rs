//! Wiring for `switchboard serve`: opens the store, registers flows, creates or loads the
//! admin token, starts the runner and serves HTTP until SIGINT/SIGTERM.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::bus::Bus;
use crate::config::ServeConfig;
use crate::flows::{Registry, parse, registry};
use crate::http::{self, AppState, Auth};
use crate::llm::Llm;
use crate::runner::Runner;
use crate::store::{MakeCurrent, Store};

/// Name of the admin token file in the data dir (mode 0600).
pub const TOKEN_FILE: &str = "token";

pub async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let started = Instant::now();
    create_private_dir(&cfg.data_dir)?;
    let store = Store::open(&cfg.data_dir, Bus::new(8192))
        .with_context(|| format!("cannot open the store in {}", cfg.data_dir.display()))?;
    let registry = load_flows(&store, &cfg.flows_dir).await?;
    let (token, generated) = admin_token(&cfg.data_dir, cfg.auth_token.as_deref())?;
    let http = reqwest::Client::builder()
        .build()
        .context("cannot build the HTTP client")?;
    let runner = Runner::new(
        store.clone(),
        registry.clone(),
        Llm::new(cfg.llm.clone(), http.clone()),
        http,
    );
    let resumed = runner.start().await.context("cannot start the runner")?;
    let state = AppState {
        store,
        registry: registry.clone(),
        runner: Some(runner),
        started,
    };
    let app = http::router(state, Arc::new(Auth::new(&token)));
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.addr))?;
    let addr = listener.local_addr()?;
    if generated {
        println!(
            "generated an admin token (saved in {}, mode 0600):",
            cfg.data_dir.join(TOKEN_FILE).display()
        );
        println!("  {token}");
    }
    println!("switchboard listening on http://{addr}");
    tracing::info!(%addr, flows = registry.list().len(), resumed, "switchboard serving");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    tracing::info!("switchboard stopped");
    Ok(())
}

async fn shutdown() {
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

/// Registers the flows dir (or the embedded examples) in the store, then loads every stored
/// version so that runs pinned to old versions keep working.
pub async fn load_flows(store: &Store, dir: &Path) -> anyhow::Result<Registry> {
    for f in registry::load_dir(dir)? {
        store
            .register_flow(&f.bundle_id, &f.hash, &f.source, "dir", MakeCurrent::IfNew)
            .await?;
    }
    let reg = Registry::default();
    for v in store.flow_versions().await? {
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
    Ok(reg)
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

/// The data dir holds the store and the token: only its owner may enter it.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict data dir {} to its owner", dir.display()))?;
    }
    Ok(())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
