//! Response bodies: how users, sessions, events and tokens look on the wire. Each is a
//! type that both serializes the response and, through `ToSchema`, describes it in the
//! OpenAPI document, so the two cannot drift. Timestamps are RFC 3339 UTC with a `Z`
//! and microseconds, as the original's frontend requires.
//!
//! Bodies are written with [`body`]: through a `serde_json::Value`, so an object's keys
//! come out in alphabetical order, as rotor has always sent them. The bodies of the
//! busiest routes (health, the current user, a mobile refresh) are written straight to
//! bytes by [`direct`] instead, from views whose fields are declared in alphabetical
//! order; the tests check that both ways write the same bytes.

use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::storage::{AuditEvent as AuditRow, SessionView, User as UserRow};

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A view as a JSON body (keys in alphabetical order, as `serde_json::json!` writes them).
pub(crate) fn body<T: Serialize>(view: &T) -> Json<Value> {
    Json(serde_json::to_value(view).expect("BUG: a view does not serialize"))
}

/// A body already written as JSON, answered as `application/json`.
pub(crate) fn json_bytes(body: impl Into<axum::body::Body>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.into(),
    )
        .into_response()
}

/// A view whose fields are declared in alphabetical order, written straight to a JSON
/// body: the bytes [`body`] writes, without building a `Value` first.
pub(crate) fn direct<T: Serialize>(view: &T) -> Response {
    let mut buf = Vec::with_capacity(256);
    serde_json::to_writer(&mut buf, view).expect("BUG: a view does not serialize");
    json_bytes(buf)
}

/// Whether `s` can stand between JSON quotes as it is: printable ASCII without `"` or
/// `\\` (the alphabet of JWTs and refresh tokens). Checked without branching per byte.
fn json_verbatim(s: &str) -> bool {
    s.bytes().fold(true, |ok, b| {
        ok & (b' '..=b'~').contains(&b) & (b != b'"') & (b != b'\\')
    })
}

/// The mobile token answer, [`direct`]'s bytes for [`MobileTokenResponse`]. Tokens are
/// written between quotes as they are, which skips serde_json's escape scan of the
/// access token (its largest cost here); a token that would need escaping takes the
/// serializer's path.
pub(crate) fn mobile_tokens(access_token: String, refresh_token: &str) -> Response {
    if !(json_verbatim(&access_token) && json_verbatim(refresh_token)) {
        return direct(&MobileTokenResponse {
            access_token,
            refresh_token: refresh_token.to_owned(),
            token_type: BearerType::Bearer,
        });
    }
    const PARTS: [&str; 3] = [
        "{\"access_token\":\"",
        "\",\"refresh_token\":\"",
        "\",\"token_type\":\"bearer\"}",
    ];
    let len =
        PARTS.iter().map(|p| p.len()).sum::<usize>() + access_token.len() + refresh_token.len();
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(PARTS[0].as_bytes());
    buf.extend_from_slice(access_token.as_bytes());
    buf.extend_from_slice(PARTS[1].as_bytes());
    buf.extend_from_slice(refresh_token.as_bytes());
    buf.extend_from_slice(PARTS[2].as_bytes());
    json_bytes(buf)
}

/// A user's role.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    User,
    Admin,
}

/// A user; never the password hash. Fields in alphabetical order: [`direct`] writes
/// them as declared, and must give the bytes of [`body`] (whose keys are sorted).
#[derive(Serialize, ToSchema)]
pub(crate) struct User {
    #[schema(format = DateTime, example = "2026-11-23T03:51:16.034306Z")]
    pub created_at: String,
    #[schema(format = Email)]
    pub email: String,
    #[schema(required = true, max_length = 255)]
    pub full_name: Option<String>,
    pub id: Uuid,
    pub is_active: bool,
    pub is_verified: bool,
    pub role: Role,
    /// null until the first update
    #[schema(required = true, format = DateTime, example = "2026-11-23T03:51:16.034306Z")]
    pub updated_at: Option<String>,
}

