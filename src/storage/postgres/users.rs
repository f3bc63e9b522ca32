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
