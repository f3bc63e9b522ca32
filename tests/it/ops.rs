//! Operating rotor: the CLI against real databases, cleanup at scale while refreshes
//! flow, the cross-process cleanup lock, metrics, limits, readiness, JSON logs, graceful
//! shutdown and secrets hygiene. Several tests run the real `rotor` binary.

use rotor::domain::email::EmailKey;
use std::{
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use reqwest::StatusCode;
use rotor::testing::{RefreshTokenFactory, UserFactory};
use serde_json::Value;

use crate::{
    both,
    process::{run, Server},
    support::{count, eventually, live_tokens, raw_exchange, Backend, TestApp, TestDb},
};

both!(cli_migrate_creates_the_schema, |b| async move {
    let db = TestDb::new(b).await;
    let out = run(&db, &["migrate"], &[]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("migrations applied"));
    assert_eq!(count(&db, "SELECT count(*) FROM users").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM refresh_tokens").await, 0);
    // Idempotent.
    assert!(run(&db, &["migrate"], &[]).await.ok);
});

both!(
    cli_user_commands_change_what_the_database_holds,
    |b| async move {
        let db = TestDb::new(b).await;
        let out = run(
            &db,
            &["users", "create-admin", "--email", "Boss@Example.com"],
            &[("ROTOR_ADMIN_PASSWORD", "AdminPass123")],
        )
        .await;
        assert!(out.ok, "{}", out.stderr);
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM users WHERE role = 'admin' AND email = 'Boss@Example.com'"
            )
            .await,
            1
        );
        assert!(!out.stdout.contains("AdminPass123") && !out.stderr.contains("AdminPass123"));

        // The admin logs in through the API, then the CLI ends their sessions.
        let app = TestApp::spawn_on(db.share(), &[]).await;
        let (access, refresh) = app.login_mobile("boss@example.com", "AdminPass123").await;
        let out = run(&db, &["users", "revoke-sessions", "boss@example.com"], &[]).await;
        assert!(out.ok, "{}", out.stderr);
        assert!(out.stdout.contains("ended 1 sessions"), "{}", out.stdout);
        assert_eq!(
            app.post_refresh_mobile(&refresh).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.get_auth("/v1/auth/me", &access).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(live_tokens(&db).await, 0);

        let out = run(&db, &["users", "deactivate", "boss@example.com"], &[]).await;
        assert!(out.ok, "{}", out.stderr);
        assert_eq!(
            count(&db, "SELECT count(*) FROM users WHERE NOT is_active").await,
            1
        );
        assert_eq!(
            app.post_login("boss@example.com", "AdminPass123")
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );

        let out = run(&db, &["users", "deactivate", "nobody@example.com"], &[]).await;
        assert!(!out.ok);
        assert!(out.stderr.contains("no user"), "{}", out.stderr);
    }
);

both!(
    cli_cleanup_dry_run_counts_and_cleanup_deletes,
    |b| async move {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let user = UserFactory::create(store.as_ref()).await.unwrap();
        for _ in 0..5 {
            RefreshTokenFactory::create(
                store.as_ref(),
                &user,
                false,
                chrono::Duration::seconds(-10),
            )
            .await
            .unwrap();
        }
        RefreshTokenFactory::create(store.as_ref(), &user, true, chrono::Duration::days(7))
            .await
            .unwrap();
        store.close().await;

        let out = run(&db, &["cleanup", "--dry-run"], &[]).await;
        assert!(out.ok, "{}", out.stderr);
        assert!(
            out.stdout.contains("would delete 5 refresh tokens"),
            "{}",
            out.stdout
        );
        assert_eq!(count(&db, "SELECT count(*) FROM refresh_tokens").await, 6);

        let out = run(&db, &["cleanup"], &[("CLEANUP_BATCH_SIZE", "2")]).await;
        assert!(out.ok, "{}", out.stderr);
        assert!(
            out.stdout.contains("deleted 5 refresh tokens"),
            "{}",
            out.stdout
        );
        assert!(
            out.stderr.contains("deleting refresh_tokens"),
            "progress lines: {}",
            out.stderr
        );
        assert_eq!(
            count(&db, "SELECT count(*) FROM refresh_tokens").await,
            1,
            "the revoked, unexpired token stays"
        );
    }
);

#[tokio::test]
async fn cli_cleanup_refuses_to_run_while_another_process_holds_the_lock() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    let lock = store.try_cleanup_lock().await.unwrap().expect("lock free");
    let out = run(&db, &["cleanup"], &[]).await;
    assert!(!out.ok, "a second cleanup must not run");
    assert!(
        out.stderr.contains("another cleanup is running"),
        "{}",
        out.stderr
    );
    lock.release().await;
    assert!(run(&db, &["cleanup"], &[]).await.ok);
}

