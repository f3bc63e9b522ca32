//! How rotor's rows look in SQLite: ids as UUID text, timestamps as fixed-width UTC
//! text (so text order is time order), booleans as integers; and the mapping from
//! result rows to the model types.

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use rusqlite::{Connection, Params, Row, RowIndex};
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

/// A timestamp as it reads back after [`ts`]: truncated to microseconds.
pub(crate) fn as_stored(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

fn parse_ts(s: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

fn parse_uuid(s: &str) -> StoreResult<Uuid> {
    Uuid::from_str(s).map_err(|e| StoreError::Corrupt(format!("uuid {s:?}: {e}")))
}

/// The text of a column, borrowed from the row (no copy), or `None` for NULL.
fn text<'a, I: RowIndex>(row: &'a Row<'_>, col: I) -> StoreResult<Option<&'a str>> {
    row.get_ref(col)?
        .as_str_or_null()
        .map_err(|e| StoreError::Corrupt(format!("text column: {e}")))
}

fn required<T>(value: Option<T>) -> StoreResult<T> {
    value.ok_or_else(|| StoreError::Corrupt("NULL in a NOT NULL column".into()))
}

pub(crate) fn col_ts<I: RowIndex>(row: &Row<'_>, col: I) -> StoreResult<DateTime<Utc>> {
    parse_ts(required(text(row, col)?)?)
}

pub(crate) fn col_ts_opt<I: RowIndex>(row: &Row<'_>, col: I) -> StoreResult<Option<DateTime<Utc>>> {
    text(row, col)?.map(parse_ts).transpose()
}

pub(crate) fn col_uuid<I: RowIndex>(row: &Row<'_>, col: I) -> StoreResult<Uuid> {
    parse_uuid(required(text(row, col)?)?)
}

pub(crate) fn col_uuid_opt<I: RowIndex>(row: &Row<'_>, col: I) -> StoreResult<Option<Uuid>> {
    text(row, col)?.map(parse_uuid).transpose()
}

/// Column `i`, named `name`, of a row whose query selects [`USER_COLS`] or
/// [`TOKEN_COLS`] first: the hot mappers read by position, since a lookup by name
/// compares the name with every column's. Checked by name in debug builds (the tests
/// run every query through them).
pub(crate) fn at(row: &Row<'_>, i: usize, name: &str) -> usize {
    debug_assert_eq!(row.as_ref().column_name(i).ok(), Some(name));
    i
}

pub(crate) fn user(row: &Row<'_>) -> StoreResult<User> {
    let role = required(text(row, at(row, 6, "role"))?)?;
    Ok(User {
        id: col_uuid(row, at(row, 0, "id"))?,
        email: row.get(at(row, 1, "email"))?,
        hashed_password: row.get(at(row, 2, "hashed_password"))?,
        full_name: row.get(at(row, 3, "full_name"))?,
        is_active: row.get(at(row, 4, "is_active"))?,
        is_verified: row.get(at(row, 5, "is_verified"))?,
        role: Role::parse(role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
        token_version: row.get(at(row, 7, "token_version"))?,
        created_at: col_ts(row, at(row, 8, "created_at"))?,
        updated_at: col_ts_opt(row, at(row, 9, "updated_at"))?,
    })
}

pub(crate) fn token(row: &Row<'_>) -> StoreResult<RefreshToken> {
    Ok(RefreshToken {
        id: col_uuid(row, at(row, 0, "id"))?,
        token_hash: row.get(at(row, 1, "token_hash"))?,
        user_id: col_uuid(row, at(row, 2, "user_id"))?,
        family_id: col_uuid(row, at(row, 3, "family_id"))?,
        device_id: row.get(at(row, 4, "device_id"))?,
        device_name: row.get(at(row, 5, "device_name"))?,
        ip_address: row.get(at(row, 6, "ip_address"))?,
        expires_at: col_ts(row, at(row, 7, "expires_at"))?,
        is_revoked: row.get(at(row, 8, "is_revoked"))?,
        revoked_at: col_ts_opt(row, at(row, 9, "revoked_at"))?,
        created_at: col_ts(row, at(row, 10, "created_at"))?,
        updated_at: col_ts_opt(row, at(row, 11, "updated_at"))?,
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_timestamp_reads_back_as_stored() {
        let t = Utc.timestamp_opt(1_795_000_000, 123_456_789).unwrap();
        assert_eq!(parse_ts(&ts(t)).unwrap(), as_stored(t));
        let t = Utc.timestamp_opt(1_795_000_000, 999_999_999).unwrap();
        assert_eq!(parse_ts(&ts(t)).unwrap(), as_stored(t));
    }
}
