//! OAuth 2.0 (docs/behaviour.md, "OAuth 2.0 and keys"): the token endpoint's password and refresh_token grants with
//! RFC 6749 bodies and the `/v1` rotation rules, revocation (RFC 7009), authenticated
//! introspection (RFC 7662), server metadata (RFC 8414); a stock client library
//! (Python authlib + PyJWT) against a running rotor; and rotor embedded in another
//! axum application, as `examples/embedded.rs` does it.

use rotor::domain::email::EmailKey;
use std::{net::SocketAddr, sync::Arc, time::Duration as StdDuration};

use axum::{
    extract::{FromRef, State},
    routing::get,
    Json, Router,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use chrono::Duration;
use reqwest::{header, Response, StatusCode};
use rotor::{
    clock::{Clock, SystemClock},
    http::{Admin, AppState, Auth},
    storage::{postgres::PgStore, sqlite::SqliteStore, Store},
    Rotor,
};
use serde_json::{json, Value};

use crate::{
    both,
    support::{count, jwt_part, live_tokens_in_family, sid, Backend, TestApp, TestDb},
};

const INTROSPECTION_SECRET: &str = "resource-server-introspection-secret";

async fn post_form(app: &TestApp, path: &str, form: &[(&str, &str)]) -> Response {
    app.client
        .post(app.url(path))
        .form(form)
        .send()
        .await
        .expect("POST form")
}

async fn token(app: &TestApp, form: &[(&str, &str)]) -> Response {
    post_form(app, "/oauth/token", form).await
}

fn no_store(r: &Response) {
    assert_eq!(
        r.headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "token endpoint answers must not be cached"
    );
}

/// An RFC 6749 §5.2 error: status 400 (unless said otherwise), `error` code, a
/// description, no-store.
async fn assert_oauth_error(r: Response, status: StatusCode, error: &str) -> Value {
    assert_eq!(r.status(), status, "expected {error}");
    no_store(&r);
    let body: Value = r.json().await.expect("JSON error body");
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    body
}

/// A successful RFC 6749 §5.1 token response; returns (access, refresh).
async fn assert_token_response(r: Response) -> (String, String) {
    assert_eq!(r.status(), StatusCode::OK);
    no_store(&r);
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 15 * 60);
    let access = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let refresh = body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    assert_eq!(refresh.len(), 43);
    (access, refresh)
}

async fn password_grant(app: &TestApp, email: &str) -> (String, String) {
    let r = token(
        app,
        &[
            ("grant_type", "password"),
            ("username", email),
            ("password", "TestPass123"),
        ],
    )
    .await;
    assert_token_response(r).await
}

async fn session_ended(app: &TestApp, family: &str) -> bool {
    count(
        &app.db,
        &format!("SELECT count(*) FROM sessions WHERE id = '{family}' AND revoked_at IS NOT NULL"),
    )
    .await
        == 1
}

