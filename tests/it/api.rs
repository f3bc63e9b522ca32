//! The original `/v1` API, route by route (docs/behaviour.md), and the fixes of the
//! original backend's defects, driven
//! over HTTP against the real server, once on SQLite and once on PostgreSQL.
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
    storage::{EventFilter, Role, SeedRepository, User, UserPatch},
    testing::UserFactory,
};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    both,
    support::{count, refresh_cookie_value, refresh_set_cookie, Backend, TestApp},
};

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

async fn body(r: Response) -> Value {
    r.json().await.expect("a JSON body")
}

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

async fn new_user(app: &TestApp) -> User {
    UserFactory::create(app.store().as_ref())
        .await
        .expect("create user")
}

/// A logged-in user through the mobile route: (user, access, refresh).
async fn mobile_session(app: &TestApp) -> (User, String, String) {
    let user = new_user(app).await;
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

async fn live_in_family(app: &TestApp, family: Uuid) -> i64 {
    count(
        &app.db,
        &format!(
            "SELECT count(*) FROM refresh_tokens WHERE family_id = '{family}' AND NOT is_revoked"
        ),
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

// ---------------------------------------------------------------------------------
// POST /v1/auth/login
// ---------------------------------------------------------------------------------

both!(
    login_answers_a_bearer_token_the_user_and_a_strict_http_only_cookie,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = new_user(&app).await;

        let r = app.post_login(&user.email, PASSWORD).await;

        assert_eq!(r.status(), StatusCode::OK);
        let set_cookie = refresh_set_cookie(&r).expect("a refresh_token cookie");
        let raw = refresh_cookie_value(&r).expect("cookie value");
        let v = body(r).await;
        assert_eq!(keys(&v), key_set(&["access_token", "token_type", "user"]));
        assert_eq!(v["token_type"], "bearer");
        assert_user_json(&v["user"]);
        assert_eq!(v["user"]["id"], user.id.to_string());
        assert_eq!(v["user"]["email"], user.email);
        assert_strict_cookie(&set_cookie, 604_800, "/", false);
        assert_eq!(raw.len(), 43, "32 random bytes, base64url without padding");

        // Only the hash is stored: one live token for the user, findable by hash alone.
        assert_eq!(live_of_user(&app, user.id).await, 1);
        assert!(app
            .store()
            .get_valid_by_hash(&hash_token(&raw), app.now())
            .await
            .unwrap()
            .is_some());
        let by_raw = format!("SELECT count(*) FROM refresh_tokens WHERE token_hash = '{raw}'");
        assert_eq!(count(&app.db, &by_raw).await, 0);

        // The access token authenticates.
        let me = app
            .get_auth("/v1/auth/me", v["access_token"].as_str().unwrap())
            .await;
        assert_eq!(me.status(), StatusCode::OK);
        assert_eq!(body(me).await["id"], user.id.to_string());
    }
);

both!(
    login_cookie_is_secure_in_staging_and_production,
    |b| async move {
        for env in ["staging", "production"] {
            let app = TestApp::spawn_with(b, &[("ENVIRONMENT", env)]).await;
            let user = new_user(&app).await;

            let login = app.post_login(&user.email, PASSWORD).await;
            assert_eq!(login.status(), StatusCode::OK, "{env}");
            assert_strict_cookie(&refresh_set_cookie(&login).unwrap(), 604_800, "/", true);
            let raw = refresh_cookie_value(&login).unwrap();

            let refreshed = app.post_refresh_cookie(&raw).await;
            assert_eq!(refreshed.status(), StatusCode::OK, "{env}");
            assert_strict_cookie(&refresh_set_cookie(&refreshed).unwrap(), 604_800, "/", true);
            let raw = refresh_cookie_value(&refreshed).unwrap();

            let out = post_logout(&app, Some(&raw)).await;
            assert_eq!(out.status(), StatusCode::NO_CONTENT, "{env}");
            assert_strict_cookie(&refresh_set_cookie(&out).unwrap(), 0, "/", true);

            let health = body(app.client.get(app.url("/health")).send().await.unwrap()).await;
            assert_eq!(health["environment"], env);
        }
    }
);

both!(refresh_cookie_path_is_configurable, |b| async move {
    let app = TestApp::spawn_with(b, &[("REFRESH_COOKIE_PATH", "/v1/auth")]).await;
    let user = new_user(&app).await;

    let login = app.post_login(&user.email, PASSWORD).await;
    let raw = refresh_cookie_value(&login).unwrap();
    assert_strict_cookie(
        &refresh_set_cookie(&login).unwrap(),
        604_800,
        "/v1/auth",
        false,
    );

    let refreshed = app.post_refresh_cookie(&raw).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    assert_strict_cookie(
        &refresh_set_cookie(&refreshed).unwrap(),
        604_800,
        "/v1/auth",
        false,
    );
    let raw = refresh_cookie_value(&refreshed).unwrap();

    let out = post_logout(&app, Some(&raw)).await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_strict_cookie(&refresh_set_cookie(&out).unwrap(), 0, "/v1/auth", false);
});

both!(
    login_failures_are_identical_401s_for_unknown_email_wrong_password_and_inactive_user,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let store = app.store().as_ref();
        let active = new_user(&app).await;
        let inactive =
            UserFactory::create_with(store, &UserFactory::next_email(), Role::User, false)
                .await
                .unwrap();

        let unknown = app.post_login("nobody@test.com", PASSWORD).await;
        let wrong = app.post_login(&active.email, "WrongPass123").await;
        let disabled = app.post_login(&inactive.email, PASSWORD).await;
        let wrong_mobile = app
            .post_login_mobile(&active.email, "WrongPass123", &[])
            .await;

        let mut bodies = Vec::new();
        for (what, r) in [
            ("unknown", unknown),
            ("wrong", wrong),
            ("inactive", disabled),
            ("mobile", wrong_mobile),
        ] {
            assert!(
                refresh_set_cookie(&r).is_none(),
                "{what}: no cookie on failure"
            );
            bodies.push(expect_error(r, StatusCode::UNAUTHORIZED, "InvalidCredentials").await);
        }
        assert!(
            bodies.windows(2).all(|w| w[0] == w[1]),
            "identical bodies: {bodies:?}"
        );
        assert_eq!(
            count(&app.db, "SELECT count(*) FROM refresh_tokens").await,
            0,
            "no session was opened"
        );
    }
);

both!(
    login_without_its_fields_is_a_422_naming_each_field,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let form =
            |path: &str, pairs: &[(&str, &str)]| app.client.post(app.url(path)).form(pairs).send();

        let no_password = form("/v1/auth/login", &[("username", "a@test.com")])
            .await
            .unwrap();
        expect_invalid(no_password, json!(["body", "password"])).await;

        let empty = form("/v1/auth/login", &[]).await.unwrap();
        let b = expect_invalid(empty, json!(["body", "username"])).await;
        assert!(b["detail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["loc"] == json!(["body", "password"])));

        let mobile = form("/v1/auth/login-mobile", &[("password", "x")])
            .await
            .unwrap();
        expect_invalid(mobile, json!(["body", "username"])).await;
        assert_eq!(
            count(&app.db, "SELECT count(*) FROM refresh_tokens").await,
            0
        );
    }
);

both!(
    emails_are_case_insensitive_for_login_and_registration,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let registered = app.register("Mixed.Case@Example.com", "Password123").await;

        let login = app
            .post_login("mixed.case@EXAMPLE.COM", "Password123")
            .await;
        let again = post_json(
            &app,
            "/v1/users",
            None,
            &json!({ "email": "MIXED.CASE@example.com", "password": "Password123" }),
        )
        .await;

        assert_eq!(login.status(), StatusCode::OK);
        let user = body(login).await["user"].clone();
        assert_eq!(user["id"], registered["id"]);
        assert_eq!(user["email"], "Mixed.Case@Example.com", "stored as given");
        expect_error(again, StatusCode::CONFLICT, "EmailAlreadyExists").await;
        assert_eq!(count_users(&app).await, 1);
    }
);

// ---------------------------------------------------------------------------------
// POST /v1/auth/refresh (cookie)
// ---------------------------------------------------------------------------------

both!(
    refresh_rotates_the_cookie_and_answers_a_new_access_token,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = new_user(&app).await;
        let (_, first) = cookie_login(&app, &user.email).await;
        let family = family_of(&app, &first).await;

        let r = app.post_refresh_cookie(&first).await;

        assert_eq!(r.status(), StatusCode::OK);
        let set_cookie = refresh_set_cookie(&r).expect("a new cookie");
        assert_strict_cookie(&set_cookie, 604_800, "/", false);
        let second = refresh_cookie_value(&r).unwrap();
        assert_ne!(second, first);
        let v = body(r).await;
        assert_eq!(keys(&v), key_set(&["access_token", "token_type"]));
        assert_eq!(v["token_type"], "bearer");
        assert_eq!(
            app.get_auth("/v1/auth/me", v["access_token"].as_str().unwrap())
                .await
                .status(),
            StatusCode::OK
        );

        // The old token is revoked, its successor is the family's one live token.
        assert!(
            app.store()
                .get_by_hash(&hash_token(&first))
                .await
                .unwrap()
                .unwrap()
                .is_revoked
        );
        assert_eq!(family_of(&app, &second).await, family);
        assert_eq!(tokens_in_family(&app, family).await, 2);
        assert_eq!(live_in_family(&app, family).await, 1);

        // And the successor rotates in turn.
        assert_eq!(
            app.post_refresh_cookie(&second).await.status(),
            StatusCode::OK
        );
        assert_eq!(tokens_in_family(&app, family).await, 3);
    }
);

