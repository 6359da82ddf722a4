//! The loopback Web Push service (`tests/push/push_service.mjs`, node): subscriptions as a
//! browser would get them, and the pushes it received, each checked (VAPID) and decrypted
//! (aes128gcm) on arrival. A push it could not check or decrypt is listed with its `error`.

use std::path::PathBuf;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running push service; it ends with this value.
pub struct PushFake {
    pub url: String,
    _child: Child,
    http: reqwest::Client,
}

impl PushFake {
    pub async fn start() -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("push");
        let mut child = Command::new("node")
            .arg("push_service.mjs")
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs the push service (scripts/test installs node)");
        let stdout = child.stdout.take().expect("stdout");
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            BufReader::new(stdout).lines().next_line().await
        })
        .await
        .expect("the push service starts within 30 s")
        .expect("its stdout")
        .expect("its ready line");
        let ready: Value = serde_json::from_str(&line).expect("a JSON ready line");
        Self {
            url: ready["url"].as_str().expect("url").to_owned(),
            _child: child,
            http: reqwest::Client::new(),
        }
    }

    /// A subscription for a page whose `applicationServerKey` is `vapid_key`: what
    /// `PushSubscription.toJSON()` gives (endpoint, keys, expirationTime).
    pub async fn subscribe(&self, vapid_key: &str) -> Value {
        self.get(&format!("/subscribe?key={vapid_key}")).await
    }

    /// Every push received so far, in order.
    pub async fn received(&self) -> Vec<Value> {
        serde_json::from_value(self.get("/received").await).expect("a list of pushes")
    }

    async fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.url);
        let reply = self
            .http
            .get(url)
            .send()
            .await
            .expect("the push service answers");
        reply.json().await.expect("JSON from the push service")
    }

    /// The pushes to the subscription whose endpoint is `endpoint`.
    pub async fn received_by(&self, endpoint: &str) -> Vec<Value> {
        let id = endpoint.rsplit('/').next().unwrap_or_default();
        let all = self.received().await;
        all.into_iter()
            .filter(|p| p["subscription"] == id)
            .collect()
    }

    /// From now on the subscription answers 410 Gone (the browser unsubscribed).
    pub async fn unsubscribe(&self, endpoint: &str) {
        let id = endpoint.rsplit('/').next().unwrap_or_default();
        let url = format!("{}/gone/{id}", self.url);
        assert!(
            self.http
                .post(url)
                .send()
                .await
                .unwrap()
                .status()
                .is_success()
        );
    }
}
