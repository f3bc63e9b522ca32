//! Findings of the black-box security review, each attacked as the reviewer did: NUL
//! bytes in text inputs, raw identifiers in the audit log, registration floods, split
//! password-guessing buckets, world-readable database files, Host-header poisoning of
//! the OAuth metadata, and access tokens naming sessions that never existed.

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::{
    both,
    support::{body, claims, count, eventually, poll, raw_exchange, Backend, TestApp},
};

const SECRET: &str = "integration-test-secret-key-0123456789abcdef";

/// A pydantic-shaped 422 naming `loc`.
async fn assert_422_at(r: Response, loc: &[&str], what: &str) {
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{what}");
    let b = body(r).await;
    let errors = b["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: {b}"));
    let want: Vec<Value> = loc.iter().map(|p| json!(p)).collect();
    assert!(
        errors.iter().any(|e| e["loc"].as_array() == Some(&want)
            && e["msg"].is_string()
            && e["type"].is_string()),
        "{what}: {b}"
    );
}

/// An RFC 6749 `invalid_request`.
async fn assert_invalid_request(r: Response, what: &str) {
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{what}");
    let b = body(r).await;
    assert_eq!(b["error"], "invalid_request", "{what}: {b}");
    assert!(b["error_description"].is_string(), "{what}: {b}");
}

// ---------------------------------------------------------------------------------
// F3: NUL bytes
// ---------------------------------------------------------------------------------

