//! Telegram → gateway: long-polls `getUpdates` (or takes updates pushed to the webhook,
//! see [`super::webhook`]) and turns each update into at most one gateway request. A run start carries `Idempotency-Key: telegram:<bot>:<update>` and a
//! command the `command_id` `telegram:<bot>:<update>`, so an update handled twice (a
//! duplicate delivery, or a crash before the offset was stored) has one effect. The offset
//! moves past an update only after the gateway accepted its request (or refused it for
//! good); while the gateway is unreachable the update is retried with back-off.
//! Deny by default: only allowlisted or paired users get past [`Ctx::allowed`].
//! It never renders the ledger (that is [`super::outbound`]).

use std::sync::Arc;

use protocol::{ClientError, CommandRequest, StartRunRequest};
use serde_json::{Value, json};
use teloxide::payloads::GetUpdatesSetters;
use teloxide::prelude::Requester;
use teloxide::types::{AllowedUpdate, CallbackQuery, Message, Update, UpdateKind, User};

use super::render::{self, Callback, Command, Control};
use super::state::Prompt;
use super::{BridgeError, Ctx, api};

pub(crate) const OFFSET: &str = "update_offset";

/// The outcome of handling an update that did not go through.
enum Failure {
    /// Try the same update again later (the gateway or the state file is unavailable).
    Retry(String),
}

impl From<BridgeError> for Failure {
    fn from(e: BridgeError) -> Self {
        Self::Retry(e.to_string())
    }
}

type Handled = Result<(), Failure>;

/// Polls for updates forever.
pub(crate) async fn poll(ctx: Arc<Ctx>) {
    let mut offset = match ctx.state.meta_u64(OFFSET).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "telegram bridge cannot read its offset; not polling");
            return;
        }
    };
    let mut unreachable = crate::reconnect::backoff();
    loop {
        let updates = match get_updates(&ctx, offset).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "getUpdates failed; retrying");
                unreachable.wait().await;
                continue;
            }
        };
        unreachable.reset();
        for u in updates {
            // Until it went through: the gateway or the state file may be away a while.
            let mut backoff = crate::reconnect::backoff();
            while !apply(&ctx, &u, &mut offset).await {
                backoff.wait().await;
            }
        }
    }
}

async fn get_updates(ctx: &Ctx, offset: u64) -> Result<Vec<Update>, teloxide::RequestError> {
    let timeout = ctx.cfg.poll_timeout.as_secs() as u32;
    api::retrying("getUpdates", || {
        let req = ctx
            .bot
            .get_updates()
            .offset(offset as i32)
            .timeout(timeout)
            .allowed_updates(vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery]);
        async move { req.await }
    })
    .await
}

/// Applies one update once (polled or pushed): `true` when it went through and the offset
/// was stored past it (or it was a repeat), `false` when it must be tried again (the poller
/// retries it; in webhook mode Telegram delivers it again). Updates are keyed by id, so
/// applying one twice has one effect.
pub(crate) async fn apply(ctx: &Ctx, u: &Update, offset: &mut u64) -> bool {
    let id = u64::from(u.id.0);
    if id < *offset {
        tracing::debug!(update = id, "duplicate update skipped");
        return true;
    }
    if let Err(Failure::Retry(why)) = handle(ctx, u).await {
        tracing::warn!(update = id, %why, "update not applied yet; it will be tried again");
        return false;
    }
    if let Err(e) = ctx.state.set_meta(OFFSET, (id + 1).to_string()).await {
        tracing::error!(error = %e, "cannot store the telegram offset");
        return false;
    }
    *offset = id + 1;
    true
}

async fn handle(ctx: &Ctx, u: &Update) -> Handled {
    let key = format!("telegram:{}:{}", ctx.bot_id, u.id.0);
    match &u.kind {
        UpdateKind::Message(m) => on_message(ctx, &key, m).await,
        UpdateKind::CallbackQuery(q) => on_tap(ctx, &key, q).await,
        _ => Ok(()),
    }
}

fn display_name(u: &User) -> String {
    match &u.username {
        Some(n) => format!("@{n}"),
        None => u.full_name(),
    }
}

