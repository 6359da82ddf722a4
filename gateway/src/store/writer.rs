//! The one writer: a thread that owns the write connection and group-commits.
//!
//! Callers send jobs; the thread takes every job waiting (up to a batch limit), runs each in
//! its own SAVEPOINT inside one transaction (`BEGIN IMMEDIATE` on SQLite), commits once (one
//! fsync with `synchronous=FULL` or `synchronous_commit=on`), and only then answers each
//! caller and publishes their bus events. A job that fails is rolled back to its savepoint
//! without touching the others; on SQLite a batch of one job has no savepoint, and its
//! failure rolls back the transaction. On PostgreSQL the batch first takes its transaction id, the
//! base of the global cursors its ledger rows get (see `ledger`).

use tokio::sync::{mpsc, oneshot};

use std::sync::Arc;

use super::sql::{Conn, Db, DbError};
use super::{Location, StoreError};
use crate::bus::{Bus, BusEvent};

/// Events a job publishes if, and only if, its transaction commits.
#[derive(Default)]
pub(crate) struct Outbox {
    pub(crate) events: Vec<BusEvent>,
    /// Runs the runner should look at after the commit.
    pub(crate) wake: Vec<String>,
}

type Finish = Box<dyn FnOnce(Result<(), String>, &Publish) + Send>;

/// Where committed events go. On a shared (PostgreSQL) store records are not published here:
/// the follower reads them back in global cursor order, so every node's bus carries the same
/// records in the same order (see `crate::follow`).
#[derive(Clone)]
struct Publish {
    bus: Bus,
    records: bool,
}
/// One caller's write: what it runs in the batch's transaction, and whether it must be the
/// only one in its batch.
struct Job {
    work: Box<dyn FnOnce(&Db) -> Finish + Send>,
    /// A big write (a prune of a huge run) goes in a batch of its own: on SQLite it then
    /// needs no savepoint, whose journal (in memory, see `run`) would hold every page it
    /// changes.
    solo: bool,
}

const BATCH: usize = 512;

#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Job>,
    /// Jobs sent and not yet answered (for `idle`).
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

/// The queue the writer threads share; a thread holds the lock only while it takes a batch.
type Queue = Arc<std::sync::Mutex<mpsc::Receiver<Job>>>;

impl Writer {
    /// Starts one writer thread per connection; they end when every `Writer` handle is
    /// dropped. SQLite has one writer (its commits are serial anyway, and the writer's
    /// order is the global cursor's). A PostgreSQL node runs several, each group-committing
    /// its own batches, because its cost is round trips, not fsyncs, and the database
    /// takes concurrent writers (row locks, see `sql::locked`) as it takes other nodes.
    pub(crate) fn start(
        conns: Vec<Conn>,
        location: Arc<Location>,
        bus: Bus,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let queue: Queue = Arc::new(std::sync::Mutex::new(rx));
        let publish = Publish {
            bus,
            records: !matches!(*location, Location::Postgres(_)),
        };
        for (i, conn) in conns.into_iter().enumerate() {
            let (queue, location, publish) = (queue.clone(), location.clone(), publish.clone());
            std::thread::Builder::new()
                .name(format!("store-writer-{i}"))
                .spawn(move || run(conn, location, queue, publish))
                .map_err(|e| StoreError::Corrupt(format!("cannot start the writer thread: {e}")))?;
        }
        Ok(Self {
            tx,
            queued: Arc::default(),
        })
    }

    /// Whether every job sent so far has been answered.
    pub(crate) fn idle(&self) -> bool {
        self.queued.load(std::sync::atomic::Ordering::Acquire) == 0
    }

