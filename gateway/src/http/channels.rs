//! Channel allowlists (`/api/gateway/channels/{channel}`): a bridge publishes who its channel
//! may reach (its allowed and paired Telegram users, its allowed mail senders and domains),
//! and `auth::reach` checks runs' notify targets against it. The lists are kept in the
//! store's settings, so they hold across restarts before a bridge publishes again.

use axum::Json;
use axum::extract::{Path, State};
use protocol::{ChannelAllowlist, ChannelList, ChannelRemoved};

use super::AppState;
use super::error::{ApiError, ApiJson};
use crate::auth::reach;

/// Loads every published allowlist into `app.reach` (at start).
pub(crate) async fn load(store: &crate::store::Store, into: &reach::Reach) -> Result<(), ApiError> {
    for channel in reach::CONTACT_CHANNELS {
        if let Some(text) = store.meta(&reach::meta_key(channel)).await? {
            let list: Vec<String> = serde_json::from_str(&text).unwrap_or_default();
            into.set(channel, list);
        }
    }
    Ok(())
}

/// Stores and applies `channel`'s allowlist (also used by `serve` for hosted bridges).
pub(crate) async fn publish(
    store: &crate::store::Store,
    into: &reach::Reach,
    channel: &str,
    allow: Vec<String>,
) -> Result<(), ApiError> {
    reach::check_allowlist(channel, &allow)
        .map_err(|m| ApiError::BadRequest("invalid_allowlist", m))?;
    let text = serde_json::to_string(&allow).map_err(|e| ApiError::Internal(e.to_string()))?;
    // The one lock held across an `.await` here: two publications of a list must reach
    // the store and memory in the same order, or the two would disagree.
    let _order = into.publishing.lock().await;
    store.set_meta(&reach::meta_key(channel), &text).await?;
    into.set(channel, allow);
    Ok(())
}

#[utoipa::path(put, path = "/api/gateway/channels/{channel}", tag = "auth", params(("channel" = String, Path, description = "`telegram` or `email`")), request_body = protocol::ChannelAllowlist, responses((status = 200, description = "`{channel, allow}`", body = protocol::ChannelAllowlist), (status = 400, body = protocol::ErrorBody), (status = 403, description = "the token lacks the `channel` scope", body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn put_allowlist(
    State(app): State<AppState>,
    Path(channel): Path<String>,
    ApiJson(body): ApiJson<ChannelAllowlist>,
) -> Result<Json<ChannelAllowlist>, ApiError> {
    publish(&app.store, &app.reach, &channel, body.allow.clone()).await?;
    tracing::info!(
        channel,
        entries = body.allow.len(),
        "channel allowlist published"
    );
    Ok(Json(body))
}

#[utoipa::path(get, path = "/api/gateway/channels", tag = "auth", responses((status = 200, body = protocol::ChannelList), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn list(State(app): State<AppState>) -> Json<ChannelList> {
    let channels = reach::CONTACT_CHANNELS
        .iter()
        .filter_map(|c| Some(((*c).to_owned(), app.reach.get(c)?)))
        .collect();
    Json(ChannelList { channels })
}

#[utoipa::path(delete, path = "/api/gateway/channels/{channel}", tag = "auth", params(("channel" = String, Path)), responses((status = 200, description = "runs may no longer notify the channel", body = protocol::ChannelRemoved), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn forget(
    State(app): State<AppState>,
    Path(channel): Path<String>,
) -> Result<Json<ChannelRemoved>, ApiError> {
    if !reach::CONTACT_CHANNELS.contains(&channel.as_str()) {
        return Err(ApiError::NotFound(format!("no channel `{channel}`")));
    }
    let _order = app.reach.publishing.lock().await;
    app.store.delete_meta(&reach::meta_key(&channel)).await?;
    Ok(Json(ChannelRemoved {
        removed: app.reach.remove(&channel),
    }))
}
