//! OAuth 2.0: `POST /oauth/token` (password and refresh_token grants, RFC 6749),
//! `POST /oauth/revoke` (RFC 7009) and `POST /oauth/introspect` (RFC 7662).
//!
//! With no client registry every `client_id` is a public client: credentials sent in
//! HTTP Basic (empty secret) or in the form are accepted and recorded, not required.
//! Errors use RFC 6749's `{error, error_description}` body.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use base64::{engine::general_purpose::STANDARD, Engine};
use utoipa::ToSchema;

use super::{
    error::{self, oauth::no_store},
    extract::{bearer, Client, OAuthBody as Body},
    openapi::RateLimited,
    validate::{Input, NUL_MESSAGE},
    views::{self, IntrospectedTokenType, OAuthBearerType, OAuthError, OAuthErrorCode as Code},
    AppState,
};
use crate::{domain::token::constant_time_eq, service::Issued, storage::Role, Rotor};

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum PasswordGrantType {
    Password,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum RefreshGrantType {
    RefreshToken,
}

/// The token request (read by [`token`]): one of the two grants. An empty parameter
/// counts as absent (RFC 6749 §3.1); an over-long optional one is ignored; a NUL
/// character anywhere is `invalid_request`.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum OAuthTokenRequest {
    Password(PasswordGrant),
    RefreshToken(RefreshGrant),
}

/// grant_type=password: starts a session.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct PasswordGrant {
    grant_type: PasswordGrantType,
    /// The email
    #[schema(min_length = 1, max_length = 320, pattern = "^[^\\x00]*$")]
    username: String,
    #[schema(min_length = 1, max_length = 1024, pattern = "^[^\\x00]*$")]
    password: String,
    /// Echoed in the response
    #[schema(nullable = false, pattern = "^[^\\x00]*$")]
    scope: Option<String>,
    /// Recorded with the session (HTTP Basic user name wins)
    #[schema(nullable = false, pattern = "^[^\\x00]*$")]
    client_id: Option<String>,
    #[schema(nullable = false, pattern = "^[^\\x00]*$")]
    device_id: Option<String>,
    #[schema(nullable = false, pattern = "^[^\\x00]*$")]
    device_name: Option<String>,
}

/// grant_type=refresh_token: rotates a session's refresh token.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct RefreshGrant {
    grant_type: RefreshGrantType,
    #[schema(min_length = 1, max_length = 4096, pattern = "^[^\\x00]*$")]
    refresh_token: String,
    /// Echoed in the response
    #[schema(nullable = false, pattern = "^[^\\x00]*$")]
    scope: Option<String>,
    /// Recorded with the session (HTTP Basic user name wins)
    #[schema(nullable = false, pattern = "^[^\\x00]*$")]
    client_id: Option<String>,
}

/// A token to revoke or introspect (read by [`revoke`] and [`introspect`]).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct OAuthTokenForm {
    #[schema(min_length = 1, max_length = 8192, pattern = "^[^\\x00]*$")]
    token: String,
    /// Optional and ignored: the token's kind is detected either way (RFC 7009 §2.1:
    /// an unknown hint is no error)
    #[schema(nullable = false)]
    token_type_hint: Option<String>,
}

/// A form parameter. RFC 6749 §3.1, §3.2: "Parameters sent without a value MUST be
/// treated as if they were omitted from the request."
fn param(input: &mut Input, name: &str, max: usize) -> Option<String> {
    input.optional_string(name, max).filter(|v| !v.is_empty())
}

/// Whether a parameter read so far held a NUL character (other problems, such as an
/// over-long value, keep their historical treatment: the parameter is ignored).
fn has_nul(input: &Input) -> bool {
    input.has_error_message(NUL_MESSAGE)
}

/// RFC 6749 §5.2 `invalid_request` for a parameter holding a NUL character.
fn malformed() -> error::OAuthError {
    error::OAuthError::invalid_request("Parameters must not contain NUL characters")
}

/// Every answer of these handlers: a response, or an RFC 6749 refusal.
type OAuthResult = Result<Response, error::OAuthError>;

