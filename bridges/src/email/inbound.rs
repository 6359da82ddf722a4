//! Mail → gateway: what one received message means. A reply carrying a valid reply token,
//! from the prompt's address or an allowed sender, becomes a durable `resume` command whose
//! `command_id` derives from its Message-ID; a reply too late gets a mail saying who
//! answered and when; a reply matching no choice gets the valid answers. A new mail (not a
//! reply) from an allowed sender starts the default flow in session `email:<sender>`.
//! Forged tokens, unknown threads, strangers and auto-replies are logged and ignored, never
//! applied. Each Message-ID is handled once (the `handled` table, with the answer mail in
//! the same transaction). It never reads IMAP itself (that is [`super::imap`]).

use mail_parser::{Message, MessageParser};
use protocol::StartRunRequest;
use serde_json::{Value, json};
use sha2::Digest;

use super::compose::{self, Incoming};
use super::extract;
use super::state::{OutMail, Prompt};
use super::token;
use super::{Ctx, EmailError};

/// How handling a message ended.
pub(crate) enum Handled {
    /// Applied, answered or ignored for good: mark it seen.
    Done,
    /// Not yet (the gateway or the state file is unavailable): try again later.
    Retry(String),
}

impl From<EmailError> for Handled {
    fn from(e: EmailError) -> Self {
        Self::Retry(e.to_string())
    }
}

/// The parts of a message the bridge uses.
struct Mail<'a> {
    msg: Message<'a>,
    id: String,
    from: String,
}

/// Handles one raw message.
pub(crate) async fn handle(ctx: &Ctx, raw: &[u8]) -> Handled {
    match handle_inner(ctx, raw).await {
        Ok(h) => h,
        Err(e) => e.into(),
    }
}

async fn handle_inner(ctx: &Ctx, raw: &[u8]) -> Result<Handled, EmailError> {
    let Some(msg) = MessageParser::default().parse(raw) else {
        tracing::warn!("email bridge: a message that is not MIME was ignored");
        return Ok(Handled::Done);
    };
    let id = match msg.message_id() {
        Some(id) => id.to_owned(),
        None => format!("{}@no-message-id", hex::encode(sha2::Sha256::digest(raw))),
    };
    if let Some(outcome) = ctx.state.handled(id.clone()).await? {
        tracing::info!(message_id = %id, %outcome, "email bridge: a message seen before was skipped");
        return Ok(Handled::Done);
    }
    let from = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let mail = Mail { msg, id, from };
    if let Some(why) = not_for_us(ctx, &mail) {
        return ignore(ctx, &mail, why).await;
    }
    if let Some(authserv_id) = &ctx.cfg.authserv_id {
        let headers: Vec<(&str, &str)> = mail.msg.headers_raw().collect();
        if let Err(why) = super::authres::check(&headers, authserv_id, &mail.from) {
            return ignore(ctx, &mail, &why).await;
        }
    }
    let found = token::find(
        &header_ids(&mail.msg),
        &recipients(&mail.msg),
        mail.msg.subject().unwrap_or(""),
    );
    match (found.token, found.looks_ours) {
        (Some(t), _) => reply(ctx, &mail, t).await,
        (None, true) => ignore(ctx, &mail, "forged or damaged reply token").await,
        (None, false) if !mail.msg.in_reply_to().is_empty() => {
            ignore(ctx, &mail, "a reply to a mail the bridge did not send").await
        }
        (None, false) => new_mail(ctx, &mail).await,
    }
}

/// Mail that must never be acted on: no sender, the bridge's own, or automatic.
fn not_for_us(ctx: &Ctx, m: &Mail<'_>) -> Option<&'static str> {
    if m.from.is_empty() {
        return Some("no sender address");
    }
    // Several From: headers or mailboxes make "the sender" ambiguous (and a reader may
    // see another one than the check did).
    let froms = m.msg.header_values("From").count();
    let mailboxes = m.msg.from().map_or(0, |a| a.clone().into_list().len());
    if froms > 1 || mailboxes > 1 {
        return Some("more than one sender address");
    }
    if m.from == ctx.cfg.address() {
        return Some("the bridge's own mail");
    }
    let auto = m
        .msg
        .header_raw("Auto-Submitted")
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| !v.is_empty() && v != "no");
    auto.then_some("an automatic reply (Auto-Submitted)")
}

async fn ignore(ctx: &Ctx, m: &Mail<'_>, why: &str) -> Result<Handled, EmailError> {
    tracing::warn!(message_id = %m.id, from = %m.from, why, "email bridge: message ignored");
    ctx.state
        .set_handled(m.id.clone(), format!("ignored: {why}"), None)
        .await?;
    Ok(Handled::Done)
}

/// In-Reply-To, then References (newest first).
fn header_ids(msg: &Message<'_>) -> Vec<String> {
    let list = |v: &mail_parser::HeaderValue<'_>| -> Vec<String> {
        v.as_text_list()
            .map(|l| l.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default()
    };
    let mut ids = list(msg.in_reply_to());
    let mut refs = list(msg.references());
    refs.reverse();
    ids.extend(refs);
    ids
}