both!(
    nul_bytes_in_any_text_input_are_rejected_never_500,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (email, access, _) = app.user_session().await;
        let (_, admin) = app.admin_session().await;
        let c = &app.client;
        let nul = "a\0b";

        // Login forms, both routes: every field.
        for route in ["/v1/auth/login", "/v1/auth/login-mobile"] {
            let r = c
                .post(app.url(route))
                .body("username=a%00@x.com&password=TestPass123")
                .header("content-type", "application/x-www-form-urlencoded")
                .send()
                .await
                .unwrap();
            assert_422_at(r, &["body", "username"], "login username").await;
            for (field, value) in [("password", nul), ("device_id", nul), ("device_name", nul)] {
                let mut form = vec![("username", email.as_str()), ("password", "TestPass123")];
                form.retain(|(k, _)| *k != field);
                form.push((field, value));
                let r = c.post(app.url(route)).form(&form).send().await.unwrap();
                assert_422_at(r, &["body", field], &format!("{route} {field}")).await;
            }
        }
        assert_eq!(
            count(
                &app.db,
                "SELECT count(*) FROM audit_events WHERE kind = 'login_failed'"
            )
            .await,
            0,
            "a rejected form is no login attempt"
        );

        // Registration: every field.
        let fresh = rotor::testing::UserFactory::next_email();
        for (field, value) in [
            ("email", json!("a\u{0}b@example.com")),
            ("full_name", json!(nul)),
            ("password", json!("TestPass123\u{0}")),
        ] {
            let mut user = json!({"email": fresh, "password": "TestPass123", "full_name": "N"});
            user[field] = value;
            let r = c
                .post(app.url("/v1/users"))
                .json(&user)
                .send()
                .await
                .unwrap();
            assert_422_at(r, &["body", field], &format!("register {field}")).await;
        }
        let r = app.post_login(&fresh, "TestPass123").await;
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "no account was created"
        );

        // Profile edit.
        let r = c
            .patch(app.url("/v1/users/me"))
            .bearer_auth(&access)
            .json(&json!({"full_name": nul}))
            .send()
            .await
            .unwrap();
        assert_422_at(r, &["body", "full_name"], "PATCH /v1/users/me").await;

        // Admin create and update.
        for (field, value) in [
            ("email", json!("x\u{0}@example.com")),
            ("full_name", json!(nul)),
            ("password", json!("TestPass123\u{0}")),
            ("role", json!("user\u{0}")),
        ] {
            let mut user = json!({"email": rotor::testing::UserFactory::next_email(),
                              "password": "TestPass123", "full_name": "N"});
            user[field] = value;
            let r = c
                .post(app.url("/v1/admin/users"))
                .bearer_auth(&admin)
                .json(&user)
                .send()
                .await
                .unwrap();
            assert_422_at(r, &["body", field], &format!("admin create {field}")).await;
        }
        let me: Value = body(app.get_auth("/v1/auth/me", &access).await).await;
        let id = me["id"].as_str().unwrap();
        for (field, value) in [
            ("email", json!("y\u{0}@example.com")),
            ("full_name", json!(nul)),
            ("password", json!("TestPass123\u{0}")),
        ] {
            let r = c
                .patch(app.url(&format!("/v1/admin/users/{id}")))
                .bearer_auth(&admin)
                .json(&json!({ field: value }))
                .send()
                .await
                .unwrap();
            assert_422_at(r, &["body", field], &format!("admin update {field}")).await;
        }

        // Query strings.
        let r = app.get_auth("/v1/admin/events?kind=a%00b", &admin).await;
        assert_422_at(r, &["query", "kind"], "admin events kind").await;
        let r = app.get_auth("/v1/auth/events?kind=a%00b", &access).await;
        assert_422_at(r, &["query", "kind"], "my events kind").await;

        // Change password.
        let r = c
            .post(app.url("/v1/auth/change-password"))
            .bearer_auth(&access)
            .json(&json!({"current_password": "TestPass123\u{0}", "new_password": "NewPass1234"}))
            .send()
            .await
            .unwrap();
        assert_422_at(r, &["body", "current_password"], "change-password").await;

        // OAuth: RFC 6749 invalid_request for every parameter, form or Basic.
        for (field, value) in [
            ("username", "a\0@x.com"),
            ("password", "TestPass123\0"),
            ("client_id", "web\0app"),
            ("device_id", nul),
            ("device_name", nul),
            ("scope", nul),
        ] {
            let mut form = vec![
                ("grant_type", "password"),
                ("username", email.as_str()),
                ("password", "TestPass123"),
            ];
            form.retain(|(k, _)| *k != field);
            form.push((field, value));
            let r = c
                .post(app.url("/oauth/token"))
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_invalid_request(r, &format!("/oauth/token {field}")).await;
        }
        let r = c
            .post(app.url("/oauth/token"))
            .basic_auth("web\0app", Some(""))
            .form(&[
                ("grant_type", "password"),
                ("username", email.as_str()),
                ("password", "TestPass123"),
            ])
            .send()
            .await
            .unwrap();
        assert_invalid_request(r, "/oauth/token Basic client_id").await;
        let r = c
            .post(app.url("/oauth/token"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", nul)])
            .send()
            .await
            .unwrap();
        assert_invalid_request(r, "/oauth/token refresh_token").await;
        for route in ["/oauth/revoke"] {
            let r = c
                .post(app.url(route))
                .form(&[("token", nul)])
                .send()
                .await
                .unwrap();
            assert_invalid_request(r, route).await;
        }

        // Nothing with a NUL reached the database.
        for (table, column) in [
            ("users", "email"),
            ("users", "full_name"),
            ("sessions", "device_id"),
            ("sessions", "device_name"),
            ("sessions", "client_id"),
            ("sessions", "user_agent"),
            ("refresh_tokens", "device_id"),
            ("audit_events", "detail"),
        ] {
            let sql = match b {
                Backend::Sqlite => {
                    format!("SELECT count(*) FROM {table} WHERE instr({column}, char(0)) > 0")
                }
                // PostgreSQL cannot store NUL in text at all; the point there is no 500.
                Backend::Postgres => format!("SELECT count(*) FROM {table} WHERE false"),
            };
            assert_eq!(count(&app.db, &sql).await, 0, "{table}.{column}");
        }
        // Headers: hyper refuses a NUL in any header value (400) before a handler runs,
        // so X-Device-Id, X-Device-Name and User-Agent cannot carry one either.
        let sessions_before = count(&app.db, "SELECT count(*) FROM sessions").await;
        for header in ["X-Device-Id", "X-Device-Name", "User-Agent"] {
            let form = format!(
                "username={}&password=TestPass123",
                email.replace('@', "%40")
            );
            let request = format!(
                "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\n{header}: a\0b\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{form}",
                form.len()
            );
            let answer = raw_exchange(
                app.addr,
                request.as_bytes(),
                std::time::Duration::from_secs(5),
            )
            .await;
            assert!(answer.starts_with("HTTP/1.1 400"), "{header}: {answer:.80}");
        }
        assert_eq!(
            count(&app.db, "SELECT count(*) FROM sessions").await,
            sessions_before
        );

        // And the server is healthy: a normal login still works.
        assert_eq!(
            app.post_login(&email, "TestPass123").await.status(),
            StatusCode::OK
        );
    }
);

