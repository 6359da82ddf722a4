//! The test harness every integration test uses: [`spawn_app`] starts the real
//! `switchboard serve` on 127.0.0.1:0 with a fresh data dir (the shipped flows plus the test
//! flows below, or a flows dir of the test's choosing, on the store [`TestStore`] names) and
//! returns a [`TestApp`] that talks to it over HTTP: raw calls, run starts, answers, waits
//! with deadlines, ledgers, SSE reads, restarts and `kill -9`. Logs are hidden unless
//! `TEST_LOG=1`. [`crate::process`] adds standalone bridges; [`crate::llm_fake`] and
//! [`crate::telegram_fake`] stand in for what this machine cannot reach.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::call::reply;
pub use crate::call::{Caller, assert_refused};
pub use crate::wait::{eventually, read_until, ready_line};

/// The admin token every test gateway uses.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// Flows the tests use besides the shipped examples.
const TEST_FLOWS: &[(&str, &str)] = &[
    (
        "tick",
        "steps:\n  - wait: 2s\n  - say: tick\n  - output: {done: true}\n",
    ),
    (
        "waiter",
        "steps:\n  - id: got\n    wait_event: go\n    scope: global\n  - output: \"{{ steps.got.payload }}\"\n",
    ),
    (
        "parent",
        "steps:\n  - id: child\n    call: ask\n    input: {text: from parent}\n  - output: \"{{ steps.child.output }}\"\n",
    ),
    (
        "slowllm",
        "steps:\n  - id: r\n    llm: \"{{ input.text }}\"\n  - output: \"{{ steps.r.text }}\"\n",
    ),
    (
        "flaky",
        "steps:\n  - id: r\n    llm: \"{{ input.text }}\"\n    retries: 1\n  - output: \"{{ steps.r.text }}\"\n",
    ),
    (
        "notifier",
        "steps:\n  - emit: go\n    scope: global\n    payload: {n: \"{{ input.n }}\"}\n",
    ),
    (
        "caller",
        "steps:\n  - id: h\n    http:\n      method: POST\n      url: \"{{ input.url }}\"\n      headers: {x-api-key: secret}\n      body: {x: \"{{ input.x }}\"}\n  - output: \"{{ steps.h }}\"\n",
    ),
    (
        "hooked",
        "triggers: [deploy, unsigned]\ninput_schema:\n  type: object\n  required: [ref]\n  properties:\n    ref: {type: string}\nsteps:\n  - output: {deployed: \"{{ input.ref }}\"}\n",
    ),
    (
        "typed",
        "input_schema:\n  type: object\n  required: [n]\n  properties:\n    n: {type: integer, minimum: 1}\nsteps:\n  - output: \"{{ input.n }}\"\n",
    ),
];

/// The store a test gateway runs on: `SWITCHBOARD_TEST_STORE` (default `sqlite`, the
/// embedded store in the data dir; `postgres`, a fresh database per app on the throwaway
/// cluster at `SWITCHBOARD_TEST_PG_URL`, which `scripts/test` starts). One suite runs
/// against both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStore {
    Sqlite,
    Postgres,
}

impl Default for TestStore {
    fn default() -> Self {
        Self::from_env()
    }
}

impl TestStore {
    /// The store `SWITCHBOARD_TEST_STORE` names.
    pub fn from_env() -> Self {
        match std::env::var("SWITCHBOARD_TEST_STORE").as_deref() {
            Err(_) | Ok("" | "sqlite") => Self::Sqlite,
            Ok("postgres") => Self::Postgres,
            Ok(other) => panic!("SWITCHBOARD_TEST_STORE `{other}` must be `sqlite` or `postgres`"),
        }
    }

    /// A new database for one app: its URL (`None` for SQLite, which lives in the data dir).
    pub async fn create_database(self) -> Option<String> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some(crate::pg::create_database().await),
        }
    }
}

