//! `http/meta.rs` and what every answer shares: health, readiness, the OpenAPI
//! document and the route table, no hash in any body, correlation ids.

use super::*;

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
        let routes = rotor::testing::routes();
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
