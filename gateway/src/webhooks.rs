//! Outbound webhooks: a dispatcher that follows the global ledger from a stored cursor and
//! puts one delivery per (event, subscriber) into the durable outbox, and a sender that
//! posts due deliveries, signed, retrying with exponential back-off.
//!
//! Events: `run.waiting` (an `ask`), `run.completed`, `run.failed`, `run.cancelled`. The
//! outbox and the cursor move in one transaction (`store::hooks`), so a restart resumes
//! exactly; a receiver sees each delivery id until it answers 2xx, then never again. This
//! module does not decide what runs do; it only reports what the ledger says.

use std::sync::Arc;
use std::time::Duration;

use protocol::{LedgerRecord, RecordStatus, WebhookRequest};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::push::{PushError, Pushed, Vapid};
use crate::store::{
    Attempt, DueDelivery, HookKind, NewDelivery, Store, StoreError, Webhook, now_ms,
};

/// Events a subscription may ask for.
pub(crate) const EVENTS: &[&str] = &[
    "run.waiting",
    "run.completed",
    "run.failed",
    "run.cancelled",
];

const PAGE: u32 = 500;
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Retry policy of the sender.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Delay after the first failure; doubles with each further one (capped at 10 minutes).
    pub(crate) base: Duration,
    /// Attempts before a delivery is marked `failed`.
    pub(crate) max_attempts: u32,
    /// Per-request timeout.
    pub(crate) timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            max_attempts: 10,
            timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// When to try again after `attempts` failed attempts, or `None` to give up.
    pub(crate) fn next_try_ms(&self, attempts: u32, now_ms: i64) -> Option<i64> {
        if attempts >= self.max_attempts {
            return None;
        }
        let factor = 2u64.saturating_pow(attempts.saturating_sub(1).min(20));
        let delay = (self.base.as_millis() as u64)
            .saturating_mul(factor)
            .min(600_000);
        Some(now_ms + delay as i64)
    }
}

/// The event a ledger record stands for, if any.
pub(crate) fn event_of(r: &LedgerRecord) -> Option<&'static str> {
    match (r.status, r.effect_kind()) {
        (RecordStatus::Waiting, "ask") => Some("run.waiting"),
        (RecordStatus::Completed, "run_completed") => Some("run.completed"),
        (RecordStatus::Failed, "run_failed") => Some("run.failed"),
        (RecordStatus::Cancelled, "run_cancelled") => Some("run.cancelled"),
        _ => None,
    }
}

/// How the sender reaches receivers.
pub(crate) struct Sender {
    pub(crate) policy: RetryPolicy,
    /// Public addresses only, unless `SWITCHBOARD_HTTP_ALLOW` says otherwise.
    pub(crate) out: crate::net::Outbound,
    /// The VAPID `sub` claim of Web Push requests.
    pub(crate) contact: String,
}

/// Starts the dispatcher and the sender; they run until the process ends.
pub(crate) fn spawn(store: Store, sender: Sender) {
    let wake_sender = Arc::new(Notify::new());
    tokio::spawn(dispatch(store.clone(), wake_sender.clone()));
    tokio::spawn(send_loop(store, Arc::new(sender), wake_sender));
}

/// What one dispatch step found.
enum Dispatched {
    /// A page went into the outbox; there may be more.
    Page,
    /// Caught up with the ledger.
    CaughtUp,
    /// Nobody is subscribed: nothing is read.
    NoSubscribers,
}

