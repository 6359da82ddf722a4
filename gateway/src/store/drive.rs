//! What the runner reads to drive a run: its row (read by the drive, or handed over by the
//! transaction that woke the run, see `DriveRow::handed`) with the oldest pending command
//! of its inbox. Reads only; the drive's writes are `runs::Store::commit`.

use protocol::{Actor, RunStatus};
use serde_json::Value;

use super::runs::status_of;
use super::sql::{Db, Optional};
use super::{Result, Store};
use crate::engine::RunState;

/// What the runner needs to drive a run.
pub(crate) struct DriveRow {
    pub(crate) run_id: String,
    /// The node that drives it (shared store; `None` on SQLite or when unclaimed).
    pub(crate) owner: Option<String>,
    /// `flow`, or `schedule` for a schedule's parent run.
    pub(crate) kind: String,
    pub(crate) bundle_id: String,
    pub(crate) flow_hash: String,
    pub(crate) status: RunStatus,
    pub(crate) session_id: Option<String>,
    pub(crate) input: Value,
    pub(crate) state: RunState,
    /// The oldest pending command, read with the row (one read per turn of a drive).
    pub(crate) inbox: Option<InboxItem>,
    /// The run's last ledger seq when the row was read.
    pub(crate) last_seq: u64,
    /// Read by the transaction that woke the run (`Store::submit`, `Store::start_run`), not
    /// by the drive: the drive's first commit from it holds only if the run's ledger has not
    /// moved since (another drive, a pause), see `Commit::expect_seq`.
    pub(crate) handed: bool,
}

/// A pending command for the runner (an answer or an event delivery).
pub(crate) struct InboxItem {
    pub(crate) seq: u64,
    pub(crate) kind: String,
    pub(crate) payload: Value,
    pub(crate) actor: Actor,
}

impl Store {
    pub(crate) async fn drive_row(&self, run_id: &str) -> Result<Option<DriveRow>> {
        let id = run_id.to_owned();
        self.read(move |c| load_drive_row(c, &id)).await
    }

    /// The oldest pending command of a run.
    pub(crate) async fn next_inbox(&self, run_id: &str) -> Result<Option<InboxItem>> {
        let id = run_id.to_owned();
        self.read(move |c| inbox_head(c, &id)).await
    }
}

/// The oldest pending command of a run (run on every turn of every drive).
pub(super) const INBOX_HEAD: &str = "SELECT seq, type, payload, actor FROM commands
    WHERE run_id = ?1 AND status = 'pending' ORDER BY seq LIMIT 1";

/// The oldest pending command of a run.
fn inbox_head(c: &Db, run_id: &str) -> Result<Option<InboxItem>> {
    let row = c
        .prepare_cached(INBOX_HEAD)?
        .query_row([run_id], |r| {
            Ok((
                r.get::<i64>(0)?,
                r.get::<String>(1)?,
                r.get::<String>(2)?,
                r.get::<String>(3)?,
            ))
        })
        .optional()?;
    row.map(|(seq, kind, payload, actor)| {
        Ok(InboxItem {
            seq: seq as u64,
            kind,
            payload: serde_json::from_str(&payload)?,
            actor: serde_json::from_str(&actor)?,
        })
    })
    .transpose()
}

/// A run as the runner drives it, read on `c` (a reader, or the writer in a transaction).
pub(super) fn load_drive_row(c: &Db, id: &str) -> Result<Option<DriveRow>> {
    // The driving node is read along (PostgreSQL's claims; SQLite has none).
    let sql = if c.is_pg() {
        "SELECT run_id, bundle_id, flow_hash, status, session_id, input_data, state, kind, owner, last_seq FROM runs WHERE run_id = ?1"
    } else {
        "SELECT run_id, bundle_id, flow_hash, status, session_id, input_data, state, kind, NULL, last_seq FROM runs WHERE run_id = ?1"
    };
    let row = c
        .prepare_cached(sql)?
        .query_row([id], |r| {
            Ok((
                (
                    r.get::<String>(0)?,
                    r.get::<String>(1)?,
                    r.get::<String>(2)?,
                    status_of(&r.get::<String>(3)?)?,
                ),
                r.get::<Option<String>>(4)?,
                r.get::<String>(5)?,
                r.get::<String>(6)?,
                r.get::<String>(7)?,
                (r.get::<Option<String>>(8)?, r.get::<i64>(9)? as u64),
            ))
        })
        .optional()?;
    let Some((
        (run_id, bundle_id, flow_hash, status),
        session_id,
        input,
        state,
        kind,
        (owner, last_seq),
    )) = row
    else {
        return Ok(None);
    };
    let inbox = inbox_head(c, &run_id)?;
    Ok(Some(DriveRow {
        run_id,
        owner,
        kind,
        bundle_id,
        flow_hash,
        status,
        session_id,
        input: serde_json::from_str(&input)?,
        state: serde_json::from_str(&state)?,
        inbox,
        last_seq,
        handed: false,
    }))
}

/// The run as the transaction that woke it leaves it, handed to the runner (`handed`),
/// when `wanted` (an in-process runner will drive it).
pub(super) fn load_handed_row(c: &Db, id: &str, wanted: bool) -> Result<Option<DriveRow>> {
    if !wanted {
        return Ok(None);
    }
    Ok(load_drive_row(c, id)?.map(|r| DriveRow { handed: true, ..r }))
}
