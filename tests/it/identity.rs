//! Email identity: one key per address (Unicode normalisation and case folding, computed
//! by rotor, never by the database), look-alike addresses refused or folded, and the
//! admin address out of an attacker's reach. Every test runs on both databases.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    both,
    process::run,
    support::{count, execute, Backend, TestApp, TestDb},
};

const ADMIN: &str = "admin@example.com";
/// `ADMİN@example.com`: PostgreSQL's `lower()` folds the dotted capital I to `i`.
const DOTTED: &str = "ADM\u{130}N@example.com";

async fn post_user(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/users"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("register")
}

async fn login_user_id(app: &TestApp, email: &str, password: &str) -> Option<String> {
    let r = app.post_login(email, password).await;
    if r.status() != StatusCode::OK {
        return None;
    }
    let body: Value = r.json().await.expect("json");
    Some(body["user"]["id"].as_str().expect("id").to_owned())
}

both!(
    a_look_alike_registered_first_cannot_take_the_admin_address,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("ADMIN_EMAIL", ADMIN)]).await;
        // The attacker registers the look-alike before the admin has an account.
        let r = post_user(&app, DOTTED, "Attack3rPass1").await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let attacker: Value = r.json().await.expect("json");
        assert_eq!(attacker["role"], "user");

        // The real admin can still register, and gets the admin role.
        let r = post_user(&app, ADMIN, "RealAdmin123").await;
        assert_eq!(r.status(), StatusCode::CREATED, "the admin is locked out");
        let admin: Value = r.json().await.expect("json");
        assert_eq!(admin["role"], "admin");
        assert_ne!(admin["id"], attacker["id"]);

        // Logging in as the admin never reaches the attacker's account.
        assert_eq!(login_user_id(&app, ADMIN, "Attack3rPass1").await, None);
        assert_eq!(
            login_user_id(&app, ADMIN, "RealAdmin123").await.as_deref(),
            admin["id"].as_str()
        );
        assert_eq!(
            login_user_id(&app, DOTTED, "Attack3rPass1")
                .await
                .as_deref(),
            attacker["id"].as_str()
        );

        // A restart (which promotes ADMIN_EMAIL) leaves the look-alike a user.
        let again = app.spawn_beside(&[("ADMIN_EMAIL", ADMIN)]).await;
        let id = attacker["id"].as_str().expect("id").parse().expect("uuid");
        let stored = again.store().get_user(id).await.unwrap().unwrap();
        assert_eq!(stored.role.as_str(), "user");
        assert_eq!(
            count(
                &app.db,
                "SELECT count(DISTINCT email_key) FROM users WHERE email_key IS NOT NULL"
            )
            .await,
            2
        );
    }
);

both!(
    case_and_compatibility_variants_are_one_account,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let kate = app.register("kate@example.com", "KatePass123").await;
        for variant in [
            "KATE@EXAMPLE.COM",
            "\u{212a}ate@example.com",        // Kelvin sign
            "ｋａｔｅ@ｅｘａｍｐｌｅ.ｃｏｍ", // fullwidth
        ] {
            let r = post_user(&app, variant, "Other1234").await;
            assert_eq!(r.status(), StatusCode::CONFLICT, "{variant}");
            let body: Value = r.json().await.expect("json");
            assert_eq!(body["type"], "EmailAlreadyExists");
            assert_eq!(
                login_user_id(&app, variant, "KatePass123").await.as_deref(),
                kate["id"].as_str(),
                "{variant}"
            );
        }
        assert_eq!(count(&app.db, "SELECT count(*) FROM users").await, 1);
        // The address is stored as given; the key beside it.
        assert_eq!(
            count(
                &app.db,
                "SELECT count(*) FROM users WHERE email = 'kate@example.com' AND email_key = 'kate@example.com'"
            )
            .await,
            1
        );
    }
);

