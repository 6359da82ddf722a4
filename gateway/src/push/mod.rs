//! Web Push: notifications of prompts, reminders and escalations to the browsers of the
//! people who may answer them. A subscription is a `push` row of the webhook outbox
//! (`store::push`); the dispatcher (`webhooks`) asks this module whom a record concerns
//! and what to tell them, and the sender asks it to seal and sign one delivery: the
//! message is encrypted for the browser ([`seal`]: aes128gcm, RFC 8291) and the request
//! carries a VAPID token ([`vapid`]: RFC 8292) signed with the gateway's key, which the
//! store keeps.
//!
//! It never decides who may answer (`auth::approvers` does) and never answers anything;
//! a notification only opens the app's page of the run.

mod seal;
mod vapid;

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use protocol::{LedgerRecord, PushKeys, PushNotice, RecordStatus, RunStatus, RunSummary, Waiting};
use sha2::{Digest, Sha256};

pub(crate) use vapid::Vapid;

use crate::auth::approvers;
use crate::store::{Directory, HookKind, NewDelivery, Store, StoreError, TokenRow, Webhook};

/// How long a push service keeps a notification for an offline browser.
const TTL_SECS: u32 = 24 * 3600;
/// Longest prompt text in a notification, in bytes.
const MAX_BODY: usize = 1000;
const MAX_CHOICES: usize = 10;
/// Largest notice, as JSON (the outbox adds the delivery id); [`seal::MAX_PLAINTEXT`] is
/// the hard limit.
const BUDGET: usize = 3800;

/// The VAPID `sub` claim: `SWITCHBOARD_PUSH_CONTACT`, else the public URL when it is https.
pub(crate) fn contact(configured: Option<&str>, public_url: Option<&str>) -> String {
    match (configured, public_url) {
        (Some(c), _) => c.to_owned(),
        (None, Some(u)) if u.starts_with("https://") => u.trim_end_matches('/').to_owned(),
        _ => "mailto:switchboard@localhost".into(),
    }
}

/// Whether `url` is at one of `services` (`host`, `*.domain`; `http://host` also allows
/// plain http).
fn known_service(url: &url::Url, services: &[String]) -> bool {
    let Some(host) = url
        .host_str()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
    else {
        return false;
    };
    services.iter().any(|s| {
        let (http, pattern) = match s.strip_prefix("http://") {
            Some(p) => (true, p.to_ascii_lowercase()),
            None => (false, s.to_ascii_lowercase()),
        };
        let scheme = url.scheme() == "https" || http && url.scheme() == "http";
        let host_ok = match pattern.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == pattern,
        };
        scheme && host_ok
    })
}

/// Checks a browser's subscription: an endpoint at a known push service
/// (`SWITCHBOARD_PUSH_SERVICES`), and keys that can seal a message. Returns the keys
/// without padding, as the sealing code reads them.
pub(crate) fn check_subscription(
    req: &protocol::PushSubscriptionRequest,
    net: &crate::net::NetPolicy,
) -> Result<PushKeys, String> {
    if req.endpoint.len() > 2048 {
        return Err("`endpoint` is longer than 2048 characters".into());
    }
    let url =
        url::Url::parse(&req.endpoint).map_err(|e| format!("`endpoint` is not a URL: {e}"))?;
    if !known_service(&url, &net.push_services) {
        return Err(format!(
            "`endpoint`: {} is not a push service this gateway sends to (https at {}; SWITCHBOARD_PUSH_SERVICES)",
            url.origin().ascii_serialization(),
            net.push_services.join(", ")
        ));
    }
    net.check_url(&url)
        .map_err(|e| format!("`endpoint`: {e}"))?;
    let decode =
        |field: &str, v: &str, len: usize| match URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')) {
            Ok(b) if b.len() == len && (len != 65 || b[0] == 4) => {
                Ok(v.trim_end_matches('=').to_owned())
            }
            _ => Err(format!(
                "`keys.{field}` must be {len} bytes in base64url{}",
                if len == 65 {
                    " (an uncompressed P-256 point)"
                } else {
                    ""
                }
            )),
        };
    let keys = PushKeys {
        p256dh: decode("p256dh", &req.keys.p256dh, 65)?,
        auth: decode("auth", &req.keys.auth, 16)?,
    };
    // A key that is not on the curve would fail every push: seal a trial message now.
    let (ua, auth) = raw_keys(&keys).map_err(|_| "`keys` are not base64url".to_owned())?;
    seal::seal(&ua, &auth, b"{}")
        .map_err(|_| "`keys.p256dh` is not a point on the P-256 curve".to_owned())?;
    Ok(keys)
}

/// The browser's key and auth secret, decoded.
fn raw_keys(keys: &PushKeys) -> Result<(Vec<u8>, Vec<u8>), base64::DecodeError> {
    Ok((
        URL_SAFE_NO_PAD.decode(&keys.p256dh)?,
        URL_SAFE_NO_PAD.decode(&keys.auth)?,
    ))
}

