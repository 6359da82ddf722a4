//! Following commits made by another process on the same data dir (split mode), and the
//! runner lease. A `Watcher` owns its own connection, because `PRAGMA data_version` only
//! changes for commits made through *other* connections.

use std::time::Duration;

use super::sql::{Conn, Db, DbResult, Optional, args};
use super::{GlobalItem, Location, Result, Store, StoreError, now, ts};

/// The channel every PostgreSQL write batch notifies once, after its jobs.
pub(crate) const CHANNEL: &str = "switchboard";
/// How often a PostgreSQL watcher looks without a notification (a lost one costs this much).
const PG_FALLBACK: Duration = Duration::from_millis(500);
/// How often a SQLite watcher reads `data_version` (a read of shared memory).
const LITE_POLL: Duration = Duration::from_millis(3);

/// Tells whether anything may have been committed since the last look, by another
/// connection: SQLite's `PRAGMA data_version`, or PostgreSQL's notifications on
/// [`CHANNEL`] with a fallback poll, since a notification is only a hint.
pub(crate) enum Watcher {
    Lite {
        conn: rusqlite::Connection,
        last: i64,
    },
    Pg {
        conn: Option<Conn>,
        location: Location,
    },
}

impl Watcher {
    /// Blocks a little (a few milliseconds, or until a notification) and says whether to
    /// look for new rows.
    pub(crate) fn changed(&mut self) -> Result<bool> {
        match self {
            Self::Lite { conn, last } => {
                std::thread::sleep(LITE_POLL);
                let v: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
                let changed = v != *last;
                *last = v;
                Ok(changed)
            }
            Self::Pg { conn, location } => {
                let listening = match conn.take() {
                    Some(c) if !c.is_broken() => c,
                    _ => listen(location)?,
                };
                if let Conn::Pg(pg) = &listening {
                    pg.wait_notification(PG_FALLBACK)?;
                }
                *conn = Some(listening);
                Ok(true)
            }
        }
    }
}

fn listen(location: &Location) -> Result<Conn> {
    let conn = location.connect(false)?;
    conn.db().execute_batch(&format!("LISTEN {CHANNEL}"))?;
    Ok(conn)
}

/// Who holds a lease, and until when.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub(crate) holder: String,
    pub(crate) expires_at: String,
    /// Grows by one each time the lease changes hands; writes fenced with an older number
    /// are refused (see `Store::fenced`).
    pub(crate) fence: i64,
}

impl Store {
    pub(crate) fn watcher(&self) -> Result<Watcher> {
        super::off_runtime(|| self.open_watcher())
    }

    fn open_watcher(&self) -> Result<Watcher> {
        match self.location.connect(false)? {
            Conn::Lite(conn) => {
                let last = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
                Ok(Watcher::Lite { conn, last })
            }
            Conn::Pg(_) => Ok(Watcher::Pg {
                conn: Some(listen(&self.location)?),
                location: (*self.location).clone(),
            }),
        }
    }

    /// Runs named by commands after the cursor `after`, and the cursor to continue from.
    /// On SQLite the cursor is the command seq. On PostgreSQL it is a transaction-id horizon:
    /// this reads the commands of every transaction in `[after, xmin)`, all of them ended, so
    /// a command that commits late is read on a later call, never passed over.
    pub(crate) async fn commands_since(&self, after: u64) -> Result<(Vec<String>, u64)> {
        self.read(move |c| {
            if c.is_pg() {
                return pg_commands_since(c, after);
            }
            let rows = c
                .prepare_cached(
                    "SELECT seq, run_id FROM commands WHERE seq > ?1 ORDER BY seq LIMIT 5000",
                )?
                .query_map([after as i64], |r| {
                    Ok((r.get::<i64>(0)? as u64, r.get::<String>(1)?))
                })?
                .collect::<DbResult<Vec<_>>>()?;
            let last = rows.last().map_or(after, |r| r.0);
            Ok((rows.into_iter().map(|r| r.1).collect(), last))
        })
        .await
    }

