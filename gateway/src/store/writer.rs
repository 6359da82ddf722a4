//! The one writer: a thread that owns the write connection and group-commits.
//!
//! Callers send jobs; the thread takes every job waiting (up to a batch limit), runs each in
//! its own SAVEPOINT inside one `BEGIN IMMEDIATE` transaction, commits once (one fsync with
//! `synchronous=FULL`), and only then answers each caller and publishes their bus events. A
//! job that fails is rolled back to its savepoint without touching the others.

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use crate::bus::{Bus, BusEvent};

/// Events a job publishes if, and only if, its transaction commits.
#[derive(Default)]
pub(crate) struct Outbox {
    pub(crate) events: Vec<BusEvent>,
    /// Runs the runner should look at after the commit.
    pub(crate) wake: Vec<String>,
}

type Finish = Box<dyn FnOnce(Result<(), String>, &Bus) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Finish + Send>;

const BATCH: usize = 512;

#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread; it ends when every `Writer` handle is dropped.
    pub(crate) fn start(conn: Connection, bus: Bus) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, rx, bus))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { tx })
    }

    /// Runs `f` in the write transaction; returns after the commit is on disk.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<(T, Vec<String>), StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Outbox) -> Result<T, StoreError> + Send + 'static,
    {
        let (otx, orx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let mut outbox = Outbox::default();
            let result = in_savepoint(conn, |c| f(c, &mut outbox));
            Box::new(move |committed, bus| {
                let out = match (committed, result) {
                    (Ok(()), Ok(v)) => {
                        let appended = outbox
                            .events
                            .iter()
                            .filter(|e| matches!(e, BusEvent::Record(_)))
                            .count();
                        metrics::counter!("switchboard_ledger_appends_total")
                            .increment(appended as u64);
                        for ev in outbox.events {
                            bus.publish(ev);
                        }
                        Ok((v, outbox.wake))
                    }
                    (Err(e), Ok(_)) => Err(StoreError::Commit(e)),
                    (_, Err(e)) => Err(e),
                };
                let _ = otx.send(out);
            })
        });
        self.tx.send(job).await.map_err(|_| StoreError::Closed)?;
        orx.await.map_err(|_| StoreError::Closed)?
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    exec(conn, "SAVEPOINT job")?;
    match f(conn) {
        Ok(v) => {
            exec(conn, "RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            exec(conn, "ROLLBACK TO job")?;
            exec(conn, "RELEASE job")?;
            Err(e)
        }
    }
}

/// Runs one statement from the connection's statement cache: the writer runs these few
/// statements for every job and batch, and parsing them each time showed in profiles.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Job>, bus: Bus) {
    let mut jobs = Vec::with_capacity(BATCH);
    while let Some(first) = rx.blocking_recv() {
        jobs.push(first);
        while jobs.len() < BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let t0 = std::time::Instant::now();
        let batch = jobs.len();
        let started = exec(&conn, "BEGIN IMMEDIATE");
        if let Err(e) = started {
            // Dropping the jobs answers their callers with `StoreError::Closed`.
            tracing::error!(error = %e, "store: cannot begin a transaction");
            jobs.clear();
            continue;
        }
        let finishes: Vec<Finish> = jobs.drain(..).map(|j| j(&conn)).collect();
        let committed = exec(&conn, "COMMIT").map_err(|e| {
            tracing::error!(error = %e, "store: commit failed");
            let _ = exec(&conn, "ROLLBACK");
            e.to_string()
        });
        metrics::histogram!("switchboard_store_commit_seconds").record(t0.elapsed().as_secs_f64());
        metrics::histogram!("switchboard_store_commit_batch_size").record(batch as f64);
        for f in finishes {
            f(committed.clone(), &bus);
        }
    }
}
