//! The service layer: rotor's use cases (log in, rotate, log out, manage sessions and
//! users), orchestrating the pure rules in [`crate::domain`] and the [`Store`].
//! Handlers in [`crate::http`] only translate HTTP to these calls and back.

mod auth;
mod cleanup;
pub mod oauth;
mod sessions;
pub mod users;
pub mod webhooks;

use std::{path::Path, sync::Arc};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

pub use auth::{Issued, LoginOutcome, Principal, RefreshOutcome};
pub use cleanup::CleanupProgress;

use crate::{
    clock::{Clock, SystemClock},
    config::{Secret, Settings},
    domain::{
        email,
        token::{IdentifierKey, SuccessorKey},
    },
    error::Result,
    jwt::{AccessTokens, TokenOptions},
    password::PasswordHasher,
    storage::{
        change::{Applied, Change},
        NewAuditEvent, Role, Store, StoreError, UserPatch,
    },
};

/// What rotor knows about the client making a request.
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    /// The client's address (from the socket, or from a trusted proxy's header).
    pub ip: Option<String>,
    /// The `User-Agent` header (truncated).
    pub user_agent: Option<String>,
    /// The client's device id (`X-Device-Id` or the body field), if any.
    pub device_id: Option<String>,
    /// The client's device name, if any.
    pub device_name: Option<String>,
    /// OAuth client id, when the request came through `/oauth/token`.
    pub client_id: Option<String>,
}

/// Kinds of security events recorded in the audit log.
pub mod events {
    /// A password login (or password grant) opened a session.
    pub const LOGIN_SUCCEEDED: &str = "login_succeeded";
    /// A password login failed (unknown account, wrong password or inactive).
    pub const LOGIN_FAILED: &str = "login_failed";
    /// A refresh token was rotated.
    pub const REFRESH: &str = "refresh";
    /// A revoked refresh token was presented outside the grace window; its family
    /// was revoked.
    pub const REPLAY_DETECTED: &str = "replay_detected";
    /// The session was ended by its refresh token.
    pub const LOGOUT: &str = "logout";
    /// The user (or an admin) ended one session by id.
    pub const SESSION_REVOKED: &str = "session_revoked";
    /// Every session but the caller's was ended.
    pub const LOGOUT_OTHERS: &str = "logout_others";
    /// Every session was ended and access tokens invalidated.
    pub const LOGOUT_ALL: &str = "logout_all";
    /// The password changed; other sessions ended.
    pub const PASSWORD_CHANGED: &str = "password_changed";
    /// The account was deactivated; its sessions ended.
    pub const USER_DEACTIVATED: &str = "user_deactivated";
    /// An account was created (registration, admin, CLI).
    pub const USER_CREATED: &str = "user_created";
    /// An account was deleted.
    pub const USER_DELETED: &str = "user_deleted";
    /// A refresh token was revoked through `/oauth/revoke`.
    pub const TOKEN_REVOKED: &str = "token_revoked";
    /// A password hash with other parameters than rotor's was replaced at login.
    pub const PASSWORD_REHASHED: &str = "password_rehashed";
    /// Adoption of the original's database revoked a forked family's extra tokens.
    pub const FAMILY_REPAIRED: &str = "family_repaired";
    /// The original backend's database was adopted.
    pub const DATABASE_ADOPTED: &str = "database_adopted";
    /// Every kind above.
    pub const ALL: &[&str] = &[
        LOGIN_SUCCEEDED,
        LOGIN_FAILED,
        REFRESH,
        REPLAY_DETECTED,
        LOGOUT,
        SESSION_REVOKED,
        LOGOUT_OTHERS,
        LOGOUT_ALL,
        PASSWORD_CHANGED,
        USER_DEACTIVATED,
        USER_CREATED,
        USER_DELETED,
        TOKEN_REVOKED,
        PASSWORD_REHASHED,
        FAMILY_REPAIRED,
        DATABASE_ADOPTED,
    ];
}

