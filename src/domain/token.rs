//! Refresh-token primitives: generation, hashing and successor derivation.
//!
//! A raw refresh token is 32 bytes from the OS CSPRNG, base64url without padding
//! (43 characters). Only its SHA-256 (lowercase hex) is ever stored or logged.
//!
//! A rotated token's successor is not random: it is `HMAC-SHA256(server key, parent)`.
//! That lets rotor hand the *same* successor to a client that retries within the grace
//! window without ever storing a raw token: the successor can be recomputed from the
//! parent the client presents, but not read from the database.

use std::fmt;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ring::{digest, hmac, rand::SecureRandom};

/// Bytes of entropy in a freshly generated token.
pub const RAW_TOKEN_BYTES: usize = 32;
/// Longest raw token accepted from a client. Tokens issued by rotor (and by the original
/// backend) are 43 characters; anything much longer is not a token.
pub const MAX_PRESENTED_LEN: usize = 256;

/// A raw refresh token. Its `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq)]
pub struct RawToken(String);

impl RawToken {
    /// 32 fresh bytes from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; RAW_TOKEN_BYTES];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .expect("BUG: the operating system's random number generator failed");
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts what a client presents if it has the shape of a token: 1 to 256
    /// characters of the base64url alphabet. Anything else cannot match a stored hash,
    /// so it is rejected without touching the database.
    pub fn parse(presented: &str) -> Option<Self> {
        let ok = !presented.is_empty()
            && presented.len() <= MAX_PRESENTED_LEN
            && presented
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(presented.to_owned()))
    }

    /// The token as sent to the client.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token as sent to the client, by value.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The value stored in `refresh_tokens.token_hash`.
    pub fn hash(&self) -> String {
        hash_token(&self.0)
    }
}

impl fmt::Debug for RawToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawToken(<redacted>)")
    }
}

/// SHA-256 of the token's text, lowercase hex (64 characters), as the original stored it.
pub fn hash_token(raw: &str) -> String {
    hex(digest::digest(&digest::SHA256, raw.as_bytes()).as_ref())
}

/// Derives successors of rotated tokens. Holds an HMAC key derived from the server
/// secret; `Debug` is redacted.
#[derive(Clone)]
pub struct SuccessorKey(hmac::Key);

impl SuccessorKey {
    /// Derives the successor key from the server secret under its own label, so it is
    /// independent of the JWT signing key even though both come from `SECRET_KEY`.
    pub fn from_secret(secret: &[u8]) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derived = hmac::sign(&root, b"rotor refresh-token successor v1");
        Self(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    /// The token that replaces `parent` when it is rotated.
    pub fn successor(&self, parent: &RawToken) -> RawToken {
        let tag = hmac::sign(&self.0, parent.0.as_bytes());
        RawToken(URL_SAFE_NO_PAD.encode(&tag.as_ref()[..RAW_TOKEN_BYTES]))
    }
}

impl fmt::Debug for SuccessorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SuccessorKey(<redacted>)")
    }
}

/// Fingerprints identifiers that must not be stored as typed (an unknown login name
/// may be a password typed into the wrong field): a truncated HMAC under a key derived
/// from the server secret, so repeated attempts correlate without revealing the input.
#[derive(Clone)]
pub struct IdentifierKey(hmac::Key);

impl IdentifierKey {
    /// The key derived from the server secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derived = hmac::sign(&root, b"rotor audit identifier v1");
        Self(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    /// 16 hex characters (64 bits) of `HMAC(key, lowercase(trimmed input))`.
    pub fn fingerprint(&self, input: &str) -> String {
        let tag = hmac::sign(&self.0, input.trim().to_lowercase().as_bytes());
        hex(&tag.as_ref()[..8])
    }
}

impl fmt::Debug for IdentifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentifierKey(<redacted>)")
    }
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = vec![0u8; bytes.len() * 2];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
    // Only the sixteen ASCII digits were written.
    String::from_utf8(out).unwrap_or_else(|_| unreachable!("BUG: hex digits are ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_fingerprints_correlate_without_revealing() {
        let k = IdentifierKey::from_secret(b"secret-secret-secret-secret-secret");
        let a = k.fingerprint("Hunter2-Password");
        assert_eq!(a.len(), 16);
        assert_eq!(a, k.fingerprint(" hunter2-password "));
        assert_ne!(a, k.fingerprint("someone@example.com"));
        let other = IdentifierKey::from_secret(b"another-secret-another-secret-xx");
        assert_ne!(a, other.fingerprint("Hunter2-Password"));
    }

    #[test]
    fn generated_tokens_are_43_base64url_chars_and_distinct() {
        let a = RawToken::generate();
        let b = RawToken::generate();
        assert_eq!(a.as_str().len(), 43);
        assert!(RawToken::parse(a.as_str()).is_some());
        assert_ne!(a, b);
    }

    #[test]
    fn hash_is_lowercase_hex_sha256() {
        // echo -n abc | sha256sum
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parse_rejects_what_cannot_be_a_token() {
        assert!(RawToken::parse("").is_none());
        assert!(RawToken::parse("has space").is_none());
        assert!(RawToken::parse("padded==").is_none());
        assert!(RawToken::parse(&"a".repeat(MAX_PRESENTED_LEN + 1)).is_none());
        assert!(RawToken::parse("abc-_XYZ09").is_some());
    }

    #[test]
    fn successor_is_deterministic_per_key_and_parent() {
        let k1 = SuccessorKey::from_secret(b"one");
        let k2 = SuccessorKey::from_secret(b"two");
        let parent = RawToken::generate();
        assert_eq!(k1.successor(&parent), k1.successor(&parent));
        assert_ne!(k1.successor(&parent), k2.successor(&parent));
        assert_ne!(k1.successor(&parent), parent);
        assert_eq!(k1.successor(&parent).as_str().len(), 43);
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t = RawToken::generate();
        assert!(!format!("{t:?}").contains(t.as_str()));
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
