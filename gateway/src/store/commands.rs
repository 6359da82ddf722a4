//! The durable command inbox, with idempotency by `command_id`.
//!
//! `submit` is one transaction: insert-or-return-previous (same id + same payload hash →
//! duplicate; other payload → conflict), checks against the run's current state (unknown
//! run, terminal run, stale `wait_key` are refused at once; an answer also passes the
//! caller's `AnswerCheck` against the prompt: choices, approvers, votes), and applies
//! control commands (pause, unpause, cancel with its cascade, emit_event, compact_memory)
//! on the spot. Answers and event deliveries stay `pending` for the runner, which marks
//! them applied or rejected.

use super::sql::{Db, DbResult, Optional, args, locked};
use protocol::{Actor, Command, CommandStatus, RecordStatus, RunStatus, WaitReason, Waiting};
use serde::Deserialize;
use serde_json::{Value, json};

use super::drive::{DriveRow, load_handed_row};
use super::ledger::Appender;
use super::runs::{run_draft, save_chain};
use super::{Directory, Outbox, Result, Store, StoreError, now, ts};
use crate::engine::Draft;

/// A validated command.
#[derive(Debug, Clone)]
pub(crate) enum CommandKind {
    /// Any command but `update_schedule`, as the client's typed command says.
    Client(Command),
    /// `update_schedule`, checked against the schedule: the new spec, and the new due time
    /// when it applies now.
    UpdateSchedule {
        spec: Value,
        next: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// Checks an answer against the prompt it answers (its choices; its approvers and the
/// votes counted so far, with the directory, read only when it names approvers and empty
/// otherwise) and gives the voter
/// it counts as. It runs inside the submit transaction, against the prompt as it is there,
/// and an answer costs no read of its own. (A vote still pending in the inbox is not
/// counted yet: the engine refuses a second vote of the same person when it applies it.)
pub(crate) type AnswerCheck =
    Box<dyn FnOnce(&Waiting, &Directory) -> Result<Option<String>> + Send>;

pub(crate) struct NewCommand {
    pub(crate) command_id: String,
    pub(crate) run_id: String,
    pub(crate) type_name: String,
    pub(crate) payload: Value,
    pub(crate) payload_hash: String,
    pub(crate) client_id: Option<String>,
    pub(crate) actor: Actor,
    pub(crate) kind: CommandKind,
    /// For an answer to a prompt for a person.
    pub(crate) answer_check: Option<AnswerCheck>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Submitted {
    pub(crate) seq: u64,
    pub(crate) duplicate: bool,
}

struct RunRow {
    status: RunStatus,
    paused_from: Option<String>,
    wait_key: Option<String>,
    waiting: Option<Value>,
    session_id: Option<String>,
}

impl Store {
    /// Stores `cmd` (or finds it stored); the runs to wake. With `hand_row`, a new answer
    /// also gives its run as this transaction left it, for the runner to drive without
    /// reading it back.
    pub(crate) async fn submit(
        &self,
        cmd: NewCommand,
        hand_row: bool,
    ) -> Result<(Submitted, Vec<String>, Option<DriveRow>)> {
        let run_id = cmd.run_id.clone();
        let answer = matches!(cmd.kind, CommandKind::Client(Command::Answer { .. }));
        let ((s, row), wake) = self
            .write(move |c, out| {
                let s = submit_tx(c, cmd, out)?;
                let row = load_handed_row(c, &run_id, hand_row && answer && !s.duplicate)?;
                Ok((s, row))
            })
            .await?;
        Ok((s, wake, row))
    }

    pub(crate) async fn command_status(&self, command_id: &str) -> Result<CommandStatus> {
        let id = command_id.to_owned();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT command_id, run_id, type, payload, seq, status, reason, result, created_at, applied_at
                 FROM commands WHERE command_id = ?1",
            )?
            .query_row([&id], |r| {
                Ok(CommandStatus {
                    command_id: r.get(0)?,
                    run_id: r.get(1)?,
                    kind: r.get(2)?,
                    payload: serde_json::from_str(&r.get::<String>(3)?).unwrap_or(Value::Null),
                    seq: r.get::<i64>(4)? as u64,
                    status: r.get(5)?,
                    reason: r.get(6)?,
                    result: r.get::<Option<String>>(7)?.and_then(|s| serde_json::from_str(&s).ok()),
                    created_at: r.get(8)?,
                    applied_at: r.get(9)?,
                })
            })
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("command `{id}` not found")))
        })
        .await
    }

    /// Marks an inbox command rejected (the runner found it no longer applies).
    pub(crate) async fn reject_command(&self, seq: u64, reason: String) -> Result<()> {
        self.write(move |c, _| finish(c, seq, Some(&reason), None))
            .await
            .map(|_| ())
    }
}