both!(
    refresh_without_a_cookie_is_401_refresh_token_required,
    |b| async move {
        let app = TestApp::spawn(b).await;

        let r = app
            .client
            .post(app.url("/v1/auth/refresh"))
            .send()
            .await
            .unwrap();

        let v = expect_error(r, StatusCode::UNAUTHORIZED, "TokenError").await;
        assert_eq!(v["detail"], "Refresh token required");
    }
);

both!(refresh_with_an_unknown_token_is_401, |b| async move {
    let app = TestApp::spawn(b).await;
    let never_issued = rotor::domain::token::RawToken::generate();

    for presented in [never_issued.as_str(), "garbage", "a%20b"] {
        let r = app.post_refresh_cookie(presented).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{presented}");
        assert!(refresh_set_cookie(&r).is_none());
        assert!(body(r).await["detail"].is_string());
    }
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM refresh_tokens").await,
        0
    );
});

both!(refresh_after_the_token_expired_is_401, |b| async move {
    let app = TestApp::spawn(b).await;
    let user = new_user(&app).await;
    let (_, raw) = cookie_login(&app, &user.email).await;
    let family = family_of(&app, &raw).await;

    app.clock.advance(Duration::days(7) + Duration::seconds(1));
    let r = app.post_refresh_cookie(&raw).await;

    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(body(r).await["detail"].is_string());
    assert_eq!(
        tokens_in_family(&app, family).await,
        1,
        "no successor was issued"
    );
});

both!(
    refresh_with_a_revoked_token_is_401_token_revoked,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = new_user(&app).await;
        let (_, raw) = cookie_login(&app, &user.email).await;
        let token = app
            .store()
            .get_by_hash(&hash_token(&raw))
            .await
            .unwrap()
            .unwrap();
        app.store().revoke_token(token.id, app.now()).await.unwrap();

        app.clock.advance(Duration::minutes(1));
        let r = app.post_refresh_cookie(&raw).await;

        expect_error(r, StatusCode::UNAUTHORIZED, "TokenRevokedError").await;
        assert_eq!(
            tokens_in_family(&app, token.family_id).await,
            1,
            "no successor was issued"
        );
        assert_eq!(live_in_family(&app, token.family_id).await, 0);
    }
);

both!(
    refresh_fails_once_the_user_is_deleted_or_deactivated,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let gone = new_user(&app).await;
        let disabled = new_user(&app).await;
        let (_, gone_raw) = cookie_login(&app, &gone.email).await;
        let (_, disabled_raw) = cookie_login(&app, &disabled.email).await;
        let disabled_family = family_of(&app, &disabled_raw).await;

        assert!(app.store().delete_user(gone.id).await.unwrap());
        let patch = UserPatch {
            is_active: Some(false),
            ..UserPatch::default()
        };
        app.store()
            .update_user(disabled.id, &patch, app.now())
            .await
            .unwrap();
        let gone_r = app.post_refresh_cookie(&gone_raw).await;
        let disabled_r = app.post_refresh_cookie(&disabled_raw).await;

        assert_eq!(gone_r.status(), StatusCode::UNAUTHORIZED);
        assert!(body(gone_r).await["detail"].is_string());
        assert_eq!(disabled_r.status(), StatusCode::UNAUTHORIZED);
        assert!(refresh_set_cookie(&disabled_r).is_none());
        assert!(body(disabled_r).await["detail"].is_string());
        assert_eq!(
            count(
                &app.db,
                &format!(
                    "SELECT count(*) FROM refresh_tokens WHERE user_id = '{}'",
                    gone.id
                )
            )
            .await,
            0
        );
        assert_eq!(
            tokens_in_family(&app, disabled_family).await,
            1,
            "no successor for an inactive user"
        );
    }
);

both!(
    refresh_and_logout_ignore_authorization_headers,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = new_user(&app).await;
        let (access, raw) = cookie_login(&app, &user.email).await;
        let refresh = |cookie: String, bearer: String| {
            app.client
                .post(app.url("/v1/auth/refresh"))
                .header(header::COOKIE, format!("refresh_token={cookie}"))
                .bearer_auth(bearer)
                .send()
        };

        let garbage = refresh(raw, "not-a-jwt".into()).await.unwrap();
        assert_eq!(
            garbage.status(),
            StatusCode::OK,
            "a garbage bearer is ignored"
        );
        let raw = refresh_cookie_value(&garbage).unwrap();
        let valid = refresh(raw, access.clone()).await.unwrap();
        assert_eq!(valid.status(), StatusCode::OK, "a valid bearer is ignored");
        let raw = refresh_cookie_value(&valid).unwrap();
        let mobile = app
            .client
            .post(app.url("/v1/auth/refresh-mobile"))
            .bearer_auth("garbage")
            .json(&json!({ "refresh_token": raw }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            mobile.status(),
            StatusCode::OK,
            "refresh-mobile ignores it too"
        );
        let raw = body(mobile).await["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();

        let out = app
            .client
            .post(app.url("/v1/auth/logout"))
            .header(header::COOKIE, format!("refresh_token={raw}"))
            .header(header::AUTHORIZATION, "Bearer garbage")
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), StatusCode::NO_CONTENT);
        assert_eq!(live_of_user(&app, user.id).await, 0);
    }
);

// ---------------------------------------------------------------------------------
// Mobile routes
// ---------------------------------------------------------------------------------

both!(
    login_mobile_answers_both_tokens_and_the_user_without_a_cookie,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = new_user(&app).await;

        let r = app.post_login_mobile(&user.email, PASSWORD, &[]).await;

        assert_eq!(r.status(), StatusCode::OK);
        assert!(refresh_set_cookie(&r).is_none());
        let v = body(r).await;
        assert_eq!(
            keys(&v),
            key_set(&["access_token", "refresh_token", "token_type", "user"])
        );
        assert_eq!(v["token_type"], "bearer");
        assert_user_json(&v["user"]);
        let raw = v["refresh_token"].as_str().unwrap();
        assert_eq!(raw.len(), 43);
        assert!(app
            .store()
            .get_valid_by_hash(&hash_token(raw), app.now())
            .await
            .unwrap()
            .is_some());
        assert_eq!(
            app.get_auth("/v1/auth/me", v["access_token"].as_str().unwrap())
                .await
                .status(),
            StatusCode::OK
        );
    }
);

both!(
    refresh_mobile_rotates_and_answers_both_tokens,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (_, _, first) = mobile_session(&app).await;
        let family = family_of(&app, &first).await;

        let r = app.post_refresh_mobile(&first).await;

        assert_eq!(r.status(), StatusCode::OK);
        assert!(refresh_set_cookie(&r).is_none());
        let v = body(r).await;
        assert_eq!(
            keys(&v),
            key_set(&["access_token", "refresh_token", "token_type"])
        );
        assert_eq!(v["token_type"], "bearer");
        let second = v["refresh_token"].as_str().unwrap();
        assert_ne!(second, first);
        assert_eq!(family_of(&app, second).await, family);
        assert_eq!(live_in_family(&app, family).await, 1);
        assert!(app
            .store()
            .get_valid_by_hash(&hash_token(second), app.now())
            .await
            .unwrap()
            .is_some());
        assert_eq!(
            app.get_auth("/v1/auth/me", v["access_token"].as_str().unwrap())
                .await
                .status(),
            StatusCode::OK
        );
    }
);