    /// Runs `f` in the write transaction (`solo`: in a batch of its own); returns after the
    /// commit is on disk.
    pub(crate) async fn write<T, F>(&self, f: F, solo: bool) -> Result<(T, Vec<String>), StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Db, &mut Outbox) -> Result<T, StoreError> + Send + 'static,
    {
        let (mut job, orx) = job(f);
        job.solo = solo;
        use std::sync::atomic::Ordering;
        self.queued.fetch_add(1, Ordering::AcqRel);
        let sent = self.tx.send(job).await.map_err(|_| StoreError::Closed);
        let out = match sent {
            Ok(()) => orx.await.map_err(|_| StoreError::Closed),
            Err(e) => Err(e),
        };
        self.queued.fetch_sub(1, Ordering::AcqRel);
        out?
    }
}

type Answer<T> = oneshot::Receiver<Result<(T, Vec<String>), StoreError>>;

/// `f` as a job of a batch, and where its answer comes once the batch committed or failed.
fn job<T, F>(f: F) -> (Job, Answer<T>)
where
    T: Send + 'static,
    F: FnOnce(&Db, &mut Outbox) -> Result<T, StoreError> + Send + 'static,
{
    let (otx, orx) = oneshot::channel();
    let work = Box::new(move |conn: &Db| -> Finish {
        let mut outbox = Outbox::default();
        let result = in_savepoint(conn, |c| f(c, &mut outbox));
        Box::new(move |committed, publish| {
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
                        if publish.records || !matches!(ev, BusEvent::Record(_)) {
                            publish.bus.publish(ev);
                        }
                    }
                    Ok((v, outbox.wake))
                }
                (Err(e), Ok(_)) => Err(StoreError::Commit(e)),
                (_, Err(e)) => Err(e),
            };
            let _ = otx.send(out);
        })
    });
    (Job { work, solo: false }, orx)
}

