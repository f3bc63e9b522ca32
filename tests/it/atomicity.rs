//! Every use case that writes more than once commits all of its writes or none. Each
//! test injects a failure between each pair of writes of one use case (the change hook
//! inserts `Write::Abort` there), checks that the database holds exactly what it held
//! before, then runs the use case for real and checks that it changed.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use rotor::{
    service::{users::AccountChanges, ClientContext, Principal},
    storage::{
        change::{Change, Write},
        SeedRepository,
    },
    testing::UserFactory,
    Error,
};

use crate::{
    both,
    original::argon2id,
    support::{text, Backend, TestApp, TestDb},
};

/// What the database holds, as one string: every user's identity, hash, version and
/// state; every token's revocation; every session's end; the audit log's size.
async fn snapshot(db: &TestDb) -> String {
    let queries: [&str; 4] = match db.backend {
        Backend::Sqlite => [
            "SELECT coalesce(group_concat(x, ','), '') FROM (SELECT id || email || hashed_password || token_version || is_active || role AS x FROM users ORDER BY id)",
            "SELECT coalesce(group_concat(x, ','), '') FROM (SELECT id || is_revoked AS x FROM refresh_tokens ORDER BY id)",
            "SELECT coalesce(group_concat(x, ','), '') FROM (SELECT id || coalesce(revoked_at, '-') AS x FROM sessions ORDER BY id)",
            "SELECT CAST(count(*) AS TEXT) FROM audit_events",
        ],
        Backend::Postgres => [
            "SELECT coalesce(string_agg(id::text || email || hashed_password || token_version::text || is_active::text || role::text, ',' ORDER BY id), '') FROM users",
            "SELECT coalesce(string_agg(id::text || is_revoked::text, ',' ORDER BY id), '') FROM refresh_tokens",
            "SELECT coalesce(string_agg(id::text || coalesce(revoked_at::text, '-'), ',' ORDER BY id), '') FROM sessions",
            "SELECT count(*)::text FROM audit_events",
        ],
    };
    let mut out = Vec::new();
    for q in queries {
        out.push(text(db, q).await);
    }
    out.join("\n")
}

/// Runs `op` once with a failure injected after each of its writes but the last, then
/// for real. `writes` is how many writes the use case makes; the hook checks it.
async fn all_or_nothing<F, Fut>(app: &TestApp, name: &str, writes: usize, op: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let seen = Arc::new(AtomicUsize::new(0));
    for at in 1..writes {
        let before = snapshot(&app.db).await;
        let seen_in = seen.clone();
        app.rotor
            .set_change_hook(Some(Arc::new(move |change: &mut Change| {
                seen_in.store(change.writes.len(), Ordering::SeqCst);
                change.writes.insert(at, Write::Abort);
            })));
        let result = op().await;
        assert!(
            result.is_err(),
            "{name}: the injected failure after write {at} was not reported"
        );
        assert_eq!(
            seen.load(Ordering::SeqCst),
            writes,
            "{name}: the use case no longer makes {writes} writes in one change"
        );
        assert_eq!(
            snapshot(&app.db).await,
            before,
            "{name}: a failure after write {at} of {writes} left part of the change"
        );
    }
    app.rotor.set_change_hook(None);
    let before = snapshot(&app.db).await;
    op().await.unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_ne!(snapshot(&app.db).await, before, "{name}: changed nothing");
}

async fn principal(app: &TestApp, email: &str) -> (Principal, String) {
    let (access, refresh) = app.login_mobile(email, UserFactory::PASSWORD).await;
    (
        app.rotor.authenticate(&access).await.expect("auth"),
        refresh,
    )
}

fn ctx() -> ClientContext {
    ClientContext {
        ip: Some("192.0.2.1".into()),
        ..ClientContext::default()
    }
}

