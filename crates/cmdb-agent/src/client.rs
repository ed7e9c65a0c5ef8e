//! The signed HTTP client for the cmdb server.
//!
//! Every request carries `Authorization: CMDB-HMAC-SHA256 ...` from
//! [`cmdb_model::signing::authorization`], computed when the request is sent: each attempt, retries
//! included, gets a fresh timestamp and a fresh random nonce, so the server's replay protection
//! never sees the same nonce twice. The secret is used only to sign and is never logged.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use crate::config::Credentials;

/// The report endpoint, below `server_url`.
pub const REPORTS_PATH: &str = "/api/v1/reports";

/// The endpoint listing the hosts to collect, below `server_url`.
pub const TARGETS_PATH: &str = "/api/v1/collect-targets";

/// Longest server message kept for logs and the rejected directory.
const MAX_MESSAGE: usize = 2000;

/// Why a request could not be made at all (not an HTTP status: those are [`Answer`]s).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// The server answered something unusable.
    #[error("{url}: {message}")]
    BadAnswer {
        /// The URL requested (without credentials).
        url: String,
        /// What was wrong.
        message: String,
    },
    /// Connection, TLS or timeout error.
    #[error("{url}: {message}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What failed.
        message: String,
    },
}

/// What the server says after accepting a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Receipt {
    /// The asset the report was stored on.
    #[serde(default)]
    pub asset_id: Option<i64>,
    /// False when the report was older than what the server has (acknowledged, not applied).
    #[serde(default)]
    pub applied: Option<bool>,
    /// The identity key that matched the asset (board_uuid, board_serial, machine_id, ...);
    /// none when the report created the asset.
    #[serde(default)]
    pub matched_by: Option<String>,
    /// Change records the report wrote.
    #[serde(default)]
    pub changes: Option<u64>,
    /// True when the report created the asset.
    #[serde(default)]
    pub created: Option<bool>,
}

/// One target from `GET /api/v1/collect-targets`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CollectTarget {
    /// The server's asset id.
    pub asset_id: i64,
    /// The asset's host name.
    pub hostname: String,
    /// Where to connect, when it differs from the host name.
    #[serde(default)]
    pub manage_address: Option<String>,
    /// SSH port, when not the default (checked by [`CollectTarget::port`]).
    #[serde(default)]
    pub ssh_port: Option<i64>,
    /// The Salt minion id, when the host is a minion.
    #[serde(default)]
    pub salt_minion_id: Option<String>,
}

impl CollectTarget {
    /// The SSH port, when the server gives one; an error names an impossible one.
    pub fn port(&self) -> Result<Option<u16>, String> {
        match self.ssh_port {
            None => Ok(None),
            Some(port) => match u16::try_from(port) {
                Ok(p) if p > 0 => Ok(Some(p)),
                _ => Err(format!("the server gives {} ssh_port {port}", self.hostname)),
            },
        }
    }
}

impl CollectTarget {
    /// Where to connect over SSH: `manage_address`, else the host name. A value with whitespace
    /// or control characters is refused: no host name or address has them, and such a value is
    /// a server-side mistake or an attempt to smuggle options or forge terminal output.
    pub fn ssh_address(&self) -> Result<String, String> {
        let (what, address) = match self.manage_address.as_deref().filter(|a| !a.trim().is_empty()) {
            Some(address) => ("manage_address", address),
            None => ("hostname", self.hostname.as_str()),
        };
        // The server applies the same rule to business edits (`cmdb_model::business`).
        let checked = if address.is_empty() {
            Err("it is empty".to_owned())
        } else {
            cmdb_model::business::check_manage_address(address)
        };
        if let Err(problem) = checked {
            return Err(format!(
                "the server gives asset {} {what} {:?} ({problem}): an address must not be empty, start with '-' \
                 or contain whitespace or control characters; not collected",
                self.asset_id, address
            ));
        }
        Ok(address.to_owned())
    }
}

/// The answer of `GET /api/v1/collect-targets`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Targets {
    /// The hosts to collect.
    pub targets: Vec<CollectTarget>,
    /// True when the server accepts `collected_for` in reports; older servers do not say so, and
    /// refuse a report with a member they do not know.
    #[serde(default)]
    pub accepts_collected_for: bool,
}

/// The server's answer to one report upload, sorted by what the agent must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: stored.
    Accepted(Receipt),
    /// A 4xx about the report itself (400, 413, 422, ...): sending it again cannot help.
    Refused {
        /// The status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// 401, 403, 404, 405, 3xx: the agent's key or `server_url` is wrong; no report can get
    /// through until someone fixes the configuration, but the reports themselves are fine.
    Misconfigured {
        /// The status.
        status: u16,
        /// The server's message, or what the redirect points to.
        message: String,
    },
    /// 5xx, 408, 425, 429 or no answer at all: try again later.
    Unavailable {
        /// What happened.
        reason: String,
        /// The server's Retry-After, if it sent one.
        retry_after: Option<Duration>,
    },
}

