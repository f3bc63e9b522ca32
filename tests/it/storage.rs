//! The storage conformance suite: every repository operation's contract, run against
//! SQLite and PostgreSQL alike. Assertions check what the tables hold afterwards.

use rotor::domain::email::EmailKey;
use std::sync::Arc;

use chrono::{Duration, Utc};
use rotor::{
    clock::truncate,
    domain::token::{hash_token, RawToken},
    storage::{
        EventFilter, NewAuditEvent, NewRefreshToken, NewSession, Role, Rotation, SeedRepository,
        Store, StoreError, StoredKey, UserPatch,
    },
    testing::{RefreshTokenFactory, UserFactory},
};
use uuid::Uuid;

use crate::{
    both,
    support::{count, Backend, TestDb},
};

fn week() -> Duration {
    Duration::days(7)
}

async fn setup(backend: Backend) -> (TestDb, Arc<dyn Store>) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    (db, store)
}

both!(
    get_by_hash_returns_any_state_and_get_valid_only_live,
    |b| async move {
        let (_db, store) = setup(b).await;
        let user = UserFactory::create(store.as_ref()).await.unwrap();
        let now = truncate(Utc::now());
        let (live, live_raw) = RefreshTokenFactory::create(store.as_ref(), &user, false, week())
            .await
            .unwrap();
        let (_, revoked_raw) = RefreshTokenFactory::create(store.as_ref(), &user, true, week())
            .await
            .unwrap();
        let (_, expired_raw) =
            RefreshTokenFactory::create(store.as_ref(), &user, false, Duration::seconds(-1))
                .await
                .unwrap();

        assert_eq!(live.token_hash, hash_token(&live_raw));
        assert_eq!(live.token_hash.len(), 64);
        for raw in [&live_raw, &revoked_raw, &expired_raw] {
            assert!(store.get_by_hash(&hash_token(raw)).await.unwrap().is_some());
        }
        assert_eq!(
            store
                .get_valid_by_hash(&hash_token(&live_raw), now)
                .await
                .unwrap()
                .map(|t| t.id),
            Some(live.id)
        );
        assert!(store
            .get_valid_by_hash(&hash_token(&revoked_raw), now)
            .await
            .unwrap()
            .is_none());
        assert!(store
            .get_valid_by_hash(&hash_token(&expired_raw), now)
            .await
            .unwrap()
            .is_none());
        assert!(store
            .get_by_hash(&hash_token("never-issued"))
            .await
            .unwrap()
            .is_none());
    }
);

