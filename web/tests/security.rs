//! The web app's security rules over HTTP, against a real `switchboard serve`: nothing works
//! without a session, forms need their CSRF token, the session cookie is locked down, the
//! pages allow no inline script, and signing out revokes the device token. Also the
//! attacks on it: a forged sign-out, an admin token in a browser, guessing at the sign-in
//! form, and the pairing link.

mod common;

use common::{csrf_in, http, login, sign_in};
use e2e::process::Gateway;
use serde_json::json;
use sha2::Digest;

#[tokio::test]
async fn nothing_works_without_a_session() {
    let gw = Gateway::start(&[]).await;
    for path in [
        "/app/inbox",
        "/app/runs",
        "/app/runs/x",
        "/app/start",
        "/app/schedules",
    ] {
        let r = http()
            .get(format!("{}{path}", gw.url))
            .header("accept", "text/html")
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status().as_u16(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/app/login", "{path}");
    }
    for path in ["/app/events", "/app/runs/x/events", "/app/ping"] {
        let r = http()
            .get(format!("{}{path}", gw.url))
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status().as_u16(), 401, "{path}");
    }
    let r = http()
        .post(format!("{}/app/runs/x/pause", gw.url))
        .form(&[("csrf", "x")])
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 401);
    // A forged cookie gets nowhere either: the gateway refuses its token.
    let r = http()
        .get(format!("{}/app/inbox", gw.url))
        .header("accept", "text/html")
        .header("cookie", "sb_session=-.sbd_forged")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/app/login");
}

#[tokio::test]
async fn the_cookie_is_locked_down_and_pages_allow_no_inline_script() {
    let gw = Gateway::start(&[]).await;
    let (cookie, set) = sign_in(&gw).await;
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/app"] {
        assert!(set.contains(flag), "{set}");
    }
    let r = http()
        .get(format!("{}/app/inbox", gw.url))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("inbox");
    assert_eq!(r.status().as_u16(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = r.text().await.unwrap_or_default();
    assert!(
        !html.contains("<script>") && !html.contains(" onclick="),
        "no inline script"
    );
    // Bad sign-ins say why.
    let r = login(&gw, &[("code", "NOPE-NOPE")]).await;
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        r.text()
            .await
            .unwrap_or_default()
            .contains("Pairing failed")
    );
}

#[tokio::test]
async fn forms_need_their_csrf_token_and_sign_out_revokes_the_device() {
    let gw = Gateway::start(&[]).await;
    let (cookie, _) = sign_in(&gw).await;
    let (s, run) = gw
        .post(
            "/api/gateway/runs/start",
            &json!({"bundle_id": "approval", "input_data": {"text": "x"}}),
        )
        .await;
    assert_eq!(s, 200);
    let id = run["run_id"].as_str().unwrap_or_default().to_owned();
    let page = http()
        .get(format!("{}/app/runs/{id}", gw.url))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("run page");
    let csrf = csrf_in(&page.text().await.unwrap_or_default());
    assert_eq!(csrf.len(), 32);
    let post = |path: String, csrf: String| {
        let cookie = cookie.clone();
        async move {
            http()
                .post(path)
                .header("cookie", cookie)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("nonce", "n-1"),
                    ("back", "/app/inbox"),
                ])
                .send()
                .await
                .expect("POST")
        }
    };
    let pause = format!("{}/app/runs/{id}/pause", gw.url);
    assert_eq!(
        post(pause.clone(), "wrong".into()).await.status().as_u16(),
        403
    );
    assert_eq!(
        post(pause.clone(), String::new()).await.status().as_u16(),
        403
    );
    assert_ne!(
        gw.get(&format!("/api/gateway/runs/{id}")).await.1["status"],
        "paused"
    );
    let ok = post(pause, csrf.clone()).await;
    assert_eq!(ok.status().as_u16(), 303);
    assert_eq!(
        gw.get(&format!("/api/gateway/runs/{id}")).await.1["status"],
        "paused"
    );

    // Sign out: the device token stops working everywhere.
    let token = cookie
        .strip_prefix("sb_session=")
        .unwrap_or_default()
        .to_owned();
    let api = |t: String| {
        let url = format!("{}/api/gateway/runs?limit=1", gw.url);
        async move {
            http()
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .expect("API")
                .status()
                .as_u16()
        }
    };
    assert_eq!(api(token.clone()).await, 200);
    assert_eq!(
        post(format!("{}/app/logout", gw.url), "bad".into())
            .await
            .status()
            .as_u16(),
        403
    );
    let out = post(format!("{}/app/logout", gw.url), csrf).await;
    assert_eq!(out.status().as_u16(), 303);
    let cleared = out.headers()["set-cookie"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(api(token).await, 401);
}

/// What a forged cookie could reach before: a webhook, a paired device and a key.
struct Targets {
    webhook: String,
    device_id: String,
    device_token: String,
    key_token: String,
}

async fn targets(gw: &Gateway) -> Targets {
    let (st, w) = gw
        .post(
            "/api/gateway/webhooks",
            &json!({"url": "https://hooks.example.test/x"}),
        )
        .await;
    assert_eq!(st, 201, "{w}");
    let (_, code) = gw.post("/api/gateway/pair/codes", &json!({})).await;
    let (st, d) = gw
        .post(
            "/api/gateway/pair",
            &json!({"code": code["code"], "name": "phone"}),
        )
        .await;
    assert_eq!(st, 200, "{d}");
    let k = gw.create_key("ci", &["read"]).await;
    let s = |v: &serde_json::Value, f: &str| v[f].as_str().unwrap_or_default().to_owned();
    Targets {
        webhook: s(&w, "id"),
        device_id: s(&d, "device_id"),
        device_token: s(&d, "token"),
        key_token: s(&k, "token"),
    }
}

