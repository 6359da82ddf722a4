//! Bearer-token authentication (first cut): one admin token, kept hashed in memory and
//! compared in constant time. Every route but `/api/health` goes through [`require_token`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// Who sent a request (recorded as the `actor` of the records it causes).
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
}

pub struct Auth {
    admin: [u8; 32],
}

impl Auth {
    pub fn new(token: &str) -> Self {
        Self {
            admin: Sha256::digest(token.as_bytes()).into(),
        }
    }

    pub fn check(&self, token: &str) -> Option<Principal> {
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        bool::from(h.ct_eq(&self.admin)).then(|| Principal {
            name: "admin".into(),
        })
    }
}

pub async fn require_token(
    State(auth): State<Arc<Auth>>,
    mut req: Request,
    next: Next,
) -> Response {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = match header {
        Some(h) => match h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
        {
            Some(t) => t.trim(),
            None => {
                return ApiError::Unauthorized(
                    "the Authorization header must be `Bearer <token>`".into(),
                )
                .into_response();
            }
        },
        None => {
            return ApiError::Unauthorized(
                "missing token: send `Authorization: Bearer <token>`".into(),
            )
            .into_response();
        }
    };
    match auth.check(token) {
        Some(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        None => ApiError::Unauthorized("invalid token".into()).into_response(),
    }
}
