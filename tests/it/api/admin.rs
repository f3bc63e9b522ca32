//! `http/admin.rs`: `/v1/admin/users` and the admin role.

use super::*;

// ---------------------------------------------------------------------------------
// /v1/admin/users
// ---------------------------------------------------------------------------------

both!(admin_lists_users_page_by_page, |b| async move {
    let app = TestApp::spawn(b).await;
    let (_, admin) = app.admin_session().await;
    for _ in 0..4 {
        app.new_user().await;
    }

    let all = get(&app, "/v1/admin/users", Some(&admin)).await;
    assert_eq!(all.status(), StatusCode::OK);
    let v = body(all).await;
    assert_eq!(keys(&v), key_set(&["items", "total", "page", "size"]));
    assert_eq!(
        (v["total"].clone(), v["page"].clone(), v["size"].clone()),
        (json!(5), json!(1), json!(20))
    );
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    items.iter().for_each(assert_user_json);

    let mut seen = BTreeSet::new();
    for (page, expected) in [(1, 2), (2, 2), (3, 1)] {
        let r = get(
            &app,
            &format!("/v1/admin/users?page={page}&size=2"),
            Some(&admin),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        let v = body(r).await;
        assert_eq!(
            (v["total"].clone(), v["page"].clone(), v["size"].clone()),
            (json!(5), json!(page), json!(2))
        );
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), expected, "page {page}");
        seen.extend(items.iter().map(|u| u["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(seen.len(), 5, "pages do not overlap");

    assert_eq!(
        get(&app, "/v1/admin/users?size=100", Some(&admin))
            .await
            .status(),
        StatusCode::OK
    );
    expect_invalid(
        get(&app, "/v1/admin/users?size=101", Some(&admin)).await,
        json!(["query", "size"]),
    )
    .await;
    expect_invalid(
        get(&app, "/v1/admin/users?size=0", Some(&admin)).await,
        json!(["query", "size"]),
    )
    .await;
    expect_invalid(
        get(&app, "/v1/admin/users?page=0", Some(&admin)).await,
        json!(["query", "page"]),
    )
    .await;
    expect_invalid(
        get(&app, "/v1/admin/users?page=x", Some(&admin)).await,
        json!(["query", "page"]),
    )
    .await;
});

both!(
    admin_creates_users_honouring_role_and_flags,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (_, admin) = app.admin_session().await;
        let create = |payload: Value| {
            let (app, admin) = (&app, &admin);
            async move { post_json(app, "/v1/admin/users", Some(admin), &payload).await }
        };

        let full = create(json!({
            "email": "staff@example.com", "password": "password1", "full_name": "Staff",
            "role": "admin", "is_active": false, "is_verified": true,
        }))
        .await;
        assert_eq!(full.status(), StatusCode::CREATED);
        let v = body(full).await;
        assert_user_json(&v);
        assert_eq!(
            (
                v["role"].clone(),
                v["is_active"].clone(),
                v["is_verified"].clone(),
                v["full_name"].clone()
            ),
            (json!("admin"), json!(false), json!(true), json!("Staff"))
        );
        let stored = app
            .store()
            .get_user_by_email(&EmailKey::of("staff@example.com"))
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(
            (stored.role, stored.is_active, stored.is_verified),
            (Role::Admin, false, true)
        );

        let minimal =
            create(json!({ "email": "plain@example.com", "password": "password1" })).await;
        assert_eq!(minimal.status(), StatusCode::CREATED);
        let v = body(minimal).await;
        assert_eq!(
            (
                v["role"].clone(),
                v["is_active"].clone(),
                v["is_verified"].clone()
            ),
            (json!("user"), json!(true), json!(false))
        );

        expect_error(
            create(json!({ "email": "STAFF@example.com", "password": "password1" })).await,
            StatusCode::CONFLICT,
            "EmailAlreadyExists",
        )
        .await;
        expect_invalid(
            create(json!({ "email": "x@example.com", "password": "short" })).await,
            json!(["body", "password"]),
        )
        .await;
        expect_invalid(
            create(json!({ "email": "x@example.com", "password": "password1", "role": "root" }))
                .await,
            json!(["body", "role"]),
        )
        .await;
        assert_eq!(count_users(&app).await, 3);

        // The inactive account cannot log in.
        expect_error(
            app.post_login("staff@example.com", "password1").await,
            StatusCode::UNAUTHORIZED,
            "InvalidCredentials",
        )
        .await;
    }
);

both!(admin_gets_patches_and_deletes_users, |b| async move {
    let app = TestApp::spawn(b).await;
    let (_, admin) = app.admin_session().await;
    let target = app.new_user().await;
    let other = app.new_user().await;
    let (target_access, target_refresh) = app.login_mobile(&target.email, PASSWORD).await;
    let path = format!("/v1/admin/users/{}", target.id);

    let got = get(&app, &path, Some(&admin)).await;
    assert_eq!(got.status(), StatusCode::OK);
    let v = body(got).await;
    assert_user_json(&v);
    assert_eq!(v["email"], target.email);

    let patched = patch_json(
        &app,
        &path,
        Some(&admin),
        &json!({ "full_name": "Renamed", "is_verified": false, "role": "admin" }),
    )
    .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let v = body(patched).await;
    assert_user_json(&v);
    assert_eq!(
        (
            v["full_name"].clone(),
            v["is_verified"].clone(),
            v["role"].clone()
        ),
        (json!("Renamed"), json!(false), json!("admin"))
    );
    let stored = app.store().get_user(target.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.full_name.as_deref(), stored.is_verified, stored.role),
        (Some("Renamed"), false, Role::Admin)
    );

    let taken = patch_json(
        &app,
        &path,
        Some(&admin),
        &json!({ "email": other.email.to_uppercase() }),
    )
    .await;
    expect_error(taken, StatusCode::CONFLICT, "EmailAlreadyExists").await;
    assert_eq!(
        app.store()
            .get_user(target.id)
            .await
            .unwrap()
            .unwrap()
            .email,
        target.email
    );

    let unknown = format!("/v1/admin/users/{}", Uuid::now_v7());
    expect_error(
        get(&app, &unknown, Some(&admin)).await,
        StatusCode::NOT_FOUND,
        "UserNotFound",
    )
    .await;
    expect_error(
        patch_json(&app, &unknown, Some(&admin), &json!({ "full_name": "x" })).await,
        StatusCode::NOT_FOUND,
        "UserNotFound",
    )
    .await;
    expect_error(
        delete(&app, &unknown, Some(&admin)).await,
        StatusCode::NOT_FOUND,
        "UserNotFound",
    )
    .await;
    expect_invalid(
        get(&app, "/v1/admin/users/nope", Some(&admin)).await,
        json!(["path", "id"]),
    )
    .await;

    let deleted = delete(&app, &path, Some(&admin)).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    expect_error(
        get(&app, &path, Some(&admin)).await,
        StatusCode::NOT_FOUND,
        "UserNotFound",
    )
    .await;
    assert!(app.store().get_user(target.id).await.unwrap().is_none());
    assert_eq!(
        count(
            &app.db,
            &format!(
                "SELECT count(*) FROM refresh_tokens WHERE user_id = '{}'",
                target.id
            )
        )
        .await,
        0
    );
    assert_eq!(
        app.post_refresh_mobile(&target_refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    expect_not_authenticated(
        app.get_auth("/v1/auth/me", &target_access).await,
        "deleted user's access token",
    )
    .await;
    assert_eq!(count_users(&app).await, 2);
});

both!(
    admin_deactivating_a_user_ends_their_sessions,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (_, admin) = app.admin_session().await;
        let (user, access, refresh) = mobile_session(&app).await;

        let r = patch_json(
            &app,
            &format!("/v1/admin/users/{}", user.id),
            Some(&admin),
            &json!({ "is_active": false }),
        )
        .await;

        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await["is_active"], false);
        assert_eq!(live_of_user(&app, user.id).await, 0);
        expect_not_authenticated(
            app.get_auth("/v1/auth/me", &access).await,
            "deactivated user's access token",
        )
        .await;
        assert_eq!(
            app.post_refresh_mobile(&refresh).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
);

both!(
    admin_routes_are_403_for_users_and_401_without_a_bearer,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (user, access, _) = mobile_session(&app).await;
        let by_id = format!("/v1/admin/users/{}", user.id);
        let create = json!({ "email": "x@example.com", "password": "password1" });

        for bearer in [Some(access.as_str()), None] {
            let responses = [
                ("list", get(&app, "/v1/admin/users", bearer).await),
                (
                    "create",
                    post_json(&app, "/v1/admin/users", bearer, &create).await,
                ),
                ("get", get(&app, &by_id, bearer).await),
                (
                    "patch",
                    patch_json(&app, &by_id, bearer, &json!({ "role": "admin" })).await,
                ),
                ("delete", delete(&app, &by_id, bearer).await),
            ];
            for (what, r) in responses {
                match bearer {
                    Some(_) => {
                        expect_error(r, StatusCode::FORBIDDEN, "PermissionDenied").await;
                    }
                    None => expect_not_authenticated(r, what).await,
                }
            }
        }
        let stored = app.store().get_user(user.id).await.unwrap().unwrap();
        assert_eq!(stored.role, Role::User, "nothing changed");
        assert_eq!(count_users(&app).await, 1);
    }
);

both!(admin_email_registers_as_admin_in_any_case, |b| async move {
    let app = TestApp::spawn_with(b, &[("ADMIN_EMAIL", "Boss@Example.com")]).await;

    let boss = app.register("boss@EXAMPLE.com", "Password123").await;
    let worker = app.register("worker@example.com", "Password123").await;

    assert_eq!(boss["role"], "admin");
    assert_eq!(worker["role"], "user");
    let (access, _) = app.login_mobile("BOSS@example.com", "Password123").await;
    assert_eq!(
        get(&app, "/v1/admin/users", Some(&access)).await.status(),
        StatusCode::OK
    );
});
