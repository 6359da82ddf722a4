//! The gateway's event streams, passed through to the browser as they are: same origin, so
//! the session cookie is the credential (an `EventSource` cannot send a bearer token), and
//! `Last-Event-ID` goes along so a reconnecting page resumes after its cursor. Nothing is
//! buffered or cached.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use protocol::client::ApiPath;

use crate::Web;
use crate::pages::json_error;
use crate::session::Session;

#[derive(Deserialize)]
pub struct AfterQuery {
    after: Option<u64>,
}

/// The global ledger stream, for the inbox and run list.
pub async fn events(
    State(web): State<Web>,
    s: Session,
    headers: HeaderMap,
    Query(q): Query<AfterQuery>,
) -> Response {
    let path = ApiPath::new("api/gateway/ledger/stream").query("after", q.after.unwrap_or(0));
    proxy(&web, &s, path, &headers).await
}

/// One run's ledger stream, for its page.
pub async fn run_events(
    State(web): State<Web>,
    s: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<AfterQuery>,
) -> Response {
    if crate::pages::check_run_id(&id).is_err() {
        return json_error(StatusCode::NOT_FOUND, "not_found", "no such run");
    }
    let path = ApiPath::new("api/gateway/runs")
        .id(id)
        .then("ledger/stream")
        .query("after", q.after.unwrap_or(0));
    proxy(&web, &s, path, &headers).await
}

/// Streams a gateway event stream to the browser as it is (Last-Event-ID and the
/// visitor note passed on).
async fn proxy(web: &Web, s: &Session, path: ApiPath, headers: &HeaderMap) -> Response {
    let url = match s.client.url(path) {
        Ok(u) => u,
        Err(_) => return json_error(StatusCode::NOT_FOUND, "not_found", "no such stream"),
    };
    let mut req = web
        .http
        .get(url)
        .bearer_auth(&s.token)
        .header(header::ACCEPT, "text/event-stream");
    for name in ["last-event-id", crate::session::VISITOR_HEADER] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v);
        }
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-store")
            .body(Body::from_stream(r.bytes_stream()))
            .unwrap_or_else(|_| json_error(StatusCode::BAD_GATEWAY, "gateway", "stream failed")),
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            json_error(status, "gateway", "the gateway refused the stream")
        }
        Err(e) => {
            tracing::warn!(error = %e, "web: cannot open a gateway stream");
            json_error(
                StatusCode::BAD_GATEWAY,
                "gateway",
                "the gateway cannot be reached; try again in a moment",
            )
        }
    }
}
