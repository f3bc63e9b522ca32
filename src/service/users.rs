//! Accounts: registration, profile edits and the admin's user management.

use uuid::Uuid;

use super::{events, ClientContext, Counters, Principal, Rotor};
use crate::{
    domain::email::{self, EmailKey},
    error::{Error, Result},
    storage::{NewUser, Role, StoreError, User, UserPatch},
};

/// A new account as an admin (or registration) describes it; the password is plain.
#[derive(Debug, Clone)]
pub struct AccountSpec {
    pub email: String,
    pub password: String,
    pub full_name: Option<String>,
    pub role: Role,
    pub is_active: bool,
    pub is_verified: bool,
}

/// Changes to an account; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default)]
pub struct AccountChanges {
    pub email: Option<String>,
    pub full_name: Option<Option<String>>,
    pub role: Option<Role>,
    pub is_active: Option<bool>,
    pub is_verified: Option<bool>,
    pub password: Option<String>,
}

fn conflict_to_email_taken(e: StoreError) -> Error {
    match e {
        StoreError::Conflict(_) => Error::EmailAlreadyExists,
        other => other.into(),
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
        let user = self
            .store
            .create_user(&new, self.now())
            .await
            .map_err(conflict_to_email_taken)?;
        let detail = by.map(|p| format!("by admin {}", p.user.id));
        self.audit(events::USER_CREATED, Some(user.id), None, ctx, detail)
            .await?;
        Ok(user)
    }

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
        let now = self.now();
        let user = self
            .store
            .update_user(id, &patch, now)
            .await
            .map_err(conflict_to_email_taken)?
            .ok_or(Error::UserNotFound)?;
        let deactivated = existing.is_active && !user.is_active;
        if deactivated || patch.hashed_password.is_some() {
            let ended = self
                .store
                .revoke_user_families_except(id, None, now)
                .await?;
            Counters::add(&self.counters.sessions_revoked, ended);
            if deactivated {
                self.store.increment_token_version(id, now).await?;
            }
            let by = by
                .map(|p| format!(" by admin {}", p.user.id))
                .unwrap_or_default();
            if deactivated {
                self.audit(
                    events::USER_DEACTIVATED,
                    Some(id),
                    None,
                    ctx,
                    Some(format!("{ended} sessions ended{by}")),
                )
                .await?;
            }
            if patch.hashed_password.is_some() {
                self.audit(
                    events::PASSWORD_CHANGED,
                    Some(id),
                    None,
                    ctx,
                    Some(format!("password set{by}; {ended} sessions ended")),
                )
                .await?;
            }
        }
        Ok(self.store.get_user(id).await?.unwrap_or(user))
    }

    pub async fn delete_account(
        &self,
        id: Uuid,
        by: Option<&Principal>,
        ctx: &ClientContext,
    ) -> Result<()> {
        if !self.store.delete_user(id).await? {
            return Err(Error::UserNotFound);
        }
        let detail = by.map(|p| format!("by admin {}", p.user.id));
        self.audit(events::USER_DELETED, Some(id), None, ctx, detail)
            .await?;
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
