//! The web app in real headless Chromium: `tests/web/e2e.mjs` (playwright-core driving
//! Debian's `chromium` at a 360 px phone viewport) against a real `switchboard serve`.
//! Sign in with a pairing code, answer from the inbox and see the run complete without a
//! reload, see a prompt answered over the API disappear live, pause and resume, see the
//! run list follow status changes and an LLM reply stream into a run page (LLM fake), start
//! a flow from its form, approve and deny a model's tool calls in the chat view (calls
//! shown inline and opened; the timeline's entries too), watch a reply stream into the chat
//! view, reload offline and see the cached shell, sign out. Screenshots of
//! every step go to `target/screenshots/web/` (under CARGO_TARGET_DIR when set).
//! scripts/test installs chromium (apt) and playwright-core (npm ci in tests/web).

use std::path::{Path, PathBuf};

use e2e::process::{Gateway, TOKEN};
use serde_json::json;

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("screenshots/web")
}

#[tokio::test]
async fn the_web_app_works_in_headless_chromium_on_a_phone() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci` in tests/web (scripts/test does)"
    );
    let (llm_url, _llm) = e2e::llm_fake::start().await;
    let gw = Gateway::start(&[("SWITCHBOARD_LLM_BASE_URL", llm_url)]).await;
    let (status, code) = gw.post("/api/gateway/pair/codes", &json!({})).await;
    assert_eq!(status, 200, "{code}");
    let shots = screenshots();
    let _ = std::fs::remove_dir_all(&shots);
    let out = tokio::process::Command::new("node")
        .arg("e2e.mjs")
        .current_dir(&dir)
        .env("GATEWAY_URL", &gw.url)
        .env("ADMIN_TOKEN", TOKEN)
        .env("PAIRING_CODE", code["code"].as_str().unwrap_or_default())
        .env("SCREENSHOTS", &shots)
        .output()
        .await
        .expect("node (and Debian's chromium)");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{log}");
    assert!(out.status.success(), "the browser test failed:\n{log}");
    assert!(log.contains("web app: all steps passed"), "{log}");
    let pngs = std::fs::read_dir(&shots).map(|d| d.count()).unwrap_or(0);
    assert!(pngs >= 9, "screenshots in {}: {pngs}", shots.display());
}