both!(change_password_is_all_or_nothing, |b| async move {
    let app = TestApp::spawn(b).await;
    let user = UserFactory::create(app.store().as_ref()).await.unwrap();
    let (me, _) = principal(&app, &user.email).await;
    principal(&app, &user.email).await; // a second device, which the change ends
    all_or_nothing(&app, "change_password", 3, || async {
        app.rotor
            .change_password(&me, UserFactory::PASSWORD, "NewPassw0rd", &ctx())
            .await
    })
    .await;
});

both!(
    an_admin_deactivating_and_setting_a_password_is_all_or_nothing,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = UserFactory::create(app.store().as_ref()).await.unwrap();
        principal(&app, &user.email).await;
        all_or_nothing(&app, "update_account", 5, || async {
            let changes = AccountChanges {
                is_active: Some(false),
                password: Some("Replaced123".into()),
                ..AccountChanges::default()
            };
            app.rotor
                .update_account(user.id, changes, None, &ctx())
                .await
                .map(drop)
        })
        .await;
    }
);

both!(
    logout_all_and_logout_others_are_all_or_nothing,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = UserFactory::create(app.store().as_ref()).await.unwrap();
        let (me, _) = principal(&app, &user.email).await;
        principal(&app, &user.email).await;
        all_or_nothing(&app, "logout_others", 2, || async {
            app.rotor.logout_others(&me, &ctx()).await.map(drop)
        })
        .await;
        principal(&app, &user.email).await;
        all_or_nothing(&app, "logout_all", 3, || async {
            app.rotor.logout_all(&me, &ctx()).await.map(drop)
        })
        .await;
    }
);

both!(
    registration_and_deletion_are_all_or_nothing,
    |b| async move {
        let app = TestApp::spawn(b).await;
        all_or_nothing(&app, "register", 2, || async {
            app.rotor
                .register("atomic@example.com", "Atomic123", None, &ctx())
                .await
                .map(drop)
        })
        .await;
        let user = UserFactory::create(app.store().as_ref()).await.unwrap();
        principal(&app, &user.email).await;
        all_or_nothing(&app, "delete_account", 2, || async {
            app.rotor.delete_account(user.id, None, &ctx()).await
        })
        .await;
    }
);

both!(
    a_login_that_upgrades_the_hash_is_all_or_nothing,
    |b| async move {
        let app = TestApp::spawn(b).await;
        let user = UserFactory::create(app.store().as_ref()).await.unwrap();
        let old = argon2id(UserFactory::PASSWORD, 8192, 1, 1);
        app.store()
            .rehash_password(user.id, &old, app.now())
            .await
            .unwrap();
        // rehash, its audit row, the session, the login audit row
        all_or_nothing(&app, "login", 4, || async {
            app.rotor
                .login(&user.email, UserFactory::PASSWORD, &ctx())
                .await
                .map(drop)
        })
        .await;
    }
);

both!(
    replay_logout_and_session_revocation_are_all_or_nothing,
    |b| async move {
        let app = TestApp::spawn_with(b, &[("REFRESH_REUSE_GRACE_SECONDS", "0")]).await;
        let user = UserFactory::create(app.store().as_ref()).await.unwrap();
        let (_, first) = principal(&app, &user.email).await;
        app.rotor.refresh(&first, &ctx()).await.unwrap();
        all_or_nothing(&app, "replay", 2, || async {
            match app.rotor.refresh(&first, &ctx()).await {
                Err(Error::TokenRevoked) => Ok(()),
                Err(e) => Err(e),
                Ok(_) => panic!("a replay rotated"),
            }
        })
        .await;

        let (_, refresh) = principal(&app, &user.email).await;
        all_or_nothing(&app, "logout", 2, || async {
            app.rotor.logout(&refresh, &ctx()).await
        })
        .await;

        let (me, _) = principal(&app, &user.email).await;
        let (other, _) = principal(&app, &user.email).await;
        let id = other.session_id.unwrap();
        all_or_nothing(&app, "revoke_session", 2, || async {
            app.rotor.revoke_session(&me, id, &ctx()).await
        })
        .await;
    }
);
