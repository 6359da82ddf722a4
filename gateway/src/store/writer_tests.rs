//! The group commit's promise (on a real SQLite file): a job that fails leaves nothing
//! behind, whether it ran alone (no savepoint: its transaction is rolled back) or in a
//! batch with others (rolled back to its savepoint), and the jobs beside it still commit.

use super::{Location, Store, StoreError};
use crate::bus::Bus;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn put(
    store: &Store,
    key: &str,
    fail: bool,
) -> impl Future<Output = Result<(), StoreError>> + use<> {
    let key = key.to_owned();
    let store = store.clone();
    async move {
        store
            .write(move |db, _| {
                db.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, 'x')",
                    [key.as_str()],
                )?;
                if fail {
                    return Err(StoreError::Conflict(format!("{key} refused after writing")));
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }
}

async fn keys(store: &Store, prefix: &str) -> Result<Vec<String>, StoreError> {
    let like = format!("{prefix}%");
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
    let dir = tempfile::tempdir()?;
    let store = Store::open(&Location::Sqlite(dir.path().to_owned()), Bus::new(64))?;

    // Alone: the writer is idle, so each of these is a batch of one.
    let refused = put(&store, "alone-1", true).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    put(&store, "alone-2", false).await?;
    assert_eq!(keys(&store, "alone-").await?, ["alone-2"]);

    // Together: 64 writes sent at once share batches; every third one fails.
    let jobs: Vec<_> = (0..64)
        .map(|i| tokio::spawn(put(&store, &format!("many-{i:02}"), i % 3 == 0)))
        .collect();
    let mut want = Vec::new();
    for (i, job) in jobs.into_iter().enumerate() {
        let got = job.await?;
        assert_eq!(got.is_err(), i % 3 == 0, "job {i}: {got:?}");
        if i % 3 != 0 {
            want.push(format!("many-{i:02}"));
        }
    }
    assert_eq!(keys(&store, "many-").await?, want);
    Ok(())
}

#[tokio::test]
async fn the_writers_statement_journal_stays_in_memory() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&Location::Sqlite(dir.path().to_owned()), Bus::new(64))?;
    // 2 = MEMORY: a batch's savepoints never spill their journal to a temporary file.
    let (mode, _) = store
        .write(|db, _| Ok(db.query_row("PRAGMA temp_store", [], |r| r.get::<i64>(0))?))
        .await?;
    assert_eq!(mode, 2);
    Ok(())
}
