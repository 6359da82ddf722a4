//! Calls to the Telegram Bot API with the waiting the Bot API asks for: a 429's
//! `retry_after` is waited out (not dropped), network errors are retried with exponential
//! back-off, and sends go through teloxide's `Throttle` (per-chat and overall limits).
//! Message ids and texts only: what to say is decided elsewhere.

use std::future::Future;

use teloxide::RequestError;
use teloxide::adaptors::Throttle;
use teloxide::payloads::{EditMessageTextSetters, SendMessageSetters};
use teloxide::prelude::Requester;
use teloxide::types::{ChatId, InlineKeyboardButton, InlineKeyboardMarkup, MessageId};

use super::render;

pub type Bot = Throttle<teloxide::Bot>;

/// Network errors are retried this many times before the caller sees them.
const NETWORK_ATTEMPTS: u32 = 8;

/// Runs `call` until it succeeds, waiting out 429s and retrying network errors.
pub async fn retrying<T, F, Fut>(what: &str, mut call: F) -> Result<T, RequestError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RequestError>>,
{
    let mut backoff = crate::reconnect::backoff();
    let mut failures = 0;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(RequestError::RetryAfter(s)) => {
                tracing::warn!(
                    what,
                    retry_after = s.seconds(),
                    "telegram asked us to wait (429)"
                );
                tokio::time::sleep(s.duration()).await;
            }
            Err(e @ (RequestError::Network(_) | RequestError::Io(_)))
                if failures + 1 < NETWORK_ATTEMPTS =>
            {
                failures += 1;
                tracing::warn!(what, error = %e, "telegram unreachable; retrying");
                backoff.wait().await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether an error is about the message, not the connection (a deleted message, a blocked
/// bot, an unchanged edit): such errors are logged and skipped, never retried.
pub fn is_permanent(e: &RequestError) -> bool {
    matches!(
        e,
        RequestError::Api(_) | RequestError::MigrateToChatId(_) | RequestError::InvalidJson { .. }
    )
}

/// Buttons, one per row.
pub fn keyboard(buttons: Vec<(String, String)>) -> Option<InlineKeyboardMarkup> {
    if buttons.is_empty() {
        return None;
    }
    Some(InlineKeyboardMarkup::new(buttons.into_iter().map(
        |(label, data)| vec![InlineKeyboardButton::callback(label, data)],
    )))
}

/// Sends a text (split at Telegram's limit; the keyboard goes with the last part) and
/// returns the id of the last message.
pub async fn send(
    bot: &Bot,
    chat: i64,
    text: &str,
    kb: Option<InlineKeyboardMarkup>,
) -> Result<i32, RequestError> {
    let parts = render::split(text, render::MAX_TEXT);
    let last = parts.len() - 1;
    let mut id = 0;
    for (i, part) in parts.into_iter().enumerate() {
        let kb = if i == last { kb.clone() } else { None };
        let m = retrying("sendMessage", || {
            let mut req = bot.send_message(ChatId(chat), part.clone());
            if let Some(kb) = &kb {
                req = req.reply_markup(kb.clone());
            }
            async move { req.await }
        })
        .await?;
        id = m.id.0;
    }
    Ok(id)
}

/// Replaces a message's text (cut to the limit) and keyboard (none removes it).
pub async fn edit(
    bot: &Bot,
    chat: i64,
    message: i32,
    text: &str,
    kb: Option<InlineKeyboardMarkup>,
) -> Result<(), RequestError> {
    let text: String = text.chars().take(render::MAX_TEXT).collect();
    let res = retrying("editMessageText", || {
        let mut req = bot.edit_message_text(ChatId(chat), MessageId(message), text.clone());
        if let Some(kb) = &kb {
            req = req.reply_markup(kb.clone());
        }
        async move { req.await }
    })
    .await;
    match res {
        Ok(_) => Ok(()),
        Err(e) if is_permanent(&e) => {
            tracing::debug!(chat, message, error = %e, "edit skipped");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Acknowledges a button tap, with a short notice.
pub async fn answer_tap(bot: &Bot, id: &teloxide::types::CallbackQueryId, text: &str) {
    use teloxide::payloads::AnswerCallbackQuerySetters;
    let res = retrying("answerCallbackQuery", || {
        let req = bot.answer_callback_query(id.clone()).text(text.to_owned());
        async move { req.await }
    })
    .await;
    if let Err(e) = res {
        tracing::warn!(error = %e, "cannot acknowledge a button tap");
    }
}
