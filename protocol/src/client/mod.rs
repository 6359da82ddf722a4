//! An async client for the gateway's HTTP contract, shared by every thin client.
//!
//! Owns URL building, bearer auth and mapping `{"error":{code,message}}` bodies to
//! [`ClientError::Api`]. It holds no state beyond the base URL and token; it never retries
//! on its own (callers decide, since a command is idempotent by `command_id` and a read is not
//! worth a hidden delay).

use futures::Stream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::sse::{self, StreamItem};
use crate::types::*;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("gateway answered {status}: {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach the gateway: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("bad gateway URL: {0}")]
    Url(#[from] url::ParseError),
    #[error("bad request path: {0}")]
    BadPath(String),
    #[error("event stream broke: {0}")]
    Stream(String),
}

impl ClientError {
    /// HTTP status of an API error, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: the gateway was unreachable, its stream
    /// broke, or it answered 5xx or 429. A 4xx is the request's fault and stays one.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api { status, .. } => *status >= 500 || *status == 429,
            Self::Transport(_) | Self::Stream(_) => true,
            Self::Url(_) | Self::BadPath(_) => false,
        }
    }

    /// The gateway's message for an API error, or the error itself.
    pub fn message(&self) -> String {
        match self {
            Self::Api { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

mod admin;
mod path;

pub use path::ApiPath;

/// A client bound to one gateway and one token.
#[derive(Debug, Clone)]
pub struct Client {
    base: url::Url,
    token: Option<String>,
    http: reqwest::Client,
    /// Sent with every request (the web app's signed note of its visitor's address).
    headers: reqwest::header::HeaderMap,
}

impl Client {
    /// `base` is the gateway's root, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::with_http(reqwest::Client::builder().build()?, base, token)
    }

    /// Like [`Client::new`], sharing `http`'s connection pool (a server that makes a client
    /// per request, for each caller's token, should not build a new pool each time).
    pub fn with_http(
        http: reqwest::Client,
        base: &str,
        token: Option<String>,
    ) -> Result<Self, ClientError> {
        let mut base = url::Url::parse(base)?;
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        Ok(Self {
            base,
            token,
            http,
            headers: reqwest::header::HeaderMap::new(),
        })
    }

    /// This client, sending `name: value` with every request.
    pub fn with_header(
        mut self,
        name: reqwest::header::HeaderName,
        value: reqwest::header::HeaderValue,
    ) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub fn base(&self) -> &url::Url {
        &self.base
    }

    /// The full URL of `path` on this gateway.
    pub fn url(&self, path: impl Into<ApiPath>) -> Result<url::Url, ClientError> {
        path.into().url(&self.base)
    }

    pub(crate) fn request(
        &self,
        method: reqwest::Method,
        path: impl Into<ApiPath>,
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        let url = self.url(path)?;
        let mut rb = self.http.request(method, url).headers(self.headers.clone());
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        Ok(rb)
    }

    pub(crate) async fn send<T: DeserializeOwned>(
        rb: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = check(rb.send().await?).await?;
        Ok(resp.json().await?)
    }

    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        path: impl Into<ApiPath>,
    ) -> Result<T, ClientError> {
        Self::send(self.request(reqwest::Method::GET, path)?).await
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: impl Into<ApiPath>,
        body: &B,
    ) -> Result<T, ClientError> {
        Self::send(self.request(reqwest::Method::POST, path)?.json(body)).await
    }

    /// `GET` any JSON endpoint (for administration and newer routes).
    pub async fn get_json(&self, path: impl Into<ApiPath>) -> Result<Value, ClientError> {
        self.get(path).await
    }

    /// `POST` a JSON body to any endpoint.
    pub async fn post_json(
        &self,
        path: impl Into<ApiPath>,
        body: &Value,
    ) -> Result<Value, ClientError> {
        self.post(path, body).await
    }

    /// `DELETE` any endpoint that answers JSON.
    pub async fn delete_json(&self, path: impl Into<ApiPath>) -> Result<Value, ClientError> {
        Self::send(self.request(reqwest::Method::DELETE, path)?).await
    }

    pub async fn bundles(&self) -> Result<BundleList, ClientError> {
        self.get("api/gateway/bundles").await
    }

    pub async fn start_run(&self, req: &StartRunRequest) -> Result<StartRunResponse, ClientError> {
        self.post("api/gateway/runs/start", req).await
    }

    /// Starts a run at most once per `key` (the `Idempotency-Key` header): repeating the
    /// request with the same key answers the run the first one started.
    pub async fn start_run_once(
        &self,
        req: &StartRunRequest,
        key: &str,
    ) -> Result<StartRunResponse, ClientError> {
        let rb = self
            .request(reqwest::Method::POST, "api/gateway/runs/start")?
            .header("Idempotency-Key", key)
            .json(req);
        Self::send(rb).await
    }

    pub async fn runs(
        &self,
        status: Option<RunStatus>,
        limit: u32,
        offset: u32,
    ) -> Result<RunList, ClientError> {
        let mut path = ApiPath::new("api/gateway/runs")
            .query("limit", limit)
            .query("offset", offset);
        if let Some(s) = status {
            path = path.query("status", s.as_str());
        }
        self.get(path).await
    }

    /// The gateway's Web Push key (`GET /api/gateway/push/key`).
    pub async fn push_key(&self) -> Result<crate::PushKey, ClientError> {
        self.get(ApiPath::new("api/gateway/push/key")).await
    }

    /// Subscribes a browser to notifications of the prompts the caller may answer.
    pub async fn push_subscribe(
        &self,
        s: &crate::PushSubscriptionRequest,
    ) -> Result<crate::PushSubscriptionInfo, ClientError> {
        self.post(ApiPath::new("api/gateway/push/subscriptions"), s)
            .await
    }

    /// The prompts the caller may answer (`GET /api/gateway/approvals`).
    pub async fn approvals(&self) -> Result<crate::ApprovalList, ClientError> {
        self.get(ApiPath::new("api/gateway/approvals")).await
    }

    pub async fn run(&self, run_id: &str) -> Result<RunSummary, ClientError> {
        self.get(ApiPath::new("api/gateway/runs").id(run_id)).await
    }

    pub async fn ledger(
        &self,
        run_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<LedgerPage, ClientError> {
        let path = ApiPath::new("api/gateway/runs")
            .id(run_id)
            .then("ledger")
            .query("after", after)
            .query("limit", limit);
        self.get(path).await
    }

    pub async fn command(&self, cmd: &CommandRequest) -> Result<CommandResponse, ClientError> {
        self.post("api/gateway/commands", cmd).await
    }

    pub async fn command_status(&self, command_id: &str) -> Result<CommandStatus, ClientError> {
        self.get(ApiPath::new("api/gateway/commands").id(command_id))
            .await
    }

    /// Answers what a run waits on (a `resume` command with its `wait_key`), idempotent by
    /// `command_id`, sent by `client_id` through `channel`.
    pub async fn answer(
        &self,
        command_id: &str,
        run_id: &str,
        wait_key: &str,
        response: Value,
        client_id: Option<&str>,
        channel: &str,
    ) -> Result<CommandResponse, ClientError> {
        let answer = crate::Command::Answer {
            wait_key: wait_key.to_owned(),
            response,
        };
        let req = CommandRequest::new(command_id, run_id, &answer).from_client(client_id, channel);
        self.command(&req).await
    }

    /// Follows one run's ledger after `after` (a per-run `seq`) until it is terminal.
    pub async fn stream_run(
        &self,
        run_id: &str,
        after: u64,
    ) -> Result<impl Stream<Item = Result<StreamItem, ClientError>> + use<>, ClientError> {
        self.stream(run_stream_path(run_id, after)).await
    }

    /// The newest global cursor (stream after it to see only what happens from now on).
    pub async fn ledger_head(&self) -> Result<u64, ClientError> {
        let head: LedgerHead = self.get("api/gateway/ledger/head").await?;
        Ok(head.cursor)
    }

    /// A run's input (`GET /api/gateway/runs/{id}/input_data`).
    pub async fn input_data(&self, run_id: &str) -> Result<RunInput, ClientError> {
        self.get(
            ApiPath::new("api/gateway/runs")
                .id(run_id)
                .then("input_data"),
        )
        .await
    }

    /// A run with its ledger and children, bounded (`…/history_bundle`).
    pub async fn history_bundle(&self, run_id: &str) -> Result<HistoryBundle, ClientError> {
        self.get(
            ApiPath::new("api/gateway/runs")
                .id(run_id)
                .then("history_bundle"),
        )
        .await
    }

    /// Follows every run's ledger after the global cursor `after`.
    pub async fn stream_global(
        &self,
        after: u64,
    ) -> Result<impl Stream<Item = Result<StreamItem, ClientError>> + use<>, ClientError> {
        self.stream(ApiPath::new("api/gateway/ledger/stream").query("after", after))
            .await
    }

    /// One run's stream as raw SSE events (`step` payloads left undecoded).
    pub async fn stream_run_raw(
        &self,
        run_id: &str,
        after: u64,
    ) -> Result<impl Stream<Item = Result<sse::SseEvent, ClientError>> + use<>, ClientError> {
        let rb = self
            .request(reqwest::Method::GET, run_stream_path(run_id, after))?
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let resp = check(rb.send().await?).await?;
        Ok(sse::events(Box::pin(resp.bytes_stream())))
    }

    async fn stream(
        &self,
        path: ApiPath,
    ) -> Result<impl Stream<Item = Result<StreamItem, ClientError>> + use<>, ClientError> {
        let rb = self
            .request(reqwest::Method::GET, path)?
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let resp = check(rb.send().await?).await?;
        Ok(sse::items(Box::pin(resp.bytes_stream())))
    }
}

fn run_stream_path(run_id: &str, after: u64) -> ApiPath {
    ApiPath::new("api/gateway/runs")
        .id(run_id)
        .then("ledger/stream")
        .query("after", after)
}

/// Maps a non-2xx response to [`ClientError::Api`] using the gateway's error body.
async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(b) => (b.error.code, b.error.message),
        Err(_) => ("http_error".to_owned(), text),
    };
    Err(ClientError::Api {
        status: status.as_u16(),
        code,
        message,
    })
}
