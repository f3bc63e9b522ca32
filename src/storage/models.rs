//! Row types and inputs shared by every backend.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An ordinary account.
    User,
    /// May use the `/v1/admin` routes.
    Admin,
}

impl Role {
    /// `"user"` or `"admin"`, as stored and as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }

    /// The role named `s` exactly, if any.
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
    /// Primary key (UUID v7 for accounts rotor creates).
    pub id: Uuid,
    /// The address as the user typed it; identity is its key (`domain::email::EmailKey`).
    pub email: String,
    /// Argon2id PHC string.
    pub hashed_password: String,
    /// Display name, if given.
    pub full_name: Option<String>,
    /// False once deactivated: no login, no refresh.
    pub is_active: bool,
    /// Kept for the original's schema; rotor does not act on it.
    pub is_verified: bool,
    /// The account's role.
    pub role: Role,
    /// Bumped on password change and "log out everywhere"; access tokens carrying an older value are refused.
    pub token_version: i64,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// When the row last changed, if ever.
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

/// Input of [`SeedRepository::create_user`](super::SeedRepository::create_user) and of
/// [`Write::CreateUser`](super::change::Write::CreateUser).
#[derive(Clone)]
pub struct NewUser {
    /// The address as typed.
    pub email: String,
    /// Argon2id PHC string.
    pub hashed_password: String,
    /// Display name, if given.
    pub full_name: Option<String>,
    /// The account's role.
    pub role: Role,
    /// Whether it may log in.
    pub is_active: bool,
    /// Stored as given.
    pub is_verified: bool,
}

/// Fields to change; `None` leaves a field as it is. `full_name: Some(None)` clears it.
#[derive(Clone, Default)]
pub struct UserPatch {
    /// A new address.
    pub email: Option<String>,
    /// A new display name; `Some(None)` clears it.
    pub full_name: Option<Option<String>>,
    /// A new role.
    pub role: Option<Role>,
    /// Activate or deactivate.
    pub is_active: Option<bool>,
    /// A new verified flag.
    pub is_verified: Option<bool>,
    /// A new password hash; also bumps `token_version`.
    pub hashed_password: Option<String>,
}

impl UserPatch {
    /// True when the patch changes nothing.
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
    /// Primary key.
    pub id: Uuid,
    /// SHA-256 of the raw token, 64 lowercase hex characters.
    pub token_hash: String,
    /// The owner.
    pub user_id: Uuid,
    /// The rotation family (one per login; the session's id).
    pub family_id: Uuid,
    /// The client's device id, if it sent one.
    pub device_id: Option<String>,
    /// The client's device name, if it sent one.
    pub device_name: Option<String>,
    /// The client address that obtained this token.
    pub ip_address: Option<String>,
    /// Idle expiry.
    pub expires_at: DateTime<Utc>,
    /// True once rotated away or revoked.
    pub is_revoked: bool,
    /// When it was revoked (the grace window counts from here).
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When the row last changed, if ever.
    pub updated_at: Option<DateTime<Utc>>,
}

impl RefreshToken {
    /// Neither revoked nor expired at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        !self.is_revoked && self.expires_at > now
    }
}

/// A refresh token to insert (the seed API and the factories).
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    /// Primary key.
    pub id: Uuid,
    /// The owner.
    pub user_id: Uuid,
    /// SHA-256 of the raw token (hex).
    pub token_hash: String,
    /// The rotation family.
    pub family_id: Uuid,
    /// Idle expiry.
    pub expires_at: DateTime<Utc>,
    /// The client's device id.
    pub device_id: Option<String>,
    /// The client's device name.
    pub device_name: Option<String>,
    /// The client address.
    pub ip_address: Option<String>,
    /// Only factories create tokens already revoked.
    pub is_revoked: bool,
}

/// Input of [`RefreshTokenStore::rotate`](super::RefreshTokenStore::rotate).
#[derive(Debug, Clone)]
pub struct Rotation<'a> {
    /// Hash of the token the client presented.
    pub presented_hash: &'a str,
    /// Id of the token issued in its place.
    pub successor_id: Uuid,
    /// Hash of that token.
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
    /// The service clock's time of the rotation.
    pub now: DateTime<Utc>,
}