#[tokio::test]
async fn two_concurrent_cleanups_never_both_run() {
    let db = TestDb::new(Backend::Postgres).await;
    let a = TestApp::spawn_on(db.share(), &[]).await;
    let b2 = TestApp::spawn_on(db.share(), &[]).await;
    let store = a.store().clone();
    let user = UserFactory::create(store.as_ref()).await.unwrap();
    for _ in 0..50 {
        RefreshTokenFactory::create(store.as_ref(), &user, false, chrono::Duration::seconds(-10))
            .await
            .unwrap();
    }
    for _ in 0..10 {
        let (ra, rb) = tokio::join!(a.rotor.cleanup(None), b2.rotor.cleanup(None));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        // Either one ran and the other was refused, or they ran one after the other.
        let deleted = ra.map_or(0, |r| r.refresh_tokens) + rb.map_or(0, |r| r.refresh_tokens);
        assert!(deleted <= 50);
    }
    assert_eq!(count(&db, "SELECT count(*) FROM refresh_tokens").await, 0);
    // While one holds the lock, the other is refused.
    let held = store.try_cleanup_lock().await.unwrap().expect("free");
    assert!(b2.rotor.cleanup(None).await.unwrap().is_none());
    held.release().await;
    drop(db);
}

#[tokio::test]
async fn cli_config_check_redacts_secrets_and_names_invalid_variables() {
    let db = TestDb::new(Backend::Sqlite).await;
    let out = run(
        &db,
        &["config", "check"],
        &[("INTROSPECTION_SECRET", "super-secret-introspection")],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("SECRET_KEY=<redacted>"));
    assert!(out.stdout.contains("INTROSPECTION_SECRET=<redacted>"));
    assert!(!out.stdout.contains("integration-test-secret-key"));
    assert!(!out.stdout.contains("super-secret-introspection"));
    let bad = run(&db, &["config", "check"], &[("PORT", "eighty")]).await;
    assert!(!bad.ok);
    assert!(bad.stderr.contains("PORT"), "{}", bad.stderr);
    let bad = run(
        &db,
        &["config", "check"],
        &[("REFRESH_REUSE_GRACE_SECONDS", "-1")],
    )
    .await;
    assert!(!bad.ok);
    assert!(
        bad.stderr.contains("REFRESH_REUSE_GRACE_SECONDS"),
        "{}",
        bad.stderr
    );
    let refused = run(
        &db,
        &["config", "check"],
        &[("ENVIRONMENT", "production"), ("CORS_ORIGINS", "*")],
    )
    .await;
    assert!(!refused.ok);
    // A TOML file underneath, the environment winning.
    let toml = db.dir.join("rotor.toml");
    std::fs::write(&toml, "port = 9999\naccess_token_expire_minutes = 5\n").unwrap();
    let out = run(
        &db,
        &["--config", toml.to_str().unwrap(), "config", "check"],
        &[("PORT", "7777")],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("PORT=7777"));
    assert!(out.stdout.contains("ACCESS_TOKEN_EXPIRE_MINUTES=5"));
}