/// A client bound to one server and key.
#[derive(Debug, Clone)]
pub struct ServerClient {
    http: reqwest::Client,
    base: Url,
    credentials: Credentials,
}

impl ServerClient {
    /// A client for `base` (the configured `server_url`), signing with `credentials`; each
    /// request may take `timeout`.
    pub fn new(base: Url, credentials: Credentials, timeout: Duration) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // A redirect would turn a POST into a GET and drop the signature; report it instead.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cmdb-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(ServerClient { http, base, credentials })
    }

    /// The URL of `path` below `server_url` and the signed target (path plus query).
    fn endpoint(&self, path: &str, query: Option<&str>) -> (Url, String) {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base.path().trim_end_matches('/')));
        url.set_query(query);
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        (url, target)
    }

    /// The Authorization header for one request: fresh timestamp, fresh 32-hex-digit nonce.
    fn authorization(&self, method: &str, target: &str, body: &[u8]) -> String {
        let nonce = format!("{:032x}", rand::random::<u128>());
        let timestamp = chrono::Utc::now().timestamp();
        cmdb_model::signing::authorization(
            &self.credentials.key_id,
            self.credentials.secret.expose(),
            method,
            target,
            timestamp,
            &nonce,
            body,
        )
    }

    /// Uploads one report body (one attempt) and classifies the answer.
    pub async fn post_report(&self, body: &[u8]) -> Answer {
        let (url, target) = self.endpoint(REPORTS_PATH, None);
        let request = self
            .http
            .request(Method::POST, url)
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, self.authorization("POST", &target, body))
            .body(body.to_vec());
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Answer::Unavailable { reason: describe_transport_error(&e), retry_after: None },
        };
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) if status.is_success() => {
                // Stored or not, we cannot tell; resending is safe because of report_id.
                return Answer::Unavailable { reason: format!("answer cut short: {e}"), retry_after: None };
            }
            Err(_) => Default::default(),
        };
        classify(status, &headers, &bytes)
    }

    /// `GET /api/v1/collect-targets[?mode=...]`, signed.
    pub async fn collect_targets(&self, mode: Option<&str>) -> Result<Targets, ClientError> {
        let query = mode.map(|m| format!("mode={m}"));
        let (url, target) = self.endpoint(TARGETS_PATH, query.as_deref());
        let shown = url.to_string();
        let response =
            self.http
                .get(url)
                .header(AUTHORIZATION, self.authorization("GET", &target, b""))
                .send()
                .await
                .map_err(|e| ClientError::Transport { url: shown.clone(), message: describe_transport_error(&e) })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Transport { url: shown.clone(), message: e.to_string() })?;
        if !status.is_success() {
            return Err(ClientError::BadAnswer {
                url: shown,
                message: format!("HTTP {}: {}", status.as_u16(), server_message(&bytes)),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer {
            url: shown,
            message: format!("expected {{\"targets\": [...]}}: {e}"),
        })
    }
}

/// Sorts an HTTP answer into what the agent does next.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Answer {
    let code = status.as_u16();
    if status.is_success() {
        // The receipt is informational; an odd body does not undo the delivery.
        let receipt = serde_json::from_slice::<Receipt>(body).unwrap_or_default();
        return Answer::Accepted(receipt);
    }
    if status.is_redirection() {
        let location = headers.get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("?");
        return Answer::Misconfigured {
            status: code,
            message: format!("the server redirects to {location}; set server_url to the final address"),
        };
    }
    match code {
        408 | 425 | 429 | 500..=599 => Answer::Unavailable {
            reason: format!("HTTP {code}: {}", server_message(body)),
            retry_after: retry_after(headers),
        },
        // 403 is not here: the server sends it when a host-bound key reports another host,
        // which is about that report, not about every report.
        401 | 404 | 405 | 407 => Answer::Misconfigured { status: code, message: server_message(body) },
        _ => Answer::Refused { status: code, message: server_message(body) },
    }
}

/// The server's explanation from an error body (`{"error": code, "message": text, "pointer": p}`
/// as docs/report-format.md defines it): "code: text (at p)", else the body's text, cut to a sane
/// length.
pub fn server_message(body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body) {
        let field = |k: &str| match map.get(k) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(serde_json::Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        let text = match (field("error"), field("message").or_else(|| field("detail"))) {
            (Some(code), Some(message)) if code != message => Some(format!("{code}: {message}")),
            (_, Some(message)) => Some(message),
            (Some(code), None) => Some(code),
            (None, None) => None,
        };
        if let Some(mut text) = text {
            if let Some(pointer) = field("pointer") {
                text = format!("{text} (at {pointer:?})");
            }
            return cut(text);
        }
    }
    let text = String::from_utf8_lossy(body).trim().to_owned();
    if text.is_empty() { "(empty answer)".to_owned() } else { cut(text) }
}

fn cut(mut text: String) -> String {
    if text.len() > MAX_MESSAGE {
        let mut at = MAX_MESSAGE;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push('…');
    }
    text
}

