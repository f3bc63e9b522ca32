//! [`RefreshTokenStore`] on PostgreSQL, and the rotation statement: one statement, one round trip and one
//! commit per rotation. The conditional UPDATE revokes the presented token only if it
//! is live at that moment (row lock and re-check under READ COMMITTED), which is what
//! makes rotation safe across processes; the successor and the audit row are inserted
//! by the same statement. The session row is not written: its last use is read off the
//! live token (see `get_session`).
//!
//! Batching concurrent rotations into one statement over `unnest`ed arrays was tried
//! and measured (BENCHMARKS.md): on the 2-core benchmark machine it saved ~20% of
//! rotor's CPU but no throughput, and raised p99 from ~14.5 ms to ~20 ms, so each
//! rotation runs on its own.

use std::sync::LazyLock;

use super::*;

// `token_hash` is CHAR(64) while sqlx sends strings as `text`; comparing the column with a
// `text` parameter casts the column and cannot use its unique index, so lookups cast the
// parameter to `bpchar` instead.
#[async_trait]
impl RefreshTokenStore for PgStore {
    async fn get_by_hash(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM refresh_tokens WHERE token_hash = $1::bpchar"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(token_from_row)
        .transpose()
    }

    async fn get_valid_by_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<RefreshToken>> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM refresh_tokens
             WHERE token_hash = $1::bpchar AND NOT is_revoked AND expires_at > $2"
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(token_from_row)
        .transpose()
    }

    async fn delete_expired_tokens_batch(
        &self,
        now: DateTime<Utc>,
        batch: u32,
    ) -> StoreResult<u64> {
        let r = sqlx::query(
            "DELETE FROM refresh_tokens WHERE id IN
               (SELECT id FROM refresh_tokens WHERE expires_at <= $1 LIMIT $2)",
        )
        .bind(now)
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn count_expired_tokens(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE expires_at <= $1")
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
        Ok(count(n))
    }

    async fn rotate(&self, rot: &Rotation<'_>) -> StoreResult<Option<Rotated>> {
        rotate(self, rot).await
    }
}

pub(super) async fn insert_token<'e>(
    executor: impl PgExecutor<'e>,
    new: &NewRefreshToken,
    now: DateTime<Utc>,
) -> Result<PgRow, sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, device_id, device_name, ip_address,
                                     expires_at, is_revoked, revoked_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $9 THEN $10 END, $10)
         RETURNING {TOKEN_COLS}"
    ))
    .bind(new.id)
    .bind(&new.token_hash)
    .bind(new.user_id)
    .bind(new.family_id)
    .bind(&new.device_id)
    .bind(&new.device_name)
    .bind(&new.ip_address)
    .bind(new.expires_at)
    .bind(new.is_revoked)
    .bind(now)
    .fetch_one(executor)
    .await
}

/// The rotation statement (`$1` now, `$2` presented hash, `$3`/`$4` successor id and
/// hash, `$5` its expiry before the session cap, `$6` IP, `$7` audit event id, `$8` UA).
static ROTATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH old AS (
            UPDATE refresh_tokens t SET is_revoked = TRUE, revoked_at = $1, updated_at = $1
            FROM users u
            WHERE t.token_hash = $2::bpchar AND NOT t.is_revoked AND t.expires_at > $1
              AND u.id = t.user_id AND u.is_active
              AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = t.family_id AND s.revoked_at IS NOT NULL)
            RETURNING t.user_id, t.family_id, t.device_id, t.device_name, u.token_version,
                      LEAST($5::timestamptz,
                            COALESCE((SELECT s.absolute_expires_at FROM sessions s WHERE s.id = t.family_id),
                                     $5::timestamptz)) AS new_expires_at
         ), ins AS (
            INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, device_id, device_name, ip_address,
                                        expires_at, is_revoked, created_at)
            SELECT $3, $4, user_id, family_id, device_id, device_name, $6, new_expires_at, FALSE, $1 FROM old
            RETURNING {TOKEN_COLS}
         ), event AS (
            INSERT INTO audit_events (id, created_at, kind, user_id, session_id, ip_address, user_agent)
            SELECT $7, $1, 'refresh', user_id, family_id, $6, $8 FROM old
         )
         SELECT ins.*, old.token_version FROM ins CROSS JOIN old"
    )
});

async fn rotate(store: &PgStore, rot: &Rotation<'_>) -> StoreResult<Option<Rotated>> {
    let mut lease = store.warm.lease(&store.pool).await?;
    let row = sqlx::query(&ROTATE)
        .bind(rot.now)
        .bind(rot.presented_hash)
        .bind(rot.successor_id)
        .bind(rot.successor_hash)
        .bind(rot.expires_at)
        .bind(rot.ip_address)
        .bind(rot.event_id)
        .bind(rot.user_agent)
        .fetch_optional(lease.conn())
        .await
        .map_err(map_unique)?;
    lease.completed();
    row.as_ref().map(rotated).transpose()
}

fn rotated(row: &PgRow) -> StoreResult<Rotated> {
    Ok(Rotated {
        token: token_from_row(row)?,
        token_version: token_version(row)?,
    })
}