both!(only_hashes_are_stored, |b| async move {
    let (db, store) = setup(b).await;
    let user = UserFactory::create(store.as_ref()).await.unwrap();
    let (_, raw) = RefreshTokenFactory::create(store.as_ref(), &user, false, week())
        .await
        .unwrap();
    let sql = format!(
        "SELECT count(*) FROM refresh_tokens WHERE token_hash = '{raw}' OR id::text = '{raw}'"
    );
    let sql = if b == Backend::Sqlite {
        sql.replace("::text", "")
    } else {
        sql
    };
    assert_eq!(count(&db, &sql).await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM refresh_tokens").await, 1);
});

both!(create_token_round_trips_every_field, |b| async move {
    let (_db, store) = setup(b).await;
    let user = UserFactory::create(store.as_ref()).await.unwrap();
    let now = truncate(Utc::now());
    let new = NewRefreshToken {
        id: Uuid::now_v7(),
        user_id: user.id,
        token_hash: hash_token("abc"),
        family_id: Uuid::new_v4(),
        expires_at: now + week(),
        device_id: Some("device-1".into()),
        device_name: Some("Pixel".into()),
        ip_address: Some("2001:db8::1".into()),
        is_revoked: false,
    };
    let t = store.create_token(&new, now).await.unwrap();
    assert_eq!(t.id, new.id);
    assert_eq!(t.family_id, new.family_id);
    assert_eq!(t.device_id.as_deref(), Some("device-1"));
    assert_eq!(t.device_name.as_deref(), Some("Pixel"));
    assert_eq!(t.ip_address.as_deref(), Some("2001:db8::1"));
    assert_eq!(t.expires_at, now + week());
    assert_eq!(t.created_at, now);
    assert!(!t.is_revoked && t.revoked_at.is_none());
    assert_eq!(store.get_token(t.id).await.unwrap(), Some(t.clone()));

    // The same hash again violates the unique index.
    let dup = NewRefreshToken {
        id: Uuid::now_v7(),
        family_id: Uuid::new_v4(),
        ..new.clone()
    };
    assert!(matches!(
        store.create_token(&dup, now).await,
        Err(StoreError::Conflict(_))
    ));
});

both!(a_family_can_hold_only_one_live_token, |b| async move {
    let (_db, store) = setup(b).await;
    let user = UserFactory::create(store.as_ref()).await.unwrap();
    let now = truncate(Utc::now());
    let family = Uuid::new_v4();
    RefreshTokenFactory::create_in_family(store.as_ref(), &user, family, false, week(), now)
        .await
        .unwrap();
    let second =
        RefreshTokenFactory::create_in_family(store.as_ref(), &user, family, false, week(), now)
            .await;
    assert!(matches!(second, Err(StoreError::Conflict(_))), "{second:?}");
    // Revoked ancestors are fine.
    RefreshTokenFactory::create_in_family(store.as_ref(), &user, family, true, week(), now)
        .await
        .unwrap();
});

both!(revoke_token_marks_one_token, |b| async move {
    let (_db, store) = setup(b).await;
    let user = UserFactory::create(store.as_ref()).await.unwrap();
    let (a, _) = RefreshTokenFactory::create(store.as_ref(), &user, false, week())
        .await
        .unwrap();
    let (other, _) = RefreshTokenFactory::create(store.as_ref(), &user, false, week())
        .await
        .unwrap();
    let now = truncate(Utc::now());
    let revoked = store.revoke_token(a.id, now).await.unwrap().unwrap();
    assert!(revoked.is_revoked);
    assert_eq!(revoked.revoked_at, Some(now));
    assert!(!store.get_token(other.id).await.unwrap().unwrap().is_revoked);
    assert!(store
        .revoke_token(Uuid::now_v7(), now)
        .await
        .unwrap()
        .is_none());
});

both!(
    revoke_family_touches_only_that_family_and_counts,
    |b| async move {
        let (db, store) = setup(b).await;
        let user = UserFactory::create(store.as_ref()).await.unwrap();
        let now = truncate(Utc::now());
        let family = Uuid::new_v4();
        // One live and two already-revoked tokens in the family; another family beside it.
        RefreshTokenFactory::create_in_family(store.as_ref(), &user, family, true, week(), now)
            .await
            .unwrap();
        RefreshTokenFactory::create_in_family(store.as_ref(), &user, family, true, week(), now)
            .await
            .unwrap();
        RefreshTokenFactory::create_in_family(store.as_ref(), &user, family, false, week(), now)
            .await
            .unwrap();
        let (other, _) = RefreshTokenFactory::create(store.as_ref(), &user, false, week())
            .await
            .unwrap();

        assert_eq!(store.revoke_family(family, now).await.unwrap(), 1);
        let live_in_family = format!(
            "SELECT count(*) FROM refresh_tokens WHERE family_id = '{family}' AND NOT is_revoked"
        );
        let live_in_family = if b == Backend::Sqlite {
            live_in_family.replace("NOT is_revoked", "is_revoked = 0")
        } else {
            live_in_family
        };
        assert_eq!(count(&db, &live_in_family).await, 0);
        assert!(!store.get_token(other.id).await.unwrap().unwrap().is_revoked);
        assert_eq!(
            store.revoke_family(family, now).await.unwrap(),
            0,
            "idempotent"
        );
    }
);

both!(revoke_all_user_tokens_spares_other_users, |b| async move {
    let (_db, store) = setup(b).await;
    let alice = UserFactory::create(store.as_ref()).await.unwrap();
    let bob = UserFactory::create(store.as_ref()).await.unwrap();
    for _ in 0..3 {
        RefreshTokenFactory::create(store.as_ref(), &alice, false, week())
            .await
            .unwrap();
    }
    RefreshTokenFactory::create(store.as_ref(), &alice, true, week())
        .await
        .unwrap();
    let (bobs, _) = RefreshTokenFactory::create(store.as_ref(), &bob, false, week())
        .await
        .unwrap();
    let now = truncate(Utc::now());
    assert_eq!(
        store.revoke_all_user_tokens(alice.id, now).await.unwrap(),
        3
    );
    assert!(store
        .get_user_active_sessions(alice.id, now)
        .await
        .unwrap()
        .is_empty());
    assert!(!store.get_token(bobs.id).await.unwrap().unwrap().is_revoked);
});

both!(
    active_sessions_exclude_revoked_and_expired,
    |b| async move {
        let (_db, store) = setup(b).await;
        let user = UserFactory::create(store.as_ref()).await.unwrap();
        let (live, _) = RefreshTokenFactory::create(store.as_ref(), &user, false, week())
            .await
            .unwrap();
        RefreshTokenFactory::create(store.as_ref(), &user, true, week())
            .await
            .unwrap();
        RefreshTokenFactory::create(store.as_ref(), &user, false, Duration::seconds(-5))
            .await
            .unwrap();
        let active = store
            .get_user_active_sessions(user.id, truncate(Utc::now()))
            .await
            .unwrap();
        assert_eq!(
            active.iter().map(|t| t.id).collect::<Vec<_>>(),
            vec![live.id]
        );
    }
);

both!(
    cleanup_deletes_expired_in_batches_and_keeps_revoked_unexpired,
    |b| async move {
        let (db, store) = setup(b).await;
        let user = UserFactory::create(store.as_ref()).await.unwrap();
        let now = truncate(Utc::now());
        for i in 0..10 {
            // Expired tokens, half of them revoked.
            RefreshTokenFactory::create_at(
                store.as_ref(),
                &user,
                i % 2 == 0,
                Duration::seconds(-1),
                now,
            )
            .await
            .unwrap();
        }
        let (revoked_live, _) =
            RefreshTokenFactory::create_at(store.as_ref(), &user, true, week(), now)
                .await
                .unwrap();
        let (live, _) = RefreshTokenFactory::create_at(store.as_ref(), &user, false, week(), now)
            .await
            .unwrap();

        assert_eq!(store.count_expired_tokens(now).await.unwrap(), 10);
        assert_eq!(
            store.delete_expired_tokens_batch(now, 3).await.unwrap(),
            3,
            "a batch is bounded"
        );
        // A zero batch is taken as one row at a time: it finishes (it used to loop
        // forever on SQLite).
        let zero = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            store.cleanup_expired(now, 0),
        )
        .await
        .expect("cleanup_expired(now, 0) returns");
        assert_eq!(zero.unwrap(), 7);
        assert_eq!(count(&db, "SELECT count(*) FROM refresh_tokens").await, 2);
        assert!(
            store.get_token(revoked_live.id).await.unwrap().is_some(),
            "replay detection needs it"
        );
        assert!(store.get_token(live.id).await.unwrap().is_some());
        assert_eq!(store.cleanup_expired(now, 3).await.unwrap(), 0);
    }
);

