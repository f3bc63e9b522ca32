//! The seed's repository API: what the original backend's repositories offered (create,
//! revoke one token, a family or all of a user's, list live ones, the generic
//! get/list/count/create/update/delete, clean up), kept as rotor's documented storage
//! API on both backends and exercised by the conformance suite (`tests/it/storage.rs`)
//! and the factories in [`crate::testing`].
//!
//! The service does not call these: its use cases write through [`Store::apply`]
//! (one transaction per use case) and read through the production traits
//! ([`UserStore`], [`RefreshTokenStore`], [`SessionStore`], [`AuditStore`],
//! [`KeyStore`]). The part of the seed API the service does use (`get_by_hash`,
//! `get_valid_by_hash`, `get_user`, `update_user`, `list_users`, `count_users`, …)
//! stays on those traits.
//!
//! Every backend implements [`SeedRepository`] (`sqlite/repository.rs`,
//! `postgres/repository.rs`), and so does `dyn Store` (through
//! [`Store::repository`]): bring the trait into scope and call the methods on any store.
//!
//! [`Store::apply`]: super::Store::apply

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

#[cfg(doc)]
use super::{AuditStore, KeyStore, SessionStore, UserStore};
use super::{
    NewRefreshToken, NewSession, NewUser, RefreshToken, RefreshTokenStore, Store, StoreResult, User,
};

/// The seed's repository operations the service does not use (see the module docs).
#[async_trait]
pub trait SeedRepository: RefreshTokenStore {
    /// Stores the email with its identity key ([`EmailKey::of`](crate::domain::email::EmailKey::of)). Fails with
    /// `Conflict` when another account's email has the same key.
    async fn create_user(&self, new: &NewUser, now: DateTime<Utc>) -> StoreResult<User>;
    /// Replaces the password hash and bumps `token_version` (kills every access token).
    async fn update_password(
        &self,
        id: Uuid,
        hashed_password: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Replaces the password hash *without* touching `token_version` (rehash on login).
    async fn rehash_password(
        &self,
        id: Uuid,
        hashed_password: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Returns the new version, or `None` when the user does not exist.
    async fn increment_token_version(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>>;
    /// Deletes the user; their sessions and refresh tokens go with them (cascade).
    async fn delete_user(&self, id: Uuid) -> StoreResult<bool>;
    /// The token `id`, if any.
    async fn get_token(&self, id: Uuid) -> StoreResult<Option<RefreshToken>>;
    /// Stores a token. A family may hold only one live token: creating a second live
    /// token in a family fails with `Conflict`.
    async fn create_token(
        &self,
        new: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> StoreResult<RefreshToken>;
    /// Sets `is_revoked` and `revoked_at = now` (if not already revoked); returns the row.
    async fn revoke_token(&self, id: Uuid, now: DateTime<Utc>)
        -> StoreResult<Option<RefreshToken>>;
    /// Revokes every live token of the family and marks its session ended. Returns the
    /// number of tokens revoked. Committed when this returns.
    async fn revoke_family(&self, family_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64>;
    /// Revokes every live token of the user ("logout everywhere") and ends their
    /// sessions; returns the number of tokens revoked.
    async fn revoke_all_user_tokens(&self, user_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64>;
    /// As `revoke_all_user_tokens`, sparing one family; returns the families ended.
    async fn revoke_user_families_except(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// The user's tokens that are neither revoked nor expired, newest first.
    async fn get_user_active_sessions(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RefreshToken>>;
    /// Deletes tokens with `expires_at <= now`, in batches of `batch` rows (at least
    /// one), each its own transaction. Revoked tokens that have not expired are kept:
    /// replay detection reads them. Returns the number deleted.
    async fn cleanup_expired(&self, now: DateTime<Utc>, batch: u32) -> StoreResult<u64> {
        let batch = batch.max(1);
        let mut total = 0;
        loop {
            let n = self.delete_expired_tokens_batch(now, batch).await?;
            total += n;
            if n < u64::from(batch) {
                return Ok(total);
            }
        }
    }
    /// Deletes the token `id`; false when there was none.
    async fn delete_token(&self, id: Uuid) -> StoreResult<bool>;
    /// A page of tokens, oldest first.
    async fn list_tokens(&self, skip: u64, limit: u64) -> StoreResult<Vec<RefreshToken>>;
    /// How many tokens there are.
    async fn count_tokens(&self) -> StoreResult<u64>;
    /// Creates the session and its first refresh token in one transaction.
    async fn create_session(
        &self,
        session: &NewSession,
        first_token: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> StoreResult<RefreshToken>;
}

/// Any store, behind `dyn Store`, offers the seed API.
#[async_trait]
impl SeedRepository for dyn Store {
    async fn create_user(&self, new: &NewUser, now: DateTime<Utc>) -> StoreResult<User> {
        self.repository().create_user(new, now).await
    }

    async fn update_password(
        &self,
        id: Uuid,
        hashed_password: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.repository()
            .update_password(id, hashed_password, now)
            .await
    }

    async fn rehash_password(
        &self,
        id: Uuid,
        hashed_password: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.repository()
            .rehash_password(id, hashed_password, now)
            .await
    }

    async fn increment_token_version(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>> {
        self.repository().increment_token_version(id, now).await
    }

    async fn delete_user(&self, id: Uuid) -> StoreResult<bool> {
        self.repository().delete_user(id).await
    }

    async fn get_token(&self, id: Uuid) -> StoreResult<Option<RefreshToken>> {
        self.repository().get_token(id).await
    }

    async fn create_token(
        &self,
        new: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> StoreResult<RefreshToken> {
        self.repository().create_token(new, now).await
    }

    async fn revoke_token(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<RefreshToken>> {
        self.repository().revoke_token(id, now).await
    }

    async fn revoke_family(&self, family_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64> {
        self.repository().revoke_family(family_id, now).await
    }

    async fn revoke_all_user_tokens(&self, user_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64> {
        self.repository().revoke_all_user_tokens(user_id, now).await
    }

    async fn revoke_user_families_except(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.repository()
            .revoke_user_families_except(user_id, keep, now)
            .await
    }

    async fn get_user_active_sessions(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RefreshToken>> {
        self.repository()
            .get_user_active_sessions(user_id, now)
            .await
    }

    async fn delete_token(&self, id: Uuid) -> StoreResult<bool> {
        self.repository().delete_token(id).await
    }

    async fn list_tokens(&self, skip: u64, limit: u64) -> StoreResult<Vec<RefreshToken>> {
        self.repository().list_tokens(skip, limit).await
    }

    async fn count_tokens(&self) -> StoreResult<u64> {
        self.repository().count_tokens().await
    }

    async fn create_session(
        &self,
        session: &NewSession,
        first_token: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> StoreResult<RefreshToken> {
        self.repository()
            .create_session(session, first_token, now)
            .await
    }
}
