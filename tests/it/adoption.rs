//! Taking over a PostgreSQL database of the original backend in place: the dry run,
//! the refusal on duplicate emails, the adoption itself, and both directions of the
//! cutover (rotor serving the original's sessions; the original still serving after).

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    original::{self, older_hash, original_hash, repo, OToken, OUser, Original},
    process::run,
    support::{
        count, live_tokens, live_tokens_in_family, refresh_cookie_value, Backend, TestApp, TestDb,
    },
};

pub const SECRET: &str = "integration-test-secret-key-0123456789abcdef";

/// An access token exactly as the original issued it: HS256, no `sid`, no `jti`.
pub fn original_access_token(user: Uuid, token_version: i32) -> String {
    let now = Utc::now().timestamp();
    let claims = serde_json::json!({
        "sub": user.to_string(),
        "type": "access",
        "token_version": token_version,
        "iat": now,
        "exp": now + 900,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

pub struct Fixture {
    pub db: TestDb,
    pub ada: OUser,
    pub bob: OUser,
    pub admin: OUser,
    /// Ada's phone: a chain rotated three times.
    pub phone: Vec<OToken>,
    /// Bob's laptop: its newest token is live; its old tokens were replayed under the
    /// original (the family stayed live).
    pub laptop: Vec<OToken>,
    /// Bob's forked family: two live tokens from a racing refresh.
    pub forked: (OToken, OToken),
}

/// An original-shaped database with every mark the issue names, except duplicates.
pub async fn fixture() -> Fixture {
    let db = TestDb::new(Backend::Postgres).await;
    let mut o = Original::create(&db).await;
    let ada = o
        .user(
            "Ada@Example.com",
            "AdaPass123",
            original_hash("AdaPass123"),
            "user",
            0,
            Duration::days(90),
        )
        .await;
    let bob = o
        .user(
            "bob@example.com",
            "BobPass123",
            older_hash("BobPass123"),
            "user",
            3,
            Duration::days(60),
        )
        .await;
    let admin = o
        .user(
            "root@example.com",
            "RootPass123",
            original_hash("RootPass123"),
            "admin",
            1,
            Duration::days(120),
        )
        .await;
    let phone = o
        .chain(
            &ada,
            3,
            Some(("ada-phone-1", "Ada's phone")),
            Some("203.0.113.7"),
        )
        .await;
    let laptop = o
        .chain(
            &bob,
            2,
            Some(("bob-laptop", "Laptop")),
            Some("198.51.100.2"),
        )
        .await;
    let family = Uuid::new_v4();
    let older = o
        .token(
            &bob,
            family,
            Duration::hours(5),
            Duration::days(6),
            false,
            None,
            None,
        )
        .await;
    let newer = o
        .token(
            &bob,
            family,
            Duration::hours(4),
            Duration::days(6),
            false,
            None,
            None,
        )
        .await;
    // The admin's session: one rotation, no device recorded.
    o.chain(&admin, 1, None, None).await;
    Fixture {
        db,
        ada,
        bob,
        admin,
        phone,
        laptop,
        forked: (older, newer),
    }
}

async fn table_exists(db: &TestDb, name: &str) -> bool {
    count(
        db,
        &format!("SELECT count(*) FROM pg_tables WHERE tablename = '{name}'"),
    )
    .await
        == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dry_run_reports_the_plan_and_changes_nothing() {
    let f = fixture().await;
    let out = run(&f.db, &["migrate", "--dry-run"], &[]).await;
    assert!(out.ok, "{}", out.stderr);
    // Shown with --nocapture: what an operator sees for this fixture.
    println!("{}", out.stdout);
    for needle in [
        "original backend schema (Alembic revision 801b86be184b)",
        "users:                  3",
        "live sessions:          4",
        "forked families:        1",
        &format!("keep token {}", f.forked.1.id),
        "duplicate emails:       0",
        "sessions, audit_events, signing_keys",
        "nothing was changed",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle:?} missing from:\n{}",
            out.stdout
        );
    }
    assert!(!table_exists(&f.db, "_sqlx_migrations").await);
    assert!(!table_exists(&f.db, "sessions").await);
    assert_eq!(live_tokens(&f.db).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adoption_refuses_duplicate_emails_and_leaves_the_database_as_it_was() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut o = Original::create(&db).await;
    let upper = o
        .user("Ada@x.com", "p", "x".into(), "user", 0, Duration::days(3))
        .await;
    let lower = o
        .user("ada@x.com", "p", "x".into(), "user", 0, Duration::days(2))
        .await;
    o.user("carl@x.com", "p", "x".into(), "user", 0, Duration::days(1))
        .await;

    let out = run(&db, &["migrate", "--dry-run"], &[]).await;
    assert!(!out.ok);
    assert!(
        out.stdout.contains("duplicate emails:       1"),
        "{}",
        out.stdout
    );

    let out = run(&db, &["migrate"], &[]).await;
    assert!(!out.ok, "adoption accepted duplicate emails");
    for needle in [
        upper.id.to_string(),
        lower.id.to_string(),
        "Ada@x.com".into(),
        "ada@x.com".into(),
        "rotor users set-email".into(),
    ] {
        assert!(
            out.stderr.contains(&needle),
            "{needle} missing from:\n{}",
            out.stderr
        );
    }
    // Exactly as it was: no rotor table, no new column, no new index.
    for table in [
        "_sqlx_migrations",
        "sessions",
        "audit_events",
        "signing_keys",
    ] {
        assert!(!table_exists(&db, table).await, "{table} was created");
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'email_key'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pg_indexes WHERE tablename IN ('users', 'refresh_tokens')"
        )
        .await,
        7
    );
    assert_eq!(count(&db, "SELECT count(*) FROM users").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adoption_in_place_logs_no_one_out() {
    let f = fixture().await;
    let out = run(&f.db, &["migrate"], &[]).await;
    assert!(out.ok, "{}", out.stderr);
    let db = &f.db;

    // What the database holds: every row kept, every family a session with its device.
    assert_eq!(count(db, "SELECT count(*) FROM users").await, 3);
    assert_eq!(count(db, "SELECT count(*) FROM refresh_tokens").await, 11);
    assert_eq!(count(db, "SELECT count(*) FROM sessions").await, 4);
    assert_eq!(
        count(
            db,
            &format!(
                "SELECT count(*) FROM sessions WHERE id = '{}' AND device_id = 'ada-phone-1'
                 AND device_name = 'Ada''s phone' AND ip_address = '203.0.113.7' AND revoked_at IS NULL",
                f.phone[0].family_id
            )
        )
        .await,
        1
    );
    // The forked family keeps its newest live token; the repair is audited.
    assert_eq!(live_tokens_in_family(db, f.forked.0.family_id).await, 1);
    assert_eq!(
        count(
            db,
            &format!(
                "SELECT count(*) FROM refresh_tokens WHERE id = '{}' AND NOT is_revoked",
                f.forked.1.id
            )
        )
        .await,
        1
    );
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM audit_events WHERE kind = 'family_repaired'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM alembic_version WHERE version_num = '801b86be184b'"
        )
        .await,
        1
    );
    assert_eq!(
        count(db, "SELECT count(*) FROM users WHERE email_key IS NULL").await,
        0
    );

    // Running it again changes nothing.
    let out = run(db, &["migrate"], &[]).await;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(count(db, "SELECT count(*) FROM audit_events").await, 2);
    assert_eq!(count(db, "SELECT count(*) FROM sessions").await, 4);

    let app = TestApp::spawn_on(db.share(), &[]).await;

    // Everyone logs in with their existing password; other parameters are upgraded.
    for user in [&f.ada, &f.bob, &f.admin] {
        let r = app.post_login(&user.email, &user.password).await;
        assert_eq!(r.status(), StatusCode::OK, "{}", user.email);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["user"]["id"], user.id.to_string());
    }
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM audit_events WHERE kind = 'password_rehashed'"
        )
        .await,
        3
    );
    assert_eq!(
        count(db, "SELECT count(*) FROM users WHERE hashed_password LIKE '$argon2id$v=19$m=19456,t=2,p=1$%'").await,
        3
    );
    // A rehash logs no one out: token_version is unchanged.
    assert_eq!(
        count(
            db,
            &format!(
                "SELECT token_version::bigint FROM users WHERE id = '{}'",
                f.bob.id
            )
        )
        .await,
        3
    );

    // Live tokens rotate: the mobile flow…
    let live = f.phone.last().unwrap();
    let r = app.post_refresh_mobile(&live.raw).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let next = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.post_refresh_mobile(&next).await.status(),
        StatusCode::OK
    );
    // …and the cookie flow.
    let r = app.post_refresh_cookie(&f.forked.1.raw).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(refresh_cookie_value(&r).is_some());
    // The adopted session is listed with its device.
    let body: Value = r.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(
        app.get_auth("/v1/auth/me", access).await.status(),
        StatusCode::OK
    );

    // A revoked token of the original's is a replay: the family is revoked.
    let ancestor = &f.laptop[0];
    let r = app.post_refresh_mobile(&ancestor.raw).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "TokenRevokedError");
    assert_eq!(live_tokens_in_family(db, ancestor.family_id).await, 0);

    // The original's access tokens authenticate while they last; token_version and
    // roles carried over.
    let bob_token = original_access_token(f.bob.id, f.bob.token_version);
    let me: Value = app
        .get_auth("/v1/auth/me", &bob_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], f.bob.id.to_string());
    let stale = original_access_token(f.bob.id, 0);
    assert_eq!(
        app.get_auth("/v1/auth/me", &stale).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let admin_token = original_access_token(f.admin.id, f.admin.token_version);
    assert_eq!(
        app.get_auth("/v1/admin/users", &admin_token).await.status(),
        StatusCode::OK
    );
    let ada_token = original_access_token(f.ada.id, 0);
    assert_eq!(
        app.get_auth("/v1/admin/users", &ada_token).await.status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_original_still_runs_on_an_adopted_database_and_both_serve_one_session() {
    let f = fixture().await;
    let out = run(&f.db, &["migrate"], &[]).await;
    assert!(out.ok, "{}", out.stderr);
    let app = TestApp::spawn_on(f.db.share(), &[]).await;
    let mut conn = original::connect(&f.db).await;

    // A session started on rotor…
    let (rotor_access, rotor_refresh) = app.login_mobile(&f.ada.email, &f.ada.password).await;
    // …whose access token the original's decoder (PyJWT, HS256 under SECRET_KEY,
    // then its own `type` and `token_version` checks) accepts.
    let script = "import jwt, sys\n\
c = jwt.decode(sys.argv[1], sys.argv[2], algorithms=['HS256'])\n\
assert c['type'] == 'access' and c['token_version'] == 0, c\n\
print(c['sub'])";
    let out = std::process::Command::new("python3")
        .args(["-c", script, &rotor_access, SECRET])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the original's decoder refused rotor's token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        f.ada.id.to_string()
    );
    // …refreshes on the original: its own statements find it, revoke it, insert a
    // successor in the same family.
    let hash = rotor::domain::token::hash_token(&rotor_refresh);
    let (id, user_id, family) = repo::get_valid_by_hash(&mut conn, &hash)
        .await
        .expect("the original sees rotor's session");
    assert_eq!(user_id, f.ada.id);
    repo::revoke_token(&mut conn, id).await;
    let successor = original::token_urlsafe();
    repo::create_token(
        &mut conn,
        user_id,
        &rotor::domain::token::hash_token(&successor),
        family,
    )
    .await
    .expect("successor");
    // …and back on rotor.
    let r = app.post_refresh_mobile(&successor).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let on_rotor = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        repo::get_by_hash(&mut conn, &rotor::domain::token::hash_token(&on_rotor)).await,
        Some(false)
    );

    // The original's racing refresh now fails instead of forking the family.
    let (_, user_id, family) =
        repo::get_valid_by_hash(&mut conn, &rotor::domain::token::hash_token(&on_rotor))
            .await
            .unwrap();
    let fork = repo::create_token(
        &mut conn,
        user_id,
        &rotor::domain::token::hash_token(&original::token_urlsafe()),
        family,
    )
    .await;
    assert!(
        fork.is_err(),
        "a second live token in one family was accepted"
    );

    // The original's login reads users as it always did, including rotor's rehash.
    let (_, hashed, role, version) = repo::get_user_by_email(&mut conn, &f.admin.email)
        .await
        .unwrap();
    assert_eq!(role, "admin");
    assert_eq!(version, 1);
    assert!(hashed.starts_with("$argon2id$"));
    // A user the original registers during the cutover can log in on rotor at once.
    let hashed = original_hash("NewUser123");
    let new_id = repo::create_user(&mut conn, "New.User@example.com", &hashed).await;
    let r = app.post_login("New.User@example.com", "NewUser123").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["id"], new_id.to_string());

    // The rest of the original's repository works on the adopted schema.
    assert!(repo::get_user_active_sessions(&mut conn, f.bob.id).await >= 1);
    assert!(repo::revoke_family(&mut conn, f.laptop[0].family_id).await >= 1);
    assert!(repo::revoke_all_user_tokens(&mut conn, f.bob.id).await >= 1);
    repo::cleanup_expired(&mut conn).await;
    // rotor sees what the original did.
    assert_eq!(
        app.post_refresh_mobile(&f.laptop.last().unwrap().raw)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}
