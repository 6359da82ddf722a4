//! The email bridge end to end: the real `switchboard` process (the bridge inside `serve`,
//! or alone as `switchboard bridge email`) with a real Postfix and Dovecot on loopback.
//! Prompts are read from the recipient's real mailbox over IMAP; replies are sent over
//! SMTP the way common clients write them. Assertions read mailboxes, runs and ledgers.

use std::time::Duration;

use e2e::mail_server::MailServer;
use e2e::peek;
use e2e::process::{Bridge, Gateway};
use serde_json::{Value, json};

const PUBLIC: &str = "https://sb.example.test";

fn env(mail: &MailServer) -> Vec<(&'static str, String)> {
    let mut env = mail.bridge_env();
    env.push((
        "SWITCHBOARD_EMAIL_ALLOWED_SENDERS",
        "bob@example.test".into(),
    ));
    env.push(("SWITCHBOARD_EMAIL_DEFAULT_FLOW", "approval".into()));
    env.push(("SWITCHBOARD_PUBLIC_URL", PUBLIC.into()));
    env
}

async fn setup() -> (MailServer, Gateway) {
    let mail = MailServer::start().await;
    let gw = Gateway::start(&env(&mail)).await;
    (mail, gw)
}

async fn start(gw: &Gateway, flow: &str, text: &str, to: &str) -> String {
    let body =
        json!({"bundle_id": flow, "input_data": {"text": text}, "notify": [format!("email:{to}")]});
    let (status, run) = gw.post("/api/gateway/runs/start", &body).await;
    assert_eq!(status, 200, "{run}");
    run["run_id"].as_str().unwrap_or_default().to_owned()
}

async fn run(gw: &Gateway, id: &str) -> Value {
    gw.get(&format!("/api/gateway/runs/{id}")).await.1
}

async fn wait_status(gw: &Gateway, id: &str, status: &str) -> Value {
    gw.wait_status(id, status, 30).await
}

/// A received mail's header value (unfolded).
fn header(raw: &str, name: &str) -> String {
    let msg = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .unwrap_or_default();
    msg.header_raw(name)
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn body(raw: &str) -> String {
    let msg = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .unwrap_or_default();
    let text = msg.body_text(0).map(|b| b.into_owned()).unwrap_or_default();
    text.replace("\r\n", "\n")
}

/// How a reply is written.
#[derive(Clone, Copy)]
enum Client {
    Gmail,
    Outlook,
    AppleMail,
}

/// A reply to `to` (a received mail) from `user`, with `answer` above the quote.
fn reply(user: &str, to: &str, answer: &str, client: Client, id: &str) -> String {
    let parent = header(to, "Message-ID");
    let refs = format!("{} {parent}", header(to, "References"));
    let subject = header(to, "Subject");
    let quoted: String = body(to).lines().map(|l| format!("> {l}\r\n")).collect();
    let text = match client {
        Client::Gmail => format!(
            "{answer}\r\n\r\nOn Fri, Nov 27, 2026 at 10:00 AM Switchboard <bot@example.test> wrote:\r\n\r\n{quoted}"
        ),
        Client::Outlook => format!(
            "{answer}\r\n\r\n________________________________\r\nFrom: Switchboard <bot@example.test>\r\nSent: Friday, November 27, 2026 10:00 AM\r\nTo: {user}@example.test\r\nSubject: {subject}\r\n\r\n{}",
            body(to)
        ),
        Client::AppleMail => format!(
            "{answer}\r\n\r\nSent from my iPhone\r\n\r\n> On Nov 27, 2026, at 10:00, Switchboard <bot@example.test> wrote:\r\n>\r\n{quoted}"
        ),
    };
    format!(
        "From: {user} <{user}@example.test>\r\nTo: Switchboard <bot@example.test>\r\nSubject: Re: {subject}\r\nMessage-ID: <{id}@client.test>\r\nIn-Reply-To: {parent}\r\nReferences: {}\r\nDate: Fri, 27 Nov 2026 10:01:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}",
        refs.trim()
    )
}

async fn send(mail: &MailServer, user: &str, raw: &str) {
    let from = format!("{user}@example.test");
    mail.send_raw(&from, "bot@example.test", raw).await;
}

async fn prompt_for(mail: &MailServer, user: &str, question: &str) -> String {
    mail.wait_for_mail(user, 30, question, |m| m.contains(question))
        .await
}

#[tokio::test]
async fn an_approval_prompt_is_mailed_and_a_reply_completes_the_run_once() {
    let (mail, gw) = setup().await;
    let id = start(&gw, "approval", "deploy v2", "alice@example.test").await;
    let prompt = prompt_for(&mail, "alice", "Approve or reject: deploy v2").await;
    let subject = header(&prompt, "Subject");
    assert!(
        subject.starts_with("approval: Approve or reject: deploy v2 [ref sb."),
        "{subject}"
    );
    let text = body(&prompt);
    assert!(text.contains("  1. approve\n  2. reject"), "{text}");
    assert!(text.contains(&format!("{PUBLIC}/app/runs/{id}")), "{text}");
    assert!(text.contains("above the quoted text"), "{text}");
    assert!(header(&prompt, "Message-ID").starts_with("<sb."));

    let answer = reply(
        "alice",
        &prompt,
        "Approve.\r\n\r\nThanks,\r\nAlice",
        Client::Outlook,
        "r1",
    );
    send(&mail, "alice", &answer).await;
    let done = wait_status(&gw, &id, "completed").await;
    assert_eq!(done["output"]["decision"], "approve", "{done}");
    let a = gw.answers(&id).await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["actor"]["channel"], "email");
    assert_eq!(a[0]["actor"]["client_id"], "email:alice@example.test");

    // The same reply delivered again (a client resending, or a duplicate delivery).
    send(&mail, "alice", &answer).await;
    mail.wait_all_seen("bot", 2, 30).await;
    assert_eq!(gw.answers(&id).await.len(), 1);
    // A message is marked seen only after what it caused was queued: only the prompt was.
    let queued = peek::email_outbox(&gw.data_dir.join("email.sqlite"));
    assert_eq!(queued.len(), 1, "only the prompt was mailed: {queued:?}");
}

