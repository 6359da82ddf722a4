//! Following commits made by another process on the same data dir (split mode), and the
//! runner lease. A `Watcher` owns its own connection, because `PRAGMA data_version` only
//! changes for commits made through *other* connections.

use rusqlite::{Connection, OptionalExtension, params};

use super::{GlobalItem, Result, Store, StoreError, now, open_conn, ts};

/// Tells whether anything was committed since the last look (by any other connection).
pub(crate) struct Watcher {
    conn: Connection,
    last: i64,
}

impl Watcher {
    pub(crate) fn changed(&mut self) -> Result<bool> {
        let v: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let changed = v != self.last;
        self.last = v;
        Ok(changed)
    }
}

/// Who holds a lease, and until when.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub(crate) holder: String,
    pub(crate) expires_at: String,
}

impl Store {
    pub(crate) fn watcher(&self) -> Result<Watcher> {
        let conn = open_conn(&self.path, false)?;
        let last = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        Ok(Watcher { conn, last })
    }

    /// Runs named by commands after `seq`, and the last command seq.
    pub(crate) async fn commands_since(&self, seq: u64) -> Result<(Vec<String>, u64)> {
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT seq, run_id FROM commands WHERE seq > ?1 ORDER BY seq LIMIT 5000",
                )?
                .query_map([seq as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let last = rows.last().map_or(seq, |r| r.0);
            Ok((rows.into_iter().map(|r| r.1).collect(), last))
        })
        .await
    }

    /// The highest command seq so far.
    pub(crate) async fn command_head(&self) -> Result<u64> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT COALESCE(MAX(seq), 0) FROM commands", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64,
            )
        })
        .await
    }

    /// Takes or renews the lease `name` for `holder` for `ttl`. Fails with the current holder
    /// when someone else holds it (a holder on this host whose process is gone loses it).
    pub(crate) async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Lease> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |c, _| {
            let cur: Option<(String, String)> = c
                .query_row("SELECT holder, expires_at FROM leases WHERE name = ?1", [&name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let t = now();
            if let Some((h, exp)) = &cur
                && *h != holder
                && *exp > ts(t)
                && !holder_is_gone(h)
            {
                return Err(StoreError::Conflict(format!("the {name} lease is held by {h} until {exp}")));
            }
            let expires_at = ts(t + ttl);
            c.execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at",
                params![name, holder, expires_at],
            )?;
            Ok(Lease { holder, expires_at })
        })
        .await
        .map(|(l, _)| l)
    }

    pub(crate) async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |c, _| {
            c.execute(
                "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )?;
            Ok(())
        })
        .await
        .map(|_| ())
    }

    pub(crate) async fn lease(&self, name: &str) -> Result<Option<Lease>> {
        let name = name.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT holder, expires_at FROM leases WHERE name = ?1",
                [name],
                |r| {
                    Ok(Lease {
                        holder: r.get(0)?,
                        expires_at: r.get(1)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    /// A stored flow version's source, by hash.
    pub(crate) async fn flow_source(&self, hash: &str) -> Result<Option<(String, String)>> {
        let h = hash.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT bundle_id, source FROM flow_versions WHERE hash = ?1",
                [h],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
        .await
    }

    /// New ledger rows after `gseq` (for a follower's bus).
    pub(crate) async fn ledger_since(&self, gseq: u64) -> Result<Vec<GlobalItem>> {
        self.global_page(gseq, 1000).await
    }
}

/// `host:pid` of a process on this host that no longer exists.
fn holder_is_gone(holder: &str) -> bool {
    let Some((host, pid)) = holder.rsplit_once(':') else {
        return false;
    };
    let procfs = std::path::Path::new("/proc/self").exists();
    procfs
        && host == this_host()
        && pid
            .parse::<u32>()
            .is_ok_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
}

/// This machine's host name (read once).
pub(crate) fn this_host() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into())
    })
    .clone()
}
