//! Retention: deleting runs that ended before a cutoff, with their ledgers, inbox rows,
//! trigger deliveries, finished webhook deliveries, finished children and the session
//! history no kept run shares. A batch is planned on a read connection (which trees, how
//! many records) and deleted in one write of the group commit that holds at most
//! [`RECORDS`] ledger records (a bigger single tree goes alone, in a batch of its own), so
//! other writes never wait long. Giving the space back is `reclaim`'s.
//!
//! What stays: runs not yet ended, and every run of a tree that still has one; a live
//! schedule and the firing it remembers (`last_child`); children whose parent is a flow run
//! that is kept; a session's history while any run of the session is kept. A firing of a
//! schedule is pruned on its own, since its parent lives on. Global cursors are never
//! reused (SQLite's `AUTOINCREMENT`, PostgreSQL's transaction ids), so a client resuming
//! inside a pruned range gets the next record. This module never decides *when* to prune
//! (see `crate::retention`).

use std::collections::HashSet;

use super::sql::{Db, DbResult, Optional, args};
use super::{Result, Store};

/// Roots looked at per plan.
const ROOTS: i64 = 50;
/// Ledger records one write deletes at most (unless one tree alone has more).
pub(crate) const RECORDS: u64 = 2_000;

const ENDED: &str = "('completed', 'failed', 'cancelled')";

fn ended(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

/// What a prune deleted (or, dry, would delete).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Pruned {
    pub(crate) runs: u64,
    pub(crate) records: u64,
    /// Trees skipped because a run in them has not ended.
    pub(crate) kept: u64,
}

/// Where the next plan starts: `(updated_at, run_id)` of the last root looked at.
#[derive(Debug, Default, Clone)]
struct Mark(String, String);

/// One run of a tree to delete: its id and session.
#[derive(Debug, Clone)]
struct Doomed {
    run_id: String,
    session_id: Option<String>,
}

/// A batch: trees (each whole), what they hold, and where the next batch starts.
#[derive(Debug, Default)]
struct Plan {
    trees: Vec<Vec<Doomed>>,
    records: u64,
    kept: u64,
    next: Option<Mark>,
}

/// The roots after `mark`: ended before `cutoff`, not a child of a kept flow run, not a
/// schedule's remembered firing.
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
        .query_map(args![cutoff, mark.0, mark.1, ROOTS], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect()
}

/// `root` and its descendants, or `None` when one of them has not ended.
fn tree(c: &Db, root: &str) -> DbResult<Option<Vec<Doomed>>> {
    let sql = "WITH RECURSIVE tree(id) AS (
            SELECT CAST(?1 AS TEXT)
            UNION SELECT r.run_id FROM runs r JOIN tree t ON r.parent_run_id = t.id)
        SELECT r.run_id, r.status, r.session_id FROM runs r JOIN tree t ON r.run_id = t.id";
    let rows: Vec<(String, String, Option<String>)> = c
        .prepare_cached(sql)?
        .query_map([root], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<DbResult<_>>()?;
    Ok(rows.iter().all(|(_, s, _)| ended(s)).then(|| {
        rows.into_iter()
            .map(|(run_id, _, session_id)| Doomed { run_id, session_id })
            .collect()
    }))
}

fn records_of(c: &Db, run_id: &str) -> DbResult<u64> {
    Ok(
        c.prepare_cached("SELECT COUNT(*) FROM ledger WHERE run_id = ?1")?
            .query_row([run_id], |r| r.get::<i64>(0))? as u64,
    )
}

