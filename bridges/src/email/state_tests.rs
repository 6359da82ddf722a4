use super::*;

fn open() -> (tempfile::TempDir, State) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state = State::open(&dir.path().join("email.sqlite")).unwrap_or_else(|e| panic!("{e}"));
    (dir, state)
}

fn bind() -> Change {
    Change::Bind(EmailRun::new(
        "r1",
        "alice@example.test",
        "approval",
        "asks_only",
    ))
}

fn prompt() -> Change {
    let p = Prompt {
        id: 0,
        run_id: "r1".into(),
        wait_key: "decide".into(),
        address: "alice@example.test".into(),
        question: "Approve?".into(),
        choices: vec!["approve".into(), "reject".into()],
        allow_free_text: false,
        message_id: None,
        answered: false,
    };
    Change::Prompt(
        p,
        Box::new(|id| OutMail {
            key: format!("prompt:{id}"),
            to: "alice@example.test".into(),
            subject: "Approve?".into(),
            body: "1. approve".into(),
            message_id: format!("sb.{id}.x@example.test"),
            ..Default::default()
        }),
    )
}

#[tokio::test]
async fn a_prompt_replayed_after_a_crash_is_mailed_once() -> Result<()> {
    let (_dir, s) = open();
    s.commit_record(5, vec![bind(), prompt()]).await?;
    // The same record again (the cursor was not stored before a crash, say).
    s.commit_record(5, vec![bind(), prompt()]).await?;
    assert_eq!(s.meta_u64("ledger_cursor").await?, 5);
    let due = s.due(i64::MAX, 10).await?;
    assert_eq!(due.len(), 1);
    let p = s
        .prompt(1)
        .await?
        .ok_or(EmailError::State("no prompt".into()))?;
    assert_eq!(p.message_id.as_deref(), Some("sb.1.x@example.test"));
    assert_eq!(p.choices, vec!["approve", "reject"]);
    let runs = s.runs("r1".into()).await?;
    assert_eq!(runs.len(), 1, "bound once");
    assert_eq!(
        runs[0].last_message_id.as_deref(),
        Some("sb.1.x@example.test")
    );
    Ok(())
}

#[tokio::test]
async fn sent_and_failed_mail_leave_the_queue() -> Result<()> {
    let (_dir, s) = open();
    s.commit_record(1, vec![bind(), prompt()]).await?;
    let mail = |k: &str| OutMail {
        key: k.into(),
        to: "a@x".into(),
        message_id: format!("{k}@x"),
        ..Default::default()
    };
    s.set_handled("m1@x".into(), "applied".into(), Some(mail("stale")))
        .await?;
    s.set_handled("m1@x".into(), "applied".into(), Some(mail("stale")))
        .await?;
    assert_eq!(s.handled("m1@x".into()).await?.as_deref(), Some("applied"));
    let due = s.due(0, 10).await?;
    assert_eq!(due.len(), 2, "the prompt and one answer mail");
    s.mark_sent(due[0].id).await?;
    s.mark_failed(due[1].id, "421 try later".into(), Some(1_000))
        .await?;
    assert!(s.due(999, 10).await?.is_empty());
    let again = s.due(1_000, 10).await?;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    s.mark_failed(again[0].id, "550 no such user".into(), None)
        .await?;
    assert!(s.due(i64::MAX, 10).await?.is_empty());
    assert_eq!(s.next_due().await?, None);
    Ok(())
}
