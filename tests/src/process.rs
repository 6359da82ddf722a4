//! Real `switchboard` processes for end-to-end tests: `serve` on port 0 with a temporary
//! data dir and the shipped flows, and `bridge …` beside it. Each waits for its ready line
//! and is killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};

use crate::app::TestApp;

pub use crate::app::TOKEN;

/// The `switchboard` binary next to this test's executable (`target/<profile>/`).
pub fn binary() -> PathBuf {
    workspace_binary("switchboard")
}

/// A binary of the workspace next to this test's executable (`target/<profile>/NAME`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> dir");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build --workspace --bins`; scripts/test does)",
        bin.display()
    );
    bin
}

/// The repository's shipped flows.
pub fn flows_dir() -> PathBuf {
    crate::app::shipped_flows()
}

fn command(args: &[&str], env: &[(&str, String)]) -> Command {
    let log = std::env::var("TEST_LOG").is_ok();
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", if log { "debug" } else { "warn" })
        .stdout(Stdio::piped())
        .stderr(if log { Stdio::inherit() } else { Stdio::null() })
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A gateway for end-to-end tests: the harness's [`TestApp`] serving the shipped flows.
pub type Gateway = TestApp;

impl TestApp {
    /// Starts `serve` with `env` (e.g. `SWITCHBOARD_TELEGRAM_*`, the LLM fake's URL) and
    /// the shipped flows.
    pub async fn start(env: &[(&'static str, String)]) -> Self {
        Self::start_with_flows(env, &flows_dir()).await
    }

    /// Starts `serve` with the flows in `flows`.
    pub async fn start_with_flows(env: &[(&'static str, String)], flows: &Path) -> Self {
        crate::app::spawn_with(crate::app::Opts {
            env: env.to_vec(),
            flows_dir: Some(flows.to_path_buf()),
            ..Default::default()
        })
        .await
    }

    /// SIGKILLs the process.
    pub async fn kill(&mut self) {
        self.kill9().await;
    }
}

/// A running `switchboard bridge telegram|email` (standalone).
pub struct Bridge {
    child: Child,
}

impl Bridge {
    pub async fn telegram(gateway: &Gateway, state: &Path, env: &[(&str, String)]) -> Self {
        Self::start("telegram", gateway, state, env).await
    }

    pub async fn email(gateway: &Gateway, state: &Path, env: &[(&str, String)]) -> Self {
        Self::start("email", gateway, state, env).await
    }

    /// The bridge logs to stderr and prints no ready line: this returns once the gateway
    /// lists the bridge's channel (the bridge published its allowlist at start; tests wait
    /// for its other effects themselves). A restarted bridge's channel is listed already.
    async fn start(channel: &str, gateway: &Gateway, state: &Path, env: &[(&str, String)]) -> Self {
        let state_var = match channel {
            "email" => "SWITCHBOARD_EMAIL_STATE",
            _ => "SWITCHBOARD_TELEGRAM_STATE",
        };
        let mut all = vec![
            ("SWITCHBOARD_URL", gateway.url.clone()),
            ("SWITCHBOARD_TOKEN", TOKEN.to_owned()),
            (state_var, state.to_string_lossy().into_owned()),
        ];
        all.extend(env.iter().cloned());
        let mut cmd = command(&["bridge", channel], &all);
        cmd.stdout(Stdio::null());
        let child = cmd.spawn().expect("spawn the bridge");
        let what = format!("the {channel} bridge to register with the gateway");
        crate::app::eventually(30, &what, || async {
            let listed = gateway.get("/api/gateway/channels").await.1;
            (!listed["channels"][channel].is_null()).then_some(())
        })
        .await;
        Self { child }
    }

    /// SIGKILLs the bridge (no graceful shutdown).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}
