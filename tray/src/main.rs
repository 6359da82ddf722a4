//! The `switchboard-tray` binary: parses the command line, finds the gateway and token
//! (pairing once if asked), then hands the main thread to the tray shell.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// See what waits for you in a Switchboard gateway, and pause, resume or cancel runs.
#[derive(Debug, Parser)]
#[command(name = "switchboard-tray", version)]
struct Args {
    /// The gateway's URL.
    #[arg(long, env = "SWITCHBOARD_URL", default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// A token with the read and command scopes (else the saved pairing is used).
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Pair with a code from `switchboard pair` and remember the device token.
    #[arg(long)]
    pair: Option<String>,
    /// Where the pairing and the ledger cursor are kept (default: the user's config dir).
    #[arg(long, env = "SWITCHBOARD_TRAY_CONFIG_DIR")]
    config_dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let dir = args.config_dir.clone().or_else(tray::connect::config_dir);
    let conn = runtime.block_on(tray::connect::resolve(
        &args.gateway,
        args.token,
        args.pair,
        dir.as_deref(),
    ))?;
    let cursor = dir.map(|d| d.join("tray-cursor"));
    tray::shell::run(runtime, conn, cursor)
}
