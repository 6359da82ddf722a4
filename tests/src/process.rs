//! Real `switchboard` processes for end-to-end tests: `serve` on port 0 with a temporary
//! data dir and the shipped flows, and `bridge …` beside it. Each waits for its ready line
//! and is killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

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

    /// A JSON client of this gateway with the admin token.
    pub fn client(&self) -> Api {
        Api {
            base: self.url.clone(),
            http: reqwest::Client::new(),
        }
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
        let api = gateway.client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while api.get("/api/gateway/channels").await["channels"][channel].is_null() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the {channel} bridge did not register with the gateway within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child }
    }

    /// SIGKILLs the bridge (no graceful shutdown).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

/// A tiny JSON client with the admin token (tests assert on raw JSON).
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub async fn get(&self, path: &str) -> serde_json::Value {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }

    /// The runs of `flow` (the newest 100 runs).
    pub async fn runs_of(&self, flow: &str) -> Vec<serde_json::Value> {
        let list = self.get("/api/gateway/runs?limit=100").await;
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["bundle_id"] == flow)
            .cloned()
            .collect()
    }

    /// Polls the run until its status is `status`; panics with the last answer after
    /// `secs` seconds. Runs advance on the gateway's own tasks, so a test that reads a run
    /// right after starting it must wait for the state it is about to check.
    pub async fn wait_status(&self, run_id: &str, status: &str, secs: u64) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let run = self.get(&format!("/api/gateway/runs/{run_id}")).await;
            if run["status"] == status {
                return run;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {run_id} is not {status} after {secs} s: {run}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The answers (`resume` records with a response) in a run's ledger.
    pub async fn answers(&self, run_id: &str) -> Vec<serde_json::Value> {
        let page = self
            .get(&format!("/api/gateway/runs/{run_id}/ledger?limit=1000"))
            .await;
        page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["result"].get("response").is_some())
            .cloned()
            .collect()
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}
