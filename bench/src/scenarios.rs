//! The load scenarios, each over the shared client contract only (start, command, ledger
//! page, SSE), so the same run can target Switchboard or AbstractGateway.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use protocol::client::ApiPath;
use protocol::{Client, RunStatus, WaitReason};
use serde_json::{Value, json};

use crate::stats::Sample;

/// Runs `f(i)` for `i` in `0..n` on `clients` concurrent workers, timing each call.
pub async fn concurrently<F, Fut>(n: usize, clients: usize, f: F) -> Sample
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Duration>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients.max(1) {
        let (next, f) = (next.clone(), f.clone());
        workers.push(tokio::spawn(async move {
            let mut s = Sample::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return s;
                }
                match f(i).await {
                    Ok(d) => s.latencies.push(d),
                    Err(e) => {
                        if s.errors == 0 {
                            eprintln!("  error: {e:#}");
                        }
                        s.errors += 1;
                    }
                }
            }
        }));
    }
    let mut total = Sample::default();
    for w in workers {
        if let Ok(s) = w.await {
            total.merge(s);
        }
    }
    total.elapsed = t0.elapsed();
    total
}

/// Starts a run and returns its id. Only `run_id` is read from the answer, so the same call
/// works against AbstractGateway (whose start response has other fields).
async fn start(c: &Client, bundle: &str, input: Value) -> anyhow::Result<String> {
    let body = json!({"bundle_id": bundle, "input_data": input});
    let r = c.post_json("api/gateway/runs/start", &body).await?;
    r["run_id"]
        .as_str()
        .map(str::to_owned)
        .context("the start response has no run_id")
}

/// Waits on a run's stream (from `after`) until it is done; returns the `step` events seen.
async fn until_done(c: &Client, run: &str, after: u64) -> anyhow::Result<usize> {
    let mut s = Box::pin(c.stream_run_raw(run, after).await?);
    let mut n = 0;
    while let Some(ev) = s.next().await {
        match ev?.event.as_str() {
            "step" => n += 1,
            "done" => return Ok(n),
            _ => {}
        }
    }
    bail!("the stream of {run} ended before `done`")
}

/// The number of records in a run's ledger (its `ledger_len`, or the cursor after its pages).
async fn ledger_len(c: &Client, run: &str, summary: &Value) -> anyhow::Result<u64> {
    if let Some(n) = summary["ledger_len"].as_u64() {
        return Ok(n);
    }
    let mut after = 0;
    loop {
        let p = c
            .get_json(
                ApiPath::new("api/gateway/runs")
                    .id(run)
                    .then("ledger")
                    .query("after", after)
                    .query("limit", 500),
            )
            .await?;
        let next = p["next_after"].as_u64().context("no next_after")?;
        if next == after {
            return Ok(after);
        }
        after = next;
    }
}

/// A run summary's status; `None` for one this contract does not know. Summaries are read
/// as JSON (not `RunSummary`) so the bench also runs against AbstractGateway, whose
/// summaries carry other fields, but their statuses and wait reasons are the contract's.
fn status(summary: &Value) -> Option<RunStatus> {
    summary["status"].as_str().and_then(RunStatus::parse)
}

fn is_terminal(status: Option<RunStatus>) -> bool {
    status.is_some_and(RunStatus::is_terminal)
}

/// Sequential or concurrent starts of `bundle` (`echo`, or `ask` to fill a store with
/// waiting runs).
pub async fn starts(c: &Client, bundle: &'static str, n: usize, clients: usize) -> Sample {
    let c = c.clone();
    concurrently(n, clients, move |i| {
        let c = c.clone();
        async move {
            let t = Instant::now();
            start(&c, bundle, json!({"text": format!("bench {i}")})).await?;
            Ok(t.elapsed())
        }
    })
    .await
}

/// Start of `echo` until its stream says `done`.
pub async fn echo_to_completed(c: &Client, n: usize, clients: usize) -> Sample {
    let c = c.clone();
    concurrently(n, clients, move |_| {
        let c = c.clone();
        async move {
            let t = Instant::now();
            let run = start(&c, "echo", json!({})).await?;
            until_done(&c, &run, 0).await?;
            Ok(t.elapsed())
        }
    })
    .await
}

