//! The SQLite engine room: the one connection that writes, on a thread of its own,
//! committing everything queued behind it as one transaction (group commit); and a
//! small pool of read-only connections used from tokio's blocking pool.
//!
//! SQLite takes one writer at a time. Funnelling every write of the process through
//! one thread means a write never waits on a lock inside the process, and batching
//! turns N concurrent rotations into one commit, one WAL append and one wake-up of the
//! writer instead of N. Each job of a batch runs inside its own `SAVEPOINT`, so a job
//! that fails (a unique violation, say) is rolled back alone; its callers get their
//! replies only once the batch has committed, so "`Ok` returned" still means
//! "durable in the WAL".

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    path::Path,
    sync::{mpsc, Arc, Mutex, PoisonError},
    thread,
    time::Duration,
};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::storage::{StoreError, StoreResult};

/// The most jobs one transaction takes; the rest wait for the next commit.
const MAX_BATCH: usize = 512;
/// How long a connection waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Prepared statements kept per connection (rotor has fewer distinct statements).
const STATEMENT_CACHE: usize = 96;
/// How often the checkpointer copies the WAL back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL pages after which the writer checkpoints by itself: a safety net, reached only
/// if the checkpointer cannot keep up (about 64 MiB of WAL).
const WRITER_CHECKPOINT_PAGES: u32 = 16384;
/// Size the WAL file is truncated to after a checkpoint (bytes).
const WAL_SIZE_LIMIT: i64 = 64 << 20;
/// Page cache of the writer connection (KiB): the hot index pages of a busy server.
const WRITER_CACHE_KIB: i64 = 8192;

/// Work the writer runs inside a batch's transaction, then answers for.
trait Work: Send {
    /// Runs the job; `true` when it succeeded (its changes are kept).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Delivers the outcome once the batch is over: `failed` is set when the batch
    /// could not be committed, and overrides a successful result.
    fn finish(self: Box<Self>, failed: Option<&str>);
}

struct Task<T, F> {
    job: Option<F>,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Work for Task<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> StoreResult<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(job) = self.job.take() else {
            return false;
        };
        let result = catch_unwind(AssertUnwindSafe(|| job(conn)))
            .unwrap_or_else(|_| Err(StoreError::Unavailable("a storage job panicked".into())));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, failed: Option<&str>) {
        let result = match (self.result, failed) {
            // A job's own error stands: its changes were rolled back either way.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), None) => Ok(v),
            (Some(Ok(_)) | None, Some(why)) => Err(StoreError::Unavailable(why.to_owned())),
            (None, None) => Err(StoreError::Unavailable("job was not run".into())),
        };
        // The caller may have gone away (client disconnected); the work is done.
        let _ = self.reply.send(result);
    }
}

enum Msg {
    Job(Box<dyn Work>),
    /// Finish the checkpoint the checkpointer started (see [`start_checkpointer`]).
    Checkpoint,
    Close,
}

/// Read-only connections and a semaphore that counts the free ones.
struct Readers {
    idle: Mutex<Vec<Connection>>,
    free: Arc<Semaphore>,
    size: usize,
}

/// A reader borrowed from the pool; goes back on drop, even if the job panicked.
struct Borrowed<'a> {
    readers: &'a Readers,
    conn: Option<Connection>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            lock(&self.readers.idle).push(conn);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer thread's mailbox and the reader pool.
pub(super) struct Engine {
    writer: Mutex<Option<mpsc::Sender<Msg>>>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    readers: Option<Arc<Readers>>,
    /// Dropping it stops the checkpointer.
    checkpointer: Mutex<Option<mpsc::Sender<()>>>,
}

