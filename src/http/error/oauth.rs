//! RFC 6749-shaped error responses: every refusal under `/oauth/`.
//!
//! [`OAuthError`] is what the OAuth handlers return; its `IntoResponse` only ever
//! writes `{"error", "error_description"}` (RFC 6749 §5.2) with `Cache-Control:
//! no-store`, whatever went wrong — a service error becomes `invalid_grant` or
//! `invalid_request`, an internal one a logged 500 `server_error`. The refusals made
//! before a handler runs (413, 408, 405, 429) have constructors here too.

use std::borrow::Cow;

use axum::{
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

use crate::{
    error::Error,
    http::views::{self, OAuthErrorCode as Code},
};

/// An OAuth endpoint's refusal: a status, an RFC 6749 error code and description, and
/// any extra headers (`WWW-Authenticate`, `Retry-After`, …).
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    code: Code,
    description: Cow<'static, str>,
    headers: HeaderMap,
}

impl OAuthError {
    pub(crate) fn new(
        status: StatusCode,
        code: Code,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            headers: HeaderMap::new(),
        }
    }

    /// 400 `invalid_request`.
    pub(crate) fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Code::InvalidRequest, description)
    }

    /// 400 `invalid_grant`.
    pub(crate) fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Code::InvalidGrant, description)
    }

    #[must_use]
    pub(crate) fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    #[must_use]
    pub(crate) fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers.extend(headers);
        self
    }

    /// 413: the body is over `MAX_BODY_BYTES`.
    pub(crate) fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::InvalidRequest,
            "Request body too large",
        )
    }

    /// 408: the body did not arrive within `BODY_READ_TIMEOUT_SECONDS`; the connection
    /// is closed after the answer.
    pub(crate) fn body_read_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            Code::InvalidRequest,
            "Request body not received in time",
        )
        .with_header(header::CONNECTION, HeaderValue::from_static("close"))
    }

    /// 408: the request was not answered within `REQUEST_TIMEOUT_SECONDS`.
    pub(crate) fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            Code::TemporarilyUnavailable,
            "Request timed out",
        )
    }

    /// 405: a known OAuth path with another method.
    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::InvalidRequest,
            "Method Not Allowed",
        )
    }

    /// 429: a rate limit is spent (the caller adds `Retry-After` and `X-RateLimit-*`).
    pub(crate) fn rate_limited(description: String) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            Code::TemporarilyUnavailable,
            description,
        )
    }

    /// 500 `server_error`; the cause is logged here, inside the request's span, and
    /// never shown to the client.
    pub(crate) fn internal(e: &dyn std::error::Error) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::ServerError,
            "Internal server error",
        )
    }
}

/// A service error on an OAuth endpoint.
impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidCredentials => Self::invalid_grant("Invalid email or password"),
            Error::Token(m) => Self::invalid_grant(m),
            Error::TokenRevoked => Self::invalid_grant("Token has been revoked"),
            Error::InactiveUser => Self::invalid_grant("User account is inactive"),
            Error::UserNotFound | Error::SessionNotFound | Error::WebhookDeliveryNotFound => {
                Self::invalid_grant(e.to_string())
            }
            Error::Validation(_) | Error::EmailAlreadyExists => {
                Self::invalid_request("Malformed request")
            }
            Error::NotAuthenticated | Error::PermissionDenied => Self::new(
                StatusCode::UNAUTHORIZED,
                Code::InvalidClient,
                "Client authentication failed",
            ),
            Error::Store(e) => Self::internal(&e),
            Error::Password(e) => Self::internal(&e),
            Error::Keys(e) => Self::internal(&e),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = views::OAuthError {
            error: self.code,
            error_description: self.description.into_owned(),
        };
        let mut r = (self.status, views::body(&body)).into_response();
        no_store(&mut r);
        r.headers_mut().extend(self.headers);
        r
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache`, on every OAuth answer.
pub(crate) fn no_store(r: &mut Response) {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
