//! Rotations on PostgreSQL, batched: concurrent rotations queue here, and a few worker
//! tasks each take everything queued (up to [`MAX_BATCH`]) and run it as **one**
//! statement, one round trip and one commit, instead of one of each per rotation.
//!
//! The batched statement is the single-rotation statement over `unnest`ed arrays:
//! every rotation still revokes its token only if that token is live at that moment
//! (the conditional UPDATE, which is what makes rotation safe across processes), and
//! inserts its successor and its audit row in the same statement. The session row is
//! not written: its last use is read off the live token (see `get_session`). Rows come
//! back tagged with their position, so each caller gets its own result.
//!
//! Two rules keep it equivalent to running the rotations one by one:
//! - a batch never holds the same presented token twice (PostgreSQL would update the
//!   row once for one of them, unpredictably); a duplicate waits for the next batch,
//!   where it meets the token already rotated, as it would have serially;
//! - if the batch statement fails (a deadlock with a revocation, say), its rotations
//!   are run again one at a time, so one bad rotation cannot fail its neighbours.
//!
//! Rotations are sorted by token hash inside a batch, so two batches lock the rows
//! they share in the same order.

use std::sync::{Arc, LazyLock, Mutex as StdMutex, OnceLock, PoisonError};

use sqlx::{postgres::PgRow, PgPool, Row};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::{token_from_row, token_version, TOKEN_COLS};
use crate::storage::{map_unique, OwnedRotation, Rotated, StoreError, StoreResult};

/// The most rotations one statement carries.
const MAX_BATCH: usize = 128;
/// Worker tasks, each with its own statement in flight: while one batch is on the
/// server, the next one is filling up.
const WORKERS: usize = 2;

type Reply = oneshot::Sender<StoreResult<Option<Rotated>>>;

struct Pending {
    rotation: OwnedRotation,
    reply: Reply,
}

/// The queue of rotations waiting for a worker; workers start with the first rotation.
#[derive(Default)]
pub(super) struct Rotations {
    queue: OnceLock<StdMutex<Option<mpsc::UnboundedSender<Pending>>>>,
}

impl std::fmt::Debug for Rotations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotations").finish_non_exhaustive()
    }
}

impl Rotations {
    /// Queues a rotation and waits for its result.
    pub(super) async fn rotate(
        &self,
        pool: &PgPool,
        rotation: OwnedRotation,
    ) -> StoreResult<Option<Rotated>> {
        let queue = self.queue.get_or_init(|| StdMutex::new(Some(start(pool))));
        let (reply, answer) = oneshot::channel();
        {
            let sender = queue.lock().unwrap_or_else(PoisonError::into_inner);
            let sender = sender.as_ref().ok_or_else(closed)?;
            sender
                .send(Pending { rotation, reply })
                .map_err(|_| closed())?;
        }
        answer.await.map_err(|_| closed())?
    }

    /// Stops taking rotations; the workers finish what is queued and exit.
    pub(super) fn close(&self) {
        if let Some(queue) = self.queue.get() {
            queue.lock().unwrap_or_else(PoisonError::into_inner).take();
        }
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the PostgreSQL store is closed".into())
}

fn start(pool: &PgPool) -> mpsc::UnboundedSender<Pending> {
    let (sender, inbox) = mpsc::unbounded_channel();
    let inbox = Arc::new(Mutex::new(inbox));
    let workers: usize = std::env::var("XW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(WORKERS);
    for _ in 0..workers {
        tokio::spawn(worker(pool.clone(), inbox.clone()));
    }
    sender
}

async fn worker(pool: PgPool, inbox: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>) {
    let mut deferred: Vec<Pending> = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut deferred);
        if batch.is_empty() {
            let mut inbox = inbox.lock().await;
            match inbox.recv().await {
                Some(p) => batch.push(p),
                None => return,
            }
            drain(&mut inbox, &mut batch);
        } else if let Ok(mut inbox) = inbox.try_lock() {
            // Holding deferred rotations, never wait for the queue: the other worker
            // may be parked on it, and our callers are waiting on us.
            drain(&mut inbox, &mut batch);
        }
        batch.sort_by(|a, b| a.rotation.presented_hash.cmp(&b.rotation.presented_hash));
        // A token presented twice: the later copies wait for the next batch.
        let mut unique: Vec<Pending> = Vec::with_capacity(batch.len());
        for p in batch {
            match unique.last() {
                Some(last) if last.rotation.presented_hash == p.rotation.presented_hash => {
                    deferred.push(p);
                }
                _ => unique.push(p),
            }
        }
        run(&pool, unique).await;
    }
}

