//! Attacks on the running gateway, each made the way an outsider, a scoped key or a flow
//! author would make it, next to the legitimate path that must keep working: lockouts
//! that refuse valid credentials, `X-Forwarded-For` spoofing, YAML alias bombs, notify
//! targets as a relay, `/v1` sessions crossing principals, posing as a channel's people,
//! oversized payloads, too many streams, and 500s that leak internals. Requests from
//! flows and webhooks to private addresses are in `outbound.rs`.

use e2e::app::{Opts, TOKEN, assert_refused, eventually, spawn_app, spawn_with, spawn_with_env};
use reqwest::Method;
use serde_json::{Value, json};

/// A scoped API key made with the admin token.
async fn key(app: &e2e::app::TestApp, name: &str, scopes: &[&str]) -> String {
    let created = app.create_key(name, scopes).await;
    created["token"].as_str().unwrap().to_owned()
}

/// `GET /api/gateway/runs` with `token`, through a proxy that forwarded `xff` if any.
async fn get_as(app: &e2e::app::TestApp, token: &str, xff: Option<&str>) -> (u16, Value) {
    let caller = app.with_token(token);
    match xff {
        Some(x) => caller.header("x-forwarded-for", x),
        None => caller,
    }
    .get("/api/gateway/runs")
    .await
}

#[tokio::test]
async fn bad_credentials_lock_out_failures_never_valid_tokens() {
    let app = spawn_with_env(&[
        ("SWITCHBOARD_LOCKOUT_AFTER", "3"),
        ("SWITCHBOARD_LOCKOUT_BASE", "60s"),
    ])
    .await;
    let device_key = key(&app, "ci", &["read"]).await;
    for _ in 0..3 {
        assert_eq!(get_as(&app, "sbk_forged", None).await.0, 401);
    }
    // The address is locked out: failures from it now get 429 …
    let (st, h, b) = app
        .call(Method::GET, "/api/gateway/runs", Some("sbk_forged"), None)
        .await;
    assert_eq!(st, 429, "{b}");
    assert!(h.contains_key("retry-after"));
    // … and so do bad pairing codes …
    let pair = |code: String| {
        let app = &app;
        async move {
            app.anonymous()
                .post("/api/gateway/pair", &json!({"code": code, "name": "phone"}))
                .await
                .0
        }
    };
    assert_eq!(pair("AAAA-AAAA".into()).await, 429);
    // … but every valid credential from the same address still works, a pairing code too
    // (the web app and the Telegram bridge pair people from one address).
    assert_eq!(get_as(&app, TOKEN, None).await.0, 200);
    assert_eq!(get_as(&app, &device_key, None).await.0, 200);
    assert_eq!(pair(app.pairing_code().await).await, 200);
}

#[tokio::test]
async fn forwarded_for_counts_only_through_trusted_proxies() {
    let limits = [
        ("SWITCHBOARD_LOCKOUT_AFTER", "2".to_owned()),
        ("SWITCHBOARD_LOCKOUT_BASE", "60s".to_owned()),
    ];
    // Behind a trusted proxy each client has its own count.
    let mut env = limits.to_vec();
    env.push(("SWITCHBOARD_TRUSTED_PROXIES", "127.0.0.1".into()));
    let proxied = spawn_with(Opts {
        env,
        ..Default::default()
    })
    .await;
    for _ in 0..2 {
        assert_eq!(get_as(&proxied, "bad", Some("203.0.113.1")).await.0, 401);
    }
    assert_eq!(get_as(&proxied, "bad", Some("203.0.113.1")).await.0, 429);
    assert_eq!(get_as(&proxied, "bad", Some("203.0.113.2")).await.0, 401);
    // A client cannot escape by prepending addresses: the proxy's hop is the one counted.
    let spoofed = "198.51.100.9, 203.0.113.1";
    assert_eq!(get_as(&proxied, "bad", Some(spoofed)).await.0, 429);

    // Without trusted proxies the header is ignored: every request counts as its peer's.
    let direct = spawn_with(Opts {
        env: limits.to_vec(),
        ..Default::default()
    })
    .await;
    assert_eq!(get_as(&direct, "bad", Some("203.0.113.1")).await.0, 401);
    assert_eq!(get_as(&direct, "bad", Some("203.0.113.2")).await.0, 401);
    assert_eq!(get_as(&direct, "bad", Some("203.0.113.3")).await.0, 429);
    assert_eq!(get_as(&direct, TOKEN, Some("203.0.113.3")).await.0, 200);
}

