//! The exporter: follows the global ledger from a cursor kept in the store (`meta`
//! `trace_cursor`, so a restart goes on where it stopped), turns each page of records into
//! spans (`spans`) and hands them to a thread of its own that posts them to the collector
//! (OTLP/HTTP, protobuf; a blocking client, never on the runtime's threads). A slow
//! collector holds the follower back (the cursor waits, nothing is lost); a batch the
//! collector still refuses after a few tries is logged and dropped. Runs on the process that
//! holds the runner lease (one exporter per store). A gateway started with traces off
//! forgets the cursor, so turning them on later starts at the ledger's head instead of
//! replaying what happened meanwhile.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use protocol::LedgerRecord;
use tokio::sync::mpsc::{Receiver, Sender};

use super::RunTrace;
use super::spans::{OpenSteps, RunInfo, closes, is_run_end, opens, spans_of};
use crate::store::{Store, StoreError};

pub(crate) const CURSOR: &str = "trace_cursor";
const PAGE: u32 = 500;
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Batches waiting for the collector before the follower waits too (its cursor stays).
const QUEUE: usize = 16;
/// Attempts per batch.
const TRIES: u32 = 4;
/// Runs (and open steps) remembered before the memory is cleared.
const REMEMBERED: usize = 10_000;
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// Records looked back through for a step's opening record after a restart.
const LOOK_BACK: u64 = 200;

/// Starts exporting: reads (or sets, at the ledger's head) the cursor, then follows.
pub(crate) async fn spawn(store: Store, endpoint: &url::Url) -> Result<(), StoreError> {
    let url = format!("{}/v1/traces", endpoint.as_str().trim_end_matches('/'));
    let head = store.global_head().await?;
    let cursor: u64 = store
        .meta_or_insert(CURSOR, &head.to_string())
        .await?
        .parse()
        .unwrap_or(head);
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<SpanData>>(QUEUE);
    std::thread::Builder::new()
        .name("otlp-export".into())
        .spawn(move || post(url, rx))
        .map_err(|e| StoreError::Open(format!("cannot start the trace exporter: {e}")))?;
    tokio::spawn(follow(store, cursor, tx));
    Ok(())
}

/// The exporter's thread: posts each batch, one at a time; a batch the collector does not
/// take is tried again a few times (it may be restarting), then dropped.
fn post(url: String, mut rx: Receiver<Vec<SpanData>>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let built = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url.clone())
        .with_timeout(Duration::from_secs(10))
        .build();
    let mut exporter = match built {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "traces: cannot build the OTLP exporter; no traces");
            return;
        }
    };
    exporter.set_resource(
        &Resource::builder_empty()
            .with_service_name("switchboard")
            .build(),
    );
    while let Some(batch) = rx.blocking_recv() {
        let n = batch.len();
        let mut pause = Duration::from_millis(500);
        for attempt in 1..=TRIES {
            match futures::executor::block_on(exporter.export(batch.clone())) {
                Ok(()) => break,
                Err(e) if attempt == TRIES => {
                    tracing::warn!(error = %e, spans = n, "traces: the collector at {url} did not take a batch; dropped");
                }
                Err(e) => {
                    tracing::debug!(error = %e, attempt, "traces: the collector at {url} did not take a batch; trying again");
                    std::thread::sleep(pause);
                    pause *= 2;
                }
            }
        }
    }
}

struct Follower {
    store: Store,
    cursor: u64,
    saved: u64,
    saved_at: Instant,
    runs: HashMap<String, RunInfo>,
    open: OpenSteps,
    tx: Sender<Vec<SpanData>>,
}

