//! [`RefreshTokenStore`] on SQLite, with the rotation job (one writer job: conditional
//! revoke, successor, audit row).

use super::*;

#[async_trait]
impl RefreshTokenStore for SqliteStore {
    async fn get_by_hash(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        let hash = token_hash.to_owned();
        self.read(move |c| {
            one(
                c,
                &format!("SELECT {TOKEN_COLS} FROM refresh_tokens WHERE token_hash = ?1"),
                [hash],
                rows::token,
            )
        })
        .await
    }

    async fn get_valid_by_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<RefreshToken>> {
        let hash = token_hash.to_owned();
        self.read(move |c| {
            one(
                c,
                &format!(
                    "SELECT {TOKEN_COLS} FROM refresh_tokens
                     WHERE token_hash = ?1 AND is_revoked = 0 AND expires_at > ?2"
                ),
                [hash, ts(now)],
                rows::token,
            )
        })
        .await
    }

    async fn delete_expired_tokens_batch(
        &self,
        now: DateTime<Utc>,
        batch: u32,
    ) -> StoreResult<u64> {
        self.write(move |c| {
            exec(
                c,
                "DELETE FROM refresh_tokens WHERE rowid IN
                   (SELECT rowid FROM refresh_tokens WHERE expires_at <= ?1 LIMIT ?2)",
                params![ts(now), batch],
            )
        })
        .await
    }

    async fn count_expired_tokens(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        self.read(move |c| {
            count(
                c,
                "SELECT count(*) FROM refresh_tokens WHERE expires_at <= ?1",
                [ts(now)],
            )
        })
        .await
    }

    async fn rotate(&self, rot: &Rotation<'_>) -> StoreResult<Option<Rotated>> {
        let rot = OwnedRotation::from(rot);
        self.write(move |c| rotate(c, rot)).await
    }
}

/// A [`Rotation`] the writer thread can own.
struct OwnedRotation {
    presented_hash: String,
    successor_id: Uuid,
    successor_hash: String,
    expires_at: DateTime<Utc>,
    ip_address: Option<String>,
    user_agent: Option<String>,
    event_id: Uuid,
    now: DateTime<Utc>,
}

impl From<&Rotation<'_>> for OwnedRotation {
    fn from(r: &Rotation<'_>) -> Self {
        Self {
            presented_hash: r.presented_hash.to_owned(),
            successor_id: r.successor_id,
            successor_hash: r.successor_hash.to_owned(),
            expires_at: r.expires_at,
            ip_address: r.ip_address.map(str::to_owned),
            user_agent: r.user_agent.map(str::to_owned),
            event_id: r.event_id,
            now: r.now,
        }
    }
}

/// One rotation, inside the writer's transaction: revoke the presented token if it is
/// live, insert its successor and its audit row. The session row is not written: its
/// last use is read off the live token ([`SESSION_WITH_LAST_USE`]).
///
/// The live token is found by a `SELECT` and revoked by an `UPDATE` of that row that
/// checks again that it is unrevoked. Nothing can come in between: the writer's
/// transaction began with `BEGIN IMMEDIATE`, which holds the database's write lock
/// (against every other connection, in this process or another) until it commits.
/// (One `UPDATE … RETURNING` did the same, at the price of the temporary table and
/// statement journal SQLite runs `RETURNING` through.)
fn rotate(c: &Connection, rot: OwnedRotation) -> StoreResult<Option<Rotated>> {
    let now = ts(rot.now);
    let live = one(
        c,
        "SELECT t.rowid, t.user_id, t.family_id, t.device_id, t.device_name, u.token_version,
                s.absolute_expires_at
         FROM refresh_tokens t
         JOIN users u ON u.id = t.user_id
         LEFT JOIN sessions s ON s.id = t.family_id
         WHERE t.token_hash = ?2 AND t.is_revoked = 0 AND t.expires_at > ?1 AND u.is_active
           AND s.revoked_at IS NULL",
        [&now, &rot.presented_hash],
        |row| {
            Ok((
                row.get::<_, i64>(rows::at(row, 0, "rowid"))?,
                (
                    col_uuid(row, rows::at(row, 1, "user_id"))?,
                    col_uuid(row, rows::at(row, 2, "family_id"))?,
                    row.get::<_, Option<String>>(rows::at(row, 3, "device_id"))?,
                    row.get::<_, Option<String>>(rows::at(row, 4, "device_name"))?,
                    row.get::<_, i64>(rows::at(row, 5, "token_version"))?,
                    col_ts_opt(row, rows::at(row, 6, "absolute_expires_at"))?,
                ),
            ))
        },
    )?;
    let Some((rowid, old)) = live else {
        return Ok(None);
    };
    let revoked = exec(
        c,
        "UPDATE refresh_tokens SET is_revoked = 1, revoked_at = ?1, updated_at = ?1
         WHERE rowid = ?2 AND is_revoked = 0",
        params![now, rowid],
    )?;
    if revoked != 1 {
        // Not possible under the write lock; refuse rather than issue a second successor.
        return Ok(None);
    }
    let old = Some(old);
    let Some((user_id, family_id, device_id, device_name, token_version, session_end)) = old else {
        return Ok(None);
    };
    let expires_at = match session_end {
        Some(end) if end < rot.expires_at => end,
        _ => rot.expires_at,
    };
    // The successor, inserted without `RETURNING`: every column is known here, and
    // `Rotated` carries them as they read back (timestamps at the stored precision).
    exec(
        c,
        "INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, device_id, device_name,
                                     ip_address, expires_at, is_revoked, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9)",
        params![
            rot.successor_id.to_string(),
            rot.successor_hash,
            user_id.to_string(),
            family_id.to_string(),
            device_id,
            device_name,
            rot.ip_address,
            ts(expires_at),
            now,
        ],
    )?;
    exec(
        c,
        "INSERT INTO audit_events (id, created_at, kind, user_id, session_id, ip_address, user_agent)
         VALUES (?1, ?2, 'refresh', ?3, ?4, ?5, ?6)",
        params![
            rot.event_id.to_string(),
            now,
            user_id.to_string(),
            family_id.to_string(),
            rot.ip_address,
            rot.user_agent,
        ],
    )?;
    Ok(Some(Rotated {
        token: RefreshToken {
            id: rot.successor_id,
            token_hash: rot.successor_hash,
            user_id,
            family_id,
            device_id,
            device_name,
            ip_address: rot.ip_address,
            expires_at: rows::as_stored(expires_at),
            is_revoked: false,
            revoked_at: None,
            created_at: rows::as_stored(rot.now),
            updated_at: None,
        },
        token_version,
    }))
}

pub(super) fn insert_token(
    c: &Connection,
    new: &NewRefreshToken,
    now: DateTime<Utc>,
) -> StoreResult<RefreshToken> {
    // Built once: this runs on every rotation.
    static INSERT: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, device_id, device_name,
                                         ip_address, expires_at, is_revoked, revoked_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, CASE WHEN ?9 THEN ?10 END, ?10)
             RETURNING {TOKEN_COLS}"
        )
    });
    one(
        c,
        &INSERT,
        params![
            new.id.to_string(),
            new.token_hash,
            new.user_id.to_string(),
            new.family_id.to_string(),
            new.device_id,
            new.device_name,
            new.ip_address,
            ts(new.expires_at),
            new.is_revoked,
            ts(now),
        ],
        rows::token,
    )?
    .ok_or_else(|| StoreError::Corrupt("INSERT … RETURNING returned no row".into()))
}
