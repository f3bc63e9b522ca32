//! `rotor import --from URL`: copying one deployment into rotor's configured database.
//!
//! The source is read-only and can be
//! - the original backend's PostgreSQL database (Alembic head
//!   [`ORIGINAL_REVISION`](super::postgres::adopt::ORIGINAL_REVISION)), or
//! - a rotor database on SQLite (`sqlite://PATH`) or PostgreSQL (`postgres://…`).
//!
//! The target is rotor's configured database (`DATABASE_URL`), migrated first. The
//! import gives the same guarantees as adopting the original in place
//! ([`adopt`](super::postgres::adopt)):
//!
//! 1. **checks before any change**: accounts whose emails share rotor's identity key
//!    ([`EmailKey::of`]) — two in the source, or one in the source and one in the target
//!    under another id — make the import stop, listing every group, with the target
//!    unchanged;
//! 2. forked families of an original source (several live tokens) are repaired in the
//!    copy (the newest live token stays live, the others are copied revoked) and each
//!    repair is written to the target's audit log;
//! 3. users keep ids, password hashes, `token_version`, roles (the original's `unknown`
//!    becomes `user`) and timestamps; refresh tokens keep ids, hashes, families and
//!    states, so live tokens keep rotating and revoked ones are replays; every family of
//!    an original source becomes a session as adoption makes it (device, IP, times);
//!    a rotor source's sessions, audit log and signing keys are copied as they are.
//!    Private signing keys are sealed with a key derived from `KEY_ENCRYPTION_KEY` (or
//!    `SECRET_KEY`): the target must run with the same secret.
//!
//! **Atomicity.** The whole import is one transaction on the target (PostgreSQL: one
//! transaction, writes batched [`BATCH`] rows per statement; SQLite: one `BEGIN
//! IMMEDIATE … COMMIT` on a dedicated connection, so a `rotor serve` on the same file
//! waits or fails its writes meanwhile — stop it first). It lands entirely or changes
//! nothing. The source is read in one read-only snapshot (`REPEATABLE READ READ ONLY`
//! on PostgreSQL, one read transaction on SQLite), so a source still serving is copied
//! as of one instant.
//!
//! **Re-running.** Rows are matched by id (signing keys by `kid`):
//! - users present in the target are updated to the source's email, password hash,
//!   name, flags and role; `token_version` only ever increases;
//! - refresh tokens present in the target are only ever revoked (a token revoked in the
//!   source is revoked in the target; nothing is un-revoked). Revocations are applied
//!   before new tokens are inserted, so a rotation made on the source since the last run
//!   arrives as "old token revoked, successor live" and a family never holds two live
//!   tokens. A family whose target live token differs from the source's (the target was
//!   used in between) stops the import with [`ImportError::TokenConflict`];
//! - sessions gain the later `last_used_at` and the source's revocation; signing keys
//!   their retirement; audit events present are skipped;
//! - rows deleted from the source are not deleted from the target.
//!
//! A run that changes nothing writes nothing (not even an audit event).

use std::{
    collections::{HashMap, HashSet},
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use chrono::{DateTime, Duration, Utc};
use rusqlite::{params, Connection, OpenFlags};
use sqlx::{postgres::PgRow, Connection as _, PgConnection, Row};
use uuid::Uuid;

use super::{
    email_keys::KeyedAccount,
    migrations,
    postgres::adopt::{self, ForkedFamily, SchemaState},
    sqlite::{rows, ts},
    AuditEvent, RefreshToken, Role, Session, StoreError, StoredKey, User,
};
use crate::{
    config::{parse_database_url, DatabaseTarget, Settings},
    domain::email::EmailKey,
};

/// Rows per read and per write statement.
pub(crate) const BATCH: usize = 5000;

/// Advisory-lock key of an import into PostgreSQL ("rotorimp").
const IMPORT_LOCK_KEY: i64 = 0x72_6f_74_6f_72_69_6d_70;

/// Why an import stopped. The target is unchanged in every case.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImportError {
    #[error("--from: {0}")]
    Source(String),
    #[error("{0}")]
    DuplicateEmails(ImportCollisions),
    /// A refresh token of the source cannot be inserted next to the target's.
    #[error(
        "refresh token {token} (family {family}) conflicts with the target: {detail}. The \
         target's family holds another live token or the same hash under another id, \
         which happens when the target served clients after a previous import. The \
         import changed nothing."
    )]
    TokenConflict {
        token: Uuid,
        family: Uuid,
        detail: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::from(e))
    }
}

impl From<rusqlite::Error> for ImportError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(StoreError::from(e))
    }
}

type Result<T, E = ImportError> = std::result::Result<T, E>;

/// Where an account of a collision report lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Source,
    Target,
}

/// Accounts (of the source, or of the source and the target) sharing an identity key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImportCollision {
    pub key: String,
    pub accounts: Vec<(Side, KeyedAccount)>,
}

/// Every collision group; its `Display` is the operator-facing report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImportCollisions(pub Vec<ImportCollision>);

impl fmt::Display for ImportCollisions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} group(s) of accounts have email addresses that rotor treats as the same \
             address (case and Unicode compatibility folding):",
            self.0.len()
        )?;
        for group in &self.0 {
            writeln!(f, "  identity key {:?}:", group.key)?;
            for (side, a) in &group.accounts {
                writeln!(
                    f,
                    "    {:<6}  {}  {:?}  created {}",
                    match side {
                        Side::Source => "source",
                        Side::Target => "target",
                    },
                    a.id,
                    a.email,
                    a.created_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )?;
            }
        }
        write!(
            f,
            "The import changed nothing. Give all but one account of each group a different \
             address (`rotor users set-email --id ID NEW_EMAIL` on the database that holds \
             it, or the original's own tools), then run the import again."
        )
    }
}

/// What an original or rotor source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// The original backend's PostgreSQL schema at this Alembic revision.
    Original {
        revision: String,
    },
    RotorPostgres,
    RotorSqlite,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Original { revision } => {
                write!(f, "the original backend (PostgreSQL, Alembic {revision})")
            }
            Self::RotorPostgres => f.write_str("rotor on PostgreSQL"),
            Self::RotorSqlite => f.write_str("rotor on SQLite"),
        }
    }
}

/// Progress of one table, for a bar or a log line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    pub table: &'static str,
    pub done: u64,
    pub total: u64,
}

/// One table of the report: rows read from the source, rows inserted or changed in
/// the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableReport {
    pub table: &'static str,
    pub read: u64,
    pub written: u64,
}

/// What an import did.
#[derive(Debug, Clone)]
pub(crate) struct ImportReport {
    pub source: SourceKind,
    pub tables: Vec<TableReport>,
    /// Refresh tokens of the target revoked because the source has them revoked.
    pub revocations: u64,
    /// Forked families of an original source, repaired in the copy.
    pub repaired: Vec<ForkedFamily>,
}

impl ImportReport {
    /// Whether the run changed the target.
    pub(crate) fn changed(&self) -> bool {
        self.revocations > 0 || self.tables.iter().any(|t| t.written > 0)
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "imported from {}", self.source)?;
        for t in &self.tables {
            writeln!(
                f,
                "  {:<15} {:>9} read, {:>9} inserted or updated",
                t.table, t.read, t.written
            )?;
        }
        writeln!(
            f,
            "  {:<15} {:>9} tokens revoked in the target as in the source",
            "revocations", self.revocations
        )?;
        write!(f, "  forked families repaired: {}", self.repaired.len())
    }
}