fn recipients(msg: &Message<'_>) -> Vec<String> {
    let mut out: Vec<String> = msg
        .all_to()
        .chain(msg.all_cc())
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address().map(str::to_owned))
        .collect();
    if let Some(d) = msg.header_raw("Delivered-To") {
        out.push(d.trim().to_owned());
    }
    out
}

fn body_text(msg: &Message<'_>) -> String {
    extract::message_text(msg)
}

fn incoming(m: &Mail<'_>) -> Incoming {
    let mut references: Vec<String> = header_ids(&m.msg);
    references.reverse();
    references.dedup();
    Incoming {
        message_id: m.id.clone(),
        from: m.from.clone(),
        subject: m.msg.subject().unwrap_or("").to_owned(),
        references,
    }
}

/// The `command_id` (or idempotency key) of a message: `email:<Message-ID>`, hashed when
/// the id is too long for the gateway.
pub(crate) fn key_of(message_id: &str) -> String {
    let key = format!("email:{message_id}");
    if key.len() <= 200 {
        return key;
    }
    format!(
        "email:sha256:{}",
        hex::encode(sha2::Sha256::digest(message_id))
    )
}

/// A reply with a token: verify, check the sender, then answer the prompt.
async fn reply(ctx: &Ctx, m: &Mail<'_>, t: token::Token) -> Result<Handled, EmailError> {
    let Some(p) = ctx.state.prompt(t.prompt).await? else {
        return ignore(ctx, m, "a reply token for an unknown prompt").await;
    };
    if !ctx.signer.verify(&t, &p.run_id, &p.wait_key) {
        return ignore(ctx, m, "a reply token with a bad signature (forged)").await;
    }
    if m.from != p.address.to_ascii_lowercase() && !ctx.cfg.sender_allowed(&m.from) {
        return ignore(ctx, m, "a reply from a sender who may not answer this run").await;
    }
    let text = extract::answer_text(&body_text(&m.msg));
    let answer = match extract::match_choice(&p.choices, &text) {
        Some(c) => Some(c),
        None if (p.allow_free_text || p.choices.is_empty()) && !text.is_empty() => {
            Some(text.clone())
        }
        None => None,
    };
    let Some(answer) = answer else {
        let mail = compose::invalid(&ctx.style, &incoming(m), &p, &text);
        return answered(ctx, m, "invalid answer", Some(mail)).await;
    };
    resume(ctx, m, &p, &answer).await
}

async fn answered(
    ctx: &Ctx,
    m: &Mail<'_>,
    outcome: &str,
    mail: Option<OutMail>,
) -> Result<Handled, EmailError> {
    tracing::info!(message_id = %m.id, from = %m.from, outcome, "email bridge: reply handled");
    ctx.state
        .set_handled(m.id.clone(), outcome.to_owned(), mail)
        .await?;
    ctx.outbox.notify_one();
    Ok(Handled::Done)
}

async fn resume(ctx: &Ctx, m: &Mail<'_>, p: &Prompt, answer: &str) -> Result<Handled, EmailError> {
    let who = format!("email:{}", m.from);
    let sent = ctx
        .client
        .answer(
            &key_of(&m.id),
            &p.run_id,
            &p.wait_key,
            json!(answer),
            Some(&who),
            "email",
        )
        .await;
    match sent {
        Ok(_) => answered(ctx, m, "applied", None).await,
        Err(e) if e.is_transient() => Ok(Handled::Retry(e.to_string())),
        Err(e) if e.status() == Some(409) && e.message().contains("already voted") => {
            let why = "you already voted on this question; each person votes once";
            let mail = compose::refused(&ctx.style, &incoming(m), why);
            answered(ctx, m, "refused", Some(mail)).await
        }
        Err(e) if e.status() == Some(409) => {
            let (who, when) = who_answered(ctx, p).await;
            let mail = compose::stale(&ctx.style, &incoming(m), p, &who, when.as_deref());
            answered(ctx, m, "stale", Some(mail)).await
        }
        Err(e) => {
            let mail = compose::refused(&ctx.style, &incoming(m), &e.message());
            answered(ctx, m, "refused", Some(mail)).await
        }
    }
}

