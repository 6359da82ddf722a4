//! A run's own pages: its timeline (`/app/runs/<id>`) and its chat view
//! (`/app/runs/<id>/chat`), each with the prompt the run waits on (its buttons only for
//! someone who may answer it).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query};
use axum::response::IntoResponse;
use protocol::{RunStatus, RunSummary, Waiting};

use crate::pages::{
    Layout, NoticeQuery, Page, PageError, check_run_id, my_prompts, nonce, waiting_on_person,
};
use crate::session::Session;
use crate::view::{self, Entry};

/// Whether the visitor may answer `prompt` (always, when it names no approvers).
async fn may_answer(
    s: &Session,
    run: &RunSummary,
    prompt: Option<&Waiting>,
) -> Result<bool, PageError> {
    match prompt {
        Some(w) if !w.approvers.is_empty() => Ok(my_prompts(s).await?.contains(&run.run_id)),
        _ => Ok(true),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "run.html")]
pub(crate) struct RunPage {
    pub(crate) layout: Layout,
    pub(crate) run: RunSummary,
    pub(crate) prompt: Option<Waiting>,
    /// The visitor may answer the prompt.
    pub(crate) mine: bool,
    pub(crate) entries: Vec<Entry>,
    pub(crate) controls: Vec<&'static str>,
    pub(crate) nonce: String,
    pub(crate) back: String,
    /// The choice to confirm (from a notification's action), or empty.
    pub(crate) chosen: String,
}

/// Records shown on a run's page (the newest ones of a longer ledger).
const TIMELINE_MAX: u64 = 1000;

/// The run `id` and the newest page of its ledger (a 404 page for an unknown run).
async fn load(s: &Session, id: &str) -> Result<(RunSummary, protocol::LedgerPage), PageError> {
    check_run_id(id)?;
    let run = match s.client.run(id).await {
        Err(e) if e.status() == Some(404) => {
            return Err(PageError::NotFound(format!("no run {id}")));
        }
        other => other?,
    };
    let from = run.ledger_len.saturating_sub(TIMELINE_MAX);
    let page = s.client.ledger(id, from, TIMELINE_MAX as u32).await?;
    Ok((run, page))
}

pub async fn run(s: Session, Path(id): Path<String>, Query(q): Query<NoticeQuery>) -> Page {
    let (run, page) = load(&s, &id).await?;
    let entries = page.items.iter().filter_map(view::entry).collect();
    let controls = if run.status == RunStatus::Paused {
        vec!["resume", "cancel"]
    } else {
        vec!["pause", "cancel"]
    };
    let chosen = q.choice.unwrap_or_default();
    let mut layout = Layout::new(&run.bundle_id, "run", Some(&s), q.notice);
    layout.stream = format!("/app/runs/{id}/events");
    layout.after = page.next_after;
    layout.run = id.clone();
    let prompt = waiting_on_person(&run);
    let mine = may_answer(&s, &run, prompt.as_ref()).await?;
    let back = format!("/app/runs/{id}");
    Ok(RunPage {
        layout,
        run,
        prompt,
        mine,
        entries,
        controls,
        nonce: nonce(),
        back,
        chosen,
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "chat.html")]
struct ChatPage {
    layout: Layout,
    run: RunSummary,
    prompt: Option<Waiting>,
    mine: bool,
    bubbles: Vec<crate::chat::Bubble>,
    nonce: String,
    back: String,
}

/// A run as a conversation (`chat::bubbles`), answered from the box at the bottom.
pub async fn chat(s: Session, Path(id): Path<String>, Query(q): Query<NoticeQuery>) -> Page {
    let (run, page) = load(&s, &id).await?;
    let input = s.client.input_data(&id).await?.input_data;
    let mut layout = Layout::new(&run.bundle_id, "chat", Some(&s), q.notice);
    layout.stream = format!("/app/runs/{id}/events");
    layout.after = page.next_after;
    layout.run = id.clone();
    Ok(ChatPage {
        layout,
        mine: may_answer(&s, &run, waiting_on_person(&run).as_ref()).await?,
        prompt: waiting_on_person(&run),
        bubbles: crate::chat::bubbles(&input, &page.items),
        run,
        nonce: nonce(),
        back: format!("/app/runs/{id}/chat"),
    }
    .into_response())
}
