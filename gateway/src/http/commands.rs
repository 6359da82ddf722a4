//! Commands: validation of the request (every 400 names the field), idempotent submission,
//! and each command's fate.

use axum::Json;
use axum::extract::{Path, State};
use protocol::{Actor, Command, CommandRequest, CommandResponse, CommandStatus};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, ApiJson};
use crate::auth::{approvers, reach};
use crate::store::{AnswerCheck, CommandKind, Directory, NewCommand, StoreError};

#[utoipa::path(post, path = "/api/gateway/commands", tag = "commands", request_body = protocol::CommandRequest, responses((status = 200, body = protocol::CommandResponse), (status = 400, body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 404, description = "unknown run", body = protocol::ErrorBody), (status = 409, description = "reused command_id, stale wait_key, terminal run", body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn submit(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
    ApiJson(req): ApiJson<CommandRequest>,
) -> Result<Json<CommandResponse>, ApiError> {
    submit_command(&app, &who, req).await.map(Json)
}

/// Checks and stores one command, then wakes its run (also used by the OpenAI surface).
pub(super) async fn submit_command(
    app: &AppState,
    who: &Principal,
    req: CommandRequest,
) -> Result<CommandResponse, ApiError> {
    for (field, v) in [("command_id", &req.command_id), ("run_id", &req.run_id)] {
        if v.trim().is_empty() || v.len() > 200 {
            return Err(ApiError::bad(format!("{field} must be 1-200 characters")));
        }
    }
    for (field, v) in [("client_id", &req.client_id), ("channel", &req.channel)] {
        if v.as_ref().is_some_and(|v| v.len() > 200) {
            return Err(ApiError::bad(format!(
                "{field} must be at most 200 characters"
            )));
        }
    }
    let claims = [
        ("command_id", Some(&req.command_id)),
        ("client_id", req.client_id.as_ref()),
        ("channel", req.channel.as_ref()),
    ];
    for (field, v) in claims {
        if let Some(v) = v {
            reach::check_claim(who, field, v)?;
        }
    }
    // Answers and events end up in the ledger (and in every client that renders it).
    let payload_text = req.payload.to_string();
    if payload_text.len() > app.max_payload {
        return Err(ApiError::TooLarge(format!(
            "payload is {} bytes; answers and events are at most {} bytes (SWITCHBOARD_MAX_PAYLOAD)",
            payload_text.len(),
            app.max_payload
        )));
    }
    let mut check = None;
    let kind = match req.command().map_err(ApiError::bad)? {
        Command::UpdateSchedule(fields) => schedule_update(app, &req.run_id, &fields).await?,
        Command::Answer { wait_key, response } => {
            check = Some(answer_check(
                who,
                req.client_id.as_deref(),
                response.clone(),
            ));
            CommandKind::Client(Command::Answer { wait_key, response })
        }
        c => {
            if let Command::EmitEvent {
                session_id: Some(s),
                ..
            } = &c
            {
                reach::check_session(who, s)?;
            }
            CommandKind::Client(c)
        }
    };
    // The sender is part of what a `command_id` names: another caller reusing it (say, to
    // learn how someone voted) is refused as a conflict, not told it is a duplicate.
    let hash = Sha256::new()
        .chain_update(who.label().as_bytes())
        .chain_update([0])
        .chain_update(req.client_id.as_deref().unwrap_or_default().as_bytes())
        .chain_update([0])
        .chain_update(req.kind.as_bytes())
        .chain_update([0])
        .chain_update(req.run_id.as_bytes())
        .chain_update([0])
        .chain_update(payload_text.as_bytes());
    let cmd = NewCommand {
        command_id: req.command_id,
        run_id: req.run_id,
        type_name: req.kind,
        payload: req.payload,
        payload_hash: hex::encode(hash.finalize()),
        client_id: req.client_id.clone(),
        actor: Actor {
            kind: "client".into(),
            principal: Some(who.label()),
            client_id: req.client_id,
            channel: req.channel,
            voter: None,
        },
        kind,
        answer_check: check,
    };
    let kind_label = cmd.type_name.clone();
    let (s, wake, row) = app.store.submit(cmd, app.hands_rows()).await?;
    if !s.duplicate {
        metrics::counter!("switchboard_commands_total", "type" => kind_label).increment(1);
    }
    // The answered run is driven from the row the submit read.
    app.wake_from(wake, row);
    Ok(CommandResponse {
        accepted: true,
        duplicate: s.duplicate,
        seq: s.seq,
    })
}

