//! `switchboard`: the gateway (`serve`), flow checking (`flows check`) and a terminal client
//! (`runs`, `start`, `tail`, `answer`) over the same HTTP contract as every other client.

use std::io::Write;

use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use gateway::config::{Cli, ClientArgs, Command, FlowsCommand, LogFormat, ServeConfig};
use gateway::flows::registry;
use protocol::{Client, RunStatus, StartRunRequest, StreamItem};

/// mimalloc: fewer instructions per allocation than glibc's malloc on the start and
/// resume paths, and no lock shared by the runtime's threads (scripts/bench-callgrind,
/// BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc returns pages freed by a burst to the OS a purge delay (1 s) later, but only
/// when some thread next calls into it: a server that falls idle after a burst makes no
/// such call and keeps them all. This task makes one each second (a few microseconds): it
/// purges the arenas' expired free pages, whichever thread freed them, and collects the
/// heap of the worker it runs on (other threads' heaps collect themselves as they work). Its arenas commit their pages as they are used
/// (`MI_DEFAULT_ARENA_EAGER_COMMIT=0` in `.cargo/config.toml`). BENCHMARKS.md has both.
async fn purge_freed_memory() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // SAFETY: `mi_collect` has no preconditions; it only purges pages no block lives in.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Where transparent huge pages are always on, each 2 MiB region the allocator touches
    // becomes resident whole: 16 MiB more at idle for a server, and no faster
    // (BENCHMARKS.md). A client command exits too soon to care.
    #[cfg(target_os = "linux")]
    if matches!(cli.command, Command::Serve(_) | Command::Runner(_))
        && let Err(e) = rustix::thread::disable_transparent_huge_pages(true)
    {
        eprintln!("warning: cannot turn transparent huge pages off: {e}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(rt) => rt.block_on(async_main(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn async_main(cli: Cli) -> std::process::ExitCode {
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let cfg = ServeConfig::resolve(args, cli.config.as_deref())?;
            init_logs(cfg.log_format);
            tokio::spawn(purge_freed_memory());
            gateway::app::serve(cfg).await?;
        }
        Command::Runner(args) => {
            let cfg = ServeConfig::resolve(args, cli.config.as_deref())?;
            init_logs(cfg.log_format);
            tokio::spawn(purge_freed_memory());
            gateway::app::run_runner(cfg).await?;
        }
        Command::Doctor(args) => {
            let (report, ok) = gateway::doctor::doctor(args, cli.config.as_deref()).await;
            println!("{report}");
            if !ok {
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
        Command::Service(cmd) => println!("{}", gateway::service::run(cmd, cli.config.clone())?),
        Command::Backup {
            data_dir,
            out,
            database_url,
        } => {
            let done = tokio::task::spawn_blocking(move || {
                gateway::backup::backup(&data_dir, &out, database_url.as_deref())
            })
            .await
            .context("the backup stopped")??;
            println!("{done}");
        }
        Command::Restore {
            data_dir,
            input,
            database_url,
        } => {
            let done = tokio::task::spawn_blocking(move || {
                gateway::backup::restore(&data_dir, &input, database_url.as_deref())
            })
            .await
            .context("the restore stopped")??;
            println!("{done}");
        }
        Command::Prune {
            data_dir,
            database_url,
            older_than,
            dry_run,
        } => {
            let report =
                gateway::retention::prune_offline(&data_dir, database_url, &older_than, dry_run)
                    .await?;
            println!("{report}");
        }
        Command::Migrate { from, to } => {
            let report = tokio::task::spawn_blocking(move || gateway::app::migrate(&from, &to))
                .await
                .context("the migration stopped")??;
            println!("{report}");
        }
        Command::Flows(FlowsCommand::Check { files }) => return Ok(check_flows(&files)),
        Command::Bridge(cmd) => {
            init_logs(LogFormat::Text);
            gateway::channels::run_bridge(cmd).await?;
        }
        Command::Runs {
            client,
            status,
            limit,
        } => {
            let c = client_for(&client)?;
            let status = status
                .as_deref()
                .map(|s| RunStatus::parse(s).context("unknown status"))
                .transpose()?;
            let list = c.runs(status, limit, 0).await?;
            for r in list.items {
                let what = r
                    .waiting
                    .as_ref()
                    .and_then(|w| w.prompt.clone())
                    .unwrap_or_default();
                println!(
                    "{}  {:<9}  {:<12} {}  {}",
                    r.run_id,
                    r.status.as_str(),
                    r.bundle_id,
                    r.created_at,
                    what
                );
            }
        }
        Command::Schedules { client } => {
            let c = client_for(&client)?;
            for s in c.schedules(1000).await?.items {
                println!("{}", gateway::admin_cli::schedule_line(&s));
            }
        }
        Command::Start {
            client,
            flow,
            input,
            session,
        } => {
            let c = client_for(&client)?;
            let input_data = match input {
                Some(s) => serde_json::from_str(&s).context("--input is not JSON")?,
                None => serde_json::json!({}),
            };
            let r = c
                .start_run(&StartRunRequest {
                    bundle_id: flow,
                    input_data,
                    session_id: session,
                    ..Default::default()
                })
                .await?;
            println!("{}", r.run_id);
        }
        Command::Admin(cmd) => {
            let client = client_for(cmd.client())?;
            gateway::admin_cli::run(&client, cmd).await?;
        }
        Command::Tail { client, run, after } => tail(&client_for(&client)?, &run, after).await?,
        Command::Answer { client, run, text } => {
            let c = client_for(&client)?;
            let s = c.run(&run).await?;
            let Some(w) = s.waiting.filter(|w| w.is_for_a_person()) else {
                bail!("run {run} is {} and waits for no answer", s.status.as_str());
            };
            let id = format!("cli-{}", uuid::Uuid::new_v4());
            c.answer(&id, &run, &w.wait_key, text.into(), Some("cli"), "cli")
                .await?;
            println!("answered {}", w.wait_key);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn check_flows(files: &[std::path::PathBuf]) -> std::process::ExitCode {
    let mut bad = 0;
    for f in files {
        match registry::compile_file(f) {
            Ok(flow) => println!(
                "{}: ok ({} steps, {})",
                f.display(),
                flow.step_count(),
                &flow.hash[..12]
            ),
            Err(e) => {
                bad += 1;
                println!("{e}");
            }
        }
    }
    if bad == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

fn client_for(a: &ClientArgs) -> anyhow::Result<Client> {
    let token = match &a.token {
        Some(t) => t.clone(),
        None => {
            let dir = a
                .data_dir
                .clone()
                .unwrap_or_else(|| gateway::config::DEFAULT_DATA_DIR.into());
            let path = dir.join(gateway::app::TOKEN_FILE);
            std::fs::read_to_string(&path)
                .with_context(|| {
                    format!(
                        "no token: pass --token or SWITCHBOARD_TOKEN (or run next to {})",
                        path.display()
                    )
                })?
                .trim()
                .to_owned()
        }
    };
    Ok(Client::new(&a.url, Some(token))?)
}

async fn tail(c: &Client, run: &str, after: u64) -> anyhow::Result<()> {
    let mut s = Box::pin(c.stream_run(run, after).await?);
    let mut out = std::io::stdout();
    let mut streaming = false;
    while let Some(item) = s.next().await {
        match item? {
            StreamItem::Step(ev) => {
                if streaming {
                    writeln!(out)?;
                    streaming = false;
                }
                let r = &ev.record;
                let detail = r
                    .error
                    .clone()
                    .or_else(|| r.effect.as_ref().map(|e| e.payload.to_string()))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "#{:<4} {:<10} {:<20} {:<12} {}",
                    r.seq,
                    format!("{:?}", r.status).to_lowercase(),
                    r.step_id,
                    r.effect_kind(),
                    detail
                )?;
            }
            StreamItem::Delta(d) => {
                streaming = true;
                write!(out, "{}", d.delta)?;
                out.flush()?;
            }
            StreamItem::Done => break,
            StreamItem::Other(_) => {}
        }
    }
    Ok(())
}