async fn dispatch(store: Store, wake_sender: Arc<Notify>) {
    let mut bus = store.bus().subscribe();
    let mut cursor = None;
    loop {
        match dispatch_once(&store, &mut cursor).await {
            Ok(Dispatched::Page) => {
                wake_sender.notify_one();
                continue;
            }
            Ok(Dispatched::CaughtUp) => {
                // Wait for news: a committed record (in this process) or the poll (split mode).
                let _ = tokio::time::timeout(IDLE_POLL, bus.recv()).await;
            }
            // Without subscribers commits do not wake the dispatcher (they would cost a
            // read each under load); a new subscription is seen at the next poll.
            Ok(Dispatched::NoSubscribers) => tokio::time::sleep(IDLE_POLL).await,
            Err(e) => {
                tracing::warn!(error = %e, "webhook dispatcher: store error; retrying");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
        bus = bus.resubscribe();
    }
}

/// One page of the global ledger into the outbox.
async fn dispatch_once(store: &Store, cursor: &mut Option<u64>) -> Result<Dispatched, StoreError> {
    let hooks = store.webhooks().await?;
    let Some(start) = hooks.iter().map(|h| h.from_gseq).min() else {
        return Ok(Dispatched::NoSubscribers);
    };
    let stored = match *cursor {
        Some(c) => c,
        None => store.webhook_cursor().await?.unwrap_or(0),
    };
    let after = stored.max(start);
    let page = store.global_page(after, PAGE).await?;
    let Some(last) = page.last().map(|i| i.gseq) else {
        *cursor = Some(after);
        return Ok(Dispatched::CaughtUp);
    };
    let mut items = Vec::new();
    let mut audience = crate::push::Audience::default();
    for it in &page {
        let Ok(rec) = serde_json::from_str::<LedgerRecord>(&it.json) else {
            continue;
        };
        let (event, notice) = (event_of(&rec), crate::push::notice_kind(&rec));
        if event.is_none() && notice.is_none() {
            continue;
        }
        let run = store.run(&it.run_id).await?;
        if let Some(kind) = notice {
            let pushes = audience.deliveries(store, &hooks, it.gseq, (kind, &rec), &run);
            items.extend(pushes.await?);
        }
        let Some(event) = event else {
            continue;
        };
        for h in hooks.iter().filter(|h| {
            h.kind == HookKind::Webhook && it.gseq > h.from_gseq && h.wants(event, &run.bundle_id)
        }) {
            items.push(NewDelivery {
                webhook_id: h.info.id.clone(),
                event: event.into(),
                run_id: it.run_id.clone(),
                gseq: it.gseq,
                payload: payload(event, &rec, &run),
            });
        }
    }
    store.enqueue_deliveries(last, items).await?;
    *cursor = Some(last);
    Ok(Dispatched::Page)
}

fn payload(event: &str, rec: &LedgerRecord, run: &protocol::RunSummary) -> Value {
    let mut p = json!({
        "event": event,
        "occurred_at": rec.ended_at.as_deref().unwrap_or(&rec.started_at),
        "run": {
            "run_id": run.run_id, "bundle_id": run.bundle_id, "session_id": run.session_id,
            "status": run.status.as_str(),
        },
        "seq": rec.seq,
    });
    match event {
        "run.waiting" => {
            let e = rec.effect.as_ref().map(|e| &e.payload);
            p["prompt"] = json!({
                "wait_key": e.and_then(|e| e.get("wait_key")),
                "prompt": e.and_then(|e| e.get("prompt")),
                "choices": e.and_then(|e| e.get("choices")),
            });
        }
        "run.completed" => p["run"]["output"] = json!(run.output),
        _ => p["run"]["error"] = json!(run.error.clone().or(rec.error.clone())),
    }
    p
}

async fn send_loop(store: Store, sender: Arc<Sender>, wake: Arc<Notify>) {
    let vapid = tokio::sync::OnceCell::new();
    loop {
        let next = match store.due_deliveries(32).await {
            Ok((due, next)) => {
                let busy = !due.is_empty();
                let sends = due
                    .into_iter()
                    .map(|d| send_one(&store, &sender, &vapid, d));
                futures::future::join_all(sends).await;
                if busy {
                    continue;
                }
                next
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhook sender: store error; retrying");
                None
            }
        };
        let wait = next
            .map(|at| Duration::from_millis((at - now_ms()).clamp(0, 1000) as u64))
            .unwrap_or(IDLE_POLL);
        let _ = tokio::time::timeout(wait, wake.notified()).await;
    }
}

/// POSTs one delivery, signed; a refused destination is a failed attempt like any other.
async fn post(
    http: &crate::net::Outbound,
    policy: &RetryPolicy,
    d: &DueDelivery,
) -> Result<reqwest::Response, String> {
    let url = url::Url::parse(&d.url).map_err(|e| format!("bad URL: {e}"))?;
    http.policy.check_url(&url)?;
    let ts = chrono::Utc::now().timestamp().to_string();
    let sig = crate::signing::sign(&d.secret, &ts, d.payload.as_bytes());
    http.client
        .post(url)
        .timeout(policy.timeout)
        .header(
            "user-agent",
            concat!("switchboard/", env!("CARGO_PKG_VERSION")),
        )
        .header("content-type", "application/json")
        .header("x-switchboard-event", &d.event)
        .header("x-switchboard-delivery", &d.id)
        .header("x-switchboard-timestamp", &ts)
        .header("x-switchboard-signature", sig)
        .body(d.payload.clone())
        .send()
        .await
        .map_err(|e| format!("cannot reach the receiver: {}", crate::net::explain(&e)))
}

/// Sends a push delivery, unless it went stale while it waited (the prompt was answered,
/// its owner voted or was revoked). A subscription the push service says is gone is
/// removed; a push that cannot be sealed, or that the service refuses (4xx but 408 and
/// 429), is not tried again.
async fn push(
    store: &Store,
    sender: &Sender,
    vapid: &tokio::sync::OnceCell<Vapid>,
    d: &DueDelivery,
) -> Attempt {
    let retry = |status: Option<u16>, error: String| Attempt::Failed {
        status,
        error,
        retry_at_ms: sender.policy.next_try_ms(d.attempts + 1, now_ms()),
    };
    match crate::push::stale(store, d.owner.as_deref(), &d.payload).await {
        Ok(Some(reason)) => {
            return Attempt::Cancelled {
                reason: reason.into(),
            };
        }
        Ok(None) => {}
        Err(e) => return retry(None, format!("cannot read the prompt: {e}")),
    }
    let vapid = match vapid.get_or_try_init(|| Vapid::load(store)).await {
        Ok(v) => v,
        Err(e) => return retry(None, format!("no VAPID key: {e}")),
    };
    let sealed = crate::push::Sealed {
        endpoint: &d.url,
        keys: &d.secret,
        payload: &d.payload,
    };
    let signer = (vapid, sender.contact.as_str());
    match crate::push::send(&sender.out, signer, sender.policy.timeout, sealed).await {
        Ok(Pushed::Answered(r)) if r.status().is_success() => Attempt::Delivered {
            status: r.status().as_u16(),
        },
        Ok(Pushed::Answered(r)) => {
            let status = r.status().as_u16();
            let error = format!("the push service answered {}", r.status());
            match status {
                408 | 429 | 500.. => retry(Some(status), error),
                _ => Attempt::Failed {
                    status: Some(status),
                    error,
                    retry_at_ms: None,
                },
            }
        }
        Ok(Pushed::Gone(status)) => {
            if let Err(e) = store.unsubscribe_push(&d.webhook_id, None).await {
                tracing::warn!(subscription = %d.webhook_id, error = %e, "cannot remove a push subscription");
            }
            Attempt::Failed {
                status: Some(status),
                error: format!("the push service answered {status}: the subscription is gone"),
                retry_at_ms: None,
            }
        }
        Err(PushError::Retry(error)) => retry(None, error),
        Err(PushError::Final(error)) => Attempt::Failed {
            status: None,
            error,
            retry_at_ms: None,
        },
    }
}

async fn send_one(
    store: &Store,
    sender: &Sender,
    vapid: &tokio::sync::OnceCell<Vapid>,
    d: DueDelivery,
) {
    let (http, policy) = (&sender.out, &sender.policy);
    if d.kind == HookKind::Push {
        let attempt = push(store, sender, vapid, &d).await;
        return record(store, &d, attempt).await;
    }
    let attempt = match post(http, policy, &d).await {
        Ok(r) if r.status().is_success() => Attempt::Delivered {
            status: r.status().as_u16(),
        },
        Ok(r) => Attempt::Failed {
            status: Some(r.status().as_u16()),
            error: format!("the receiver answered {}", r.status()),
            retry_at_ms: policy.next_try_ms(d.attempts + 1, now_ms()),
        },
        Err(error) => Attempt::Failed {
            status: None,
            error,
            retry_at_ms: policy.next_try_ms(d.attempts + 1, now_ms()),
        },
    };
    record(store, &d, attempt).await;
}

async fn record(store: &Store, d: &DueDelivery, attempt: Attempt) {
    if let Attempt::Failed { error, .. } = &attempt {
        tracing::info!(delivery = %d.id, attempts = d.attempts + 1, %error, "webhook delivery failed");
    }
    if let Err(e) = store.record_attempt(&d.id, attempt).await {
        tracing::warn!(delivery = %d.id, error = %e, "cannot record a webhook attempt");
    }
}

/// Builds a subscription from an API request (its shape already checked by serde; here
/// what serde cannot say: the URL, the event names). `net` refuses a literal private
/// address at once (names are checked at each delivery).
pub(crate) fn new_webhook(
    req: WebhookRequest,
    net: &crate::net::NetPolicy,
) -> Result<Webhook, String> {
    let url = req.url.as_str();
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            net.check_url(&u).map_err(|e| format!("`url`: {e}"))?;
        }
        _ => return Err(format!("`url` `{url}` is not an http(s) URL")),
    }
    let mut events = req.events;
    if events.is_empty() {
        events = EVENTS.iter().map(|e| (*e).to_owned()).collect();
    }
    if let Some(bad) = events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
        return Err(format!(
            "`events`: `{bad}` is not an event; use {}",
            EVENTS.join(", ")
        ));
    }
    let secret: [u8; 24] = rand::random();
    let info = protocol::WebhookInfo {
        id: format!("wh_{}", uuid::Uuid::new_v4().simple()),
        url: req.url,
        events,
        flows: req.flows,
        created_at: crate::engine::ts(chrono::Utc::now()),
    };
    Ok(Webhook {
        info,
        secret: format!("whsec_{}", hex::encode(secret)),
        from_gseq: 0,
        kind: crate::store::HookKind::Webhook,
        owner: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_and_gives_up() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            max_attempts: 4,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(p.next_try_ms(1, 0), Some(100));
        assert_eq!(p.next_try_ms(2, 0), Some(200));
        assert_eq!(p.next_try_ms(3, 0), Some(400));
        assert_eq!(p.next_try_ms(4, 0), None);
    }

    #[test]
    fn a_webhook_request_names_its_bad_field() {
        let net = crate::net::NetPolicy::default();
        let req = |v: Value| serde_json::from_value::<WebhookRequest>(v);
        let e = |v: Value| new_webhook(req(v).unwrap(), &net).unwrap_err();
        let shape = |v: Value| req(v).unwrap_err().to_string();
        assert!(shape(json!({})).contains("`url`"));
        assert!(e(json!({"url": "ftp://x"})).contains("http(s)"));
        assert!(e(json!({"url": "http://x", "events": ["run.done"]})).contains("run.done"));
        assert!(shape(json!({"url": "http://x", "flows": "chat"})).contains("sequence"));
        assert!(shape(json!({"url": "http://x", "colour": 1})).contains("colour"));
        let metadata = e(json!({"url": "http://169.254.169.254/latest/meta-data"}));
        assert!(metadata.contains("SWITCHBOARD_HTTP_ALLOW"), "{metadata}");
        let hook = json!({"url": "http://x/hook", "flows": ["chat"]});
        let w = new_webhook(req(hook).unwrap(), &net).unwrap();
        assert_eq!(w.info.events.len(), 4);
        assert!(w.wants("run.failed", "chat") && !w.wants("run.failed", "echo"));
    }
}