/// Marks a command applied (`reason` None) or rejected.
pub(super) fn finish(
    conn: &Db,
    seq: u64,
    reason: Option<&str>,
    result: Option<&Value>,
) -> Result<()> {
    let status = if reason.is_some() {
        "rejected"
    } else {
        "applied"
    };
    // Only a pending command: a drive from a stale row must not undo another's verdict.
    conn.prepare_cached(
        "UPDATE commands SET status = ?2, reason = ?3, result = ?4, applied_at = ?5
         WHERE seq = ?1 AND status = 'pending'",
    )?
    .execute(args![
        seq as i64,
        status,
        reason,
        result.map(serde_json::to_string).transpose()?,
        ts(now())
    ])?;
    Ok(())
}

fn submit_tx(conn: &Db, mut cmd: NewCommand, out: &mut Outbox) -> Result<Submitted> {
    conn.serialize_on(&format!("command:{}", cmd.command_id))?;
    let prev: Option<(i64, String)> = conn
        .prepare_cached("SELECT seq, payload_hash FROM commands WHERE command_id = ?1")?
        .query_row([&cmd.command_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((seq, hash)) = prev {
        if hash == cmd.payload_hash {
            return Ok(Submitted {
                seq: seq as u64,
                duplicate: true,
            });
        }
        return Err(StoreError::Conflict(format!(
            "command_id `{}` was already used by another sender or with a different run, type or payload; use a new command_id",
            cmd.command_id
        )));
    }
    let run = load_run(conn, &cmd.run_id)?;
    check(&cmd, &run)?;
    if let Some(f) = cmd.answer_check.take() {
        cmd.actor.voter = check_answer(conn, &run, f)?;
    }
    let pending = matches!(cmd.kind, CommandKind::Client(Command::Answer { .. }));
    let seq = conn.insert_key(
        "INSERT INTO commands (command_id, run_id, type, payload, payload_hash, client_id, actor, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        "seq",
        args![
        cmd.command_id,
        cmd.run_id,
        cmd.type_name,
        serde_json::to_string(&cmd.payload)?,
        cmd.payload_hash,
        cmd.client_id,
        serde_json::to_string(&cmd.actor)?,
        if pending { "pending" } else { "applied" },
        ts(now())
    ])? as u64;
    let result = apply(conn, &cmd, &run, seq, out)?;
    if !pending {
        conn.prepare_cached("UPDATE commands SET result = ?2, applied_at = ?3 WHERE seq = ?1")?
            .execute(args![seq as i64, result.map(|r| r.to_string()), ts(now())])?;
    }
    Ok(Submitted {
        seq,
        duplicate: false,
    })
}

fn load_run(conn: &Db, run_id: &str) -> Result<RunRow> {
    conn.prepare_cached(locked!(
        conn,
        "SELECT status, paused_from, wait_key, waiting, session_id FROM runs WHERE run_id = ?1"
    ))?
    .query_row([run_id], |r| {
        let s: String = r.get(0)?;
        Ok(RunRow {
            status: RunStatus::parse(&s).unwrap_or(RunStatus::Failed),
            paused_from: r.get(1)?,
            wait_key: r.get(2)?,
            waiting: r
                .get::<Option<String>>(3)?
                .and_then(|w| serde_json::from_str(&w).ok()),
            session_id: r.get(4)?,
        })
    })
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("run `{run_id}` not found")))
}

/// Refuses a command that cannot apply to the run as it is now.
fn check(cmd: &NewCommand, run: &RunRow) -> Result<()> {
    let conflict = |m: String| Err(StoreError::Conflict(m));
    let st = run.status.as_str();
    match &cmd.kind {
        CommandKind::Client(Command::EmitEvent { .. } | Command::CompactMemory { .. }) => Ok(()),
        _ if run.status.is_terminal() => conflict(format!("run `{}` is already {st}", cmd.run_id)),
        CommandKind::Client(Command::Pause) if run.status == RunStatus::Paused => {
            conflict("the run is already paused".into())
        }
        CommandKind::Client(Command::Unpause) if run.status != RunStatus::Paused => {
            conflict(format!(
                "the run is {st}, not paused; to answer a prompt send `wait_key` and `payload.response`"
            ))
        }
        CommandKind::Client(Command::Answer { wait_key, .. }) => {
            let reason = run
                .waiting
                .as_ref()
                .and_then(|w| WaitReason::deserialize(&w["reason"]).ok());
            match (&run.wait_key, reason) {
                (Some(cur), Some(r)) if r.takes_an_answer() && cur == wait_key => Ok(()),
                (Some(cur), Some(r)) if r.takes_an_answer() => conflict(format!(
                    "wait_key `{wait_key}` is not current: the run now waits on `{cur}`"
                )),
                (Some(cur), Some(r)) => conflict(format!(
                    "the run waits on `{cur}` ({}), which cannot be answered",
                    r.as_str()
                )),
                _ => conflict(format!(
                    "wait_key `{wait_key}` is not current: the run is {st} and waits for no answer"
                )),
            }
        }
        _ => Ok(()),
    }
}

