//! Password hashing with Argon2id on a dedicated pool of threads, never on the async
//! executor.
//!
//! `ARGON2_MAX_CONCURRENCY` threads each own one Argon2 memory buffer, allocated once
//! and reused for every hash: a burst of logins queues here instead of starving token
//! rotation, and does not make the allocator hold on to a fresh 19 MiB per hash (with
//! tokio's blocking pool and glibc's per-thread arenas that grew the process to
//! hundreds of MiB).

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Condvar, Mutex,
    },
    thread,
};

use argon2::{
    password_hash::{Output, PasswordHash, SaltString},
    Algorithm, Argon2, Block, Params, Version,
};
use tokio::sync::oneshot;

/// OWASP's Argon2id baseline: 19 MiB, 2 passes, 1 lane.
pub(crate) const MEMORY_KIB: u32 = 19 * 1024;
pub(crate) const ITERATIONS: u32 = 2;
pub(crate) const PARALLELISM: u32 = 1;
/// Largest memory cost accepted from a stored hash (the original used 64 MiB).
const MAX_VERIFY_KIB: u32 = 256 * 1024;

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Argon2 refused its input or parameters.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The worker threads are gone (the process is shutting down).
    #[error("the password hashing pool has stopped")]
    Stopped,
}

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verified {
    pub ok: bool,
    /// The stored hash uses other parameters than rotor's current ones; rehash it.
    pub needs_rehash: bool,
}

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The two kinds of Argon2 work, queued apart so a flood of one cannot starve the
/// other: verifications (login, change-password's check) and hashes of new passwords
/// (registration, account creation, password changes, rehashes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Verify,
    Hash,
}

/// Queued jobs of both kinds. A free worker takes the kind it did not take last time
/// when both are waiting (round robin), else whatever is waiting: with both queues
/// full the kinds alternate, so a job that arrives behind a flood of the other kind
/// waits for at most the jobs already running plus one more.
struct Queues {
    verify: VecDeque<Job>,
    hash: VecDeque<Job>,
    last: Kind,
    closed: bool,
}

impl Queues {
    fn next(&mut self) -> Option<Job> {
        let (first, second) = match self.last {
            Kind::Verify => (Kind::Hash, Kind::Verify),
            Kind::Hash => (Kind::Verify, Kind::Hash),
        };
        for kind in [first, second] {
            let queue = match kind {
                Kind::Verify => &mut self.verify,
                Kind::Hash => &mut self.hash,
            };
            if let Some(job) = queue.pop_front() {
                self.last = kind;
                return Some(job);
            }
        }
        None
    }
}