#[tokio::test]
async fn a_free_text_answer_from_an_iphone() {
    let (mail, gw) = setup().await;
    let id = start(
        &gw,
        "ask",
        "Which cluster should we use?",
        "alice@example.test",
    )
    .await;
    let prompt = prompt_for(&mail, "alice", "Which cluster should we use?").await;
    assert!(
        !body(&prompt).contains("1."),
        "no choices: {}",
        body(&prompt)
    );
    let r = reply(
        "alice",
        &prompt,
        "The staging cluster, please.",
        Client::AppleMail,
        "f1",
    );
    send(&mail, "alice", &r).await;
    let done = wait_status(&gw, &id, "completed").await;
    assert_eq!(done["output"]["answer"], "The staging cluster, please.");
}

#[tokio::test]
async fn a_reply_after_the_prompt_was_answered_over_http_is_told_who_answered() {
    let (mail, gw) = setup().await;
    let id = start(&gw, "approval", "rotate keys", "alice@example.test").await;
    let prompt = prompt_for(&mail, "alice", "Approve or reject: rotate keys").await;
    let wait_key = run(&gw, &id).await["waiting"]["wait_key"].clone();
    let cmd = json!({"command_id": "web-1", "run_id": id, "type": "resume", "client_id": "carol",
        "channel": "web", "payload": {"wait_key": wait_key, "payload": {"response": "reject"}}});
    let (s, body_) = gw.post("/api/gateway/commands", &cmd).await;
    assert_eq!(s, 200, "{body_}");
    wait_status(&gw, &id, "completed").await;
    send(
        &mail,
        "alice",
        &reply("alice", &prompt, "approve", Client::Gmail, "late1"),
    )
    .await;
    let late = mail
        .wait_for_mail("alice", 30, "the too-late answer", |m| {
            m.contains("was not used")
        })
        .await;
    let text = body(&late);
    assert!(
        text.contains("already answered by carol via web on "),
        "{text}"
    );
    assert_eq!(header(&late, "In-Reply-To"), "<late1@client.test>");
    let a = gw.answers(&id).await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["result"]["response"], "reject");
}