async fn introspect_as_resource_server(app: &TestApp, token: &str) -> Value {
    let r = app
        .client
        .post(app.url("/oauth/introspect"))
        .basic_auth("resource-server", Some(INTROSPECTION_SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    no_store(&r);
    r.json().await.unwrap()
}

both!(
    password_grant_issues_an_rfc6749_token_response,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let email = app.registered_user().await.1;
        let (access, refresh) = password_grant(&app, &email).await;
        let me = app.get_auth("/v1/auth/me", &access).await;
        assert_eq!(me.status(), StatusCode::OK);
        assert_eq!(me.json::<Value>().await.unwrap()["email"], email.as_str());
        // The refresh token is a /v1 refresh token like any other.
        let r = app.post_refresh_mobile(&refresh).await;
        assert_eq!(r.status(), StatusCode::OK);
        // No refresh cookie: OAuth clients keep the token themselves.
        let r = token(
            &app,
            &[
                ("grant_type", "password"),
                ("username", &email),
                ("password", "TestPass123"),
            ],
        )
        .await;
        assert!(crate::support::refresh_set_cookie(&r).is_none());
        assert_eq!(
            r.headers()
                .get(header::PRAGMA)
                .and_then(|v| v.to_str().ok()),
            Some("no-cache")
        );
    }
);

both!(token_endpoint_errors_use_rfc6749_codes, |b| async move {
    let app = TestApp::spawn(b).await;
    let email = app.registered_user().await.1;
    let r = token(
        &app,
        &[("username", email.as_str()), ("password", "TestPass123")],
    )
    .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let r = token(&app, &[]).await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    for grant in [
        "client_credentials",
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:device_code",
        "",
    ] {
        let r = token(
            &app,
            &[
                ("grant_type", grant),
                ("username", &email),
                ("password", "TestPass123"),
            ],
        )
        .await;
        let expected = if grant.is_empty() {
            "invalid_request"
        } else {
            "unsupported_grant_type"
        };
        assert_oauth_error(r, StatusCode::BAD_REQUEST, expected).await;
    }
    let r = token(
        &app,
        &[
            ("grant_type", "password"),
            ("username", &email),
            ("password", "WrongPass123"),
        ],
    )
    .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let r = token(
        &app,
        &[
            ("grant_type", "password"),
            ("username", "nobody@test.com"),
            ("password", "TestPass123"),
        ],
    )
    .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let r = token(&app, &[("grant_type", "password"), ("username", &email)]).await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let r = token(&app, &[("grant_type", "refresh_token")]).await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    for bogus in ["never-issued-token", "not a token!", "a.b.c"] {
        let r = token(
            &app,
            &[("grant_type", "refresh_token"), ("refresh_token", bogus)],
        )
        .await;
        assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    // A JSON body is not what RFC 6749 specifies; it is refused, not a 500.
    let r = app
        .client
        .post(app.url("/oauth/token"))
        .json(&json!({"grant_type": "password", "username": email, "password": "TestPass123"}))
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    // An inactive user is an invalid grant, as a wrong password.
    let user = app
        .store()
        .get_user_by_email(&EmailKey::of(&email))
        .await
        .unwrap()
        .unwrap();
    let patch = rotor::storage::UserPatch {
        is_active: Some(false),
        ..Default::default()
    };
    app.store()
        .update_user(user.id, &patch, app.now())
        .await
        .unwrap();
    let r = token(
        &app,
        &[
            ("grant_type", "password"),
            ("username", &email),
            ("password", "TestPass123"),
        ],
    )
    .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
});

both!(
    refresh_grant_rotates_with_the_v1_grace_and_replay_rules,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let email = app.registered_user().await.1;
        let (access0, r0) = password_grant(&app, &email).await;
        let family = sid(&access0);

        let (access1, r1) = assert_token_response(
            token(
                &app,
                &[("grant_type", "refresh_token"), ("refresh_token", &r0)],
            )
            .await,
        )
        .await;
        assert_ne!(r1, r0, "the refresh token rotates");
        assert_eq!(sid(&access1), family, "same session");
        assert_eq!(live_tokens_in_family(&app.db, &family).await, 1);

        // Within the grace window the just-rotated token answers with the same successor.
        let (_, again) = assert_token_response(
            token(
                &app,
                &[("grant_type", "refresh_token"), ("refresh_token", &r0)],
            )
            .await,
        )
        .await;
        assert_eq!(again, r1, "idempotent retry within the grace window");
        assert_eq!(live_tokens_in_family(&app.db, &family).await, 1);

        // After the window it is a replay: invalid_grant, and the family is revoked in the
        // database (committed before the answer).
        app.clock.advance(Duration::seconds(11));
        let body = assert_oauth_error(
            token(
                &app,
                &[("grant_type", "refresh_token"), ("refresh_token", &r0)],
            )
            .await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        )
        .await;
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("revoked"),
            "{body}"
        );
        assert_eq!(live_tokens_in_family(&app.db, &family).await, 0);
        assert!(session_ended(&app, &family).await);
        // The successor died with its family, on /oauth and on /v1 alike.
        let r = token(
            &app,
            &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
        )
        .await;
        assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
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

both!(oauth_and_v1_share_one_rotation_chain, |b| async move {
    let app = TestApp::spawn_with(b, &[("REFRESH_REUSE_GRACE_SECONDS", "0")]).await;
    let email = app.registered_user().await.1;
    let (_, r0) = password_grant(&app, &email).await;
    // Rotate through /v1, then present the /oauth-issued ancestor to /oauth: a replay
    // (grace 0 is the strict original behaviour).
    let r = app.post_refresh_mobile(&r0).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r1 = r.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = token(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", &r0)],
    )
    .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(
        app.post_refresh_mobile(&r1).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // And the other way round: a /v1 login refreshed through /oauth.
    let (_, v1_refresh) = app.login_mobile(&email, "TestPass123").await;
    let (access, _) = assert_token_response(
        token(
            &app,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &v1_refresh),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(
        app.get_auth("/v1/auth/me", &access).await.status(),
        StatusCode::OK
    );
});

both!(
    client_id_is_accepted_in_basic_or_form_and_recorded,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("INTROSPECTION_SECRET", INTROSPECTION_SECRET)]).await;
        let email = app.registered_user().await.1;
        let form = [
            ("grant_type", "password"),
            ("username", email.as_str()),
            ("password", "TestPass123"),
        ];

        // HTTP Basic with an empty secret (RFC 6749 §2.3.1, public client).
        let r = app
            .client
            .post(app.url("/oauth/token"))
            .header(
                header::AUTHORIZATION,
                format!("Basic {}", STANDARD.encode("basic-client:")),
            )
            .form(&form)
            .send()
            .await
            .unwrap();
        let (access, refresh) = assert_token_response(r).await;
        assert_eq!(
            introspect_as_resource_server(&app, &access).await["client_id"],
            "basic-client"
        );
        // The refresh grant with the same Basic credentials (as authlib sends them).
        let r = app
            .client
            .post(app.url("/oauth/token"))
            .basic_auth("basic-client", Some(""))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
            ])
            .send()
            .await
            .unwrap();
        let (_, refresh) = assert_token_response(r).await;
        assert_eq!(
            introspect_as_resource_server(&app, &refresh).await["client_id"],
            "basic-client"
        );

        // In the form (client_secret_post / none).
        let mut with_id = form.to_vec();
        with_id.push(("client_id", "form-client"));
        let (access, _) = assert_token_response(token(&app, &with_id).await).await;
        assert_eq!(
            introspect_as_resource_server(&app, &access).await["client_id"],
            "form-client"
        );
        with_id.push(("client_secret", ""));
        assert_token_response(token(&app, &with_id).await).await;

        // Basic without a password part at all, and a percent-encoded id.
        let r = app
            .client
            .post(app.url("/oauth/token"))
            .header(
                header::AUTHORIZATION,
                format!("Basic {}", STANDARD.encode("my%20app:")),
            )
            .form(&form)
            .send()
            .await
            .unwrap();
        let (access, _) = assert_token_response(r).await;
        assert_eq!(
            introspect_as_resource_server(&app, &access).await["client_id"],
            "my app"
        );

        // No client id at all is fine too.
        let (access, _) = password_grant(&app, &email).await;
        assert!(introspect_as_resource_server(&app, &access)
            .await
            .get("client_id")
            .is_none());
    }
);

