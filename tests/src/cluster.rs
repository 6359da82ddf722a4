//! Gateway nodes sharing one PostgreSQL database: starting several on one new database, and
//! reading what the scale-out tests compare (a global stream, the ledger table itself).

use serde_json::Value;

use crate::app::{Opts, TestApp, TestStore, spawn_with};

/// Whether this test run is the PostgreSQL pass (the cluster tests skip otherwise).
pub fn on_postgres() -> bool {
    TestStore::from_env() == TestStore::Postgres
}

/// Starts `n` nodes on one new database, one after the other (the first takes the runner
/// lease; the others wait for it). `opts` gives each node's options.
pub async fn nodes(n: usize, opts: impl Fn() -> Opts) -> Vec<TestApp> {
    let url = TestStore::Postgres.create_database().await;
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(
            spawn_with(Opts {
                store: TestStore::Postgres,
                database_url: url.clone(),
                ..opts()
            })
            .await,
        );
    }
    v
}

/// A record as the scale-out tests compare them: (global cursor, run id, seq).
pub type Entry = (u64, String, u64);

/// The first `want` records of `app`'s global stream, from the start.
pub async fn global_stream(app: &TestApp, want: usize) -> Vec<Entry> {
    let events = app
        .sse("/api/gateway/ledger/stream?after=0", None, |e| {
            e.iter().filter(|e| e.event == "step").count() >= want
        })
        .await;
    events
        .iter()
        .filter(|e| e.event == "step")
        .map(|e| {
            let r = &e.data["record"];
            (
                e.id.parse().expect("a numeric cursor"),
                r["run_id"].as_str().unwrap_or_default().to_owned(),
                r["seq"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// Every row of the ledger table, in cursor order.
pub async fn ledger_table(app: &TestApp) -> Vec<Entry> {
    let url = app.database_url.as_deref().expect("a PostgreSQL node");
    let rows = crate::pg::query_texts(
        url,
        "SELECT gseq::text || ' ' || run_id || ' ' || seq::text FROM ledger ORDER BY gseq",
    )
    .await;
    rows.iter()
        .map(|r| {
            let mut p = r.split(' ');
            let mut next = || p.next().unwrap_or_default();
            let (g, id, s) = (next(), next().to_owned(), next());
            (
                g.parse().unwrap_or_default(),
                id,
                s.parse().unwrap_or_default(),
            )
        })
        .collect()
}

/// Who holds the runner lease, as `/api/health` tells.
pub async fn lease_holder(app: &TestApp) -> String {
    let (_, h) = app.get("/api/health").await;
    h["runner"]["lease_holder"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The steps of a ledger that completed more than once (a run records each step's
/// completion once, however often it is driven).
pub fn repeated_steps(ledger: &[Value]) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut twice = Vec::new();
    for r in ledger {
        let key = (
            r["step_id"].as_str().unwrap_or_default().to_owned(),
            r["status"].as_str().unwrap_or_default().to_owned(),
        );
        if key.1 == "completed" && !seen.insert(key.clone()) {
            twice.push(key);
        }
    }
    twice
}
