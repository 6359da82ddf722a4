//! The SQL boundary both backends share: one connection type (`Conn`, borrowed as `Db`), one
//! statement, row, parameter and error type, so every store module's transaction code runs
//! unchanged on the embedded SQLite file and on PostgreSQL.
//!
//! The store's SQL is written once, in the dialect both engines accept (`?N` parameters,
//! `ON CONFLICT`, `RETURNING`); for PostgreSQL the parameters are rewritten to `$N` once per
//! statement and the prepared statement is cached per connection. Values are bound loosely
//! (an integer binds to any integer or text column), because PostgreSQL infers parameter
//! types from the statement while SQLite has none. This module owns no table and no query.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use fallible_iterator::FallibleIterator;
use postgres::types::ToSql;

pub(crate) use super::bind::{Arg, Col, Params, Val, args, locked};

#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", pg_message(.0))]
    Pg(#[from] postgres::Error),
    #[error("query returned no rows")]
    NoRows,
    #[error("column {0}: {1}")]
    Column(usize, String),
}

/// PostgreSQL's own message and SQLSTATE when the server sent one (the driver's `Display`
/// says only "db error").
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => e.to_string(),
    }
}

pub(crate) type DbResult<T> = std::result::Result<T, DbError>;

/// `.optional()` on a one-row query: no row is `None`.
pub(crate) trait Optional<T> {
    fn optional(self) -> DbResult<Option<T>>;
}

impl<T> Optional<T> for DbResult<T> {
    fn optional(self) -> DbResult<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows | DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows)) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// One result row of either backend.
pub(crate) enum Row<'r, 's> {
    Lite(&'r rusqlite::Row<'s>),
    Pg(&'r postgres::Row),
}

impl Row<'_, '_> {
    /// Column `i`.
    pub(crate) fn get<T: Col>(&self, i: usize) -> DbResult<T> {
        match self {
            Self::Lite(r) => T::lite(r, i),
            Self::Pg(r) => T::pg(r, i),
        }
    }

    /// A text column's bytes, borrowed from the row (no copy, no UTF-8 check).
    pub(crate) fn bytes(&self, i: usize) -> DbResult<&[u8]> {
        match self {
            Self::Lite(r) => r
                .get_ref(i)?
                .as_bytes()
                .map_err(|e| DbError::Column(i, e.to_string())),
            Self::Pg(r) => Ok(r.try_get::<_, &str>(i)?.as_bytes()),
        }
    }
}

/// A PostgreSQL connection with its statement cache and the write transaction's cursor
/// base (see `ledger`). Used by one thread at a time.
pub(crate) struct PgConn {
    /// `None` only while being dropped.
    client: RefCell<Option<postgres::Client>>,
    cache: RefCell<HashMap<Box<str>, postgres::Statement>>,
    /// The next global cursor of the open write transaction (`xid << 24 | n`).
    next_gseq: Cell<Option<i64>>,
}

impl PgConn {
    pub(crate) fn new(client: postgres::Client) -> Self {
        Self {
            client: RefCell::new(Some(client)),
            cache: RefCell::default(),
            next_gseq: Cell::new(None),
        }
    }
}

impl PgConn {
    fn client(&self) -> DbResult<std::cell::RefMut<'_, postgres::Client>> {
        std::cell::RefMut::filter_map(self.client.borrow_mut(), Option::as_mut)
            .map_err(|_| DbError::Column(0, "the connection is closed".into()))
    }

    /// Waits up to `wait` for a notification on a channel this connection listens to, then
    /// drains the others; true when one came.
    pub(crate) fn wait_notification(&self, wait: std::time::Duration) -> DbResult<bool> {
        let mut client = self.client()?;
        let mut n = client.notifications();
        let came = n.timeout_iter(wait).next()?.is_some();
        while n.iter().next()?.is_some() {}
        Ok(came)
    }
}

impl Drop for PgConn {
    /// The blocking client shuts its own runtime down when dropped, which panics on a thread
    /// that drives async tasks (the last `Store` handle may drop there): such a drop moves
    /// to a thread of its own.
    fn drop(&mut self) {
        let client = self.client.get_mut().take();
        if client.is_some() && tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(client));
        }
    }
}

