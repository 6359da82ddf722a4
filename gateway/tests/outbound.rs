//! What flows and webhooks may reach: by default only public addresses, checked on the
//! address connected to and on every redirect (the gateway's own API, cloud metadata, a
//! name that resolves to loopback, a redirect into them are all refused, naming the
//! address and the setting); `SWITCHBOARD_HTTP_ALLOW` opens named hosts; replies are
//! capped; values put into a URL are encoded; a flow's headers never follow a redirect to
//! another origin.

use std::net::SocketAddr;

use e2e::app::{assert_refused, eventually, spawn_app, spawn_with_env};
use serde_json::{Value, json};

/// A loopback HTTP server on `ip` standing in for the outside world: `/echo` shows the
/// path and query it got, `/redirect?to=URL` redirects, `/big` sends 5,000 bytes,
/// `/headers` shows the `x-api-key` it got.
async fn target(ip: [u8; 4]) -> SocketAddr {
    use axum::extract::{Query, RawQuery};
    use axum::http::Uri;
    use axum::response::Redirect;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/echo",
            get(|uri: Uri, RawQuery(q): RawQuery| async move {
                axum::Json(json!({"path": uri.path(), "query": q}))
            }),
        )
        .route(
            "/items/{id}",
            get(|uri: Uri| async move { axum::Json(json!({"path": uri.path()})) }),
        )
        .route(
            "/redirect",
            get(
                |Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    Redirect::temporary(q.get("to").map(String::as_str).unwrap_or("/"))
                },
            ),
        )
        .route("/big", get(|| async { "x".repeat(5000) }))
        .route(
            "/headers",
            get(|h: axum::http::HeaderMap| async move {
                let key = h
                    .get("x-api-key")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                axum::Json(json!({"x_api_key": key}))
            }),
        );
    let l = tokio::net::TcpListener::bind((std::net::Ipv4Addr::from(ip), 0))
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

const FETCH: &str =
    "steps:\n  - id: h\n    http: \"{{ input.url }}\"\n  - output: \"{{ steps.h }}\"\n";
const KEYED: &str = "steps:\n  - id: h\n    http:\n      url: \"{{ input.url }}\"\n      headers: {x-api-key: secret}\n  - output: \"{{ steps.h.body }}\"\n";
const SEARCH: &str = "steps:\n  - id: h\n    http: \"{{ input.base | safe }}/echo?q={{ input.q }}&n=1\"\n  - id: i\n    http: \"{{ input.base | safe }}/items/{{ input.id }}\"\n  - output: {search: \"{{ steps.h.body }}\", item: \"{{ steps.i.body }}\"}\n";

async fn fetch(app: &e2e::app::TestApp, url: &str) -> Value {
    let run = app.start_run("fetch", json!({"url": url})).await;
    eventually(20, "the fetch to end", || async {
        let r = app.run(&run).await;
        (r["status"] == "completed" || r["status"] == "failed").then_some(r)
    })
    .await
}

fn refused(r: &Value, addr: &str) {
    assert_eq!(r["status"], "failed", "{r}");
    let e = r["error"].as_str().unwrap();
    assert!(
        e.contains("refused") && e.contains(addr) && e.contains("SWITCHBOARD_HTTP_ALLOW"),
        "{e}"
    );
}

