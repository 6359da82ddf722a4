//! Schedules in the store: the parent run of kind `schedule` and its `schedules` row (spec
//! JSON, firings so far, next due time). Firing is one transaction: the child run, the
//! counters, the next due time (`runs.wake_at`, so timers survive restarts) and a record on
//! the parent. An optimistic check on the firing count makes each tick fire once.

use super::sql::{Db, DbError, DbResult, Optional, Row, args};
use chrono::{DateTime, Utc};
use protocol::{Actor, Effect, RecordStatus, RunStatus, RunSummary};
use serde_json::{Value, json};

use super::children::spawn_child;
use super::ledger::Appender;
use super::runs::{get_summary, insert_run, lock_run, run_draft, save_chain};
use super::{NewRun, Result, Store, StoreError, now, ts};
use crate::engine::{ChildSpec, Draft};

pub(crate) struct NewSchedule {
    pub(crate) run: NewRun,
    pub(crate) spec: Value,
    pub(crate) share_context: bool,
    pub(crate) first: DateTime<Utc>,
}

/// A schedule's row with its parent run's status.
#[derive(Debug, Clone)]
pub(crate) struct ScheduleRow {
    pub(crate) bundle_id: String,
    pub(crate) input: Value,
    pub(crate) spec: Value,
    pub(crate) share_context: bool,
    pub(crate) fired: u32,
    pub(crate) next_fire_at: Option<DateTime<Utc>>,
    pub(crate) last_child: Option<String>,
    pub(crate) session_id: Option<String>,
    pub(crate) status: RunStatus,
}

/// One firing: what the runner planned.
pub(crate) struct Fire {
    pub(crate) run_id: String,
    /// The firing count the plan was made from (the guard).
    pub(crate) fired: u32,
    pub(crate) due: DateTime<Utc>,
    pub(crate) child_run_id: String,
    pub(crate) next: Option<DateTime<Utc>>,
}

fn waiting(next: Option<DateTime<Utc>>) -> Option<String> {
    next.map(|n| json!({"reason": "schedule", "wait_key": "schedule", "until": ts(n), "choices": [], "allow_free_text": false}).to_string())
}

/// Points the parent run (and the timer) at the next due time.
fn set_next(c: &Db, run_id: &str, next: Option<DateTime<Utc>>) -> Result<()> {
    c.execute(
        "UPDATE schedules SET next_fire_at = ?2 WHERE run_id = ?1",
        args![run_id, next.map(ts)],
    )?;
    c.execute(
        "UPDATE runs SET waiting = ?2, wait_key = CASE WHEN CAST(?2 AS TEXT) IS NULL THEN NULL ELSE 'schedule' END, wake_at = ?3, updated_at = ?4
         WHERE run_id = ?1",
        args![run_id, waiting(next), next.map(ts), ts(now())],
    )?;
    Ok(())
}

fn parse_time(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
}

pub(super) fn load(c: &Db, run_id: &str) -> Result<Option<ScheduleRow>> {
    Ok(c.prepare_cached(
        "SELECT s.run_id, s.bundle_id, s.input_data, s.spec, s.share_context, s.fired, s.next_fire_at, s.last_child,
                s.last_fired_at, r.session_id, r.status
         FROM schedules s JOIN runs r ON r.run_id = s.run_id WHERE s.run_id = ?1",
    )?
    .query_row([run_id], |r| {
        Ok(ScheduleRow {
            bundle_id: r.get(1)?,
            input: serde_json::from_str(&r.get::<String>(2)?).unwrap_or(Value::Null),
            spec: serde_json::from_str(&r.get::<String>(3)?).unwrap_or(Value::Null),
            share_context: r.get(4)?,
            fired: r.get::<i64>(5)? as u32,
            next_fire_at: parse_time(r.get(6)?),
            last_child: r.get(7)?,
            session_id: r.get(9)?,
            status: RunStatus::parse(&r.get::<String>(10)?).unwrap_or(RunStatus::Failed),
        })
    })
    .optional()?)
}

impl Store {
    pub(crate) async fn create_schedule(
        &self,
        s: NewSchedule,
    ) -> Result<(RunSummary, Vec<String>)> {
        self.write(move |c, out| {
            insert_run(c, &s.run, out)?;
            c.execute("UPDATE runs SET kind = 'schedule', status = 'waiting' WHERE run_id = ?1", [&s.run.run_id])?;
            c.execute(
                "INSERT INTO schedules (run_id, bundle_id, input_data, spec, share_context, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                args![s.run.run_id, s.run.bundle_id, s.run.input_data.to_string(), s.spec.to_string(), s.share_context, ts(now())],
            )?;
            set_next(c, &s.run.run_id, Some(s.first))?;
            get_summary(c, &s.run.run_id)
        })
        .await
    }

    pub(crate) async fn schedule(&self, run_id: &str) -> Result<Option<ScheduleRow>> {
        let id = run_id.to_owned();
        self.read(move |c| load(c, &id)).await
    }

