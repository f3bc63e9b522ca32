//! The embedded SQLite backend (the zero-configuration default).
//!
//! One writer connection and a pool of readers over a WAL-mode file: every write is
//! serialised through the single writer, so rotations never meet `SQLITE_BUSY` inside
//! the process, while reads proceed in parallel. Ids are stored as UUID text and
//! timestamps as fixed-width UTC text (see [`ts`]), so text comparison is time order.

use std::{path::Path, str::FromStr, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
    Row, SqlitePool,
};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::{
    map_unique, migrations, AuditEvent, AuditStore, CleanupLock, EventFilter, KeyStore,
    NewAuditEvent, NewRefreshToken, NewSession, NewUser, RefreshToken, RefreshTokenStore, Role,
    Rotated, Rotation, Session, SessionStore, SessionView, Store, StoreError, StoreResult,
    StoredKey, User, UserPatch, UserStore,
};

/// SQLite storage: a single-connection writer pool and a reader pool on one file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// SQLite is one process's database, so an in-process lock is the cleanup lock.
    cleanup_lock: Arc<Mutex<()>>,
}

const USER_COLS: &str = "id, email, hashed_password, full_name, is_active, is_verified, role, token_version, created_at, updated_at";
const TOKEN_COLS: &str = "id, token_hash, user_id, family_id, device_id, device_name, ip_address, expires_at, is_revoked, revoked_at, created_at, updated_at";
const SESSION_COLS: &str = "id, user_id, device_id, device_name, user_agent, ip_address, client_id, created_at, last_used_at, absolute_expires_at, revoked_at";
const EVENT_COLS: &str =
    "id, created_at, kind, user_id, session_id, ip_address, user_agent, detail";

impl SqliteStore {
    /// Opens (creating if needed) the database file and its parent directory.
    pub async fn open(path: &Path, max_readers: Option<u32>) -> StoreResult<Self> {
        if path.as_os_str() == ":memory:" {
            return Self::in_memory().await;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL is durable against process crashes; a power loss may
            // lose the last transactions but never corrupts the file.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory")
            .statement_cache_capacity(256);
        // A local file does not drop connections: skip sqlx's ping before each acquire,
        // a round trip to the connection's worker thread on every query.
        let writer = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(max_readers.unwrap_or(8))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        Ok(Self::from_pools(writer, reader))
    }

    /// A private in-memory database (`DATABASE_URL=sqlite::memory:`), gone when the
    /// process exits: one connection that is never closed, serving reads and writes.
    pub async fn in_memory() -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(":memory:")
            .foreign_keys(true)
            .statement_cache_capacity(256);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        Ok(Self::from_pools(pool.clone(), pool))
    }

    /// Uses pools the embedding application already has. `writer` should have one
    /// connection; `reader` may be the same pool.
    pub fn from_pools(writer: SqlitePool, reader: SqlitePool) -> Self {
        Self {
            writer,
            reader,
            cleanup_lock: Arc::new(Mutex::new(())),
        }
    }

    /// The writer pool, for tests that inspect the database directly.
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }
}

/// Formats a timestamp as rotor stores it in SQLite: `2026-11-23T03:51:16.034306Z`.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

fn col_ts(row: &SqliteRow, col: &str) -> StoreResult<DateTime<Utc>> {
    parse_ts(&row.try_get::<String, _>(col)?)
}

fn col_ts_opt(row: &SqliteRow, col: &str) -> StoreResult<Option<DateTime<Utc>>> {
    row.try_get::<Option<String>, _>(col)?
        .as_deref()
        .map(parse_ts)
        .transpose()
}

fn col_uuid(row: &SqliteRow, col: &str) -> StoreResult<Uuid> {
    let s: String = row.try_get(col)?;
    Uuid::from_str(&s).map_err(|e| StoreError::Corrupt(format!("uuid {s:?}: {e}")))
}

fn col_uuid_opt(row: &SqliteRow, col: &str) -> StoreResult<Option<Uuid>> {
    row.try_get::<Option<String>, _>(col)?
        .map(|s| Uuid::from_str(&s).map_err(|e| StoreError::Corrupt(format!("uuid {s:?}: {e}"))))
        .transpose()
}