/// How the import treats time and derived sessions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ImportOptions {
    /// rotor's absolute session lifetime, for sessions derived from an original's
    /// families (as adoption derives them).
    pub session_max_lifetime: Duration,
    pub now: DateTime<Utc>,
}

/// Imports `source_url` into the database `settings` configure (migrating it first).
/// `progress` is called after every batch.
pub(crate) async fn import(
    source_url: &str,
    settings: &Settings,
    options: ImportOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<ImportReport> {
    let source_target = parse_database_url(source_url)
        .map_err(|_| ImportError::Source("must start with sqlite:// or postgres://".into()))?;
    if same_database(&source_target, &settings.database) {
        return Err(ImportError::Source(
            "the source is the configured database (DATABASE_URL) itself".into(),
        ));
    }
    let mut source = Source::open(&source_target).await?;
    // The source's own duplicates refuse before the target is even migrated.
    let seen = match source_keys(&mut source).await {
        Ok(seen) => seen,
        Err(e) => {
            source.close().await;
            return Err(e);
        }
    };
    let mut target = match prepare_target(settings).await {
        Ok(t) => t,
        Err(e) => {
            source.close().await;
            return Err(e);
        }
    };
    let result = match check_target(&mut source, &mut target, seen).await {
        Ok(()) => run(&mut source, &mut target, options, progress).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(report) => {
            target.commit().await?;
            source.close().await;
            Ok(report)
        }
        Err(e) => {
            target.rollback().await;
            source.close().await;
            Err(e)
        }
    }
}

/// Migrates the configured database (as `rotor migrate` would) and opens the import's
/// transaction on it.
async fn prepare_target(settings: &Settings) -> Result<Target> {
    let store = super::connect(settings).await?;
    store.close().await;
    Target::open(&settings.database).await
}

fn same_database(a: &DatabaseTarget, b: &DatabaseTarget) -> bool {
    match (a, b) {
        (DatabaseTarget::Sqlite(a), DatabaseTarget::Sqlite(b)) => {
            a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
        }
        (DatabaseTarget::Postgres(a), DatabaseTarget::Postgres(b)) => a == b,
        _ => false,
    }
}

async fn run(
    source: &mut Source,
    target: &mut Target,
    options: ImportOptions,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<ImportReport> {
    let now = options.now;
    // 1. The checks on emails ran before (`source_keys`, `check_target`).
    let forked = source.forked().await?;
    let revoke_in_copy: HashSet<Uuid> = forked
        .iter()
        .flat_map(|f| f.revoke.iter().copied())
        .collect();

    let mut tables = Vec::new();
    // 2. Users.
    let total = source.count("users").await?;
    let (mut read, mut written, mut after) = (0, 0, None);
    loop {
        let page = source.users(after, BATCH).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        read += page.len() as u64;
        let keyed: Vec<(User, String)> = page
            .into_iter()
            .map(|u| {
                let key = EmailKey::of(&u.email).as_str().to_owned();
                (u, key)
            })
            .collect();
        written += target.write_users(keyed).await?;
        progress(Progress {
            table: "users",
            done: read,
            total,
        });
    }
    tables.push(TableReport {
        table: "users",
        read,
        written,
    });

    // 3. Sessions (an original's are derived from its families).
    let total = source.count("sessions").await?;
    let (mut read, mut written, mut after) = (0, 0, None);
    loop {
        let page = source.sessions(after, BATCH, options).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        read += page.len() as u64;
        written += target.write_sessions(page).await?;
        progress(Progress {
            table: "sessions",
            done: read,
            total,
        });
    }
    tables.push(TableReport {
        table: "sessions",
        read,
        written,
    });

    // 4. Refresh tokens: first the source's revocations of tokens the target already
    // has (a re-run), then the tokens the target lacks.
    let mut revocations = 0;
    if target.has_tokens().await? {
        let total = source.count("revoked refresh_tokens").await? + revoke_in_copy.len() as u64;
        let mut done = 0;
        let repairs: Vec<(Uuid, DateTime<Utc>, Option<DateTime<Utc>>)> = revoke_in_copy
            .iter()
            .map(|id| (*id, now, Some(now)))
            .collect();
        for chunk in repairs.chunks(BATCH) {
            done += chunk.len() as u64;
            revocations += target.revoke_tokens(chunk.to_vec()).await?;
        }
        let mut after = None;
        loop {
            let page = source.revoked_tokens(after, BATCH, now).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            done += page.len() as u64;
            revocations += target.revoke_tokens(page).await?;
            progress(Progress {
                table: "revocations",
                done,
                total,
            });
        }
    }
    let total = source.count("refresh_tokens").await?;
    let (mut read, mut written, mut after) = (0, 0, None);
    loop {
        let mut page = source.tokens(after, BATCH).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        read += page.len() as u64;
        for t in &mut page {
            if revoke_in_copy.contains(&t.id) {
                t.is_revoked = true;
                t.revoked_at = Some(now);
                t.updated_at = Some(now);
            }
        }
        written += target.write_tokens(page).await?;
        progress(Progress {
            table: "refresh_tokens",
            done: read,
            total,
        });
    }
    tables.push(TableReport {
        table: "refresh_tokens",
        read,
        written,
    });

    // 5. The audit log, then the repairs of this import (one event per family, with
    // an id derived from the family and the kept token, so a re-run adds none).
    let total = source.count("audit_events").await?;
    let (mut read, mut written, mut after) = (0, 0, None);
    loop {
        let page = source.events(after, BATCH).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        read += page.len() as u64;
        written += target.write_events(page).await?;
        progress(Progress {
            table: "audit_events",
            done: read,
            total,
        });
    }
    let repairs: Vec<AuditEvent> = forked.iter().map(|f| repair_event(f, now)).collect();
    written += target.write_events(repairs).await?;
    tables.push(TableReport {
        table: "audit_events",
        read,
        written,
    });

    // 6. The key ring, sealed private keys as they are.
    let keys = source.keys().await?;
    let read = keys.len() as u64;
    let written = target.write_keys(keys).await?;
    progress(Progress {
        table: "signing_keys",
        done: read,
        total: read,
    });
    tables.push(TableReport {
        table: "signing_keys",
        read,
        written,
    });

    let report = ImportReport {
        source: source.kind.clone(),
        tables,
        revocations,
        repaired: forked,
    };
    if report.changed() {
        let detail = format!(
            "imported from {}: {}",
            report.source,
            report
                .tables
                .iter()
                .map(|t| format!("{} {}/{}", t.table, t.written, t.read))
                .chain([
                    format!("revocations {}", report.revocations),
                    format!("forked families repaired {}", report.repaired.len()),
                ])
                .collect::<Vec<_>>()
                .join(", ")
        );
        let event = AuditEvent {
            id: Uuid::now_v7(),
            created_at: now,
            kind: "database_imported".into(),
            user_id: None,
            session_id: None,
            ip_address: None,
            user_agent: None,
            detail: Some(detail),
        };
        target.write_events(vec![event]).await?;
    }
    Ok(report)
}

fn repair_event(fork: &ForkedFamily, now: DateTime<Utc>) -> AuditEvent {
    let seed = format!("rotor import repair {} {}", fork.family_id, fork.keep);
    let digest = ring::digest::digest(&ring::digest::SHA256, seed.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    AuditEvent {
        id: uuid::Builder::from_random_bytes(bytes).into_uuid(),
        created_at: now,
        kind: "family_repaired".into(),
        user_id: Some(fork.user_id),
        session_id: Some(fork.family_id),
        ip_address: None,
        user_agent: None,
        detail: Some(format!(
            "import repaired a forked family: kept token {}, revoked {}",
            fork.keep,
            fork.revoke
                .iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A 128-bit digest of an identity key: the check holds one per account (a million
/// accounts in ~40 MB). Matches are confirmed on the real keys before being reported.
fn key_digest(key: &str) -> u128 {
    let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    u128::from_le_bytes(b)
}

/// The source's identity keys (as digests), refusing accounts that share one.
async fn source_keys(source: &mut Source) -> Result<HashMap<u128, Uuid>> {
    let mut seen: HashMap<u128, Uuid> = HashMap::new();
    let mut suspects: HashSet<u128> = HashSet::new();
    let mut after = None;
    loop {
        let page = source.user_emails(after, BATCH).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for a in page {
            let digest = key_digest(EmailKey::of(&a.email).as_str());
            if seen.insert(digest, a.id).is_some() {
                suspects.insert(digest);
            }
        }
    }
    if !suspects.is_empty() {
        collisions(source, &suspects, Vec::new()).await?;
    }
    Ok(seen)
}

/// Refuses target accounts whose identity key is a source account's under another id.
async fn check_target(
    source: &mut Source,
    target: &mut Target,
    seen: HashMap<u128, Uuid>,
) -> Result<()> {
    let mut suspects: HashSet<u128> = HashSet::new();
    let mut in_target: Vec<KeyedAccount> = Vec::new();
    let mut after = None;
    loop {
        let page = target.user_emails(after, BATCH).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.0.id);
        for (a, key) in page {
            let key = key.unwrap_or_else(|| EmailKey::of(&a.email).as_str().to_owned());
            let digest = key_digest(&key);
            if seen.get(&digest).is_some_and(|id| *id != a.id) {
                suspects.insert(digest);
                in_target.push(a);
            }
        }
    }
    drop(seen);
    if suspects.is_empty() {
        return Ok(());
    }
    collisions(source, &suspects, in_target).await
}

/// Groups the source accounts whose key digest is suspect (and the target's accounts
/// given) by their real keys; fails with the groups of more than one account.
async fn collisions(
    source: &mut Source,
    suspects: &HashSet<u128>,
    in_target: Vec<KeyedAccount>,
) -> Result<()> {
    let mut groups: HashMap<String, Vec<(Side, KeyedAccount)>> = HashMap::new();
    let mut after = None;
    loop {
        let page = source.user_emails(after, BATCH).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for a in page {
            let key = EmailKey::of(&a.email).as_str().to_owned();
            if suspects.contains(&key_digest(&key)) {
                groups.entry(key).or_default().push((Side::Source, a));
            }
        }
    }
    for a in in_target {
        let key = EmailKey::of(&a.email).as_str().to_owned();
        groups.entry(key).or_default().push((Side::Target, a));
    }
    let mut collisions: Vec<ImportCollision> = groups
        .into_iter()
        .filter(|(_, accounts)| accounts.len() > 1)
        .map(|(key, mut accounts)| {
            accounts.sort_by_key(|(side, a)| (a.created_at, a.id, *side == Side::Target));
            ImportCollision { key, accounts }
        })
        .collect();
    if collisions.is_empty() {
        // Digests matched but keys differ (a 128-bit coincidence): nothing to refuse.
        return Ok(());
    }
    collisions.sort_by(|a, b| a.key.cmp(&b.key));
    Err(ImportError::DuplicateEmails(ImportCollisions(collisions)))
}

// ---------------------------------------------------------------------------------
// The source
// ---------------------------------------------------------------------------------

enum SourceDb {
    Pg(PgConnection),
    Sqlite(Arc<Mutex<Connection>>),
}

struct Source {
    db: SourceDb,
    kind: SourceKind,
}

/// Runs `job` on a SQLite connection on the blocking pool.
async fn blocking<T, F>(conn: &Arc<Mutex<Connection>>, job: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
{
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
        job(&mut guard)
    })
    .await
    .map_err(|e| ImportError::Store(StoreError::Unavailable(format!("import task failed: {e}"))))?
}

/// The keyset condition: `>=` the nil id on the first page, `>` the last id after.
fn keyset(after: Option<Uuid>) -> (&'static str, Uuid) {
    match after {
        None => (">=", Uuid::nil()),
        Some(id) => (">", id),
    }
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The migrations a rotor database has applied must all be known to this rotor (an
/// older schema is fine: the import reads only columns every version has).
fn check_rotor_versions(applied: &[i64], known: &[(i64, &str, &str)]) -> Result<()> {
    let unknown: Vec<String> = applied
        .iter()
        .filter(|v| !known.iter().any(|(k, _, _)| k == *v))
        .map(i64::to_string)
        .collect();
    if !unknown.is_empty() {
        return Err(ImportError::Source(format!(
            "the source rotor database has migrations this rotor does not know ({}): it \
             was written by a newer rotor; import with that version",
            unknown.join(", ")
        )));
    }
    if !applied.contains(&1) {
        return Err(ImportError::Source(
            "the source has no rotor schema (migration 1 not applied)".into(),
        ));
    }
    Ok(())
}

impl Source {
    async fn open(target: &DatabaseTarget) -> Result<Self> {
        match target {
            DatabaseTarget::Postgres(url) => {
                let mut conn = PgConnection::connect(url).await?;
                sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .execute(&mut conn)
                    .await?;
                let kind = match adopt::detect(&mut conn).await? {
                    SchemaState::Empty => {
                        return Err(ImportError::Source("the source database is empty".into()))
                    }
                    SchemaState::Original { revision } => {
                        adopt::check_revision(&revision)?;
                        SourceKind::Original { revision }
                    }
                    SchemaState::Rotor => {
                        let applied: Vec<i64> = sqlx::query_scalar(
                            "SELECT version FROM _sqlx_migrations WHERE success",
                        )
                        .fetch_all(&mut conn)
                        .await?;
                        check_rotor_versions(&applied, migrations::POSTGRES)?;
                        SourceKind::RotorPostgres
                    }
                };
                Ok(Self {
                    db: SourceDb::Pg(conn),
                    kind,
                })
            }
            DatabaseTarget::Sqlite(path) => {
                if path.as_os_str() == ":memory:" {
                    return Err(ImportError::Source(
                        "an in-memory SQLite database cannot be a source".into(),
                    ));
                }
                if !path.exists() {
                    return Err(ImportError::Source(format!(
                        "no SQLite database at {}",
                        path.display()
                    )));
                }
                let path = path.clone();
                let conn = tokio::task::spawn_blocking(move || open_sqlite_source(&path))
                    .await
                    .map_err(|e| {
                        ImportError::Store(StoreError::Unavailable(format!("open failed: {e}")))
                    })??;
                Ok(Self {
                    db: SourceDb::Sqlite(Arc::new(Mutex::new(conn))),
                    kind: SourceKind::RotorSqlite,
                })
            }
        }
    }

    async fn close(self) {
        if let SourceDb::Pg(mut conn) = self.db {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
            let _ = conn.close().await;
        }
    }

    fn original(&self) -> bool {
        matches!(self.kind, SourceKind::Original { .. })
    }

    async fn count(&mut self, what: &'static str) -> Result<u64> {
        let original = self.original();
        let sql = match what {
            "users" => "SELECT count(*) FROM users",
            "sessions" if original => "SELECT count(DISTINCT family_id) FROM refresh_tokens",
            "sessions" => "SELECT count(*) FROM sessions",
            "refresh_tokens" => "SELECT count(*) FROM refresh_tokens",
            "revoked refresh_tokens" => "SELECT count(*) FROM refresh_tokens WHERE is_revoked",
            "audit_events" if original => return Ok(0),
            _ => "SELECT count(*) FROM audit_events",
        };
        let n: i64 = match &mut self.db {
            SourceDb::Pg(conn) => sqlx::query_scalar(sql).fetch_one(&mut *conn).await?,
            SourceDb::Sqlite(conn) => {
                blocking(conn, move |c| Ok(c.query_row(sql, [], |r| r.get(0))?)).await?
            }
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Families of an original source holding several live tokens (rotor's schema
    /// forbids them).
    async fn forked(&mut self) -> Result<Vec<ForkedFamily>> {
        let SourceDb::Pg(conn) = &mut self.db else {
            return Ok(Vec::new());
        };
        if !matches!(self.kind, SourceKind::Original { .. }) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT family_id, min(user_id::text)::uuid AS user_id,
                    array_agg(id ORDER BY created_at DESC, id DESC) AS ids
             FROM refresh_tokens WHERE NOT is_revoked
             GROUP BY family_id HAVING count(*) > 1 ORDER BY family_id",
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let ids: Vec<Uuid> = r.try_get("ids")?;
            let Some((keep, revoke)) = ids.split_first() else {
                continue;
            };
            out.push(ForkedFamily {
                family_id: r.try_get("family_id")?,
                user_id: r.try_get("user_id")?,
                keep: *keep,
                revoke: revoke.to_vec(),
            });
        }
        Ok(out)
    }

    async fn user_emails(&mut self, after: Option<Uuid>, n: usize) -> Result<Vec<KeyedAccount>> {
        let (op, from) = keyset(after);
        match &mut self.db {
            SourceDb::Pg(conn) => {
                let sql = format!(
                    "SELECT id, email::text AS email, created_at FROM users
                     WHERE id {op} $1 ORDER BY id LIMIT $2"
                );
                let rows = sqlx::query(&sql)
                    .bind(from)
                    .bind(limit(n))
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(KeyedAccount {
                            id: r.try_get("id")?,
                            email: r.try_get("email")?,
                            created_at: r.try_get("created_at")?,
                        })
                    })
                    .collect()
            }
            SourceDb::Sqlite(conn) => {
                let sql = format!(
                    "SELECT id, email, created_at FROM users WHERE id {op} ?1 ORDER BY id LIMIT ?2"
                );
                blocking(conn, move |c| {
                    Ok(rows::all(
                        c,
                        &sql,
                        params![from.to_string(), limit(n)],
                        |r| {
                            Ok(KeyedAccount {
                                id: rows::col_uuid(r, "id")?,
                                email: r.get("email")?,
                                created_at: rows::col_ts(r, "created_at")?,
                            })
                        },
                    )?)
                })
                .await
            }
        }
    }

    async fn users(&mut self, after: Option<Uuid>, n: usize) -> Result<Vec<User>> {
        let (op, from) = keyset(after);
        match &mut self.db {
            SourceDb::Pg(conn) => {
                let sql = format!(
                    "SELECT id, email::text AS email, hashed_password::text AS hashed_password,
                            full_name::text AS full_name, is_active, is_verified,
                            role::text AS role, token_version::bigint AS token_version,
                            created_at, updated_at
                     FROM users WHERE id {op} $1 ORDER BY id LIMIT $2"
                );
                let rows = sqlx::query(&sql)
                    .bind(from)
                    .bind(limit(n))
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter().map(pg_user).collect()
            }
            SourceDb::Sqlite(conn) => {
                let sql = format!(
                    "SELECT {} FROM users WHERE id {op} ?1 ORDER BY id LIMIT ?2",
                    rows::USER_COLS
                );
                blocking(conn, move |c| {
                    Ok(rows::all(
                        c,
                        &sql,
                        params![from.to_string(), limit(n)],
                        rows::user,
                    )?)
                })
                .await
            }
        }
    }

    async fn sessions(
        &mut self,
        after: Option<Uuid>,
        n: usize,
        options: ImportOptions,
    ) -> Result<Vec<Session>> {
        let (op, from) = keyset(after);
        let original = self.original();
        match &mut self.db {
            SourceDb::Pg(conn) if original => {
                // As adoption derives them: device and IP of the family's newest token;
                // ends at rotor's absolute lifetime, never before its live token expires.
                let sql = format!(
                    "SELECT f.family_id, n.user_id, n.device_id, n.device_name, n.ip_address,
                            f.first_created, f.last_created,
                            GREATEST(f.first_created + $3, f.max_expires) AS absolute_expires_at,
                            CASE WHEN f.has_live THEN NULL ELSE COALESCE(f.last_revoked, $4) END
                                AS revoked_at
                     FROM (SELECT family_id, min(created_at) AS first_created,
                                  max(created_at) AS last_created,
                                  max(expires_at) AS max_expires,
                                  max(revoked_at) AS last_revoked,
                                  bool_or(NOT is_revoked) AS has_live
                           FROM refresh_tokens WHERE family_id {op} $1
                           GROUP BY family_id ORDER BY family_id LIMIT $2) f
                     CROSS JOIN LATERAL (
                         SELECT user_id, device_id::text AS device_id,
                                device_name::text AS device_name, ip_address::text AS ip_address
                         FROM refresh_tokens t WHERE t.family_id = f.family_id
                         ORDER BY t.created_at DESC, t.id DESC LIMIT 1) n
                     ORDER BY f.family_id"
                );
                let rows = sqlx::query(&sql)
                    .bind(from)
                    .bind(limit(n))
                    .bind(options.session_max_lifetime)
                    .bind(options.now)
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(Session {
                            id: r.try_get("family_id")?,
                            user_id: r.try_get("user_id")?,
                            device_id: r.try_get("device_id")?,
                            device_name: r.try_get("device_name")?,
                            user_agent: None,
                            ip_address: r.try_get("ip_address")?,
                            client_id: None,
                            created_at: r.try_get("first_created")?,
                            last_used_at: r.try_get("last_created")?,
                            absolute_expires_at: r.try_get("absolute_expires_at")?,
                            revoked_at: r.try_get("revoked_at")?,
                        })
                    })
                    .collect()
            }
            SourceDb::Pg(conn) => {
                let sql = format!(
                    "SELECT id, user_id, device_id::text AS device_id,
                            device_name::text AS device_name, user_agent::text AS user_agent,
                            ip_address::text AS ip_address, client_id::text AS client_id,
                            created_at, last_used_at, absolute_expires_at, revoked_at
                     FROM sessions WHERE id {op} $1 ORDER BY id LIMIT $2"
                );
                let rows = sqlx::query(&sql)
                    .bind(from)
                    .bind(limit(n))
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(Session {
                            id: r.try_get("id")?,
                            user_id: r.try_get("user_id")?,
                            device_id: r.try_get("device_id")?,
                            device_name: r.try_get("device_name")?,
                            user_agent: r.try_get("user_agent")?,
                            ip_address: r.try_get("ip_address")?,
                            client_id: r.try_get("client_id")?,
                            created_at: r.try_get("created_at")?,
                            last_used_at: r.try_get("last_used_at")?,
                            absolute_expires_at: r.try_get("absolute_expires_at")?,
                            revoked_at: r.try_get("revoked_at")?,
                        })
                    })
                    .collect()
            }
            SourceDb::Sqlite(conn) => {
                let sql = format!(
                    "SELECT id, user_id, device_id, device_name, user_agent, ip_address,
                            client_id, created_at, last_used_at, absolute_expires_at, revoked_at
                     FROM sessions WHERE id {op} ?1 ORDER BY id LIMIT ?2"
                );
                blocking(conn, move |c| {
                    Ok(rows::all(
                        c,
                        &sql,
                        params![from.to_string(), limit(n)],
                        rows::session,
                    )?)
                })
                .await
            }
        }
    }

    async fn tokens(&mut self, after: Option<Uuid>, n: usize) -> Result<Vec<RefreshToken>> {
        let (op, from) = keyset(after);
        match &mut self.db {
            SourceDb::Pg(conn) => {
                let sql = format!(
                    "SELECT id, token_hash::text AS token_hash, user_id, family_id,
                            device_id::text AS device_id, device_name::text AS device_name,
                            ip_address::text AS ip_address, expires_at, is_revoked, revoked_at,
                            created_at, updated_at
                     FROM refresh_tokens WHERE id {op} $1 ORDER BY id LIMIT $2"
                );
                let rows = sqlx::query(&sql)
                    .bind(from)
                    .bind(limit(n))
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter().map(pg_token).collect()
            }
            SourceDb::Sqlite(conn) => {
                let sql = format!(
                    "SELECT {} FROM refresh_tokens WHERE id {op} ?1 ORDER BY id LIMIT ?2",
                    rows::TOKEN_COLS
                );
                blocking(conn, move |c| {
                    Ok(rows::all(
                        c,
                        &sql,
                        params![from.to_string(), limit(n)],
                        rows::token,
                    )?)
                })
                .await
            }
        }
    }

    /// Revoked tokens: (id, revoked_at, updated_at). A revoked row without a time (the
    /// original's `revoke_family` may leave none) gets `now`.
    async fn revoked_tokens(
        &mut self,
        after: Option<Uuid>,
        n: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, DateTime<Utc>, Option<DateTime<Utc>>)>> {
        let (op, from) = keyset(after);
        match &mut self.db {
            SourceDb::Pg(conn) => {
                let sql = format!(
                    "SELECT id, revoked_at, updated_at FROM refresh_tokens
                     WHERE is_revoked AND id {op} $1 ORDER BY id LIMIT $2"
                );
                let rows = sqlx::query(&sql)
                    .bind(from)
                    .bind(limit(n))
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter()
                    .map(|r| {
                        let at: Option<DateTime<Utc>> = r.try_get("revoked_at")?;
                        Ok((
                            r.try_get("id")?,
                            at.unwrap_or(now),
                            r.try_get("updated_at")?,
                        ))
                    })
                    .collect()
            }
            SourceDb::Sqlite(conn) => {
                let sql = format!(
                    "SELECT id, revoked_at, updated_at FROM refresh_tokens
                     WHERE is_revoked = 1 AND id {op} ?1 ORDER BY id LIMIT ?2"
                );
                blocking(conn, move |c| {
                    Ok(rows::all(
                        c,
                        &sql,
                        params![from.to_string(), limit(n)],
                        |r| {
                            Ok((
                                rows::col_uuid(r, "id")?,
                                rows::col_ts_opt(r, "revoked_at")?.unwrap_or(now),
                                rows::col_ts_opt(r, "updated_at")?,
                            ))
                        },
                    )?)
                })
                .await
            }
        }
    }

    async fn events(&mut self, after: Option<Uuid>, n: usize) -> Result<Vec<AuditEvent>> {
        if self.original() {
            return Ok(Vec::new());
        }
        let (op, from) = keyset(after);
        match &mut self.db {
            SourceDb::Pg(conn) => {
                let sql = format!(
                    "SELECT id, created_at, kind::text AS kind, user_id, session_id,
                            ip_address::text AS ip_address, user_agent::text AS user_agent, detail
                     FROM audit_events WHERE id {op} $1 ORDER BY id LIMIT $2"
                );
                let rows = sqlx::query(&sql)
                    .bind(from)
                    .bind(limit(n))
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(AuditEvent {
                            id: r.try_get("id")?,
                            created_at: r.try_get("created_at")?,
                            kind: r.try_get("kind")?,
                            user_id: r.try_get("user_id")?,
                            session_id: r.try_get("session_id")?,
                            ip_address: r.try_get("ip_address")?,
                            user_agent: r.try_get("user_agent")?,
                            detail: r.try_get("detail")?,
                        })
                    })
                    .collect()
            }
            SourceDb::Sqlite(conn) => {
                let sql = format!(
                    "SELECT {} FROM audit_events WHERE id {op} ?1 ORDER BY id LIMIT ?2",
                    rows::EVENT_COLS
                );
                blocking(conn, move |c| {
                    Ok(rows::all(
                        c,
                        &sql,
                        params![from.to_string(), limit(n)],
                        rows::event,
                    )?)
                })
                .await
            }
        }
    }

    async fn keys(&mut self) -> Result<Vec<StoredKey>> {
        if self.original() {
            return Ok(Vec::new());
        }
        match &mut self.db {
            SourceDb::Pg(conn) => {
                let rows = sqlx::query(
                    "SELECT kid::text AS kid, algorithm::text AS algorithm, public_key,
                            private_key_sealed, created_at, retired_at
                     FROM signing_keys ORDER BY created_at, kid",
                )
                .fetch_all(&mut *conn)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(StoredKey {
                            kid: r.try_get("kid")?,
                            algorithm: r.try_get("algorithm")?,
                            public_key: r.try_get("public_key")?,
                            private_key_sealed: r.try_get("private_key_sealed")?,
                            created_at: r.try_get("created_at")?,
                            retired_at: r.try_get("retired_at")?,
                        })
                    })
                    .collect()
            }
            SourceDb::Sqlite(conn) => {
                let sql = format!(
                    "SELECT {} FROM signing_keys ORDER BY created_at, kid",
                    rows::KEY_COLS
                );
                blocking(conn, move |c| Ok(rows::all(c, &sql, [], rows::key)?)).await
            }
        }
    }
}