fn rotation<'a>(
    presented: &'a str,
    successor: &'a str,
    now: chrono::DateTime<Utc>,
) -> Rotation<'a> {
    Rotation {
        presented_hash: presented,
        successor_id: Uuid::now_v7(),
        successor_hash: successor,
        expires_at: now + week(),
        ip_address: Some("192.0.2.1"),
        user_agent: Some("storage-test"),
        event_id: Uuid::now_v7(),
        now,
    }
}

both!(rotation_consumes_a_live_token_once, |b| async move {
    let (_db, store) = setup(b).await;
    let user = UserFactory::create(store.as_ref()).await.unwrap();
    let now = truncate(Utc::now());
    let (parent, raw) = RefreshTokenFactory::create_at(store.as_ref(), &user, false, week(), now)
        .await
        .unwrap();
    let succ = hash_token(RawToken::generate().as_str());
    let later = now + Duration::seconds(5);

    let rotated = store
        .rotate(&rotation(&hash_token(&raw), &succ, later))
        .await
        .unwrap()
        .expect("first wins");
    assert_eq!(rotated.token.family_id, parent.family_id);
    assert_eq!(rotated.token.user_id, user.id);
    assert_eq!(rotated.token.token_hash, succ);
    assert_eq!(rotated.token.expires_at, later + week());
    assert_eq!(rotated.token.ip_address.as_deref(), Some("192.0.2.1"));
    assert_eq!(rotated.token_version, user.token_version);
    let parent_now = store.get_token(parent.id).await.unwrap().unwrap();
    assert!(parent_now.is_revoked);
    assert_eq!(parent_now.revoked_at, Some(later));

    let events = store
        .list_events(
            &EventFilter {
                user_id: Some(user.id),
                kind: Some("refresh".into()),
            },
            0,
            10,
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "the rotation appended its audit event");
    assert_eq!(events[0].session_id, Some(parent.family_id));
    assert_eq!(events[0].user_agent.as_deref(), Some("storage-test"));

    let again = hash_token(RawToken::generate().as_str());
    assert!(store
        .rotate(&rotation(&hash_token(&raw), &again, later))
        .await
        .unwrap()
        .is_none());
    assert!(
        store.get_by_hash(&again).await.unwrap().is_none(),
        "a loser inserts nothing"
    );
});

