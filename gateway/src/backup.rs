//! `switchboard backup` and `switchboard restore`: a data dir copied while its gateway
//! serves, and laid back so that `serve` picks it up. Every SQLite file (the store, the
//! bridges' state) goes through SQLite's online backup (`store::copy_sqlite`: one
//! consistent commit each, checked); the other files (the admin token, the web app's key)
//! are copied with their permissions, through symlinks. WAL, shared-memory and journal
//! files are never copied: each copy is whole without them. On PostgreSQL the store is the
//! database's (pg_dump); these commands then refuse, saying so.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

const DB: &str = "switchboard.db";
/// The first bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Files that belong to a live SQLite database, not to a copy (and a restore's own).
fn is_sidecar(name: &str) -> bool {
    ["-wal", "-shm", "-journal", ".restoring"]
        .iter()
        .any(|s| name.ends_with(s))
}

fn is_sqlite(path: &Path) -> bool {
    let mut head = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == SQLITE_MAGIC)
}

/// Copies the files of `from` into `to` (recursively), but the store; returns how many.
fn copy_files(from: &Path, to: &Path) -> anyhow::Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let e = e?;
        let name = e.file_name();
        let text = name.to_string_lossy();
        if text == DB || is_sidecar(&text) {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        // Through symlinks: a key mounted from elsewhere is copied, not lost.
        let meta =
            std::fs::metadata(&src).with_context(|| format!("cannot read {}", src.display()))?;
        if meta.is_dir() {
            crate::app::create_private_dir(&dst)?;
            n += copy_files(&src, &dst)?;
        } else if !meta.is_file() {
            bail!(
                "{} is neither a file nor a directory: cannot copy it",
                src.display()
            );
        } else if is_sqlite(&src) {
            crate::store::copy_sqlite(&src, &dst)
                .with_context(|| format!("cannot copy the database {}", src.display()))?;
            n += 1;
        } else {
            // `fs::copy` keeps the permission bits (keys stay 0600).
            std::fs::copy(&src, &dst).with_context(|| format!("cannot copy {}", src.display()))?;
            n += 1;
        }
    }
    Ok(n)
}

fn is_empty_or_missing(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

/// `p` with symlinks and `..` resolved, for the part of it that exists.
fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => resolved(parent).join(name),
        _ => std::env::current_dir().map_or_else(|_| p.to_owned(), |d| d.join(p)),
    }
}

fn refuse_postgres(database_url: Option<&str>) -> anyhow::Result<()> {
    if database_url.is_some_and(|u| !u.is_empty()) {
        bail!(
            "the store is PostgreSQL (SWITCHBOARD_DATABASE_URL): back it up with pg_dump, and copy the data dir's files (see the README)"
        );
    }
    Ok(())
}

/// `switchboard backup --data-dir D OUT`.
pub fn backup(data_dir: &Path, out: &Path, database_url: Option<&str>) -> anyhow::Result<String> {
    refuse_postgres(database_url)?;
    let db = data_dir.join(DB);
    if !db.is_file() {
        bail!("no embedded store in {}", data_dir.display());
    }
    if resolved(out).starts_with(resolved(data_dir)) {
        bail!(
            "{} is inside the data dir: put the backup elsewhere",
            out.display()
        );
    }
    if !is_empty_or_missing(out) {
        bail!(
            "{} is not empty: give a new directory for the backup",
            out.display()
        );
    }
    crate::app::create_private_dir(out)?;
    let copy = crate::store::backup_sqlite(&db, &out.join(DB))
        .with_context(|| format!("cannot back up {}", db.display()))?;
    let files = copy_files(data_dir, out)?;
    Ok(format!(
        "backed up {}: {} runs, {} ledger records ({} bytes), and {files} other files, into {}",
        data_dir.display(),
        copy.runs,
        copy.records,
        copy.bytes,
        out.display()
    ))
}

/// `switchboard restore --data-dir D IN`: D must not hold a store already.
pub fn restore(
    data_dir: &Path,
    input: &Path,
    database_url: Option<&str>,
) -> anyhow::Result<String> {
    refuse_postgres(database_url)?;
    let db = input.join(DB);
    if !db.is_file() {
        bail!("{} is not a backup: it has no {DB}", input.display());
    }
    crate::store::check_sqlite(&db).with_context(|| format!("{} is damaged", db.display()))?;
    let held = std::fs::read_dir(data_dir)
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name == DB || name.starts_with(&format!("{DB}-"))
        });
    if let Some(e) = held {
        bail!(
            "{} already holds a store ({}): stop its gateway and move the directory aside first",
            data_dir.display(),
            e.file_name().to_string_lossy()
        );
    }
    crate::app::create_private_dir(data_dir)?;
    let (tmp, target) = (data_dir.join(format!("{DB}.restoring")), data_dir.join(DB));
    let _ = std::fs::remove_file(&tmp);
    crate::store::copy_sqlite(&db, &tmp)
        .with_context(|| format!("cannot copy {}", db.display()))?;
    let files = copy_files(input, data_dir)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all())?;
    // The store appears last and whole (a half-done restore is never served), and never
    // over one a gateway made meanwhile: a hard link fails when the name is taken.
    std::fs::hard_link(&tmp, &target).with_context(|| {
        format!(
            "cannot put the store into {} (did a gateway start there?)",
            data_dir.display()
        )
    })?;
    std::fs::remove_file(&tmp)?;
    std::fs::File::open(data_dir).and_then(|d| d.sync_all())?;
    Ok(format!(
        "restored {} into {} ({files} other files); start `switchboard serve --data-dir {}`",
        input.display(),
        data_dir.display(),
        data_dir.display()
    ))
}
