//! The append-only ledger: hash-chained records per run, a global cursor across runs, and
//! pages that cost O(page) (index on `(run_id, seq)` and on `gseq`).
//!
//! The global cursor (`gseq`) never skips a record. On SQLite one writer numbers rows in
//! commit order. On PostgreSQL several nodes commit at once, and a number taken early can
//! commit late, so a reader that trusted `gseq > cursor` could pass a record for good. There,
//! a row's cursor is `xid << 24 | n`: the writing transaction's id (taken first, before any
//! row) and the row's place in it. Readers serve only rows below `xmin << 24`, where `xmin`
//! is the oldest transaction still running in the reading statement's snapshot: every
//! transaction below it has ended, so every row that can still appear has a larger cursor
//! than any row served. A record waits at most as long as the oldest write in progress.

use std::sync::Arc;

use super::sql::{Db, Optional, args, locked};
use protocol::LedgerRecord;
use sha2::{Digest, Sha256};

use super::{Outbox, Result, StoreError, ts};
use crate::bus::{BusEvent, RecordEvent};
use crate::engine::Draft;

pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Appends records to one run's chain inside a write transaction.
pub(crate) struct Appender {
    pub(crate) run_id: String,
    pub(crate) last_seq: u64,
    pub(crate) last_hash: String,
}

impl Appender {
    pub(crate) fn new_run(run_id: &str) -> Self {
        Self {
            run_id: run_id.to_owned(),
            last_seq: 0,
            last_hash: GENESIS.to_owned(),
        }
    }

    pub(crate) fn load(conn: &Db, run_id: &str) -> Result<Self> {
        let (last_seq, last_hash) = conn
            .prepare_cached(locked!(
                conn,
                "SELECT last_seq, last_hash FROM runs WHERE run_id = ?1"
            ))?
            .query_row([run_id], |r| {
                Ok((r.get::<i64>(0)? as u64, r.get::<String>(1)?))
            })
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("run `{run_id}` not found")))?;
        Ok(Self {
            run_id: run_id.to_owned(),
            last_seq,
            last_hash,
        })
    }

    /// Appends one record, queues it for the bus, and returns it.
    pub(crate) fn append(
        &mut self,
        conn: &Db,
        d: &Draft,
        out: &mut Outbox,
    ) -> Result<LedgerRecord> {
        let mut rec = LedgerRecord {
            seq: self.last_seq + 1,
            run_id: self.run_id.clone(),
            step_id: d.step_id.clone(),
            node_id: d.node_id.clone(),
            status: d.status,
            effect: d.effect.clone(),
            result: d.result.clone(),
            error: d.error.clone(),
            started_at: ts(d.started_at),
            ended_at: d.ended_at.map(ts),
            attempt: d.attempt,
            idempotency_key: d.idempotency_key.clone(),
            actor: d.actor.clone(),
            prev_hash: self.last_hash.clone(),
            record_hash: String::new(),
        };
        let json = seal(&mut rec)?;
        let gseq = match conn.take_gseq()? {
            Some(g) => {
                conn.prepare_cached(
                    "INSERT INTO ledger (gseq, run_id, seq, record) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(args![g, self.run_id, rec.seq as i64, json])?;
                g
            }
            None => conn.insert_key(
                "INSERT INTO ledger (run_id, seq, record) VALUES (?1, ?2, ?3)",
                "gseq",
                args![self.run_id, rec.seq as i64, json],
            )?,
        } as u64;
        let end = rec.run_end().map(protocol::RunStatus::as_str);
        out.events.push(BusEvent::Record(Arc::new(RecordEvent {
            gseq,
            run_id: self.run_id.clone(),
            seq: rec.seq,
            json,
            end,
            frames: Default::default(),
        })));
        self.last_seq = rec.seq;
        self.last_hash = rec.record_hash.clone();
        Ok(rec)
    }
}

/// Sets `rec.record_hash` ([`hash_record`]) and returns the record's JSON, serialising it
/// once: `record_hash` is its last field, so the hashed text (with `""` there) becomes the
/// stored one by putting the hash between those quotes.
fn seal(rec: &mut LedgerRecord) -> Result<String> {
    const EMPTY_HASH: &[u8] = br#","record_hash":""}"#;
    rec.record_hash.clear();
    let mut json = serde_json::to_vec(rec)?;
    let hash = hex::encode(Sha256::digest(&json));
    if json.ends_with(EMPTY_HASH) {
        json.truncate(json.len() - 2);
        json.extend_from_slice(hash.as_bytes());
        json.extend_from_slice(b"\"}");
        rec.record_hash = hash;
        // Only ASCII was added to serde_json's UTF-8.
        return String::from_utf8(json).map_err(|e| StoreError::Corrupt(e.to_string()));
    }
    // Not reached while `record_hash` is the last field; correct either way.
    rec.record_hash = hash;
    Ok(serde_json::to_string(rec)?)
}

