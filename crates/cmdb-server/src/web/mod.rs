//! The web UI: server-rendered pages for the people who keep the inventory right (ops engineers)
//! and the people who check it (auditors), with users, roles, sessions, CSRF protection, login
//! throttling and the audit log.
//!
//! - [`users`]: accounts with argon2id password hashes, roles viewer / editor / admin, the first
//!   administrator created on the first start.
//! - [`session`]: session cookies (random 256-bit ids stored hashed, idle and absolute expiry,
//!   rotated at login), the synchronizer CSRF token of each session, and the session half of
//!   [`crate::auth::Principal`] for the REST API.
//! - [`throttle`]: failed-login backoff per user name and per client address, kept in the database
//!   so every instance sees it.
//! - [`audit`]: the audit log of logins, user, key and token changes, and exports.
//! - `pages`: the handlers; `templates`: the minijinja environment (templates and static files are
//!   compiled into the binary; nothing is fetched from a CDN).
//!
//! Architecture invariant: every page is rendered through a template whose name ends in `.html`, so
//! minijinja escapes every value; no handler writes HTML by hand and no template uses `|safe`.
//!
//! Architecture invariant: every POST handler of the UI takes a [`pages::Posted`] form (or, for a
//! file, a [`pages::PostedUpload`]), which checks the session's CSRF token before the handler runs;
//! the login form checks its own pre-session token.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::{get, post};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::ServerConfig;
use crate::state::AppState;

pub mod error;
mod pages;
pub mod session;
mod static_files;
pub(crate) mod templates;
pub mod throttle;
pub mod users;

/// How the UI treats sessions and proxies.
///
/// Derived from [`ServerConfig`]'s `[web]` section: with `secure_cookies = "auto"`, cookies are
/// `Secure` when `public_url` is `https://...` or a trusted proxy says the request came over TLS.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// A session ends after this long without a request.
    pub session_idle: Duration,
    /// A session ends this long after login, however active.
    pub session_absolute: Duration,
    /// `Some(true)`: always mark cookies `Secure`; `Some(false)`: never; `None`: when the request came
    /// over TLS as told by a trusted proxy's `X-Forwarded-Proto`.
    pub secure_cookies: Option<bool>,
    /// Peers whose `X-Forwarded-For` and `X-Forwarded-Proto` headers are believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// How long dashboard figures are reused before they are computed again.
    pub dashboard_cache: Duration,
}

impl WebSettings {
    /// The settings for `config`.
    pub fn from_config(config: &ServerConfig) -> Self {
        let https = config.public_url.as_deref().is_some_and(|url| url.to_ascii_lowercase().starts_with("https://"));
        let secure_cookies = match config.web.secure_cookies.as_str() {
            "always" => Some(true),
            "never" => Some(false),
            _ => https.then_some(true),
        };
        WebSettings {
            session_idle: Duration::from_secs(config.web.session_idle_minutes.saturating_mul(60)),
            session_absolute: Duration::from_secs(config.web.session_absolute_hours.saturating_mul(3600)),
            secure_cookies,
            trusted_proxies: config.web.trusted_proxies.clone(),
            dashboard_cache: Duration::from_secs(30),
        }
    }
}

/// State of the UI's handlers: the application plus what the UI keeps between requests.
#[derive(Debug)]
pub struct WebState {
    /// The application (database, configuration).
    pub app: Arc<AppState>,
    /// Session and proxy settings.
    pub settings: WebSettings,
    /// The dashboard's figures and when they were computed.
    dashboard: Mutex<Option<(std::time::Instant, Arc<pages::dashboard::Figures>)>>,
}

/// The header values every UI response carries (unless a handler set its own).
fn security_headers() -> Vec<(HeaderName, HeaderValue)> {
    vec![
        // No inline script or style anywhere: scripts and styles are vendored files under /static.
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::REFERRER_POLICY, HeaderValue::from_static("same-origin")),
        // Pages show inventory data and, once, secrets: never keep them in shared or disk caches.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// Routes of the web UI.
pub fn router(state: Arc<AppState>) -> crate::routing::Routes {
    let settings = WebSettings::from_config(&state.config);
    let web = Arc::new(WebState { app: state, settings, dashboard: Mutex::new(None) });
    let pages = crate::routing::Routes::new()
        .route("/", get(pages::dashboard::page))
        .route("/login", get(pages::auth::login_form).post(pages::auth::login))
        .route("/logout", post(pages::auth::logout))
        .route("/account", get(pages::auth::account).post(pages::auth::change_password))
        .route("/assets", get(pages::assets::list))
        .route("/assets/export.csv", get(pages::assets::export_csv))
        .route("/assets/export.xlsx", get(pages::assets::export_xlsx))
        .route("/assets/audit.xlsx", get(pages::assets::export_audit))
        .route("/assets/{id}", get(pages::assets::detail))
        .route("/assets/{id}/business", post(pages::assets::edit_business))
        .route("/assets/{id}/record", post(pages::record::change_record))
        .route("/assets/{id}/label.svg", get(pages::record::label_svg))
        .route("/assets/labels", get(pages::record::labels_page))
        .route("/duplicates", get(pages::record::duplicates))
        .route("/import", get(pages::import::page).post(pages::import::upload))
        .route("/stocktakes", get(pages::stocktakes::list).post(pages::stocktakes::open))
        .route("/stocktakes/{id}", get(pages::stocktakes::detail))
        .route("/stocktakes/{id}/scan", get(pages::stocktakes::scan))
        .route("/stocktakes/{id}/close", post(pages::stocktakes::close))
        .route("/import/template.xlsx", get(pages::import::template))
        .route("/fields", get(pages::record::fields).post(pages::record::change_fields))
        .route("/changes", get(pages::changes::page))
        .route("/errors", get(pages::errors::page))
        .route("/lists", get(pages::lists::page).post(pages::lists::change))
        .route("/admin/users", get(pages::admin::users).post(pages::admin::create_user))
        .route("/admin/users/{id}", post(pages::admin::update_user))
        .route("/admin/keys", get(pages::admin::keys).post(pages::admin::create_key))
        .route("/admin/keys/revoke", post(pages::admin::revoke_key))
        .route("/admin/tokens", get(pages::admin::tokens).post(pages::admin::create_token))
        .route("/admin/tokens/revoke", post(pages::admin::revoke_token))
        .route("/admin/webhooks", get(pages::admin::webhooks).post(pages::admin::create_webhook))
        .route("/admin/webhooks/delete", post(pages::admin::delete_webhook))
        .route("/admin/audit", get(pages::admin::audit))
        .with_state(web);
    let pages = pages.map(|mut router| {
        for (name, value) in security_headers() {
            router = router.layer(SetResponseHeaderLayer::if_not_present(name, value));
        }
        router
    });
    // Static files are versioned by content hash in their URLs, so they may be cached for good.
    pages.merge(static_files::router())
}

/// Deletes expired sessions and old login-throttle rows; the audit log is kept.
pub async fn prune(db: &crate::db::Db) -> Result<u64, sqlx::Error> {
    let now = crate::db::now_us();
    let mut removed =
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1").bind(now).execute(db.writer()).await?.rows_affected();
    removed += throttle::prune(db, now).await?;
    Ok(removed)
}
