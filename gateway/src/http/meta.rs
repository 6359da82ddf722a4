//! Health, capabilities and the JSON 404 for unknown paths.

use axum::Json;
use axum::extract::State;
use protocol::{Capabilities, Features, Health, RunnerHealth, ScheduleFeatures, StreamPaths};

use super::{AppState, error::ApiError};

#[utoipa::path(get, path = "/api/health", tag = "meta", security(()), responses((status = 200, body = protocol::Health)))]
pub(crate) async fn health(State(app): State<AppState>) -> Json<Health> {
    let lease = app.store.lease(crate::follow::LEASE).await.ok().flatten();
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_s: app.started.elapsed().as_secs(),
        runner: RunnerHealth {
            enabled: app.runner.is_some(),
            active_runs: app.runner.as_ref().map_or(0, |r| r.active()),
            lease_holder: lease.as_ref().map(|l| l.holder.clone()),
            lease_expires_at: lease.map(|l| l.expires_at),
        },
        streams: app.store.bus().subscribers(),
        paused: app.paused.load(std::sync::atomic::Ordering::SeqCst),
    })
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[utoipa::path(get, path = "/api/gateway/discovery/capabilities", tag = "meta", responses((status = 200, body = protocol::Capabilities), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn capabilities(State(app): State<AppState>) -> Json<Capabilities> {
    Json(Capabilities {
        contract_version: protocol::CONTRACT_VERSION.into(),
        server: "switchboard".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        command_types: strings(protocol::COMMAND_TYPES),
        step_types: strings(crate::flows::parse::STEP_KINDS),
        run_statuses: protocol::RunStatus::ALL
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
        event_scopes: strings(&["run", "session", "global"]),
        streams: StreamPaths {
            run: "/api/gateway/runs/{id}/ledger/stream".into(),
            global: "/api/gateway/ledger/stream".into(),
        },
        features: Features {
            command_status: true,
            global_stream: true,
            llm_deltas: true,
            hash_chain: true,
            schedules: ScheduleFeatures {
                interval: true,
                cron: true,
                timezones: true,
                modes: strings(&["fixed_rate", "fixed_delay"]),
            },
            pairing: true,
            scoped_keys: true,
            split_runner: true,
            tools: protocol::ToolFeatures {
                kinds: strings(&["mcp", "flow"]),
                mcp_servers: app.mcp.names(),
                mcp_transports: strings(&["stdio", "streamable_http"]),
                approvals: true,
                mcp_endpoint: "/mcp".into(),
            },
        },
        channels: strings(&["telegram", "email", "web", "tray"]),
    })
}

pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

/// Prometheus text format. Run counts by status are read at scrape time.
#[utoipa::path(get, path = "/metrics", tag = "meta", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn metrics(
    State(app): State<AppState>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    for (status, n) in app.store.count_by_status().await? {
        metrics::gauge!("switchboard_runs", "status" => status).set(n as f64);
    }
    metrics::gauge!("switchboard_sse_clients").set(app.store.bus().subscribers() as f64);
    metrics::gauge!("switchboard_runner_active_runs")
        .set(app.runner.as_ref().map_or(0, |r| r.active()) as f64);
    metrics::gauge!("switchboard_runner_resumed_at_start")
        .set(app.runner.as_ref().map_or(0, |r| r.resumed_at_start()) as f64);
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

pub(crate) async fn openapi_json(spec: std::sync::Arc<String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        (*spec).clone(),
    )
        .into_response()
}

/// Interactive API docs (Redoc, loaded from its CDN by the browser) over `/openapi.json`.
pub(crate) async fn docs() -> axum::response::Response {
    use axum::response::IntoResponse;
    const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Switchboard API</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"></script>
<noscript>The API description is at <a href="/openapi.json">/openapi.json</a>.</noscript>
</body></html>"#;
    let csp = "default-src 'none'; script-src https://cdn.jsdelivr.net; style-src 'unsafe-inline' https://fonts.googleapis.com; \
        font-src https://fonts.gstatic.com; img-src data: https:; connect-src 'self'; worker-src blob:";
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CONTENT_SECURITY_POLICY, csp),
        ],
        PAGE,
    )
        .into_response()
}
