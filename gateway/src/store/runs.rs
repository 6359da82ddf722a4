//! Runs: creation (with the first ledger record, in one transaction), summaries and lists,
//! and the runner's commits: a transition (ledger records + run row + side effects on other
//! runs) atomically. What a drive reads is `drive`.

use super::sql::{Db, DbError, DbResult, Optional, Row, args, locked};
use protocol::{Actor, Effect, RecordStatus, RunStatus, RunSummary};
use serde_json::{Value, json};

use super::children::spawn_child;
use super::drive::{DriveRow, load_handed_row};
use super::ledger::Appender;
use super::{Outbox, Result, Store, StoreError, now, ts};
use crate::engine::{ChatMessage, Draft, RunState, Transition};

pub(crate) struct NewRun {
    pub(crate) run_id: String,
    pub(crate) bundle_id: String,
    pub(crate) flow_hash: String,
    pub(crate) session_id: Option<String>,
    pub(crate) parent_run_id: Option<String>,
    pub(crate) input_data: Value,
    pub(crate) notify: Vec<String>,
    pub(crate) actor: Actor,
    /// The run's trace (`crate::trace`), when traces are on.
    pub(crate) trace: Option<String>,
}

/// A new run's first transition, computed before its start is written (see
/// `Runner::first_step`), so that the start's transaction commits it too.
pub(crate) struct FirstStep {
    pub(crate) transition: Transition,
    pub(crate) state: RunState,
    /// When it was computed: the run's creation time and its `run_started` record's, so no
    /// record of the run is older than its start.
    pub(crate) at: chrono::DateTime<chrono::Utc>,
}

/// A transition the runner computed, with the inbox command it consumed (if any).
pub(crate) struct Commit {
    pub(crate) run_id: String,
    pub(crate) transition: Transition,
    pub(crate) state: RunState,
    /// `(seq, None)` applied, `(seq, Some(reason))` rejected.
    pub(crate) command: Option<(u64, Option<String>)>,
    /// Refuse the commit (`StoreError::Stale`, nothing written) unless the run's last
    /// ledger seq is still this one: set when the transition was computed from a handed row.
    pub(crate) expect_seq: Option<u64>,
}

const SUMMARY_COLS: &str = "run_id, bundle_id, flow_hash, status, waiting, output, error, session_id, parent_run_id, notify, last_seq, created_at, updated_at";

pub(super) fn status_of(s: &str) -> DbResult<RunStatus> {
    RunStatus::parse(s).ok_or_else(|| DbError::Column(3, format!("status {s}")))
}

fn json_col(r: &Row, i: usize) -> DbResult<Option<Value>> {
    let s: Option<String> = r.get(i)?;
    Ok(s.and_then(|s| serde_json::from_str(&s).ok()))
}

fn summary(r: &Row<'_, '_>) -> DbResult<RunSummary> {
    let bundle: String = r.get(1)?;
    Ok(RunSummary {
        run_id: r.get(0)?,
        flow_id: bundle.clone(),
        bundle_id: bundle,
        flow_hash: r.get(2)?,
        status: status_of(&r.get::<String>(3)?)?,
        waiting: json_col(r, 4)?.and_then(|v| serde_json::from_value(v).ok()),
        output: json_col(r, 5)?,
        error: r.get(6)?,
        session_id: r.get(7)?,
        parent_run_id: r.get(8)?,
        notify: json_col(r, 9)?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        ledger_len: r.get::<i64>(10)? as u64,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
    })
}

pub(super) fn get_summary(conn: &Db, run_id: &str) -> Result<RunSummary> {
    conn.prepare_cached(&format!(
        "SELECT {SUMMARY_COLS} FROM runs WHERE run_id = ?1"
    ))?
    .query_row([run_id], summary)
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("run `{run_id}` not found")))
}

/// Inserts a run and its `started` record.
pub(super) fn insert_run(conn: &Db, r: &NewRun, out: &mut Outbox) -> Result<()> {
    insert_run_at(conn, r, now(), out)
}

