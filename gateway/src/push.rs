//! Web Push: notifications of prompts, reminders and escalations to the browsers of the
//! people who may answer them. A subscription is a `push` row of the webhook outbox
//! (`store::push`); the dispatcher (`webhooks`) asks this module whom a record concerns
//! and what to tell them, and the sender asks it to seal and sign one delivery: the
//! message is encrypted for the browser (aes128gcm, RFC 8291) and the request carries a
//! VAPID token (RFC 8292) signed with the gateway's key, which the store keeps.
//!
//! It never decides who may answer (`auth::approvers` does) and never answers anything;
//! a notification only opens the app's page of the run.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use protocol::{LedgerRecord, PushKeys, PushNotice, RecordStatus, RunStatus, RunSummary, Waiting};
use sha2::{Digest, Sha256};
use web_push::{
    ContentEncoding, PartialVapidSignatureBuilder, SubscriptionInfo, Urgency,
    VapidSignatureBuilder, WebPushMessageBuilder,
};

use crate::auth::approvers;
use crate::store::{Directory, HookKind, NewDelivery, Store, StoreError, TokenRow, Webhook};

/// Where the store keeps the VAPID private key (raw P-256 scalar, base64url).
const KEY: &str = "push_vapid_key";
/// How long a push service keeps a notification for an offline browser.
const TTL_SECS: u32 = 24 * 3600;
/// Longest prompt text in a notification (push messages carry at most about 3 KB).
const MAX_BODY: usize = 1000;
const MAX_CHOICES: usize = 10;
const MAX_CHOICE: usize = 60;

/// The gateway's VAPID key pair; the private half stays in the store and this process.
#[derive(Clone)]
pub(crate) struct Vapid {
    private: String,
    public: Vec<u8>,
    /// The `sub` claim: how a push service reaches the operator (`mailto:` or `https:`).
    contact: String,
}

impl std::fmt::Debug for Vapid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vapid")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

fn builder(private: &str) -> Option<PartialVapidSignatureBuilder> {
    VapidSignatureBuilder::from_base64_no_sub(private).ok()
}

impl Vapid {
    /// The stored key, made on first use (the same on every node).
    pub(crate) async fn load(store: &Store, contact: &str) -> Result<Self, StoreError> {
        // A random 32-byte string is a valid P-256 scalar but for a chance of ~2^-32.
        let fresh = (0..8)
            .map(|_| URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()))
            .find(|k| builder(k).is_some())
            .ok_or_else(|| StoreError::Invalid("cannot make a VAPID key".into()))?;
        let private = store.meta_or_insert(KEY, &fresh).await?;
        let b = builder(&private)
            .ok_or_else(|| StoreError::Corrupt("the stored VAPID key is not a P-256 key".into()))?;
        Ok(Self {
            public: b.get_public_key(),
            private,
            contact: contact.to_owned(),
        })
    }

    /// The public key, as browsers take it (`applicationServerKey`).
    pub(crate) fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.public)
    }
}

/// The VAPID `sub` claim for a gateway reached at `public_url`.
pub(crate) fn contact(public_url: Option<&str>) -> String {
    match public_url {
        Some(u) if u.starts_with("https://") => u.trim_end_matches('/').to_owned(),
        _ => "mailto:switchboard@localhost".into(),
    }
}

/// Checks a browser's subscription: an https endpoint (or one `SWITCHBOARD_HTTP_ALLOW`
/// lets through, for a push service on this network) and well-formed keys.
pub(crate) fn check_subscription(
    req: &protocol::PushSubscriptionRequest,
    net: &crate::net::NetPolicy,
) -> Result<(), String> {
    if req.endpoint.len() > 2048 {
        return Err("`endpoint` is longer than 2048 characters".into());
    }
    let url =
        url::Url::parse(&req.endpoint).map_err(|e| format!("`endpoint` is not a URL: {e}"))?;
    let https = url.scheme() == "https";
    if !(https || url.scheme() == "http" && net.lists(&url)) || url.host().is_none() {
        return Err("`endpoint` must be an https URL of a push service".into());
    }
    net.check_url(&url)
        .map_err(|e| format!("`endpoint`: {e}"))?;
    let decode =
        |field: &str, v: &str, len: usize| match URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')) {
            Ok(b) if b.len() == len && (len != 65 || b[0] == 4) => Ok(()),
            _ => Err(format!(
                "`keys.{field}` must be {len} bytes in base64url{}",
                if len == 65 {
                    " (an uncompressed P-256 point)"
                } else {
                    ""
                }
            )),
        };
    decode("p256dh", &req.keys.p256dh, 65)?;
    decode("auth", &req.keys.auth, 16)
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