both!(revocation_follows_rfc7009, |b| async move {
    let app = TestApp::spawn(b).await;
    let email = app.registered_user().await.1;

    // Unknown or malformed tokens: 200, nothing happens.
    for unknown in [
        "never-issued-token",
        "not a token!",
        "a.b.c",
        "eyJhbGciOiJIUzI1NiJ9.e30.x",
    ] {
        let r = post_form(&app, "/oauth/revoke", &[("token", unknown)]).await;
        assert_eq!(r.status(), StatusCode::OK, "{unknown}");
    }
    let r = post_form(&app, "/oauth/revoke", &[]).await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;

    // A refresh token: its session ends; its refresh and its access tokens stop.
    let (access, refresh) = password_grant(&app, &email).await;
    let (other_access, other_refresh) = password_grant(&app, &email).await;
    let r = post_form(
        &app,
        "/oauth/revoke",
        &[("token", &refresh), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(session_ended(&app, &sid(&access)).await);
    assert_eq!(live_tokens_in_family(&app.db, &sid(&access)).await, 0);
    let r = token(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(
        app.get_auth("/v1/auth/me", &access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Idempotent.
    let r = post_form(&app, "/oauth/revoke", &[("token", &refresh)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    // The user's other session is untouched.
    assert_eq!(
        app.get_auth("/v1/auth/me", &other_access).await.status(),
        StatusCode::OK
    );

    // An access token (with a client id in Basic, as a client would send it): its
    // session ends, so its refresh token stops as well.
    let r = app
        .client
        .post(app.url("/oauth/revoke"))
        .basic_auth("some-client", Some(""))
        .form(&[
            ("token", other_access.as_str()),
            ("token_type_hint", "access_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.get_auth("/v1/auth/me", &other_access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = token(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &other_refresh),
        ],
    )
    .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(session_ended(&app, &sid(&other_access)).await);

    // A rotated (already revoked) ancestor still names its session: revoking it ends
    // the session of the live successor too.
    let (_, r0) = password_grant(&app, &email).await;
    let (a1, r1) = assert_token_response(
        token(
            &app,
            &[("grant_type", "refresh_token"), ("refresh_token", &r0)],
        )
        .await,
    )
    .await;
    assert_eq!(
        post_form(&app, "/oauth/revoke", &[("token", &r0)])
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get_auth("/v1/auth/me", &a1).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = token(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_oauth_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
});

both!(
    introspection_requires_an_authenticated_caller,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("INTROSPECTION_SECRET", INTROSPECTION_SECRET)]).await;
        let email = app.registered_user().await.1;
        let (user_access, _) = password_grant(&app, &email).await;
        let introspect = |auth: Option<(&'static str, String)>| {
            let mut req = app
                .client
                .post(app.url("/oauth/introspect"))
                .form(&[("token", user_access.as_str())]);
            if let Some((scheme, value)) = auth {
                req = req.header(header::AUTHORIZATION, format!("{scheme} {value}"));
            }
            req.send()
        };

        let r = introspect(None).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].is_string(), "{body}");
        assert!(
            body.get("active").is_none(),
            "nothing about the token leaks: {body}"
        );

        let wrong_secret = STANDARD.encode("resource-server:not-the-secret");
        let empty_secret = STANDARD.encode("resource-server:");
        for auth in [
            Some(("Basic", wrong_secret)),
            Some(("Basic", empty_secret)),
            Some(("Bearer", user_access.clone())), // not an admin
            Some(("Bearer", "not-a-token".to_owned())),
        ] {
            assert_eq!(
                introspect(auth).await.unwrap().status(),
                StatusCode::UNAUTHORIZED
            );
        }

        // The introspection secret in HTTP Basic.
        let good = STANDARD.encode(format!("resource-server:{INTROSPECTION_SECRET}"));
        let r = introspect(Some(("Basic", good))).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["active"], true);

        // An admin bearer token.
        let (_, admin_access) = app.admin_session().await;
        let r = introspect(Some(("Bearer", admin_access))).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.json::<Value>().await.unwrap()["active"], true);
    }
);

both!(
    introspection_without_a_configured_secret_accepts_no_basic_secret,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let email = app.registered_user().await.1;
        let (access, _) = password_grant(&app, &email).await;
        for basic in ["resource-server:", ":", "resource-server:anything"] {
            let r = app
                .client
                .post(app.url("/oauth/introspect"))
                .header(
                    header::AUTHORIZATION,
                    format!("Basic {}", STANDARD.encode(basic)),
                )
                .form(&[("token", access.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{basic}");
        }
    }
);

both!(
    introspection_describes_live_tokens_and_only_those,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("INTROSPECTION_SECRET", INTROSPECTION_SECRET)]).await;
        let email = app.registered_user().await.1;
        let (access, refresh) = password_grant(&app, &email).await;
        let user_id = jwt_part(&access, 1)["sub"].as_str().unwrap().to_owned();

        let a = introspect_as_resource_server(&app, &access).await;
        assert_eq!(a["active"], true);
        assert_eq!(a["token_type"], "access_token");
        assert_eq!(a["sub"], user_id.as_str());
        assert_eq!(a["username"], email.as_str());
        assert_eq!(a["exp"], jwt_part(&access, 1)["exp"]);
        assert_eq!(a["iat"], jwt_part(&access, 1)["iat"]);
        assert_eq!(a["sid"], sid(&access).as_str());

        let r = introspect_as_resource_server(&app, &refresh).await;
        assert_eq!(r["active"], true);
        assert_eq!(r["token_type"], "refresh_token");
        assert_eq!(r["sub"], user_id.as_str());
        assert_eq!(r["sid"], sid(&access).as_str());
        let exp = r["exp"].as_i64().unwrap();
        assert_eq!(exp, (app.now() + Duration::days(7)).timestamp());

        // Unknown and malformed tokens: exactly {"active": false}.
        for unknown in ["never-issued-token", "a.b.c", "not a token!"] {
            assert_eq!(
                introspect_as_resource_server(&app, unknown).await,
                json!({ "active": false })
            );
        }

        // A rotated refresh token is inactive (its successor is active).
        let (_, successor) = assert_token_response(
            token(
                &app,
                &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
            )
            .await,
        )
        .await;
        assert_eq!(
            introspect_as_resource_server(&app, &refresh).await,
            json!({ "active": false })
        );
        assert_eq!(
            introspect_as_resource_server(&app, &successor).await["active"],
            true
        );

        // Revoked: the session's access and refresh tokens are inactive.
        assert_eq!(
            post_form(&app, "/oauth/revoke", &[("token", &successor)])
                .await
                .status(),
            StatusCode::OK
        );
        assert_eq!(
            introspect_as_resource_server(&app, &successor).await,
            json!({ "active": false })
        );
        assert_eq!(
            introspect_as_resource_server(&app, &access).await,
            json!({ "active": false })
        );

        // Expired access token: inactive.
        let (access, _) = password_grant(&app, &email).await;
        app.clock.advance(Duration::minutes(15));
        assert_eq!(
            introspect_as_resource_server(&app, &access).await,
            json!({ "active": false })
        );
    }
);

both!(
    authorization_server_metadata_follows_rfc8414,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("JWT_ALGORITHM", "EdDSA")]).await;
        let r = app
            .client
            .get(app.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let m: Value = r.json().await.unwrap();
        assert_eq!(m["issuer"], app.base.as_str());
        assert_eq!(m["token_endpoint"], app.url("/oauth/token"));
        assert_eq!(m["revocation_endpoint"], app.url("/oauth/revoke"));
        assert_eq!(m["introspection_endpoint"], app.url("/oauth/introspect"));
        assert_eq!(m["jwks_uri"], app.url("/.well-known/jwks.json"));
        let grants: Vec<&str> = m["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(grants, vec!["password", "refresh_token"]);
        assert!(m["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("none")));
        // Every advertised endpoint answers (not 404) on this server.
        for key in ["jwks_uri", "service_documentation"] {
            let r = app
                .client
                .get(m[key].as_str().unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{key}");
        }
        for key in [
            "token_endpoint",
            "revocation_endpoint",
            "introspection_endpoint",
        ] {
            let r = app
                .client
                .post(m[key].as_str().unwrap())
                .form(&[("x", "y")])
                .send()
                .await
                .unwrap();
            assert_ne!(r.status(), StatusCode::NOT_FOUND, "{key}");
        }

        // With JWT_ISSUER configured, the issuer is that value, verbatim (as in the
        // tokens' iss claim), and the endpoints stay under PUBLIC_URL.
        let app = TestApp::spawn_with(b, &[("JWT_ISSUER", "https://auth.example.test/")]).await;
        let m: Value = app.json_of("/.well-known/oauth-authorization-server").await;
        assert_eq!(m["issuer"], "https://auth.example.test/");
        assert_eq!(m["token_endpoint"], app.url("/oauth/token"));
    }
);

// ---------------------------------------------------------------------------------
// A stock OAuth client library, unmodified: Python authlib and PyJWT.
// ---------------------------------------------------------------------------------

const CLIENT_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/oauth_client.py");
const INSTALL_HINT: &str = "pip install -r tests/clients/requirements.txt";

fn run_python(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new("python3")
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is required for this test ({e}); then run: {INSTALL_HINT}")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stock_python_client_fetches_refreshes_and_revokes() {
    // Never pass silently: without the client libraries this test fails and says how
    // to install them.
    let probe = tokio::task::spawn_blocking(|| {
        run_python(&["-c", "import authlib, jwt, requests, cryptography"], &[])
    })
    .await
    .unwrap();
    assert!(
        probe.status.success(),
        "the stock-client test needs Python's authlib, PyJWT, requests and cryptography: {INSTALL_HINT}\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );

    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("JWT_ALGORITHM", "EdDSA"),
            ("INTROSPECTION_SECRET", INTROSPECTION_SECRET),
        ],
    )
    .await;
    let base = app.base.clone();
    let run = tokio::task::spawn_blocking(move || {
        run_python(
            &[CLIENT_SCRIPT, &base],
            &[("ROTOR_INTROSPECTION_SECRET", INTROSPECTION_SECRET)],
        )
    });
    let out = tokio::time::timeout(StdDuration::from_secs(120), run)
        .await
        .expect("the Python client finishes within 2 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/clients/oauth_client.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(stdout.contains("ALL OK"), "{stdout}");
    println!("{stdout}");

    // What the client did is visible in rotor: a session with its client id, rotated
    // and then revoked through /oauth/revoke.
    assert!(
        count(
            &app.db,
            "SELECT count(*) FROM sessions WHERE client_id = 'python-authlib'"
        )
        .await
            >= 1
    );
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) FROM sessions WHERE client_id = 'python-authlib' AND revoked_at IS NULL"
        )
        .await,
        0,
        "the client revoked its session"
    );
}

// ---------------------------------------------------------------------------------
// Library use: rotor inside another axum application (what examples/embedded.rs does).
// ---------------------------------------------------------------------------------

/// The embedding application's own state; rotor's extractors find rotor in it
/// through `FromRef`.
#[derive(Clone)]
struct ShopState {
    rotor: Arc<Rotor>,
    shop_name: &'static str,
}

impl FromRef<ShopState> for Arc<Rotor> {
    fn from_ref(state: &ShopState) -> Self {
        state.rotor.clone()
    }
}

async fn hello(State(shop): State<ShopState>, Auth(principal): Auth) -> Json<Value> {
    Json(json!({
        "shop": shop.shop_name,
        "user_id": principal.user.id,
        "email": principal.user.email,
        "session_id": principal.session_id,
    }))
}

async fn admin_only(Admin(principal): Admin) -> Json<Value> {
    Json(json!({ "admin": principal.user.email }))
}

async fn public() -> &'static str {
    "open to all"
}

