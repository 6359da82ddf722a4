//! The pages: sign-in and sign-out, the inbox, the run list, a run's page and the
//! schedules. Each needs a [`Session`] (else: sign in), reads what it shows from the
//! gateway's API with the session's token and renders a template. Posts that act on runs
//! are [`crate::actions`]; starting flows is [`crate::start`]; streams are
//! [`crate::streams`]. No store, no engine.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use protocol::{ClientError, RunStatus, RunSummary, Waiting};
use serde::Deserialize;
use serde_json::json;

use crate::Web;
use crate::session::{self, Session};

/// What every page's frame needs.
pub struct Layout {
    pub title: String,
    pub page: &'static str,
    /// The event stream the page follows (empty: none), and the cursor to follow it after.
    pub stream: String,
    pub after: u64,
    pub run: String,
    pub csrf: String,
    pub signed_in: bool,
    pub notice: String,
}

impl Layout {
    pub fn new(
        title: &str,
        page: &'static str,
        s: Option<&Session>,
        notice: Option<String>,
    ) -> Self {
        Self {
            title: title.to_owned(),
            page,
            stream: String::new(),
            after: 0,
            run: String::new(),
            csrf: s.map(|s| s.csrf.clone()).unwrap_or_default(),
            signed_in: s.is_some(),
            notice: notice.unwrap_or_default(),
        }
    }
}

pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// Why a page could not be shown.
pub enum PageError {
    Gateway(ClientError),
    Csrf,
    NotFound(String),
}

impl From<ClientError> for PageError {
    fn from(e: ClientError) -> Self {
        Self::Gateway(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            Self::Gateway(e) if e.status() == Some(401) => (
                [(header::SET_COOKIE, session::clear_cookie(false))],
                Redirect::to("/app/login"),
            )
                .into_response(),
            Self::Gateway(e) => match e.status().and_then(|s| StatusCode::from_u16(s).ok()) {
                Some(status) => json_error(status, "gateway", &e.message()),
                // A transport error names internal addresses: the visitor gets none of it.
                None => json_error(
                    StatusCode::BAD_GATEWAY,
                    "gateway",
                    "the gateway cannot be reached; try again in a moment",
                ),
            },
            Self::Csrf => json_error(
                StatusCode::FORBIDDEN,
                "csrf",
                "the form's CSRF token is missing or wrong; reload the page and try again",
            ),
            Self::NotFound(what) => json_error(StatusCode::NOT_FOUND, "not_found", &what),
        }
    }
}

pub type Page = Result<Response, PageError>;

/// A run id from a URL: letters, digits, `-` and `_`, at most 64 (what the gateway mints).
/// Anything else is no run of ours, and never reaches the gateway.
pub fn check_run_id(id: &str) -> Result<(), PageError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(PageError::NotFound("no such run".into()))
    }
}

#[derive(Deserialize, Default)]
pub struct NoticeQuery {
    pub(crate) notice: Option<String>,
    status: Option<String>,
    /// The inbox: `all` shows every waiting prompt, not only the visitor's.
    show: Option<String>,
    /// A run's page: the choice a notification's action picked (focused, to confirm).
    pub(crate) choice: Option<String>,
}

pub async fn home() -> Redirect {
    Redirect::to("/app/inbox")
}

pub async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not_found", "no such page")
}

pub async fn ping(_s: Session) -> StatusCode {
    StatusCode::NO_CONTENT
}

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    /// A pairing code to prefill (the link `serve` prints: `/app/pair?code=…`).
    code: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "offline.html")]
struct OfflinePage {
    layout: Layout,
}

pub async fn login_page(Query(q): Query<NoticeQuery>) -> impl IntoResponse {
    LoginPage {
        layout: Layout::new("Sign in", "login", None, q.notice),
        code: String::new(),
    }
}

#[derive(Deserialize)]
pub struct PairQuery {
    #[serde(default)]
    code: String,
}

/// `/app/pair?code=…`, the link (and QR code) `serve` and `switchboard pair` print: the
/// sign-in form with the code filled in. Pairing happens only when the form is posted, so
/// a link preview that fetches the page uses nothing up.
pub async fn pair_page(Query(q): Query<PairQuery>) -> impl IntoResponse {
    let code: String = q
        .code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(16)
        .collect();
    LoginPage {
        layout: Layout::new(
            "Pair this device",
            "login",
            None,
            Some("Name this device and sign in to pair it.".into()),
        ),
        code,
    }
}

