//! `rotor import --from URL`: the original's PostgreSQL database into rotor on either
//! engine, rotor on SQLite into rotor on PostgreSQL, refusals and re-runs. Each test
//! checks what the target holds and what clients get from a rotor serving it.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    adoption::{fixture, original_access_token},
    both,
    original::Original,
    process::run,
    support::{count, live_tokens_in_family, refresh_cookie_value, Backend, TestApp, TestDb},
};

const TABLES: [&str; 5] = [
    "users",
    "sessions",
    "refresh_tokens",
    "audit_events",
    "signing_keys",
];

/// Row counts of rotor's tables, in [`TABLES`] order.
async fn counts(db: &TestDb) -> Vec<i64> {
    let mut out = Vec::new();
    for t in TABLES {
        out.push(count(db, &format!("SELECT count(*) FROM {t}")).await);
    }
    out
}

async fn import(target: &TestDb, from: &str) -> crate::process::Output {
    run(target, &["import", "--from", from], &[]).await
}

both!(
    original_deployment_moves_and_no_one_is_logged_out,
    |target: Backend| async move {
        let f = fixture().await;
        let tgt = TestDb::new(target).await;
        let out = import(&tgt, &f.db.url).await;
        assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("the original backend"),
            "{}",
            out.stdout
        );
        // Not on a terminal: plain progress lines.
        assert!(
            out.stderr.contains("importing refresh_tokens: 11/11 rows"),
            "{}",
            out.stderr
        );

        // The source was only read.
        assert_eq!(
            count(
                &f.db,
                "SELECT count(*) FROM pg_tables WHERE tablename = '_sqlx_migrations'"
            )
            .await,
            0
        );
        // The target holds every row; every family is a session with its device.
        assert_eq!(counts(&tgt).await, vec![3, 4, 11, 2, 0]);
        let phone = f.phone[0].family_id;
        assert_eq!(
            count(
                &tgt,
                &format!(
                "SELECT count(*) FROM sessions WHERE id = '{phone}' AND device_id = 'ada-phone-1'
                 AND device_name = 'Ada''s phone' AND ip_address = '203.0.113.7'
                 AND revoked_at IS NULL"
            )
            )
            .await,
            1
        );
        // The forked family keeps its newest live token; the repair is audited.
        assert_eq!(
            live_tokens_in_family(&tgt, &f.forked.0.family_id.to_string()).await,
            1
        );
        assert_eq!(
            count(
                &tgt,
                &format!(
                    "SELECT count(*) FROM refresh_tokens WHERE id = '{}' AND is_revoked",
                    f.forked.0.id
                )
            )
            .await,
            1
        );
        assert_eq!(
            count(
                &tgt,
                &format!(
                    "SELECT count(*) FROM audit_events WHERE kind = 'family_repaired'
                 AND session_id = '{}'",
                    f.forked.0.family_id
                )
            )
            .await,
            1
        );
        // token_version and roles carried over; emails keyed.
        assert_eq!(
            count(
                &tgt,
                &format!(
                    "SELECT CAST(token_version AS BIGINT) FROM users WHERE id = '{}'",
                    f.bob.id
                )
            )
            .await,
            3
        );
        assert_eq!(
            count(&tgt, "SELECT count(*) FROM users WHERE role = 'admin'").await,
            1
        );
        assert_eq!(
            count(
                &tgt,
                "SELECT count(*) FROM users WHERE email_key = 'ada@example.com'"
            )
            .await,
            1
        );

        // A second run changes nothing: no row, no audit event.
        let out = import(&tgt, &f.db.url).await;
        assert!(out.ok, "{}", out.stderr);
        assert!(out.stdout.contains("nothing to do"), "{}", out.stdout);
        assert_eq!(counts(&tgt).await, vec![3, 4, 11, 2, 0]);

        let app = TestApp::spawn_on(tgt.share(), &[("REFRESH_REUSE_GRACE_SECONDS", "0")]).await;
        // Everyone logs in with their existing password.
        for user in [&f.ada, &f.bob, &f.admin] {
            let r = app.post_login(&user.email, &user.password).await;
            assert_eq!(r.status(), StatusCode::OK, "{}", user.email);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["user"]["id"], user.id.to_string());
        }
        // Live tokens rotate: the mobile flow…
        let r = app.post_refresh_mobile(&f.phone.last().unwrap().raw).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        let next = body["refresh_token"].as_str().unwrap().to_owned();
        let access = body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(
            app.post_refresh_mobile(&next).await.status(),
            StatusCode::OK
        );
        // …listed with the device the original recorded…
        let sessions: Value = app
            .get_auth("/v1/auth/sessions", &access)
            .await
            .json()
            .await
            .unwrap();
        assert!(sessions.to_string().contains("Ada's phone"), "{sessions}");
        // …and the cookie flow, on the repaired family's kept token.
        let r = app.post_refresh_cookie(&f.forked.1.raw).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(refresh_cookie_value(&r).is_some());
        // The revoked twin of the fork, and an old token of the laptop, are replays.
        for replay in [&f.forked.0, &f.laptop[0]] {
            let r = app.post_refresh_mobile(&replay.raw).await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["type"], "TokenRevokedError");
            assert_eq!(
                live_tokens_in_family(&tgt, &replay.family_id.to_string()).await,
                0
            );
        }
        // The original's access tokens: token_version and role respected.
        let bob = original_access_token(f.bob.id, f.bob.token_version);
        assert_eq!(
            app.get_auth("/v1/auth/me", &bob).await.status(),
            StatusCode::OK
        );
        let stale = original_access_token(f.bob.id, 0);
        assert_eq!(
            app.get_auth("/v1/auth/me", &stale).await.status(),
            StatusCode::UNAUTHORIZED
        );
        let admin = original_access_token(f.admin.id, f.admin.token_version);
        assert_eq!(
            app.get_auth("/v1/admin/users", &admin).await.status(),
            StatusCode::OK
        );
        let ada = original_access_token(f.ada.id, 0);
        assert_eq!(
            app.get_auth("/v1/admin/users", &ada).await.status(),
            StatusCode::FORBIDDEN
        );
    }
);

