//! Every failure mode of every `/oauth/*` route answers in RFC 6749's shape
//! (`{"error", "error_description"}`, `Cache-Control: no-store`), never FastAPI's
//! `{"detail"}`: bad forms, unsupported and invalid grants, 401 on introspection,
//! 405, 413, 408 (a stalled body), 429 (`RATE_LIMIT_AUTH`) and a 500 (the store closed
//! under the server).

use std::time::Duration;

use reqwest::{header, Response, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{both, support::TestApp};

const ROUTES: [&str; 3] = ["/oauth/token", "/oauth/revoke", "/oauth/introspect"];

/// Asserts an RFC 6749 error body with `status` and, when given, `error`.
async fn oauth_shaped(r: Response, status: StatusCode, error: Option<&str>, what: &str) {
    assert_eq!(r.status(), status, "{what}");
    assert_eq!(
        r.headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "{what}"
    );
    let text = r.text().await.expect("body");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: {text}"));
    assert!(body.get("detail").is_none(), "{what}: {body}");
    assert!(body["error"].is_string(), "{what}: {body}");
    assert!(body["error_description"].is_string(), "{what}: {body}");
    if let Some(error) = error {
        assert_eq!(body["error"], error, "{what}: {body}");
    }
}

async fn post(app: &TestApp, path: &str, body: impl Into<reqwest::Body>) -> Response {
    app.client
        .post(app.url(path))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST")
}

both!(every_oauth_failure_is_rfc_6749_shaped, |b| async move {
    let app = TestApp::spawn_with(
        b,
        &[
            ("RATE_LIMIT_AUTH", "1000/minute"),
            ("MAX_BODY_BYTES", "1024"),
            ("BODY_READ_TIMEOUT_SECONDS", "1"),
        ],
    )
    .await;
    let (_, admin) = app.admin_session().await;
    app.register("oauth-errors@example.com", "TestPass123")
        .await;

    // Bad forms on every route (introspect authenticated, so the form is judged).
    for path in ROUTES {
        let authed = |rb: reqwest::RequestBuilder| rb.bearer_auth(&admin);
        for body in ["", "token=%00", "grant_type=password&username=%00"] {
            let r = authed(app.client.post(app.url(path)))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            oauth_shaped(
                r,
                StatusCode::BAD_REQUEST,
                Some("invalid_request"),
                &format!("{path} {body:?}"),
            )
            .await;
        }
        // 405 on another method.
        let r = app.client.get(app.url(path)).send().await.unwrap();
        oauth_shaped(
            r,
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            &format!("GET {path}"),
        )
        .await;
        // 413 over MAX_BODY_BYTES.
        let r = post(&app, path, vec![b'a'; 4096]).await;
        oauth_shaped(
            r,
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            &format!("{path} 413"),
        )
        .await;
    }

    // Token endpoint: missing parameters, unsupported and invalid grants.
    for (body, error) in [
        ("grant_type=password", "invalid_request"),
        ("grant_type=refresh_token", "invalid_request"),
        ("grant_type=client_credentials", "unsupported_grant_type"),
        (
            "grant_type=refresh_token&refresh_token=not-a-token",
            "invalid_grant",
        ),
    ] {
        let r = post(&app, "/oauth/token", body).await;
        oauth_shaped(r, StatusCode::BAD_REQUEST, Some(error), body).await;
    }
    let r = post(
        &app,
        "/oauth/token",
        "grant_type=password&username=oauth-errors%40example.com&password=Wrong1234",
    )
    .await;
    oauth_shaped(
        r,
        StatusCode::BAD_REQUEST,
        Some("invalid_grant"),
        "wrong password",
    )
    .await;

    // Introspection without credentials: 401 invalid_client.
    let r = post(&app, "/oauth/introspect", "token=x").await;
    assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    oauth_shaped(
        r,
        StatusCode::UNAUTHORIZED,
        Some("invalid_client"),
        "introspect 401",
    )
    .await;

    // 408: a body that stops arriving.
    for path in ROUTES {
        let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ntoken="
            );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
            .await
            .expect("answered")
            .unwrap();
        let raw = String::from_utf8_lossy(&raw);
        assert!(raw.starts_with("HTTP/1.1 408"), "{path}: {raw}");
        let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert!(!body.contains("\"detail\""), "{path}: {raw}");
        assert!(body.contains("\"error\""), "{path}: {raw}");
    }

    // 500: the store closed under the server.
    app.store().close().await;
    let r = post(
        &app,
        "/oauth/token",
        "grant_type=password&username=oauth-errors%40example.com&password=TestPass123",
    )
    .await;
    oauth_shaped(
        r,
        StatusCode::INTERNAL_SERVER_ERROR,
        Some("server_error"),
        "store closed",
    )
    .await;
    for path in ["/oauth/revoke", "/oauth/introspect"] {
        let r = app
            .client
            .post(app.url(path))
            .bearer_auth(&admin)
            .form(&[("token", "a".repeat(43))])
            .send()
            .await
            .unwrap();
        let status = r.status();
        if status != StatusCode::OK {
            oauth_shaped(r, status, None, &format!("{path}, store closed")).await;
        }
    }

    // 429: the token endpoint's bucket spent.
    let app = TestApp::spawn_with(b, &[("RATE_LIMIT_AUTH", "2/minute")]).await;
    let mut limited = None;
    for _ in 0..5 {
        let r = post(
            &app,
            "/oauth/token",
            "grant_type=refresh_token&refresh_token=x",
        )
        .await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("rate limited");
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    assert!(r.headers().contains_key("x-ratelimit-limit"));
    oauth_shaped(
        r,
        StatusCode::TOO_MANY_REQUESTS,
        Some("temporarily_unavailable"),
        "oauth-token 429",
    )
    .await;
    // ... and the password bucket, charged by the password grant.
    app.register("limited@example.com", "TestPass123").await;
    let mut limited = None;
    for _ in 0..5 {
        let r = app.post_login("limited@example.com", "Wrong1234").await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    assert!(limited.is_some(), "login bucket spent");
    let app2 = &app;
    let r = post(
        app2,
        "/oauth/token",
        "grant_type=password&username=limited%40example.com&password=Wrong1234",
    )
    .await;
    oauth_shaped(
        r,
        StatusCode::TOO_MANY_REQUESTS,
        None,
        "password bucket 429",
    )
    .await;
});
