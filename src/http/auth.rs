//! `/v1/auth/*`: login, refresh (cookie and mobile), logout, me, change-password, and
//! rotor's session routes. The refresh and logout routes ignore `Authorization`.

use std::sync::Arc;

use axum::{
    extract::{Path, RawQuery, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
    Json, Router,
};
use serde_json::json;

use super::{
    cookies,
    extract::{Auth, Body, Client},
    validate::{path_uuid, Input},
    views, AppState,
};
use crate::{
    error::{Error, Result},
    service::{ClientContext, LoginOutcome, RefreshOutcome},
    storage::EventFilter,
    Rotor,
};

/// Routes that take credentials and are rate limited per client IP.
pub fn limited_router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/login-mobile", post(login_mobile))
        .route("/v1/auth/refresh-mobile", post(refresh_mobile))
        // It checks a password: charged to the same bucket as login.
        .route("/v1/auth/change-password", post(change_password))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/logout-all", post(logout_all))
        .route("/v1/auth/logout-others", post(logout_others))
        .route("/v1/auth/me", get(me))
        .route("/v1/auth/sessions", get(list_sessions))
        .route("/v1/auth/sessions/{id}", delete(revoke_session))
        .route("/v1/auth/events", get(my_events))
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

async fn login(
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
    let r = Json(json!({
        "access_token": out.access_token,
        "token_type": "bearer",
        "user": views::user(&out.user),
    }))
    .into_response();
    Ok(no_store(with_cookie(r, cookie)))
}

async fn login_mobile(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    body: Body,
) -> Result<Response> {
    let out = do_login(&rotor, &body, ctx).await?;
    Ok(no_store(
        Json(json!({
            "access_token": out.access_token,
            "refresh_token": out.refresh.raw.as_str(),
            "token_type": "bearer",
            "user": views::user(&out.user),
        }))
        .into_response(),
    ))
}

async fn refresh(
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
    let r =
        Json(json!({ "access_token": out.access_token, "token_type": "bearer" })).into_response();
    Ok(no_store(with_cookie(r, cookie)))
}

async fn refresh_mobile(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    body: Body,
) -> Result<Response> {
    let mut input = body.json()?;
    let presented = input.string("refresh_token", 1, usize::MAX);
    input.finish()?;
    let out = rotor.refresh(&presented.unwrap_or_default(), &ctx).await?;
    Ok(no_store(
        Json(json!({
            "access_token": out.access_token,
            "refresh_token": out.refresh.raw.as_str(),
            "token_type": "bearer",
        }))
        .into_response(),
    ))
}

async fn logout(
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

async fn logout_all(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    Auth(me): Auth,
) -> Result<Response> {
    let n = rotor.logout_all(&me, &ctx).await?;
    let r = Json(json!({ "revoked_sessions": n })).into_response();
    Ok(with_cookie(r, cookies::clear(rotor.settings())))
}

async fn logout_others(
    State(rotor): State<Arc<Rotor>>,
    Client(ctx): Client,
    Auth(me): Auth,
) -> Result<Json<serde_json::Value>> {
    let n = rotor.logout_others(&me, &ctx).await?;
    Ok(Json(json!({ "revoked_sessions": n })))
}

async fn me(Auth(me): Auth) -> Json<serde_json::Value> {
    Json(views::user(&me.user))
}

async fn change_password(
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

async fn list_sessions(
    State(rotor): State<Arc<Rotor>>,
    Auth(me): Auth,
) -> Result<Json<serde_json::Value>> {
    let sessions = rotor.list_sessions(&me).await?;
    let items: Vec<_> = sessions
        .iter()
        .map(|s| views::session(s, me.session_id))
        .collect();
    Ok(Json(json!({ "sessions": items })))
}

async fn revoke_session(
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

async fn my_events(
    State(rotor): State<Arc<Rotor>>,
    Auth(me): Auth,
    RawQuery(q): RawQuery,
) -> Result<Json<serde_json::Value>> {
    let mut input = Input::query(q.as_deref());
    let (page, size) = pagination(&rotor, &mut input);
    let kind = input.optional_string("kind", 64);
    input.finish()?;
    let filter = EventFilter {
        user_id: Some(me.user.id),
        kind,
    };
    let (items, total) = rotor.list_events(&filter, page, size).await?;
    Ok(Json(views::page(
        items.iter().map(views::event).collect(),
        total,
        page,
        size,
    )))
}