both!(
    refresh_mobile_rejects_a_missing_field_or_bad_json_with_422,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let send_raw = |body: &'static str| {
            app.client
                .post(app.url("/v1/auth/refresh-mobile"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
        };

        expect_invalid(
            send_raw("{}").await.unwrap(),
            json!(["body", "refresh_token"]),
        )
        .await;
        expect_invalid(
            send_raw(r#"{"refresh_token": 5}"#).await.unwrap(),
            json!(["body", "refresh_token"]),
        )
        .await;
        let bad = send_raw(r#"{"refresh_token": "#).await.unwrap();
        assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let v = body(bad).await;
        assert_eq!(v["detail"][0]["loc"][0], "body");
        assert!(v["detail"][0]["msg"].is_string());

        let unknown = app.post_refresh_mobile("never-issued").await;
        assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    }
);

// ---------------------------------------------------------------------------------
// Logout
// ---------------------------------------------------------------------------------

both!(
    logout_clears_the_cookie_and_ends_the_session,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = new_user(&app).await;
        let (_, raw) = cookie_login(&app, &user.email).await;
        let (_, other) = cookie_login(&app, &user.email).await;
        let family = family_of(&app, &raw).await;

        let r = post_logout(&app, Some(&raw)).await;

        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let cleared = refresh_set_cookie(&r).expect("the cookie is cleared");
        assert!(cleared.starts_with("refresh_token=;"), "{cleared}");
        assert_strict_cookie(&cleared, 0, "/", false);
        assert_eq!(live_in_family(&app, family).await, 0);
        assert_eq!(
            app.post_refresh_cookie(&raw).await.status(),
            StatusCode::UNAUTHORIZED
        );
        // Only that session ended.
        assert_eq!(
            app.post_refresh_cookie(&other).await.status(),
            StatusCode::OK
        );
    }
);

both!(logout_without_a_cookie_is_401, |b| async move {
    let app = TestApp::spawn(b).await;

    let r = post_logout(&app, None).await;

    let v = expect_error(r, StatusCode::UNAUTHORIZED, "TokenError").await;
    assert_eq!(v["detail"], "Refresh token required");
});

both!(
    logout_all_ends_every_session_and_kills_access_tokens,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = new_user(&app).await;
        let mut sessions = Vec::new();
        for _ in 0..3 {
            sessions.push(app.login_mobile(&user.email, PASSWORD).await);
        }
        let (_, _, bystander) = mobile_session(&app).await;
        let access = sessions[0].0.clone();

        let r = app.post_auth("/v1/auth/logout-all", &access).await;

        assert_eq!(r.status(), StatusCode::OK);
        assert_strict_cookie(
            &refresh_set_cookie(&r).expect("the cookie is cleared"),
            0,
            "/",
            false,
        );
        assert_eq!(body(r).await, json!({ "revoked_sessions": 3 }));
        assert_eq!(live_of_user(&app, user.id).await, 0);
        for (_, refresh) in &sessions {
            assert_eq!(
                app.post_refresh_mobile(refresh).await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
        expect_not_authenticated(
            app.get_auth("/v1/auth/me", &access).await,
            "old access token",
        )
        .await;
        assert_eq!(
            app.post_refresh_mobile(&bystander).await.status(),
            StatusCode::OK,
            "other users keep theirs"
        );

        let anonymous = app
            .client
            .post(app.url("/v1/auth/logout-all"))
            .send()
            .await
            .unwrap();
        expect_not_authenticated(anonymous, "logout-all without bearer").await;
    }
);

// ---------------------------------------------------------------------------------
// Me and change-password
// ---------------------------------------------------------------------------------

both!(me_returns_the_caller, |b| async move {
    let app = TestApp::spawn(b).await;
    let (user, access, _) = mobile_session(&app).await;

    let r = app.get_auth("/v1/auth/me", &access).await;

    assert_eq!(r.status(), StatusCode::OK);
    let v = body(r).await;
    assert_user_json(&v);
    assert_eq!(v["id"], user.id.to_string());
    assert_eq!(v["email"], user.email);
    assert_eq!(v["full_name"], "Test User");
    assert_eq!(v["role"], "user");
    expect_not_authenticated(get(&app, "/v1/auth/me", None).await, "me without bearer").await;
});

both!(change_password_sets_the_new_password, |b| async move {
    let app = TestApp::spawn(b).await;
    let (user, access, _) = mobile_session(&app).await;

    let r = post_json(
        &app,
        "/v1/auth/change-password",
        Some(&access),
        &json!({ "current_password": PASSWORD, "new_password": "BrandNew456" }),
    )
    .await;

    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let stored = app.store().get_user(user.id).await.unwrap().unwrap();
    assert_ne!(stored.hashed_password, user.hashed_password);
    assert!(stored.hashed_password.starts_with("$argon2id$"));
    assert_eq!(stored.token_version, user.token_version + 1);
    expect_error(
        app.post_login(&user.email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "InvalidCredentials",
    )
    .await;
    assert_eq!(
        app.post_login(&user.email, "BrandNew456").await.status(),
        StatusCode::OK
    );
});

both!(
    change_password_rejects_a_wrong_current_password_and_an_invalid_new_one,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (user, access, _) = mobile_session(&app).await;
        let change = |payload: Value| {
            let (app, access) = (&app, &access);
            async move { post_json(app, "/v1/auth/change-password", Some(access), &payload).await }
        };

        let wrong =
            change(json!({ "current_password": "NotMine123", "new_password": "BrandNew456" }))
                .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert!(body(wrong).await["detail"].is_string());
        let short = change(json!({ "current_password": PASSWORD, "new_password": "Short1" })).await;
        expect_invalid(short, json!(["body", "new_password"])).await;
        let long =
            change(json!({ "current_password": PASSWORD, "new_password": "A1".repeat(65) })).await;
        expect_invalid(long, json!(["body", "new_password"])).await;
        let missing = change(json!({ "new_password": "BrandNew456" })).await;
        expect_invalid(missing, json!(["body", "current_password"])).await;
        let anonymous = post_json(
            &app,
            "/v1/auth/change-password",
            None,
            &json!({ "current_password": PASSWORD, "new_password": "BrandNew456" }),
        )
        .await;
        expect_not_authenticated(anonymous, "change-password without bearer").await;

        let stored = app.store().get_user(user.id).await.unwrap().unwrap();
        assert_eq!(
            stored.hashed_password, user.hashed_password,
            "the password is unchanged"
        );
        assert_eq!(stored.token_version, user.token_version);
    }
);

// ---------------------------------------------------------------------------------
// /v1/users
// ---------------------------------------------------------------------------------

both!(
    registration_creates_an_active_unverified_user,
    |b| async move {
        let app = TestApp::spawn(b).await;

        let r = post_json(
        &app,
        "/v1/users",
        None,
        &json!({ "email": "New.User@Example.com", "password": "Password123", "full_name": "New User" }),
    )
    .await;
        let bare = post_json(
            &app,
            "/v1/users",
            None,
            &json!({ "email": "bare@example.com", "password": "Password123" }),
        )
        .await;

        assert_eq!(r.status(), StatusCode::CREATED);
        let v = body(r).await;
        assert_user_json(&v);
        assert_eq!(v["email"], "New.User@Example.com");
        assert_eq!(v["full_name"], "New User");
        assert_eq!(
            (
                v["is_active"].clone(),
                v["is_verified"].clone(),
                v["role"].clone()
            ),
            (json!(true), json!(false), json!("user"))
        );
        let id = Uuid::parse_str(v["id"].as_str().unwrap()).unwrap();
        let stored = app.store().get_user(id).await.unwrap().expect("stored");
        assert!(
            stored
                .hashed_password
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            stored.hashed_password
        );
        assert_eq!(stored.token_version, 0);
        assert_eq!(bare.status(), StatusCode::CREATED);
        assert_eq!(body(bare).await["full_name"], Value::Null);
        assert_eq!(count_users(&app).await, 2);
    }
);

both!(
    registration_rejects_a_taken_email_in_any_case_with_409,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let existing = new_user(&app).await;

        let same = post_json(
            &app,
            "/v1/users",
            None,
            &json!({ "email": existing.email, "password": "Password123" }),
        )
        .await;
        let upper = post_json(
            &app,
            "/v1/users",
            None,
            &json!({ "email": existing.email.to_uppercase(), "password": "Password123" }),
        )
        .await;

        expect_error(same, StatusCode::CONFLICT, "EmailAlreadyExists").await;
        expect_error(upper, StatusCode::CONFLICT, "EmailAlreadyExists").await;
        assert_eq!(count_users(&app).await, 1);
    }
);

both!(
    registration_rejects_weak_passwords_and_invalid_emails_with_422,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let register = |email: &str, password: &str| {
            let payload = json!({ "email": email, "password": password });
            let app = &app;
            async move { post_json(app, "/v1/users", None, &payload).await }
        };

        for weak in [
            "password123",
            "PasswordOnly",
            "Pass1",
            &format!("A1{}", "a".repeat(127)),
        ] {
            expect_invalid(
                register("weak@example.com", weak).await,
                json!(["body", "password"]),
            )
            .await;
        }
        for bad in ["not-an-email", "a@", "@example.com", ""] {
            expect_invalid(register(bad, "Password123").await, json!(["body", "email"])).await;
        }
        let missing = post_json(
            &app,
            "/v1/users",
            None,
            &json!({ "password": "Password123" }),
        )
        .await;
        expect_invalid(missing, json!(["body", "email"])).await;
        assert_eq!(count_users(&app).await, 0);
    }
);

