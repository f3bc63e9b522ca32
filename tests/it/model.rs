//! Property test: random interleavings of login, refresh (of the live token or of an
//! older one), replay, logout, session revocation, logout-all and clock jumps, run
//! against the real service on SQLite and checked step by step against a small model.
//! After every step: a family never has two live tokens (invariant 1), and a family
//! the model says was revoked holds no live token (invariant 2).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use rotor::{
    clock::{Clock, ManualClock},
    service::ClientContext,
    storage::User,
    testing::UserFactory,
    Error, Rotor,
};
use uuid::Uuid;

use crate::support::{live_tokens_in_family, max_live_per_family, Backend, TestDb};

const GRACE: i64 = 10;
const REFRESH_DAYS: i64 = 7;
const MAX_DAYS: i64 = 30;

#[derive(Debug, Clone)]
enum Op {
    Login {
        user: usize,
    },
    /// Present the token `back` steps behind the newest of a family (0 = newest).
    Refresh {
        family: usize,
        back: usize,
    },
    Logout {
        family: usize,
        back: usize,
    },
    RevokeSession {
        family: usize,
    },
    LogoutAll {
        user: usize,
    },
    Advance {
        seconds: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..2usize).prop_map(|user| Op::Login { user }),
        6 => (0..4usize, prop_oneof![4 => Just(0usize), 2 => Just(1usize), 1 => Just(2usize)])
            .prop_map(|(family, back)| Op::Refresh { family, back }),
        1 => (0..4usize, 0..2usize).prop_map(|(family, back)| Op::Logout { family, back }),
        1 => (0..4usize).prop_map(|family| Op::RevokeSession { family }),
        1 => (0..2usize).prop_map(|user| Op::LogoutAll { user }),
        3 => prop_oneof![
            (1..=GRACE).prop_map(|s| s),
            (GRACE + 1..=60i64).prop_map(|s| s),
            Just(3 * 86_400i64),
            Just(8 * 86_400i64),
        ]
        .prop_map(|seconds| Op::Advance { seconds }),
    ]
}

/// A token as the model sees it.
#[derive(Debug, Clone)]
struct ModelToken {
    raw: String,
    expires_at: DateTime<Utc>,
    /// When it stopped being live (rotated or revoked).
    revoked_at: Option<DateTime<Utc>>,
    /// Revoked because it was rotated (its successor is the next token).
    rotated: bool,
}

#[derive(Debug)]
struct ModelFamily {
    id: Uuid,
    user: usize,
    created: DateTime<Utc>,
    tokens: Vec<ModelToken>,
}

impl ModelFamily {
    fn revoke_all(&mut self, now: DateTime<Utc>) {
        for t in &mut self.tokens {
            if t.revoked_at.is_none() {
                t.revoked_at = Some(now);
            }
        }
    }
    fn live_count(&self) -> usize {
        self.tokens
            .iter()
            .filter(|t| t.revoked_at.is_none())
            .count()
    }
}

/// What the model predicts for a refresh.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Rotated,
    /// The same successor, `index` in the family.
    Reused(usize),
    Replay,
    Invalid,
}

fn predict(fam: &ModelFamily, idx: usize, now: DateTime<Utc>) -> Expect {
    let t = &fam.tokens[idx];
    match t.revoked_at {
        None if t.expires_at > now => Expect::Rotated,
        None => Expect::Invalid,
        Some(at) => {
            let next = fam.tokens.get(idx + 1);
            let within = now - at <= Duration::seconds(GRACE);
            match next {
                Some(n) if t.rotated && within && n.revoked_at.is_none() && n.expires_at > now => {
                    Expect::Reused(idx + 1)
                }
                _ => Expect::Replay,
            }
        }
    }
}

struct Harness {
    rotor: Arc<Rotor>,
    clock: Arc<ManualClock>,
    db: TestDb,
    users: Vec<User>,
    families: Vec<ModelFamily>,
}

impl Harness {
    async fn new() -> Self {
        let db = TestDb::new(Backend::Sqlite).await;
        let settings = db.settings(&[("REFRESH_REUSE_GRACE_SECONDS", "10")]);
        let store = rotor::storage::connect(&settings).await.unwrap();
        let clock = Arc::new(ManualClock::starting_now());
        let rotor = Arc::new(
            Rotor::new(settings, store, clock.clone() as Arc<dyn Clock>)
                .await
                .unwrap(),
        );
        let mut users = Vec::new();
        for _ in 0..2 {
            users.push(UserFactory::create(rotor.store().as_ref()).await.unwrap());
        }
        Self {
            rotor,
            clock,
            db,
            users,
            families: Vec::new(),
        }
    }

    fn ctx() -> ClientContext {
        ClientContext {
            ip: Some("192.0.2.1".into()),
            ..Default::default()
        }
    }