async fn follow(store: Store, cursor: u64, tx: Sender<Vec<SpanData>>) {
    let mut bus = store.bus().subscribe();
    let mut f = Follower {
        store,
        cursor,
        saved: cursor,
        saved_at: Instant::now(),
        runs: HashMap::new(),
        open: OpenSteps::new(),
        tx,
    };
    loop {
        match f.page().await {
            Ok(true) => continue,
            Ok(false) => {
                let _ = tokio::time::timeout(IDLE_POLL, bus.recv()).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "traces: store error; retrying");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
        bus = bus.resubscribe();
    }
}

impl Follower {
    /// Exports one page after the cursor; `false` when there was none.
    async fn page(&mut self) -> Result<bool, StoreError> {
        let page = self.store.global_page(self.cursor, PAGE).await?;
        let Some(last) = page.last().map(|i| i.gseq) else {
            self.save(true).await?;
            return Ok(false);
        };
        let mut batch = Vec::new();
        for it in &page {
            let Ok(rec) = serde_json::from_str::<LedgerRecord>(&it.json) else {
                continue;
            };
            let Some(run) = self.run(&rec).await? else {
                continue; // pruned since
            };
            let step = (rec.run_id.clone(), rec.step_id.clone());
            if !run.from_start && closes(&rec) && !self.open.contains_key(&step) {
                self.reopen(&rec, &run).await?;
            }
            batch.extend(spans_of(&rec, &run, &mut self.open));
            if is_run_end(&rec) {
                self.runs.remove(&it.run_id);
            }
        }
        if self.open.len() > REMEMBERED {
            tracing::warn!("traces: too many steps open at once; forgetting them");
            self.open.clear();
        }
        // Waits while the collector is behind: the cursor moves only past handed-over spans.
        if !batch.is_empty() && self.tx.send(batch).await.is_err() {
            return Err(StoreError::Closed);
        }
        self.cursor = last;
        self.save(false).await?;
        Ok(true)
    }

    /// Keeps the cursor in the store (at most once a second, and when caught up).
    async fn save(&mut self, now: bool) -> Result<(), StoreError> {
        if self.saved != self.cursor && (now || self.saved_at.elapsed() >= SAVE_EVERY) {
            self.store
                .set_meta(CURSOR, &self.cursor.to_string())
                .await?;
            (self.saved, self.saved_at) = (self.cursor, Instant::now());
        }
        Ok(())
    }

    /// After a restart the step `rec` ends was opened before this process: finds its
    /// opening record among the run's recent records, so the span starts where it did.
    async fn reopen(&mut self, rec: &LedgerRecord, run: &RunInfo) -> Result<(), StoreError> {
        let after = rec.seq.saturating_sub(LOOK_BACK);
        let page = match self
            .store
            .ledger_page(&rec.run_id, after, LOOK_BACK as u32)
            .await
        {
            Ok((p, _)) => p,
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let opening = page
            .iter()
            .rev()
            .filter_map(|j| serde_json::from_str::<LedgerRecord>(j).ok())
            .find(|r| r.seq < rec.seq && r.step_id == rec.step_id && opens(r));
        if let Some(o) = opening {
            let _ = spans_of(&o, run, &mut self.open);
        }
        Ok(())
    }

    /// What the exporter knows of `rec`'s run (read once, then remembered).
    async fn run(&mut self, rec: &LedgerRecord) -> Result<Option<RunInfo>, StoreError> {
        let run_id = rec.run_id.as_str();
        if let Some(r) = self.runs.get(run_id) {
            return Ok(Some(r.clone()));
        }
        let Some(t) = self.store.traced_run(run_id).await? else {
            return Ok(None);
        };
        let trace = RunTrace::of(t.trace.as_deref(), run_id);
        let info = RunInfo {
            run_id: run_id.to_owned(),
            flow: t.bundle_id,
            remote_parent: t.parent_run_id.is_none() && trace.parent.is_some(),
            trace,
            created_at: t.created_at,
            from_start: rec.effect_kind() == "run_started",
        };
        if self.runs.len() >= REMEMBERED {
            self.runs.clear();
        }
        self.runs.insert(run_id.to_owned(), info.clone());
        Ok(Some(info))
    }
}