    /// Where [`Self::commands_since`] starts: the newest command seq, or PostgreSQL's horizon.
    pub(crate) async fn command_head(&self) -> Result<u64> {
        self.read(|c| {
            let sql = if c.is_pg() {
                XMIN
            } else {
                "SELECT COALESCE(MAX(seq), 0) FROM commands"
            };
            Ok(c.query_row(sql, [], |r| r.get::<i64>(0))? as u64)
        })
        .await
    }

    /// Takes or renews the lease `name` for `holder` for `ttl`. Fails with the current holder
    /// when someone else holds it (a holder on this host whose process is gone loses it).
    /// A lease changing hands gets the next fencing number; a renewal keeps it. One upsert
    /// decides, so two nodes taking a lapsed lease at once cannot both win.
    pub(crate) async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Lease> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write_alone(move |c| {
            let cur: Option<(String, String)> = c
                .query_row(
                    "SELECT holder, expires_at FROM leases WHERE name = ?1",
                    [&name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let gone = cur.as_ref().map(|(h, _)| h).filter(|h| holder_is_gone(h));
            let t = now();
            // Held by someone else, and alive: say so without touching (locking) the row.
            if let Some((h, exp)) = &cur
                && *h != holder
                && *exp > ts(t)
                && gone.is_none()
            {
                return Err(StoreError::Conflict(format!(
                    "the {name} lease is held by {h} until {exp}"
                )));
            }
            let expires_at = ts(t + ttl);
            let fence = c
                .query_row(
                    "INSERT INTO leases (name, holder, expires_at, fence) VALUES (?1, ?2, ?3, 1)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
                        fence = CASE WHEN leases.holder = excluded.holder THEN leases.fence ELSE leases.fence + 1 END
                     WHERE leases.holder = excluded.holder OR leases.expires_at <= ?4 OR leases.holder = ?5
                     RETURNING fence",
                    args![name, holder, expires_at, ts(t), gone],
                    |r| r.get::<i64>(0),
                )
                .optional()?;
            match (fence, cur) {
                (Some(fence), _) => Ok(Lease { holder, expires_at, fence }),
                (None, Some((h, exp))) => Err(StoreError::Conflict(format!(
                    "the {name} lease is held by {h} until {exp}"
                ))),
                (None, None) => Err(StoreError::Conflict(format!(
                    "the {name} lease was just taken by another node"
                ))),
            }
        })
        .await
    }

    /// Ends the node leases of processes on this host that are gone (a restart after a
    /// crash), so their runs are claimed at once rather than when the leases lapse.
    pub(crate) async fn reap_dead_nodes(&self) -> Result<()> {
        self.write_alone(|c| {
            let holders = c
                .prepare_cached(
                    "SELECT holder FROM leases WHERE name LIKE 'node:%' AND expires_at <> ''",
                )?
                .query_map([], |r| r.get::<String>(0))?
                .collect::<DbResult<Vec<_>>>()?;
            for h in holders.iter().filter(|h| holder_is_gone(h)) {
                c.execute(
                    "UPDATE leases SET expires_at = '' WHERE name = ?1",
                    [super::node_lease(h)],
                )?;
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write_alone(move |c| {
            // Expired, not deleted: the row keeps its fencing number, so the next holder's
            // is still a new one.
            c.execute(
                "UPDATE leases SET expires_at = '' WHERE name = ?1 AND holder = ?2",
                args![name, holder],
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
                "SELECT holder, expires_at, fence FROM leases WHERE name = ?1",
                [name],
                |r| {
                    Ok(Lease {
                        holder: r.get(0)?,
                        expires_at: r.get(1)?,
                        fence: r.get(2)?,
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

const XMIN: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

fn pg_commands_since(c: &Db, after: u64) -> Result<(Vec<String>, u64)> {
    let horizon = c.query_row(XMIN, [], |r| r.get::<i64>(0))?;
    let ids = c
        .prepare_cached("SELECT DISTINCT run_id FROM commands WHERE xid >= ?1 AND xid < ?2")?
        .query_map(args![after as i64, horizon], |r| r.get::<String>(0))?
        .collect::<DbResult<Vec<_>>>()?;
    Ok((ids, horizon as u64))
}

/// A holder (`host:pid:nonce`) that is a process on this host which no longer exists.
fn holder_is_gone(holder: &str) -> bool {
    let mut parts = holder.split(':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
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
