//! The PostgreSQL backend, for running several rotor processes against one database.
//!
//! One pool serves reads and writes; ids, timestamps and flags use the native `uuid`,
//! `timestamptz` and `boolean` types. Rotation is a single data-modifying statement, so
//! the row lock on the presented token decides, across processes, which caller wins.
//! The cleanup job is serialised cluster-wide by a session-level advisory lock.

pub(crate) mod adopt;
mod audit;
mod keys;
mod outbox;
mod repository;
mod sessions;
mod tokens;
mod users;
mod warm;
mod writes;

use self::tokens::insert_token;

use std::{collections::HashSet, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{
    postgres::{PgPoolOptions, PgRow},
    FromRow, PgExecutor, PgPool, Row,
};
use uuid::Uuid;

use crate::domain::email::EmailKey;

use super::{
    change::{Applied, Change},
    email_keys, map_unique, migrations, AuditEvent, AuditStore, CleanupLock, EventFilter, KeyStore,
    NewAuditEvent, NewRefreshToken, NewSession, NewUser, RefreshToken, RefreshTokenStore, Role,
    Rotated, Rotation, Session, SessionStore, SessionView, Store, StoreError, StoreResult,
    StoredKey, User, UserPatch, UserStore,
};

/// PostgreSQL storage over one connection pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Connections kept between the hot statements (see [`warm`]).
    warm: std::sync::Arc<warm::Warm>,
    /// rotor's absolute session lifetime, which sessions adopted from the original
    /// backend's families get (see [`adopt`]).
    session_max_lifetime: chrono::Duration,
}

/// `role` is read as text: on a database adopted from the original backend the column
/// is its `userrole` enum (see `adopt`), on rotor's own schema a varchar.
const USER_COLS: &str = "id, email, hashed_password, full_name, is_active, is_verified, role::text AS role, token_version, created_at, updated_at";
const TOKEN_COLS: &str = "id, token_hash, user_id, family_id, device_id, device_name, ip_address, expires_at, is_revoked, revoked_at, created_at, updated_at";
const EVENT_COLS: &str =
    "id, created_at, kind, user_id, session_id, ip_address, user_agent, detail";
const KEY_COLS: &str = "kid, algorithm, public_key, private_key_sealed, created_at, retired_at";

/// A session with its last use: rotations do not write to `sessions` (one row update
/// fewer per refresh); the family's live token was created by the latest login or
/// rotation, from the latest IP. `last_used_at` on the row itself records the login and
/// grace-window reuses.
const SESSION_WITH_LAST_USE: &str =
    "SELECT s.id, s.user_id, s.device_id, s.device_name, s.user_agent, s.client_id,
            s.created_at, s.absolute_expires_at, s.revoked_at,
            GREATEST(s.last_used_at, t.created_at) AS last_used_at,
            CASE WHEN t.created_at > s.last_used_at THEN COALESCE(t.ip_address, s.ip_address)
                 ELSE s.ip_address END AS ip_address
     FROM sessions s LEFT JOIN refresh_tokens t ON t.family_id = s.id AND NOT t.is_revoked
     WHERE s.id = $1";

/// Whether the session `$1` has ended. No session row: ended unless the family has a
/// live token (a family from the seed API or migrated from the original).
const SESSION_ENDED: &str = "CASE WHEN EXISTS (SELECT 1 FROM sessions WHERE id = $1)
         THEN (SELECT revoked_at IS NOT NULL FROM sessions WHERE id = $1)
         ELSE NOT EXISTS (SELECT 1 FROM refresh_tokens
                          WHERE family_id = $1 AND NOT is_revoked) END";

/// Advisory-lock key of the cleanup job ("rotor" in ASCII). Any constant works as long
/// as every rotor process agrees on it.
const CLEANUP_LOCK_KEY: i64 = 0x72_6f_74_6f_72;

/// Advisory-lock key of the email-key step, taken for its transaction.
const EMAIL_KEYS_LOCK_KEY: i64 = 0x72_6f_74_6f_72_6b;

/// Rows per statement when writing email keys.
const EMAIL_KEYS_CHUNK: usize = 10_000;

/// How often a revocation is run again after being chosen as a deadlock victim.
const DEADLOCK_ATTEMPTS: u32 = 3;

