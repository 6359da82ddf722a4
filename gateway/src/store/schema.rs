//! Versioned schema migrations, one list per backend. Each entry runs once, in order, inside
//! one transaction; SQLite's `PRAGMA user_version` and PostgreSQL's `schema_migrations` table
//! record how far a store has come. Never edit a shipped entry: append a new one (to both
//! lists when the change applies to both).
//!
//! The PostgreSQL schema mirrors SQLite's with these differences: integers are `BIGINT`;
//! `ledger.gseq` is assigned by the writer (the cursor horizon, see `ledger`), not by the
//! database; tables listed in insertion order get a `rowid BIGSERIAL` (SQLite has one
//! built in); `commands.xid` is the writing transaction's id, for followers (see `follow`).

use super::StoreError;
use super::sql::Conn;

const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE flow_versions (
        hash TEXT PRIMARY KEY,
        bundle_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        source TEXT NOT NULL,
        origin TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (bundle_id, version)
    );
    CREATE TABLE bundles (
        bundle_id TEXT PRIMARY KEY,
        current_hash TEXT NOT NULL REFERENCES flow_versions(hash),
        updated_at TEXT NOT NULL
    );
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        bundle_id TEXT NOT NULL,
        flow_hash TEXT NOT NULL,
        status TEXT NOT NULL,
        paused_from TEXT,
        session_id TEXT,
        parent_run_id TEXT,
        input_data TEXT NOT NULL,
        state TEXT NOT NULL,
        waiting TEXT,
        wait_key TEXT,
        output TEXT,
        error TEXT,
        notify TEXT NOT NULL DEFAULT '[]',
        wake_at TEXT,
        event_key TEXT,
        last_seq INTEGER NOT NULL,
        last_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX runs_by_status ON runs (status);
    CREATE INDEX runs_by_wake ON runs (wake_at) WHERE wake_at IS NOT NULL;
    CREATE INDEX runs_by_event ON runs (event_key) WHERE event_key IS NOT NULL;
    CREATE INDEX runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
    CREATE TABLE ledger (
        gseq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        record TEXT NOT NULL,
        UNIQUE (run_id, seq)
    );
    CREATE TABLE commands (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        command_id TEXT NOT NULL UNIQUE,
        run_id TEXT NOT NULL,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        payload_hash TEXT NOT NULL,
        client_id TEXT,
        actor TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        result TEXT,
        created_at TEXT NOT NULL,
        applied_at TEXT
    );
    CREATE INDEX commands_pending ON commands (run_id, seq) WHERE status = 'pending';
    CREATE TABLE session_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX session_messages_by_session ON session_messages (session_id, id);
    "#,
    // 2: tokens (stored hashed), pairing codes, gateway-wide settings.
    r#"
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at TEXT
    );
    CREATE TABLE pairing_codes (
        hash TEXT PRIMARY KEY,
        expires_at TEXT NOT NULL,
        used_at TEXT,
        device_id TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // 3: leases (one runner at a time).
    r#"
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    "#,
    // 4: schedules (a schedule is a parent run of kind `schedule`; each firing a child run).
    r#"
    ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'flow';
    CREATE TABLE schedules (
        run_id TEXT PRIMARY KEY REFERENCES runs(run_id),
        bundle_id TEXT NOT NULL,
        input_data TEXT NOT NULL,
        spec TEXT NOT NULL,
        share_context INTEGER NOT NULL,
        fired INTEGER NOT NULL DEFAULT 0,
        next_fire_at TEXT,
        last_child TEXT,
        last_fired_at TEXT,
        created_at TEXT NOT NULL
    );
    "#,
    // 5: inbound trigger deliveries (refused when repeated) and outbound webhooks with their
    // durable outbox.
    r#"
    CREATE TABLE trigger_deliveries (
        trigger_name TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (trigger_name, delivery_id)
    );
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        events TEXT NOT NULL,
        flows TEXT NOT NULL,
        from_gseq INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        deleted_at TEXT
    );
    CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY,
        webhook_id TEXT NOT NULL REFERENCES webhooks(id),
        event TEXT NOT NULL,
        run_id TEXT NOT NULL,
        gseq INTEGER NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_status INTEGER,
        last_error TEXT,
        next_attempt_ms INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        delivered_at TEXT,
        UNIQUE (webhook_id, gseq)
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_ms);
    CREATE INDEX runs_by_session ON runs (session_id, bundle_id, status);
    "#,
    // 6: the runner lease's fencing number (writes of a node that lost the lease are refused).
    r#"
    ALTER TABLE leases ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
    "#,
    // 7: people (one name over channel identities) and groups of approvers.
    PEOPLE,
    // 8: Web Push subscriptions: a webhook of kind `push` (its keys in `secret`), owned by
    // the credential that subscribed; one live subscription per endpoint.
    PUSH,
    // 9: retention: ended runs by age, and a run's rows in each table that names it.
    RETENTION,
    // 10: a run's trace (`crate::trace`: trace id and parent span).
    TRACE,
    // 11: waiting runs by timer, and those waiting on a child.
    WAITS,
];

