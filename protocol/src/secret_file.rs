//! Files that hold a secret (a token, a key): readable by their owner only. Shared by the
//! gateway (its admin token) and the clients that keep a device token (the tray).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `text` to `path` so that only the owner can read it, replacing the file
/// atomically: the text goes to a new sibling file created with mode 0600, is synced, and
/// is renamed over `path`. An existing file with looser permissions is therefore replaced
/// by a 0600 one, never written in place.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = write_sibling(path, text)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_parent(path);
    Ok(())
}

/// Creates `path` with mode 0600 holding `text`, whole or not at all, unless it exists
/// (then [`std::io::ErrorKind::AlreadyExists`]): the text goes to a sibling file that is
/// then linked into place, so two processes racing keep one file, and a crash never
/// leaves an empty one.
pub fn create_private(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = write_sibling(path, text)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked?;
    sync_parent(path);
    Ok(())
}

/// Writes `text` to a new sibling of `path` (mode 0600, synced) and returns its path.
fn write_sibling(path: &Path, text: &str) -> std::io::Result<PathBuf> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("a secret file needs a file name"))?;
    // A fresh name each time, created exclusively: a file or link planted under it is
    // never written through.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut tmp_name = name.to_owned();
    tmp_name.push(format!(".{}.{nanos}.{seq}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
    drop(f);
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// A new name is durable once the directory is synced (best effort off Unix).
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_existing_readable_file_becomes_owner_only() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("sb-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("token");
        std::fs::write(&path, "old")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        write_private(&path, "new")?;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path)?, "new");
        std::fs::remove_dir_all(&dir)
    }

    #[test]
    fn create_keeps_an_existing_file() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("sb-secret-new-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("key");
        create_private(&path, "first")?;
        let again = create_private(&path, "second");
        assert_eq!(
            again.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::AlreadyExists)
        );
        assert_eq!(std::fs::read_to_string(&path)?, "first");
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(&dir)?.count(),
            1,
            "no temporary file is left"
        );
        std::fs::remove_dir_all(&dir)
    }
}
