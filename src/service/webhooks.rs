//! Webhook events of the use cases, and the webhook administration.
//!
//! `Rotor::commit` calls `Rotor::add_webhooks` on every change: each audit row
//! whose kind is a webhook event gets a [`Write::Webhook`] beside it (with the same
//! condition), so the outbox row commits with the change and its audit row or not at
//! all. Nothing is written when no endpoint is configured or the event type is not
//! selected by `WEBHOOK_EVENTS`; events are never written retroactively for an
//! endpoint added later.

use std::sync::Arc;

use uuid::Uuid;

use super::{events, ClientContext, Rotor};
use crate::{
    error::Result,
    storage::{
        change::{Change, When, Write},
        outbox::{DeliveryRow, DeliveryStatus, StatusCount},
        NewAuditEvent,
    },
    webhooks::{EventType, OutboxEvent},
};

/// The webhook event an audit kind announces, and the revocation reason it carries.
fn event_of(kind: &str) -> Option<(EventType, Option<&'static str>)> {
    Some(match kind {
        events::LOGIN_SUCCEEDED => (EventType::SessionCreated, None),
        events::REPLAY_DETECTED => (EventType::SessionRefreshReuseDetected, None),
        events::LOGOUT => (EventType::SessionRevoked, Some(events::LOGOUT)),
        events::SESSION_REVOKED => (EventType::SessionRevoked, Some(events::SESSION_REVOKED)),
        events::LOGOUT_OTHERS => (EventType::SessionRevoked, Some(events::LOGOUT_OTHERS)),
        events::LOGOUT_ALL => (EventType::SessionRevoked, Some(events::LOGOUT_ALL)),
        events::TOKEN_REVOKED => (EventType::SessionRevoked, Some(events::TOKEN_REVOKED)),
        events::USER_CREATED => (EventType::UserCreated, None),
        events::PASSWORD_CHANGED => (EventType::UserPasswordChanged, None),
        events::USER_DEACTIVATED => (EventType::UserDeactivated, None),
        events::USER_DELETED => (EventType::UserDeleted, None),
        _ => return None,
    })
}

/// An endpoint as the admin API shows it.
#[derive(Debug, Clone)]
pub struct EndpointInfo {
    /// The URL, any password in it redacted.
    pub url: String,
    /// The event types it receives (`WEBHOOK_EVENTS`).
    pub events: Vec<EventType>,
    /// Deliveries waiting or being retried.
    pub pending: u64,
    /// Deliveries done (until cleanup removes them).
    pub delivered: u64,
    /// Deliveries given up on; the admin API retries them.
    pub failed: u64,
}

impl Rotor {
    /// The configured endpoints, shared by every event of a change; `None` when the
    /// event type is not sent.
    fn endpoints_for(&self, t: EventType) -> Option<Arc<[String]>> {
        let s = &self.settings;
        (!s.webhook_urls.is_empty() && s.webhook_events.includes(t))
            .then(|| Arc::from(s.webhook_urls.clone()))
    }

    /// Adds the webhook event of each audit row that announces one (see the module).
    pub(crate) fn add_webhooks(&self, change: &mut Change) {
        if self.settings.webhook_urls.is_empty() {
            return;
        }
        let mut inserts: Vec<(usize, Write)> = Vec::new();
        for (i, write) in change.writes.iter().enumerate() {
            let Write::Audit { event, when } = write else {
                continue;
            };
            let Some((t, reason)) = event_of(event.kind) else {
                continue;
            };
            let Some(endpoints) = self.endpoints_for(t) else {
                continue;
            };
            let mut e = outbox_event(t, endpoints, event, *when);
            e.reason = reason;
            if t == EventType::SessionCreated {
                e.check_new_device = true;
                if let Some(Write::CreateSession { session, .. }) = change
                    .writes
                    .iter()
                    .find(|w| matches!(w, Write::CreateSession { session, .. } if Some(session.id) == event.session_id))
                {
                    e.device_id.clone_from(&session.device_id);
                    e.device_name.clone_from(&session.device_name);
                }
            }
            // A deleted user's email is read before the deletion.
            let at = if t == EventType::UserDeleted {
                change
                    .writes
                    .iter()
                    .position(
                        |w| matches!(w, Write::DeleteUser { id } if Some(*id) == event.user_id),
                    )
                    .unwrap_or(i + 1)
            } else {
                i + 1
            };
            inserts.push((at, Write::Webhook(Box::new(e))));
        }
        // From the back, so earlier positions stay valid.
        for (at, write) in inserts.into_iter().rev() {
            change.writes.insert(at, write);
        }
    }

    /// The `admin.user_updated` event of an admin's account change (`changed`: the
    /// fields' names), if it is sent.
    pub(crate) fn admin_updated_webhook(
        &self,
        user_id: Uuid,
        admin_id: Uuid,
        changed: Vec<&'static str>,
        ctx: &ClientContext,
    ) -> Option<Write> {
        let endpoints = self.endpoints_for(EventType::AdminUserUpdated)?;
        let mut e = OutboxEvent::new(EventType::AdminUserUpdated, endpoints);
        e.user_id = Some(user_id);
        e.actor_id = Some(admin_id);
        e.changed = changed;
        e.ip.clone_from(&ctx.ip);
        e.user_agent.clone_from(&ctx.user_agent);
        Some(Write::Webhook(Box::new(e)))
    }

    /// The configured endpoints with their delivery counts.
    pub async fn webhook_endpoints(&self) -> Result<Vec<EndpointInfo>> {
        let counts: Vec<StatusCount> = self.store.delivery_counts().await?;
        let of = |url: &str, status: DeliveryStatus| {
            counts
                .iter()
                .filter(|c| c.endpoint == url && c.status == status)
                .map(|c| c.count)
                .sum()
        };
        Ok(self
            .settings
            .webhook_urls
            .iter()
            .map(|url| EndpointInfo {
                url: crate::config::redact_url(url),
                events: self.settings.webhook_events.types(),
                pending: of(url, DeliveryStatus::Pending),
                delivered: of(url, DeliveryStatus::Delivered),
                failed: of(url, DeliveryStatus::Failed),
            })
            .collect())
    }

    /// One page of deliveries (newest event first) with their attempts, and the total.
    pub async fn webhook_deliveries(
        &self,
        status: Option<DeliveryStatus>,
        page: u32,
        size: u32,
    ) -> Result<(Vec<DeliveryRow>, u64)> {
        let skip = u64::from(page.saturating_sub(1)) * u64::from(size);
        let items = self
            .store
            .list_deliveries(status, skip, u64::from(size))
            .await?;
        let total = self.store.count_deliveries(status).await?;
        Ok((items, total))
    }

    /// Makes the event's failed deliveries pending again, due now; how many.
    pub async fn retry_webhook(&self, event_id: Uuid) -> Result<u64> {
        Ok(self.store.retry_failed(event_id, self.now()).await?)
    }
}

/// The event an audit row announces, with the request's context.
fn outbox_event(
    t: EventType,
    endpoints: Arc<[String]>,
    audit: &NewAuditEvent,
    when: When,
) -> OutboxEvent {
    let mut e = OutboxEvent::new(t, endpoints);
    e.user_id = audit.user_id;
    e.session_id = audit.session_id;
    e.ip.clone_from(&audit.ip_address);
    e.user_agent.clone_from(&audit.user_agent);
    e.when = when;
    e
}
