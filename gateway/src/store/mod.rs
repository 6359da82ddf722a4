//! The store: the embedded SQLite file (WAL, `synchronous=FULL`) or a shared PostgreSQL
//! database (`synchronous_commit=on`), behind one handle; the only module that speaks SQL.
//!
//! Owns the SQL boundary both backends share (`sql`), PostgreSQL's connections (`pg`), the
//! schema of each backend (`schema`), the single writer thread with group commit (`writer`), a small
//! pool of read connections, and the operations the rest of the gateway needs: runs
//! (`runs`), the ledger (`ledger`), the command inbox (`commands`), flow versions (`flows`),
//! trigger deliveries, webhooks, the webhook outbox and session history (`hooks`),
//! schedules and their firings (`schedules`), credentials and settings (`tokens`), and
//! following another process's commits and the runner lease (`follow`), copying an
//! embedded store into PostgreSQL (`copy`), and deleting runs past retention (`prune`) and
//! giving their space back (`reclaim`).
//! Every write returns only after its transaction is on disk; bus events of a write are
//! published only after it committed. It persists what the engine produces (a
//! `Transition`, its record drafts, a run's `RunState`) as data; it never runs the engine,
//! reads a flow, or decides what a run does next.

mod backup;
mod bind;
mod children;
mod claims;
mod commands;
mod copy;
mod drive;
mod flows;
mod follow;
mod hooks;
mod ledger;
mod people;
mod pg;
mod prune;
mod push;
mod reader;
mod reclaim;
mod runs;
mod schedules;
mod schema;
mod sql;
mod tokens;
mod traces;
mod writer;

#[cfg(test)]
mod fence_tests;
#[cfg(test)]
mod handed_tests;
#[cfg(test)]
mod plan_tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::OpenFlags;
use rusqlite::config::DbConfig;

pub(crate) use backup::{backup_sqlite, check_sqlite, copy_sqlite, doctor_sqlite};
pub(crate) use claims::node_lease;
pub(crate) use commands::{AnswerCheck, CommandKind, NewCommand};
pub(crate) use copy::migrate_to_postgres;
pub(crate) use drive::DriveRow;
pub(crate) use flows::MakeCurrent;
pub(crate) use follow::this_host;
pub(crate) use hooks::{
    Attempt, DueDelivery, HookKind, NewDelivery, START_NAMESPACE, Started, Webhook, now_ms,
};
pub(crate) use ledger::GlobalItem;
pub(crate) use people::Directory;
pub(crate) use pg::redact as redact_url;
pub(crate) use prune::Pruned;
pub(crate) use reclaim::vacuum_offline;
pub(crate) use runs::{Commit, FirstStep, NewRun};
pub(crate) use schedules::{Fire, NewSchedule};
pub(crate) use sql::DbError;
use sql::{Conn, Db, args};
pub(crate) use tokens::TokenRow;
pub(crate) use writer::Outbox;

use crate::bus::Bus;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// The caller may not do this (an answer from someone not among the prompt's approvers).
    #[error("{0}")]
    Forbidden(String),
    /// An answer that is not one of the prompt's choices.
    #[error("{0}")]
    InvalidAnswer(String),
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("the store is shut down")]
    Closed,
    #[error("store data is damaged: {0}")]
    Corrupt(String),
    #[error("cannot open the database: {0}")]
    Open(String),
    #[error("this process no longer holds the runner lease (fence {0}): write refused")]
    Fenced(i64),
    #[error("run `{0}` is driven by another node now: write refused")]
    NotOwner(String),
    /// A transition computed from a handed row whose run moved on since (the drive reads
    /// the run again).
    #[error("run `{0}` changed since its row was handed to the runner: write refused")]
    Stale(String),
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self::Corrupt(format!("bad JSON in the store: {e}"))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(DbError::Sqlite(e))
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        Self::Db(DbError::Pg(e))
    }
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

const READERS: usize = 4;
/// Writer threads (and connections) of a PostgreSQL node; SQLite has one.
const PG_WRITERS: usize = 4;
/// Prepared statements kept per connection. The store has more distinct statements than
/// rusqlite's default of 16, and a statement pushed out is parsed again on its next use.
const STATEMENT_CACHE: usize = 256;

