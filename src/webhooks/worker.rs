//! Delivery: the background worker that claims due deliveries and POSTs them, and the
//! signed HTTP request itself (also used by `rotor webhooks test`).
//!
//! Never on the request path: use cases only write the outbox row; this task, spawned
//! with the other background jobs, does the network I/O. At most [`MAX_IN_FLIGHT`]
//! requests run at once; a slow receiver holds only its own deliveries (and, through
//! the per-user order, later events of the same users).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use ring::rand::SecureRandom;
use serde_json::json;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::{backoff, config::WebhookSecret, event::EventType, payload, signing};
use crate::{
    storage::outbox::{webhook_id, Attempt, Claimed, DeliveryStatus, Outcome},
    Rotor,
};

/// Requests in flight at once, per process.
pub const MAX_IN_FLIGHT: usize = 32;
/// How often the worker looks for due deliveries when it found none.
const POLL: Duration = Duration::from_millis(200);
/// A claim lasts the request timeout plus this; a process that dies holding it lets
/// another (or itself, restarted) deliver once it ends.
const LEASE_MARGIN_SECONDS: i64 = 5;
/// How often the outbox gauges are read.
const GAUGE_PERIOD: Duration = Duration::from_secs(5);

/// Delivery counters (this process) and outbox gauges (the whole database).
#[derive(Debug, Default)]
pub struct Stats {
    /// Attempts answered with a 2xx.
    pub attempts_ok: AtomicU64,
    /// Attempts that got no answer or a non-2xx.
    pub attempts_failed: AtomicU64,
    /// Deliveries that exhausted their retry window.
    pub gave_up: AtomicU64,
    /// Deliveries pending, as last read.
    pub pending: AtomicU64,
    /// Deliveries failed, as last read.
    pub failed: AtomicU64,
}

/// Building the HTTP client failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}")]
pub struct ClientError(#[source] reqwest::Error);

/// Sends signed webhook requests.
#[derive(Debug, Clone)]
pub struct Delivery {
    client: reqwest::Client,
    secrets: Arc<[WebhookSecret]>,
}

/// What one request got.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// `None` when the receiver answered 2xx.
    pub error: Option<String>,
    /// How long the request took.
    pub duration: Duration,
}

impl Sent {
    /// A 2xx answer.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

impl Delivery {
    /// A client that gives up after `timeout` and follows no redirect.
    pub fn new(timeout: Duration, secrets: &[WebhookSecret]) -> Result<Self, ClientError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            // Idle connections are dropped before common servers' keep-alive timeouts
            // (5 s in Node.js), so a request rarely races the receiver closing one.
            .pool_idle_timeout(Duration::from_secs(4))
            .user_agent(concat!("rotor-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError)?;
        Ok(Self {
            client,
            secrets: Arc::from(secrets.to_vec()),
        })
    }

    /// POSTs `body`, signed for `timestamp` (Unix seconds). A 2xx is success; any
    /// other status, a timeout or a connection failure is not.
    pub async fn send(&self, url: &str, id: &str, timestamp: i64, body: &str) -> Sent {
        let h = signing::headers(&self.secrets, id, timestamp, body);
        let started = Instant::now();
        let result = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", h.id)
            .header("webhook-timestamp", h.timestamp)
            .header("webhook-signature", h.signature)
            .body(body.to_owned())
            .send()
            .await;
        let duration = started.elapsed();
        match result {
            Ok(r) if r.status().is_success() => Sent {
                status_code: Some(r.status().as_u16()),
                error: None,
                duration,
            },
            Ok(r) => Sent {
                status_code: Some(r.status().as_u16()),
                error: Some(format!("HTTP {}", r.status())),
                duration,
            },
            Err(e) => Sent {
                status_code: None,
                // Without the URL: it may hold credentials.
                error: Some(if e.is_timeout() {
                    "timed out".to_owned()
                } else {
                    error_chain(&e.without_url())
                }),
                duration,
            },
        }
    }
}

/// An error and its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A uniform number in [0, 1) from the OS generator (0.5 if it fails).
fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    match ring::rand::SystemRandom::new().fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX) * 0.999_999,
        Err(_) => 0.5,
    }
}

/// The outcome of a failed or successful attempt at `now`.
fn outcome(sent: &Sent, claimed: &Claimed, now: DateTime<Utc>) -> Outcome {
    if sent.ok() {
        return Outcome::Delivered;
    }
    let failures = claimed.attempts.saturating_add(1);
    match backoff::next_attempt(failures, claimed.window_start, now, jitter()) {
        Some(at) => Outcome::Retry(at),
        None => Outcome::Failed,
    }
}

