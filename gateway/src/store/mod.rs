//! The store: SQLite in WAL mode with `synchronous=FULL`, the only module that speaks SQL.
//!
//! Owns the schema (`schema`), the single writer thread with group commit (`writer`), a small
//! pool of read connections, and the operations the rest of the gateway needs: runs
//! (`runs`), the ledger (`ledger`), the command inbox (`commands`), flow versions (`flows`),
//! trigger deliveries, webhooks, the webhook outbox and session history (`hooks`),
//! schedules and their firings (`schedules`), credentials and settings (`tokens`), and
//! following another process's commits and the runner lease (`follow`).
//! Every write returns only after its transaction is on disk; bus events of a write are
//! published only after it committed. It persists what the engine produces (a
//! `Transition`, its record drafts, a run's `RunState`) as data; it never runs the engine,
//! reads a flow, or decides what a run does next.

mod commands;
mod flows;
mod follow;
mod hooks;
mod ledger;
mod runs;
mod schedules;
mod schema;
mod tokens;
mod writer;

#[cfg(test)]
mod plan_tests;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

pub(crate) use commands::{CommandKind, NewCommand};
pub(crate) use flows::MakeCurrent;
pub(crate) use follow::this_host;
pub(crate) use hooks::{
    Attempt, DueDelivery, NewDelivery, START_NAMESPACE, Started, Webhook, now_ms,
};
pub(crate) use ledger::GlobalItem;
pub(crate) use runs::{Commit, DriveRow, NewRun};
pub(crate) use schedules::{Fire, NewSchedule};
pub(crate) use tokens::TokenRow;
pub(crate) use writer::Outbox;

use crate::bus::Bus;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("the store is shut down")]
    Closed,
    #[error("store data is damaged: {0}")]
    Corrupt(String),
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self::Corrupt(format!("bad JSON in the store: {e}"))
    }
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

const READERS: usize = 4;
/// Prepared statements kept per connection. The store has more distinct statements than
/// rusqlite's default of 16, and a statement pushed out is parsed again on its next use.
const STATEMENT_CACHE: usize = 256;

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub(crate) struct Store {
    writer: writer::Writer,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// One permit per pooled reader: reads beyond that wait for a connection instead of
    /// opening one (an open parses the schema) on yet another blocking thread.
    reading: Arc<tokio::sync::Semaphore>,
    path: Arc<Path>,
    bus: Bus,
}

impl Store {
    /// Opens (creating if needed) `dir/switchboard.db`, migrates it and starts the writer.
    pub(crate) fn open(dir: &Path, bus: Bus) -> Result<Self> {
        let path = dir.join("switchboard.db");
        let mut conn = open_conn(&path, true)?;
        schema::migrate(&mut conn)?;
        let writer = writer::Writer::start(conn, bus.clone())?;
        let readers = (0..READERS)
            .map(|_| open_conn(&path, false))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            writer,
            readers: Arc::new(Mutex::new(readers)),
            reading: Arc::new(tokio::sync::Semaphore::new(READERS)),
            path: path.into(),
            bus,
        })
    }

    pub(crate) fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Runs a read on a pooled connection off the async threads.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let permit = self
            .reading
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let taken = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match taken {
                Some(c) => c,
                // Only when opening a pooled reader failed earlier.
                None => open_conn(&path, false)?,
            };
            let out = f(&conn);
            let mut pool = readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < READERS {
                pool.push(conn);
            }
            drop(pool);
            drop(permit);
            out
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Runs a write in the group-committed transaction; returns after it is on disk, with the
    /// runs the runner should look at.
    async fn write<T, F>(&self, f: F) -> Result<(T, Vec<String>)>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Outbox) -> Result<T> + Send + 'static,
    {
        self.writer.write(f).await
    }
}

impl Store {
    /// Returns once every write queued before it has committed (used at shutdown).
    pub(crate) async fn flush(&self) -> Result<()> {
        self.write(|_, _| Ok(())).await.map(|_| ())
    }
}

fn open_conn(path: &Path, write: bool) -> Result<Connection> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Plans must not depend on bound values. Without this, SQLite (built with STAT4) marks
    // statements with ORDER BY and parameters to be compiled again whenever a value is
    // bound, and the statement cache rebinds on every use: each ledger page and each turn
    // of a drive parsed its SQL again (store/plan_tests.rs).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    if write {
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