/// An owned connection of either backend.
pub(crate) enum Conn {
    Lite(rusqlite::Connection),
    Pg(Box<PgConn>),
}

impl Conn {
    /// A PostgreSQL connection whose server went away (SQLite's never breaks).
    pub(crate) fn is_broken(&self) -> bool {
        match self {
            Self::Lite(_) => false,
            Self::Pg(c) => c.client.borrow().as_ref().is_none_or(|c| c.is_closed()),
        }
    }

    pub(crate) fn db(&self) -> Db<'_> {
        match self {
            Self::Lite(c) => Db::Lite(c),
            Self::Pg(c) => Db::Pg(c),
        }
    }
}

/// A borrowed connection: what every store function takes.
#[derive(Clone, Copy)]
pub(crate) enum Db<'c> {
    Lite(&'c rusqlite::Connection),
    Pg(&'c PgConn),
}

/// A prepared statement.
pub(crate) enum Stmt<'c> {
    Lite(rusqlite::CachedStatement<'c>),
    Pg(&'c PgConn, postgres::Statement),
}

impl<'c> Db<'c> {
    pub(crate) fn is_pg(&self) -> bool {
        matches!(self, Self::Pg(_))
    }

    pub(crate) fn prepare_cached(&self, sql: &str) -> DbResult<Stmt<'c>> {
        match *self {
            Self::Lite(c) => Ok(Stmt::Lite(c.prepare_cached(sql)?)),
            Self::Pg(c) => {
                if let Some(s) = c.cache.borrow().get(sql) {
                    return Ok(Stmt::Pg(c, s.clone()));
                }
                let stmt = c.client()?.prepare(&pg_sql(sql))?;
                c.cache.borrow_mut().insert(sql.into(), stmt.clone());
                Ok(Stmt::Pg(c, stmt))
            }
        }
    }

    pub(crate) fn execute<P: Params>(&self, sql: &str, p: P) -> DbResult<usize> {
        self.prepare_cached(sql)?.execute(p)
    }

    pub(crate) fn query_row<T, P: Params>(
        &self,
        sql: &str,
        p: P,
        f: impl FnOnce(&Row<'_, '_>) -> DbResult<T>,
    ) -> DbResult<T> {
        self.prepare_cached(sql)?.query_row(p, f)
    }

    /// Runs an `INSERT` into a table whose key `key` the database numbers, and returns the
    /// key it gave the row. SQLite answers `RETURNING` through a trigger program and a
    /// temporary table opened for every row (7 % of the writer's time on the start path),
    /// so there the key is the connection's last rowid (`key` is the table's
    /// `INTEGER PRIMARY KEY`, which is its rowid, and no trigger inserts elsewhere).
    pub(crate) fn insert_key<P: Params>(&self, sql: &str, key: &str, p: P) -> DbResult<i64> {
        match *self {
            Self::Lite(c) => match self.prepare_cached(sql)?.execute(p)? {
                1 => Ok(c.last_insert_rowid()),
                n => Err(DbError::Column(
                    0,
                    format!("{n} rows inserted, not one: {sql}"),
                )),
            },
            Self::Pg(_) => {
                self.query_row(&format!("{sql} RETURNING {key}"), p, |r| r.get::<i64>(0))
            }
        }
    }

    /// Runs several statements without parameters (schema, transaction control).
    pub(crate) fn execute_batch(&self, sql: &str) -> DbResult<()> {
        match *self {
            Self::Lite(c) => Ok(c.execute_batch(sql)?),
            Self::Pg(c) => Ok(c.client()?.batch_execute(sql)?),
        }
    }

    /// Makes writers of the same `key` (a command id, an idempotency key) take turns until
    /// the end of their transactions, so a check-then-insert sees a row another node just
    /// committed. On PostgreSQL an advisory lock; SQLite's one writer already takes turns.
    pub(crate) fn serialize_on(&self, key: &str) -> DbResult<()> {
        if self.is_pg() {
            self.query_row(
                "SELECT pg_advisory_xact_lock(hashtextextended(?1, 0))",
                [key],
                |_| Ok(()),
            )?;
        }
        Ok(())
    }

    /// The global cursor the next ledger row of this PostgreSQL write transaction takes, or
    /// `None` on SQLite (which numbers rows itself, in commit order: one writer).
    pub(crate) fn take_gseq(&self) -> DbResult<Option<i64>> {
        match self {
            Self::Lite(_) => Ok(None),
            Self::Pg(c) => {
                let Some(g) = c.next_gseq.get() else {
                    return Ok(None);
                };
                // The low 24 bits are the record's place in its transaction.
                if g & 0xFF_FFFF == 0xFF_FFFF {
                    return Err(DbError::Column(
                        0,
                        "more than 16,777,215 ledger records in one transaction".into(),
                    ));
                }
                c.next_gseq.set(Some(g + 1));
                Ok(Some(g))
            }
        }
    }

    /// Sets (or clears) the base of the write transaction's global cursors.
    pub(crate) fn set_gseq_base(&self, base: Option<i64>) {
        if let Self::Pg(c) = self {
            c.next_gseq.set(base);
        }
    }
}

impl Stmt<'_> {
    pub(crate) fn execute<P: Params>(&mut self, p: P) -> DbResult<usize> {
        let vals = p.vals();
        match self {
            Self::Lite(s) => Ok(s.execute(rusqlite::params_from_iter(vals.iter()))?),
            Self::Pg(c, s) => {
                let refs = pg_refs(&vals);
                Ok(c.client()?.execute(s, &refs)? as usize)
            }
        }
    }

    pub(crate) fn query_row<T, P: Params>(
        &mut self,
        p: P,
        f: impl FnOnce(&Row<'_, '_>) -> DbResult<T>,
    ) -> DbResult<T> {
        let vals = p.vals();
        match self {
            Self::Lite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(vals.iter()))?;
                match rows.next()? {
                    Some(r) => f(&Row::Lite(r)),
                    None => Err(DbError::NoRows),
                }
            }
            Self::Pg(c, s) => {
                let refs = pg_refs(&vals);
                let row = c.client()?.query_opt(s, &refs)?;
                match row {
                    Some(r) => f(&Row::Pg(&r)),
                    None => Err(DbError::NoRows),
                }
            }
        }
    }

    /// Every row mapped by `f`, collected.
    pub(crate) fn query_map<T, P: Params>(
        &mut self,
        p: P,
        mut f: impl FnMut(&Row<'_, '_>) -> DbResult<T>,
    ) -> DbResult<std::vec::IntoIter<DbResult<T>>> {
        let mut out = Vec::new();
        self.for_each(p, |r| {
            out.push(f(r));
            Ok(())
        })?;
        Ok(out.into_iter())
    }

    /// Calls `f` for each row in turn (rows borrowed, nothing collected).
    pub(crate) fn for_each<P: Params>(
        &mut self,
        p: P,
        mut f: impl FnMut(&Row<'_, '_>) -> DbResult<()>,
    ) -> DbResult<()> {
        let vals = p.vals();
        match self {
            Self::Lite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(vals.iter()))?;
                while let Some(r) = rows.next()? {
                    f(&Row::Lite(r))?;
                }
            }
            Self::Pg(c, s) => {
                let refs = pg_refs(&vals);
                let rows = c.client()?.query(s, &refs)?;
                for r in &rows {
                    f(&Row::Pg(r))?;
                }
            }
        }
        Ok(())
    }
}

fn pg_refs<'a>(vals: &'a [Val<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    vals.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// `?N` parameters to PostgreSQL's `$N` (outside quoted strings).
pub(crate) fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for ch in sql.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                out.push(ch);
            }
            '?' if !quoted => out.push('$'),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn parameters_become_dollar_numbers_outside_strings() {
        assert_eq!(
            super::pg_sql("SELECT a FROM t WHERE b = ?1 AND c = '?2' LIMIT ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' LIMIT $12"
        );
    }
}
