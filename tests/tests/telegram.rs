//! The Telegram bridge end to end: the real `switchboard` process (the bridge inside
//! `serve`, or alone as `switchboard bridge telegram`) against the loopback Bot-API fake,
//! with the LLM fake behind the `chat` flow. Assertions read the fake's recorded calls and
//! the gateway's runs and ledgers.

use e2e::process::{Bridge, Gateway};
use e2e::telegram_fake::{TelegramFake, button};
use serde_json::{Value, json};

const ALICE: u64 = 1001;
const CHAT: i64 = ALICE as i64;

fn telegram_env(fake: &TelegramFake) -> Vec<(&'static str, String)> {
    vec![
        ("SWITCHBOARD_TELEGRAM_BOT_TOKEN", "777000:TEST-TOKEN".into()),
        ("SWITCHBOARD_TELEGRAM_API_URL", fake.url.clone()),
        ("SWITCHBOARD_TELEGRAM_ALLOWED_USERS", ALICE.to_string()),
        ("SWITCHBOARD_TELEGRAM_POLL_TIMEOUT", "2s".into()),
    ]
}

/// A gateway hosting the bridge, the Telegram fake and the LLM fake.
async fn setup() -> (Gateway, TelegramFake, e2e::llm_fake::Fake) {
    let fake = TelegramFake::start().await;
    let (llm_url, llm) = e2e::llm_fake::start().await;
    let mut env = telegram_env(&fake);
    env.push(("SWITCHBOARD_LLM_BASE_URL", llm_url));
    (Gateway::start(&env).await, fake, llm)
}

fn has_text(fake: &TelegramFake, text: &str) -> bool {
    fake.chat(CHAT).iter().any(|m| m.1 == text)
}

fn count_sent(fake: &TelegramFake, text: &str) -> usize {
    fake.sent_texts(CHAT).iter().filter(|t| *t == text).count()
}

/// Starts `/run approval TEXT` and returns the prompt message (id, keyboard).
async fn approval_prompt(fake: &TelegramFake, text: &str) -> (i64, Value) {
    fake.message(ALICE, "Alice", &format!("/run approval {text}"));
    let prompt = format!("Approve or reject: {text}");
    fake.wait_until(20, "the approval prompt", |f| {
        f.find(CHAT, &prompt).is_some()
    })
    .await;
    let (id, _, kb) = fake.find(CHAT, &prompt).unwrap_or_default();
    (id, kb)
}

#[tokio::test]
async fn free_text_chats_with_the_chat_flow_in_one_session() {
    let (gw, fake, llm) = setup().await;
    fake.message(ALICE, "Alice", "hello there");
    fake.wait_until(20, "the LLM reply", |f| has_text(f, "echo: hello there"))
        .await;
    fake.message(ALICE, "Alice", "and again");
    fake.wait_until(20, "the second reply", |f| has_text(f, "echo: and again"))
        .await;

    let runs = gw.runs_of("chat").await;
    assert_eq!(
        runs.len(),
        1,
        "the second message answers the waiting chat run"
    );
    assert_eq!(runs[0]["session_id"], format!("telegram:{CHAT}"));
    // The session carries the history: the second LLM call sees the first exchange.
    let second = llm.requests().last().cloned().unwrap_or_default();
    assert!(
        second["messages"].to_string().contains("hello there"),
        "{second}"
    );
    // A chat's "Your message?" is not shown: the next message answers it.
    assert!(fake.sent_texts(CHAT).iter().all(|t| t != "Your message?"));
    // The reply was shown growing: sent from the first streamed tokens, then edited.
    assert_eq!(llm.requests()[0]["stream"], true);
    let sends = fake.sent_texts(CHAT);
    assert!(
        sends
            .iter()
            .any(|t| t.starts_with("echo:") && t.ends_with(" …")),
        "{sends:?}"
    );
    let edits = fake.calls("editMessageText");
    assert!(
        edits.iter().any(|e| e["text"] == "echo: and again"),
        "{edits:?}"
    );
    let shown = fake.chat(CHAT);
    assert_eq!(
        shown.iter().filter(|m| m.1 == "echo: and again").count(),
        1,
        "{shown:?}"
    );
}

