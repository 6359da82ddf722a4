//! Health, capabilities and the JSON 404 for unknown paths.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{AppState, error::ApiError};

pub async fn health(State(app): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": app.started.elapsed().as_secs(),
        "runner": {
            "enabled": app.runner.is_some(),
            "active_runs": app.runner.as_ref().map_or(0, |r| r.active()),
        },
        "streams": app.store.bus().subscribers(),
        "paused": app.paused.load(std::sync::atomic::Ordering::SeqCst),
    }))
}

pub async fn capabilities() -> Json<Value> {
    Json(json!({
        "contract_version": protocol::CONTRACT_VERSION,
        "server": "switchboard",
        "version": env!("CARGO_PKG_VERSION"),
        "command_types": protocol::COMMAND_TYPES,
        "step_types": ["say", "ask", "llm", "wait", "wait_event", "emit", "set", "if", "loop", "call", "http", "output"],
        "run_statuses": ["running", "waiting", "paused", "completed", "failed", "cancelled"],
        "event_scopes": ["run", "session", "global"],
        "streams": {"run": "/api/gateway/runs/{id}/ledger/stream", "global": "/api/gateway/ledger/stream"},
        "features": {"command_status": true, "global_stream": true, "llm_deltas": true, "hash_chain": true},
        "channels": [],
    }))
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

/// Prometheus text format. Run counts by status are read at scrape time.
pub async fn metrics(State(app): State<AppState>) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    for (status, n) in app.store.count_by_status().await? {
        metrics::gauge!("switchboard_runs", "status" => status).set(n as f64);
    }
    metrics::gauge!("switchboard_sse_clients").set(app.store.bus().subscribers() as f64);
    metrics::gauge!("switchboard_runner_active_runs")
        .set(app.runner.as_ref().map_or(0, |r| r.active()) as f64);
    let body = crate::telemetry::render();
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
        .into_response())
}
