//! `/v1/auth/*`: login, refresh (cookie and mobile), logout, me, change-password, and
//! rotor's session routes. The refresh and logout routes ignore `Authorization`.

use std::sync::Arc;

use axum::{
    extract::{Path, RawQuery, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{
    cookies,
    extract::{Auth, Body, Client},
    openapi::{Invalid, NotAuthenticated, RateLimited},
    validate::{path_uuid, Input},
    views::{self, BearerType, ServiceError},
};
use crate::{
    error::{Error, Result},
    service::{ClientContext, LoginOutcome, RefreshOutcome},
    storage::EventFilter,
    Rotor,
};

/// The login form of `/v1/auth/login` and `/v1/auth/login-mobile` (read by
/// [`login_form`]).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct LoginForm {
    /// The email address
    #[schema(min_length = 1, max_length = 320, pattern = "^[^\\x00]*$")]
    username: String,
    #[schema(min_length = 1, max_length = 1024, pattern = "^[^\\x00]*$")]
    password: String,
    /// Overrides X-Device-Id
    #[schema(max_length = 255, pattern = "^[^\\x00]*$")]
    device_id: Option<String>,
    /// Overrides X-Device-Name
    #[schema(max_length = 100, pattern = "^[^\\x00]*$")]
    device_name: Option<String>,
}

/// The session's device, when the form does not name it.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(super) struct DeviceHeaders {
    /// Session device id (the form field wins)
    #[param(rename = "X-Device-Id", max_length = 255, nullable = false)]
    device_id: Option<String>,
    /// Session device name (the form field wins)
    #[param(rename = "X-Device-Name", max_length = 100, nullable = false)]
    device_name: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct RefreshMobileRequest {
    #[schema(min_length = 1, pattern = "^[^\\x00]*$")]
    refresh_token: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct ChangePasswordRequest {
    #[schema(min_length = 1, max_length = 1024, pattern = "^[^\\x00]*$")]
    current_password: String,
    #[schema(min_length = 8, max_length = 128, pattern = "^[^\\x00]*$")]
    new_password: String,
}

/// Token responses must not be cached (RFC 6749 §5.1).
fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn with_cookie(mut r: Response, cookie: HeaderValue) -> Response {
    r.headers_mut().append(header::SET_COOKIE, cookie);
    r
}

/// Reads the login form (`username`, `password`, optional `device_id`/`device_name`,
/// which win over the `X-Device-*` headers).
pub(crate) fn login_form(body: &Body, ctx: &mut ClientContext) -> Result<(String, String)> {
    let mut input = body.form();
    let username = input.string("username", 1, 320);
    let password = input.string("password", 1, 1024);
    if let Some(d) = input.optional_string("device_id", 255) {
        ctx.device_id = Some(d);
    }
    if let Some(d) = input.optional_string("device_name", 100) {
        ctx.device_name = Some(d);
    }
    input.finish()?;
    Ok((username.unwrap_or_default(), password.unwrap_or_default()))
}

async fn do_login(rotor: &Rotor, body: &Body, mut ctx: ClientContext) -> Result<LoginOutcome> {
    let (username, password) = login_form(body, &mut ctx)?;
    rotor.login(&username, &password, &ctx).await
}

/// Log in (browser)
///
/// Starts a session. The refresh token is set as an HttpOnly cookie; device_id/device_name
/// (form fields, else X-Device-Id/X-Device-Name) label the session.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", operation_id = "login", security(()), params(DeviceHeaders),
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Logged in", body = views::LoginResponse, headers(
            ("Cache-Control" = String, description = "`no-store`: token responses are never cached"),
            ("Set-Cookie" = String, description = "`refresh_token=<token>; HttpOnly; SameSite=Strict; Path=/; Max-Age=<refresh \
    lifetime>`, Secure unless ENVIRONMENT=development; the path is REFRESH_COOKIE_PATH"))),
        (status = 401, description = "InvalidCredentials: unknown email, wrong password and inactive account alike", body = ServiceError),
        (status = 422, response = Invalid),
        (status = 429, response = RateLimited),
    ))]