/// HTTP Basic credentials, decoded per RFC 6749 §2.3.1 (form-urlencoded parts).
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()
            .and_then(|mut v| v.pop())
            .map_or_else(|| s.to_owned(), |(_, v)| v)
    };
    Some((unescape(id), unescape(secret)))
}

fn token_response(
    rotor: &Rotor,
    access_token: String,
    refresh: &Issued,
    scope: Option<String>,
) -> Response {
    let body = views::OAuthTokenResponse {
        access_token,
        token_type: OAuthBearerType::Bearer,
        expires_in: rotor.access_lifetime_seconds(),
        refresh_token: refresh.raw.as_str().to_owned(),
        scope,
    };
    let mut r = views::body(&body).into_response();
    no_store(&mut r);
    r
}

/// Token endpoint (RFC 6749)
///
/// grant_type=password starts a session; grant_type=refresh_token rotates one, with the
/// same replay rules as /v1/auth/refresh. Every client_id is a public client: credentials
/// in HTTP Basic (empty secret) or the form are recorded, not required.
#[utoipa::path(post, path = "/oauth/token", tag = "oauth", operation_id = "oauthToken", security((), ("basic" = [])),
    request_body(content = OAuthTokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens issued", body = views::OAuthTokenResponse, headers(
            ("Cache-Control" = String, description = "`no-store`: token responses are never cached"))),
        (status = 400, description = "invalid_request (missing fields), invalid_grant (bad credentials, \
            unknown, expired or revoked refresh token, inactive user), unsupported_grant_type", body = OAuthError),
        (status = 429, response = RateLimited),
    ))]
pub(crate) async fn token(
    State(state): State<AppState>,
    Client(mut ctx): Client,
    headers: HeaderMap,
    body: Body,
) -> OAuthResult {
    let rotor = &state.rotor;
    let mut input = body.form();
    let basic = basic_credentials(&headers);
    if basic
        .as_ref()
        .is_some_and(|(id, secret)| id.contains('\0') || secret.contains('\0'))
    {
        return Err(malformed());
    }
    let form_client_id = param(&mut input, "client_id", 255);
    let client_id = basic.map(|(id, _)| id).or(form_client_id);
    ctx.client_id = client_id.filter(|c| !c.is_empty());
    let grant_type = param(&mut input, "grant_type", 64);
    let scope = param(&mut input, "scope", 1024);
    // Read every parameter before acting, so a NUL in any of them (which PostgreSQL
    // cannot store) is an invalid_request rather than a 500 or a silent omission.
    let username = param(&mut input, "username", 320);
    let password = param(&mut input, "password", 1024);
    let device_id = param(&mut input, "device_id", 255);
    let device_name = param(&mut input, "device_name", 100);
    let refresh_token = param(&mut input, "refresh_token", 4096);
    if has_nul(&input) {
        return Err(malformed());
    }
    match grant_type.as_deref() {
        None => Err(error::OAuthError::new(
            StatusCode::BAD_REQUEST,
            Code::InvalidRequest,
            "Missing grant_type",
        )),
        Some("password") => {
            let (Some(username), Some(password)) = (username, password) else {
                return Err(error::OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    Code::InvalidRequest,
                    "username and password are required",
                ));
            };
            if let Some(d) = device_id {
                ctx.device_id = Some(d);
            }
            if let Some(d) = device_name {
                ctx.device_name = Some(d);
            }
            // A password check: charged to the bucket login and change-password share.
            if let Some(limited) = state.refuse_password_check(ctx.ip.as_deref()) {
                return Err(limited);
            }
            match rotor.login(&username, &password, &ctx).await {
                Ok(out) => Ok(token_response(rotor, out.access_token, &out.refresh, scope)),
                Err(e) => Err(e.into()),
            }
        }
        Some("refresh_token") => {
            let Some(presented) = refresh_token else {
                return Err(error::OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    Code::InvalidRequest,
                    "Missing refresh_token",
                ));
            };
            match rotor.refresh(&presented, &ctx).await {
                Ok(out) => Ok(token_response(rotor, out.access_token, &out.refresh, scope)),
                Err(e) => Err(e.into()),
            }
        }
        Some(_) => Err(error::OAuthError::new(
            StatusCode::BAD_REQUEST,
            Code::UnsupportedGrantType,
            "Supported grant types: password, refresh_token",
        )),
    }
}