// ---------------------------------------------------------------------------------
// F4: no raw unknown identifier in the audit log
// ---------------------------------------------------------------------------------

both!(
    a_password_typed_as_username_leaves_no_trace_in_the_audit_log,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (_, admin) = app.admin_session().await;
        let typed = "Tr0ub4dor-and-3-horses";
        for _ in 0..2 {
            let r = app.post_login(typed, "whatever").await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
        let r = app.post_login("someone-else@example.com", "whatever").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

        // Not in any column of any row, on either database.
        let cols = "coalesce(kind,'') || coalesce(detail,'') || coalesce(ip_address,'') \
                || coalesce(user_agent,'') || coalesce(cast(user_id as text),'') \
                || coalesce(cast(session_id as text),'')";
        assert_eq!(
            count(
                &app.db,
                &format!(
                    "SELECT count(*) FROM audit_events WHERE lower({cols}) LIKE '%tr0ub4dor%'"
                )
            )
            .await,
            0
        );
        assert_eq!(
            count(
                &app.db,
                "SELECT count(*) FROM audit_events WHERE kind = 'login_failed'"
            )
            .await,
            3
        );
        // Nor in the admin API.
        let events = app
            .get_auth("/v1/admin/events?kind=login_failed&size=100", &admin)
            .await;
        assert_eq!(events.status(), StatusCode::OK);
        let events = body(events).await;
        assert!(
            !events.to_string().to_lowercase().contains("tr0ub4dor"),
            "{events}"
        );
        assert!(!events.to_string().contains("someone-else"), "{events}");
        // Repeated attempts with one identifier still correlate; another differs.
        let details: Vec<String> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["detail"]
                    .as_str()
                    .expect("each event has a detail")
                    .to_owned()
            })
            .collect();
        assert_eq!(details.len(), 3, "{events}");
        let mut distinct = details.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 2, "{details:?}");
    }
);

// ---------------------------------------------------------------------------------
// F6: one bucket for every password check of a client
// ---------------------------------------------------------------------------------

/// A user and an access token obtained without a password check (so the password
/// bucket starts empty).
async fn user_without_login(app: &TestApp) -> (String, String) {
    let user = rotor::testing::UserFactory::create(app.store().as_ref())
        .await
        .expect("user");
    let out = app
        .rotor
        .open_session(&user, &rotor::service::ClientContext::default())
        .await
        .expect("session");
    (user.email, out.access_token)
}

