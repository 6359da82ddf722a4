//! A consistent copy of an embedded store while a gateway serves it: SQLite's online
//! backup API copies every page in one step, under one read transaction of the source, so
//! the copy is the database as of one commit and the gateway's writer goes on meanwhile
//! (WAL). The copy is checked (`integrity_check`) before it counts.

use std::path::Path;

use rusqlite::backup::{Backup, StepResult};

use super::{Result, StoreError, open_conn};

/// What a copy holds.
#[derive(Debug)]
pub(crate) struct Copy {
    pub(crate) runs: u64,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
}

/// Copies the store `src` (a `switchboard.db`) to the new file `dst`.
pub(crate) fn backup_sqlite(src: &Path, dst: &Path) -> Result<Copy> {
    let from = open_conn(src, false)?;
    let mut to = rusqlite::Connection::open(dst)?;
    {
        let b = Backup::new(&from, &mut to)?;
        let mut tries = 0;
        loop {
            match b.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                // A checkpoint holds the file for a moment: try again.
                StepResult::Busy | StepResult::Locked if tries < 200 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                _ => {
                    return Err(StoreError::Open(
                        "the store stayed locked; try again".into(),
                    ));
                }
            }
        }
    }
    check(&to)?;
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
