//! The HTTP API (axum): routes of the client contract, auth, errors and SSE.
//!
//! Owns request parsing and validation (every 4xx names the field), the mapping of store
//! and flow errors to responses (`error`), and streaming (`sse`). Handlers call the store,
//! the registry and the runner; they never write SQL and never decide a run's next step.

mod auth;
mod bundles;
mod commands;
mod error;
mod meta;
mod runs;
mod sse;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::routing::{get, post};

pub use auth::Auth;
pub use error::ApiError;

use crate::flows::Registry;
use crate::runner::Runner;
use crate::store::Store;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub registry: Registry,
    /// `None` when this process serves the API only (`serve --no-runner`).
    pub runner: Option<Runner>,
    pub started: Instant,
}

impl AppState {
    pub fn wake(&self, ids: Vec<String>) {
        if let Some(r) = &self.runner {
            r.wake_all(ids);
        }
    }
}

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 10 * 1024 * 1024;

pub fn router(state: AppState, auth: Arc<Auth>) -> Router {
    let api = Router::new()
        .route("/api/gateway/bundles", get(bundles::list))
        .route("/api/gateway/bundles/upload", post(bundles::upload))
        .route("/api/gateway/runs/start", post(runs::start))
        .route("/api/gateway/runs", get(runs::list))
        .route("/api/gateway/runs/ledger/batch", post(runs::batch))
        .route("/api/gateway/runs/{id}", get(runs::get_one))
        .route("/api/gateway/runs/{id}/ledger", get(runs::ledger))
        .route("/api/gateway/runs/{id}/ledger/stream", get(sse::run_stream))
        .route("/api/gateway/runs/{id}/input_data", get(runs::input_data))
        .route(
            "/api/gateway/runs/{id}/history_bundle",
            get(runs::history_bundle),
        )
        .route("/api/gateway/ledger/stream", get(sse::global_stream))
        .route("/api/gateway/commands", post(commands::submit))
        .route("/api/gateway/commands/{id}", get(commands::status))
        .route(
            "/api/gateway/discovery/capabilities",
            get(meta::capabilities),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            auth::require_token,
        ));
    Router::new()
        .route("/api/health", get(meta::health))
        .merge(api)
        .fallback(meta::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .with_state(state)
}
