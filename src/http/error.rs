//! The one place where errors become HTTP responses.
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
use serde_json::{json, Value};

use crate::error::{Error, FieldError};

/// `{"detail", "type"}` with a status.
pub fn detail(status: StatusCode, message: &str, kind: &str) -> Response {
    (status, Json(json!({ "detail": message, "type": kind }))).into_response()
}

/// The 422 body for a list of invalid fields.
pub fn validation_body(errors: &[FieldError]) -> Value {
    let detail: Vec<Value> = errors
        .iter()
        .map(|e| {
            let loc: Vec<Value> = e
                .loc
                .iter()
                .map(|p| {
                    p.parse::<u64>()
                        .map_or_else(|_| Value::from(p.as_str()), Value::from)
                })
                .collect();
            json!({ "loc": loc, "msg": e.msg, "type": e.kind })
        })
        .collect();
    json!({ "detail": detail })
}

pub fn not_authenticated() -> Response {
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

fn internal(e: &dyn std::error::Error) -> Response {
    tracing::error!(error = %e, "internal error");
    detail(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal server error",
        "InternalError",
    )
}

/// JSON 404 for unknown routes (as FastAPI answers).
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "detail": "Not Found" })),
    )
        .into_response()
}

/// JSON 405 for a known path with another method.
pub async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({ "detail": "Method Not Allowed" })),
    )
        .into_response()
}

pub fn payload_too_large() -> Response {
    detail(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Request body too large",
        "PayloadTooLarge",
    )
}

/// 408 for a request body that did not arrive within `BODY_READ_TIMEOUT_SECONDS`. The
/// rest of the body is not read, so the connection is closed after the answer.
pub fn body_read_timeout() -> Response {
    let mut r = detail(
        StatusCode::REQUEST_TIMEOUT,
        "Request body not received in time",
        "RequestTimeout",
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}
