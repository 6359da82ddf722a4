//! Several processes on one store: an API process (`serve --no-runner`) and a runner process
//! (`runner`) on one data dir, or gateway nodes on one PostgreSQL database. None can see the
//! others' in-memory bus, so each follows the database: a thread watches for commits
//! (`PRAGMA data_version` every few milliseconds, or PostgreSQL notifications with a fallback
//! poll) and then the process republishes new ledger rows on its bus (for SSE) and its runner
//! wakes the runs that new commands or client records name. On PostgreSQL every record
//! reaches the bus this way, a node's own included, so every node's bus carries the same
//! records in global cursor order. Also the runner lease: one runner per store at a time.

use std::sync::Arc;
use std::time::Duration;

use protocol::LedgerRecord;
use tokio::sync::mpsc;

use crate::bus::{BusEvent, RecordEvent};
use crate::runner::Runner;
use crate::store::{Store, StoreError};

pub(crate) const LEASE: &str = crate::store::RUNNER_LEASE;
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
                match w.changed() {
                    Ok(true) => {
                        if tx.blocking_send(()).is_err() {
                            return;
                        }
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "follow: cannot watch the store; retrying");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
        })
        .map_err(|e| StoreError::Corrupt(format!("cannot start the follower thread: {e}")))?;
    Ok(rx)
}

/// Counts changes of the settings each node keeps in memory (credentials, flows, the
/// gateway-wide pause) made through other processes: see `Store::shared_epoch`.
pub(crate) type Changes = tokio::sync::watch::Sender<u64>;

/// Where a follower finds the runner to wake, once this process has one (a node of a shared
/// PostgreSQL store starts its runner when it wins the runner lease).
pub(crate) type RunnerSlot = Arc<std::sync::OnceLock<Runner>>;

/// Follows the database: on each tick republishes new ledger rows on this process's bus
/// (`publish`) and wakes the runs that records or commands from other writers name (once a
/// runner is in `slot`). Records reach the bus in global cursor order.
pub(crate) async fn follow(
    store: Store,
    publish: bool,
    slot: RunnerSlot,
    changes: Option<Changes>,
) -> Result<(), StoreError> {
    let mut ticks = watch(&store)?;
    let (mut last_g, mut last_c) = (store.global_head().await?, store.command_head().await?);
    let mut epoch = store.shared_epoch().await?;
    tokio::spawn(async move {
        while ticks.recv().await.is_some() {
            if let Some(tx) = &changes
                && let Ok(now) = store.shared_epoch().await
                && now != epoch
            {
                epoch = now;
                tx.send_modify(|n| *n += 1);
            }
            loop {
                let items = match store.ledger_since(last_g).await {
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
                    last_g = it.gseq;
                    if let Some(r) = slot.get()
                        && !it.json.contains("\"actor\":{\"kind\":\"runner\"")
                    {
                        r.wake(&it.run_id);
                    }
                    if publish {
                        republish(&store, it);
                    }
                }
            }
            if let Some(r) = slot.get() {
                match store.commands_since(last_c).await {
                    Ok((ids, c)) => {
                        last_c = c;
                        r.wake_all(ids);
                    }
                    Err(e) => tracing::warn!(error = %e, "follow: cannot read new commands"),
                }
            }
        }
    });
    Ok(())
}

fn republish(store: &Store, it: crate::store::GlobalItem) {
    let end = serde_json::from_str::<LedgerRecord>(&it.json)
        .ok()
        .and_then(|r| r.run_end())
        .map(protocol::RunStatus::as_str);
    store.bus().publish(BusEvent::Record(Arc::new(RecordEvent {
        gseq: it.gseq,
        run_id: it.run_id,
        seq: it.seq,
        json: it.json,
        end,
        frames: Default::default(),
    })));
}

/// API process: republish ledger rows committed by other processes.
pub(crate) async fn api_follower(store: Store, changes: Changes) -> Result<(), StoreError> {
    follow(store, true, RunnerSlot::default(), Some(changes)).await
}

/// Runner process: wake runs that other processes started or sent commands to (on a shared
/// store it also republishes records, which wakes its webhook sender).
pub(crate) async fn runner_follower(store: Store, runner: Runner) -> Result<(), StoreError> {
    let slot = RunnerSlot::default();
    let _ = slot.set(runner);
    let publish = store.is_shared();
    follow(store, publish, slot, None).await
}

/// This process's lease holder name: `host:pid:nonce`.
pub(crate) fn holder() -> String {
    static NONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    // Host names and pids repeat across machines (containers that are all `localhost`
    // with pid 1): the nonce makes each process's name its own.
    let nonce = NONCE.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_owned());
    format!(
        "{}:{}:{nonce}",
        crate::store::this_host(),
        std::process::id()
    )
}

/// Takes the runner lease (waiting for it when `wait`), then renews it in the background;
/// returns its fencing number, for [`Store::fenced`]. Losing it later ends the process: two
/// runners must never drive the same runs (and the fence refuses any write still on its way).
pub(crate) async fn hold_lease(store: &Store, wait: bool) -> anyhow::Result<i64> {
    let me = holder();
    let fence = loop {
        match store.acquire_lease(LEASE, &me, LEASE_TTL).await {
            Ok(l) => break l.fence,
            Err(StoreError::Conflict(m)) if wait => {
                tracing::debug!("{m}; waiting for it");
            }
            Err(StoreError::Conflict(m)) => {
                anyhow::bail!(
                    "{m}: another runner uses this data dir (serve with --no-runner beside it)"
                )
            }
            // A standby rides out a database that is away for a while.
            Err(e) if wait => tracing::warn!(error = %e, "cannot read the runner lease; retrying"),
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let store = store.clone();
    tokio::spawn(async move {
        let mut valid_until = tokio::time::Instant::now() + LEASE_TTL;
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            let asked = tokio::time::Instant::now();
            match store.acquire_lease(LEASE, &me, LEASE_TTL).await {
                Ok(l) if l.fence == fence => valid_until = asked + LEASE_TTL,
                Ok(_) => lost("the lease changed hands in between"),
                Err(StoreError::Conflict(m)) => lost(&m),
                // A blip: keep going while the lease we hold is still ours for sure.
                Err(e) if tokio::time::Instant::now() + RENEW_EVERY < valid_until => {
                    tracing::warn!(error = %e, "cannot renew the runner lease; retrying");
                }
                Err(e) => lost(&format!("cannot renew it before it lapses: {e}")),
            }
        }
    });
    Ok(fence)
}

/// Says this node is alive (its lease `node:<me>`, renewed every second) for as long as the
/// process runs: the runs it claimed stay its own while the lease lives (`store::claims`).
pub(crate) async fn hold_node(store: &Store, me: &str) -> anyhow::Result<()> {
    let name = crate::store::node_lease(me);
    store.reap_dead_nodes().await?;
    store.acquire_lease(&name, me, LEASE_TTL).await?;
    let (store, me) = (store.clone(), me.to_owned());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            // A lapse lets other nodes take this node's runs; the claims' checks then refuse
            // its late writes, so a failure here needs no more than a warning.
            if let Err(e) = store.acquire_lease(&name, &me, LEASE_TTL).await {
                tracing::warn!(error = %e, "cannot renew this node's lease");
            }
        }
    });
    Ok(())
}

fn lost(why: &str) -> ! {
    tracing::error!(
        why,
        "lost the runner lease; stopping so two runners never overlap"
    );
    std::process::exit(3);
}