/// Output of a successful rotation.
#[derive(Debug, Clone)]
pub struct Rotated {
    /// The successor as stored.
    pub token: RefreshToken,
    /// The user's current `token_version`, for the new access token.
    pub token_version: i64,
}

/// A row of `sessions`: one per refresh family.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Session {
    /// The session id, equal to its refresh family's id.
    pub id: Uuid,
    /// The owner.
    pub user_id: Uuid,
    /// The client's device id.
    pub device_id: Option<String>,
    /// The client's device name.
    pub device_name: Option<String>,
    /// The `User-Agent` at login (truncated).
    pub user_agent: Option<String>,
    /// The client address last seen.
    pub ip_address: Option<String>,
    /// The OAuth client that started it, if any.
    pub client_id: Option<String>,
    /// Login time.
    pub created_at: DateTime<Utc>,
    /// Last rotation.
    pub last_used_at: DateTime<Utc>,
    /// No refresh is accepted after this, whatever the idle expiry.
    pub absolute_expires_at: DateTime<Utc>,
    /// When it ended, if it did.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A session to open, with the first token of its family.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The session id (its family's id).
    pub id: Uuid,
    /// The owner.
    pub user_id: Uuid,
    /// The client's device id.
    pub device_id: Option<String>,
    /// The client's device name.
    pub device_name: Option<String>,
    /// The `User-Agent` at login.
    pub user_agent: Option<String>,
    /// The client address.
    pub ip_address: Option<String>,
    /// The OAuth client, if any.
    pub client_id: Option<String>,
    /// The absolute end.
    pub absolute_expires_at: DateTime<Utc>,
}

/// A live session as listed to its user: the family's live token joined with the
/// session's device record (families created through the seed API have none).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionView {
    /// The session (family) id.
    pub id: Uuid,
    /// The client's device id.
    pub device_id: Option<String>,
    /// The client's device name.
    pub device_name: Option<String>,
    /// The `User-Agent` at login.
    pub user_agent: Option<String>,
    /// The client address last seen.
    pub ip_address: Option<String>,
    /// Login time.
    pub created_at: DateTime<Utc>,
    /// Last rotation.
    pub last_used_at: DateTime<Utc>,
    /// The live token's expiry.
    pub expires_at: DateTime<Utc>,
}

/// A row of `audit_events`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEvent {
    /// Primary key (UUID v7, so ids sort by time).
    pub id: Uuid,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// What happened (`service::events`).
    pub kind: String,
    /// The account concerned, if known.
    pub user_id: Option<Uuid>,
    /// The session concerned, if any.
    pub session_id: Option<Uuid>,
    /// The client address.
    pub ip_address: Option<String>,
    /// The client's `User-Agent` (truncated).
    pub user_agent: Option<String>,
    /// Free text; never a secret (unknown identifiers are fingerprinted).
    pub detail: Option<String>,
}

/// An audit event to append.
#[derive(Debug, Clone, Default)]
pub struct NewAuditEvent {
    /// What happened (`service::events`).
    pub kind: &'static str,
    /// The account concerned.
    pub user_id: Option<Uuid>,
    /// The session concerned.
    pub session_id: Option<Uuid>,
    /// The client address.
    pub ip_address: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// Free text; never a secret.
    pub detail: Option<String>,
}

/// Which audit events to list; empty matches all.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this account's events.
    pub user_id: Option<Uuid>,
    /// Only events of this kind.
    pub kind: Option<String>,
}

/// A signing key of the asymmetric key ring. The private key is encrypted.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredKey {
    /// The key id published in the JWKS and in token headers.
    pub kid: String,
    /// `EdDSA` or `ES256`.
    pub algorithm: String,
    /// Public key bytes (Ed25519: 32 bytes; P-256: uncompressed point).
    pub public_key: Vec<u8>,
    /// PKCS#8 private key, sealed with AES-256-GCM (nonce || ciphertext || tag).
    pub private_key_sealed: Vec<u8>,
    /// When it was generated.
    pub created_at: DateTime<Utc>,
    /// When it stopped signing; it verifies until pruned.
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
    /// Expired refresh tokens.
    pub refresh_tokens: u64,
    /// Sessions past their absolute end with no live token.
    pub sessions: u64,
    /// Audit events older than the retention.
    pub audit_events: u64,
    /// Webhook deliveries delivered more than `WEBHOOK_RETENTION_DAYS` ago.
    pub webhook_deliveries: u64,
}
