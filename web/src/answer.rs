//! One-click answers from mail (`/app/answer/<token>`): the link in a prompt mail opens a
//! confirmation page; only its POST votes. No sign-in: the gateway-signed token is the
//! credential, single use and expiring, and it answers only as its recipient. A GET (a link
//! scanner, a mail preview) changes nothing.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use protocol::LinkInfo;
use serde::Deserialize;

use crate::Web;
use crate::pages::Layout;

#[derive(Template, WebTemplate)]
#[template(path = "answer.html")]
struct AnswerPage {
    layout: Layout,
    token: String,
    info: LinkInfo,
    preselect: Option<String>,
    /// After the POST: what happened.
    outcome: Option<String>,
}

#[derive(Deserialize)]
pub struct ChoiceQuery {
    choice: Option<String>,
}

#[derive(Deserialize)]
pub struct ChoiceForm {
    #[serde(default)]
    choice: String,
}

fn token_ok(t: &str) -> bool {
    !t.is_empty() && t.len() <= 2048 && t.chars().all(|c| c.is_ascii_hexdigit() || c == '.')
}

fn refused(web_title: &str, message: &str) -> Response {
    let info = LinkInfo {
        run_id: String::new(),
        bundle_id: String::new(),
        prompt: String::new(),
        choices: Vec::new(),
        recipient: String::new(),
        expires_at: String::new(),
        open: false,
        answered_by: None,
    };
    AnswerPage {
        layout: Layout::new(web_title, "answer", None, None),
        token: String::new(),
        info,
        preselect: None,
        outcome: Some(message.to_owned()),
    }
    .into_response()
}

/// The confirmation page (changes nothing).
pub async fn page(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Query(q): Query<ChoiceQuery>,
) -> Response {
    if !token_ok(&token) {
        return refused("Answer", "This answer link is not valid.");
    }
    let Ok(client) = web.client_for(None, &headers) else {
        return refused("Answer", "The gateway cannot be reached; try again later.");
    };
    match client.link_info(&token).await {
        Ok(info) => AnswerPage {
            layout: Layout::new("Answer", "answer", None, None),
            token,
            info,
            preselect: q.choice,
            outcome: None,
        }
        .into_response(),
        Err(e) => refused("Answer", &e.message()),
    }
}

/// The vote: the choice pressed on the confirmation page.
pub async fn vote(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(f): Form<ChoiceForm>,
) -> Response {
    if !token_ok(&token) {
        return refused("Answer", "This answer link is not valid.");
    }
    let Ok(client) = web.client_for(None, &headers) else {
        return refused("Answer", "The gateway cannot be reached; try again later.");
    };
    match client.link_vote(&token, &f.choice).await {
        Ok(_) => refused(
            "Answered",
            &format!("Thank you: your answer `{}` is recorded.", f.choice),
        ),
        Err(e) => refused("Not recorded", &format!("Not recorded: {}", e.message())),
    }
}