#[tokio::test]
async fn cli_help_documents_commands_and_variables() {
    let out = Command::new(env!("CARGO_BIN_EXE_rotor"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "serve", "migrate", "cleanup", "backup", "keys", "users", "config",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}:\n{text}");
    }
    // Every declared setting, with its doc line, default and accepted values.
    for setting in rotor::config::Settings::help() {
        let line = format!("  {setting}");
        assert!(
            text.lines().any(|l| l == line),
            "--help lacks {}:\n{text}",
            setting.name
        );
    }
}

#[tokio::test]
async fn every_declared_setting_is_read_from_the_environment() {
    // `rotor config check` with each declared variable set alone to a probe value:
    // either it is refused, naming the variable, or the variable's line changes.
    let db = TestDb::new(Backend::Sqlite).await;
    let baseline = run(&db, &["config", "check"], &[]).await;
    assert!(baseline.ok, "{}", baseline.stderr);
    let line_of = |stdout: &str, name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    };
    for setting in rotor::config::SETTINGS {
        let before = line_of(&baseline.stdout, setting.name)
            .unwrap_or_else(|| panic!("config check lacks {}", setting.name));
        let out = run(&db, &["config", "check"], &[(setting.name, "rotor-probe")]).await;
        if out.ok {
            assert_ne!(
                line_of(&out.stdout, setting.name).as_deref(),
                Some(before.as_str()),
                "{} is not read from the environment",
                setting.name
            );
        } else {
            assert!(
                out.stderr.contains(&format!("{}:", setting.name)),
                "{}: {}",
                setting.name,
                out.stderr
            );
        }
    }
}

both!(cli_keys_rotate_list_and_prune, |b| async move {
    let db = TestDb::new(b).await;
    let env = [("JWT_ALGORITHM", "EdDSA")];
    assert!(run(&db, &["migrate"], &env).await.ok);
    let out = run(&db, &["keys", "rotate"], &env).await;
    assert!(out.ok, "{}", out.stderr);
    let listed = run(&db, &["keys", "list"], &env).await;
    assert_eq!(listed.stdout.lines().count(), 2, "{}", listed.stdout);
    assert_eq!(listed.stdout.matches("retired").count(), 1);
    // Nothing is old enough to prune yet.
    let pruned = run(&db, &["keys", "prune"], &env).await;
    assert!(pruned.stdout.contains("pruned 0 keys"), "{}", pruned.stdout);
    assert_eq!(count(&db, "SELECT count(*) FROM signing_keys").await, 2);
});

/// Seeds `n` expired refresh tokens (in families of their own) with one statement.
async fn seed_expired(db: &TestDb, user_id: uuid::Uuid, n: u32) {
    use sqlx::Connection;
    match db.backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query(
                "INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, expires_at, is_revoked, created_at)
                 SELECT gen_random_uuid(), md5(i::text || 'a') || md5(i::text || 'b'), $1, gen_random_uuid(),
                        now() - interval '1 day', i % 2 = 0, now() - interval '8 days'
                 FROM generate_series(1, $2) AS i",
            )
            .bind(user_id)
            .bind(n as i32)
            .execute(&mut c)
            .await
            .unwrap();
        }
        Backend::Sqlite => {
            db.sqlite()
                .execute(
                    "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?2)
                     INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, expires_at, is_revoked, created_at)
                     SELECT lower(hex(randomblob(16))), lower(hex(randomblob(32))), ?1, lower(hex(randomblob(16))),
                            '2000-01-01T00:00:00.000000Z', i % 2, '2000-01-01T00:00:00.000000Z' FROM seq",
                    rusqlite::params![user_id.to_string(), n],
                )
                .unwrap();
        }
    }
}

