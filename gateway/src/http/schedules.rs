//! Schedules over HTTP: `POST /api/gateway/runs/schedule` (AbstractGateway's fields plus
//! `cron`, `timezone`, `mode`, `share_context`) and `GET /api/gateway/schedules`.

use axum::Json;
use axum::extract::State;
use protocol::{ScheduleCreated, ScheduleList, ScheduleRequest};
use serde::Deserialize;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, ApiJson, ApiQuery};
use crate::schedule::Timing;
use crate::store::NewSchedule;

#[utoipa::path(post, path = "/api/gateway/runs/schedule", tag = "schedules", request_body = protocol::ScheduleRequest,
    responses((status = 200, description = "the schedule's parent run", body = protocol::ScheduleCreated),
        (status = 400, description = "names the field", body = protocol::ErrorBody), (status = 404, body = protocol::ErrorBody),
        (status = 401, body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 503, body = protocol::ErrorBody)))]
pub(crate) async fn create(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
    ApiJson(req): ApiJson<ScheduleRequest>,
) -> Result<Json<ScheduleCreated>, ApiError> {
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
    Ok(Json(ScheduleCreated {
        run_id: s.run_id,
        status: s.status,
        next_fire_at: crate::engine::ts(first),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    limit: Option<u32>,
    offset: Option<u32>,
}

#[utoipa::path(get, path = "/api/gateway/schedules", tag = "schedules", params(ListQuery),
    responses((status = 200, description = "newest first, with each one's last result", body = protocol::ScheduleList),
        (status = 401, body = protocol::ErrorBody)))]
pub(crate) async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ScheduleList>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let (items, has_more) = app
        .store
        .list_schedules(limit, q.offset.unwrap_or(0))
        .await?;
    Ok(Json(ScheduleList { items, has_more }))
}
