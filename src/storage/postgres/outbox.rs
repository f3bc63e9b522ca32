//! [`OutboxStore`] on PostgreSQL, and the outbox write of a change. Several processes
//! share delivery: a claim is one statement that locks due rows with
//! `FOR UPDATE SKIP LOCKED` and stamps a lease, so two processes never claim the same
//! delivery while its lease lasts, and a crashed process's claims expire.

use sqlx::PgConnection;

use super::*;
use crate::{
    storage::outbox::{
        known_facts, Attempt, AttemptRow, Claimed, DeliveryRow, DeliveryStatus, OutboxStore,
        Outcome, StatusCount,
    },
    webhooks::{event::OutboxEvent, payload},
};

/// The advisory-lock class of per-user event ordering ("hook"); the object is a hash
/// of the user id. The two-key space does not overlap the one-key locks rotor takes.
const ORDER_LOCK_CLASS: i32 = 0x68_6f_6f_6b;

/// Takes, for the transaction, the ordering lock of every user the change writes
/// events about (sorted, so two changes never wait on each other in a cycle). It is
/// taken before any other write of the change: events of one user get their sequence
/// numbers in commit order.
pub(super) async fn lock_users(tx: &mut PgConnection, change: &Change) -> StoreResult<()> {
    let mut users: Vec<Uuid> = change
        .writes
        .iter()
        .filter_map(|w| match w {
            super::super::change::Write::Webhook(e) => e.user_id,
            _ => None,
        })
        .collect();
    users.sort_unstable();
    users.dedup();
    for user in users {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
            .bind(ORDER_LOCK_CLASS)
            .bind(user)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Writes the event and one pending delivery per endpoint (inside the change's
/// transaction).
pub(super) async fn insert(
    tx: &mut PgConnection,
    event: &OutboxEvent,
    applied: &Applied,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut facts = known_facts(event, applied);
    if let (None, Some(user)) = (&facts.email, facts.user_id) {
        facts.email = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
    }
    if event.check_new_device {
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM sessions WHERE user_id = $1 AND id IS DISTINCT FROM $2
                      AND CASE WHEN $3::text IS NOT NULL THEN device_id = $3
                               ELSE device_id IS NULL AND user_agent IS NOT DISTINCT FROM $4 END)
                      AS known_device,
                    EXISTS (SELECT 1 FROM sessions WHERE user_id = $1 AND id IS DISTINCT FROM $2
                      AND ip_address = $5) AS known_ip",
        )
        .bind(facts.user_id)
        .bind(event.session_id)
        .bind(event.device_id.as_deref())
        .bind(event.user_agent.as_deref())
        .bind(event.ip.as_deref())
        .fetch_one(&mut *tx)
        .await?;
        facts.new_device = Some(!row.try_get::<bool, _>("known_device")?);
        facts.new_ip = match event.ip {
            Some(_) => Some(!row.try_get::<bool, _>("known_ip")?),
            None => None,
        };
    }
    let body = payload::render(event, &facts, now);
    let endpoints: Vec<&str> = event.endpoints.iter().map(String::as_str).collect();
    sqlx::query(
        "WITH e AS (
            INSERT INTO webhook_events (id, event_type, user_id, payload, created_at)
            VALUES ($1, $2, $3, $4, $5) RETURNING seq
         )
         INSERT INTO webhook_deliveries (event_seq, endpoint, user_id, status, window_start, next_attempt_at)
         SELECT e.seq, ep, $3, 'pending', $5, $5 FROM e, unnest($6::text[]) AS ep",
    )
    .bind(Uuid::now_v7())
    .bind(event.event_type.as_str())
    .bind(facts.user_id)
    .bind(&body)
    .bind(now)
    .bind(&endpoints)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn status_col(row: &PgRow, col: &str) -> StoreResult<DeliveryStatus> {
    let s: String = row.try_get(col)?;
    DeliveryStatus::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("delivery status {s:?}")))
}