    /// Fires once as planned; `false` when the schedule changed meanwhile (plan again).
    pub(crate) async fn fire_schedule(&self, f: Fire) -> Result<(bool, Vec<String>)> {
        let owner = self.owner.clone();
        self.write(move |c, out| {
            super::claims::check_owner(c, &f.run_id, owner.as_deref())?;
            lock_run(c, &f.run_id)?;
            let Some(s) = load(c, &f.run_id)? else {
                return Ok(false);
            };
            if s.fired != f.fired || s.status != RunStatus::Waiting {
                return Ok(false);
            }
            let session = if s.share_context { s.session_id.clone() } else { None };
            let child = ChildSpec { run_id: f.child_run_id.clone(), bundle_id: s.bundle_id.clone(), input: s.input.clone() };
            spawn_child(c, &f.run_id, session, &child, out)?;
            let n = s.fired + 1;
            c.execute(
                "UPDATE schedules SET fired = ?2, last_child = ?3, last_fired_at = ?4 WHERE run_id = ?1",
                args![f.run_id, n, f.child_run_id, ts(now())],
            )?;
            set_next(c, &f.run_id, f.next)?;
            let mut app = Appender::load(c, &f.run_id)?;
            let t = now();
            let d = Draft {
                step_id: format!("fire.{n}"),
                node_id: "fire".into(),
                status: RecordStatus::Completed,
                effect: Some(Effect { kind: "schedule_fire".into(), payload: json!({"due_at": ts(f.due), "child_run_id": f.child_run_id}) }),
                result: Some(json!({"next_fire_at": f.next.map(ts)})),
                error: None,
                started_at: t,
                ended_at: Some(t),
                attempt: 1,
                idempotency_key: Some(format!("{}:fire:{n}", f.run_id)),
                actor: Actor::runner(),
            };
            app.append(c, &d, out)?;
            save_chain(c, &app)?;
            Ok(true)
        })
        .await
    }

    /// Sets the next due time (fixed-delay, after the child ended).
    pub(crate) async fn set_next_fire(&self, run_id: &str, next: DateTime<Utc>) -> Result<()> {
        let (id, owner) = (run_id.to_owned(), self.owner.clone());
        self.write(move |c, _| {
            super::claims::check_owner(c, &id, owner.as_deref())?;
            set_next(c, &id, Some(next))
        })
        .await
        .map(|_| ())
    }

    /// Completes a schedule that will not fire again (its last child has ended).
    pub(crate) async fn finish_schedule(&self, run_id: &str) -> Result<()> {
        let (id, owner) = (run_id.to_owned(), self.owner.clone());
        self.write(move |c, out| {
            super::claims::check_owner(c, &id, owner.as_deref())?;
            lock_run(c, &id)?;
            let Some(s) = load(c, &id)? else {
                return Err(StoreError::NotFound(format!("schedule `{id}` not found")));
            };
            if s.status.is_terminal() {
                return Ok(());
            }
            set_next(c, &id, None)?;
            let output = json!({"fired": s.fired, "last_child_run_id": s.last_child});
            let mut app = Appender::load(c, &id)?;
            let mut d = run_draft(RecordStatus::Completed, "end", "run_completed", Value::Null, Actor::runner());
            d.result = Some(output.clone());
            app.append(c, &d, out)?;
            save_chain(c, &app)?;
            c.execute(
                "UPDATE runs SET status = 'completed', output = ?2, updated_at = ?3 WHERE run_id = ?1",
                args![id, output.to_string(), ts(now())],
            )?;
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Schedules, newest first, with their last child's outcome.
    pub(crate) async fn list_schedules(
        &self,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<protocol::ScheduleInfo>, bool)> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT s.run_id, s.bundle_id, s.spec, s.fired, s.next_fire_at, s.last_child, s.last_fired_at, s.share_context,
                        r.status, r.session_id, lc.status, lc.output, lc.error
                 FROM schedules s JOIN runs r ON r.run_id = s.run_id LEFT JOIN runs lc ON lc.run_id = s.last_child
                 ORDER BY r.rowid DESC LIMIT ?1 OFFSET ?2",
            )?;
            let mut items = stmt
                .query_map(args![limit as i64 + 1, offset as i64], schedule_info)?
                .collect::<DbResult<Vec<_>>>()?;
            let more = items.len() > limit as usize;
            items.truncate(limit as usize);
            Ok((items, more))
        })
        .await
    }
}

/// A row of [`Store::list_schedules`]'s query.
fn schedule_info(r: &Row<'_, '_>) -> DbResult<protocol::ScheduleInfo> {
    let status = |i: usize| -> DbResult<Option<RunStatus>> {
        Ok(r.get::<Option<String>>(i)?
            .as_deref()
            .and_then(RunStatus::parse))
    };
    let spec_text: String = r.get(2)?;
    let spec = serde_json::from_str(&spec_text).map_err(|e| DbError::Column(2, e.to_string()))?;
    let last_result = match r.get::<Option<String>>(5)? {
        Some(child) => Some(protocol::LastResult {
            run_id: child,
            status: status(10)?,
            output: r
                .get::<Option<String>>(11)?
                .and_then(|o| serde_json::from_str(&o).ok()),
            error: r.get(12)?,
        }),
        None => None,
    };
    Ok(protocol::ScheduleInfo {
        run_id: r.get(0)?,
        bundle_id: r.get(1)?,
        status: status(8)?.unwrap_or(RunStatus::Failed),
        spec,
        fired: r.get::<i64>(3)? as u32,
        next_fire_at: r.get(4)?,
        last_fired_at: r.get(6)?,
        share_context: r.get(7)?,
        session_id: r.get(9)?,
        last_result,
    })
}

/// `update_schedule`, inside the command transaction: a new spec, maybe a new due time.
pub(super) fn update(
    c: &Db,
    run_id: &str,
    spec: &Value,
    next: Option<DateTime<Utc>>,
) -> Result<Value> {
    if load(c, run_id)?.is_none() {
        return Err(StoreError::Conflict(format!(
            "run `{run_id}` is not a schedule"
        )));
    }
    c.execute(
        "UPDATE schedules SET spec = ?2 WHERE run_id = ?1",
        args![run_id, spec.to_string()],
    )?;
    if let Some(n) = next {
        set_next(c, run_id, Some(n))?;
    }
    Ok(json!({"next_fire_at": next.map(ts)}))
}