both!(
    cleanup_of_200k_expired_rows_runs_while_refreshes_succeed,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("CLEANUP_BATCH_SIZE", "5000")]).await;
        let (email, _access, mut refresh) = app.user_session().await;
        let user = app
            .store()
            .get_user_by_email(&EmailKey::of(&email))
            .await
            .unwrap()
            .unwrap();
        seed_expired(&app.db, user.id, 200_000).await;
        assert_eq!(
            count(&app.db, "SELECT count(*) FROM refresh_tokens").await,
            200_001
        );

        let done = Arc::new(AtomicBool::new(false));
        let during = Arc::new(AtomicU64::new(0));
        let rotor = app.rotor.clone();
        let flag = done.clone();
        let cleanup = tokio::spawn(async move {
            let report = rotor.cleanup(None).await;
            flag.store(true, Ordering::SeqCst);
            report
        });
        // Refresh continuously until the cleanup finishes; every refresh must succeed.
        let mut refreshes = 0;
        while !done.load(Ordering::SeqCst) {
            let r = app.post_refresh_mobile(&refresh).await;
            assert_eq!(
                r.status(),
                StatusCode::OK,
                "a refresh failed during cleanup"
            );
            refresh = r.json::<Value>().await.unwrap()["refresh_token"]
                .as_str()
                .unwrap()
                .to_owned();
            refreshes += 1;
            during.fetch_add(1, Ordering::Relaxed);
            app.clock.advance(chrono::Duration::seconds(11));
        }
        let report = cleanup.await.unwrap().unwrap().expect("lock was free");
        assert_eq!(report.refresh_tokens, 200_000);
        assert!(refreshes >= 1, "refreshes ran while the cleanup did");
        // What remains: the session's tokens only (one live, the rest revoked ancestors).
        let remaining = count(&app.db, "SELECT count(*) FROM refresh_tokens").await;
        assert_eq!(remaining, refreshes + 1);
        assert_eq!(live_tokens(&app.db).await, 1);
    }
);

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

both!(metrics_move_when_events_happen, |b| async move {
    let app = TestApp::spawn_with(b, &[("REFRESH_REUSE_GRACE_SECONDS", "0")]).await;
    let before = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (email, _access, refresh) = app.user_session().await;
    assert_eq!(
        app.post_login(&email, "WrongPass123").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app.post_refresh_mobile(&refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Replay the rotated token.
    assert_eq!(
        app.post_refresh_mobile(&refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(r.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let after = r.text().await.unwrap();
    let delta = |p: &str| metric(&after, p) - metric(&before, p);
    assert_eq!(delta("rotor_logins_total{result=\"ok\"}"), 1.0);
    assert_eq!(delta("rotor_logins_total{result=\"failed\"}"), 1.0);
    assert_eq!(delta("rotor_refreshes_total"), 1.0);
    assert_eq!(delta("rotor_replays_detected_total"), 1.0);
    assert!(
        metric(
            &after,
            "http_requests_total{method=\"POST\",route=\"/v1/auth/refresh-mobile\",status=\"200\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &after,
            "http_requests_total{method=\"POST\",route=\"/v1/auth/refresh-mobile\",status=\"401\"}"
        ) >= 1.0
    );
    assert!(after.contains("http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/auth/login\",le=\"+Inf\"}"));
    assert!(after.contains("rotor_db_pool_connections{state=\"open\"}"));
});

#[tokio::test]
async fn metrics_can_be_disabled() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("METRICS_ENABLED", "false")]).await;
    assert_eq!(app.status_of("/metrics").await, StatusCode::NOT_FOUND);
}

both!(
    oversized_bodies_are_refused_with_413_and_change_nothing,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let big = "x".repeat(100 * 1024);
        let r = app
            .client
            .post(app.url("/v1/users"))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"email":"big@test.com","password":"BigPass123","full_name":"{big}"}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // 10 MiB: refused from its Content-Length, before it is read. Only the head is
        // sent, so the answer cannot be lost to a reset while a client is still writing
        // the body: a server that waited for the body would answer 408, not 413.
        let head = format!(
            "POST /v1/auth/login HTTP/1.1\r\nHost: rotor\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n",
            10 * 1024 * 1024
        );
        let answer = raw_exchange(app.addr, head.as_bytes(), Duration::from_secs(5)).await;
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "a 10 MiB Content-Length is refused at once: {answer:.80}"
        );
        assert_eq!(count(&app.db, "SELECT count(*) FROM users").await, 0);
        // The server still answers.
        assert_eq!(app.status_of("/health").await, StatusCode::OK);
    }
);

