//! Flows as bundles: listing, and uploading a new version (validated before it is stored).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Multipart, State};
use protocol::{Bundle, BundleList, Entrypoint};
use serde_json::json;

use super::{AppState, error::ApiError};
use crate::flows::parse;

#[utoipa::path(get, path = "/api/gateway/bundles", tag = "flows", responses((status = 200, body = protocol::BundleList), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn list(State(app): State<AppState>) -> Json<BundleList> {
    let items = app
        .registry
        .list()
        .into_iter()
        .map(|v| {
            let f = &v.flow;
            Bundle {
                bundle_id: f.bundle_id.clone(),
                bundle_version: v.version.to_string(),
                name: f.name.clone(),
                description: f.description.clone(),
                flow_hash: f.hash.clone(),
                entrypoints: vec![Entrypoint {
                    flow_id: f.bundle_id.clone(),
                    name: f.name.clone(),
                    input_schema: f
                        .input_schema
                        .clone()
                        .unwrap_or_else(|| json!({"type": "object"})),
                }],
            }
        })
        .collect();
    Json(BundleList { items })
}

/// The upload form (for the API description).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct UploadForm {
    /// One flow file (YAML); its name without `.yaml` is the bundle id unless it sets `id:`.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// `multipart/form-data` with a `file` part holding one flow (YAML).
#[utoipa::path(post, path = "/api/gateway/bundles/upload", tag = "flows", request_body(content_type = "multipart/form-data", content = UploadForm), responses((status = 200, description = "the new version", body = protocol::BundleVersion), (status = 400, description = "broken flow: code invalid_flow with file, line, column", body = protocol::ErrorBody), (status = 403, body = protocol::ErrorBody), (status = 401, description = "missing or bad token", body = protocol::ErrorBody), (status = 429, description = "rate limit or lockout", body = protocol::ErrorBody)))]
pub(crate) async fn upload(
    State(app): State<AppState>,
    mut form: Multipart,
) -> Result<Json<protocol::BundleVersion>, ApiError> {
    let mut file = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::bad(format!("bad multipart body: {e}")))?
    {
        if field.name() == Some("file") {
            let name = field.file_name().unwrap_or("flow.yaml").to_owned();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| ApiError::bad(format!("cannot read `file`: {e}")))?;
            file = Some((name, bytes));
        }
    }
    let Some((name, bytes)) = file else {
        return Err(ApiError::bad(
            "missing multipart field `file` (the flow's YAML)",
        ));
    };
    let src =
        String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::bad("`file` is not UTF-8 text"))?;
    let stem = std::path::Path::new(&name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("flow")
        .to_owned();
    let flow = parse::compile(&name, &stem, &src).map_err(ApiError::Flow)?;
    crate::mcp::list_named(&app.mcp, &flow).await;
    let catalog = crate::mcp::Catalog {
        hub: &app.mcp,
        registry: &app.registry,
        loading: &[],
    };
    flow.check_tools(&catalog).map_err(ApiError::Flow)?;
    let version = app
        .store
        .register_flow(
            &flow.bundle_id,
            &flow.hash,
            &flow.source,
            "upload",
            crate::store::MakeCurrent::Always,
        )
        .await?;
    let body = protocol::BundleVersion {
        bundle_id: flow.bundle_id.clone(),
        bundle_version: version.to_string(),
        flow_hash: flow.hash.clone(),
    };
    app.registry.set_current(Arc::new(flow), version);
    Ok(Json(body))
}
