//! The controller from records to menu and from clicks to commands, without a display.

use protocol::{Actor, Effect, LedgerRecord, RecordStatus};
use serde_json::{Value, json};

use super::*;

const NOW: i64 = 1_800_000_000;

fn record(run: &str, status: RecordStatus, kind: &str, payload: Value) -> LedgerRecord {
    LedgerRecord {
        seq: 1,
        run_id: run.into(),
        step_id: payload["wait_key"].as_str().unwrap_or("s").into(),
        node_id: "n".into(),
        status,
        effect: (!kind.is_empty()).then(|| Effect {
            kind: kind.into(),
            payload,
        }),
        result: None,
        error: None,
        started_at: chrono::DateTime::from_timestamp(NOW, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
        ended_at: None,
        attempt: 1,
        idempotency_key: None,
        actor: Actor::runner(),
        prev_hash: String::new(),
        record_hash: String::new(),
    }
}

fn started(run: &str, flow: &str) -> LedgerRecord {
    record(
        run,
        RecordStatus::Started,
        "run_started",
        json!({"bundle_id": flow}),
    )
}

fn ask(run: &str) -> LedgerRecord {
    record(
        run,
        RecordStatus::Waiting,
        "ask",
        json!({"wait_key": "decide.1", "prompt": "Approve or reject: deploy", "choices": ["approve", "reject"]}),
    )
}

fn answer(run: &str, wait_key: &str) -> LedgerRecord {
    let mut r = record(run, RecordStatus::Completed, "", json!({}));
    r.step_id = wait_key.into();
    r.result = Some(json!({"response": "approve"}));
    r
}

fn controller() -> Controller {
    let mut c = Controller::new("http://gw:8080/", "tray:test");
    c.set_connected(true);
    c
}

fn labels(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .flat_map(|i| {
            let mut v = vec![i.label.clone()];
            v.extend(labels(&i.children));
            v
        })
        .collect()
}

#[test]
fn a_prompt_shows_in_the_menu_and_changes_the_icon() {
    let mut c = controller();
    assert_eq!(c.menu().icon, Icon::Idle);
    c.apply(&started("r1", "approval"), NOW);
    c.apply(&started("r2", "echo"), NOW);
    let notice = c.apply(&ask("r1"), NOW + 5);
    assert_eq!(
        notice,
        Some(Notice {
            title: "approval is waiting for you".into(),
            body: "Approve or reject: deploy".into()
        })
    );
    let m = c.menu();
    assert_eq!(m.icon, Icon::Attention);
    assert_eq!(m.items[0].label, "1 running · 1 waiting");
    let entry = m.find("approval: Approve or reject: deploy");
    let entry = entry.unwrap_or_else(|| panic!("{:?}", labels(&m.items)));
    let choices: Vec<&str> = entry.children.iter().map(|i| i.label.as_str()).collect();
    assert_eq!(choices, vec!["approve", "reject", "", "Open…"]);
}

#[test]
fn answering_from_the_menu_sends_a_resume_for_that_wait() {
    let mut c = controller();
    c.apply(&started("r1", "approval"), NOW);
    c.apply(&ask("r1"), NOW);
    let m = c.menu();
    let id = m.find("reject").map(|i| i.id.clone()).unwrap_or_default();
    let Some(Action::Commands(cmds)) = c.click(&id, "tray:c1") else {
        panic!("no command for {id}");
    };
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].kind, "resume");
    assert_eq!(cmds[0].command_id, "tray:c1");
    assert_eq!(cmds[0].channel.as_deref(), Some("tray"));
    assert_eq!(
        cmds[0].payload,
        json!({"wait_key": "decide.1", "payload": {"response": "reject"}})
    );
    // Answered (here or elsewhere): the prompt leaves the menu, and an old click is void.
    c.apply(&answer("r1", "decide.1"), NOW);
    assert!(c.menu().find("reject").is_none());
    assert!(c.click(&id, "tray:c2").is_none());
    assert_eq!(c.menu().icon, Icon::Idle);
}

#[test]
fn an_answer_to_another_wait_leaves_the_prompt() {
    let mut c = controller();
    c.apply(&ask("r1"), NOW);
    c.apply(&answer("r1", "older.0"), NOW);
    assert!(c.run("r1").and_then(|r| r.prompt.as_ref()).is_some());
}