both!(
    rotation_refuses_expired_inactive_and_ended_sessions,
    |b| async move {
        let (_db, store) = setup(b).await;
        let now = truncate(Utc::now());
        let user = UserFactory::create(store.as_ref()).await.unwrap();
        let (_, expired) = RefreshTokenFactory::create_at(
            store.as_ref(),
            &user,
            false,
            Duration::seconds(-1),
            now,
        )
        .await
        .unwrap();
        let s1 = hash_token("s1");
        assert!(store
            .rotate(&rotation(&hash_token(&expired), &s1, now))
            .await
            .unwrap()
            .is_none());

        let inactive = UserFactory::create_with(
            store.as_ref(),
            &UserFactory::next_email(),
            Role::User,
            false,
        )
        .await
        .unwrap();
        let (_, raw) =
            RefreshTokenFactory::create_at(store.as_ref(), &inactive, false, week(), now)
                .await
                .unwrap();
        assert!(store
            .rotate(&rotation(&hash_token(&raw), &s1, now))
            .await
            .unwrap()
            .is_none());

        // A token whose session was ended cannot rotate even if the token row is live.
        let session = Uuid::now_v7();
        let raw = RawToken::generate();
        store
            .create_session(
                &new_session(session, user.id, now + Duration::days(30)),
                &first_token(session, user.id, &raw, now + week()),
                now,
            )
            .await
            .unwrap();
        store.revoke_family(session, now).await.unwrap();
        assert!(store
            .rotate(&rotation(&raw.hash(), &s1, now))
            .await
            .unwrap()
            .is_none());
        assert!(store.get_by_hash(&s1).await.unwrap().is_none());
    }
);

fn new_session(id: Uuid, user_id: Uuid, ends: chrono::DateTime<Utc>) -> NewSession {
    NewSession {
        id,
        user_id,
        device_id: Some("dev".into()),
        device_name: Some("Laptop".into()),
        user_agent: Some("test-agent".into()),
        ip_address: Some("192.0.2.9".into()),
        client_id: None,
        absolute_expires_at: ends,
    }
}

fn first_token(
    family: Uuid,
    user_id: Uuid,
    raw: &RawToken,
    expires_at: chrono::DateTime<Utc>,
) -> NewRefreshToken {
    NewRefreshToken {
        id: Uuid::now_v7(),
        user_id,
        token_hash: raw.hash(),
        family_id: family,
        expires_at,
        device_id: Some("dev".into()),
        device_name: Some("Laptop".into()),
        ip_address: Some("192.0.2.9".into()),
        is_revoked: false,
    }
}

both!(
    rotation_never_extends_past_the_session_end,
    |b| async move {
        let (_db, store) = setup(b).await;
        let user = UserFactory::create(store.as_ref()).await.unwrap();
        let now = truncate(Utc::now());
        let session = Uuid::now_v7();
        let ends = now + Duration::days(2);
        let raw = RawToken::generate();
        store
            .create_session(
                &new_session(session, user.id, ends),
                &first_token(session, user.id, &raw, ends),
                now,
            )
            .await
            .unwrap();
        let succ = hash_token("successor");
        let later = now + Duration::hours(1);
        let rotated = store
            .rotate(&rotation(&raw.hash(), &succ, later))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rotated.token.expires_at, ends, "capped at the absolute end");
        assert_eq!(
            rotated.token.device_name.as_deref(),
            Some("Laptop"),
            "device carried over"
        );
        let s = store.get_session(session).await.unwrap().unwrap();
        assert_eq!(s.last_used_at, later);
        assert_eq!(s.ip_address.as_deref(), Some("192.0.2.1"));
    }
);