fn open_sqlite_source(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let has_table: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        [],
        |r| r.get(0),
    )?;
    if has_table == 0 {
        return Err(ImportError::Source(format!(
            "{} is not a rotor database (no migrations table)",
            path.display()
        )));
    }
    // One read transaction: every table is read from the same snapshot.
    conn.execute_batch("BEGIN")?;
    let applied = rows::all(
        &conn,
        "SELECT version FROM _sqlx_migrations WHERE success",
        [],
        |r| Ok(r.get::<_, i64>(0)?),
    )?;
    check_rotor_versions(&applied, migrations::SQLITE)?;
    Ok(conn)
}

fn pg_role(role: &str) -> Result<Role> {
    match role {
        // The original's `unknown` role: rotor treats such accounts as users.
        "unknown" => Ok(Role::User),
        r => Role::parse(r).ok_or_else(|| StoreError::Corrupt(format!("role {r:?}")).into()),
    }
}

fn pg_user(r: &PgRow) -> Result<User> {
    let role: String = r.try_get("role")?;
    Ok(User {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        hashed_password: r.try_get("hashed_password")?,
        full_name: r.try_get("full_name")?,
        is_active: r.try_get("is_active")?,
        is_verified: r.try_get("is_verified")?,
        role: pg_role(&role)?,
        token_version: r.try_get("token_version")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn pg_token(r: &PgRow) -> Result<RefreshToken> {
    Ok(RefreshToken {
        id: r.try_get("id")?,
        token_hash: r.try_get("token_hash")?,
        user_id: r.try_get("user_id")?,
        family_id: r.try_get("family_id")?,
        device_id: r.try_get("device_id")?,
        device_name: r.try_get("device_name")?,
        ip_address: r.try_get("ip_address")?,
        expires_at: r.try_get("expires_at")?,
        is_revoked: r.try_get("is_revoked")?,
        revoked_at: r.try_get("revoked_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

// ---------------------------------------------------------------------------------
// The target
// ---------------------------------------------------------------------------------

enum Target {
    Pg(PgConnection),
    Sqlite(Arc<Mutex<Connection>>),
}

/// Maps a unique violation while inserting tokens to [`ImportError::TokenConflict`],
/// naming the first token of the batch that the target refuses.
fn token_conflict(e: ImportError, batch: &[RefreshToken]) -> ImportError {
    let unique = matches!(&e, ImportError::Store(StoreError::Conflict(_)));
    if !unique {
        return e;
    }
    let (token, family) = batch
        .first()
        .map_or((Uuid::nil(), Uuid::nil()), |t| (t.id, t.family_id));
    ImportError::TokenConflict {
        token,
        family,
        detail: e.to_string(),
    }
}

impl Target {
    async fn open(target: &DatabaseTarget) -> Result<Self> {
        match target {
            DatabaseTarget::Postgres(url) => {
                let mut conn = PgConnection::connect(url).await?;
                sqlx::raw_sql("BEGIN").execute(&mut conn).await?;
                // Two imports into one database run one after the other.
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(IMPORT_LOCK_KEY)
                    .execute(&mut conn)
                    .await?;
                Ok(Self::Pg(conn))
            }
            DatabaseTarget::Sqlite(path) => {
                if path.as_os_str() == ":memory:" {
                    return Err(ImportError::Source(
                        "DATABASE_URL is an in-memory SQLite database: nothing would be kept"
                            .into(),
                    ));
                }
                let path: PathBuf = path.clone();
                let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
                    let conn = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    conn.busy_timeout(std::time::Duration::from_secs(30))?;
                    conn.pragma_update(None, "foreign_keys", "ON")?;
                    conn.pragma_update(None, "synchronous", "NORMAL")?;
                    conn.pragma_update(None, "cache_size", -65536)?;
                    conn.execute_batch("BEGIN IMMEDIATE")?;
                    Ok(conn)
                })
                .await
                .map_err(|e| {
                    ImportError::Store(StoreError::Unavailable(format!("open failed: {e}")))
                })??;
                Ok(Self::Sqlite(Arc::new(Mutex::new(conn))))
            }
        }
    }

    async fn commit(&mut self) -> Result<()> {
        match self {
            Self::Pg(conn) => {
                sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
            }
            Self::Sqlite(conn) => {
                blocking(conn, |c| {
                    c.execute_batch("COMMIT")?;
                    // Leave the WAL empty for the server that opens the file next.
                    let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                    Ok(())
                })
                .await?;
            }
        }
        Ok(())
    }

    async fn rollback(&mut self) {
        match self {
            Self::Pg(conn) => {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            }
            Self::Sqlite(conn) => {
                let _ = blocking(conn, |c| {
                    if !c.is_autocommit() {
                        c.execute_batch("ROLLBACK")?;
                    }
                    Ok(())
                })
                .await;
            }
        }
    }

    /// The target's accounts with their stored key (`None`: not keyed yet).
    async fn user_emails(
        &mut self,
        after: Option<Uuid>,
        n: usize,
    ) -> Result<Vec<(KeyedAccount, Option<String>)>> {
        let (op, from) = keyset(after);
        match self {
            Self::Pg(conn) => {
                let sql = format!(
                    "SELECT id, email::text AS email, email_key, created_at FROM users
                     WHERE id {op} $1 ORDER BY id LIMIT $2"
                );
                let rows = sqlx::query(&sql)
                    .bind(from)
                    .bind(limit(n))
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            KeyedAccount {
                                id: r.try_get("id")?,
                                email: r.try_get("email")?,
                                created_at: r.try_get("created_at")?,
                            },
                            r.try_get("email_key")?,
                        ))
                    })
                    .collect()
            }
            Self::Sqlite(conn) => {
                let sql = format!(
                    "SELECT id, email, email_key, created_at FROM users
                     WHERE id {op} ?1 ORDER BY id LIMIT ?2"
                );
                blocking(conn, move |c| {
                    Ok(rows::all(
                        c,
                        &sql,
                        params![from.to_string(), limit(n)],
                        |r| {
                            Ok((
                                KeyedAccount {
                                    id: rows::col_uuid(r, "id")?,
                                    email: r.get("email")?,
                                    created_at: rows::col_ts(r, "created_at")?,
                                },
                                r.get("email_key")?,
                            ))
                        },
                    )?)
                })
                .await
            }
        }
    }

    async fn has_tokens(&mut self) -> Result<bool> {
        let sql = "SELECT EXISTS (SELECT 1 FROM refresh_tokens)";
        Ok(match self {
            Self::Pg(conn) => sqlx::query_scalar(sql).fetch_one(&mut *conn).await?,
            Self::Sqlite(conn) => {
                blocking(conn, move |c| Ok(c.query_row(sql, [], |r| r.get(0))?)).await?
            }
        })
    }

    async fn write_users(&mut self, rows: Vec<(User, String)>) -> Result<u64> {
        match self {
            Self::Pg(conn) => {
                let mut cols = UserCols::default();
                for (u, key) in rows {
                    cols.push(u, key);
                }
                let done = sqlx::query(
                    "INSERT INTO users (id, email, email_key, hashed_password, full_name,
                                        is_active, is_verified, role, token_version,
                                        created_at, updated_at)
                     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],
                                          $5::text[], $6::bool[], $7::bool[], $8::text[],
                                          $9::bigint[], $10::timestamptz[], $11::timestamptz[])
                     ON CONFLICT (id) DO UPDATE SET
                         email = excluded.email, email_key = excluded.email_key,
                         hashed_password = excluded.hashed_password,
                         full_name = excluded.full_name, is_active = excluded.is_active,
                         is_verified = excluded.is_verified, role = excluded.role,
                         token_version = GREATEST(users.token_version, excluded.token_version),
                         updated_at = excluded.updated_at
                     WHERE (users.email, users.email_key, users.hashed_password,
                            users.full_name, users.is_active, users.is_verified,
                            users.role::text, users.updated_at)
                           IS DISTINCT FROM
                           (excluded.email, excluded.email_key, excluded.hashed_password,
                            excluded.full_name, excluded.is_active, excluded.is_verified,
                            excluded.role::text, excluded.updated_at)
                        OR users.token_version < excluded.token_version",
                )
                .bind(cols.id)
                .bind(cols.email)
                .bind(cols.key)
                .bind(cols.hash)
                .bind(cols.name)
                .bind(cols.active)
                .bind(cols.verified)
                .bind(cols.role)
                .bind(cols.version)
                .bind(cols.created)
                .bind(cols.updated)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected())
            }
            Self::Sqlite(conn) => {
                blocking(conn, move |c| {
                    let mut stmt = c.prepare_cached(
                        "INSERT INTO users (id, email, email_key, hashed_password, full_name,
                                            is_active, is_verified, role, token_version,
                                            created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                         ON CONFLICT (id) DO UPDATE SET
                             email = excluded.email, email_key = excluded.email_key,
                             hashed_password = excluded.hashed_password,
                             full_name = excluded.full_name, is_active = excluded.is_active,
                             is_verified = excluded.is_verified, role = excluded.role,
                             token_version = max(users.token_version, excluded.token_version),
                             updated_at = excluded.updated_at
                         WHERE users.email IS NOT excluded.email
                            OR users.email_key IS NOT excluded.email_key
                            OR users.hashed_password IS NOT excluded.hashed_password
                            OR users.full_name IS NOT excluded.full_name
                            OR users.is_active IS NOT excluded.is_active
                            OR users.is_verified IS NOT excluded.is_verified
                            OR users.role IS NOT excluded.role
                            OR users.updated_at IS NOT excluded.updated_at
                            OR users.token_version < excluded.token_version",
                    )?;
                    let mut n = 0;
                    for (u, key) in rows {
                        n += stmt.execute(params![
                            u.id.to_string(),
                            u.email,
                            key,
                            u.hashed_password,
                            u.full_name,
                            u.is_active,
                            u.is_verified,
                            u.role.as_str(),
                            u.token_version,
                            ts(u.created_at),
                            u.updated_at.map(ts),
                        ])? as u64;
                    }
                    Ok(n)
                })
                .await
            }
        }
    }

    async fn write_sessions(&mut self, rows: Vec<Session>) -> Result<u64> {
        match self {
            Self::Pg(conn) => {
                let mut c = SessionCols::default();
                for s in rows {
                    c.push(s);
                }
                let done = sqlx::query(
                    "INSERT INTO sessions (id, user_id, device_id, device_name, user_agent,
                                           ip_address, client_id, created_at, last_used_at,
                                           absolute_expires_at, revoked_at)
                     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[],
                                          $5::text[], $6::text[], $7::text[],
                                          $8::timestamptz[], $9::timestamptz[],
                                          $10::timestamptz[], $11::timestamptz[])
                     ON CONFLICT (id) DO UPDATE SET
                         last_used_at = GREATEST(sessions.last_used_at, excluded.last_used_at),
                         ip_address = CASE WHEN excluded.last_used_at > sessions.last_used_at
                                           THEN excluded.ip_address
                                           ELSE sessions.ip_address END,
                         revoked_at = COALESCE(sessions.revoked_at, excluded.revoked_at)
                     WHERE excluded.last_used_at > sessions.last_used_at
                        OR (sessions.revoked_at IS NULL AND excluded.revoked_at IS NOT NULL)",
                )
                .bind(c.id)
                .bind(c.user)
                .bind(c.device_id)
                .bind(c.device_name)
                .bind(c.agent)
                .bind(c.ip)
                .bind(c.client)
                .bind(c.created)
                .bind(c.used)
                .bind(c.ends)
                .bind(c.revoked)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected())
            }
            Self::Sqlite(conn) => {
                blocking(conn, move |c| {
                    let mut stmt = c.prepare_cached(
                        "INSERT INTO sessions (id, user_id, device_id, device_name, user_agent,
                                               ip_address, client_id, created_at, last_used_at,
                                               absolute_expires_at, revoked_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                         ON CONFLICT (id) DO UPDATE SET
                             last_used_at = max(sessions.last_used_at, excluded.last_used_at),
                             ip_address = CASE WHEN excluded.last_used_at > sessions.last_used_at
                                               THEN excluded.ip_address
                                               ELSE sessions.ip_address END,
                             revoked_at = COALESCE(sessions.revoked_at, excluded.revoked_at)
                         WHERE excluded.last_used_at > sessions.last_used_at
                            OR (sessions.revoked_at IS NULL AND excluded.revoked_at IS NOT NULL)",
                    )?;
                    let mut n = 0;
                    for s in rows {
                        n += stmt.execute(params![
                            s.id.to_string(),
                            s.user_id.to_string(),
                            s.device_id,
                            s.device_name,
                            s.user_agent,
                            s.ip_address,
                            s.client_id,
                            ts(s.created_at),
                            ts(s.last_used_at),
                            ts(s.absolute_expires_at),
                            s.revoked_at.map(ts),
                        ])? as u64;
                    }
                    Ok(n)
                })
                .await
            }
        }
    }

    /// Revokes the target's live tokens among these: (id, revoked_at, updated_at).
    async fn revoke_tokens(
        &mut self,
        rows: Vec<(Uuid, DateTime<Utc>, Option<DateTime<Utc>>)>,
    ) -> Result<u64> {
        match self {
            Self::Pg(conn) => {
                let mut ids = Vec::with_capacity(rows.len());
                let mut at = Vec::with_capacity(rows.len());
                let mut updated = Vec::with_capacity(rows.len());
                for (id, r, u) in rows {
                    ids.push(id);
                    at.push(r);
                    updated.push(u.unwrap_or(r));
                }
                let done = sqlx::query(
                    "UPDATE refresh_tokens t
                     SET is_revoked = TRUE, revoked_at = v.revoked_at, updated_at = v.updated_at
                     FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[])
                          AS v(id, revoked_at, updated_at)
                     WHERE t.id = v.id AND NOT t.is_revoked",
                )
                .bind(ids)
                .bind(at)
                .bind(updated)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected())
            }
            Self::Sqlite(conn) => {
                blocking(conn, move |c| {
                    let mut stmt = c.prepare_cached(
                        "UPDATE refresh_tokens SET is_revoked = 1, revoked_at = ?2, updated_at = ?3
                         WHERE id = ?1 AND is_revoked = 0",
                    )?;
                    let mut n = 0;
                    for (id, r, u) in rows {
                        n += stmt.execute(params![id.to_string(), ts(r), ts(u.unwrap_or(r))])?
                            as u64;
                    }
                    Ok(n)
                })
                .await
            }
        }
    }

    /// Inserts the tokens the target lacks (by id); tokens it has are left as they are
    /// (their revocation came through [`Target::revoke_tokens`]).
    async fn write_tokens(&mut self, rows: Vec<RefreshToken>) -> Result<u64> {
        match self {
            Self::Pg(conn) => {
                let mut c = TokenCols::default();
                for t in &rows {
                    c.push(t);
                }
                let done = sqlx::query(
                    "INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, device_id,
                                                 device_name, ip_address, expires_at, is_revoked,
                                                 revoked_at, created_at, updated_at)
                     SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[],
                                          $5::text[], $6::text[], $7::text[],
                                          $8::timestamptz[], $9::bool[], $10::timestamptz[],
                                          $11::timestamptz[], $12::timestamptz[])
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(c.id)
                .bind(c.hash)
                .bind(c.user)
                .bind(c.family)
                .bind(c.device_id)
                .bind(c.device_name)
                .bind(c.ip)
                .bind(c.expires)
                .bind(c.revoked)
                .bind(c.revoked_at)
                .bind(c.created)
                .bind(c.updated)
                .execute(&mut *conn)
                .await;
                match done {
                    Ok(d) => Ok(d.rows_affected()),
                    Err(e) => Err(token_conflict(e.into(), &rows)),
                }
            }
            Self::Sqlite(conn) => {
                blocking(conn, move |c| {
                    let mut stmt = c.prepare_cached(
                        "INSERT INTO refresh_tokens (id, token_hash, user_id, family_id,
                                                     device_id, device_name, ip_address,
                                                     expires_at, is_revoked, revoked_at,
                                                     created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                         ON CONFLICT (id) DO NOTHING",
                    )?;
                    let mut n = 0;
                    for t in &rows {
                        let done = stmt.execute(params![
                            t.id.to_string(),
                            t.token_hash,
                            t.user_id.to_string(),
                            t.family_id.to_string(),
                            t.device_id,
                            t.device_name,
                            t.ip_address,
                            ts(t.expires_at),
                            t.is_revoked,
                            t.revoked_at.map(ts),
                            ts(t.created_at),
                            t.updated_at.map(ts),
                        ]);
                        match done {
                            Ok(k) => n += k as u64,
                            Err(e) => {
                                return Err(token_conflict(e.into(), std::slice::from_ref(t)))
                            }
                        }
                    }
                    Ok(n)
                })
                .await
            }
        }
    }

    async fn write_events(&mut self, rows: Vec<AuditEvent>) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        match self {
            Self::Pg(conn) => {
                let n = rows.len();
                let (mut id, mut at, mut kind, mut user, mut session) = (
                    Vec::with_capacity(n),
                    Vec::with_capacity(n),
                    Vec::with_capacity(n),
                    Vec::with_capacity(n),
                    Vec::with_capacity(n),
                );
                let (mut ip, mut agent, mut detail) = (
                    Vec::with_capacity(n),
                    Vec::with_capacity(n),
                    Vec::with_capacity(n),
                );
                for e in rows {
                    id.push(e.id);
                    at.push(e.created_at);
                    kind.push(e.kind);
                    user.push(e.user_id);
                    session.push(e.session_id);
                    ip.push(e.ip_address);
                    agent.push(e.user_agent);
                    detail.push(e.detail);
                }
                let done = sqlx::query(
                    "INSERT INTO audit_events (id, created_at, kind, user_id, session_id,
                                               ip_address, user_agent, detail)
                     SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[],
                                          $4::uuid[], $5::uuid[], $6::text[], $7::text[],
                                          $8::text[])
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(at)
                .bind(kind)
                .bind(user)
                .bind(session)
                .bind(ip)
                .bind(agent)
                .bind(detail)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected())
            }
            Self::Sqlite(conn) => {
                blocking(conn, move |c| {
                    let mut stmt = c.prepare_cached(
                        "INSERT INTO audit_events (id, created_at, kind, user_id, session_id,
                                                   ip_address, user_agent, detail)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (id) DO NOTHING",
                    )?;
                    let mut n = 0;
                    for e in rows {
                        n += stmt.execute(params![
                            e.id.to_string(),
                            ts(e.created_at),
                            e.kind,
                            e.user_id.map(|u| u.to_string()),
                            e.session_id.map(|u| u.to_string()),
                            e.ip_address,
                            e.user_agent,
                            e.detail,
                        ])? as u64;
                    }
                    Ok(n)
                })
                .await
            }
        }
    }

    async fn write_keys(&mut self, rows: Vec<StoredKey>) -> Result<u64> {
        let mut n = 0;
        match self {
            Self::Pg(conn) => {
                for k in rows {
                    n += sqlx::query(
                        "INSERT INTO signing_keys (kid, algorithm, public_key, private_key_sealed,
                                                   created_at, retired_at)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (kid) DO UPDATE SET retired_at = excluded.retired_at
                         WHERE signing_keys.retired_at IS NULL AND excluded.retired_at IS NOT NULL",
                    )
                    .bind(k.kid)
                    .bind(k.algorithm)
                    .bind(k.public_key)
                    .bind(k.private_key_sealed)
                    .bind(k.created_at)
                    .bind(k.retired_at)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                }
            }
            Self::Sqlite(conn) => {
                n = blocking(conn, move |c| {
                    let mut stmt = c.prepare_cached(
                        "INSERT INTO signing_keys (kid, algorithm, public_key, private_key_sealed,
                                                   created_at, retired_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (kid) DO UPDATE SET retired_at = excluded.retired_at
                         WHERE signing_keys.retired_at IS NULL AND excluded.retired_at IS NOT NULL",
                    )?;
                    let mut n = 0;
                    for k in rows {
                        n += stmt.execute(params![
                            k.kid,
                            k.algorithm,
                            k.public_key,
                            k.private_key_sealed,
                            ts(k.created_at),
                            k.retired_at.map(ts),
                        ])? as u64;
                    }
                    Ok(n)
                })
                .await?;
            }
        }
        Ok(n)
    }
}

