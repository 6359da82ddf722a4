//! Team approvals over HTTP: the pending prompts a caller may answer, voting shortcuts,
//! and the people and groups approvers name (admin).
//!
//! A vote through `approve`/`deny` is a `resume` command like any other (same checks:
//! approvers, one vote per person, the current prompt), with a `command_id` derived from
//! the run, the prompt and the caller, so a repeated tap is one vote.

use axum::Json;
use axum::extract::{Path, State};
use protocol::{
    ApprovalItem, ApprovalList, ApprovalQuery, CommandRequest, CommandResponse, Group, GroupList,
    Person, PersonList, RunStatus, WaitReason,
};
use serde_json::json;

use super::AppState;
use super::error::{ApiError, ApiJson, ApiQuery};
use crate::auth::approvers;
use crate::auth::{Principal, Scope};

#[utoipa::path(get, path = "/api/gateway/approvals", tag = "approvals", params(ApprovalQuery), responses((status = 200, body = protocol::ApprovalList), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn list(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
    ApiQuery(q): ApiQuery<ApprovalQuery>,
) -> Result<Json<ApprovalList>, ApiError> {
    let dir = app.store.directory().await?;
    let ids = match q.for_whom.as_deref() {
        None => approvers::identities(&who, None),
        Some(f) if who.allows(Scope::Admin) || approvers::identities(&who, None) == [f] => {
            approvers::expand(&dir, f)
        }
        Some(f) => {
            return Err(ApiError::Forbidden(format!(
                "only an admin may list another's approvals (`for={f}`)"
            )));
        }
    };
    let (runs, _) = app
        .store
        .list_runs(Some(RunStatus::Waiting), 1000, 0)
        .await?;
    let items = runs
        .into_iter()
        .filter_map(|r| {
            let w = r.waiting.filter(|w| w.reason == WaitReason::User)?;
            let mine = w.approvers.is_empty() || approvers::admits(&dir, &w.approvers, &ids);
            mine.then(|| ApprovalItem {
                run_id: r.run_id,
                bundle_id: r.bundle_id,
                wait_key: w.wait_key,
                prompt: w.prompt.unwrap_or_default(),
                choices: w.choices,
                approvers: w.approvers,
                quorum: w.quorum,
                votes: w.votes,
                deadline: w.until,
            })
        })
        .collect();
    Ok(Json(ApprovalList { items }))
}

#[utoipa::path(post, path = "/api/gateway/runs/{id}/approve", tag = "approvals", params(("id" = String, Path, description = "the run id")), responses((status = 200, body = protocol::CommandResponse), (status = 400, body = protocol::ErrorBody), (status = 403, description = "not an approver", body = protocol::ErrorBody), (status = 404, body = protocol::ErrorBody), (status = 409, description = "already voted, or not waiting", body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn approve(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<CommandResponse>, ApiError> {
    vote(&app, &who, &id, true).await.map(Json)
}

#[utoipa::path(post, path = "/api/gateway/runs/{id}/deny", tag = "approvals", params(("id" = String, Path, description = "the run id")), responses((status = 200, body = protocol::CommandResponse), (status = 400, body = protocol::ErrorBody), (status = 403, description = "not an approver", body = protocol::ErrorBody), (status = 404, body = protocol::ErrorBody), (status = 409, description = "already voted, or not waiting", body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn deny(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<CommandResponse>, ApiError> {
    vote(&app, &who, &id, false).await.map(Json)
}

/// Votes the current prompt's approving choice (its first) or rejecting one (`reject`,
/// `deny` or `no` when it has one, else its last).
async fn vote(
    app: &AppState,
    who: &Principal,
    run_id: &str,
    yes: bool,
) -> Result<CommandResponse, ApiError> {
    let run = app.store.run(run_id).await?;
    let Some(w) = run.waiting.filter(|w| {
        run.status == RunStatus::Waiting && w.is_for_a_person() && !w.choices.is_empty()
    }) else {
        return Err(ApiError::Conflict(format!(
            "run {run_id} is not waiting for an approval"
        )));
    };
    if !yes && w.choices.len() < 2 {
        return Err(ApiError::Conflict(format!(
            "run {run_id}'s prompt has no choice to deny with"
        )));
    }
    let choice = if yes {
        w.choices[0].clone()
    } else {
        let named = w
            .choices
            .iter()
            .find(|c| ["reject", "deny", "no"].contains(&c.to_lowercase().as_str()));
        named.or(w.choices.last()).cloned().unwrap_or_default()
    };
    let req = CommandRequest {
        command_id: format!("vote:{run_id}:{}:{}", w.wait_key, who.id),
        run_id: run_id.to_owned(),
        kind: "resume".into(),
        payload: json!({"wait_key": w.wait_key, "payload": {"response": choice}}),
        client_id: None,
        channel: Some("api".into()),
    };
    super::commands::submit_command(app, who, req).await
}

