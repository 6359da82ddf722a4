//! Consistent copies of SQLite files while their writers go on: the online backup API
//! copies every page in one step, under one read transaction of the source, so a copy is
//! the database as of one commit (WAL included) and writers are not stopped. Each copy is
//! checked (`integrity_check`) and made private (0600) before it counts.

use std::path::Path;

use rusqlite::backup::{Backup, StepResult};

use super::{Result, StoreError, open_conn};

/// What a copy of the store holds.
#[derive(Debug)]
pub(crate) struct Copy {
    pub(crate) runs: u64,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
}

/// Copies any SQLite database `src` to the new file `dst`, checked.
pub(crate) fn copy_sqlite(src: &Path, dst: &Path) -> Result<()> {
    copy_into(src, dst).map(|_| ())
}

/// [`copy_sqlite`], keeping the copy open. The copy is a single file (rollback journal):
/// nothing of it lives in a WAL beside it. A gateway opening it turns WAL on again.
fn copy_into(src: &Path, dst: &Path) -> Result<rusqlite::Connection> {
    let from = rusqlite::Connection::open_with_flags(
        src,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    from.busy_timeout(std::time::Duration::from_secs(10))?;
    let mut to = rusqlite::Connection::open(dst)?;
    private(dst)?;
    {
        let b = Backup::new(&from, &mut to)?;
        let mut tries = 0;
        loop {
            match b.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                // A checkpoint holds the file for a moment: try again.
                StepResult::Busy | StepResult::Locked if tries < 400 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                _ => {
                    return Err(StoreError::Open(format!(
                        "{} stayed locked; try again",
                        src.display()
                    )));
                }
            }
        }
    }
    let mode: String = to.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    if mode != "delete" {
        return Err(StoreError::Open(format!(
            "the copy of {} stays in `{mode}` mode",
            src.display()
        )));
    }
    check(&to)?;
    Ok(to)
}

/// Copies the store `src` (a `switchboard.db`) to the new file `dst`.
pub(crate) fn backup_sqlite(src: &Path, dst: &Path) -> Result<Copy> {
    let to = copy_into(src, dst)?;
    let count = |table: &str| -> Result<u64> {
        let n: i64 = to.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(n as u64)
    };
    Ok(Copy {
        runs: count("runs")?,
        records: count("ledger")?,
        bytes: std::fs::metadata(dst).map(|m| m.len()).unwrap_or(0),
    })
}

/// `switchboard doctor`: the store's quick check, and when its latest run last changed.
pub(crate) fn doctor_sqlite(path: &Path) -> Result<Option<String>> {
    // Not read-only: a read-only connection to a stopped store would leave a WAL and a
    // shared-memory file behind; this one only reads, and its close tidies up.
    let c = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    c.pragma_update(None, "query_only", true)?;
    let verdict: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if verdict != "ok" {
        return Err(StoreError::Corrupt(format!(
            "the store fails its check: {verdict}"
        )));
    }
    Ok(c.query_row("SELECT MAX(updated_at) FROM runs", [], |r| r.get(0))?)
}

/// Whether the file at `path` is a sound store (a restore checks what it lays out).
pub(crate) fn check_sqlite(path: &Path) -> Result<()> {
    check(&open_conn(path, false)?)
}

fn check(c: &rusqlite::Connection) -> Result<()> {
    let verdict: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if verdict != "ok" {
        return Err(StoreError::Corrupt(format!(
            "the copy fails its check: {verdict}"
        )));
    }
    Ok(())
}

fn private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::Open(format!("cannot restrict {}: {e}", path.display())))?;
    }
    Ok(())
}
