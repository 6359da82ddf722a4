//! The HTTP API (axum): routes of the client contract, auth gates, errors and SSE.
//!
//! Owns request parsing and validation (every 4xx names the field), the mapping of store
//! and flow errors to responses (`error`), gates (`auth`) and streaming (`sse`). Handlers
//! call the store, the registry, the runner and `crate::auth`; they never write SQL and
//! never decide a run's next step.

mod admin;
mod auth;
mod bundles;
mod commands;
mod error;
mod meta;
mod runs;
mod sse;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use axum::Router;
use axum::routing::{delete, get, post};

pub use auth::Gate;
pub use error::ApiError;

use crate::auth::Scope;
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
    pub gate: Gate,
    /// Gateway-wide pause: no new runs start.
    pub paused: Arc<AtomicBool>,
    pub flows_dir: PathBuf,
    /// Turns true when the server shuts down; streams end with a retry hint.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
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

fn gated(routes: Router<AppState>, gate: &Gate, scope: Scope) -> Router<AppState> {
    routes.route_layer(axum::middleware::from_fn_with_state(
        (gate.clone(), scope),
        auth::require,
    ))
}

pub fn router(state: AppState) -> Router {
    let gate = state.gate.clone();
    let read = Router::new()
        .route("/api/gateway/bundles", get(bundles::list))
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
        .route("/api/gateway/commands/{id}", get(commands::status))
        .route(
            "/api/gateway/discovery/capabilities",
            get(meta::capabilities),
        )
        .route("/metrics", get(meta::metrics));
    let run = Router::new().route("/api/gateway/runs/start", post(runs::start));
    let command = Router::new().route("/api/gateway/commands", post(commands::submit));
    let admin = Router::new()
        .route("/api/gateway/bundles/upload", post(bundles::upload))
        .route("/api/gateway/bundles/reload", post(admin::reload_flows))
        .route("/api/gateway/pair/codes", post(admin::mint_code))
        .route("/api/gateway/devices", get(admin::devices))
        .route("/api/gateway/devices/{id}", delete(admin::revoke_device))
        .route(
            "/api/gateway/keys",
            get(admin::keys).post(admin::create_key),
        )
        .route("/api/gateway/keys/{id}", delete(admin::revoke_key))
        .route("/api/gateway/token/rotate", post(admin::rotate_token))
        .route("/api/gateway/pause", post(admin::pause_gateway))
        .route("/api/gateway/resume", post(admin::resume_gateway));
    let public = Router::new()
        .route("/api/health", get(meta::health))
        .route("/api/gateway/pair", post(admin::pair))
        .route_layer(axum::middleware::from_fn_with_state(
            gate.clone(),
            auth::public,
        ));
    Router::new()
        .merge(public)
        .merge(gated(read, &gate, Scope::Read))
        .merge(gated(run, &gate, Scope::Run))
        .merge(gated(command, &gate, Scope::Command))
        .merge(gated(admin, &gate, Scope::Admin))
        .fallback(meta::not_found)
        .route_layer(axum::middleware::from_fn(crate::telemetry::track))
        .layer(axum::extract::DefaultBodyLimit::max(gate.body_limit))
        .layer(axum::middleware::from_fn_with_state(
            gate.clone(),
            auth::guard,
        ))
        .with_state(state)
}