both!(
    rotation_has_exactly_one_winner_among_32_concurrent_callers,
    |b| async move {
        let (db, store) = setup(b).await;
        let user = UserFactory::create(store.as_ref()).await.unwrap();
        let now = truncate(Utc::now());
        let (parent, raw) =
            RefreshTokenFactory::create_at(store.as_ref(), &user, false, week(), now)
                .await
                .unwrap();
        let presented = hash_token(&raw);
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let store = store.clone();
                let presented = presented.clone();
                tokio::spawn(async move {
                    let succ = hash_token(&format!("successor-{i}"));
                    store
                        .rotate(&rotation(&presented, &succ, now + Duration::seconds(1)))
                        .await
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            if t.await.unwrap().unwrap().is_some() {
                winners += 1;
            }
        }
        assert_eq!(winners, 1);
        let refresh_events = store
            .count_events(&EventFilter {
                user_id: Some(user.id),
                kind: Some("refresh".into()),
            })
            .await
            .unwrap();
        assert_eq!(refresh_events, 1, "only the winner records a refresh");
        let fam = parent.family_id;
        let (live_sql, all_sql) = match b {
        Backend::Sqlite => (
            format!("SELECT count(*) FROM refresh_tokens WHERE family_id = '{fam}' AND is_revoked = 0"),
            format!("SELECT count(*) FROM refresh_tokens WHERE family_id = '{fam}'"),
        ),
        Backend::Postgres => (
            format!("SELECT count(*) FROM refresh_tokens WHERE family_id = '{fam}' AND NOT is_revoked"),
            format!("SELECT count(*) FROM refresh_tokens WHERE family_id = '{fam}'"),
        ),
    };
        assert_eq!(count(&db, &live_sql).await, 1, "exactly one live successor");
        assert_eq!(
            count(&db, &all_sql).await,
            2,
            "the parent and one successor, nothing else"
        );
    }
);

both!(
    concurrent_rotations_of_different_tokens_each_get_their_own_successor,
    |b| async move {
        // Enough concurrent callers that the backends batch them (SQLite's group
        // commit, PostgreSQL's batched statement): every caller must get the result
        // of its own token, whatever else shared its batch.
        let (db, store) = setup(b).await;
        let now = truncate(Utc::now());
        let mut cases = Vec::new(); // (parent, presented hash, should rotate)
        for u in 0..3 {
            let user = UserFactory::create(store.as_ref()).await.unwrap();
            for i in 0..12 {
                let (revoked, lifetime) = match (u + i) % 6 {
                    0 => (true, week()),
                    1 => (false, Duration::seconds(-1)),
                    _ => (false, week()),
                };
                let (parent, raw) =
                    RefreshTokenFactory::create_at(store.as_ref(), &user, revoked, lifetime, now)
                        .await
                        .unwrap();
                let live = !revoked && lifetime > Duration::zero();
                cases.push((parent, hash_token(&raw), live));
            }
        }
        // Every token is presented twice, concurrently, with different successors.
        let tasks: Vec<_> = cases
            .iter()
            .enumerate()
            .flat_map(|(i, (_, presented, _))| [(i, 0), (i, 1)].map(|k| (k, presented.clone())))
            .map(|((i, copy), presented)| {
                let store = store.clone();
                tokio::spawn(async move {
                    let successor = hash_token(&format!("successor-{i}-{copy}"));
                    let result = store
                        .rotate(&rotation(
                            &presented,
                            &successor,
                            now + Duration::seconds(1),
                        ))
                        .await
                        .unwrap();
                    (i, successor, result)
                })
            })
            .collect();
        let mut wins = vec![0; cases.len()];
        for t in tasks {
            let (i, successor, result) = t.await.unwrap();
            let (parent, _, live) = &cases[i];
            if let Some(rotated) = result {
                assert!(live, "case {i}: a dead token was rotated");
                wins[i] += 1;
                assert_eq!(
                    rotated.token.token_hash, successor,
                    "case {i}: someone else's successor"
                );
                assert_eq!(rotated.token.family_id, parent.family_id);
                assert_eq!(rotated.token.user_id, parent.user_id);
                assert!(!rotated.token.is_revoked);
            }
        }
        for (i, (_, _, live)) in cases.iter().enumerate() {
            assert_eq!(wins[i], usize::from(*live), "case {i}: winners");
        }
        let live_cases = cases.iter().filter(|c| c.2).count() as i64;
        let not_revoked = match b {
            Backend::Sqlite => "is_revoked = 0",
            Backend::Postgres => "NOT is_revoked",
        };
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM audit_events WHERE kind = 'refresh'"
            )
            .await,
            live_cases
        );
        assert_eq!(
            count(
                &db,
                &format!("SELECT count(*) FROM refresh_tokens WHERE {not_revoked}")
            )
            .await,
            // successors of the live cases, plus the expired parents (never revoked)
            live_cases + cases.iter().filter(|c| !c.2 && !c.0.is_revoked).count() as i64
        );
        assert_eq!(
            count(&db, "SELECT count(*) FROM refresh_tokens").await,
            cases.len() as i64 + live_cases,
            "one successor per live token, nothing else"
        );
    }
);