pub(crate) async fn login(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    body: Body,
) -> Result<Response> {
    let out = do_login(&rotor, &body, ctx).await?;
    let cookie = cookies::set(
        rotor.settings(),
        out.refresh.raw.as_str(),
        out.refresh.max_age,
    );
    let r = views::body(&views::LoginResponse {
        access_token: out.access_token,
        token_type: BearerType::Bearer,
        user: views::user(&out.user),
    })
    .into_response();
    Ok(no_store(with_cookie(r, cookie)))
}

/// Log in (mobile)
///
/// As login, but the refresh token is returned in the body instead of a cookie.
#[utoipa::path(post, path = "/v1/auth/login-mobile", tag = "auth", operation_id = "loginMobile", security(()), params(DeviceHeaders),
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Logged in", body = views::MobileLoginResponse, headers(
            ("Cache-Control" = String, description = "`no-store`: token responses are never cached"))),
        (status = 401, description = "InvalidCredentials: unknown email, wrong password and inactive account alike", body = ServiceError),
        (status = 422, response = Invalid),
        (status = 429, response = RateLimited),
    ))]
pub(crate) async fn login_mobile(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    body: Body,
) -> Result<Response> {
    let out = do_login(&rotor, &body, ctx).await?;
    Ok(no_store(
        views::body(&views::MobileLoginResponse {
            access_token: out.access_token,
            refresh_token: out.refresh.raw.as_str().to_owned(),
            token_type: BearerType::Bearer,
            user: views::user(&out.user),
        })
        .into_response(),
    ))
}

/// Rotate the refresh cookie
///
/// Exchanges the refresh cookie for a new access token and a new cookie. Re-presenting
/// the token that was just rotated, within REFRESH_REUSE_GRACE_SECONDS, returns the same
/// successor. Any Authorization header is ignored.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", operation_id = "refresh", security(("refreshCookie" = [])),
    responses(
        (status = 200, description = "Rotated", body = views::TokenResponse, headers(
            ("Cache-Control" = String, description = "`no-store`: token responses are never cached"),
            ("Set-Cookie" = String, description = "`refresh_token=<token>; HttpOnly; SameSite=Strict; Path=/; Max-Age=<refresh \
    lifetime>`, Secure unless ENVIRONMENT=development; the path is REFRESH_COOKIE_PATH"))),
        (status = 401, description = "TokenError: cookie missing (\"Refresh token required\"), unknown or expired \
    token; TokenRevokedError: a rotated token presented again outside the grace window (the whole session is \
    revoked); InactiveUser", body = ServiceError),
        (status = 429, response = RateLimited),
    ))]
pub(crate) async fn refresh(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    headers: HeaderMap,
) -> Result<Response> {
    let presented = cookies::read(&headers).ok_or(Error::Token("Refresh token required"))?;
    let out: RefreshOutcome = rotor.refresh(&presented, &ctx).await?;
    let cookie = cookies::set(
        rotor.settings(),
        out.refresh.raw.as_str(),
        out.refresh.max_age,
    );
    let r = views::body(&views::TokenResponse {
        access_token: out.access_token,
        token_type: BearerType::Bearer,
    })
    .into_response();
    Ok(no_store(with_cookie(r, cookie)))
}

/// Rotate a refresh token (mobile)
///
/// As refresh, with the token in a JSON body and the successor in the response.
#[utoipa::path(post, path = "/v1/auth/refresh-mobile", tag = "auth", operation_id = "refreshMobile", security(()),
    request_body = RefreshMobileRequest,
    responses(
        (status = 200, description = "Rotated", body = views::MobileTokenResponse, headers(
            ("Cache-Control" = String, description = "`no-store`: token responses are never cached"))),
        (status = 401, description = "TokenError: cookie missing (\"Refresh token required\"), unknown or expired \
    token; TokenRevokedError: a rotated token presented again outside the grace window (the whole session is \
    revoked); InactiveUser", body = ServiceError),
        (status = 422, response = Invalid),
        (status = 429, response = RateLimited),
    ))]