async fn wait_for_prompt(c: &Client, run: &str) -> anyhow::Result<(String, u64)> {
    for _ in 0..2000 {
        let s = c.get_json(ApiPath::new("api/gateway/runs").id(run)).await?;
        let w = &s["waiting"];
        if serde_json::from_value(w["reason"].clone()).ok() == Some(WaitReason::User) {
            let key = w["wait_key"].as_str().context("no wait_key")?.to_owned();
            return Ok((key, ledger_len(c, run, &s).await?));
        }
        if is_terminal(status(&s)) {
            bail!("run {run} ended before asking");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("run {run} never asked")
}

/// `ask` waiting → `resume` command → `done` on its stream (stream opened first).
pub async fn resume_to_completed(c: &Client, n: usize, clients: usize) -> anyhow::Result<Sample> {
    let mut ready = Vec::with_capacity(n);
    for _ in 0..n {
        ready.push(start(c, "ask", json!({"text": "bench?"})).await?);
    }
    let mut prompts = Vec::with_capacity(n);
    for r in &ready {
        prompts.push((r.clone(), wait_for_prompt(c, r).await?));
    }
    let prompts = Arc::new(prompts);
    let c = c.clone();
    Ok(concurrently(n, clients, move |i| {
        let (c, prompts) = (c.clone(), prompts.clone());
        async move {
            let (run, (key, len)) = &prompts[i];
            let mut stream = Box::pin(c.stream_run_raw(run, *len).await?);
            let t = Instant::now();
            c.answer(
                &format!("bench-{run}"),
                run,
                key,
                json!("ok"),
                None,
                "bench",
            )
            .await?;
            while let Some(ev) = stream.next().await {
                if ev?.event == "done" {
                    return Ok(t.elapsed());
                }
            }
            bail!("stream ended before done")
        }
    })
    .await)
}

/// Uploads a flow (needs an admin token).
async fn upload_flow(
    c: &Client,
    http: &reqwest::Client,
    token: &str,
    id: &str,
    src: String,
) -> anyhow::Result<()> {
    let url = c.base().join("api/gateway/bundles/upload")?;
    let part = reqwest::multipart::Part::text(src).file_name(format!("{id}.yaml"));
    let r = http
        .post(url)
        .bearer_auth(token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!(
            "cannot upload the bench flow `{id}` (admin token needed): {}",
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// Uploads `sleeper`: a flow whose runs wait 30 days, then end.
pub async fn upload_sleeper(c: &Client, http: &reqwest::Client, token: &str) -> anyhow::Result<()> {
    let src = "steps:\n  - wait: 30d\n  - output: {woke: true}\n".to_owned();
    upload_flow(c, http, token, "sleeper", src).await
}

/// Uploads (once) a flow whose runs write about `records` ledger records.
pub async fn long_run(
    c: &Client,
    http: &reqwest::Client,
    token: &str,
    records: usize,
) -> anyhow::Result<(String, u64)> {
    let id = format!("bench_ledger_{records}");
    // Two records per iteration (loops are bounded by 10,000 iterations).
    let iterations = records.saturating_sub(2).div_ceil(2).max(1);
    let src = format!(
        "id: {id}\nsteps:\n  - loop:\n      max: {iterations}\n      steps:\n        - set: {{x: 1}}\n        - set: {{y: 2}}\n"
    );
    upload_flow(c, http, token, &id, src).await?;
    let run = start(c, &id, json!({})).await?;
    for _ in 0..6000 {
        let s = c
            .get_json(ApiPath::new("api/gateway/runs").id(&*run))
            .await?;
        if status(&s) == Some(RunStatus::Completed) {
            return Ok((run.clone(), ledger_len(c, &run, &s).await?));
        }
        if is_terminal(status(&s)) {
            bail!("the bench run ended {}: {}", s["status"], s["error"]);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("the bench run did not complete")
}

/// Pages of 100 records from random places of a run's ledger.
pub async fn replay_pages(c: &Client, run: &str, len: u64, n: usize, clients: usize) -> Sample {
    let (c, run) = (c.clone(), run.to_owned());
    concurrently(n, clients, move |i| {
        let (c, run) = (c.clone(), run.clone());
        async move {
            let after = (i as u64).wrapping_mul(7919) % len.saturating_sub(100).max(1);
            let t = Instant::now();
            let p = c
                .get_json(
                    ApiPath::new("api/gateway/runs")
                        .id(&*run)
                        .then("ledger")
                        .query("after", after)
                        .query("limit", 100),
                )
                .await?;
            if p["items"].as_array().is_none_or(|a| a.is_empty()) {
                bail!("empty page after {after}");
            }
            Ok(t.elapsed())
        }
    })
    .await
}

/// Reading a whole run's ledger over SSE from the start, `n` times.
pub async fn sse_catchup(c: &Client, run: &str, len: u64, n: usize) -> anyhow::Result<Sample> {
    let mut s = Sample::default();
    let t0 = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let got = until_done(c, run, 0).await?;
        if got as u64 != len {
            bail!("caught up {got} of {len} records");
        }
        s.latencies.push(t.elapsed());
    }
    s.elapsed = t0.elapsed();
    Ok(s)
}

/// `streams` clients follow one run that writes about `records` records; latency is each
/// stream's time from the answer that sets the run going to its `done`.
pub async fn fanout(
    c: &Client,
    http: &reqwest::Client,
    token: &str,
    streams: usize,
    records: usize,
) -> anyhow::Result<Sample> {
    let id = format!("bench_fanout_{records}");
    let src = format!(
        "id: {id}\nsteps:\n  - ask: go?\n  - loop:\n      max: {records}\n      steps:\n        - set: {{x: 1}}\n"
    );
    upload_flow(c, http, token, &id, src).await?;
    let run = start(c, &id, json!({})).await?;
    let (key, len) = wait_for_prompt(c, &run).await?;
    let mut opened = Vec::with_capacity(streams);
    for _ in 0..streams {
        opened.push(Box::pin(
            c.stream_run_raw(&run, len).await.context("open a stream")?,
        ));
    }
    let t0 = Instant::now();
    c.answer(
        &format!("fanout-{run}"),
        &run,
        &key,
        json!("go"),
        None,
        "bench",
    )
    .await?;
    let mut tasks = Vec::with_capacity(streams);
    for mut s in opened {
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while let Some(ev) = s.next().await {
                match ev.ok()?.event.as_str() {
                    "step" => n += 1,
                    "done" => return Some((t0.elapsed(), n)),
                    _ => {}
                }
            }
            None
        }));
    }
    let mut s = Sample::default();
    for t in tasks {
        match t.await {
            Ok(Some((d, n))) if n >= records => s.latencies.push(d),
            _ => s.errors += 1,
        }
    }
    s.elapsed = t0.elapsed();
    Ok(s)
}

/// Resident memory of a local process, in KiB (`/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