#[tokio::test]
async fn forged_unknown_and_invalid_replies_are_not_applied() {
    let (mail, gw) = setup().await;
    let id = start(&gw, "approval", "drop the table", "alice@example.test").await;
    let prompt = prompt_for(&mail, "alice", "Approve or reject: drop the table").await;
    let real = header(&prompt, "Message-ID");
    // A forged token: the prompt's id with another signature, in the headers and subject.
    let token = real.trim_matches(|c| c == '<' || c == '>');
    let token = token.split('@').next().unwrap_or_default();
    let sig = token.rsplit('.').next().unwrap_or_default();
    assert_eq!(sig.len(), 16, "{real}");
    let forged = reply("alice", &prompt, "approve", Client::Gmail, "forged1")
        .replace(sig, "0000000000000000");
    assert!(!forged.contains(sig));
    send(&mail, "alice", &forged).await;
    // A stranger replying to the real prompt.
    send(
        &mail,
        "mallory",
        &reply("mallory", &prompt, "approve", Client::Gmail, "m1"),
    )
    .await;
    mail.wait_all_seen("bot", 2, 30).await;
    assert_eq!(run(&gw, &id).await["status"], "waiting");
    assert!(
        mail.inbox("mallory").await.is_empty(),
        "strangers get nothing"
    );

    // An answer that is no choice: the valid answers come back; a reply to that works.
    send(
        &mail,
        "alice",
        &reply("alice", &prompt, "maybe later", Client::Gmail, "i1"),
    )
    .await;
    let invalid = mail
        .wait_for_mail("alice", 30, "the valid answers", |m| {
            m.contains("is not one of the answers")
        })
        .await;
    let text = body(&invalid);
    assert!(
        text.contains("\"maybe later\" is not one of the answers"),
        "{text}"
    );
    assert!(text.contains("  1. approve\n  2. reject"), "{text}");
    assert_eq!(run(&gw, &id).await["status"], "waiting");
    send(
        &mail,
        "alice",
        &reply("alice", &invalid, "2", Client::Gmail, "i2"),
    )
    .await;
    let done = wait_status(&gw, &id, "completed").await;
    assert_eq!(done["output"]["decision"], "reject");
    assert_eq!(gw.answers(&id).await.len(), 1);
}

#[tokio::test]
async fn the_standalone_bridge_restarted_between_prompt_and_reply_loses_and_repeats_nothing() {
    let mail = MailServer::start().await;
    let gw = Gateway::start(&[("SWITCHBOARD_PUBLIC_URL", PUBLIC.into())]).await;
    let state = gw.data_dir.join("email-bridge.sqlite");
    let mut bridge = Bridge::email(&gw, &state, &env(&mail)).await;
    let id = start(&gw, "approval", "ship it", "alice@example.test").await;
    let prompt = prompt_for(&mail, "alice", "Approve or reject: ship it").await;
    bridge.kill().await;
    send(
        &mail,
        "alice",
        &reply("alice", &prompt, "approve", Client::Gmail, "k1"),
    )
    .await;
    // While the bridge is down another run asks alice something.
    let other = start(&gw, "ask", "Anything else?", "alice@example.test").await;
    assert_eq!(run(&gw, &id).await["status"], "waiting");
    let _bridge = Bridge::email(&gw, &state, &env(&mail)).await;
    wait_status(&gw, &id, "completed").await;
    prompt_for(&mail, "alice", "Anything else?").await;
    // Each prompt was queued once (one outbox row per prompt) and sent once. The bridge
    // records a mail sent once SMTP accepted it, which can be after it reached the inbox.
    let queued = e2e::wait::eventually(10, "both prompts recorded as sent", || async {
        let q = peek::email_outbox(&state);
        q.iter().all(|q| q.sent).then_some(q)
    })
    .await;
    assert_eq!(queued.len(), 2, "each prompt once: {queued:?}");
    let inbox = mail.inbox("alice").await;
    assert_eq!(inbox.len(), 2, "each prompt once: {inbox:?}");
    assert_eq!(run(&gw, &other).await["status"], "waiting");
}

#[tokio::test]
async fn the_imap_server_restarting_while_the_bridge_idles_is_survived() {
    let (mail, gw) = setup().await;
    let id = start(&gw, "approval", "restart", "alice@example.test").await;
    let prompt = prompt_for(&mail, "alice", "Approve or reject: restart").await;
    mail.restart_imap(Duration::from_millis(300)).await;
    send(
        &mail,
        "alice",
        &reply("alice", &prompt, "approve", Client::Gmail, "after-restart"),
    )
    .await;
    let done = wait_status(&gw, &id, "completed").await;
    assert_eq!(done["output"]["decision"], "approve");
}