async fn oauth_password(app: &TestApp, email: &str, password: &str) -> Response {
    app.client
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

async fn change_password(app: &TestApp, access: &str, current: &str) -> Response {
    app.client
        .post(app.url("/v1/auth/change-password"))
        .bearer_auth(access)
        .json(&json!({"current_password": current, "new_password": "NewPass1234"}))
        .send()
        .await
        .unwrap()
}

both!(
    password_guesses_share_one_bucket_across_routes,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("RATE_LIMIT_AUTH", "5/minute")]).await;
        let (email, access) = user_without_login(&app).await;

        // Five guesses spread over the three ways to check a password...
        let mut codes = vec![
            app.post_login(&email, "Guess1").await.status().as_u16(),
            oauth_password(&app, &email, "Guess2")
                .await
                .status()
                .as_u16(),
            change_password(&app, &access, "Guess3")
                .await
                .status()
                .as_u16(),
            app.post_login_mobile(&email, "Guess4", &[])
                .await
                .status()
                .as_u16(),
            oauth_password(&app, &email, "Guess5")
                .await
                .status()
                .as_u16(),
        ];
        assert_eq!(codes, vec![401, 400, 401, 401, 400]);

        // ...and the sixth is refused on each of them, as the sixth on login alone is.
        codes.clear();
        let limited = app.post_login(&email, "Guess6").await;
        assert!(limited.headers().contains_key("retry-after"));
        codes.push(limited.status().as_u16());
        codes.push(
            oauth_password(&app, &email, "Guess7")
                .await
                .status()
                .as_u16(),
        );
        let limited = change_password(&app, &access, "Guess8").await;
        assert!(limited.headers().contains_key("retry-after"));
        codes.push(limited.status().as_u16());
        codes.push(
            app.post_login_mobile(&email, "TestPass123", &[])
                .await
                .status()
                .as_u16(),
        );
        assert_eq!(codes, vec![429, 429, 429, 429], "the right password too");

        // Routes that check no password are not charged: the session still works.
        assert_eq!(
            app.get_auth("/v1/auth/me", &access).await.status(),
            StatusCode::OK
        );
    }
);

// ---------------------------------------------------------------------------------
// F5: registration floods
// ---------------------------------------------------------------------------------