both!(
    deleting_a_user_cascades_to_tokens_and_sessions,
    |b| async move {
        let (db, store) = setup(b).await;
        let user = UserFactory::create(store.as_ref()).await.unwrap();
        let now = truncate(Utc::now());
        RefreshTokenFactory::create(store.as_ref(), &user, false, week())
            .await
            .unwrap();
        let session = Uuid::now_v7();
        let raw = RawToken::generate();
        store
            .create_session(
                &new_session(session, user.id, now + week()),
                &first_token(session, user.id, &raw, now + week()),
                now,
            )
            .await
            .unwrap();
        assert!(store.delete_user(user.id).await.unwrap());
        assert_eq!(count(&db, "SELECT count(*) FROM refresh_tokens").await, 0);
        assert_eq!(count(&db, "SELECT count(*) FROM sessions").await, 0);
        assert!(!store.delete_user(user.id).await.unwrap());
    }
);

both!(
    emails_are_unique_and_found_regardless_of_case,
    |b| async move {
        let (_db, store) = setup(b).await;
        let user =
            UserFactory::create_with(store.as_ref(), "Mixed.Case@Test.com", Role::User, true)
                .await
                .unwrap();
        assert_eq!(user.email, "Mixed.Case@Test.com", "stored as given");
        assert_eq!(
            store
                .get_user_by_email(&EmailKey::of("mixed.case@test.COM"))
                .await
                .unwrap()
                .map(|u| u.id),
            Some(user.id)
        );
        assert!(store
            .email_exists(&EmailKey::of("MIXED.CASE@TEST.COM"))
            .await
            .unwrap());
        let dup =
            UserFactory::create_with(store.as_ref(), "mixed.case@test.com", Role::User, true).await;
        assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    }
);

both!(
    a_failed_write_does_not_undo_the_writes_committed_beside_it,
    |b| async move {
        // 40 concurrent sign-ups, every email twice (in another case): SQLite's writer
        // commits them in shared transactions, so each failure must be rolled back
        // alone, and a caller must hear "conflict" only for its own write.
        let (db, store) = setup(b).await;
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let store = store.clone();
                let email = if i % 2 == 0 {
                    format!("twin{}@example.com", i / 2)
                } else {
                    format!("TWIN{}@example.com", i / 2)
                };
                tokio::spawn(async move {
                    UserFactory::create_with(store.as_ref(), &email, Role::User, true).await
                })
            })
            .collect();
        let (mut created, mut conflicts) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => created += 1,
                Err(StoreError::Conflict(_)) => conflicts += 1,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!((created, conflicts), (20, 20));
        assert_eq!(count(&db, "SELECT count(*) FROM users").await, 20);
        for i in 0..20 {
            assert!(store
                .email_exists(&EmailKey::of(&format!("twin{i}@example.com")))
                .await
                .unwrap());
        }
    }
);

