//! [`UserStore`] on PostgreSQL.

use super::*;

#[async_trait]
impl UserStore for PgStore {
    async fn get_user(&self, id: Uuid) -> StoreResult<Option<User>> {
        sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn get_user_by_email(&self, key: &EmailKey) -> StoreResult<Option<User>> {
        sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users WHERE email_key = $1"
        ))
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn get_user_by_unkeyed_email(&self, email: &str) -> StoreResult<Option<User>> {
        sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users WHERE email_key IS NULL AND email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn email_exists(&self, key: &EmailKey) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE email_key = $1")
            .bind(key.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    async fn create_user(&self, new: &NewUser, now: DateTime<Utc>) -> StoreResult<User> {
        writes::create_user(&self.pool, new, now).await
    }

    async fn update_user(
        &self,
        id: Uuid,
        patch: &UserPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<User>> {
        if patch.is_empty() {
            return self.get_user(id).await;
        }
        writes::update_user(&self.pool, id, patch, now).await
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

    async fn list_users(&self, skip: u64, limit: u64) -> StoreResult<Vec<User>> {
        sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2"
        ))
        .bind(bigint(limit))
        .bind(bigint(skip))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(user_from_row)
        .collect()
    }

    async fn count_users(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(count(n))
    }
}