#[tokio::test]
async fn a_new_mail_from_an_allowed_sender_starts_the_default_flow_in_its_thread() {
    let (mail, gw) = setup().await;
    let new = "From: Bob <bob@example.test>\r\nTo: bot@example.test\r\nSubject: Deploy friday?\r\nMessage-ID: <new1@client.test>\r\n\r\nthe friday deploy\r\n\r\n-- \r\nBob\r\n";
    send(&mail, "bob", new).await;
    let prompt = prompt_for(&mail, "bob", "Approve or reject: the friday deploy").await;
    assert_eq!(header(&prompt, "In-Reply-To"), "<new1@client.test>");
    assert!(header(&prompt, "Subject").starts_with("Re: Deploy friday? [ref sb."));
    send(
        &mail,
        "bob",
        &reply("bob", &prompt, "1", Client::Gmail, "b2"),
    )
    .await;
    let done = mail
        .wait_for_mail("bob", 30, "the run's end", |m| {
            m.contains("approval finished")
        })
        .await;
    assert!(
        body(&done).contains("Approved: the friday deploy"),
        "{}",
        body(&done)
    );
    // A stranger's new mail starts nothing.
    let stranger = "From: mallory@example.test\r\nTo: bot@example.test\r\nSubject: hi\r\nMessage-ID: <evil1@client.test>\r\n\r\nrun something\r\n";
    send(&mail, "mallory", stranger).await;
    mail.wait_all_seen("bot", 3, 30).await;
    let runs = gw.get("/api/gateway/runs?limit=100").await.1;
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(1), "{runs}");
}

#[tokio::test]
async fn a_prompt_is_mailed_once_smtp_is_back() {
    let (mail, gw) = setup().await;
    mail.stop_smtp().await;
    let id = start(&gw, "approval", "after the outage", "alice@example.test").await;
    // The bridge tries, fails and backs off while SMTP is down.
    let outbox = gw.data_dir.join("email.sqlite");
    e2e::app::eventually(30, "a failed attempt to send the prompt", || async {
        peek::email_outbox(&outbox)
            .iter()
            .any(|q| q.attempts >= 1 && q.last_error.is_some() && !q.sent)
            .then_some(())
    })
    .await;
    assert!(mail.inbox("alice").await.is_empty());
    mail.start_smtp().await;
    let prompt = prompt_for(&mail, "alice", "Approve or reject: after the outage").await;
    send(
        &mail,
        "alice",
        &reply("alice", &prompt, "approve", Client::Gmail, "o1"),
    )
    .await;
    wait_status(&gw, &id, "completed").await;
    assert_eq!(mail.inbox("alice").await.len(), 1, "mailed once");
}

#[tokio::test]
async fn a_run_notifying_two_addresses_asks_both_and_the_first_answer_wins() {
    let (mail, gw) = setup().await;
    let start = json!({"bundle_id": "approval", "input_data": {"text": "two people"},
        "notify": ["email:alice@example.test", "email:bob@example.test"]});
    let (s, run) = gw.post("/api/gateway/runs/start", &start).await;
    assert_eq!(s, 200, "{run}");
    let id = run["run_id"].as_str().unwrap_or_default().to_owned();
    let to_alice = prompt_for(&mail, "alice", "Approve or reject: two people").await;
    let to_bob = prompt_for(&mail, "bob", "Approve or reject: two people").await;
    assert_ne!(
        header(&to_alice, "Message-ID"),
        header(&to_bob, "Message-ID")
    );
    send(
        &mail,
        "bob",
        &reply("bob", &to_bob, "reject", Client::Gmail, "two-b"),
    )
    .await;
    let done = wait_status(&gw, &id, "completed").await;
    assert_eq!(done["output"]["decision"], "reject");
    send(
        &mail,
        "alice",
        &reply("alice", &to_alice, "approve", Client::Gmail, "two-a"),
    )
    .await;
    let late = mail
        .wait_for_mail("alice", 30, "the too-late answer", |m| {
            m.contains("was not used")
        })
        .await;
    assert!(
        body(&late).contains("already answered by email:bob@example.test via email"),
        "{}",
        body(&late)
    );
    assert_eq!(gw.answers(&id).await.len(), 1);
}

#[tokio::test]
async fn without_imap_idle_the_bridge_polls() {
    let mail = MailServer::start_with(false).await;
    let mut env = env(&mail);
    env.push(("SWITCHBOARD_EMAIL_POLL_EVERY", "1s".into()));
    let gw = Gateway::start(&env).await;
    let id = start(&gw, "approval", "no idle", "alice@example.test").await;
    let prompt = prompt_for(&mail, "alice", "Approve or reject: no idle").await;
    send(
        &mail,
        "alice",
        &reply("alice", &prompt, "2", Client::Gmail, "poll1"),
    )
    .await;
    let done = wait_status(&gw, &id, "completed").await;
    assert_eq!(done["output"]["decision"], "reject");
}