/// Migration 7 (SQLite) and 4 (PostgreSQL): the same statements on both.
const PEOPLE: &str = r#"
    CREATE TABLE people (
        identity TEXT PRIMARY KEY,
        person TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX people_by_person ON people (person);
    CREATE TABLE group_members (
        group_name TEXT NOT NULL,
        member TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (group_name, member)
    );
"#;

const PUSH: &str = r#"
    ALTER TABLE webhooks ADD COLUMN kind TEXT NOT NULL DEFAULT 'webhook';
    ALTER TABLE webhooks ADD COLUMN owner TEXT;
    CREATE UNIQUE INDEX push_endpoints ON webhooks (url) WHERE kind = 'push' AND deleted_at IS NULL;
"#;

/// Migration 9 (SQLite) and 6 (PostgreSQL): what `store::prune` looks runs up by.
const RETENTION: &str = r#"
    CREATE INDEX runs_ended ON runs (updated_at, run_id)
        WHERE status IN ('completed', 'failed', 'cancelled');
    CREATE INDEX commands_by_run ON commands (run_id);
    CREATE INDEX schedules_by_last_child ON schedules (last_child) WHERE last_child IS NOT NULL;
    CREATE INDEX trigger_deliveries_by_run ON trigger_deliveries (run_id);
    CREATE INDEX webhook_deliveries_by_run ON webhook_deliveries (run_id);
"#;

/// Migration 10 (SQLite) and 7 (PostgreSQL).
const TRACE: &str = "ALTER TABLE runs ADD COLUMN trace TEXT;";

/// Waiting runs without reading them all. The timer loop reads due and next timers of
/// waiting runs: with `runs_by_status` and `runs_by_wake` alone, SQLite's planner (without
/// statistics) took the status index and walked every waiting run, 0.3–10 s per pass over
/// a million of them. A start wakes the waiting schedules and runs waiting for a child
/// (`Store::runs_to_resume`, which repeats this predicate so the planner can use it).
const WAITS: &str = r#"
    CREATE INDEX runs_by_status_wake ON runs (status, wake_at) WHERE wake_at IS NOT NULL;
    CREATE INDEX runs_waiting_on_children ON runs (run_id)
        WHERE status = 'waiting' AND (kind = 'schedule' OR waiting LIKE '%"child_run_id"%');
"#;

const PG_MIGRATIONS: &[&str] = &[
    // 1: the schema of SQLite's migrations 1 to 5 (2 adds 6).
    r#"
    CREATE TABLE flow_versions (
        hash TEXT PRIMARY KEY,
        bundle_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        source TEXT NOT NULL,
        origin TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (bundle_id, version)
    );
    CREATE TABLE bundles (
        bundle_id TEXT PRIMARY KEY,
        current_hash TEXT NOT NULL REFERENCES flow_versions(hash),
        updated_at TEXT NOT NULL
    );
    CREATE TABLE runs (
        rowid BIGSERIAL UNIQUE,
        run_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL DEFAULT 'flow',
        bundle_id TEXT NOT NULL,
        flow_hash TEXT NOT NULL,
        status TEXT NOT NULL,
        paused_from TEXT,
        session_id TEXT,
        parent_run_id TEXT,
        input_data TEXT NOT NULL,
        state TEXT NOT NULL,
        waiting TEXT,
        wait_key TEXT,
        output TEXT,
        error TEXT,
        notify TEXT NOT NULL DEFAULT '[]',
        wake_at TEXT,
        event_key TEXT,
        last_seq BIGINT NOT NULL,
        last_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX runs_by_status ON runs (status, rowid);
    CREATE INDEX runs_by_wake ON runs (wake_at) WHERE wake_at IS NOT NULL;
    CREATE INDEX runs_by_event ON runs (event_key) WHERE event_key IS NOT NULL;
    CREATE INDEX runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
    CREATE INDEX runs_by_session ON runs (session_id, bundle_id, status);
    CREATE TABLE ledger (
        gseq BIGINT PRIMARY KEY,
        run_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        record TEXT NOT NULL,
        UNIQUE (run_id, seq)
    );
    CREATE TABLE commands (
        seq BIGSERIAL PRIMARY KEY,
        command_id TEXT NOT NULL UNIQUE,
        run_id TEXT NOT NULL,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        payload_hash TEXT NOT NULL,
        client_id TEXT,
        actor TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        result TEXT,
        created_at TEXT NOT NULL,
        applied_at TEXT
    );
    CREATE INDEX commands_pending ON commands (run_id, seq) WHERE status = 'pending';
    ALTER TABLE commands ADD COLUMN xid BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
    CREATE INDEX commands_by_xid ON commands (xid);
    CREATE TABLE session_messages (
        id BIGSERIAL PRIMARY KEY,
        session_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX session_messages_by_session ON session_messages (session_id, id);
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at TEXT
    );
    CREATE TABLE pairing_codes (
        hash TEXT PRIMARY KEY,
        expires_at TEXT NOT NULL,
        used_at TEXT,
        device_id TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE TABLE schedules (
        run_id TEXT PRIMARY KEY REFERENCES runs(run_id),
        bundle_id TEXT NOT NULL,
        input_data TEXT NOT NULL,
        spec TEXT NOT NULL,
        share_context BIGINT NOT NULL,
        fired BIGINT NOT NULL DEFAULT 0,
        next_fire_at TEXT,
        last_child TEXT,
        last_fired_at TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE trigger_deliveries (
        trigger_name TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (trigger_name, delivery_id)
    );
    CREATE TABLE webhooks (
        rowid BIGSERIAL UNIQUE,
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        events TEXT NOT NULL,
        flows TEXT NOT NULL,
        from_gseq BIGINT NOT NULL,
        created_at TEXT NOT NULL,
        deleted_at TEXT
    );
    CREATE TABLE webhook_deliveries (
        rowid BIGSERIAL UNIQUE,
        id TEXT PRIMARY KEY,
        webhook_id TEXT NOT NULL REFERENCES webhooks(id),
        event TEXT NOT NULL,
        run_id TEXT NOT NULL,
        gseq BIGINT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        last_status BIGINT,
        last_error TEXT,
        next_attempt_ms BIGINT NOT NULL,
        created_at TEXT NOT NULL,
        delivered_at TEXT,
        UNIQUE (webhook_id, gseq)
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_ms);
    "#,
    // 2: the runner lease's fencing number.
    r#"
    ALTER TABLE leases ADD COLUMN fence BIGINT NOT NULL DEFAULT 0;
    "#,
    // 3: per-run claims: the node (`host:pid:nonce`) that drives a run.
    r#"
    ALTER TABLE runs ADD COLUMN owner TEXT;
    CREATE INDEX runs_by_owner ON runs (owner) WHERE owner IS NOT NULL;
    "#,
    // 4: people and groups (SQLite's 7).
    PEOPLE,
    // 5: Web Push subscriptions (SQLite's 8).
    PUSH,
    // 6: retention (SQLite's 9).
    RETENTION,
    // 7: traces (SQLite's 10).
    TRACE,
    // 8: waiting runs by timer, and those waiting on a child (SQLite's 11).
    WAITS,
];

/// Brings the schema up to date; refuses a store written by a newer Switchboard.
pub(crate) fn migrate(conn: &mut Conn) -> Result<(), StoreError> {
    match conn {
        Conn::Lite(c) => migrate_sqlite(c),
        Conn::Pg(c) => super::pg::migrate(c, PG_MIGRATIONS),
    }
}

pub(super) fn too_new(have: usize, known: usize) -> StoreError {
    StoreError::Corrupt(format!(
        "the store has schema version {have}, newer than this build knows ({known}); use a newer switchboard"
    ))
}

fn migrate_sqlite(conn: &mut rusqlite::Connection) -> Result<(), StoreError> {
    let have: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if have > MIGRATIONS.len() {
        return Err(too_new(have, MIGRATIONS.len()));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(have) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        super::migrate_sqlite(&mut c).unwrap();
        super::migrate_sqlite(&mut c).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, super::MIGRATIONS.len());
    }
}
