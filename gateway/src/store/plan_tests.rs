//! The hot statements stay compiled. SQLite marks a statement whose plan may depend on a
//! bound value to be compiled again when that value changes, and rusqlite's statement cache
//! clears the bindings of every statement it takes back; profiles showed the SQL of each
//! ledger page and each turn of a drive being parsed again. `open_conn` turns on the query
//! planner stability guarantee, which keeps plans independent of values.

use rusqlite::{Connection, StatementStatus};

use super::drive::INBOX_HEAD;
use super::ledger::PAGE_SQL;
use super::runs::{DUE_SQL, NEXT_TIMER_SQL, RESUME_SQL};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A reader as the store opens it, on a migrated database in a fresh directory.
fn reader() -> TestResult<(tempfile::TempDir, Connection)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("switchboard.db");
    let mut w = super::sql::Conn::Lite(super::open_conn(&path, true)?);
    super::schema::migrate(&mut w)?;
    let r = super::open_conn(&path, false)?;
    Ok((dir, r))
}

/// Runs `sql` three times from the statement cache with different values; returns how
/// often SQLite compiled it again.
fn reprepares(
    c: &Connection,
    sql: &str,
    args: impl Fn(i64) -> Vec<rusqlite::types::Value>,
) -> TestResult<i32> {
    for i in 0..3 {
        let mut st = c.prepare_cached(sql)?;
        let mut rows = st.query(rusqlite::params_from_iter(args(i)))?;
        while rows.next()?.is_some() {}
    }
    Ok(c.prepare_cached(sql)?
        .get_status(StatementStatus::RePrepare))
}

#[test]
fn the_inbox_read_of_every_drive_and_ledger_pages_are_compiled_once() -> TestResult {
    let (_dir, c) = reader()?;
    assert_eq!(
        reprepares(&c, INBOX_HEAD, |i| vec![format!("run-{i}").into()])?,
        0
    );
    let page = |i: i64| vec![format!("run-{i}").into(), (i * 100).into(), 100i64.into()];
    assert_eq!(reprepares(&c, PAGE_SQL, page)?, 0);
    Ok(())
}

/// SQLite's query plan of `sql`, one line per step.
fn plan(c: &Connection, sql: &str) -> TestResult<String> {
    let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let n = st.parameter_count();
    let args = vec![rusqlite::types::Value::Null; n];
    let rows = st
        .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows.join("\n"))
}

/// Waiting runs are read through indexes that hold only what is asked for: a store of a
/// million runs waiting for a person starts, and runs its timer loop, without walking them
/// (without these, the planner walked `runs_by_status` for every waiting run).
#[test]
fn the_start_and_the_timer_loop_never_walk_every_waiting_run() -> TestResult {
    let (_dir, c) = reader()?;
    let resume = plan(&c, RESUME_SQL)?;
    assert!(
        resume.contains("SCAN c USING"),
        "the pending commands lead: {resume}"
    );
    assert!(resume.contains("commands_pending"), "{resume}");
    assert!(resume.contains("runs_waiting_on_children"), "{resume}");
    assert_eq!(resume.matches("runs_by_status").count(), 1, "{resume}");
    for sql in [DUE_SQL, NEXT_TIMER_SQL] {
        let p = plan(&c, sql)?;
        assert!(p.contains("runs_by_status_wake"), "{sql}: {p}");
    }
    Ok(())
}
