//! `http/users.rs`: registration, `GET /v1/users/{id}`, the caller's profile.

use super::*;

// ---------------------------------------------------------------------------------
// /v1/users
// ---------------------------------------------------------------------------------

both!(
    registration_creates_an_active_unverified_user,
    |b| async move {
        let app = TestApp::spawn(b).await;

        let r = post_json(
        &app,
        "/v1/users",
        None,
        &json!({ "email": "New.User@Example.com", "password": "Password123", "full_name": "New User" }),
    )
    .await;
        let bare = post_json(
            &app,
            "/v1/users",
            None,
            &json!({ "email": "bare@example.com", "password": "Password123" }),
        )
        .await;

        assert_eq!(r.status(), StatusCode::CREATED);
        let v = body(r).await;
        assert_user_json(&v);
        assert_eq!(v["email"], "New.User@Example.com");
        assert_eq!(v["full_name"], "New User");
        assert_eq!(
            (
                v["is_active"].clone(),
                v["is_verified"].clone(),
                v["role"].clone()
            ),
            (json!(true), json!(false), json!("user"))
        );
        let id = Uuid::parse_str(v["id"].as_str().unwrap()).unwrap();
        let stored = app.store().get_user(id).await.unwrap().expect("stored");
        assert!(
            stored
                .hashed_password
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            stored.hashed_password
        );
        assert_eq!(stored.token_version, 0);
        assert_eq!(bare.status(), StatusCode::CREATED);
        assert_eq!(body(bare).await["full_name"], Value::Null);
        assert_eq!(count_users(&app).await, 2);
    }
);

both!(
    registration_rejects_a_taken_email_in_any_case_with_409,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let existing = app.new_user().await;

        let same = post_json(
            &app,
            "/v1/users",
            None,
            &json!({ "email": existing.email, "password": "Password123" }),
        )
        .await;
        let upper = post_json(
            &app,
            "/v1/users",
            None,
            &json!({ "email": existing.email.to_uppercase(), "password": "Password123" }),
        )
        .await;

        expect_error(same, StatusCode::CONFLICT, "EmailAlreadyExists").await;
        expect_error(upper, StatusCode::CONFLICT, "EmailAlreadyExists").await;
        assert_eq!(count_users(&app).await, 1);
    }
);

both!(
    registration_rejects_weak_passwords_and_invalid_emails_with_422,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let register = |email: &str, password: &str| {
            let payload = json!({ "email": email, "password": password });
            let app = &app;
            async move { post_json(app, "/v1/users", None, &payload).await }
        };

        for weak in [
            "password123",
            "PasswordOnly",
            "Pass1",
            &format!("A1{}", "a".repeat(127)),
        ] {
            expect_invalid(
                register("weak@example.com", weak).await,
                json!(["body", "password"]),
            )
            .await;
        }
        for bad in ["not-an-email", "a@", "@example.com", ""] {
            expect_invalid(register(bad, "Password123").await, json!(["body", "email"])).await;
        }
        let missing = post_json(
            &app,
            "/v1/users",
            None,
            &json!({ "password": "Password123" }),
        )
        .await;
        expect_invalid(missing, json!(["body", "email"])).await;
        assert_eq!(count_users(&app).await, 0);
    }
);

both!(
    get_user_by_id_needs_a_bearer_and_a_known_well_formed_id,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (_, access, _) = mobile_session(&app).await;
        let other = app.new_user().await;
        let path = format!("/v1/users/{}", other.id);

        let found = get(&app, &path, Some(&access)).await;
        let anonymous = get(&app, &path, None).await;
        let unknown = get(
            &app,
            &format!("/v1/users/{}", Uuid::now_v7()),
            Some(&access),
        )
        .await;
        let malformed = get(&app, "/v1/users/not-a-uuid", Some(&access)).await;

        assert_eq!(found.status(), StatusCode::OK);
        let v = body(found).await;
        assert_user_json(&v);
        assert_eq!(v["id"], other.id.to_string());
        assert_eq!(v["email"], other.email);
        expect_not_authenticated(anonymous, "users/{id} without bearer").await;
        expect_error(unknown, StatusCode::NOT_FOUND, "UserNotFound").await;
        expect_invalid(malformed, json!(["path", "id"])).await;
    }
);

both!(
    patch_me_sets_clears_or_keeps_the_full_name,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (user, access, _) = mobile_session(&app).await;
        let patch = |payload: Value| {
            let (app, access) = (&app, &access);
            async move { patch_json(app, "/v1/users/me", Some(access), &payload).await }
        };

        let set = patch(json!({ "full_name": "Ada Lovelace" })).await;
        assert_eq!(set.status(), StatusCode::OK);
        let v = body(set).await;
        assert_user_json(&v);
        assert_eq!(v["full_name"], "Ada Lovelace");
        assert_utc_z(&v["updated_at"], "updated_at after an update");

        let absent = patch(json!({})).await;
        assert_eq!(absent.status(), StatusCode::OK);
        assert_eq!(
            body(absent).await["full_name"],
            "Ada Lovelace",
            "absent leaves it unchanged"
        );
        assert_eq!(
            app.store()
                .get_user(user.id)
                .await
                .unwrap()
                .unwrap()
                .full_name
                .as_deref(),
            Some("Ada Lovelace")
        );

        let cleared = patch(json!({ "full_name": null })).await;
        assert_eq!(cleared.status(), StatusCode::OK);
        assert_eq!(
            body(cleared).await["full_name"],
            Value::Null,
            "explicit null clears it"
        );
        assert_eq!(
            app.store()
                .get_user(user.id)
                .await
                .unwrap()
                .unwrap()
                .full_name,
            None
        );

        // Only full_name is editable here: no escalation through extra fields.
        let sneaky = patch(json!({ "role": "admin", "is_active": false, "is_verified": true, "email": "x@example.com" })).await;
        assert_eq!(sneaky.status(), StatusCode::OK);
        let stored = app.store().get_user(user.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.role, stored.is_active, stored.email.as_str()),
            (Role::User, true, user.email.as_str())
        );

        expect_invalid(
            patch(json!({ "full_name": 5 })).await,
            json!(["body", "full_name"]),
        )
        .await;
        expect_invalid(
            patch(json!({ "full_name": "x".repeat(256) })).await,
            json!(["body", "full_name"]),
        )
        .await;
        let anonymous = patch_json(
            &app,
            "/v1/users/me",
            None,
            &json!({ "full_name": "Nobody" }),
        )
        .await;
        expect_not_authenticated(anonymous, "PATCH users/me without bearer").await;
        assert_eq!(
            app.store()
                .get_user(user.id)
                .await
                .unwrap()
                .unwrap()
                .full_name,
            None
        );
    }
);