impl Engine {
    /// Opens the file (creating it and switching it to WAL), starts the writer thread
    /// and opens `readers` read-only connections.
    pub(super) fn open_file(path: &Path, readers: usize) -> StoreResult<Self> {
        let writer = open_connection(path, false)?;
        // Checkpoints (copying the WAL into the database file, with an fsync) run on a
        // thread of their own, so the writer's commits never wait for them.
        writer.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
        writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        // A burst can grow the WAL file; once checkpointed, give the space back.
        writer.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        let mut idle = Vec::with_capacity(readers);
        for _ in 0..readers {
            idle.push(open_connection(path, true)?);
        }
        let readers = Readers {
            idle: Mutex::new(idle),
            free: Arc::new(Semaphore::new(readers)),
            size: readers,
        };
        let engine = Self::start(writer, Some(Arc::new(readers)))?;
        let mailbox = lock(&engine.writer).clone().ok_or_else(closed)?;
        let checkpointer = start_checkpointer(open_connection(path, false)?, mailbox)?;
        *lock(&engine.checkpointer) = Some(checkpointer);
        Ok(engine)
    }

    /// A private in-memory database: the writer's connection serves reads too.
    pub(super) fn open_memory() -> StoreResult<Self> {
        let conn = Connection::open_in_memory()?;
        configure(&conn, false)?;
        Self::start(conn, None)
    }

    fn start(writer: Connection, readers: Option<Arc<Readers>>) -> StoreResult<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("rotor-sqlite-writer".into())
            .spawn(move || writer_loop(&writer, &rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(Self {
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            readers,
            checkpointer: Mutex::new(None),
        })
    }

    /// Runs `job` on the writer inside the current batch's transaction; resolves once
    /// that transaction has committed (or failed). `job` must not begin or end
    /// transactions itself.
    pub(super) async fn write<T, F>(&self, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let task = Box::new(Task {
            job: Some(job),
            result: None,
            reply,
        });
        {
            let writer = lock(&self.writer);
            let sender = writer.as_ref().ok_or_else(closed)?;
            sender.send(Msg::Job(task)).map_err(|_| closed())?;
        }
        answer.await.map_err(|_| closed())?
    }

    /// Runs `job` on a read-only connection (on the writer for an in-memory database).
    pub(super) async fn read<T, F>(&self, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let Some(readers) = &self.readers else {
            return self.write(job).await;
        };
        let permit = readers
            .free
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let readers = readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = lock(&readers.idle).pop().ok_or_else(closed)?;
            let borrowed = Borrowed {
                readers: &readers,
                conn: Some(conn),
                _permit: permit,
            };
            job(borrowed.conn.as_ref().ok_or_else(closed)?)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }

    /// (connections open, idle readers), for metrics.
    pub(super) fn stats(&self) -> (u32, u32) {
        let (size, idle) = self
            .readers
            .as_ref()
            .map_or((0, 0), |r| (r.size, r.free.available_permits()));
        let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        (to_u32(size + 1), to_u32(idle))
    }

    /// Lets the writer finish what is queued, then stops it and closes every
    /// connection (the last close checkpoints the WAL into the database file).
    pub(super) async fn close(&self) {
        lock(&self.checkpointer).take();
        if let Some(sender) = lock(&self.writer).take() {
            let _ = sender.send(Msg::Close);
        }
        let handle = lock(&self.thread).take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        if let Some(readers) = &self.readers {
            readers.free.close();
            lock(&readers.idle).clear();
        }
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the SQLite store is closed".into())
}

fn open_connection(path: &Path, read_only: bool) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    configure(&conn, read_only)?;
    Ok(conn)
}

fn configure(conn: &Connection, read_only: bool) -> StoreResult<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    // An in-memory database answers "memory"; a file that cannot do WAL is refused
    // rather than silently run with a rollback journal.
    if mode != "wal" && mode != "memory" {
        return Err(StoreError::Unavailable(format!(
            "SQLite refused WAL mode (journal_mode = {mode})"
        )));
    }
    // In WAL mode NORMAL is durable against process crashes; a power loss may lose the
    // last transactions but never corrupts the file.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    if read_only {
        conn.pragma_update(None, "query_only", "ON")?;
    }
    Ok(())
}

