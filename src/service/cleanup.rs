//! Cleanup of expired rows: refresh tokens, sessions past their absolute end, audit
//! events past retention, and webhook deliveries delivered before their retention. Batched, each batch its own short transaction, so
//! rotations keep flowing while millions of rows go.

use chrono::Duration;

use super::{Counters, Rotor};
use crate::{error::Result, storage::CleanupReport};

/// Receives progress as batches complete: (table, rows deleted so far in that table).
pub trait CleanupProgress: Send + Sync {
    /// Called after each batch.
    fn batch(&self, table: &'static str, deleted_so_far: u64);
}

impl<F: Fn(&'static str, u64) + Send + Sync> CleanupProgress for F {
    fn batch(&self, table: &'static str, deleted_so_far: u64) {
        self(table, deleted_so_far)
    }
}

impl Rotor {
    /// Counts what a cleanup would delete now.
    pub async fn cleanup_preview(&self) -> Result<CleanupReport> {
        let now = self.now();
        Ok(CleanupReport {
            refresh_tokens: self.store.count_expired_tokens(now).await?,
            sessions: self.store.count_expired_sessions(now).await?,
            audit_events: self
                .store
                .count_events_before(now - Duration::days(self.settings.audit_retention_days))
                .await?,
            webhook_deliveries: self
                .store
                .count_delivered_before(now - Duration::days(self.settings.webhook_retention_days))
                .await?,
        })
    }

    /// Runs one cleanup round if no other process is running one (`None` then).
    /// Revoked tokens that have not expired are kept: replay detection reads them.
    pub async fn cleanup(
        &self,
        progress: Option<&dyn CleanupProgress>,
    ) -> Result<Option<CleanupReport>> {
        let Some(lock) = self.store.try_cleanup_lock().await? else {
            return Ok(None);
        };
        let result = self.cleanup_locked(progress).await;
        lock.release().await;
        let report = result?;
        let total = report.refresh_tokens
            + report.sessions
            + report.audit_events
            + report.webhook_deliveries;
        Counters::add(&self.counters.cleanup_deleted, total);
        Ok(Some(report))
    }

    /// Lets rotations use the database between two batches.
    async fn pause_between_batches(&self) {
        match self.settings.cleanup_batch_pause_ms {
            0 => tokio::task::yield_now().await,
            ms => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
        }
    }

    async fn cleanup_locked(
        &self,
        progress: Option<&dyn CleanupProgress>,
    ) -> Result<CleanupReport> {
        let batch = self.settings.cleanup_batch_size;
        let now = self.now();
        let cutoff = now - Duration::days(self.settings.audit_retention_days);
        let mut report = CleanupReport::default();
        loop {
            let n = self.store.delete_expired_tokens_batch(now, batch).await?;
            report.refresh_tokens += n;
            if let Some(p) = progress {
                p.batch("refresh_tokens", report.refresh_tokens);
            }
            if n < u64::from(batch) {
                break;
            }
            self.pause_between_batches().await;
        }
        loop {
            let n = self.store.delete_expired_sessions_batch(now, batch).await?;
            report.sessions += n;
            if let Some(p) = progress {
                p.batch("sessions", report.sessions);
            }
            if n < u64::from(batch) {
                break;
            }
            self.pause_between_batches().await;
        }
        loop {
            let n = self.store.delete_events_before_batch(cutoff, batch).await?;
            report.audit_events += n;
            if let Some(p) = progress {
                p.batch("audit_events", report.audit_events);
            }
            if n < u64::from(batch) {
                break;
            }
            self.pause_between_batches().await;
        }
        let cutoff = now - Duration::days(self.settings.webhook_retention_days);
        loop {
            let n = self
                .store
                .delete_delivered_before_batch(cutoff, batch)
                .await?;
            report.webhook_deliveries += n;
            if let Some(p) = progress {
                p.batch("webhook_deliveries", report.webhook_deliveries);
            }
            if n < u64::from(batch) {
                break;
            }
            self.pause_between_batches().await;
        }
        Ok(report)
    }
}