/// Where the store lives: the embedded SQLite file in the data dir (the default), or a
/// PostgreSQL database that several gateway nodes share.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// `DIR/switchboard.db`.
    Sqlite(PathBuf),
    /// A `postgres://` URL.
    Postgres(String),
}

impl std::fmt::Debug for Location {
    /// Never shows a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(dir) => f.debug_tuple("Sqlite").field(dir).finish(),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(&redact_url(url)).finish(),
        }
    }
}

impl Location {
    /// The store a configuration names: `SWITCHBOARD_DATABASE_URL` when set (it must be a
    /// `postgres://` URL), else the data dir's SQLite file.
    pub(crate) fn new(database_url: Option<String>, data_dir: &Path) -> Result<Self, String> {
        match database_url.filter(|u| !u.is_empty()) {
            None => Ok(Self::Sqlite(data_dir.to_owned())),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(Self::Postgres(u))
            }
            Some(u) => Err(format!(
                "SWITCHBOARD_DATABASE_URL `{}` must be a postgres:// URL (leave it unset for the embedded SQLite store)",
                redact_url(&u)
            )),
        }
    }

    /// Opens one connection (`write`: the writer's, which may create the database).
    fn connect(&self, write: bool) -> Result<Conn> {
        match self {
            Self::Sqlite(dir) => open_conn(&dir.join("switchboard.db"), write).map(Conn::Lite),
            Self::Postgres(url) => pg::connect(url).map(|c| Conn::Pg(Box::new(c))),
        }
    }
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub(crate) struct Store {
    writer: writer::Writer,
    readers: reader::Readers,
    location: Arc<Location>,
    bus: Bus,
    /// The connection of [`Store::write_alone`], opened on first use.
    alone: Arc<Mutex<Option<Conn>>>,
    /// Set on a runner's handle on a shared store: the node name its runs are claimed under
    /// (see `claims`).
    owner: Option<Arc<str>>,
    /// Set on the runner's handle: every write first checks that this process still holds
    /// the runner lease with this fencing number (see [`Store::fenced`]).
    fence: Option<i64>,
}

/// The lease one runner per store holds.
pub(crate) const RUNNER_LEASE: &str = "runner";

impl Store {
    /// Opens (creating if needed) the store at `location`, migrates it and starts the writer.
    /// Connecting runs on a thread of its own: PostgreSQL's blocking client must not start
    /// inside the async runtime.
    pub(crate) fn open(location: &Location, bus: Bus) -> Result<Self> {
        let loc = location.clone();
        let (writers, readers) = off_runtime(|| -> Result<(Vec<Conn>, Vec<Conn>)> {
            let mut conn = loc.connect(true)?;
            schema::migrate(&mut conn)?;
            let mut writers = vec![conn];
            if let Location::Postgres(_) = loc {
                for _ in 1..PG_WRITERS {
                    writers.push(loc.connect(true)?);
                }
            }
            let readers = (0..READERS)
                .map(|_| loc.connect(false))
                .collect::<Result<Vec<_>>>()?;
            Ok((writers, readers))
        })?;
        let location = Arc::new(loc);
        let writer = writer::Writer::start(writers, location.clone(), bus.clone())?;
        let readers = reader::Readers::start(readers, location.clone())?;
        Ok(Self {
            writer,
            readers,
            location,
            bus,
            alone: Arc::default(),
            owner: None,
            fence: None,
        })
    }

    pub(crate) fn bus(&self) -> &Bus {
        &self.bus
    }

    /// A store that other gateway nodes may share (PostgreSQL).
    pub(crate) fn is_shared(&self) -> bool {
        matches!(*self.location, Location::Postgres(_))
    }

    /// Runs a read on one of the reader threads' connections (off the async threads).
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T> + Send + 'static,
    {
        self.readers.read(f).await
    }

    /// Runs a write in the group-committed transaction; returns after it is on disk, with the
    /// runs the runner should look at. On a fenced handle the write first checks the fence.
    async fn write<T, F>(&self, f: F) -> Result<(T, Vec<String>)>
    where
        T: Send + 'static,
        F: FnOnce(&Db, &mut Outbox) -> Result<T> + Send + 'static,
    {
        self.write_in_batch(f, false).await
    }

