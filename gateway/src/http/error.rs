//! `ApiError`: the one place that maps failures to a status code and the JSON body
//! `{"error":{"code","message"}}` (broken flows add `line` and `column`). An internal
//! error's details go to the log under a request id; its body says only "internal error"
//! and that id, so a 500 never shows a caller the gateway's insides.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::flows::FlowError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{1}")]
    BadRequest(&'static str, String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Flow(FlowError),
    #[error("{0}")]
    TooLarge(String),
    /// Over a limit; the seconds go into `Retry-After`.
    #[error("{0}")]
    TooManyRequests(String, u64),
    #[error("{0}")]
    Paused(String),
    #[error("{0}")]
    Unavailable(String),
    /// A run ended in failure; the message is the run's own recorded error.
    #[error("{0}")]
    RunFailed(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::BadRequest("bad_request", message.into())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => Self::NotFound(m),
            StoreError::Conflict(m) => Self::Conflict(m),
            StoreError::Invalid(m) => Self::bad(m),
            StoreError::Forbidden(m) => Self::Forbidden(m),
            StoreError::InvalidAnswer(m) => Self::BadRequest("invalid_answer", m),
            StoreError::Closed => Self::Unavailable("the gateway is shutting down".into()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::TooLarge(r.body_text());
        }
        let code = match r {
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            _ => "invalid_json",
        };
        Self::BadRequest(code, r.body_text())
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        match e {
            crate::auth::AuthError::Store(s) => s.into(),
            crate::auth::AuthError::Invalid(m) => Self::BadRequest("invalid", m),
            crate::auth::AuthError::Conflict(m) => Self::Conflict(m),
        }
    }
}

impl From<crate::auth::reach::Refusal> for ApiError {
    fn from(r: crate::auth::reach::Refusal) -> Self {
        match r {
            crate::auth::reach::Refusal::Invalid(m) => Self::BadRequest("invalid_target", m),
            crate::auth::reach::Refusal::Forbidden(m) => Self::Forbidden(m),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::BadRequest("invalid_query", r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::BadRequest(code, _) => (StatusCode::BAD_REQUEST, *code),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Flow(_) => (StatusCode::BAD_REQUEST, "invalid_flow"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::TooManyRequests(..) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            Self::Paused(_) => (StatusCode::SERVICE_UNAVAILABLE, "gateway_paused"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::RunFailed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "run_failed"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let mut error = match &self {
            Self::Internal(detail) => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                tracing::error!(request_id = %id, error = %detail, "request failed");
                json!({"code": code, "message": format!("internal error (request id {id})"), "request_id": id})
            }
            other => json!({"code": code, "message": other.to_string()}),
        };
        if let Self::Flow(f) = &self {
            error["file"] = json!(f.file);
            error["line"] = json!(f.line);
            error["column"] = json!(f.column);
        }
        let mut resp = (status, Json(json!({ "error": error }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Self::TooManyRequests(_, secs) = self {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub(crate) struct ApiJson<T>(pub T);

/// `Query<T>` whose rejections are [`ApiError`]s.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct ApiQuery<T>(pub T);