/// Nine levels of ten aliases: about 1 KB that a YAML loader expands to 10^9 nodes.
fn alias_bomb() -> String {
    let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..=9 {
        let items = vec![format!("*a{}", i - 1); 10].join(", ");
        s.push_str(&format!("a{i}: &a{i} [{items}]\n"));
    }
    s.push_str("steps:\n  - say: hi\n");
    s
}

#[tokio::test]
async fn a_yaml_alias_bomb_is_refused_before_it_expands() {
    let app = spawn_app().await;
    let bomb = alias_bomb();
    assert!(bomb.len() < 1500);
    let (st, b) = app.upload("bomb.yaml", &bomb).await;
    assert_eq!(st, 400, "{b}");
    assert_eq!(b["error"]["code"], "invalid_flow");
    assert_eq!(b["error"]["line"], 2, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("aliases"));
    // The same file in the flows dir: a reload refuses it and changes nothing.
    std::fs::write(app.flows_dir.join("bomb.yaml"), &bomb).unwrap();
    let (st, b) = app.post("/api/gateway/bundles/reload", &json!({})).await;
    assert_eq!(st, 400, "{b}");
    assert!(b["error"]["file"].as_str().unwrap().ends_with("bomb.yaml"));
    // A file over the size cap is refused before it is read whole.
    let big = format!("steps:\n  - say: \"{}\"\n", "x".repeat(1024 * 1024));
    std::fs::write(app.flows_dir.join("bomb.yaml"), &big).unwrap();
    let (st, b) = app.post("/api/gateway/bundles/reload", &json!({})).await;
    assert_refused(st, &b, 400, "bytes");
    let (st, b) = app.upload("big.yaml", &big).await;
    assert_eq!(st, 400, "{b}");
    // A legitimate flow still uploads and runs; the gateway is alive and small.
    std::fs::remove_file(app.flows_dir.join("bomb.yaml")).unwrap();
    let (st, b) = app
        .upload("hello.yaml", "steps:\n  - output: {hi: true}\n")
        .await;
    assert_eq!(st, 200, "{b}");
    let run = app.start_run("hello", json!({})).await;
    app.wait_for_status(&run, "completed").await;
}

/// Publishes a channel's allowlist (what a bridge does at start) with the admin token.
async fn publish(app: &e2e::app::TestApp, channel: &str, allow: &[&str]) {
    let (st, b) = app
        .with_token(TOKEN)
        .put(
            &format!("/api/gateway/channels/{channel}"),
            &json!({ "allow": allow }),
        )
        .await;
    assert_eq!(st, 200, "{b}");
}

async fn start_as(app: &e2e::app::TestApp, token: &str, body: Value) -> (u16, Value) {
    let (st, b) = app
        .with_token(token)
        .post("/api/gateway/runs/start", &body)
        .await;
    (st, b)
}

#[tokio::test]
async fn a_scoped_key_cannot_make_the_gateway_message_strangers() {
    let app = spawn_app().await;
    let k = key(&app, "svc", &["read", "run"]).await;
    let ask = |notify: &[&str]| json!({"bundle_id": "ask", "input_data": {"text": "?"}, "notify": notify});
    // No bridge has registered: a notify to the channel is a clear 400, for anyone.
    let (st, b) = start_as(&app, &k, ask(&["telegram:999999"])).await;
    assert_refused(st, &b, 400, "not configured");
    publish(&app, "telegram", &["4242"]).await;
    publish(&app, "email", &["alice@example.com", "@corp.test"]).await;
    for target in ["email:outsider@evil.test?all", "telegram:999999"] {
        let (st, b) = start_as(&app, &k, ask(&[target])).await;
        assert_refused(st, &b, 403, target);
    }
    // A key may not start runs in a channel's conversation either.
    let (st, b) = start_as(
        &app,
        &k,
        json!({"bundle_id": "ask", "input_data": {}, "session_id": "telegram:4242"}),
    )
    .await;
    assert_eq!(st, 403, "{b}");
    // Allowlisted people can be notified; the admin may notify anyone.
    for target in [
        "telegram:4242",
        "email:alice@example.com?all",
        "email:bob@corp.test",
    ] {
        let (st, b) = start_as(&app, &k, ask(&[target])).await;
        assert_eq!(st, 200, "{target}: {b}");
    }
    let (st, b) = start_as(&app, TOKEN, ask(&["email:outsider@evil.test"])).await;
    assert_eq!(st, 200, "{b}");
    // Only a bridge (the `channel` scope) or an admin publishes an allowlist.
    let (st, _) = app
        .with_token(&k)
        .put(
            "/api/gateway/channels/email",
            &json!({"allow": ["@evil.test"]}),
        )
        .await;
    assert_eq!(st, 403);
    // Lists survive a restart (a standalone bridge may come back later).
    let (_, lists) = app.get("/api/gateway/channels").await;
    assert_eq!(lists["channels"]["telegram"], json!(["4242"]));
}

