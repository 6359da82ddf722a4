//! The runner lease's fencing number: a lease changing hands gets the next number, a renewal
//! keeps it, and a handle fenced with an older number can no longer write (on a real SQLite
//! file; the two-node tests show the same against PostgreSQL with real processes).

use std::time::Duration;

use super::{Location, RUNNER_LEASE, Store, StoreError};
use crate::bus::Bus;

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[tokio::test]
async fn a_write_fenced_by_a_lease_that_changed_hands_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&Location::Sqlite(dir.path().to_owned()), Bus::new(64))?;
    // Held by `a` for no time at all: anyone may take it over at once.
    let a = store
        .acquire_lease(RUNNER_LEASE, "a:1", Duration::ZERO)
        .await?;
    let renewed = store
        .acquire_lease(RUNNER_LEASE, "a:1", Duration::ZERO)
        .await?;
    assert_eq!(renewed.fence, a.fence, "a renewal keeps the number");
    let fenced = store.fenced(a.fence);
    fenced.set_meta("k", "by a").await?;

    let b = store
        .acquire_lease(RUNNER_LEASE, "b:2", Duration::from_secs(60))
        .await?;
    assert_eq!(b.fence, a.fence + 1);
    let refused = fenced.set_meta("k", "late write by a").await;
    assert!(
        matches!(refused, Err(StoreError::Fenced(f)) if f == a.fence),
        "{refused:?}"
    );
    assert_eq!(store.meta("k").await?.as_deref(), Some("by a"));
    // The new holder's handle writes; `a` cannot take a live lease back.
    store.fenced(b.fence).set_meta("k", "by b").await?;
    let taken = store
        .acquire_lease(RUNNER_LEASE, "a:1", Duration::from_secs(60))
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    // Released at shutdown, the lease keeps its number: the next holder's is new, so the
    // released holder's late writes stay refused.
    store.release_lease(RUNNER_LEASE, "b:2").await?;
    let c = store
        .acquire_lease(RUNNER_LEASE, "c:3", Duration::from_secs(60))
        .await?;
    assert_eq!(c.fence, b.fence + 1);
    let late = store.fenced(b.fence).set_meta("k", "late write by b").await;
    assert!(matches!(late, Err(StoreError::Fenced(_))), "{late:?}");
    Ok(())
}