std::thread_local! {
    /// Set when a statement the writer itself runs (a savepoint's release or rollback, the
    /// notification) failed: PostgreSQL then answers `COMMIT` with a rollback and no error,
    /// so the batch must be reported failed, not committed.
    static BATCH_BROKEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

std::thread_local! {
    /// Set while the writer runs a batch of one job on SQLite. That job needs no savepoint:
    /// if it fails, the whole transaction is rolled back instead (nothing else is in it).
    /// A savepoint copies every page the job changes into SQLite's statement journal first.
    static SOLE_JOB: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn broke<E: std::fmt::Display>(e: E) {
    tracing::error!(error = %e, "store: the batch's transaction failed");
    BATCH_BROKEN.with(|b| b.set(true));
}

fn in_savepoint<T>(
    conn: &Db,
    f: impl FnOnce(&Db) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if SOLE_JOB.with(|s| s.get()) {
        // The batch's transaction is this job's savepoint: a failure rolls it back.
        return f(conn).inspect_err(|_| BATCH_BROKEN.with(|b| b.set(true)));
    }
    exec(conn, "SAVEPOINT job").inspect_err(|e| broke(e))?;
    match f(conn) {
        Ok(v) => {
            exec(conn, "RELEASE job").inspect_err(|e| broke(e))?;
            Ok(v)
        }
        Err(e) => {
            let undone = exec(conn, "ROLLBACK TO job").and_then(|()| exec(conn, "RELEASE job"));
            if let Err(u) = undone {
                broke(u);
            }
            Err(e)
        }
    }
}

/// Runs one statement from the connection's statement cache: the writer runs these few
/// statements for every job and batch, and parsing them each time showed in profiles.
fn exec(conn: &Db, sql: &str) -> Result<(), DbError> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Opens the batch's transaction.
fn begin(conn: &Db) -> Result<(), StoreError> {
    if !conn.is_pg() {
        return Ok(exec(conn, "BEGIN IMMEDIATE")?);
    }
    exec(conn, "BEGIN")?;
    let xid = conn.query_row("SELECT pg_current_xact_id()::text::bigint", [], |r| {
        r.get::<i64>(0)
    })?;
    conn.set_gseq_base(Some(super::ledger::gseq_base(xid)?));
    Ok(())
}

/// Takes the jobs waiting (up to a batch), blocking for the first unless one was kept
/// back (`next`); `false` once closed. A solo job ends a batch: it is kept back for the
/// next one unless it comes first.
fn take(queue: &Queue, next: &mut Option<Job>, jobs: &mut Vec<Job>) -> bool {
    let mut rx = queue.lock().unwrap_or_else(|p| p.into_inner());
    let Some(first) = next.take().or_else(|| rx.blocking_recv()) else {
        return false;
    };
    let solo = first.solo;
    jobs.push(first);
    while !solo && jobs.len() < BATCH {
        match rx.try_recv() {
            Ok(j) if j.solo => {
                *next = Some(j);
                break;
            }
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
    }
    true
}

/// Readies a writer's connection. A job's statement journal (its savepoint) stays in
/// memory: past 64 KiB SQLite would spill it to a temporary file, then write every page
/// every later job of the batch changes to that file (BENCHMARKS.md, "The writer's
/// statement journal"). Only on the writer's connections: a `VACUUM` elsewhere keeps its
/// temporary database on disk. A job big enough for that to matter goes solo.
fn ready(conn: &Db) {
    if !conn.is_pg()
        && let Err(e) = conn.execute_batch("PRAGMA temp_store = MEMORY")
    {
        tracing::warn!(error = %e, "store: the writer's statement journals stay on disk");
    }
}

fn run(mut conn: Conn, location: Arc<Location>, queue: Queue, bus: Publish) {
    ready(&conn.db());
    let (mut jobs, mut next) = (Vec::with_capacity(BATCH), None);
    while take(&queue, &mut next, &mut jobs) {
        if conn.is_broken() {
            match location.connect(true) {
                Ok(c) => conn = c,
                Err(e) => {
                    // Dropping the jobs answers their callers with `StoreError::Closed`.
                    tracing::error!(error = %e, "store: cannot reconnect the writer");
                    jobs.clear();
                    continue;
                }
            }
        }
        commit_batch(&conn.db(), &mut jobs, &bus);
    }
}

/// Runs the jobs in one transaction and answers each after the commit.
fn commit_batch(conn: &Db, jobs: &mut Vec<Job>, bus: &Publish) {
    let t0 = std::time::Instant::now();
    let batch = jobs.len();
    if let Err(e) = begin(conn) {
        tracing::error!(error = %e, "store: cannot begin a transaction");
        let _ = exec(conn, "ROLLBACK");
        conn.set_gseq_base(None);
        jobs.clear();
        return;
    }
    // SQLite only: PostgreSQL has no statement journal to save, and a failed `RELEASE`
    // there is what catches a job that went on after one of its statements failed.
    SOLE_JOB.with(|s| s.set(batch == 1 && !conn.is_pg()));
    let finishes: Vec<Finish> = jobs.drain(..).map(|j| (j.work)(conn)).collect();
    SOLE_JOB.with(|s| s.set(false));
    if conn.is_pg() {
        // One notification per transaction (NOTIFY takes a global lock at commit): a hint
        // for other nodes' followers, which also poll.
        if let Err(e) = exec(conn, "NOTIFY switchboard") {
            broke(e);
        }
    }
    let committed = if BATCH_BROKEN.with(|b| b.replace(false)) {
        let _ = exec(conn, "ROLLBACK");
        Err("the batch's transaction failed; nothing of it was committed".to_owned())
    } else {
        exec(conn, "COMMIT").map_err(|e| {
            tracing::error!(error = %e, "store: commit failed");
            let _ = exec(conn, "ROLLBACK");
            e.to_string()
        })
    };
    conn.set_gseq_base(None);
    metrics::histogram!("switchboard_store_commit_seconds").record(t0.elapsed().as_secs_f64());
    metrics::histogram!("switchboard_store_commit_batch_size").record(batch as f64);
    for f in finishes {
        f(committed.clone(), bus);
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
