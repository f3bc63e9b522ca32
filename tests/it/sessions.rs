//! Device sessions, the grace window, absolute lifetime and the security log
//! (docs/behaviour.md, "Sessions"),
//! over HTTP on SQLite and PostgreSQL alike. Time moves only through `app.clock`.

use chrono::{DateTime, Duration, Utc};
use reqwest::{header, Response, StatusCode};
use rotor::domain::token::hash_token;
use serde_json::{json, Value};

use crate::{
    both,
    support::{
        body, claims, count, live_tokens_in_family, refresh_cookie_value, refresh_set_cookie, sid,
        TestApp,
    },
};

const PASSWORD: &str = "TestPass123";
const UA: &str = "rotor-it/sessions (X11; Linux)";

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

fn time(v: &Value) -> DateTime<Utc> {
    let s = v.as_str().unwrap_or_else(|| panic!("a timestamp, got {v}"));
    assert!(s.ends_with('Z'), "UTC with a Z suffix: {s}");
    DateTime::parse_from_rfc3339(s)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// The `Max-Age` of the refresh cookie a response sets.
fn cookie_max_age(r: &Response) -> i64 {
    let cookie = refresh_set_cookie(r).expect("a refresh cookie");
    cookie
        .split(';')
        .find_map(|p| p.trim().strip_prefix("Max-Age="))
        .expect("Max-Age")
        .parse()
        .expect("numeric Max-Age")
}

/// Logs in through the mobile route with extra form fields; returns (access, refresh).
async fn login_device(app: &TestApp, email: &str, device: &[(&str, &str)]) -> (String, String) {
    let r = app.post_login_mobile(email, PASSWORD, device).await;
    assert_eq!(r.status(), StatusCode::OK);
    let b = body(r).await;
    (
        b["access_token"].as_str().unwrap().to_owned(),
        b["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// Rotates through `/v1/auth/refresh-mobile`, expecting success; returns (access, refresh).
async fn rotate(app: &TestApp, refresh: &str) -> (String, String) {
    let r = app.post_refresh_mobile(refresh).await;
    assert_eq!(r.status(), StatusCode::OK, "refresh should succeed");
    let b = body(r).await;
    (
        b["access_token"].as_str().unwrap().to_owned(),
        b["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// Asserts that presenting `refresh` is refused as a replay.
async fn assert_replay(app: &TestApp, refresh: &str) {
    let r = app.post_refresh_mobile(refresh).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body(r).await["type"], "TokenRevokedError");
}

async fn sessions(app: &TestApp, access: &str) -> Vec<Value> {
    let r = app.get_auth("/v1/auth/sessions", access).await;
    assert_eq!(r.status(), StatusCode::OK);
    body(r).await["sessions"]
        .as_array()
        .expect("sessions array")
        .clone()
}

async fn delete_session(app: &TestApp, access: &str, id: &str) -> Response {
    app.client
        .delete(app.url(&format!("/v1/auth/sessions/{id}")))
        .bearer_auth(access)
        .send()
        .await
        .expect("DELETE")
}

/// Every event kind of `GET /v1/auth/events` (newest first), across one large page.
async fn my_event_kinds(app: &TestApp, access: &str) -> Vec<String> {
    let r = app.get_auth("/v1/auth/events?size=100", access).await;
    assert_eq!(r.status(), StatusCode::OK);
    body(r).await["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind").to_owned())
        .collect()
}

fn advance(app: &TestApp, by: Duration) {
    app.clock.advance(by);
}

// ---------------------------------------------------------------------------------
// Device sessions
// ---------------------------------------------------------------------------------

both!(
    logins_record_their_device_and_the_list_shows_newest_use_first,
    |b| async move {
        // Arrange: a phone (form fields) and a browser (headers), a minute apart.
        let app = TestApp::spawn(b).await;
        let (_, email) = app.registered_user().await;
        let t0 = app.now();
        let r = app
            .client
            .post(app.url("/v1/auth/login-mobile"))
            .header(header::USER_AGENT, "RotorPhone/2.1")
            // The form fields win over the headers.
            .header("X-Device-Name", "overridden by the form")
            .form(&[
                ("username", email.as_str()),
                ("password", PASSWORD),
                ("device_id", "phone-1"),
                ("device_name", "Pixel 8"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let phone = body(r).await;
        let phone_access = phone["access_token"].as_str().unwrap().to_owned();
        let phone_refresh = phone["refresh_token"].as_str().unwrap().to_owned();

        advance(&app, Duration::minutes(1));
        let t1 = app.now();
        let r = app
            .client
            .post(app.url("/v1/auth/login"))
            .header(
                header::USER_AGENT,
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            )
            .header("X-Device-Id", "browser-7")
            .header("X-Device-Name", "Firefox on Linux")
            .form(&[("username", email.as_str()), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            refresh_cookie_value(&r).is_some(),
            "cookie login sets the refresh cookie"
        );
        let browser_access = body(r).await["access_token"].as_str().unwrap().to_owned();

        // Act
        let list = sessions(&app, &phone_access).await;

        // Assert: newest use first, every field, `current` only for the caller's session.
        assert_eq!(list.len(), 2, "{list:?}");
        let (browser, phone) = (&list[0], &list[1]);
        assert_eq!(browser["id"], sid(&browser_access));
        assert_eq!(browser["device_id"], "browser-7");
        assert_eq!(browser["device_name"], "Firefox on Linux");
        assert_eq!(
            browser["user_agent"],
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
        );
        assert_eq!(browser["ip_address"], "127.0.0.1");
        assert_eq!(time(&browser["created_at"]), t1);
        assert_eq!(time(&browser["last_used_at"]), t1);
        assert_eq!(time(&browser["expires_at"]), t1 + Duration::days(7));
        assert_eq!(browser["current"], false);

        assert_eq!(phone["id"], sid(&phone_access));
        assert_eq!(phone["device_id"], "phone-1");
        assert_eq!(phone["device_name"], "Pixel 8");
        assert_eq!(phone["user_agent"], "RotorPhone/2.1");
        assert_eq!(phone["ip_address"], "127.0.0.1");
        assert_eq!(time(&phone["created_at"]), t0);
        assert_eq!(time(&phone["last_used_at"]), t0);
        assert_eq!(time(&phone["expires_at"]), t0 + Duration::days(7));
        assert_eq!(phone["current"], true);

        // The browser sees the same sessions, with itself as current.
        let from_browser = sessions(&app, &browser_access).await;
        assert_eq!(
            from_browser
                .iter()
                .map(|s| s["current"].as_bool().unwrap())
                .collect::<Vec<_>>(),
            vec![true, false]
        );

        // Act: the phone refreshes later; its session becomes the most recently used.
        advance(&app, Duration::minutes(1));
        let t2 = app.now();
        let (phone_access2, _) = rotate(&app, &phone_refresh).await;
        assert_eq!(
            sid(&phone_access2),
            sid(&phone_access),
            "a rotation stays in its session"
        );
        let list = sessions(&app, &browser_access).await;

        // Assert
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["id"], sid(&phone_access));
        assert_eq!(time(&list[0]["created_at"]), t0);
        assert_eq!(time(&list[0]["last_used_at"]), t2);
        assert_eq!(time(&list[0]["expires_at"]), t2 + Duration::days(7));
        assert_eq!(
            list[0]["device_name"], "Pixel 8",
            "the device survives rotation"
        );
        assert_eq!(list[0]["current"], false);
        assert_eq!(list[1]["id"], sid(&browser_access));
        assert_eq!(time(&list[1]["last_used_at"]), t1);
        assert_eq!(list[1]["current"], true);
        assert_eq!(count(&app.db, "SELECT count(*) FROM sessions").await, 2);
    }
);

both!(
    deleting_a_session_ends_its_refresh_and_access_tokens_at_once,
    |b| async move {
        // Arrange: one user on a laptop and a phone.
        let app = TestApp::spawn(b).await;
        let (_, email) = app.registered_user().await;
        let (laptop_access, laptop_refresh) =
            login_device(&app, &email, &[("device_name", "Laptop")]).await;
        let (phone_access, phone_refresh) =
            login_device(&app, &email, &[("device_name", "Phone")]).await;
        let phone_sid = sid(&phone_access);
        assert_eq!(
            app.get_auth("/v1/auth/me", &phone_access).await.status(),
            StatusCode::OK
        );

        // Act
        let r = delete_session(&app, &laptop_access, &phone_sid).await;

        // Assert: 204; the phone's access token dies now, not at its expiry; so does its refresh.
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let r = app.get_auth("/v1/auth/me", &phone_access).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(body(r).await["detail"], "Not authenticated");
        let r = app.post_refresh_mobile(&phone_refresh).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(live_tokens_in_family(&app.db, &phone_sid).await, 0);
        assert_eq!(
        count(&app.db, &format!("SELECT count(*) FROM sessions WHERE id = '{phone_sid}' AND revoked_at IS NOT NULL")).await,
        1
    );
        // The laptop is untouched.
        assert_eq!(
            app.get_auth("/v1/auth/me", &laptop_access).await.status(),
            StatusCode::OK
        );
        let list = sessions(&app, &laptop_access).await;
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["id"], sid(&laptop_access));
        rotate(&app, &laptop_refresh).await;

        // Deleting it again: it no longer exists for its owner either.
        assert_eq!(
            delete_session(&app, &laptop_access, &phone_sid)
                .await
                .status(),
            StatusCode::NOT_FOUND
        );
    }
);

both!(a_user_can_end_their_own_current_session, |b| async move {
    let app = TestApp::spawn(b).await;
    let (_, email) = app.registered_user().await;
    let (access, refresh) = login_device(&app, &email, &[]).await;

    let r = delete_session(&app, &access, &sid(&access)).await;

    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_auth("/v1/auth/me", &access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post_refresh_mobile(&refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
});

both!(
    another_users_unknown_or_malformed_session_ids_are_all_404,
    |b| async move {
        // Arrange: Alice and Bob, each logged in.
        let app = TestApp::spawn(b).await;
        let (_, alice) = app.registered_user().await;
        let (_, bob) = app.registered_user().await;
        let (alice_access, _) = login_device(&app, &alice, &[]).await;
        let (bob_access, bob_refresh) = login_device(&app, &bob, &[]).await;

        // Act / Assert: Bob's session is "not found" for Alice, never "forbidden".
        for id in [
            sid(&bob_access),
            uuid::Uuid::now_v7().to_string(),
            "not-a-uuid".to_owned(),
            "123".to_owned(),
        ] {
            let r = delete_session(&app, &alice_access, &id).await;
            assert_eq!(
                r.status(),
                StatusCode::NOT_FOUND,
                "DELETE /v1/auth/sessions/{id}"
            );
            assert_eq!(body(r).await["type"], "SessionNotFound", "{id}");
        }

        // Bob's session is untouched.
        assert_eq!(
            app.get_auth("/v1/auth/me", &bob_access).await.status(),
            StatusCode::OK
        );
        assert_eq!(live_tokens_in_family(&app.db, &sid(&bob_access)).await, 1);
        rotate(&app, &bob_refresh).await;
        // Without a bearer it is 401.
        let r = app
            .client
            .delete(app.url(&format!("/v1/auth/sessions/{}", sid(&bob_access))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
);

both!(
    logout_others_keeps_the_callers_session_and_ends_the_rest,
    |b| async move {
        // Arrange: three sessions of one user, and another user's session.
        let app = TestApp::spawn(b).await;
        let (_, email) = app.registered_user().await;
        let (_, other) = app.registered_user().await;
        let (a_access, a_refresh) = login_device(&app, &email, &[("device_name", "A")]).await;
        let (b_access, b_refresh) = login_device(&app, &email, &[("device_name", "B")]).await;
        let (_, c_refresh) = login_device(&app, &email, &[("device_name", "C")]).await;
        let (other_access, other_refresh) = login_device(&app, &other, &[]).await;

        // Act
        let r = app.post_auth("/v1/auth/logout-others", &a_access).await;

        // Assert
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await, json!({ "revoked_sessions": 2 }));
        let list = sessions(&app, &a_access).await;
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["id"], sid(&a_access));
        assert_eq!(list[0]["current"], true);
        assert_eq!(
            app.get_auth("/v1/auth/me", &b_access).await.status(),
            StatusCode::UNAUTHORIZED
        );
        for dead in [&b_refresh, &c_refresh] {
            assert_eq!(
                app.post_refresh_mobile(dead).await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
        rotate(&app, &a_refresh).await;
        // Nobody else's sessions were touched.
        assert_eq!(
            app.get_auth("/v1/auth/me", &other_access).await.status(),
            StatusCode::OK
        );
        rotate(&app, &other_refresh).await;

        // Again: nothing left to end.
        let r = app.post_auth("/v1/auth/logout-others", &a_access).await;
        assert_eq!(body(r).await, json!({ "revoked_sessions": 0 }));
    }
);

// ---------------------------------------------------------------------------------
// Access-token claims
// ---------------------------------------------------------------------------------

both!(
    access_tokens_carry_sid_jti_and_the_configured_issuer_and_audience,
    |b| async move {
        // Arrange
        let app = TestApp::spawn_with(
            b,
            &[
                ("JWT_ISSUER", "https://auth.rotor.test"),
                ("JWT_AUDIENCE", "rotor-web"),
            ],
        )
        .await;
        let (user_id, email) = app.registered_user().await;

        // Act
        let (first, refresh) = login_device(&app, &email, &[]).await;
        let (second, _) = login_device(&app, &email, &[]).await;
        let (rotated, _) = rotate(&app, &refresh).await;

        // Assert
        let c = claims(&first);
        assert_eq!(c["sub"], user_id.as_str());
        assert_eq!(c["type"], "access");
        assert_eq!(c["token_version"], 0);
        assert_eq!(c["iss"], "https://auth.rotor.test");
        assert_eq!(c["aud"], "rotor-web");
        assert_eq!(
            c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
            15 * 60
        );
        let sid_first = c["sid"].as_str().expect("sid");
        uuid::Uuid::parse_str(sid_first).expect("sid is a UUID");
        assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()), "jti");
        assert_ne!(sid_first, sid(&second), "each login is its own session");
        assert_eq!(
            claims(&rotated)["sid"],
            sid_first,
            "rotation keeps the session"
        );
        let jtis: std::collections::HashSet<_> = [&first, &second, &rotated]
            .iter()
            .map(|t| claims(t)["jti"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(jtis.len(), 3, "jti is unique per token");
        assert_eq!(
            count(
                &app.db,
                &format!("SELECT count(*) FROM sessions WHERE id = '{sid_first}'")
            )
            .await,
            1
        );
        assert_eq!(
            app.get_auth("/v1/auth/me", &first).await.status(),
            StatusCode::OK
        );
    }
);

both!(
    tokens_without_configured_issuer_carry_the_public_url_and_no_audience,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (_, email) = app.registered_user().await;
        let (access, _) = login_device(&app, &email, &[]).await;
        let c = claims(&access);
        assert_eq!(c["iss"], app.base.as_str(), "{c}");
        assert!(c.get("aud").is_none(), "{c}");
        assert!(c.get("sid").is_some() && c.get("jti").is_some(), "{c}");
    }
);

both!(a_token_for_another_audience_is_rejected, |b| async move {
    // Arrange: two deployments on one database, same secret, different audiences.
    let web = TestApp::spawn_with(b, &[("JWT_AUDIENCE", "rotor-web")]).await;
    let admin_api = web.spawn_beside(&[("JWT_AUDIENCE", "rotor-admin")]).await;
    let (_, email) = web.registered_user().await;
    let (web_token, _) = login_device(&web, &email, &[]).await;
    let (admin_token, _) = login_device(&admin_api, &email, &[]).await;
    assert_eq!(claims(&admin_token)["aud"], "rotor-admin");

    // Act / Assert: each accepts only its own audience.
    assert_eq!(
        web.get_auth("/v1/auth/me", &web_token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        admin_api
            .get_auth("/v1/auth/me", &admin_token)
            .await
            .status(),
        StatusCode::OK
    );
    let r = admin_api.get_auth("/v1/auth/me", &web_token).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body(r).await["detail"], "Not authenticated");
    assert_eq!(
        web.get_auth("/v1/auth/me", &admin_token).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A deployment with no audience configured does not require one, but one that
    // requires an audience refuses a token without it.
    let plain = web.spawn_beside(&[]).await;
    let (plain_token, _) = login_device(&plain, &email, &[]).await;
    assert_eq!(
        web.get_auth("/v1/auth/me", &plain_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
});

// ---------------------------------------------------------------------------------
// The grace window
// ---------------------------------------------------------------------------------

both!(
    retry_within_the_grace_window_returns_the_same_successor,
    |b| async move {
        // Arrange: a browser tab rotated r0 into r1.
        let app = TestApp::spawn(b).await;
        let (_, email) = app.registered_user().await;
        let (access0, r0) = login_device(&app, &email, &[]).await;
        let family = sid(&access0);
        let first = app.post_refresh_cookie(&r0).await;
        assert_eq!(first.status(), StatusCode::OK);
        let r1 = refresh_cookie_value(&first).expect("successor cookie");
        let first_access = body(first).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();

        // Act: a second tab presents r0 again, 9 s later.
        advance(&app, Duration::seconds(9));
        let retry = app.post_refresh_cookie(&r0).await;

        // Assert: the byte-identical successor, a fresh access token, one live token.
        assert_eq!(retry.status(), StatusCode::OK);
        assert_eq!(refresh_cookie_value(&retry).as_deref(), Some(r1.as_str()));
        let retry_access = body(retry).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(retry_access, first_access);
        assert_eq!(sid(&retry_access), family);
        assert_eq!(
            app.get_auth("/v1/auth/me", &retry_access).await.status(),
            StatusCode::OK
        );
        assert_eq!(live_tokens_in_family(&app.db, &family).await, 1);
        assert_eq!(
            count(
                &app.db,
                &format!("SELECT count(*) FROM refresh_tokens WHERE family_id = '{family}'")
            )
            .await,
            2
        );
        let live = app
            .store()
            .get_by_hash(&hash_token(&r1))
            .await
            .unwrap()
            .expect("successor stored");
        assert!(!live.is_revoked);

        // The mobile route retries the same way, and the successor still rotates normally.
        let r = app.post_refresh_mobile(&r0).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await["refresh_token"], r1.as_str());
        let (_, r2) = rotate(&app, &r1).await;
        assert_ne!(r2, r1);
        assert_eq!(live_tokens_in_family(&app.db, &family).await, 1);
    }
);

both!(
    re_presenting_a_rotated_token_after_the_window_is_a_replay,
    |b| async move {
        // Arrange
        let app = TestApp::spawn(b).await;
        let (_, email) = app.registered_user().await;
        let (access0, r0) = login_device(&app, &email, &[]).await;
        let family = sid(&access0);
        let (access1, r1) = rotate(&app, &r0).await;

        // Act
        advance(&app, Duration::seconds(11));
        let r = app.post_refresh_mobile(&r0).await;

        // Assert: 401 TokenRevokedError, committed: nothing live remains in the family.
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(body(r).await["type"], "TokenRevokedError");
        assert_eq!(live_tokens_in_family(&app.db, &family).await, 0);
        assert_eq!(
            app.post_refresh_mobile(&r1).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.get_auth("/v1/auth/me", &access1).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
);

both!(
    presenting_a_grandparent_within_the_window_is_a_replay,
    |b| async move {
        // Arrange: r0 -> r1 -> r2 -> r3, all within a few seconds.
        let app = TestApp::spawn(b).await;
        let (_, email) = app.registered_user().await;
        let (access0, r0) = login_device(&app, &email, &[]).await;
        let family = sid(&access0);
        let (_, r1) = rotate(&app, &r0).await;
        advance(&app, Duration::seconds(1));
        let (_, r2) = rotate(&app, &r1).await;
        advance(&app, Duration::seconds(1));
        let (_, r3) = rotate(&app, &r2).await;

        // Act: an older ancestor, revoked 2 s ago, well within the window.
        advance(&app, Duration::seconds(1));
        assert_replay(&app, &r1).await;

        // Assert
        assert_eq!(live_tokens_in_family(&app.db, &family).await, 0);
        assert_eq!(
            app.post_refresh_mobile(&r3).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
);

both!(
    after_the_successor_rotated_the_first_token_is_a_replay_even_within_the_window,
    |b| async move {
        // Arrange: r0 -> r1, a grace retry of r0 (gets r1 again), then r1 -> r2.
        let app = TestApp::spawn(b).await;
        let (_, email) = app.registered_user().await;
        let (access0, r0) = login_device(&app, &email, &[]).await;
        let family = sid(&access0);
        let (_, r1) = rotate(&app, &r0).await;
        advance(&app, Duration::seconds(2));
        let (_, again) = rotate(&app, &r0).await;
        assert_eq!(again, r1);
        let (_, r2) = rotate(&app, &r1).await;

        // Act: r0 again, still 2 s after its rotation.
        assert_replay(&app, &r0).await;

        // Assert
        assert_eq!(live_tokens_in_family(&app.db, &family).await, 0);
        assert_eq!(
            app.post_refresh_mobile(&r2).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
);

both!(
    with_zero_grace_an_immediate_retry_is_a_replay,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("REFRESH_REUSE_GRACE_SECONDS", "0")]).await;
        let (_, email) = app.registered_user().await;
        let (access0, r0) = login_device(&app, &email, &[]).await;
        let family = sid(&access0);
        let (_, r1) = rotate(&app, &r0).await;

        assert_replay(&app, &r0).await;

        assert_eq!(live_tokens_in_family(&app.db, &family).await, 0);
        assert_eq!(
            app.post_refresh_mobile(&r1).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
);

both!(
    concurrent_refreshes_of_one_token_yield_one_successor,
    |b| async move {
        // Arrange
        let app = TestApp::spawn(b).await;
        let (_, email) = app.registered_user().await;
        let (access0, r0) = login_device(&app, &email, &[]).await;
        let family = sid(&access0);

        // Act: 32 clients present the same token at once.
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let client = app.client.clone();
            let url = app.url("/v1/auth/refresh-mobile");
            let token = r0.clone();
            set.spawn(async move {
                let r = client
                    .post(url)
                    .json(&json!({ "refresh_token": token }))
                    .send()
                    .await
                    .expect("request");
                let status = r.status();
                let b: Value = r.json().await.expect("JSON");
                (status, b)
            });
        }
        let mut successors = std::collections::HashSet::new();
        let mut ok = 0;
        while let Some(joined) = set.join_next().await {
            let (status, b) = joined.expect("task");
            match status {
                StatusCode::OK => {
                    ok += 1;
                    successors.insert(b["refresh_token"].as_str().unwrap().to_owned());
                }
                StatusCode::UNAUTHORIZED => {}
                other => panic!("unexpected {other}: {b}"),
            }
        }

        // Assert: at most one distinct successor, and it is the family's one live token.
        assert!(ok >= 1, "someone must win");
        assert_eq!(successors.len(), 1, "{successors:?}");
        assert_eq!(live_tokens_in_family(&app.db, &family).await, 1);
        let successor = successors.into_iter().next().unwrap();
        let live = app
            .store()
            .get_by_hash(&hash_token(&successor))
            .await
            .unwrap()
            .expect("stored");
        assert!(!live.is_revoked);
        assert_eq!(live.family_id.to_string(), family);
    }
);

// ---------------------------------------------------------------------------------
// Lifetimes
// ---------------------------------------------------------------------------------

both!(
    no_rotation_extends_a_session_past_its_absolute_lifetime,
    |b| async move {
        // Arrange: sessions live at most one day; refresh tokens would live seven.
        let app = TestApp::spawn_with(b, &[("SESSION_MAX_LIFETIME_DAYS", "1")]).await;
        let (_, email) = app.registered_user().await;
        let created = app.now();
        let login = app.post_login(&email, PASSWORD).await;
        assert_eq!(login.status(), StatusCode::OK);
        assert!(
            cookie_max_age(&login) <= 86_400,
            "{:?}",
            refresh_set_cookie(&login)
        );
        let r0 = refresh_cookie_value(&login).unwrap();
        let stored = app
            .store()
            .get_by_hash(&hash_token(&r0))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.expires_at, created + Duration::days(1));
        let session = app
            .store()
            .get_session(stored.family_id)
            .await
            .unwrap()
            .expect("session row");
        assert_eq!(session.absolute_expires_at, created + Duration::days(1));

        // Act: 20 h later the session rotates.
        advance(&app, Duration::hours(20));
        let r = app.post_refresh_cookie(&r0).await;

        // Assert: the successor still ends with the session, not 7 days on.
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(cookie_max_age(&r), 4 * 3600);
        let r1 = refresh_cookie_value(&r).unwrap();
        let successor = app
            .store()
            .get_by_hash(&hash_token(&r1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(successor.expires_at, created + Duration::days(1));

        // Act / Assert: past the absolute end nothing refreshes.
        advance(&app, Duration::hours(4) + Duration::seconds(1));
        let r = app.post_refresh_cookie(&r1).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(body(r).await["type"], "TokenError");
    }
);

both!(
    the_idle_timeout_stays_the_refresh_lifetime,
    |b| async move {
        // Arrange: default configuration (7-day refresh tokens, 30-day sessions).
        let app = TestApp::spawn(b).await;
        let (_, email) = app.registered_user().await;
        let (_, r0) = login_device(&app, &email, &[]).await;

        // A use within the idle timeout renews the token for another 7 days.
        advance(&app, Duration::days(6));
        let (_, r1) = rotate(&app, &r0).await;
        let renewed = app
            .store()
            .get_by_hash(&hash_token(&r1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(renewed.expires_at, app.now() + Duration::days(7));

        // Act: 8 days without use.
        advance(&app, Duration::days(8));
        let r = app.post_refresh_mobile(&r1).await;

        // Assert
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(body(r).await["type"], "TokenError");
    }
);

// ---------------------------------------------------------------------------------
// The security log
// ---------------------------------------------------------------------------------

both!(
    every_security_action_is_in_the_users_own_log_newest_first,
    |b| async move {
        // Arrange: every request carries a User-Agent.
        let mut app = TestApp::spawn(b).await;
        app.client = reqwest::Client::builder().user_agent(UA).build().unwrap();
        let tick = |app: &TestApp| advance(app, Duration::seconds(1));
        let (user_id, email) = app.registered_user().await; // user_created
        tick(&app);

        // Act: one of each action, a second apart.
        let (a_access, a0) = login_device(&app, &email, &[("device_name", "A")]).await; // login_succeeded
        tick(&app);
        assert_eq!(
            app.post_login(&email, "WrongPass999").await.status(),
            StatusCode::UNAUTHORIZED
        ); // login_failed
        tick(&app);
        let (_, a1) = rotate(&app, &a0).await; // refresh
        tick(&app);
        let (b_access, _) = login_device(&app, &email, &[("device_name", "B")]).await; // login_succeeded
        tick(&app);
        let (_, c0) = login_device(&app, &email, &[("device_name", "C")]).await; // login_succeeded
        tick(&app);
        rotate(&app, &c0).await; // refresh
        advance(&app, Duration::seconds(11));
        assert_replay(&app, &c0).await; // replay_detected
        tick(&app);
        assert_eq!(
            delete_session(&app, &a_access, &sid(&b_access))
                .await
                .status(),
            StatusCode::NO_CONTENT
        ); // session_revoked
        tick(&app);
        login_device(&app, &email, &[("device_name", "D")]).await; // login_succeeded
        tick(&app);
        let r = app.post_auth("/v1/auth/logout-others", &a_access).await; // logout_others
        assert_eq!(body(r).await["revoked_sessions"], 1);
        tick(&app);
        let r = app
            .client
            .post(app.url("/v1/auth/change-password"))
            .bearer_auth(&a_access)
            .json(&json!({ "current_password": PASSWORD, "new_password": "NewPass4567" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT); // password_changed
        tick(&app);
        // The password change bumped token_version; the surviving session refreshes.
        let (a_access, _) = rotate(&app, &a1).await; // refresh
        tick(&app);
        let r = app.post_auth("/v1/auth/logout-all", &a_access).await; // logout_all
        assert_eq!(r.status(), StatusCode::OK);
        tick(&app);
        let r = app.post_login_mobile(&email, "NewPass4567", &[]).await; // login_succeeded
        let reader = body(r).await["access_token"].as_str().unwrap().to_owned();

        // Assert: the whole history, newest first.
        let r = app.get_auth("/v1/auth/events?size=100", &reader).await;
        assert_eq!(r.status(), StatusCode::OK);
        let page = body(r).await;
        let expected = [
            "login_succeeded",
            "logout_all",
            "refresh",
            "password_changed",
            "logout_others",
            "login_succeeded",
            "session_revoked",
            "replay_detected",
            "refresh",
            "login_succeeded",
            "login_succeeded",
            "refresh",
            "login_failed",
            "login_succeeded",
            "user_created",
        ];
        let kinds: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, expected);
        assert_eq!(page["total"], expected.len());
        assert_eq!(
            (page["page"].clone(), page["size"].clone()),
            (json!(1), json!(100))
        );
        let items = page["items"].as_array().unwrap();
        let mut previous: Option<DateTime<Utc>> = None;
        for e in items {
            assert_eq!(e["user_id"], user_id.as_str(), "{e}");
            assert_eq!(e["ip_address"], "127.0.0.1", "{e}");
            assert_eq!(e["user_agent"], UA, "{e}");
            let at = time(&e["created_at"]);
            assert!(previous.is_none_or(|p| p > at), "strictly newest first");
            previous = Some(at);
        }
        // Session-scoped events name their session.
        let revoked = items
            .iter()
            .find(|e| e["kind"] == "session_revoked")
            .unwrap();
        assert_eq!(revoked["session_id"], sid(&b_access));
        let replay = items
            .iter()
            .find(|e| e["kind"] == "replay_detected")
            .unwrap();
        assert!(replay["session_id"].is_string());
        assert_eq!(
            count(
                &app.db,
                &format!("SELECT count(*) FROM audit_events WHERE user_id = '{user_id}'")
            )
            .await,
            expected.len() as i64
        );

        // Pagination: page 2 of size 4 is items 4..8; the total is unchanged.
        let r = app.get_auth("/v1/auth/events?page=2&size=4", &reader).await;
        let page2 = body(r).await;
        assert_eq!(page2["total"], expected.len());
        assert_eq!(
            (page2["page"].clone(), page2["size"].clone()),
            (json!(2), json!(4))
        );
        let ids: Vec<&Value> = page2["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["id"])
            .collect();
        let want: Vec<&Value> = items[4..8].iter().map(|e| &e["id"]).collect();
        assert_eq!(ids, want);
        let r = app.get_auth("/v1/auth/events?page=4&size=4", &reader).await;
        assert_eq!(
            body(r).await["items"].as_array().unwrap().len(),
            expected.len() - 12
        );
        // A kind filter on one's own log.
        let r = app.get_auth("/v1/auth/events?kind=refresh", &reader).await;
        assert_eq!(body(r).await["total"], 3);
        // Without a bearer: 401.
        assert_eq!(
            app.status_of("/v1/auth/events").await,
            StatusCode::UNAUTHORIZED
        );
    }
);

both!(
    admins_see_and_filter_every_event_including_unknown_email_failures,
    |b| async move {
        // Arrange: a user with some history, another user, an admin.
        let mut app = TestApp::spawn(b).await;
        app.client = reqwest::Client::builder().user_agent(UA).build().unwrap();
        let (user_id, email) = app.registered_user().await;
        let (other_id, other_email) = app.registered_user().await;
        let (user_access, _) = login_device(&app, &email, &[]).await;
        let (other_access, _) = login_device(&app, &other_email, &[]).await;
        assert_eq!(
            app.post_login(&email, "WrongPass999").await.status(),
            StatusCode::UNAUTHORIZED
        );
        let stranger = "nobody-here@test.com";
        assert_eq!(
            app.post_login(stranger, PASSWORD).await.status(),
            StatusCode::UNAUTHORIZED
        );
        let (_, admin_access) = app.admin_session().await;

        // Act: the admin deactivates the user.
        advance(&app, Duration::seconds(1));
        let r = app
            .client
            .patch(app.url(&format!("/v1/admin/users/{user_id}")))
            .bearer_auth(&admin_access)
            .json(&json!({ "is_active": false }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await["is_active"], false);

        // Assert: filters by user and kind.
        let admin_get = |q: &'static str| {
            let (app, token) = (&app, admin_access.clone());
            async move {
                let r = app.get_auth(&format!("/v1/admin/events{q}"), &token).await;
                assert_eq!(r.status(), StatusCode::OK, "{q}");
                body(r).await
            }
        };
        let q = format!("?user_id={user_id}&kind=user_deactivated");
        let r = app
            .get_auth(&format!("/v1/admin/events{q}"), &admin_access)
            .await;
        let page = body(r).await;
        assert_eq!(page["total"], 1, "{page}");
        let ev = &page["items"][0];
        assert_eq!(ev["kind"], "user_deactivated");
        assert_eq!(ev["user_id"], user_id.as_str());
        assert_eq!(ev["ip_address"], "127.0.0.1");
        assert_eq!(ev["user_agent"], UA);
        assert_eq!(time(&ev["created_at"]), app.now());

        let r = app
            .get_auth(
                &format!("/v1/admin/events?user_id={user_id}"),
                &admin_access,
            )
            .await;
        let kinds: Vec<String> = body(r).await["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kinds.first().map(String::as_str), Some("user_deactivated"));
        for k in ["user_created", "login_succeeded", "login_failed"] {
            assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
        }
        assert_eq!(
            kinds.len() as i64,
            count(
                &app.db,
                &format!("SELECT count(*) FROM audit_events WHERE user_id = '{user_id}'")
            )
            .await
        );

        // The unknown email's failure is recorded with no user: admins see it...
        let failures = admin_get("?kind=login_failed").await;
        assert_eq!(failures["total"], 2, "{failures}");
        let anonymous: Vec<&Value> = failures["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["user_id"].is_null())
            .collect();
        assert_eq!(anonymous.len(), 1, "{failures}");
        assert_eq!(anonymous[0]["ip_address"], "127.0.0.1");
        assert_eq!(
            count(
                &app.db,
                "SELECT count(*) FROM audit_events WHERE user_id IS NULL"
            )
            .await,
            1
        );
        let all = admin_get("?size=100").await;
        assert_eq!(
            all["total"].as_i64().unwrap(),
            count(&app.db, "SELECT count(*) FROM audit_events").await
        );
        // ...but it is in no user's own log.
        for kinds in [
            my_event_kinds(&app, &other_access).await,
            my_event_kinds(&app, &admin_access).await,
        ] {
            assert!(!kinds.iter().any(|k| k == "login_failed"), "{kinds:?}");
        }
        let r = app
            .get_auth("/v1/auth/events?size=100", &other_access)
            .await;
        let theirs = body(r).await;
        assert!(
            theirs["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["user_id"] == other_id.as_str()),
            "{theirs}"
        );

        // The deactivation ended the user's access.
        assert_eq!(
            app.get_auth("/v1/auth/me", &user_access).await.status(),
            StatusCode::UNAUTHORIZED
        );

        // Non-admins are forbidden; no bearer is 401.
        let r = app.get_auth("/v1/admin/events", &other_access).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(body(r).await["type"], "PermissionDenied");
        let r = app
            .client
            .get(app.url("/v1/admin/events"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
);

both!(
    cleanup_removes_audit_events_past_retention,
    |b| async move {
        // Arrange: events at t0, more at t0 + 2 days; then 89 more days pass.
        let app = TestApp::spawn(b).await;
        let (user_id, email) = app.registered_user().await; // user_created
        login_device(&app, &email, &[]).await; // login_succeeded
        advance(&app, Duration::days(2));
        assert_eq!(
            app.post_login(&email, "WrongPass999").await.status(),
            StatusCode::UNAUTHORIZED
        ); // login_failed
        advance(&app, Duration::days(89));
        let (access, _) = login_device(&app, &email, &[]).await; // login_succeeded
        assert_eq!(count(&app.db, "SELECT count(*) FROM audit_events").await, 4);

        // Act: now t0 + 91 days; retention is 90 days.
        let report = app
            .rotor
            .cleanup(None)
            .await
            .unwrap()
            .expect("no other cleanup running");

        // Assert: only the t0 events are gone (and the first session, long expired).
        assert_eq!(report.audit_events, 2);
        assert_eq!(report.refresh_tokens, 1);
        assert_eq!(report.sessions, 1);
        assert_eq!(count(&app.db, "SELECT count(*) FROM audit_events").await, 2);
        assert_eq!(
            count(
                &app.db,
                "SELECT count(*) FROM audit_events WHERE kind IN ('user_created')"
            )
            .await,
            0
        );
        assert_eq!(
            count(
                &app.db,
                &format!("SELECT count(*) FROM audit_events WHERE user_id = '{user_id}'")
            )
            .await,
            2
        );
        assert_eq!(count(&app.db, "SELECT count(*) FROM sessions").await, 1);
        assert_eq!(
            count(&app.db, "SELECT count(*) FROM refresh_tokens").await,
            1
        );
        assert_eq!(
            my_event_kinds(&app, &access).await,
            vec!["login_succeeded", "login_failed"]
        );
        let again = app.rotor.cleanup(None).await.unwrap().unwrap();
        assert_eq!(
            (again.audit_events, again.refresh_tokens, again.sessions),
            (0, 0, 0)
        );
    }
);
