//! Login, logout and "change my password".

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{CurrentUser, Layout, Posted, parse_query};
use crate::service::audit_log as audit;
use crate::web::error::WebError;
use crate::web::session::{self, LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use crate::web::throttle::{self, Admission, Attempt};
use crate::web::{WebState, templates, users};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

/// Where to go after login: a path on this site, or `/`.
///
/// Browsers are lenient about what they treat as another origin: `//host`, `/\host`, and (since
/// they strip tabs and newlines from URLs) `/\t/host` all leave the site, and a CR/LF would split
/// the `Location` header. So `next` must start with exactly one `/` not followed by `/` or `\`,
/// hold no backslash, control character or white space anywhere (ASCII or Unicode), and not lead
/// back to the login form. Anything else becomes `/`. Non-ASCII text (a host name in a search) is
/// kept, percent-encoded, so the header is always valid.
pub fn safe_next(next: Option<&str>) -> String {
    let Some(next) = next else { return "/".to_owned() };
    let mut bytes = next.bytes();
    let same_site = bytes.next() == Some(b'/') && !matches!(bytes.next(), Some(b'/' | b'\\'));
    let clean = !next.chars().any(|c| c == '\\' || c.is_control() || c.is_whitespace() || is_invisible(c));
    if !same_site || !clean || next.starts_with("/login") {
        return "/".to_owned();
    }
    percent_encoding::utf8_percent_encode(next, percent_encoding::CONTROLS).to_string()
}

/// Format characters browsers may drop or render invisibly (zero-width spaces and joiners,
/// bidirectional overrides, the BOM): not white space to Rust, but no path of ours holds one.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}')
}

#[derive(Serialize)]
struct LoginPage<'a> {
    csrf: &'a str,
    next: &'a str,
    name: &'a str,
    error: Option<String>,
    directory_down: bool,
}

/// True when directory login is configured and the directory is not usable now (the login page
/// says so; local accounts still log in).
fn directory_down(state: &WebState) -> bool {
    match &state.app.directory {
        None => false,
        Some(Err(_)) => true,
        Some(Ok(directory)) => !directory.reachable(),
    }
}

/// What the login page says when a directory name could not be checked.
const DIRECTORY_DOWN: &str =
    "The directory (LDAP) is unreachable, so directory accounts cannot log in now. Local accounts still can.";

fn login_page(
    status: StatusCode,
    csrf: &str,
    next: &str,
    name: &str,
    error: Option<String>,
    secure: bool,
    directory_down: bool,
) -> Result<Response, WebError> {
    let html = templates::render("login.html", &LoginPage { csrf, next, name, error, directory_down })?;
    let mut response = (status, html).into_response();
    let cookie = session::set_cookie(LOGIN_CSRF_COOKIE, csrf, 3600, "Strict", "/login", secure);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `GET /login`.
pub async fn login_form(
    State(state): State<Arc<WebState>>,
    parts: Parts,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    let query: NextQuery = parse_query(raw.as_deref()).unwrap_or_default();
    let next = safe_next(query.next.as_deref());
    // Already logged in: nothing to do here.
    if let Some(id) = session::cookie(&parts.headers, SESSION_COOKIE)
        && session::lookup(&state.app.db, &state.settings, id).await?.is_some()
    {
        return Ok(Redirect::to(&next).into_response());
    }
    // Keep the browser's pre-session token if it has one, so two open login tabs both work.
    let csrf = match session::cookie(&parts.headers, LOGIN_CSRF_COOKIE) {
        Some(token)
            if token.len() == 43 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            token.to_owned()
        }
        _ => session::random_token(),
    };
    let down = directory_down(&state);
    login_page(StatusCode::OK, &csrf, &next, "", None, session::is_tls(&parts, &state.settings), down)
}

/// The login form's fields.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log line, even through a debug print.
        f.debug_struct("LoginForm").field("name", &self.name).finish_non_exhaustive()
    }
}

