//! Sessions: the `cmdb_session` cookie, its CSRF token, and who the request comes from.
//!
//! A session id is 32 random bytes (base64url in the cookie); the database keeps only its SHA-256,
//! so a copy of the database does not hold live sessions. A session ends after
//! [`WebSettings::session_idle`] without requests or [`WebSettings::session_absolute`] after login,
//! whichever comes first, and at logout, password change or account disable. Each login creates a
//! new id (a session id planted before login is never promoted). The cookie is `HttpOnly`,
//! `SameSite=Lax`, and `Secure` when the request came over TLS.
//!
//! Each session has a synchronizer CSRF token: every form carries it, and REST writes authenticated
//! by the cookie (not by a bearer token) must send it as `X-CSRF-Token`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use base64::Engine;
use sqlx::Row;
use subtle::ConstantTimeEq;

use super::WebSettings;
use crate::auth::{Principal, Role, token_hash};
use crate::db::{Db, now_us};
use crate::error::ApiError;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "cmdb_session";
/// The login form's pre-session CSRF cookie (double submit; `SameSite=Strict`).
pub const LOGIN_CSRF_COOKIE: &str = "cmdb_login_csrf";
/// The header carrying the CSRF token on cookie-authenticated REST writes and htmx requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// `last_seen_at` is written at most this often per session (µs), not on every request.
const TOUCH_INTERVAL_US: i64 = 60_000_000;

/// A live session and its user.
#[derive(Debug, Clone)]
pub struct SessionUser {
    /// SHA-256 of the session id (the row's key).
    pub id_hash: String,
    /// The user's id.
    pub user_id: i64,
    /// The user's name.
    pub name: String,
    /// The user's role, read at every request (a role change applies at once).
    pub role: Role,
    /// The session's CSRF token.
    pub csrf: String,
    /// The password must be changed before anything else.
    pub must_change_password: bool,
}

impl SessionUser {
    /// The principal for permission checks and change-record sources (`user:<name>`).
    pub fn principal(&self) -> Principal {
        Principal { name: self.name.clone(), role: self.role }
    }

    /// True when `submitted` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, submitted: &str) -> bool {
        !submitted.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(submitted.as_bytes()))
    }
}

/// 32 random bytes, base64url without padding (43 characters).
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of cookie `name`, if the request has it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// The connecting peer's address, when the server was started with connect info.
fn peer(parts: &Parts) -> Option<IpAddr> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip())
}

/// The client's address: the peer, or for a trusted proxy the last untrusted `X-Forwarded-For` hop.
pub fn client_ip(parts: &Parts, settings: &WebSettings) -> Option<IpAddr> {
    let peer = peer(parts)?;
    if !settings.trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    // Walk from the nearest hop back: the first address that is not one of our proxies is the client.
    Some(forwarded.into_iter().rev().find(|hop| !settings.trusted_proxies.contains(hop)).unwrap_or(peer))
}

/// True when the request reached us over TLS (or cookies are configured to be Secure anyway).
pub fn is_tls(parts: &Parts, settings: &WebSettings) -> bool {
    if let Some(forced) = settings.secure_cookies {
        return forced;
    }
    let from_trusted_proxy = peer(parts).is_some_and(|p| settings.trusted_proxies.contains(&p));
    from_trusted_proxy
        && parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

/// A `Set-Cookie` value. `max_age` of 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age_secs: u64, same_site: &str, path: &str, secure: bool) -> String {
    format!(
        "{name}={value}; Path={path}; Max-Age={max_age_secs}; HttpOnly; SameSite={same_site}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Creates a session for `user_id`; returns the cookie value (the id itself, shown to nobody else).
pub async fn create(
    db: &Db,
    settings: &WebSettings,
    user_id: i64,
    client_ip: Option<&str>,
) -> Result<String, sqlx::Error> {
    let id = random_token();
    let now = now_us();
    let absolute = i64::try_from(settings.session_absolute.as_micros()).unwrap_or(i64::MAX / 2);
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen_at, expires_at, client_ip) \
         VALUES ($1, $2, $3, $4, $4, $5, $6)",
    )
    .bind(token_hash(&id))
    .bind(user_id)
    .bind(random_token())
    .bind(now)
    .bind(now.saturating_add(absolute))
    .bind(client_ip.map(str::to_owned))
    .execute(db.writer())
    .await?;
    Ok(id)
}

/// Ends the session with cookie value `id`.
pub async fn destroy(db: &Db, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(token_hash(id)).execute(db.writer()).await?;
    Ok(())
}

