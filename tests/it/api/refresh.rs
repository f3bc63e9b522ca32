//! `http/auth.rs`'s refresh routes: `POST /v1/auth/refresh` (cookie) and
//! `/v1/auth/refresh-mobile`; replays, racing rotations and the grace window.

use super::*;
use rotor::storage::SeedRepository;

// ---------------------------------------------------------------------------------
// POST /v1/auth/refresh (cookie)
// ---------------------------------------------------------------------------------

both!(
    refresh_rotates_the_cookie_and_answers_a_new_access_token,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = app.new_user().await;
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
        assert_eq!(live_tokens_in_family(&app.db, family).await, 1);

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
    let user = app.new_user().await;
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
        let user = app.new_user().await;
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
        assert_eq!(live_tokens_in_family(&app.db, token.family_id).await, 0);
    }
);

both!(
    refresh_fails_once_the_user_is_deleted_or_deactivated,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let gone = app.new_user().await;
        let disabled = app.new_user().await;
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
        let user = app.new_user().await;
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
        assert_eq!(live_tokens_in_family(&app.db, family).await, 1);
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
            live_tokens_in_family(&app.db, family).await,
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
            live_tokens_in_family(&app.db, family).await,
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
            live_tokens_in_family(&app.db, family).await <= 1,
            "never two live tokens in a family"
        );
        assert!(
            tokens_in_family(&app, family).await <= 2,
            "at most one successor"
        );
        if ok.len() == 1 && results.len() > 1 {
            // The losers replayed a rotated token: the family is revoked for good.
            assert_eq!(live_tokens_in_family(&app.db, family).await, 0);
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
        assert_eq!(live_tokens_in_family(&app.db, family).await, 1);
        assert!(app
            .store()
            .get_valid_by_hash(&hash_token(&successor), app.now())
            .await
            .unwrap()
            .is_some());
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
            live_tokens_in_family(&first.db, family).await,
            0,
            "the replays revoked the family"
        );
    }
}
