//! The service layer's error: what went wrong, in the terms of the API. The HTTP edge
//! maps each variant to a status and body in exactly one place (`http::error`).

use crate::{jwt::KeyError, password::PasswordError, storage::StoreError};

/// One invalid input field, in the original's (FastAPI with pydantic v2) shape:
/// `type`, `loc`, `msg`, `input` and, for the kinds pydantic gives one, `ctx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where: e.g. `["body", "password"]` or `["query", "page"]`.
    pub loc: Vec<String>,
    /// The human-readable message, as pydantic words it.
    pub msg: String,
    /// Machine-readable kind, e.g. `missing`, `string_too_short`.
    pub kind: &'static str,
    /// The value that failed: the field's value, the whole JSON object for a field
    /// missing from it, `null` for a missing form or query field or body.
    pub input: serde_json::Value,
    /// The error's parameters (`{"min_length": 8}`, `{"error": {}}`, …), if any.
    pub ctx: Option<serde_json::Value>,
}

impl FieldError {
    /// An error with `input: null` and no `ctx`.
    pub fn new(loc: &[&str], msg: impl Into<String>, kind: &'static str) -> Self {
        Self {
            loc: loc.iter().map(|s| (*s).to_owned()).collect(),
            msg: msg.into(),
            kind,
            input: serde_json::Value::Null,
            ctx: None,
        }
    }

    /// Sets the offending value.
    #[must_use]
    pub fn with_input(mut self, input: serde_json::Value) -> Self {
        self.input = input;
        self
    }

    /// Sets the error's parameters.
    #[must_use]
    pub fn with_ctx(mut self, ctx: serde_json::Value) -> Self {
        self.ctx = Some(ctx);
        self
    }
}

/// What a use case can fail with. The HTTP edge gives each variant one status and body.
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
    /// The account is deactivated (answered where the original did, e.g. `/v1/users/me`).
    #[error("inactive user")]
    InactiveUser,
    /// Authenticated, but not allowed (an admin route without the admin role).
    #[error("permission denied")]
    PermissionDenied,
    /// No such user.
    #[error("user not found")]
    UserNotFound,
    /// No such session of this user.
    #[error("session not found")]
    SessionNotFound,
    /// No failed webhook delivery of that event to retry.
    #[error("no failed webhook delivery for this event")]
    WebhookDeliveryNotFound,
    /// The email's identity key is taken.
    #[error("email already registered")]
    EmailAlreadyExists,
    /// Invalid input, field by field (a 422).
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Password hashing failed or its worker pool is gone.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The key ring could not sign or load keys.
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A single-field validation error (`input: null`, no `ctx`).
    pub fn invalid(loc: &[&str], msg: impl Into<String>, kind: &'static str) -> Self {
        Self::Validation(vec![FieldError::new(loc, msg, kind)])
    }
}
