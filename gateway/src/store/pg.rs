//! PostgreSQL connections: opening one with the session settings the store's guarantees rest
//! on (`synchronous_commit = on`, READ COMMITTED), and migrating the schema when several
//! nodes start at once (an advisory lock makes them take turns).
//!
//! The driver is `postgres`, the blocking face of `tokio-postgres`: the store's transaction
//! code is synchronous and runs on the writer thread and on blocking reader threads for both
//! backends, so one body of SQL code serves both. Group commit gives PostgreSQL what
//! pipelining would (one commit for many writes). It must not be called on an async thread.

use super::sql::{Db, PgConn};
use super::{Result, StoreError};

/// Any fixed number: the advisory lock the migrating node holds.
const MIGRATION_LOCK: i64 = 0x5357_4254_4d49_4752;

/// Connects to `url`. Errors name the server but never the password.
pub(super) fn connect(url: &str) -> Result<PgConn> {
    let cfg: postgres::Config = url.parse().map_err(|e| {
        StoreError::Open(format!(
            "the database URL `{}` is not valid: {e}",
            redact(url)
        ))
    })?;
    let mut client = cfg.connect(postgres::NoTls).map_err(|e| {
        StoreError::Open(format!(
            "cannot connect to PostgreSQL at `{}`: {e}",
            redact(url)
        ))
    })?;
    // A node that stops mid-transaction (a pause, a partition) must not hold its locks (the
    // runner lease's row among them) for longer than the lease lives: the server ends such a
    // session, and the node's next write reconnects and meets the fence.
    client.batch_execute(
        "SET synchronous_commit = on;
         SET default_transaction_isolation = 'read committed';
         SET idle_in_transaction_session_timeout = '3s';
         SET application_name = 'switchboard'",
    )?;
    Ok(PgConn::new(client))
}

/// The URL with its passwords replaced (in the user part and in `password=` parameters).
pub(crate) fn redact(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return "(unparseable URL)".into();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    let secret = |k: &str| k.to_ascii_lowercase().contains("password");
    if u.query_pairs().any(|(k, _)| secret(&k)) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k) {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// Applies the migrations this database has not seen, in one transaction under a lock.
pub(super) fn migrate(conn: &mut PgConn, migrations: &[&str]) -> Result<()> {
    let db = Db::Pg(conn);
    db.execute_batch("BEGIN")?;
    let done = (|| -> Result<()> {
        db.query_row("SELECT pg_advisory_xact_lock(?1)", [MIGRATION_LOCK], |_| {
            Ok(())
        })?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )?;
        let have = db.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get::<i64>(0),
        )? as usize;
        if have > migrations.len() {
            return Err(super::schema::too_new(have, migrations.len()));
        }
        for (i, sql) in migrations.iter().enumerate().skip(have) {
            db.execute_batch(sql)?;
            db.execute(
                "INSERT INTO schema_migrations (version) VALUES (?1)",
                [(i + 1) as i64],
            )?;
        }
        Ok(())
    })();
    match done {
        Ok(()) => Ok(db.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = db.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_show() {
        for url in [
            "postgres://sb:hunter2@db:5432/x",
            "postgres://sb@db/x?password=hunter2&sslmode=disable",
            "postgresql://db/x?PASSWORD=hunter2",
        ] {
            let shown = super::redact(url);
            assert!(
                !shown.contains("hunter2") && shown.contains("***"),
                "{shown}"
            );
        }
        assert_eq!(super::redact("not a url"), "(unparseable URL)");
    }
}
