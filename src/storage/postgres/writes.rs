//! PostgreSQL writes as functions of an executor: the repository methods run them on
//! the pool, and [`apply`] runs a whole [`Change`] in one transaction, so a use case
//! commits all of its writes or none.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, Row};
use uuid::Uuid;

use super::{count, insert_token, token_from_row, user_from_row, USER_COLS};
use crate::{
    domain::email::EmailKey,
    storage::{
        change::{Applied, Change, Write},
        map_unique, NewAuditEvent, NewRefreshToken, NewSession, NewUser, RefreshToken, Role,
        StoreError, StoreResult, User, UserPatch,
    },
};

pub(super) async fn create_user<'e>(
    ex: impl PgExecutor<'e>,
    new: &NewUser,
    now: DateTime<Utc>,
) -> StoreResult<User> {
    let row = sqlx::query(&format!(
        "INSERT INTO users (id, email, email_key, hashed_password, full_name, is_active, is_verified, role, token_version, created_at)
         VALUES ($1, $2, $9, $3, $4, $5, $6, $7, 0, $8) RETURNING {USER_COLS}"
    ))
    .bind(Uuid::now_v7())
    .bind(&new.email)
    .bind(&new.hashed_password)
    .bind(&new.full_name)
    .bind(new.is_active)
    .bind(new.is_verified)
    .bind(new.role.as_str())
    .bind(now)
    .bind(EmailKey::of(&new.email).as_str())
    .fetch_one(ex)
    .await
    .map_err(map_unique)?;
    user_from_row(&row)
}

/// Applies the set fields; `None` when the user does not exist.
pub(super) async fn update_user<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
    patch: &UserPatch,
    now: DateTime<Utc>,
) -> StoreResult<Option<User>> {
    // Each field is `CASE WHEN <flag> THEN <value> ELSE column END`, so one statement
    // serves every combination of fields.
    let row = sqlx::query(&format!(
        "UPDATE users SET
            email = CASE WHEN $2 THEN $3 ELSE email END,
            email_key = CASE WHEN $2 THEN $15 ELSE email_key END,
            full_name = CASE WHEN $4 THEN $5 ELSE full_name END,
            role = CASE WHEN $6 THEN $7 ELSE role::text END,
            is_active = CASE WHEN $8 THEN $9 ELSE is_active END,
            is_verified = CASE WHEN $10 THEN $11 ELSE is_verified END,
            hashed_password = CASE WHEN $12 THEN $13 ELSE hashed_password END,
            token_version = token_version + CASE WHEN $12 THEN 1 ELSE 0 END,
            updated_at = $14
         WHERE id = $1 RETURNING {USER_COLS}"
    ))
    .bind(id)
    .bind(patch.email.is_some())
    .bind(patch.email.as_deref())
    .bind(patch.full_name.is_some())
    .bind(patch.full_name.clone().flatten())
    .bind(patch.role.is_some())
    .bind(patch.role.map(Role::as_str))
    .bind(patch.is_active.is_some())
    .bind(patch.is_active)
    .bind(patch.is_verified.is_some())
    .bind(patch.is_verified)
    .bind(patch.hashed_password.is_some())
    .bind(patch.hashed_password.as_deref())
    .bind(now)
    .bind(
        patch
            .email
            .as_deref()
            .map(|e| EmailKey::of(e).as_str().to_owned()),
    )
    .fetch_optional(ex)
    .await
    .map_err(map_unique)?;
    row.as_ref().map(user_from_row).transpose()
}

pub(super) async fn rehash_password<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
    hashed_password: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let r = sqlx::query("UPDATE users SET hashed_password = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(hashed_password)
        .bind(now)
        .execute(ex)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub(super) async fn bump_token_version<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<Option<i64>> {
    let version: Option<i32> = sqlx::query_scalar(
        "UPDATE users SET token_version = token_version + 1, updated_at = $2 WHERE id = $1 RETURNING token_version",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(ex)
    .await?;
    Ok(version.map(i64::from))
}

pub(super) async fn delete_user<'e>(ex: impl PgExecutor<'e>, id: Uuid) -> StoreResult<bool> {
    let r = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(ex)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub(super) async fn create_session(
    tx: &mut PgConnection,
    s: &NewSession,
    first: &NewRefreshToken,
    now: DateTime<Utc>,
) -> StoreResult<RefreshToken> {
    sqlx::query(
        "INSERT INTO sessions (id, user_id, device_id, device_name, user_agent, ip_address, client_id,
                               created_at, last_used_at, absolute_expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
    )
    .bind(s.id)
    .bind(s.user_id)
    .bind(&s.device_id)
    .bind(&s.device_name)
    .bind(&s.user_agent)
    .bind(&s.ip_address)
    .bind(&s.client_id)
    .bind(now)
    .bind(s.absolute_expires_at)
    .execute(&mut *tx)
    .await
    .map_err(map_unique)?;
    let row = insert_token(&mut *tx, first, now)
        .await
        .map_err(map_unique)?;
    token_from_row(&row)
}

pub(super) async fn record_event<'e>(
    ex: impl PgExecutor<'e>,
    e: &NewAuditEvent,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_events (id, created_at, kind, user_id, session_id, ip_address, user_agent, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::now_v7())
    .bind(now)
    .bind(e.kind)
    .bind(e.user_id)
    .bind(e.session_id)
    .bind(&e.ip_address)
    .bind(&e.user_agent)
    .bind(&e.detail)
    .execute(ex)
    .await?;
    Ok(())
}

/// Which tokens a revocation covers (`$1` the id, `$3` a family to spare).
#[derive(Debug, Clone, Copy)]
pub(super) enum Scope {
    Family,
    User,
    UserExcept,
}

impl Scope {
    fn tokens(self) -> &'static str {
        match self {
            Self::Family => "family_id = $1",
            Self::User => "user_id = $1",
            Self::UserExcept => "user_id = $1 AND family_id IS DISTINCT FROM $3",
        }
    }

    fn sessions(self) -> &'static str {
        match self {
            Self::Family => "id = $1",
            Self::User => "user_id = $1",
            Self::UserExcept => "user_id = $1 AND id IS DISTINCT FROM $3",
        }
    }
}

