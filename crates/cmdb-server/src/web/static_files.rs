//! The UI's static files (style sheet, scripts), compiled into the binary and served with their
//! content hash in the URL so browsers may cache them for good.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// One embedded file.
struct StaticFile {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const FILES: &[StaticFile] = &[
    StaticFile {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/app.css"),
    },
    StaticFile {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/app.js"),
    },
    StaticFile {
        name: "htmx.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/htmx.min.js"),
    },
];

/// Short content hashes, computed once.
static VERSIONS: LazyLock<Vec<String>> =
    LazyLock::new(|| FILES.iter().map(|f| hex::encode(&Sha256::digest(f.body)[..6])).collect());

/// The URL of static file `name`, with its content hash.
pub fn url(name: &str) -> String {
    match FILES.iter().position(|f| f.name == name) {
        Some(index) => format!("/static/{name}?v={}", VERSIONS[index]),
        None => format!("/static/{name}"),
    }
}

async fn serve(Path(name): Path<String>) -> Response {
    let Some(file) = FILES.iter().find(|f| f.name == name) else {
        return (StatusCode::NOT_FOUND, "no such static file").into_response();
    };
    let mut response = file.body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(file.content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// `GET /static/{name}`.
pub fn router() -> crate::routing::Routes {
    crate::routing::Routes::new().route("/static/{name}", get(serve))
}
