//! Taking over a database of the original backend in place (PostgreSQL).
//!
//! The original (FastAPI, Alembic head [`ORIGINAL_REVISION`]) keeps `users` and
//! `refresh_tokens` in a schema close to rotor's. Adoption turns it into a database rotor
//! serves, in **one transaction**, after checks that run before any change:
//!
//! 1. accounts whose emails share rotor's identity key (the original compared emails
//!    exactly) are reported and adoption stops; nothing is merged or renamed;
//! 2. families holding more than one live token (the original's race) are repaired:
//!    the most recently created live token is kept, the others are revoked, and each
//!    repair is written to the audit log;
//! 3. rotor's tables are added and the original's tables only gain a column and indexes
//!    (`migrations/postgres/adopt/original.sql`), so the original can still run on it;
//! 4. every family becomes a session (device, IP and times from its tokens);
//! 5. rotor's migrations table is created with rotor's migrations recorded as applied.
//!
//! If anything fails, the transaction rolls back and the database is as it was.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::storage::{
    email_keys::{self, EmailCollision, EmailCollisions},
    migrations, StoreError, StoreResult,
};

/// The Alembic revision rotor knows how to adopt.
pub(crate) const ORIGINAL_REVISION: &str = "801b86be184b";

/// Advisory-lock key of the adoption ("rotoradp"), so two processes never adopt twice.
const ADOPT_LOCK_KEY: i64 = 0x72_6f_74_6f_72_61_64_70;

const ADOPT_SQL: &str = include_str!("../../../migrations/postgres/adopt/original.sql");

/// What a PostgreSQL database holds, as far as rotor is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SchemaState {
    /// No rotor and no original tables: rotor's migrations create everything.
    Empty,
    /// rotor's schema (its migrations table exists).
    Rotor,
    /// The original backend's schema at this Alembic revision.
    Original { revision: String },
}

/// [`detect`] on a connection of the pool.
pub(crate) async fn detect_on(pool: &PgPool) -> StoreResult<SchemaState> {
    let mut conn = pool.acquire().await?;
    detect(&mut conn).await
}

/// Looks at which tables exist. Fails on a database holding some of the original's
/// tables without the rest, which rotor will not guess about.
pub(crate) async fn detect(conn: &mut PgConnection) -> StoreResult<SchemaState> {
    let row = sqlx::query(
        "SELECT to_regclass('_sqlx_migrations') IS NOT NULL AS rotor,
                to_regclass('users') IS NOT NULL AS users,
                to_regclass('refresh_tokens') IS NOT NULL AS tokens,
                to_regclass('alembic_version') IS NOT NULL AS alembic",
    )
    .fetch_one(&mut *conn)
    .await?;
    let (rotor, users, tokens, alembic): (bool, bool, bool, bool) = (
        row.try_get("rotor")?,
        row.try_get("users")?,
        row.try_get("tokens")?,
        row.try_get("alembic")?,
    );
    if rotor {
        return Ok(SchemaState::Rotor);
    }
    match (users, tokens, alembic) {
        (false, false, false) => Ok(SchemaState::Empty),
        (true, true, true) => {
            let revision: Option<String> =
                sqlx::query_scalar("SELECT version_num FROM alembic_version LIMIT 1")
                    .fetch_optional(&mut *conn)
                    .await?;
            Ok(SchemaState::Original {
                revision: revision.unwrap_or_default(),
            })
        }
        _ => Err(StoreError::Schema(format!(
            "the database holds tables rotor does not recognise (users: {users}, \
             refresh_tokens: {tokens}, alembic_version: {alembic}, no rotor migrations \
             table); rotor adopts only the original backend's complete schema or an \
             empty database"
        ))),
    }
}

/// A family that held several live tokens, and how adoption repairs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForkedFamily {
    pub family_id: Uuid,
    pub user_id: Uuid,
    /// The most recently created live token, which stays live.
    pub keep: Uuid,
    /// The other live tokens, which adoption revokes.
    pub revoke: Vec<Uuid>,
}

/// What adoption finds and will do; printed by `rotor migrate --dry-run`.
#[derive(Debug, Clone)]
pub(crate) struct AdoptionPlan {
    pub revision: String,
    pub users: u64,
    /// Accounts whose role is the original's `unknown`; rotor treats them as users.
    pub users_with_unknown_role: u64,
    pub families: u64,
    /// Families with a live (unrevoked, unexpired) token: the sessions users keep.
    pub live_sessions: u64,
    pub forked: Vec<ForkedFamily>,
    pub collisions: Vec<EmailCollision>,
    email_updates: Vec<(Uuid, String)>,
}

