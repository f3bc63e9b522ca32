//! Row types and inputs shared by every backend.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// A row of `users`. `Debug` leaves out the password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub hashed_password: String,
    pub full_name: Option<String>,
    pub is_active: bool,
    pub is_verified: bool,
    pub role: Role,
    pub token_version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("is_active", &self.is_active)
            .field("token_version", &self.token_version)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct NewUser {
    pub email: String,
    pub hashed_password: String,
    pub full_name: Option<String>,
    pub role: Role,
    pub is_active: bool,
    pub is_verified: bool,
}

/// Fields to change; `None` leaves a field as it is. `full_name: Some(None)` clears it.
#[derive(Clone, Default)]
pub struct UserPatch {
    pub email: Option<String>,
    pub full_name: Option<Option<String>>,
    pub role: Option<Role>,
    pub is_active: Option<bool>,
    pub is_verified: Option<bool>,
    /// A new password hash; also bumps `token_version`.
    pub hashed_password: Option<String>,
}

impl UserPatch {
    pub fn is_empty(&self) -> bool {
        self.email.is_none()
            && self.full_name.is_none()
            && self.role.is_none()
            && self.is_active.is_none()
            && self.is_verified.is_none()
            && self.hashed_password.is_none()
    }

    /// The names of the fields set (`password` for a new hash), never their values.
    pub fn field_names(&self) -> Vec<&'static str> {
        [
            ("email", self.email.is_some()),
            ("full_name", self.full_name.is_some()),
            ("role", self.role.is_some()),
            ("is_active", self.is_active.is_some()),
            ("is_verified", self.is_verified.is_some()),
            ("password", self.hashed_password.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

/// A row of `refresh_tokens`. Holds only the token's hash.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RefreshToken {
    pub id: Uuid,
    pub token_hash: String,
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub device_id: Option<String>,
    pub device_name: Option<String>,
    pub ip_address: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub is_revoked: bool,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl RefreshToken {
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        !self.is_revoked && self.expires_at > now
    }
}

#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub id: Uuid,
    pub user_id: Uuid,
    pub token_hash: String,
    pub family_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub device_id: Option<String>,
    pub device_name: Option<String>,
    pub ip_address: Option<String>,
    /// Only factories create tokens already revoked.
    pub is_revoked: bool,
}

/// Input of [`RefreshTokenStore::rotate`](super::RefreshTokenStore::rotate).
#[derive(Debug, Clone)]
pub struct Rotation<'a> {
    /// Hash of the token the client presented.
    pub presented_hash: &'a str,
    pub successor_id: Uuid,
    pub successor_hash: &'a str,
    /// The successor's idle expiry (`now + refresh lifetime`); the store caps it at
    /// the session's absolute end.
    pub expires_at: DateTime<Utc>,
    /// The client's address, recorded on the successor and the session.
    pub ip_address: Option<&'a str>,
    /// Recorded, with the address, on the `refresh` audit event the rotation appends.
    pub user_agent: Option<&'a str>,
    /// Id of that audit event.
    pub event_id: Uuid,
    pub now: DateTime<Utc>,
}

/// Output of a successful rotation.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub token: RefreshToken,
    /// The user's current `token_version`, for the new access token.
    pub token_version: i64,
}

/// A row of `sessions`: one per refresh family.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub device_id: Option<String>,
    pub device_name: Option<String>,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    pub client_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub absolute_expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: Uuid,
    pub user_id: Uuid,
    pub device_id: Option<String>,
    pub device_name: Option<String>,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    pub client_id: Option<String>,
    pub absolute_expires_at: DateTime<Utc>,
}

/// A live session as listed to its user: the family's live token joined with the
/// session's device record (families created through the seed API have none).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionView {
    pub id: Uuid,
    pub device_id: Option<String>,
    pub device_name: Option<String>,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A row of `audit_events`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEvent {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct NewAuditEvent {
    pub kind: &'static str,
    pub user_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub user_id: Option<Uuid>,
    pub kind: Option<String>,
}

/// A signing key of the asymmetric key ring. The private key is encrypted.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredKey {
    pub kid: String,
    pub algorithm: String,
    /// Public key bytes (Ed25519: 32 bytes; P-256: uncompressed point).
    pub public_key: Vec<u8>,
    /// PKCS#8 private key, sealed with AES-256-GCM (nonce || ciphertext || tag).
    pub private_key_sealed: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// What a cleanup removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    pub refresh_tokens: u64,
    pub sessions: u64,
    pub audit_events: u64,
    /// Webhook deliveries delivered more than `WEBHOOK_RETENTION_DAYS` ago.
    pub webhook_deliveries: u64,
}
