//! The HTTP API (axum): routes of the client contract, auth gates, errors and SSE.
//!
//! Owns request parsing and validation (every 4xx names the field), the mapping of store
//! and flow errors to responses (`error`), gates (`auth`) and streaming (`sse`). Handlers
//! call the store, the registry, the runner and `crate::auth`; they never write SQL and
//! never decide a run's next step.

mod admin;
mod approvals;
mod auth;
mod bundles;
pub(crate) mod channels;
mod commands;
mod error;
mod hooks;
mod links;
mod mcp;
mod meta;
mod openai;
mod push;
mod runs;
mod schedules;
pub(crate) mod sse;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) use auth::Gate;
pub(crate) use openai::SessionLocks;

use crate::auth::Scope;
use crate::flows::Registry;
use crate::runner::Runner;
use crate::store::Store;

/// Shared state of every handler: one allocation behind an `Arc`, so the clones axum makes
/// for every request and layer are one reference count each (profiles showed the clone
/// and drop of the whole struct per request).
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

impl AppState {
    pub(crate) fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) registry: Registry,
    /// `None` when this process serves the API only (`serve --no-runner`).
    pub(crate) runner: Option<Runner>,
    pub(crate) started: Instant,
    pub(crate) gate: Gate,
    /// Gateway-wide pause: no new runs start.
    pub(crate) paused: Arc<AtomicBool>,
    pub(crate) flows_dir: PathBuf,
    /// Turns true when the server shuts down; streams end with a retry hint.
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    /// How often idle event streams get a keep-alive comment.
    pub(crate) keep_alive: std::time::Duration,
    /// Declared triggers and how requests to them are verified.
    pub(crate) triggers: Arc<crate::triggers::TriggerConfig>,
    /// How long a chat completion waits for its run to stop.
    pub(crate) openai_timeout: std::time::Duration,
    pub(crate) openai_sessions: SessionLocks,
    /// The channels' published allowlists: whom runs may notify.
    pub(crate) reach: Arc<crate::auth::reach::Reach>,
    /// Where webhooks may point (`SWITCHBOARD_HTTP_ALLOW`).
    pub(crate) net: Arc<crate::net::NetPolicy>,
    /// Event streams one principal may hold open (`SWITCHBOARD_MAX_STREAMS`).
    pub(crate) streams: crate::http::sse::StreamCounts,
    /// Largest answer or event payload (`SWITCHBOARD_MAX_PAYLOAD`).
    pub(crate) max_payload: usize,
    /// The MCP servers flows may name (checked when a flow is uploaded).
    pub(crate) mcp: crate::mcp::Hub,
    /// `SWITCHBOARD_PUBLIC_URL`, for links to `/app/runs/<id>` (else the request's host).
    pub(crate) public_url: Option<String>,
    /// The key of one-click answer links (`http::links`), loaded once from the store.
    pub(crate) link_key: Arc<tokio::sync::OnceCell<String>>,
    /// The Web Push key pair (read or made once, then kept).
    pub(crate) vapid: Arc<tokio::sync::OnceCell<crate::push::Vapid>>,
}

impl AppState {
    pub(crate) fn wake(&self, ids: Vec<String>) {
        if let Some(r) = &self.runner {
            r.wake_all(ids);
        }
    }

    /// `wake`, where `row` is one of those runs as the waking transaction left it: that run
    /// is driven from it instead of being read back (`Runner::wake_with`).
    pub(crate) fn wake_from(&self, ids: Vec<String>, row: Option<crate::store::DriveRow>) {
        let Some(r) = &self.runner else {
            return;
        };
        let handed = row.map(|row| {
            let id = row.run_id.clone();
            r.wake_with(row);
            id
        });
        r.wake_all(ids.into_iter().filter(|id| handed.as_ref() != Some(id)));
    }

    /// Starts `run`: with a runner in this process (the embedded SQLite store), with its
    /// first step in the start's transaction (`Runner::start_run`); without one (an API
    /// process, or any node of a shared store, whose runner follows the ledger), the
    /// runner drives it from its start.
    pub(crate) async fn start_run(
        &self,
        run: crate::store::NewRun,
    ) -> Result<protocol::RunSummary, crate::store::StoreError> {
        match &self.runner {
            Some(r) => r.start_run(run).await,
            None => Ok(self.store.start_run(run, false, None).await?.0),
        }
    }

    /// Whether a waking write should read its run for the runner (`wake_from`).
    pub(crate) fn hands_rows(&self) -> bool {
        self.runner.is_some()
    }
}

/// Request bodies larger than this are refused with 413.
pub(crate) const BODY_LIMIT: usize = 10 * 1024 * 1024;

type Routes = OpenApiRouter<AppState>;

fn gated(routes: Routes, gate: &Gate, scope: Option<Scope>) -> Routes {
    routes.route_layer(axum::middleware::from_fn_with_state(
        (gate.clone(), scope),
        auth::require,
    ))
}

