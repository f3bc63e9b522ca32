//! SQLite writes as plain functions on the writer's connection: each repository method
//! runs one of them as a writer job, and [`apply`] runs a whole [`Change`] — several of
//! them — as a single job, so a use case commits all of its writes or none.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use uuid::Uuid;

use super::{
    insert_token,
    rows::{self, count, exec, one, ts, USER_COLS},
};
use crate::{
    domain::email::EmailKey,
    storage::{
        change::{Applied, Change, Write},
        NewAuditEvent, NewRefreshToken, NewSession, NewUser, RefreshToken, StoreError, StoreResult,
        User, UserPatch,
    },
};

pub(super) fn create_user(c: &Connection, new: &NewUser, now: DateTime<Utc>) -> StoreResult<User> {
    one(
        c,
        &format!(
            "INSERT INTO users (id, email, email_key, hashed_password, full_name, is_active, is_verified, role, token_version, created_at)
             VALUES (?1, ?2, ?9, ?3, ?4, ?5, ?6, ?7, 0, ?8) RETURNING {USER_COLS}"
        ),
        params![
            Uuid::now_v7().to_string(),
            new.email,
            new.hashed_password,
            new.full_name,
            new.is_active,
            new.is_verified,
            new.role.as_str(),
            ts(now),
            EmailKey::of(&new.email).as_str(),
        ],
        rows::user,
    )?
    .ok_or_else(|| StoreError::Corrupt("INSERT … RETURNING returned no row".into()))
}

/// Applies the set fields; `None` when the user does not exist.
pub(super) fn update_user(
    c: &Connection,
    id: Uuid,
    p: &UserPatch,
    now: DateTime<Utc>,
) -> StoreResult<Option<User>> {
    let key = p
        .email
        .as_deref()
        .map(|e| EmailKey::of(e).as_str().to_owned());
    // Each field is `CASE WHEN <flag> THEN <value> ELSE column END`, so one statement
    // serves every combination of fields.
    one(
        c,
        &format!(
            "UPDATE users SET
                email = CASE WHEN ?2 THEN ?3 ELSE email END,
                email_key = CASE WHEN ?2 THEN ?15 ELSE email_key END,
                full_name = CASE WHEN ?4 THEN ?5 ELSE full_name END,
                role = CASE WHEN ?6 THEN ?7 ELSE role END,
                is_active = CASE WHEN ?8 THEN ?9 ELSE is_active END,
                is_verified = CASE WHEN ?10 THEN ?11 ELSE is_verified END,
                hashed_password = CASE WHEN ?12 THEN ?13 ELSE hashed_password END,
                token_version = token_version + CASE WHEN ?12 THEN 1 ELSE 0 END,
                updated_at = ?14
             WHERE id = ?1 RETURNING {USER_COLS}"
        ),
        params![
            id.to_string(),
            p.email.is_some(),
            p.email,
            p.full_name.is_some(),
            p.full_name.clone().flatten(),
            p.role.is_some(),
            p.role.map(|r| r.as_str()),
            p.is_active.is_some(),
            p.is_active,
            p.is_verified.is_some(),
            p.is_verified,
            p.hashed_password.is_some(),
            p.hashed_password,
            ts(now),
            key,
        ],
        rows::user,
    )
}

pub(super) fn rehash_password(
    c: &Connection,
    id: Uuid,
    hashed: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    exec(
        c,
        "UPDATE users SET hashed_password = ?2, updated_at = ?3 WHERE id = ?1",
        params![id.to_string(), hashed, ts(now)],
    )
    .map(|n| n == 1)
}

