//! [`SessionStore`] on PostgreSQL.

use super::*;

#[async_trait]
impl SessionStore for PgStore {
    async fn get_session(&self, id: Uuid) -> StoreResult<Option<Session>> {
        sqlx::query(SESSION_WITH_LAST_USE)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn touch_session(
        &self,
        id: Uuid,
        ip: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET last_used_at = $2, ip_address = COALESCE($3, ip_address) WHERE id = $1")
            .bind(id)
            .bind(now)
            .bind(ip)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_user_sessions(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<SessionView>> {
        sqlx::query(
            "SELECT t.family_id AS id,
                    COALESCE(s.device_id, t.device_id) AS device_id,
                    COALESCE(s.device_name, t.device_name) AS device_name,
                    s.user_agent AS user_agent,
                    CASE WHEN s.last_used_at > t.created_at THEN COALESCE(s.ip_address, t.ip_address)
                         ELSE COALESCE(t.ip_address, s.ip_address) END AS ip_address,
                    COALESCE(s.created_at, t.created_at) AS created_at,
                    GREATEST(s.last_used_at, t.created_at) AS last_used_at,
                    t.expires_at AS expires_at
             FROM refresh_tokens t LEFT JOIN sessions s ON s.id = t.family_id
             WHERE t.user_id = $1 AND NOT t.is_revoked AND t.expires_at > $2 AND s.revoked_at IS NULL
             ORDER BY last_used_at DESC, id DESC",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(session_view_from_row)
        .collect()
    }

    async fn session_revoked(&self, id: Uuid) -> StoreResult<bool> {
        // No session row: ended unless the family has a live token (a family from the
        // seed API or migrated from the original).
        let revoked: bool = sqlx::query_scalar(&format!("SELECT {SESSION_ENDED}"))
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(revoked)
    }

    async fn delete_expired_sessions_batch(
        &self,
        now: DateTime<Utc>,
        batch: u32,
    ) -> StoreResult<u64> {
        let r = sqlx::query(
            "DELETE FROM sessions WHERE id IN
               (SELECT id FROM sessions WHERE absolute_expires_at <= $1 LIMIT $2)",
        )
        .bind(now)
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn count_expired_sessions(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sessions WHERE absolute_expires_at <= $1")
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
        Ok(count(n))
    }
}
