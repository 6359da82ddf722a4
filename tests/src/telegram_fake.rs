//! A loopback server that speaks the Telegram Bot API's JSON shapes, for end-to-end tests of
//! the Telegram bridge without the network. Requests are `POST /bot<token>/<Method>` (method
//! names matched case-insensitively); answers are `{"ok": true, "result": …}`.
//!
//! It keeps an update queue with Telegram's offset semantics (`getUpdates(offset)` confirms
//! and drops every update before `offset`; unconfirmed ones are delivered again), long-polls,
//! records every call, keeps each message's current text, and lets a test inject messages,
//! button taps, duplicate deliveries and 429s with `retry_after`.
//!
//! After `setWebhook` it pushes instead, as Telegram does: each queued update is POSTed to
//! the webhook URL with `X-Telegram-Bot-Api-Secret-Token`, one at a time and in order, and
//! delivered again (after a pause) until the bridge answers 2xx; `getUpdates` is then a 409.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const BOT_ID: u64 = 777_000;

/// One recorded Bot API call.
#[derive(Debug, Clone)]
pub struct Call {
    /// Lower-case method name, e.g. `sendmessage`.
    pub method: String,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<(Value, bool)>,
    next_update: u64,
    next_message: i64,
    confirmed: u64,
    calls: Vec<Call>,
    /// (chat, message id) → current text and keyboard.
    messages: BTreeMap<(i64, i64), (String, Value)>,
    /// Method → how many more calls get a 429, and its `retry_after`.
    throttled: BTreeMap<String, (u32, u64)>,
    /// Every update handed to the bridge (polled or pushed), in order.
    delivered: Vec<Value>,
    /// The webhook set by `setWebhook`: (url, secret token).
    webhook: Option<(String, String)>,
    /// Each webhook delivery attempt: (update id, HTTP status, 0 when unreachable).
    pushes: Vec<(u64, u16)>,
    pusher: bool,
}

/// Handle to a running fake; cheap to clone.
#[derive(Clone)]
pub struct TelegramFake {
    inner: Arc<Mutex<Inner>>,
    wake: Arc<tokio::sync::Notify>,
    pub url: String,
}

impl TelegramFake {
    pub async fn start() -> Self {
        let fake = Self {
            inner: Arc::new(Mutex::new(Inner {
                next_update: 1,
                next_message: 1,
                ..Default::default()
            })),
            wake: Arc::new(tokio::sync::Notify::new()),
            url: String::new(),
        };
        let app = axum::Router::new()
            .route("/{bot}/{method}", axum::routing::post(api))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the telegram fake");
        let addr = listener.local_addr().expect("fake address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}"),
            ..fake
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, make: impl FnOnce(u64, &mut Inner) -> Value) -> u64 {
        let id = {
            let mut g = self.lock();
            let id = g.next_update;
            g.next_update += 1;
            let u = make(id, &mut g);
            g.queue.push_back((u, false));
            id
        };
        self.wake.notify_waiters();
        id
    }

    /// A user writes `text` in their private chat with the bot (chat id = user id).
    pub fn message(&self, user: u64, name: &str, text: &str) -> u64 {
        self.push(|id, g| {
            let m = g.next_message;
            g.next_message += 1;
            json!({"update_id": id, "message": {
                "message_id": m, "date": now(), "text": text,
                "chat": {"id": user, "type": "private", "first_name": name},
                "from": user_json(user, name),
            }})
        })
    }

    /// A user taps the button with `data` under the bot's message `message_id`.
    pub fn tap(&self, user: u64, name: &str, chat: i64, message_id: i64, data: &str) -> u64 {
        self.push(|id, g| {
            let text = g
                .messages
                .get(&(chat, message_id))
                .map(|m| m.0.clone())
                .unwrap_or_default();
            json!({"update_id": id, "callback_query": {
                "id": format!("cq{id}"), "from": user_json(user, name),
                "chat_instance": format!("ci{chat}"), "data": data,
                "message": bot_message(chat, message_id, &text, &Value::Null),
            }})
        })
    }

    /// Delivers update `id` once more, even if it was confirmed (Telegram may repeat one).
    pub fn duplicate(&self, id: u64) {
        let copy = {
            let g = self.lock();
            g.delivered.iter().find(|u| u["update_id"] == id).cloned()
        };
        if let Some(u) = copy {
            self.lock().queue.push_front((u, true));
            self.wake.notify_waiters();
        }
    }

    /// The next `times` calls of `method` get a 429 with `retry_after` seconds.
    pub fn throttle(&self, method: &str, times: u32, retry_after: u64) {
        self.lock()
            .throttled
            .insert(method.to_ascii_lowercase(), (times, retry_after));
    }

    pub fn calls(&self, method: &str) -> Vec<Value> {
        let m = method.to_ascii_lowercase();
        self.lock()
            .calls
            .iter()
            .filter(|c| c.method == m)
            .map(|c| c.body.clone())
            .collect()
    }