/// rotor on a store the embedding application opened itself (its own PostgreSQL pool;
/// on SQLite, rotor's store on the application's file).
async fn rotor_on_own_pool(db: &TestDb, extra: &[(&str, &str)]) -> Arc<Rotor> {
    let store: Arc<dyn Store> = match db.backend {
        Backend::Sqlite => Arc::new(SqliteStore::open(&db.sqlite_path(), Some(2)).await.unwrap()),
        Backend::Postgres => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .connect(&db.url)
                .await
                .unwrap();
            Arc::new(PgStore::from_pool(pool))
        }
    };
    store
        .migrate()
        .await
        .expect("rotor's migrations on the application's pool");
    let rotor = Rotor::new(
        db.settings(extra),
        store,
        Arc::new(SystemClock) as Arc<dyn Clock>,
    )
    .await
    .expect("rotor on the application's pool");
    Arc::new(rotor)
}

both!(
    an_embedding_app_protects_its_own_routes_with_rotor,
    |b| async move {
        let db = TestDb::new(b).await;
        let rotor = rotor_on_own_pool(&db, &[("JWT_ALGORITHM", "EdDSA")]).await;
        let shop = ShopState {
            rotor: rotor.clone(),
            shop_name: "the embedding app",
        };
        let app: Router = Router::new()
            .route("/", get(public))
            .route("/api/hello", get(hello))
            .route("/api/admin", get(admin_only))
            .with_state(shop)
            .merge(rotor::http::routes(AppState::new(rotor.clone())));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        let client = reqwest::Client::new();
        let url = |p: &str| format!("{base}{p}");

        assert_eq!(
            client
                .get(url("/"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            "open to all"
        );
        let r = client.get(url("/api/hello")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({ "detail": "Not authenticated" })
        );
        let r = client
            .get(url("/api/hello"))
            .bearer_auth("garbage")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

        // rotor's own routes are served by the embedding app: register, log in, JWKS.
        let email = rotor::testing::UserFactory::next_email();
        let r = client
            .post(url("/v1/users"))
            .json(&json!({"email": email, "password": "TestPass123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = client
            .post(url("/oauth/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", email.as_str()),
                ("password", "TestPass123"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let access = r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = client
            .get(url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "an embedder publishes the JWKS for its own verifiers"
        );
        let jwks: Value = r.json().await.unwrap();
        assert_eq!(jwks["keys"][0]["kid"], jwt_part(&access, 0)["kid"]);

        // The app's own handler, behind rotor's extractor: the user and the session.
        let r = client
            .get(url("/api/hello"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["shop"], "the embedding app");
        assert_eq!(body["email"], email.as_str());
        assert_eq!(body["user_id"], jwt_part(&access, 1)["sub"]);
        assert_eq!(body["session_id"], jwt_part(&access, 1)["sid"]);
        let r = client
            .get(url("/api/admin"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);

        // Ending the session through rotor's routes locks the app's handler too.
        let r = client
            .post(url("/oauth/revoke"))
            .form(&[("token", access.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = client
            .get(url("/api/hello"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        server.abort();
    }
);