// The exact 422 bodies, byte for byte: FastAPI with pydantic v2 gives each item
// `type`, `loc`, `msg`, `input` and, when the error has parameters, `ctx`, in that
// order (`url` is dropped by FastAPI).
both!(
    validation_errors_are_pydantic_v2_items_byte_for_byte,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let raw = |path: &'static str, body: &'static str| {
            app.client
                .post(app.url(path))
                .header(header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
        };
        let bad_uuid = Uuid::parse_str("not-a-uuid").unwrap_err().to_string();
        let (_, access, _) = mobile_session(&app).await;
        let cases: Vec<(&str, Response, String)> = vec![
            (
                "missing JSON field: the input is the whole object",
                raw("/v1/users", r#"{"password": "Password123"}"#).await.unwrap(),
                r#"{"type":"missing","loc":["body","email"],"msg":"Field required","input":{"password":"Password123"}}"#.into(),
            ),
            (
                "password too short",
                raw("/v1/users", r#"{"email": "ada@example.com", "password": "Pass1"}"#).await.unwrap(),
                r#"{"type":"string_too_short","loc":["body","password"],"msg":"String should have at least 8 characters","input":"Pass1","ctx":{"min_length":8}}"#.into(),
            ),
            (
                "password too long",
                post_json(&app, "/v1/users", None, &json!({"email": "ada@example.com", "password": format!("A1{}", "a".repeat(127))})).await,
                format!(r#"{{"type":"string_too_long","loc":["body","password"],"msg":"String should have at most 128 characters","input":"A1{}","ctx":{{"max_length":128}}}}"#, "a".repeat(127)),
            ),
            (
                "validator's ValueError",
                raw("/v1/users", r#"{"email": "ada@example.com", "password": "password123"}"#).await.unwrap(),
                r#"{"type":"value_error","loc":["body","password"],"msg":"Value error, Password must contain at least one uppercase letter","input":"password123","ctx":{"error":{}}}"#.into(),
            ),
            (
                "invalid email",
                raw("/v1/users", r#"{"email": "not-an-email", "password": "Password123"}"#).await.unwrap(),
                r#"{"type":"value_error","loc":["body","email"],"msg":"value is not a valid email address: An email address must have an @-sign.","input":"not-an-email","ctx":{"reason":"An email address must have an @-sign."}}"#.into(),
            ),
            (
                "wrong type",
                raw("/v1/auth/refresh-mobile", r#"{"refresh_token": 5}"#).await.unwrap(),
                r#"{"type":"string_type","loc":["body","refresh_token"],"msg":"Input should be a valid string","input":5}"#.into(),
            ),
            (
                "bad JSON: Python's offset and message",
                raw("/v1/auth/refresh-mobile", r#"{"refresh_token": "#).await.unwrap(),
                r#"{"type":"json_invalid","loc":["body",18],"msg":"JSON decode error","input":{},"ctx":{"error":"Expecting value"}}"#.into(),
            ),
            (
                "not an object",
                raw("/v1/auth/refresh-mobile", "[1]").await.unwrap(),
                r#"{"type":"model_attributes_type","loc":["body"],"msg":"Input should be a valid dictionary or object to extract fields from","input":[1]}"#.into(),
            ),
            (
                "missing form field: the input is null",
                app.client.post(app.url("/v1/auth/login")).form(&[("username", "ada@example.com")]).send().await.unwrap(),
                r#"{"type":"missing","loc":["body","password"],"msg":"Field required","input":null}"#.into(),
            ),
            (
                "path parameter that is not a UUID",
                get(&app, "/v1/users/not-a-uuid", Some(&access)).await,
                format!(r#"{{"type":"uuid_parsing","loc":["path","id"],"msg":"Input should be a valid UUID, {bad_uuid}","input":"not-a-uuid","ctx":{{"error":"{bad_uuid}"}}}}"#),
            ),
        ];
        for (what, r, item) in cases {
            assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{what}");
            let text = r.text().await.unwrap();
            assert_eq!(text, format!(r#"{{"detail":[{item}]}}"#), "{what}");
        }
        assert_eq!(count_users(&app).await, 1, "only the session's user");
    }
);

both!(
    get_user_by_id_needs_a_bearer_and_a_known_well_formed_id,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (_, access, _) = mobile_session(&app).await;
        let other = new_user(&app).await;
        let path = format!("/v1/users/{}", other.id);

        let found = get(&app, &path, Some(&access)).await;
        let anonymous = get(&app, &path, None).await;
        let unknown = get(
            &app,
            &format!("/v1/users/{}", Uuid::now_v7()),
            Some(&access),
        )
        .await;
        let malformed = get(&app, "/v1/users/not-a-uuid", Some(&access)).await;

        assert_eq!(found.status(), StatusCode::OK);
        let v = body(found).await;
        assert_user_json(&v);
        assert_eq!(v["id"], other.id.to_string());
        assert_eq!(v["email"], other.email);
        expect_not_authenticated(anonymous, "users/{id} without bearer").await;
        expect_error(unknown, StatusCode::NOT_FOUND, "UserNotFound").await;
        expect_invalid(malformed, json!(["path", "id"])).await;
    }
);

both!(
    patch_me_sets_clears_or_keeps_the_full_name,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (user, access, _) = mobile_session(&app).await;
        let patch = |payload: Value| {
            let (app, access) = (&app, &access);
            async move { patch_json(app, "/v1/users/me", Some(access), &payload).await }
        };

        let set = patch(json!({ "full_name": "Ada Lovelace" })).await;
        assert_eq!(set.status(), StatusCode::OK);
        let v = body(set).await;
        assert_user_json(&v);
        assert_eq!(v["full_name"], "Ada Lovelace");
        assert_utc_z(&v["updated_at"], "updated_at after an update");

        let absent = patch(json!({})).await;
        assert_eq!(absent.status(), StatusCode::OK);
        assert_eq!(
            body(absent).await["full_name"],
            "Ada Lovelace",
            "absent leaves it unchanged"
        );
        assert_eq!(
            app.store()
                .get_user(user.id)
                .await
                .unwrap()
                .unwrap()
                .full_name
                .as_deref(),
            Some("Ada Lovelace")
        );

        let cleared = patch(json!({ "full_name": null })).await;
        assert_eq!(cleared.status(), StatusCode::OK);
        assert_eq!(
            body(cleared).await["full_name"],
            Value::Null,
            "explicit null clears it"
        );
        assert_eq!(
            app.store()
                .get_user(user.id)
                .await
                .unwrap()
                .unwrap()
                .full_name,
            None
        );

        // Only full_name is editable here: no escalation through extra fields.
        let sneaky = patch(json!({ "role": "admin", "is_active": false, "is_verified": true, "email": "x@example.com" })).await;
        assert_eq!(sneaky.status(), StatusCode::OK);
        let stored = app.store().get_user(user.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.role, stored.is_active, stored.email.as_str()),
            (Role::User, true, user.email.as_str())
        );

        expect_invalid(
            patch(json!({ "full_name": 5 })).await,
            json!(["body", "full_name"]),
        )
        .await;
        expect_invalid(
            patch(json!({ "full_name": "x".repeat(256) })).await,
            json!(["body", "full_name"]),
        )
        .await;
        let anonymous = patch_json(
            &app,
            "/v1/users/me",
            None,
            &json!({ "full_name": "Nobody" }),
        )
        .await;
        expect_not_authenticated(anonymous, "PATCH users/me without bearer").await;
        assert_eq!(
            app.store()
                .get_user(user.id)
                .await
                .unwrap()
                .unwrap()
                .full_name,
            None
        );
    }
);

// ---------------------------------------------------------------------------------
// /v1/admin/users
// ---------------------------------------------------------------------------------

both!(admin_lists_users_page_by_page, |b| async move {
    let app = TestApp::spawn(b).await;
    let (_, admin) = app.admin_session().await;
    for _ in 0..4 {
        new_user(&app).await;
    }

    let all = get(&app, "/v1/admin/users", Some(&admin)).await;
    assert_eq!(all.status(), StatusCode::OK);
    let v = body(all).await;
    assert_eq!(keys(&v), key_set(&["items", "total", "page", "size"]));
    assert_eq!(
        (v["total"].clone(), v["page"].clone(), v["size"].clone()),
        (json!(5), json!(1), json!(20))
    );
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    items.iter().for_each(assert_user_json);

    let mut seen = BTreeSet::new();
    for (page, expected) in [(1, 2), (2, 2), (3, 1)] {
        let r = get(
            &app,
            &format!("/v1/admin/users?page={page}&size=2"),
            Some(&admin),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        let v = body(r).await;
        assert_eq!(
            (v["total"].clone(), v["page"].clone(), v["size"].clone()),
            (json!(5), json!(page), json!(2))
        );
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), expected, "page {page}");
        seen.extend(items.iter().map(|u| u["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(seen.len(), 5, "pages do not overlap");

    assert_eq!(
        get(&app, "/v1/admin/users?size=100", Some(&admin))
            .await
            .status(),
        StatusCode::OK
    );
    expect_invalid(
        get(&app, "/v1/admin/users?size=101", Some(&admin)).await,
        json!(["query", "size"]),
    )
    .await;
    expect_invalid(
        get(&app, "/v1/admin/users?size=0", Some(&admin)).await,
        json!(["query", "size"]),
    )
    .await;
    expect_invalid(
        get(&app, "/v1/admin/users?page=0", Some(&admin)).await,
        json!(["query", "page"]),
    )
    .await;
    expect_invalid(
        get(&app, "/v1/admin/users?page=x", Some(&admin)).await,
        json!(["query", "page"]),
    )
    .await;
});

both!(
    admin_creates_users_honouring_role_and_flags,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (_, admin) = app.admin_session().await;
        let create = |payload: Value| {
            let (app, admin) = (&app, &admin);
            async move { post_json(app, "/v1/admin/users", Some(admin), &payload).await }
        };

        let full = create(json!({
            "email": "staff@example.com", "password": "password1", "full_name": "Staff",
            "role": "admin", "is_active": false, "is_verified": true,
        }))
        .await;
        assert_eq!(full.status(), StatusCode::CREATED);
        let v = body(full).await;
        assert_user_json(&v);
        assert_eq!(
            (
                v["role"].clone(),
                v["is_active"].clone(),
                v["is_verified"].clone(),
                v["full_name"].clone()
            ),
            (json!("admin"), json!(false), json!(true), json!("Staff"))
        );
        let stored = app
            .store()
            .get_user_by_email(&EmailKey::of("staff@example.com"))
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(
            (stored.role, stored.is_active, stored.is_verified),
            (Role::Admin, false, true)
        );

        let minimal =
            create(json!({ "email": "plain@example.com", "password": "password1" })).await;
        assert_eq!(minimal.status(), StatusCode::CREATED);
        let v = body(minimal).await;
        assert_eq!(
            (
                v["role"].clone(),
                v["is_active"].clone(),
                v["is_verified"].clone()
            ),
            (json!("user"), json!(true), json!(false))
        );

        expect_error(
            create(json!({ "email": "STAFF@example.com", "password": "password1" })).await,
            StatusCode::CONFLICT,
            "EmailAlreadyExists",
        )
        .await;
        expect_invalid(
            create(json!({ "email": "x@example.com", "password": "short" })).await,
            json!(["body", "password"]),
        )
        .await;
        expect_invalid(
            create(json!({ "email": "x@example.com", "password": "password1", "role": "root" }))
                .await,
            json!(["body", "role"]),
        )
        .await;
        assert_eq!(count_users(&app).await, 3);

        // The inactive account cannot log in.
        expect_error(
            app.post_login("staff@example.com", "password1").await,
            StatusCode::UNAUTHORIZED,
            "InvalidCredentials",
        )
        .await;
    }
);

both!(admin_gets_patches_and_deletes_users, |b| async move {
    let app = TestApp::spawn(b).await;
    let (_, admin) = app.admin_session().await;
    let target = new_user(&app).await;
    let other = new_user(&app).await;
    let (target_access, target_refresh) = app.login_mobile(&target.email, PASSWORD).await;
    let path = format!("/v1/admin/users/{}", target.id);

    let got = get(&app, &path, Some(&admin)).await;
    assert_eq!(got.status(), StatusCode::OK);
    let v = body(got).await;
    assert_user_json(&v);
    assert_eq!(v["email"], target.email);

    let patched = patch_json(
        &app,
        &path,
        Some(&admin),
        &json!({ "full_name": "Renamed", "is_verified": false, "role": "admin" }),
    )
    .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let v = body(patched).await;
    assert_user_json(&v);
    assert_eq!(
        (
            v["full_name"].clone(),
            v["is_verified"].clone(),
            v["role"].clone()
        ),
        (json!("Renamed"), json!(false), json!("admin"))
    );
    let stored = app.store().get_user(target.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.full_name.as_deref(), stored.is_verified, stored.role),
        (Some("Renamed"), false, Role::Admin)
    );

    let taken = patch_json(
        &app,
        &path,
        Some(&admin),
        &json!({ "email": other.email.to_uppercase() }),
    )
    .await;
    expect_error(taken, StatusCode::CONFLICT, "EmailAlreadyExists").await;
    assert_eq!(
        app.store()
            .get_user(target.id)
            .await
            .unwrap()
            .unwrap()
            .email,
        target.email
    );

    let unknown = format!("/v1/admin/users/{}", Uuid::now_v7());
    expect_error(
        get(&app, &unknown, Some(&admin)).await,
        StatusCode::NOT_FOUND,
        "UserNotFound",
    )
    .await;
    expect_error(
        patch_json(&app, &unknown, Some(&admin), &json!({ "full_name": "x" })).await,
        StatusCode::NOT_FOUND,
        "UserNotFound",
    )
    .await;
    expect_error(
        delete(&app, &unknown, Some(&admin)).await,
        StatusCode::NOT_FOUND,
        "UserNotFound",
    )
    .await;
    expect_invalid(
        get(&app, "/v1/admin/users/nope", Some(&admin)).await,
        json!(["path", "id"]),
    )
    .await;

    let deleted = delete(&app, &path, Some(&admin)).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    expect_error(
        get(&app, &path, Some(&admin)).await,
        StatusCode::NOT_FOUND,
        "UserNotFound",
    )
    .await;
    assert!(app.store().get_user(target.id).await.unwrap().is_none());
    assert_eq!(
        count(
            &app.db,
            &format!(
                "SELECT count(*) FROM refresh_tokens WHERE user_id = '{}'",
                target.id
            )
        )
        .await,
        0
    );
    assert_eq!(
        app.post_refresh_mobile(&target_refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    expect_not_authenticated(
        app.get_auth("/v1/auth/me", &target_access).await,
        "deleted user's access token",
    )
    .await;
    assert_eq!(count_users(&app).await, 2);
});

both!(
    admin_deactivating_a_user_ends_their_sessions,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (_, admin) = app.admin_session().await;
        let (user, access, refresh) = mobile_session(&app).await;

        let r = patch_json(
            &app,
            &format!("/v1/admin/users/{}", user.id),
            Some(&admin),
            &json!({ "is_active": false }),
        )
        .await;

        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await["is_active"], false);
        assert_eq!(live_of_user(&app, user.id).await, 0);
        expect_not_authenticated(
            app.get_auth("/v1/auth/me", &access).await,
            "deactivated user's access token",
        )
        .await;
        assert_eq!(
            app.post_refresh_mobile(&refresh).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
);

both!(
    admin_routes_are_403_for_users_and_401_without_a_bearer,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (user, access, _) = mobile_session(&app).await;
        let by_id = format!("/v1/admin/users/{}", user.id);
        let create = json!({ "email": "x@example.com", "password": "password1" });

        for bearer in [Some(access.as_str()), None] {
            let responses = [
                ("list", get(&app, "/v1/admin/users", bearer).await),
                (
                    "create",
                    post_json(&app, "/v1/admin/users", bearer, &create).await,
                ),
                ("get", get(&app, &by_id, bearer).await),
                (
                    "patch",
                    patch_json(&app, &by_id, bearer, &json!({ "role": "admin" })).await,
                ),
                ("delete", delete(&app, &by_id, bearer).await),
            ];
            for (what, r) in responses {
                match bearer {
                    Some(_) => {
                        expect_error(r, StatusCode::FORBIDDEN, "PermissionDenied").await;
                    }
                    None => expect_not_authenticated(r, what).await,
                }
            }
        }
        let stored = app.store().get_user(user.id).await.unwrap().unwrap();
        assert_eq!(stored.role, Role::User, "nothing changed");
        assert_eq!(count_users(&app).await, 1);
    }
);

both!(admin_email_registers_as_admin_in_any_case, |b| async move {
    let app = TestApp::spawn_with(b, &[("ADMIN_EMAIL", "Boss@Example.com")]).await;

    let boss = app.register("boss@EXAMPLE.com", "Password123").await;
    let worker = app.register("worker@example.com", "Password123").await;

    assert_eq!(boss["role"], "admin");
    assert_eq!(worker["role"], "user");
    let (access, _) = app.login_mobile("BOSS@example.com", "Password123").await;
    assert_eq!(
        get(&app, "/v1/admin/users", Some(&access)).await.status(),
        StatusCode::OK
    );
});

// ---------------------------------------------------------------------------------
// Service routes, wire format
// ---------------------------------------------------------------------------------

both!(
    health_root_and_detailed_health_describe_the_service,
    |b| async move {
        let app = TestApp::spawn(b).await;

        let health = get(&app, "/health", None).await;
        let detailed = get(&app, "/health/detailed", None).await;
        let root = get(&app, "/", None).await;

        assert_eq!(health.status(), StatusCode::OK);
        let h = body(health).await;
        assert_eq!(keys(&h), key_set(&["status", "environment", "version"]));
        assert_eq!(
            (h["status"].clone(), h["environment"].clone()),
            (json!("healthy"), json!("development"))
        );
        assert!(!h["version"].as_str().unwrap().is_empty());

        assert_eq!(detailed.status(), StatusCode::OK);
        let d = body(detailed).await;
        assert_eq!(d["status"], "healthy");
        assert_eq!(d["database"], "healthy");
        assert_eq!(d["version"], h["version"]);

        assert_eq!(root.status(), StatusCode::OK);
        let r = body(root).await;
        for k in ["name", "version", "environment", "docs_url"] {
            assert!(r[k].is_string(), "{k} in {r}");
        }
        assert_eq!(r["environment"], "development");
    }
);

both!(
    detailed_health_is_degraded_when_the_database_is_down,
    |b| async move {
        let app = TestApp::spawn(b).await;

        app.store().close().await;
        let r = get(&app, "/health/detailed", None).await;

        assert_eq!(r.status(), StatusCode::OK);
        let d = body(r).await;
        assert_eq!(d["status"], "degraded");
        assert_ne!(d["database"], "healthy");
        assert_eq!(
            body(get(&app, "/health", None).await).await["status"],
            "healthy"
        );
    }
);

both!(
    openapi_describes_and_the_server_serves_every_route_of_the_table,
    |b| async move {
        let app = TestApp::spawn(b).await;

        let r = get(&app, "/openapi.json", None).await;

        assert_eq!(r.status(), StatusCode::OK);
        let doc = body(r).await;
        let paths = doc["paths"].as_object().expect("paths");
        let routes = rotor::http::routes::list();
        assert!(routes.len() >= 34);
        for (method, path, _, _) in routes {
            let documented = paths
                .get(&path)
                .and_then(|p| p.get(method.as_str().to_ascii_lowercase()))
                .is_some_and(Value::is_object);
            assert!(documented, "{method} {path} missing from /openapi.json");
            // Served: whatever the answer (401 without a bearer, 422 without a body, 404 for
            // an unknown id), it is not the router's own 404 or 405.
            let url = app.url(&path.replace("{id}", &Uuid::new_v4().to_string()));
            let r = app
                .client
                .request(method.clone(), url)
                .send()
                .await
                .unwrap();
            assert_ne!(
                r.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            let status = r.status();
            let text = r.text().await.unwrap();
            assert!(
                !(status == StatusCode::NOT_FOUND && text.contains("\"Not Found\"")),
                "{method} {path} is not served"
            );
        }
    }
);

both!(unknown_routes_are_a_json_404, |b| async move {
    let app = TestApp::spawn(b).await;

    for path in ["/v1/nope", "/nothing/here", "/v1/auth/me/extra"] {
        let r = get(&app, path, None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        assert_eq!(body(r).await, json!({ "detail": "Not Found" }));
    }
});

both!(no_response_carries_a_password_hash, |b| async move {
    let app = TestApp::spawn(b).await;
    let (_, admin) = app.admin_session().await;
    let mut texts = Vec::new();
    let registered = post_json(
        &app,
        "/v1/users",
        None,
        &json!({ "email": "leak@example.com", "password": "Password123" }),
    )
    .await;
    texts.push(registered.text().await.unwrap());
    let login = app.post_login("leak@example.com", "Password123").await;
    texts.push(login.text().await.unwrap());
    let mobile = app
        .post_login_mobile("leak@example.com", "Password123", &[])
        .await;
    let mobile_text = mobile.text().await.unwrap();
    let access = serde_json::from_str::<Value>(&mobile_text).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    texts.push(mobile_text);
    let me: Value = body(app.get_auth("/v1/auth/me", &access).await).await;
    let id = me["id"].as_str().unwrap().to_owned();
    texts.push(me.to_string());
    for path in [
        "/v1/users/me".to_owned(),
        format!("/v1/users/{id}"),
        "/v1/admin/users".to_owned(),
        format!("/v1/admin/users/{id}"),
    ] {
        let token = if path.starts_with("/v1/admin") {
            &admin
        } else {
            &access
        };
        let r = get(&app, &path, Some(token)).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        texts.push(r.text().await.unwrap());
    }
    texts.push(
        patch_json(
            &app,
            "/v1/users/me",
            Some(&access),
            &json!({ "full_name": "L" }),
        )
        .await
        .text()
        .await
        .unwrap(),
    );
    let created = post_json(
        &app,
        "/v1/admin/users",
        Some(&admin),
        &json!({ "email": "made@example.com", "password": "password1" }),
    )
    .await;
    texts.push(created.text().await.unwrap());
    texts.push(
        patch_json(
            &app,
            &format!("/v1/admin/users/{id}"),
            Some(&admin),
            &json!({ "password": "password2" }),
        )
        .await
        .text()
        .await
        .unwrap(),
    );

    for t in &texts {
        assert_no_secret(t);
    }
    let users: Value = body(get(&app, "/v1/admin/users", Some(&admin)).await).await;
    users["items"]
        .as_array()
        .unwrap()
        .iter()
        .for_each(assert_user_json);
});

both!(correlation_id_is_echoed_or_generated, |b| async move {
    let app = TestApp::spawn(b).await;

    let echoed = app
        .client
        .get(app.url("/health"))
        .header("X-Correlation-ID", "req-42-abc")
        .send()
        .await
        .unwrap();
    let on_error = app
        .client
        .get(app.url("/v1/auth/me"))
        .header("X-Correlation-ID", "req-43")
        .send()
        .await
        .unwrap();
    let generated = get(&app, "/health", None).await;
    let generated_404 = get(&app, "/v1/nope", None).await;

    assert_eq!(echoed.headers()["x-correlation-id"], "req-42-abc");
    assert_eq!(on_error.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(on_error.headers()["x-correlation-id"], "req-43");
    let a = generated.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let c = generated_404.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    Uuid::parse_str(&a).expect("a generated UUID");
    Uuid::parse_str(&c).expect("a generated UUID");
    assert_ne!(a, c);
});

both!(
    missing_invalid_or_expired_bearers_are_401_never_403,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (_, access, refresh) = mobile_session(&app).await;
        // A bad signature: swap one character in the middle of the signature segment.
        let (head, sig) = access.rsplit_once('.').unwrap();
        let mut sig: Vec<char> = sig.chars().collect();
        let mid = sig.len() / 2;
        sig[mid] = if sig[mid] == 'A' { 'B' } else { 'A' };
        let forged = format!("{head}.{}", sig.into_iter().collect::<String>());
        let routes = [
            "/v1/auth/me",
            "/v1/users/me",
            "/v1/admin/users",
            "/v1/auth/sessions",
        ];

        for path in routes {
            expect_not_authenticated(get(&app, path, None).await, path).await;
            expect_not_authenticated(get(&app, path, Some("garbage")).await, path).await;
            expect_not_authenticated(get(&app, path, Some(&forged)).await, path).await;
            let basic = app
                .client
                .get(app.url(path))
                .header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
                .send()
                .await
                .unwrap();
            expect_not_authenticated(basic, path).await;
            // A refresh token is not an access token.
            expect_not_authenticated(get(&app, path, Some(&refresh)).await, path).await;
        }
        assert_eq!(
            app.get_auth("/v1/auth/me", &access).await.status(),
            StatusCode::OK
        );

        app.clock
            .advance(Duration::minutes(15) + Duration::seconds(1));
        for path in routes {
            expect_not_authenticated(get(&app, path, Some(&access)).await, "expired").await;
        }
    }
);

// ---------------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------------

both!(
    the_fourth_login_in_a_minute_is_429_with_retry_after,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("RATE_LIMIT_AUTH", "3/minute")]).await;
        let user = new_user(&app).await;
        let mut access = String::new();
        for i in 0..3 {
            let r = app.post_login(&user.email, PASSWORD).await;
            assert_eq!(r.status(), StatusCode::OK, "login {i}");
            access = body(r).await["access_token"].as_str().unwrap().to_owned();
        }

        let fourth = app.post_login(&user.email, PASSWORD).await;
        let spoofed = app
            .client
            .post(app.url("/v1/auth/login"))
            .header("X-Forwarded-For", "198.51.100.23")
            .form(&[("username", user.email.as_str()), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        // The mobile route counts against the same budget.
        let mobile = app.post_login_mobile(&user.email, PASSWORD, &[]).await;

        for r in [fourth, spoofed, mobile] {
            assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
            let retry: u64 = r.headers()[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .expect("Retry-After seconds");
            assert!((1..=60).contains(&retry), "Retry-After {retry}");
            assert!(body(r).await["detail"].is_string());
        }
        assert_eq!(
            live_of_user(&app, user.id).await,
            3,
            "no session for the limited attempts"
        );
        // Routes that do not take credentials are not limited.
        assert_eq!(
            app.get_auth("/v1/auth/me", &access).await.status(),
            StatusCode::OK
        );
    }
);

/// The `X-RateLimit-*` headers of a response, as numbers.
fn rate_limit_headers(r: &Response) -> Option<(u64, u64, u64)> {
    let get = |name: &str| -> Option<u64> {
        Some(r.headers().get(name)?.to_str().ok()?.parse().expect(name))
    };
    Some((
        get("x-ratelimit-limit")?,
        get("x-ratelimit-remaining")?,
        get("x-ratelimit-reset")?,
    ))
}

both!(
    limited_routes_report_their_quota_on_every_answer,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("RATE_LIMIT_AUTH", "3/minute")]).await;
        let user = new_user(&app).await;
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        let before = now();

        // A success, a wrong password and a 422 all count and all carry the headers.
        let ok = app.post_login(&user.email, PASSWORD).await;
        let wrong = app.post_login(&user.email, "Wrong-password1").await;
        let invalid = app
            .client
            .post(app.url("/v1/auth/login"))
            .form(&[("username", user.email.as_str())])
            .send()
            .await
            .unwrap();
        let refused = app.post_login(&user.email, PASSWORD).await;
        let after = now();

        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let mut resets = Vec::new();
        for (r, remaining) in [(&ok, 2), (&wrong, 1), (&invalid, 0), (&refused, 0)] {
            let (limit, left, reset) =
                rate_limit_headers(r).unwrap_or_else(|| panic!("no X-RateLimit-* on {r:?}"));
            assert_eq!((limit, left), (3, remaining), "{r:?}");
            // The window (60 s) started with the first login: it resets then, in
            // whole Unix seconds rounded up.
            assert!(
                (before + 60..=after + 61).contains(&reset),
                "X-RateLimit-Reset {reset} not a minute after {before}..{after}"
            );
            resets.push(reset);
        }
        assert!(
            resets.windows(2).all(|w| w[0] == w[1]),
            "one window: {resets:?}"
        );
        // Retry-After only on the 429: the seconds left until that reset.
        for r in [&ok, &wrong, &invalid] {
            assert!(!r.headers().contains_key(header::RETRY_AFTER), "{r:?}");
        }
        let retry: u64 = refused.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        assert!(
            resets[3] <= after + retry + 1,
            "Retry-After {retry} vs reset {}",
            resets[3]
        );

        // Each bucket counts on its own: a refresh's quota is untouched.
        let refresh = app.post_refresh_mobile("never-issued").await;
        assert_eq!(refresh.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            rate_limit_headers(&refresh).map(|h| (h.0, h.1)),
            Some((3, 2))
        );
        let register = post_json(
            &app,
            "/v1/users",
            None,
            &json!({ "email": "quota@example.com", "password": "Password123" }),
        )
        .await;
        assert_eq!(register.status(), StatusCode::CREATED);
        assert_eq!(
            rate_limit_headers(&register).map(|h| (h.0, h.1)),
            Some((3, 2))
        );

        // Routes that are not limited carry none of them.
        let access = body(ok).await["access_token"].as_str().unwrap().to_owned();
        for r in [
            app.get_auth("/v1/auth/me", &access).await,
            get(&app, "/health", None).await,
            get(&app, &format!("/v1/users/{}", user.id), Some(&access)).await,
        ] {
            assert_eq!(r.status(), StatusCode::OK);
            for name in [
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
            ] {
                assert!(!r.headers().contains_key(name), "{name} on {r:?}");
            }
            assert!(!r.headers().contains_key(header::RETRY_AFTER));
        }
    }
);

both!(
    with_rate_limits_off_no_route_sends_rate_limit_headers,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("RATE_LIMIT_AUTH", "off")]).await;
        let user = new_user(&app).await;
        let r = app.post_login(&user.email, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(rate_limit_headers(&r), None);
        assert!(!r.headers().contains_key(header::RETRY_AFTER));
    }
);

both!(rate_limit_off_never_answers_429, |b| async move {
    let app = TestApp::spawn_with(b, &[("RATE_LIMIT_AUTH", "off")]).await;
    let user = new_user(&app).await;

    let mut tasks = Vec::new();
    for i in 0..30 {
        let client = app.client.clone();
        let url = app.url("/v1/auth/login");
        let email = user.email.clone();
        // Mostly failures (the same Argon2 work); every fifth succeeds.
        let password = if i % 5 == 0 { PASSWORD } else { "WrongPass123" };
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .form(&[("username", email.as_str()), ("password", password)])
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }

    assert!(
        !statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 6);
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        24
    );
    assert_eq!(live_of_user(&app, user.id).await, 6);
});

// ---------------------------------------------------------------------------------
// The original backend's defects, each fixed
// ---------------------------------------------------------------------------------

// Replay: the family revocation on replay is committed, not rolled back with the 401.
both!(
    replay_revokes_the_family_and_it_stays_revoked,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("REFRESH_REUSE_GRACE_SECONDS", "0")]).await;
        let (user, _, first) = mobile_session(&app).await;
        let family = family_of(&app, &first).await;
        let r = app.post_refresh_mobile(&first).await;
        assert_eq!(r.status(), StatusCode::OK);
        let successor = body(r).await["refresh_token"].as_str().unwrap().to_owned();
        let (_, _, bystander) = mobile_session(&app).await;

        let replay = app.post_refresh_mobile(&first).await;

        expect_error(replay, StatusCode::UNAUTHORIZED, "TokenRevokedError").await;
        assert_eq!(
            live_in_family(&app, family).await,
            0,
            "no live token remains in the family"
        );
        assert_eq!(
            tokens_in_family(&app, family).await,
            2,
            "and none was added"
        );
        let successor_row = app
            .store()
            .get_by_hash(&hash_token(&successor))
            .await
            .unwrap()
            .unwrap();
        assert!(successor_row.is_revoked && successor_row.revoked_at.is_some());
        assert_eq!(
            app.post_refresh_mobile(&successor).await.status(),
            StatusCode::UNAUTHORIZED,
            "the successor is dead"
        );
        assert_eq!(
            live_in_family(&app, family).await,
            0,
            "still revoked afterwards"
        );
        let events = app
            .store()
            .list_events(
                &EventFilter {
                    user_id: Some(user.id),
                    kind: Some("replay_detected".into()),
                },
                0,
                10,
            )
            .await
            .unwrap();
        assert!(!events.is_empty(), "the replay is in the security log");
        assert_eq!(
            app.post_refresh_mobile(&bystander).await.status(),
            StatusCode::OK,
            "other families are untouched"
        );
    }
);

// Racing rotations: rotation is one conditional step; concurrent presentations rotate once.
both!(
    concurrent_refreshes_of_one_token_rotate_it_at_most_once,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("REFRESH_REUSE_GRACE_SECONDS", "0")]).await;
        let (_, _, raw) = mobile_session(&app).await;
        let family = family_of(&app, &raw).await;

        let results = refresh_storm(&[&app], &raw, 32).await;

        let ok: Vec<_> = results
            .iter()
            .filter(|(s, _)| *s == StatusCode::OK)
            .collect();
        assert_eq!(ok.len(), 1, "one rotation, at most: {results:?}");
        assert!(
            results
                .iter()
                .all(|(s, _)| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED),
            "only 200 or 401: {results:?}"
        );
        assert!(
            live_in_family(&app, family).await <= 1,
            "never two live tokens in a family"
        );
        assert!(
            tokens_in_family(&app, family).await <= 2,
            "at most one successor"
        );
        if ok.len() == 1 && results.len() > 1 {
            // The losers replayed a rotated token: the family is revoked for good.
            assert_eq!(live_in_family(&app, family).await, 0);
            let successor = ok[0].1.clone().unwrap();
            assert_eq!(
                app.post_refresh_mobile(&successor).await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
    }
);

// Racing rotations with the grace window: racing tabs all get the one successor.
both!(
    concurrent_refreshes_within_the_grace_window_share_one_successor,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (_, _, raw) = mobile_session(&app).await;
        let family = family_of(&app, &raw).await;

        let results = refresh_storm(&[&app], &raw, 32).await;

        let successors: BTreeSet<_> = results
            .iter()
            .filter(|(s, _)| *s == StatusCode::OK)
            .map(|(_, t)| t.clone().unwrap())
            .collect();
        assert!(
            results.iter().all(|(s, _)| *s == StatusCode::OK),
            "every racing retry succeeds: {results:?}"
        );
        assert_eq!(successors.len(), 1, "every 200 carries the same successor");
        let successor = successors.into_iter().next().unwrap();
        assert_eq!(tokens_in_family(&app, family).await, 2);
        assert_eq!(live_in_family(&app, family).await, 1);
        assert!(app
            .store()
            .get_valid_by_hash(&hash_token(&successor), app.now())
            .await
            .unwrap()
            .is_some());
    }
);