pub(crate) async fn refresh_mobile(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    body: Body,
) -> Result<Response> {
    let mut input = body.json()?;
    let presented = input.string("refresh_token", 1, usize::MAX);
    input.finish()?;
    let out = rotor.refresh(&presented.unwrap_or_default(), &ctx).await?;
    Ok(no_store(views::mobile_tokens(
        out.access_token,
        out.refresh.raw.as_str(),
    )))
}

/// Log out this session
///
/// Ends the cookie's session and clears the cookie; an unknown token is ignored
/// (idempotent). Any Authorization header is ignored.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", operation_id = "logout", security(("refreshCookie" = [])),
    responses(
        (status = 204, description = "Logged out", headers(("Set-Cookie" = String, description = "`refresh_token=; Max-Age=0` with the same path: clears the cookie"))),
        (status = 401, description = "TokenError: cookie missing (\"Refresh token required\")", body = ServiceError),
    ))]
pub(crate) async fn logout(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    headers: HeaderMap,
) -> Result<Response> {
    let presented = cookies::read(&headers).ok_or(Error::Token("Refresh token required"))?;
    rotor.logout(&presented, &ctx).await?;
    Ok(with_cookie(
        StatusCode::NO_CONTENT.into_response(),
        cookies::clear(rotor.settings()),
    ))
}

/// Log out everywhere
///
/// Revokes every session of the caller, including this one, and clears the cookie.
#[utoipa::path(post, path = "/v1/auth/logout-all", tag = "auth", operation_id = "logoutAll", security(("bearer" = [])),
    responses(
        (status = 200, description = "Sessions revoked", body = views::RevokedSessions, headers(
            ("Set-Cookie" = String, description = "`refresh_token=; Max-Age=0` with the same path: clears the cookie"))),
        (status = 401, response = NotAuthenticated),
    ))]
pub(crate) async fn logout_all(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    Auth(me): Auth,
) -> Result<Response> {
    let n = rotor.logout_all(&me, &ctx).await?;
    let r = views::body(&views::RevokedSessions {
        revoked_sessions: n,
    })
    .into_response();
    Ok(with_cookie(r, cookies::clear(rotor.settings())))
}

/// Log out every other session
#[utoipa::path(post, path = "/v1/auth/logout-others", tag = "sessions", operation_id = "logoutOthers", security(("bearer" = [])),
    responses(
        (status = 200, description = "Sessions revoked", body = views::RevokedSessions),
        (status = 401, response = NotAuthenticated),
    ))]
pub(crate) async fn logout_others(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    Auth(me): Auth,
) -> Result<Json<Value>> {
    let n = rotor.logout_others(&me, &ctx).await?;
    Ok(views::body(&views::RevokedSessions {
        revoked_sessions: n,
    }))
}

/// The current user
#[utoipa::path(get, path = "/v1/auth/me", tag = "auth", operation_id = "getAuthMe", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = views::User),
        (status = 401, response = NotAuthenticated),
    ))]
pub(crate) async fn me(Auth(me): Auth) -> Json<Value> {
    views::body(&views::user(&me.user))
}

/// Change the password
///
/// Ends the caller's other sessions and invalidates every access token, the caller's
/// included: the caller's session stays, so refresh for a new one.
#[utoipa::path(post, path = "/v1/auth/change-password", tag = "auth", operation_id = "changePassword", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Password changed"),
        (status = 401, description = "Not authenticated, or InvalidCredentials: wrong current password",
            body = ServiceError),
        (status = 422, response = Invalid),
        (status = 429, response = RateLimited),
    ))]
