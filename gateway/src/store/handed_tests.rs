//! A row handed to the runner by the transaction that woke the run (`Store::start_run`,
//! `Store::submit`) may be stale by the time its drive commits: the commit is refused,
//! with nothing written, when the run's ledger moved on since (on a real SQLite file).

use protocol::{Actor, Command, RunStatus};
use serde_json::json;

use super::{CommandKind, Commit, Location, NewCommand, NewRun, Store, StoreError};
use crate::bus::Bus;
use crate::engine::Transition;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn failing() -> Transition {
    let mut t = Transition::default();
    t.fail_run("from a stale row".into(), chrono::Utc::now());
    t
}

#[tokio::test]
async fn a_commit_from_a_handed_row_whose_run_moved_on_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&Location::Sqlite(dir.path().to_owned()), Bus::new(64))?;
    let run = NewRun {
        run_id: "r1".into(),
        bundle_id: "b".into(),
        flow_hash: "h".into(),
        session_id: None,
        parent_run_id: None,
        input_data: json!({}),
        notify: Vec::new(),
        actor: Actor::runner(),
        trace: None,
    };
    let (_, _, row) = store.start_run(run, true, None).await?;
    let row = row.ok_or("no handed row")?;
    assert!(row.handed);
    // A pause lands between the hand-over and the drive's commit: a ledger record.
    let pause = NewCommand {
        command_id: "p1".into(),
        run_id: "r1".into(),
        type_name: "pause".into(),
        payload: json!({}),
        payload_hash: "p1".into(),
        client_id: None,
        actor: Actor::runner(),
        kind: CommandKind::Client(Command::Pause),
        answer_check: None,
    };
    store.submit(pause, false).await?;
    let moved = store.drive_row("r1").await?.ok_or("no run")?;
    assert!(moved.last_seq > row.last_seq);

    let commit = |expect_seq| Commit {
        run_id: "r1".into(),
        transition: failing(),
        state: row.state.clone(),
        command: None,
        expect_seq,
    };
    let stale = store.commit(commit(Some(row.last_seq))).await;
    assert!(matches!(stale, Err(StoreError::Stale(_))), "{stale:?}");
    let after = store.drive_row("r1").await?.ok_or("no run")?;
    assert_eq!(
        (after.status, after.last_seq),
        (RunStatus::Paused, moved.last_seq),
        "nothing written"
    );
    // From a fresh read (no expectation) the same commit goes through.
    let (status, _) = store.commit(commit(None)).await?;
    assert_eq!(status, RunStatus::Failed);
    Ok(())
}
