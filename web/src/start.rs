//! Starting a flow: the list of flows, a form generated from a flow's input schema, and
//! the post that starts it (problems re-show the form with what to fix).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Form, Path};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use protocol::{Bundle, StartRunRequest};
use serde_json::Value;

use crate::actions::command_id;
use crate::pages::{Layout, Page, PageError, nonce};
use crate::session::Session;
use crate::view::{self, Field};

#[derive(Template, WebTemplate)]
#[template(path = "start.html")]
struct StartPage {
    layout: Layout,
    bundles: Vec<Bundle>,
}

pub async fn start_list(s: Session) -> Page {
    let bundles = s.client.bundles().await?.items;
    let layout = Layout::new("Start", "start", Some(&s), None);
    Ok(StartPage { layout, bundles }.into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "start_form.html")]
struct StartForm {
    layout: Layout,
    flow: String,
    name: String,
    description: String,
    fields: Vec<Field>,
    problems: Vec<String>,
    nonce: String,
}

async fn start_form_of(s: &Session, flow: &str) -> Result<StartForm, PageError> {
    let bundles = s.client.bundles().await?.items;
    let b = bundles
        .into_iter()
        .find(|b| b.bundle_id == flow)
        .ok_or_else(|| PageError::NotFound(format!("no flow {flow}")))?;
    let schema = b
        .entrypoints
        .first()
        .map(|e| e.input_schema.clone())
        .unwrap_or(Value::Null);
    Ok(StartForm {
        layout: Layout::new(&b.name, "start", Some(s), None),
        flow: b.bundle_id,
        name: b.name,
        description: b.description,
        fields: view::fields(&schema),
        problems: Vec::new(),
        nonce: nonce(),
    })
}

pub async fn start_form(s: Session, Path(flow): Path<String>) -> Page {
    Ok(start_form_of(&s, &flow).await?.into_response())
}

/// Starts a flow from its form; problems re-show the form with what to fix.
pub async fn start(
    s: Session,
    Path(flow): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Page {
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    if !s.csrf_ok(get("csrf")) {
        return Err(PageError::Csrf);
    }
    let mut form = start_form_of(&s, &flow).await?;
    // Shown again on a problem: with what was typed, not the defaults.
    for f in &mut form.fields {
        if let Some((_, v)) = pairs.iter().find(|(n, _)| *n == f.name) {
            f.default = v.clone();
        }
    }
    let input = match view::input(&form.fields, &pairs) {
        Ok(v) => v,
        Err(problems) => {
            form.problems = problems;
            return Ok((StatusCode::BAD_REQUEST, form).into_response());
        }
    };
    let req = StartRunRequest {
        bundle_id: flow.clone(),
        input_data: input,
        ..Default::default()
    };
    match s
        .client
        .start_run_once(&req, &command_id(get("nonce")))
        .await
    {
        Ok(r) => Ok(Redirect::to(&format!("/app/runs/{}", r.run_id)).into_response()),
        Err(e) if e.status() == Some(401) => Err(e.into()),
        Err(e) => {
            form.problems = vec![e.message()];
            Ok((StatusCode::BAD_REQUEST, form).into_response())
        }
    }
}
