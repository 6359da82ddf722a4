//! The append-only ledger: hash-chained records per run, a global cursor across runs, and
//! pages that cost O(page) (index on `(run_id, seq)` and on `gseq`).

use std::sync::Arc;

use protocol::{LedgerRecord, RecordStatus};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Outbox, Result, StoreError, ts};
use crate::bus::{BusEvent, RecordEvent};
use crate::engine::Draft;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Appends records to one run's chain inside a write transaction.
pub struct Appender {
    pub run_id: String,
    pub last_seq: u64,
    pub last_hash: String,
}

impl Appender {
    pub fn new_run(run_id: &str) -> Self {
        Self {
            run_id: run_id.to_owned(),
            last_seq: 0,
            last_hash: GENESIS.to_owned(),
        }
    }

    pub fn load(conn: &Connection, run_id: &str) -> Result<Self> {
        let (last_seq, last_hash) = conn
            .query_row(
                "SELECT last_seq, last_hash FROM runs WHERE run_id = ?1",
                [run_id],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("run `{run_id}` not found")))?;
        Ok(Self {
            run_id: run_id.to_owned(),
            last_seq,
            last_hash,
        })
    }

    /// Appends one record, queues it for the bus, and returns it.
    pub fn append(
        &mut self,
        conn: &Connection,
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
        rec.record_hash = hash_record(&rec)?;
        let json = serde_json::to_string(&rec)?;
        conn.prepare_cached("INSERT INTO ledger (run_id, seq, record) VALUES (?1, ?2, ?3)")?
            .execute(params![self.run_id, rec.seq as i64, json])?;
        let gseq = conn.last_insert_rowid() as u64;
        let end = run_end(&rec.step_id, rec.status);
        out.events.push(BusEvent::Record(Arc::new(RecordEvent {
            gseq,
            run_id: self.run_id.clone(),
            seq: rec.seq,
            json,
            end,
        })));
        self.last_seq = rec.seq;
        self.last_hash = rec.record_hash.clone();
        Ok(rec)
    }
}

/// The run's final status when a record ends its run.
pub fn run_end(step_id: &str, status: RecordStatus) -> Option<&'static str> {
    match status {
        RecordStatus::Completed if step_id == "run" => Some("completed"),
        RecordStatus::Failed if step_id == "run" => Some("failed"),
        RecordStatus::Cancelled if step_id == "run" => Some("cancelled"),
        _ => None,
    }
}

/// SHA-256 over the record serialised with an empty `record_hash` (its `prev_hash` included).
pub fn hash_record(rec: &LedgerRecord) -> Result<String> {
    let mut r = rec.clone();
    r.record_hash = String::new();
    Ok(hex::encode(Sha256::digest(serde_json::to_vec(&r)?)))
}

/// One page of a run's ledger as stored JSON texts, and the cursor to continue from.
pub fn page(conn: &Connection, run_id: &str, after: u64, limit: u32) -> Result<(Vec<String>, u64)> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT last_seq FROM runs WHERE run_id = ?1")?
        .query_row([run_id], |r| r.get(0))
        .optional()?;
    let Some(last) = last else {
        return Err(StoreError::NotFound(format!("run `{run_id}` not found")));
    };
    let mut stmt = conn.prepare_cached(
        "SELECT seq, record FROM ledger WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let mut items = Vec::new();
    let mut next = after.min(last as u64);
    let rows = stmt.query_map(params![run_id, after as i64, limit as i64], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (seq, json) = row?;
        next = seq;
        items.push(json);
    }
    Ok((items, next))
}

/// A record on the global stream.
pub struct GlobalItem {
    pub gseq: u64,
    pub run_id: String,
    pub seq: u64,
    pub json: String,
}

pub fn global_page(conn: &Connection, after: u64, limit: u32) -> Result<Vec<GlobalItem>> {
    let mut stmt = conn.prepare_cached(
        "SELECT gseq, run_id, seq, record FROM ledger WHERE gseq > ?1 ORDER BY gseq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after as i64, limit as i64], |r| {
        Ok(GlobalItem {
            gseq: r.get::<_, i64>(0)? as u64,
            run_id: r.get(1)?,
            seq: r.get::<_, i64>(2)? as u64,
            json: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The highest global cursor so far.
pub fn global_head(conn: &Connection) -> Result<u64> {
    Ok(
        conn.query_row("SELECT COALESCE(MAX(gseq), 0) FROM ledger", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

impl super::Store {
    /// One page of a run's ledger (stored JSON texts) and the cursor after it.
    pub async fn ledger_page(
        &self,
        run_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<String>, u64)> {
        let id = run_id.to_owned();
        self.read(move |c| page(c, &id, after, limit)).await
    }

    pub async fn global_page(&self, after: u64, limit: u32) -> Result<Vec<GlobalItem>> {
        self.read(move |c| global_page(c, after, limit)).await
    }

    pub async fn global_head(&self) -> Result<u64> {
        self.read(global_head).await
    }
}