    /// Texts of the messages sent to `chat`, in order (as first sent).
    pub fn sent_texts(&self, chat: i64) -> Vec<String> {
        self.calls("sendMessage")
            .into_iter()
            .filter(|b| b["chat_id"].as_i64() == Some(chat))
            .filter_map(|b| b["text"].as_str().map(str::to_owned))
            .collect()
    }

    /// Every message in `chat` as it reads now: (message id, text, keyboard).
    pub fn chat(&self, chat: i64) -> Vec<(i64, String, Value)> {
        self.lock()
            .messages
            .iter()
            .filter(|((c, _), _)| *c == chat)
            .map(|((_, id), (t, kb))| (*id, t.clone(), kb.clone()))
            .collect()
    }

    /// The webhook the bridge registered: (url, secret token).
    pub fn webhook(&self) -> Option<(String, String)> {
        self.lock().webhook.clone()
    }

    /// Webhook delivery attempts so far: (update id, status; 0 = unreachable).
    pub fn pushes(&self) -> Vec<(u64, u16)> {
        self.lock().pushes.clone()
    }

    /// Updates still queued (not confirmed by the bridge).
    pub fn pending(&self) -> usize {
        self.lock().queue.len()
    }

    /// The message in `chat` whose text starts with `prefix`: (id, text, keyboard).
    pub fn find(&self, chat: i64, prefix: &str) -> Option<(i64, String, Value)> {
        self.chat(chat)
            .into_iter()
            .find(|m| m.1.starts_with(prefix))
    }

    /// The highest offset the bridge confirmed.
    pub fn confirmed(&self) -> u64 {
        self.lock().confirmed
    }

