//! The rotation statement on PostgreSQL: one statement, one round trip and one
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

use sqlx::{postgres::PgRow, PgPool};

use super::{token_from_row, token_version, TOKEN_COLS};
use crate::storage::{map_unique, Rotated, Rotation, StoreResult};

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

pub(super) async fn rotate(pool: &PgPool, rot: &Rotation<'_>) -> StoreResult<Option<Rotated>> {
    let row = sqlx::query(&ROTATE)
        .bind(rot.now)
        .bind(rot.presented_hash)
        .bind(rot.successor_id)
        .bind(rot.successor_hash)
        .bind(rot.expires_at)
        .bind(rot.ip_address)
        .bind(rot.event_id)
        .bind(rot.user_agent)
        .fetch_optional(pool)
        .await
        .map_err(map_unique)?;
    row.as_ref().map(rotated).transpose()
}

fn rotated(row: &PgRow) -> StoreResult<Rotated> {
    Ok(Rotated {
        token: token_from_row(row)?,
        token_version: token_version(row)?,
    })
}
