//! The exporter: follows the global ledger from a cursor kept in the store (`meta`
//! `trace_cursor`, so a restart goes on where it stopped), turns each page of records into
//! spans (`spans`) and hands them to a thread of its own that posts them to the collector
//! (OTLP/HTTP, protobuf; a blocking client, never on the runtime's threads). Best effort,
//! like any telemetry: a batch the collector refuses is logged and dropped, and a full
//! queue drops a batch rather than slow the gateway. Runs on the process that holds the
//! runner lease (one exporter per store).

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use protocol::LedgerRecord;

use super::RunTrace;
use super::spans::{OpenSteps, RunInfo, closes, is_run_end, opens, spans_of};
use crate::store::{Store, StoreError};

const CURSOR: &str = "trace_cursor";
const PAGE: u32 = 500;
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Batches waiting for the collector before new ones are dropped.
const QUEUE: usize = 64;
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
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<SpanData>>(QUEUE);
    std::thread::Builder::new()
        .name("otlp-export".into())
        .spawn(move || post(url, rx))
        .map_err(|e| StoreError::Open(format!("cannot start the trace exporter: {e}")))?;
    tokio::spawn(follow(store, cursor, tx));
    Ok(())
}

/// The exporter's thread: posts each batch, one at a time.
fn post(url: String, rx: Receiver<Vec<SpanData>>) {
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
    while let Ok(batch) = rx.recv() {
        let n = batch.len();
        if let Err(e) = futures::executor::block_on(exporter.export(batch)) {
            tracing::warn!(error = %e, spans = n, "traces: the collector at {url} refused a batch");
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
    tx: SyncSender<Vec<SpanData>>,
}

async fn follow(store: Store, cursor: u64, tx: SyncSender<Vec<SpanData>>) {
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
            let Some(run) = self.run(&it.run_id).await? else {
                continue; // pruned since
            };
            let step = (rec.run_id.clone(), rec.step_id.clone());
            if closes(&rec) && !self.open.contains_key(&step) {
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
        if !batch.is_empty() {
            match self.tx.try_send(batch) {
                Ok(()) => {}
                Err(TrySendError::Full(b)) => {
                    tracing::warn!(
                        spans = b.len(),
                        "traces: the collector is behind; dropped a batch"
                    );
                }
                Err(TrySendError::Disconnected(_)) => {
                    return Err(StoreError::Closed);
                }
            }
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

    async fn run(&mut self, run_id: &str) -> Result<Option<RunInfo>, StoreError> {
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
        };
        if self.runs.len() >= REMEMBERED {
            self.runs.clear();
        }
        self.runs.insert(run_id.to_owned(), info.clone());
        Ok(Some(info))
    }
}
