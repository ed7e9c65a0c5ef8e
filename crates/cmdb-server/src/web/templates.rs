//! The template environment, built once per process from templates compiled into the binary.
//!
//! Every template name ends in `.html`, so minijinja's default callback turns HTML auto-escaping on
//! for all of them: a host name, tag or external section holding `<script>` is printed as text.

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::Html;
use chrono::{DateTime, Utc};
use minijinja::value::Serde;
use minijinja::{Environment, Value};
use serde::Serialize;

use super::error::WebError;

/// Templates by name, in the binary.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("macros.html", include_str!("../../templates/macros.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("account.html", include_str!("../../templates/account.html")),
    ("dashboard.html", include_str!("../../templates/dashboard.html")),
    ("assets.html", include_str!("../../templates/assets.html")),
    ("asset_rows.html", include_str!("../../templates/asset_rows.html")),
    ("asset.html", include_str!("../../templates/asset.html")),
    ("asset_not_yet.html", include_str!("../../templates/asset_not_yet.html")),
    ("changes.html", include_str!("../../templates/changes.html")),
    ("errors.html", include_str!("../../templates/errors.html")),
    ("lists.html", include_str!("../../templates/lists.html")),
    ("fields.html", include_str!("../../templates/fields.html")),
    ("duplicates.html", include_str!("../../templates/duplicates.html")),
    ("label.html", include_str!("../../templates/label.html")),
    ("labels.html", include_str!("../../templates/labels.html")),
    ("import.html", include_str!("../../templates/import.html")),
    ("stocktakes.html", include_str!("../../templates/stocktakes.html")),
    ("stocktake.html", include_str!("../../templates/stocktake.html")),
    ("stocktake_scan.html", include_str!("../../templates/stocktake_scan.html")),
    ("admin_users.html", include_str!("../../templates/admin_users.html")),
    ("admin_keys.html", include_str!("../../templates/admin_keys.html")),
    ("admin_tokens.html", include_str!("../../templates/admin_tokens.html")),
    ("admin_audit.html", include_str!("../../templates/admin_audit.html")),
    ("admin_webhooks.html", include_str!("../../templates/admin_webhooks.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("api_docs.html", include_str!("../../templates/api_docs.html")),
];

static ENV: LazyLock<Result<Environment<'static>, minijinja::Error>> = LazyLock::new(build);

fn build() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    // Lenient (the default): optional URL parameters are left out of the context when unset, and
    // templates write `params.q or ""`.
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    env.add_filter("dt", format_datetime);
    env.add_filter("day", format_day);
    env.add_filter("bytes", format_bytes);
    env.add_filter("mib", format_mib);
    env.add_global("css_url", super::static_files::url("app.css"));
    env.add_global("js_url", super::static_files::url("app.js"));
    env.add_global("htmx_url", super::static_files::url("htmx.min.js"));
    Ok(env)
}

/// Parses a serialized date-time (RFC 3339, as chrono writes it).
fn parse_datetime(value: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.as_str()?).ok().map(|t| t.with_timezone(&Utc))
}

fn zone(tz: Option<&str>) -> chrono_tz::Tz {
    tz.and_then(|t| t.parse().ok()).unwrap_or(chrono_tz::UTC)
}

/// `{{ t|dt(tz) }}`: a date-time in the server's time zone, to the second, with its offset (every time
/// shown to a person names its zone); "—" when absent.
fn format_datetime(value: Value, tz: Option<String>) -> String {
    match parse_datetime(&value) {
        Some(t) => t.with_timezone(&zone(tz.as_deref())).format("%Y-%m-%d %H:%M:%S %:z").to_string(),
        None => "—".to_owned(),
    }
}

/// `{{ t|day(tz) }}`: the date only.
fn format_day(value: Value, tz: Option<String>) -> String {
    match parse_datetime(&value) {
        Some(t) => t.with_timezone(&zone(tz.as_deref())).format("%Y-%m-%d").to_string(),
        None => "—".to_owned(),
    }
}

/// `{{ n|bytes }}`: a capacity in decimal units as disk vendors state them (300 GB).
fn format_bytes(value: Value) -> String {
    match value.as_i64().and_then(|n| u64::try_from(n).ok()) {
        Some(n) => cmdb_model::catalog::storage(n),
        None => "—".to_owned(),
    }
}

/// `{{ n|mib }}`: memory given in MiB, in binary units as DIMMs are sold (the model's catalog).
fn format_mib(value: Value) -> String {
    match value.as_i64().and_then(|n| u64::try_from(n).ok()) {
        Some(n) => cmdb_model::catalog::memory(n),
        None => "—".to_owned(),
    }
}

/// Renders template `name` with `context`.
pub fn render(name: &str, context: &impl Serialize) -> Result<Html<String>, WebError> {
    let env = ENV.as_ref().map_err(|e| WebError::Internal(format!("the page templates do not compile: {e}")))?;
    let template = env.get_template(name)?;
    Ok(Html(template.render(Value::from(Serde(context)))?))
}

/// The error page; falls back to plain text if even that template fails.
pub fn render_error(status: StatusCode, message: &str) -> Html<String> {
    #[derive(Serialize)]
    struct Context<'a> {
        status: u16,
        reason: &'a str,
        message: &'a str,
    }
    let context = Context { status: status.as_u16(), reason: status.canonical_reason().unwrap_or(""), message };
    match render("error.html", &context) {
        Ok(html) => html,
        Err(_) => Html(format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        let env = ENV.as_ref().expect("templates compile");
        for (name, _) in TEMPLATES {
            env.get_template(name).expect(name);
        }
    }

    #[test]
    fn formats() {
        // The model's catalog: drives as labelled (decimal), memory as sold (binary).
        assert_eq!(format_bytes(Value::from(299_999_999_000_i64)), "300 GB");
        assert_eq!(format_bytes(Value::from(512)), "512 bytes");
        assert_eq!(format_mib(Value::from(32768)), "32 GiB");
        assert_eq!(format_mib(Value::from(1536)), "1.5 GiB");
        assert_eq!(format_mib(Value::from(())), "—");
        let t = Value::from("2026-12-31T16:30:00Z");
        assert_eq!(format_datetime(t.clone(), Some("Asia/Shanghai".into())), "2027-01-01 00:30:00 +08:00");
        assert_eq!(format_day(t, None), "2026-12-31");
    }

    #[test]
    fn values_are_escaped() {
        #[derive(Serialize)]
        struct C {
            status: u16,
            reason: &'static str,
            message: &'static str,
        }
        let html = render("error.html", &C { status: 400, reason: "Bad", message: "<script>alert(1)</script>" })
            .expect("render")
            .0;
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"), "{html}");
    }
}
