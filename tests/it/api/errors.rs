//! The error shapes every route shares: pydantic-v2 422 items (`http/validate.rs`),
//! 401 for any bad bearer (`http/extract.rs`), a JSON 404 (`http/error.rs`).

use super::*;

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
