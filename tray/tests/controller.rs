//! The tray's controller against a real `switchboard serve`: the sync loop feeds it the
//! snapshot and the global ledger stream, and clicks on its menu model become real
//! commands. No display: the model is read as data.

use std::time::Duration;

use e2e::process::{Gateway, TOKEN};
use serde_json::json;
use tokio::sync::mpsc;
use tray::controller::{Action, Controller, Icon};
use tray::sync::{self, Cursor, Update};

struct Tray {
    gw: Gateway,
    client: protocol::Client,
    ctl: Controller,
    updates: mpsc::UnboundedReceiver<Update>,
}

impl Tray {
    async fn start() -> Self {
        let gw = Gateway::start(&[]).await;
        Self::attach(gw)
    }

    fn attach(gw: Gateway) -> Self {
        let client = protocol::Client::new(&gw.url, Some(TOKEN.into())).expect("client");
        let (tx, updates) = mpsc::unbounded_channel();
        tokio::spawn(sync::follow(client.clone(), Cursor::load(None), move |u| {
            tx.send(u).is_ok()
        }));
        let ctl = Controller::new(&gw.url, "tray:test");
        Self {
            gw,
            client,
            ctl,
            updates,
        }
    }

    /// Applies updates until `check` holds (20 s at most).
    async fn until(&mut self, what: &str, check: impl Fn(&Controller) -> bool) {
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        while !check(&self.ctl) {
            let u = tokio::time::timeout_at(end, self.updates.recv()).await;
            match u {
                Ok(Some(Update::Snapshot(runs))) => self.ctl.load(&runs),
                Ok(Some(Update::Record(r))) => {
                    self.ctl.apply(&r, chrono::Utc::now().timestamp());
                }
                Ok(Some(Update::Disconnected(_))) => self.ctl.set_connected(false),
                Ok(Some(Update::Mine(mine))) => self.ctl.set_mine(mine),
                Ok(None) | Err(_) => panic!("timed out waiting for {what}: {:?}", self.ctl.menu()),
            }
        }
    }

    async fn start_run(&self, flow: &str, text: &str) -> String {
        let body = json!({"bundle_id": flow, "input_data": {"text": text}});
        let (s, r) = self.gw.post("/api/gateway/runs/start", &body).await;
        assert_eq!(s, 200, "{r}");
        r["run_id"].as_str().unwrap_or_default().to_owned()
    }

    /// Clicks the menu item `id` and submits what it asks for.
    async fn click(&self, id: &str) {
        let cmd_id = format!("tray:{}", uuid_like(id));
        match self.ctl.click(id, &cmd_id) {
            Some(Action::Commands(cmds)) => sync::submit(&self.client, &cmds)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            other => panic!("{id} gave {other:?}"),
        }
    }

    async fn status(&self, run: &str) -> String {
        let r = self.gw.get(&format!("/api/gateway/runs/{run}")).await.1;
        r["status"].as_str().unwrap_or_default().to_owned()
    }

    async fn wait_status(&self, run: &str, want: &str) {
        self.gw.wait_status(run, want, 10).await;
    }
}

fn uuid_like(id: &str) -> String {
    format!("{id}-{}", std::process::id())
}

fn prompt_label(text: &str) -> String {
    format!("approval: Approve or reject: {text}")
}

#[tokio::test]
async fn a_waiting_prompt_appears_and_answering_it_from_the_menu_completes_the_run() {
    let mut t = Tray::start().await;
    let run = t.start_run("approval", "deploy v2").await;
    t.until("the prompt", |c| {
        c.menu().find(&prompt_label("deploy v2")).is_some()
    })
    .await;
    let menu = t.ctl.menu();
    assert_eq!(menu.icon, Icon::Attention);
    assert_eq!(menu.items[0].label, "0 running · 1 waiting");
    let entry = menu.find(&prompt_label("deploy v2")).cloned();
    let approve = entry
        .and_then(|e| e.children.into_iter().find(|i| i.label == "approve"))
        .map(|i| i.id)
        .unwrap_or_default();
    t.click(&approve).await;
    t.wait_status(&run, "completed").await;
    t.until("the run gone", |c| c.run(&run).is_none()).await;
    let menu = t.ctl.menu();
    assert_eq!(menu.icon, Icon::Idle);
    assert_eq!(menu.items[0].label, "0 running · 0 waiting");
    let answers = t.gw.answers(&run).await;
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["result"]["response"], "approve");
    assert_eq!(answers[0]["actor"]["channel"], "tray");
}

#[tokio::test]
async fn pause_resume_and_cancel_from_the_menu_change_the_runs_status() {
    let mut t = Tray::start().await;
    let run = t.start_run("approval", "pause me").await;
    t.until("the run", |c| {
        c.run(&run).is_some_and(|r| r.prompt.is_some())
    })
    .await;
    t.click(&format!("pause|{run}")).await;
    t.wait_status(&run, "paused").await;
    t.until("paused", |c| {
        c.run(&run)
            .is_some_and(|r| r.status == protocol::RunStatus::Paused)
    })
    .await;
    assert!(t.ctl.menu().items[0].label.contains("1 waiting"));
    t.click("resume_all").await;
    t.until("resumed", |c| {
        c.run(&run)
            .is_some_and(|r| r.status != protocol::RunStatus::Paused)
    })
    .await;
    assert_ne!(t.status(&run).await, "paused");
    t.click(&format!("cancel|{run}")).await;
    t.wait_status(&run, "cancelled").await;
    t.until("the run gone", |c| c.run(&run).is_none()).await;
}

