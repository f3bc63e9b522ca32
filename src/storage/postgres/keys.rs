//! [`KeyStore`] on PostgreSQL.

use super::*;

#[async_trait]
impl KeyStore for PgStore {
    async fn insert_key(&self, k: &StoredKey) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO signing_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(&k.kid)
        .bind(&k.algorithm)
        .bind(&k.public_key)
        .bind(&k.private_key_sealed)
        .bind(k.created_at)
        .bind(k.retired_at)
        .execute(&self.pool)
        .await
        .map_err(map_unique)?;
        Ok(())
    }

    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>> {
        // Byte order for the tie-break, as SQLite compares text, whatever the
        // database's collation.
        sqlx::query(&format!(
            "SELECT {KEY_COLS} FROM signing_keys ORDER BY created_at DESC, kid COLLATE \"C\" DESC"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(key_from_row)
        .collect()
    }

    async fn retire_key(&self, kid: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL",
        )
        .bind(kid)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_keys_retired_before(&self, cutoff: DateTime<Utc>) -> StoreResult<Vec<String>> {
        Ok(
            sqlx::query_scalar("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at <= $1 RETURNING kid")
                .bind(cutoff)
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
