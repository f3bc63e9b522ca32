//! Password hashing with Argon2id on a dedicated pool of threads, never on the async
//! executor.
//!
//! `ARGON2_MAX_CONCURRENCY` threads each own one Argon2 memory buffer, allocated once
//! and reused for every hash: a burst of logins queues here instead of starving token
//! rotation, and does not make the allocator hold on to a fresh 19 MiB per hash (with
//! tokio's blocking pool and glibc's per-thread arenas that grew the process to
//! hundreds of MiB).

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc, Mutex,
    },
    thread,
};

use argon2::{
    password_hash::{Output, PasswordHash, SaltString},
    Algorithm, Argon2, Block, Params, Version,
};
use tokio::sync::oneshot;

/// OWASP's Argon2id baseline: 19 MiB, 2 passes, 1 lane.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;
/// Largest memory cost accepted from a stored hash (the original used 64 MiB).
const MAX_VERIFY_KIB: u32 = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the password hashing pool has stopped")]
    Stopped,
}

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    /// The stored hash uses other parameters than rotor's current ones; rehash it.
    pub needs_rehash: bool,
}

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Hashes and verifies passwords on its own threads. Cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: mpsc::Sender<Job>,
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
pub fn parameters(phc: &str) -> Option<String> {
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
    pub fn new(workers: usize) -> Result<Self, PasswordError> {
        let workers = workers.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..workers {
            let queue = queue.clone();
            thread::Builder::new()
                .name(format!("rotor-argon2-{i}"))
                .spawn(move || {
                    let mut buf: Vec<Block> = Vec::new();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match queue.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                            Ok(job) => job,
                            Err(_) => return, // every sender dropped
                        };
                        job(&mut buf);
                    }
                })
                .map_err(|e| PasswordError::Hash(format!("cannot start a hashing thread: {e}")))?;
        }
        let mut buf = Vec::new();
        let random = crate::domain::token::RawToken::generate();
        let dummy_hash = hash_with(&mut buf, random.as_str())?;
        Ok(Self {
            jobs,
            workers,
            pending: Arc::new(AtomicUsize::new(0)),
            dummy_hash: dummy_hash.into(),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (tx, rx) = oneshot::channel();
        let pending = self.pending.clone();
        pending.fetch_add(1, Ordering::Relaxed);
        let job: Job = Box::new(move |buf| {
            let _ = tx.send(f(buf));
            pending.fetch_sub(1, Ordering::Relaxed);
        });
        if self.jobs.send(job).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            return Err(PasswordError::Stopped);
        }
        rx.await.map_err(|_| PasswordError::Stopped)
    }

    /// Hashes a new password with rotor's current parameters.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = password.to_owned();
        self.run(move |buf| hash_with(buf, &password)).await?
    }

    /// Verifies `password` against `stored`; with `None` (no such user) it verifies
    /// against the dummy hash and reports failure, taking the same time.
    pub async fn verify(
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
            .run(move |buf| verify_with(buf, &password, &phc))
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
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Hashes queued or running.
    pub fn pending(&self) -> usize {
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