/// [`insert_run`], the run created at `created`.
fn insert_run_at(
    conn: &Db,
    r: &NewRun,
    created: chrono::DateTime<chrono::Utc>,
    out: &mut Outbox,
) -> Result<()> {
    let at = ts(created);
    let state = serde_json::to_string(&RunState::default())?;
    conn.prepare_cached(
        "INSERT INTO runs (run_id, bundle_id, flow_hash, status, session_id, parent_run_id, input_data, state,
            notify, last_seq, last_hash, created_at, updated_at, trace)
         VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7, ?8, 0, '', ?9, ?9, ?10)",
    )?
    .execute(args![
        r.run_id,
        r.bundle_id,
        r.flow_hash,
        r.session_id,
        r.parent_run_id,
        serde_json::to_string(&r.input_data)?,
        state,
        serde_json::to_string(&r.notify)?,
        at,
        r.trace
    ])?;
    let mut app = Appender::new_run(&r.run_id);
    let payload = json!({"bundle_id": r.bundle_id, "flow_hash": r.flow_hash, "session_id": r.session_id,
        "parent_run_id": r.parent_run_id, "notify": r.notify});
    let mut started = run_draft(
        RecordStatus::Started,
        "start",
        "run_started",
        payload,
        r.actor.clone(),
    );
    started.started_at = created;
    app.append(conn, &started, out)?;
    save_chain(conn, &app)?;
    out.wake.push(r.run_id.clone());
    Ok(())
}

/// Locks a run's row for the rest of the transaction (PostgreSQL; SQLite's one writer
/// needs none), so what this transaction reads of the run stays true until it commits.
pub(super) fn lock_run(conn: &Db, run_id: &str) -> Result<()> {
    if conn.is_pg() {
        conn.prepare_cached("SELECT 1 FROM runs WHERE run_id = ?1 FOR UPDATE")?
            .for_each([run_id], |_| Ok(()))?;
    }
    Ok(())
}

pub(super) fn save_chain(conn: &Db, app: &Appender) -> Result<()> {
    conn.prepare_cached("UPDATE runs SET last_seq = ?2, last_hash = ?3 WHERE run_id = ?1")?
        .execute(args![app.run_id, app.last_seq as i64, app.last_hash])?;
    Ok(())
}

/// A run-level record (`step_id` "run").
pub(super) fn run_draft(
    status: RecordStatus,
    node: &str,
    kind: &str,
    payload: Value,
    actor: Actor,
) -> Draft {
    let t = now();
    Draft {
        step_id: "run".into(),
        node_id: node.into(),
        status,
        effect: Some(Effect {
            kind: kind.into(),
            payload,
        }),
        result: None,
        error: None,
        started_at: t,
        ended_at: (status != RecordStatus::Started).then_some(t),
        attempt: 1,
        idempotency_key: None,
        actor,
    }
}

impl Store {
    /// Starts a run, and commits its `first` transition in the same transaction; with
    /// `hand_row`, also returns the run as it was stored, for the runner to drive without
    /// reading it back.
    pub(crate) async fn start_run(
        &self,
        r: NewRun,
        hand_row: bool,
        first: Option<FirstStep>,
    ) -> Result<(RunSummary, Vec<String>, Option<DriveRow>)> {
        let owner = self.owner.clone();
        let ((summary, row), wake) = self
            .write(move |c, out| {
                insert_run_at(c, &r, first.as_ref().map_or_else(now, |f| f.at), out)?;
                super::claims::claim_new(c, &r.run_id, owner.as_deref())?;
                if let Some(f) = first {
                    let first = Commit {
                        run_id: r.run_id.clone(),
                        transition: f.transition,
                        state: f.state,
                        command: None,
                        expect_seq: None,
                    };
                    commit_tx(c, first, out)?;
                }
                let row = load_handed_row(c, &r.run_id, hand_row)?;
                Ok((get_summary(c, &r.run_id)?, row))
            })
            .await?;
        Ok((summary, wake, row))
    }

    pub(crate) async fn run(&self, run_id: &str) -> Result<RunSummary> {
        let id = run_id.to_owned();
        self.read(move |c| get_summary(c, &id)).await
    }

