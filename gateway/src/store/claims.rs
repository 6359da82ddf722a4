//! Per-run claims on a shared store: every node runs a runner, and a run is driven by the
//! node that claimed it (`runs.owner`). A node is alive while its lease `node:<name>` is;
//! a claim is taken when the run has no owner, is already this node's, or its owner's lease
//! lapsed. Every write of a runner for a run checks, with the run's row locked, that the
//! run is still its own: a node whose runs were taken over (paused, partitioned) has its
//! late writes refused, the run's own fencing. On SQLite there are no claims (one runner).

use super::sql::{Db, args};
use super::{Result, Store, StoreError, now, ts};

/// The lease name that says node `name` is alive.
pub(crate) fn node_lease(name: &str) -> String {
    format!("node:{name}")
}

impl Store {
    /// This handle, driving runs as node `name` (claims are taken and checked under it).
    pub(crate) fn driving_as(&self, name: &str) -> Store {
        Store {
            owner: Some(name.into()),
            ..self.clone()
        }
    }

    /// Whether this handle drives runs under claims (a runner on a shared store).
    pub(crate) fn claims(&self) -> bool {
        self.owner.is_some()
    }

    /// Whether `owner` is this handle's node (always, without claims).
    pub(crate) fn is_me(&self, owner: Option<&str>) -> bool {
        match &self.owner {
            None => true,
            Some(me) => owner == Some(&**me),
        }
    }

    /// Claims `run_id` for this handle's node; `false` when a live node drives it.
    pub(crate) async fn claim_run(&self, run_id: &str) -> Result<bool> {
        let Some(me) = self.owner.clone() else {
            return Ok(true);
        };
        let id = run_id.to_owned();
        self.write(move |c, _| {
            let taken = c
                // A row another transaction holds is skipped, not waited for: that is a
                // live node at work on it, and the commit will wake whoever must drive.
                .prepare_cached(
                    "UPDATE runs SET owner = ?2 WHERE run_id = (
                       SELECT r.run_id FROM runs r WHERE r.run_id = ?1
                         AND (r.owner IS NULL OR r.owner = ?2 OR NOT EXISTS (
                           SELECT 1 FROM leases l WHERE l.name = 'node:' || r.owner AND l.expires_at > ?3))
                       FOR UPDATE SKIP LOCKED)",
                )?
                .execute(args![id, &*me, ts(now())])?;
            Ok(taken == 1)
        })
        .await
        .map(|(t, _)| t)
    }

    /// Runs that need a driver whose node is gone (or that no node claimed yet): running
    /// ones, and waiting ones whose timer is due or with an answer or event in their inbox;
    /// for a sweep that claims them. (A timer or an answer wakes every node, but while the
    /// owner's lease still lives nobody may claim, and that wake is gone.)
    pub(crate) async fn orphaned_runs(&self) -> Result<Vec<String>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT run_id FROM runs r WHERE (status = 'running' OR (status = 'waiting' AND (wake_at <= ?1 OR EXISTS (
                     SELECT 1 FROM commands c WHERE c.run_id = r.run_id AND c.status = 'pending'))))
                   AND (owner IS NULL OR NOT EXISTS (
                     SELECT 1 FROM leases l WHERE l.name = 'node:' || r.owner AND l.expires_at > ?1))
                 LIMIT 1000",
            )?
            .query_map([ts(now())], |r| r.get::<String>(0))?
            .collect::<super::sql::DbResult<Vec<_>>>()?)
        })
        .await
    }
}

/// Claims a run this node just inserted, in the same transaction (so its own runner needs
/// no claim of its own, and other nodes' attempts fail at once).
pub(super) fn claim_new(c: &Db, run_id: &str, owner: Option<&str>) -> Result<()> {
    if let Some(me) = owner {
        c.execute(
            "UPDATE runs SET owner = ?2 WHERE run_id = ?1",
            args![run_id, me],
        )?;
    }
    Ok(())
}

/// Refuses the write unless `run_id` is claimed by `owner` (when the handle has one); locks
/// the run's row until the commit, so a takeover waits for this write or sees it refused.
pub(super) fn check_owner(c: &Db, run_id: &str, owner: Option<&str>) -> Result<()> {
    let Some(me) = owner else {
        return Ok(());
    };
    let held: Option<String> = c
        .prepare_cached("SELECT owner FROM runs WHERE run_id = ?1 FOR UPDATE")?
        .query_row([run_id], |r| r.get(0))?;
    if held.as_deref() == Some(me) {
        Ok(())
    } else {
        Err(StoreError::NotOwner(run_id.to_owned()))
    }
}
