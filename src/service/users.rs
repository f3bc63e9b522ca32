//! Accounts: registration, profile edits and the admin's user management.

use uuid::Uuid;

use super::{event, events, ClientContext, Counters, Principal, Rotor};
use crate::{
    domain::email::{self, EmailKey},
    error::{Error, Result},
    storage::{
        change::{Change, Write},
        NewUser, Role, StoreError, User, UserPatch,
    },
};

/// A new account as an admin (or registration) describes it; the password is plain.
#[derive(Debug, Clone)]
pub struct AccountSpec {
    /// The address (validated; identity is its key).
    pub email: String,
    /// The plain password; hashed with Argon2id off the executor.
    pub password: String,
    /// Display name.
    pub full_name: Option<String>,
    /// Role.
    pub role: Role,
    /// May log in.
    pub is_active: bool,
    /// Stored as given.
    pub is_verified: bool,
}

/// Changes to an account; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default)]
pub struct AccountChanges {
    /// A new address.
    pub email: Option<String>,
    /// A new display name; `Some(None)` clears it.
    pub full_name: Option<Option<String>>,
    /// A new role.
    pub role: Option<Role>,
    /// Activate, or deactivate (which ends every session).
    pub is_active: Option<bool>,
    /// A new verified flag.
    pub is_verified: Option<bool>,
    /// A new plain password (ends every session, invalidates access tokens).
    pub password: Option<String>,
}

/// A taken email is `EmailAlreadyExists`; a user gone meanwhile `UserNotFound`.
fn account_error(e: Error) -> Error {
    match e {
        Error::Store(StoreError::Conflict(_)) => Error::EmailAlreadyExists,
        Error::Store(StoreError::NotFound) => Error::UserNotFound,
        other => other,
    }
}

impl Rotor {
    /// Self-registration: a `user` (or `admin` when the email is `ADMIN_EMAIL`),
    /// active and unverified.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        full_name: Option<String>,
        ctx: &ClientContext,
    ) -> Result<User> {
        let spec = AccountSpec {
            email: email.to_owned(),
            password: password.to_owned(),
            full_name,
            role: Role::User,
            is_active: true,
            is_verified: false,
        };
        self.create_account(spec, None, ctx).await
    }

    /// Creates an account. `ADMIN_EMAIL` (same identity key) gets the admin role unless
    /// `ADMIN_EMAIL_AUTO_PROMOTE` is off.
    pub async fn create_account(
        &self,
        spec: AccountSpec,
        by: Option<&Principal>,
        ctx: &ClientContext,
    ) -> Result<User> {
        if self.store.email_exists(&EmailKey::of(&spec.email)).await? {
            return Err(Error::EmailAlreadyExists);
        }
        let hashed_password = self.hasher.hash(&spec.password).await?;
        let role = if self.is_auto_admin_email(&spec.email) {
            Role::Admin
        } else {
            spec.role
        };
        let new = NewUser {
            email: spec.email,
            hashed_password,
            full_name: spec.full_name,
            role,
            is_active: spec.is_active,
            is_verified: spec.is_verified,
        };
        let detail = by.map(|p| format!("by admin {}", p.user.id));
        let change = Change::new(self.now())
            .then(Write::CreateUser(new))
            .audit(event(events::USER_CREATED, None, None, ctx, detail));
        self.commit(change)
            .await
            .map_err(account_error)?
            .user
            .ok_or(Error::UserNotFound)
    }

    /// The account `id`.
    pub async fn get_user(&self, id: Uuid) -> Result<User> {
        self.store.get_user(id).await?.ok_or(Error::UserNotFound)
    }

    /// Changes an account. Deactivating it or setting its password ends every session
    /// and kills every access token.
    pub async fn update_account(
        &self,
        id: Uuid,
        changes: AccountChanges,
        by: Option<&Principal>,
        ctx: &ClientContext,
    ) -> Result<User> {
        let existing = self.store.get_user(id).await?.ok_or(Error::UserNotFound)?;
        if let Some(email) = &changes.email {
            if !email::same_identity(email, &existing.email)
                && self.store.email_exists(&EmailKey::of(email)).await?
            {
                return Err(Error::EmailAlreadyExists);
            }
        }
        let hashed_password = match &changes.password {
            Some(p) => Some(self.hasher.hash(p).await?),
            None => None,
        };
        let role = match (&changes.email, changes.role) {
            (Some(e), _) if self.is_auto_admin_email(e) => Some(Role::Admin),
            (_, r) => r,
        };
        let patch = UserPatch {
            email: changes.email,
            full_name: changes.full_name,
            role,
            is_active: changes.is_active,
            is_verified: changes.is_verified,
            hashed_password,
        };
        if patch.is_empty() {
            return Ok(existing);
        }
        // One transaction: the new fields, the sessions they end, the token_version
        // bump and the audit rows land together or not at all.
        let deactivated = existing.is_active && patch.is_active == Some(false);
        let password_set = patch.hashed_password.is_some();
        let admin_event =
            by.and_then(|p| self.admin_updated_webhook(id, p.user.id, patch.field_names(), ctx));
        let by = by
            .map(|p| format!(" by admin {}", p.user.id))
            .unwrap_or_default();
        let mut change = Change::new(self.now()).then(Write::UpdateUser { id, patch });
        if deactivated || password_set {
            change = change.then(Write::EndUserSessions {
                user_id: id,
                keep: None,
            });
        }
        if deactivated {
            change = change.then(Write::BumpTokenVersion { id }).audit(event(
                events::USER_DEACTIVATED,
                Some(id),
                None,
                ctx,
                Some(format!("{{ended}} sessions ended{by}")),
            ));
        }
        if password_set {
            change = change.audit(event(
                events::PASSWORD_CHANGED,
                Some(id),
                None,
                ctx,
                Some(format!("password set{by}; {{ended}} sessions ended")),
            ));
        }
        if let Some(write) = admin_event {
            change = change.then(write);
        }
        let applied = self.commit(change).await.map_err(account_error)?;
        Counters::add(&self.counters.sessions_revoked, applied.ended);
        applied.user.ok_or(Error::UserNotFound)
    }

    /// Deletes the account, its sessions and tokens, in one transaction with its
    /// audit row.
    pub async fn delete_account(
        &self,
        id: Uuid,
        by: Option<&Principal>,
        ctx: &ClientContext,
    ) -> Result<()> {
        let detail = by.map(|p| format!("by admin {}", p.user.id));
        let change = Change::new(self.now())
            .then(Write::DeleteUser { id })
            .audit(event(events::USER_DELETED, Some(id), None, ctx, detail));
        self.commit(change).await.map_err(account_error)?;
        Ok(())
    }

    /// One page of users (oldest first) and the total count.
    pub async fn list_users(&self, page: u32, size: u32) -> Result<(Vec<User>, u64)> {
        let skip = u64::from(page.saturating_sub(1)) * u64::from(size);
        let items = self.store.list_users(skip, u64::from(size)).await?;
        let total = self.store.count_users().await?;
        Ok((items, total))
    }
}