/// Adds what is queued, without waiting, up to a full batch.
fn drain(inbox: &mut mpsc::UnboundedReceiver<Pending>, batch: &mut Vec<Pending>) {
    while batch.len() < MAX_BATCH {
        match inbox.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
}

/// Runs a batch and answers each of its callers.
async fn run(pool: &PgPool, batch: Vec<Pending>) {
    if let [_] = batch.as_slice() {
        for p in batch {
            let result = rotate_one(pool, &p.rotation).await;
            let _ = p.reply.send(result);
        }
        return;
    }
    match rotate_many(pool, &batch).await {
        Ok(mut results) => {
            for (p, result) in batch.into_iter().zip(results.drain(..)) {
                let _ = p.reply.send(Ok(result));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, size = batch.len(), "batched rotation failed; rotating one by one");
            for p in batch {
                let result = rotate_one(pool, &p.rotation).await;
                let _ = p.reply.send(result);
            }
        }
    }
}

/// The single-rotation statement.
static ROTATE_ONE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH old AS (
            UPDATE refresh_tokens t SET is_revoked = TRUE, revoked_at = $1, updated_at = $1
            FROM users u
            WHERE t.token_hash = $2::bpchar AND NOT t.is_revoked AND t.expires_at > $1
              AND u.id = t.user_id AND u.is_active
              AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = t.family_id AND s.revoked_at IS NOT NULL)
            RETURNING t.user_id, t.family_id, t.device_id, t.device_name, u.token_version,
                      LEAST($5::timestamptz,
                            COALESCE((SELECT s.absolute_expires_at FROM sessions s WHERE s.id = t.family_id),
                                     $5::timestamptz)) AS new_expires_at
         ), ins AS (
            INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, device_id, device_name, ip_address,
                                        expires_at, is_revoked, created_at)
            SELECT $3, $4, user_id, family_id, device_id, device_name, $6, new_expires_at, FALSE, $1 FROM old
            RETURNING {TOKEN_COLS}
         ), event AS (
            INSERT INTO audit_events (id, created_at, kind, user_id, session_id, ip_address, user_agent)
            SELECT $7, $1, 'refresh', user_id, family_id, $6, $8 FROM old
         )
         SELECT ins.*, old.token_version FROM ins CROSS JOIN old"
    )
});

/// The same statement over arrays: `ord` says which input row each result belongs to.
static ROTATE_MANY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH req AS (
            SELECT * FROM unnest($1::int4[], $2::timestamptz[], $3::bpchar[], $4::uuid[], $5::bpchar[],
                                 $6::timestamptz[], $7::text[], $8::uuid[], $9::text[])
                AS r(ord, at, presented, successor_id, successor_hash, expires_at, ip, event_id, ua)
         ), old AS (
            UPDATE refresh_tokens t SET is_revoked = TRUE, revoked_at = r.at, updated_at = r.at
            FROM req r, users u
            WHERE t.token_hash = r.presented AND NOT t.is_revoked AND t.expires_at > r.at
              AND u.id = t.user_id AND u.is_active
              AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = t.family_id AND s.revoked_at IS NOT NULL)
            RETURNING r.ord, r.at, r.successor_id, r.successor_hash, r.ip, r.event_id, r.ua,
                      t.user_id, t.family_id, t.device_id, t.device_name, u.token_version,
                      LEAST(r.expires_at,
                            COALESCE((SELECT s.absolute_expires_at FROM sessions s WHERE s.id = t.family_id),
                                     r.expires_at)) AS new_expires_at
         ), ins AS (
            INSERT INTO refresh_tokens (id, token_hash, user_id, family_id, device_id, device_name, ip_address,
                                        expires_at, is_revoked, created_at)
            SELECT successor_id, successor_hash, user_id, family_id, device_id, device_name, ip,
                   new_expires_at, FALSE, at
            FROM old
            RETURNING {TOKEN_COLS}
         ), event AS (
            INSERT INTO audit_events (id, created_at, kind, user_id, session_id, ip_address, user_agent)
            SELECT event_id, at, 'refresh', user_id, family_id, ip, ua FROM old
         )
         SELECT ins.*, old.token_version, old.ord FROM ins JOIN old ON old.successor_id = ins.id"
    )
});

async fn rotate_one(pool: &PgPool, rot: &OwnedRotation) -> StoreResult<Option<Rotated>> {
    let row = sqlx::query(&ROTATE_ONE)
        .bind(rot.now)
        .bind(&rot.presented_hash)
        .bind(rot.successor_id)
        .bind(&rot.successor_hash)
        .bind(rot.expires_at)
        .bind(&rot.ip_address)
        .bind(rot.event_id)
        .bind(&rot.user_agent)
        .fetch_optional(pool)
        .await
        .map_err(map_unique)?;
    row.as_ref().map(rotated).transpose()
}

/// Results in the order of `batch`.
async fn rotate_many(pool: &PgPool, batch: &[Pending]) -> StoreResult<Vec<Option<Rotated>>> {
    let rots = || batch.iter().map(|p| &p.rotation);
    let ord: Vec<i32> = (0..batch.len())
        .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
        .collect();
    let rows = sqlx::query(&ROTATE_MANY)
        .bind(ord)
        .bind(rots().map(|r| r.now).collect::<Vec<_>>())
        .bind(
            rots()
                .map(|r| r.presented_hash.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rots().map(|r| r.successor_id).collect::<Vec<_>>())
        .bind(
            rots()
                .map(|r| r.successor_hash.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rots().map(|r| r.expires_at).collect::<Vec<_>>())
        .bind(rots().map(|r| r.ip_address.as_deref()).collect::<Vec<_>>())
        .bind(rots().map(|r| r.event_id).collect::<Vec<_>>())
        .bind(rots().map(|r| r.user_agent.as_deref()).collect::<Vec<_>>())
        .fetch_all(pool)
        .await
        .map_err(map_unique)?;
    let mut results: Vec<Option<Rotated>> = vec![None; batch.len()];
    for row in &rows {
        let ord: i32 = row.try_get("ord")?;
        let slot = usize::try_from(ord)
            .ok()
            .and_then(|i| results.get_mut(i))
            .ok_or_else(|| StoreError::Corrupt(format!("rotation batch returned ord {ord}")))?;
        *slot = Some(rotated(row)?);
    }
    Ok(results)
}

fn rotated(row: &PgRow) -> StoreResult<Rotated> {
    Ok(Rotated {
        token: token_from_row(row)?,
        token_version: token_version(row)?,
    })
}