/// What the operator's receiving server (OpenDMARC, rspamd…) writes on top of a mail it
/// checked. This machine has no DKIM signer, so the test writes the verdict such a server
/// would; the mail still goes through the real Postfix and Dovecot to the bridge.
const AUTHSERV: &str = "mx.switchboard.test";

fn new_mail(from: &str, id: &str, results: Option<&str>) -> String {
    let results = results
        .map(|r| format!("Authentication-Results: {r}\r\n"))
        .unwrap_or_default();
    format!(
        "{results}From: Bob <{from}>\r\nTo: bot@example.test\r\nSubject: Wire the money\r\nMessage-ID: <{id}@client.test>\r\n\r\nwire 10k to account 42\r\n"
    )
}

#[tokio::test]
async fn a_spoofed_from_counts_only_with_the_servers_authentication_results() {
    let mail = MailServer::start().await;
    let mut env = env(&mail);
    env.push(("SWITCHBOARD_EMAIL_AUTHSERV_ID", AUTHSERV.into()));
    let gw = Gateway::start(&env).await;
    // Mallory writes Bob's address in From: (Bob is an allowed sender).
    let spoofs = [
        new_mail("bob@example.test", "s1", None),
        new_mail(
            "bob@example.test",
            "s2",
            Some("evil.test; dmarc=pass header.from=example.test"),
        ),
        new_mail(
            "bob@example.test",
            "s3",
            Some(&format!(
                "{AUTHSERV}; spf=fail; dmarc=fail header.from=example.test"
            )),
        ),
    ];
    for raw in &spoofs {
        send(&mail, "mallory", raw).await;
    }
    // And replies to Alice's prompt as Alice.
    let id = start(&gw, "approval", "wire 10k", "alice@example.test").await;
    let prompt = prompt_for(&mail, "alice", "Approve or reject: wire 10k").await;
    send(
        &mail,
        "mallory",
        &reply("alice", &prompt, "approve", Client::Gmail, "s4"),
    )
    .await;
    mail.wait_all_seen("bot", 4, 30).await;
    assert!(
        gw.runs_of("approval").await.len() == 1,
        "no run started by a spoof"
    );
    assert_eq!(run(&gw, &id).await["status"], "waiting");
    assert!(
        mail.inbox("bob").await.is_empty(),
        "nothing mailed to the spoofed sender"
    );

    // Authenticated mail works: Alice's reply with DKIM aligned, Bob's mail with DMARC.
    let pass = format!("{AUTHSERV}; dkim=pass header.d=example.test header.s=s1; spf=pass");
    let alice = format!(
        "Authentication-Results: {pass}\r\n{}",
        reply("alice", &prompt, "approve", Client::Gmail, "ok1")
    );
    send(&mail, "alice", &alice).await;
    let done = wait_status(&gw, &id, "completed").await;
    assert_eq!(done["output"]["decision"], "approve");
    let dmarc = format!("{AUTHSERV}; dmarc=pass (p=reject) header.from=example.test");
    send(
        &mail,
        "bob",
        &new_mail("bob@example.test", "ok2", Some(&dmarc)),
    )
    .await;
    prompt_for(&mail, "bob", "Approve or reject: wire 10k to account 42").await;
}

#[tokio::test]
async fn run_input_cannot_thread_a_prompt_into_someone_elses_conversation() {
    let (mail, gw) = setup().await;
    // A run in alice's mail session whose input claims her earlier thread (even from an
    // admin, only the bridge's own signature makes a thread).
    let body = json!({"bundle_id": "ask", "session_id": "email:alice@example.test",
        "input_data": {"text": "Your password?", "email": {"message_id": "payroll-thread@corp.test", "subject": "Payroll"}}});
    let (status, r) = gw.post("/api/gateway/runs/start", &body).await;
    assert_eq!(status, 200, "{r}");
    let prompt = prompt_for(&mail, "alice", "Your password?").await;
    assert!(!prompt.contains("payroll-thread@corp.test"), "{prompt}");
    assert!(!header(&prompt, "Subject").contains("Payroll"), "{prompt}");
}

