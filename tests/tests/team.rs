//! Team approvals end to end: one prompt, quorum 2 of 3, answered on three channels by
//! three approvers: a Telegram user (the Bot API fake), a phone in headless Chromium
//! (`tests/web/team.mjs`) and an email reply (real Postfix and Dovecot). The second
//! agreeing vote completes the run; the third, by email, is too late. A stranger is
//! refused on each channel, and the same person voting twice is refused.

use std::path::Path;

use e2e::mail_server::MailServer;
use e2e::process::{Gateway, TOKEN};
use e2e::telegram_fake::{TelegramFake, button};
use e2e::wait::eventually;
use serde_json::{Value, json};

const ALICE: u64 = 1001;
const DAN: u64 = 1002;
const FLOW: &str = "steps:\n  - id: gate\n    ask: \"Ship {{ input.text }}?\"\n    choices: [approve, reject]\n    approvers: [\"telegram:1001\", \"person:carol\", \"email:bob@example.test\"]\n    quorum: 2\n  - output: \"{{ steps.gate }}\"\n";

fn header(raw: &str, name: &str) -> String {
    let msg = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .unwrap_or_default();
    msg.header_raw(name)
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A plain reply from `user` to the mail `to`, `answer` on top.
fn reply(user: &str, to: &str, answer: &str, id: &str) -> String {
    let parent = header(to, "Message-ID");
    format!(
        "From: {user} <{user}@example.test>\r\nTo: Switchboard <bot@example.test>\r\nSubject: Re: {}\r\nMessage-ID: <{id}@client.test>\r\nIn-Reply-To: {parent}\r\nReferences: {} {parent}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{answer}\r\n",
        header(to, "Subject"),
        header(to, "References")
    )
}

async fn code(gw: &Gateway) -> String {
    let (st, c) = gw.post("/api/gateway/pair/codes", &json!({})).await;
    assert_eq!(st, 200, "{c}");
    c["code"].as_str().unwrap_or_default().to_owned()
}

fn acks(fake: &TelegramFake) -> Vec<String> {
    fake.calls("answerCallbackQuery")
        .iter()
        .filter_map(|c| c["text"].as_str().map(str::to_owned))
        .collect()
}

/// A gateway hosting both bridges: the Telegram fake with `users` allowed, the mail server
/// with `senders` allowed.
async fn gateway(mail: &MailServer, fake: &TelegramFake, users: &str, senders: &str) -> Gateway {
    let mut env = mail.bridge_env();
    env.extend([
        ("SWITCHBOARD_EMAIL_ALLOWED_SENDERS", senders.to_owned()),
        ("SWITCHBOARD_TELEGRAM_BOT_TOKEN", "777000:TEST-TOKEN".into()),
        ("SWITCHBOARD_TELEGRAM_API_URL", fake.url.clone()),
        ("SWITCHBOARD_TELEGRAM_ALLOWED_USERS", users.to_owned()),
        ("SWITCHBOARD_TELEGRAM_POLL_TIMEOUT", "2s".into()),
    ]);
    Gateway::start(&env).await
}

#[tokio::test]
async fn a_quorum_of_two_across_telegram_the_web_app_and_email() {
    let mail = MailServer::start().await;
    let fake = TelegramFake::start().await;
    let gw = gateway(
        &mail,
        &fake,
        &format!("{ALICE},{DAN}"),
        "bob@example.test,mallory@example.test",
    )
    .await;
    let (st, b) = gw.upload("team.yaml", FLOW).await;
    assert_eq!(st, 200, "{b}");

    // The phones sign in; Carol's device becomes the person `carol`.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let web = tokio::process::Command::new("node")
        .arg("team.mjs")
        .current_dir(&dir)
        .env("GATEWAY_URL", &gw.url)
        .env("ADMIN_TOKEN", TOKEN)
        .env("CODE_CAROL", code(&gw).await)
        .env("CODE_DAN", code(&gw).await)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node (and Debian's chromium)");
    eventually(60, "carol's phone to be linked", || async {
        let (_, people) = gw.get("/api/gateway/people").await;
        (people["items"].as_array().is_some_and(|p| !p.is_empty())).then_some(())
    })
    .await;

    let notify = json!([
        "telegram:1001",
        "telegram:1002",
        "email:bob@example.test",
        "email:mallory@example.test"
    ]);
    let (st, r) = gw
        .post(
            "/api/gateway/runs/start",
            &json!({"bundle_id": "team", "input_data": {"text": "v3"}, "notify": notify}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let run = r["run_id"].as_str().unwrap_or_default().to_owned();

    // Email: a stranger's reply is refused, by mail.
    let to_mallory = mail
        .wait_for_mail("mallory", 30, "the prompt", |m| m.contains("Ship v3?"))
        .await;
    mail.send_raw(
        "mallory@example.test",
        "bot@example.test",
        &reply("mallory", &to_mallory, "approve", "m1"),
    )
    .await;
    mail.wait_for_mail("mallory", 30, "a refusal", |m| m.contains("may not answer"))
        .await;

    // Telegram: a stranger's tap is refused; Alice's counts; her second tap is refused.
    fake.wait_until(20, "the prompts", |f| {
        f.find(DAN as i64, "Ship v3?").is_some() && f.find(ALICE as i64, "Ship v3?").is_some()
    })
    .await;
    let (msg, text, kb) = fake.find(DAN as i64, "Ship v3?").unwrap_or_default();
    assert!(
        text.contains("👥 2 of: telegram:1001, person:carol, email:bob@example.test"),
        "{text}"
    );
    fake.tap(DAN, "Dan", DAN as i64, msg, &button(&kb, "approve"));
    fake.wait_until(20, "dan refused", |f| {
        acks(f).iter().any(|a| a.contains("not one of the people"))
    })
    .await;
    let (msg, _, kb) = fake.find(ALICE as i64, "Ship v3?").unwrap_or_default();
    fake.tap(ALICE, "Alice", ALICE as i64, msg, &button(&kb, "approve"));
    eventually(20, "alice's vote", || async {
        (gw.run(&run).await["waiting"]["votes"]
            .as_array()
            .map(Vec::len)
            == Some(1))
        .then_some(())
    })
    .await;
    fake.wait_until(20, "the tally under the prompt", |f| {
        f.find(ALICE as i64, "Ship v3?")
            .is_some_and(|(_, t, _)| t.contains("🗳 approve 1/2"))
    })
    .await;
    fake.tap(ALICE, "Alice", ALICE as i64, msg, &button(&kb, "reject"));
    fake.wait_until(20, "alice's second vote refused", |f| {
        acks(f).iter().any(|a| a.contains("already voted"))
    })
    .await;

    // The web app: Dan's phone shows no buttons; Carol's tap is the second agreeing vote.
    let out = web.wait_with_output().await.expect("node");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && log.contains("team: web steps passed"),
        "{log}"
    );
    let done = gw.wait_status(&run, "completed", 30).await;
    assert_eq!(done["output"]["response"], "approve");
    let voters: Vec<Value> = done["output"]["votes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let voters: Vec<&str> = voters.iter().filter_map(|v| v["voter"].as_str()).collect();
    assert_eq!(voters, ["telegram:1001", "person:carol"]);

    // Email: Bob's vote comes too late, and he is told so.
    let to_bob = mail
        .wait_for_mail("bob", 30, "the prompt", |m| m.contains("Ship v3?"))
        .await;
    mail.send_raw(
        "bob@example.test",
        "bot@example.test",
        &reply("bob", &to_bob, "approve", "b1"),
    )
    .await;
    mail.wait_for_mail("bob", 30, "too late", |m| m.contains("already answered"))
        .await;
    let votes = gw
        .ledger(&run)
        .await
        .iter()
        .filter(|r| r["step_id"].as_str().is_some_and(|s| s.contains("/vote")))
        .count();
    assert_eq!(votes, 2);
}

#[tokio::test]
async fn reminders_reach_telegram_and_email_and_a_reply_to_one_counts() {
    let mail = MailServer::start().await;
    let fake = TelegramFake::start().await;
    let gw = gateway(&mail, &fake, &ALICE.to_string(), "bob@example.test").await;
    let flow = "steps:\n  - id: gate\n    ask: Deploy?\n    choices: [approve, reject]\n    approvers: [\"telegram:1001\", \"email:bob@example.test\"]\n    remind: 1s\n    remind_max: 2\n  - output: \"{{ steps.gate.response }}\"\n";
    let (st, b) = gw.upload("nag.yaml", flow).await;
    assert_eq!(st, 200, "{b}");
    let notify = json!(["telegram:1001", "email:bob@example.test"]);
    let (st, r) = gw
        .post(
            "/api/gateway/runs/start",
            &json!({"bundle_id": "nag", "notify": notify}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let run = r["run_id"].as_str().unwrap_or_default().to_owned();
    let reminders = |f: &TelegramFake| {
        f.sent_texts(ALICE as i64)
            .iter()
            .filter(|t| t.starts_with("⏰ Reminder: Deploy?"))
            .count()
    };
    fake.wait_until(30, "two reminders on Telegram", |f| reminders(f) == 2)
        .await;
    let second = mail
        .wait_for_mail("bob", 30, "the second reminder", |m| {
            m.contains("Reminder 2: this still waits")
        })
        .await;
    mail.send_raw(
        "bob@example.test",
        "bot@example.test",
        &reply("bob", &second, "approve", "r2"),
    )
    .await;
    let done = gw.wait_status(&run, "completed", 30).await;
    assert_eq!(done["output"], "approve");
    let kinds: Vec<String> = gw
        .ledger(&run)
        .await
        .iter()
        .filter_map(|r| r["effect"]["type"].as_str().map(str::to_owned))
        .filter(|k| k == "remind")
        .collect();
    assert_eq!(kinds.len(), 2, "remind_max bounds them");
    assert_eq!(reminders(&fake), 2);
}

#[tokio::test]
async fn an_escalation_reaches_new_people_who_may_then_answer() {
    let mail = MailServer::start().await;
    let fake = TelegramFake::start().await;
    let gw = gateway(&mail, &fake, &format!("{ALICE},{DAN}"), "bob@example.test").await;
    let flow = "steps:\n  - id: gate\n    ask: Deploy?\n    choices: [approve, reject]\n    approvers: [\"telegram:1001\"]\n    escalate: {after: 1s, notify: [\"telegram:1002\", \"email:bob@example.test\"], approvers: [\"telegram:1002\"]}\n  - output: \"{{ steps.gate.response }}\"\n";
    let (st, b) = gw.upload("up.yaml", flow).await;
    assert_eq!(st, 200, "{b}");
    let (st, r) = gw
        .post(
            "/api/gateway/runs/start",
            &json!({"bundle_id": "up", "notify": ["telegram:1001"]}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let run = r["run_id"].as_str().unwrap_or_default().to_owned();
    fake.wait_until(30, "the escalated prompt in Dan's chat", |f| {
        f.find(DAN as i64, "⏫ Deploy?").is_some()
    })
    .await;
    mail.wait_for_mail("bob", 30, "the escalated prompt", |m| m.contains("Deploy?"))
        .await;
    let (msg, text, kb) = fake.find(DAN as i64, "⏫ Deploy?").unwrap_or_default();
    assert!(
        text.contains("telegram:1002"),
        "the prompt names the new approver: {text}"
    );
    fake.tap(DAN, "Dan", DAN as i64, msg, &button(&kb, "approve"));
    let done = gw.wait_status(&run, "completed", 30).await;
    assert_eq!(done["output"], "approve");
    assert_eq!(
        gw.run(&run).await["notify"],
        json!(["telegram:1001", "telegram:1002", "email:bob@example.test"])
    );
}
