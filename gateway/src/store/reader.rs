//! The readers: threads that each own a read connection and run the store's reads one at
//! a time, taking them from one queue.
//!
//! A read costs a channel send and a wake-up. Reads used to run on tokio's blocking pool,
//! which under a burst of short reads starts a thread for nearly every read (83 under the
//! 64-client bench). Each of those threads kept its own allocator pages, about 180 MiB
//! resident after a million starts (BENCHMARKS.md, "A million waiting runs"). The pool is
//! also where DNS lookups wait, so reads no longer queue behind a slow resolver.
//! This module runs reads; it never writes (that is `writer`) and holds no SQL.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::sql::{Conn, Db, DbError};
use super::{Location, StoreError};

/// A read, given its connection (or why there is none); `true` if the connection broke.
type Job = Box<dyn FnOnce(Result<&Db, StoreError>) -> bool + Send>;

/// The queue the reader threads share; a thread holds the lock only to take one job.
type Queue = Arc<std::sync::Mutex<mpsc::Receiver<Job>>>;

#[derive(Clone)]
pub(super) struct Readers {
    tx: mpsc::Sender<Job>,
}

impl Readers {
    /// Starts one reader thread per connection; they end when every handle is dropped.
    pub(super) fn start(conns: Vec<Conn>, location: Arc<Location>) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let queue: Queue = Arc::new(std::sync::Mutex::new(rx));
        for (i, conn) in conns.into_iter().enumerate() {
            let (queue, location) = (queue.clone(), location.clone());
            std::thread::Builder::new()
                .name(format!("store-reader-{i}"))
                .spawn(move || run(conn, &location, &queue))
                .map_err(|e| StoreError::Corrupt(format!("cannot start a reader thread: {e}")))?;
        }
        Ok(Self { tx })
    }

    /// Runs `f` on a reader's connection.
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    {
        let (otx, orx) = oneshot::channel();
        let job: Job = Box::new(move |db| {
            let out = db.and_then(f);
            let broken = matches!(&out, Err(StoreError::Db(DbError::Pg(e))) if e.is_closed());
            let _ = otx.send(out);
            broken
        });
        self.tx.send(job).await.map_err(|_| StoreError::Closed)?;
        orx.await.map_err(|_| StoreError::Closed)?
    }
}

/// One reader thread: takes a job, runs it, and opens its connection again after a
/// PostgreSQL connection broke (before the next job, which gets the error if that fails).
fn run(conn: Conn, location: &Location, queue: &Queue) {
    let mut conn = Some(conn);
    loop {
        let job = queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .blocking_recv();
        let Some(job) = job else {
            return;
        };
        if conn.as_ref().is_none_or(Conn::is_broken) {
            conn = None;
            match location.connect(false) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    job(Err(e));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_ref() else {
            continue;
        };
        // A read that panics (a bug) answers `Closed` (its sender is dropped) and costs
        // its connection, not this thread: the readers must not dwindle to none.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Ok(&c.db()))));
        match ran {
            Ok(false) => {}
            Ok(true) => conn = None,
            Err(_) => {
                tracing::error!("store: a read panicked; its connection is opened again");
                conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Location, Store, StoreError};
    use crate::bus::Bus;

    #[tokio::test]
    async fn reads_that_panic_cost_no_reader() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&Location::Sqlite(dir.path().to_owned()), Bus::new(16))?;
        // More panics than there are reader threads.
        for _ in 0..super::super::READERS * 2 {
            let out = store
                .read(|_| -> Result<(), StoreError> { panic!("a bug in a read") })
                .await;
            assert!(matches!(out, Err(StoreError::Closed)), "{out:?}");
        }
        store.set_meta("k", "v").await?;
        assert_eq!(store.meta("k").await?.as_deref(), Some("v"));
        Ok(())
    }
}
