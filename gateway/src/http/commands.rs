//! Commands: validation of the request (every 400 names the field), idempotent submission,
//! and each command's fate.

use axum::Json;
use axum::extract::{Path, State};
use protocol::{Actor, CommandRequest, CommandResponse, CommandStatus};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, ApiJson};
use crate::flows::Scope;
use crate::store::{CommandKind, NewCommand};

#[utoipa::path(post, path = "/api/gateway/commands", tag = "commands", request_body = protocol::CommandRequest, responses((status = 200, body = protocol::CommandResponse), (status = 400, body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 404, description = "unknown run", body = protocol::ErrorBody), (status = 409, description = "reused command_id, stale wait_key, terminal run", body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub async fn submit(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
    ApiJson(req): ApiJson<CommandRequest>,
) -> Result<Json<CommandResponse>, ApiError> {
    for (field, v) in [("command_id", &req.command_id), ("run_id", &req.run_id)] {
        if v.trim().is_empty() || v.len() > 200 {
            return Err(ApiError::bad(format!("{field} must be 1-200 characters")));
        }
    }
    let kind = parse_kind(&req.kind, &req.payload)?;
    if let CommandKind::Answer { wait_key, response } = &kind {
        check_choice(&app, &req.run_id, wait_key, response).await?;
    }
    let hash = Sha256::new()
        .chain_update(req.kind.as_bytes())
        .chain_update([0])
        .chain_update(req.run_id.as_bytes())
        .chain_update([0])
        .chain_update(req.payload.to_string().as_bytes());
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
        },
        kind,
    };
    let kind_label = cmd.type_name.clone();
    let (s, wake) = app.store.submit(cmd).await?;
    if !s.duplicate {
        metrics::counter!("switchboard_commands_total", "type" => kind_label).increment(1);
    }
    app.wake(wake);
    Ok(Json(CommandResponse {
        accepted: true,
        duplicate: s.duplicate,
        seq: s.seq,
    }))
}

#[utoipa::path(get, path = "/api/gateway/commands/{id}", tag = "commands", params(("id" = String, Path, description = "the command_id")), responses((status = 200, body = protocol::CommandStatus), (status = 404, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub async fn status(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CommandStatus>, ApiError> {
    Ok(Json(app.store.command_status(&id).await?))
}

fn str_field<'a>(payload: &'a Value, field: &str) -> Result<Option<&'a str>, ApiError> {
    match payload.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad(format!("payload.{field} must be a string"))),
    }
}

/// Turns `type` + `payload` into a typed command, or a 400 that names the field.
fn parse_kind(kind: &str, payload: &Value) -> Result<CommandKind, ApiError> {
    if !(payload.is_object() || payload.is_null()) {
        return Err(ApiError::bad("payload must be a JSON object"));
    }
    Ok(match kind {
        "pause" => CommandKind::Pause,
        "cancel" => CommandKind::Cancel,
        "resume" => match str_field(payload, "wait_key")? {
            None => CommandKind::Unpause,
            Some(k) => {
                let response = payload
                    .pointer("/payload/response")
                    .or_else(|| payload.get("response"))
                    .cloned()
                    .ok_or_else(|| {
                        ApiError::bad("payload.payload.response is required to answer a wait_key")
                    })?;
                CommandKind::Answer {
                    wait_key: k.to_owned(),
                    response,
                }
            }
        },
        "emit_event" => {
            let name = str_field(payload, "name")?
                .filter(|n| !n.is_empty())
                .ok_or_else(|| ApiError::bad("payload.name (the event's name) is required"))?;
            let scope = match str_field(payload, "scope")? {
                None => Scope::Session,
                Some(s) => Scope::parse(s)
                    .ok_or_else(|| ApiError::bad("payload.scope must be run, session or global"))?,
            };
            CommandKind::EmitEvent {
                name: name.to_owned(),
                scope,
                payload: payload.get("payload").cloned().unwrap_or(Value::Null),
                session_id: str_field(payload, "session_id")?.map(str::to_owned),
            }
        }
        "compact_memory" => {
            let keep_last = match payload.get("keep_last") {
                None | Some(Value::Null) => 0,
                Some(v) => v.as_u64().filter(|n| *n <= 100_000).ok_or_else(|| {
                    ApiError::bad("payload.keep_last must be a whole number from 0 to 100000")
                })? as u32,
            };
            CommandKind::CompactMemory { keep_last }
        }
        "update_schedule" => CommandKind::UpdateSchedule,
        other => {
            return Err(ApiError::bad(format!(
                "type `{other}` must be one of {}",
                protocol::COMMAND_TYPES.join(", ")
            )));
        }
    })
}

/// An answer to the current prompt must be one of its choices (unless free text is allowed).
async fn check_choice(
    app: &AppState,
    run_id: &str,
    wait_key: &str,
    response: &Value,
) -> Result<(), ApiError> {
    let Ok(run) = app.store.run(run_id).await else {
        return Ok(()); // the store gives the precise 404
    };
    if let Some(w) = run
        .waiting
        .filter(|w| w.wait_key == wait_key && w.reason == "user")
    {
        crate::engine::match_choice(response, &w.choices, w.allow_free_text).map_err(|e| {
            ApiError::BadRequest("invalid_answer", format!("payload.payload.response: {e}"))
        })?;
    }
    Ok(())
}
