//! The app shell's files, embedded in the binary: stylesheet, script, service worker,
//! web manifest and icons. Static files may be cached; the service worker is always
//! revalidated so an update reaches phones.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const APP_JS: &str = include_str!("../static/app.js");
const APP_CSS: &str = include_str!("../static/app.css");
const SW_JS: &str = include_str!("../static/sw.js");
const MANIFEST: &str = include_str!("../static/manifest.webmanifest");
const ICON_192: &[u8] = include_bytes!("../static/icon-192.png");
const ICON_512: &[u8] = include_bytes!("../static/icon-512.png");

fn serve(body: impl IntoResponse, kind: &'static str, cache: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, cache)],
        body,
    )
        .into_response()
}

const SHORT: &str = "public, max-age=300";

pub async fn file(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => serve(APP_JS, "text/javascript; charset=utf-8", SHORT),
        "app.css" => serve(APP_CSS, "text/css; charset=utf-8", SHORT),
        "icon-192.png" => serve(ICON_192, "image/png", SHORT),
        "icon-512.png" => serve(ICON_512, "image/png", SHORT),
        _ => crate::pages::json_error(StatusCode::NOT_FOUND, "not_found", "no such file"),
    }
}

pub async fn service_worker() -> Response {
    serve(SW_JS, "text/javascript; charset=utf-8", "no-cache")
}

pub async fn manifest() -> Response {
    serve(MANIFEST, "application/manifest+json", SHORT)
}