/// Runs `f` on the prompt `run` waits on (its `wait_key` was checked), if it is for a person.
fn check_answer(conn: &Db, run: &RunRow, f: AnswerCheck) -> Result<Option<String>> {
    let Some(w) = run
        .waiting
        .as_ref()
        .and_then(|w| Waiting::deserialize(w).ok())
        .filter(Waiting::is_for_a_person)
    else {
        return Ok(None);
    };
    let dir = if w.approvers.is_empty() {
        Directory::default()
    } else {
        super::people::load_directory(conn)?
    };
    f(&w, &dir)
}

fn command_draft(cmd: &NewCommand, seq: u64, status: RecordStatus) -> Draft {
    let t = now();
    Draft {
        step_id: format!("command.{seq}"),
        node_id: cmd.type_name.clone(),
        status,
        effect: Some(protocol::Effect {
            kind: cmd.type_name.clone(),
            payload: json!({"command_id": cmd.command_id, "payload": cmd.payload}),
        }),
        result: None,
        error: None,
        started_at: t,
        ended_at: Some(t),
        attempt: 1,
        idempotency_key: Some(cmd.command_id.clone()),
        actor: cmd.actor.clone(),
    }
}

/// Applies a control command; returns its result for the command's status.
fn apply(
    conn: &Db,
    cmd: &NewCommand,
    run: &RunRow,
    seq: u64,
    out: &mut Outbox,
) -> Result<Option<Value>> {
    let record = |conn: &Db, out: &mut Outbox, result: Option<Value>| -> Result<()> {
        let mut app = Appender::load(conn, &cmd.run_id)?;
        let mut d = command_draft(cmd, seq, RecordStatus::Completed);
        d.result = result;
        app.append(conn, &d, out)?;
        save_chain(conn, &app)
    };
    let client = match &cmd.kind {
        CommandKind::Client(c) => c,
        CommandKind::UpdateSchedule { spec, next } => {
            let result = super::schedules::update(conn, &cmd.run_id, spec, *next)?;
            record(conn, out, Some(result.clone()))?;
            out.wake.push(cmd.run_id.clone());
            return Ok(Some(result));
        }
    };
    match client {
        Command::Answer { .. } => out.wake.push(cmd.run_id.clone()),
        Command::Pause => {
            record(conn, out, None)?;
            set_status(conn, &cmd.run_id, "paused", Some(run.status.as_str()))?;
        }
        Command::Unpause => {
            record(conn, out, None)?;
            let back = run.paused_from.clone().unwrap_or_else(|| "running".into());
            set_status(conn, &cmd.run_id, &back, None)?;
            out.wake.push(cmd.run_id.clone());
        }
        Command::Cancel => cancel_tree(conn, cmd, seq, out)?,
        Command::EmitEvent {
            name,
            scope,
            payload,
            session_id,
        } => {
            let session = session_id.as_deref().or(run.session_id.as_deref());
            let key = crate::engine::event_key(*scope, name, &cmd.run_id, session);
            let n = deliver_event(conn, &key, name, payload, &cmd.actor, out)?;
            let result = json!({"delivered": n});
            if !run.status.is_terminal() {
                record(conn, out, Some(result.clone()))?;
            }
            return Ok(Some(result));
        }
        Command::CompactMemory { keep_last } => {
            let key = crate::engine::session_key(&cmd.run_id, run.session_id.as_deref());
            let removed = conn.execute(
                "DELETE FROM session_messages WHERE session_id = ?1 AND id NOT IN
                   (SELECT id FROM session_messages WHERE session_id = ?1 ORDER BY id DESC LIMIT ?2)",
                args![key, *keep_last as i64],
            )?;
            let result = json!({"removed": removed, "kept": keep_last});
            if !run.status.is_terminal() {
                record(conn, out, Some(result.clone()))?;
            }
            return Ok(Some(result));
        }
        Command::UpdateSchedule(_) => {
            // Built only as `CommandKind::UpdateSchedule`, after its check.
            return Err(StoreError::Invalid(
                "update_schedule must be checked against its schedule".into(),
            ));
        }
    }
    Ok(None)
}

