//! Shared by the web app's HTTP tests: a client that does not follow redirects, signing in
//! with a fresh pairing code, and the CSRF token of a page.
#![allow(dead_code)]

use e2e::process::Gateway;
use reqwest::redirect::Policy;

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// Posts the sign-in form with `fields` (`code` and `name`, or `token`).
pub async fn login(gw: &Gateway, fields: &[(&str, &str)]) -> reqwest::Response {
    http()
        .post(format!("{}/app/login", gw.url))
        .form(fields)
        .send()
        .await
        .expect("login")
}

/// Signs in with a fresh pairing code; returns the cookie (`name=value`) and its Set-Cookie.
pub async fn sign_in(gw: &Gateway) -> (String, String) {
    let code = gw.pairing_code().await;
    let r = login(gw, &[("code", code.as_str()), ("name", "test phone")]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/app/inbox");
    let set = r.headers()["set-cookie"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    let cookie = set.split(';').next().unwrap_or_default().to_owned();
    (cookie, set)
}

pub fn csrf_in(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .to_owned()
}