#[utoipa::path(get, path = "/api/gateway/people", tag = "approvals", responses((status = 200, body = protocol::PersonList), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn people(State(app): State<AppState>) -> Result<Json<PersonList>, ApiError> {
    let dir = app.store.directory().await?;
    let mut items: Vec<Person> = Vec::new();
    for (identity, person) in dir.people {
        match items.last_mut() {
            Some(p) if p.name == person => p.identities.push(identity),
            _ => items.push(Person {
                name: person,
                identities: vec![identity],
            }),
        }
    }
    Ok(Json(PersonList { items }))
}

#[utoipa::path(post, path = "/api/gateway/people", tag = "approvals", request_body = protocol::Person, responses((status = 200, body = protocol::Person), (status = 400, body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 409, description = "an identity belongs to another person", body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn add_person(
    State(app): State<AppState>,
    ApiJson(p): ApiJson<Person>,
) -> Result<Json<Person>, ApiError> {
    check_name(&p.name, "name")?;
    check_entries(
        &p.identities,
        "identities",
        &["telegram", "email", "device", "key"],
    )?;
    let identities: Vec<String> = p
        .identities
        .iter()
        .map(|i| approvers::normalise(i))
        .collect();
    app.store.add_person(&p.name, &identities).await?;
    Ok(Json(Person {
        name: p.name,
        identities,
    }))
}

#[utoipa::path(delete, path = "/api/gateway/people/{name}", tag = "approvals", params(("name" = String, Path)), responses((status = 200, body = protocol::Person), (status = 404, body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn remove_person(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Person>, ApiError> {
    if !app.store.remove_person(&name).await? {
        return Err(ApiError::NotFound(format!("no person `{name}`")));
    }
    Ok(Json(Person {
        name,
        identities: Vec::new(),
    }))
}

#[utoipa::path(get, path = "/api/gateway/groups", tag = "approvals", responses((status = 200, body = protocol::GroupList), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn groups(State(app): State<AppState>) -> Result<Json<GroupList>, ApiError> {
    let dir = app.store.directory().await?;
    let mut items: Vec<Group> = Vec::new();
    for (group, member) in dir.groups {
        match items.last_mut() {
            Some(g) if g.name == group => g.members.push(member),
            _ => items.push(Group {
                name: group,
                members: vec![member],
            }),
        }
    }
    Ok(Json(GroupList { items }))
}

#[utoipa::path(post, path = "/api/gateway/groups", tag = "approvals", request_body = protocol::Group, responses((status = 200, body = protocol::Group), (status = 400, body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn add_group(
    State(app): State<AppState>,
    ApiJson(g): ApiJson<Group>,
) -> Result<Json<Group>, ApiError> {
    check_name(&g.name, "name")?;
    check_entries(&g.members, "members", approvers::MEMBER_KINDS)?;
    let members: Vec<String> = g.members.iter().map(|m| approvers::normalise(m)).collect();
    app.store.add_group_members(&g.name, &members).await?;
    Ok(Json(Group {
        name: g.name,
        members,
    }))
}

#[utoipa::path(delete, path = "/api/gateway/groups/{name}", tag = "approvals", params(("name" = String, Path)), responses((status = 200, body = protocol::Group), (status = 404, body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn remove_group(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Group>, ApiError> {
    if !app.store.remove_group(&name).await? {
        return Err(ApiError::NotFound(format!("no group `{name}`")));
    }
    Ok(Json(Group {
        name,
        members: Vec::new(),
    }))
}

fn check_name(name: &str, field: &str) -> Result<(), ApiError> {
    approvers::check_name(name, field).map_err(ApiError::bad)
}

fn check_entries(list: &[String], field: &str, kinds: &[&str]) -> Result<(), ApiError> {
    approvers::check_entries(list, field, kinds).map_err(ApiError::bad)
}