/// The API description; paths come from the routes themselves (`routes!`).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Switchboard gateway API", description = "Durable AI workflow runs: start, replay (HTTP and SSE), command."),
    security(("bearer" = [])),
    modifiers(&BearerAuth),
    tags(
        (name = "runs"), (name = "schedules"), (name = "triggers"), (name = "webhooks"), (name = "replay"), (name = "commands"), (name = "approvals"), (name = "flows"), (name = "auth"), (name = "admin"), (name = "meta")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme =
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        api.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", scheme);
    }
}

/// Every route of the API, with its OpenAPI description.
fn api(gate: &Gate) -> Routes {
    let read = OpenApiRouter::new()
        .routes(routes!(bundles::list))
        .routes(routes!(runs::list))
        .routes(routes!(runs::batch))
        .routes(routes!(runs::get_one))
        .routes(routes!(runs::ledger))
        .routes(routes!(sse::run_stream))
        .routes(routes!(runs::input_data))
        .routes(routes!(runs::history_bundle))
        .routes(routes!(sse::global_stream))
        .routes(routes!(sse::global_head))
        .routes(routes!(commands::status))
        .routes(routes!(meta::capabilities))
        .routes(routes!(approvals::list))
        .routes(routes!(push::key))
        .routes(routes!(push::list, push::subscribe))
        .routes(routes!(push::unsubscribe))
        .routes(routes!(meta::metrics))
        .routes(routes!(schedules::list))
        .routes(routes!(hooks::list_triggers));
    let any = OpenApiRouter::new()
        .routes(routes!(admin::whoami))
        .routes(routes!(admin::revoke_self));
    let channel = OpenApiRouter::new()
        .routes(routes!(channels::put_allowlist))
        .routes(routes!(links::create));
    let run = OpenApiRouter::new()
        .routes(routes!(runs::start))
        .routes(routes!(schedules::create));
    let command = OpenApiRouter::new()
        .routes(routes!(commands::submit))
        .routes(routes!(approvals::approve))
        .routes(routes!(approvals::deny));
    let admin = OpenApiRouter::new()
        .routes(routes!(bundles::upload))
        .routes(routes!(admin::reload_flows))
        .routes(routes!(admin::mint_code))
        .routes(routes!(admin::devices))
        .routes(routes!(admin::revoke_device))
        .routes(routes!(admin::keys, admin::create_key))
        .routes(routes!(admin::revoke_key))
        .routes(routes!(admin::rotate_token))
        .routes(routes!(admin::pause_gateway))
        .routes(routes!(admin::resume_gateway))
        .routes(routes!(hooks::create_webhook, hooks::list_webhooks))
        .routes(routes!(hooks::delete_webhook))
        .routes(routes!(hooks::deliveries))
        .routes(routes!(channels::list))
        .routes(routes!(channels::forget))
        .routes(routes!(approvals::people, approvals::add_person))
        .routes(routes!(approvals::remove_person))
        .routes(routes!(approvals::groups, approvals::add_group))
        .routes(routes!(approvals::remove_group));
    let public = OpenApiRouter::new()
        .routes(routes!(meta::health))
        .routes(routes!(admin::pair))
        .routes(routes!(hooks::fire))
        .routes(routes!(links::info, links::vote))
        .route_layer(axum::middleware::from_fn_with_state(
            gate.clone(),
            auth::public,
        ));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(public)
        .merge(gated(any, gate, None))
        .merge(gated(read, gate, Some(Scope::Read)))
        .merge(gated(run, gate, Some(Scope::Run)))
        .merge(gated(command, gate, Some(Scope::Command)))
        .merge(gated(channel, gate, Some(Scope::Channel)))
        .merge(gated(admin, gate, Some(Scope::Admin)))
}

/// The API, plus the web app (mounted at `/app`) behind the same guard: origin check, body
/// limit, security headers (a page may set its own CSP and referrer policy).
pub(crate) fn router(state: AppState, web: Option<Router>) -> Router {
    let gate = state.gate.clone();
    let (routes, spec) = api(&gate).split_for_parts();
    let spec = std::sync::Arc::new(spec.to_pretty_json().unwrap_or_default());
    let routes = routes
        .route(
            "/openapi.json",
            get(move || meta::openapi_json(spec.clone())),
        )
        .route("/docs", get(meta::docs))
        .merge(openai::routes(&gate))
        .merge(
            // `/mcp`: any valid token; each tool checks its own scope.
            Router::new()
                .nest_service("/mcp", mcp::service(state.clone()))
                .layer(axum::middleware::from_fn_with_state(
                    (gate.clone(), None),
                    auth::require,
                )),
        );
    let routes = match web {
        Some(web) => routes.nest_service("/app", web),
        None => routes,
    };
    routes
        .fallback(meta::not_found)
        .route_layer(axum::middleware::from_fn(crate::telemetry::track))
        .layer(axum::extract::DefaultBodyLimit::max(gate.body_limit))
        .layer(axum::middleware::from_fn_with_state(
            gate.clone(),
            auth::guard,
        ))
        .with_state(state)
}
