//! Flow versions: every flow source ever registered, by hash, with a version number per
//! bundle, and which version is current. Runs are pinned to a hash, so an old version stays
//! loadable for as long as the data dir lives.

use super::sql::{Db, DbResult, Optional, args};

use super::{Result, Store, StoreError, now, ts};

/// When a registered version becomes its bundle's current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MakeCurrent {
    /// Always (an upload).
    Always,
    /// Only when the source was never seen, or the bundle has no current version (a flows
    /// directory read at start: an unchanged file does not undo a later upload).
    IfNew,
}

pub(crate) struct StoredFlow {
    pub(crate) hash: String,
    pub(crate) bundle_id: String,
    pub(crate) version: u32,
    pub(crate) source: String,
    pub(crate) current: bool,
}

impl Store {
    /// Stores a version (if new) and maybe makes it its bundle's current one. Returns the
    /// version number.
    pub(crate) async fn register_flow(
        &self,
        bundle_id: &str,
        hash: &str,
        source: &str,
        origin: &str,
        mode: MakeCurrent,
    ) -> Result<u32> {
        let (b, h, s, o) = (
            bundle_id.to_owned(),
            hash.to_owned(),
            source.to_owned(),
            origin.to_owned(),
        );
        self.write(move |c, _| {
            // Nodes starting together register the same files: one at a time per bundle.
            c.serialize_on(&format!("bundle:{b}"))?;
            let at = ts(now());
            let existing: Option<i64> = c
                .query_row("SELECT version FROM flow_versions WHERE hash = ?1", [&h], |r| r.get(0))
                .optional()?;
            let version = match existing {
                Some(v) => v,
                None => {
                    let v: i64 = c.query_row(
                        "SELECT COALESCE(MAX(version), 0) + 1 FROM flow_versions WHERE bundle_id = ?1",
                        [&b],
                        |r| r.get(0),
                    )?;
                    c.execute(
                        "INSERT INTO flow_versions (hash, bundle_id, version, source, origin, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        args![h, b, v, s, o, at],
                    )?;
                    v
                }
            };
            let has_current: Option<i64> =
                c.query_row("SELECT 1 FROM bundles WHERE bundle_id = ?1", [&b], |r| r.get(0)).optional()?;
            if mode == MakeCurrent::Always || existing.is_none() || has_current.is_none() {
                c.execute(
                    "INSERT INTO bundles (bundle_id, current_hash, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (bundle_id) DO UPDATE SET current_hash = excluded.current_hash, updated_at = excluded.updated_at",
                    args![b, h, at],
                )?;
                super::tokens::mark_shared_change(c)?;
            }
            Ok(version as u32)
        })
        .await
        .map(|(v, _)| v)
    }

    /// Every stored version; `current` marks each bundle's current one.
    pub(crate) async fn flow_versions(&self) -> Result<Vec<StoredFlow>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT f.hash, f.bundle_id, f.version, f.source, b.current_hash IS NOT NULL
                 FROM flow_versions f LEFT JOIN bundles b ON b.current_hash = f.hash ORDER BY f.bundle_id, f.version",
            )?
            .query_map([], |r| {
                Ok(StoredFlow {
                    hash: r.get(0)?,
                    bundle_id: r.get(1)?,
                    version: r.get::<i64>(2)? as u32,
                    source: r.get(3)?,
                    current: r.get(4)?,
                })
            })?
            .collect::<DbResult<Vec<_>>>()?)
        })
        .await
    }
}

/// The current hash of a bundle, inside a write transaction.
pub(super) fn current_hash(conn: &Db, bundle_id: &str) -> Result<String> {
    conn.query_row(
        "SELECT current_hash FROM bundles WHERE bundle_id = ?1",
        [bundle_id],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("flow `{bundle_id}` not found")))
}