pub struct TestApp {
    /// The gateway's base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    pub http: reqwest::Client,
    pub data_dir: PathBuf,
    pub flows_dir: PathBuf,
    pub llm_url: Option<String>,
    pub env: Vec<(&'static str, String)>,
    pub args: Vec<&'static str>,
    pub store: TestStore,
    /// The PostgreSQL database of this app (`None` on SQLite).
    pub database_url: Option<String>,
    /// Everything the server printed on stdout (token, pairing code, address).
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

#[derive(Default)]
pub struct Opts {
    pub llm_url: Option<String>,
    /// Extra environment for the server (limits, TTLs…).
    pub env: Vec<(&'static str, String)>,
    /// Extra `serve` arguments (e.g. `--no-runner`).
    pub args: Vec<&'static str>,
    /// Serve exactly these flows (default: the shipped ones plus the test flows).
    pub flows_dir: Option<PathBuf>,
    pub store: TestStore,
    /// Join this PostgreSQL database instead of creating one (another node of a cluster).
    pub database_url: Option<String>,
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Opts::default()).await
}

/// Starts the gateway with these environment variables set (on top of the harness's).
pub async fn spawn_with_env(env: &[(&'static str, &str)]) -> TestApp {
    let env = env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    spawn_with(Opts {
        env,
        ..Default::default()
    })
    .await
}

/// The repository's shipped flows.
pub fn shipped_flows() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../flows")
}

pub async fn spawn_with(opts: Opts) -> TestApp {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data_dir = tmp.path().join("data");
    let flows_dir = match opts.flows_dir {
        Some(dir) => dir,
        None => {
            let dir = tmp.path().join("flows");
            std::fs::create_dir_all(&dir).expect("flows dir");
            for e in std::fs::read_dir(shipped_flows()).expect("shipped flows") {
                let p = e.expect("entry").path();
                std::fs::copy(&p, dir.join(p.file_name().expect("name"))).expect("copy flow");
            }
            for (name, src) in TEST_FLOWS {
                std::fs::write(dir.join(format!("{name}.yaml")), src).expect("write flow");
            }
            dir
        }
    };
    let mut app = TestApp {
        url: String::new(),
        http: reqwest::Client::new(),
        data_dir,
        flows_dir,
        llm_url: opts.llm_url,
        env: opts.env,
        args: opts.args,
        store: opts.store,
        database_url: match opts.database_url {
            Some(url) => Some(url),
            None => opts.store.create_database().await,
        },
        stdout: Default::default(),
        child: None,
        _tmp: tmp,
    };
    app.restart().await;
    app
}

impl TestApp {
    /// `switchboard SUBCOMMAND` on this app's data and flows dirs and store, with test
    /// logging.
    pub fn process(&self, sub: &str) -> Command {
        let log = std::env::var("TEST_LOG").is_ok();
        let mut cmd = Command::new(crate::process::binary());
        cmd.arg(sub)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--flows-dir")
            .arg(&self.flows_dir)
            .args(
                self.database_url
                    .iter()
                    .flat_map(|u| ["--database-url".to_owned(), u.clone()]),
            )
            // Nothing of the host's SWITCHBOARD_* settings leaks into a test.
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("SWITCHBOARD_AUTH_TOKEN", TOKEN)
            .env("SWITCHBOARD_LLM_MODEL", "fake-model")
            .env("RUST_LOG", if log { "debug" } else { "error" })
            .stdout(Stdio::piped())
            .stderr(if log { Stdio::inherit() } else { Stdio::null() })
            .kill_on_drop(true);
        if let Some(u) = &self.llm_url {
            cmd.env("SWITCHBOARD_LLM_BASE_URL", u);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Spawns `cmd` and waits (30 s at most) for a stdout line starting with `ready`; returns
    /// the child and the rest of that line. Every line is kept in `self.stdout`.
    async fn launch(&self, mut cmd: Command, ready: &str) -> (Child, String) {
        let mut child = cmd.spawn().expect("spawn switchboard");
        let rest = read_until(&mut child, ready, self.stdout.clone()).await;
        (child, rest)
    }

    /// Starts (or restarts) the server process on the same data dir.
    pub async fn restart(&mut self) {
        let mut cmd = self.process("serve");
        cmd.arg("--port").arg("0").args(&self.args);
        let (child, url) = self.launch(cmd, "switchboard listening on ").await;
        self.url = url;
        self.child = Some(child);
    }

    /// Starts `switchboard runner` on this app's data dir (split mode); returns once it runs.
    pub async fn spawn_runner(&self) -> Child {
        self.launch(self.process("runner"), "switchboard runner started")
            .await
            .0
    }

    /// The lines the app's processes printed that start with `prefix`, oldest first.
    pub fn printed(&self, prefix: &str) -> Vec<String> {
        let lines = self.stdout.lock().expect("lock");
        lines
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The pairing code the server printed at start.
    pub fn printed_pairing_code(&self) -> String {
        let lines = self.printed("pairing code: ");
        let line = lines.first().expect("a pairing code was printed");
        line["pairing code: ".len()..]
            .split_whitespace()
            .next()
            .expect("code")
            .to_owned()
    }

    /// A request with another token (or none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut rb = self.http.request(method, self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request");
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        (status, headers, r.json().await.unwrap_or(Value::Null))
    }

    /// SIGTERM, then wait for the process to exit (at most 10 s); its exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let pid = c.id().expect("pid");
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("kill -TERM");
        tokio::time::timeout(Duration::from_secs(10), c.wait())
            .await
            .expect("exited within 10 s")
            .expect("wait")
    }

    /// `kill -9`: no shutdown, no flush beyond what was fsync'd.
    pub async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.start_kill().expect("kill");
            let _ = c.wait().await;
        }
    }

    /// The server process's id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Waits up to `secs` for the server to exit on its own; its status, if it did.
    pub async fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let status = tokio::time::timeout(Duration::from_secs(secs), child.wait()).await;
        let status = status.ok()?.ok()?;
        self.child = None;
        Some(status)
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// `GET path` as the admin.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.with_token(TOKEN).get(path).await
    }

    /// `POST path` with a JSON body, as the admin.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.with_token(TOKEN).post(path, body).await
    }

