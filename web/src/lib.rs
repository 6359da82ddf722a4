//! Switchboard's web app for phones (and desktops): a PWA served by `switchboard serve` at
//! `/app`. Pages are askama templates rendered from `protocol` types; the server side gets
//! its data from the gateway's own HTTP API with the visitor's token, and the browser side
//! talks to that API's streams (through [`pages`]'s same-origin proxies) like any thin
//! client. It never touches the store.
//!
//! - [`session`]: the session cookie (a device token), CSRF, sign-in required everywhere.
//! - [`pages`]: the pages (inbox, runs, a run's timeline, schedules), [`actions`] (answer,
//!   pause, resume, cancel), [`start`] (forms from input schemas), [`streams`] (the event
//!   streams proxied same-origin).
//! - [`push`]: notifications on this device (Web Push), subscribed with the visitor's token.
//! - [`view`]: pure helpers (ledger → timeline, JSON schema → form → input).
//! - [`assets`]: CSS, JavaScript, service worker, manifest and icons, embedded.

pub mod actions;
pub mod answer;
pub mod assets;
pub mod chat;
pub mod pages;
pub mod push;
pub mod run_pages;
pub mod session;
pub mod start;
pub mod streams;
pub mod view;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};

/// The pages' content security policy: nothing inline, nothing from elsewhere.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; manifest-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

/// The pages' headers: the policy above, and a referrer policy that keeps the `Origin` of
/// same-origin form posts (with `no-referrer` browsers send `Origin: null`, which the
/// gateway's origin check refuses).
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// How the web app reaches the gateway. It holds no credential: every call carries the
/// visitor's own token.
#[derive(Clone)]
pub struct WebConfig {
    /// The gateway's API, as this process reaches it (loopback).
    pub gateway_url: String,
    /// Signs the sessions' CSRF tokens (kept in the data dir; never sent anywhere).
    pub csrf_key: String,
    /// Whether cookies get `Secure` (the public URL is https).
    pub secure_cookies: bool,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("gateway_url", &self.gateway_url)
            .field("secure_cookies", &self.secure_cookies)
            .finish_non_exhaustive()
    }
}

/// Sign-in attempts per visitor address: 10 at once, then one every 6 s.
const LOGIN_BURST: u32 = 10;
const LOGIN_EVERY: std::time::Duration = std::time::Duration::from_secs(6);

/// The app's shared state.
#[derive(Clone)]
pub struct Web {
    pub cfg: Arc<WebConfig>,
    /// One connection pool for every call to the gateway, whoever's token it carries.
    pub http: reqwest::Client,
    /// `/app/login`'s own limit, per visitor address (pairing codes and tokens typed in).
    pub logins: Arc<governor::DefaultKeyedRateLimiter<std::net::IpAddr>>,
}

impl Web {
    /// A gateway client with `token`, on the shared pool, carrying the visitor note of the
    /// request being served (so the gateway counts the visitor's address).
    pub fn client_for(
        &self,
        token: Option<String>,
        request: &axum::http::HeaderMap,
    ) -> Result<protocol::Client, protocol::ClientError> {
        let c = protocol::Client::with_http(self.http.clone(), &self.cfg.gateway_url, token)?;
        Ok(match session::visitor(request) {
            Some(note) => c.with_header(
                reqwest::header::HeaderName::from_static(session::VISITOR_HEADER),
                note,
            ),
            None => c,
        })
    }
}

/// The web app's routes, relative to where it is mounted (`/app`).
pub fn router(cfg: WebConfig) -> Router {
    let quota = governor::Quota::with_period(LOGIN_EVERY)
        .unwrap_or_else(|| governor::Quota::per_minute(std::num::NonZeroU32::MIN))
        .allow_burst(std::num::NonZeroU32::new(LOGIN_BURST).unwrap_or(std::num::NonZeroU32::MIN));
    let web = Web {
        cfg: Arc::new(cfg),
        http: reqwest::Client::new(),
        logins: Arc::new(governor::RateLimiter::keyed(quota)),
    };
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/pair", get(pages::pair_page))
        .route("/logout", post(pages::logout))
        .route("/inbox", get(pages::inbox))
        .route("/answer/{token}", get(answer::page).post(answer::vote))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(run_pages::run))
        .route("/runs/{id}/chat", get(run_pages::chat))
        .route("/runs/{id}/answer", post(actions::answer))
        .route("/runs/{id}/{action}", post(actions::control))
        .route("/runs/{id}/events", get(streams::run_events))
        .route("/events", get(streams::events))
        .route("/start", get(start::start_list))
        .route("/start/{flow}", get(start::start_form).post(start::start))
        .route("/schedules", get(pages::schedules))
        .route("/offline", get(pages::offline))
        .route("/ping", get(pages::ping))
        .route("/push/key", get(push::key))
        .route("/push", post(push::subscribe))
        .route("/sw.js", get(assets::service_worker))
        .route("/manifest.webmanifest", get(assets::manifest))
        .route("/static/{file}", get(assets::file))
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(web)
}
