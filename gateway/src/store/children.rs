//! Child runs: the run a `call` step (or a schedule's firing) starts, created in the
//! parent's transaction, with the parent's trace.

use protocol::{Actor, RecordStatus};
use serde_json::Value;

use super::ledger::Appender;
use super::runs::{NewRun, insert_run, run_draft, save_chain};
use super::sql::{Db, Optional, args};
use super::{Outbox, Result, StoreError, now, ts};

/// Creates the child run a `call` step asked for (once: a re-run after a crash finds it).
/// A child whose flow is unknown is created failed, so its parent sees why.
pub(super) fn spawn_child(
    conn: &Db,
    parent: &str,
    session: Option<String>,
    child: &crate::engine::ChildSpec,
    out: &mut Outbox,
) -> Result<()> {
    let exists: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM runs WHERE run_id = ?1")?
        .query_row([&child.run_id], |r| r.get(0))
        .optional()?;
    if exists.is_some() {
        return Ok(());
    }
    let (flow_hash, missing) = match super::flows::current_hash(conn, &child.bundle_id) {
        Ok(h) => (h, false),
        Err(StoreError::NotFound(_)) => (String::new(), true),
        Err(e) => return Err(e),
    };
    let new_run = NewRun {
        trace: child_trace(conn, parent)?,
        run_id: child.run_id.clone(),
        bundle_id: child.bundle_id.clone(),
        flow_hash,
        session_id: session,
        parent_run_id: Some(parent.to_owned()),
        input_data: child.input.clone(),
        notify: Vec::new(),
        actor: Actor::runner(),
    };
    insert_run(conn, &new_run, out)?;
    if missing {
        fail_now(
            conn,
            &child.run_id,
            &format!("flow `{}` not found", child.bundle_id),
            out,
        )?;
    }
    Ok(())
}

/// Fails a run that cannot start (its flow is missing), in the current transaction.
fn fail_now(conn: &Db, run_id: &str, error: &str, out: &mut Outbox) -> Result<()> {
    let mut app = Appender::load(conn, run_id)?;
    let mut d = run_draft(
        RecordStatus::Failed,
        "end",
        "run_failed",
        Value::Null,
        Actor::runner(),
    );
    d.error = Some(error.to_owned());
    app.append(conn, &d, out)?;
    save_chain(conn, &app)?;
    conn.execute(
        "UPDATE runs SET status = 'failed', error = ?2, updated_at = ?3 WHERE run_id = ?1",
        args![run_id, error, ts(now())],
    )?;
    Ok(())
}

/// A child's trace when traces are on (nothing is read when they are off): a called flow's
/// is its caller's, under the caller's run span; a schedule's firing starts a trace of its
/// own (a schedule may fire for years).
fn child_trace(conn: &Db, parent: &str) -> Result<Option<String>> {
    if !crate::trace::enabled() {
        return Ok(None);
    }
    let (parent_trace, parent_kind): (Option<String>, String) = conn
        .prepare_cached("SELECT trace, kind FROM runs WHERE run_id = ?1")?
        .query_row([parent], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or_default();
    Ok(if parent_kind == "schedule" {
        crate::trace::new_trace(None)
    } else {
        crate::trace::child_trace(parent_trace.as_deref(), parent)
    })
}
