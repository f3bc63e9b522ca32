//! The embedded SQLite backend (the zero-configuration default).
//!
//! Every write of the process goes through one writer thread that commits whatever is
//! queued as one transaction (`engine`); reads run on a pool of read-only
//! connections over the same WAL-mode file, so they never wait for the writer. Each
//! trait method is one job: a rotation, say, is one call to the writer thread, where
//! its four statements run back to back on prepared statements.
//!
//! Ids are stored as UUID text and timestamps as fixed-width UTC text (`rows::ts`), so
//! text comparison is time order.

mod audit;
pub(crate) mod backup;
mod engine;
mod keys;
mod outbox;
mod repository;
pub(crate) mod rows;
mod sessions;
mod tokens;
mod users;
mod writes;

use self::tokens::insert_token;

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
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
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
impl Store for SqliteStore {
    fn repository(&self) -> &dyn super::SeedRepository {
        self
    }

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

    async fn user_and_session_ended(
        &self,
        user_id: Uuid,
        session: Option<Uuid>,
    ) -> StoreResult<Option<(User, bool)>> {
        // One reader job (one hand-off to the blocking pool), one statement (one read
        // transaction) for both.
        static QUERY: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {USER_COLS}, ?2 IS NOT NULL AND ({}) AS session_ended
                 FROM users WHERE id = ?1",
                sessions::SESSION_ENDED.replace("?1", "?2")
            )
        });
        let session = session.map(|s| s.to_string());
        self.read(move |c| {
            one(c, &QUERY, params![user_id.to_string(), session], |row| {
                let ended: Option<bool> = row.get(rows::at(row, 10, "session_ended"))?;
                Ok((rows::user(row)?, ended.unwrap_or(false)))
            })
        })
        .await
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
