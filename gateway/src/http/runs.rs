//! Runs: start, list, summary, input, history bundle, ledger pages and batches.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use protocol::{RunList, RunStatus, RunSummary, StartRunRequest, StartRunResponse};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, ApiJson, ApiQuery};
use crate::store::{NewRun, START_NAMESPACE, Started};

const MAX_PAGE: u32 = 1000;

#[utoipa::path(post, path = "/api/gateway/runs/start", tag = "runs", params(("Idempotency-Key" = Option<String>, Header, description = "start at most one run per key; a repeat answers that run with `Idempotent-Replayed: true`")), request_body = protocol::StartRunRequest, responses((status = 200, body = protocol::StartRunResponse), (status = 400, body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 404, description = "unknown flow", body = protocol::ErrorBody), (status = 413, body = protocol::ErrorBody), (status = 503, description = "gateway paused", body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn start(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<StartRunRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    if let Some(k) = &key {
        crate::auth::reach::check_claim(&who, "Idempotency-Key", k)?;
    }
    if let Some(f) = &req.flow_id
        && *f != req.bundle_id
    {
        return Err(ApiError::NotFound(format!(
            "flow_id `{f}` is not an entrypoint of bundle `{}`",
            req.bundle_id
        )));
    }
    let mut run = new_run(
        &app,
        &who,
        req.bundle_id,
        req.input_data,
        req.session_id,
        req.notify,
    )?;
    run.trace = crate::trace::new_trace(traceparent(&headers));
    let (s, replayed) = match key {
        None => (app.start_run(run).await?, false),
        Some(key) => match app.store.start_run_once(START_NAMESPACE, &key, run).await? {
            Started::Fresh(s, wake) => {
                app.wake(wake);
                (s, false)
            }
            Started::Earlier(s) => (s, true),
        },
    };
    let body = Json(StartRunResponse {
        run_id: s.run_id,
        status: s.status,
        bundle_id: s.bundle_id,
        flow_hash: s.flow_hash,
        session_id: s.session_id,
    });
    if replayed {
        return Ok(([(IDEMPOTENT_REPLAYED, "true")], body).into_response());
    }
    Ok(body.into_response())
}

/// The caller's W3C `traceparent`, if any (a malformed one is ignored, as the spec asks).
pub(super) fn traceparent(headers: &HeaderMap) -> Option<&str> {
    headers.get("traceparent").and_then(|v| v.to_str().ok())
}

/// Answer header of a `runs/start` repeated with a used `Idempotency-Key`.
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// The optional `Idempotency-Key` header: 1-200 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if (1..=200).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k.to_owned()))
        }
        _ => Err(ApiError::BadRequest(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-200 visible ASCII characters".into(),
        )),
    }
}

/// Checks what every new run needs (the gateway not paused, a known flow, input matching
/// its schema, a session and notify targets the caller may reach: `auth::reach`) and
/// builds it. Used by `runs/start`, `runs/schedule`, triggers and `/v1`.
pub(super) fn new_run(
    app: &AppState,
    who: &Principal,
    bundle_id: String,
    input: Value,
    session_id: Option<String>,
    notify: Option<Vec<String>>,
) -> Result<NewRun, ApiError> {
    if app.paused.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::Paused(
            "the gateway is paused: nothing new starts until POST /api/gateway/resume".into(),
        ));
    }
    let Some(v) = app.registry.current(&bundle_id) else {
        return Err(ApiError::NotFound(format!(
            "bundle_id `{bundle_id}` is not a known flow; GET /api/gateway/bundles lists them"
        )));
    };
    let input = if input.is_null() { json!({}) } else { input };
    if let Err(errors) = v.flow.validate_input(&input) {
        return Err(ApiError::BadRequest("invalid_input", errors.join("; ")));
    }
    let notify = notify.unwrap_or_default();
    if notify.len() > 32 {
        return Err(ApiError::bad("notify holds at most 32 entries"));
    }
    app.reach.check(who, session_id.as_deref(), &notify)?;
    Ok(NewRun {
        // Time-ordered (v7: a millisecond timestamp, then 74 random bits): a new run's key
        // lands at the end of the runs' and the ledger's indexes instead of a random page,
        // so a start costs the same over a million runs as over none (BENCHMARKS.md).
        run_id: uuid::Uuid::now_v7().to_string(),
        bundle_id,
        flow_hash: v.flow.hash.clone(),
        session_id,
        parent_run_id: None,
        input_data: input,
        notify,
        actor: protocol::Actor {
            kind: "client".into(),
            principal: Some(who.label()),
            client_id: None,
            channel: None,
            voter: None,
        },
        trace: crate::trace::new_trace(None),
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    status: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

#[utoipa::path(get, path = "/api/gateway/runs", tag = "runs", params(ListQuery), responses((status = 200, body = protocol::RunList), (status = 400, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<RunList>, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            ApiError::bad(format!(
                "status `{s}` must be running, waiting, paused, completed, failed or cancelled"
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let offset = q.offset.unwrap_or(0);
    let (items, has_more) = app.store.list_runs(status, limit, offset).await?;
    Ok(Json(RunList {
        count: items.len(),
        items,
        offset: offset as usize,
        has_more,
    }))
}

#[utoipa::path(get, path = "/api/gateway/runs/{id}", tag = "runs", params(("id" = String, Path, description = "the run id")), responses((status = 200, body = protocol::RunSummary), (status = 404, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn get_one(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunSummary>, ApiError> {
    Ok(Json(app.store.run(&id).await?))
}