fn u32_col(row: &PgRow, col: &str) -> StoreResult<u32> {
    Ok(u32::try_from(row.try_get::<i32, _>(col)?).unwrap_or(0))
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn claim_deliveries(
        &self,
        endpoints: &[String],
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<Claimed>> {
        let claim = Uuid::now_v7();
        let rows = sqlx::query(
            "WITH ready AS (
                SELECT d.event_seq, d.endpoint FROM webhook_deliveries d
                WHERE d.status = 'pending' AND d.next_attempt_at <= $3
                  AND (d.claimed_until IS NULL OR d.claimed_until <= $3)
                  AND d.endpoint = ANY($4)
                  AND NOT EXISTS (
                    SELECT 1 FROM webhook_deliveries e
                    WHERE e.endpoint = d.endpoint AND e.user_id = d.user_id
                      AND e.status = 'pending' AND e.event_seq < d.event_seq)
                ORDER BY d.event_seq LIMIT $5
                FOR UPDATE OF d SKIP LOCKED
             )
             UPDATE webhook_deliveries d SET claim = $1, claimed_until = $2
             FROM ready, webhook_events ev
             WHERE d.event_seq = ready.event_seq AND d.endpoint = ready.endpoint
               AND ev.seq = d.event_seq
             RETURNING d.event_seq, d.endpoint, d.attempts, d.window_start,
                       ev.id, ev.event_type, ev.payload",
        )
        .bind(claim)
        .bind(lease_until)
        .bind(now)
        .bind(endpoints)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows
            .iter()
            .map(|r| {
                Ok(Claimed {
                    seq: r.try_get("event_seq")?,
                    endpoint: r.try_get("endpoint")?,
                    event_id: r.try_get("id")?,
                    event_type: r.try_get("event_type")?,
                    payload: r.try_get("payload")?,
                    attempts: u32_col(r, "attempts")?,
                    window_start: r.try_get("window_start")?,
                    claim,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        claimed.sort_by_key(|c| c.seq);
        Ok(claimed)
    }

    async fn finish_delivery(
        &self,
        claimed: &Claimed,
        attempt: &Attempt,
        outcome: Outcome,
    ) -> StoreResult<bool> {
        let (status, next, delivered) = match outcome {
            Outcome::Delivered => ("delivered", None, Some(attempt.at)),
            Outcome::Retry(at) => ("pending", Some(at), None),
            Outcome::Failed => ("failed", None, None),
        };
        let done = sqlx::query(
            "WITH u AS (
                UPDATE webhook_deliveries SET status = $4, attempts = attempts + 1,
                       next_attempt_at = COALESCE($5, next_attempt_at), delivered_at = $6,
                       claim = NULL, claimed_until = NULL
                WHERE event_seq = $1 AND endpoint = $2 AND claim = $3 AND status = 'pending'
                RETURNING event_seq, endpoint
             )
             INSERT INTO webhook_attempts (event_seq, endpoint, attempted_at, status_code, error, duration_ms)
             SELECT event_seq, endpoint, $7, $8, $9, $10 FROM u",
        )
        .bind(claimed.seq)
        .bind(&claimed.endpoint)
        .bind(claimed.claim)
        .bind(status)
        .bind(next)
        .bind(delivered)
        .bind(attempt.at)
        .bind(attempt.status_code.map(i32::from))
        .bind(attempt.error.as_deref())
        .bind(bigint(attempt.duration_ms))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_claims(&self) -> StoreResult<u64> {
        // Other processes may be delivering: their claims stand until their leases end.
        Ok(0)
    }

    async fn list_deliveries(
        &self,
        status: Option<DeliveryStatus>,
        skip: u64,
        limit: u64,
    ) -> StoreResult<Vec<DeliveryRow>> {
        let rows = sqlx::query(
            "SELECT d.event_seq, e.id, e.event_type, e.user_id, e.created_at, d.endpoint,
                    d.status, d.attempts, d.next_attempt_at, d.delivered_at
             FROM webhook_deliveries d JOIN webhook_events e ON e.seq = d.event_seq
             WHERE ($1::text IS NULL OR d.status = $1)
             ORDER BY d.event_seq DESC, d.endpoint LIMIT $2 OFFSET $3",
        )
        .bind(status.map(DeliveryStatus::as_str))
        .bind(bigint(limit))
        .bind(bigint(skip))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut keys: Vec<(i64, String)> = Vec::with_capacity(rows.len());
        for r in &rows {
            let status = status_col(r, "status")?;
            keys.push((r.try_get("event_seq")?, r.try_get("endpoint")?));
            out.push(DeliveryRow {
                event_id: r.try_get("id")?,
                event_type: r.try_get("event_type")?,
                user_id: r.try_get("user_id")?,
                created_at: r.try_get("created_at")?,
                endpoint: r.try_get("endpoint")?,
                status,
                attempts: u32_col(r, "attempts")?,
                next_attempt_at: if status == DeliveryStatus::Pending {
                    r.try_get("next_attempt_at")?
                } else {
                    None
                },
                delivered_at: r.try_get("delivered_at")?,
                history: Vec::new(),
            });
        }
        let (seqs, endpoints): (Vec<i64>, Vec<String>) = keys.iter().cloned().unzip();
        let attempts = sqlx::query(
            "SELECT a.event_seq, a.endpoint, a.attempted_at, a.status_code, a.error, a.duration_ms
             FROM webhook_attempts a
             JOIN unnest($1::bigint[], $2::text[]) AS k(seq, endpoint)
               ON a.event_seq = k.seq AND a.endpoint = k.endpoint
             ORDER BY a.id",
        )
        .bind(&seqs)
        .bind(&endpoints)
        .fetch_all(&self.pool)
        .await?;
        for a in &attempts {
            let key: (i64, String) = (a.try_get("event_seq")?, a.try_get("endpoint")?);
            if let Some(i) = keys.iter().position(|k| *k == key) {
                out[i].history.push(AttemptRow {
                    at: a.try_get("attempted_at")?,
                    status_code: a
                        .try_get::<Option<i32>, _>("status_code")?
                        .and_then(|s| u16::try_from(s).ok()),
                    error: a.try_get("error")?,
                    duration_ms: u64::try_from(a.try_get::<i64, _>("duration_ms")?).unwrap_or(0),
                });
            }
        }
        Ok(out)
    }

    async fn count_deliveries(&self, status: Option<DeliveryStatus>) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM webhook_deliveries WHERE ($1::text IS NULL OR status = $1)",
        )
        .bind(status.map(DeliveryStatus::as_str))
        .fetch_one(&self.pool)
        .await?;
        Ok(count(n))
    }

    async fn retry_failed(&self, event_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64> {
        let r = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0,
                    window_start = $2, next_attempt_at = $2, claim = NULL, claimed_until = NULL
             WHERE status = 'failed'
               AND event_seq = (SELECT seq FROM webhook_events WHERE id = $1)",
        )
        .bind(event_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn delivery_counts(&self) -> StoreResult<Vec<StatusCount>> {
        sqlx::query(
            "SELECT endpoint, status, count(*) AS n FROM webhook_deliveries
             GROUP BY endpoint, status ORDER BY endpoint, status",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(StatusCount {
                endpoint: r.try_get("endpoint")?,
                status: status_col(r, "status")?,
                count: count(r.try_get("n")?),
            })
        })
        .collect()
    }

    async fn count_delivered_before(&self, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered' AND delivered_at < $1",
        )
        .bind(cutoff)
        .fetch_one(&self.pool)
        .await?;
        Ok(count(n))
    }

    async fn delete_delivered_before_batch(
        &self,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let seqs: Vec<i64> = sqlx::query_scalar(
            "DELETE FROM webhook_deliveries WHERE (event_seq, endpoint) IN (
                SELECT event_seq, endpoint FROM webhook_deliveries
                WHERE status = 'delivered' AND delivered_at < $1 LIMIT $2)
             RETURNING event_seq",
        )
        .bind(cutoff)
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM webhook_events ev WHERE ev.seq = ANY($1)
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = ev.seq)",
        )
        .bind(&seqs)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let n = i64::try_from(seqs.len()).unwrap_or(i64::MAX);
        Ok(count(n))
    }
}
