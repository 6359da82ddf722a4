//! The small SQLite file each bridge keeps its own state in: opened in WAL mode with
//! `synchronous=FULL` (what a bridge commits survives a crash), its schema applied, and
//! every call run on the blocking pool so no lock is held across an `.await`. Plus the
//! `meta` key/value table both bridges keep cursors and offsets in. What the tables mean is
//! each bridge's business: it plugs its [`Tables`] into [`State`] and adds its queries in
//! `telegram::state` and `email::state`.

use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot create the state directory {0}: {1}")]
    Dir(String, std::io::Error),
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the state lock was poisoned")]
    Poisoned,
    #[error("state task failed: {0}")]
    Task(String),
}

/// Handle to a state file; cheap to clone.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (creating it and its directory) the file at `path` and applies `schema`, which
    /// must hold a `meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)` table.
    pub fn open(path: &Path, schema: &str) -> Result<Self, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| DbError::Dir(dir.display().to_string(), e))?;
        }
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;",
        )?;
        conn.execute_batch(schema)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, E> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().map_err(|_| DbError::Poisoned)?;
            f(&mut c)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// The first column of the row `sql` selects with `params`, or `None` when no row
    /// matches.
    pub async fn value<T, P>(&self, sql: &'static str, params: P) -> Result<Option<T>, DbError>
    where
        T: rusqlite::types::FromSql + Send + 'static,
        P: rusqlite::Params + Send + 'static,
    {
        self.call(move |c| Ok(c.query_row(sql, params, |r| r.get(0)).optional()?))
            .await
    }

    /// The `meta` value under `key`.
    pub async fn meta(&self, key: &'static str) -> Result<Option<String>, DbError> {
        self.value("SELECT value FROM meta WHERE key = ?1", (key,))
            .await
    }

    /// A numeric `meta` value (0 when unset).
    pub async fn meta_u64(&self, key: &'static str) -> Result<u64, DbError> {
        Ok(self
            .meta(key)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Applies the changes one ledger record causes, with `apply`, and moves the stored
    /// ledger cursor past it, in one transaction: a crash repeats a record whole or not at
    /// all.
    pub async fn commit_record<C, E>(
        &self,
        cursor: u64,
        changes: Vec<C>,
        apply: fn(&Connection, C) -> Result<(), E>,
    ) -> Result<(), E>
    where
        C: Send + 'static,
        E: From<DbError> + From<rusqlite::Error> + Send + 'static,
    {
        self.call(move |c| {
            let tx = c.transaction()?;
            for ch in changes {
                apply(&tx, ch)?;
            }
            set_meta(&tx, LEDGER_CURSOR, &cursor.to_string())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn set_meta(&self, key: &'static str, value: String) -> Result<(), DbError> {
        self.call(move |c| {
            set_meta(c, key, &value)?;
            Ok(())
        })
        .await
    }
}

/// A bridge's own tables: their schema, and how the changes one ledger record causes
/// apply to them.
pub trait Tables {
    /// The `CREATE TABLE IF NOT EXISTS` statements; must include the `meta` table.
    const SCHEMA: &'static str;
    type Change: Send + 'static;
    type Error: From<DbError> + From<rusqlite::Error> + Send + 'static;
    fn apply(c: &Connection, change: Self::Change) -> Result<(), Self::Error>;
}

/// A bridge's state file; cheap to clone. Its generic parts (the connection, `meta`, the
/// ledger cursor) are the [`Db`]'s, which it derefs to; what the tables `T` mean each
/// bridge says in its own `impl State<T>`.
pub struct State<T> {
    db: Db,
    tables: PhantomData<fn() -> T>,
}

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            tables: PhantomData,
        }
    }
}

impl<T> std::ops::Deref for State<T> {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.db
    }
}

impl<T: Tables> State<T> {
    /// Opens (or creates) the state file at `path`.
    pub fn open(path: &Path) -> Result<Self, T::Error> {
        Ok(Self {
            db: Db::open(path, T::SCHEMA)?,
            tables: PhantomData,
        })
    }

    /// Applies a record's changes and moves the ledger cursor past it, in one transaction.
    pub async fn commit_record(
        &self,
        cursor: u64,
        changes: Vec<T::Change>,
    ) -> Result<(), T::Error> {
        self.db.commit_record(cursor, changes, T::apply).await
    }
}

/// The `meta` key of the ledger cursor a bridge's follower resumes from.
pub const LEDGER_CURSOR: &str = "ledger_cursor";

/// Sets a `meta` value inside a caller's transaction.
pub fn set_meta(c: &Connection, key: &str, value: &str) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}
