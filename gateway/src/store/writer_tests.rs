//! The group commit's promises, on a real SQLite file, with batches made up here (a list of
//! jobs handed to `commit_batch`, as the writer thread does with what it takes):
//! - a job that fails leaves nothing behind, whether it ran alone (no savepoint: the
//!   transaction is rolled back) or in a batch (rolled back to its savepoint), and the
//!   jobs beside it still commit;
//! - a job's statement journal (its savepoint's) stays in memory, never a temporary file;
//! - a solo job (a big write) goes in a batch of its own, and the jobs behind it wait for
//!   the next batch.

use super::{Answer, Job, Publish, Queue, commit_batch, job, ready, take};
use crate::bus::Bus;
use crate::store::sql::Conn;
use crate::store::{Location, Store, StoreError};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A store on a fresh file (migrated by `Store::open`) and a write connection of our own.
fn open() -> Result<(tempfile::TempDir, Store, Conn), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let location = Location::Sqlite(dir.path().to_owned());
    let store = Store::open(&location, Bus::new(64))?;
    let conn = location.connect(true)?;
    ready(&conn.db());
    Ok((dir, store, conn))
}

fn run(conn: &Conn, mut jobs: Vec<Job>) {
    let publish = Publish {
        bus: Bus::new(64),
        records: true,
    };
    commit_batch(&conn.db(), &mut jobs, &publish);
}

/// Writes `rows` rows of `bytes` bytes under `key`.
fn insert(
    db: &crate::store::sql::Db,
    key: &str,
    rows: usize,
    bytes: usize,
) -> Result<(), StoreError> {
    let value = "x".repeat(bytes);
    for i in 0..rows {
        let k = format!("{key}#{i:05}");
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            [k.as_str(), value.as_str()],
        )?;
    }
    Ok(())
}

/// A job that writes like [`insert`], then fails if told to.
fn put(key: &str, rows: usize, bytes: usize, fail: bool) -> (Job, Answer<()>) {
    let key = key.to_owned();
    job(move |db, _| {
        insert(db, &key, rows, bytes)?;
        if fail {
            return Err(StoreError::Conflict(format!("{key} refused after writing")));
        }
        Ok(())
    })
}

async fn keys(store: &Store, prefix: &str) -> Result<Vec<String>, StoreError> {
    let like = format!("{prefix}%#00000");
    store
        .read(move |db| {
            let rows = db
                .prepare_cached("SELECT key FROM meta WHERE key LIKE ?1 ORDER BY key")?
                .query_map([like.as_str()], |r| r.get::<String>(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
}

#[tokio::test]
async fn a_failed_job_leaves_nothing_alone_or_in_a_batch() -> TestResult {
    let (_dir, store, conn) = open()?;
    let (refused, answer) = put("alone-1", 3, 10, true);
    run(&conn, vec![refused]);
    assert!(matches!(answer.await?, Err(StoreError::Conflict(_))));
    let (kept, answer) = put("alone-2", 3, 10, false);
    run(&conn, vec![kept]);
    answer.await??;
    assert_eq!(keys(&store, "alone-").await?, ["alone-2#00000"]);

    let (mut batch, mut answers) = (Vec::new(), Vec::new());
    for i in 0..6 {
        let (j, a) = put(&format!("many-{i}"), 3, 10, i % 2 == 0);
        batch.push(j);
        answers.push(a);
    }
    run(&conn, batch);
    for (i, a) in answers.into_iter().enumerate() {
        assert_eq!(a.await?.is_err(), i % 2 == 0, "job {i}");
    }
    let want = ["many-1#00000", "many-3#00000", "many-5#00000"];
    assert_eq!(keys(&store, "many-").await?, want);
    Ok(())
}

/// Unlinked files this process holds open now: SQLite's temporary files (opened with
/// `O_TMPFILE` where the kernel has it, else named `etilqs_…` and unlinked at once).
fn temp_files() -> usize {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().ends_with(" (deleted)"))
        .count()
}

/// Commits `rows` rows of 4,000 bytes, then rewrites them all in the second job of a batch
/// of two (so in a savepoint, which journals every page that existed before it) and counts
/// the temporary files open before that transaction ends.
async fn spilled(conn: &Conn, key: &str, rows: usize) -> Result<usize, Box<dyn std::error::Error>> {
    let (written, a0) = put(key, rows, 4000, false);
    run(conn, vec![written]);
    a0.await??;
    let (first, a1) = put(&format!("{key}-first"), 1, 10, false);
    let like = format!("{key}#%");
    let (second, a2) = job(move |db, _| {
        let changed = db.execute(
            "UPDATE meta SET value = 'y' || substr(value, 2) WHERE key LIKE ?1",
            [like.as_str()],
        )?;
        Ok((changed, temp_files()))
    });
    run(conn, vec![first, second]);
    a1.await??;
    let ((changed, open), _) = a2.await??;
    assert_eq!(changed, rows);
    Ok(open)
}

#[tokio::test]
async fn a_jobs_statement_journal_stays_in_memory() -> TestResult {
    let (_dir, _store, conn) = open()?;
    // About 80 KiB and 1 MiB of pages journaled in a savepoint: SQLite's default (a file
    // past 64 KiB) would have spilled both.
    assert_eq!(spilled(&conn, "small", 20).await?, 0);
    assert_eq!(spilled(&conn, "big", 250).await?, 0);
    Ok(())
}

#[test]
fn a_solo_job_goes_in_a_batch_of_its_own() {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let queue: Queue = std::sync::Arc::new(std::sync::Mutex::new(rx));
    for (i, solo) in [false, false, true, false, true, true]
        .into_iter()
        .enumerate()
    {
        let (mut j, _) = put(&format!("k{i}"), 1, 1, false);
        j.solo = solo;
        assert!(tx.try_send(j).is_ok());
    }
    drop(tx);
    let (mut next, mut sizes) = (None, Vec::new());
    let mut jobs = Vec::new();
    while take(&queue, &mut next, &mut jobs) {
        sizes.push((jobs.len(), jobs.iter().map(|j| j.solo).collect::<Vec<_>>()));
        jobs.clear();
    }
    let want = [
        (2, vec![false, false]),
        (1, vec![true]),
        (1, vec![false]),
        (1, vec![true]),
        (1, vec![true]),
    ];
    assert_eq!(sizes, want);
}