#[utoipa::path(get, path = "/api/gateway/runs/{id}/input_data", tag = "runs", params(("id" = String, Path, description = "the run id")), responses((status = 200, body = protocol::RunInput), (status = 404, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn input_data(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<protocol::RunInput>, ApiError> {
    let input_data = app.store.input_data(&id).await?;
    Ok(Json(protocol::RunInput {
        run_id: id,
        input_data,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    after: Option<u64>,
    limit: Option<u32>,
}

/// `{"items":[…],"next_after":N}` built from the stored JSON texts (no re-encoding).
fn page_json(items: &[String], next: u64) -> String {
    let mut body = String::with_capacity(items.iter().map(|s| s.len() + 1).sum::<usize>() + 40);
    body.push_str("{\"items\":[");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(it);
    }
    body.push_str("],\"next_after\":");
    body.push_str(&next.to_string());
    body.push('}');
    body
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[utoipa::path(get, path = "/api/gateway/runs/{id}/ledger", tag = "replay", params(("id" = String, Path, description = "the run id"), PageQuery), responses((status = 200, body = protocol::LedgerPage), (status = 400, body = protocol::ErrorBody), (status = 404, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn ledger(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let (items, next) = app.store.ledger_page(&id, after, limit).await?;
    Ok(json_response(page_json(&items, next)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchBody {
    #[serde(default)]
    limit: Option<u32>,
    runs: Vec<BatchRun>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchRun {
    run_id: String,
    #[serde(default)]
    after: u64,
}

#[utoipa::path(post, path = "/api/gateway/runs/ledger/batch", tag = "replay", request_body = protocol::BatchRequest, responses((status = 200, body = protocol::BatchResponse), (status = 400, body = protocol::ErrorBody), (status = 404, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn batch(
    State(app): State<AppState>,
    ApiJson(b): ApiJson<BatchBody>,
) -> Result<Response, ApiError> {
    if b.runs.len() > 200 {
        return Err(ApiError::bad("runs: at most 200 runs per batch"));
    }
    let limit = b.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let mut body = String::from("{\"runs\":{");
    for (i, r) in b.runs.iter().enumerate() {
        let (items, next) = app.store.ledger_page(&r.run_id, r.after, limit).await?;
        if i > 0 {
            body.push(',');
        }
        body.push_str(&serde_json::to_string(&r.run_id).unwrap_or_default());
        body.push(':');
        body.push_str(&page_json(&items, next));
    }
    body.push_str("}}");
    Ok(json_response(body))
}

/// Everything about a run in one document: summary, input, pinned flow source, full
/// ledger and children.
/// Records (and their bytes) and children a history bundle holds at most; the rest is
/// paged with `/ledger?after=` and `/runs?…` (the bundle says when it stopped short).
const BUNDLE_RECORDS: u64 = 10_000;
const BUNDLE_BYTES: usize = 16 * 1024 * 1024;
const BUNDLE_CHILDREN: u32 = 1_000;

#[utoipa::path(get, path = "/api/gateway/runs/{id}/history_bundle", tag = "runs", params(("id" = String, Path, description = "the run id")), responses((status = 200, body = protocol::HistoryBundle), (status = 404, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn history_bundle(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<protocol::HistoryBundle>, ApiError> {
    let run = app.store.run(&id).await?;
    let input = app.store.input_data(&id).await?;
    let mut ledger = Vec::new();
    let (mut after, mut bytes) = (0, 0);
    'pages: while after < BUNDLE_RECORDS {
        let page = MAX_PAGE.min((BUNDLE_RECORDS - after) as u32);
        let (items, _) = app.store.ledger_page(&id, after, page).await?;
        if items.is_empty() {
            break;
        }
        for it in items {
            bytes += it.len();
            if bytes > BUNDLE_BYTES && !ledger.is_empty() {
                break 'pages;
            }
            ledger.push(
                serde_json::from_str::<protocol::LedgerRecord>(&it)
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
            );
            after += 1;
        }
    }
    let flow = app.registry.by_hash(&run.flow_hash);
    let mut children = app.store.children(&id, BUNDLE_CHILDREN + 1).await?;
    let children_truncated = children.len() > BUNDLE_CHILDREN as usize;
    children.truncate(BUNDLE_CHILDREN as usize);
    Ok(Json(protocol::HistoryBundle {
        flow: protocol::FlowSource {
            bundle_id: run.bundle_id.clone(),
            flow_hash: run.flow_hash.clone(),
            source: flow.map(|f| f.source.clone()),
        },
        ledger_truncated: run.ledger_len > after,
        ledger_next_after: after,
        run,
        input_data: input,
        ledger,
        children,
        children_truncated,
    }))
}
