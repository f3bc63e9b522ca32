//! Signed webhooks from a transactional outbox.
//!
//! A use case that should tell the application something (a login, a replay, a
//! revocation, an account change) adds a [`change::Write::Webhook`] to its change: the
//! outbox row is committed in the same transaction as the change and its audit row, so
//! an event exists if and only if its change committed. A background worker
//! ([`worker`]) claims due deliveries, signs them per the Standard Webhooks
//! specification ([`signing`]) and POSTs them; failures are retried with exponential
//! backoff and jitter for at least 24 hours ([`backoff`]), then marked failed.
//!
//! The pure rules (event types, payloads, signatures, the retry schedule, the
//! settings' formats) do no I/O; the worker and the storage code do.
//!
//! [`change::Write::Webhook`]: crate::storage::change::Write::Webhook

pub mod backoff;
pub mod config;
pub mod event;
pub mod payload;
pub mod signing;
pub mod worker;

pub use config::{EventSelection, WebhookSecret};
pub use event::{EventType, OutboxEvent};
pub use worker::{Delivery, Stats};
