//! `switchboard migrate`: copies an embedded SQLite store into an empty PostgreSQL database,
//! in one PostgreSQL transaction, checking every run's hash chain on the way.
//!
//! Copied: flow versions, runs, ledgers (with their global cursors, which stay below every
//! cursor PostgreSQL hands out later), the command inbox, session history, credentials and
//! settings, schedules, trigger deliveries, webhooks and their outbox. Not copied: the runner
//! lease (the PostgreSQL nodes take their own). The source is read in one read transaction (a
//! consistent snapshot) and is refused while a gateway still holds its runner lease.

use std::path::Path;

use protocol::LedgerRecord;
use rusqlite::OptionalExtension;
use rusqlite::types::Value as Lite;

use super::ledger::{GENESIS, hash_record};
use super::sql::{Db, Val};
use super::{Location, Result, StoreError, now, open_conn, schema, ts};

/// Tables in an order that satisfies their references; `true`: copy SQLite's `rowid` too
/// (PostgreSQL keeps insertion order in a `rowid` column).
const TABLES: &[(&str, bool)] = &[
    ("flow_versions", false),
    ("bundles", false),
    ("runs", true),
    ("ledger", false),
    ("commands", false),
    ("session_messages", false),
    ("tokens", false),
    ("pairing_codes", false),
    ("meta", false),
    ("schedules", false),
    ("trigger_deliveries", false),
    ("webhooks", true),
    ("webhook_deliveries", true),
    ("people", false),
    ("group_members", false),
];

/// Counters PostgreSQL keeps in sequences, set past the copied rows.
const SEQUENCES: &[(&str, &str)] = &[
    ("commands", "seq"),
    ("session_messages", "id"),
    ("runs", "rowid"),
    ("webhooks", "rowid"),
    ("webhook_deliveries", "rowid"),
];

/// What a migration copied.
#[derive(Debug, Default)]
pub(crate) struct Copied {
    /// Rows per table, in copy order.
    pub(crate) tables: Vec<(&'static str, u64)>,
    /// Ledger records whose hash and link to the previous record were checked.
    pub(crate) verified: u64,
}

/// Copies the SQLite store at `from` (a data dir, or its `switchboard.db`) into the empty
/// PostgreSQL database at `to`.
pub(crate) fn migrate_to_postgres(from: &Path, to: &str) -> Result<Copied> {
    let file = if from.is_dir() {
        from.join("switchboard.db")
    } else {
        from.to_owned()
    };
    if !file.exists() {
        return Err(StoreError::Open(format!(
            "no Switchboard store at {} (give the data dir or its switchboard.db)",
            file.display()
        )));
    }
    let mut src = super::sql::Conn::Lite(open_conn(&file, true)?);
    schema::migrate(&mut src)?;
    let super::sql::Conn::Lite(src) = src else {
        return Err(StoreError::Open("the source must be SQLite".into()));
    };
    src.execute_batch("BEGIN")?;
    refuse_live_source(&src)?;
    // Checked before PostgreSQL's transaction opens: it reads and hashes every record.
    let verified = verify_chains(&src)?;
    let mut dst = Location::Postgres(to.to_owned()).connect(true)?;
    schema::migrate(&mut dst)?;
    let db = dst.db();
    // The copy is one long transaction of our own; the nodes' idle timeout is not for it.
    db.execute_batch("SET idle_in_transaction_session_timeout = 0; BEGIN")?;
    match copy_all(&src, &db, verified) {
        Ok(copied) => {
            db.execute_batch("COMMIT")?;
            src.execute_batch("COMMIT")?;
            Ok(copied)
        }
        Err(e) => {
            let _ = db.execute_batch("ROLLBACK");
            let _ = src.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn refuse_live_source(src: &rusqlite::Connection) -> Result<()> {
    let lease: Option<(String, String)> = src
        .query_row(
            "SELECT holder, expires_at FROM leases WHERE name = ?1",
            [super::RUNNER_LEASE],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match lease {
        Some((holder, until)) if until > ts(now()) => Err(StoreError::Conflict(format!(
            "a gateway ({holder}) still serves this store until {until}; stop it first"
        ))),
        _ => Ok(()),
    }
}

fn copy_all(src: &rusqlite::Connection, dst: &Db, verified: u64) -> Result<Copied> {
    let taken: i64 = dst.query_row(
        "SELECT (SELECT COUNT(*) FROM runs) + (SELECT COUNT(*) FROM tokens) + (SELECT COUNT(*) FROM flow_versions)",
        [],
        |r| r.get(0),
    )?;
    if taken > 0 {
        return Err(StoreError::Conflict(
            "the target database already holds a Switchboard store; migrate into an empty database"
                .into(),
        ));
    }
    let mut copied = Copied {
        verified,
        ..Copied::default()
    };
    for &(table, rowid) in TABLES {
        copied
            .tables
            .push((table, copy_table(src, dst, table, rowid)?));
    }
    for (table, col) in SEQUENCES {
        dst.execute_batch(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{col}'), COALESCE((SELECT MAX({col}) FROM {table}), 0) + 1, false)"
        ))?;
    }
    Ok(copied)
}

fn copy_table(src: &rusqlite::Connection, dst: &Db, table: &str, rowid: bool) -> Result<u64> {
    let mut cols: Vec<String> = src
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if rowid {
        cols.insert(0, "rowid".into());
    }
    let list = cols.join(", ");
    let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    let insert = format!("INSERT INTO {table} ({list}) VALUES ({})", marks.join(", "));
    let mut stmt = src.prepare(&format!("SELECT {list} FROM {table} ORDER BY rowid"))?;
    let mut rows = stmt.query([])?;
    let mut n = 0u64;
    while let Some(row) = rows.next()? {
        let vals: Vec<Lite> = (0..cols.len())
            .map(|i| row.get::<_, Lite>(i))
            .collect::<rusqlite::Result<_>>()?;
        let args: Vec<Val<'_>> = vals.iter().map(val).collect();
        dst.prepare_cached(&insert)?.execute(Owned(args))?;
        n += 1;
    }
    Ok(n)
}

fn val(v: &Lite) -> Val<'_> {
    match v {
        Lite::Null => Val::Null,
        Lite::Integer(i) => Val::Int(*i),
        Lite::Real(f) => Val::Real(*f),
        Lite::Text(s) => Val::Text(s),
        Lite::Blob(b) => Val::Blob(b),
    }
}

/// A row's values as statement parameters.
struct Owned<'a>(Vec<Val<'a>>);

impl super::sql::Params for Owned<'_> {
    fn vals(&self) -> Vec<Val<'_>> {
        self.0.clone()
    }
}

