//! The runner: executes runs by feeding the engine and committing what it computes.
//!
//! Owns scheduling of runs (one drive task per run at a time; a wake during a drive makes
//! the task look again instead of starting a second one), effects (LLM and HTTP calls, in
//! `effects`), and timers (`timers`). Commands reach it by push: the HTTP layer calls
//! [`Runner::wake`] after the store committed them; there is no polling interval.
//! It never writes SQL (the store does) and never decides a step (the engine does).

mod drive;
mod effects;
mod schedules;
mod start;
mod timers;
mod tools;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::flows::Registry;
use crate::llm::Llm;
use crate::store::{DriveRow, Store};

#[derive(Clone)]
pub(crate) struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    registry: Registry,
    llm: Llm,
    /// `http` steps' client: public addresses only, capped replies (`crate::net`).
    http: crate::net::Outbound,
    /// The MCP servers `llm` steps call tools on.
    mcp: crate::mcp::Hub,
    busy: Mutex<HashMap<String, Busy>>,
    timers: Notify,
    /// How many runs `start` picked up.
    resumed: AtomicUsize,
}

struct Busy {
    again: bool,
    notify: Arc<Notify>,
}

impl Runner {
    pub(crate) fn new(
        store: Store,
        registry: Registry,
        llm: Llm,
        http: crate::net::Outbound,
        mcp: crate::mcp::Hub,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                registry,
                llm,
                http,
                mcp,
                busy: Mutex::new(HashMap::new()),
                timers: Notify::new(),
                resumed: AtomicUsize::new(0),
            }),
        }
    }

    /// Picks up the runs a restart interrupted (see `Store::runs_to_resume`: not every
    /// waiting run) and starts the timer loop.
    pub(crate) async fn start(&self) -> Result<usize, crate::store::StoreError> {
        let n = self.resume_interrupted().await?;
        self.inner.resumed.store(n, Ordering::Relaxed);
        tokio::spawn(timers::run(self.clone()));
        if self.inner.store.claims() {
            tokio::spawn(sweep(self.clone()));
        }
        Ok(n)
    }

    /// Wakes the runs a restart interrupted; returns how many. Also for a runner whose
    /// follower started after `start`: a command committed in between is found here.
    pub(crate) async fn resume_interrupted(&self) -> Result<usize, crate::store::StoreError> {
        let live = self.inner.store.runs_to_resume().await?;
        let n = live.len();
        self.wake_all(live);
        Ok(n)
    }

    /// Makes the runner look at a run now (a new run, a command, a timer, a child that ended).
    pub(crate) fn wake(&self, run_id: &str) {
        self.wake_from(run_id, None);
    }

    /// `wake` with the run as the transaction that made it need a look left it: a drive
    /// that starts now begins from `row` instead of reading it back (a drive under way
    /// looks again, as for `wake`).
    pub(crate) fn wake_with(&self, row: DriveRow) {
        let id = row.run_id.clone();
        self.wake_from(&id, Some(row));
    }

    fn wake_from(&self, run_id: &str, row: Option<DriveRow>) {
        let mut busy = self.inner.busy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = busy.get_mut(run_id) {
            b.again = true;
            b.notify.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        busy.insert(
            run_id.to_owned(),
            Busy {
                again: false,
                notify: notify.clone(),
            },
        );
        drop(busy);
        let me = self.clone();
        let id = run_id.to_owned();
        // Boxed: a drive's future is several KB (the engine's and the store's futures
        // inline), and tokio moves a task's future by value as it spawns, runs and ends it;
        // a box is moved instead (scripts/bench-callgrind, BENCHMARKS.md).
        tokio::spawn(async move { Box::pin(me.drive_task(id, notify, row)).await });
    }

    pub(crate) fn wake_all<I: IntoIterator<Item = String>>(&self, ids: I) {
        for id in ids {
            self.wake(&id);
        }
    }

    /// How many runs the start picked up (see `Store::runs_to_resume`).
    pub(crate) fn resumed_at_start(&self) -> usize {
        self.inner.resumed.load(Ordering::Relaxed)
    }

    /// Runs being driven right now.
    pub(crate) fn active(&self) -> usize {
        self.inner
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    async fn drive_task(self, run_id: String, notify: Arc<Notify>, mut row: Option<DriveRow>) {
        let mut failures = 0u32;
        loop {
            match self.drive(&run_id, &notify, row.take()).await {
                Ok(()) => failures = 0,
                // Taken over by another node while this one was slow: its writes were
                // refused, and the run is the other node's now.
                Err(crate::store::StoreError::NotOwner(_)) => failures = 0,
                // A handed row was stale (the run moved on before this drive began): drive
                // again from a fresh read.
                Err(crate::store::StoreError::Stale(_)) => continue,
                Err(e) => {
                    failures += 1;
                    tracing::error!(run_id, error = %e, failures, "runner: driving the run failed");
                    if failures < 5 {
                        tokio::time::sleep(std::time::Duration::from_millis(100 << failures)).await;
                        continue;
                    }
                }
            }
            let mut busy = self.inner.busy.lock().unwrap_or_else(|p| p.into_inner());
            match busy.get_mut(&run_id) {
                Some(b) if b.again => b.again = false,
                _ => {
                    busy.remove(&run_id);
                    return;
                }
            }
        }
    }
}

/// On a shared store: every second, claims (by waking) the running runs whose node is gone.
async fn sweep(r: Runner) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        match r.inner.store.orphaned_runs().await {
            Ok(ids) => r.wake_all(ids),
            Err(e) => tracing::warn!(error = %e, "runner: cannot look for orphaned runs"),
        }
    }
}