#[tokio::test]
async fn a_tool_call_is_denied_by_an_email_reply_and_the_model_hears_it() {
    let mail = MailServer::start().await;
    let (llm_url, _llm) = e2e::llm_fake::start().await;
    let mut env = env(&mail);
    env.push(("SWITCHBOARD_LLM_BASE_URL", llm_url));
    let gw = Gateway::start(&env).await;
    let id = start(
        &gw,
        "agent",
        r#"CALL echo {"text": "rm -rf"}"#,
        "alice@example.test",
    )
    .await;
    let question = r#"Allow the tool call echo(text: "rm -rf") (flow:echo)?"#;
    let prompt = prompt_for(&mail, "alice", question).await;
    let text = body(&prompt);
    assert!(text.contains("  1. allow\n  2. deny"), "{text}");

    let answer = reply("alice", &prompt, "deny", Client::Gmail, "t1");
    send(&mail, "alice", &answer).await;
    gw.wait_on(&id, "next.1").await;
    let ledger = gw.ledger(&id).await;
    let approval = ledger
        .iter()
        .find(|r| r["step_id"] == "think.1/approve1.1" && r["status"] == "completed")
        .expect("the approval's answer");
    assert_eq!(approval["result"]["response"], "deny");
    assert_eq!(approval["actor"]["channel"], "email");
    let said: Vec<&str> = ledger
        .iter()
        .filter(|r| r["effect"]["type"] == "say")
        .filter_map(|r| r["effect"]["payload"]["text"].as_str())
        .collect();
    assert_eq!(
        said,
        [
            "done: error: the call was denied by email:alice@example.test via email; do not call it again"
        ]
    );
    assert!(
        gw.runs_of("echo").await.is_empty(),
        "the denied call never ran"
    );
}

/// The one-click token in a prompt mail.
fn link_token(mail: &str) -> String {
    let text = body(mail);
    let at = text.find("/app/answer/").expect("a one-click link") + "/app/answer/".len();
    text[at..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == '.')
        .collect()
}

#[tokio::test]
async fn a_one_click_link_confirms_before_it_votes_and_works_once() {
    let (mail, gw) = setup().await;
    let id = start(&gw, "approval", "ship it", "alice@example.test").await;
    let prompt = prompt_for(&mail, "alice", "Approve or reject: ship it").await;
    assert!(
        body(&prompt).contains(&format!("approve: {PUBLIC}/app/answer/")),
        "{}",
        body(&prompt)
    );
    let token = link_token(&prompt);
    let http = reqwest::Client::new();
    let page = gw.url(&format!("/app/answer/{token}"));

    // A link scanner, or a preview, fetching it: nothing changes.
    for _ in 0..2 {
        let r = http
            .get(format!("{page}?choice=approve"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let html = r.text().await.unwrap();
        assert!(
            html.contains("Approve or reject: ship it") && html.contains("Nothing is recorded"),
            "{html}"
        );
    }
    assert_eq!(run(&gw, &id).await["status"], "waiting");
    assert!(gw.answers(&id).await.is_empty());

    // The POST from the page answers, as the mail's recipient.
    let r = http
        .post(&page)
        .form(&[("choice", "approve")])
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    assert!(html.contains("is recorded"), "{html}");
    let done = wait_status(&gw, &id, "completed").await;
    assert_eq!(done["output"]["decision"], "approve");
    let a = gw.answers(&id).await;
    assert_eq!(a[0]["actor"]["client_id"], "email:alice@example.test");
    assert_eq!(a[0]["actor"]["channel"], "email");

    // Replayed: refused, saying who answered.
    let r = http
        .post(&page)
        .form(&[("choice", "reject")])
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    assert!(
        html.contains("already answered, by email:alice@example.test via email"),
        "{html}"
    );
    assert_eq!(gw.answers(&id).await.len(), 1);

    // Changed, or made by another gateway: refused.
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    let html = http
        .get(gw.url(&format!("/app/answer/{forged}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("not valid"), "{html}");

    // Expired: refused.
    let id2 = start(&gw, "approval", "later", "alice@example.test").await;
    gw.wait_on(&id2, "decide.1").await;
    let (st, l) = gw
        .post("/api/gateway/links", &json!({"run_id": id2, "wait_key": "decide.1", "recipient": "email:alice@example.test", "ttl_secs": 1}))
        .await;
    assert_eq!(st, 200, "{l}");
    let short = l["token"].as_str().unwrap().to_owned();
    e2e::wait::eventually(10, "the link to expire", || async {
        let (_, info) = gw.get(&format!("/api/gateway/links/{short}")).await;
        (info["open"] == false).then_some(())
    })
    .await;
    let (st, b) = gw
        .post(
            &format!("/api/gateway/links/{short}"),
            &json!({"choice": "approve"}),
        )
        .await;
    assert_eq!(st, 403, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("expired"),
        "{b}"
    );
    assert_eq!(run(&gw, &id2).await["status"], "waiting");
}
