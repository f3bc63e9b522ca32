//! The embedded SQLite backend (the zero-configuration default).
//!
//! Every write of the process goes through one writer thread that commits whatever is
//! queued as one transaction ([`engine`]); reads run on a pool of read-only
//! connections over the same WAL-mode file, so they never wait for the writer. Each
//! trait method is one job: a rotation, say, is one call to the writer thread, where
//! its four statements run back to back on prepared statements.
//!
//! Ids are stored as UUID text and timestamps as fixed-width UTC text (see [`ts`]), so
//! text comparison is time order ([`rows`]).

pub mod backup;
mod engine;
pub(crate) mod rows;
mod writes;

use std::{
    path::Path,
    sync::{Arc, LazyLock},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::domain::email::EmailKey;

pub use self::rows::ts;
use self::{
    engine::Engine,
    rows::{
        all, col_ts_opt, col_uuid, count, exec, int, one, EVENT_COLS, KEY_COLS, TOKEN_COLS,
        USER_COLS,
    },
};
use super::{
    email_keys, migrations, AuditEvent, AuditStore, CleanupLock, EventFilter, KeyStore,
    NewAuditEvent, NewRefreshToken, NewSession, NewUser, RefreshToken, RefreshTokenStore, Rotated,
    Rotation, Session, SessionStore, SessionView, Store, StoreError, StoreResult, StoredKey, User,
    UserPatch, UserStore,
};

/// A session with its last use: rotations do not write to `sessions` (one row update
/// fewer per refresh); the family's live token was created by the latest login or
/// rotation, from the latest IP. `last_used_at` on the row itself records the login and
/// grace-window reuses.
const SESSION_WITH_LAST_USE: &str =
    "SELECT s.id, s.user_id, s.device_id, s.device_name, s.user_agent, s.client_id,
            s.created_at, s.absolute_expires_at, s.revoked_at,
            max(s.last_used_at, COALESCE(t.created_at, s.last_used_at)) AS last_used_at,
            CASE WHEN t.created_at > s.last_used_at THEN COALESCE(t.ip_address, s.ip_address)
                 ELSE s.ip_address END AS ip_address
     FROM sessions s LEFT JOIN refresh_tokens t ON t.family_id = s.id AND t.is_revoked = 0
     WHERE s.id = ?1";

/// Read-only connections opened when the settings do not say.
const DEFAULT_READERS: usize = 4;

/// SQLite storage: one writer thread and a pool of readers on one file.
#[derive(Clone)]
pub struct SqliteStore {
    engine: Arc<Engine>,
    /// SQLite is one process's database, so an in-process lock is the cleanup lock.
    cleanup_lock: Arc<Mutex<()>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// Creates `dir` and any missing parents with mode 0700 (on Unix); directories that
/// already exist keep the mode their owner chose.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates the database file, empty, with mode 0600 (on Unix) if it does not exist, so
/// SQLite opens a private file — and its `-wal` and `-shm` files, which SQLite creates
/// with the database file's permissions, are private too. An existing file is left
/// as it is (with a warning when others can read it).
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(meta) = std::fs::metadata(path) {
                    if meta.permissions().mode() & 0o077 != 0 {
                        tracing::warn!(
                            path = %path.display(),
                            mode = format!("{:o}", meta.permissions().mode() & 0o777),
                            "the database file is accessible to other users; consider chmod 600"
                        );
                    }
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and its parent directory, with
    /// `readers` read-only connections (default 4). `:memory:` opens a private
    /// in-memory database.
    pub async fn open(path: &Path, readers: Option<u32>) -> StoreResult<Self> {
        if path.as_os_str() == ":memory:" {
            return Self::in_memory().await;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        create_private_file(path).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", path.display()))
        })?;
        let readers = readers.map_or(DEFAULT_READERS, |n| (n as usize).max(1));
        let path = path.to_owned();
        // Opening touches the disk (and may wait on another process's lock).
        let engine = tokio::task::spawn_blocking(move || Engine::open_file(&path, readers))
            .await
            .map_err(|e| StoreError::Unavailable(format!("open task failed: {e}")))??;
        Ok(Self::from_engine(engine))
    }

    /// A private in-memory database (`DATABASE_URL=sqlite::memory:`), gone when the
    /// store is dropped: one connection, serving reads and writes.
    pub async fn in_memory() -> StoreResult<Self> {
        Ok(Self::from_engine(Engine::open_memory()?))
    }

    fn from_engine(engine: Engine) -> Self {
        Self {
            engine: Arc::new(engine),
            cleanup_lock: Arc::new(Mutex::new(())),
        }
    }

    async fn read<T, F>(&self, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.engine.read(job).await
    }

    async fn write<T, F>(&self, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.engine.write(job).await
    }
}

/// Fills missing `users.email_key` values and builds their unique index (see
/// [`email_keys`]); runs in the migration's write job, so it commits or changes
/// nothing.
fn key_emails(c: &Connection) -> StoreResult<()> {
    let pending = count(
        c,
        "SELECT EXISTS (SELECT 1 FROM users WHERE email_key IS NULL)
             OR NOT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'ux_users_email_key')",
        [],
    )? > 0;
    if !pending {
        return Ok(());
    }
    let rows = all(
        c,
        "SELECT id, email, email_key, created_at FROM users",
        [],
        |r| {
            Ok(email_keys::Row {
                id: col_uuid(r, "id")?,
                email: r.get("email")?,
                email_key: r.get("email_key")?,
                created_at: rows::col_ts(r, "created_at")?,
            })
        },
    )?;
    let plan = email_keys::plan(rows);
    if !plan.collisions.is_empty() {
        return Err(StoreError::EmailCollisions(email_keys::EmailCollisions(
            plan.collisions,
        )));
    }
    for (id, key) in &plan.updates {
        exec(
            c,
            "UPDATE users SET email_key = ?2 WHERE id = ?1",
            params![id.to_string(), key],
        )?;
    }
    c.execute_batch(
        "CREATE UNIQUE INDEX IF NOT EXISTS ux_users_email_key ON users (email_key);
         DROP INDEX IF EXISTS ix_users_email_lower;",
    )?;
    Ok(())
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn get_user(&self, id: Uuid) -> StoreResult<Option<User>> {
        self.read(move |c| {
            one(
                c,
                &format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
                [id.to_string()],
                rows::user,
            )
        })
        .await
    }

    async fn get_user_by_email(&self, key: &EmailKey) -> StoreResult<Option<User>> {
        let key = key.as_str().to_owned();
        self.read(move |c| {
            one(
                c,
                &format!("SELECT {USER_COLS} FROM users WHERE email_key = ?1"),
                [key],
                rows::user,
            )
        })
        .await
    }

    async fn get_user_by_unkeyed_email(&self, email: &str) -> StoreResult<Option<User>> {
        let email = email.to_owned();
        self.read(move |c| {
            one(
                c,
                &format!("SELECT {USER_COLS} FROM users WHERE email_key IS NULL AND email = ?1"),
                [email],
                rows::user,
            )
        })
        .await
    }

    async fn email_exists(&self, key: &EmailKey) -> StoreResult<bool> {
        let key = key.as_str().to_owned();
        self.read(move |c| count(c, "SELECT count(*) FROM users WHERE email_key = ?1", [key]))
            .await
            .map(|n| n > 0)
    }

    async fn create_user(&self, new: &NewUser, now: DateTime<Utc>) -> StoreResult<User> {
        let new = new.clone();
        self.write(move |c| writes::create_user(c, &new, now)).await
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
        let p = patch.clone();
        self.write(move |c| writes::update_user(c, id, &p, now))
            .await
    }

    async fn update_password(
        &self,
        id: Uuid,
        hashed_password: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let hashed = hashed_password.to_owned();
        self.write(move |c| {
            exec(
                c,
                "UPDATE users SET hashed_password = ?2, token_version = token_version + 1, updated_at = ?3 WHERE id = ?1",
                params![id.to_string(), hashed, ts(now)],
            )
        })
        .await
        .map(|n| n == 1)
    }

    async fn rehash_password(
        &self,
        id: Uuid,
        hashed_password: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let hashed = hashed_password.to_owned();
        self.write(move |c| writes::rehash_password(c, id, &hashed, now))
            .await
    }

    async fn increment_token_version(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>> {
        self.write(move |c| writes::bump_token_version(c, id, now))
            .await
    }

    async fn delete_user(&self, id: Uuid) -> StoreResult<bool> {
        self.write(move |c| writes::delete_user(c, id)).await
    }

    async fn list_users(&self, skip: u64, limit: u64) -> StoreResult<Vec<User>> {
        self.read(move |c| {
            all(
                c,
                &format!(
                    "SELECT {USER_COLS} FROM users ORDER BY created_at, id LIMIT ?1 OFFSET ?2"
                ),
                [int(limit), int(skip)],
                rows::user,
            )
        })
        .await
    }

    async fn count_users(&self) -> StoreResult<u64> {
        self.read(|c| count(c, "SELECT count(*) FROM users", []))
            .await
    }
}

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

    async fn get_token(&self, id: Uuid) -> StoreResult<Option<RefreshToken>> {
        self.read(move |c| {
            one(
                c,
                &format!("SELECT {TOKEN_COLS} FROM refresh_tokens WHERE id = ?1"),
                [id.to_string()],
                rows::token,
            )
        })
        .await
    }

    async fn create_token(
        &self,
        new: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> StoreResult<RefreshToken> {
        let new = new.clone();
        self.write(move |c| insert_token(c, &new, now)).await
    }

    async fn revoke_token(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<RefreshToken>> {
        self.write(move |c| {
            one(
                c,
                &format!(
                    "UPDATE refresh_tokens
                     SET is_revoked = 1, revoked_at = COALESCE(revoked_at, ?2), updated_at = ?2
                     WHERE id = ?1 RETURNING {TOKEN_COLS}"
                ),
                [id.to_string(), ts(now)],
                rows::token,
            )
        })
        .await
    }

    async fn revoke_family(&self, family_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64> {
        self.write(move |c| writes::revoke_family(c, family_id, now))
            .await
    }

    async fn revoke_all_user_tokens(&self, user_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64> {
        self.write(move |c| writes::end_user_sessions(c, user_id, None, now).map(|(t, _)| t))
            .await
    }

    async fn revoke_user_families_except(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.write(move |c| writes::end_user_sessions(c, user_id, keep, now).map(|(_, f)| f))
            .await
    }

    async fn get_user_active_sessions(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RefreshToken>> {
        self.read(move |c| {
            all(
                c,
                &format!(
                    "SELECT {TOKEN_COLS} FROM refresh_tokens
                     WHERE user_id = ?1 AND is_revoked = 0 AND expires_at > ?2
                     ORDER BY created_at DESC, id DESC"
                ),
                [user_id.to_string(), ts(now)],
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

    async fn delete_token(&self, id: Uuid) -> StoreResult<bool> {
        self.write(move |c| {
            exec(
                c,
                "DELETE FROM refresh_tokens WHERE id = ?1",
                [id.to_string()],
            )
        })
        .await
        .map(|n| n == 1)
    }

    async fn list_tokens(&self, skip: u64, limit: u64) -> StoreResult<Vec<RefreshToken>> {
        self.read(move |c| {
            all(
                c,
                &format!(
                    "SELECT {TOKEN_COLS} FROM refresh_tokens ORDER BY created_at, id LIMIT ?1 OFFSET ?2"
                ),
                [int(limit), int(skip)],
                rows::token,
            )
        })
        .await
    }

    async fn count_tokens(&self) -> StoreResult<u64> {
        self.read(|c| count(c, "SELECT count(*) FROM refresh_tokens", []))
            .await
    }

    async fn rotate(&self, rot: &Rotation<'_>) -> StoreResult<Option<Rotated>> {
        let rot = OwnedRotation::from(rot);
        self.write(move |c| rotate(c, &rot)).await
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
/// live (conditional UPDATE: this is what makes it safe against other processes on the
/// same file), insert its successor and its audit row. The session row is not written:
/// its last use is read off the live token ([`SESSION_WITH_LAST_USE`]).
fn rotate(c: &Connection, rot: &OwnedRotation) -> StoreResult<Option<Rotated>> {
    let now = ts(rot.now);
    let old = one(
        c,
        "UPDATE refresh_tokens SET is_revoked = 1, revoked_at = ?1, updated_at = ?1
         WHERE token_hash = ?2 AND is_revoked = 0 AND expires_at > ?1
           AND EXISTS (SELECT 1 FROM users u WHERE u.id = refresh_tokens.user_id AND u.is_active)
           AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = refresh_tokens.family_id AND s.revoked_at IS NOT NULL)
         RETURNING user_id, family_id, device_id, device_name,
                   (SELECT token_version FROM users u WHERE u.id = refresh_tokens.user_id) AS token_version,
                   (SELECT absolute_expires_at FROM sessions s WHERE s.id = refresh_tokens.family_id) AS absolute_expires_at",
        [&now, &rot.presented_hash],
        |row| {
            Ok((
                col_uuid(row, "user_id")?,
                col_uuid(row, "family_id")?,
                row.get::<_, Option<String>>("device_id")?,
                row.get::<_, Option<String>>("device_name")?,
                row.get::<_, i64>("token_version")?,
                col_ts_opt(row, "absolute_expires_at")?,
            ))
        },
    )?;
    let Some((user_id, family_id, device_id, device_name, token_version, session_end)) = old else {
        return Ok(None);
    };
    let expires_at = match session_end {
        Some(end) if end < rot.expires_at => end,
        _ => rot.expires_at,
    };
    let successor = NewRefreshToken {
        id: rot.successor_id,
        user_id,
        token_hash: rot.successor_hash.clone(),
        family_id,
        expires_at,
        device_id,
        device_name,
        ip_address: rot.ip_address.clone(),
        is_revoked: false,
    };
    let token = insert_token(c, &successor, rot.now)?;
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
        token,
        token_version,
    }))
}

fn insert_token(
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

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(
        &self,
        s: &NewSession,
        first: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> StoreResult<RefreshToken> {
        let (s, first) = (s.clone(), first.clone());
        self.write(move |c| writes::create_session(c, &s, &first, now))
            .await
    }

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
        self.read(move |c| {
            one(
                c,
                // No session row: ended unless the family has a live token (a family
                // from the seed API or migrated from the original).
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM sessions WHERE id = ?1)
                     THEN (SELECT revoked_at IS NOT NULL FROM sessions WHERE id = ?1)
                     ELSE NOT EXISTS (SELECT 1 FROM refresh_tokens
                                      WHERE family_id = ?1 AND is_revoked = 0) END",
                [id.to_string()],
                |r| Ok(r.get::<_, bool>(0)?),
            )
        })
        .await
        .map(|revoked| revoked != Some(false))
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

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_key(&self, k: &StoredKey) -> StoreResult<()> {
        let k = k.clone();
        self.write(move |c| {
            exec(
                c,
                &format!("INSERT INTO signing_keys ({KEY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![
                    k.kid,
                    k.algorithm,
                    k.public_key,
                    k.private_key_sealed,
                    ts(k.created_at),
                    k.retired_at.map(ts),
                ],
            )
            .map(drop)
        })
        .await
    }

    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>> {
        self.read(|c| {
            all(
                c,
                &format!("SELECT {KEY_COLS} FROM signing_keys ORDER BY created_at DESC, kid DESC"),
                [],
                rows::key,
            )
        })
        .await
    }

    async fn retire_key(&self, kid: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let kid = kid.to_owned();
        self.write(move |c| {
            exec(
                c,
                "UPDATE signing_keys SET retired_at = ?2 WHERE kid = ?1 AND retired_at IS NULL",
                [kid, ts(now)],
            )
        })
        .await
        .map(|n| n == 1)
    }

    async fn delete_keys_retired_before(&self, cutoff: DateTime<Utc>) -> StoreResult<Vec<String>> {
        self.write(move |c| {
            all(
                c,
                "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at <= ?1 RETURNING kid",
                [ts(cutoff)],
                |r| Ok(r.get(0)?),
            )
        })
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> StoreResult<()> {
        // Two jobs, as on PostgreSQL: the schema commits even when the keys cannot be
        // filled because accounts collide (so `rotor users set-email` can fix them).
        self.write(|c| migrations::apply_sqlite(c, migrations::SQLITE))
            .await?;
        self.write(key_emails).await
    }

    async fn apply(&self, change: &super::change::Change) -> StoreResult<super::change::Applied> {
        let change = change.clone();
        self.write(move |c| writes::apply(c, &change)).await
    }

    async fn migrate_preview(&self) -> StoreResult<super::MigrationPreview> {
        self.read(|c| {
            let has_table = count(
                c,
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
                [],
            )? > 0;
            if !has_table {
                return Ok(super::MigrationPreview {
                    summary: "empty database: rotor's schema would be created".into(),
                    blocked: false,
                });
            }
            let applied = all(
                c,
                "SELECT version FROM _sqlx_migrations WHERE success",
                [],
                |r| Ok(r.get::<_, i64>(0)?),
            )?;
            let has_key = count(
                c,
                "SELECT count(*) FROM pragma_table_info('users') WHERE name = 'email_key'",
                [],
            )? > 0;
            let sql = if has_key {
                "SELECT id, email, email_key, created_at FROM users"
            } else {
                "SELECT id, email, NULL AS email_key, created_at FROM users"
            };
            let rows = all(c, sql, [], |r| {
                Ok(email_keys::Row {
                    id: col_uuid(r, "id")?,
                    email: r.get("email")?,
                    email_key: r.get("email_key")?,
                    created_at: rows::col_ts(r, "created_at")?,
                })
            })?;
            Ok(super::MigrationPreview::for_rotor(
                migrations::SQLITE,
                &applied,
                rows,
            ))
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| count(c, "SELECT 1", []).map(drop)).await
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
        self.engine.stats()
    }

    async fn close(&self) {
        self.engine.close().await;
    }
}