/// Counters the service moves; the metrics endpoint reads them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) logins_ok: std::sync::atomic::AtomicU64,
    pub(crate) logins_failed: std::sync::atomic::AtomicU64,
    pub(crate) refreshes: std::sync::atomic::AtomicU64,
    pub(crate) grace_reuses: std::sync::atomic::AtomicU64,
    pub(crate) replays: std::sync::atomic::AtomicU64,
    pub(crate) sessions_revoked: std::sync::atomic::AtomicU64,
    pub(crate) cleanup_deleted: std::sync::atomic::AtomicU64,
    /// Webhook delivery counters and outbox gauges.
    pub(crate) webhooks: crate::webhooks::Stats,
}

impl Counters {
    pub(crate) fn add(counter: &std::sync::atomic::AtomicU64, n: u64) {
        counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// rotor's core: every use case, with the store, keys, hasher and clock it needs.
/// Cheap to share behind an `Arc`.
pub struct Rotor {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) tokens: AccessTokens,
    pub(crate) hasher: PasswordHasher,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) successor_key: SuccessorKey,
    /// Fingerprints unknown login names for the audit log.
    pub(crate) identifier_key: IdentifierKey,
    pub(crate) counters: Counters,
    /// When the key ring was last reloaded because of an unknown `kid`.
    pub(crate) last_key_reload: std::sync::Mutex<Option<std::time::Instant>>,
    /// Sees every change before it is applied (tests inject failures with it).
    #[cfg(feature = "testing")]
    change_hook: std::sync::RwLock<Option<ChangeHook>>,
}

