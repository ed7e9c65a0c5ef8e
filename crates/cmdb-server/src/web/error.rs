//! What a page answers when it cannot show what was asked: an HTML error page (or a redirect to the
//! login form), never a panic or a JSON body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::service::ServiceError;

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No valid session: the browser goes to the login form and comes back to `next` afterwards.
    #[error("please log in")]
    LoginRequired {
        /// Where to return after login (a path on this server).
        next: String,
        /// The request came from htmx, which cannot follow a redirect to a full page.
        htmx: bool,
    },
    /// The password was generated and must be changed before anything else.
    #[error("please choose a new password first")]
    PasswordChangeRequired,
    /// The form's CSRF token is missing or does not belong to this session.
    #[error("this form has expired or did not come from this site; reload the page and try again")]
    Csrf,
    /// Logged in, but the role does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// The request's parameters are malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The request conflicts with what is stored (e.g. someone else edited the same field).
    #[error("{0}")]
    Conflict(String),
    /// The database is unreachable or overloaded.
    #[error("the database is unavailable; retry in a few seconds")]
    Unavailable,
    /// A bug or an unexpected failure (details are in the server's log, not on the page).
    #[error("the server could not complete this request: {0}")]
    Internal(String),
    /// Too many attempts (logins, password changes) or too many at once; retry after the given
    /// number of seconds.
    #[error("{message}")]
    TooManyRequests {
        /// What the person reads.
        message: String,
        /// Seconds until a retry may succeed (the `Retry-After` header).
        retry_after: u64,
    },
}

impl From<sqlx::Error> for WebError {
    fn from(error: sqlx::Error) -> Self {
        ServiceError::from(error).into()
    }
}

impl From<crate::store::StoreError> for WebError {
    fn from(error: crate::store::StoreError) -> Self {
        ServiceError::from(error).into()
    }
}

impl From<ServiceError> for WebError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Malformed(m) => WebError::BadRequest(m),
            ServiceError::Invalid { field, message } => WebError::BadRequest(if field.is_empty() {
                message
            } else {
                format!("{}: {message}", field.trim_start_matches('/'))
            }),
            ServiceError::Forbidden(m) => WebError::Forbidden(m),
            ServiceError::NotFound(m) => WebError::NotFound(m),
            ServiceError::Conflict(m) => WebError::Conflict(m),
            ServiceError::Unavailable => WebError::Unavailable,
            ServiceError::Corrupt(_) => WebError::Internal("stored data does not decode".to_owned()),
            ServiceError::Bug(m) => WebError::Internal(m),
        }
    }
}

impl From<minijinja::Error> for WebError {
    fn from(error: minijinja::Error) -> Self {
        tracing::error!(%error, "template failed to render");
        WebError::Internal("a page template failed to render".to_owned())
    }
}

impl WebError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::LoginRequired { .. } => StatusCode::UNAUTHORIZED,
            WebError::PasswordChangeRequired => StatusCode::SEE_OTHER,
            WebError::Csrf | WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            WebError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match &self {
            WebError::LoginRequired { next, htmx } => {
                let target = format!("/login?{}", super::pages::query_string(&[("next", next.as_str())]));
                if *htmx {
                    // htmx swaps whatever it receives into the page; HX-Redirect makes it navigate.
                    let mut response = StatusCode::UNAUTHORIZED.into_response();
                    if let Ok(value) = HeaderValue::from_str(&target) {
                        response.headers_mut().insert("hx-redirect", value);
                    }
                    return response;
                }
                return Redirect::to(&target).into_response();
            }
            WebError::PasswordChangeRequired => return Redirect::to("/account").into_response(),
            WebError::Internal(message) => tracing::error!(%message, "page failed"),
            WebError::Unavailable => tracing::warn!("page failed: database unavailable"),
            _ => {}
        }
        let status = self.status();
        let body = super::templates::render_error(status, &self.to_string());
        let mut response = (status, body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let WebError::TooManyRequests { retry_after, .. } = &self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(&1).to_owned()));
        }
        response
    }
}