pub(crate) fn user(u: &UserRow) -> User {
    User {
        id: u.id,
        created_at: ts(u.created_at),
        updated_at: u.updated_at.map(ts),
        email: u.email.clone(),
        full_name: u.full_name.clone(),
        is_active: u.is_active,
        is_verified: u.is_verified,
        role: match u.role {
            crate::storage::Role::Admin => Role::Admin,
            crate::storage::Role::User => Role::User,
        },
    }
}

/// `bearer`, the token type of the `/v1` routes.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BearerType {
    Bearer,
}

/// JWT; send as `Authorization: Bearer <token>`.
type AccessToken = String;

#[derive(Serialize, ToSchema)]
pub(crate) struct TokenResponse {
    /// JWT; send as `Authorization: Bearer <token>`
    pub access_token: AccessToken,
    pub token_type: BearerType,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LoginResponse {
    /// JWT; send as `Authorization: Bearer <token>`
    pub access_token: AccessToken,
    pub token_type: BearerType,
    pub user: User,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MobileLoginResponse {
    /// JWT; send as `Authorization: Bearer <token>`
    pub access_token: AccessToken,
    /// Opaque, 43 characters, single use: every refresh returns a successor
    pub refresh_token: String,
    pub token_type: BearerType,
    pub user: User,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MobileTokenResponse {
    /// JWT; send as `Authorization: Bearer <token>`
    pub access_token: AccessToken,
    /// Opaque, 43 characters, single use: every refresh returns a successor
    pub refresh_token: String,
    pub token_type: BearerType,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RevokedSessions {
    pub revoked_sessions: u64,
}

/// A session: one login and its refresh-token family.
#[derive(Serialize, ToSchema)]
pub(crate) struct Session {
    /// The session (refresh-token family) id
    pub id: Uuid,
    #[schema(required = true)]
    pub device_id: Option<String>,
    #[schema(required = true)]
    pub device_name: Option<String>,
    #[schema(required = true)]
    pub user_agent: Option<String>,
    #[schema(required = true)]
    pub ip_address: Option<String>,
    /// When the session began (the login)
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The latest login or refresh
    #[schema(format = DateTime)]
    pub last_used_at: String,
    /// When the current refresh token expires
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// True for the session of the calling access token
    pub current: bool,
}

pub(crate) fn session(s: &SessionView, current: Option<Uuid>) -> Session {
    Session {
        id: s.id,
        device_id: s.device_id.clone(),
        device_name: s.device_name.clone(),
        user_agent: s.user_agent.clone(),
        ip_address: s.ip_address.clone(),
        created_at: ts(s.created_at),
        last_used_at: ts(s.last_used_at),
        expires_at: ts(s.expires_at),
        current: current == Some(s.id),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SessionList {
    pub sessions: Vec<Session>,
}

/// An entry of the security log.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditEvent {
    pub id: Uuid,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// login_succeeded, login_failed, refresh, replay_detected, logout, session_revoked,
    /// logout_others, logout_all, password_changed, user_created, user_deactivated,
    /// user_deleted, token_revoked
    pub kind: String,
    #[schema(required = true)]
    pub user_id: Option<Uuid>,
    #[schema(required = true)]
    pub session_id: Option<Uuid>,
    #[schema(required = true)]
    pub ip_address: Option<String>,
    #[schema(required = true)]
    pub user_agent: Option<String>,
    #[schema(required = true)]
    pub detail: Option<String>,
}

pub(crate) fn event(e: &AuditRow) -> AuditEvent {
    AuditEvent {
        id: e.id,
        created_at: ts(e.created_at),
        kind: e.kind.clone(),
        user_id: e.user_id,
        session_id: e.session_id,
        ip_address: e.ip_address.clone(),
        user_agent: e.user_agent.clone(),
        detail: e.detail.clone(),
    }
}

/// A page of users, oldest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserPage {
    pub items: Vec<User>,
    /// Items on every page
    pub total: u64,
    #[schema(minimum = 1)]
    pub page: u32,
    #[schema(minimum = 1)]
    pub size: u32,
}

/// A page of events, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct EventPage {
    pub items: Vec<AuditEvent>,
    /// Items on every page
    pub total: u64,
    #[schema(minimum = 1)]
    pub page: u32,
    #[schema(minimum = 1)]
    pub size: u32,
}

// --- errors ---------------------------------------------------------------------

/// A service error: `{detail, type}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ServiceError {
    /// What went wrong
    pub detail: String,
    /// The error kind, e.g. InvalidCredentials, TokenError, TokenRevokedError,
    /// InactiveUser, PermissionDenied, UserNotFound, SessionNotFound,
    /// EmailAlreadyExists, RateLimitExceeded; absent on 401 Not authenticated
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// One invalid input, in pydantic v2's shape (keys in this order on the wire).
#[derive(Serialize, ToSchema)]
pub(crate) struct ValidationError {
    /// e.g. missing, string_too_short, value_error, json_invalid
    #[serde(rename = "type")]
    pub kind: String,
    /// Where: ["body" | "query" | "path", field]
    pub loc: Vec<Loc>,
    pub msg: String,
    /// The value that was refused (the whole body object for a missing body field,
    /// null for a missing form or query field)
    pub input: serde_json::Value,
    /// The constraint, where pydantic gives one: {"min_length": 8}, {"le": 100},
    /// {"expected": "'user' or 'admin'"}, {"error": …}
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<serde_json::Value>,
}

/// A part of an error's location: a name or a list index. Describes the `loc` items
/// in the OpenAPI document; the errors themselves are built as JSON values.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Loc {
    Name(String),
    Index(u64),
}

/// FastAPI's 422 body.
#[derive(Serialize, ToSchema)]
#[allow(clippy::upper_case_acronyms)]
#[schema(as = HTTPValidationError)]
pub(crate) struct HttpValidationError {
    pub detail: Vec<ValidationError>,
}

// --- OAuth ----------------------------------------------------------------------

/// `Bearer`, the token type of `/oauth/token`.
#[derive(Serialize, ToSchema, Clone, Copy)]
pub(crate) enum OAuthBearerType {
    Bearer,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct OAuthTokenResponse {
    /// JWT
    pub access_token: String,
    pub token_type: OAuthBearerType,
    /// Access token lifetime in seconds
    pub expires_in: i64,
    /// Single use: every refresh returns a successor
    pub refresh_token: String,
    /// The requested scope, when one was given
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

#[derive(Serialize, ToSchema, Clone, Copy, Debug)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnsupportedGrantType,
    /// An internal error (500)
    ServerError,
    /// A rate limit or request timeout (429, 408)
    TemporarilyUnavailable,
}

/// RFC 6749 §5.2 error body.
#[derive(Serialize, ToSchema)]
pub(crate) struct OAuthError {
    pub error: OAuthErrorCode,
    pub error_description: String,
}

#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(crate) enum IntrospectedTokenType {
    AccessToken,
    RefreshToken,
}

/// RFC 7662: `{"active": false}` alone for an inactive, unknown or invalid token.
#[derive(Serialize, ToSchema, Default)]
pub(crate) struct IntrospectionResponse {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub token_type: Option<IntrospectedTokenType>,
    /// The user id
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sub: Option<Uuid>,
    /// The user's email
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub username: Option<String>,
    /// Unix seconds
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub iat: Option<i64>,
    /// Unix seconds
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub exp: Option<i64>,
    /// The session id
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sid: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub aud: Option<String>,
}

/// A public signing key (RFC 7517).
#[derive(Serialize, ToSchema)]
pub(crate) struct Jwk {
    /// OKP or EC
    pub kty: String,
    /// Ed25519 or P-256
    pub crv: String,
    /// base64url
    pub x: String,
    /// base64url; EC keys only
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub y: Option<String>,
    pub kid: String,
    /// EdDSA or ES256
    pub alg: String,
    /// sig
    #[serde(rename = "use")]
    pub use_: String,
}

/// The key set (JWKS); written by `jwt::TokenService::jwks`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Jwks {
    pub keys: Vec<Jwk>,
}

/// RFC 8414 authorization server metadata.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuthorizationServerMetadata {
    /// JWT_ISSUER, else PUBLIC_URL
    pub issuer: String,
    #[schema(format = "uri")]
    pub token_endpoint: String,
    #[schema(format = "uri")]
    pub revocation_endpoint: String,
    #[schema(format = "uri")]
    pub introspection_endpoint: String,
    #[schema(format = "uri")]
    pub jwks_uri: String,
    pub grant_types_supported: Vec<&'static str>,
    pub response_types_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    #[schema(format = "uri")]
    pub service_documentation: String,
}