fn user_from_row(row: &SqliteRow) -> StoreResult<User> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: col_uuid(row, "id")?,
        email: row.try_get("email")?,
        hashed_password: row.try_get("hashed_password")?,
        full_name: row.try_get("full_name")?,
        is_active: row.try_get("is_active")?,
        is_verified: row.try_get("is_verified")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
        token_version: row.try_get("token_version")?,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts_opt(row, "updated_at")?,
    })
}

fn token_from_row(row: &SqliteRow) -> StoreResult<RefreshToken> {
    Ok(RefreshToken {
        id: col_uuid(row, "id")?,
        token_hash: row.try_get("token_hash")?,
        user_id: col_uuid(row, "user_id")?,
        family_id: col_uuid(row, "family_id")?,
        device_id: row.try_get("device_id")?,
        device_name: row.try_get("device_name")?,
        ip_address: row.try_get("ip_address")?,
        expires_at: col_ts(row, "expires_at")?,
        is_revoked: row.try_get("is_revoked")?,
        revoked_at: col_ts_opt(row, "revoked_at")?,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts_opt(row, "updated_at")?,
    })
}

fn session_from_row(row: &SqliteRow) -> StoreResult<Session> {
    Ok(Session {
        id: col_uuid(row, "id")?,
        user_id: col_uuid(row, "user_id")?,
        device_id: row.try_get("device_id")?,
        device_name: row.try_get("device_name")?,
        user_agent: row.try_get("user_agent")?,
        ip_address: row.try_get("ip_address")?,
        client_id: row.try_get("client_id")?,
        created_at: col_ts(row, "created_at")?,
        last_used_at: col_ts(row, "last_used_at")?,
        absolute_expires_at: col_ts(row, "absolute_expires_at")?,
        revoked_at: col_ts_opt(row, "revoked_at")?,
    })
}

fn event_from_row(row: &SqliteRow) -> StoreResult<AuditEvent> {
    Ok(AuditEvent {
        id: col_uuid(row, "id")?,
        created_at: col_ts(row, "created_at")?,
        kind: row.try_get("kind")?,
        user_id: col_uuid_opt(row, "user_id")?,
        session_id: col_uuid_opt(row, "session_id")?,
        ip_address: row.try_get("ip_address")?,
        user_agent: row.try_get("user_agent")?,
        detail: row.try_get("detail")?,
    })
}

fn key_from_row(row: &SqliteRow) -> StoreResult<StoredKey> {
    Ok(StoredKey {
        kid: row.try_get("kid")?,
        algorithm: row.try_get("algorithm")?,
        public_key: row.try_get("public_key")?,
        private_key_sealed: row.try_get("private_key_sealed")?,
        created_at: col_ts(row, "created_at")?,
        retired_at: col_ts_opt(row, "retired_at")?,
    })
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn get_user(&self, id: Uuid) -> StoreResult<Option<User>> {
        sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn get_user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users WHERE lower(email) = lower(?1)"
        ))
        .bind(email)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn email_exists(&self, email: &str) -> StoreResult<bool> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM users WHERE lower(email) = lower(?1)")
                .bind(email)
                .fetch_one(&self.reader)
                .await?;
        Ok(n > 0)
    }

    async fn create_user(&self, new: &NewUser, now: DateTime<Utc>) -> StoreResult<User> {
        let row = sqlx::query(&format!(
            "INSERT INTO users (id, email, hashed_password, full_name, is_active, is_verified, role, token_version, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8) RETURNING {USER_COLS}"
        ))
        .bind(Uuid::now_v7().to_string())
        .bind(&new.email)
        .bind(&new.hashed_password)
        .bind(&new.full_name)
        .bind(new.is_active)
        .bind(new.is_verified)
        .bind(new.role.as_str())
        .bind(ts(now))
        .fetch_one(&self.writer)
        .await
        .map_err(map_unique)?;
        user_from_row(&row)
    }

    async fn update_user(
        &self,
        id: Uuid,
        patch: &UserPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<User>> {
        if patch.is_empty() {
            return self.get_user(id).await;
        }
        // Each field is `CASE WHEN <flag> THEN <value> ELSE column END`, so one
        // statement serves every combination of fields.
        let row = sqlx::query(&format!(
            "UPDATE users SET
                email = CASE WHEN ?2 THEN ?3 ELSE email END,
                full_name = CASE WHEN ?4 THEN ?5 ELSE full_name END,
                role = CASE WHEN ?6 THEN ?7 ELSE role END,
                is_active = CASE WHEN ?8 THEN ?9 ELSE is_active END,
                is_verified = CASE WHEN ?10 THEN ?11 ELSE is_verified END,
                hashed_password = CASE WHEN ?12 THEN ?13 ELSE hashed_password END,
                token_version = token_version + CASE WHEN ?12 THEN 1 ELSE 0 END,
                updated_at = ?14
             WHERE id = ?1 RETURNING {USER_COLS}"
        ))
        .bind(id.to_string())
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
        .bind(ts(now))
        .fetch_optional(&self.writer)
        .await
        .map_err(map_unique)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn update_password(
        &self,
        id: Uuid,
        hashed_password: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE users SET hashed_password = ?2, token_version = token_version + 1, updated_at = ?3 WHERE id = ?1",
        )
        .bind(id.to_string())
        .bind(hashed_password)
        .bind(ts(now))
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn rehash_password(
        &self,
        id: Uuid,
        hashed_password: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE users SET hashed_password = ?2, updated_at = ?3 WHERE id = ?1")
            .bind(id.to_string())
            .bind(hashed_password)
            .bind(ts(now))
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn increment_token_version(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(
            "UPDATE users SET token_version = token_version + 1, updated_at = ?2 WHERE id = ?1 RETURNING token_version",
        )
        .bind(id.to_string())
        .bind(ts(now))
        .fetch_optional(&self.writer)
        .await?)
    }

    async fn delete_user(&self, id: Uuid) -> StoreResult<bool> {
        let r = sqlx::query("DELETE FROM users WHERE id = ?1")
            .bind(id.to_string())
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn list_users(&self, skip: u64, limit: u64) -> StoreResult<Vec<User>> {
        sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users ORDER BY created_at, id LIMIT ?1 OFFSET ?2"
        ))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(skip).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(user_from_row)
        .collect()
    }

    async fn count_users(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.reader)
            .await?;
        Ok(count(n))
    }
}

