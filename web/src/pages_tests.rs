//! The templates render `protocol` types into accessible, script-free HTML.

use askama::Template;
use protocol::{RunStatus, RunSummary, Waiting};

use super::*;
use crate::actions::{back_to, command_id, urlencode};
use crate::run_pages::RunPage;
use crate::view::Entry;

fn run(status: RunStatus) -> RunSummary {
    RunSummary {
        run_id: "0123456789abcdef".into(),
        bundle_id: "approval".into(),
        flow_id: "main".into(),
        flow_hash: "h".into(),
        status,
        waiting: None,
        output: None,
        error: None,
        session_id: None,
        parent_run_id: None,
        notify: Vec::new(),
        ledger_len: 3,
        created_at: "2026-11-27T10:00:00Z".into(),
        updated_at: "2026-11-27T10:05:00Z".into(),
    }
}

fn waiting(free: bool) -> Waiting {
    Waiting {
        reason: protocol::WaitReason::User,
        wait_key: "decide.1".into(),
        prompt: Some("Approve <deploy>?".into()),
        choices: if free {
            Vec::new()
        } else {
            vec!["approve".into(), "reject".into()]
        },
        allow_free_text: free,
        until: None,
        event: None,
        child_run_id: None,
        approval: false,
        approvers: Vec::new(),
        quorum: 0,
        votes: Vec::new(),
    }
}

fn layout(page: &'static str) -> Layout {
    let mut l = Layout::new("T", page, None, None);
    l.csrf = "c5rf".into();
    l.signed_in = true;
    l
}

#[test]
fn the_inbox_shows_each_question_with_one_tap_choices() {
    let page = InboxPage {
        all: false,
        layout: layout("inbox"),
        cards: vec![Card {
            mine: true,
            run: run(RunStatus::Waiting),
            waiting: waiting(false),
            question: "Approve <deploy>?".into(),
            since: "10:05".into(),
            nonce: "n1".into(),
        }],
    };
    let html = page.render().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        html.contains("Approve &#60;deploy&#62;?") || html.contains("Approve &lt;deploy&gt;?"),
        "escaped: {html}"
    );
    assert!(html.contains(
        r#"<button type="submit" name="response" value="approve" class="choice">approve</button>"#
    ));
    assert!(html.contains(r#"name="csrf" value="c5rf""#));
    assert!(html.contains(r#"name="wait_key" value="decide.1""#));
    assert!(html.contains(r#"action="/app/runs/0123456789abcdef/answer""#));
    assert!(!html.contains("<script>"), "no inline script");
    assert!(html.contains(r#"<html lang="en">"#));
    assert!(html.contains(r#"name="viewport""#));
    assert!(html.contains(r#"aria-current="page""#));
}

#[test]
fn a_free_text_question_has_a_labelled_box() {
    let mut r = run(RunStatus::Waiting);
    r.waiting = Some(waiting(true));
    let page = RunPage {
        mine: true,
        layout: layout("run"),
        prompt: r.waiting.clone(),
        run: r,
        entries: vec![Entry {
            kind: "say",
            text: "Hi".into(),
            who: None,
            at: "10:00:00".into(),
            detail: None,
        }],
        controls: vec!["pause", "cancel"],
        nonce: "n".into(),
        back: "/app/runs/0123456789abcdef".into(),
        chosen: String::new(),
    };
    let html = page.render().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        html.contains(r#"<label for="text-0123456789abcdef">Your answer</label>"#),
        "{html}"
    );
    assert!(html.contains(r#"id="text-0123456789abcdef" name="response_text""#));
    assert!(html.contains(r#"id="status" class="badge waiting">waiting<"#));
    assert!(html.contains(">Pause</button>") && html.contains(">Cancel</button>"));
    assert!(html.contains(r#"<li class="entry say">"#));
}

#[test]
fn a_notifications_choice_is_focused_for_the_person_to_confirm() {
    let mut r = run(RunStatus::Waiting);
    r.waiting = Some(waiting(false));
    let page = RunPage {
        mine: true,
        layout: layout("run"),
        prompt: r.waiting.clone(),
        run: r,
        entries: Vec::new(),
        controls: vec!["pause", "cancel"],
        nonce: "n".into(),
        back: "/app/runs/0123456789abcdef".into(),
        chosen: "reject".into(),
    };
    let html = page.render().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        html.contains(r#"value="reject" class="choice chosen" autofocus>reject<"#),
        "{html}"
    );
    assert!(
        html.contains(r#"value="approve" class="choice">approve<"#),
        "{html}"
    );
}

#[test]
fn the_login_page_has_no_navigation_and_labelled_fields() {
    let html = LoginPage {
        layout: Layout::new("Sign in", "login", None, Some("Pairing failed".into())),
        code: "K7QM-\"><b>".into(),
    }
    .render()
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(html.contains(r#"<label for="code">Pairing code</label>"#));
    assert!(html.contains(r#"role="alert">Pairing failed"#));
    assert!(!html.contains("Sign out"));
    // A prefilled code is escaped like any text.
    assert!(
        html.contains(r#"value="K7QM-&#34;&#62;&#60;b&#62;""#),
        "{html}"
    );
}

#[test]
fn post_targets_stay_in_the_app_and_command_ids_come_from_the_form() {
    assert_eq!(back_to("/app/runs/x"), "/app/runs/x");
    assert_eq!(back_to("https://evil.test/"), "/app/inbox");
    assert_eq!(back_to("/app//evil.test"), "/app/inbox");
    assert_eq!(command_id("abc-123"), "web:abc-123");
    assert!(command_id("<bad>").starts_with("web:") && !command_id("<bad>").contains('<'));
    assert_eq!(urlencode("a b&c"), "a%20b%26c");
}

#[test]
fn schedules_read_their_rule() {
    let info = |v: serde_json::Value| -> protocol::ScheduleInfo {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    };
    let row = schedule_row(&info(
        serde_json::json!({"run_id": "r", "bundle_id": "echo",
        "status": "waiting", "fired": 0, "share_context": true,
        "spec": {"cron": "0 9 * * *", "timezone": "Europe/Paris", "mode": "fixed_rate", "start_at": "2026-11-28T08:00:00Z"},
        "next_fire_at": "2026-11-28T08:00:00Z"}),
    ));
    assert_eq!(row.rule, "cron 0 9 * * * (Europe/Paris)");
    assert_eq!(row.controls, vec!["pause", "cancel"]);
    let row = schedule_row(&info(
        serde_json::json!({"run_id": "r", "bundle_id": "echo",
        "status": "paused", "fired": 1, "share_context": true,
        "spec": {"interval_ms": 3_600_000, "repeat_count": 3, "mode": "fixed_delay", "start_at": "2026-11-28T08:00:00Z"}}),
    ));
    assert_eq!(
        (row.rule.as_str(), row.controls),
        ("every 1h, 3 times", vec!["resume", "cancel"])
    );
    assert_eq!(duration(90_000), "90s");
    assert_eq!(duration(1_500), "1500ms");
}