#[tokio::test]
async fn a_prompt_answered_elsewhere_disappears() {
    let mut t = Tray::start().await;
    let run = t.start_run("approval", "elsewhere").await;
    t.until("the prompt", |c| {
        c.run(&run).is_some_and(|r| r.prompt.is_some())
    })
    .await;
    let wait_key = t
        .ctl
        .run(&run)
        .and_then(|r| r.prompt.clone())
        .map(|p| p.wait_key);
    let cmd = json!({"command_id": "web-1", "run_id": run, "type": "resume", "channel": "web",
        "payload": {"wait_key": wait_key, "payload": {"response": "reject"}}});
    let (s, body) = t.gw.post("/api/gateway/commands", &cmd).await;
    assert_eq!(s, 200, "{body}");
    t.until("the prompt gone", |c| {
        c.run(&run).is_none_or(|r| r.prompt.is_none())
    })
    .await;
    assert!(t.ctl.menu().find(&prompt_label("elsewhere")).is_none());
    // A click on the stale entry does nothing.
    let stale = format!("answer|0|{run}|{}", wait_key.unwrap_or_default());
    assert!(t.ctl.click(&stale, "x").is_none());
}

#[tokio::test]
async fn runs_started_before_the_tray_are_in_its_first_menu() {
    let gw = Gateway::start(&[]).await;
    let body = json!({"bundle_id": "approval", "input_data": {"text": "early"}});
    let (s, r) = gw.post("/api/gateway/runs/start", &body).await;
    assert_eq!(s, 200, "{r}");
    let run = r["run_id"].as_str().unwrap_or_default().to_owned();
    gw.wait_status(&run, "waiting", 10).await;
    let mut t = Tray::attach(gw);
    t.until("the early prompt", |c| {
        c.run(&run).is_some_and(|r| r.prompt.is_some())
    })
    .await;
    assert_eq!(t.ctl.menu().items[0].label, "0 running · 1 waiting");
}

#[tokio::test]
async fn pairing_once_saves_a_device_token_that_works() {
    let gw = Gateway::start(&[]).await;
    let (s, code) = gw.post("/api/gateway/pair/codes", &json!({})).await;
    assert_eq!(s, 200, "{code}");
    let code = code["code"].as_str().unwrap_or_default().to_owned();
    let dir = tempfile::tempdir().expect("config dir");
    let conn = tray::connect::resolve(&gw.url, None, Some(code.clone()), Some(dir.path()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(conn.token, TOKEN);
    let saved = tray::connect::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(saved.as_ref(), Some(&conn));
    // Next start: no token, no code, the saved pairing.
    let again = tray::connect::resolve(&gw.url, None, None, Some(dir.path()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = protocol::Client::new(&again.gateway, Some(again.token)).expect("client");
    assert!(
        sync::snapshot(&client).await.is_ok(),
        "the device token reads runs"
    );
    // A code works once.
    let reused = tray::connect::resolve(&gw.url, None, Some(code), None).await;
    assert!(reused.is_err());
}

#[tokio::test]
async fn a_gateway_that_goes_away_shows_as_unreachable() {
    let mut t = Tray::start().await;
    t.until("connected", |c| c.is_connected()).await;
    assert_eq!(t.ctl.menu().icon, Icon::Idle);
    t.gw.kill().await;
    t.until("offline", |c| !c.is_connected()).await;
    let menu = t.ctl.menu();
    assert_eq!(menu.icon, Icon::Offline);
    assert_eq!(menu.items[0].label, "Gateway unreachable (retrying)");
}

#[tokio::test]
async fn only_prompts_this_device_may_answer_are_waiting_for_it() {
    let mut t = Tray::start().await;
    let flow = |approver: &str| {
        format!(
            "steps:\n  - id: gate\n    ask: \"Ship {{{{ input.text }}}}?\"\n    choices: [approve, reject]\n    approvers: [\"{approver}\"]\n"
        )
    };
    for (name, approver) in [("others", "key:somebody-else"), ("mine", "admin")] {
        let (st, b) = t.gw.upload(&format!("{name}.yaml"), &flow(approver)).await;
        assert_eq!(st, 200, "{b}");
    }
    t.start_run("others", "theirs").await;
    t.start_run("mine", "ours").await;
    t.until("this device's prompt", |c| {
        c.menu().find("mine: Ship ours?").is_some()
    })
    .await;
    assert!(
        t.ctl.menu().find("others: Ship theirs?").is_none(),
        "{:?}",
        t.ctl.menu()
    );
}
