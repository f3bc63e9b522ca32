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
    routing::post,
    Json, Router,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use serde_json::{json, Map, Value};

use super::{
    extract::{bearer, Body, Client},
    validate::{Input, NUL_MESSAGE},
    AppState,
};
use crate::{domain::token::constant_time_eq, error::Error, service::Issued, storage::Role, Rotor};

/// The token endpoint (rate limited like the `/v1` credential routes).
pub fn limited_router() -> Router<AppState> {
    Router::new().route("/oauth/token", post(token))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth/revoke", post(revoke))
        .route("/oauth/introspect", post(introspect))
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
fn malformed() -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "Parameters must not contain NUL characters",
    )
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    no_store(&mut r);
    r
}

fn no_store(r: &mut Response) {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

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

fn service_error_to_oauth(e: Error) -> Response {
    match e {
        Error::InvalidCredentials => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid email or password",
        ),
        Error::Token(m) => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", m),
        Error::TokenRevoked => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Token has been revoked",
        ),
        Error::InactiveUser => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "User account is inactive",
        ),
        Error::Validation(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Malformed request",
        ),
        other => other.into_response(),
    }
}

fn token_response(
    rotor: &Rotor,
    access_token: String,
    refresh: &Issued,
    scope: Option<String>,
) -> Response {
    let mut body = Map::new();
    body.insert("access_token".into(), access_token.into());
    body.insert("token_type".into(), "Bearer".into());
    body.insert("expires_in".into(), rotor.access_lifetime_seconds().into());
    body.insert("refresh_token".into(), refresh.raw.as_str().into());
    if let Some(scope) = scope {
        body.insert("scope".into(), scope.into());
    }
    let mut r = Json(Value::Object(body)).into_response();
    no_store(&mut r);
    r
}

async fn token(
    State(state): State<AppState>,
    Client(mut ctx): Client,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rotor = &state.rotor;
    let mut input = body.form();
    let basic = basic_credentials(&headers);
    if basic
        .as_ref()
        .is_some_and(|(id, secret)| id.contains('\0') || secret.contains('\0'))
    {
        return malformed();
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
        return malformed();
    }
    match grant_type.as_deref() {
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing grant_type",
        ),
        Some("password") => {
            let (Some(username), Some(password)) = (username, password) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "username and password are required",
                );
            };
            if let Some(d) = device_id {
                ctx.device_id = Some(d);
            }
            if let Some(d) = device_name {
                ctx.device_name = Some(d);
            }
            // A password check: charged to the bucket login and change-password share.
            if let Some(limited) = state.refuse_password_check(ctx.ip.as_deref()) {
                return limited;
            }
            match rotor.login(&username, &password, &ctx).await {
                Ok(out) => token_response(rotor, out.access_token, &out.refresh, scope),
                Err(e) => service_error_to_oauth(e),
            }
        }
        Some("refresh_token") => {
            let Some(presented) = refresh_token else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing refresh_token",
                );
            };
            match rotor.refresh(&presented, &ctx).await {
                Ok(out) => token_response(rotor, out.access_token, &out.refresh, scope),
                Err(e) => service_error_to_oauth(e),
            }
        }
        Some(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Supported grant types: password, refresh_token",
        ),
    }
}

async fn revoke(State(rotor): State<Arc<Rotor>>, Client(ctx): Client, body: Body) -> Response {
    let mut input = body.form();
    let token = param(&mut input, "token", 8192);
    if has_nul(&input) {
        return malformed();
    }
    let Some(token) = token else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing token");
    };
    match rotor.revoke_any(&token, &ctx).await {
        Ok(()) => {
            let mut r = StatusCode::OK.into_response();
            no_store(&mut r);
            r
        }
        Err(e) => e.into_response(),
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

async fn introspect(State(rotor): State<Arc<Rotor>>, headers: HeaderMap, body: Body) -> Response {
    if !introspection_allowed(&rotor, &headers).await {
        let mut r = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Introspection requires an admin bearer token or the introspection secret",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"rotor\", Bearer"),
        );
        return r;
    }
    let mut input = body.form();
    let token = param(&mut input, "token", 8192);
    if has_nul(&input) {
        return malformed();
    }
    let Some(token) = token else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing token");
    };
    match rotor.introspect(&token).await {
        Ok(None) => {
            let mut r = Json(json!({ "active": false })).into_response();
            no_store(&mut r);
            r
        }
        Ok(Some(i)) => {
            let mut body = Map::new();
            body.insert("active".into(), true.into());
            body.insert("token_type".into(), i.token_type.into());
            body.insert("sub".into(), i.user_id.to_string().into());
            body.insert("username".into(), i.username.into());
            body.insert("iat".into(), i.issued_at.into());
            body.insert("exp".into(), i.expires_at.into());
            if let Some(sid) = i.session_id {
                body.insert("sid".into(), sid.to_string().into());
            }
            for (k, v) in [
                ("client_id", i.client_id),
                ("jti", i.jti),
                ("iss", i.iss),
                ("aud", i.aud),
            ] {
                if let Some(v) = v {
                    body.insert(k.into(), v.into());
                }
            }
            let mut r = Json(Value::Object(body)).into_response();
            no_store(&mut r);
            r
        }
        Err(e) => e.into_response(),
    }
}