both!(
    duplicate_emails_refuse_and_leave_the_target_unchanged,
    |target: Backend| async move {
        // Within the source.
        let src = TestDb::new(Backend::Postgres).await;
        let mut o = Original::create(&src).await;
        let upper = o
            .user("Ada@x.com", "p", "x".into(), "user", 0, Duration::days(3))
            .await;
        let lower = o
            .user("ada@x.com", "p", "x".into(), "user", 0, Duration::days(2))
            .await;
        let carl = o
            .user("carl@x.com", "p", "x".into(), "user", 0, Duration::days(1))
            .await;
        o.chain(&carl, 1, None, None).await;
        let tgt = TestDb::new(target).await;
        let out = import(&tgt, &src.url).await;
        assert!(!out.ok, "duplicate emails were imported");
        for needle in [
            upper.id.to_string(),
            lower.id.to_string(),
            "Ada@x.com".into(),
            "ada@x.com".into(),
            "changed nothing".into(),
        ] {
            assert!(
                out.stderr.contains(&needle),
                "{needle} missing from:\n{}",
                out.stderr
            );
        }

        // Against the target: a target account of another id with the same key.
        let clean = TestDb::new(Backend::Postgres).await;
        let mut o = Original::create(&clean).await;
        let kate = o
            .user("kate@x.com", "p", "x".into(), "user", 0, Duration::days(1))
            .await;
        o.chain(&kate, 2, None, None).await;
        let store = tgt.store().await;
        let existing = rotor::testing::UserFactory::create_with(
            store.as_ref(),
            "KATE@X.COM",
            rotor::storage::Role::User,
            true,
        )
        .await
        .expect("user");
        store.close().await;
        let before = counts(&tgt).await;
        let out = import(&tgt, &clean.url).await;
        assert!(!out.ok, "a target collision was imported");
        for needle in [
            kate.id.to_string(),
            existing.id.to_string(),
            "target".into(),
        ] {
            assert!(
                out.stderr.contains(&needle),
                "{needle} missing from:\n{}",
                out.stderr
            );
        }
        assert_eq!(counts(&tgt).await, before);
        assert_eq!(before, vec![1, 0, 0, 0, 0]);
    }
);