/// What a record tells the people who may answer its prompt, if anything.
pub(crate) fn notice_kind(rec: &LedgerRecord) -> Option<&'static str> {
    match (rec.status, rec.effect_kind()) {
        (RecordStatus::Waiting, "ask") => Some("prompt"),
        (RecordStatus::Completed, "remind") => Some("reminder"),
        (RecordStatus::Completed, "escalate") => Some("escalation"),
        _ => None,
    }
}

/// Whether the holder of `token` should be told of `w` now: it may send commands, is one of
/// the approvers (when there are any) and has not voted. A prompt without approvers in a
/// conversation (a Telegram chat, a mail thread, a `/v1` session) is its owner's turn:
/// nobody's phone is told.
fn may_answer(dir: &Directory, run: &RunSummary, w: &Waiting, token: &TokenRow) -> bool {
    let commands =
        token.kind == "admin" || token.scopes.iter().any(|s| s == "command" || s == "admin");
    if !commands || token.revoked_at.is_some() {
        return false;
    }
    if w.approvers.is_empty() {
        return run.session_id.is_none();
    }
    let ids = vec![match token.kind.as_str() {
        "admin" => "admin".to_owned(),
        k => format!("{k}:{}", token.name),
    }];
    let voter = approvers::voter(dir, &ids);
    approvers::admits(dir, &w.approvers, &ids)
        && approvers::vote_of(dir, &w.votes, &voter).is_none()
}

/// `s` cut to at most `max` bytes (at a character boundary), with `…` when cut.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn size(n: &PushNotice) -> usize {
    serde_json::to_vec(n).map_or(usize::MAX, |v| v.len())
}

/// The notification for `w`, prompted by a record of `kind`: the prompt shortened (then
/// the last choices dropped) until it fits a push message. Choices are never cut: each
/// must match a button of the run's page.
pub(crate) fn notice(kind: &str, run: &RunSummary, w: &Waiting) -> PushNotice {
    let title = match kind {
        "reminder" => format!("Reminder: {} is still waiting", run.bundle_id),
        "escalation" => format!("Escalated: {} needs an answer", run.bundle_id),
        _ => format!("{} asks", run.bundle_id),
    };
    let mut n = PushNotice {
        kind: kind.into(),
        title: clip(&title, 200),
        body: clip(
            w.prompt.as_deref().unwrap_or("An answer is needed."),
            MAX_BODY,
        ),
        run_id: run.run_id.clone(),
        wait_key: w.wait_key.clone(),
        choices: w.choices.iter().take(MAX_CHOICES).cloned().collect(),
        url: format!("/app/runs/{}", run.run_id),
        tag: format!("{}/{}", run.run_id, w.wait_key),
    };
    while size(&n) > BUDGET {
        if n.body.len() > 8 {
            n.body = clip(&n.body, n.body.len() / 2);
        } else if n.choices.pop().is_none() {
            n.body.clear();
            break;
        }
    }
    n
}

/// Who is who, read once per dispatched page that has something to push.
#[derive(Default)]
pub(crate) struct Audience {
    loaded: Option<(Directory, HashMap<String, TokenRow>)>,
}

/// The prompt `run` waits on, if it still waits on `wait_key` for a person.
fn waiting_on<'a>(run: &'a RunSummary, wait_key: Option<&str>) -> Option<&'a Waiting> {
    run.waiting.as_ref().filter(|w| {
        run.status == RunStatus::Waiting
            && w.is_for_a_person()
            && Some(w.wait_key.as_str()) == wait_key
    })
}

impl Audience {
    async fn load(
        &mut self,
        store: &Store,
    ) -> Result<&(Directory, HashMap<String, TokenRow>), StoreError> {
        if self.loaded.is_none() {
            let tokens = store.tokens().await?.into_iter().map(|t| (t.id.clone(), t));
            self.loaded = Some((store.directory().await?, tokens.collect()));
        }
        self.loaded
            .as_ref()
            .ok_or_else(|| StoreError::Invalid("the directory is not loaded".into()))
    }