/// What adoption adds to the database, for the dry run.
pub(crate) const ADDITIONS: &[&str] = &[
    "tables sessions, audit_events, signing_keys, _sqlx_migrations",
    "column users.email_key with a unique index",
    "unique index ux_refresh_tokens_one_live_per_family (one live token per family)",
    "index ix_refresh_tokens_token_hash_bpchar",
    "assignment cast text -> userrole",
];

impl fmt::Display for AdoptionPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "original backend schema (Alembic revision {})",
            self.revision
        )?;
        writeln!(f, "users:                  {}", self.users)?;
        if self.users_with_unknown_role > 0 {
            writeln!(
                f,
                "  with role 'unknown':  {} (rotor treats them as users)",
                self.users_with_unknown_role
            )?;
        }
        writeln!(f, "refresh families:       {}", self.families)?;
        writeln!(f, "live sessions:          {}", self.live_sessions)?;
        writeln!(f, "forked families:        {}", self.forked.len())?;
        for fork in &self.forked {
            writeln!(
                f,
                "  family {} (user {}): keep token {}, revoke {}",
                fork.family_id,
                fork.user_id,
                fork.keep,
                fork.revoke
                    .iter()
                    .map(Uuid::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
        writeln!(
            f,
            "duplicate emails:       {} group(s)",
            self.collisions.len()
        )?;
        if !self.collisions.is_empty() {
            writeln!(f, "{}", EmailCollisions(self.collisions.clone()))?;
        }
        writeln!(f, "rotor adds:")?;
        for a in ADDITIONS {
            writeln!(f, "  {a}")?;
        }
        Ok(())
    }
}

/// Reads the database and decides what adoption would do. Changes nothing.
pub(crate) async fn plan(conn: &mut PgConnection, revision: String) -> StoreResult<AdoptionPlan> {
    let rows = sqlx::query("SELECT id, email, created_at, role::text AS role FROM users")
        .fetch_all(&mut *conn)
        .await?;
    let mut unknown_role = 0;
    let mut keyed = Vec::with_capacity(rows.len());
    for r in &rows {
        if r.try_get::<String, _>("role")? == "unknown" {
            unknown_role += 1;
        }
        keyed.push(email_keys::Row {
            id: r.try_get("id")?,
            email: r.try_get("email")?,
            email_key: None,
            created_at: r.try_get("created_at")?,
        });
    }
    let users = rows.len() as u64;
    drop(rows);
    let keys = email_keys::plan(keyed);

    let counts = sqlx::query(
        "SELECT count(DISTINCT family_id) AS families,
                count(DISTINCT family_id) FILTER (WHERE NOT is_revoked AND expires_at > now()) AS live
         FROM refresh_tokens",
    )
    .fetch_one(&mut *conn)
    .await?;
    let forked = sqlx::query(
        "SELECT family_id, min(user_id::text)::uuid AS user_id,
                array_agg(id ORDER BY created_at DESC, id DESC) AS ids
         FROM refresh_tokens WHERE NOT is_revoked
         GROUP BY family_id HAVING count(*) > 1 ORDER BY family_id",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        let ids: Vec<Uuid> = r.try_get("ids")?;
        Ok(ForkedFamily {
            family_id: r.try_get("family_id")?,
            user_id: r.try_get("user_id")?,
            keep: ids[0],
            revoke: ids[1..].to_vec(),
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(AdoptionPlan {
        revision,
        users,
        users_with_unknown_role: unknown_role,
        families: u64::try_from(counts.try_get::<i64, _>("families")?).unwrap_or(0),
        live_sessions: u64::try_from(counts.try_get::<i64, _>("live")?).unwrap_or(0),
        forked,
        collisions: keys.collisions,
        email_updates: keys.updates,
    })
}

/// How adoption treats sessions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdoptOptions {
    /// rotor's absolute session lifetime; an adopted session ends at its first token's
    /// creation plus this, but never before its live token expires.
    pub session_max_lifetime: Duration,
    pub now: DateTime<Utc>,
}

/// Adopts the original's schema in one transaction (see the module documentation).
/// Returns the plan it carried out, or `None` when another process adopted the
/// database first. Refuses, changing nothing, when emails collide or the revision is
/// not [`ORIGINAL_REVISION`].
pub(crate) async fn adopt(
    pool: &PgPool,
    options: AdoptOptions,
) -> StoreResult<Option<AdoptionPlan>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ADOPT_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    let SchemaState::Original { revision } = detect(&mut tx).await? else {
        return Ok(None);
    };
    check_revision(&revision)?;
    let plan = plan(&mut tx, revision).await?;
    if !plan.collisions.is_empty() {
        return Err(StoreError::EmailCollisions(EmailCollisions(
            plan.collisions,
        )));
    }
    let now = options.now;

    sqlx::Executor::execute(&mut *tx, ADOPT_SQL).await?;

    // Forked families: keep the newest live token, revoke the others, audit each.
    for fork in &plan.forked {
        sqlx::query(
            "UPDATE refresh_tokens SET is_revoked = TRUE, revoked_at = $2, updated_at = $2
             WHERE id = ANY($1)",
        )
        .bind(&fork.revoke)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let detail = format!(
            "adoption repaired a forked family: kept token {}, revoked {}",
            fork.keep,
            fork.revoke
                .iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        audit(
            &mut tx,
            now,
            "family_repaired",
            Some(fork.user_id),
            Some(fork.family_id),
            &detail,
        )
        .await?;
    }
    sqlx::query(
        "CREATE UNIQUE INDEX ux_refresh_tokens_one_live_per_family
             ON refresh_tokens (family_id) WHERE NOT is_revoked",
    )
    .execute(&mut *tx)
    .await?;

    super::write_email_keys(&mut tx, &plan.email_updates).await?;
    sqlx::query("CREATE UNIQUE INDEX ux_users_email_key ON users (email_key)")
        .execute(&mut *tx)
        .await?;

    // Every family becomes a session: device, IP from its newest token; it ends at
    // rotor's absolute lifetime, never before its live token expires.
    sqlx::query(
        "INSERT INTO sessions (id, user_id, device_id, device_name, ip_address, created_at,
                               last_used_at, absolute_expires_at, revoked_at)
         SELECT DISTINCT ON (family_id)
                family_id, user_id, device_id, device_name, ip_address, first_created,
                last_created, GREATEST(first_created + $1, max_expires),
                CASE WHEN has_live THEN NULL ELSE COALESCE(last_revoked, $2) END
         FROM (SELECT family_id, user_id, device_id, device_name, ip_address, created_at, id,
                      min(created_at) OVER w AS first_created,
                      max(created_at) OVER w AS last_created,
                      max(expires_at) OVER w AS max_expires,
                      max(revoked_at) OVER w AS last_revoked,
                      bool_or(NOT is_revoked) OVER w AS has_live
               FROM refresh_tokens WINDOW w AS (PARTITION BY family_id)) f
         ORDER BY family_id, created_at DESC, id DESC",
    )
    .bind(options.session_max_lifetime)
    .bind(now)
    .execute(&mut *tx)
    .await?;

    let detail = format!(
        "adopted the original backend's database (Alembic {}): {} users, {} families, \
         {} live sessions, {} forked families repaired",
        plan.revision,
        plan.users,
        plan.families,
        plan.live_sessions,
        plan.forked.len()
    );
    audit(&mut tx, now, "database_adopted", None, None, &detail).await?;

    // rotor's migrations table, with rotor's migrations recorded as applied: the
    // schema now has what they create (in the original's column types).
    sqlx::query(
        "CREATE TABLE _sqlx_migrations (
             version BIGINT PRIMARY KEY,
             description TEXT NOT NULL,
             installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
             success BOOLEAN NOT NULL,
             checksum BYTEA NOT NULL,
             execution_time BIGINT NOT NULL
         )",
    )
    .execute(&mut *tx)
    .await?;
    for (version, description, sql) in migrations::POSTGRES {
        let checksum = ring::digest::digest(&ring::digest::SHA384, sql.as_bytes());
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES ($1, $2, TRUE, $3, 0)",
        )
        .bind(version)
        .bind(format!("{description} (adopted)"))
        .bind(checksum.as_ref())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Some(plan))
}

/// Refuses revisions other than the one rotor knows.
pub(crate) fn check_revision(revision: &str) -> StoreResult<()> {
    if revision == ORIGINAL_REVISION {
        return Ok(());
    }
    Err(StoreError::Schema(format!(
        "this is the original backend's database at Alembic revision {revision:?}; rotor \
         adopts revision {ORIGINAL_REVISION} (upgrade the original with `alembic upgrade \
         head` first)"
    )))
}

async fn audit(
    tx: &mut PgConnection,
    now: DateTime<Utc>,
    kind: &str,
    user_id: Option<Uuid>,
    session_id: Option<Uuid>,
    detail: &str,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_events (id, created_at, kind, user_id, session_id, detail)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(Uuid::now_v7())
    .bind(now)
    .bind(kind)
    .bind(user_id)
    .bind(session_id)
    .bind(detail)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