    /// Newest first; `has_more` tells whether another page exists.
    pub(crate) async fn list_runs(
        &self,
        status: Option<RunStatus>,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<RunSummary>, bool)> {
        self.read(move |c| {
            let take = limit as i64 + 1;
            let mut items = match status {
                Some(s) => c
                    .prepare_cached(&format!(
                        "SELECT {SUMMARY_COLS} FROM runs WHERE status = ?1 ORDER BY rowid DESC LIMIT ?2 OFFSET ?3"
                    ))?
                    .query_map(args![s.as_str(), take, offset as i64], summary)?
                    .collect::<DbResult<Vec<_>>>()?,
                None => c
                    .prepare_cached(&format!("SELECT {SUMMARY_COLS} FROM runs ORDER BY rowid DESC LIMIT ?1 OFFSET ?2"))?
                    .query_map(args![take, offset as i64], summary)?
                    .collect::<DbResult<Vec<_>>>()?,
            };
            let more = items.len() > limit as usize;
            items.truncate(limit as usize);
            Ok((items, more))
        })
        .await
    }

    /// How many runs are in each status (all six, zeros included).
    pub(crate) async fn count_by_status(&self) -> Result<Vec<(&'static str, u64)>> {
        self.read(|c| {
            let mut counts: Vec<(&'static str, u64)> =
                RunStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
            let mut stmt = c.prepare_cached("SELECT status, COUNT(*) FROM runs GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)))?;
            for row in rows {
                let (s, n) = row?;
                if let Some(e) = counts.iter_mut().find(|(k, _)| *k == s) {
                    e.1 = n as u64;
                }
            }
            Ok(counts)
        })
        .await
    }

    pub(crate) async fn input_data(&self, run_id: &str) -> Result<Value> {
        let id = run_id.to_owned();
        self.read(move |c| {
            let s: Option<String> = c
                .query_row(
                    "SELECT input_data FROM runs WHERE run_id = ?1",
                    [&id],
                    |r| r.get(0),
                )
                .optional()?;
            let s = s.ok_or_else(|| StoreError::NotFound(format!("run `{id}` not found")))?;
            Ok(serde_json::from_str(&s)?)
        })
        .await
    }

    /// The first `limit` children of a run, oldest first.
    pub(crate) async fn children(&self, run_id: &str, limit: u32) -> Result<Vec<RunSummary>> {
        let id = run_id.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {SUMMARY_COLS} FROM runs WHERE parent_run_id = ?1 ORDER BY rowid LIMIT ?2"
            ))?
            .query_map(args![id, limit], summary)?
            .collect::<DbResult<Vec<_>>>()?)
        })
        .await
    }

    /// A session's conversation, oldest first (the last `limit` turns).
    pub(crate) async fn history(&self, session_key: &str, limit: u32) -> Result<Vec<ChatMessage>> {
        let key = session_key.to_owned();
        self.read(move |c| {
            let mut v = c
                .prepare_cached("SELECT role, content FROM session_messages WHERE session_id = ?1 ORDER BY id DESC LIMIT ?2")?
                .query_map(args![key, limit as i64], |r| Ok(ChatMessage::text(&r.get::<String>(0)?, r.get::<String>(1)?)))?
                .collect::<DbResult<Vec<_>>>()?;
            v.reverse();
            Ok(v)
        })
        .await
    }

    /// Runs the runner must look at after a start:
    /// - those running (a drive or an effect was under way);
    /// - waiting ones with a command in their inbox (found from the pending commands:
    ///   `CROSS JOIN` keeps SQLite's planner from walking every waiting run instead);
    /// - waiting schedules and runs waiting for a child: a child's end wakes its parent in
    ///   memory only, so a crash in between leaves nothing else to find it by
    ///   (`runs_waiting_on_children`, a partial index, holds just these).
    ///
    /// Runs waiting for a person, an event or a timer need nothing until a command or the
    /// timer loop wakes them, so a start reads none of them: a store of a million of them
    /// starts as fast as an empty one.
    pub(crate) async fn runs_to_resume(&self) -> Result<Vec<String>> {
        self.read(|c| {
            // SQLite's planner, without statistics, prefers the status index (every waiting
            // run) to the partial one; PostgreSQL's knows better.
            let sql = if c.is_pg() {
                RESUME_SQL.replace("INDEXED BY runs_waiting_on_children", "")
            } else {
                RESUME_SQL.to_owned()
            };
            Ok(c.prepare_cached(&sql)?
                .query_map([], |r| r.get(0))?
                .collect::<DbResult<Vec<_>>>()?)
        })
        .await
    }

    /// Up to `limit` runs whose timer is due at `at` (the earliest first), and the next
    /// time after that any timer fires. On a shared store, only runs this node drives or
    /// nobody does: another live node fires its own, and the sweep takes a dead node's.
    pub(crate) async fn due_timers(
        &self,
        at: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<(Vec<String>, Option<String>)> {
        let at = ts(at);
        let me = self.owner.clone();
        self.read(move |c| {
            let due = match &me {
                Some(me) if c.is_pg() => c
                    .prepare_cached("SELECT run_id FROM runs WHERE wake_at IS NOT NULL AND wake_at <= ?1 AND status = 'waiting'
                        AND (owner IS NULL OR owner = ?3) ORDER BY wake_at LIMIT ?2")?
                    .query_map(args![at, limit as i64, me.as_ref()], |r| r.get(0))?
                    .collect::<DbResult<Vec<String>>>()?,
                _ => c
                    .prepare_cached(DUE_SQL)?
                    .query_map(args![at, limit as i64], |r| r.get(0))?
                    .collect::<DbResult<Vec<String>>>()?,
            };
            let next = c
                .prepare_cached(NEXT_TIMER_SQL)?
                .query_row([&at], |r| r.get(0))?;
            Ok((due, next))
        })
        .await
    }

    /// Commits a runner transition; returns the run's status afterwards. A run cancelled
    /// meanwhile keeps its status and the transition is dropped.
    pub(crate) async fn commit(&self, c: Commit) -> Result<(RunStatus, Vec<String>)> {
        let owner = self.owner.clone();
        self.write(move |conn, out| {
            super::claims::check_owner(conn, &c.run_id, owner.as_deref())?;
            commit_tx(conn, c, out)
        })
        .await
    }
}

fn commit_tx(conn: &Db, c: Commit, out: &mut Outbox) -> Result<RunStatus> {
    type Head = (RunStatus, Option<String>, Option<String>, u64);
    let (cur, parent, session, last_seq): Head = conn
        .prepare_cached(locked!(
            conn,
            "SELECT status, parent_run_id, session_id, last_seq FROM runs WHERE run_id = ?1"
        ))?
        .query_row([&c.run_id], |r| {
            Ok((
                status_of(&r.get::<String>(0)?)?,
                r.get(1)?,
                r.get(2)?,
                r.get::<i64>(3)? as u64,
            ))
        })
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("run `{}` not found", c.run_id)))?;
    if c.expect_seq.is_some_and(|seen| seen != last_seq) {
        return Err(StoreError::Stale(c.run_id));
    }
    if cur.is_terminal() {
        if let Some((seq, _)) = c.command {
            super::commands::finish(
                conn,
                seq,
                Some(&format!("the run is {}", cur.as_str())),
                None,
            )?;
        }
        return Ok(cur);
    }
    let t = &c.transition;
    let mut app = Appender::load(conn, &c.run_id)?;
    for d in &t.records {
        app.append(conn, d, out)?;
    }
    let new = t.status();
    let (status, paused_from) = if cur == RunStatus::Paused && !new.is_terminal() {
        (RunStatus::Paused, Some(new.as_str()))
    } else {
        (new, None)
    };
    let waiting = t.waiting.as_ref().map(serde_json::to_string).transpose()?;
    let wait_key = t.waiting.as_ref().map(|w| w.wait_key.clone());
    conn.prepare_cached(
        "UPDATE runs SET status = ?2, paused_from = ?3, state = ?4, waiting = ?5, wait_key = ?6, wake_at = ?7,
            event_key = ?8, output = COALESCE(?9, output), error = ?10, last_seq = ?11, last_hash = ?12, updated_at = ?13
         WHERE run_id = ?1",
    )?
    .execute(args![
        c.run_id,
        status.as_str(),
        paused_from,
        serde_json::to_string(&c.state)?,
        waiting,
        wait_key,
        t.wake_at.map(ts),
        t.event_key,
        t.output.as_ref().map(serde_json::to_string).transpose()?,
        t.error,
        app.last_seq as i64,
        app.last_hash,
        ts(now())
    ])?;
    if let Some(child) = &t.spawn {
        spawn_child(conn, &c.run_id, session.clone(), child, out)?;
    }
    for e in &t.emits {
        super::commands::deliver_event(conn, &e.key, &e.name, &e.payload, &Actor::runner(), out)?;
    }
    if !t.notify.is_empty() {
        add_notify(conn, &c.run_id, &t.notify)?;
    }
    if !t.history.is_empty() {
        let key = crate::engine::session_key(&c.run_id, session.as_deref());
        append_history(conn, &key, &c.run_id, &t.history)?;
    }
    if let Some((seq, reason)) = &c.command {
        super::commands::finish(conn, *seq, reason.as_deref(), None)?;
    }
    if status.is_terminal() {
        reject_pending(conn, &c.run_id, status)?;
        if let Some(p) = parent {
            out.wake.push(p);
        }
    }
    Ok(status)
}

