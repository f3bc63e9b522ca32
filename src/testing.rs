//! Test factories, equal in spirit to the original's: `UserFactory` (password
//! `TestPass123`, emails `user{n}@test.com`, active, verified) and
//! `RefreshTokenFactory::create(store, &user, is_revoked, expires_in)` returning the
//! stored row and the raw token (only its hash is stored).
//!
//! Compiled only with the `testing` feature. Besides the factories it exposes, for
//! tests and the fuzz targets, pieces that are not part of the embedding API: the
//! route table ([`routes`]), the decoders of untrusted input ([`parsers`]) and
//! `Rotor::set_change_hook` for fault injection.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    OnceLock,
};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::{
    clock::{Clock, SystemClock},
    domain::token::RawToken,
    storage::{
        NewRefreshToken, NewUser, RefreshToken, Role, SeedRepository, Store, StoreResult, User,
    },
};

pub use crate::http::routes::{list as routes, Scope as RouteScope};

/// The decoders of untrusted request input, for the fuzz targets.
pub mod parsers {
    pub use crate::http::{
        cookies::read as refresh_cookie,
        extract::{bearer, client_ip},
        oauth::basic_credentials,
        validate::{path_uuid, Input},
    };
}

/// Password checks and hashes waiting for an Argon2 worker.
pub fn argon2_pending(rotor: &crate::Rotor) -> usize {
    rotor.hasher().pending()
}

/// Webhook deliveries this process completed (answered 2xx).
pub fn webhooks_delivered(rotor: &crate::Rotor) -> u64 {
    rotor
        .counters()
        .webhooks
        .attempts_ok
        .load(std::sync::atomic::Ordering::Relaxed)
}

static NEXT_USER: AtomicU64 = AtomicU64::new(1);

/// Creates users.
pub struct UserFactory;

impl UserFactory {
    /// Every factory user's password.
    pub const PASSWORD: &'static str = "TestPass123";

    /// The Argon2id hash of [`Self::PASSWORD`], computed once per process.
    pub fn password_hash() -> &'static str {
        static HASH: OnceLock<String> = OnceLock::new();
        HASH.get_or_init(|| {
            use argon2::{password_hash::SaltString, PasswordHasher as _};
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            let params = argon2::Params::new(
                crate::password::MEMORY_KIB,
                crate::password::ITERATIONS,
                crate::password::PARALLELISM,
                None,
            )
            .expect("BUG: constant parameters");
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password(Self::PASSWORD.as_bytes(), &salt)
                .expect("BUG: hashing a constant password")
                .to_string()
        })
    }

    /// The next `user{n}@test.com`.
    pub fn next_email() -> String {
        format!("user{}@test.com", NEXT_USER.fetch_add(1, Ordering::Relaxed))
    }

    /// An active, verified `user` with the next email.
    pub async fn create(store: &dyn Store) -> StoreResult<User> {
        Self::create_with(store, &Self::next_email(), Role::User, true).await
    }

    /// An active, verified admin with the next email.
    pub async fn create_admin(store: &dyn Store) -> StoreResult<User> {
        Self::create_with(store, &Self::next_email(), Role::Admin, true).await
    }

    /// A user with `email`, `role` and [`Self::PASSWORD`].
    pub async fn create_with(
        store: &dyn Store,
        email: &str,
        role: Role,
        is_active: bool,
    ) -> StoreResult<User> {
        let new = NewUser {
            email: email.to_owned(),
            hashed_password: Self::password_hash().to_owned(),
            full_name: Some("Test User".to_owned()),
            role,
            is_active,
            is_verified: true,
        };
        store.create_user(&new, SystemClock.now()).await
    }
}

/// Creates refresh tokens, each in a family of its own.
pub struct RefreshTokenFactory;

impl RefreshTokenFactory {
    /// As the original: a fresh family, `expires_in` from now (7 days by default in
    /// the original; pass it explicitly here).
    pub async fn create(
        store: &dyn Store,
        user: &User,
        is_revoked: bool,
        expires_in: Duration,
    ) -> StoreResult<(RefreshToken, String)> {
        Self::create_at(store, user, is_revoked, expires_in, SystemClock.now()).await
    }

    /// As [`Self::create`] with an explicit "now".
    pub async fn create_at(
        store: &dyn Store,
        user: &User,
        is_revoked: bool,
        expires_in: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<(RefreshToken, String)> {
        Self::create_in_family(store, user, Uuid::new_v4(), is_revoked, expires_in, now).await
    }

    /// A token in a given family (e.g. to build a family's history).
    pub async fn create_in_family(
        store: &dyn Store,
        user: &User,
        family_id: Uuid,
        is_revoked: bool,
        expires_in: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<(RefreshToken, String)> {
        let raw = RawToken::generate();
        let new = NewRefreshToken {
            id: Uuid::now_v7(),
            user_id: user.id,
            token_hash: raw.hash(),
            family_id,
            expires_at: now + expires_in,
            device_id: None,
            device_name: None,
            ip_address: None,
            is_revoked,
        };
        let token = store.create_token(&new, now).await?;
        Ok((token, raw.into_string()))
    }
}

/// The default `expires_in` of the original factory.
pub fn default_expires_in() -> Duration {
    Duration::days(7)
}