/// SHA-256 over the record serialised with an empty `record_hash` (its `prev_hash` included).
pub(crate) fn hash_record(rec: &LedgerRecord) -> Result<String> {
    let mut r = rec.clone();
    r.record_hash = String::new();
    Ok(hex::encode(Sha256::digest(serde_json::to_vec(&r)?)))
}

/// One page of a run's ledger as stored JSON texts, and the cursor to continue from.
pub(crate) fn page(conn: &Db, run_id: &str, after: u64, limit: u32) -> Result<(Vec<String>, u64)> {
    let mut items = Vec::new();
    let next = page_each(conn, run_id, after, limit, |_, json| {
        items.push(String::from_utf8_lossy(json).into_owned())
    })?;
    Ok((items, next))
}

/// The first global cursor of a PostgreSQL write transaction with id `xid`.
pub(crate) fn gseq_base(xid: i64) -> Result<i64> {
    if !(0..1 << 39).contains(&xid) {
        return Err(StoreError::Corrupt(format!(
            "transaction id {xid} is past the global cursor's range"
        )));
    }
    Ok(xid << 24)
}

/// The condition that keeps PostgreSQL readers below the cursor horizon.
macro_rules! settled {
    () => {
        "gseq < (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 24)"
    };
}

/// A page of a run's ledger (every ledger page and SSE catch-up runs it).
pub(super) const PAGE_SQL: &str =
    "SELECT seq, record FROM ledger WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";

/// Calls `f(seq, json)` for each record of a page, the JSON bytes borrowed from SQLite's row
/// (no copy or UTF-8 check per record); returns the cursor to continue from.
pub(crate) fn page_each(
    conn: &Db,
    run_id: &str,
    after: u64,
    limit: u32,
    mut f: impl FnMut(u64, &[u8]),
) -> Result<u64> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT last_seq FROM runs WHERE run_id = ?1")?
        .query_row([run_id], |r| r.get(0))
        .optional()?;
    let Some(last) = last else {
        return Err(StoreError::NotFound(format!("run `{run_id}` not found")));
    };
    let mut next = after.min(last as u64);
    conn.prepare_cached(PAGE_SQL)?
        .for_each(args![run_id, after as i64, limit as i64], |row| {
            next = row.get::<i64>(0)? as u64;
            f(next, row.bytes(1)?);
            Ok(())
        })?;
    Ok(next)
}

/// Calls `f(gseq, json)` for each record of a page of the global ledger (JSON borrowed, as
/// in [`page_each`]); returns the last global cursor it saw, if any.
pub(crate) fn global_each(
    conn: &Db,
    after: u64,
    limit: u32,
    mut f: impl FnMut(u64, &[u8]),
) -> Result<Option<u64>> {
    let sql = if conn.is_pg() {
        concat!(
            "SELECT gseq, record FROM ledger WHERE gseq > ?1 AND ",
            settled!(),
            " ORDER BY gseq LIMIT ?2"
        )
    } else {
        "SELECT gseq, record FROM ledger WHERE gseq > ?1 ORDER BY gseq LIMIT ?2"
    };
    let mut last = None;
    conn.prepare_cached(sql)?
        .for_each(args![after as i64, limit as i64], |row| {
            let gseq = row.get::<i64>(0)? as u64;
            f(gseq, row.bytes(1)?);
            last = Some(gseq);
            Ok(())
        })?;
    Ok(last)
}

/// A record on the global stream.
pub(crate) struct GlobalItem {
    pub(crate) gseq: u64,
    pub(crate) run_id: String,
    pub(crate) seq: u64,
    pub(crate) json: String,
}