/// Rejects the commands still waiting in the inbox of a run that just ended (answers and
/// events that came too late), in the transaction that ended it.
fn reject_pending(conn: &Db, run_id: &str, status: RunStatus) -> Result<()> {
    let seqs = conn
        .prepare_cached("SELECT seq FROM commands WHERE run_id = ?1 AND status = 'pending'")?
        .query_map([run_id], |r| r.get::<i64>(0))?
        .collect::<DbResult<Vec<_>>>()?;
    let why = format!("the run is {}", status.as_str());
    for seq in seqs {
        super::commands::finish(conn, seq as u64, Some(&why), None)?;
    }
    Ok(())
}

fn append_history(conn: &Db, session: &str, run_id: &str, turns: &[ChatMessage]) -> Result<()> {
    let at = ts(now());
    let mut ins = conn.prepare_cached(
        "INSERT INTO session_messages (session_id, run_id, role, content, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for m in turns {
        ins.execute(args![session, run_id, m.role, m.content, at])?;
    }
    Ok(())
}

/// The timer loop's reads ([`Store::due_timers`]), served by `runs_by_status_wake`.
pub(super) const DUE_SQL: &str = "SELECT run_id FROM runs
    WHERE wake_at IS NOT NULL AND wake_at <= ?1 AND status = 'waiting' ORDER BY wake_at LIMIT ?2";