    /// Waits (up to `secs`) until `check` holds; panics with `what` otherwise.
    pub async fn wait_until(&self, secs: u64, what: &str, check: impl Fn(&Self) -> bool) {
        let end = tokio::time::Instant::now() + Duration::from_secs(secs);
        while !check(self) {
            if tokio::time::Instant::now() > end {
                let calls: Vec<String> = self
                    .lock()
                    .calls
                    .iter()
                    .filter(|c| c.method != "getupdates")
                    .map(|c| format!("{} {}", c.method, c.body))
                    .collect();
                panic!(
                    "timed out waiting for {what}; calls so far:\n{}",
                    calls.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn user_json(id: u64, name: &str) -> Value {
    json!({"id": id, "is_bot": false, "first_name": name, "username": name.to_lowercase()})
}

fn bot_message(chat: i64, id: i64, text: &str, kb: &Value) -> Value {
    let mut m = json!({
        "message_id": id, "date": now(), "text": text,
        "chat": {"id": chat, "type": "private", "first_name": "User"},
        "from": {"id": BOT_ID, "is_bot": true, "first_name": "Switchboard", "username": "switchboard_test_bot"},
    });
    if !kb.is_null() {
        m["reply_markup"] = kb.clone();
    }
    m
}

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

fn error(code: u16, description: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({"ok": false, "error_code": code, "description": description});
    (status, Json(body)).into_response()
}

async fn api(
    State(f): State<TelegramFake>,
    Path((bot, method)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    raw: axum::body::Bytes,
) -> Response {
    if !bot.starts_with("bot") {
        return error(404, "Not Found");
    }
    let method = method.to_ascii_lowercase();
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let body: Value = match content_type.split_once("boundary=") {
        Some((_, boundary)) => form_fields(&raw, boundary.trim_matches('"')),
        None => serde_json::from_slice(&raw).unwrap_or(Value::Null),
    };
    {
        let mut g = f.lock();
        if let Some((left, after)) = g.throttled.get_mut(&method)
            && *left > 0
        {
            *left -= 1;
            let after = *after;
            g.calls.push(Call {
                method: format!("{method}!429"),
                body: body.clone(),
            });
            let body = json!({"ok": false, "error_code": 429,
                "description": format!("Too Many Requests: retry after {after}"),
                "parameters": {"retry_after": after}});
            return (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
        }
    }
    if method == "getupdates" {
        if f.lock().webhook.is_some() {
            return error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            );
        }
        return get_updates(&f, body).await;
    }
    let mut g = f.lock();
    g.calls.push(Call {
        method: method.clone(),
        body: body.clone(),
    });
    match method.as_str() {
        "getme" => ok(
            json!({"id": BOT_ID, "is_bot": true, "first_name": "Switchboard",
            "username": "switchboard_test_bot", "can_join_groups": true,
            "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false}),
        ),
        "setwebhook" => {
            let url = body["url"].as_str().unwrap_or_default().to_owned();
            let secret = body["secret_token"].as_str().unwrap_or_default().to_owned();
            g.webhook = (!url.is_empty()).then_some((url, secret));
            if !std::mem::replace(&mut g.pusher, true) {
                tokio::spawn(push_loop(f.clone()));
            }
            drop(g);
            f.wake.notify_waiters();
            ok(json!(true))
        }
        "deletewebhook" => {
            g.webhook = None;
            ok(json!(true))
        }
        "answercallbackquery" | "sendchataction" => ok(json!(true)),
        "getwebhookinfo" => {
            ok(json!({"url": "", "has_custom_certificate": false, "pending_update_count": 0}))
        }
        "sendmessage" => {
            let chat = body["chat_id"].as_i64().unwrap_or_default();
            let text = body["text"].as_str().unwrap_or_default().to_owned();
            if text.chars().count() > 4096 {
                return error(400, "Bad Request: message is too long");
            }
            let id = g.next_message;
            g.next_message += 1;
            let kb = body.get("reply_markup").cloned().unwrap_or(Value::Null);
            g.messages.insert((chat, id), (text.clone(), kb.clone()));
            ok(bot_message(chat, id, &text, &kb))
        }
        "editmessagetext" => {
            let chat = body["chat_id"].as_i64().unwrap_or_default();
            let id = body["message_id"].as_i64().unwrap_or_default();
            let text = body["text"].as_str().unwrap_or_default().to_owned();
            let kb = body.get("reply_markup").cloned().unwrap_or(Value::Null);
            match g.messages.get_mut(&(chat, id)) {
                None => error(400, "Bad Request: message to edit not found"),
                Some(m) if m.0 == text && m.1 == kb => {
                    error(400, "Bad Request: message is not modified")
                }
                Some(m) => {
                    *m = (text.clone(), kb.clone());
                    ok(bot_message(chat, id, &text, &kb))
                }
            }
        }
        _ => error(404, "Not Found: method not found"),
    }
}

/// `getUpdates{offset, timeout}`: confirms updates before `offset`, then answers what is
/// queued, waiting up to `timeout` seconds (capped at 2 s here) for something to arrive.
async fn get_updates(f: &TelegramFake, body: Value) -> Response {
    let offset = body["offset"].as_u64().unwrap_or(0);
    let timeout = body["timeout"].as_u64().unwrap_or(0).min(2);
    let end = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let woken = f.wake.notified();
        {
            let mut g = f.lock();
            if offset > g.confirmed {
                g.confirmed = offset;
            }
            g.queue
                .retain(|(u, forced)| *forced || u["update_id"].as_u64().unwrap_or(0) >= offset);
            if !g.queue.is_empty() || tokio::time::Instant::now() >= end {
                let items: Vec<Value> = g.queue.iter().map(|(u, _)| u.clone()).collect();
                g.queue.retain(|(_, forced)| !forced);
                g.delivered.extend(items.iter().cloned());
                let mut recorded = body.clone();
                recorded["__delivered"] = json!(items);
                g.calls.push(Call {
                    method: "getupdates".into(),
                    body: recorded,
                });
                return ok(json!(items));
            }
        }
        let _ = tokio::time::timeout_at(end, woken).await;
    }
}

/// The text fields of a `multipart/form-data` body (teloxide sends `setWebhook` that way);
/// JSON-looking values (e.g. `allowed_updates`) are parsed.
fn form_fields(raw: &[u8], boundary: &str) -> Value {
    let text = String::from_utf8_lossy(raw);
    let mut fields = serde_json::Map::new();
    for part in text.split(&format!("--{boundary}")) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(name) = head
            .split("name=\"")
            .nth(1)
            .and_then(|n| n.split('"').next())
        else {
            continue;
        };
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let parsed = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        fields.insert(name.to_owned(), parsed);
    }
    Value::Object(fields)
}

/// Webhook mode: pushes the queue's head to the bridge until it answers 2xx, in order.
async fn push_loop(f: TelegramFake) {
    let http = reqwest::Client::new();
    loop {
        let woken = f.wake.notified();
        let next = {
            let g = f.lock();
            match (&g.webhook, g.queue.front()) {
                (Some((url, secret)), Some((u, _))) => {
                    Some((url.clone(), secret.clone(), u.clone()))
                }
                _ => None,
            }
        };
        let Some((url, secret, update)) = next else {
            let _ = tokio::time::timeout(Duration::from_millis(200), woken).await;
            continue;
        };
        let id = update["update_id"].as_u64().unwrap_or(0);
        let status = http
            .post(&url)
            .header("X-Telegram-Bot-Api-Secret-Token", &secret)
            .json(&update)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        let delivered = (200..300).contains(&status);
        {
            let mut g = f.lock();
            g.pushes.push((id, status));
            g.delivered.push(update.clone());
            if delivered && g.queue.front().map(|(u, _)| u["update_id"].as_u64()) == Some(Some(id))
            {
                g.queue.pop_front();
                g.confirmed = g.confirmed.max(id + 1);
            }
        }
        if !delivered {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// The callback data of the button labelled `label` in an inline keyboard.
pub fn button(kb: &Value, label: &str) -> String {
    kb["inline_keyboard"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row.as_array().cloned().unwrap_or_default())
        .find(|b| b["text"] == label)
        .and_then(|b| b["callback_data"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no button {label} in {kb}"))
}