async fn on_message(ctx: &Ctx, key: &str, m: &Message) -> Handled {
    let (Some(from), chat) = (m.from.as_ref(), m.chat.id.0) else {
        return Ok(());
    };
    let user = from.id.0;
    let text = m.text().unwrap_or("").trim();
    let command = render::parse_command(text);
    if let Some(Command::Pair { code }) = &command {
        return pair(ctx, chat, from, code).await;
    }
    if !ctx.allowed(user).await? {
        if ctx.state.first_refusal(user).await? {
            tracing::info!(user, chat, "telegram: refused a user who is not allowed");
            reply(ctx, chat, render::REFUSAL).await;
        }
        return Ok(());
    }
    ctx.state.remember_user(user, display_name(from)).await?;
    if text.is_empty() {
        reply(ctx, chat, "I understand text messages only.").await;
        return Ok(());
    }
    match command {
        Some(Command::Help) => reply(ctx, chat, render::HELP).await,
        Some(Command::Flows) => flows(ctx, chat).await?,
        Some(Command::Run { flow, rest }) if !flow.is_empty() => {
            start(ctx, key, chat, &flow, render::run_input(&rest)).await?
        }
        Some(Command::Run { .. }) => reply(ctx, chat, "Usage: /run FLOW [text or JSON]").await,
        Some(Command::Runs) => runs(ctx, chat).await?,
        Some(Command::Control { action, target }) => {
            control(ctx, key, chat, user, action, target.as_deref()).await?
        }
        Some(Command::Pair { .. }) => {}
        Some(Command::Unknown(c)) => {
            reply(
                ctx,
                chat,
                &format!("I don't know /{c}. Send /help for what I can do."),
            )
            .await
        }
        None => match ctx.state.open_prompt(chat).await? {
            Some(p) => answer_text(ctx, key, user, &p, text).await?,
            None => {
                let flow = ctx.cfg.default_flow.clone();
                start(ctx, key, chat, &flow, json!({ "text": text })).await?
            }
        },
    }
    Ok(())
}

async fn on_tap(ctx: &Ctx, key: &str, q: &CallbackQuery) -> Handled {
    let user = q.from.id.0;
    if !ctx.allowed(user).await? {
        api::answer_tap(
            &ctx.bot,
            &q.id,
            "Sorry, you are not allowed to use this bot.",
        )
        .await;
        return Ok(());
    }
    ctx.state.remember_user(user, display_name(&q.from)).await?;
    let Some(chat) = q.message.as_ref().map(|m| m.chat().id.0) else {
        api::answer_tap(&ctx.bot, &q.id, "This button is no longer valid.").await;
        return Ok(());
    };
    let Some(cb) = q
        .data
        .as_deref()
        .and_then(|d| Callback::decode(d, chat, &ctx.key))
    else {
        tracing::warn!(
            user,
            chat,
            "telegram: a button press with data this bridge did not make for this chat was refused"
        );
        api::answer_tap(&ctx.bot, &q.id, "This button is no longer valid.").await;
        return Ok(());
    };
    let notice = match cb {
        Callback::Answer { prompt, choice } => {
            tap_answer(ctx, key, user, chat, prompt, choice).await?
        }
        Callback::Start { flow } => {
            start(ctx, key, chat, &flow, json!({})).await?;
            format!("Starting {flow}…")
        }
        Callback::Control { action, run_id } => {
            let bound = ctx.state.chat_runs(run_id.clone()).await?;
            if !bound.iter().any(|r| r.chat_id == chat) {
                api::answer_tap(&ctx.bot, &q.id, "That run is not shown in this chat.").await;
                return Ok(());
            }
            send_control(ctx, key, chat, user, action, &run_id).await?;
            format!("{} requested", action.command_type())
        }
    };
    api::answer_tap(&ctx.bot, &q.id, &notice).await;
    Ok(())
}

