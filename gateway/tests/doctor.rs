//! `switchboard doctor`: a broken config is reported whole (each problem, exit 1); a good
//! one has each part checked against the real thing: the data dir, the store, the disk,
//! the LLM provider (the loopback fake), Telegram's `getMe` (the fake), an MCP server (the
//! Python SDK's), and one that cannot start is reported with what to fix.

use std::process::Command;

use serde_json::json;

fn doctor(env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("doctor")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run doctor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_broken_config_is_reported_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("sb.toml");
    std::fs::write(&file, "host = \"nowhere\"\nlog_format = \"xml\"\n").unwrap();
    let (ok, said) = doctor(&[("SWITCHBOARD_CONFIG", file.to_str().unwrap())]);
    assert!(!ok, "{said}");
    let fixes: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("FIX   config:"))
        .collect();
    assert_eq!(fixes.len(), 2, "{said}");
    assert!(said.contains("nowhere") && said.contains("xml"), "{said}");
}

#[tokio::test]
async fn a_good_config_is_checked_part_by_part() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // A store with a record, made by a real gateway that then stopped (an embedded one,
    // whatever store the other tests use: doctor checks SQLite stores).
    let mut app = e2e::app::spawn_with(e2e::app::Opts {
        store: e2e::app::TestStore::Sqlite,
        ..Default::default()
    })
    .await;
    let run = app.start_run("echo", json!({"text": "hi"})).await;
    app.wait_for_status(&run, "completed").await;
    app.terminate().await;
    std::fs::rename(&app.data_dir, &data).unwrap();
    let (llm, _fake) = e2e::llm_fake::start().await;
    let tg = e2e::telegram_fake::TelegramFake::start().await;
    let count = tmp.path().join("calls");
    let config = e2e::mcp::config_file(
        tmp.path(),
        &[
            e2e::mcp::stdio_server("calc", 1, &count, "20s"),
            "[mcp.servers.broken]\ncommand = [\"/nonexistent/server\"]\n".into(),
        ],
    );
    let env = [
        ("SWITCHBOARD_CONFIG", config.as_str()),
        ("SWITCHBOARD_DATA_DIR", data.to_str().unwrap()),
        ("SWITCHBOARD_LLM_BASE_URL", llm.as_str()),
        ("SWITCHBOARD_TELEGRAM_BOT_TOKEN", "123:abc"),
        ("SWITCHBOARD_TELEGRAM_API_URL", tg.url.as_str()),
    ];
    let (ok, said) = tokio::task::spawn_blocking({
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move || {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            doctor(&env)
        }
    })
    .await
    .unwrap();
    for line in [
        "ok    config:",
        "ok    data dir:",
        "ok    store: sound; the clock is past its latest change",
        "ok    disk:",
        "ok    llm:",
        "ok    telegram: @switchboard_test_bot",
        "ok    mcp calc: 5 tools",
        "FIX   mcp broken:",
    ] {
        assert!(said.contains(line), "{line:?} in\n{said}");
    }
    assert!(!ok, "one check failed: the exit code says so");
    assert!(!said.contains("123:abc"), "the bot token is never printed");
    // The data dir opened to others is a thing to fix.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_, said) = doctor(&[("SWITCHBOARD_DATA_DIR", data.to_str().unwrap())]);
    assert!(
        said.contains("FIX   data dir:") && said.contains("chmod 700"),
        "{said}"
    );
}
