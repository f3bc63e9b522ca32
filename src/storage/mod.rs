//! Storage: the repository traits every backend implements, and their row types.
//!
//! Two sets of traits:
//!
//! - the production traits, [`UserStore`], [`RefreshTokenStore`], [`SessionStore`],
//!   [`AuditStore`], [`KeyStore`] and [`Store`], hold exactly what the service calls:
//!   the reads of the original's repositories it uses (a token by hash, a user by id or
//!   email, lists and counts), what rotor adds (the atomic rotation primitive,
//!   sessions, the audit log, the signing-key ring, batched cleanup) and
//!   [`Store::apply`], through which every use case writes;
//! - [`SeedRepository`] holds the rest of the seed's documented
//!   repository API (create a token, revoke one token, a family or all of a user's,
//!   list live ones, clean up, the generic get/list/count/create/delete), which the
//!   service does not call. Both backends implement it, and so does `dyn Store`
//!   (through [`Store::repository`]); the conformance suite tests it on both.
//!
//! Each backend has the same layout, one file per trait (`users.rs`, `tokens.rs`,
//! `sessions.rs`, `audit.rs`, `keys.rs`, `repository.rs`) beside its `mod.rs` (the
//! store and `impl Store`) and `writes.rs`.
//! Every method that depends on time takes `now` from the caller's [`Clock`], so the
//! database clock is never consulted.
//!
//! [`Clock`]: crate::clock::Clock

pub mod change;
pub(crate) mod email_keys;
pub(crate) mod import;
mod migrations;
mod models;
pub mod outbox;
pub mod postgres;
mod repository;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use models::*;
pub use repository::SeedRepository;

use crate::{
    config::{DatabaseTarget, Settings},
    domain::email::EmailKey,
};

/// A storage failure, named by what it means to the caller, not by which backend
/// raised it. Callers act on `Conflict`, `NotFound` and `Aborted`; the rest become a
/// logged 500 at the HTTP edge. The backend's own error, when there is one, is kept as
/// the [`source`](std::error::Error::source) of `Query`.
///
/// `From<sqlx::Error>` and `From<rusqlite::Error>` classify: unique violations are
/// `Conflict`; connection, pool and I/O failures `Unavailable`; values that cannot be
/// decoded `Corrupt`; any other statement failure `Query`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (the constraint's name, or `unique`).
    #[error("unique constraint violated: {0}")]
    Conflict(String),
    /// A write of a [`change::Change`] found no row to act on; nothing was committed.
    #[error("not found")]
    NotFound,
    /// A [`change::Write::Abort`] rolled the change back.
    #[error("change aborted")]
    Aborted,
    /// The store cannot take work: cannot connect, pool timed out or closed, I/O
    /// failure, or a write batch failed to commit.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored value rotor cannot read.
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    /// The schema could not be brought to rotor's: a migration failed or was refused.
    #[error("migration failed: {0}")]
    Schema(String),
    /// Migration refused: accounts share an email identity key; nothing was changed
    /// (`rotor users set-email` resolves it).
    #[error("{0}")]
    EmailCollisions(email_keys::EmailCollisions),
    /// Any other failure of a statement; the backend's error is the source.
    #[error("database error: {0}")]
    Query(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl StoreError {
    /// The backend error behind a `Query` failure, if it is an `E`.
    pub fn backend_error<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Self::Query(e) => e.downcast_ref::<E>(),
            _ => None,
        }
    }
}

/// PostgreSQL errors, classified by meaning.
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Self::Conflict(db.constraint().unwrap_or("unique").to_owned())
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => Self::Unavailable(e.to_string()),
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                Self::Corrupt(e.to_string())
            }
            _ => Self::Query(Box::new(e)),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(e) => match Self::from(e) {
                Self::Query(e) => Self::Schema(e.to_string()),
                other => other,
            },
            other => Self::Schema(other.to_string()),
        }
    }
}