#[tokio::test]
async fn ready_and_detailed_health_report_an_unreachable_database() {
    let db = TestDb::new(Backend::Postgres).await;
    let app = TestApp::spawn_on(db.share(), &[]).await;
    assert_eq!(app.status_of("/ready").await, StatusCode::OK);
    let d: Value = app.json_of("/health/detailed").await;
    assert_eq!(d["status"], "healthy");
    assert_eq!(d["database"], "healthy");
    drop(db); // drops the database under the running app
    let r = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let d: Value = app.json_of("/health/detailed").await;
    assert_eq!(d["status"], "degraded");
    assert_eq!(d["database"], "unhealthy");
    assert_eq!(app.status_of("/health").await, StatusCode::OK);
}

#[tokio::test]
async fn json_logs_carry_the_correlation_id_and_never_a_secret() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = Server::start(
        &db,
        &[
            ("LOG_JSON_FORMAT", "true"),
            ("LOG_LEVEL", "debug"),
            ("REFRESH_REUSE_GRACE_SECONDS", "0"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let password = "HygienePass123";
    let r = client
        .post(format!("{}/v1/users", server.base))
        .header("x-correlation-id", "corr-abc-123")
        .json(&serde_json::json!({"email": "hygiene@test.com", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["x-correlation-id"], "corr-abc-123");
    let login: Value = client
        .post(format!("{}/v1/auth/login-mobile", server.base))
        .form(&[("username", "hygiene@test.com"), ("password", password)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = login["refresh_token"].as_str().unwrap().to_owned();
    let access = login["access_token"].as_str().unwrap().to_owned();
    let rotated: Value = client
        .post(format!("{}/v1/auth/refresh-mobile", server.base))
        .json(&serde_json::json!({"refresh_token": first}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second = rotated["refresh_token"].as_str().unwrap().to_owned();
    // A replay, logged as a warning with the token's hash.
    let replay = client
        .post(format!("{}/v1/auth/refresh-mobile", server.base))
        .header("x-correlation-id", "corr-replay-1")
        .json(&serde_json::json!({"refresh_token": first}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    // The log is written by another process: wait for the replay's warning to land.
    eventually(
        Duration::from_secs(10),
        "the replay warning in the log",
        || async { server.log_text().contains("replay detected") },
    )
    .await;

    let log = server.log_text();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!lines.is_empty(), "JSON log lines expected:\n{log}");
    let replay_line = lines
        .iter()
        .find(|l| l.to_string().contains("replay detected"))
        .unwrap_or_else(|| panic!("replay warning missing:\n{log}"));
    assert!(
        replay_line.to_string().contains("corr-replay-1"),
        "correlation id on the line: {replay_line}"
    );
    for secret in [
        password,
        first.as_str(),
        second.as_str(),
        access.as_str(),
        "integration-test-secret-key",
    ] {
        assert!(!log.contains(secret), "log leaks a secret");
    }
    // Nor does the database hold any of them (the file and its WAL, byte for byte).
    // Both files exist while the server runs (WAL mode); a missing one is a failure,
    // not a file with nothing to find in it.
    let mut bytes = Vec::new();
    for f in ["rotor.db", "rotor.db-wal"] {
        let path = db.dir.join(f);
        bytes.extend(
            std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())),
        );
    }
    let haystack = String::from_utf8_lossy(&bytes);
    assert!(
        haystack.contains("hygiene@test.com") && haystack.contains("$argon2id$"),
        "the bytes read are the database's (the user's row is among them)"
    );
    for secret in [password, first.as_str(), second.as_str()] {
        assert!(!haystack.contains(secret), "database holds a raw secret");
    }
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut server = Server::start(&db, &[]).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/v1/users", server.base))
        .json(&serde_json::json!({"email": "term@test.com", "password": "TermPass123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Logins take tens of milliseconds (Argon2); start many, then SIGTERM mid-flight.
    let mut inflight = Vec::new();
    for _ in 0..24 {
        let client = client.clone();
        let base = server.base.clone();
        inflight.push(tokio::spawn(async move {
            client
                .post(format!("{base}/v1/auth/login-mobile"))
                .form(&[("username", "term@test.com"), ("password", "TermPass123")])
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    // SIGTERM once logins are in flight: accepted and hashing (or queued for it).
    let metrics = format!("{}/metrics", server.base);
    eventually(Duration::from_secs(10), "a login in flight", || async {
        let text = client
            .get(&metrics)
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        metric(&text, "rotor_argon2_pending ") >= 1.0
    })
    .await;
    server.signal("TERM");
    let mut answered = 0;
    for t in inflight {
        match t.await.unwrap() {
            Ok(status) => {
                assert_eq!(
                    status,
                    StatusCode::OK,
                    "an accepted request was not completed"
                );
                answered += 1;
            }
            // Sent after the listener closed: refused, never accepted-then-dropped.
            Err(e) => assert!(e.is_connect(), "accepted request dropped: {e}"),
        }
    }
    assert!(answered > 0, "some requests were in flight");
    let status = server
        .wait(Duration::from_secs(20))
        .await
        .expect("rotor exits after SIGTERM");
    assert!(status.success(), "clean exit: {status:?}");
    assert!(server.log_text().contains("shutdown signal received"));
}

#[tokio::test]
async fn metrics_can_be_served_on_a_separate_address() {
    let db = TestDb::new(Backend::Sqlite).await;
    let metrics_port = crate::process::free_port();
    let bind = format!("127.0.0.1:{metrics_port}");
    let server = Server::start(&db, &[("METRICS_BIND", bind.as_str())]).await;
    let client = reqwest::Client::new();
    let main = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        main.status(),
        StatusCode::NOT_FOUND,
        "not on the public port"
    );
    let separate = client
        .get(format!("http://{bind}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(separate.status(), StatusCode::OK);
    assert!(separate
        .text()
        .await
        .unwrap()
        .contains("rotor_logins_total"));
}

#[tokio::test]
async fn postgres_holds_no_raw_token_or_password_after_a_full_scenario() {
    let app = TestApp::spawn_with(Backend::Postgres, &[("REFRESH_REUSE_GRACE_SECONDS", "0")]).await;
    let (_, access, first) = app.user_session().await;
    let r = app.post_refresh_mobile(&first).await;
    let second = r.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.post_refresh_mobile(&first).await.status(),
        StatusCode::UNAUTHORIZED,
        "replay"
    );
    let (_, _, third) = app.user_session().await;
    let r = app
        .client
        .post(app.url("/v1/auth/change-password"))
        .bearer_auth(&access)
        .json(&serde_json::json!({"current_password": "TestPass123", "new_password": "Changed-Pass-456"}))
        .send()
        .await
        .unwrap();
    // The first session was revoked by the replay, so its access token is dead.
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    let mut dump = String::new();
    for table in [
        "users",
        "sessions",
        "refresh_tokens",
        "audit_events",
        "signing_keys",
    ] {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM {table} t"))
                .fetch_all(&mut c)
                .await
                .unwrap();
        dump.push_str(&rows.join("\n"));
    }
    assert!(dump.contains("$argon2id$"), "the dump is real");
    for secret in [
        "TestPass123",
        "Changed-Pass-456",
        first.as_str(),
        second.as_str(),
        third.as_str(),
        access.as_str(),
    ] {
        assert!(!dump.contains(secret), "PostgreSQL holds a raw secret");
    }
}

#[tokio::test]
async fn an_in_memory_sqlite_database_serves_a_whole_session() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = Server::start(&db, &[("DATABASE_URL", "sqlite::memory:")]).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/v1/users", server.base))
        .json(&serde_json::json!({"email": "mem@test.com", "password": "MemPass123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let login: Value = client
        .post(format!("{}/v1/auth/login-mobile", server.base))
        .form(&[("username", "mem@test.com"), ("password", "MemPass123")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = client
        .post(format!("{}/v1/auth/refresh-mobile", server.base))
        .json(&serde_json::json!({"refresh_token": login["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!db.dir.join("rotor.db").exists(), "nothing written to disk");
}