/// The live session with cookie value `id`, touching its idle timer; `None` when unknown, expired
/// (it is deleted then) or its user is disabled.
pub async fn lookup(db: &Db, settings: &WebSettings, id: &str) -> Result<Option<SessionUser>, sqlx::Error> {
    // A cookie that cannot be one of ours is not worth a query.
    if id.len() != 43 {
        return Ok(None);
    }
    let id_hash = token_hash(id);
    let row = sqlx::query(
        "SELECT s.user_id, s.csrf_token, s.last_seen_at, s.expires_at, u.name, u.role, u.must_change_password \
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1 AND u.disabled_at IS NULL",
    )
    .bind(id_hash.clone())
    .fetch_optional(db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let now = now_us();
    let last_seen: i64 = row.try_get(2)?;
    let expires: i64 = row.try_get(3)?;
    let idle = i64::try_from(settings.session_idle.as_micros()).unwrap_or(i64::MAX / 2);
    if now >= expires || now >= last_seen.saturating_add(idle) {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(id_hash).execute(db.writer()).await?;
        return Ok(None);
    }
    if now - last_seen > TOUCH_INTERVAL_US {
        sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1")
            .bind(id_hash.clone())
            .bind(now)
            .execute(db.writer())
            .await?;
    }
    let role: String = row.try_get(5)?;
    let Some(role) = Role::parse(&role) else { return Ok(None) };
    Ok(Some(SessionUser {
        id_hash,
        user_id: row.try_get(0)?,
        csrf: row.try_get(1)?,
        name: row.try_get(4)?,
        role,
        must_change_password: row.try_get::<i64, _>(6)? != 0,
    }))
}

/// The session half of the REST API's authentication: a request without a bearer token may use
/// the session cookie. Writes (anything but GET, HEAD, OPTIONS) must then carry the session's CSRF
/// token in `X-CSRF-Token`, so a cross-site page cannot use a logged-in browser against the API.
/// `Ok(None)` when there is no session cookie or the session is not live.
pub async fn api_principal(parts: &Parts, state: &crate::state::AppState) -> Result<Option<Principal>, ApiError> {
    let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else { return Ok(None) };
    let settings = WebSettings::from_config(&state.config);
    let Some(user) = lookup(&state.db, &settings, id).await? else { return Ok(None) };
    if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let submitted = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !user.csrf_matches(submitted) {
            return Err(ApiError::Forbidden(
                "requests authenticated by the session cookie must send the session's X-CSRF-Token header".to_owned(),
            ));
        }
    }
    if user.must_change_password {
        return Err(ApiError::Forbidden("change your generated password in the web UI first (/account)".to_owned()));
    }
    Ok(Some(user.principal()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1; cmdb_session=abc; b=2".parse().expect("header"));
        headers.append(header::COOKIE, "cmdb_login_csrf=xyz".parse().expect("header"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, LOGIN_CSRF_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn tokens_are_256_bit_and_random() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
        let user = SessionUser {
            id_hash: String::new(),
            user_id: 1,
            name: "a".into(),
            role: Role::Viewer,
            csrf: a.clone(),
            must_change_password: false,
        };
        assert!(user.csrf_matches(&a));
        assert!(!user.csrf_matches(""));
        assert!(!user.csrf_matches(&random_token()));
    }

    fn parts(peer: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = axum::http::Request::builder().uri("/");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (mut parts, _) = request.body(()).expect("request").into_parts();
        parts.extensions.insert(ConnectInfo(peer.parse::<SocketAddr>().expect("addr")));
        parts
    }

    fn settings(trusted: &[&str], secure: Option<bool>) -> WebSettings {
        WebSettings {
            session_idle: std::time::Duration::from_secs(60),
            session_absolute: std::time::Duration::from_secs(600),
            secure_cookies: secure,
            trusted_proxies: trusted.iter().map(|t| t.parse().expect("ip")).collect(),
            dashboard_cache: std::time::Duration::from_secs(1),
        }
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let forwarded = [("x-forwarded-for", "198.51.100.7, 10.0.0.2"), ("x-forwarded-proto", "https")];
        // From a stranger, the headers are ignored: the peer is the client, and it is not TLS.
        let stranger = parts("203.0.113.9:5000", &forwarded);
        let none = settings(&[], None);
        assert_eq!(client_ip(&stranger, &none), Some("203.0.113.9".parse().expect("ip")));
        assert!(!is_tls(&stranger, &none));
        // From our proxies (a chain of two), the last untrusted hop is the client.
        let proxied = parts("10.0.0.1:5000", &forwarded);
        let trusted = settings(&["10.0.0.1", "10.0.0.2"], None);
        assert_eq!(client_ip(&proxied, &trusted), Some("198.51.100.7".parse().expect("ip")));
        assert!(is_tls(&proxied, &trusted));
        // A configured flag wins over headers.
        assert!(is_tls(&stranger, &settings(&[], Some(true))));
        assert!(!is_tls(&proxied, &settings(&["10.0.0.1"], Some(false))));
        // Without connect info the address is unknown (and per-address throttling is skipped).
        let (bare, _) = axum::http::Request::builder().uri("/").body(()).expect("request").into_parts();
        assert_eq!(client_ip(&bare, &none), None);
    }

    #[test]
    fn cookie_attributes() {
        let c = set_cookie(SESSION_COOKIE, "v", 60, "Lax", "/", true);
        assert_eq!(c, "cmdb_session=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure");
        assert!(!set_cookie(SESSION_COOKIE, "v", 60, "Lax", "/", false).contains("Secure"));
    }
}