pub(crate) fn global_page(conn: &Db, after: u64, limit: u32) -> Result<Vec<GlobalItem>> {
    let sql = if conn.is_pg() {
        concat!(
            "SELECT gseq, run_id, seq, record FROM ledger WHERE gseq > ?1 AND ",
            settled!(),
            " ORDER BY gseq LIMIT ?2"
        )
    } else {
        "SELECT gseq, run_id, seq, record FROM ledger WHERE gseq > ?1 ORDER BY gseq LIMIT ?2"
    };
    let rows = conn
        .prepare_cached(sql)?
        .query_map(args![after as i64, limit as i64], |r| {
            Ok(GlobalItem {
                gseq: r.get::<i64>(0)? as u64,
                run_id: r.get(1)?,
                seq: r.get::<i64>(2)? as u64,
                json: r.get(3)?,
            })
        })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The highest global cursor so far.
pub(crate) fn global_head(conn: &Db) -> Result<u64> {
    let sql = if conn.is_pg() {
        concat!(
            "SELECT COALESCE(MAX(gseq), 0) FROM ledger WHERE ",
            settled!()
        )
    } else {
        // Not `MAX(gseq)`: a prune may have deleted the newest records, and their cursors
        // are never handed out again.
        "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'ledger'), 0)"
    };
    Ok(conn.query_row(sql, [], |r| r.get::<i64>(0))? as u64)
}

impl super::Store {
    /// One page of a run's ledger (stored JSON texts) and the cursor after it.
    pub(crate) async fn ledger_page(
        &self,
        run_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<String>, u64)> {
        let id = run_id.to_owned();
        self.read(move |c| page(c, &id, after, limit)).await
    }

    /// A page of a run's ledger framed by `frame(out, seq, json)` into one text on the
    /// reading thread (an SSE catch-up writes it as it is); returns the text, the cursor after
    /// it, and whether the page held any record.
    pub(crate) async fn ledger_frames(
        &self,
        run_id: &str,
        after: u64,
        limit: u32,
        frame: fn(&mut Vec<u8>, u64, &[u8]),
    ) -> Result<(Vec<u8>, u64, bool)> {
        let id = run_id.to_owned();
        self.read(move |c| {
            let (mut out, mut n) = (Vec::new(), 0usize);
            let next = page_each(c, &id, after, limit, |seq, json| {
                n += 1;
                frame(&mut out, seq, json)
            })?;
            Ok((out, next, n > 0))
        })
        .await
    }

    /// A page of the global ledger framed like [`Self::ledger_frames`]; returns the text and
    /// the last global cursor in it (`None` when there was nothing after `after`).
    pub(crate) async fn global_frames(
        &self,
        after: u64,
        limit: u32,
        frame: fn(&mut Vec<u8>, u64, &[u8]),
    ) -> Result<(Vec<u8>, Option<u64>)> {
        self.read(move |c| {
            let mut out = Vec::new();
            let last = global_each(c, after, limit, |gseq, json| frame(&mut out, gseq, json))?;
            Ok((out, last))
        })
        .await
    }

    pub(crate) async fn global_page(&self, after: u64, limit: u32) -> Result<Vec<GlobalItem>> {
        self.read(move |c| global_page(c, after, limit)).await
    }

    pub(crate) async fn global_head(&self) -> Result<u64> {
        self.read(global_head).await
    }
}

#[cfg(test)]
mod tests {
    use protocol::{Actor, Effect, LedgerRecord, RecordStatus};

    #[test]
    fn a_sealed_record_is_what_serialising_it_with_its_hash_gives() {
        let mut rec = LedgerRecord {
            seq: 3,
            run_id: "r1".into(),
            step_id: "ask.1".into(),
            node_id: "n".into(),
            status: RecordStatus::Waiting,
            effect: Some(Effect {
                kind: "ask".into(),
                payload: serde_json::json!({"prompt": "Ünïcode \"quoted\"\n?"}),
            }),
            result: None,
            error: None,
            started_at: "2026-11-30T10:00:00.000Z".into(),
            ended_at: None,
            attempt: 1,
            idempotency_key: None,
            actor: Actor::runner(),
            prev_hash: super::GENESIS.into(),
            record_hash: "stale".into(),
        };
        // The fast path holds: the hashed text ends with the empty hash.
        let mut unsealed = rec.clone();
        unsealed.record_hash.clear();
        let text = serde_json::to_string(&unsealed).unwrap();
        assert!(text.ends_with(r#","record_hash":""}"#), "{text}");
        let json = super::seal(&mut rec).unwrap();
        assert_eq!(json, serde_json::to_string(&rec).unwrap());
        assert_eq!(rec.record_hash, super::hash_record(&rec).unwrap());
        assert_eq!(rec.record_hash.len(), 64);
    }
}