pub async fn offline() -> impl IntoResponse {
    OfflinePage {
        layout: Layout::new("Offline", "offline", None, None),
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    token: String,
}

fn login_failed(status: StatusCode, why: String) -> Response {
    let page = LoginPage {
        layout: Layout::new("Sign in", "login", None, Some(why)),
        code: String::new(),
    };
    (status, page).into_response()
}

/// Signs in with a pairing code (a new device token) or a token. Attempts are limited per
/// visitor address (besides the gateway's own lockout of bad credentials), and a token
/// with the admin scope is refused: an admin credential must not live in a browser cookie.
pub async fn login(
    State(web): State<Web>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let ip = session::visitor_ip(&headers).unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    if let Err(not_until) = web.logins.check_key(&ip) {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        let secs = wait.as_secs().max(1);
        let mut r = login_failed(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many sign-in attempts from here; try again in {secs} s."),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        return r;
    }
    let (code, token) = (f.code.trim(), f.token.trim());
    let token = if !code.is_empty() {
        let name: String = format!("web: {}", f.name.trim()).chars().take(64).collect();
        match pair(&web, &headers, code, &name).await {
            Ok(t) => t,
            Err(r) => return r,
        }
    } else if !token.is_empty() {
        match check_token(&web, &headers, token).await {
            Ok(()) => token.to_owned(),
            Err(r) => return r,
        }
    } else {
        return login_failed(
            StatusCode::BAD_REQUEST,
            "Enter a pairing code or a token.".into(),
        );
    };
    // The cookie holds the token itself (HttpOnly: the page's script never sees it).
    let cookie = session::set_cookie(&token, web.cfg.secure_cookies);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/app/inbox")).into_response()
}

fn unreachable_gateway() -> Response {
    login_failed(
        StatusCode::BAD_GATEWAY,
        "The gateway cannot be reached; try again in a moment.".into(),
    )
}

/// Why a sign-in call failed, for the visitor: the gateway's own message for a refusal,
/// never the transport's details (they name internal addresses).
fn refusal(what: &str, e: &protocol::ClientError) -> Response {
    let Some(code) = e.status() else {
        return unreachable_gateway();
    };
    let status = if code == 429 {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::UNAUTHORIZED
    };
    login_failed(status, format!("{what}: {}", e.message()))
}

/// Trades a pairing code for a device token.
async fn pair(web: &Web, headers: &HeaderMap, code: &str, name: &str) -> Result<String, Response> {
    let anonymous = web
        .client_for(None, headers)
        .map_err(|_| unreachable_gateway())?;
    let paired = anonymous
        .pair(code, name)
        .await
        .map_err(|e| refusal("Pairing failed", &e))?;
    Ok(paired.token)
}

/// Checks a typed token with the gateway: it must work and must not be an admin's.
async fn check_token(web: &Web, headers: &HeaderMap, token: &str) -> Result<(), Response> {
    let client = web
        .client_for(Some(token.to_owned()), headers)
        .map_err(|_| unreachable_gateway())?;
    let who = client
        .whoami()
        .await
        .map_err(|e| refusal("That token does not work", &e))?;
    // An admin or a channel bridge's key must not live in a browser cookie.
    if who.kind == "admin" || who.scopes.iter().any(|s| s == "admin" || s == "channel") {
        return Err(login_failed(
            StatusCode::FORBIDDEN,
            "An admin token (or a bridge's key) cannot sign in here. Pair this device with a code instead (`switchboard pair` prints one).".into(),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Signs out: the session's own token revokes its device (`DELETE devices/self`; a typed
/// key is not revoked) and the cookie is removed. Nothing is done with any other
/// credential, so a forged cookie can at most revoke itself.
pub async fn logout(State(web): State<Web>, s: Session, Form(f): Form<CsrfForm>) -> Page {
    if !s.csrf_ok(&f.csrf) {
        return Err(PageError::Csrf);
    }
    match s.client.revoke_self().await {
        Ok(_) => {}
        // A token typed in (an API key) is not the browser's to revoke; a dead one is gone.
        Err(e) if matches!(e.status(), Some(400 | 401)) => {}
        Err(e) => tracing::warn!(error = %e, "web: cannot revoke a signed-out device"),
    }
    let cookie = session::clear_cookie(web.cfg.secure_cookies);
    Ok((
        [
            (header::SET_COOKIE, cookie),
            (
                header::HeaderName::from_static("clear-site-data"),
                "\"cache\", \"storage\"".to_owned(),
            ),
        ],
        Redirect::to("/app/login"),
    )
        .into_response())
}

/// A prompt card of the inbox.
pub struct Card {
    /// The visitor may answer it (an approver, or a prompt without approvers).
    pub mine: bool,
    pub run: RunSummary,
    pub waiting: Waiting,
    pub question: String,
    pub since: String,
    pub nonce: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "inbox.html")]
struct InboxPage {
    layout: Layout,
    cards: Vec<Card>,
    /// Every waiting prompt, not only the visitor's.
    all: bool,
}

/// The runs whose prompt the visitor may answer.
pub(crate) async fn my_prompts(
    s: &Session,
) -> Result<std::collections::HashSet<String>, PageError> {
    let list = s.client.approvals().await?;
    Ok(list.items.into_iter().map(|a| a.run_id).collect())
}

pub fn nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn waiting_on_person(r: &RunSummary) -> Option<Waiting> {
    r.waiting.clone().filter(|w| w.is_for_a_person())
}

/// Every run waiting for a person, newest first.
pub async fn inbox(s: Session, Query(q): Query<NoticeQuery>) -> Page {
    let after = s.client.ledger_head().await?;
    let mut runs = s.client.runs(Some(RunStatus::Waiting), 200, 0).await?.items;
    runs.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
    let mine = my_prompts(&s).await?;
    let all = q.show.as_deref() == Some("all");
    let cards = runs
        .into_iter()
        .filter_map(|run| {
            let waiting = waiting_on_person(&run)?;
            let is_mine = mine.contains(&run.run_id);
            if !all && !is_mine {
                return None;
            }
            Some(Card {
                mine: is_mine,
                question: waiting
                    .prompt
                    .clone()
                    .unwrap_or_else(|| "Your answer?".into()),
                since: run.updated_at.get(11..16).unwrap_or("").to_owned(),
                waiting,
                run,
                nonce: nonce(),
            })
        })
        .collect();
    let mut layout = Layout::new("Inbox", "inbox", Some(&s), q.notice);
    layout.stream = "/app/events".into();
    layout.after = after;
    Ok(InboxPage { layout, cards, all }.into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "runs.html")]
struct RunsPage {
    layout: Layout,
    runs: Vec<RunSummary>,
    filters: Vec<&'static str>,
    status: String,
}

pub async fn runs(s: Session, Query(q): Query<NoticeQuery>) -> Page {
    let status = q.status.as_deref().and_then(RunStatus::parse);
    let after = s.client.ledger_head().await?;
    let runs = s.client.runs(status, 100, 0).await?.items;
    let mut layout = Layout::new("Runs", "runs", Some(&s), q.notice);
    layout.stream = "/app/events".into();
    layout.after = after;
    let filters: Vec<&str> = std::iter::once("")
        .chain(RunStatus::ALL.iter().map(|s| s.as_str()))
        .collect();
    let status = status.map(|s| s.as_str()).unwrap_or("").to_owned();
    Ok(RunsPage {
        layout,
        runs,
        filters,
        status,
    }
    .into_response())
}

/// A schedule as listed.
pub struct ScheduleRow {
    pub run_id: String,
    pub flow: String,
    pub status: String,
    pub rule: String,
    pub next: String,
    pub controls: Vec<&'static str>,
}

#[derive(Template, WebTemplate)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    layout: Layout,
    schedules: Vec<ScheduleRow>,
    nonce: String,
}

/// `3600000` → `1h`: the largest whole unit.
fn duration(ms: u64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

fn schedule_row(s: &protocol::ScheduleInfo) -> ScheduleRow {
    let mut rule = match (&s.spec.cron, s.spec.interval_ms) {
        (Some(c), _) => format!("cron {c} ({})", s.spec.timezone.as_deref().unwrap_or("UTC")),
        (None, Some(ms)) => format!("every {}", duration(ms)),
        _ => "once".into(),
    };
    if let Some(n) = s.spec.repeat_count {
        rule.push_str(&format!(", {n} times"));
    }
    let controls = match s.status {
        RunStatus::Paused => vec!["resume", "cancel"],
        st if st.is_terminal() => Vec::new(),
        _ => vec!["pause", "cancel"],
    };
    ScheduleRow {
        run_id: s.run_id.clone(),
        flow: s.bundle_id.clone(),
        status: s.status.as_str().to_owned(),
        rule,
        next: s.next_fire_at.clone().unwrap_or_else(|| "—".into()),
        controls,
    }
}

pub async fn schedules(s: Session, Query(q): Query<NoticeQuery>) -> Page {
    let list = s.client.schedules(200).await?;
    let schedules = list.items.iter().map(schedule_row).collect();
    let layout = Layout::new("Schedules", "schedules", Some(&s), q.notice);
    Ok(SchedulesPage {
        layout,
        schedules,
        nonce: nonce(),
    }
    .into_response())
}

#[cfg(test)]
#[path = "pages_tests.rs"]
mod tests;