    /// A fresh pairing code, minted by the admin.
    pub async fn pairing_code(&self) -> String {
        let (st, b) = self.post("/api/gateway/pair/codes", &json!({})).await;
        assert_eq!(st, 200, "mint a pairing code: {b}");
        b["code"].as_str().expect("code").to_owned()
    }

    /// Creates an API key with `scopes` as the admin; the created key (its `token`, `id`).
    pub async fn create_key(&self, name: &str, scopes: &[&str]) -> Value {
        let (st, b) = self
            .post(
                "/api/gateway/keys",
                &json!({"name": name, "scopes": scopes}),
            )
            .await;
        assert_eq!(st, 200, "create key {name}: {b}");
        b
    }

    /// Requests made with `token` instead of the admin's.
    pub fn with_token<'a>(&'a self, token: &'a str) -> Caller<'a> {
        Caller {
            app: self,
            token: Some(token),
            headers: Vec::new(),
        }
    }

    /// Requests made with no token at all.
    pub fn anonymous(&self) -> Caller<'_> {
        Caller {
            app: self,
            token: None,
            headers: Vec::new(),
        }
    }

    pub async fn start_run(&self, bundle: &str, input: Value) -> String {
        let (s, b) = self
            .post(
                "/api/gateway/runs/start",
                &json!({"bundle_id": bundle, "input_data": input}),
            )
            .await;
        assert_eq!(s, 200, "start {bundle}: {b}");
        b["run_id"].as_str().expect("run_id").to_owned()
    }

    pub async fn command(&self, id: &str, run: &str, kind: &str, payload: Value) -> (u16, Value) {
        self.post(
            "/api/gateway/commands",
            &json!({"command_id": id, "run_id": run, "type": kind, "payload": payload}),
        )
        .await
    }

    pub async fn answer(
        &self,
        id: &str,
        run: &str,
        wait_key: &str,
        response: Value,
    ) -> (u16, Value) {
        self.command(
            id,
            run,
            "resume",
            json!({"wait_key": wait_key, "payload": {"response": response}}),
        )
        .await
    }

    /// Waits until `run` waits; the key its wait is answered with.
    pub async fn wait_key(&self, run: &str) -> String {
        let s = self.wait_for_status(run, "waiting").await;
        s["waiting"]["wait_key"]
            .as_str()
            .expect("wait_key")
            .to_owned()
    }

    /// Waits (10 s at most) until `run` waits on `key`: a run answered a moment ago still
    /// shows its old wait until the runner applied the answer.
    pub async fn wait_on(&self, run: &str, key: &str) -> Value {
        let what = format!("run {run} to wait on {key}");
        eventually(10, &what, || async {
            let r = self.run(run).await;
            let ended =
                ["completed", "failed", "cancelled"].contains(&r["status"].as_str().unwrap_or(""));
            assert!(!ended, "run {run} ended, not waiting on {key}: {r}");
            (r["status"] == "waiting" && r["waiting"]["wait_key"] == key).then_some(r)
        })
        .await
    }

    /// Waits until `run` waits, then answers its wait with `response`.
    pub async fn answer_waiting(&self, id: &str, run: &str, response: Value) -> (u16, Value) {
        let key = self.wait_key(run).await;
        self.answer(id, run, &key, response).await
    }

    /// `POST /api/gateway/bundles/upload` with `src` as the multipart `file` named `name`.
    pub async fn upload(&self, name: &str, src: &str) -> (u16, Value) {
        let part = reqwest::multipart::Part::text(src.to_owned()).file_name(name.to_owned());
        let form = reqwest::multipart::Form::new().part("file", part);
        let url = self.url("/api/gateway/bundles/upload");
        reply(self.http.post(url).bearer_auth(TOKEN).multipart(form)).await
    }

    pub async fn run(&self, id: &str) -> Value {
        let (s, b) = self.get(&format!("/api/gateway/runs/{id}")).await;
        assert_eq!(s, 200, "{b}");
        b
    }

    /// Polls the summary until `status` (10 s at most).
    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        self.wait_status(id, status, 10).await
    }

    /// Polls the summary until `status`, `secs` seconds at most. Runs advance on the
    /// gateway's own tasks: a test reading a run right after starting it waits for the
    /// state it is about to check.
    pub async fn wait_status(&self, id: &str, status: &str, secs: u64) -> Value {
        let what = format!("run {id} to become {status}");
        eventually(secs, &what, || async {
            let r = self.run(id).await;
            let ended =
                ["completed", "failed", "cancelled"].contains(&r["status"].as_str().unwrap_or(""));
            assert!(
                r["status"] == status || !ended,
                "run {id} ended, not {status}: {r}"
            );
            (r["status"] == status).then_some(r)
        })
        .await
    }

    /// The runs of `flow` (among the newest 100).
    pub async fn runs_of(&self, flow: &str) -> Vec<Value> {
        let (st, list) = self.get("/api/gateway/runs?limit=100").await;
        assert_eq!(st, 200, "{list}");
        let items = list["items"].as_array().into_iter().flatten();
        items.filter(|r| r["bundle_id"] == flow).cloned().collect()
    }

    /// The answers (records with a `response` result) in a run's ledger.
    pub async fn answers(&self, run: &str) -> Vec<Value> {
        let ledger = self.ledger(run).await.into_iter();
        ledger
            .filter(|r| r["result"].get("response").is_some())
            .collect()
    }

    /// How many followers the gateway's bus has now (event streams, plus its own
    /// followers such as the webhook dispatcher).
    pub async fn streams(&self) -> u64 {
        self.get("/api/health").await.1["streams"]
            .as_u64()
            .unwrap_or_default()
    }

    /// Waits until the gateway has at least `n` followers (so a stream a test opened is
    /// following before the test acts): take [`TestApp::streams`] before opening it, and
    /// wait for one more.
    pub async fn wait_streams(&self, n: u64) {
        eventually(10, "the event stream to open", || async {
            (self.streams().await >= n).then_some(())
        })
        .await
    }

    /// The position (0-based) of the first ledger record of `run` that `matches`.
    pub async fn position(&self, run: &str, matches: impl Fn(&Value) -> bool) -> usize {
        let ledger = self.ledger(run).await;
        ledger
            .iter()
            .position(matches)
            .unwrap_or_else(|| panic!("no such record in {run}'s ledger: {ledger:#?}"))
    }

    /// The whole ledger, read page by page.
    pub async fn ledger(&self, id: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let (s, b) = self
                .get(&format!(
                    "/api/gateway/runs/{id}/ledger?after={after}&limit=50"
                ))
                .await;
            assert_eq!(s, 200, "{b}");
            let items = b["items"].as_array().expect("items").clone();
            if items.is_empty() {
                return all;
            }
            after = b["next_after"].as_u64().expect("next_after");
            all.extend(items);
        }
    }

    /// Reads SSE events from `path` until `stop` says so (or 10 s pass).
    pub async fn sse(
        &self,
        path: &str,
        last_event_id: Option<u64>,
        stop: impl Fn(&[Sse]) -> bool,
    ) -> Vec<Sse> {
        use eventsource_stream::Eventsource;
        use futures::StreamExt;
        let mut rb = self.http.get(self.url(path)).bearer_auth(TOKEN);
        if let Some(id) = last_event_id {
            rb = rb.header("Last-Event-ID", id.to_string());
        }
        let resp = rb.send().await.expect("SSE");
        assert_eq!(resp.status().as_u16(), 200);
        let mut events = Box::pin(resp.bytes_stream().eventsource());
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(ev)) = events.next().await {
                if ev.event == "message" && ev.data.is_empty() {
                    continue; // the initial `retry:` hint
                }
                out.push(Sse {
                    id: ev.id,
                    event: ev.event,
                    data: serde_json::from_str(&ev.data).unwrap_or(Value::Null),
                });
                if stop(&out) {
                    break;
                }
            }
        })
        .await;
        out
    }
}

#[derive(Debug, Clone)]
pub struct Sse {
    pub id: String,
    pub event: String,
    pub data: Value,
}

/// The record of each `step` event.
pub fn records(events: &[Sse]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.event == "step")
        .map(|e| e.data["record"].clone())
        .collect()
}

/// A pairing code as it is hashed (upper case, no dash).
pub fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}