/// The case that matters most after the original: a SQLite deployment outgrows one
/// process and moves to PostgreSQL, sessions, audit log and key ring included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotor_on_sqlite_moves_to_postgres_and_reruns_bring_revocations() {
    let eddsa = [
        ("JWT_ALGORITHM", "EdDSA"),
        ("REFRESH_REUSE_GRACE_SECONDS", "0"),
    ];
    let src = TestDb::new(Backend::Sqlite).await;
    // A key ring with history: the first key, then two rotations.
    for _ in 0..2 {
        let out = run(&src, &["keys", "rotate"], &eddsa).await;
        assert!(out.ok, "{}", out.stderr);
    }
    let app = TestApp::spawn_on(src.share(), &eddsa).await;
    app.register("ada@example.com", "AdaPass123").await;
    app.register("bob@example.com", "BobPass123").await;
    // Ada's phone: logged in, rotated twice; its first token is a replay later.
    let r = app
        .post_login_mobile(
            "ada@example.com",
            "AdaPass123",
            &[("device_id", "ada-phone"), ("device_name", "Ada's phone")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let phone_first = body["refresh_token"].as_str().unwrap().to_owned();
    let mut phone = phone_first.clone();
    for _ in 0..2 {
        let body: Value = app.post_refresh_mobile(&phone).await.json().await.unwrap();
        phone = body["refresh_token"].as_str().unwrap().to_owned();
    }
    // Ada's browser (cookie flow), and a session she ended.
    let r = app.post_login("ada@example.com", "AdaPass123").await;
    let browser = refresh_cookie_value(&r).expect("cookie");
    let (_, ended) = app.login_mobile("ada@example.com", "AdaPass123").await;
    let r = app
        .client
        .post(app.url("/v1/auth/logout"))
        .header(reqwest::header::COOKIE, format!("refresh_token={ended}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Bob's laptop; its live token rotates on the source after the first import.
    let r = app
        .post_login_mobile(
            "bob@example.com",
            "BobPass123",
            &[("device_id", "bob-laptop"), ("device_name", "Laptop")],
        )
        .await;
    let body: Value = r.json().await.unwrap();
    let bob_refresh = body["refresh_token"].as_str().unwrap().to_owned();
    // An access token signed by the source's current key, which is then retired.
    let (ada_access, _) = app.login_mobile("ada@example.com", "AdaPass123").await;
    app.store().close().await;
    drop(app);
    let out = run(&src, &["keys", "rotate"], &eddsa).await;
    assert!(out.ok, "{}", out.stderr);
    let source_kids: Vec<String> = {
        let conn = src.sqlite();
        let mut stmt = conn
            .prepare("SELECT kid FROM signing_keys ORDER BY kid")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(source_kids.len(), 4);
    let source = counts(&src).await;

    // Import into a fresh PostgreSQL database.
    let tgt = TestDb::new(Backend::Postgres).await;
    let out = import(&tgt, &src.url).await;
    assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("rotor on SQLite"), "{}", out.stdout);
    assert!(out.stdout.contains("same SECRET_KEY") || out.stdout.contains("SECRET_KEY"));
    let mut expected = source.clone();
    expected[3] += 1; // database_imported
    assert_eq!(counts(&tgt).await, expected);
    assert_eq!(
        count(
            &tgt,
            "SELECT count(*) FROM audit_events WHERE kind = 'database_imported'"
        )
        .await,
        1
    );

    // Again: nothing changes.
    let out = import(&tgt, &src.url).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("nothing to do"), "{}", out.stdout);
    assert_eq!(counts(&tgt).await, expected);

    // More activity on the source: Bob's laptop rotates there.
    let app = TestApp::spawn_on(src.share(), &eddsa).await;
    let r = app.post_refresh_mobile(&bob_refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let bob_next = body["refresh_token"].as_str().unwrap().to_owned();
    app.store().close().await;
    drop(app);
    let out = import(&tgt, &src.url).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("1 tokens revoked in the target"),
        "{}",
        out.stdout
    );
    let bob_family: String = src
        .sqlite()
        .query_row(
            "SELECT family_id FROM refresh_tokens WHERE token_hash = ?1",
            [rotor::domain::token::hash_token(&bob_refresh)],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(live_tokens_in_family(&tgt, &bob_family).await, 1);
    expected[2] += 1; // Bob's successor
    expected[3] += 2; // its refresh event, and this run's database_imported
    assert_eq!(counts(&tgt).await, expected);
    assert_eq!(counts(&tgt).await[..3], counts(&src).await[..3]);

    // rotor on PostgreSQL, same SECRET_KEY.
    let app = TestApp::spawn_on(tgt.share(), &eddsa).await;
    // The key ring came along: same kids in the JWKS; the old access token verifies.
    let jwks = app.json_of("/.well-known/jwks.json").await;
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    assert_eq!(kids, source_kids);
    let me = app.get_auth("/v1/auth/me", &ada_access).await;
    assert_eq!(me.status(), StatusCode::OK);
    // Sessions listed with their devices; the ended one is gone.
    let sessions: Value = app
        .get_auth("/v1/auth/sessions", &ada_access)
        .await
        .json()
        .await
        .unwrap();
    let listed = sessions.to_string();
    assert!(
        listed.contains("Ada's phone") && listed.contains("ada-phone"),
        "{listed}"
    );
    // Live tokens rotate (mobile and cookie), including the one rotated since.
    for live in [&phone, &bob_next] {
        let r = app.post_refresh_mobile(live).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = app.post_refresh_cookie(&browser).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(refresh_cookie_value(&r).is_some());
    // New tokens are signed by the imported signing key and verify.
    let body: Value = r.json().await.unwrap();
    let fresh = body["access_token"].as_str().unwrap();
    assert_eq!(
        app.get_auth("/v1/auth/me", fresh).await.status(),
        StatusCode::OK
    );
    // Revoked tokens are replays (the family is revoked); the ended session stays ended.
    for replay in [&phone_first, &bob_refresh] {
        let r = app.post_refresh_mobile(replay).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], "TokenRevokedError");
    }
    assert_eq!(live_tokens_in_family(&tgt, &bob_family).await, 0);
    assert_eq!(
        app.post_refresh_mobile(&ended).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The audit log came along.
    let (_, admin) = app.admin_session().await;
    let events: Value = app
        .get_auth("/v1/admin/events?limit=100", &admin)
        .await
        .json()
        .await
        .unwrap();
    let events = events.to_string();
    for kind in ["login", "refresh", "logout", "database_imported"] {
        assert!(events.contains(kind), "{kind} missing from {events}");
    }
}

/// rotor on PostgreSQL into rotor on SQLite; then both sides serve the same family and
/// a re-run refuses, changing nothing, instead of giving the family two live tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_that_served_meanwhile_refuses_a_conflicting_rerun() {
    let src = TestApp::spawn(Backend::Postgres).await;
    let (email, _, first) = src.user_session().await;
    let tgt = TestDb::new(Backend::Sqlite).await;
    let out = import(&tgt, &src.db.url).await;
    assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("rotor on PostgreSQL"), "{}", out.stdout);
    let mut expected = counts(&src.db).await;
    expected[3] += 1;
    assert_eq!(counts(&tgt).await, expected);

    // The target serves the family: it rotates there…
    let app = TestApp::spawn_on(tgt.share(), &[]).await;
    assert_eq!(
        app.post_login(&email, "TestPass123").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.post_refresh_mobile(&first).await.status(),
        StatusCode::OK
    );
    app.store().close().await;
    drop(app);
    // …and on the source.
    assert_eq!(
        src.post_refresh_mobile(&first).await.status(),
        StatusCode::OK
    );
    let before = counts(&tgt).await;
    let out = import(&tgt, &src.db.url).await;
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stderr.contains("conflicts with the target") && out.stderr.contains("unchanged"),
        "{}",
        out.stderr
    );
    assert_eq!(counts(&tgt).await, before);
}