#[tokio::test]
async fn an_approval_is_answered_by_button() {
    let (gw, fake, _llm) = setup().await;
    let (msg, kb) = approval_prompt(&fake, "deploy v2").await;
    fake.tap(ALICE, "Alice", CHAT, msg, &button(&kb, "approve"));
    fake.wait_until(20, "the outcome", |f| has_text(f, "Approved: deploy v2"))
        .await;
    fake.wait_until(20, "the run's end", |f| {
        f.find(CHAT, "✅ approval finished").is_some()
    })
    .await;

    let (_, text, kb) = fake
        .find(CHAT, "Approve or reject: deploy v2")
        .unwrap_or_default();
    assert!(text.ends_with("✅ approve (answered by @alice)"), "{text}");
    assert!(kb.is_null(), "the buttons are gone once answered: {kb}");
    let acks = fake.calls("answerCallbackQuery");
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0]["text"], "Answered: approve");
    let run = &gw.runs_of("approval").await[0];
    assert_eq!(run["status"], "completed");
    assert_eq!(run["output"]["decision"], "approve");
    let a = gw.answers(run["run_id"].as_str().unwrap_or_default()).await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["actor"]["channel"], "telegram");
    assert_eq!(a[0]["actor"]["client_id"], format!("telegram:{ALICE}"));
}

#[tokio::test]
async fn a_prompt_answered_over_http_first_is_edited_to_say_so() {
    let (gw, fake, _llm) = setup().await;
    let (msg, kb) = approval_prompt(&fake, "from the web").await;
    let run = gw.runs_of("approval").await.remove(0);
    let run_id = run["run_id"].as_str().unwrap_or_default().to_owned();
    let wait_key = run["waiting"]["wait_key"].clone();
    let cmd = json!({"command_id": "web-1", "run_id": run_id, "type": "resume", "channel": "web",
        "payload": {"wait_key": wait_key, "payload": {"response": "reject"}}});
    let (status, body) = gw.post("/api/gateway/commands", &cmd).await;
    assert_eq!(status, 200, "{body}");
    let edited = "Approve or reject: from the web\n\n✅ reject (answered by someone via web)";
    fake.wait_until(20, "the prompt edited", |f| has_text(f, edited))
        .await;

    // A tap on the stale button changes nothing and says why.
    fake.tap(ALICE, "Alice", CHAT, msg, &button(&kb, "approve"));
    fake.wait_until(20, "the tap acknowledged", |f| {
        !f.calls("answerCallbackQuery").is_empty()
    })
    .await;
    let ack = &fake.calls("answerCallbackQuery")[0];
    assert_eq!(ack["text"], "That question was already answered elsewhere.");
    assert_eq!(gw.answers(&run_id).await.len(), 1);
    fake.wait_until(20, "the outcome", |f| has_text(f, "Rejected: from the web"))
        .await;
    assert_eq!(count_sent(&fake, "Approved: from the web"), 0);
}

#[tokio::test]
async fn an_unknown_user_is_refused_once_until_paired() {
    let (gw, fake, _llm) = setup().await;
    const EVE: u64 = 2002;
    let chat = EVE as i64;
    fake.message(EVE, "Eve", "hi");
    fake.message(EVE, "Eve", "/run approval sneaky");
    let last = fake.message(EVE, "Eve", "/flows");
    fake.wait_until(20, "all updates confirmed", |f| f.confirmed() > last)
        .await;
    let sent = fake.sent_texts(chat);
    assert_eq!(
        sent.len(),
        1,
        "one polite refusal and nothing else: {sent:?}"
    );
    assert!(
        sent[0].starts_with("Sorry, this bot is private."),
        "{}",
        sent[0]
    );
    assert!(gw.runs_of("approval").await.is_empty());

    fake.message(EVE, "Eve", "/pair WRONG-CODE");
    fake.wait_until(20, "the bad code refused", |f| {
        f.sent_texts(chat)
            .iter()
            .any(|t| t.starts_with("Pairing failed"))
    })
    .await;
    let code = gw.pairing_code().await;
    fake.message(EVE, "Eve", &format!("/pair {code}"));
    fake.wait_until(20, "paired", |f| {
        f.sent_texts(chat).iter().any(|t| t.starts_with("Paired."))
    })
    .await;
    fake.message(EVE, "Eve", "/run approval now allowed");
    fake.wait_until(20, "the prompt for a paired user", |f| {
        f.sent_texts(chat)
            .iter()
            .any(|t| t == "Approve or reject: now allowed")
    })
    .await;
}

