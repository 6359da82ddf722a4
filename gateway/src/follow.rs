//! Split mode: an API process (`serve --no-runner`) and a runner process (`runner`) on one
//! data dir. Neither can see the other's in-memory bus, so each follows the database: a
//! thread polls `PRAGMA data_version` (a read of shared memory, every few milliseconds) and,
//! when another process committed, the API process republishes new ledger rows on its bus
//! (for SSE) and the runner process wakes the runs that new commands or client records name.
//! Also the runner lease: one runner per data dir.

use std::sync::Arc;
use std::time::Duration;

use protocol::LedgerRecord;
use tokio::sync::mpsc;

use crate::bus::{BusEvent, RecordEvent};
use crate::runner::Runner;
use crate::store::{Store, StoreError};

const POLL: Duration = Duration::from_millis(3);
pub(crate) const LEASE: &str = "runner";
const LEASE_TTL: Duration = Duration::from_secs(5);
const RENEW_EVERY: Duration = Duration::from_secs(1);

/// Ticks whenever another connection committed.
fn watch(store: &Store) -> Result<mpsc::Receiver<()>, StoreError> {
    let mut w = store.watcher()?;
    let (tx, rx) = mpsc::channel(1);
    std::thread::Builder::new()
        .name("store-follow".into())
        .spawn(move || {
            loop {
                std::thread::sleep(POLL);
                match w.changed() {
                    Ok(true) => {
                        if tx.blocking_send(()).is_err() {
                            return;
                        }
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "follow: cannot read data_version"),
                }
            }
        })
        .map_err(|e| StoreError::Corrupt(format!("cannot start the follower thread: {e}")))?;
    Ok(rx)
}

/// API process: republish ledger rows committed by the runner process.
pub(crate) async fn api_follower(store: Store) -> Result<(), StoreError> {
    let mut ticks = watch(&store)?;
    let mut last = store.global_head().await?;
    tokio::spawn(async move {
        while ticks.recv().await.is_some() {
            loop {
                let items = match store.ledger_since(last).await {
                    Ok(i) => i,
                    Err(e) => {
                        tracing::warn!(error = %e, "follow: cannot read new records");
                        break;
                    }
                };
                if items.is_empty() {
                    break;
                }
                for it in items {
                    let end = serde_json::from_str::<LedgerRecord>(&it.json)
                        .ok()
                        .and_then(|r| r.run_end())
                        .map(protocol::RunStatus::as_str);
                    last = it.gseq;
                    store.bus().publish(BusEvent::Record(Arc::new(RecordEvent {
                        gseq: it.gseq,
                        run_id: it.run_id,
                        seq: it.seq,
                        json: it.json,
                        end,
                    })));
                }
            }
        }
    });
    Ok(())
}

/// Runner process: wake runs that the API process started or sent commands to.
pub(crate) async fn runner_follower(store: Store, runner: Runner) -> Result<(), StoreError> {
    let mut ticks = watch(&store)?;
    let (mut last_g, mut last_c) = (store.global_head().await?, store.command_head().await?);
    tokio::spawn(async move {
        while ticks.recv().await.is_some() {
            if let Ok(items) = store.ledger_since(last_g).await {
                for it in items {
                    last_g = it.gseq;
                    if !it.json.contains("\"actor\":{\"kind\":\"runner\"") {
                        runner.wake(&it.run_id);
                    }
                }
            }
            if let Ok((ids, c)) = store.commands_since(last_c).await {
                last_c = c;
                runner.wake_all(ids);
            }
        }
    });
    Ok(())
}

/// This process's lease holder name: `host:pid`.
pub(crate) fn holder() -> String {
    format!("{}:{}", crate::store::this_host(), std::process::id())
}

/// Takes the runner lease (waiting for it when `wait`), then renews it in the background.
/// Losing it later ends the process: two runners must never drive the same runs.
pub(crate) async fn hold_lease(store: &Store, wait: bool) -> anyhow::Result<()> {
    let me = holder();
    loop {
        match store.acquire_lease(LEASE, &me, LEASE_TTL).await {
            Ok(_) => break,
            Err(StoreError::Conflict(m)) if wait => {
                tracing::info!("{m}; waiting for it");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(StoreError::Conflict(m)) => {
                anyhow::bail!(
                    "{m}: another runner uses this data dir (serve with --no-runner beside it)"
                )
            }
            Err(e) => return Err(e.into()),
        }
    }
    let store = store.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            if let Err(e) = store.acquire_lease(LEASE, &me, LEASE_TTL).await {
                tracing::error!(error = %e, "lost the runner lease; stopping so two runners never overlap");
                std::process::exit(3);
            }
        }
    });
    Ok(())
}
