//! The gateway's event streams, passed through to the browser as they are: same origin, so
//! the session cookie is the credential (an `EventSource` cannot send a bearer token), and
//! `Last-Event-ID` goes along so a reconnecting page resumes after its cursor. Nothing is
//! buffered or cached.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

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
    let path = format!("api/gateway/ledger/stream?after={}", q.after.unwrap_or(0));
    proxy(&web, &s, &path, &headers).await
}

/// One run's ledger stream, for its page.
pub async fn run_events(
    State(web): State<Web>,
    s: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<AfterQuery>,
) -> Response {
    let path = format!(
        "api/gateway/runs/{id}/ledger/stream?after={}",
        q.after.unwrap_or(0)
    );
    proxy(&web, &s, &path, &headers).await
}

/// Streams a gateway event stream to the browser as it is (Last-Event-ID passed on).
async fn proxy(web: &Web, s: &Session, path: &str, headers: &HeaderMap) -> Response {
    let url = format!("{}/{path}", web.cfg.gateway_url.trim_end_matches('/'));
    let mut req = web
        .http
        .get(url)
        .bearer_auth(&s.token)
        .header(header::ACCEPT, "text/event-stream");
    if let Some(id) = headers.get("last-event-id") {
        req = req.header("last-event-id", id);
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
        Err(e) => json_error(StatusCode::BAD_GATEWAY, "gateway", &e.to_string()),
    }
}
