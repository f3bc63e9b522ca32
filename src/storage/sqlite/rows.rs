//! How rotor's rows look in SQLite: ids as UUID text, timestamps as fixed-width UTC
//! text (so text order is time order), booleans as integers; and the mapping from
//! result rows to the model types.

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, Params, Row};
use uuid::Uuid;

use crate::storage::{
    AuditEvent, RefreshToken, Role, Session, SessionView, StoreError, StoreResult, StoredKey, User,
};

pub(crate) const USER_COLS: &str = "id, email, hashed_password, full_name, is_active, is_verified, role, token_version, created_at, updated_at";
pub(crate) const TOKEN_COLS: &str = "id, token_hash, user_id, family_id, device_id, device_name, ip_address, expires_at, is_revoked, revoked_at, created_at, updated_at";
pub(crate) const EVENT_COLS: &str =
    "id, created_at, kind, user_id, session_id, ip_address, user_agent, detail";
pub(crate) const KEY_COLS: &str =
    "kid, algorithm, public_key, private_key_sealed, created_at, retired_at";

/// Formats a timestamp as rotor stores it in SQLite: `2026-11-23T03:51:16.034306Z`.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

fn parse_uuid(s: &str) -> StoreResult<Uuid> {
    Uuid::from_str(s).map_err(|e| StoreError::Corrupt(format!("uuid {s:?}: {e}")))
}

pub(crate) fn col_ts(row: &Row<'_>, col: &str) -> StoreResult<DateTime<Utc>> {
    parse_ts(&row.get::<_, String>(col)?)
}

pub(crate) fn col_ts_opt(row: &Row<'_>, col: &str) -> StoreResult<Option<DateTime<Utc>>> {
    row.get::<_, Option<String>>(col)?
        .as_deref()
        .map(parse_ts)
        .transpose()
}

pub(crate) fn col_uuid(row: &Row<'_>, col: &str) -> StoreResult<Uuid> {
    parse_uuid(&row.get::<_, String>(col)?)
}

pub(crate) fn col_uuid_opt(row: &Row<'_>, col: &str) -> StoreResult<Option<Uuid>> {
    row.get::<_, Option<String>>(col)?
        .as_deref()
        .map(parse_uuid)
        .transpose()
}

pub(crate) fn user(row: &Row<'_>) -> StoreResult<User> {
    let role: String = row.get("role")?;
    Ok(User {
        id: col_uuid(row, "id")?,
        email: row.get("email")?,
        hashed_password: row.get("hashed_password")?,
        full_name: row.get("full_name")?,
        is_active: row.get("is_active")?,
        is_verified: row.get("is_verified")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
        token_version: row.get("token_version")?,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts_opt(row, "updated_at")?,
    })
}

pub(crate) fn token(row: &Row<'_>) -> StoreResult<RefreshToken> {
    Ok(RefreshToken {
        id: col_uuid(row, "id")?,
        token_hash: row.get("token_hash")?,
        user_id: col_uuid(row, "user_id")?,
        family_id: col_uuid(row, "family_id")?,
        device_id: row.get("device_id")?,
        device_name: row.get("device_name")?,
        ip_address: row.get("ip_address")?,
        expires_at: col_ts(row, "expires_at")?,
        is_revoked: row.get("is_revoked")?,
        revoked_at: col_ts_opt(row, "revoked_at")?,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts_opt(row, "updated_at")?,
    })
}

pub(crate) fn session(row: &Row<'_>) -> StoreResult<Session> {
    Ok(Session {
        id: col_uuid(row, "id")?,
        user_id: col_uuid(row, "user_id")?,
        device_id: row.get("device_id")?,
        device_name: row.get("device_name")?,
        user_agent: row.get("user_agent")?,
        ip_address: row.get("ip_address")?,
        client_id: row.get("client_id")?,
        created_at: col_ts(row, "created_at")?,
        last_used_at: col_ts(row, "last_used_at")?,
        absolute_expires_at: col_ts(row, "absolute_expires_at")?,
        revoked_at: col_ts_opt(row, "revoked_at")?,
    })
}

pub(crate) fn session_view(row: &Row<'_>) -> StoreResult<SessionView> {
    Ok(SessionView {
        id: col_uuid(row, "id")?,
        device_id: row.get("device_id")?,
        device_name: row.get("device_name")?,
        user_agent: row.get("user_agent")?,
        ip_address: row.get("ip_address")?,
        created_at: col_ts(row, "created_at")?,
        last_used_at: col_ts(row, "last_used_at")?,
        expires_at: col_ts(row, "expires_at")?,
    })
}

pub(crate) fn event(row: &Row<'_>) -> StoreResult<AuditEvent> {
    Ok(AuditEvent {
        id: col_uuid(row, "id")?,
        created_at: col_ts(row, "created_at")?,
        kind: row.get("kind")?,
        user_id: col_uuid_opt(row, "user_id")?,
        session_id: col_uuid_opt(row, "session_id")?,
        ip_address: row.get("ip_address")?,
        user_agent: row.get("user_agent")?,
        detail: row.get("detail")?,
    })
}

pub(crate) fn key(row: &Row<'_>) -> StoreResult<StoredKey> {
    Ok(StoredKey {
        kid: row.get("kid")?,
        algorithm: row.get("algorithm")?,
        public_key: row.get("public_key")?,
        private_key_sealed: row.get("private_key_sealed")?,
        created_at: col_ts(row, "created_at")?,
        retired_at: col_ts_opt(row, "retired_at")?,
    })
}

/// The first row of a (cached, prepared) query, mapped.
pub(crate) fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: impl FnOnce(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    rows.next()?.map(map).transpose()
}

/// Every row of a (cached, prepared) query, mapped.
pub(crate) fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: impl Fn(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// Runs a (cached, prepared) statement; returns the number of rows it changed.
pub(crate) fn exec(conn: &Connection, sql: &str, params: impl Params) -> StoreResult<u64> {
    let n = conn.prepare_cached(sql)?.execute(params)?;
    Ok(u64::try_from(n).unwrap_or(u64::MAX))
}

/// A `count(*)`-style query.
pub(crate) fn count(conn: &Connection, sql: &str, params: impl Params) -> StoreResult<u64> {
    let n: i64 = conn.prepare_cached(sql)?.query_row(params, |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// A limit or offset as SQLite's integer type.
pub(crate) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
