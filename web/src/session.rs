//! Who is signed in. The session cookie (`sb_session`: HttpOnly, SameSite=Strict, Path=/app,
//! Secure behind https) holds the device token a pairing gave (with its device id, so
//! sign-out can revoke it) or a token typed in. Every page and every call passes that token
//! to the gateway's API, which checks it as for any client. The CSRF token of a session is
//! derived from its cookie (SHA-256 with a fixed label): a page from another site can
//! neither read it nor forge it. No session state is kept on the server, so signing in
//! survives a restart. It never renders pages.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Web;

pub const COOKIE: &str = "sb_session";

/// A signed-in visitor.
#[derive(Clone)]
pub struct Session {
    pub token: String,
    /// Set when the session came from a pairing (sign-out revokes that device).
    pub device_id: Option<String>,
    pub csrf: String,
    /// A gateway client with this session's token.
    pub client: protocol::Client,
}

/// The cookie value for a token (and the device it belongs to).
pub fn cookie_value(device_id: Option<&str>, token: &str) -> String {
    format!("{}.{token}", device_id.unwrap_or("-"))
}

/// The CSRF token of a cookie value.
pub fn csrf_of(cookie: &str) -> String {
    let digest = Sha256::digest(format!("switchboard-web-csrf\n{cookie}"));
    hex::encode(&digest[..16])
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/app; HttpOnly; SameSite=Strict; Max-Age=31536000{secure}")
}

/// `Set-Cookie` that removes the session.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/app; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether a request wants a page (a browser navigation) rather than data.
pub fn wants_page(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
        && headers.get("x-requested-with").is_none()
}

impl Session {
    /// Whether `given` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, given: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(given.as_bytes()))
    }
}

/// Why there is no session: a page is sent to sign in, anything else gets 401.
pub struct SignIn {
    page: bool,
}

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        if self.page {
            Redirect::to("/app/login").into_response()
        } else {
            crate::pages::json_error(StatusCode::UNAUTHORIZED, "unauthorized", "sign in first")
        }
    }
}

impl FromRequestParts<Web> for Session {
    type Rejection = SignIn;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, SignIn> {
        let page = wants_page(&parts.headers);
        let value = cookie(&parts.headers).ok_or(SignIn { page })?;
        let (device, token) = value.split_once('.').ok_or(SignIn { page })?;
        if token.is_empty() {
            return Err(SignIn { page });
        }
        let client = web
            .client_for(Some(token.to_owned()))
            .map_err(|_| SignIn { page })?;
        Ok(Session {
            token: token.to_owned(),
            device_id: (device != "-").then(|| device.to_owned()),
            csrf: csrf_of(&value),
            client,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_strict_and_csrf_follows_the_session() {
        let v = cookie_value(Some("dev1"), "tok");
        assert_eq!(v, "dev1.tok");
        let set = set_cookie(&v, true);
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/app", "Secure"] {
            assert!(set.contains(flag), "{set}");
        }
        assert!(!set_cookie(&v, false).contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
        assert_eq!(csrf_of(&v), csrf_of("dev1.tok"));
        assert_ne!(csrf_of(&v), csrf_of("dev1.other"));
        assert_eq!(csrf_of(&v).len(), 32);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sb_session=dev1.tok; b=2"),
        );
        assert_eq!(cookie(&h).as_deref(), Some("dev1.tok"));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html,*/*"));
        assert!(wants_page(&h));
        h.insert("x-requested-with", HeaderValue::from_static("fetch"));
        assert!(!wants_page(&h));
    }
}
