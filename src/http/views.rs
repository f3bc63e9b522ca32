//! Response bodies: how users, sessions and events look on the wire. Timestamps are
//! RFC 3339 UTC with a `Z` and microseconds, as the original's frontend requires.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::storage::{AuditEvent, SessionView, User};

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn ts_opt(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| Value::String(ts(t)))
}

/// `{id, created_at, updated_at, email, full_name, is_active, is_verified, role}`;
/// never the password hash.
pub fn user(u: &User) -> Value {
    json!({
        "id": u.id,
        "created_at": ts(u.created_at),
        "updated_at": ts_opt(u.updated_at),
        "email": u.email,
        "full_name": u.full_name,
        "is_active": u.is_active,
        "is_verified": u.is_verified,
        "role": u.role.as_str(),
    })
}

pub fn session(s: &SessionView, current: Option<Uuid>) -> Value {
    json!({
        "id": s.id,
        "device_id": s.device_id,
        "device_name": s.device_name,
        "user_agent": s.user_agent,
        "ip_address": s.ip_address,
        "created_at": ts(s.created_at),
        "last_used_at": ts(s.last_used_at),
        "expires_at": ts(s.expires_at),
        "current": current == Some(s.id),
    })
}

pub fn event(e: &AuditEvent) -> Value {
    json!({
        "id": e.id,
        "created_at": ts(e.created_at),
        "kind": e.kind,
        "user_id": e.user_id,
        "session_id": e.session_id,
        "ip_address": e.ip_address,
        "user_agent": e.user_agent,
        "detail": e.detail,
    })
}

/// `{items, total, page, size}`.
pub fn page(items: Vec<Value>, total: u64, page: u32, size: u32) -> Value {
    json!({ "items": items, "total": total, "page": page, "size": size })
}