pub(super) const NEXT_TIMER_SQL: &str =
    "SELECT MIN(wake_at) FROM runs WHERE wake_at > ?1 AND status = 'waiting'";

/// See [`Store::runs_to_resume`]. The last part repeats the predicate of the partial index
/// `runs_waiting_on_children` (`schema::WAITS`), or neither planner could use it.
pub(super) const RESUME_SQL: &str = "SELECT run_id FROM runs WHERE status = 'running'
    UNION
    SELECT r.run_id FROM commands c CROSS JOIN runs r
     WHERE r.run_id = c.run_id AND c.status = 'pending' AND r.status = 'waiting'
    UNION
    SELECT run_id FROM runs INDEXED BY runs_waiting_on_children
     WHERE status = 'waiting' AND (kind = 'schedule' OR waiting LIKE '%\"child_run_id\"%')";

/// Adds channel targets to a run's `notify` (an escalation), each once.
fn add_notify(conn: &Db, run_id: &str, more: &[String]) -> Result<()> {
    let text: String =
        conn.query_row("SELECT notify FROM runs WHERE run_id = ?1", [run_id], |r| {
            r.get(0)
        })?;
    let mut list: Vec<String> = serde_json::from_str(&text).unwrap_or_default();
    for n in more {
        if !list.contains(n) {
            list.push(n.clone());
        }
    }
    conn.execute(
        "UPDATE runs SET notify = ?2 WHERE run_id = ?1",
        args![run_id, serde_json::to_string(&list)?],
    )?;
    Ok(())
}