#[async_trait]
impl RefreshTokenStore for SqliteStore {
    async fn get_by_hash(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM refresh_tokens WHERE token_hash = ?1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.reader)
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
            "SELECT {TOKEN_COLS} FROM refresh_tokens WHERE token_hash = ?1 AND is_revoked = 0 AND expires_at > ?2"
        ))
        .bind(token_hash)
        .bind(ts(now))
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(token_from_row)
        .transpose()
    }

    async fn get_token(&self, id: Uuid) -> StoreResult<Option<RefreshToken>> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM refresh_tokens WHERE id = ?1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(token_from_row)
        .transpose()
    }

    async fn create_token(
        &self,
        new: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> StoreResult<RefreshToken> {
        let row = insert_token(new, now)
            .fetch_one(&self.writer)
            .await
            .map_err(map_unique)?;
        token_from_row(&row)
    }

    async fn revoke_token(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<RefreshToken>> {
        sqlx::query(&format!(
            "UPDATE refresh_tokens SET is_revoked = 1, revoked_at = COALESCE(revoked_at, ?2), updated_at = ?2
             WHERE id = ?1 RETURNING {TOKEN_COLS}"
        ))
        .bind(id.to_string())
        .bind(ts(now))
        .fetch_optional(&self.writer)
        .await?
        .as_ref()
        .map(token_from_row)
        .transpose()
    }

    async fn revoke_family(&self, family_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.writer.begin().await?;
        let r = sqlx::query(
            "UPDATE refresh_tokens SET is_revoked = 1, revoked_at = ?2, updated_at = ?2 WHERE family_id = ?1 AND is_revoked = 0",
        )
        .bind(family_id.to_string())
        .bind(ts(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")
            .bind(family_id.to_string())
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    async fn revoke_all_user_tokens(&self, user_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.writer.begin().await?;
        let r = sqlx::query(
            "UPDATE refresh_tokens SET is_revoked = 1, revoked_at = ?2, updated_at = ?2 WHERE user_id = ?1 AND is_revoked = 0",
        )
        .bind(user_id.to_string())
        .bind(ts(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
        )
        .bind(user_id.to_string())
        .bind(ts(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    async fn revoke_user_families_except(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let keep = keep.map(|k| k.to_string()).unwrap_or_default();
        let mut tx = self.writer.begin().await?;
        let families: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT family_id) FROM refresh_tokens
             WHERE user_id = ?1 AND is_revoked = 0 AND expires_at > ?2 AND family_id <> ?3",
        )
        .bind(user_id.to_string())
        .bind(ts(now))
        .bind(&keep)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET is_revoked = 1, revoked_at = ?2, updated_at = ?2
             WHERE user_id = ?1 AND is_revoked = 0 AND family_id <> ?3",
        )
        .bind(user_id.to_string())
        .bind(ts(now))
        .bind(&keep)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL AND id <> ?3")
            .bind(user_id.to_string())
            .bind(ts(now))
            .bind(&keep)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(count(families))
    }

    async fn get_user_active_sessions(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RefreshToken>> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM refresh_tokens WHERE user_id = ?1 AND is_revoked = 0 AND expires_at > ?2
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(user_id.to_string())
        .bind(ts(now))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(token_from_row)
        .collect()
    }

    async fn cleanup_expired(&self, now: DateTime<Utc>, batch: u32) -> StoreResult<u64> {
        let mut total = 0;
        loop {
            let n = self.delete_expired_tokens_batch(now, batch).await?;
            total += n;
            if n < u64::from(batch) {
                return Ok(total);
            }
        }
    }

    async fn delete_expired_tokens_batch(
        &self,
        now: DateTime<Utc>,
        batch: u32,
    ) -> StoreResult<u64> {
        let r = sqlx::query(
            "DELETE FROM refresh_tokens WHERE rowid IN
               (SELECT rowid FROM refresh_tokens WHERE expires_at <= ?1 LIMIT ?2)",
        )
        .bind(ts(now))
        .bind(i64::from(batch))
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected())
    }

    async fn count_expired_tokens(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE expires_at <= ?1")
                .bind(ts(now))
                .fetch_one(&self.reader)
                .await?;
        Ok(count(n))
    }

    async fn delete_token(&self, id: Uuid) -> StoreResult<bool> {
        let r = sqlx::query("DELETE FROM refresh_tokens WHERE id = ?1")
            .bind(id.to_string())
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn list_tokens(&self, skip: u64, limit: u64) -> StoreResult<Vec<RefreshToken>> {
        sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM refresh_tokens ORDER BY created_at, id LIMIT ?1 OFFSET ?2"
        ))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(skip).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(token_from_row)
        .collect()
    }

    async fn count_tokens(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens")
            .fetch_one(&self.reader)
            .await?;
        Ok(count(n))
    }

    async fn rotate(&self, rot: &Rotation<'_>) -> StoreResult<Option<Rotated>> {
        let now = ts(rot.now);
        // The writer is a single connection, so this transaction is the only writer in
        // the process; the conditional UPDATE is what makes it safe across processes.
        let mut tx = self.writer.begin().await?;
        let old = sqlx::query(
            "UPDATE refresh_tokens SET is_revoked = 1, revoked_at = ?1, updated_at = ?1
             WHERE token_hash = ?2 AND is_revoked = 0 AND expires_at > ?1
               AND EXISTS (SELECT 1 FROM users u WHERE u.id = refresh_tokens.user_id AND u.is_active)
               AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = refresh_tokens.family_id AND s.revoked_at IS NOT NULL)
             RETURNING user_id, family_id, device_id, device_name,
                       (SELECT token_version FROM users u WHERE u.id = refresh_tokens.user_id) AS token_version,
                       (SELECT absolute_expires_at FROM sessions s WHERE s.id = refresh_tokens.family_id) AS absolute_expires_at",
        )
        .bind(&now)
        .bind(rot.presented_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(old) = old else {
            tx.rollback().await?;
            return Ok(None);
        };
        let user_id: String = old.try_get("user_id")?;
        let family_id: String = old.try_get("family_id")?;
        let token_version: i64 = old.try_get("token_version")?;
        let cap = col_ts_opt(&old, "absolute_expires_at")?;
        let expires_at = match cap {
            Some(end) if end < rot.expires_at => end,
            _ => rot.expires_at,
        };
        let new = NewRefreshToken {
            id: rot.successor_id,
            user_id: col_uuid(&old, "user_id")?,
            token_hash: rot.successor_hash.to_owned(),
            family_id: col_uuid(&old, "family_id")?,
            expires_at,
            device_id: old.try_get("device_id")?,
            device_name: old.try_get("device_name")?,
            ip_address: rot.ip_address.map(str::to_owned),
            is_revoked: false,
        };
        let row = insert_token(&new, rot.now)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_unique)?;
        sqlx::query("UPDATE sessions SET last_used_at = ?2, ip_address = COALESCE(?3, ip_address) WHERE id = ?1")
            .bind(&family_id)
            .bind(&now)
            .bind(rot.ip_address)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO audit_events (id, created_at, kind, user_id, session_id, ip_address, user_agent)
             VALUES (?1, ?2, 'refresh', ?3, ?4, ?5, ?6)",
        )
        .bind(rot.event_id.to_string())
        .bind(&now)
        .bind(&user_id)
        .bind(&family_id)
        .bind(rot.ip_address)
        .bind(rot.user_agent)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Rotated {
            token: token_from_row(&row)?,
            token_version,
        }))
    }
}

