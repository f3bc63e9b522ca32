//! Access-token verification on arbitrary input: rejected or accepted, never a panic;
//! nothing but a token this key signed is accepted.
#![no_main]

use std::sync::OnceLock;

use chrono::{Duration, Utc};
use libfuzzer_sys::fuzz_target;
use rotor::{
    config::JwtAlgorithm,
    jwt::{AccessTokens, TokenOptions},
};

fn tokens() -> &'static AccessTokens {
    static T: OnceLock<AccessTokens> = OnceLock::new();
    T.get_or_init(|| {
        AccessTokens::new(TokenOptions {
            algorithm: JwtAlgorithm::HS256,
            secret: b"fuzzing-secret-key-0123456789abcdef",
            key_encryption_key: None,
            lifetime: Duration::minutes(15),
            issuer: Some("https://rotor.test".into()),
            audience: Some("api".into()),
            require_issuer: true,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(claims) = tokens().verify(text, Utc::now()) {
        // Only possible for a correctly signed token, which random input is not.
        assert_eq!(claims.token_type, "access");
    }
});