/// Column arrays of a users batch, for `unnest`.
#[derive(Default)]
struct UserCols {
    id: Vec<Uuid>,
    email: Vec<String>,
    key: Vec<String>,
    hash: Vec<String>,
    name: Vec<Option<String>>,
    active: Vec<bool>,
    verified: Vec<bool>,
    role: Vec<&'static str>,
    version: Vec<i64>,
    created: Vec<DateTime<Utc>>,
    updated: Vec<Option<DateTime<Utc>>>,
}

impl UserCols {
    fn push(&mut self, u: User, key: String) {
        self.id.push(u.id);
        self.email.push(u.email);
        self.key.push(key);
        self.hash.push(u.hashed_password);
        self.name.push(u.full_name);
        self.active.push(u.is_active);
        self.verified.push(u.is_verified);
        self.role.push(u.role.as_str());
        self.version.push(u.token_version);
        self.created.push(u.created_at);
        self.updated.push(u.updated_at);
    }
}

#[derive(Default)]
struct SessionCols {
    id: Vec<Uuid>,
    user: Vec<Uuid>,
    device_id: Vec<Option<String>>,
    device_name: Vec<Option<String>>,
    agent: Vec<Option<String>>,
    ip: Vec<Option<String>>,
    client: Vec<Option<String>>,
    created: Vec<DateTime<Utc>>,
    used: Vec<DateTime<Utc>>,
    ends: Vec<DateTime<Utc>>,
    revoked: Vec<Option<DateTime<Utc>>>,
}