/// Delivers until the task is aborted. Does nothing when no endpoint is configured.
pub async fn run(rotor: Arc<Rotor>) {
    let settings = rotor.settings();
    let endpoints = settings.webhook_urls.clone();
    if endpoints.is_empty() {
        return;
    }
    let timeout = settings.webhook_timeout_seconds;
    let delivery = match Delivery::new(Duration::from_secs(timeout), &settings.webhook_secrets) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "webhook delivery is off");
            return;
        }
    };
    let lease =
        chrono::Duration::seconds(i64::try_from(timeout).unwrap_or(300) + LEASE_MARGIN_SECONDS);
    match rotor.store().release_claims().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(claims = n, "released the webhook claims of a previous run"),
        Err(e) => tracing::warn!(error = %e, "releasing old webhook claims failed"),
    }
    let mut inflight: JoinSet<()> = JoinSet::new();
    let mut gauges_read: Option<Instant> = None;
    loop {
        while let Some(done) = inflight.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "a webhook delivery task failed");
            }
        }
        if gauges_read.is_none_or(|t| t.elapsed() >= GAUGE_PERIOD) {
            read_gauges(&rotor).await;
            gauges_read = Some(Instant::now());
        }
        let free = MAX_IN_FLIGHT.saturating_sub(inflight.len());
        let mut claimed = Vec::new();
        if free > 0 {
            let now = rotor.now();
            match rotor
                .store()
                .claim_deliveries(
                    &endpoints,
                    now,
                    now + lease,
                    u32::try_from(free).unwrap_or(1),
                )
                .await
            {
                Ok(c) => claimed = c,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming webhook deliveries failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let found = !claimed.is_empty();
        for c in claimed {
            inflight.spawn(attempt(rotor.clone(), delivery.clone(), c));
        }
        if !found {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
            }
        }
    }
}

/// One attempt of a claimed delivery, and its record.
async fn attempt(rotor: Arc<Rotor>, delivery: Delivery, claimed: Claimed) {
    let at = rotor.now();
    // The signature's timestamp is the wall clock's: receivers check it against theirs.
    let sent = delivery
        .send(
            &claimed.endpoint,
            &claimed.webhook_id(),
            Utc::now().timestamp(),
            &claimed.payload,
        )
        .await;
    let now = rotor.now();
    let outcome = outcome(&sent, &claimed, now);
    let stats = &rotor.counters().webhooks;
    if sent.ok() {
        stats.attempts_ok.fetch_add(1, Ordering::Relaxed);
    } else {
        stats.attempts_failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            webhook_id = %claimed.webhook_id(),
            event_type = %claimed.event_type,
            endpoint = %crate::config::redact_url(&claimed.endpoint),
            error = sent.error.as_deref().unwrap_or_default(),
            attempt = claimed.attempts + 1,
            "webhook attempt failed"
        );
    }
    if outcome == Outcome::Failed {
        stats.gave_up.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            webhook_id = %claimed.webhook_id(),
            endpoint = %crate::config::redact_url(&claimed.endpoint),
            "webhook delivery failed after its retry window; retry it with the admin API"
        );
    }
    let record = Attempt {
        at,
        status_code: sent.status_code,
        error: sent.error.clone(),
        duration_ms: u64::try_from(sent.duration.as_millis()).unwrap_or(u64::MAX),
    };
    match rotor
        .store()
        .finish_delivery(&claimed, &record, outcome)
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            webhook_id = %claimed.webhook_id(),
            "webhook claim expired before the attempt was recorded; it will be sent again"
        ),
        Err(e) => tracing::error!(
            webhook_id = %claimed.webhook_id(),
            error = %e,
            "recording a webhook attempt failed; it will be sent again"
        ),
    }
}

/// Reads the pending and failed counts into the gauges (two counts on the status
/// index; delivered rows, the many, are not counted).
async fn read_gauges(rotor: &Rotor) {
    let stats = &rotor.counters().webhooks;
    for (status, gauge) in [
        (DeliveryStatus::Pending, &stats.pending),
        (DeliveryStatus::Failed, &stats.failed),
    ] {
        match rotor.store().count_deliveries(Some(status)).await {
            Ok(n) => gauge.store(n, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "reading webhook delivery counts failed"),
        }
    }
}

/// The result of `rotor webhooks test` for one endpoint.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// The endpoint, any password redacted.
    pub endpoint: String,
    /// The test event's `webhook-id`.
    pub webhook_id: String,
    /// What the endpoint answered.
    pub sent: Sent,
}

/// Sends a `webhook.test` event, signed like every other, to every configured
/// endpoint, once, outside the outbox.
pub async fn send_test(
    settings: &crate::config::Settings,
    now: DateTime<Utc>,
) -> Result<Vec<TestResult>, ClientError> {
    let delivery = Delivery::new(
        Duration::from_secs(settings.webhook_timeout_seconds),
        &settings.webhook_secrets,
    )?;
    let body = payload::envelope(
        EventType::WebhookTest,
        now,
        json!({"message": "rotor webhooks test"}),
    );
    let mut results = Vec::new();
    for url in &settings.webhook_urls {
        let id = webhook_id(Uuid::now_v7());
        let sent = delivery.send(url, &id, now.timestamp(), &body).await;
        results.push(TestResult {
            endpoint: crate::config::redact_url(url),
            webhook_id: id,
            sent,
        });
    }
    Ok(results)
}
