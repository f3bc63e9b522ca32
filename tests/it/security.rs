//! Proof under attack: forged and damaged access tokens, brute force, oversized and
//! slow requests, and a login flood that must not starve token rotation.

use rotor::domain::email::EmailKey;
use std::time::Duration;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    both,
    support::{eventually, raw_exchange, Backend, TestApp},
};

const SECRET: &str = "integration-test-secret-key-0123456789abcdef";

fn payload(access: &str) -> Value {
    let body = access.split('.').nth(1).expect("jwt payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).expect("base64")).expect("json")
}

fn sign(claims: &Value, alg: jsonwebtoken::Algorithm, secret: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret))
        .expect("sign")
}

async fn assert_rejected(app: &TestApp, token: &str, what: &str) {
    let r = app.get_auth("/v1/auth/me", token).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "{what} must be rejected"
    );
    assert_eq!(r.headers()["www-authenticate"], "Bearer", "{what}");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body, json!({"detail": "Not authenticated"}), "{what}");
}

both!(
    forged_and_damaged_access_tokens_are_401_never_500,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (_, access, _) = app.user_session().await;
        assert_eq!(
            app.get_auth("/v1/auth/me", &access).await.status(),
            StatusCode::OK
        );
        let claims = payload(&access);
        let now = app.now().timestamp();
        let with = |k: &str, v: Value| {
            let mut c = claims.clone();
            c[k] = v;
            c
        };
        let hs = jsonwebtoken::Algorithm::HS256;

        // alg: none, with and without a signature.
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = access.split('.').nth(1).unwrap();
        assert_rejected(&app, &format!("{none_header}.{body}."), "alg none").await;
        assert_rejected(
            &app,
            &format!("{none_header}.{body}"),
            "alg none without signature",
        )
        .await;
        // Another algorithm with the right secret (algorithm confusion within HMAC).
        assert_rejected(
            &app,
            &sign(&claims, jsonwebtoken::Algorithm::HS512, SECRET.as_bytes()),
            "HS512 on an HS256 server",
        )
        .await;
        // The right algorithm with the wrong secret.
        assert_rejected(
            &app,
            &sign(&claims, hs, b"another-secret-another-secret-another"),
            "wrong secret",
        )
        .await;
        // Time claims.
        assert_rejected(
            &app,
            &sign(&with("exp", json!(now - 1)), hs, SECRET.as_bytes()),
            "expired",
        )
        .await;
        assert_rejected(
            &app,
            &sign(&with("nbf", json!(now + 600)), hs, SECRET.as_bytes()),
            "not yet valid",
        )
        .await;
        assert_rejected(
            &app,
            &sign(&with("iat", json!(now + 3600)), hs, SECRET.as_bytes()),
            "issued in the future",
        )
        .await;
        // Wrong type and version, a non-uuid subject, a deleted session id.
        assert_rejected(
            &app,
            &sign(&with("type", json!("refresh")), hs, SECRET.as_bytes()),
            "type refresh",
        )
        .await;
        assert_rejected(
            &app,
            &sign(&with("token_version", json!(7)), hs, SECRET.as_bytes()),
            "stale token_version",
        )
        .await;
        assert_rejected(
            &app,
            &sign(&with("sub", json!("not-a-uuid")), hs, SECRET.as_bytes()),
            "malformed sub",
        )
        .await;
        assert_rejected(
            &app,
            &sign(
                &with("sub", json!(uuid::Uuid::now_v7().to_string())),
                hs,
                SECRET.as_bytes(),
            ),
            "unknown user",
        )
        .await;
        assert_rejected(
            &app,
            &sign(&with("sid", json!("nope")), hs, SECRET.as_bytes()),
            "malformed sid",
        )
        .await;
        // Truncated, re-encoded (claims changed, signature kept), padded, garbage.
        assert_rejected(&app, &access[..access.len() - 5], "truncated").await;
        let parts: Vec<&str> = access.split('.').collect();
        let tampered =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&with("token_version", json!(0))).unwrap());
        let elevated = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&with("sub", json!(uuid::Uuid::now_v7().to_string()))).unwrap(),
        );
        assert_rejected(
            &app,
            &format!("{}.{}.{}", parts[0], elevated, parts[2]),
            "re-encoded payload",
        )
        .await;
        assert_rejected(
            &app,
            &format!("{}.{}.{}", parts[0], tampered, parts[2]),
            "re-encoded payload with another token_version",
        )
        .await;
        assert_rejected(&app, &format!("{access}=="), "padded").await;
        for garbage in ["", "a", "a.b.c", "....", "eyJ.eyJ.sig", &"x".repeat(10_000)] {
            let r = app
                .client
                .get(app.url("/v1/auth/me"))
                .header("authorization", format!("Bearer {garbage}"))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "garbage {garbage:.20}"
            );
        }
        // Wrong scheme.
        let r = app
            .client
            .get(app.url("/v1/auth/me"))
            .header("authorization", format!("Basic {access}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
);

both!(
    issuer_and_audience_are_enforced_when_configured,
    |b| async move {
        let app = TestApp::spawn_with(
            b,
            &[
                ("JWT_ISSUER", "https://auth.example"),
                ("JWT_AUDIENCE", "api"),
            ],
        )
        .await;
        let (_, access, _) = app.user_session().await;
        let claims = payload(&access);
        assert_eq!(claims["iss"], "https://auth.example");
        assert_eq!(claims["aud"], "api");
        assert_eq!(
            app.get_auth("/v1/auth/me", &access).await.status(),
            StatusCode::OK
        );
        let hs = jsonwebtoken::Algorithm::HS256;
        let mut wrong_iss = claims.clone();
        wrong_iss["iss"] = json!("https://evil.example");
        assert_rejected(&app, &sign(&wrong_iss, hs, SECRET.as_bytes()), "wrong iss").await;
        let mut wrong_aud = claims.clone();
        wrong_aud["aud"] = json!("other");
        assert_rejected(&app, &sign(&wrong_aud, hs, SECRET.as_bytes()), "wrong aud").await;
        let mut no_aud = claims;
        no_aud.as_object_mut().unwrap().remove("aud");
        assert_rejected(&app, &sign(&no_aud, hs, SECRET.as_bytes()), "missing aud").await;
    }
);

both!(
    tokens_of_deleted_or_deactivated_users_are_rejected,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (_, admin) = app.admin_session().await;
        let (email_a, access_a, refresh_a) = app.user_session().await;
        let (email_b, access_b, refresh_b) = app.user_session().await;
        let id = |email: String| {
            let store = app.store().clone();
            async move {
                store
                    .get_user_by_email(&EmailKey::of(&email))
                    .await
                    .unwrap()
                    .unwrap()
                    .id
            }
        };
        let a = id(email_a).await;
        let bb = id(email_b).await;
        let r = app
            .client
            .delete(app.url(&format!("/v1/admin/users/{a}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let r = app
            .client
            .patch(app.url(&format!("/v1/admin/users/{bb}")))
            .bearer_auth(&admin)
            .json(&json!({"is_active": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_rejected(&app, &access_a, "deleted user's token").await;
        assert_rejected(&app, &access_b, "deactivated user's token").await;
        assert_eq!(
            app.post_refresh_mobile(&refresh_a).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.post_refresh_mobile(&refresh_b).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
);

both!(login_brute_force_hits_the_rate_limit, |b| async move {
    let app = TestApp::spawn_with(b, &[("RATE_LIMIT_AUTH", "5/minute")]).await;
    let (email, _, _) = app.user_session().await; // one login used
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(app.post_login(&email, &format!("Guess{i}")).await);
    }
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(&codes[..4], &[401, 401, 401, 401], "{codes:?}");
    assert!(codes[4..].iter().all(|c| *c == 429), "{codes:?}");
    let retry: u64 = statuses[5].headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    // The right password is refused too while limited: guessing gains nothing.
    assert_eq!(
        app.post_login(&email, "TestPass123").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Other routes are not limited.
    assert_eq!(app.status_of("/health").await, StatusCode::OK);
});

#[tokio::test]
async fn a_one_mebibyte_header_is_refused_and_the_server_carries_on() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let big = "a".repeat(1024 * 1024);
    let request = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let answer = raw_exchange(app.addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{:.80}",
        answer
    );
    assert_eq!(app.status_of("/health").await, StatusCode::OK);
}

#[tokio::test]
async fn slow_loris_clients_neither_exhaust_the_server_nor_stay_forever() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // 200 connections that send half a request head and then nothing.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    // A keep-alive connection that was answered, then stalls in its next request head:
    // the header read timeout is armed again for every request of a connection.
    let mut kept = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 4096];
    let n = kept.read(&mut first).await.unwrap();
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&first[..n])
    );
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // Real clients are served meanwhile.
    for _ in 0..20 {
        assert_eq!(app.status_of("/health").await, StatusCode::OK);
    }
    // The header read timeout closes the slow connections.
    let started = std::time::Instant::now();
    for mut s in [slow.pop().unwrap(), kept] {
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(
            rotor::http::HEADER_READ_TIMEOUT + Duration::from_secs(5),
            s.read_to_end(&mut buf),
        )
        .await;
        assert!(closed.is_ok(), "a slow client was not disconnected");
    }
    assert!(started.elapsed() < rotor::http::HEADER_READ_TIMEOUT + Duration::from_secs(5));
}

#[tokio::test]
async fn a_thousand_concurrent_logins_do_not_starve_refreshes() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("ARGON2_MAX_CONCURRENCY", "2")]).await;
    let (email, _, mut refresh) = app.user_session().await;
    let logins: Vec<_> = (0..1000)
        .map(|_| {
            let client = app.client.clone();
            let url = app.url("/v1/auth/login");
            let email = email.clone();
            tokio::spawn(async move {
                client
                    .post(url)
                    .form(&[("username", email.as_str()), ("password", "TestPass123")])
                    .send()
                    .await
                    .map(|r| r.status())
            })
        })
        .collect();
    // Wait until the flood is queued for Argon2 (two workers, a thousand logins).
    let service = app.rotor.clone();
    eventually(
        Duration::from_secs(30),
        "100 logins queued for Argon2",
        || {
            let queued = rotor::testing::argon2_pending(&service);
            async move { queued >= 100 }
        },
    )
    .await;
    // While the logins queue for Argon2, rotation keeps going.
    for _ in 0..20 {
        let r = app.post_refresh_mobile(&refresh).await;
        assert_eq!(r.status(), StatusCode::OK);
        refresh = r.json::<Value>().await.unwrap()["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    let still_running = logins.iter().filter(|h| !h.is_finished()).count();
    assert!(
        still_running > 0,
        "refreshes must complete while logins are still queued, not after them"
    );
    let mut by_status = std::collections::BTreeMap::new();
    for h in logins {
        let key = match h.await.unwrap() {
            Ok(s) => s.as_u16().to_string(),
            Err(e) => format!("client error: {e}"),
        };
        *by_status.entry(key).or_insert(0) += 1;
    }
    println!("login outcomes: {by_status:?}");
    // Under a flood, a queued login may outlive REQUEST_TIMEOUT_SECONDS (408); nothing
    // else is acceptable, and most must succeed.
    assert!(
        by_status.keys().all(|k| k == "200" || k == "408"),
        "{by_status:?}"
    );
    assert!(
        by_status.get("200").copied().unwrap_or(0) >= 500,
        "{by_status:?}"
    );
}
