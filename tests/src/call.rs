//! Calling a test gateway over HTTP as someone ([`Caller`]: a token, none, extra headers),
//! and checking a refusal names what to fix ([`assert_refused`]).

use serde_json::Value;

use crate::app::TestApp;

/// Someone calling the gateway: a token (or none), and requests that return the status and
/// the JSON body (`null` when the body is not JSON).
pub struct Caller<'a> {
    pub(crate) app: &'a TestApp,
    pub(crate) token: Option<&'a str>,
    pub(crate) headers: Vec<(&'static str, String)>,
}

impl Caller<'_> {
    /// Sends `name: value` with each request (e.g. `x-forwarded-for`).
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self.app.http.request(method, self.app.url(path));
        if let Some(t) = self.token {
            rb = rb.bearer_auth(t);
        }
        for (name, value) in &self.headers {
            rb = rb.header(*name, value);
        }
        rb
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        reply(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        reply(self.request(reqwest::Method::POST, path).json(body)).await
    }

    /// `POST path` with no body.
    pub async fn post_empty(&self, path: &str) -> (u16, Value) {
        reply(self.request(reqwest::Method::POST, path)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        reply(self.request(reqwest::Method::PUT, path).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        reply(self.request(reqwest::Method::DELETE, path)).await
    }
}

/// Sends `rb`: the status and the JSON body (`null` when the body is not JSON).
pub(crate) async fn reply(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Asserts a refusal: the reply has `status` and an error message that names `needle`
/// (the field, value or setting the caller must fix).
#[track_caller]
pub fn assert_refused(st: u16, body: &Value, status: u16, needle: &str) {
    assert_eq!(st, status, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} not in {body}");
}
