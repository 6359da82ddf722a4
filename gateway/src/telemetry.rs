//! Process-wide telemetry: the Prometheus recorder behind the `metrics` macros used across
//! the gateway, and an HTTP middleware that times requests by route. Installing twice (as
//! tests may) keeps the first recorder.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Installs the recorder (once per process).
pub(crate) fn install() {
    HANDLE.get_or_init(|| {
        let built = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .and_then(|b| b.install_recorder());
        match built {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "metrics are disabled");
                None
            }
        }
    });
}

/// The current metrics in Prometheus' text format.
pub(crate) fn render() -> String {
    HANDLE
        .get()
        .and_then(|h| h.as_ref())
        .map(|h| h.render())
        .unwrap_or_default()
}

/// Records `switchboard_http_request_duration_seconds{method, route, status}`.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let t0 = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::histogram!("switchboard_http_request_duration_seconds", "method" => method, "route" => route, "status" => status)
        .record(t0.elapsed().as_secs_f64());
    resp
}
