//! Retention: deleting runs that ended before a cutoff, with their ledgers, inbox rows,
//! session messages, trigger deliveries, finished webhook deliveries and finished children,
//! in bounded batches (each one short write of the group commit, so other writes never
//! wait long), then giving the space back (SQLite: incremental vacuum and a checkpoint).
//!
//! What stays: runs not yet ended, and every run of a tree that still has one; a live
//! schedule and the firing it remembers (`last_child`); children whose parent is a flow run
//! that is kept. A firing of a schedule is pruned on its own, since its parent lives on.
//! Global cursors are never reused (SQLite's `AUTOINCREMENT`, PostgreSQL's transaction ids),
//! so a client resuming inside a pruned range gets the next record. This module never
//! decides *when* to prune (see `crate::retention`).

use super::sql::{Db, DbResult, args};
use super::{Result, Store, StoreError};

/// Runs (roots) looked at per batch.
const BATCH: i64 = 50;
/// Pages one incremental-vacuum step gives back (4 MiB at SQLite's default page size).
const VACUUM_PAGES: i64 = 1024;

const ENDED: &str = "('completed', 'failed', 'cancelled')";

/// What a prune deleted (or, dry, would delete).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Pruned {
    pub(crate) runs: u64,
    pub(crate) records: u64,
    /// Trees skipped because a run in them has not ended.
    pub(crate) kept: u64,
}

impl std::ops::AddAssign for Pruned {
    fn add_assign(&mut self, o: Self) {
        self.runs += o.runs;
        self.records += o.records;
        self.kept += o.kept;
    }
}

/// Where the next batch starts: `(updated_at, run_id)` of the last root looked at.
#[derive(Debug, Default, Clone)]
pub(crate) struct Mark(String, String);

