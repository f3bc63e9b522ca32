//! The original `/v1` API, route by route (docs/behaviour.md), and the fixes of the
//! original backend's defects, driven over HTTP against the real server, once on
//! SQLite and once on PostgreSQL. One file per route group of `src/http/`: `auth`
//! (login, logout, me, change-password), `refresh` (the refresh routes), `users`,
//! `admin`, `meta` (health, OpenAPI, wire format), `errors` (422/401/404 shapes) and
//! `ratelimit`; the helpers they share are below, the suite's in `support`.
//!
//! Each test arranges users through the store (cheap: the factory's hash is computed
//! once per process), acts over HTTP, and asserts the answer and what the tables hold.
//! Time passes by advancing the app's manual clock, never by sleeping.

use rotor::domain::email::EmailKey;
use std::{collections::BTreeSet, sync::Arc};

use chrono::Duration;
use reqwest::{header, Response, StatusCode};
use rotor::{
    domain::token::hash_token,
    storage::{EventFilter, Role, User, UserPatch},
    testing::UserFactory,
};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    both,
    support::{
        body, count, live_tokens_in_family, refresh_cookie_value, refresh_set_cookie, Backend,
        TestApp,
    },
};

mod admin;
mod auth;
mod errors;
mod meta;
mod ratelimit;
mod refresh;
mod users;

const PASSWORD: &str = UserFactory::PASSWORD;

const USER_KEYS: [&str; 8] = [
    "id",
    "created_at",
    "updated_at",
    "email",
    "full_name",
    "is_active",
    "is_verified",
    "role",
];

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("expected an object, got {v}"))
        .keys()
        .cloned()
        .collect()
}

fn key_set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// RFC 3339, in UTC, spelled with a `Z`.
fn assert_utc_z(v: &Value, what: &str) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{what} = {s:?} is not RFC 3339: {e}"));
    assert!(s.ends_with('Z'), "{what} = {s:?} must end with Z");
}

/// Exactly the user keys, a UUID id, `Z` timestamps, and no password hash.
fn assert_user_json(u: &Value) {
    assert_eq!(keys(u), key_set(&USER_KEYS), "user JSON: {u}");
    Uuid::parse_str(u["id"].as_str().expect("id is a string")).expect("id is a UUID");
    assert_utc_z(&u["created_at"], "created_at");
    if !u["updated_at"].is_null() {
        assert_utc_z(&u["updated_at"], "updated_at");
    }
    assert!(u["email"].is_string());
    assert!(u["full_name"].is_string() || u["full_name"].is_null());
    assert!(u["is_active"].is_boolean() && u["is_verified"].is_boolean());
    assert!(
        u["role"] == "user" || u["role"] == "admin",
        "role: {}",
        u["role"]
    );
    assert_no_secret(&u.to_string());
}

fn assert_no_secret(text: &str) {
    assert!(
        !text.contains("$argon2")
            && !text.contains("hashed_password")
            && !text.contains("token_hash"),
        "a response leaked a hash: {text}"
    );
}

/// A 422 in the pydantic shape listing `loc` among its errors.
async fn expect_invalid(r: Response, loc: Value) -> Value {
    assert_eq!(
        r.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "expected 422 for {loc}"
    );
    let b = body(r).await;
    let detail = b["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("detail is a list: {b}"));
    assert!(!detail.is_empty());
    for e in detail {
        assert!(
            e["loc"].is_array() && e["msg"].is_string() && e["type"].is_string(),
            "{e}"
        );
    }
    assert!(
        detail.iter().any(|e| e["loc"] == loc),
        "{loc} not among {b}"
    );
    b
}

/// A service error: `{"detail": "<message>", "type": kind}` with `status`.
async fn expect_error(r: Response, status: StatusCode, kind: &str) -> Value {
    assert_eq!(r.status(), status, "expected {status} {kind}");
    let b = body(r).await;
    assert_eq!(keys(&b), key_set(&["detail", "type"]), "{b}");
    assert_eq!(b["type"], kind, "{b}");
    assert!(b["detail"].is_string(), "{b}");
    b
}

/// 401 `{"detail": "Not authenticated"}` with `WWW-Authenticate: Bearer`.
async fn expect_not_authenticated(r: Response, what: &str) {
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
    assert_eq!(
        r.headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok()),
        Some("Bearer"),
        "{what}"
    );
    assert_eq!(
        body(r).await,
        json!({ "detail": "Not authenticated" }),
        "{what}"
    );
}