async fn api_status(gw: &Gateway, token: &str) -> u16 {
    http()
        .get(format!("{}/api/gateway/runs?limit=1", gw.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("API")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_forged_sign_out_deletes_nothing() {
    let gw = Gateway::start(&[]).await;
    let t = targets(&gw).await;
    // The web app holds no credential of its own.
    let (st, keys) = gw.get("/api/gateway/keys").await;
    assert_eq!(st, 200, "{keys}");
    let live_web_keys = keys["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["name"] == "web:signout" && k["revoked_at"].is_null())
        .count();
    assert_eq!(live_web_keys, 0, "{keys}");
    let forged = [
        format!("sb_session=%2e%2e/webhooks/{}.x", t.webhook),
        format!("sb_session=../webhooks/{}.x", t.webhook),
        format!("sb_session={}.sbd_garbage", t.device_id),
        format!("sb_session=%2e%2e/keys/{}.x", t.device_id),
    ];
    for cookie in &forged {
        // Whatever CSRF value an outsider can compute from the cookie (the old derivation
        // was a plain SHA-256 of it), the sign-out does nothing.
        let value = cookie.trim_start_matches("sb_session=");
        let guess =
            hex::encode(&sha2::Sha256::digest(format!("switchboard-web-csrf\n{value}"))[..16]);
        for csrf in [guess.as_str(), ""] {
            let r = http()
                .post(format!("{}/app/logout", gw.url))
                .header("cookie", cookie)
                .form(&[("csrf", csrf)])
                .send()
                .await
                .expect("logout");
            assert!(
                matches!(r.status().as_u16(), 303 | 401 | 403),
                "{cookie}: {}",
                r.status()
            );
        }
    }
    let hooks = gw.get("/api/gateway/webhooks").await.1;
    assert_eq!(hooks["items"][0]["id"], t.webhook.as_str(), "{hooks}");
    assert_eq!(api_status(&gw, &t.device_token).await, 200);
    assert_eq!(api_status(&gw, &t.key_token).await, 200);
}

#[tokio::test]
async fn an_admin_token_cannot_sign_in_but_a_scoped_one_can() {
    let gw = Gateway::start(&[]).await;
    let with_token = |token: String| {
        let gw = &gw;
        async move { login(gw, &[("token", token.as_str())]).await }
    };
    let r = with_token(e2e::process::TOKEN.to_owned()).await;
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap_or_default().contains("admin token"));
    let k = gw.create_key("root", &["read", "admin"]).await;
    let r = with_token(k["token"].as_str().unwrap_or_default().to_owned()).await;
    assert_eq!(
        r.status().as_u16(),
        403,
        "a key with the admin scope is refused too"
    );
    let t = targets(&gw).await;
    let r = with_token(t.key_token.clone()).await;
    assert_eq!(r.status().as_u16(), 303);
    // Signing out with a typed key ends the session but does not revoke the key.
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let page = http()
        .get(format!("{}/app/inbox", gw.url))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("inbox");
    let csrf = csrf_in(&page.text().await.unwrap_or_default());
    let out = http()
        .post(format!("{}/app/logout", gw.url))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status().as_u16(), 303);
    assert_eq!(api_status(&gw, &t.key_token).await, 200);
}

#[tokio::test]
async fn the_pairing_link_opens_a_filled_in_form() {
    let gw = Gateway::start(&[]).await;
    let code = gw.pairing_code().await;
    let r = http()
        .get(format!("{}/app/pair?code={code}", gw.url))
        .send()
        .await
        .expect("pair link");
    assert_eq!(r.status().as_u16(), 200);
    let html = r.text().await.unwrap_or_default();
    assert!(html.contains(&format!("value=\"{code}\"")), "{html}");
    // Fetching the link used nothing up: the form signs in with the code.
    let r = login(&gw, &[("code", code.as_str()), ("name", "phone")]).await;
    assert_eq!(r.status().as_u16(), 303);
}

#[tokio::test]
async fn guessing_at_sign_in_is_limited_per_visitor() {
    let gw = Gateway::start(&[
        ("SWITCHBOARD_TRUSTED_PROXIES", "127.0.0.1".to_owned()),
        ("SWITCHBOARD_LOCKOUT_AFTER", "3".to_owned()),
        ("SWITCHBOARD_LOCKOUT_BASE", "60s".to_owned()),
    ])
    .await;
    let attempt = |visitor: &'static str, code: String| {
        let url = format!("{}/app/login", gw.url);
        async move {
            http()
                .post(url)
                .header("x-forwarded-for", visitor)
                .form(&[("code", code.as_str()), ("name", "x")])
                .send()
                .await
                .expect("login")
                .status()
                .as_u16()
        }
    };
    // The web app's calls count as the visitor's: three bad codes lock out that visitor at
    // the gateway …
    for _ in 0..3 {
        assert_eq!(attempt("203.0.113.5", "AAAA-AAAA".into()).await, 401);
    }
    assert_eq!(attempt("203.0.113.5", "AAAA-AAAA".into()).await, 429);
    // … and nobody else: another visitor pairs with a good code.
    let code = gw.pairing_code().await;
    assert_eq!(attempt("203.0.113.6", code).await, 303);
    // The sign-in form has its own limit per visitor as well (10 at once).
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(attempt("203.0.113.7", String::new()).await);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429));
    assert_eq!(attempt("203.0.113.8", String::new()).await, 400);
}
