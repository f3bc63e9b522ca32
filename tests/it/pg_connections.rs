//! rotor keeps a few PostgreSQL connections between its hot statements instead of
//! handing each back to sqlx's pool (`storage::postgres::warm`). A kept connection the
//! server has closed, or one whose statement was abandoned by a cancelled request,
//! must never serve a second request wrongly: it fails once at most, and an abandoned
//! one goes back to sqlx, which drains it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection;

use crate::support::{Backend, TestApp};

/// Rotates `refresh`: the access token and the successor (panics unless 200).
async fn rotate_pair(app: &TestApp, refresh: &str) -> (String, String) {
    let r = app.post_refresh_mobile(refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn rotate(app: &TestApp, refresh: &str) -> String {
    rotate_pair(app, refresh).await.1
}

#[tokio::test]
async fn connections_the_server_closed_fail_one_request_each_then_rotation_resumes() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (_, _, mut refresh) = app.user_session().await;
    for _ in 0..5 {
        refresh = rotate(&app, &refresh).await;
    }
    // Every connection of rotor's, kept or idle in the pool, is closed by the server.
    let mut admin = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()) k",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(killed >= 1, "rotor held no connection");
    // Each dead connection fails the one request that finds it, with a 5xx and no
    // change; then rotation resumes on new connections, five times in a row.
    let mut failures = 0;
    let mut in_a_row = 0;
    while in_a_row < 5 {
        let r = app.post_refresh_mobile(&refresh).await;
        if r.status() == StatusCode::OK {
            let body: Value = r.json().await.unwrap();
            refresh = body["refresh_token"].as_str().unwrap().to_owned();
            in_a_row += 1;
        } else {
            assert!(r.status().is_server_error(), "{}", r.status());
            assert_eq!(in_a_row, 0, "a failure after rotation had resumed");
            failures += 1;
            assert!(
                failures <= killed,
                "{failures} failures for {killed} dead connections"
            );
        }
    }
    let _ = admin.close().await;
}

#[tokio::test]
async fn a_request_cancelled_mid_statement_leaves_no_connection_out_of_step() {
    let app = TestApp::spawn_with(Backend::Postgres, &[("REQUEST_TIMEOUT_SECONDS", "1")]).await;
    let (_, _, mut refresh) = app.user_session().await;
    for _ in 0..3 {
        refresh = rotate(&app, &refresh).await;
    }
    // Another client holds the token table, so the rotation waits on the server until
    // the request's timeout drops it, statement sent and answer unread.
    let mut locker = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    let mut tx = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE refresh_tokens IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let r = app.post_refresh_mobile(&refresh).await;
    assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
    tx.rollback().await.unwrap();
    // The abandoned statement runs once the lock is gone (the server never saw a
    // cancel) and rotates the token; the retry is inside the grace window and gets
    // that successor. The connection that carried it is not kept (sqlx drains the
    // abandoned answer before it serves anyone again); every later rotation and bearer
    // read must still get its own, new answer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut seen = std::collections::HashSet::new();
    for i in 0..10 {
        let (access, next) = rotate_pair(&app, &refresh).await;
        assert!(
            seen.insert(next.clone()),
            "successor {i} was answered before"
        );
        refresh = next;
        // Bearer reads lease the same connections.
        let me = app.get_auth("/v1/users/me", &access).await;
        assert_eq!(me.status(), StatusCode::OK);
    }
    let _ = locker.close().await;
}

#[tokio::test]
async fn a_small_pool_is_not_starved_by_kept_connections() {
    // Two connections: cleanup holds one for its advisory lock and runs its deletes on
    // the other, so none may sit kept and idle.
    let app = TestApp::spawn_with(Backend::Postgres, &[("DB_MAX_CONNECTIONS", "2")]).await;
    let (_, _, mut refresh) = app.user_session().await;
    for _ in 0..3 {
        refresh = rotate(&app, &refresh).await;
    }
    let started = std::time::Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(10), app.rotor.cleanup(None))
        .await
        .expect("cleanup waited for a connection")
        .unwrap();
    assert!(report.is_some(), "cleanup did not run");
    assert!(started.elapsed() < Duration::from_secs(5));
    rotate(&app, &refresh).await;
}
