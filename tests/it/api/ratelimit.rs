//! `RATE_LIMIT_AUTH` on the limited routes of the route table: 429s, `Retry-After`
//! and the `X-RateLimit-*` headers (`src/ratelimit.rs`).

use super::*;

// ---------------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------------

both!(
    the_fourth_login_in_a_minute_is_429_with_retry_after,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("RATE_LIMIT_AUTH", "3/minute")]).await;
        let user = app.new_user().await;
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
        let user = app.new_user().await;
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
        let user = app.new_user().await;
        let r = app.post_login(&user.email, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(rate_limit_headers(&r), None);
        assert!(!r.headers().contains_key(header::RETRY_AFTER));
    }
);

both!(rate_limit_off_never_answers_429, |b| async move {
    let app = TestApp::spawn_with(b, &[("RATE_LIMIT_AUTH", "off")]).await;
    let user = app.new_user().await;

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
