//! Giving pruned space back on the embedded store: incremental vacuum in bounded steps (one
//! short write each), then a WAL checkpoint on a connection of its own that waits at most a
//! moment for the writer (busy: tried again at the next prune), so the file shrinks at
//! once. A store made before incremental vacuum is turned over once, offline
//! ([`vacuum_offline`]). PostgreSQL's autovacuum reuses its space by itself.

use std::time::Duration;

use super::{Location, Result, Store, open_conn};

/// Pages one incremental-vacuum step gives back (4 MiB at SQLite's default page size).
const VACUUM_PAGES: i64 = 1024;
/// How long the checkpoint waits for the writer before it gives up for this time.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(200);

const DB: &str = "switchboard.db";

impl Store {
    /// Gives freed pages back; returns how many. Nothing on PostgreSQL, or on a store made
    /// without incremental vacuum (see [`Store::reclaims_space`]).
    pub(crate) async fn reclaim(&self) -> Result<u64> {
        let Location::Sqlite(dir) = &*self.location else {
            return Ok(0);
        };
        let mut pages = 0u64;
        loop {
            let (freed, _) = self
                .write(|c, _| {
                    let mode: i64 = c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
                    let free = |c: &super::Db| {
                        c.query_row("PRAGMA freelist_count", [], |r| r.get::<i64>(0))
                    };
                    let before = free(c)?;
                    if mode != 2 || before == 0 {
                        return Ok(0);
                    }
                    // Each step of the statement frees a page: step it to the end.
                    c.prepare_cached(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))?
                        .for_each([], |_| Ok(()))?;
                    Ok((before - free(c)?).max(0) as u64)
                })
                .await?;
            if freed == 0 {
                break;
            }
            pages += freed;
            tokio::task::yield_now().await;
        }
        if pages > 0 {
            let path = dir.join(DB);
            tokio::task::spawn_blocking(move || checkpoint(&path, CHECKPOINT_WAIT))
                .await
                .map_err(|_| super::StoreError::Closed)??;
        }
        Ok(pages)
    }

    /// Whether the embedded store gives space back as it prunes (made with incremental
    /// auto-vacuum); always true on PostgreSQL.
    pub(crate) async fn reclaims_space(&self) -> Result<bool> {
        if self.is_shared() {
            return Ok(true);
        }
        let mode: i64 = self
            .read(|c| Ok(c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?))
            .await?;
        Ok(mode == 2)
    }
}

/// Copies the WAL into the database file and truncates both, unless the writer holds on
/// longer than `wait` (then it stays for the next time). Returns whether it finished.
fn checkpoint(path: &std::path::Path, wait: Duration) -> Result<bool> {
    let conn = open_conn(path, true)?;
    conn.busy_timeout(wait)?;
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    if busy != 0 {
        tracing::debug!("retention: the writer was busy; the WAL is checkpointed later");
    }
    Ok(busy == 0)
}

/// Turns incremental auto-vacuum on for an embedded store made before it (a full `VACUUM`,
/// which rewrites the file: only on a stopped gateway), then checkpoints so the space is
/// back on disk. Returns whether it changed anything.
pub(crate) fn vacuum_offline(dir: &std::path::Path) -> Result<bool> {
    let conn = open_conn(&dir.join(DB), true)?;
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if mode == 2 {
        return Ok(false);
    }
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
    drop(conn);
    checkpoint(&dir.join(DB), Duration::from_secs(10))?;
    Ok(true)
}