#[test]
fn pause_resume_cancel_and_the_all_actions() {
    let mut c = controller();
    c.apply(&started("r1", "echo"), NOW);
    c.apply(&started("r2", "chat"), NOW);
    let Some(Action::Commands(cmds)) = c.click("pause|r1", "k") else {
        panic!("pause");
    };
    assert_eq!(
        (cmds[0].kind.as_str(), cmds[0].run_id.as_str()),
        ("pause", "r1")
    );
    c.apply(
        &record("r1", RecordStatus::Completed, "pause", json!({})),
        NOW,
    );
    assert_eq!(c.run("r1").map(|r| r.status.as_str()), Some("paused"));
    assert_eq!(c.menu().items[0].label, "1 running · 0 waiting · 1 paused");
    let Some(Action::Commands(all)) = c.click("pause_all", "k") else {
        panic!("pause all");
    };
    assert_eq!(all.len(), 1, "only the running one");
    assert_eq!(all[0].run_id, "r2");
    let Some(Action::Commands(all)) = c.click("resume_all", "k") else {
        panic!("resume all");
    };
    assert_eq!(
        (all[0].kind.as_str(), all[0].run_id.as_str()),
        ("resume", "r1")
    );
    c.apply(
        &record("r1", RecordStatus::Completed, "resume", json!({})),
        NOW,
    );
    assert!(c.click("resume_all", "k").is_none(), "nothing paused");
    let Some(Action::Commands(cmds)) = c.click("cancel|r2", "k") else {
        panic!("cancel");
    };
    assert_eq!(cmds[0].kind, "cancel");
    c.apply(
        &record("r2", RecordStatus::Cancelled, "run_cancelled", json!({})),
        NOW,
    );
    assert!(c.run("r2").is_none());
    let runs = c.menu().find("Runs (1)").map(|i| i.children.len());
    assert_eq!(runs, Some(1));
}

#[test]
fn links_quit_offline_and_old_prompts() {
    let mut c = controller();
    assert!(matches!(c.click("open_app", "k"), Some(Action::Open(u)) if u == "http://gw:8080/app"));
    assert!(
        matches!(c.click("open|r9", "k"), Some(Action::Open(u)) if u == "http://gw:8080/app/runs/r9")
    );
    assert!(matches!(c.click("quit", "k"), Some(Action::Quit)));
    // "Open at login" shows its state and asks for the other one.
    let login = |c: &Controller| {
        let m = c.menu();
        m.items
            .iter()
            .find(|i| i.id == "autostart")
            .map(|i| i.label.clone())
    };
    assert_eq!(login(&c).as_deref(), Some("Open at login"));
    assert!(matches!(
        c.click("autostart", "k"),
        Some(Action::Autostart(true))
    ));
    c.set_autostart(true);
    assert_eq!(login(&c).as_deref(), Some("✓ Open at login"));
    assert!(matches!(
        c.click("autostart", "k"),
        Some(Action::Autostart(false))
    ));
    assert!(c.click("bogus", "k").is_none());
    // A prompt replayed long after it was asked is shown but not notified.
    assert!(c.apply(&ask("r1"), NOW + 3600).is_none());
    assert_eq!(c.run("r1").map(|r| r.flow.as_str()), Some("run"));
    c.set_connected(false);
    let m = c.menu();
    assert_eq!(m.icon, Icon::Offline);
    assert_eq!(m.items[0].label, "Gateway unreachable (retrying)");
}

#[test]
fn a_prompt_with_approvers_shows_only_for_one_of_them() {
    let mut c = Controller::new("http://gw", "tray:me");
    c.apply(&started("r1", "release"), NOW);
    let mut team = ask("r1");
    if let Some(e) = team.effect.as_mut() {
        e.payload["approvers"] = json!(["person:alice"]);
    }
    assert!(
        c.apply(&team, NOW).is_none(),
        "no notice before the gateway says it is mine"
    );
    let waiting = |c: &Controller| {
        c.menu()
            .items
            .iter()
            .any(|i| i.label.contains("Approve or reject"))
    };
    assert!(!waiting(&c), "not someone else's prompt");
    c.set_mine(["r1".to_owned()].into_iter().collect());
    assert!(
        waiting(&c),
        "shown once the gateway says this device may answer"
    );
}