/// SQLite errors, classified by meaning.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::{ffi, ErrorCode};
        match &e {
            rusqlite::Error::SqliteFailure(f, msg)
                if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                Self::Conflict(msg.clone().unwrap_or_else(|| "unique".to_owned()))
            }
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    ErrorCode::CannotOpen
                        | ErrorCode::SystemIoFailure
                        | ErrorCode::DiskFull
                        | ErrorCode::DatabaseBusy
                        | ErrorCode::DatabaseLocked
                        | ErrorCode::ReadOnly
                        | ErrorCode::PermissionDenied
                ) =>
            {
                Self::Unavailable(e.to_string())
            }
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(f.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) =>
            {
                Self::Corrupt(e.to_string())
            }
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(_) => Self::Corrupt(e.to_string()),
            _ => Self::Query(Box::new(e)),
        }
    }
}

/// `Result` with [`StoreError`].
pub type StoreResult<T> = Result<T, StoreError>;

/// Maps unique violations to [`StoreError::Conflict`] (what `From<sqlx::Error>` does;
/// kept for `map_err` call sites).
pub(crate) fn map_unique(e: sqlx::Error) -> StoreError {
    StoreError::from(e)
}

/// The user repository (the original's `UserRepository` and its generic base).
#[async_trait]
pub trait UserStore: Send + Sync {
    /// The user `id`, if any.
    async fn get_user(&self, id: Uuid) -> StoreResult<Option<User>>;
    /// The account whose email has this identity key.
    async fn get_user_by_email(&self, key: &EmailKey) -> StoreResult<Option<User>>;
    /// The account with exactly this email among those not yet given an identity key:
    /// accounts the original backend registered while sharing an adopted database,
    /// until rotor's next start keys them.
    async fn get_user_by_unkeyed_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// Whether an account's email has this identity key.
    async fn email_exists(&self, key: &EmailKey) -> StoreResult<bool>;
    /// Applies the set fields (a new email with its identity key); `None` when the user
    /// does not exist. `Conflict` when the new email's key is taken.
    async fn update_user(
        &self,
        id: Uuid,
        patch: &UserPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<User>>;
    /// Oldest first.
    async fn list_users(&self, skip: u64, limit: u64) -> StoreResult<Vec<User>>;
    /// How many users there are.
    async fn count_users(&self) -> StoreResult<u64>;
}

/// The refresh-token repository (the seed's `RefreshTokenRepository`) plus rotation.
#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    /// The row in any state.
    async fn get_by_hash(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>>;
    /// The row only if not revoked and `expires_at > now`.
    async fn get_valid_by_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<RefreshToken>>;
    /// Deletes at most `batch` expired tokens in one short transaction.
    async fn delete_expired_tokens_batch(&self, now: DateTime<Utc>, batch: u32)
        -> StoreResult<u64>;
    /// How many refresh tokens a cleanup at `now` would delete.
    async fn count_expired_tokens(&self, now: DateTime<Utc>) -> StoreResult<u64>;

    /// The atomic rotation primitive: in one transaction (one statement on PostgreSQL),
    /// revoke the presented token only if it is live (not revoked, not expired, its
    /// user active, its session not ended) and insert its successor in the same family,
    /// expiring at `min(expires_at, session end)`. Of any number of concurrent callers
    /// presenting the same token, across processes, exactly one gets `Some`. The same
    /// step appends a `refresh` audit event, so a rotation costs one round trip and one
    /// commit. It does not write the session row: a session's last use and IP are those
    /// of its live token (see [`SessionStore::get_session`]).
    async fn rotate(&self, rotation: &Rotation<'_>) -> StoreResult<Option<Rotated>>;
}

/// Sessions: one per refresh family, with the device it belongs to.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The session; its `last_used_at` and `ip_address` are those of the latest login,
    /// rotation (the live token's creation) or grace-window reuse.
    async fn get_session(&self, id: Uuid) -> StoreResult<Option<Session>>;
    /// Records a use of the session (`last_used_at`, and the IP when known).
    async fn touch_session(
        &self,
        id: Uuid,
        ip: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The user's live sessions (families with a live token), most recently used first.
    async fn list_user_sessions(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<SessionView>>;
    /// Whether the family can no longer authenticate: its session row is revoked, or
    /// it has no session row and no live refresh token (an id rotor never issued, or
    /// a family created through the seed API or migrated from the original that has
    /// since been ended). Such families without a session row and with a live token
    /// count as not revoked.
    async fn session_revoked(&self, id: Uuid) -> StoreResult<bool>;
    /// Deletes at most `batch` sessions whose absolute end has passed.
    async fn delete_expired_sessions_batch(
        &self,
        now: DateTime<Utc>,
        batch: u32,
    ) -> StoreResult<u64>;
    /// How many sessions a cleanup at `now` would delete.
    async fn count_expired_sessions(&self, now: DateTime<Utc>) -> StoreResult<u64>;
}

/// The append-only security log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends one event on its own (events that go with a change are a [`change::Write`]).
    async fn record_event(&self, event: &NewAuditEvent, now: DateTime<Utc>) -> StoreResult<()>;
    /// Newest first.
    async fn list_events(
        &self,
        filter: &EventFilter,
        skip: u64,
        limit: u64,
    ) -> StoreResult<Vec<AuditEvent>>;
    /// How many events match.
    async fn count_events(&self, filter: &EventFilter) -> StoreResult<u64>;
    /// Deletes up to `batch` events older than `cutoff` in one transaction; how many.
    async fn delete_events_before_batch(
        &self,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> StoreResult<u64>;
    /// How many events are older than `cutoff`.
    async fn count_events_before(&self, cutoff: DateTime<Utc>) -> StoreResult<u64>;
}

/// The asymmetric signing-key ring (private keys stored encrypted).
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Adds a key to the ring.
    async fn insert_key(&self, key: &StoredKey) -> StoreResult<()>;
    /// Every key not yet deleted, newest first.
    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>>;
    /// Marks a key as no longer used for signing; it keeps verifying until deleted.
    async fn retire_key(&self, kid: &str, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Deletes keys retired at or before `cutoff`; returns their ids.
    async fn delete_keys_retired_before(&self, cutoff: DateTime<Utc>) -> StoreResult<Vec<String>>;
}

/// Everything rotor needs from a database.
#[async_trait]
pub trait Store:
    UserStore + RefreshTokenStore + SessionStore + AuditStore + KeyStore + outbox::OutboxStore + 'static
{
    /// The seed's repository API on this store (see [`SeedRepository`]); what
    /// `impl SeedRepository for dyn Store` forwards to.
    fn repository(&self) -> &dyn SeedRepository;
    /// `"sqlite"` or `"postgresql"`.
    fn backend(&self) -> &'static str;
    /// Commits every write of the change, in order, in one transaction, or none of
    /// them (see [`change`]).
    async fn apply(&self, change: &change::Change) -> StoreResult<change::Applied>;
    /// Applies pending migrations (idempotent; safe to run from several processes),
    /// then gives every account its email identity key. Fails with `EmailCollisions`,
    /// having changed no account, when two accounts' emails share a key.
    async fn migrate(&self) -> StoreResult<()>;
    /// What [`Store::migrate`] would do, changing nothing (`rotor migrate --dry-run`).
    async fn migrate_preview(&self) -> StoreResult<MigrationPreview>;
    /// A cheap round trip, for health checks.
    async fn ping(&self) -> StoreResult<()>;
    /// The user `user_id` and whether `session` has ended (as
    /// [`SessionStore::session_revoked`] says; `false` without a session): what
    /// authenticating a bearer token reads. The backends answer it in one round trip
    /// (PostgreSQL) or one reader job (SQLite) instead of two.
    async fn user_and_session_ended(
        &self,
        user_id: Uuid,
        session: Option<Uuid>,
    ) -> StoreResult<Option<(User, bool)>> {
        let Some(user) = self.get_user(user_id).await? else {
            return Ok(None);
        };
        let ended = match session {
            Some(id) => self.session_revoked(id).await?,
            None => false,
        };
        Ok(Some((user, ended)))
    }
    /// Takes the cluster-wide cleanup lock if free. With PostgreSQL this is an advisory
    /// lock held on a dedicated connection until the guard is released; SQLite (one
    /// process) uses an in-process lock.
    async fn try_cleanup_lock(&self) -> StoreResult<Option<CleanupLock>>;
    /// Pool statistics for metrics: (connections open, idle).
    fn pool_stats(&self) -> (u32, u32);
    /// Closes the pool.
    async fn close(&self);
}

/// What `migrate` would do, for `rotor migrate --dry-run`.
#[derive(Debug, Clone)]
pub struct MigrationPreview {
    /// A human-readable account.
    pub summary: String,
    /// Whether `migrate` would refuse (accounts whose emails collide).
    pub blocked: bool,
}

impl MigrationPreview {
    /// The preview for a database already on rotor's schema.
    pub(crate) fn for_rotor(
        set: &[(i64, &str, &str)],
        applied: &[i64],
        users: Vec<email_keys::Row>,
    ) -> Self {
        let pending: Vec<String> = set
            .iter()
            .filter(|(v, _, _)| !applied.contains(v))
            .map(|(v, d, _)| format!("{v} ({d})"))
            .collect();
        let plan = email_keys::plan(users);
        let mut summary = format!(
            "rotor schema: {} pending migration(s){}\naccounts to key: {}",
            pending.len(),
            if pending.is_empty() {
                String::new()
            } else {
                format!(": {}", pending.join(", "))
            },
            plan.updates.len()
        );
        if !plan.collisions.is_empty() {
            summary.push('\n');
            summary.push_str(&email_keys::EmailCollisions(plan.collisions.clone()).to_string());
        }
        Self {
            summary,
            blocked: !plan.collisions.is_empty(),
        }
    }
}

/// Held while a cleanup round runs; released by [`CleanupLock::release`] (or on drop,
/// by closing the connection that holds it).
pub struct CleanupLock {
    release: Option<Box<dyn FnOnce() -> futures_like::BoxFuture + Send>>,
}

/// A minimal boxed-future alias, to avoid a dependency for one type.
pub(crate) mod futures_like {
    pub(crate) type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

impl CleanupLock {
    pub(crate) fn new(release: impl FnOnce() -> futures_like::BoxFuture + Send + 'static) -> Self {
        Self {
            release: Some(Box::new(release)),
        }
    }

    /// Releases the lock (dropping it without releasing frees it when the
    /// connection closes).
    pub async fn release(mut self) {
        if let Some(f) = self.release.take() {
            f().await;
        }
    }
}

impl Drop for CleanupLock {
    fn drop(&mut self) {
        if let Some(f) = self.release.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(f());
            }
        }
    }
}

/// Opens (creating if needed) the configured database and applies migrations.
pub async fn connect(settings: &Settings) -> StoreResult<Arc<dyn Store>> {
    let store = open(settings).await?;
    store.migrate().await?;
    Ok(store)
}

/// Opens (creating if needed) the configured database without migrating it.
pub async fn open(settings: &Settings) -> StoreResult<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match &settings.database {
        DatabaseTarget::Sqlite(path) => {
            Arc::new(sqlite::SqliteStore::open(path, settings.db_max_connections).await?)
        }
        DatabaseTarget::Postgres(url) => Arc::new(
            postgres::PgStore::connect(url, settings.db_max_connections)
                .await?
                .with_session_max_lifetime(chrono::Duration::days(
                    settings.session_max_lifetime_days,
                )),
        ),
    };
    Ok(store)
}
