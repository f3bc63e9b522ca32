//! Event types and the description of one event as a use case writes it.

use std::sync::Arc;

use uuid::Uuid;

use crate::storage::change::When;

/// A webhook event type (its stable name is [`EventType::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A login opened a session.
    SessionCreated,
    /// A rotated refresh token was presented again; its family was revoked.
    SessionRefreshReuseDetected,
    /// Logout, session deletion, logout-others, logout-all, OAuth revocation.
    SessionRevoked,
    /// An account was created (registration, admin, CLI).
    UserCreated,
    /// The password changed (other sessions ended).
    UserPasswordChanged,
    /// The account was deactivated (every session ended).
    UserDeactivated,
    /// The account was deleted.
    UserDeleted,
    /// An admin changed an account.
    AdminUserUpdated,
    /// Sent by `rotor webhooks test`; never written to the outbox.
    WebhookTest,
}

impl EventType {
    /// Every type an endpoint can subscribe to (`WEBHOOK_EVENTS`).
    pub const ALL: &'static [EventType] = &[
        Self::SessionCreated,
        Self::SessionRefreshReuseDetected,
        Self::SessionRevoked,
        Self::UserCreated,
        Self::UserPasswordChanged,
        Self::UserDeactivated,
        Self::UserDeleted,
        Self::AdminUserUpdated,
    ];

    /// The Standard Webhooks `type`, e.g. `session.created`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionCreated => "session.created",
            Self::SessionRefreshReuseDetected => "session.refresh_reuse_detected",
            Self::SessionRevoked => "session.revoked",
            Self::UserCreated => "user.created",
            Self::UserPasswordChanged => "user.password_changed",
            Self::UserDeactivated => "user.deactivated",
            Self::UserDeleted => "user.deleted",
            Self::AdminUserUpdated => "admin.user_updated",
            Self::WebhookTest => "webhook.test",
        }
    }

    /// A subscribable type by name (not `webhook.test`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.as_str() == name)
    }
}

/// One event as a use case describes it, before the transaction fills in what only
/// the database knows (the created user's id, the email, whether the device is new).
/// Carries no token, hash or password: there is no field for one.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    /// What happened.
    pub event_type: EventType,
    /// `None`: the user created earlier in the same change.
    pub user_id: Option<Uuid>,
    /// The session concerned, if any.
    pub session_id: Option<Uuid>,
    /// The client address.
    pub ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// The client's device id.
    pub device_id: Option<String>,
    /// The client's device name.
    pub device_name: Option<String>,
    /// Why a session ended (`logout`, `session_revoked`, `logout_others`,
    /// `logout_all`, `token_revoked`).
    pub reason: Option<&'static str>,
    /// The admin who made the change, when one did.
    pub actor_id: Option<Uuid>,
    /// The fields an admin update changed (names only, never values).
    pub changed: Vec<&'static str>,
    /// Whether to tell if the device and IP are new for the user (`session.created`).
    pub check_new_device: bool,
    /// Written only when this holds (like the audit row it goes with).
    pub when: When,
    /// The configured endpoints: one delivery each.
    pub endpoints: Arc<[String]>,
}

impl OutboxEvent {
    /// An event of `event_type` for `endpoints`, with nothing else known yet.
    pub fn new(event_type: EventType, endpoints: Arc<[String]>) -> Self {
        Self {
            event_type,
            user_id: None,
            session_id: None,
            ip: None,
            user_agent: None,
            device_id: None,
            device_name: None,
            reason: None,
            actor_id: None,
            changed: Vec::new(),
            check_new_device: false,
            when: When::Always,
            endpoints,
        }
    }
}

/// What the transaction knows when it writes the event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The user's id.
    pub user_id: Option<Uuid>,
    /// The user's email.
    pub email: Option<String>,
    /// `session.created`: no other session of the user had this device.
    pub new_device: Option<bool>,
    /// `session.created`: no other session of the user came from this IP.
    pub new_ip: Option<bool>,
    /// Sessions ended by the change (logout-others, logout-all, deactivation, password).
    pub sessions_ended: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_test_event_is_not_subscribable() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(*t));
        }
        assert_eq!(EventType::parse("webhook.test"), None);
        assert_eq!(EventType::ALL.len(), 8);
    }
}
