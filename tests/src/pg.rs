//! The throwaway PostgreSQL cluster of a test run (started by `scripts/pg-cluster`, found at
//! `SWITCHBOARD_TEST_PG_URL`): a fresh database per test app, so tests never share rows.

use std::sync::atomic::{AtomicU32, Ordering};

/// The cluster's admin URL, e.g. `postgres://postgres@127.0.0.1:PORT/postgres`.
pub fn admin_url() -> String {
    std::env::var("SWITCHBOARD_TEST_PG_URL").expect(
        "SWITCHBOARD_TEST_PG_URL must name the test cluster (scripts/test starts one with scripts/pg-cluster)",
    )
}

/// Creates an empty database and returns its URL.
pub async fn create_database() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let admin = admin_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let name = format!(
        "sb_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let (base, _) = admin
        .rsplit_once('/')
        .expect("admin URL has a database path");
    let url = format!("{base}/{name}");
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&admin, postgres::NoTls)
            .expect("connect to the test cluster");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a test database");
    })
    .await
    .expect("create database task");
    url
}

/// Runs `sql` on the database at `url` and returns the first column of each row as text.
pub async fn query_texts(url: &str, sql: &str) -> Vec<String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        c.query(sql.as_str(), &[])
            .expect("query")
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect()
    })
    .await
    .expect("query task")
}
