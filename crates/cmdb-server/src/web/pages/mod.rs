//! Page handlers and what they share: the logged-in user, CSRF-checked forms, the layout context,
//! query-string parsing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::WebState;
use super::error::WebError;
use super::session::{self, SESSION_COOKIE, SessionUser};
use crate::auth::Role;

pub mod admin;
pub mod assets;
pub mod auth;
pub mod changes;
pub mod dashboard;
pub mod errors;
pub mod import;
pub mod lists;
pub mod record;
pub mod stocktakes;

/// The logged-in user of a page request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The session and its user.
    pub session: SessionUser,
    /// The client's address, when known (for the audit log and throttling).
    pub client_ip: Option<String>,
}

impl CurrentUser {
    /// Refuses users below `role`.
    pub fn require(&self, role: Role) -> Result<(), WebError> {
        if self.session.role >= role {
            Ok(())
        } else {
            Err(WebError::Forbidden(format!(
                "this needs the {} role; you are {}",
                role.as_str(),
                self.session.role.as_str()
            )))
        }
    }

    /// The layout context for a page in navigation section `nav`.
    pub fn layout(&self, state: &WebState, nav: &'static str) -> Layout {
        Layout {
            user: self.session.name.clone(),
            role: self.session.role.as_str(),
            is_editor: self.session.role >= Role::Editor,
            is_admin: self.session.role >= Role::Admin,
            csrf: self.session.csrf.clone(),
            tz: state.app.config.timezone.clone(),
            nav,
        }
    }
}

/// What every page's layout (`base.html`) needs.
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    /// The user's name.
    pub user: String,
    /// The user's role.
    pub role: &'static str,
    /// May edit business fields.
    pub is_editor: bool,
    /// May manage users, keys and tokens.
    pub is_admin: bool,
    /// The session's CSRF token, for forms.
    pub csrf: String,
    /// The time zone dates are shown in.
    pub tz: String,
    /// The highlighted navigation entry.
    pub nav: &'static str,
}

fn path_and_query(parts: &Parts) -> String {
    parts.uri.path_and_query().map(|pq| pq.as_str().to_owned()).unwrap_or_else(|| "/".to_owned())
}

impl FromRequestParts<Arc<WebState>> for CurrentUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<WebState>) -> Result<Self, Self::Rejection> {
        let htmx = parts.headers.contains_key("hx-request");
        let login = || WebError::LoginRequired { next: path_and_query(parts), htmx };
        let Some(id) = session::cookie(&parts.headers, SESSION_COOKIE) else { return Err(login()) };
        let Some(user) = session::lookup(&state.app.db, &state.settings, id).await? else { return Err(login()) };
        if user.must_change_password && !matches!(parts.uri.path(), "/account" | "/logout") {
            return Err(WebError::PasswordChangeRequired);
        }
        let client_ip = session::client_ip(parts, &state.settings).map(|ip| ip.to_string());
        Ok(CurrentUser { session: user, client_ip })
    }
}

/// A POSTed form from a logged-in user whose CSRF token (field `csrf`) matched the session's.
#[derive(Debug)]
pub struct Posted<T> {
    /// Who posted it.
    pub user: CurrentUser,
    /// The form's fields.
    pub form: T,
}

#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned + Send> FromRequest<Arc<WebState>> for Posted<T> {
    type Rejection = WebError;

    async fn from_request(request: Request, state: &Arc<WebState>) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let user = CurrentUser::from_request_parts(&mut parts, state).await?;
        let headers = parts.headers.clone();
        let request = Request::from_parts(parts, body);
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|e| WebError::BadRequest(format!("cannot read the form: {e}")))?;
        // Plain forms carry the token as a field; htmx requests (see assets/app.js) as a header.
        let field: CsrfField = serde_urlencoded::from_bytes(&body).unwrap_or(CsrfField { csrf: String::new() });
        let header = headers.get(session::CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !user.session.csrf_matches(&field.csrf) && !user.session.csrf_matches(header) {
            tracing::warn!(user = %user.session.name, "form refused: missing or wrong CSRF token");
            return Err(WebError::Csrf);
        }
        let form =
            serde_urlencoded::from_bytes(&body).map_err(|e| WebError::BadRequest(format!("malformed form: {e}")))?;
        Ok(Posted { user, form })
    }
}