impl SessionCols {
    fn push(&mut self, s: Session) {
        self.id.push(s.id);
        self.user.push(s.user_id);
        self.device_id.push(s.device_id);
        self.device_name.push(s.device_name);
        self.agent.push(s.user_agent);
        self.ip.push(s.ip_address);
        self.client.push(s.client_id);
        self.created.push(s.created_at);
        self.used.push(s.last_used_at);
        self.ends.push(s.absolute_expires_at);
        self.revoked.push(s.revoked_at);
    }
}

#[derive(Default)]
struct TokenCols {
    id: Vec<Uuid>,
    hash: Vec<String>,
    user: Vec<Uuid>,
    family: Vec<Uuid>,
    device_id: Vec<Option<String>>,
    device_name: Vec<Option<String>>,
    ip: Vec<Option<String>>,
    expires: Vec<DateTime<Utc>>,
    revoked: Vec<bool>,
    revoked_at: Vec<Option<DateTime<Utc>>>,
    created: Vec<DateTime<Utc>>,
    updated: Vec<Option<DateTime<Utc>>>,
}

impl TokenCols {
    fn push(&mut self, t: &RefreshToken) {
        self.id.push(t.id);
        self.hash.push(t.token_hash.clone());
        self.user.push(t.user_id);
        self.family.push(t.family_id);
        self.device_id.push(t.device_id.clone());
        self.device_name.push(t.device_name.clone());
        self.ip.push(t.ip_address.clone());
        self.expires.push(t.expires_at);
        self.revoked.push(t.is_revoked);
        self.revoked_at.push(t.revoked_at);
        self.created.push(t.created_at);
        self.updated.push(t.updated_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_rotor_sources_are_refused_older_ones_accepted() {
        assert!(check_rotor_versions(&[1, 2], migrations::SQLITE).is_ok());
        assert!(check_rotor_versions(&[1, 2, 3], migrations::POSTGRES).is_ok());
        let err = check_rotor_versions(&[1, 2, 3, 99], migrations::SQLITE)
            .unwrap_err()
            .to_string();
        assert!(err.contains("newer rotor") && err.contains("99"), "{err}");
        assert!(check_rotor_versions(&[], migrations::SQLITE).is_err());
    }

    #[test]
    fn repair_events_have_stable_ids() {
        let fork = ForkedFamily {
            family_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            keep: Uuid::new_v4(),
            revoke: vec![Uuid::new_v4()],
        };
        let now = Utc::now();
        assert_eq!(repair_event(&fork, now).id, repair_event(&fork, now).id);
    }
}