both!(user_repository_operations, |b| async move {
    let (_db, store) = setup(b).await;
    let now = truncate(Utc::now());
    let a = UserFactory::create(store.as_ref()).await.unwrap();
    let bb = UserFactory::create(store.as_ref()).await.unwrap();
    assert_eq!(store.count_users().await.unwrap(), 2);
    assert_eq!(
        store
            .list_users(0, 10)
            .await
            .unwrap()
            .iter()
            .map(|u| u.id)
            .collect::<Vec<_>>(),
        vec![a.id, bb.id]
    );
    assert_eq!(store.list_users(1, 10).await.unwrap().len(), 1);
    assert_eq!(store.get_user(a.id).await.unwrap().unwrap().email, a.email);
    assert!(store.get_user(Uuid::now_v7()).await.unwrap().is_none());
    assert!(a.updated_at.is_none());

    // update_password bumps token_version; a rehash does not.
    assert!(store
        .update_password(a.id, "$argon2id$new", now)
        .await
        .unwrap());
    let after = store.get_user(a.id).await.unwrap().unwrap();
    assert_eq!(after.token_version, a.token_version + 1);
    assert_eq!(after.hashed_password, "$argon2id$new");
    assert_eq!(after.updated_at, Some(now));
    assert!(store
        .rehash_password(a.id, "$argon2id$rehashed", now)
        .await
        .unwrap());
    assert_eq!(
        store.get_user(a.id).await.unwrap().unwrap().token_version,
        after.token_version
    );
    assert_eq!(
        store.increment_token_version(a.id, now).await.unwrap(),
        Some(after.token_version + 1)
    );

    let patch = UserPatch {
        full_name: Some(None),
        role: Some(Role::Admin),
        is_active: Some(false),
        ..UserPatch::default()
    };
    let patched = store.update_user(a.id, &patch, now).await.unwrap().unwrap();
    assert_eq!(patched.full_name, None);
    assert_eq!(patched.role, Role::Admin);
    assert!(!patched.is_active);
    assert_eq!(patched.email, a.email, "unset fields unchanged");
    let taken = UserPatch {
        email: Some(bb.email.to_uppercase()),
        ..UserPatch::default()
    };
    assert!(matches!(
        store.update_user(a.id, &taken, now).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store
        .update_user(Uuid::now_v7(), &patch, now)
        .await
        .unwrap()
        .is_none());
});

both!(token_base_operations, |b| async move {
    let (_db, store) = setup(b).await;
    let user = UserFactory::create(store.as_ref()).await.unwrap();
    let (t1, _) = RefreshTokenFactory::create(store.as_ref(), &user, false, week())
        .await
        .unwrap();
    let (t2, _) = RefreshTokenFactory::create(store.as_ref(), &user, false, week())
        .await
        .unwrap();
    assert_eq!(store.count_tokens().await.unwrap(), 2);
    assert_eq!(
        store
            .list_tokens(0, 1)
            .await
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect::<Vec<_>>(),
        vec![t1.id]
    );
    assert!(store.delete_token(t1.id).await.unwrap());
    assert!(!store.delete_token(t1.id).await.unwrap());
    assert_eq!(
        store
            .list_tokens(0, 10)
            .await
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect::<Vec<_>>(),
        vec![t2.id]
    );
});

both!(
    sessions_list_live_families_and_spare_the_kept_one,
    |b| async move {
        let (_db, store) = setup(b).await;
        let user = UserFactory::create(store.as_ref()).await.unwrap();
        let now = truncate(Utc::now());
        let mut ids = Vec::new();
        for i in 0..3 {
            let id = Uuid::now_v7();
            let raw = RawToken::generate();
            let t = now + Duration::seconds(i);
            store
                .create_session(
                    &new_session(id, user.id, t + Duration::days(30)),
                    &first_token(id, user.id, &raw, t + week()),
                    t,
                )
                .await
                .unwrap();
            ids.push(id);
        }
        // A seed-API family without a session row is listed too.
        let (legacy, _) = RefreshTokenFactory::create_at(store.as_ref(), &user, false, week(), now)
            .await
            .unwrap();
        store
            .touch_session(ids[0], Some("198.51.100.1"), now + Duration::minutes(5))
            .await
            .unwrap();

        let listed = store
            .list_user_sessions(user.id, now + Duration::minutes(6))
            .await
            .unwrap();
        assert_eq!(listed.len(), 4);
        assert_eq!(listed[0].id, ids[0], "most recently used first");
        assert_eq!(listed[0].ip_address.as_deref(), Some("198.51.100.1"));
        assert_eq!(listed[0].user_agent.as_deref(), Some("test-agent"));
        assert!(listed.iter().any(|s| s.id == legacy.family_id));
        assert!(
            !store.session_revoked(legacy.family_id).await.unwrap(),
            "a family without a session row but with a live token is not ended"
        );

        let ended = store
            .revoke_user_families_except(user.id, Some(ids[1]), now)
            .await
            .unwrap();
        assert_eq!(ended, 3);
        let listed = store.list_user_sessions(user.id, now).await.unwrap();
        assert_eq!(
            listed.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![ids[1]]
        );
        assert!(store.session_revoked(ids[0]).await.unwrap());
        assert!(!store.session_revoked(ids[1]).await.unwrap());
        assert!(store.session_revoked(legacy.family_id).await.unwrap());
        assert!(
            store.session_revoked(Uuid::now_v7()).await.unwrap(),
            "a family that never existed cannot authenticate"
        );

        // Sessions past their absolute end are deleted in batches.
        let later = now + Duration::days(31);
        assert_eq!(store.count_expired_sessions(later).await.unwrap(), 3);
        assert_eq!(
            store.delete_expired_sessions_batch(later, 2).await.unwrap(),
            2
        );
        assert_eq!(
            store.delete_expired_sessions_batch(later, 2).await.unwrap(),
            1
        );
    }
);

both!(audit_events_filter_page_and_expire, |b| async move {
    let (_db, store) = setup(b).await;
    let now = truncate(Utc::now());
    let alice = Uuid::now_v7();
    for (i, kind) in ["login_succeeded", "refresh", "refresh", "logout"]
        .iter()
        .enumerate()
    {
        let e = NewAuditEvent {
            kind,
            user_id: Some(alice),
            ip_address: Some("192.0.2.1".into()),
            ..Default::default()
        };
        store
            .record_event(&e, now + Duration::seconds(i as i64))
            .await
            .unwrap();
    }
    store
        .record_event(
            &NewAuditEvent {
                kind: "login_failed",
                ..Default::default()
            },
            now - Duration::days(100),
        )
        .await
        .unwrap();

    let mine = EventFilter {
        user_id: Some(alice),
        kind: None,
    };
    let page = store.list_events(&mine, 0, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        vec!["logout", "refresh"],
        "newest first"
    );
    assert_eq!(store.count_events(&mine).await.unwrap(), 4);
    let refreshes = EventFilter {
        user_id: Some(alice),
        kind: Some("refresh".into()),
    };
    assert_eq!(store.count_events(&refreshes).await.unwrap(), 2);
    assert_eq!(
        store.count_events(&EventFilter::default()).await.unwrap(),
        5
    );

    let cutoff = now - Duration::days(90);
    assert_eq!(store.count_events_before(cutoff).await.unwrap(), 1);
    assert_eq!(
        store.delete_events_before_batch(cutoff, 100).await.unwrap(),
        1
    );
    assert_eq!(
        store.count_events(&EventFilter::default()).await.unwrap(),
        4
    );
});

both!(cleanup_lock_is_exclusive, |b| async move {
    let (db, store) = setup(b).await;
    let first = store
        .try_cleanup_lock()
        .await
        .unwrap()
        .expect("free at first");
    assert!(store.try_cleanup_lock().await.unwrap().is_none(), "held");
    if b == Backend::Postgres {
        // Another process (another pool) sees the advisory lock too.
        let other = db.store().await;
        assert!(
            other.try_cleanup_lock().await.unwrap().is_none(),
            "held across pools"
        );
    }
    first.release().await;
    let again = store
        .try_cleanup_lock()
        .await
        .unwrap()
        .expect("free after release");
    again.release().await;
});

both!(signing_keys_are_stored_retired_and_pruned, |b| async move {
    let (_db, store) = setup(b).await;
    let now = truncate(Utc::now());
    let key = |kid: &str, at| StoredKey {
        kid: kid.into(),
        algorithm: "EdDSA".into(),
        public_key: vec![1; 32],
        private_key_sealed: vec![2; 64],
        created_at: at,
        retired_at: None,
    };
    store
        .insert_key(&key("old", now - Duration::hours(2)))
        .await
        .unwrap();
    store.insert_key(&key("new", now)).await.unwrap();
    assert_eq!(
        store
            .list_keys()
            .await
            .unwrap()
            .iter()
            .map(|k| k.kid.as_str())
            .collect::<Vec<_>>(),
        vec!["new", "old"]
    );
    assert!(store
        .retire_key("old", now - Duration::hours(1))
        .await
        .unwrap());
    assert!(
        !store.retire_key("old", now).await.unwrap(),
        "already retired"
    );
    assert_eq!(
        store
            .delete_keys_retired_before(now - Duration::minutes(90))
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store.delete_keys_retired_before(now).await.unwrap(),
        vec!["old".to_owned()]
    );
    assert_eq!(store.list_keys().await.unwrap().len(), 1);
});

both!(migrations_are_idempotent, |b| async move {
    let (_db, store) = setup(b).await;
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
});