// --- the service ----------------------------------------------------------------

#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Environment {
    Development,
    Staging,
    Production,
}

impl Environment {
    pub(crate) fn of(e: &crate::config::Environment) -> Self {
        use crate::config::Environment as E;
        match e {
            E::Development => Self::Development,
            E::Staging => Self::Staging,
            E::Production => Self::Production,
        }
    }
}

#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Healthy {
    Healthy,
}

/// Fields in alphabetical order, for [`direct`] (see [`User`]).
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    pub environment: Environment,
    pub status: Healthy,
    pub version: &'static str,
}

#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HealthStatus {
    Healthy,
    Degraded,
}

#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DatabaseStatus {
    Healthy,
    Unhealthy,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DetailedHealth {
    /// degraded when the database does not answer
    pub status: HealthStatus,
    pub environment: Environment,
    pub version: &'static str,
    pub database: DatabaseStatus,
    /// sqlite or postgresql
    pub database_backend: &'static str,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Readiness {
    pub ready: bool,
}

#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ServiceName {
    Rotor,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Root {
    pub name: ServiceName,
    pub version: &'static str,
    pub environment: Environment,
    /// /docs
    pub docs_url: &'static str,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::storage::Role as RoleRow;

    async fn bytes(r: Response) -> (Option<HeaderValue>, Vec<u8>) {
        let ct = r.headers().get(header::CONTENT_TYPE).cloned();
        let b = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (ct, b.to_vec())
    }

    fn row(full_name: Option<&str>, updated: bool, role: RoleRow) -> UserRow {
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 3, 51, 16).unwrap();
        UserRow {
            id: Uuid::now_v7(),
            email: "a\"b@example.com".into(),
            hashed_password: "x".into(),
            full_name: full_name.map(str::to_owned),
            is_active: true,
            is_verified: false,
            role,
            token_version: 0,
            created_at: t,
            updated_at: updated.then_some(t + chrono::Duration::microseconds(7)),
        }
    }

    #[tokio::test]
    async fn direct_bodies_are_the_bytes_of_the_value_bodies() {
        for u in [
            row(None, false, RoleRow::User),
            row(Some("Zoë \u{1F600}"), true, RoleRow::Admin),
        ] {
            let want = bytes(body(&user(&u)).into_response()).await;
            assert_eq!(bytes(direct(&user(&u))).await, want);
        }
        let want = bytes(
            body(&Health {
                status: Healthy::Healthy,
                environment: Environment::Production,
                version: "1.2.3",
            })
            .into_response(),
        )
        .await;
        let got = direct(&Health {
            environment: Environment::Production,
            status: Healthy::Healthy,
            version: "1.2.3",
        });
        assert_eq!(bytes(got).await, want);
        let view = MobileTokenResponse {
            access_token: "a.b.c".into(),
            refresh_token: "r".into(),
            token_type: BearerType::Bearer,
        };
        let want = bytes(body(&view).into_response()).await;
        assert_eq!(bytes(direct(&view)).await, want);
        // The verbatim path, and the escaping fallback.
        for (access, refresh) in [
            ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-_", "Ab-_09zZ"),
            ("a\"b", "r"),
            ("a", "back\\slash"),
            ("ctl\u{7}", "r"),
            ("é", "r"),
            ("", ""),
        ] {
            let view = MobileTokenResponse {
                access_token: access.into(),
                refresh_token: refresh.into(),
                token_type: BearerType::Bearer,
            };
            let want = bytes(body(&view).into_response()).await;
            assert_eq!(
                bytes(mobile_tokens(access.into(), refresh)).await,
                want,
                "{access:?}"
            );
        }
    }
}
