//! FastAPI-shaped error responses: everything but `/oauth/*`.
//!
//! Service errors answer `{"detail": "<message>", "type": "<ErrorKind>"}` as the
//! original did; validation errors answer 422 with a pydantic-style `detail` list; a
//! missing or unacceptable bearer answers 401 `{"detail": "Not authenticated"}` with
//! `WWW-Authenticate: Bearer`. Internal errors are logged here, inside the request's
//! span, and never shown to the client.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Error, FieldError};

/// `{"detail", "type"}` with a status.
pub(crate) fn detail(status: StatusCode, message: &str, kind: &str) -> Response {
    (status, Json(json!({ "detail": message, "type": kind }))).into_response()
}

/// The 422 body for a list of invalid fields: `{"detail": [item, …]}`, each item's
/// keys in pydantic's order (`type`, `loc`, `msg`, `input`, then `ctx` when the error
/// has parameters). FastAPI drops pydantic's `url`, and so does rotor.
pub(crate) fn validation_body(errors: &[FieldError]) -> ValidationBody<'_> {
    ValidationBody {
        detail: errors.iter().map(ValidationItem::of).collect(),
    }
}

/// See [`validation_body`]. A struct rather than a `Value` so the keys keep their
/// order (serde_json's maps are sorted).
#[derive(Debug, Serialize)]
pub(crate) struct ValidationBody<'a> {
    detail: Vec<ValidationItem<'a>>,
}

#[derive(Debug, Serialize)]
struct ValidationItem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    loc: Vec<Value>,
    msg: &'a str,
    input: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    ctx: Option<&'a Value>,
}

impl<'a> ValidationItem<'a> {
    fn of(e: &'a FieldError) -> Self {
        // Positions (a JSON decode error's offset) are numbers, as in FastAPI.
        let loc = e
            .loc
            .iter()
            .map(|p| {
                p.parse::<u64>()
                    .map_or_else(|_| Value::from(p.as_str()), Value::from)
            })
            .collect();
        Self {
            kind: e.kind,
            loc,
            msg: &e.msg,
            input: &e.input,
            ctx: e.ctx.as_ref(),
        }
    }
}

pub(crate) fn not_authenticated() -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "detail": "Not authenticated" })),
    )
        .into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::InvalidCredentials => detail(
                StatusCode::UNAUTHORIZED,
                "Invalid email or password",
                "InvalidCredentials",
            ),
            Error::NotAuthenticated => not_authenticated(),
            Error::Token(message) => detail(StatusCode::UNAUTHORIZED, message, "TokenError"),
            Error::TokenRevoked => detail(
                StatusCode::UNAUTHORIZED,
                "Token has been revoked",
                "TokenRevokedError",
            ),
            Error::InactiveUser => detail(
                StatusCode::UNAUTHORIZED,
                "User account is inactive",
                "InactiveUser",
            ),
            Error::PermissionDenied => detail(
                StatusCode::FORBIDDEN,
                "Admin privileges required",
                "PermissionDenied",
            ),
            Error::UserNotFound => detail(StatusCode::NOT_FOUND, "User not found", "UserNotFound"),
            Error::SessionNotFound => detail(
                StatusCode::NOT_FOUND,
                "Session not found",
                "SessionNotFound",
            ),
            Error::WebhookDeliveryNotFound => detail(
                StatusCode::NOT_FOUND,
                "No failed webhook delivery for this event",
                "WebhookDeliveryNotFound",
            ),
            Error::EmailAlreadyExists => detail(
                StatusCode::CONFLICT,
                "Email already registered",
                "EmailAlreadyExists",
            ),
            Error::Validation(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(validation_body(&errors)),
            )
                .into_response(),
            Error::Store(e) => internal(&e),
            Error::Password(e) => internal(&e),
            Error::Keys(e) => internal(&e),
        }
    }
}

pub(super) fn internal(e: &dyn std::error::Error) -> Response {
    tracing::error!(error = %e, "internal error");
    detail(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal server error",
        "InternalError",
    )
}

/// JSON 404 for unknown routes (as FastAPI answers).
pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "detail": "Not Found" })),
    )
        .into_response()
}

/// JSON 405 for a known path with another method (RFC 6749-shaped under `/oauth/`).
pub(crate) async fn method_not_allowed(uri: axum::http::Uri) -> Response {
    if super::is_oauth_path(uri.path()) {
        return super::oauth::OAuthError::method_not_allowed().into_response();
    }
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({ "detail": "Method Not Allowed" })),
    )
        .into_response()
}

pub(crate) fn payload_too_large() -> Response {
    detail(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Request body too large",
        "PayloadTooLarge",
    )
}

/// 408 for a request body that did not arrive within `BODY_READ_TIMEOUT_SECONDS`. The
/// rest of the body is not read, so the connection is closed after the answer.
pub(crate) fn body_read_timeout() -> Response {
    let mut r = detail(
        StatusCode::REQUEST_TIMEOUT,
        "Request body not received in time",
        "RequestTimeout",
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}
