//! `http/auth.rs` without the refresh routes: login (form and mobile), logout,
//! logout-all, me, change-password; and the original's login-side defects, fixed.

use super::*;
use rotor::storage::SeedRepository;

// ---------------------------------------------------------------------------------
// POST /v1/auth/login
// ---------------------------------------------------------------------------------

both!(
    login_answers_a_bearer_token_the_user_and_a_strict_http_only_cookie,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = app.new_user().await;

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
            let user = app.new_user().await;

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
    let user = app.new_user().await;

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
        let active = app.new_user().await;
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
// Mobile routes
// ---------------------------------------------------------------------------------

both!(
    login_mobile_answers_both_tokens_and_the_user_without_a_cookie,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = app.new_user().await;

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

// ---------------------------------------------------------------------------------
// Logout
// ---------------------------------------------------------------------------------

both!(
    logout_clears_the_cookie_and_ends_the_session,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = app.new_user().await;
        let (_, raw) = cookie_login(&app, &user.email).await;
        let (_, other) = cookie_login(&app, &user.email).await;
        let family = family_of(&app, &raw).await;

        let r = post_logout(&app, Some(&raw)).await;

        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let cleared = refresh_set_cookie(&r).expect("the cookie is cleared");
        assert!(cleared.starts_with("refresh_token=;"), "{cleared}");
        assert_strict_cookie(&cleared, 0, "/", false);
        assert_eq!(live_tokens_in_family(&app.db, family).await, 0);
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
        let user = app.new_user().await;
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
// The original backend's defects, each fixed
// ---------------------------------------------------------------------------------

// Password change: changing the password ends the other sessions, not the caller's.
both!(
    change_password_ends_other_sessions_but_keeps_the_callers,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = app.new_user().await;
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
            live_tokens_in_family(&app.db, other).await,
            0,
            "the other session is ended"
        );
        assert_eq!(
            live_tokens_in_family(&app.db, mine).await,
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
    let user = app.new_user().await;
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
        let user = app.new_user().await;

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
        let user = app.new_user().await;

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
        let user = app.new_user().await;
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