impl PgStore {
    /// Fills missing `users.email_key` values and builds their unique index, in one
    /// transaction under an advisory lock (see [`email_keys`]). Cheap when every row
    /// has its key: one probe of the (empty) partial index.
    async fn key_emails(&self) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(EMAIL_KEYS_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        let pending: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM users WHERE email_key IS NULL)
                 OR to_regclass('ux_users_email_key') IS NULL",
        )
        .fetch_one(&mut *tx)
        .await?;
        if !pending {
            return Ok(());
        }
        let rows = sqlx::query("SELECT id, email, email_key, created_at FROM users")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                Ok(email_keys::Row {
                    id: r.try_get("id")?,
                    email: r.try_get("email")?,
                    email_key: r.try_get("email_key")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let plan = email_keys::plan(rows);
        if !plan.collisions.is_empty() {
            return Err(StoreError::EmailCollisions(email_keys::EmailCollisions(
                plan.collisions,
            )));
        }
        write_email_keys(&mut tx, &plan.updates).await?;
        sqlx::query("CREATE UNIQUE INDEX IF NOT EXISTS ux_users_email_key ON users (email_key)")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DROP INDEX IF EXISTS ix_users_email_lower")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Connects a pool (16 connections unless `max_connections` says otherwise).
    pub async fn connect(url: &str, max_connections: Option<u32>) -> StoreResult<Self> {
        // No ping before each acquire: it doubles the round trips of a rotation. A
        // connection broken by a server restart fails one query and is then discarded.
        let pool = PgPoolOptions::new()
            .test_before_acquire(false)
            .max_connections(max_connections.unwrap_or(16))
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        Ok(Self::from_pool(pool))
    }

    /// Uses a pool the embedding application already has.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            warm: std::sync::Arc::new(warm::Warm::for_pool(&pool)),
            pool,
            session_max_lifetime: chrono::Duration::days(30),
        }
    }

    /// Sets the absolute lifetime given to sessions when adopting the original
    /// backend's database (`SESSION_MAX_LIFETIME_DAYS`; 30 days by default).
    #[must_use]
    pub fn with_session_max_lifetime(mut self, lifetime: chrono::Duration) -> Self {
        self.session_max_lifetime = lifetime;
        self
    }

    /// What `migrate` would do, changing nothing.
    async fn preview(&self) -> StoreResult<super::MigrationPreview> {
        let mut tx = self.pool.begin().await?;
        let preview = match adopt::detect(&mut tx).await? {
            adopt::SchemaState::Empty => super::MigrationPreview {
                summary: "empty database: rotor's schema would be created".into(),
                blocked: false,
            },
            adopt::SchemaState::Original { revision } => {
                adopt::check_revision(&revision)?;
                let plan = adopt::plan(&mut tx, revision).await?;
                super::MigrationPreview {
                    blocked: !plan.collisions.is_empty(),
                    summary: format!("would adopt the {plan}"),
                }
            }
            adopt::SchemaState::Rotor => {
                let applied: Vec<i64> =
                    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                        .fetch_all(&mut *tx)
                        .await?;
                let rows = sqlx::query("SELECT id, email, email_key, created_at FROM users")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| {
                        Ok(email_keys::Row {
                            id: r.try_get("id")?,
                            email: r.try_get("email")?,
                            email_key: r.try_get("email_key").unwrap_or(None),
                            created_at: r.try_get("created_at")?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                super::MigrationPreview::for_rotor(migrations::POSTGRES, &applied, rows)
            }
        };
        tx.rollback().await?;
        Ok(preview)
    }

    /// The pool, for tests that inspect the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Revokes every live token in `scope` and ends the sessions in `session_scope`, in
    /// one transaction. Returns the number of tokens revoked and the families among them
    /// that were unexpired. `$1` is the scope's id, `$2` now and `$3` a family to spare.
    ///
    /// One UPDATE is not enough under READ COMMITTED: if a rotation holds the lock on a
    /// family's live token, the UPDATE waits for it, then skips the token (now revoked)
    /// and cannot see the successor, which is newer than the statement's snapshot. Each
    /// round therefore also counts the live tokens its snapshot saw; when it revoked
    /// fewer, a rotation got in between and another round (with a fresh snapshot) picks up
    /// the successor. Tokens revoked in earlier rounds stay locked until commit, so those
    /// families cannot move again. Sessions are ended last, after the tokens, which is
    /// the order `rotate` locks them in, so the two never deadlock.
    async fn revoke_scope(
        &self,
        scope: writes::Scope,
        id: Uuid,
        keep: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> StoreResult<(u64, HashSet<Uuid>)> {
        let mut attempt = 1;
        loop {
            let result = async {
                let mut tx = self.pool.begin().await?;
                let out = writes::revoke_scope(&mut tx, scope, id, keep, now).await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(out)
            }
            .await;
            match result {
                Err(e) if attempt < DEADLOCK_ATTEMPTS && is_sqlx_deadlock(&e) => attempt += 1,
                result => return Ok(result?),
            }
        }
    }

    /// Runs the change in one transaction; a deadlock (two revocations over one user
    /// locking in opposite orders) runs the whole change again.
    async fn apply_change(&self, change: &Change) -> StoreResult<Applied> {
        let mut attempt = 1;
        loop {
            let mut lease = self.warm.lease(&self.pool).await?;
            let mut tx = sqlx::Connection::begin(lease.conn()).await?;
            match writes::apply(&mut tx, change).await {
                Ok(applied) => {
                    tx.commit().await?;
                    lease.completed();
                    return Ok(applied);
                }
                Err(e) if attempt < DEADLOCK_ATTEMPTS && is_deadlock(&e) => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Writes computed identity keys (`(user id, key)`), in statements of
/// `EMAIL_KEYS_CHUNK` rows, inside the caller's transaction.
pub(super) async fn write_email_keys(
    tx: &mut sqlx::PgConnection,
    updates: &[(Uuid, String)],
) -> Result<(), sqlx::Error> {
    for chunk in updates.chunks(EMAIL_KEYS_CHUNK) {
        let (ids, keys): (Vec<Uuid>, Vec<&str>) =
            chunk.iter().map(|(id, k)| (*id, k.as_str())).unzip();
        sqlx::query(
            "UPDATE users SET email_key = v.k
             FROM unnest($1::uuid[], $2::text[]) AS v(id, k) WHERE users.id = v.id",
        )
        .bind(&ids)
        .bind(&keys)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Two revocations over the same user can still lock its tokens in opposite orders;
/// PostgreSQL then aborts one, which is safe to run again.
fn is_sqlx_deadlock(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().as_deref() == Some("40P01"),
        _ => false,
    }
}

/// A deadlock is a `Query` failure whose source is PostgreSQL's `40P01`.
fn is_deadlock(e: &StoreError) -> bool {
    e.backend_error::<sqlx::Error>()
        .is_some_and(is_sqlx_deadlock)
}

/// Hand-mapped: `role` is read as text and parsed (the original's `'unknown'` becomes
/// `User`, anything else unknown is `Corrupt`), and `token_version` is widened from
/// INTEGER; the other rows derive [`sqlx::FromRow`] (see `models.rs`).
/// Column `i`, which is `name` (checked in debug builds, so the tests catch a query
/// whose columns are in another order): reading by position skips the lookup of the
/// name in the row's column map.
fn at(row: &PgRow, i: usize, name: &str) -> usize {
    debug_assert_eq!(
        sqlx::Row::columns(row).get(i).map(sqlx::Column::name),
        Some(name)
    );
    i
}

/// A user from a row whose first columns are [`USER_COLS`].
fn user_from_row(row: &PgRow) -> StoreResult<User> {
    let role: &str = row.try_get(at(row, 6, "role"))?;
    Ok(User {
        id: row.try_get(at(row, 0, "id"))?,
        email: row.try_get(at(row, 1, "email"))?,
        hashed_password: row.try_get(at(row, 2, "hashed_password"))?,
        full_name: row.try_get(at(row, 3, "full_name"))?,
        is_active: row.try_get(at(row, 4, "is_active"))?,
        is_verified: row.try_get(at(row, 5, "is_verified"))?,
        // The original's enum also has 'unknown'; such an account gets no privilege.
        role: match role {
            "unknown" => Role::User,
            other => {
                Role::parse(other).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?
            }
        },
        token_version: i64::from(row.try_get::<i32, _>(at(row, 7, "token_version"))?),
        created_at: row.try_get(at(row, 8, "created_at"))?,
        updated_at: row.try_get(at(row, 9, "updated_at"))?,
    })
}

/// `users.token_version` is an INTEGER column, and sqlx will not widen it to `i64` itself.
fn token_version(row: &PgRow) -> StoreResult<i64> {
    Ok(i64::from(row.try_get::<i32, _>("token_version")?))
}

/// A refresh token from a row whose first columns are [`TOKEN_COLS`].
fn token_from_row(row: &PgRow) -> StoreResult<RefreshToken> {
    Ok(RefreshToken {
        id: row.try_get(at(row, 0, "id"))?,
        token_hash: row.try_get(at(row, 1, "token_hash"))?,
        user_id: row.try_get(at(row, 2, "user_id"))?,
        family_id: row.try_get(at(row, 3, "family_id"))?,
        device_id: row.try_get(at(row, 4, "device_id"))?,
        device_name: row.try_get(at(row, 5, "device_name"))?,
        ip_address: row.try_get(at(row, 6, "ip_address"))?,
        expires_at: row.try_get(at(row, 7, "expires_at"))?,
        is_revoked: row.try_get(at(row, 8, "is_revoked"))?,
        revoked_at: row.try_get(at(row, 9, "revoked_at"))?,
        created_at: row.try_get(at(row, 10, "created_at"))?,
        updated_at: row.try_get(at(row, 11, "updated_at"))?,
    })
}

fn session_from_row(row: &PgRow) -> StoreResult<Session> {
    Ok(Session::from_row(row)?)
}

fn session_view_from_row(row: &PgRow) -> StoreResult<SessionView> {
    Ok(SessionView::from_row(row)?)
}

fn event_from_row(row: &PgRow) -> StoreResult<AuditEvent> {
    Ok(AuditEvent::from_row(row)?)
}

fn key_from_row(row: &PgRow) -> StoreResult<StoredKey> {
    Ok(StoredKey::from_row(row)?)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// LIMIT/OFFSET take a bigint.
fn bigint(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for PgStore {
    fn repository(&self) -> &dyn super::SeedRepository {
        self
    }

    fn backend(&self) -> &'static str {
        "postgresql"
    }

    async fn migrate(&self) -> StoreResult<()> {
        let state = adopt::detect_on(&self.pool).await?;
        if let adopt::SchemaState::Original { .. } = state {
            let options = adopt::AdoptOptions {
                session_max_lifetime: self.session_max_lifetime,
                now: Utc::now(),
            };
            if let Some(plan) = adopt::adopt(&self.pool, options).await? {
                tracing::info!(
                    users = plan.users,
                    live_sessions = plan.live_sessions,
                    forked_families = plan.forked.len(),
                    "adopted the original backend's database"
                );
            }
        }
        migrations::migrator(migrations::POSTGRES)
            .await?
            .run(&self.pool)
            .await?;
        self.key_emails().await
    }

    async fn apply(&self, change: &Change) -> StoreResult<Applied> {
        self.apply_change(change).await
    }

    async fn migrate_preview(&self) -> StoreResult<super::MigrationPreview> {
        self.preview().await
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn user_and_session_ended(
        &self,
        user_id: Uuid,
        session: Option<Uuid>,
    ) -> StoreResult<Option<(User, bool)>> {
        // One round trip: the user row and, for a token with a session, its state.
        static QUERY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {USER_COLS}, ($1::uuid IS NOT NULL AND {}) AS session_ended
                 FROM users WHERE id = $2",
                SESSION_ENDED.replace("$1", "$1::uuid")
            )
        });
        let mut lease = self.warm.lease(&self.pool).await?;
        let row = sqlx::query(&QUERY)
            .bind(session)
            .bind(user_id)
            .fetch_optional(lease.conn())
            .await?;
        lease.completed();
        let Some(row) = row else {
            return Ok(None);
        };
        let ended: Option<bool> = row.try_get("session_ended")?;
        Ok(Some((user_from_row(&row)?, ended.unwrap_or(false))))
    }

    async fn try_cleanup_lock(&self) -> StoreResult<Option<CleanupLock>> {
        // A session-level advisory lock belongs to the connection that took it, so the
        // guard keeps that connection checked out until release. (Behind a pooler in
        // transaction mode this lock would not hold; rotor expects direct connections.)
        let mut conn = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(CLEANUP_LOCK_KEY)
            .fetch_one(&mut *conn)
            .await?;
        if !locked {
            return Ok(None);
        }
        Ok(Some(CleanupLock::new(move || {
            Box::pin(async move {
                let unlocked: Result<bool, _> = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
                    .bind(CLEANUP_LOCK_KEY)
                    .fetch_one(&mut *conn)
                    .await;
                if !matches!(unlocked, Ok(true)) {
                    // The connection must not go back to the pool still holding the lock;
                    // ending its session releases it.
                    let _ = conn.close().await;
                }
            })
        })))
    }

    fn pool_stats(&self) -> (u32, u32) {
        (
            self.pool.size(),
            u32::try_from(self.pool.num_idle() + self.warm.idle()).unwrap_or(u32::MAX),
        )
    }

    async fn close(&self) {
        self.warm.close();
        self.pool.close().await;
    }
}