pub(crate) async fn change_password(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    Auth(me): Auth,
    body: Body,
) -> Result<StatusCode> {
    let mut input = body.json()?;
    let current = input.string("current_password", 1, 1024);
    let new = input.string("new_password", 8, 128);
    input.finish()?;
    let (Some(current), Some(new)) = (current, new) else {
        return Err(Error::invalid(&["body"], "Field required", "missing"));
    };
    rotor.change_password(&me, &current, &new, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's live sessions
///
/// Newest use first; `current` marks the session of the calling access token.
#[utoipa::path(get, path = "/v1/auth/sessions", tag = "sessions", operation_id = "listSessions", security(("bearer" = [])),
    responses(
        (status = 200, description = "Sessions", body = views::SessionList),
        (status = 401, response = NotAuthenticated),
    ))]
pub(crate) async fn list_sessions(
    State(rotor): State<Arc<Rotor>>,
    Auth(me): Auth,
) -> Result<Json<Value>> {
    let sessions = rotor.list_sessions(&me).await?;
    let sessions = sessions
        .iter()
        .map(|s| views::session(s, me.session_id))
        .collect();
    Ok(views::body(&views::SessionList { sessions }))
}

/// End one of the caller's sessions
///
/// Its refresh token stops working at once and its access tokens are rejected.
#[utoipa::path(delete, path = "/v1/auth/sessions/{id}", tag = "sessions", operation_id = "revokeSession", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Session id, from GET /v1/auth/sessions")),
    responses(
        (status = 204, description = "Session revoked"),
        (status = 401, response = NotAuthenticated),
        (status = 404, description = "SessionNotFound: no such session of the caller's", body = ServiceError),
    ))]
pub(crate) async fn revoke_session(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    Auth(me): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    // A malformed id cannot name one of the caller's sessions: 404, like any other.
    let id = path_uuid("id", &id).map_err(|_| Error::SessionNotFound)?;
    rotor.revoke_session(&me, id, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `page` and `size` query parameters (read by [`pagination`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct Pagination {
    /// 1-based page number
    #[param(minimum = 1, maximum = 1_000_000, default = 1, nullable = false)]
    page: Option<i64>,
    /// Items per page: PAGINATION_DEFAULT_SIZE when absent, at most PAGINATION_MAX_SIZE
    #[param(minimum = 1, nullable = false)]
    size: Option<i64>,
}

/// The `kind` filter of the security log.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct EventKind {
    /// Only events of this kind
    #[param(max_length = 64, nullable = false, pattern = "^[^\\x00]*$")]
    kind: Option<String>,
}

/// Reads `page` and `size` query parameters (1-based page; size capped by settings).
pub(crate) fn pagination(rotor: &Rotor, input: &mut Input) -> (u32, u32) {
    let s = rotor.settings();
    let page = input.integer("page", 1, 1, 1_000_000);
    let size = input.integer(
        "size",
        i64::from(s.pagination_default_size),
        1,
        i64::from(s.pagination_max_size),
    );
    (page as u32, size as u32)
}

/// The caller's security log
#[utoipa::path(get, path = "/v1/auth/events", tag = "sessions", operation_id = "listMyEvents", security(("bearer" = [])),
    params(Pagination, EventKind),
    responses(
        (status = 200, description = "A page of events, newest first", body = views::EventPage),
        (status = 401, response = NotAuthenticated),
        (status = 422, response = Invalid),
    ))]
pub(crate) async fn my_events(
    State(rotor): State<Arc<Rotor>>,
    Auth(me): Auth,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let mut input = Input::query(q.as_deref());
    let (page, size) = pagination(&rotor, &mut input);
    let kind = input.optional_string("kind", 64);
    input.finish()?;
    let filter = EventFilter {
        user_id: Some(me.user.id),
        kind,
    };
    let (items, total) = rotor.list_events(&filter, page, size).await?;
    Ok(views::body(&views::EventPage {
        items: items.iter().map(views::event).collect(),
        total,
        page,
        size,
    }))
}