fn set_status(conn: &Db, run_id: &str, status: &str, paused_from: Option<&str>) -> Result<()> {
    conn.prepare_cached(
        "UPDATE runs SET status = ?2, paused_from = ?3, updated_at = ?4 WHERE run_id = ?1",
    )?
    .execute(args![run_id, status, paused_from, ts(now())])?;
    Ok(())
}

/// Cancels a run and every non-terminal descendant; their pending commands are rejected.
fn cancel_tree(conn: &Db, cmd: &NewCommand, seq: u64, out: &mut Outbox) -> Result<()> {
    let mut stack = vec![cmd.run_id.clone()];
    let parent: Option<String> = conn.query_row(
        "SELECT parent_run_id FROM runs WHERE run_id = ?1",
        [&cmd.run_id],
        |r| r.get(0),
    )?;
    while let Some(id) = stack.pop() {
        // A descendant may have ended since it was listed (another node's commit): lock it,
        // then look again.
        if id != cmd.run_id && load_run(conn, &id)?.status.is_terminal() {
            continue;
        }
        let mut app = Appender::load(conn, &id)?;
        if id == cmd.run_id {
            app.append(conn, &command_draft(cmd, seq, RecordStatus::Completed), out)?;
        }
        let why = if id == cmd.run_id {
            "cancelled by command".to_owned()
        } else {
            format!("parent run {} was cancelled", cmd.run_id)
        };
        let mut end = run_draft(
            RecordStatus::Cancelled,
            "end",
            "run_cancelled",
            json!({"command_id": cmd.command_id}),
            cmd.actor.clone(),
        );
        end.error = Some(why.clone());
        app.append(conn, &end, out)?;
        save_chain(conn, &app)?;
        conn.prepare_cached(
            "UPDATE runs SET status = 'cancelled', paused_from = NULL, waiting = NULL, wait_key = NULL, wake_at = NULL,
                event_key = NULL, error = ?2, updated_at = ?3 WHERE run_id = ?1",
        )?
        .execute(args![id, why, ts(now())])?;
        conn.prepare_cached(
            "UPDATE commands SET status = 'rejected', reason = 'the run was cancelled', applied_at = ?2
             WHERE run_id = ?1 AND status = 'pending'",
        )?
        .execute(args![id, ts(now())])?;
        out.wake.push(id.clone());
        let kids = conn
            .prepare_cached(
                "SELECT run_id FROM runs WHERE parent_run_id = ?1 AND status NOT IN ('completed', 'failed', 'cancelled')",
            )?
            .query_map([&id], |r| r.get::<String>(0))?
            .collect::<DbResult<Vec<_>>>()?;
        stack.extend(kids);
    }
    if let Some(p) = parent {
        out.wake.push(p);
    }
    Ok(())
}

/// Queues an event for every run waiting on `key`; returns how many.
pub(super) fn deliver_event(
    conn: &Db,
    key: &str,
    name: &str,
    payload: &Value,
    actor: &Actor,
    out: &mut Outbox,
) -> Result<usize> {
    let targets = conn
        .prepare_cached(locked!(
            conn,
            "SELECT run_id, wait_key FROM runs WHERE event_key = ?1 AND status IN ('waiting', 'paused')"
        ))?
        .query_map([key], |r| Ok((r.get::<String>(0)?, r.get::<Option<String>>(1)?)))?
        .collect::<DbResult<Vec<_>>>()?;
    let at = ts(now());
    let actor_json = serde_json::to_string(actor)?;
    for (run_id, wait_key) in &targets {
        let id = format!("event:{}", uuid::Uuid::new_v4());
        let body = json!({"wait_key": wait_key, "name": name, "payload": payload});
        conn.prepare_cached(
            "INSERT INTO commands (command_id, run_id, type, payload, payload_hash, actor, status, created_at)
             VALUES (?1, ?2, 'event', ?3, '', ?4, 'pending', ?5)",
        )?
        .execute(args![id, run_id, body.to_string(), actor_json, at])?;
        out.wake.push(run_id.clone());
    }
    Ok(targets.len())
}