    /// [`Store::write`], in a batch of its own (a big write: see `writer::Job::solo`).
    async fn write_solo<T, F>(&self, f: F) -> Result<(T, Vec<String>)>
    where
        T: Send + 'static,
        F: FnOnce(&Db, &mut Outbox) -> Result<T> + Send + 'static,
    {
        self.write_in_batch(f, true).await
    }

    async fn write_in_batch<T, F>(&self, f: F, solo: bool) -> Result<(T, Vec<String>)>
    where
        T: Send + 'static,
        F: FnOnce(&Db, &mut Outbox) -> Result<T> + Send + 'static,
    {
        match self.fence {
            None => self.writer.write(f, solo).await,
            Some(fence) => {
                let fenced = move |db: &Db, out: &mut Outbox| {
                    check_fence(db, fence)?;
                    f(db, out)
                };
                self.writer.write(fenced, solo).await
            }
        }
    }

    /// Runs `f` in a transaction of its own, on a connection of its own, outside the group
    /// commit: for the runner lease, whose row lock must last one statement, not a whole
    /// batch (where it would wait on, and be waited on by, the batch's other writes).
    async fn write_alone<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T> + Send + 'static,
    {
        let (slot, location) = (self.alone.clone(), self.location.clone());
        tokio::task::spawn_blocking(move || {
            let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
            if guard.as_ref().is_none_or(Conn::is_broken) {
                *guard = Some(location.connect(true)?);
            }
            let Some(conn) = guard.as_ref() else {
                return Err(StoreError::Closed);
            };
            let db = conn.db();
            db.execute_batch(if db.is_pg() {
                "BEGIN"
            } else {
                "BEGIN IMMEDIATE"
            })?;
            match f(&db) {
                Ok(v) => {
                    db.execute_batch("COMMIT")?;
                    Ok(v)
                }
                Err(e) => {
                    let _ = db.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// This handle with every write fenced by `fence`, the runner lease's fencing number
    /// when this process took it: once another process takes the lease (and its number
    /// grows), each of these writes fails instead of committing. On PostgreSQL the check
    /// holds a share lock on the lease row until the commit, so a takeover waits for writes
    /// already checked and every later one sees the new number.
    pub(crate) fn fenced(&self, fence: i64) -> Store {
        Store {
            fence: Some(fence),
            ..self.clone()
        }
    }
}

impl Store {
    /// Returns once every write queued before it has committed (used at shutdown; with
    /// several writer threads, once none has a job left, at most 10 s).
    pub(crate) async fn flush(&self) -> Result<()> {
        self.write(|_, _| Ok(())).await?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.writer.idle() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

fn check_fence(db: &Db, fence: i64) -> Result<()> {
    let sql = if db.is_pg() {
        "SELECT fence FROM leases WHERE name = ?1 AND fence = ?2 FOR SHARE"
    } else {
        "SELECT fence FROM leases WHERE name = ?1 AND fence = ?2"
    };
    match db.query_row(sql, args![RUNNER_LEASE, fence], |r| r.get::<i64>(0)) {
        Ok(_) => Ok(()),
        Err(DbError::NoRows) => Err(StoreError::Fenced(fence)),
        Err(e) => Err(e.into()),
    }
}

/// Runs `f` on a thread of its own and waits for it: PostgreSQL's blocking client panics
/// when it starts on a thread that drives async tasks. Only for opening connections.
fn off_runtime<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .map_err(|_| StoreError::Open("the connecting thread panicked".into()))?
    })
}

fn open_conn(path: &Path, write: bool) -> Result<rusqlite::Connection> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Plans must not depend on bound values. Without this, SQLite (built with STAT4) marks
    // statements with ORDER BY and parameters to be compiled again whenever a value is
    // bound, and the statement cache rebinds on every use: each ledger page and each turn
    // of a drive parsed its SQL again (store/plan_tests.rs).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    if write {
        // Pruned pages go back to the file system (`prune`); takes effect on a new file
        // only (an older one turns it on with `switchboard prune --data-dir`).
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

pub(crate) fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    crate::engine::ts(t)
}