#[tokio::test]
async fn a_duplicate_update_is_applied_once() {
    let (gw, fake, _llm) = setup().await;
    let (msg, kb) = approval_prompt(&fake, "once").await;
    let start = fake.calls("getUpdates").len();
    let tap = fake.tap(ALICE, "Alice", CHAT, msg, &button(&kb, "approve"));
    fake.wait_until(20, "the outcome", |f| has_text(f, "Approved: once"))
        .await;
    // Telegram delivers the start message and the tap again.
    fake.duplicate(tap);
    fake.duplicate(tap - 1);
    let polls = fake.calls("getUpdates").len();
    fake.wait_until(20, "two more polls", |f| {
        f.calls("getUpdates").len() >= polls + 2
    })
    .await;
    assert!(polls > start);

    assert_eq!(gw.runs_of("approval").await.len(), 1);
    let run_id = gw.runs_of("approval").await[0]["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(gw.answers(&run_id).await.len(), 1);
    assert_eq!(count_sent(&fake, "Approved: once"), 1);
    assert_eq!(count_sent(&fake, "Approve or reject: once"), 1);
    assert_eq!(fake.calls("answerCallbackQuery").len(), 1);
}

#[tokio::test]
async fn a_429_is_waited_out_not_dropped() {
    let (_gw, fake, _llm) = setup().await;
    fake.throttle("sendMessage", 1, 1);
    fake.throttle("editMessageText", 1, 1);
    let (msg, kb) = approval_prompt(&fake, "under load").await;
    assert_eq!(
        fake.calls("sendMessage!429").len(),
        1,
        "the first send got a 429"
    );
    fake.tap(ALICE, "Alice", CHAT, msg, &button(&kb, "reject"));
    let edited = "Approve or reject: under load\n\n✅ reject (answered by @alice)";
    fake.wait_until(20, "the edit after its 429", |f| has_text(f, edited))
        .await;
    assert_eq!(fake.calls("editMessageText!429").len(), 1);
    assert_eq!(count_sent(&fake, "Approve or reject: under load"), 1);
}

#[tokio::test]
async fn a_bridge_restart_mid_conversation_loses_and_repeats_nothing() {
    let fake = TelegramFake::start().await;
    let gw = Gateway::start(&[]).await;
    let state = gw.data_dir.with_file_name("telegram-bridge.sqlite");
    let env = telegram_env(&fake);
    let mut bridge = Bridge::telegram(&gw, &state, &env).await;
    let (msg, kb) = approval_prompt(&fake, "across a restart").await;
    // Killed while idle, once the bridge committed the prompt it sent (a kill between the
    // send and that commit would repeat that one message: the documented window).
    e2e::app::eventually(20, "the prompt recorded as sent", || async {
        e2e::peek::telegram_prompt_sent(&state, "Approve or reject: across a restart").then_some(())
    })
    .await;
    bridge.kill().await;

    // While the bridge is down: the tap waits in Telegram's queue, and a run started
    // elsewhere for this chat asks a question.
    fake.tap(ALICE, "Alice", CHAT, msg, &button(&kb, "approve"));
    let start = json!({"bundle_id": "ask", "input_data": {"text": "Your name?"},
        "notify": [format!("telegram:{CHAT}")]});
    let (status, body) = gw.post("/api/gateway/runs/start", &start).await;
    assert_eq!(status, 200, "{body}");

    let _bridge = Bridge::telegram(&gw, &state, &env).await;
    fake.wait_until(20, "the outcome", |f| {
        has_text(f, "Approved: across a restart")
    })
    .await;
    fake.wait_until(20, "the other run's question", |f| {
        has_text(f, "Your name?")
    })
    .await;
    fake.message(ALICE, "Alice", "Bob");
    fake.wait_until(20, "the ask run's end", |f| {
        has_text(f, "✅ ask finished: Bob")
    })
    .await;

    for text in [
        "Approve or reject: across a restart",
        "Approved: across a restart",
        "Your name?",
        "✅ ask finished: Bob",
    ] {
        assert_eq!(
            count_sent(&fake, text),
            1,
            "`{text}` sent once: {:?}",
            fake.sent_texts(CHAT)
        );
    }
    assert!(fake.find(CHAT, "▶️ ask started").is_some());
    let (_, prompt, _) = fake
        .find(CHAT, "Approve or reject: across a restart")
        .unwrap_or_default();
    assert!(prompt.ends_with("(answered by @alice)"), "{prompt}");
    assert_eq!(gw.runs_of("approval").await.len(), 1);
    assert_eq!(
        gw.runs_of("chat").await.len(),
        0,
        "\"Bob\" answered the ask, started nothing"
    );
}

#[tokio::test]
async fn commands_start_list_pause_resume_and_cancel_this_chats_run() {
    let (gw, fake, _llm) = setup().await;
    fake.message(ALICE, "Alice", "/flows");
    let menu = "Tap a workflow to start it:";
    fake.wait_until(20, "the flow menu", |f| f.find(CHAT, menu).is_some())
        .await;
    let (msg, _, kb) = fake.find(CHAT, menu).unwrap_or_default();
    fake.tap(
        ALICE,
        "Alice",
        CHAT,
        msg,
        &button(&kb, "approval: Approval"),
    );
    let prompt = "Approve or reject: this request";
    fake.wait_until(20, "the started flow's prompt", |f| {
        f.find(CHAT, prompt).is_some()
    })
    .await;
    let run_id = gw.runs_of("approval").await[0]["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let short = &run_id[..8];

    fake.message(ALICE, "Alice", "/pause");
    let paused = format!("⏸ approval paused (run {short})");
    fake.wait_until(20, "paused", |f| has_text(f, &paused))
        .await;
    fake.message(ALICE, "Alice", "/runs");
    let listed = format!("Active runs:\n• approval ({short}): paused");
    fake.wait_until(20, "the run list", |f| has_text(f, &listed))
        .await;
    fake.message(ALICE, "Alice", "/resume");
    let resumed = format!("▶️ approval resumed (run {short})");
    fake.wait_until(20, "resumed", |f| has_text(f, &resumed))
        .await;
    fake.message(ALICE, "Alice", &format!("/cancel {short}"));
    fake.wait_until(20, "cancelled", |f| {
        has_text(f, "⏹ approval was cancelled.")
    })
    .await;
    let closed = format!("{prompt}\n\n(the run is cancelled; no answer needed)");
    fake.wait_until(20, "the prompt closed", |f| has_text(f, &closed))
        .await;
    assert_eq!(gw.runs_of("approval").await[0]["status"], "cancelled");

    fake.message(ALICE, "Alice", "/cancel");
    let none = "No matching active run in this chat (see /runs).";
    fake.wait_until(20, "nothing left to cancel", |f| has_text(f, none))
        .await;
    fake.message(ALICE, "Alice", "/run nosuchflow");
    fake.wait_until(20, "an unknown flow refused", |f| {
        f.find(CHAT, "Cannot start nosuchflow:").is_some()
    })
    .await;
}

#[tokio::test]
async fn forged_button_data_answers_and_controls_nothing() {
    const BOB: u64 = 1002;
    let fake = TelegramFake::start().await;
    let mut env = telegram_env(&fake);
    env.retain(|(k, _)| *k != "SWITCHBOARD_TELEGRAM_ALLOWED_USERS");
    env.push((
        "SWITCHBOARD_TELEGRAM_ALLOWED_USERS",
        format!("{ALICE},{BOB}"),
    ));
    let gw = Gateway::start(&env).await;
    let (msg, kb) = approval_prompt(&fake, "payroll").await;
    let approve = button(&kb, "approve");
    let run = gw.runs_of("approval").await[0]["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Bob, an allowed user, sends button presses from his own chat with data he made up or
    // copied: Alice's real button, the same without its signature, and a cancel of her run.
    fake.message(BOB, "Bob", "/help");
    fake.wait_until(20, "Bob's chat exists", |f| !f.chat(BOB as i64).is_empty())
        .await;
    let bob_msg = fake.chat(BOB as i64)[0].0;
    let unsigned = approve
        .rsplit_once(':')
        .map(|(body, _)| body.to_owned())
        .unwrap_or_default();
    for data in [approve.clone(), unsigned, format!("c:{run}")] {
        fake.tap(BOB, "Bob", BOB as i64, bob_msg, &data);
    }
    fake.wait_until(20, "the three presses answered", |f| {
        f.calls("answerCallbackQuery").len() == 3
    })
    .await;
    for ack in fake.calls("answerCallbackQuery") {
        assert_eq!(ack["text"], "This button is no longer valid.", "{ack}");
    }
    assert_eq!(
        gw.get(&format!("/api/gateway/runs/{run}")).await.1["status"],
        "waiting",
        "neither answered nor cancelled"
    );
    assert!(gw.answers(&run).await.is_empty());
    // Alice's own press in her chat works.
    fake.tap(ALICE, "Alice", CHAT, msg, &approve);
    let done = gw.wait_status(&run, "completed", 20).await;
    assert_eq!(done["output"]["decision"], "approve");
}

#[tokio::test]
async fn a_tool_call_is_approved_or_denied_by_button_and_shown_in_one_line() {
    let (gw, fake, _llm) = setup().await;
    let prompt = r#"Allow the tool call echo(text: "hi") (flow:echo)?"#;
    fake.message(ALICE, "Alice", r#"/run agent CALL echo {"text": "hi"}"#);
    fake.wait_until(20, "the approval prompt", |f| {
        f.find(CHAT, prompt).is_some()
    })
    .await;
    let (msg, _, kb) = fake.find(CHAT, prompt).unwrap_or_default();
    fake.tap(ALICE, "Alice", CHAT, msg, &button(&kb, "allow"));
    let line = r#"🔧 echo("hi") → {"text":"hi"}"#;
    fake.wait_until(20, "the call's line", |f| has_text(f, line))
        .await;
    fake.wait_until(20, "the model's answer", |f| {
        has_text(f, r#"done: {"text":"hi"}"#)
    })
    .await;
    let runs = gw.runs_of("agent").await;
    let run = runs[0]["run_id"].as_str().unwrap_or_default().to_owned();
    let a = gw.answers(&run).await;
    assert_eq!(a[0]["result"]["response"], "allow");
    assert_eq!(a[0]["actor"]["channel"], "telegram");

    // The next call of the conversation is denied: the model hears who denied it.
    fake.message(ALICE, "Alice", r#"CALL echo {"text": "no"}"#);
    let prompt = r#"Allow the tool call echo(text: "no") (flow:echo)?"#;
    fake.wait_until(20, "the second prompt", |f| f.find(CHAT, prompt).is_some())
        .await;
    let (msg, _, kb) = fake.find(CHAT, prompt).unwrap_or_default();
    fake.tap(ALICE, "Alice", CHAT, msg, &button(&kb, "deny"));
    let denied = format!(
        "done: error: the call was denied by telegram:{ALICE} via telegram; do not call it again"
    );
    fake.wait_until(20, "the model hearing of the denial", |f| {
        has_text(f, &denied)
    })
    .await;
    assert_eq!(
        gw.runs_of("echo").await.len(),
        1,
        "the denied call never ran"
    );
}
