//! [`OutboxStore`] on SQLite, and the outbox write of a change. One process delivers:
//! claims are writer jobs, so they are serialised with every other write.

use rusqlite::OptionalExtension;

use super::*;
use crate::{
    storage::{
        change::Applied,
        outbox::{
            known_facts, Attempt, AttemptRow, Claimed, DeliveryRow, DeliveryStatus, OutboxStore,
            Outcome, StatusCount,
        },
    },
    webhooks::{event::OutboxEvent, payload},
};

/// Writes the event and one pending delivery per endpoint (inside the change's job).
pub(super) fn insert(
    c: &Connection,
    event: &OutboxEvent,
    applied: &Applied,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut facts = known_facts(event, applied);
    let user = facts.user_id.map(|u| u.to_string());
    if facts.email.is_none() {
        if let Some(user) = &user {
            facts.email = c
                .prepare_cached("SELECT email FROM users WHERE id = ?1")?
                .query_row([user], |r| r.get(0))
                .optional()?;
        }
    }
    if event.check_new_device {
        let session = event.session_id.map(|s| s.to_string());
        facts.new_device = Some(
            count(
                c,
                "SELECT EXISTS (SELECT 1 FROM sessions WHERE user_id = ?1 AND id IS NOT ?2
                   AND CASE WHEN ?3 IS NOT NULL THEN device_id = ?3
                            ELSE device_id IS NULL AND user_agent IS ?4 END)",
                params![user, session, event.device_id, event.user_agent],
            )? == 0,
        );
        facts.new_ip = match &event.ip {
            Some(ip) => Some(
                count(
                    c,
                    "SELECT EXISTS (SELECT 1 FROM sessions
                       WHERE user_id = ?1 AND id IS NOT ?2 AND ip_address = ?3)",
                    params![user, session, ip],
                )? == 0,
            ),
            None => None,
        };
    }
    let body = payload::render(event, &facts, now);
    let seq: i64 = c
        .prepare_cached(
            "INSERT INTO webhook_events (id, event_type, user_id, payload, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING seq",
        )?
        .query_row(
            params![
                Uuid::now_v7().to_string(),
                event.event_type.as_str(),
                user,
                body,
                ts(now)
            ],
            |r| r.get(0),
        )?;
    for endpoint in event.endpoints.iter() {
        exec(
            c,
            "INSERT INTO webhook_deliveries (event_seq, endpoint, user_id, status, window_start, next_attempt_at)
             VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
            params![seq, endpoint, user, ts(now)],
        )?;
    }
    Ok(())
}

fn status_col(row: &rusqlite::Row<'_>, col: &str) -> StoreResult<DeliveryStatus> {
    let s: String = row.get(col)?;
    DeliveryStatus::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("delivery status {s:?}")))
}