/// The roots of one batch after `mark`: ended before `cutoff`, not a child of a kept flow
/// run, not a schedule's remembered firing.
fn roots(c: &Db, cutoff: &str, mark: &Mark) -> DbResult<Vec<(String, String)>> {
    let sql = format!(
        "SELECT r.updated_at, r.run_id FROM runs r
         WHERE r.status IN {ENDED} AND r.updated_at < ?1 AND (r.updated_at, r.run_id) > (?2, ?3)
           AND (r.parent_run_id IS NULL OR NOT EXISTS
                (SELECT 1 FROM runs p WHERE p.run_id = r.parent_run_id AND p.kind <> 'schedule'))
           AND NOT EXISTS (SELECT 1 FROM schedules s WHERE s.last_child = r.run_id)
         ORDER BY r.updated_at, r.run_id LIMIT ?4"
    );
    c.prepare_cached(&sql)?
        .query_map(args![cutoff, mark.0, mark.1, BATCH], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect()
}

/// `root` and its descendants, or `None` when one of them has not ended.
fn tree(c: &Db, root: &str) -> DbResult<Option<Vec<String>>> {
    let sql = "WITH RECURSIVE tree(id) AS (
            SELECT CAST(?1 AS TEXT)
            UNION SELECT r.run_id FROM runs r JOIN tree t ON r.parent_run_id = t.id)
        SELECT r.run_id, r.status FROM runs r JOIN tree t ON r.run_id = t.id";
    let rows: Vec<(String, String)> = c
        .prepare_cached(sql)?
        .query_map([root], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<DbResult<_>>()?;
    let ended = |s: &str| matches!(s, "completed" | "failed" | "cancelled");
    Ok(rows
        .iter()
        .all(|(_, s)| ended(s))
        .then(|| rows.into_iter().map(|(id, _)| id).collect()))
}

/// Looks at one batch after `mark`; deletes its trees unless `dry`. Returns what it found
/// and the mark to go on from (`None`: nothing left).
fn batch(c: &Db, cutoff: &str, mark: &Mark, dry: bool) -> Result<(Pruned, Option<Mark>)> {
    let roots = roots(c, cutoff, mark)?;
    let next = roots.last().map(|(at, id)| Mark(at.clone(), id.clone()));
    let mut done = Pruned::default();
    for (_, root) in &roots {
        let Some(ids) = tree(c, root)? else {
            done.kept += 1;
            continue;
        };
        for id in &ids {
            done.runs += 1;
            done.records += if dry {
                c.query_row("SELECT COUNT(*) FROM ledger WHERE run_id = ?1", [id], |r| {
                    r.get::<i64>(0)
                })? as u64
            } else {
                delete_run(c, id)? as u64
            };
        }
    }
    Ok((done, next))
}

/// Deletes one run and what belongs to it; returns how many ledger records went.
fn delete_run(c: &Db, id: &str) -> Result<usize> {
    let records = c
        .prepare_cached("DELETE FROM ledger WHERE run_id = ?1")?
        .execute([id])?;
    for sql in [
        "DELETE FROM commands WHERE run_id = ?1",
        "DELETE FROM session_messages WHERE run_id = ?1",
        "DELETE FROM trigger_deliveries WHERE run_id = ?1",
        "DELETE FROM webhook_deliveries WHERE run_id = ?1 AND status <> 'pending'",
        "DELETE FROM schedules WHERE run_id = ?1",
    ] {
        c.prepare_cached(sql)?.execute([id])?;
    }
    if c.prepare_cached("DELETE FROM runs WHERE run_id = ?1")?
        .execute([id])?
        != 1
    {
        return Err(StoreError::Conflict(format!(
            "run `{id}` went away while pruning"
        )));
    }
    Ok(records)
}

impl Store {
    /// Deletes (or, `dry`, counts) the runs that ended before `cutoff` (an RFC 3339 time),
    /// one batch per write; returns the totals. Batches stop early when `stop` says so.
    pub(crate) async fn prune(
        &self,
        cutoff: String,
        dry: bool,
        stop: impl Fn() -> bool,
    ) -> Result<Pruned> {
        let (mut total, mut mark) = (Pruned::default(), Mark::default());
        while !stop() {
            let (cut, at) = (cutoff.clone(), mark.clone());
            let (found, next) = if dry {
                self.read(move |c| batch(c, &cut, &at, true)).await?
            } else {
                self.write(move |c, _| batch(c, &cut, &at, false)).await?.0
            };
            total += found;
            match next {
                Some(m) => mark = m,
                None => break,
            }
            tokio::task::yield_now().await;
        }
        Ok(total)
    }

    /// Gives freed pages back to the file system (SQLite in incremental auto-vacuum mode),
    /// in bounded steps, then checkpoints the WAL so the file shrinks at once. Returns the
    /// pages given back; on PostgreSQL (its own autovacuum) and on a database made before
    /// incremental vacuum (see [`Store::vacuum_offline`]) nothing.
    pub(crate) async fn reclaim(&self) -> Result<u64> {
        if self.is_shared() {
            return Ok(0);
        }
        let mut pages = 0u64;
        loop {
            let (freed, _) = self
                .write(|c, _| {
                    let mode: i64 = c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
                    let free: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
                    if mode != 2 || free == 0 {
                        return Ok(0);
                    }
                    // Each step of the statement frees one page: step it to the end.
                    c.prepare_cached(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))?
                        .for_each([], |_| Ok(()))?;
                    Ok(free.min(VACUUM_PAGES) as u64)
                })
                .await?;
            if freed == 0 {
                break;
            }
            pages += freed;
            tokio::task::yield_now().await;
        }
        if pages > 0 {
            self.checkpoint().await?;
        }
        Ok(pages)
    }

    /// Copies the WAL back into the database file and truncates both (outside any
    /// transaction, on the lease's connection).
    async fn checkpoint(&self) -> Result<()> {
        let (slot, location) = (self.alone.clone(), self.location.clone());
        tokio::task::spawn_blocking(move || {
            let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
            if guard.as_ref().is_none_or(super::Conn::is_broken) {
                *guard = Some(location.connect(true)?);
            }
            let Some(conn) = guard.as_ref() else {
                return Err(StoreError::Closed);
            };
            conn.db()
                .prepare_cached("PRAGMA wal_checkpoint(TRUNCATE)")?
                .for_each([], |_| Ok(()))?;
            Ok(())
        })
        .await
        .map_err(|_| StoreError::Closed)?
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

/// Turns incremental auto-vacuum on for an embedded store made before it (a full `VACUUM`,
/// which rewrites the file: only on a stopped gateway). Returns whether it changed anything.
pub(crate) fn vacuum_offline(dir: &std::path::Path) -> Result<bool> {
    let conn = super::open_conn(&dir.join("switchboard.db"), true)?;
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if mode == 2 {
        return Ok(false);
    }
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
    Ok(true)
}