both!(registration_is_rate_limited_per_client, |b| async move {
    let app = TestApp::spawn_with(b, &[("RATE_LIMIT_AUTH", "3/minute")]).await;
    let register = |email: String| {
        let c = app.client.clone();
        let url = app.url("/v1/users");
        async move {
            c.post(url)
                .json(&json!({"email": email, "password": "TestPass123"}))
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..3 {
        let r = register(rotor::testing::UserFactory::next_email()).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = register(rotor::testing::UserFactory::next_email()).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(body(r).await["type"], "RateLimitExceeded");

    // The admin route that creates accounts is limited too (its own bucket).
    let (_, admin) = app.admin_session().await;
    let create = || {
        let c = app.client.clone();
        let url = app.url("/v1/admin/users");
        let admin = admin.clone();
        async move {
            c.post(url)
                .bearer_auth(admin)
                .json(&json!({"email": rotor::testing::UserFactory::next_email(),
                              "password": "TestPass123"}))
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..3 {
        assert_eq!(create().await.status(), StatusCode::CREATED);
    }
    let r = create().await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    // Listing users is not charged.
    assert_eq!(
        app.get_auth("/v1/admin/users", &admin).await.status(),
        StatusCode::OK
    );
});

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_are_served_while_many_registrations_queue_for_argon2() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("ARGON2_MAX_CONCURRENCY", "1")]).await;
    let user = rotor::testing::UserFactory::create(app.store().as_ref())
        .await
        .expect("user");
    let service = app.rotor.clone();
    const FLOOD: usize = 30;
    let registrations: Vec<_> = (0..FLOOD)
        .map(|_| {
            let c = app.client.clone();
            let url = app.url("/v1/users");
            tokio::spawn(async move {
                c.post(url)
                    .json(&json!({"email": rotor::testing::UserFactory::next_email(),
                                  "password": "TestPass123"}))
                    .send()
                    .await
                    .map(|r| r.status())
            })
        })
        .collect();
    // Wait (by progress, not by time) until most registrations are queued.
    eventually(
        std::time::Duration::from_secs(60),
        "most registrations queued for Argon2",
        || {
            let queued = rotor::testing::argon2_pending(&service);
            async move { queued >= FLOOD - 5 }
        },
    )
    .await;
    let queued = rotor::testing::argon2_pending(&service);

    let r = app
        .post_login(&user.email, rotor::testing::UserFactory::PASSWORD)
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // The login overtook the queue: most registrations are still waiting. (Served in
    // turn it would have waited for all of them; a few finish while the login's request
    // travels to the queue, more on a loaded machine, hence "most", not "all but one".)
    let still_queued = rotor::testing::argon2_pending(&service);
    assert!(
        still_queued * 2 >= queued,
        "login waited for the registration queue: {queued} queued before, {still_queued} after"
    );
    for h in registrations {
        assert_eq!(h.await.unwrap().unwrap(), StatusCode::CREATED);
    }
}

// ---------------------------------------------------------------------------------
// Access tokens naming a session that does not exist
// ---------------------------------------------------------------------------------

fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

both!(
    a_token_whose_sid_names_no_session_is_rejected,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (_, access, _) = app.user_session().await;
        let real = claims(&access);

        // Validly signed, random sid: no such session.
        let mut forged = real.clone();
        forged["sid"] = json!(uuid::Uuid::now_v7().to_string());
        let r = app.get_auth("/v1/auth/me", &sign(&forged)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

        // The original's access tokens carry no sid: they keep working.
        let mut original = real.clone();
        original.as_object_mut().unwrap().remove("sid");
        original.as_object_mut().unwrap().remove("jti");
        original.as_object_mut().unwrap().remove("iss");
        let r = app.get_auth("/v1/auth/me", &sign(&original)).await;
        assert_eq!(r.status(), StatusCode::OK);

        // A family created without a session row (rows migrated from the original) still
        // authenticates its rotated access tokens while it has a live refresh token.
        let user = rotor::testing::UserFactory::create(app.store().as_ref())
            .await
            .unwrap();
        let (legacy, raw) = rotor::testing::RefreshTokenFactory::create(
            app.store().as_ref(),
            &user,
            false,
            chrono::Duration::days(7),
        )
        .await
        .unwrap();
        let r = app.post_refresh_mobile(&raw).await;
        assert_eq!(r.status(), StatusCode::OK);
        let rotated = body(r).await["access_token"].as_str().unwrap().to_owned();
        assert_eq!(claims(&rotated)["sid"], legacy.family_id.to_string());
        let r = app.get_auth("/v1/auth/me", &rotated).await;
        assert_eq!(r.status(), StatusCode::OK);

        // The genuine token is fine.
        assert_eq!(
            app.get_auth("/v1/auth/me", &access).await.status(),
            StatusCode::OK
        );
    }
);

// ---------------------------------------------------------------------------------
// F9: the OAuth metadata ignores the Host header
// ---------------------------------------------------------------------------------

async fn metadata_with_host(app: &TestApp, host: &str) -> Value {
    let request = format!(
        "GET /.well-known/oauth-authorization-server HTTP/1.1\r\nHost: {host}\r\n\
         X-Forwarded-Host: {host}\r\nConnection: close\r\n\r\n"
    );
    let answer = raw_exchange(
        app.addr,
        request.as_bytes(),
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.80}");
    let (_, json) = answer.split_once("\r\n\r\n").expect("body");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

both!(
    oauth_metadata_never_echoes_the_host_header,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("PUBLIC_URL", "https://auth.example.com/")]).await;
        let m = metadata_with_host(&app, "evil.example").await;
        assert!(!m.to_string().contains("evil.example"), "{m}");
        assert_eq!(m["issuer"], "https://auth.example.com");
        assert_eq!(m["token_endpoint"], "https://auth.example.com/oauth/token");
        assert_eq!(
            m["jwks_uri"],
            "https://auth.example.com/.well-known/jwks.json"
        );

        // Access tokens name the same issuer as the metadata.
        let (_, access, _) = app.user_session().await;
        assert_eq!(claims(&access)["iss"], m["issuer"]);

        // JWT_ISSUER overrides the issuer (tokens and metadata alike); the endpoints stay
        // under PUBLIC_URL.
        let app = TestApp::spawn_with(
            b,
            &[
                ("PUBLIC_URL", "https://auth.example.com"),
                ("JWT_ISSUER", "urn:example:rotor"),
            ],
        )
        .await;
        let m = metadata_with_host(&app, "evil.example").await;
        assert!(!m.to_string().contains("evil.example"), "{m}");
        assert_eq!(m["issuer"], "urn:example:rotor");
        assert_eq!(m["token_endpoint"], "https://auth.example.com/oauth/token");
        let (_, access, _) = app.user_session().await;
        assert_eq!(claims(&access)["iss"], m["issuer"]);
    }
);