fn insert_token(
    new: &NewRefreshToken,
    now: DateTime<Utc>,
) -> sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'static>> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, device_id, device_name, ip_address,
                                     expires_at, is_revoked, revoked_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, CASE WHEN ?9 THEN ?10 END, ?10)
         RETURNING id, token_hash, user_id, family_id, device_id, device_name, ip_address, expires_at, is_revoked, revoked_at, created_at, updated_at",
    )
    .bind(new.id.to_string())
    .bind(new.token_hash.clone())
    .bind(new.user_id.to_string())
    .bind(new.family_id.to_string())
    .bind(new.device_id.clone())
    .bind(new.device_name.clone())
    .bind(new.ip_address.clone())
    .bind(ts(new.expires_at))
    .bind(new.is_revoked)
    .bind(ts(now))
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(
        &self,
        s: &NewSession,
        first: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> StoreResult<RefreshToken> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, device_id, device_name, user_agent, ip_address, client_id,
                                   created_at, last_used_at, absolute_expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
        )
        .bind(s.id.to_string())
        .bind(s.user_id.to_string())
        .bind(&s.device_id)
        .bind(&s.device_name)
        .bind(&s.user_agent)
        .bind(&s.ip_address)
        .bind(&s.client_id)
        .bind(ts(now))
        .bind(ts(s.absolute_expires_at))
        .execute(&mut *tx)
        .await
        .map_err(map_unique)?;
        let row = insert_token(first, now)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_unique)?;
        tx.commit().await?;
        token_from_row(&row)
    }

    async fn get_session(&self, id: Uuid) -> StoreResult<Option<Session>> {
        sqlx::query(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE id = ?1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.reader)
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
        sqlx::query("UPDATE sessions SET last_used_at = ?2, ip_address = COALESCE(?3, ip_address) WHERE id = ?1")
            .bind(id.to_string())
            .bind(ts(now))
            .bind(ip)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn list_user_sessions(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<SessionView>> {
        let rows = sqlx::query(
            "SELECT t.family_id AS id,
                    COALESCE(s.device_id, t.device_id) AS device_id,
                    COALESCE(s.device_name, t.device_name) AS device_name,
                    s.user_agent AS user_agent,
                    COALESCE(s.ip_address, t.ip_address) AS ip_address,
                    COALESCE(s.created_at, t.created_at) AS created_at,
                    COALESCE(s.last_used_at, t.created_at) AS last_used_at,
                    t.expires_at AS expires_at
             FROM refresh_tokens t LEFT JOIN sessions s ON s.id = t.family_id
             WHERE t.user_id = ?1 AND t.is_revoked = 0 AND t.expires_at > ?2 AND s.revoked_at IS NULL
             ORDER BY last_used_at DESC, id DESC",
        )
        .bind(user_id.to_string())
        .bind(ts(now))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SessionView {
                    id: col_uuid(row, "id")?,
                    device_id: row.try_get("device_id")?,
                    device_name: row.try_get("device_name")?,
                    user_agent: row.try_get("user_agent")?,
                    ip_address: row.try_get("ip_address")?,
                    created_at: col_ts(row, "created_at")?,
                    last_used_at: col_ts(row, "last_used_at")?,
                    expires_at: col_ts(row, "expires_at")?,
                })
            })
            .collect()
    }

    async fn session_revoked(&self, id: Uuid) -> StoreResult<bool> {
        let revoked: Option<Option<String>> =
            sqlx::query_scalar("SELECT revoked_at FROM sessions WHERE id = ?1")
                .bind(id.to_string())
                .fetch_optional(&self.reader)
                .await?;
        Ok(matches!(revoked, Some(Some(_))))
    }

    async fn delete_expired_sessions_batch(
        &self,
        now: DateTime<Utc>,
        batch: u32,
    ) -> StoreResult<u64> {
        let r = sqlx::query(
            "DELETE FROM sessions WHERE rowid IN
               (SELECT rowid FROM sessions WHERE absolute_expires_at <= ?1 LIMIT ?2)",
        )
        .bind(ts(now))
        .bind(i64::from(batch))
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected())
    }

    async fn count_expired_sessions(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sessions WHERE absolute_expires_at <= ?1")
                .bind(ts(now))
                .fetch_one(&self.reader)
                .await?;
        Ok(count(n))
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn record_event(&self, e: &NewAuditEvent, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_events (id, created_at, kind, user_id, session_id, ip_address, user_agent, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(ts(now))
        .bind(e.kind)
        .bind(e.user_id.map(|u| u.to_string()))
        .bind(e.session_id.map(|u| u.to_string()))
        .bind(&e.ip_address)
        .bind(&e.user_agent)
        .bind(&e.detail)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn list_events(
        &self,
        f: &EventFilter,
        skip: u64,
        limit: u64,
    ) -> StoreResult<Vec<AuditEvent>> {
        sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM audit_events
             WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR kind = ?2)
             ORDER BY created_at DESC, id DESC LIMIT ?3 OFFSET ?4"
        ))
        .bind(f.user_id.map(|u| u.to_string()))
        .bind(f.kind.as_deref())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(skip).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(event_from_row)
        .collect()
    }

    async fn count_events(&self, f: &EventFilter) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_events WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR kind = ?2)",
        )
        .bind(f.user_id.map(|u| u.to_string()))
        .bind(f.kind.as_deref())
        .fetch_one(&self.reader)
        .await?;
        Ok(count(n))
    }

    async fn delete_events_before_batch(
        &self,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> StoreResult<u64> {
        let r = sqlx::query(
            "DELETE FROM audit_events WHERE rowid IN
               (SELECT rowid FROM audit_events WHERE created_at < ?1 LIMIT ?2)",
        )
        .bind(ts(cutoff))
        .bind(i64::from(batch))
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected())
    }

    async fn count_events_before(&self, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE created_at < ?1")
            .bind(ts(cutoff))
            .fetch_one(&self.reader)
            .await?;
        Ok(count(n))
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_key(&self, k: &StoredKey) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, public_key, private_key_sealed, created_at, retired_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&k.kid)
        .bind(&k.algorithm)
        .bind(&k.public_key)
        .bind(&k.private_key_sealed)
        .bind(ts(k.created_at))
        .bind(k.retired_at.map(ts))
        .execute(&self.writer)
        .await
        .map_err(map_unique)?;
        Ok(())
    }

    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>> {
        sqlx::query(
            "SELECT kid, algorithm, public_key, private_key_sealed, created_at, retired_at
             FROM signing_keys ORDER BY created_at DESC, kid DESC",
        )
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(key_from_row)
        .collect()
    }

    async fn retire_key(&self, kid: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE signing_keys SET retired_at = ?2 WHERE kid = ?1 AND retired_at IS NULL",
        )
        .bind(kid)
        .bind(ts(now))
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_keys_retired_before(&self, cutoff: DateTime<Utc>) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at <= ?1 RETURNING kid")
            .bind(ts(cutoff))
            .fetch_all(&self.writer)
            .await?)
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> StoreResult<()> {
        migrations::migrator(migrations::SQLITE)
            .await?
            .run(&self.writer)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn try_cleanup_lock(&self) -> StoreResult<Option<CleanupLock>> {
        match self.cleanup_lock.clone().try_lock_owned() {
            Ok(guard) => Ok(Some(CleanupLock::new(move || {
                Box::pin(async move {
                    drop(guard);
                })
            }))),
            Err(_) => Ok(None),
        }
    }

    fn pool_stats(&self) -> (u32, u32) {
        (
            self.writer.size() + self.reader.size(),
            u32::try_from(self.writer.num_idle() + self.reader.num_idle()).unwrap_or(u32::MAX),
        )
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}
