//! Versioned migrations, embedded in the binary: one directory per database under
//! `migrations/`. Never edit an applied migration; add the next number.
//!
//! PostgreSQL runs them through sqlx's migrator. SQLite, which rotor drives through
//! `rusqlite`, runs them with [`apply_sqlite`], which keeps the same bookkeeping table
//! as sqlx (`_sqlx_migrations`, SHA-384 checksums), so a database created by either
//! runner is recognised by the other.

use std::{borrow::Cow, future::Future, pin::Pin};

use sqlx::{
    error::BoxDynError,
    migrate::{Migration, MigrationSource, MigrationType, Migrator},
};

use super::{StoreError, StoreResult};

type Embedded = &'static [(i64, &'static str, &'static str)];

pub(crate) const SQLITE: Embedded = &[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "drop family index",
        include_str!("../../migrations/sqlite/0002_drop_family_index.sql"),
    ),
    (
        3,
        "email identity key",
        include_str!("../../migrations/sqlite/0003_email_key.sql"),
    ),
    (
        4,
        "webhooks",
        include_str!("../../migrations/sqlite/0004_webhooks.sql"),
    ),
];

pub(crate) const POSTGRES: Embedded = &[
    (
        1,
        "initial",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "drop family index",
        include_str!("../../migrations/postgres/0002_drop_family_index.sql"),
    ),
    (
        3,
        "email identity key",
        include_str!("../../migrations/postgres/0003_email_key.sql"),
    ),
    (
        4,
        "webhooks",
        include_str!("../../migrations/postgres/0004_webhooks.sql"),
    ),
];

#[derive(Debug)]
struct Source(Embedded);

impl MigrationSource<'static> for Source {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// A migrator for the embedded set. On PostgreSQL sqlx takes an advisory lock while
/// migrating, so several processes starting together apply each migration once.
pub(crate) async fn migrator(set: Embedded) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Source(set)).await
}

/// Applies the pending migrations of `set` on a SQLite connection that is inside a
/// write transaction (the writer thread's), so a second process starting at the same
/// time waits for the lock and then finds them applied. A migration whose text no
/// longer matches the checksum recorded when it was applied is refused.
pub(crate) fn apply_sqlite(conn: &rusqlite::Connection, set: Embedded) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
             version BIGINT PRIMARY KEY,
             description TEXT NOT NULL,
             installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
             success BOOLEAN NOT NULL,
             checksum BLOB NOT NULL,
             execution_time BIGINT NOT NULL
         )",
    )?;
    for (version, description, sql) in set {
        let checksum = ring::digest::digest(&ring::digest::SHA384, sql.as_bytes());
        let applied: Option<(Vec<u8>, bool)> = conn
            .query_row(
                "SELECT checksum, success FROM _sqlx_migrations WHERE version = ?1",
                [version],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        match applied {
            Some((stored, true)) if stored == checksum.as_ref() => continue,
            Some((_, true)) => {
                return Err(StoreError::Schema(format!(
                    "migration {version} ({description}) was changed after it was applied"
                )))
            }
            Some((_, false)) => {
                return Err(StoreError::Schema(format!(
                    "migration {version} ({description}) is recorded as failed; repair the database by hand"
                )))
            }
            None => {}
        }
        let started = std::time::Instant::now();
        conn.execute_batch(sql)?;
        conn.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (?1, ?2, 1, ?3, ?4)",
            rusqlite::params![
                version,
                description,
                checksum.as_ref(),
                i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX)
            ],
        )?;
    }
    Ok(())
}