/// A tap on a prompt's button: the choice becomes a `resume` command. Only a prompt shown
/// in the chat the tap came from can be answered from there.
async fn tap_answer(
    ctx: &Ctx,
    key: &str,
    user: u64,
    chat: i64,
    prompt: i64,
    choice: usize,
) -> Result<String, Failure> {
    let Some(p) = ctx
        .state
        .prompt(prompt)
        .await?
        .filter(|p| p.chat_id == chat)
    else {
        return Ok("This question is gone.".into());
    };
    let Some(answer) = p.choices.get(choice).cloned() else {
        return Ok("This button is no longer valid.".into());
    };
    match resume(ctx, key, user, &p, &answer).await? {
        Ok(()) => Ok(format!("Answered: {answer}")),
        Err(why) => {
            if let (Some(msg), false) = (p.message_id, p.answered) {
                let text = render::answered_elsewhere(&p.text);
                if let Err(e) = api::edit(&ctx.bot, p.chat_id, msg, &text, None).await {
                    tracing::warn!(error = %e, "cannot edit an answered prompt");
                }
            }
            Ok(why)
        }
    }
}

/// A typed reply to the chat's open prompt.
async fn answer_text(ctx: &Ctx, key: &str, user: u64, p: &Prompt, text: &str) -> Handled {
    let answer = match render::match_choice(&p.choices, text) {
        Some(c) => c,
        None if p.allow_free_text || p.choices.is_empty() => text.to_owned(),
        None => {
            let msg = format!(
                "Please choose one of: {} (tap a button or send its number).",
                p.choices.join(", ")
            );
            reply(ctx, p.chat_id, &msg).await;
            return Ok(());
        }
    };
    if let Err(why) = resume(ctx, key, user, p, &answer).await? {
        reply(ctx, p.chat_id, &why).await;
    }
    Ok(())
}

/// Sends the `resume` that answers `p`. `Ok(Err(why))` when the gateway refused it for
/// good (already answered, run ended): `why` is for the user.
async fn resume(
    ctx: &Ctx,
    key: &str,
    user: u64,
    p: &Prompt,
    answer: &str,
) -> Result<Result<(), String>, Failure> {
    let who = format!("telegram:{user}");
    let sent = ctx
        .client
        .answer(
            key,
            &p.run_id,
            &p.wait_key,
            json!(answer),
            Some(&who),
            "telegram",
        )
        .await;
    match sent {
        Ok(_) => Ok(Ok(())),
        Err(e) if e.is_transient() => Err(Failure::Retry(e.to_string())),
        Err(e) if e.status() == Some(409) && e.message().contains("already voted") => {
            Ok(Err("You already voted on this question.".into()))
        }
        Err(e) if e.status() == Some(409) => {
            Ok(Err("That question was already answered elsewhere.".into()))
        }
        Err(e) if e.status() == Some(403) => Ok(Err(
            "Sorry, you are not one of the people who may answer this question.".into(),
        )),
        Err(e) => Ok(Err(format!(
            "The gateway refused the answer: {}",
            e.message()
        ))),
    }
}

async fn start(
    ctx: &Ctx,
    key: &str,
    chat: i64,
    flow: &str,
    input: Value,
) -> Result<(), BridgeError> {
    let req = StartRunRequest {
        bundle_id: flow.to_owned(),
        flow_id: None,
        input_data: input,
        session_id: Some(format!("telegram:{chat}")),
        notify: None,
    };
    match ctx.client.start_run_once(&req, key).await {
        Ok(r) => tracing::info!(run = %r.run_id, flow, chat, "telegram: run started"),
        Err(e) if e.is_transient() => return Err(e.into()),
        Err(e) => reply(ctx, chat, &format!("Cannot start {flow}: {}", e.message())).await,
    }
    Ok(())
}

async fn flows(ctx: &Ctx, chat: i64) -> Result<(), BridgeError> {
    let list = ctx.client.bundles().await?;
    let buttons: Vec<(String, String)> = list
        .items
        .iter()
        .filter_map(|b| {
            let data = Callback::Start {
                flow: b.bundle_id.clone(),
            }
            .encode(chat, &ctx.key)?;
            Some((format!("{}: {}", b.bundle_id, b.name), data))
        })
        .collect();
    let text = if buttons.is_empty() {
        "No workflows are installed."
    } else {
        "Tap a workflow to start it:"
    };
    if let Err(e) = api::send(&ctx.bot, chat, text, api::keyboard(buttons)).await {
        tracing::warn!(error = %e, "cannot list flows");
    }
    Ok(())
}