// Password change: changing the password ends the other sessions, not the caller's.
both!(
    change_password_ends_other_sessions_but_keeps_the_callers,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = new_user(&app).await;
        let (mine_access, mine_refresh) = app.login_mobile(&user.email, PASSWORD).await;
        let (_, other_refresh) = app.login_mobile(&user.email, PASSWORD).await;
        let mine = family_of(&app, &mine_refresh).await;
        let other = family_of(&app, &other_refresh).await;

        let r = post_json(
            &app,
            "/v1/auth/change-password",
            Some(&mine_access),
            &json!({ "current_password": PASSWORD, "new_password": "BrandNew456" }),
        )
        .await;

        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            live_in_family(&app, other).await,
            0,
            "the other session is ended"
        );
        assert_eq!(
            live_in_family(&app, mine).await,
            1,
            "the caller's session is kept"
        );
        assert_eq!(
            app.post_refresh_mobile(&other_refresh).await.status(),
            StatusCode::UNAUTHORIZED
        );
        let kept = app.post_refresh_mobile(&mine_refresh).await;
        assert_eq!(
            kept.status(),
            StatusCode::OK,
            "the caller's refresh token still works"
        );
        let access = body(kept).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            app.get_auth("/v1/auth/me", &access).await.status(),
            StatusCode::OK
        );
    }
);

