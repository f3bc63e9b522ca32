//! The one place where errors become HTTP responses, in the two shapes rotor answers
//! with, side by side:
//!
//! - [`fastapi`]: the original's `{"detail", "type"}` bodies, pydantic-style 422s and
//!   the bearer 401 (`/v1`, `/.well-known`, the service routes);
//! - [`oauth`]: RFC 6749 §5.2 `{"error", "error_description"}` bodies, for every
//!   answer under `/oauth/` — the handlers return [`OAuthError`], whose
//!   `IntoResponse` can only produce that shape (internal errors included, as 500
//!   `server_error`), and the layers that can refuse an `/oauth/` request before its
//!   handler (body limit 413, body read 408, request timeout 408, rate limit 429, 405)
//!   pick the shape with [`is_oauth_path`].

pub(crate) mod fastapi;
pub(crate) mod oauth;

pub(crate) use fastapi::*;
pub(crate) use oauth::OAuthError;

/// Whether a request path is an OAuth endpoint, answered in RFC 6749's shape.
pub(crate) fn is_oauth_path(path: &str) -> bool {
    path.starts_with("/oauth/")
}