async fn runs(ctx: &Ctx, chat: i64) -> Result<(), BridgeError> {
    let runs = ctx.state.active_runs(chat).await?;
    if runs.is_empty() {
        reply(ctx, chat, "No runs are active in this chat.").await;
        return Ok(());
    }
    let lines: Vec<String> = runs
        .iter()
        .map(|r| format!("• {} ({}): {}", r.flow, render::short(&r.run_id), r.status))
        .collect();
    reply(ctx, chat, &format!("Active runs:\n{}", lines.join("\n"))).await;
    Ok(())
}

/// `/pause`, `/resume`, `/cancel`: the chat's current run, the one named, or a choice.
async fn control(
    ctx: &Ctx,
    key: &str,
    chat: i64,
    user: u64,
    action: Control,
    target: Option<&str>,
) -> Result<(), Failure> {
    let runs = ctx.state.active_runs(chat).await?;
    let chosen: Vec<_> = match target {
        Some(t) => runs.iter().filter(|r| r.run_id.starts_with(t)).collect(),
        None => runs.iter().collect(),
    };
    match chosen.as_slice() {
        [] => {
            reply(
                ctx,
                chat,
                "No matching active run in this chat (see /runs).",
            )
            .await
        }
        [one] => send_control(ctx, key, chat, user, action, &one.run_id).await?,
        many => {
            let buttons = many
                .iter()
                .filter_map(|r| {
                    let data = Callback::Control {
                        action,
                        run_id: r.run_id.clone(),
                    }
                    .encode(chat, &ctx.key)?;
                    Some((
                        format!("{} ({}) {}", r.flow, render::short(&r.run_id), r.status),
                        data,
                    ))
                })
                .collect();
            let text = format!("Which run should be {}?", action.past());
            if let Err(e) = api::send(&ctx.bot, chat, &text, api::keyboard(buttons)).await {
                tracing::warn!(error = %e, "cannot offer runs to choose from");
            }
        }
    }
    Ok(())
}

async fn send_control(
    ctx: &Ctx,
    key: &str,
    chat: i64,
    user: u64,
    action: Control,
    run_id: &str,
) -> Result<(), Failure> {
    let cmd = CommandRequest::new(key, run_id, &action.command())
        .from_client(Some(&format!("telegram:{user}")), "telegram");
    match ctx.client.command(&cmd).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_transient() => Err(Failure::Retry(e.to_string())),
        Err(e) => {
            let msg = format!(
                "Cannot {} run {}: {}",
                action.command_type(),
                render::short(run_id),
                e.message()
            );
            reply(ctx, chat, &msg).await;
            Ok(())
        }
    }
}

/// `/pair CODE`: trades a gateway pairing code for this user's access.
async fn pair(ctx: &Ctx, chat: i64, from: &User, code: &str) -> Handled {
    if code.is_empty() {
        reply(
            ctx,
            chat,
            "Usage: /pair CODE (a pairing code from the gateway's owner)",
        )
        .await;
        return Ok(());
    }
    let name: String = format!("telegram:{} {}", from.id.0, display_name(from))
        .chars()
        .take(64)
        .collect();
    match ctx.client.pair(code, &name).await {
        Ok(_) => {
            ctx.state.set_paired(from.id.0, display_name(from)).await?;
            // The gateway just answered; should it stop answering now, the next start
            // publishes the list again (updates are not held up for it).
            let publish = ctx.publish_allowlist();
            if tokio::time::timeout(std::time::Duration::from_secs(10), publish)
                .await
                .is_err()
            {
                tracing::warn!("telegram: the allowlist was not published after a pairing");
            }
            tracing::info!(user = from.id.0, "telegram: user paired");
            reply(
                ctx,
                chat,
                "Paired. Welcome! Send /help to see what I can do.",
            )
            .await;
        }
        Err(ClientError::Api { status: 429, .. }) => {
            reply(ctx, chat, "Too many pairing attempts; try again later.").await
        }
        Err(e) if e.is_transient() => return Err(Failure::Retry(e.to_string())),
        Err(e) => reply(ctx, chat, &format!("Pairing failed: {}", e.message())).await,
    }
    Ok(())
}

/// A direct reply; failures are logged (the update's effect does not depend on it).
async fn reply(ctx: &Ctx, chat: i64, text: &str) {
    if let Err(e) = api::send(&ctx.bot, chat, text, None).await {
        tracing::warn!(chat, error = %e, "cannot reply in telegram");
    }
}