// ---------------------------------------------------------------------------------
// F8: the data directory and database files are private
// ---------------------------------------------------------------------------------

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dir_and_database_files_are_private_under_umask_022() {
    use std::os::unix::fs::PermissionsExt;

    let db = crate::support::TestDb::new(Backend::Sqlite).await;
    let data = db.dir.join("fresh-data-dir");
    let port = crate::process::free_port();
    // The real binary, zero-config (SQLite in ROTOR_DATA_DIR), under umask 022.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 022; exec \"$0\" serve")
        .arg(env!("CARGO_BIN_EXE_rotor"))
        .current_dir(&db.dir)
        .env_remove("DATABASE_URL")
        .env_remove("SECRET_KEY")
        .env_remove("RUST_LOG")
        .env("ROTOR_DATA_DIR", &data)
        .env("RATE_LIMIT_AUTH", "off")
        .env("CLEANUP_INTERVAL_SECONDS", "0")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn rotor serve");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    // Polled without panicking, so that the child is killed before any assertion.
    let ready = poll(std::time::Duration::from_secs(10), || async {
        let r = client.get(format!("{base}/ready")).send().await;
        r.is_ok_and(|r| r.status() == StatusCode::OK).then_some(())
    })
    .await
    .is_some();
    // Writes, so the WAL and shared-memory files exist.
    let r = client
        .post(format!("{base}/v1/users"))
        .json(
            &json!({"email": rotor::testing::UserFactory::next_email(), "password": "TestPass123"}),
        )
        .send()
        .await;
    let modes: Vec<(String, Option<u32>)> =
        ["", "rotor.db", "rotor.db-wal", "rotor.db-shm", "secret_key"]
            .iter()
            .map(|name| {
                let path = if name.is_empty() {
                    data.clone()
                } else {
                    data.join(name)
                };
                (
                    (*name).to_owned(),
                    std::fs::metadata(&path)
                        .ok()
                        .map(|m| m.permissions().mode() & 0o777),
                )
            })
            .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "rotor serve did not become ready");
    assert_eq!(r.unwrap().status(), StatusCode::CREATED);
    assert_eq!(
        modes,
        vec![
            (String::new(), Some(0o700)),
            ("rotor.db".to_owned(), Some(0o600)),
            ("rotor.db-wal".to_owned(), Some(0o600)),
            ("rotor.db-shm".to_owned(), Some(0o600)),
            ("secret_key".to_owned(), Some(0o600)),
        ]
    );
}

/// An existing directory the operator chose keeps its mode; the files rotor creates
/// in it are still private.
#[cfg(unix)]
#[tokio::test]
async fn an_existing_data_dir_keeps_its_mode_but_new_files_are_private() {
    use std::os::unix::fs::PermissionsExt;

    let db = crate::support::TestDb::new(Backend::Sqlite).await;
    let dir = db.dir.join("operator-chosen");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
    let path = dir.join("rotor.db");
    let store = rotor::storage::sqlite::SqliteStore::open(&path, Some(1))
        .await
        .expect("open");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o750);
    assert_eq!(mode(&path), 0o600);
    drop(store);
}