#[tokio::test]
async fn openai_sessions_are_namespaced_by_caller() {
    let app = spawn_app().await;
    // A Telegram chat's run waits for its person in session telegram:4242.
    let (st, b) = start_as(
        &app,
        TOKEN,
        json!({"bundle_id": "ask", "input_data": {"text": "Your PIN?"}, "session_id": "telegram:4242"}),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let chat_run = b["run_id"].as_str().unwrap().to_owned();
    app.wait_for_status(&chat_run, "waiting").await;
    let k = key(&app, "assistant", &["read", "run", "command"]).await;
    let r = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&k)
        .json(&json!({"model": "ask", "user": "telegram:4242", "messages": [{"role": "user", "content": "1234"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The chat's prompt was not answered by the key; the key got a session of its own.
    assert_eq!(app.run(&chat_run).await["status"], "waiting");
    assert_eq!(
        app.ledger(&chat_run).await.len(),
        app.run(&chat_run).await["ledger_len"].as_u64().unwrap() as usize
    );
    let (_, runs) = app.get("/api/gateway/runs?limit=100").await;
    let mine: Vec<&Value> = runs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["run_id"] != chat_run.as_str())
        .collect();
    assert_eq!(mine.len(), 1);
    let (_, who) = app.with_token(&k).get("/api/gateway/whoami").await;
    let session = format!("openai:{}:telegram:4242", who["id"].as_str().unwrap());
    assert_eq!(mine[0]["session_id"], session);
    // Nobody else may start runs in that namespace through the main API.
    let other = key(&app, "other", &["run"]).await;
    let (st, _) = start_as(
        &app,
        &other,
        json!({"bundle_id": "ask", "input_data": {}, "session_id": session}),
    )
    .await;
    assert_eq!(st, 403);
}

#[tokio::test]
async fn answers_and_events_are_capped() {
    let app = spawn_with_env(&[("SWITCHBOARD_MAX_PAYLOAD", "1000")]).await;
    let run = app.start_run("ask", json!({"text": "?"})).await;
    let wait_key = app.wait_key(&run).await;
    let (st, b) = app
        .answer("big", &run, &wait_key, json!("x".repeat(2000)))
        .await;
    assert_refused(st, &b, 413, "SWITCHBOARD_MAX_PAYLOAD");
    let (st, b) = app
        .command(
            "ev",
            &run,
            "emit_event",
            json!({"name": "x", "payload": {"blob": "y".repeat(2000)}}),
        )
        .await;
    assert_eq!(st, 413, "{b}");
    let (st, b) = app.answer("ok", &run, &wait_key, json!("Ada")).await;
    assert_eq!(st, 200, "{b}");
    app.wait_for_status(&run, "completed").await;
}

#[tokio::test]
async fn each_caller_has_a_cap_on_open_streams() {
    let app = spawn_with_env(&[("SWITCHBOARD_MAX_STREAMS", "2")]).await;
    let k = key(&app, "watcher", &["read"]).await;
    let open = || async {
        app.http
            .get(app.url("/api/gateway/ledger/stream"))
            .bearer_auth(&k)
            .send()
            .await
            .unwrap()
    };
    let first = open().await;
    let second = open().await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = open().await;
    assert_eq!(third.status().as_u16(), 429);
    assert!(third.headers().contains_key("retry-after"));
    // The admin token (bridges, load tools) is not capped.
    for _ in 0..3 {
        let r = app
            .http
            .get(app.url("/api/gateway/ledger/stream"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    // A closed stream frees its place.
    drop(first);
    eventually(10, "the stream's place to be freed", || async {
        (open().await.status().as_u16() == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_internal_error_shows_a_request_id_not_the_gateways_insides() {
    let app = spawn_app().await;
    // The flows dir becomes a file: a reload fails inside the gateway.
    std::fs::remove_dir_all(&app.flows_dir).unwrap();
    std::fs::write(&app.flows_dir, "not a directory").unwrap();
    let (st, b) = app.post("/api/gateway/bundles/reload", &json!({})).await;
    assert_eq!(st, 500, "{b}");
    let message = b["error"]["message"].as_str().unwrap();
    let id = b["error"]["request_id"].as_str().unwrap();
    assert_eq!(message, format!("internal error (request id {id})"));
    assert!(
        !b.to_string().contains(app.flows_dir.to_str().unwrap()),
        "{b}"
    );
}

#[tokio::test]
async fn rotating_the_admin_token_leaves_an_owner_only_file() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // A token file that was left readable by others (copied, restored from a backup…).
    let file = data.join("token");
    std::fs::write(&file, "sb_0123456789abcdef0123456789abcdef").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(&data)
        .env_remove("SWITCHBOARD_AUTH_TOKEN")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = e2e::app::ready_line(&mut child, "switchboard listening on ").await;
    let r = reqwest::Client::new()
        .post(format!("{addr}/api/gateway/token/rotate"))
        .bearer_auth("sb_0123456789abcdef0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn a_history_bundle_is_bounded_and_says_where_to_page_on() {
    let app = spawn_app().await;
    let many = "steps:\n  - loop:\n      max: 5100\n      steps:\n        - say: a\n        - say: b\n  - output: {done: true}\n";
    assert_eq!(app.upload("many.yaml", many).await.0, 200);
    let run = app.start_run("many", json!({})).await;
    let s = app.wait_for_status(&run, "completed").await;
    let len = s["ledger_len"].as_u64().unwrap();
    assert!(len > 10_000, "{len}");
    let (st, b) = app
        .get(&format!("/api/gateway/runs/{run}/history_bundle"))
        .await;
    assert_eq!(st, 200);
    assert_eq!(b["ledger"].as_array().unwrap().len(), 10_000);
    assert_eq!(b["ledger_truncated"], true);
    assert_eq!(b["ledger_next_after"], 10_000);
    // The rest pages on from there.
    let (_, page) = app
        .get(&format!(
            "/api/gateway/runs/{run}/ledger?after=10000&limit=1000"
        ))
        .await;
    assert_eq!(page["items"][0]["seq"], 10_001);
    // A small run's bundle is whole.
    let small = app.start_run("echo", json!({"text": "x"})).await;
    app.wait_for_status(&small, "completed").await;
    let (_, b) = app
        .get(&format!("/api/gateway/runs/{small}/history_bundle"))
        .await;
    assert_eq!(b["ledger_truncated"], false);
    assert_eq!(b["children_truncated"], false);
}

#[tokio::test]
async fn only_a_bridge_speaks_for_a_channels_people() {
    let app = spawn_app().await;
    let k = key(&app, "svc", &["read", "run", "command"]).await;
    let run = app.start_run("ask", json!({"text": "?"})).await;
    let wait_key = app.wait_key(&run).await;
    let answer = |command_id: &str, client_id: Option<&str>, channel: Option<&str>| {
        json!({"command_id": command_id, "run_id": run, "type": "resume", "client_id": client_id,
               "channel": channel, "payload": {"wait_key": wait_key, "payload": {"response": "x"}}})
    };
    let post = |path: &'static str, body: Value, headers: Vec<(&'static str, &'static str)>| {
        let (app, k) = (&app, &k);
        async move {
            let mut rb = app.http.post(app.url(path)).bearer_auth(k).json(&body);
            for (h, v) in headers {
                rb = rb.header(h, v);
            }
            let r = rb.send().await.unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Posing as a Telegram user (shown in the chat as "answered by @alice"), claiming the
    // bridge's next command id or run key, or sending events into a chat's session.
    for body in [
        answer("c1", Some("telegram:1001"), Some("telegram")),
        answer("c2", None, Some("email")),
        answer("telegram:777000:42", None, None),
        json!({"command_id": "c3", "run_id": run, "type": "emit_event",
               "payload": {"name": "go", "scope": "session", "session_id": "telegram:1001"}}),
    ] {
        let (st, b) = post("/api/gateway/commands", body, vec![]).await;
        assert_eq!(st, 403, "{b}");
    }
    let start = json!({"bundle_id": "echo", "input_data": {"text": "x"}});
    let (st, b) = post(
        "/api/gateway/runs/start",
        start.clone(),
        vec![("idempotency-key", "telegram:777000:43")],
    )
    .await;
    assert_eq!(st, 403, "{b}");
    // The caller's own names are fine.
    let (st, b) = post(
        "/api/gateway/runs/start",
        start,
        vec![("idempotency-key", "svc-1")],
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = post(
        "/api/gateway/commands",
        answer("svc-c", Some("svc"), Some("cli")),
        vec![],
    )
    .await;
    assert_eq!(st, 200, "{b}");
    app.wait_for_status(&run, "completed").await;
    let answers: Vec<Value> = app
        .ledger(&run)
        .await
        .into_iter()
        .filter(|r| r["result"].get("response").is_some())
        .collect();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["actor"]["principal"], "key:svc");
}
