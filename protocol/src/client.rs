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

/// A path of the API: a constant route plus ids, each id percent-encoded as one path
/// segment (so an id can never climb to another route: `..`, `/`, `%2e` stay inside it).
///
/// ```
/// let p = protocol::client::ApiPath::new("api/gateway/devices").id("a/../b");
/// assert_eq!(p.to_string(), "api/gateway/devices/a%2F..%2Fb");
/// ```
#[derive(Debug, Clone)]
pub struct ApiPath {
    route: &'static str,
    parts: Vec<Part>,
    query: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone)]
enum Part {
    /// A segment from data: encoded, never interpreted.
    Id(String),
    /// A constant route part (`ledger/stream`).
    Fixed(&'static str),
}

impl ApiPath {
    /// `route` is a constant such as `api/gateway/runs` (it may end in a constant `?query`).
    pub fn new(route: &'static str) -> Self {
        Self {
            route,
            parts: Vec::new(),
            query: Vec::new(),
        }
    }

    /// Appends one path segment taken from data (encoded; never interpreted).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.parts.push(Part::Id(id.into()));
        self
    }

    /// Appends a constant route part after the ids (`/ledger`, `/stream`).
    pub fn then(mut self, part: &'static str) -> Self {
        self.parts.push(Part::Fixed(part));
        self
    }

    /// Adds a query parameter (encoded).
    pub fn query(mut self, key: &'static str, value: impl ToString) -> Self {
        self.query.push((key, value.to_string()));
        self
    }

    /// The URL of this path under `base` (whose path ends with `/`). An id that is empty,
    /// `.` or `..` is refused: the URL standard would drop it and so change the route.
    fn url(&self, base: &url::Url) -> Result<url::Url, ClientError> {
        let (route, fixed_query) = match self.route.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (self.route, None),
        };
        let mut url = base.clone();
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|()| ClientError::BadPath("the gateway URL cannot be a base".into()))?;
            segs.pop_if_empty();
            segs.extend(route.split('/').filter(|s| !s.is_empty()));
            for part in &self.parts {
                match part {
                    Part::Fixed(f) => {
                        segs.extend(f.split('/').filter(|s| !s.is_empty()));
                    }
                    Part::Id(id) if id.is_empty() || id == "." || id == ".." => {
                        return Err(ClientError::BadPath(format!(
                            "`{id}` is not a valid id in a URL path"
                        )));
                    }
                    Part::Id(id) => {
                        segs.push(id);
                    }
                }
            }
        }
        url.set_query(fixed_query);
        if !self.query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in &self.query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }
}

impl From<&'static str> for ApiPath {
    fn from(route: &'static str) -> Self {
        Self::new(route)
    }
}

impl std::fmt::Display for ApiPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Ok(base) = url::Url::parse("http://x/") else {
            return f.write_str(self.route);
        };
        match self.url(&base) {
            Ok(url) => f.write_str(url.as_str().trim_start_matches("http://x/")),
            Err(e) => write!(f, "{} ({e})", self.route),
        }
    }
}

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

    fn request(
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

    async fn send<T: DeserializeOwned>(rb: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let resp = check(rb.send().await?).await?;
        Ok(resp.json().await?)
    }

    async fn get<T: DeserializeOwned>(&self, path: impl Into<ApiPath>) -> Result<T, ClientError> {
        Self::send(self.request(reqwest::Method::GET, path)?).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
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

    /// Who this client's token belongs to (`GET /api/gateway/whoami`).
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.get("api/gateway/whoami").await
    }

    /// Publishes whom `channel` may reach (`PUT /api/gateway/channels/{channel}`; needs
    /// the `channel` scope).
    pub async fn publish_allowlist(
        &self,
        channel: &str,
        list: &ChannelAllowlist,
    ) -> Result<ChannelAllowlist, ClientError> {
        let path = ApiPath::new("api/gateway/channels").id(channel);
        Self::send(self.request(reqwest::Method::PUT, path)?.json(list)).await
    }

    /// Revokes this client's own device token (`DELETE /api/gateway/devices/self`).
    pub async fn revoke_self(&self) -> Result<Value, ClientError> {
        self.delete_json("api/gateway/devices/self").await
    }

    pub async fn health(&self) -> Result<Value, ClientError> {
        self.get("api/health").await
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
        let v = self.get_json("api/gateway/ledger/head").await?;
        Ok(v["cursor"].as_u64().unwrap_or(0))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn url(p: ApiPath) -> String {
        let c = Client::new("http://127.0.0.1:9/base", None).unwrap_or_else(|e| panic!("{e}"));
        c.url(p)
            .map(|u| u.to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn ids_are_encoded_as_one_segment_and_cannot_climb() {
        assert_eq!(
            url(ApiPath::new("api/gateway/devices").id("%2e%2e/webhooks/x.x")),
            "http://127.0.0.1:9/base/api/gateway/devices/%252e%252e%2Fwebhooks%2Fx.x"
        );
        assert_eq!(
            url(ApiPath::new("api/gateway/runs")
                .id("a b?c#d")
                .then("ledger")
                .query("after", 3)),
            "http://127.0.0.1:9/base/api/gateway/runs/a%20b%3Fc%23d/ledger?after=3"
        );
        for bad in ["", ".", ".."] {
            assert!(url(ApiPath::new("api/gateway/keys").id(bad)).contains("not a valid id"));
        }
        assert_eq!(
            url("api/gateway/schedules?limit=200".into()),
            "http://127.0.0.1:9/base/api/gateway/schedules?limit=200"
        );
    }
}