fn u32_col(row: &rusqlite::Row<'_>, col: &str) -> StoreResult<u32> {
    Ok(u32::try_from(row.get::<_, i64>(col)?).unwrap_or(0))
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn claim_deliveries(
        &self,
        endpoints: &[String],
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<Claimed>> {
        let endpoints = serde_json::to_string(endpoints)
            .map_err(|e| StoreError::Corrupt(format!("endpoints: {e}")))?;
        // A read first: an idle worker then costs the writer thread nothing.
        let due = {
            let (endpoints, now) = (endpoints.clone(), ts(now));
            self.read(move |c| {
                count(
                    c,
                    "SELECT EXISTS (SELECT 1 FROM webhook_deliveries
                       WHERE status = 'pending' AND next_attempt_at <= ?1
                         AND (claimed_until IS NULL OR claimed_until <= ?1)
                         AND endpoint IN (SELECT value FROM json_each(?2)))",
                    params![now, endpoints],
                )
            })
            .await?
        };
        if due == 0 {
            return Ok(Vec::new());
        }
        let claim = Uuid::now_v7();
        self.write(move |c| {
            exec(
                c,
                "UPDATE webhook_deliveries SET claim = ?1, claimed_until = ?2
                 WHERE rowid IN (
                   SELECT d.rowid FROM webhook_deliveries d
                   WHERE d.status = 'pending' AND d.next_attempt_at <= ?3
                     AND (d.claimed_until IS NULL OR d.claimed_until <= ?3)
                     AND d.endpoint IN (SELECT value FROM json_each(?4))
                     AND NOT EXISTS (
                       SELECT 1 FROM webhook_deliveries e
                       WHERE e.endpoint = d.endpoint AND e.user_id = d.user_id
                         AND e.status = 'pending' AND e.event_seq < d.event_seq)
                   ORDER BY d.event_seq LIMIT ?5)",
                params![
                    claim.to_string(),
                    ts(lease_until),
                    ts(now),
                    endpoints,
                    limit
                ],
            )?;
            all(
                c,
                "SELECT d.event_seq, d.endpoint, d.attempts, d.window_start,
                        e.id, e.event_type, e.payload
                 FROM webhook_deliveries d JOIN webhook_events e ON e.seq = d.event_seq
                 WHERE d.claim = ?1 ORDER BY d.event_seq",
                [claim.to_string()],
                |r| {
                    Ok(Claimed {
                        seq: r.get("event_seq")?,
                        endpoint: r.get("endpoint")?,
                        event_id: col_uuid(r, "id")?,
                        event_type: r.get("event_type")?,
                        payload: r.get("payload")?,
                        attempts: u32_col(r, "attempts")?,
                        window_start: rows::col_ts(r, "window_start")?,
                        claim,
                    })
                },
            )
        })
        .await
    }

    async fn finish_delivery(
        &self,
        claimed: &Claimed,
        attempt: &Attempt,
        outcome: Outcome,
    ) -> StoreResult<bool> {
        let (seq, endpoint, claim) = (claimed.seq, claimed.endpoint.clone(), claimed.claim);
        let attempt = attempt.clone();
        self.write(move |c| {
            let (status, next, delivered) = match outcome {
                Outcome::Delivered => ("delivered", None, Some(ts(attempt.at))),
                Outcome::Retry(at) => ("pending", Some(ts(at)), None),
                Outcome::Failed => ("failed", None, None),
            };
            let changed = exec(
                c,
                "UPDATE webhook_deliveries SET status = ?4, attempts = attempts + 1,
                        next_attempt_at = COALESCE(?5, next_attempt_at), delivered_at = ?6,
                        claim = NULL, claimed_until = NULL
                 WHERE event_seq = ?1 AND endpoint = ?2 AND claim = ?3 AND status = 'pending'",
                params![seq, endpoint, claim.to_string(), status, next, delivered],
            )?;
            if changed == 0 {
                return Ok(false);
            }
            exec(
                c,
                "INSERT INTO webhook_attempts (event_seq, endpoint, attempted_at, status_code, error, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    seq,
                    endpoint,
                    ts(attempt.at),
                    attempt.status_code,
                    attempt.error,
                    int(attempt.duration_ms)
                ],
            )?;
            Ok(true)
        })
        .await
    }

    async fn release_claims(&self) -> StoreResult<u64> {
        self.write(|c| {
            exec(
                c,
                "UPDATE webhook_deliveries SET claim = NULL, claimed_until = NULL WHERE claim IS NOT NULL",
                [],
            )
        })
        .await
    }

    async fn list_deliveries(
        &self,
        status: Option<DeliveryStatus>,
        skip: u64,
        limit: u64,
    ) -> StoreResult<Vec<DeliveryRow>> {
        let status = status.map(DeliveryStatus::as_str);
        self.read(move |c| {
            let mut rows = all(
                c,
                "SELECT d.event_seq, e.id, e.event_type, e.user_id, e.created_at, d.endpoint,
                        d.status, d.attempts, d.next_attempt_at, d.delivered_at
                 FROM webhook_deliveries d JOIN webhook_events e ON e.seq = d.event_seq
                 WHERE (?1 IS NULL OR d.status = ?1)
                 ORDER BY d.event_seq DESC, d.endpoint LIMIT ?2 OFFSET ?3",
                params![status, int(limit), int(skip)],
                |r| {
                    let status = status_col(r, "status")?;
                    Ok((
                        r.get::<_, i64>("event_seq")?,
                        DeliveryRow {
                            event_id: col_uuid(r, "id")?,
                            event_type: r.get("event_type")?,
                            user_id: rows::col_uuid_opt(r, "user_id")?,
                            created_at: rows::col_ts(r, "created_at")?,
                            endpoint: r.get("endpoint")?,
                            status,
                            attempts: u32_col(r, "attempts")?,
                            next_attempt_at: if status == DeliveryStatus::Pending {
                                col_ts_opt(r, "next_attempt_at")?
                            } else {
                                None
                            },
                            delivered_at: col_ts_opt(r, "delivered_at")?,
                            history: Vec::new(),
                        },
                    ))
                },
            )?;
            for (seq, row) in &mut rows {
                row.history = all(
                    c,
                    "SELECT attempted_at, status_code, error, duration_ms FROM webhook_attempts
                     WHERE event_seq = ?1 AND endpoint = ?2 ORDER BY id",
                    params![*seq, row.endpoint],
                    |r| {
                        Ok(AttemptRow {
                            at: rows::col_ts(r, "attempted_at")?,
                            status_code: r
                                .get::<_, Option<i64>>("status_code")?
                                .and_then(|s| u16::try_from(s).ok()),
                            error: r.get("error")?,
                            duration_ms: u64::try_from(r.get::<_, i64>("duration_ms")?)
                                .unwrap_or(0),
                        })
                    },
                )?;
            }
            Ok(rows.into_iter().map(|(_, r)| r).collect())
        })
        .await
    }

    async fn count_deliveries(&self, status: Option<DeliveryStatus>) -> StoreResult<u64> {
        let status = status.map(DeliveryStatus::as_str);
        self.read(move |c| {
            count(
                c,
                "SELECT count(*) FROM webhook_deliveries WHERE (?1 IS NULL OR status = ?1)",
                [status],
            )
        })
        .await
    }

    async fn retry_failed(&self, event_id: Uuid, now: DateTime<Utc>) -> StoreResult<u64> {
        self.write(move |c| {
            exec(
                c,
                "UPDATE webhook_deliveries SET status = 'pending', attempts = 0,
                        window_start = ?2, next_attempt_at = ?2, claim = NULL, claimed_until = NULL
                 WHERE status = 'failed'
                   AND event_seq = (SELECT seq FROM webhook_events WHERE id = ?1)",
                params![event_id.to_string(), ts(now)],
            )
        })
        .await
    }

    async fn delivery_counts(&self) -> StoreResult<Vec<StatusCount>> {
        self.read(|c| {
            all(
                c,
                "SELECT endpoint, status, count(*) AS n FROM webhook_deliveries
                 GROUP BY endpoint, status ORDER BY endpoint, status",
                [],
                |r| {
                    Ok(StatusCount {
                        endpoint: r.get("endpoint")?,
                        status: status_col(r, "status")?,
                        count: u64::try_from(r.get::<_, i64>("n")?).unwrap_or(0),
                    })
                },
            )
        })
        .await
    }

    async fn count_delivered_before(&self, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        self.read(move |c| {
            count(
                c,
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered' AND delivered_at < ?1",
                [ts(cutoff)],
            )
        })
        .await
    }

    async fn delete_delivered_before_batch(
        &self,
        cutoff: DateTime<Utc>,
        batch: u32,
    ) -> StoreResult<u64> {
        self.write(move |c| {
            let deleted = all(
                c,
                "DELETE FROM webhook_deliveries WHERE rowid IN
                   (SELECT rowid FROM webhook_deliveries
                    WHERE status = 'delivered' AND delivered_at < ?1 LIMIT ?2)
                 RETURNING event_seq",
                params![ts(cutoff), batch],
                |r| Ok(r.get::<_, i64>(0)?),
            )?;
            for seq in &deleted {
                exec(
                    c,
                    "DELETE FROM webhook_events WHERE seq = ?1
                       AND NOT EXISTS (SELECT 1 FROM webhook_deliveries WHERE event_seq = ?1)",
                    [seq],
                )?;
            }
            Ok(deleted.len() as u64)
        })
        .await
    }
}