// Device records (light: sessions have a file of their own): a login records its device.
both!(sessions_record_the_device_and_are_listed, |b| async move {
    let app = TestApp::spawn(b).await;
    let user = new_user(&app).await;
    let r = app
        .client
        .post(app.url("/v1/auth/login-mobile"))
        .header(header::USER_AGENT, "rotor-tests/1.0")
        .form(&[
            ("username", user.email.as_str()),
            ("password", PASSWORD),
            ("device_id", "dev-1"),
            ("device_name", "Pixel 9"),
        ])
        .send()
        .await
        .unwrap();
    let v = body(r).await;
    let access = v["access_token"].as_str().unwrap();
    let family = family_of(&app, v["refresh_token"].as_str().unwrap()).await;

    let listed = app.get_auth("/v1/auth/sessions", access).await;

    assert_eq!(listed.status(), StatusCode::OK);
    let sessions = body(listed).await["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s["id"], family.to_string());
    assert_eq!(
        (s["device_id"].clone(), s["device_name"].clone()),
        (json!("dev-1"), json!("Pixel 9"))
    );
    assert_eq!(s["user_agent"], "rotor-tests/1.0");
    assert_eq!(s["current"], true);
    for k in ["created_at", "last_used_at", "expires_at"] {
        assert_utc_z(&s[k], k);
    }
    let stored = app
        .store()
        .get_session(family)
        .await
        .unwrap()
        .expect("a session row");
    assert_eq!(
        (stored.device_id.as_deref(), stored.device_name.as_deref()),
        (Some("dev-1"), Some("Pixel 9"))
    );
});

// Client IP: X-Forwarded-For is trusted only from configured proxies.
both!(
    forwarded_for_is_ignored_from_untrusted_peers,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = new_user(&app).await;

        let r = app
            .client
            .post(app.url("/v1/auth/login-mobile"))
            .header("X-Forwarded-For", "203.0.113.9")
            .header("Forwarded", "for=203.0.113.10")
            .form(&[("username", user.email.as_str()), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();

        assert_eq!(r.status(), StatusCode::OK);
        let raw = body(r).await["refresh_token"].as_str().unwrap().to_owned();
        let events = assert_login_recorded_ip(&app, user.id, &raw, "127.0.0.1").await;
        assert_eq!(events, 1);
    }
);

both!(
    forwarded_for_is_honoured_from_a_trusted_proxy,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("TRUSTED_PROXIES", "127.0.0.1/32")]).await;
        let user = new_user(&app).await;

        let r = app
            .client
            .post(app.url("/v1/auth/login-mobile"))
            .header("X-Forwarded-For", "203.0.113.9")
            .form(&[("username", user.email.as_str()), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();

        assert_eq!(r.status(), StatusCode::OK);
        let raw = body(r).await["refresh_token"].as_str().unwrap().to_owned();
        assert_login_recorded_ip(&app, user.id, &raw, "203.0.113.9").await;
    }
);

// Case-insensitive emails: see `emails_are_case_insensitive_for_login_and_registration`
// above.

// Rehash on login: a hash with the original's parameters is upgraded on login, without bumping
// token_version (which would log the user out everywhere else).
both!(
    a_hash_with_the_originals_parameters_is_upgraded_on_login_without_a_logout,
    |b| async move {
        use argon2::{password_hash::SaltString, PasswordHasher as _};

        let app = TestApp::spawn(b).await;
        let (user, earlier_access, _) = mobile_session(&app).await;
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let params = argon2::Params::new(65536, 3, 4, None).unwrap();
        let original =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password(PASSWORD.as_bytes(), &salt)
                .unwrap()
                .to_string();
        assert!(original.starts_with("$argon2id$v=19$m=65536,t=3,p=4$"));
        assert!(app
            .store()
            .rehash_password(user.id, &original, app.now())
            .await
            .unwrap());
        let before = app.store().get_user(user.id).await.unwrap().unwrap();

        let r = app.post_login(&user.email, PASSWORD).await;

        assert_eq!(r.status(), StatusCode::OK);
        let after = app.store().get_user(user.id).await.unwrap().unwrap();
        assert!(
            after
                .hashed_password
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            after.hashed_password
        );
        assert_ne!(after.hashed_password, original);
        assert_eq!(
            after.token_version, before.token_version,
            "a rehash does not bump token_version"
        );
        assert_eq!(
            app.get_auth("/v1/auth/me", &earlier_access).await.status(),
            StatusCode::OK,
            "earlier access tokens still work"
        );
        assert_eq!(
            app.post_login(&user.email, PASSWORD).await.status(),
            StatusCode::OK,
            "the upgraded hash verifies"
        );
        expect_error(
            app.post_login(&user.email, "WrongPass123").await,
            StatusCode::UNAUTHORIZED,
            "InvalidCredentials",
        )
        .await;
    }
);

// Blocking hashing: Argon2 runs off the executor with bounded concurrency; a login burst queues
// there while refreshes (no hashing) keep being served.
both!(
    refreshes_are_served_during_a_burst_of_logins,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("ARGON2_MAX_CONCURRENCY", "1")]).await;
        let user = new_user(&app).await;
        let (_, mut refresh) = app.login_mobile(&user.email, PASSWORD).await;

        let mut logins = Vec::new();
        for _ in 0..16 {
            let client = app.client.clone();
            let url = app.url("/v1/auth/login-mobile");
            let email = user.email.clone();
            logins.push(tokio::spawn(async move {
                client
                    .post(url)
                    .form(&[("username", email.as_str()), ("password", PASSWORD)])
                    .send()
                    .await
                    .unwrap()
                    .status()
            }));
        }
        let mut refreshes = Vec::new();
        for _ in 0..8 {
            let r = app.post_refresh_mobile(&refresh).await;
            refreshes.push(r.status());
            if r.status() == StatusCode::OK {
                refresh = body(r).await["refresh_token"].as_str().unwrap().to_owned();
            }
        }
        let mut login_statuses = Vec::new();
        for l in logins {
            login_statuses.push(l.await.unwrap());
        }

        assert!(
            refreshes.iter().all(|s| *s == StatusCode::OK),
            "{refreshes:?}"
        );
        assert!(
            login_statuses.iter().all(|s| *s == StatusCode::OK),
            "{login_statuses:?}"
        );
        assert_eq!(
            live_of_user(&app, user.id).await,
            17,
            "one live token per session"
        );
        assert_eq!(
            tokens_in_family(&app, family_of(&app, &refresh).await).await,
            9
        );
    }
);

