//! [`SeedRepository`](crate::storage::SeedRepository) on PostgreSQL: the seed's repository
//! operations the service does not use (see [`crate::storage::repository`]).

use super::*;
use crate::storage::SeedRepository;

#[async_trait]
impl SeedRepository for PgStore {
    async fn create_user(&self, new: &NewUser, now: DateTime<Utc>) -> StoreResult<User> {
        writes::create_user(&self.pool, new, now).await
    }

    async fn update_password(
        &self,
        id: Uuid,
        hashed_password: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE users SET hashed_password = $2, token_version = token_version + 1, updated_at = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(hashed_password)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn rehash_password(
        &self,
        id: Uuid,
        hashed_password: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        writes::rehash_password(&self.pool, id, hashed_password, now).await
    }

    async fn increment_token_version(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>> {
        writes::bump_token_version(&self.pool, id, now).await
    }

    async fn delete_user(&self, id: Uuid) -> StoreResult<bool> {
        writes::delete_user(&self.pool, id).await
    }

    async fn get_token(&self, id: Uuid) -> StoreResult<Option<RefreshToken>> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM refresh_tokens WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(token_from_row)
        .transpose()
    }

    async fn create_token(
        &self,
        new: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> StoreResult<RefreshToken> {
        let row = insert_token(&self.pool, new, now)
            .await
            .map_err(map_unique)?;
        token_from_row(&row)
    }

    async fn revoke_token(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<RefreshToken>> {
        sqlx::query(&format!(
            "UPDATE refresh_tokens SET is_revoked = TRUE, revoked_at = COALESCE(revoked_at, $2), updated_at = $2
             WHERE id = $1 RETURNING {TOKEN_COLS}"
        ))
        .bind(id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(token_from_row)
        .transpose()
    }

    async fn revoke_family(&self, family_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64> {
        let (revoked, _) = self
            .revoke_scope(writes::Scope::Family, family_id, None, now)
            .await?;
        Ok(revoked)
    }

    async fn revoke_all_user_tokens(&self, user_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64> {
        let (revoked, _) = self
            .revoke_scope(writes::Scope::User, user_id, None, now)
            .await?;
        Ok(revoked)
    }

    async fn revoke_user_families_except(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        // Expired-but-unrevoked tokens are revoked too, but only families that were still
        // live count as ended.
        let (_, families) = self
            .revoke_scope(writes::Scope::UserExcept, user_id, keep, now)
            .await?;
        Ok(families.len() as u64)
    }

    async fn get_user_active_sessions(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RefreshToken>> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM refresh_tokens WHERE user_id = $1 AND NOT is_revoked AND expires_at > $2
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(token_from_row)
        .collect()
    }

    async fn delete_token(&self, id: Uuid) -> StoreResult<bool> {
        let r = sqlx::query("DELETE FROM refresh_tokens WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn list_tokens(&self, skip: u64, limit: u64) -> StoreResult<Vec<RefreshToken>> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM refresh_tokens ORDER BY created_at, id LIMIT $1 OFFSET $2"
        ))
        .bind(bigint(limit))
        .bind(bigint(skip))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(token_from_row)
        .collect()
    }

    async fn count_tokens(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens")
            .fetch_one(&self.pool)
            .await?;
        Ok(count(n))
    }

    async fn create_session(
        &self,
        s: &NewSession,
        first: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> StoreResult<RefreshToken> {
        let mut tx = self.pool.begin().await?;
        let token = writes::create_session(&mut tx, s, first, now).await?;
        tx.commit().await?;
        Ok(token)
    }
}
