//! One use case, one transaction: a [`Change`] is the list of writes a use case makes
//! (an account update, the sessions it ends, its `token_version` bump, its audit rows),
//! and [`Store::apply`](super::Store::apply) commits all of them or none: one writer
//! job on SQLite, one transaction on PostgreSQL. A crash or an error between two writes
//! leaves nothing half done — a password cannot change while the thief's refresh token
//! stays live.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{NewAuditEvent, NewRefreshToken, NewSession, NewUser, RefreshToken, User, UserPatch};

/// One write of a [`Change`], run in order.
#[derive(Clone)]
pub enum Write {
    /// Inserts the user (its email with its identity key). Later writes' audit events
    /// without a `user_id` get the new user's id.
    CreateUser(NewUser),
    /// Applies the patch (a new password hash bumps `token_version`). Fails with
    /// [`StoreError::NotFound`](super::StoreError::NotFound) when the user is gone.
    UpdateUser {
        /// The user.
        id: Uuid,
        /// What to change.
        patch: UserPatch,
    },
    /// Replaces the password hash without touching `token_version`.
    RehashPassword {
        /// The user.
        id: Uuid,
        /// The new Argon2id PHC string (same password, current parameters).
        hashed_password: String,
    },
    /// Kills every outstanding access token of the user.
    BumpTokenVersion {
        /// The user.
        id: Uuid,
    },
    /// Deletes the user, their sessions and tokens. `NotFound` when absent.
    DeleteUser {
        /// The user.
        id: Uuid,
    },
    /// Opens a session with its first refresh token.
    CreateSession {
        /// The session row.
        session: NewSession,
        /// The first token of its family (`family_id` = the session's id).
        first_token: NewRefreshToken,
    },
    /// Revokes every live token of the family and ends its session.
    RevokeFamily {
        /// The family (= session) id.
        family_id: Uuid,
    },
    /// Revokes every live token of the user but those of `keep`, and ends the sessions.
    EndUserSessions {
        /// The user.
        user_id: Uuid,
        /// A session to leave alone (the caller's own, for "log out others").
        keep: Option<Uuid>,
    },
    /// Appends to the audit log. In `detail`, `{revoked}` becomes the number of tokens
    /// revoked and `{ended}` the number of live sessions ended by the writes before it.
    Audit {
        /// The event.
        event: NewAuditEvent,
        /// Whether it is written unconditionally.
        when: When,
    },
    /// Writes a webhook event to the outbox, one delivery per endpoint (if its `when`
    /// holds): committed with the change or not at all.
    Webhook(Box<crate::webhooks::OutboxEvent>),
    /// Aborts the transaction: everything before it is rolled back. Tests inject it
    /// between writes to prove that a failure there leaves nothing half done.
    Abort,
}

/// Names the writes only: users and patches carry password hashes.
impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Self::CreateUser(_) => "CreateUser",
            Self::UpdateUser { .. } => "UpdateUser",
            Self::RehashPassword { .. } => "RehashPassword",
            Self::BumpTokenVersion { .. } => "BumpTokenVersion",
            Self::DeleteUser { .. } => "DeleteUser",
            Self::CreateSession { .. } => "CreateSession",
            Self::RevokeFamily { .. } => "RevokeFamily",
            Self::EndUserSessions { .. } => "EndUserSessions",
            Self::Audit { event, .. } => return write!(f, "Audit({})", event.kind),
            Self::Webhook(e) => return write!(f, "Webhook({})", e.event_type.as_str()),
            Self::Abort => "Abort",
        };
        f.write_str(name)
    }
}

/// When an audit write happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Always.
    Always,
    /// Only if an earlier write of the change revoked a token or ended a session.
    IfRevoked,
}

/// A use case's writes, committed together at `now`.
#[derive(Debug, Clone)]
pub struct Change {
    /// The writes, applied in order.
    pub writes: Vec<Write>,
    /// The time the writes record (`updated_at`, `revoked_at`, audit `created_at`).
    pub now: DateTime<Utc>,
}

impl Change {
    /// An empty change at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            writes: Vec::new(),
            now,
        }
    }

    /// Appends a write.
    #[must_use]
    pub fn then(mut self, write: Write) -> Self {
        self.writes.push(write);
        self
    }

    /// Appends an audit row written unconditionally.
    #[must_use]
    pub fn audit(self, event: NewAuditEvent) -> Self {
        self.then(Write::Audit {
            event,
            when: When::Always,
        })
    }
}

/// What the writes of a change produced.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The user as the last `CreateUser`/`UpdateUser` left it.
    pub user: Option<User>,
    /// The first token of the last `CreateSession`.
    pub token: Option<RefreshToken>,
    /// Tokens revoked by `RevokeFamily`/`EndUserSessions`.
    pub revoked: u64,
    /// Live sessions ended by `EndUserSessions` (families with an unexpired token).
    pub ended: u64,
}

impl Applied {
    /// The event as it is written: placeholders filled, the created user's id set.
    pub(crate) fn fill(&self, event: &NewAuditEvent) -> NewAuditEvent {
        let mut e = event.clone();
        if e.user_id.is_none() {
            e.user_id = self.user.as_ref().map(|u| u.id);
        }
        e.detail = e.detail.map(|d| {
            d.replace("{revoked}", &self.revoked.to_string())
                .replace("{ended}", &self.ended.to_string())
        });
        e
    }

    /// Whether an audit write with `when` happens now.
    pub(crate) fn allows(&self, when: When) -> bool {
        match when {
            When::Always => true,
            When::IfRevoked => self.revoked > 0 || self.ended > 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_get_counts_and_the_created_user() {
        let applied = Applied {
            revoked: 3,
            ended: 2,
            ..Applied::default()
        };
        let e = applied.fill(&NewAuditEvent {
            kind: "x",
            detail: Some("{ended} sessions, {revoked} tokens".into()),
            ..NewAuditEvent::default()
        });
        assert_eq!(e.detail.as_deref(), Some("2 sessions, 3 tokens"));
        assert!(applied.allows(When::IfRevoked));
        assert!(!Applied::default().allows(When::IfRevoked));
    }
}
