//! Who is signed in. The session cookie (`sb_session`: HttpOnly, SameSite=Strict, Path=/app,
//! Secure behind https) holds the device token a pairing gave, or a token typed in. Every
//! page and every call passes that token to the gateway's API, which checks it as for any
//! client; the app acts with nothing else (it holds no credential of its own). The CSRF
//! token of a session is an HMAC of its cookie under a key only the server has, so neither
//! a page from another site nor a forged cookie yields a valid one. No session state is
//! kept on the server, so signing in survives a restart. It never renders pages.
//!
//! Every call the app makes for a visitor carries the visitor note the gateway's guard put
//! on the request ([`VISITOR_HEADER`]), so rate limits and lockouts count the visitor's
//! address, not the app's loopback one.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::Web;

pub const COOKIE: &str = "sb_session";
pub use protocol::VISITOR_HEADER;

/// A signed-in visitor.
#[derive(Clone)]
pub struct Session {
    pub token: String,
    pub csrf: String,
    /// A gateway client with this session's token (and the visitor's note).
    pub client: protocol::Client,
}

/// The CSRF token of a cookie value under the app's key.
pub fn csrf_of(key: &str, cookie: &str) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(b"switchboard-web-csrf\n");
    mac.update(cookie.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// The visitor note of a request, to pass on to the gateway.
pub fn visitor(headers: &HeaderMap) -> Option<HeaderValue> {
    headers.get(VISITOR_HEADER).cloned()
}

/// The visitor's address as the gateway noted it (for the sign-in limit).
pub fn visitor_ip(headers: &HeaderMap) -> Option<std::net::IpAddr> {
    let note = headers.get(VISITOR_HEADER)?.to_str().ok()?;
    note.split(' ').next()?.parse().ok()
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
        // Cookies of earlier versions were `<device id>.<token>`; tokens hold no dot.
        let token = value.rsplit('.').next().unwrap_or_default();
        let well_formed =
            !token.is_empty() && token.len() <= 200 && token.bytes().all(|b| b.is_ascii_graphic());
        if !well_formed {
            return Err(SignIn { page });
        }
        let client = web
            .client_for(Some(token.to_owned()), &parts.headers)
            .map_err(|_| SignIn { page })?;
        Ok(Session {
            token: token.to_owned(),
            csrf: csrf_of(&web.cfg.csrf_key, &value),
            client,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_strict_and_csrf_needs_the_key() {
        let v = "tok";
        let set = set_cookie(v, true);
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/app", "Secure"] {
            assert!(set.contains(flag), "{set}");
        }
        assert!(!set_cookie(v, false).contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
        assert_ne!(csrf_of("k", v), csrf_of("k", "other"));
        assert_ne!(csrf_of("k", v), csrf_of("another key", v));
        assert_eq!(csrf_of("k", v).len(), 32);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sb_session=tok; b=2"),
        );
        assert_eq!(cookie(&h).as_deref(), Some("tok"));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html,*/*"));
        assert!(wants_page(&h));
        h.insert("x-requested-with", HeaderValue::from_static("fetch"));
        assert!(!wants_page(&h));
        h.insert(
            VISITOR_HEADER,
            HeaderValue::from_static("203.0.113.7 sha256=00"),
        );
        assert_eq!(visitor_ip(&h), Some([203, 0, 113, 7].into()));
    }
}
