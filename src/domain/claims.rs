//! The claims of an access token, as the original issued them plus rotor's additions
//! (`sid`, `jti`, and `iss`/`aud` when configured).

use serde::{Deserialize, Serialize};

/// The only value of the `type` claim rotor accepts for an access token.
pub const ACCESS_TYPE: &str = "access";

/// The payload of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id (UUID string).
    pub sub: String,
    /// Always [`ACCESS_TYPE`]; anything else is refused.
    #[serde(rename = "type")]
    pub token_type: String,
    /// Must equal `users.token_version`; bumping it kills every outstanding token.
    pub token_version: i64,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// The session (refresh family) the token was issued for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// A unique id for this token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The issuer, when `JWT_ISSUER`/`PUBLIC_URL` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The audience, when `JWT_AUDIENCE` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}