/// Keeps the WAL short without making the writer wait: every [`CHECKPOINT_EVERY`] a
/// passive checkpoint on this thread's connection copies the WAL into the database file
/// and syncs it (the expensive part), then the writer is asked to copy the few frames
/// committed meanwhile. Under a steady stream of commits a checkpoint run beside the
/// writer never catches up with it, and the WAL would only grow. Stops when `stop` is
/// dropped.
fn start_checkpointer(
    conn: Connection,
    writer: mpsc::Sender<Msg>,
) -> StoreResult<mpsc::Sender<()>> {
    let (stop, stopped) = mpsc::channel::<()>();
    thread::Builder::new()
        .name("rotor-sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY)
            {
                // (busy, WAL frames, frames copied)
                let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                });
                match done {
                    Ok((frames, copied)) if frames > 0 && copied >= 0 => {
                        if writer.send(Msg::Checkpoint).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "SQLite checkpoint failed; retrying"),
                }
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpointer: {e}")))?;
    Ok(stop)
}

fn writer_loop(conn: &Connection, inbox: &mpsc::Receiver<Msg>) {
    let mut batch: Vec<Box<dyn Work>> = Vec::with_capacity(MAX_BATCH);
    let (mut checkpoint, mut closing) = (false, false);
    loop {
        let mut next = inbox.recv().ok();
        if next.is_none() {
            return;
        }
        // Whatever queued up while the previous batch committed joins this one.
        while let Some(msg) = next.take() {
            match msg {
                Msg::Job(job) => batch.push(job),
                Msg::Checkpoint => checkpoint = true,
                Msg::Close => closing = true,
            }
            if batch.len() < MAX_BATCH {
                next = inbox.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            commit_batch(conn, &mut batch);
        }
        if std::mem::take(&mut checkpoint) {
            // The checkpointer has copied nearly all of the WAL; copying the tail here,
            // where no commit can slip in between, completes the checkpoint so the
            // next commit starts the WAL file over instead of growing it.
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "SQLite checkpoint failed");
            }
        }
        if closing {
            return;
        }
    }
}

/// Runs the batch in one `BEGIN IMMEDIATE … COMMIT`, then answers every job.
fn commit_batch(conn: &Connection, batch: &mut Vec<Box<dyn Work>>) {
    let failed = run_batch(conn, batch).err();
    if failed.is_some() && !conn.is_autocommit() {
        let _ = exec(conn, "ROLLBACK");
    }
    for job in batch.drain(..) {
        job.finish(failed.as_deref());
    }
}

fn run_batch(conn: &Connection, batch: &mut [Box<dyn Work>]) -> Result<(), String> {
    exec(conn, "BEGIN IMMEDIATE").map_err(|e| format!("cannot begin a write transaction: {e}"))?;
    if let [only] = batch {
        // One job: its transaction is the batch's; no savepoint needed.
        if only.run(conn) {
            return commit(conn);
        }
        exec(conn, "ROLLBACK").map_err(|e| format!("rollback failed: {e}"))?;
        return Ok(());
    }
    for job in batch.iter_mut() {
        exec(conn, "SAVEPOINT job").map_err(|e| format!("savepoint failed: {e}"))?;
        let ok = job.run(conn);
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (an I/O error, a full disk):
            // nothing of this batch was kept, and the next job must not run outside
            // a transaction.
            return Err("the transaction was rolled back by SQLite".into());
        }
        if !ok {
            exec(conn, "ROLLBACK TO job")
                .map_err(|e| format!("rollback to savepoint failed: {e}"))?;
        }
        exec(conn, "RELEASE job").map_err(|e| format!("savepoint release failed: {e}"))?;
    }
    commit(conn)
}

fn commit(conn: &Connection) -> Result<(), String> {
    exec(conn, "COMMIT").map_err(|e| format!("commit failed: {e}"))
}

/// Runs a parameterless statement through the statement cache (transaction control
/// runs several times per batch; parsing it each time would cost more than running it).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}
