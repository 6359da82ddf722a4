//! The web app's security rules over HTTP, against a real `switchboard serve`: nothing works
//! without a session, forms need their CSRF token, the session cookie is locked down, the
//! pages allow no inline script, and signing out revokes the device token.

mod common;

use common::{csrf_in, http, sign_in};
use e2e::process::Gateway;
use serde_json::json;

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
    let r = http()
        .post(format!("{}/app/login", gw.url))
        .form(&[("code", "NOPE-NOPE")])
        .send()
        .await
        .expect("login");
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
        .client()
        .post(
            "/api/gateway/runs/start",
            json!({"bundle_id": "approval", "input_data": {"text": "x"}}),
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
        gw.client().get(&format!("/api/gateway/runs/{id}")).await["status"],
        "paused"
    );
    let ok = post(pause, csrf.clone()).await;
    assert_eq!(ok.status().as_u16(), 303);
    assert_eq!(
        gw.client().get(&format!("/api/gateway/runs/{id}")).await["status"],
        "paused"
    );

    // Sign out: the device token stops working everywhere.
    let token = cookie
        .split_once('.')
        .map(|(_, t)| t.to_owned())
        .unwrap_or_default();
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
