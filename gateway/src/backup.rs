//! `switchboard backup` and `switchboard restore`: a data dir copied while its gateway
//! serves, and laid back so that `serve` picks it up. The store goes through SQLite's
//! online backup (`store::backup_sqlite`: one consistent commit); every other file of the
//! data dir (the admin token, the web app's key, the bridges' state and keys) is copied as
//! it is, with its permissions. The WAL and shared-memory files are not copied: the store's
//! copy is whole without them. On PostgreSQL the store is the database's (pg_dump); these
//! commands then refuse, saying so.

use std::path::Path;

use anyhow::{Context, bail};

const DB: &str = "switchboard.db";

/// Files of a data dir that belong to the live database, not to a copy.
fn is_live_db_file(name: &str) -> bool {
    matches!(
        name,
        "switchboard.db-wal" | "switchboard.db-shm" | "switchboard.db-journal"
    )
}

fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", dir.display()))?;
    }
    Ok(())
}

/// Copies the files of `from` into `to` (recursively), but the store's; returns how many.
fn copy_files(from: &Path, to: &Path) -> anyhow::Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let e = e?;
        let name = e.file_name();
        let name_str = name.to_string_lossy();
        if name_str == DB || is_live_db_file(&name_str) {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        let kind = e.file_type()?;
        if kind.is_dir() {
            private_dir(&dst)?;
            n += copy_files(&src, &dst)?;
        } else if kind.is_file() {
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

/// `switchboard backup --data-dir D OUT`.
pub fn backup(data_dir: &Path, out: &Path) -> anyhow::Result<String> {
    let db = data_dir.join(DB);
    if !db.is_file() {
        bail!(
            "no embedded store in {} (on PostgreSQL, back up with pg_dump; see the README)",
            data_dir.display()
        );
    }
    if !is_empty_or_missing(out) {
        bail!(
            "{} is not empty: give a new directory for the backup",
            out.display()
        );
    }
    private_dir(out)?;
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
pub fn restore(data_dir: &Path, input: &Path) -> anyhow::Result<String> {
    let db = input.join(DB);
    if !db.is_file() {
        bail!("{} is not a backup: it has no {DB}", input.display());
    }
    crate::store::check_sqlite(&db).with_context(|| format!("{} is damaged", db.display()))?;
    if data_dir.join(DB).exists() {
        bail!(
            "{} already holds a store: stop its gateway and move the directory aside first",
            data_dir.display()
        );
    }
    private_dir(data_dir)?;
    let tmp = data_dir.join(format!("{DB}.restoring"));
    std::fs::copy(&db, &tmp).with_context(|| format!("cannot copy {}", db.display()))?;
    let files = copy_files(input, data_dir)?;
    // The store appears last and whole, so a half-done restore is never served.
    std::fs::rename(&tmp, data_dir.join(DB))
        .with_context(|| format!("cannot put the store into {}", data_dir.display()))?;
    Ok(format!(
        "restored {} into {} ({files} other files); start `switchboard serve --data-dir {}`",
        input.display(),
        data_dir.display(),
        data_dir.display()
    ))
}
