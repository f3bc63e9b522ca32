//! [`AuditStore`] on PostgreSQL.

use super::*;

#[async_trait]
impl AuditStore for PgStore {
    async fn record_event(&self, e: &NewAuditEvent, now: DateTime<Utc>) -> StoreResult<()> {
        writes::record_event(&self.pool, e, now).await
    }

    async fn list_events(
        &self,
        f: &EventFilter,
        skip: u64,
        limit: u64,
    ) -> StoreResult<Vec<AuditEvent>> {
        sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM audit_events
             WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::text IS NULL OR kind = $2)
             ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(f.user_id)
        .bind(f.kind.as_deref())
        .bind(bigint(limit))
        .bind(bigint(skip))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(event_from_row)
        .collect()
    }

    async fn count_events(&self, f: &EventFilter) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_events
             WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::text IS NULL OR kind = $2)",
        )
        .bind(f.user_id)
        .bind(f.kind.as_deref())
        .fetch_one(&self.pool)
        .await?;
        Ok(count(n))
    }

    async fn delete_events_before_batch(
        &self,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> StoreResult<u64> {
        let r = sqlx::query(
            "DELETE FROM audit_events WHERE id IN
               (SELECT id FROM audit_events WHERE created_at < $1 LIMIT $2)",
        )
        .bind(cutoff)
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn count_events_before(&self, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE created_at < $1")
            .bind(cutoff)
            .fetch_one(&self.pool)
            .await?;
        Ok(count(n))
    }
}
