//! Schedules over HTTP: `POST /api/gateway/runs/schedule` (AbstractGateway's fields plus
//! `cron`, `timezone`, `mode`, `share_context`) and `GET /api/gateway/schedules`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, ApiJson, ApiQuery};
use crate::schedule::Timing;
use crate::store::NewSchedule;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleRequest {
    bundle_id: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    input_data: Value,
    /// `now` (default) or an ISO 8601 time.
    #[serde(default)]
    start_at: Option<String>,
    /// `30s`, `15m`, `1h`, `2d`… (or give `cron`).
    #[serde(default)]
    interval: Option<String>,
    /// 5 fields: minute hour day-of-month month day-of-week.
    #[serde(default)]
    cron: Option<String>,
    /// IANA time zone for `cron` (default UTC).
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    repeat_count: Option<i64>,
    #[serde(default)]
    repeat_until: Option<String>,
    /// `fixed_rate` (default for cron) or `fixed_delay` (default for interval).
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
    /// Children share the schedule's session (default true).
    #[serde(default)]
    share_context: Option<bool>,
    #[serde(default)]
    notify: Option<Vec<String>>,
}

#[utoipa::path(post, path = "/api/gateway/runs/schedule", tag = "schedules", request_body = ScheduleRequest,
    responses((status = 200, description = "`{run_id, status, next_fire_at}`: the schedule's parent run", body = Object),
        (status = 400, description = "names the field", body = protocol::ErrorBody), (status = 404, body = protocol::ErrorBody),
        (status = 401, body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 503, body = protocol::ErrorBody)))]
pub(crate) async fn create(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
    ApiJson(req): ApiJson<ScheduleRequest>,
) -> Result<Json<Value>, ApiError> {
    let mut run = super::runs::new_run(
        &app,
        &who,
        req.bundle_id,
        req.input_data,
        req.session_id,
        req.notify,
    )?;
    let timing = Timing {
        start_at: req.start_at,
        interval: req.interval,
        cron: req.cron,
        timezone: req.timezone,
        repeat_count: req.repeat_count,
        repeat_until: req.repeat_until,
        mode: req.mode,
    };
    let spec = timing
        .into_spec(chrono::Utc::now())
        .map_err(|e| ApiError::BadRequest("invalid_schedule", e.to_string()))?;
    let Some(first) = spec.first() else {
        return Err(ApiError::BadRequest(
            "invalid_schedule",
            "repeat_until: the schedule would never fire".into(),
        ));
    };
    let share = req.share_context.unwrap_or(true);
    if share && run.session_id.is_none() {
        run.session_id = Some(format!("schedule:{}", run.run_id));
    }
    let spec_json = serde_json::to_value(&spec).map_err(|e| ApiError::Internal(e.to_string()))?;
    let (s, wake) = app
        .store
        .create_schedule(NewSchedule {
            run,
            spec: spec_json,
            share_context: share,
            first,
        })
        .await?;
    app.wake(wake);
    Ok(Json(
        json!({"run_id": s.run_id, "status": s.status, "next_fire_at": crate::engine::ts(first)}),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    limit: Option<u32>,
    offset: Option<u32>,
}

#[utoipa::path(get, path = "/api/gateway/schedules", tag = "schedules", params(ListQuery),
    responses((status = 200, description = "`{items: [{run_id, bundle_id, status, spec, fired, next_fire_at, last_result…}], has_more}`", body = Object),
        (status = 401, body = protocol::ErrorBody)))]
pub(crate) async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let (items, has_more) = app
        .store
        .list_schedules(limit, q.offset.unwrap_or(0))
        .await?;
    Ok(Json(json!({"items": items, "has_more": has_more})))
}
