//! The service layer's error: what went wrong, in the terms of the API. The HTTP edge
//! maps each variant to a status and body in exactly one place (`http::error`).

use crate::{jwt::KeyError, password::PasswordError, storage::StoreError};

/// One invalid input field, in the original's (FastAPI/pydantic) shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where: e.g. `["body", "password"]` or `["query", "page"]`.
    pub loc: Vec<String>,
    pub msg: String,
    /// Machine-readable kind, e.g. `missing`, `string_too_short`.
    pub kind: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Unknown email, wrong password and inactive user alike.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Missing or unacceptable bearer token.
    #[error("not authenticated")]
    NotAuthenticated,
    /// A refresh token problem other than revocation; the message is safe to show.
    #[error("{0}")]
    Token(&'static str),
    /// A revoked refresh token was presented; its family has been revoked.
    #[error("refresh token revoked")]
    TokenRevoked,
    #[error("inactive user")]
    InactiveUser,
    #[error("permission denied")]
    PermissionDenied,
    #[error("user not found")]
    UserNotFound,
    #[error("session not found")]
    SessionNotFound,
    #[error("email already registered")]
    EmailAlreadyExists,
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A single-field validation error.
    pub fn invalid(loc: &[&str], msg: impl Into<String>, kind: &'static str) -> Self {
        Self::Validation(vec![FieldError {
            loc: loc.iter().map(|s| (*s).to_owned()).collect(),
            msg: msg.into(),
            kind,
        }])
    }
}
