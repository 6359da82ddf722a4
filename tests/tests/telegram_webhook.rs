//! The Telegram bridge in webhook mode, end to end: the real `switchboard serve` registers a
//! webhook with the loopback Bot-API fake, which then pushes updates to it the way Telegram
//! does (in order, delivered again until a 2xx). Assertions read the fake's recorded calls
//! and deliveries and the gateway's runs and ledgers.

use e2e::process::Gateway;
use e2e::telegram_fake::{TelegramFake, button};
use serde_json::{Value, json};

const ALICE: u64 = 1001;
const CHAT: i64 = ALICE as i64;
const SECRET: &str = "webhook-secret_0123456789";

/// A free loopback port for the bridge's listener.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn setup() -> (Gateway, TelegramFake, String) {
    let fake = TelegramFake::start().await;
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/telegram/hook");
    let env = vec![
        ("SWITCHBOARD_TELEGRAM_BOT_TOKEN", "777000:TEST-TOKEN".into()),
        ("SWITCHBOARD_TELEGRAM_API_URL", fake.url.clone()),
        ("SWITCHBOARD_TELEGRAM_ALLOWED_USERS", ALICE.to_string()),
        ("SWITCHBOARD_TELEGRAM_WEBHOOK_URL", hook.clone()),
        (
            "SWITCHBOARD_TELEGRAM_WEBHOOK_LISTEN",
            format!("127.0.0.1:{port}"),
        ),
        ("SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET", SECRET.into()),
    ];
    let gw = Gateway::start(&env).await;
    fake.wait_until(20, "setWebhook", |f| f.webhook().is_some())
        .await;
    (gw, fake, hook)
}

#[tokio::test]
async fn webhook_mode_registers_and_answers_a_prompt_by_button_once() {
    let (gw, fake, hook) = setup().await;
    let set = fake.calls("setWebhook");
    assert_eq!(set.len(), 1, "{set:?}");
    assert_eq!(set[0]["url"], hook.as_str());
    assert_eq!(set[0]["secret_token"], SECRET);
    assert_eq!(set[0]["max_connections"], 1);
    assert!(fake.calls("deleteWebhook").is_empty());

    fake.message(ALICE, "Alice", "/run approval ship v2");
    let prompt = "Approve or reject: ship v2";
    fake.wait_until(20, "the prompt", |f| f.find(CHAT, prompt).is_some())
        .await;
    let (msg, _, kb) = fake.find(CHAT, prompt).unwrap_or_default();
    let tap = fake.tap(ALICE, "Alice", CHAT, msg, &button(&kb, "approve"));
    fake.wait_until(20, "the answer edited in", |f| {
        f.find(CHAT, prompt)
            .is_some_and(|m| m.1.contains("✅ approve (answered by @alice)"))
    })
    .await;
    let runs = gw.runs_of("approval").await;
    assert_eq!(runs.len(), 1);
    let run_id = runs[0]["run_id"].as_str().unwrap_or_default().to_owned();
    let run = gw.wait_status(&run_id, "completed", 10).await;
    assert_eq!(run["output"]["decision"], "approve", "{run}");

    // Telegram delivers the tap again: it is acknowledged and has no second effect.
    fake.duplicate(tap);
    fake.wait_until(20, "the repeated delivery", |f| {
        f.pushes().iter().filter(|p| p.0 == tap).count() >= 2 && f.pending() == 0
    })
    .await;
    let statuses: Vec<u16> = fake
        .pushes()
        .iter()
        .filter(|p| p.0 == tap)
        .map(|p| p.1)
        .collect();
    assert_eq!(statuses, vec![200, 200]);
    assert_eq!(gw.answers(&run_id).await.len(), 1);
    assert_eq!(fake.calls("answerCallbackQuery").len(), 1);
    assert!(
        fake.calls("getUpdates").is_empty(),
        "no polling in webhook mode"
    );
}

#[tokio::test]
async fn webhook_refuses_strangers_and_is_answered_only_after_the_gateway_accepted() {
    let (gw, fake, hook) = setup().await;
    let http = reqwest::Client::new();
    let update = json!({"update_id": 999_999, "message": {
        "message_id": 1, "date": 0, "text": "/run echo hi",
        "chat": {"id": CHAT, "type": "private", "first_name": "Alice"},
        "from": {"id": ALICE, "is_bot": false, "first_name": "Alice"}}});
    // Without the secret token, or with a wrong one: 401, and nothing happens.
    for secret in [None, Some("wrong")] {
        let mut req = http.post(&hook).json(&update);
        if let Some(s) = secret {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        let r = req.send().await.expect("POST the webhook");
        assert_eq!(r.status().as_u16(), 401);
        let body: Value = r.json().await.unwrap_or_default();
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }
    // Not an update: 400 naming the problem.
    let r = http
        .post(&hook)
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .body("{\"nope\": 1}")
        .send()
        .await
        .expect("POST the webhook");
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap_or_default();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a Telegram Update")),
        "{body}"
    );
    assert!(gw.runs_of("echo").await.is_empty());

    // While the gateway refuses new runs (paused: 503), the update is answered 503 and
    // delivered again; once it accepts, the run starts exactly once.
    let (s, _) = gw.post("/api/gateway/pause", &json!({})).await;
    assert_eq!(s, 200);
    let id = fake.message(ALICE, "Alice", "/run echo hello");
    fake.wait_until(20, "refused deliveries", |f| {
        f.pushes()
            .iter()
            .filter(|p| p.0 == id && p.1 == 503)
            .count()
            >= 2
    })
    .await;
    assert!(gw.runs_of("echo").await.is_empty());
    let (s, _) = gw.post("/api/gateway/resume", &json!({})).await;
    assert_eq!(s, 200);
    fake.wait_until(20, "the accepted delivery", |f| {
        f.pushes().contains(&(id, 200)) && f.pending() == 0
    })
    .await;
    assert_eq!(gw.runs_of("echo").await.len(), 1);
}
