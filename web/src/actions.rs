//! The form posts that act on a run: answer its question, pause, resume or cancel it. Each
//! checks the CSRF token and sends one durable command whose `command_id` comes from the
//! form's nonce (a form sent twice is one command); a plain form gets a redirect back (with
//! a notice when the gateway refused), a script's `fetch` gets JSON.

use axum::extract::{Form, Path};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use protocol::{Command, CommandRequest};
use serde::Deserialize;
use serde_json::json;

use crate::pages::{Page, PageError, json_error, nonce};
use crate::session::Session;

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    back: String,
    #[serde(default)]
    wait_key: String,
    response: Option<String>,
    response_text: Option<String>,
}

/// Where to go after a plain form post: an app page, never elsewhere.
pub(crate) fn back_to(back: &str) -> String {
    let ok = back.starts_with("/app/") && !back.contains("//") && !back.contains('\\');
    if ok {
        back.to_owned()
    } else {
        "/app/inbox".into()
    }
}

pub(crate) fn command_id(nonce: &str) -> String {
    let clean = nonce.len() <= 100
        && !nonce.is_empty()
        && nonce.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    format!(
        "web:{}",
        if clean {
            nonce.to_owned()
        } else {
            self::nonce()
        }
    )
}

/// The outcome of a post: JSON for a script, a redirect (with a notice) for a plain form.
fn outcome(headers: &HeaderMap, back: &str, result: Result<(), String>) -> Response {
    let script = headers.get("x-requested-with").is_some();
    match (script, result) {
        (true, Ok(())) => axum::Json(json!({"ok": true})).into_response(),
        (true, Err(why)) => json_error(StatusCode::CONFLICT, "refused", &why),
        (false, Ok(())) => Redirect::to(&back_to(back)).into_response(),
        (false, Err(why)) => {
            let sep = if back_to(back).contains('?') {
                '&'
            } else {
                '?'
            };
            let url = format!("{}{sep}notice={}", back_to(back), urlencode(&why));
            Redirect::to(&url).into_response()
        }
    }
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn send(s: &Session, cmd: CommandRequest) -> Result<Result<(), String>, PageError> {
    match s.client.command(&cmd).await {
        Ok(_) => Ok(Ok(())),
        Err(e) if e.status() == Some(401) => Err(e.into()),
        Err(e) if e.status() == Some(409) => Ok(Err(format!("Not done: {}", e.message()))),
        Err(e) => Ok(Err(e.message())),
    }
}

fn command(run_id: &str, command: &Command, nonce: &str) -> CommandRequest {
    CommandRequest::new(command_id(nonce), run_id, command).from_client(Some("web"), "web")
}

/// Answers a run's question.
pub async fn answer(
    s: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Page {
    crate::pages::check_run_id(&id)?;
    if !s.csrf_ok(&f.csrf) {
        return Err(PageError::Csrf);
    }
    let text = f
        .response
        .or(f.response_text)
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    if text.is_empty() {
        return Ok(outcome(
            &headers,
            &f.back,
            Err("Write an answer first.".into()),
        ));
    }
    let answer = Command::Answer {
        wait_key: f.wait_key,
        response: json!(text),
    };
    let result = send(&s, command(&id, &answer, &f.nonce)).await?;
    Ok(outcome(&headers, &f.back, result))
}

/// Pauses, resumes or cancels a run.
pub async fn control(
    s: Session,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Page {
    let verb = match action.as_str() {
        "pause" => Command::Pause,
        "resume" => Command::Unpause,
        "cancel" => Command::Cancel,
        _ => return Err(PageError::NotFound(format!("no action {action}"))),
    };
    crate::pages::check_run_id(&id)?;
    if !s.csrf_ok(&f.csrf) {
        return Err(PageError::Csrf);
    }
    let result = send(&s, command(&id, &verb, &f.nonce)).await?;
    Ok(outcome(&headers, &f.back, result))
}