both!(disguised_addresses_are_refused_with_422, |b| async move {
    let app = TestApp::spawn(b).await;
    let (_, admin) = app.admin_session().await;
    let target = app.register("target@example.com", "Target123").await;
    for disguised in [
        "admin\u{a0}@example.com",   // no-break space
        "adm\u{200b}in@example.com", // zero-width space
        "admin\u{200d}@example.com", // zero-width joiner
        "\u{202e}nimda@example.com", // right-to-left override
        "admin\t@example.com",
        "admin\u{ad}@example.com", // soft hyphen
    ] {
        let r = post_user(&app, disguised, "Passw0rdX").await;
        assert_eq!(
            r.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{disguised:?}"
        );
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["detail"][0]["loc"], json!(["body", "email"]));

        let r = app
            .client
            .post(app.url("/v1/admin/users"))
            .bearer_auth(&admin)
            .json(&json!({ "email": disguised, "password": "Passw0rdX" }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{disguised:?}"
        );

        let r = app
            .client
            .patch(app.url(&format!(
                "/v1/admin/users/{}",
                target["id"].as_str().unwrap()
            )))
            .bearer_auth(&admin)
            .json(&json!({ "email": disguised }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{disguised:?}"
        );
    }
    assert_eq!(count(&app.db, "SELECT count(*) FROM users").await, 2);
});

both!(
    changing_an_email_to_a_variant_of_another_is_a_conflict,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let (_, admin) = app.admin_session().await;
        app.register("first@example.com", "First1234").await;
        let second = app.register("second@example.com", "Second123").await;
        let r = app
            .client
            .patch(app.url(&format!(
                "/v1/admin/users/{}",
                second["id"].as_str().unwrap()
            )))
            .bearer_auth(&admin)
            .json(&json!({ "email": "ＦＩＲＳＴ@example.com" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CONFLICT);
        // Changing one's own address to another case of itself is allowed and rekeys.
        let r = app
            .client
            .patch(app.url(&format!(
                "/v1/admin/users/{}",
                second["id"].as_str().unwrap()
            )))
            .bearer_auth(&admin)
            .json(&json!({ "email": "Second@Example.com" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            login_user_id(&app, "SECOND@example.com", "Second123")
                .await
                .as_deref(),
            second["id"].as_str()
        );
    }
);

both!(admin_auto_promotion_can_be_turned_off, |b| async move {
    let settings = [
        ("ADMIN_EMAIL", ADMIN),
        ("ADMIN_EMAIL_AUTO_PROMOTE", "false"),
    ];
    let app = TestApp::spawn_with(b, &settings).await;
    let user = app.register("Admin@Example.com", "Squatter123").await;
    assert_eq!(user["role"], "user");
    let again = app.spawn_beside(&settings).await;
    let id = user["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        again
            .store()
            .get_user(id)
            .await
            .unwrap()
            .unwrap()
            .role
            .as_str(),
        "user"
    );
    // With promotion on (the original's behaviour), the same address is made admin.
    let promoting = app.spawn_beside(&[("ADMIN_EMAIL", ADMIN)]).await;
    assert_eq!(
        promoting
            .store()
            .get_user(id)
            .await
            .unwrap()
            .unwrap()
            .role
            .as_str(),
        "admin"
    );
});

both!(
    create_admin_never_promotes_a_look_alike_nor_silently_an_existing_user,
    |b| async move {
        let db = TestDb::new(b).await;
        let app = TestApp::spawn_on(db.share(), &[]).await;
        let squatter = app.register(DOTTED, "Attack3rPass1").await;
        let password = [("ROTOR_ADMIN_PASSWORD", "RealAdmin123")];

        let out = run(&db, &["users", "create-admin", "--email", ADMIN], &password).await;
        assert!(out.ok, "{}", out.stderr);
        assert!(out.stdout.contains("created admin"), "{}", out.stdout);
        assert_eq!(
            count(&db, "SELECT count(*) FROM users WHERE role = 'admin'").await,
            1
        );
        assert_eq!(
            count(
                &db,
                &format!(
                    "SELECT count(*) FROM users WHERE role = 'user' AND id = '{}'",
                    squatter["id"].as_str().unwrap()
                )
            )
            .await,
            1
        );

        // An existing non-admin account with the same key is shown, not promoted…
        let owner = app.register("Owner@Example.com", "Owner1234").await;
        let owner_id = owner["id"].as_str().unwrap();
        let out = run(
            &db,
            &["users", "create-admin", "--email", "owner@example.com"],
            &password,
        )
        .await;
        assert!(!out.ok);
        assert!(out.stderr.contains(owner_id), "{}", out.stderr);
        assert!(out.stderr.contains("--promote-existing"), "{}", out.stderr);
        let role_sql =
            format!("SELECT count(*) FROM users WHERE role = 'admin' AND id = '{owner_id}'");
        assert_eq!(count(&db, &role_sql).await, 0);

        // …unless the operator says so.
        let out = run(
            &db,
            &[
                "users",
                "create-admin",
                "--email",
                "owner@example.com",
                "--promote-existing",
            ],
            &password,
        )
        .await;
        assert!(out.ok, "{}", out.stderr);
        assert_eq!(count(&db, &role_sql).await, 1);
    }
);

/// Turns the test database back into one written before email keys existed: rows
/// without a key, no key index.
async fn make_keyless(db: &TestDb) {
    execute(
        db,
        "DROP INDEX ux_users_email_key;
         UPDATE users SET email_key = NULL;",
    )
    .await;
}

async fn insert_legacy_user(db: &TestDb, id: &str, email: &str, created: &str) {
    let sql = format!(
        "INSERT INTO users (id, email, hashed_password, created_at)
         VALUES ('{id}', '{email}', 'x', '{created}')"
    );
    execute(db, &sql).await;
}

both!(
    migrating_keys_old_rows_and_refuses_colliding_accounts_without_changing_any,
    |b| async move {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        store.close().await;
        make_keyless(&db).await;
        let older = "0190a000-0000-7000-8000-000000000001";
        let newer = "0190a000-0000-7000-8000-000000000002";
        insert_legacy_user(
            &db,
            older,
            "ＡＤＭＩＮ@example.com",
            "2026-01-01T00:00:00.000000Z",
        )
        .await;
        insert_legacy_user(
            &db,
            newer,
            "Admin@Example.com",
            "2026-02-01T00:00:00.000000Z",
        )
        .await;
        insert_legacy_user(
            &db,
            "0190a000-0000-7000-8000-000000000003",
            "Solo@Example.com",
            "2026-03-01T00:00:00.000000Z",
        )
        .await;

        let out = run(&db, &["migrate"], &[]).await;
        assert!(!out.ok, "migrate accepted colliding accounts");
        for needle in [
            older,
            newer,
            "ＡＤＭＩＮ@example.com",
            "Admin@Example.com",
            "set-email",
        ] {
            assert!(
                out.stderr.contains(needle),
                "{needle} missing from:\n{}",
                out.stderr
            );
        }
        // Nothing changed: no key written, no key index.
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM users WHERE email_key IS NOT NULL"
            )
            .await,
            0
        );
        let index_sql = match b {
            Backend::Sqlite => {
                "SELECT count(*) FROM sqlite_master WHERE name = 'ux_users_email_key'"
            }
            Backend::Postgres => {
                "SELECT count(*) FROM pg_indexes WHERE indexname = 'ux_users_email_key'"
            }
        };
        assert_eq!(count(&db, index_sql).await, 0);
        // The server refuses to start on it too.
        let out = run(&db, &["users", "deactivate", "solo@example.com"], &[]).await;
        assert!(!out.ok);

        // The operator gives one account another address; then migration completes.
        let out = run(
            &db,
            &["users", "set-email", "--id", newer, "admin.two@example.com"],
            &[],
        )
        .await;
        assert!(out.ok, "{}", out.stderr);
        assert!(out.stdout.contains("distinct"), "{}", out.stdout);
        let out = run(&db, &["migrate"], &[]).await;
        assert!(out.ok, "{}", out.stderr);
        assert_eq!(count(&db, index_sql).await, 1);
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM users WHERE email_key = 'solo@example.com'"
            )
            .await,
            1
        );
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM users WHERE email_key = 'admin@example.com' AND email = 'ＡＤＭＩＮ@example.com'"
            )
            .await,
            1
        );
        assert_eq!(
            count(&db, "SELECT count(*) FROM users WHERE email_key IS NULL").await,
            0
        );
    }
);