    async fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.clock.now();
        match *op {
            Op::Login { user } => {
                let out = self
                    .rotor
                    .open_session(&self.users[user], &Self::ctx())
                    .await
                    .unwrap();
                let expires = out.refresh.expires_at;
                prop_assert_eq!(expires, now + Duration::days(REFRESH_DAYS));
                self.families.push(ModelFamily {
                    id: out.session_id,
                    user,
                    created: now,
                    tokens: vec![ModelToken {
                        raw: out.refresh.raw.into_string(),
                        expires_at: expires,
                        revoked_at: None,
                        rotated: false,
                    }],
                });
            }
            Op::Refresh { family, back } => {
                let Some(fam) = self.families.get_mut(family) else {
                    return Ok(());
                };
                let Some(idx) = fam.tokens.len().checked_sub(1 + back) else {
                    return Ok(());
                };
                let expect = predict(fam, idx, now);
                let got = self
                    .rotor
                    .refresh(&fam.tokens[idx].raw.clone(), &Self::ctx())
                    .await;
                match (&expect, got) {
                    (Expect::Rotated, Ok(out)) => {
                        prop_assert!(!out.reused);
                        let cap = fam.created + Duration::days(MAX_DAYS);
                        let idle = now + Duration::days(REFRESH_DAYS);
                        prop_assert_eq!(out.refresh.expires_at, idle.min(cap));
                        fam.tokens[idx].revoked_at = Some(now);
                        fam.tokens[idx].rotated = true;
                        fam.tokens.push(ModelToken {
                            raw: out.refresh.raw.into_string(),
                            expires_at: idle.min(cap),
                            revoked_at: None,
                            rotated: false,
                        });
                    }
                    (Expect::Reused(next), Ok(out)) => {
                        prop_assert!(out.reused);
                        prop_assert_eq!(
                            out.refresh.raw.as_str(),
                            fam.tokens[*next].raw.as_str(),
                            "same successor"
                        );
                    }
                    (Expect::Replay, Err(Error::TokenRevoked)) => fam.revoke_all(now),
                    (Expect::Invalid, Err(Error::Token(_))) => {}
                    (e, g) => prop_assert!(
                        false,
                        "op {:?}: expected {:?}, got {:?}",
                        op,
                        e,
                        g.map(|o| o.reused)
                    ),
                }
            }
            Op::Logout { family, back } => {
                let Some(fam) = self.families.get_mut(family) else {
                    return Ok(());
                };
                let Some(idx) = fam.tokens.len().checked_sub(1 + back) else {
                    return Ok(());
                };
                self.rotor
                    .logout(&fam.tokens[idx].raw.clone(), &Self::ctx())
                    .await
                    .unwrap();
                fam.revoke_all(now);
            }
            Op::RevokeSession { family } => {
                let Some(fam) = self.families.get_mut(family) else {
                    return Ok(());
                };
                let principal = rotor::service::Principal {
                    user: self.users[fam.user].clone(),
                    session_id: None,
                };
                let r = self
                    .rotor
                    .revoke_session(&principal, fam.id, &Self::ctx())
                    .await;
                let listed = fam
                    .tokens
                    .iter()
                    .any(|t| t.revoked_at.is_none() && t.expires_at > now);
                match r {
                    Ok(()) => {
                        prop_assert!(listed, "revoked a session the model thinks is gone");
                        fam.revoke_all(now);
                    }
                    // An expired or ended session is not listed, so not found; nothing changes.
                    Err(Error::SessionNotFound) => {
                        prop_assert!(!listed, "a live session was not found")
                    }
                    Err(e) => prop_assert!(false, "revoke_session: {}", e),
                }
            }
            Op::LogoutAll { user } => {
                let principal = rotor::service::Principal {
                    user: self.users[user].clone(),
                    session_id: None,
                };
                let n = self
                    .rotor
                    .logout_all(&principal, &Self::ctx())
                    .await
                    .unwrap();
                let expected = self
                    .families
                    .iter()
                    .filter(|f| {
                        f.user == user
                            && f.tokens
                                .iter()
                                .any(|t| t.revoked_at.is_none() && t.expires_at > now)
                    })
                    .count() as u64;
                prop_assert_eq!(n, expected);
                for f in self.families.iter_mut().filter(|f| f.user == user) {
                    f.revoke_all(now);
                }
                // token_version moved; keep the model's users current.
                self.users[user] = self
                    .rotor
                    .store()
                    .get_user(self.users[user].id)
                    .await
                    .unwrap()
                    .unwrap();
            }
            Op::Advance { seconds } => self.clock.advance(Duration::seconds(seconds)),
        }
        self.check_invariants().await
    }

    async fn check_invariants(&self) -> Result<(), TestCaseError> {
        let max_live = max_live_per_family(&self.db).await;
        prop_assert!(max_live <= 1, "a family holds {} live tokens", max_live);
        for f in &self.families {
            let live = live_tokens_in_family(&self.db, f.id).await;
            prop_assert_eq!(
                live as usize,
                f.live_count(),
                "family {} live tokens: db vs model",
                f.id
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_keep_the_rotation_invariants(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let mut h = Harness::new().await;
            h.step(&Op::Login { user: 0 }).await?;
            for op in &ops {
                h.step(op).await?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