/// `POST /login`: checks the pre-session CSRF token, the throttle, then the password; on success
/// creates a new session (any session cookie sent along is ended first).
pub async fn login(
    State(state): State<Arc<WebState>>,
    parts: Parts,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    let secure = session::is_tls(&parts, &state.settings);
    let form: LoginForm =
        serde_urlencoded::from_bytes(&body).map_err(|e| WebError::BadRequest(format!("malformed login form: {e}")))?;
    let next = safe_next(form.next.as_deref());
    let cookie_token = session::cookie(&parts.headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    let csrf_ok = !cookie_token.is_empty() && bool::from(cookie_token.as_bytes().ct_eq(form.csrf.as_bytes()));
    let fresh = session::random_token();
    if !csrf_ok {
        tracing::warn!("login refused: missing or wrong login CSRF token");
        return login_page(
            StatusCode::FORBIDDEN,
            &fresh,
            &next,
            &form.name,
            Some("The login form expired or did not come from this site. Please try again.".to_owned()),
            secure,
            false,
        );
    }
    let db = &state.app.db;
    let ip = session::client_ip(&parts, &state.settings).map(|ip| ip.to_string());
    let name = users::normalize_name(&form.name).unwrap_or_else(|_| "-".to_owned());
    let known = users::find(db, &name).await?;
    let actor = if known.is_some() { name.as_str() } else { "-" };
    let attempt = Attempt { user: name.clone(), user_id: known.as_ref().map(|u| u.id), address: ip.clone() };
    let now = crate::db::now_us();
    // Checked and counted in one step, before any hash runs (see `throttle`).
    let blocks_for = match throttle::admit(db, &attempt, now).await? {
        Admission::Allowed { blocks_for } => blocks_for,
        Admission::Throttled { retry_after } => {
            audit::record_repeated(db, actor, "login_throttled", "too many failed logins", ip.as_deref()).await?;
            tracing::warn!(
                user = actor,
                client_ip = ip.as_deref().unwrap_or("-"),
                retry_after,
                "login refused: throttled"
            );
            let mut response = login_page(
                StatusCode::TOO_MANY_REQUESTS,
                &fresh,
                &next,
                &form.name,
                Some(format!("Too many failed logins. Try again in {retry_after} seconds.")),
                secure,
                false,
            )?;
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
            return Ok(response);
        }
    };
    let check = match users::check_login(db, state.app.directory.as_ref(), &form.name, &form.password).await {
        Ok(check) => check,
        Err(users::UserError::Busy) => {
            // No hash ran: the counted failure is taken back, so a busy server costs nobody a try.
            throttle::succeeded_without_login(db, &attempt, now).await?;
            let mut response = login_page(
                StatusCode::TOO_MANY_REQUESTS,
                &fresh,
                &next,
                &form.name,
                Some("Too many logins at once. Try again in a second.".to_owned()),
                secure,
                false,
            )?;
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(response);
        }
        Err(e) => return Err(e.into()),
    };
    let (user, created) = match check {
        users::LoginCheck::Accepted { user, created } => (user, created),
        users::LoginCheck::Refused { directory } => {
            // An unknown name may be a password typed into the wrong field: it is not recorded.
            let detail = match (directory, known.is_some()) {
                (true, _) => "directory: unknown name or wrong password",
                (false, true) => "wrong password or disabled account",
                (false, false) => "unknown user name",
            };
            audit::record_repeated(db, actor, "login_failed", detail, ip.as_deref()).await?;
            tracing::warn!(user = actor, client_ip = ip.as_deref().unwrap_or("-"), directory, "login failed");
            let mut message = "Wrong user name or password.".to_owned();
            if blocks_for > 0 {
                message.push_str(&format!(" Further attempts are blocked for {blocks_for} seconds."));
            }
            return login_page(StatusCode::UNAUTHORIZED, &fresh, &next, &form.name, Some(message), secure, false);
        }
        users::LoginCheck::DirectoryDown => {
            // The password was never checked: the counted failure is taken back, as when busy.
            throttle::succeeded_without_login(db, &attempt, now).await?;
            audit::record_repeated(db, actor, "login_failed", "directory unreachable", ip.as_deref()).await?;
            tracing::warn!(
                user = actor,
                client_ip = ip.as_deref().unwrap_or("-"),
                "login failed: directory unreachable"
            );
            return login_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &fresh,
                &next,
                &form.name,
                Some(DIRECTORY_DOWN.to_owned()),
                secure,
                true,
            );
        }
        users::LoginCheck::NoMappedGroup { user } => {
            // The password was right (no guess to slow down), but no group grants a role.
            throttle::succeeded_without_login(db, &attempt, now).await?;
            let actor = user.as_ref().map_or("-", |u| u.name.as_str());
            audit::record_repeated(db, actor, "login_failed", "directory user in no mapped group", ip.as_deref())
                .await?;
            tracing::warn!(user = %name, client_ip = ip.as_deref().unwrap_or("-"), "login refused: in no mapped directory group");
            return login_page(
                StatusCode::FORBIDDEN,
                &fresh,
                &next,
                &form.name,
                Some("Your directory account is in no group that grants access to cmdb.".to_owned()),
                secure,
                false,
            );
        }
    };
    if created {
        audit::record_from(db, &user.name, "user.directory_created", &format!("user {}", user.name), ip.as_deref())
            .await?;
    }
    throttle::succeeded(db, &attempt, user.id, now).await?;
    // Rotation: whatever session the browser had is ended, and the new one gets a new id.
    if let Some(old) = session::cookie(&parts.headers, SESSION_COOKIE) {
        session::destroy(db, old).await?;
    }
    let id = session::create(db, &state.settings, user.id, ip.as_deref()).await?;
    let detail = format!("role {}{}", user.role.as_str(), if user.directory { " (directory)" } else { "" });
    audit::record_from(db, &user.name, "login", &detail, ip.as_deref()).await?;
    tracing::info!(user = %user.name, client_ip = ip.as_deref().unwrap_or("-"), "login");
    let target = if user.must_change_password { "/account".to_owned() } else { next };
    let mut response = Redirect::to(&target).into_response();
    let max_age = state.settings.session_absolute.as_secs();
    let headers = response.headers_mut();
    for cookie in [
        session::set_cookie(SESSION_COOKIE, &id, max_age, "Lax", "/", secure),
        session::set_cookie(LOGIN_CSRF_COOKIE, "", 0, "Strict", "/login", secure),
    ] {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// A form with nothing but the CSRF token.
#[derive(Debug, Deserialize)]
pub struct EmptyForm {}

/// `POST /logout`.
pub async fn logout(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    parts_tls: TlsFlag,
    posted: Posted<EmptyForm>,
) -> Result<Response, WebError> {
    let db = &state.app.db;
    if let Some(id) = session::cookie(&headers, SESSION_COOKIE) {
        session::destroy(db, id).await?;
    }
    let user = &posted.user;
    audit::record_from(db, &user.session.name, "logout", "", user.client_ip.as_deref()).await?;
    let mut response = Redirect::to("/login").into_response();
    let cookie = session::set_cookie(SESSION_COOKIE, "", 0, "Lax", "/", parts_tls.0);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Whether the request came over TLS (for cookie attributes).
#[derive(Debug, Clone, Copy)]
pub struct TlsFlag(pub bool);

impl axum::extract::FromRequestParts<Arc<WebState>> for TlsFlag {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<WebState>) -> Result<Self, Self::Rejection> {
        Ok(TlsFlag(session::is_tls(parts, &state.settings)))
    }
}

#[derive(Serialize)]
struct AccountPage {
    layout: Layout,
    must_change: bool,
    error: Option<String>,
    done: bool,
    /// A directory account: its password is changed in the directory, so no form.
    directory: bool,
}

/// `GET /account`: change my password.
pub async fn account(State(state): State<Arc<WebState>>, user: CurrentUser) -> Result<Response, WebError> {
    let page = AccountPage {
        layout: user.layout(&state, "account"),
        must_change: user.session.must_change_password,
        error: None,
        done: false,
        directory: users::get(&state.app.db, user.session.user_id).await?.directory,
    };
    Ok(templates::render("account.html", &page)?.into_response())
}

/// The password form's fields.
#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

impl std::fmt::Debug for PasswordForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordForm { .. }")
    }
}

