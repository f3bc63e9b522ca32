//! The webhook outbox: events written by [`change::Write::Webhook`] in their change's
//! transaction, one delivery per configured endpoint, and what the delivery worker and
//! the admin API need from them.
//!
//! A delivery is `pending` (due at `next_attempt_at`, or in flight while its claim's
//! lease lasts), `delivered` or `failed` (retried for 24 hours in vain; an admin can
//! retry it). A delivery is claimable only when no earlier delivery of the same user
//! to the same endpoint is still pending: per user and endpoint, one event is in
//! flight at a time, in commit order.
//!
//! [`change::Write::Webhook`]: super::change::Write::Webhook

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{change::Applied, StoreResult};
use crate::webhooks::event::{Facts, OutboxEvent};

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Due now or later (being retried).
    Pending,
    /// A 2xx answer was recorded.
    Delivered,
    /// The retry window closed without a 2xx.
    Failed,
}

impl DeliveryStatus {
    /// Every state.
    pub const ALL: [Self; 3] = [Self::Pending, Self::Delivered, Self::Failed];

    /// The stored and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// The state named `s` exactly, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A delivery claimed by one worker until `lease` ends.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The event's commit-order number.
    pub seq: i64,
    /// The endpoint URL.
    pub endpoint: String,
    /// The event's id: `webhook-id` is `msg_` and its simple form.
    pub event_id: Uuid,
    /// The event's type name.
    pub event_type: String,
    /// The exact body, as written with the event.
    pub payload: String,
    /// Failed attempts in the current retry window.
    pub attempts: u32,
    /// When the retry window opened (the event's creation or a manual retry).
    pub window_start: DateTime<Utc>,
    /// This claim's token: only its holder can record the outcome.
    pub claim: Uuid,
}

impl Claimed {
    /// The `webhook-id` header: stable across every redelivery of the event.
    pub fn webhook_id(&self) -> String {
        webhook_id(self.event_id)
    }
}

/// `msg_<uuid, simple form>`.
pub fn webhook_id(event_id: Uuid) -> String {
    format!("msg_{}", event_id.simple())
}

/// One attempt's result.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// When it started.
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// Why the attempt failed (no answer, or a non-2xx status); `None` on success.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Delivered,
    /// Try again at this time.
    Retry(DateTime<Utc>),
    /// Give up: the retry window is over.
    Failed,
}

/// A delivery as the admin API lists it.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    /// The event (its `webhook-id` is `msg_` and this id's simple form).
    pub event_id: Uuid,
    /// The event's type name.
    pub event_type: String,
    /// The user it is about.
    pub user_id: Option<Uuid>,
    /// When its change committed.
    pub created_at: DateTime<Utc>,
    /// The endpoint URL (as stored; the API redacts passwords).
    pub endpoint: String,
    /// Its state.
    pub status: DeliveryStatus,
    /// Failed attempts in the current retry window.
    pub attempts: u32,
    /// When it is next due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the 2xx was recorded.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Its recorded attempts, oldest first.
    pub history: Vec<AttemptRow>,
}

/// One recorded attempt.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    /// When it started.
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
}

/// Deliveries per endpoint and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCount {
    /// The endpoint URL.
    pub endpoint: String,
    /// The state counted.
    pub status: DeliveryStatus,
    /// How many deliveries are in it.
    pub count: u64,
}

/// The user an event is about and what the change already knows of them.
pub(crate) fn known_facts(event: &OutboxEvent, applied: &Applied) -> Facts {
    let created = applied.user.as_ref();
    let user_id = event.user_id.or(created.map(|u| u.id));
    let email = created
        .filter(|u| Some(u.id) == user_id)
        .map(|u| u.email.clone());
    Facts {
        user_id,
        email,
        new_device: None,
        new_ip: None,
        sessions_ended: applied.ended,
    }
}

/// The outbox, as the delivery worker, cleanup and the admin API use it.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Claims up to `limit` due deliveries to `endpoints` (oldest first; none whose
    /// user has an earlier pending delivery to the same endpoint) until `lease_until`.
    /// Several processes never claim the same delivery while its lease lasts.
    async fn claim_deliveries(
        &self,
        endpoints: &[String],
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<Claimed>>;
    /// Records an attempt and its outcome, if `claimed`'s claim still holds; returns
    /// whether it did.
    async fn finish_delivery(
        &self,
        claimed: &Claimed,
        attempt: &Attempt,
        outcome: Outcome,
    ) -> StoreResult<bool>;
    /// Ends every claim (one process delivers on SQLite: at its start, nothing of
    /// another is in flight).
    async fn release_claims(&self) -> StoreResult<u64>;
    /// Newest first, with their attempts.
    async fn list_deliveries(
        &self,
        status: Option<DeliveryStatus>,
        skip: u64,
        limit: u64,
    ) -> StoreResult<Vec<DeliveryRow>>;
    /// How many deliveries are in `status` (all when `None`).
    async fn count_deliveries(&self, status: Option<DeliveryStatus>) -> StoreResult<u64>;
    /// Makes the event's failed deliveries pending again, due now, with a new retry
    /// window; returns how many.
    async fn retry_failed(&self, event_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64>;
    /// Deliveries per endpoint and state (the metrics' gauges).
    async fn delivery_counts(&self) -> StoreResult<Vec<StatusCount>>;
    /// Deletes at most `batch` deliveries delivered before `cutoff` (with their
    /// attempts, and their events once no delivery is left).
    async fn delete_delivered_before_batch(
        &self,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> StoreResult<u64>;
    /// How many delivered deliveries a cleanup with `cutoff` would delete.
    async fn count_delivered_before(&self, cutoff: DateTime<Utc>) -> StoreResult<u64>;
}