/// Retry-After as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

fn describe_transport_error(e: &reqwest::Error) -> String {
    // The error chain holds the useful part ("connection refused", "certificate expired").
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn statuses_are_sorted_by_what_to_do() {
        let none = HeaderMap::new();
        assert!(matches!(
            classify(StatusCode::OK, &none, br#"{"asset_id":7,"applied":true,"matched_by":"board_uuid"}"#),
            Answer::Accepted(Receipt { asset_id: Some(7), applied: Some(true), .. })
        ));
        assert!(matches!(classify(StatusCode::BAD_REQUEST, &none, b""), Answer::Refused { status: 400, .. }));
        assert!(matches!(classify(StatusCode::PAYLOAD_TOO_LARGE, &none, b""), Answer::Refused { status: 413, .. }));
        assert!(matches!(classify(StatusCode::UNAUTHORIZED, &none, b""), Answer::Misconfigured { status: 401, .. }));
        assert!(matches!(classify(StatusCode::FORBIDDEN, &none, b""), Answer::Refused { status: 403, .. }));
        assert!(matches!(classify(StatusCode::UNPROCESSABLE_ENTITY, &none, b""), Answer::Refused { status: 422, .. }));
        assert!(matches!(classify(StatusCode::MOVED_PERMANENTLY, &none, b""), Answer::Misconfigured { .. }));
        for code in [408u16, 429, 500, 502, 503] {
            let status = StatusCode::from_u16(code).expect("status");
            assert!(matches!(classify(status, &none, b""), Answer::Unavailable { .. }), "{code}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &headers, b""),
            Answer::Unavailable { retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));
    }

    #[test]
    fn server_messages_prefer_the_json_error() {
        assert_eq!(
            server_message(br#"{"error":"missing list","pointer":"/sections/disk/data/disks"}"#),
            "missing list (at \"/sections/disk/data/disks\")"
        );
        assert_eq!(
            server_message(br#"{"error":"invalid","message":"expected u64","pointer":"/sections/disk/data/disks/0"}"#),
            "invalid: expected u64 (at \"/sections/disk/data/disks/0\")"
        );
        assert_eq!(server_message(b"  plain text \n"), "plain text");
        assert_eq!(server_message(b""), "(empty answer)");
        assert!(server_message(&vec![b'x'; 10_000]).len() < 2100);
    }

    #[test]
    fn ssh_addresses_with_whitespace_or_controls_are_refused() {
        let target = |manage_address: Option<&str>, hostname: &str| CollectTarget {
            asset_id: 7,
            hostname: hostname.to_owned(),
            manage_address: manage_address.map(str::to_owned),
            ssh_port: None,
            salt_minion_id: None,
        };
        assert_eq!(target(Some("10.0.0.5"), "web-01").ssh_address(), Ok("10.0.0.5".to_owned()));
        assert_eq!(target(Some("fe80::1%eth0"), "web-01").ssh_address(), Ok("fe80::1%eth0".to_owned()));
        assert_eq!(target(None, "web-01.example.com").ssh_address(), Ok("web-01.example.com".to_owned()));
        // Blank means "not set", as before: the host name is used.
        assert_eq!(target(Some("  "), "web-01").ssh_address(), Ok("web-01".to_owned()));
        for (address, hostname, what) in [
            (Some("10.0.0.5 -oProxyCommand=sh"), "web-01", "manage_address"),
            (Some("10.0.0.5\n"), "web-01", "manage_address"),
            (Some(" 10.0.0.5"), "web-01", "manage_address"),
            (Some("10.0.0.5\t"), "web-01", "manage_address"),
            (Some("web\x1b[2J"), "web-01", "manage_address"),
            (Some("web\u{9b}"), "web-01", "manage_address"),
            (Some("10.0.0.5\u{a0}"), "web-01", "manage_address"),
            (None, "web 01", "hostname"),
            (None, "", "hostname"),
        ] {
            let err = target(address, hostname).ssh_address().expect_err(&format!("{address:?} {hostname:?}"));
            assert!(err.starts_with(&format!("the server gives asset 7 {what} ")), "{err}");
            assert!(!err.contains('\x1b'), "the value is shown escaped: {err}");
        }
    }

    #[test]
    fn the_targets_answer_says_whether_collected_for_is_accepted() {
        let old: Targets = serde_json::from_str(r#"{"cutoff": "x", "targets": []}"#).expect("old server");
        assert!(!old.accepts_collected_for);
        let new: Targets =
            serde_json::from_str(r#"{"cutoff": "x", "mode": "ssh", "accepts_collected_for": true, "targets": []}"#)
                .expect("new server");
        assert!(new.accepts_collected_for);
    }

    #[test]
    fn retry_after_as_http_date() {
        let mut headers = HeaderMap::new();
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).expect("header"));
        let wait = retry_after(&headers).expect("parses");
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120), "{wait:?}");
    }
}
