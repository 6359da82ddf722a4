//! `switchboard-bench`: load over the shared client contract, against any gateway URL.
//!
//! Prints a Markdown table (scenario, ok, errors, throughput, p50/p90/p99). `--smoke` runs
//! every scenario with a few hundred requests and fails on any error (for `scripts/test`);
//! without it the counts are the full benchmark's. Scenarios that need flow upload (ledger
//! replay, SSE catch-up, fan-out) run only with `--target switchboard`.

mod scenarios;
mod stats;

use clap::Parser;
use protocol::Client;

/// The load tool shares the cores with the server it measures: every cycle it spends on
/// allocation (two million events in the fan-out) is one the server does not get.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchboard-bench",
    about = "Load tool for Switchboard-compatible gateways"
)]
struct Args {
    /// Gateway URL.
    #[arg(long, env = "SWITCHBOARD_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Token with admin scope (flow upload) or at least run + command + read.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    token: String,
    /// `switchboard` (every scenario) or `abstractgateway` (the shared ones).
    #[arg(long, default_value = "switchboard")]
    target: String,
    /// Small counts, fail on any error.
    #[arg(long)]
    smoke: bool,
    /// The server's pid, to report its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Multiplies every full-run count (0.2 runs a fifth of the requests).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Concurrent SSE streams in the fan-out scenario.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Run only the scenarios whose name contains this text (e.g. "64 clients", "SSE").
    #[arg(long)]
    only: Option<String>,
    /// Also start this many runs (64 clients) and leave them waiting, half on `ask`, half on
    /// a 30-day timer: the store of `scripts/bench-waiting` (not scaled, not in the smoke
    /// run).
    #[arg(long, default_value_t = 0)]
    waiting: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let c = Client::new(&a.url, Some(a.token.clone()))?;
    let http = reqwest::Client::new();
    let full = !a.smoke;
    let scale = a.scale;
    let k = move |smoke: usize, full_n: usize| {
        if full {
            ((full_n as f64 * scale) as usize).max(smoke.min(full_n))
        } else {
            smoke
        }
    };
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    let mut errors = 0;
    let mut add = |name: String, s: stats::Sample| {
        errors += s.errors;
        let row = s.row(&name);
        json_rows.push(s.json(&name));
        eprintln!("{row}");
        rows.push(row);
    };
    let only = a.only.clone();
    let want = move |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    let idle = a.server_pid.and_then(scenarios::rss_kib);
    if a.waiting > 0 {
        // Half wait for a person, half for a timer 30 days away.
        let timers = a.waiting / 2;
        let asks = a.waiting - timers;
        let name = format!("{asks} ask runs started and left waiting (64 clients)");
        if want(&name) {
            add(name, scenarios::starts(&c, "ask", asks, 64).await);
        }
        let name = format!("{timers} runs on a 30-day timer started and left waiting (64 clients)");
        if want(&name) {
            scenarios::upload_sleeper(&c, &http, &a.token).await?;
            add(name, scenarios::starts(&c, "sleeper", timers, 64).await);
        }
    }
    for clients in [1, 16, 64] {
        let name = format!("run starts, {clients} clients");
        if want(&name) {
            add(
                name,
                scenarios::starts(&c, "echo", k(100, 5000), clients).await,
            );
        }
    }
    let name = "echo: start → completed (16 clients)".to_owned();
    if want(&name) {
        add(
            name,
            scenarios::echo_to_completed(&c, k(50, 2000), 16).await,
        );
    }
    for clients in [1, 16] {
        let name = format!("ask: resume → completed ({clients} clients)");
        if want(&name) {
            add(
                name,
                scenarios::resume_to_completed(&c, k(20, 500), clients).await?,
            );
        }
    }
    if a.target == "switchboard" {
        // Sizes, unlike counts, are not scaled: they are the figures.
        for len in [100, if full { 20_000 } else { 500 }] {
            // The names as they will read (the run's length is `len`, give or take).
            let page = |n: u64, clients: usize| {
                format!("ledger page of 100, run of {n} records ({clients} clients)")
            };
            let catchup = |n: u64| format!("SSE catch-up of {n} records");
            let len64 = len as u64;
            let wanted = [page(len64, 1), page(len64, 16)].iter().any(|n| want(n))
                || (len > 100 && want(&catchup(len64)));
            if !wanted {
                continue;
            }
            let (run, n) = scenarios::long_run(&c, &http, &a.token, len).await?;
            for clients in [1, 16] {
                let name = page(n, clients);
                if want(&page(len64, clients)) {
                    add(
                        name,
                        scenarios::replay_pages(&c, &run, n, k(50, 5000), clients).await,
                    );
                }
            }
            if len > 100 && want(&catchup(len64)) {
                add(
                    catchup(n),
                    scenarios::sse_catchup(&c, &run, n, k(2, 10)).await?,
                );
            }
        }
        let streams = if full { a.streams } else { 10 };
        let name = format!("{streams} SSE streams × 200 records (answer → done)");
        if want(&name) {
            add(
                name,
                scenarios::fanout(&c, &http, &a.token, streams, 200).await?,
            );
        }
    }
    let loaded = a.server_pid.and_then(scenarios::rss_kib);
    println!("{}", stats::HEADER);
    for r in &rows {
        println!("{r}");
    }
    if let (Some(i), Some(l)) = (idle, loaded) {
        println!(
            "\nserver RSS: idle {:.1} MiB, after load {:.1} MiB",
            i as f64 / 1024.0,
            l as f64 / 1024.0
        );
    }
    if let Some(path) = &a.json {
        let doc = serde_json::json!({
            "target": a.target,
            "rows": json_rows,
            "rss_idle_kib": idle,
            "rss_loaded_kib": loaded,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
    }
    if errors > 0 {
        anyhow::bail!("{errors} requests failed");
    }
    Ok(())
}
