//! [`SessionStore`] on SQLite.

use super::*;

/// Whether the session `?1` has ended. No session row: ended unless the family has a
/// live token (a family from the seed API or migrated from the original).
pub(super) const SESSION_ENDED: &str = "CASE WHEN EXISTS (SELECT 1 FROM sessions WHERE id = ?1)
     THEN (SELECT revoked_at IS NOT NULL FROM sessions WHERE id = ?1)
     ELSE NOT EXISTS (SELECT 1 FROM refresh_tokens
                      WHERE family_id = ?1 AND is_revoked = 0) END";

fn session_revoked(c: &Connection, id: Uuid) -> StoreResult<bool> {
    static QUERY: LazyLock<String> = LazyLock::new(|| format!("SELECT {SESSION_ENDED}"));
    one(c, &QUERY, [id.to_string()], |r| Ok(r.get::<_, bool>(0)?))
        .map(|revoked| revoked != Some(false))
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn get_session(&self, id: Uuid) -> StoreResult<Option<Session>> {
        self.read(move |c| one(c, SESSION_WITH_LAST_USE, [id.to_string()], rows::session))
            .await
    }

    async fn touch_session(
        &self,
        id: Uuid,
        ip: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let ip = ip.map(str::to_owned);
        self.write(move |c| {
            exec(
                c,
                "UPDATE sessions SET last_used_at = ?2, ip_address = COALESCE(?3, ip_address) WHERE id = ?1",
                params![id.to_string(), ts(now), ip],
            )
            .map(drop)
        })
        .await
    }

    async fn list_user_sessions(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<SessionView>> {
        self.read(move |c| {
            all(
                c,
                "SELECT t.family_id AS id,
                        COALESCE(s.device_id, t.device_id) AS device_id,
                        COALESCE(s.device_name, t.device_name) AS device_name,
                        s.user_agent AS user_agent,
                        CASE WHEN s.last_used_at > t.created_at THEN COALESCE(s.ip_address, t.ip_address)
                             ELSE COALESCE(t.ip_address, s.ip_address) END AS ip_address,
                        COALESCE(s.created_at, t.created_at) AS created_at,
                        max(COALESCE(s.last_used_at, t.created_at), t.created_at) AS last_used_at,
                        t.expires_at AS expires_at
                 FROM refresh_tokens t LEFT JOIN sessions s ON s.id = t.family_id
                 WHERE t.user_id = ?1 AND t.is_revoked = 0 AND t.expires_at > ?2 AND s.revoked_at IS NULL
                 ORDER BY last_used_at DESC, id DESC",
                [user_id.to_string(), ts(now)],
                rows::session_view,
            )
        })
        .await
    }

    async fn session_revoked(&self, id: Uuid) -> StoreResult<bool> {
        self.read(move |c| session_revoked(c, id)).await
    }

    async fn delete_expired_sessions_batch(
        &self,
        now: DateTime<Utc>,
        batch: u32,
    ) -> StoreResult<u64> {
        self.write(move |c| {
            exec(
                c,
                "DELETE FROM sessions WHERE rowid IN
                   (SELECT rowid FROM sessions WHERE absolute_expires_at <= ?1 LIMIT ?2)",
                params![ts(now), batch],
            )
        })
        .await
    }

    async fn count_expired_sessions(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        self.read(move |c| {
            count(
                c,
                "SELECT count(*) FROM sessions WHERE absolute_expires_at <= ?1",
                [ts(now)],
            )
        })
        .await
    }
}