/// Revokes every live token in the scope and ends its sessions, inside the caller's
/// transaction. Returns the number of tokens revoked and the families among them that
/// were unexpired.
///
/// One UPDATE is not enough under READ COMMITTED: if a rotation holds the lock on a
/// family's live token, the UPDATE waits for it, then skips the token (now revoked) and
/// cannot see the successor, which is newer than the statement's snapshot. Each round
/// therefore also counts the live tokens its snapshot saw; when it revoked fewer, a
/// rotation got in between and another round (with a fresh snapshot) picks up the
/// successor. Tokens revoked in earlier rounds stay locked until commit, so those
/// families cannot move again. Sessions are ended last, after the tokens, which is the
/// order `rotate` locks them in, so the two never deadlock.
pub(super) async fn revoke_scope(
    tx: &mut PgConnection,
    scope: Scope,
    id: Uuid,
    keep: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<(u64, HashSet<Uuid>), sqlx::Error> {
    let tokens = scope.tokens();
    let round = format!(
        "WITH seen AS (
            SELECT count(*) AS n FROM refresh_tokens WHERE {tokens} AND NOT is_revoked
         ), t AS (
            UPDATE refresh_tokens SET is_revoked = TRUE, revoked_at = $2, updated_at = $2
            WHERE {tokens} AND NOT is_revoked
            RETURNING family_id, expires_at
         )
         SELECT (SELECT n FROM seen) AS seen,
                (SELECT count(*) FROM t) AS revoked,
                ARRAY(SELECT DISTINCT family_id FROM t WHERE expires_at > $2) AS live_families"
    );
    let end_sessions = format!(
        "UPDATE sessions SET revoked_at = $2 WHERE {} AND revoked_at IS NULL",
        scope.sessions()
    );
    let mut revoked = 0;
    let mut families = HashSet::new();
    loop {
        let row = sqlx::query(&round)
            .bind(id)
            .bind(now)
            .bind(keep)
            .fetch_one(&mut *tx)
            .await?;
        let seen: i64 = row.try_get("seen")?;
        let n: i64 = row.try_get("revoked")?;
        revoked += count(n);
        families.extend(row.try_get::<Vec<Uuid>, _>("live_families")?);
        if n >= seen {
            break;
        }
    }
    sqlx::query(&end_sessions)
        .bind(id)
        .bind(now)
        .bind(keep)
        .execute(&mut *tx)
        .await?;
    Ok((revoked, families))
}

/// Runs every write of the change inside the caller's transaction.
pub(super) async fn apply(tx: &mut PgConnection, change: &Change) -> StoreResult<Applied> {
    let now = change.now;
    let mut applied = Applied::default();
    super::outbox::lock_users(&mut *tx, change).await?;
    for write in &change.writes {
        match write {
            Write::CreateUser(new) => applied.user = Some(create_user(&mut *tx, new, now).await?),
            Write::UpdateUser { id, patch } => {
                applied.user = Some(
                    update_user(&mut *tx, *id, patch, now)
                        .await?
                        .ok_or(StoreError::NotFound)?,
                );
            }
            Write::RehashPassword {
                id,
                hashed_password,
            } => {
                rehash_password(&mut *tx, *id, hashed_password, now).await?;
            }
            Write::BumpTokenVersion { id } => {
                bump_token_version(&mut *tx, *id, now)
                    .await?
                    .ok_or(StoreError::NotFound)?;
            }
            Write::DeleteUser { id } => {
                if !delete_user(&mut *tx, *id).await? {
                    return Err(StoreError::NotFound);
                }
            }
            Write::CreateSession {
                session,
                first_token,
            } => {
                applied.token = Some(create_session(&mut *tx, session, first_token, now).await?);
            }
            Write::RevokeFamily { family_id } => {
                let (revoked, _) =
                    revoke_scope(&mut *tx, Scope::Family, *family_id, None, now).await?;
                applied.revoked += revoked;
            }
            Write::EndUserSessions { user_id, keep } => {
                let (revoked, families) =
                    revoke_scope(&mut *tx, Scope::UserExcept, *user_id, *keep, now).await?;
                applied.revoked += revoked;
                applied.ended += families.len() as u64;
            }
            Write::Audit { event, when } => {
                if applied.allows(*when) {
                    record_event(&mut *tx, &applied.fill(event), now).await?;
                }
            }
            Write::Webhook(event) => {
                if applied.allows(event.when) {
                    super::outbox::insert(&mut *tx, event, &applied, now).await?;
                }
            }
            Write::Abort => return Err(StoreError::Aborted),
        }
    }
    if let Some(user) = &applied.user {
        if change
            .writes
            .iter()
            .any(|w| matches!(w, Write::BumpTokenVersion { .. }))
        {
            applied.user = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
                .bind(user.id)
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(user_from_row)
                .transpose()?;
        }
    }
    Ok(applied)
}