/// Who answered `p` and when, read from the run's ledger.
async fn who_answered(ctx: &Ctx, p: &Prompt) -> (String, Option<String>) {
    // The answer is recent: read the ledger's last page, not its first.
    let tail = async {
        let len = ctx.client.run(&p.run_id).await?.ledger_len;
        ctx.client
            .ledger(&p.run_id, len.saturating_sub(1000), 1000)
            .await
    };
    let page = match tail.await {
        Ok(page) => page,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read who answered a prompt");
            return ("someone else".into(), None);
        }
    };
    let answer = page.items.iter().rev().find(|r| {
        r.step_id == p.wait_key
            && r.result
                .as_ref()
                .is_some_and(|v| v.get("response").is_some())
    });
    match answer {
        Some(r) => {
            let a = &r.actor;
            let who = match (a.client_id.as_deref(), a.channel.as_deref()) {
                (Some(c), Some(ch)) => format!("{c} via {ch}"),
                (Some(c), None) => c.to_owned(),
                (None, Some(ch)) => format!("someone via {ch}"),
                (None, None) => a.principal.clone().unwrap_or_else(|| "someone else".into()),
            };
            let at = r.ended_at.as_deref().unwrap_or(&r.started_at);
            let when = chrono::DateTime::parse_from_rfc3339(at)
                .map(|t| {
                    t.with_timezone(&chrono::Utc)
                        .format("%Y-%m-%d %H:%M UTC")
                        .to_string()
                })
                .unwrap_or_else(|_| at.to_owned());
            (who, Some(when))
        }
        None => ("someone else".into(), None),
    }
}

/// A new mail from an allowed sender starts the default flow; its replies stay in its
/// thread (the run's input names the mail).
async fn new_mail(ctx: &Ctx, m: &Mail<'_>) -> Result<Handled, EmailError> {
    if !ctx.cfg.sender_allowed(&m.from) {
        return ignore(ctx, m, "new mail from a sender who is not allowed").await;
    }
    let subject = m.msg.subject().unwrap_or("").trim().to_owned();
    let text = extract::reply_text(&body_text(&m.msg));
    let text = if text.is_empty() {
        subject.clone()
    } else {
        text
    };
    let flow = ctx.cfg.default_flow.clone();
    let req = StartRunRequest {
        bundle_id: flow.clone(),
        flow_id: None,
        input_data: json!({
            "text": text,
            "subject": subject,
            "from": m.from,
            "email": {"message_id": m.id, "subject": subject, "sig": ctx.signer.thread_sig(&m.id, &m.from)},
        }),
        session_id: Some(format!("email:{}", m.from)),
        notify: None,
    };
    match ctx.client.start_run_once(&req, &key_of(&m.id)).await {
        Ok(r) => {
            tracing::info!(run = %r.run_id, flow, from = %m.from, "email bridge: run started by mail");
            answered(ctx, m, "started", None).await
        }
        Err(e) if e.is_transient() => Ok(Handled::Retry(e.to_string())),
        Err(e) => {
            let why = format!("cannot start {flow}: {}", e.message());
            let mail = compose::refused(&ctx.style, &incoming(m), &why);
            answered(ctx, m, "refused", Some(mail)).await
        }
    }
}

/// The thread a run started by mail answers in: (Message-ID, subject) from its input, if
/// this bridge put it there for mail from `address` (signed: run input written by anyone
/// else cannot thread mail into somebody's existing conversation).
pub(crate) fn thread_of(
    input: &Value,
    signer: &token::Signer,
    address: &str,
) -> Option<(String, String)> {
    let e = input.get("email")?;
    let id = e.get("message_id")?.as_str()?.to_owned();
    let sig = e.get("sig")?.as_str()?;
    if !signer.thread_ok(&id, address, sig) {
        tracing::warn!(message_id = %id, "email bridge: a run's input names a mail thread without this bridge's signature; not threading");
        return None;
    }
    let subject = e
        .get("subject")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    Some((id, subject))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_derive_from_the_message_id_and_stay_short() {
        assert_eq!(key_of("abc@x"), "email:abc@x");
        let long = format!("{}@x", "a".repeat(300));
        let k = key_of(&long);
        assert!(k.starts_with("email:sha256:") && k.len() < 200, "{k}");
        assert_eq!(k, key_of(&long));
    }

    #[test]
    fn a_run_started_by_mail_names_its_thread_only_with_the_bridges_signature() {
        let signer = token::Signer::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let sig = signer.thread_sig("m1@c", "alice@x.test");
        let input =
            json!({"text": "hi", "email": {"message_id": "m1@c", "subject": "Hello", "sig": sig}});
        assert_eq!(
            thread_of(&input, &signer, "alice@x.test"),
            Some(("m1@c".into(), "Hello".into()))
        );
        assert_eq!(thread_of(&input, &signer, "bob@x.test"), None);
        let forged = json!({"email": {"message_id": "m1@c", "subject": "Hello"}});
        assert_eq!(thread_of(&forged, &signer, "alice@x.test"), None);
        let other = json!({"email": {"message_id": "m2@c", "subject": "Hello", "sig": sig}});
        assert_eq!(thread_of(&other, &signer, "alice@x.test"), None);
        assert_eq!(
            thread_of(&json!({"text": "hi"}), &signer, "alice@x.test"),
            None
        );
    }

    #[test]
    fn header_ids_put_in_reply_to_first() {
        let raw = b"From: a@x\r\nMessage-ID: <r@x>\r\nIn-Reply-To: <p2@y>\r\nReferences: <p1@y> <p2@y>\r\n\r\nhi\r\n";
        let msg = MessageParser::default().parse(&raw[..]).unwrap_or_default();
        assert_eq!(header_ids(&msg), vec!["p2@y", "p2@y", "p1@y"]);
    }
}