/// `POST /account`: checks the current password, sets the new one, ends every session of the user
/// and starts a fresh one for this browser.
pub async fn change_password(
    State(state): State<Arc<WebState>>,
    tls: TlsFlag,
    posted: Posted<PasswordForm>,
) -> Result<Response, WebError> {
    let db = &state.app.db;
    let user = &posted.user;
    let form = &posted.form;
    let directory = users::get(db, user.session.user_id).await?.directory;
    let fail = |message: String| -> Result<Response, WebError> {
        let page = AccountPage {
            layout: user.layout(&state, "account"),
            must_change: user.session.must_change_password,
            error: Some(message),
            done: false,
            directory,
        };
        Ok((StatusCode::UNPROCESSABLE_ENTITY, templates::render("account.html", &page)?).into_response())
    };
    if directory {
        return fail("Your password is kept in the directory (LDAP): change it there.".to_owned());
    }
    // Guessing the current password from a stolen session is throttled like a login.
    let attempt = Attempt {
        user: user.session.name.clone(),
        user_id: Some(user.session.user_id),
        address: user.client_ip.clone(),
    };
    let now = crate::db::now_us();
    if let Admission::Throttled { retry_after } = throttle::admit(db, &attempt, now).await? {
        audit::record_repeated(db, &user.session.name, "password_change_throttled", "", user.client_ip.as_deref())
            .await?;
        return Err(WebError::TooManyRequests {
            message: format!("Too many wrong passwords. Try again in {retry_after} seconds."),
            retry_after: u64::try_from(retry_after).unwrap_or(1),
        });
    }
    if !users::check_current_password(db, user.session.user_id, &form.current).await? {
        audit::record_repeated(
            db,
            &user.session.name,
            "password_change_failed",
            "wrong current password",
            user.client_ip.as_deref(),
        )
        .await?;
        return fail("The current password is wrong.".to_owned());
    }
    throttle::succeeded(db, &attempt, user.session.user_id, now).await?;
    if form.new != form.confirm {
        return fail("The new password and its confirmation differ.".to_owned());
    }
    if form.new == form.current {
        return fail("The new password must differ from the current one.".to_owned());
    }
    if let Err(e) = users::check_password(&form.new) {
        return fail(e.to_string());
    }
    users::set_password(db, user.session.user_id, &form.new, false).await?;
    if user.session.must_change_password {
        users::forget_first_password(&state.app.config.data_dir, &form.current);
    }
    audit::record_from(
        db,
        &user.session.name,
        "user.password_change",
        &format!("user {}", user.session.name),
        user.client_ip.as_deref(),
    )
    .await?;
    let id = session::create(db, &state.settings, user.session.user_id, user.client_ip.as_deref()).await?;
    let mut response = Redirect::to("/").into_response();
    let cookie = session::set_cookie(SESSION_COOKIE, &id, state.settings.session_absolute.as_secs(), "Lax", "/", tls.0);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/assets?q=web")), "/assets?q=web");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/login?next=/x")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