    /// One delivery per push subscription whose owner may answer the prompt `rec` speaks
    /// of, if the run still waits on it.
    pub(crate) async fn deliveries(
        &mut self,
        store: &Store,
        hooks: &[Webhook],
        gseq: u64,
        (kind, rec): (&str, &LedgerRecord),
        run: &RunSummary,
    ) -> Result<Vec<NewDelivery>, StoreError> {
        let subs: Vec<&Webhook> = hooks
            .iter()
            .filter(|h| h.kind == HookKind::Push && gseq > h.from_gseq)
            .collect();
        let wait_key = rec
            .effect_payload()
            .get("wait_key")
            .and_then(|k| k.as_str());
        let Some(w) = waiting_on(run, wait_key).filter(|_| !subs.is_empty()) else {
            return Ok(Vec::new());
        };
        let (dir, tokens) = self.load(store).await?;
        let payload = serde_json::to_value(notice(kind, run, w))?;
        Ok(subs
            .into_iter()
            .filter(|h| {
                let owner = h.owner.as_ref().and_then(|o| tokens.get(o));
                owner.is_some_and(|t| may_answer(dir, run, w, t))
            })
            .map(|h| NewDelivery {
                webhook_id: h.info.id.clone(),
                event: format!("push.{kind}"),
                run_id: run.run_id.clone(),
                gseq,
                payload: payload.clone(),
            })
            .collect())
    }
}

/// Why a push that is due should not go out any more (the prompt was answered, or its
/// owner voted, lost the right to answer or was revoked), if so.
pub(crate) async fn stale(
    store: &Store,
    owner: Option<&str>,
    payload: &str,
) -> Result<Option<&'static str>, StoreError> {
    let notice: serde_json::Value = serde_json::from_str(payload)?;
    let (Some(run_id), wait_key) = (
        notice.get("run_id").and_then(|v| v.as_str()),
        notice.get("wait_key").and_then(|v| v.as_str()),
    ) else {
        return Ok(Some("the notice names no run"));
    };
    let run = match store.run(run_id).await {
        Ok(r) => r,
        Err(StoreError::NotFound(_)) => return Ok(Some("the run is gone")),
        Err(e) => return Err(e),
    };
    let Some(w) = waiting_on(&run, wait_key) else {
        return Ok(Some("the prompt no longer waits"));
    };
    let mut audience = Audience::default();
    let (dir, tokens) = audience.load(store).await?;
    let owner = owner.and_then(|o| tokens.get(o));
    Ok(match owner.is_some_and(|t| may_answer(dir, &run, w, t)) {
        true => None,
        false => Some("its owner may not answer it now (voted, or revoked)"),
    })
}

/// What became of one push.
pub(crate) enum Pushed {
    /// The push service answered (2xx: taken).
    Answered(reqwest::Response),
    /// The subscription is gone (404/410): it is removed, and never tried again.
    Gone(u16),
}

/// Why a push did not go out: worth another try (the network) or not (it cannot be sealed).
pub(crate) enum PushError {
    Retry(String),
    Final(String),
}

/// Where one push goes and what it says: the endpoint, the browser's keys (JSON), the
/// notice (JSON).
pub(crate) struct Sealed<'a> {
    pub(crate) endpoint: &'a str,
    pub(crate) keys: &'a str,
    pub(crate) payload: &'a str,
}

/// Seals the notice for the subscription and posts it, signed as `contact`.
pub(crate) async fn send(
    http: &crate::net::Outbound,
    (vapid, contact): (&Vapid, &str),
    timeout: std::time::Duration,
    m: Sealed<'_>,
) -> Result<Pushed, PushError> {
    let url =
        url::Url::parse(m.endpoint).map_err(|e| PushError::Final(format!("bad endpoint: {e}")))?;
    http.policy.check_url(&url).map_err(PushError::Final)?;
    let keys: PushKeys = serde_json::from_str(m.keys)
        .map_err(|_| PushError::Final("the stored keys are damaged".into()))?;
    let (ua, auth) =
        raw_keys(&keys).map_err(|_| PushError::Final("the stored keys are damaged".into()))?;
    let body = seal::seal(&ua, &auth, m.payload.as_bytes())
        .map_err(|e| PushError::Final(format!("cannot seal the message: {e}")))?;
    // RFC 8292: `aud` is the push resource's origin, port included.
    let audience = url.origin().ascii_serialization();
    let signed = vapid
        .authorization(&audience, contact, chrono::Utc::now().timestamp())
        .map_err(PushError::Final)?;
    // One queued message per prompt at the push service: a reminder replaces the prompt.
    let topic = hex::encode(&Sha256::digest(payload_tag(m.payload).as_bytes())[..16]);
    let req = http
        .client
        .post(url)
        .timeout(timeout)
        .header("ttl", TTL_SECS.to_string())
        .header("urgency", "high")
        .header("topic", topic)
        .header("content-encoding", "aes128gcm")
        .header("content-type", "application/octet-stream")
        .header("authorization", signed)
        .body(body);
    // The endpoint is the browser's secret: errors are logged without it.
    let res = req.send().await.map_err(|e| {
        let e = e.without_url();
        PushError::Retry(format!(
            "cannot reach the push service: {}",
            crate::net::explain(&e)
        ))
    })?;
    match res.status().as_u16() {
        s @ (404 | 410) => Ok(Pushed::Gone(s)),
        _ => Ok(Pushed::Answered(res)),
    }
}

fn payload_tag(payload: &str) -> String {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("tag").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