pub(super) fn bump_token_version(
    c: &Connection,
    id: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<Option<i64>> {
    one(
        c,
        "UPDATE users SET token_version = token_version + 1, updated_at = ?2 WHERE id = ?1 RETURNING token_version",
        params![id.to_string(), ts(now)],
        |r| Ok(r.get(0)?),
    )
}

pub(super) fn delete_user(c: &Connection, id: Uuid) -> StoreResult<bool> {
    exec(c, "DELETE FROM users WHERE id = ?1", [id.to_string()]).map(|n| n == 1)
}

pub(super) fn create_session(
    c: &Connection,
    s: &NewSession,
    first: &NewRefreshToken,
    now: DateTime<Utc>,
) -> StoreResult<RefreshToken> {
    exec(
        c,
        "INSERT INTO sessions (id, user_id, device_id, device_name, user_agent, ip_address,
                               client_id, created_at, last_used_at, absolute_expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
        params![
            s.id.to_string(),
            s.user_id.to_string(),
            s.device_id,
            s.device_name,
            s.user_agent,
            s.ip_address,
            s.client_id,
            ts(now),
            ts(s.absolute_expires_at),
        ],
    )?;
    insert_token(c, first, now)
}

/// Revokes the family's live tokens and ends its session; returns the tokens revoked.
pub(super) fn revoke_family(
    c: &Connection,
    family_id: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    let (family, now) = (family_id.to_string(), ts(now));
    let revoked = exec(
        c,
        "UPDATE refresh_tokens SET is_revoked = 1, revoked_at = ?2, updated_at = ?2
         WHERE family_id = ?1 AND is_revoked = 0",
        [&family, &now],
    )?;
    exec(
        c,
        "UPDATE sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        [&family, &now],
    )?;
    Ok(revoked)
}

/// Revokes the user's live tokens outside `keep` and ends those sessions. Returns
/// (tokens revoked, live families ended).
pub(super) fn end_user_sessions(
    c: &Connection,
    user_id: Uuid,
    keep: Option<Uuid>,
    now: DateTime<Utc>,
) -> StoreResult<(u64, u64)> {
    let keep = keep.map(|k| k.to_string()).unwrap_or_default();
    let (user, now) = (user_id.to_string(), ts(now));
    let families = count(
        c,
        "SELECT count(DISTINCT family_id) FROM refresh_tokens
         WHERE user_id = ?1 AND is_revoked = 0 AND expires_at > ?2 AND family_id <> ?3",
        [&user, &now, &keep],
    )?;
    let revoked = exec(
        c,
        "UPDATE refresh_tokens SET is_revoked = 1, revoked_at = ?2, updated_at = ?2
         WHERE user_id = ?1 AND is_revoked = 0 AND family_id <> ?3",
        [&user, &now, &keep],
    )?;
    exec(
        c,
        "UPDATE sessions SET revoked_at = ?2
         WHERE user_id = ?1 AND revoked_at IS NULL AND id <> ?3",
        [&user, &now, &keep],
    )?;
    Ok((revoked, families))
}

pub(super) fn record_event(
    c: &Connection,
    e: &NewAuditEvent,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO audit_events (id, created_at, kind, user_id, session_id, ip_address, user_agent, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            Uuid::now_v7().to_string(),
            ts(now),
            e.kind,
            e.user_id.map(|u| u.to_string()),
            e.session_id.map(|u| u.to_string()),
            e.ip_address,
            e.user_agent,
            e.detail,
        ],
    )
    .map(drop)
}

/// Runs every write of the change on the writer's connection. The caller runs this as
/// one writer job, inside its own savepoint: an error rolls all of it back.
pub(super) fn apply(c: &Connection, change: &Change) -> StoreResult<Applied> {
    let now = change.now;
    let mut applied = Applied::default();
    for write in &change.writes {
        match write {
            Write::CreateUser(new) => applied.user = Some(create_user(c, new, now)?),
            Write::UpdateUser { id, patch } => {
                applied.user = Some(update_user(c, *id, patch, now)?.ok_or(StoreError::NotFound)?);
            }
            Write::RehashPassword {
                id,
                hashed_password,
            } => {
                rehash_password(c, *id, hashed_password, now)?;
            }
            Write::BumpTokenVersion { id } => {
                bump_token_version(c, *id, now)?.ok_or(StoreError::NotFound)?;
            }
            Write::DeleteUser { id } => {
                if !delete_user(c, *id)? {
                    return Err(StoreError::NotFound);
                }
            }
            Write::CreateSession {
                session,
                first_token,
            } => applied.token = Some(create_session(c, session, first_token, now)?),
            Write::RevokeFamily { family_id } => {
                applied.revoked += revoke_family(c, *family_id, now)?;
            }
            Write::EndUserSessions { user_id, keep } => {
                let (revoked, ended) = end_user_sessions(c, *user_id, *keep, now)?;
                applied.revoked += revoked;
                applied.ended += ended;
            }
            Write::Audit { event, when } => {
                if applied.allows(*when) {
                    record_event(c, &applied.fill(event), now)?;
                }
            }
            Write::Webhook(event) => {
                if applied.allows(event.when) {
                    super::outbox::insert(c, event, &applied, now)?;
                }
            }
            Write::Abort => return Err(StoreError::Aborted),
        }
    }
    if let Some(user) = &applied.user {
        // Later writes (a token_version bump) may have moved the row.
        if change
            .writes
            .iter()
            .any(|w| matches!(w, Write::BumpTokenVersion { .. }))
        {
            applied.user = one(
                c,
                &format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
                [user.id.to_string()],
                rows::user,
            )?;
        }
    }
    Ok(applied)
}