#[tokio::test]
async fn flows_reach_only_public_addresses_unless_allowed() {
    let allowed = target([127, 0, 0, 2]).await;
    let app = spawn_with_env(&[
        ("SWITCHBOARD_HTTP_ALLOW", "127.0.0.2"),
        ("SWITCHBOARD_HTTP_MAX_BODY", "1000"),
    ])
    .await;
    assert_eq!(app.upload("fetch.yaml", FETCH).await.0, 200);
    assert_eq!(app.upload("search.yaml", SEARCH).await.0, 200);
    let own_api = format!("{}/api/gateway/runs", app.url);
    // The gateway's own API on loopback, cloud metadata, a name that resolves to loopback.
    refused(&fetch(&app, &own_api).await, "127.0.0.1");
    refused(
        &fetch(&app, "http://169.254.169.254/latest/meta-data/").await,
        "169.254.169.254",
    );
    let port = app.url.rsplit(':').next().unwrap();
    refused(
        &fetch(&app, &format!("http://localhost:{port}/api/health")).await,
        "localhost",
    );
    // A redirect from an allowed host to a refused one is refused at the redirect.
    let bounce = format!("http://{allowed}/redirect?to={own_api}");
    refused(&fetch(&app, &bounce).await, "127.0.0.1");
    // A reply over SWITCHBOARD_HTTP_MAX_BODY fails the step with a clear error.
    let big = fetch(&app, &format!("http://{allowed}/big")).await;
    assert_eq!(big["status"], "failed");
    assert!(
        big["error"]
            .as_str()
            .unwrap()
            .contains("larger than 1000 bytes"),
        "{big}"
    );
    // The allowed host works; values in a URL are encoded, so they cannot add parameters
    // or climb out of the path.
    let ok = fetch(&app, &format!("http://{allowed}/echo")).await;
    assert_eq!(ok["status"], "completed", "{ok}");
    let run = app
        .start_run(
            "search",
            json!({"base": format!("http://{allowed}"), "q": "a&admin=1#x", "id": "../../admin"}),
        )
        .await;
    let s = app.wait_for_status(&run, "completed").await;
    assert_eq!(
        s["output"]["search"]["query"], "q=a%26admin%3D1%23x&n=1",
        "{s}"
    );
    assert_eq!(s["output"]["item"]["path"], "/items/..%2F..%2Fadmin", "{s}");
    // A value that is exactly `..` would still climb a segment: the step fails instead.
    let run = app
        .start_run(
            "search",
            json!({"base": format!("http://{allowed}"), "q": "x", "id": ".."}),
        )
        .await;
    let f = app.wait_for_status(&run, "failed").await;
    assert!(
        f["error"].as_str().unwrap().contains("cannot be `..`"),
        "{f}"
    );
}

#[tokio::test]
async fn a_flows_headers_do_not_follow_a_redirect_to_another_origin() {
    let first = target([127, 0, 0, 2]).await;
    let other = target([127, 0, 0, 3]).await;
    let app = spawn_with_env(&[("SWITCHBOARD_HTTP_ALLOW", "127.0.0.2,127.0.0.3")]).await;
    assert_eq!(app.upload("keyed.yaml", KEYED).await.0, 200);
    let keyed = |url: String| {
        let app = &app;
        async move {
            let run = app.start_run("keyed", json!({ "url": url })).await;
            app.wait_for_status(&run, "completed").await["output"]["x_api_key"].clone()
        }
    };
    assert_eq!(keyed(format!("http://{first}/headers")).await, "secret");
    let same = format!("http://{first}/redirect?to=/headers");
    assert_eq!(keyed(same).await, "secret", "the same origin keeps them");
    let away = format!("http://{first}/redirect?to=http://{other}/headers");
    assert_eq!(keyed(away).await, Value::Null, "another origin gets none");
}

#[tokio::test]
async fn webhooks_reach_only_public_addresses_unless_allowed() {
    let app = spawn_app().await;
    let (st, b) = app
        .post(
            "/api/gateway/webhooks",
            &json!({"url": "http://169.254.169.254/latest/meta-data/"}),
        )
        .await;
    assert_refused(st, &b, 400, "SWITCHBOARD_HTTP_ALLOW");
    // A name is checked as it resolves, at each delivery: `localhost` is refused.
    let port = app.url.rsplit(':').next().unwrap();
    let (st, b) = app
        .post(
            "/api/gateway/webhooks",
            &json!({"url": format!("http://localhost:{port}/api/gateway/pause"), "events": ["run.completed"]}),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let run = app.start_run("echo", json!({"text": "x"})).await;
    app.wait_for_status(&run, "completed").await;
    let error = eventually(10, "a failed delivery attempt", || async {
        let (_, d) = app.get("/api/gateway/webhooks/deliveries").await;
        d["items"][0]["last_error"].as_str().map(str::to_owned)
    })
    .await;
    assert!(
        error.contains("refused") && error.contains("localhost"),
        "{error}"
    );
    // The delivery never reached the gateway's own API: it is not paused.
    app.start_run("echo", json!({"text": "still running"}))
        .await;
}