#[utoipa::path(get, path = "/api/gateway/commands/{id}", tag = "commands", params(("id" = String, Path, description = "the command_id")), responses((status = 200, body = protocol::CommandStatus), (status = 404, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn status(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CommandStatus>, ApiError> {
    Ok(Json(app.store.command_status(&id).await?))
}

/// What an answer must pass, checked by the store against the prompt it answers inside the
/// submit transaction: one of its choices, unless it allows free text; when it names
/// approvers, from one of them who has not voted yet, and then the voter it counts as.
fn answer_check(who: &Principal, client_id: Option<&str>, response: Value) -> AnswerCheck {
    let ids = approvers::identities(who, client_id);
    Box::new(move |w, dir| {
        let voter = if w.approvers.is_empty() {
            None
        } else {
            Some(approver(dir, w, &ids)?)
        };
        check_choice(w, &response)?;
        Ok(voter)
    })
}

/// The voter `ids` count as on `w`: refused (403) unless an approver, 409 after voting.
fn approver(dir: &Directory, w: &protocol::Waiting, ids: &[String]) -> Result<String, StoreError> {
    if !approvers::admits(dir, &w.approvers, ids) {
        return Err(StoreError::Forbidden(format!(
            "{} may not answer this prompt; its approvers: {}",
            ids.join(", "),
            w.approvers.join(", ")
        )));
    }
    let voter = approvers::voter(dir, ids);
    if let Some(v) = approvers::vote_of(dir, &w.votes, &voter) {
        return Err(StoreError::Conflict(format!(
            "{voter} already voted `{}` on this prompt",
            v.choice
        )));
    }
    Ok(voter)
}

/// The answer is one of the prompt's choices, unless it allows free text.
fn check_choice(w: &protocol::Waiting, response: &Value) -> Result<(), StoreError> {
    // AbstractGateway's tool approvals answer `{"approved": true|false}`.
    if w.approval && response.get("approved").is_some_and(Value::is_boolean) {
        return Ok(());
    }
    crate::engine::match_choice(response, &w.choices, w.allow_free_text)
        .map_err(|e| StoreError::InvalidAnswer(format!("payload.payload.response: {e}")))?;
    Ok(())
}

const UPDATE_FIELDS: &[&str] = &[
    "interval",
    "cron",
    "timezone",
    "mode",
    "repeat_count",
    "repeat_until",
    "apply",
];

/// `update_schedule`: a new `interval` or `cron` (with `timezone`, `mode`, limits), applied at
/// the next firing (default) or `"apply": "now"`.
async fn schedule_update(
    app: &AppState,
    run_id: &str,
    obj: &serde_json::Map<String, Value>,
) -> Result<CommandKind, ApiError> {
    use crate::schedule::{Spec, Timing};
    if let Some(k) = obj.keys().find(|k| !UPDATE_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::bad(format!(
            "payload.{k} is not a schedule field; use {}",
            UPDATE_FIELDS.join(", ")
        )));
    }
    let Some(row) = app.store.schedule(run_id).await? else {
        app.store.run(run_id).await?;
        return Err(ApiError::Conflict(format!(
            "run `{run_id}` is not a schedule"
        )));
    };
    let old: Spec =
        serde_json::from_value(row.spec).map_err(|e| ApiError::Internal(e.to_string()))?;
    let new: Timing = serde_json::from_value(Value::Object(obj.clone()))
        .map_err(|e| ApiError::bad(format!("payload: {e}")))?;
    if new.interval.is_none() && new.cron.is_none() {
        return Err(ApiError::bad("payload: give a new `interval` or `cron`"));
    }
    let now = chrono::Utc::now();
    let keep_tz = new.cron.is_some() && new.timezone.is_none();
    let merged = Timing {
        start_at: Some(crate::engine::ts(old.start_at)),
        timezone: if keep_tz { old.timezone } else { new.timezone },
        repeat_count: new.repeat_count.or(old.repeat_count.map(i64::from)),
        repeat_until: new.repeat_until.or(old.repeat_until.map(crate::engine::ts)),
        ..new
    };
    let spec = merged
        .into_spec(now)
        .map_err(|e| ApiError::bad(format!("payload.{}: {}", e.field, e.message)))?;
    let next = match obj.get("apply").and_then(Value::as_str) {
        None | Some("next_firing") => None,
        Some("now") => spec.after_child(now, row.fired),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "payload.apply `{other}` must be now or next_firing"
            )));
        }
    };
    let spec = serde_json::to_value(&spec).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(CommandKind::UpdateSchedule { spec, next })
}
