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
//! - [`view`]: pure helpers (ledger → timeline, JSON schema → form → input).
//! - [`assets`]: CSS, JavaScript, service worker, manifest and icons, embedded.

pub mod actions;
pub mod assets;
pub mod pages;
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

/// How the web app reaches the gateway.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The gateway's API, as this process reaches it (loopback).
    pub gateway_url: String,
    /// A token with the admin scope, used only to revoke a device at sign-out.
    pub admin_token: String,
    /// Whether cookies get `Secure` (the public URL is https).
    pub secure_cookies: bool,
}

/// The app's shared state.
#[derive(Clone)]
pub struct Web {
    pub cfg: Arc<WebConfig>,
    /// One connection pool for every call to the gateway, whoever's token it carries.
    pub http: reqwest::Client,
}

impl Web {
    /// A gateway client with `token`, on the shared pool.
    pub fn client_for(
        &self,
        token: Option<String>,
    ) -> Result<protocol::Client, protocol::ClientError> {
        protocol::Client::with_http(self.http.clone(), &self.cfg.gateway_url, token)
    }
}

/// The web app's routes, relative to where it is mounted (`/app`).
pub fn router(cfg: WebConfig) -> Router {
    let web = Web {
        cfg: Arc::new(cfg),
        http: reqwest::Client::new(),
    };
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/inbox", get(pages::inbox))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/runs/{id}/answer", post(actions::answer))
        .route("/runs/{id}/{action}", post(actions::control))
        .route("/runs/{id}/events", get(streams::run_events))
        .route("/events", get(streams::events))
        .route("/start", get(start::start_list))
        .route("/start/{flow}", get(start::start_form).post(start::start))
        .route("/schedules", get(pages::schedules))
        .route("/offline", get(pages::offline))
        .route("/ping", get(pages::ping))
        .route("/sw.js", get(assets::service_worker))
        .route("/manifest.webmanifest", get(assets::manifest))
        .route("/static/{file}", get(assets::file))
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(web)
}
