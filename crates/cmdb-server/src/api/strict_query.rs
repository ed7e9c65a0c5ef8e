//! Unknown query parameters are refused. A script that misspells a filter (`asset=3` for
//! `asset_id=3`, `bogus=1`) gets a 400 that names the parameter, instead of a 200 with every row
//! that it would take for the filtered answer. What each route takes is read from the OpenAPI
//! document, which utoipa derives from the handlers' parameter types: the check and the
//! documentation cannot disagree, and a parameter a handler reads but the document leaves out is
//! refused (so a test that uses it fails) rather than silently undocumented.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// (method, path template) -> the query parameters the operation takes.
static ACCEPTED: LazyLock<HashMap<(String, String), Vec<String>>> = LazyLock::new(|| {
    let doc = &*crate::api::openapi::SPEC;
    let mut accepted = HashMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            let names: Vec<String> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect();
            accepted.insert((method.to_ascii_lowercase(), path.clone()), names);
        }
    }
    accepted
});

/// The query parameters `method path` takes; `None` for a route the document does not describe.
pub fn accepted(method: &str, path: &str) -> Option<&'static [String]> {
    ACCEPTED.get(&(method.to_ascii_lowercase(), path.to_owned())).map(Vec::as_slice)
}

/// Whether documented parameter `accepted` takes `name`: the same name, or, for a pattern such as
/// `custom.{key}`, any name with its prefix.
fn takes(accepted: &str, name: &str) -> bool {
    match accepted.split_once('{') {
        Some((prefix, _)) if accepted.ends_with('}') => name.starts_with(prefix) && name.len() > prefix.len(),
        _ => accepted == name,
    }
}

/// Middleware (a route layer, so the matched path is known): answers 400 when the query names a
/// parameter the route does not take. A malformed query string is left to the handler's own
/// parsing, which names what is wrong with it.
pub async fn reject_unknown(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    if let (Some(path), Some(query)) = (matched.as_ref(), request.uri().query())
        && let Some(accepted) = accepted(request.method().as_str(), path.as_str())
        && let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        && let Some((name, _)) = pairs.iter().find(|(name, _)| !accepted.iter().any(|a| takes(a, name)))
    {
        let takes = if accepted.is_empty() { "no query parameters".to_owned() } else { accepted.join(", ") };
        return ApiError::BadRequest(format!(
            "unknown query parameter `{name}`: {} {} takes {takes}",
            request.method(),
            path.as_str()
        ))
        .into_response();
    }
    next.run(request).await
}
