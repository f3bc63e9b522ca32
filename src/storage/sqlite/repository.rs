//! [`SeedRepository`](crate::storage::SeedRepository) on SQLite: the seed's repository
//! operations the service does not use (see [`crate::storage::repository`]).

use super::*;
use crate::storage::SeedRepository;

#[async_trait]
impl SeedRepository for SqliteStore {
    async fn create_user(&self, new: &NewUser, now: DateTime<Utc>) -> StoreResult<User> {
        let new = new.clone();
        self.write(move |c| writes::create_user(c, &new, now)).await
    }

    async fn update_password(
        &self,
        id: Uuid,
        hashed_password: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let hashed = hashed_password.to_owned();
        self.write(move |c| {
            exec(
                c,
                "UPDATE users SET hashed_password = ?2, token_version = token_version + 1, updated_at = ?3 WHERE id = ?1",
                params![id.to_string(), hashed, ts(now)],
            )
        })
        .await
        .map(|n| n == 1)
    }

    async fn rehash_password(
        &self,
        id: Uuid,
        hashed_password: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let hashed = hashed_password.to_owned();
        self.write(move |c| writes::rehash_password(c, id, &hashed, now))
            .await
    }

    async fn increment_token_version(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>> {
        self.write(move |c| writes::bump_token_version(c, id, now))
            .await
    }

    async fn delete_user(&self, id: Uuid) -> StoreResult<bool> {
        self.write(move |c| writes::delete_user(c, id)).await
    }

    async fn get_token(&self, id: Uuid) -> StoreResult<Option<RefreshToken>> {
        self.read(move |c| {
            one(
                c,
                &format!("SELECT {TOKEN_COLS} FROM refresh_tokens WHERE id = ?1"),
                [id.to_string()],
                rows::token,
            )
        })
        .await
    }

    async fn create_token(
        &self,
        new: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> StoreResult<RefreshToken> {
        let new = new.clone();
        self.write(move |c| insert_token(c, &new, now)).await
    }

    async fn revoke_token(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<RefreshToken>> {
        self.write(move |c| {
            one(
                c,
                &format!(
                    "UPDATE refresh_tokens
                     SET is_revoked = 1, revoked_at = COALESCE(revoked_at, ?2), updated_at = ?2
                     WHERE id = ?1 RETURNING {TOKEN_COLS}"
                ),
                [id.to_string(), ts(now)],
                rows::token,
            )
        })
        .await
    }

    async fn revoke_family(&self, family_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64> {
        self.write(move |c| writes::revoke_family(c, family_id, now))
            .await
    }

    async fn revoke_all_user_tokens(&self, user_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64> {
        self.write(move |c| writes::end_user_sessions(c, user_id, None, now).map(|(t, _)| t))
            .await
    }

    async fn revoke_user_families_except(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.write(move |c| writes::end_user_sessions(c, user_id, keep, now).map(|(_, f)| f))
            .await
    }

    async fn get_user_active_sessions(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RefreshToken>> {
        self.read(move |c| {
            all(
                c,
                &format!(
                    "SELECT {TOKEN_COLS} FROM refresh_tokens
                     WHERE user_id = ?1 AND is_revoked = 0 AND expires_at > ?2
                     ORDER BY created_at DESC, id DESC"
                ),
                [user_id.to_string(), ts(now)],
                rows::token,
            )
        })
        .await
    }

    async fn delete_token(&self, id: Uuid) -> StoreResult<bool> {
        self.write(move |c| {
            exec(
                c,
                "DELETE FROM refresh_tokens WHERE id = ?1",
                [id.to_string()],
            )
        })
        .await
        .map(|n| n == 1)
    }

    async fn list_tokens(&self, skip: u64, limit: u64) -> StoreResult<Vec<RefreshToken>> {
        self.read(move |c| {
            all(
                c,
                &format!(
                    "SELECT {TOKEN_COLS} FROM refresh_tokens ORDER BY created_at, id LIMIT ?1 OFFSET ?2"
                ),
                [int(limit), int(skip)],
                rows::token,
            )
        })
        .await
    }

    async fn count_tokens(&self) -> StoreResult<u64> {
        self.read(|c| count(c, "SELECT count(*) FROM refresh_tokens", []))
            .await
    }

    async fn create_session(
        &self,
        s: &NewSession,
        first: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> StoreResult<RefreshToken> {
        let (s, first) = (s.clone(), first.clone());
        self.write(move |c| writes::create_session(c, &s, &first, now))
            .await
    }
}