/// Revoke a token (RFC 7009)
///
/// A refresh token or an access token ends its session. Unknown or invalid tokens are
/// ignored, so the answer is 200 whenever a token is given.
#[utoipa::path(post, path = "/oauth/revoke", tag = "oauth", operation_id = "oauthRevoke", security(()),
    request_body(content = OAuthTokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke", headers(
            ("Cache-Control" = String, description = "`no-store`: token responses are never cached"))),
        (status = 400, description = "invalid_request: missing token", body = OAuthError),
    ))]
pub(crate) async fn revoke(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    body: Body,
) -> OAuthResult {
    let mut input = body.form();
    let token = param(&mut input, "token", 8192);
    if has_nul(&input) {
        return Err(malformed());
    }
    let Some(token) = token else {
        return Err(error::OAuthError::new(
            StatusCode::BAD_REQUEST,
            Code::InvalidRequest,
            "Missing token",
        ));
    };
    match rotor.revoke_any(&token, &ctx).await {
        Ok(()) => {
            let mut r = StatusCode::OK.into_response();
            no_store(&mut r);
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

/// Introspection is for resource servers: an admin bearer token, or HTTP Basic whose
/// password is `INTROSPECTION_SECRET`.
async fn introspection_allowed(rotor: &Rotor, headers: &HeaderMap) -> bool {
    if let (Some(secret), Some((_, given))) = (
        &rotor.settings().introspection_secret,
        basic_credentials(headers),
    ) {
        if constant_time_eq(secret.expose().as_bytes(), given.as_bytes()) {
            return true;
        }
    }
    match bearer(headers) {
        Some(token) => rotor
            .authenticate(token)
            .await
            .is_ok_and(|p| p.user.role == Role::Admin),
        None => false,
    }
}

/// Introspect a token (RFC 7662)
///
/// For resource servers: authenticate with an admin bearer token or with HTTP Basic whose
/// password is INTROSPECTION_SECRET. Inactive, unknown or invalid tokens answer
/// `{"active": false}`.
#[utoipa::path(post, path = "/oauth/introspect", tag = "oauth", operation_id = "oauthIntrospect", security(("bearer" = []), ("basic" = [])),
    request_body(content = OAuthTokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The token's state", body = views::IntrospectionResponse, headers(
            ("Cache-Control" = String, description = "`no-store`: token responses are never cached"))),
        (status = 400, description = "invalid_request: missing token", body = OAuthError),
        (status = 401, description = "invalid_client: neither an admin bearer token nor the introspection secret",
            body = OAuthError, headers(("WWW-Authenticate" = String, description = "The accepted authentication schemes"))),
    ))]
pub(crate) async fn introspect(
    State(rotor): State<Arc<Rotor>>,
    headers: HeaderMap,
    body: Body,
) -> OAuthResult {
    if !introspection_allowed(&rotor, &headers).await {
        return Err(error::OAuthError::new(
            StatusCode::UNAUTHORIZED,
            Code::InvalidClient,
            "Introspection requires an admin bearer token or the introspection secret",
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"rotor\", Bearer"),
        ));
    }
    let mut input = body.form();
    let token = param(&mut input, "token", 8192);
    if has_nul(&input) {
        return Err(malformed());
    }
    let Some(token) = token else {
        return Err(error::OAuthError::new(
            StatusCode::BAD_REQUEST,
            Code::InvalidRequest,
            "Missing token",
        ));
    };
    match rotor.introspect(&token).await {
        Ok(found) => {
            let body = found.map_or_else(views::IntrospectionResponse::default, |i| {
                views::IntrospectionResponse {
                    active: true,
                    token_type: Some(match i.token_type {
                        "refresh_token" => IntrospectedTokenType::RefreshToken,
                        _ => IntrospectedTokenType::AccessToken,
                    }),
                    sub: Some(i.user_id),
                    username: Some(i.username),
                    iat: Some(i.issued_at),
                    exp: Some(i.expires_at),
                    sid: i.session_id,
                    client_id: i.client_id,
                    jti: i.jti,
                    iss: i.iss,
                    aud: i.aud,
                }
            });
            let mut r = views::body(&body).into_response();
            no_store(&mut r);
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}
