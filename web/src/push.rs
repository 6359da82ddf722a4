//! Notifications on this device (Web Push): the page asks the browser for a subscription
//! made with the gateway's key (`/app/push/key`) and posts it here (`/app/push`, CSRF
//! checked); it goes to the gateway with the visitor's own token, so the device is told of
//! the prompts that token may answer. The service worker (`sw.js`) shows what arrives.
//! Nothing here sees a notification: they are encrypted for the browser.

use axum::extract::Form;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use protocol::{PushKeys, PushSubscriptionRequest};
use serde::Deserialize;
use serde_json::json;

use crate::pages::json_error;
use crate::session::Session;

/// What the page's script posts: the fields of `PushSubscription.toJSON()`.
#[derive(Deserialize)]
pub struct PushForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    p256dh: String,
    #[serde(default)]
    auth: String,
}

fn refused(e: &protocol::ClientError) -> Response {
    let status = e
        .status()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .filter(|s| s.is_client_error())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    json_error(status, "refused", &e.message())
}

/// The key the browser subscribes with.
pub async fn key(s: Session) -> Response {
    match s.client.push_key().await {
        Ok(k) => axum::Json(k).into_response(),
        Err(e) => refused(&e),
    }
}

/// Hands this browser's subscription to the gateway.
pub async fn subscribe(s: Session, Form(f): Form<PushForm>) -> Response {
    if !s.csrf_ok(&f.csrf) {
        return json_error(
            StatusCode::FORBIDDEN,
            "csrf",
            "this page is out of date; reload it and try again",
        );
    }
    let req = PushSubscriptionRequest {
        endpoint: f.endpoint,
        keys: PushKeys {
            p256dh: f.p256dh,
            auth: f.auth,
        },
        expiration_time: None,
    };
    match s.client.push_subscribe(&req).await {
        Ok(sub) => axum::Json(json!({"ok": true, "id": sub.id})).into_response(),
        Err(e) => refused(&e),
    }
}