impl std::fmt::Debug for Rotor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotor")
            .field("backend", &self.store.backend())
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl Rotor {
    /// Builds rotor on an open, migrated store. Loads (or creates and persists) the
    /// server secret, prepares the key ring and promotes `ADMIN_EMAIL` if it exists.
    pub async fn new(
        settings: Settings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let secret = match &settings.secret_key {
            Some(s) => s.clone(),
            None => load_or_create_secret(&settings.data_dir).map_err(|e| {
                StoreError::Corrupt(format!(
                    "cannot read or create the secret key in {}: {e}",
                    settings.data_dir.display()
                ))
            })?,
        };
        let tokens = AccessTokens::new(TokenOptions {
            algorithm: settings.jwt_algorithm,
            secret: secret.expose().as_bytes(),
            key_encryption_key: settings
                .key_encryption_key
                .as_ref()
                .map(|k| k.expose().as_bytes()),
            lifetime: Duration::minutes(settings.access_token_expire_minutes),
            issuer: Some(settings.issuer().to_owned()),
            require_issuer: settings.jwt_issuer.is_some(),
            audience: settings.jwt_audience.clone(),
        });
        tokens
            .ensure_signing_key(store.as_ref(), clock.now())
            .await?;
        let hasher = PasswordHasher::new(settings.argon2_max_concurrency)?;
        let rotor = Self {
            successor_key: SuccessorKey::from_secret(secret.expose().as_bytes()),
            identifier_key: IdentifierKey::from_secret(secret.expose().as_bytes()),
            store,
            settings: Arc::new(settings),
            tokens,
            hasher,
            clock,
            counters: Counters::default(),
            last_key_reload: std::sync::Mutex::new(None),
            #[cfg(feature = "testing")]
            change_hook: std::sync::RwLock::new(None),
        };
        rotor.promote_admin_email().await?;
        Ok(rotor)
    }

    /// Connects to the configured database, migrates it, and builds rotor on the
    /// system clock.
    pub async fn from_settings(settings: Settings) -> Result<Self> {
        let store = crate::storage::connect(&settings).await?;
        Self::new(settings, store, Arc::new(SystemClock)).await
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The store it writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The access-token signer and verifier.
    pub fn tokens(&self) -> &AccessTokens {
        &self.tokens
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    /// Its clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) fn refresh_lifetime(&self) -> Duration {
        Duration::days(self.settings.refresh_token_expire_days)
    }

    pub(crate) fn grace(&self) -> Duration {
        Duration::seconds(self.settings.refresh_reuse_grace_seconds)
    }

    /// Whether `address` is `ADMIN_EMAIL` (same identity key) and such an account is
    /// to be made admin automatically (`ADMIN_EMAIL_AUTO_PROMOTE`).
    pub(crate) fn is_auto_admin_email(&self, address: &str) -> bool {
        self.settings.admin_email_auto_promote
            && self
                .settings
                .admin_email
                .as_deref()
                .is_some_and(|a| email::same_identity(a, address))
    }

    /// Makes the account whose email has `ADMIN_EMAIL`'s identity key an admin, unless
    /// `ADMIN_EMAIL_AUTO_PROMOTE` is off.
    async fn promote_admin_email(&self) -> Result<()> {
        let Some(admin) = self.settings.admin_email.as_deref() else {
            return Ok(());
        };
        if !self.settings.admin_email_auto_promote {
            return Ok(());
        }
        if let Some(user) = self
            .store
            .get_user_by_email(&email::EmailKey::of(admin))
            .await?
        {
            if user.role != Role::Admin {
                let patch = UserPatch {
                    role: Some(Role::Admin),
                    ..UserPatch::default()
                };
                self.store.update_user(user.id, &patch, self.now()).await?;
                tracing::info!(user_id = %user.id, "promoted ADMIN_EMAIL account to admin");
            }
        }
        Ok(())
    }

    /// Appends to the security log (a use case's only write; use cases that write more
    /// put the event in their [`Change`]).
    pub(crate) async fn audit(
        &self,
        kind: &'static str,
        user_id: Option<Uuid>,
        session_id: Option<Uuid>,
        ctx: &ClientContext,
        detail: Option<String>,
    ) -> Result<()> {
        let event = event(kind, user_id, session_id, ctx, detail);
        self.store.record_event(&event, self.now()).await?;
        Ok(())
    }

    /// Commits a use case's writes in one transaction.
    pub(crate) async fn commit(&self, mut change: Change) -> Result<Applied> {
        self.add_webhooks(&mut change);
        #[cfg(feature = "testing")]
        {
            let hook = self
                .change_hook
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(hook) = hook {
                hook(&mut change);
            }
        }
        Ok(self.store.apply(&change).await?)
    }

    /// Installs a function that sees (and may alter) every change before it is
    /// applied. For tests that inject a failure between two writes of a use case
    /// (`testing` feature).
    #[cfg(feature = "testing")]
    pub fn set_change_hook(&self, hook: Option<ChangeHook>) {
        *self.change_hook.write().unwrap_or_else(|e| e.into_inner()) = hook;
    }
}

/// See `Rotor::set_change_hook` (`testing` feature).
#[cfg(feature = "testing")]
pub type ChangeHook = Arc<dyn Fn(&mut Change) + Send + Sync>;

/// An audit event for the client in `ctx`.
pub(crate) fn event(
    kind: &'static str,
    user_id: Option<Uuid>,
    session_id: Option<Uuid>,
    ctx: &ClientContext,
    detail: Option<String>,
) -> NewAuditEvent {
    NewAuditEvent {
        kind,
        user_id,
        session_id,
        ip_address: ctx.ip.clone(),
        user_agent: ctx.user_agent.as_deref().map(|ua| truncate(ua, 512)),
        detail,
    }
}

/// Cuts a string to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Reads `secret_key` from the data directory, creating it (mode 0600) with 48 random
/// bytes on first start, so restarts keep every token valid. Never logged.
pub(crate) fn load_or_create_secret(data_dir: &Path) -> std::io::Result<Secret> {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    use ring::rand::SecureRandom;

    let path = data_dir.join("secret_key");
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(Secret::new(s.trim())),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is shorter than 32 characters", path.display()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    crate::storage::sqlite::create_private_dir(data_dir)?;
    let mut bytes = [0u8; 48];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| std::io::Error::other("OS random number generator failed"))?;
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(&path) {
        Ok(mut file) => {
            use std::io::Write;
            file.write_all(secret.as_bytes())?;
            file.sync_all()?;
            tracing::info!(path = %path.display(), "generated a new secret key");
            Ok(Secret::new(secret))
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_secret(data_dir),
        Err(e) => Err(e),
    }
}

/// [`truncate`] for the HTTP layer.
pub(crate) fn truncate_public(s: &str, max: usize) -> String {
    truncate(s, max)
}

/// Parses a UUID from a path or claim; `None` if malformed.
pub(crate) fn parse_uuid(s: &str) -> Option<Uuid> {
    Uuid::parse_str(s).ok()
}