/// Whether the holder of `token` may answer `w` now: it may send commands, is one of the
/// approvers (when there are any), and has not voted yet.
fn may_answer(dir: &Directory, w: &Waiting, token: &TokenRow) -> bool {
    let commands =
        token.kind == "admin" || token.scopes.iter().any(|s| s == "command" || s == "admin");
    if !commands || token.revoked_at.is_some() {
        return false;
    }
    if w.approvers.is_empty() {
        return true;
    }
    let ids = vec![match token.kind.as_str() {
        "admin" => "admin".to_owned(),
        k => format!("{k}:{}", token.name),
    }];
    let voter = approvers::voter(dir, &ids);
    approvers::admits(dir, &w.approvers, &ids)
        && approvers::vote_of(dir, &w.votes, &voter).is_none()
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The notification for `w`, prompted by a record of `kind`.
pub(crate) fn notice(kind: &str, run: &RunSummary, w: &Waiting) -> PushNotice {
    let title = match kind {
        "reminder" => format!("Reminder: {} is still waiting", run.bundle_id),
        "escalation" => format!("Escalated: {} needs an answer", run.bundle_id),
        _ => format!("{} asks", run.bundle_id),
    };
    PushNotice {
        kind: kind.into(),
        title,
        body: clip(
            w.prompt.as_deref().unwrap_or("An answer is needed."),
            MAX_BODY,
        ),
        run_id: run.run_id.clone(),
        wait_key: w.wait_key.clone(),
        choices: w
            .choices
            .iter()
            .take(MAX_CHOICES)
            .map(|c| clip(c, MAX_CHOICE))
            .collect(),
        url: format!("/app/runs/{}", run.run_id),
        tag: format!("{}/{}", run.run_id, w.wait_key),
    }
}

/// Who is who, read once per dispatched page that has something to push.
#[derive(Default)]
pub(crate) struct Audience {
    loaded: Option<(Directory, HashMap<String, TokenRow>)>,
}

impl Audience {
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
        let Some(w) = run.waiting.as_ref().filter(|w| {
            run.status == RunStatus::Waiting
                && w.is_for_a_person()
                && Some(w.wait_key.as_str()) == wait_key
        }) else {
            return Ok(Vec::new());
        };
        if subs.is_empty() {
            return Ok(Vec::new());
        }
        if self.loaded.is_none() {
            let tokens = store.tokens().await?.into_iter().map(|t| (t.id.clone(), t));
            self.loaded = Some((store.directory().await?, tokens.collect()));
        }
        let Some((dir, tokens)) = &self.loaded else {
            return Ok(Vec::new());
        };
        let payload = serde_json::to_value(notice(kind, run, w))?;
        Ok(subs
            .into_iter()
            .filter(|h| {
                let owner = h.owner.as_ref().and_then(|o| tokens.get(o));
                owner.is_some_and(|t| may_answer(dir, w, t))
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

/// What became of one push.
pub(crate) enum Pushed {
    /// The push service answered (2xx: taken).
    Answered(reqwest::Response),
    /// The subscription is gone (404/410): it is removed, and never tried again.
    Gone(u16),
}

/// Seals `payload` for the subscription (`endpoint`, its keys in `secret`) and posts it.
pub(crate) async fn send(
    http: &crate::net::Outbound,
    vapid: &Vapid,
    timeout: std::time::Duration,
    (endpoint, secret, payload): (&str, &str, &str),
) -> Result<Pushed, String> {
    let url = url::Url::parse(endpoint).map_err(|e| format!("bad endpoint: {e}"))?;
    http.policy.check_url(&url)?;
    let keys: PushKeys =
        serde_json::from_str(secret).map_err(|_| "the stored keys are damaged".to_owned())?;
    let info = SubscriptionInfo::new(endpoint.to_owned(), keys.p256dh, keys.auth);
    let mut sig = VapidSignatureBuilder::from_base64(&vapid.private, &info)
        .map_err(|e| format!("cannot sign: {e}"))?;
    sig.add_claim("sub", vapid.contact.as_str());
    // RFC 8292 says `aud` is the push resource's origin, port included; the crate's
    // default drops the port.
    sig.add_claim("aud", url.origin().ascii_serialization());
    let sig = sig.build().map_err(|e| format!("cannot sign: {e}"))?;
    let mut msg = WebPushMessageBuilder::new(&info);
    msg.set_payload(ContentEncoding::Aes128Gcm, payload.as_bytes());
    msg.set_vapid_signature(sig);
    msg.set_ttl(TTL_SECS);
    msg.set_urgency(Urgency::High);
    // One queued message per prompt at the push service: a reminder replaces the prompt.
    let topic = hex::encode(&Sha256::digest(payload_tag(payload).as_bytes())[..16]);
    msg.set_topic(topic);
    let msg = msg
        .build()
        .map_err(|e| format!("cannot seal the message: {e}"))?;
    let req = web_push::request_builder::build_request::<Vec<u8>>(msg);
    let mut out = http.client.post(url).timeout(timeout);
    for (name, value) in req.headers() {
        out = out.header(name.as_str(), value.as_bytes());
    }
    let res = out
        .body(req.into_body())
        .send()
        .await
        .map_err(|e| format!("cannot reach the push service: {}", crate::net::explain(&e)))?;
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
#[path = "push_tests.rs"]
mod tests;
