//! Password hashing with Argon2id, off the async executor and with bounded concurrency.
//!
//! Hashing runs on tokio's blocking pool behind a semaphore, so at most
//! `ARGON2_MAX_CONCURRENCY` hashes are computed at once and request-handling threads
//! never block: a burst of logins queues here instead of starving token rotation.

use std::sync::Arc;

use argon2::{
    password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString},
    Algorithm, Argon2, Params, Version,
};
use tokio::sync::Semaphore;

/// OWASP's Argon2id baseline: 19 MiB, 2 passes, 1 lane.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    /// The stored hash uses other parameters than rotor's current ones; rehash it.
    pub needs_rehash: bool,
}

/// Hashes and verifies passwords on the blocking pool.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A hash of a random password with the current parameters: verifying against it
    /// costs what verifying a real user's hash costs, so an unknown email takes as
    /// long as a wrong password.
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("available_permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .expect("BUG: constant Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Verifies against a PHC string of any Argon2 parameters (the original used
/// m=65536,t=3,p=4); a malformed stored hash verifies as false.
fn verify_blocking(password: &str, phc: &str) -> Verified {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Verified {
            ok: false,
            needs_rehash: false,
        };
    };
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    let current = parsed.algorithm.as_str() == "argon2id"
        && parsed.version == Some(0x13)
        && Params::try_from(&parsed).is_ok_and(|p| {
            p.m_cost() == MEMORY_KIB && p.t_cost() == ITERATIONS && p.p_cost() == PARALLELISM
        });
    Verified {
        ok,
        needs_rehash: ok && !current,
    }
}

impl PasswordHasher {
    /// `max_concurrency` hashes at once. Computes the dummy hash, so call once at start.
    pub fn new(max_concurrency: usize) -> Result<Self, PasswordError> {
        let random = crate::domain::token::RawToken::generate();
        let dummy_hash = hash_blocking(random.as_str())?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(max_concurrency.max(1))),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// Hashes a new password with rotor's current parameters.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let _permit = self.permits.acquire().await.expect("BUG: semaphore closed");
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_blocking(&password)).await?
    }

    /// Verifies `password` against `stored`; with `None` (no such user) it verifies
    /// against the dummy hash and reports failure, taking the same time.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<Verified, PasswordError> {
        let _permit = self.permits.acquire().await.expect("BUG: semaphore closed");
        let password = password.to_owned();
        let (phc, real) = match stored {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy_hash.to_string(), false),
        };
        let v = tokio::task::spawn_blocking(move || verify_blocking(&password, &phc)).await?;
        Ok(if real {
            v
        } else {
            Verified {
                ok: false,
                needs_rehash: false,
            }
        })
    }

    /// Hashes currently waiting for or holding a permit is `max - available`.
    pub fn available_permits(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
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
