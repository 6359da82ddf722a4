//! Retention: when to prune and how it is reported. Online, the process that holds the
//! runner lease prunes every `SWITCHBOARD_RETENTION_INTERVAL` (its writes fenced, so a
//! process that lost the lease stops); offline, `switchboard prune` does it once on a
//! stopped gateway and may rewrite an older SQLite file so that it gives space back. What a
//! prune deletes and keeps is the store's (`store::prune`).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::bus::Bus;
use crate::config::OpsConfig;
use crate::store::{Location, Pruned, Store};

/// The shortest retention: webhooks and push notices of a run are sent from its records,
/// and a trigger delivery is refused again within its window, so runs stay that long.
pub(crate) const MIN_RETENTION: Duration = Duration::from_secs(3600);

/// The RFC 3339 time `keep` before now: runs that ended before it go.
fn cutoff(keep: Duration) -> anyhow::Result<String> {
    let keep = chrono::Duration::from_std(keep).context("the retention is too long")?;
    let at = crate::store::now()
        .checked_sub_signed(keep)
        .context("the retention reaches before the calendar")?;
    Ok(crate::store::ts(at))
}

/// Starts the periodic prune when retention is set (first pass at once).
pub(crate) fn spawn(store: Store, ops: &OpsConfig) {
    let Some(keep) = ops.retention else {
        return;
    };
    let every = ops.retention_interval;
    tokio::spawn(async move {
        loop {
            if let Err(e) = pass(&store, keep).await {
                tracing::warn!(error = %format!("{e:#}"), "retention: prune failed; trying again later");
            }
            tokio::time::sleep(every).await;
        }
    });
}

async fn pass(store: &Store, keep: Duration) -> anyhow::Result<()> {
    let done = store.prune(cutoff(keep)?, false).await?;
    if done.runs > 0 {
        let pages = store.reclaim().await?;
        tracing::info!(
            runs = done.runs,
            records = done.records,
            pages,
            "retention: pruned runs that ended over {} ago",
            humantime::format_duration(keep)
        );
        metrics::counter!("switchboard_pruned_runs_total").increment(done.runs);
    }
    Ok(())
}

/// `switchboard prune --older-than D [--dry-run]` on a stopped gateway's store; returns the
/// report to print.
pub async fn prune_offline(
    data_dir: &Path,
    database_url: Option<String>,
    older_than: &str,
    dry: bool,
) -> anyhow::Result<String> {
    let keep = humantime::parse_duration(older_than)
        .with_context(|| format!("--older-than `{older_than}` is not a duration like 30d"))?;
    if keep < MIN_RETENTION {
        bail!(
            "--older-than `{older_than}` is under 1h: keep runs for an hour at least (webhooks and trigger replay checks still need them)"
        );
    }
    let location = Location::new(database_url, data_dir).map_err(anyhow::Error::msg)?;
    if let Location::Sqlite(dir) = &location
        && !dir.join("switchboard.db").is_file()
    {
        bail!("{} holds no store (switchboard.db)", dir.display());
    }
    let at = cutoff(keep)?;
    let loc = location.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&loc, Bus::new(16)))
        .await
        .context("opening the store stopped")?
        .context("cannot open the store")?;
    // The runner lease, renewed while this runs, keeps a gateway from starting meanwhile;
    // every write is fenced by it.
    let fence = match crate::follow::hold_lease(&store, false).await {
        Ok(f) => f,
        Err(e) => bail!(
            "{e:#}: a gateway runs on this store; stop it first, or set SWITCHBOARD_RETENTION to prune while it serves"
        ),
    };
    let result = run_offline(&store.fenced(fence), &location, at.clone(), dry).await;
    store.flush().await?;
    store
        .release_lease(crate::follow::LEASE, &crate::follow::holder())
        .await?;
    let (done, space) = result?;
    let verb = if dry { "would delete" } else { "deleted" };
    Ok(format!(
        "{verb} {} runs ({} ledger records) that ended before {at}; kept {} trees that have a run still going{space}",
        done.runs, done.records, done.kept
    ))
}

async fn run_offline(
    store: &Store,
    location: &Location,
    at: String,
    dry: bool,
) -> anyhow::Result<(Pruned, String)> {
    let done = store.prune(at, dry).await?;
    if dry {
        return Ok((done, String::new()));
    }
    let space = match location {
        Location::Sqlite(dir) if !store.reclaims_space().await? => {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || crate::store::vacuum_offline(&dir))
                .await
                .context("the vacuum stopped")??;
            "; rewrote the database file (it now gives space back as it prunes)".to_owned()
        }
        Location::Sqlite(_) => {
            let pages = store.reclaim().await?;
            format!("; gave {pages} pages back to the file system")
        }
        Location::Postgres(_) => "; PostgreSQL's autovacuum reuses the space".to_owned(),
    };
    Ok((done, space))
}