// Racing rotations across processes: two servers on one PostgreSQL rotate a token once.
mod two_servers_sharing_one_postgres_rotate_a_token_once {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        let grace = [("REFRESH_REUSE_GRACE_SECONDS", "0")];
        let first = TestApp::spawn_with(Backend::Postgres, &grace).await;
        let second = first.spawn_beside(&grace).await;
        let (user, _, raw) = mobile_session(&first).await;
        let family = family_of(&first, &raw).await;
        // Both servers see the same user and verify each other's access tokens.
        let (access, _) = second.login_mobile(&user.email, PASSWORD).await;
        assert_eq!(
            first.get_auth("/v1/auth/me", &access).await.status(),
            StatusCode::OK
        );

        let results = refresh_storm(&[&first, &second], &raw, 16).await;

        let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
        assert_eq!(
            ok, 1,
            "exactly one rotation across both servers: {results:?}"
        );
        assert!(
            results
                .iter()
                .all(|(s, _)| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED),
            "{results:?}"
        );
        assert_eq!(
            tokens_in_family(&first, family).await,
            2,
            "exactly one successor exists"
        );
        assert_eq!(
            live_in_family(&first, family).await,
            0,
            "the replays revoked the family"
        );
    }
}

/// Asserts the refresh token, its session and the newest login event all recorded `ip`;
/// returns how many login events the user has.
async fn assert_login_recorded_ip(
    app: &TestApp,
    user_id: uuid::Uuid,
    raw: &str,
    ip: &str,
) -> usize {
    let token = app
        .store()
        .get_by_hash(&hash_token(raw))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token.ip_address.as_deref(), Some(ip));
    let session = app
        .store()
        .get_session(token.family_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.ip_address.as_deref(), Some(ip));
    let filter = EventFilter {
        user_id: Some(user_id),
        kind: Some("login_succeeded".into()),
    };
    let events = app.store().list_events(&filter, 0, 10).await.unwrap();
    assert_eq!(events[0].ip_address.as_deref(), Some(ip));
    events.len()
}