/// Checks every run's chain (contiguous seqs from 1, each record's hash, each link, the
/// run's last hash); returns how many records it checked.
fn verify_chains(src: &rusqlite::Connection) -> Result<u64> {
    let mut stmt = src.prepare(
        "SELECT l.run_id, l.seq, l.record, r.last_hash FROM ledger l JOIN runs r ON r.run_id = l.run_id
         ORDER BY l.run_id, l.seq",
    )?;
    let mut rows = stmt.query([])?;
    let (mut n, mut run, mut prev, mut last) = (0u64, String::new(), String::new(), String::new());
    let mut expect_seq = 1;
    let broken = |run: &str, seq: u64, what: &str| {
        StoreError::Corrupt(format!(
            "run `{run}` record {seq}: {what}; nothing was copied"
        ))
    };
    while let Some(row) = rows.next()? {
        let (id, seq, json, run_last): (String, i64, String, String) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        if id != run {
            if !run.is_empty() && prev != last {
                return Err(broken(&run, expect_seq - 1, "is not the run's last hash"));
            }
            (run, prev, last, expect_seq) = (id, GENESIS.to_owned(), run_last, 1);
        }
        let rec: LedgerRecord = serde_json::from_str(&json)?;
        let seq = seq as u64;
        if seq != expect_seq || rec.seq != seq {
            return Err(broken(&run, seq, "the sequence has a gap"));
        }
        if rec.prev_hash != prev {
            return Err(broken(&run, seq, "does not link to the record before it"));
        }
        if hash_record(&rec)? != rec.record_hash {
            return Err(broken(&run, seq, "its hash does not match its contents"));
        }
        prev = rec.record_hash;
        expect_seq += 1;
        n += 1;
    }
    if !run.is_empty() && prev != last {
        return Err(broken(&run, expect_seq - 1, "is not the run's last hash"));
    }
    Ok(n)
}