/// A file uploaded with a form (`multipart/form-data`) by a logged-in user whose CSRF token (field
/// `csrf`, or the header) matched the session's; checked before the handler runs, like [`Posted`].
#[derive(Debug)]
pub struct PostedUpload {
    /// Who posted it.
    pub user: CurrentUser,
    /// The text fields.
    pub fields: std::collections::BTreeMap<String, String>,
    /// The file: its name as the browser gave it, and its bytes (the body limit bounds them).
    pub file: Option<(String, Bytes)>,
}

impl FromRequest<Arc<WebState>> for PostedUpload {
    type Rejection = WebError;

    async fn from_request(request: Request, state: &Arc<WebState>) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let user = CurrentUser::from_request_parts(&mut parts, state).await?;
        let header = parts.headers.get(session::CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let request = Request::from_parts(parts, body);
        let mut multipart = axum::extract::Multipart::from_request(request, state)
            .await
            .map_err(|e| WebError::BadRequest(format!("not a file upload form: {e}")))?;
        let mut fields = std::collections::BTreeMap::new();
        let mut file = None;
        while let Some(field) =
            multipart.next_field().await.map_err(|e| WebError::BadRequest(format!("cannot read the upload: {e}")))?
        {
            let name = field.name().unwrap_or("").to_owned();
            match field.file_name().map(str::to_owned) {
                Some(file_name) => {
                    let bytes =
                        field.bytes().await.map_err(|e| WebError::BadRequest(format!("cannot read the file: {e}")))?;
                    if !file_name.is_empty() {
                        file = Some((file_name, bytes));
                    }
                }
                None => {
                    let text =
                        field.text().await.map_err(|e| WebError::BadRequest(format!("cannot read the form: {e}")))?;
                    fields.insert(name, text);
                }
            }
        }
        let token = fields.get("csrf").map_or("", String::as_str);
        if !user.session.csrf_matches(token) && !user.session.csrf_matches(&header) {
            tracing::warn!(user = %user.session.name, "upload refused: missing or wrong CSRF token");
            return Err(WebError::Csrf);
        }
        Ok(PostedUpload { user, fields, file })
    }
}

/// `a=1&b=x%20y` from pairs (values percent-encoded).
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// Parses a query string into `T`, dropping empty values first (an empty select means "any").
pub fn parse_query<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, WebError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| WebError::BadRequest(format!("malformed query string: {e}")))?;
    let kept: Vec<(String, String)> = pairs.into_iter().filter(|(_, v)| !v.trim().is_empty()).collect();
    let text = serde_urlencoded::to_string(&kept).unwrap_or_default();
    serde_urlencoded::from_str(&text).map_err(|e| WebError::BadRequest(format!("bad query parameter: {e}")))
}

/// A value from a report or the history, as text for a table cell: strings as they are, `null` as
/// an empty cell, everything else as compact JSON.
pub fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_query_values_mean_any() {
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Q {
            page: Option<u32>,
            q: Option<String>,
        }
        let q: Q = parse_query(Some("page=&q=web")).expect("parse");
        assert_eq!((q.page, q.q.as_deref()), (None, Some("web")));
        assert!(parse_query::<Q>(Some("page=x")).is_err());
    }

    #[test]
    fn cells() {
        assert_eq!(cell(&serde_json::json!("a<b")), "a<b");
        assert_eq!(cell(&serde_json::json!(null)), "");
        assert_eq!(cell(&serde_json::json!({"k": [1]})), "{\"k\":[1]}");
    }
}