/// Plans the next batch after `mark` (read only). `seen` holds the runs planned so far in
/// this pass: a schedule's firing may come up as a root and again in its schedule's tree.
fn plan(c: &Db, cutoff: &str, mark: &Mark, seen: &mut HashSet<String>) -> Result<Plan> {
    let mut p = Plan::default();
    for (at, root) in roots(c, cutoff, mark)? {
        let Some(mut runs) = tree(c, &root)? else {
            p.kept += 1;
            p.next = Some(Mark(at, root));
            continue;
        };
        runs.retain(|d| !seen.contains(&d.run_id));
        let mut records = 0;
        for d in &runs {
            records += records_of(c, &d.run_id)?;
        }
        // A tree that would take the write past the bound waits for the next one (a tree
        // bigger than the bound goes alone).
        if !p.trees.is_empty() && p.records + records > RECORDS {
            break;
        }
        p.next = Some(Mark(at, root));
        seen.extend(runs.iter().map(|d| d.run_id.clone()));
        p.records += records;
        if !runs.is_empty() {
            p.trees.push(runs);
        }
    }
    Ok(p)
}

/// Deletes the planned trees; a run gone since or no longer ended (never, for a run that
/// ended; checked anyway) keeps its tree. Returns the runs and records deleted.
fn delete(c: &Db, trees: &[Vec<Doomed>]) -> Result<(u64, u64)> {
    let (mut runs, mut records) = (0u64, 0u64);
    for tree in trees {
        let mut present = Vec::new();
        for d in tree {
            let status: Option<String> = c
                .prepare_cached("SELECT status FROM runs WHERE run_id = ?1")?
                .query_row([&d.run_id], |r| r.get(0))
                .optional()?;
            match status {
                None => {}
                Some(s) if ended(&s) => present.push(d),
                Some(_) => {
                    present.clear();
                    break;
                }
            }
        }
        for d in present {
            records += delete_run(c, d)? as u64;
            runs += 1;
        }
    }
    Ok((runs, records))
}

/// Deletes one run and what belongs to it; returns how many ledger records went.
fn delete_run(c: &Db, d: &Doomed) -> Result<usize> {
    let id = d.run_id.as_str();
    let records = c
        .prepare_cached("DELETE FROM ledger WHERE run_id = ?1")?
        .execute([id])?;
    for sql in [
        "DELETE FROM commands WHERE run_id = ?1",
        "DELETE FROM trigger_deliveries WHERE run_id = ?1",
        "DELETE FROM webhook_deliveries WHERE run_id = ?1 AND status <> 'pending'",
        "DELETE FROM schedules WHERE run_id = ?1",
        "DELETE FROM runs WHERE run_id = ?1",
    ] {
        c.prepare_cached(sql)?.execute([id])?;
    }
    // A run's own history goes with it; a session's, with the session's last run.
    let key = crate::engine::session_key(id, d.session_id.as_deref());
    c.prepare_cached(
        "DELETE FROM session_messages WHERE session_id = ?1
           AND NOT EXISTS (SELECT 1 FROM runs WHERE session_id = ?1)",
    )?
    .execute([key])?;
    Ok(records)
}

impl Store {
    /// Deletes (or, `dry`, counts) the runs that ended before `cutoff` (an RFC 3339 time):
    /// each batch planned on a reader, deleted in a write of its own. Returns the totals.
    pub(crate) async fn prune(&self, cutoff: String, dry: bool) -> Result<Pruned> {
        let (mut total, mut mark) = (Pruned::default(), Mark::default());
        let mut seen = HashSet::new();
        loop {
            // Deleting, a run planned twice is found gone; counting, it must not count twice.
            if !dry {
                seen.clear();
            }
            let (cut, at) = (cutoff.clone(), mark.clone());
            let (p, back) = self
                .read(move |c| {
                    let p = plan(c, &cut, &at, &mut seen)?;
                    Ok((p, seen))
                })
                .await?;
            seen = back;
            total.kept += p.kept;
            if dry {
                total.runs += p.trees.iter().map(|t| t.len() as u64).sum::<u64>();
                total.records += p.records;
            } else if !p.trees.is_empty() {
                let (trees, big) = (p.trees, p.records > RECORDS);
                let work = move |c: &Db, _: &mut super::Outbox| delete(c, &trees);
                let ((runs, records), _) = if big {
                    self.write_solo(work).await?
                } else {
                    self.write(work).await?
                };
                total.runs += runs;
                total.records += records;
            }
            match p.next {
                Some(m) => mark = m,
                None => break,
            }
            tokio::task::yield_now().await;
        }
        Ok(total)
    }
}