struct Shared {
    queues: Mutex<Queues>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next job for a worker; `None` once closed and drained.
    fn take(&self) -> Option<Job> {
        let mut q = self.lock();
        loop {
            if let Some(job) = q.next() {
                return Some(job);
            }
            if q.closed {
                return None;
            }
            q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Held by every clone of the hasher; the last one dropped stops the workers.
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_all();
    }
}

/// Hashes and verifies passwords on its own threads. Cheap to clone.
#[derive(Clone)]
pub(crate) struct PasswordHasher {
    handle: Arc<Handle>,
    workers: usize,
    /// Jobs submitted and not yet finished.
    pending: Arc<AtomicUsize>,
    /// A hash of a random password with the current parameters: verifying against it
    /// costs what verifying a real user's hash costs, so an unknown email takes as
    /// long as a wrong password.
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("workers", &self.workers)
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn current_params() -> Params {
    Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .expect("BUG: constant Argon2 parameters are valid")
}

/// Makes `buf` exactly `blocks` long, reusing its allocation when it is big enough.
fn memory(buf: &mut Vec<Block>, blocks: usize) -> &mut [Block] {
    if buf.len() < blocks {
        buf.resize(blocks, Block::default());
    }
    &mut buf[..blocks]
}

fn hash_with(buf: &mut Vec<Block>, password: &str) -> Result<String, PasswordError> {
    let err = |e: &dyn std::fmt::Display| PasswordError::Hash(e.to_string());
    let params = current_params();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt.decode_b64(&mut salt_bytes).map_err(|e| err(&e))?;
    let mut out = [0u8; 32];
    argon
        .hash_password_into_with_memory(
            password.as_bytes(),
            raw_salt,
            &mut out,
            memory(buf, params.block_count()),
        )
        .map_err(|e| err(&e))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: (&params)
            .try_into()
            .map_err(|e: argon2::password_hash::Error| err(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| err(&e))?),
    };
    Ok(phc.to_string())
}

/// The algorithm and cost parameters of a PHC string (`argon2id v=19 m=65536,t=3,p=4`),
/// for the audit log when a hash is upgraded; never the salt or the hash.
pub(crate) fn parameters(phc: &str) -> Option<String> {
    let parsed = PasswordHash::new(phc).ok()?;
    let params = Params::try_from(&parsed).ok()?;
    Some(format!(
        "{} v={} m={},t={},p={}",
        parsed.algorithm,
        parsed.version.unwrap_or(0x13),
        params.m_cost(),
        params.t_cost(),
        params.p_cost()
    ))
}

/// Verifies against a PHC string of any Argon2 variant and parameters (the original
/// used m=65536,t=3,p=4); a malformed stored hash verifies as false.
fn verify_with(buf: &mut Vec<Block>, password: &str, phc: &str) -> Verified {
    let no = Verified {
        ok: false,
        needs_rehash: false,
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return no;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return no;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return no,
    };
    let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else {
        return no;
    };
    if params.m_cost() > MAX_VERIFY_KIB {
        return no;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(raw_salt) = salt.decode_b64(&mut salt_bytes) else {
        return no;
    };
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return no;
    };
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version, params.clone());
    let ok = argon
        .hash_password_into_with_memory(password.as_bytes(), raw_salt, out, memory(buf, blocks))
        .is_ok()
        && crate::domain::token::constant_time_eq(out, expected.as_bytes());
    if blocks > current_params().block_count() {
        // Do not keep a larger buffer than rotor's own parameters need.
        buf.truncate(current_params().block_count());
        buf.shrink_to_fit();
    }
    let current = algorithm == Algorithm::Argon2id
        && version == Version::V0x13
        && params.m_cost() == MEMORY_KIB
        && params.t_cost() == ITERATIONS
        && params.p_cost() == PARALLELISM;
    Verified {
        ok,
        needs_rehash: ok && !current,
    }
}

impl PasswordHasher {
    /// Starts `workers` hashing threads and computes the dummy hash; call once at start.
    pub(crate) fn new(workers: usize) -> Result<Self, PasswordError> {
        let workers = workers.max(1);
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues {
                verify: VecDeque::new(),
                hash: VecDeque::new(),
                last: Kind::Hash,
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let handle = Arc::new(Handle(shared.clone()));
        for i in 0..workers {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("rotor-argon2-{i}"))
                .spawn(move || {
                    let mut buf: Vec<Block> = Vec::new();
                    // The lock is held only while picking the next job.
                    while let Some(job) = shared.take() {
                        job(&mut buf);
                    }
                })
                .map_err(|e| PasswordError::Hash(format!("cannot start a hashing thread: {e}")))?;
        }
        let mut buf = Vec::new();
        let random = crate::domain::token::RawToken::generate();
        let dummy_hash = hash_with(&mut buf, random.as_str())?;
        Ok(Self {
            handle,
            workers,
            pending: Arc::new(AtomicUsize::new(0)),
            dummy_hash: dummy_hash.into(),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        kind: Kind,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (tx, rx) = oneshot::channel();
        let pending = self.pending.clone();
        pending.fetch_add(1, Ordering::Relaxed);
        let job: Job = Box::new(move |buf| {
            let _ = tx.send(f(buf));
            pending.fetch_sub(1, Ordering::Relaxed);
        });
        {
            let shared = &self.handle.0;
            let mut q = shared.lock();
            if q.closed {
                drop(q);
                self.pending.fetch_sub(1, Ordering::Relaxed);
                return Err(PasswordError::Stopped);
            }
            match kind {
                Kind::Verify => q.verify.push_back(job),
                Kind::Hash => q.hash.push_back(job),
            }
            drop(q);
            shared.ready.notify_one();
        }
        rx.await.map_err(|_| PasswordError::Stopped)
    }

    /// Hashes a new password with rotor's current parameters.
    pub(crate) async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = password.to_owned();
        self.run(Kind::Hash, move |buf| hash_with(buf, &password))
            .await?
    }

    /// Verifies `password` against `stored`; with `None` (no such user) it verifies
    /// against the dummy hash and reports failure, taking the same time.
    pub(crate) async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<Verified, PasswordError> {
        let password = password.to_owned();
        let (phc, real) = match stored {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy_hash.to_string(), false),
        };
        let v = self
            .run(Kind::Verify, move |buf| verify_with(buf, &password, &phc))
            .await?;
        Ok(if real {
            v
        } else {
            Verified {
                ok: false,
                needs_rehash: false,
            }
        })
    }