/// The attributes of a `Set-Cookie` value after `name=value`, lowercased.
fn cookie_attrs(set_cookie: &str) -> BTreeSet<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

fn assert_strict_cookie(set_cookie: &str, max_age: i64, path: &str, secure: bool) {
    let attrs = cookie_attrs(set_cookie);
    for a in [
        "httponly".to_owned(),
        "samesite=strict".to_owned(),
        format!("max-age={max_age}"),
        format!("path={path}"),
    ] {
        assert!(attrs.contains(&a), "{a} missing from {set_cookie}");
    }
    assert_eq!(attrs.contains("secure"), secure, "Secure in {set_cookie}");
}

/// A logged-in user through the mobile route: (user, access, refresh).
async fn mobile_session(app: &TestApp) -> (User, String, String) {
    let user = app.new_user().await;
    let (access, refresh) = app.login_mobile(&user.email, PASSWORD).await;
    (user, access, refresh)
}

/// Logs in through the cookie route: (access, refresh cookie value).
async fn cookie_login(app: &TestApp, email: &str) -> (String, String) {
    let r = app.post_login(email, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK, "login {email}");
    let raw = refresh_cookie_value(&r).expect("refresh cookie");
    let b = body(r).await;
    (
        b["access_token"].as_str().expect("access_token").to_owned(),
        raw,
    )
}

async fn post_logout(app: &TestApp, cookie: Option<&str>) -> Response {
    let mut rb = app.client.post(app.url("/v1/auth/logout"));
    if let Some(c) = cookie {
        rb = rb.header(header::COOKIE, format!("refresh_token={c}"));
    }
    rb.send().await.expect("logout request")
}

async fn post_json(app: &TestApp, path: &str, access: Option<&str>, payload: &Value) -> Response {
    let mut rb = app.client.post(app.url(path)).json(payload);
    if let Some(a) = access {
        rb = rb.bearer_auth(a);
    }
    rb.send().await.expect("POST")
}

async fn patch_json(app: &TestApp, path: &str, access: Option<&str>, payload: &Value) -> Response {
    let mut rb = app.client.patch(app.url(path)).json(payload);
    if let Some(a) = access {
        rb = rb.bearer_auth(a);
    }
    rb.send().await.expect("PATCH")
}

async fn delete(app: &TestApp, path: &str, access: Option<&str>) -> Response {
    let mut rb = app.client.delete(app.url(path));
    if let Some(a) = access {
        rb = rb.bearer_auth(a);
    }
    rb.send().await.expect("DELETE")
}

async fn get(app: &TestApp, path: &str, access: Option<&str>) -> Response {
    let mut rb = app.client.get(app.url(path));
    if let Some(a) = access {
        rb = rb.bearer_auth(a);
    }
    rb.send().await.expect("GET")
}

async fn family_of(app: &TestApp, raw: &str) -> Uuid {
    app.store()
        .get_by_hash(&hash_token(raw))
        .await
        .expect("get_by_hash")
        .expect("the token is stored")
        .family_id
}

async fn tokens_in_family(app: &TestApp, family: Uuid) -> i64 {
    count(
        &app.db,
        &format!("SELECT count(*) FROM refresh_tokens WHERE family_id = '{family}'"),
    )
    .await
}

async fn live_of_user(app: &TestApp, user_id: Uuid) -> i64 {
    count(
        &app.db,
        &format!(
            "SELECT count(*) FROM refresh_tokens WHERE user_id = '{user_id}' AND NOT is_revoked"
        ),
    )
    .await
}

async fn count_users(app: &TestApp) -> i64 {
    count(&app.db, "SELECT count(*) FROM users").await
}

/// Fires `n` refresh-mobile requests for `raw` at once (spread over `apps`), released
/// together by a barrier; returns each (status, refresh_token if any).
async fn refresh_storm(
    apps: &[&TestApp],
    raw: &str,
    n: usize,
) -> Vec<(StatusCode, Option<String>)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let app = apps[i % apps.len()];
        let client = app.client.clone();
        let url = app.url("/v1/auth/refresh-mobile");
        let raw = raw.to_owned();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let r = client
                .post(url)
                .json(&json!({ "refresh_token": raw }))
                .send()
                .await
                .expect("refresh-mobile request");
            let status = r.status();
            let b: Value = r.json().await.expect("JSON body");
            (status, b["refresh_token"].as_str().map(str::to_owned))
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("refresh task"));
    }
    out
}
