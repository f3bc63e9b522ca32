//! [`AuditStore`] on SQLite.

use super::*;

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_event(&self, e: &NewAuditEvent, now: DateTime<Utc>) -> StoreResult<()> {
        let e = e.clone();
        self.write(move |c| writes::record_event(c, &e, now)).await
    }

    async fn list_events(
        &self,
        f: &EventFilter,
        skip: u64,
        limit: u64,
    ) -> StoreResult<Vec<AuditEvent>> {
        let (user, kind) = (f.user_id.map(|u| u.to_string()), f.kind.clone());
        self.read(move |c| {
            all(
                c,
                &format!(
                    "SELECT {EVENT_COLS} FROM audit_events
                     WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR kind = ?2)
                     ORDER BY created_at DESC, id DESC LIMIT ?3 OFFSET ?4"
                ),
                params![user, kind, int(limit), int(skip)],
                rows::event,
            )
        })
        .await
    }

    async fn count_events(&self, f: &EventFilter) -> StoreResult<u64> {
        let (user, kind) = (f.user_id.map(|u| u.to_string()), f.kind.clone());
        self.read(move |c| {
            count(
                c,
                "SELECT count(*) FROM audit_events
                 WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR kind = ?2)",
                params![user, kind],
            )
        })
        .await
    }

    async fn delete_events_before_batch(
        &self,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> StoreResult<u64> {
        self.write(move |c| {
            exec(
                c,
                "DELETE FROM audit_events WHERE rowid IN
                   (SELECT rowid FROM audit_events WHERE created_at < ?1 LIMIT ?2)",
                params![ts(cutoff), batch],
            )
        })
        .await
    }

    async fn count_events_before(&self, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        self.read(move |c| {
            count(
                c,
                "SELECT count(*) FROM audit_events WHERE created_at < ?1",
                [ts(cutoff)],
            )
        })
        .await
    }
}