    /// Hashing threads.
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Hashes queued or running.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use argon2::PasswordHasher as _;

    use super::*;

    #[tokio::test]
    async fn hashes_with_owasp_parameters_and_verifies() {
        let h = PasswordHasher::new(2).unwrap();
        let phc = h.hash("TestPass123").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let v = h.verify("TestPass123", Some(&phc)).await.unwrap();
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: false
            }
        );
        assert!(!h.verify("wrong", Some(&phc)).await.unwrap().ok);
    }

    #[tokio::test]
    async fn verifies_the_originals_parameters_and_asks_for_a_rehash() {
        // A hash as the original backend made them: m=64 MiB, t=3, p=4.
        let params = Params::new(65536, 3, 4, None).unwrap();
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let phc = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"OldPass123", &salt)
            .unwrap()
            .to_string();
        let h = PasswordHasher::new(1).unwrap();
        let v = h.verify("OldPass123", Some(&phc)).await.unwrap();
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: true
            }
        );
        let wrong = h.verify("Nope", Some(&phc)).await.unwrap();
        assert_eq!(
            wrong,
            Verified {
                ok: false,
                needs_rehash: false
            }
        );
    }

    /// Submits `n` jobs of one kind, waits until they are queued behind a running
    /// one, then one job of the other kind; returns how many of the flood had finished
    /// when that job finished.
    async fn finished_before_the_other_kind(flood: Kind, n: usize) -> usize {
        let h = PasswordHasher::new(1).unwrap();
        let phc: Arc<str> = h.hash("Flood123").await.unwrap().into();
        let done = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (h, phc, done) = (h.clone(), phc.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                match flood {
                    Kind::Hash => drop(h.hash("Flood123").await.unwrap()),
                    Kind::Verify => drop(h.verify("Flood123", Some(&phc)).await.unwrap()),
                }
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
        while h.pending() < n {
            tokio::task::yield_now().await;
        }
        match flood {
            Kind::Hash => assert!(h.verify("Flood123", Some(&phc)).await.unwrap().ok),
            Kind::Verify => drop(h.hash("Other123").await.unwrap()),
        }
        let finished = done.load(Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
        finished
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_hashes_cannot_starve_a_verification() {
        // One worker, 12 registrations queued: the login runs after at most the one
        // running and one more.
        let finished = finished_before_the_other_kind(Kind::Hash, 12).await;
        assert!(
            finished <= 2,
            "the verification waited for {finished} hashes"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_verifications_cannot_starve_a_hash() {
        let finished = finished_before_the_other_kind(Kind::Verify, 12).await;
        assert!(
            finished <= 2,
            "the hash waited for {finished} verifications"
        );
    }

    #[tokio::test]
    async fn unknown_user_and_garbage_hashes_never_verify() {
        let h = PasswordHasher::new(1).unwrap();
        assert!(!h.verify("anything", None).await.unwrap().ok);
        assert!(
            !h.verify("anything", Some("not a phc string"))
                .await
                .unwrap()
                .ok
        );
    }
}
