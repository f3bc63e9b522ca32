//! The refresh-token parser and the cookie reader: any input, no panic; whatever
//! parses hashes to 64 lowercase hex characters.
#![no_main]

use axum::http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use rotor::{domain::token::RawToken, testing::parsers::refresh_cookie};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(token) = RawToken::parse(text) {
            let h = token.hash();
            assert_eq!(h.len(), 64);
            assert!(h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            assert_eq!(format!("{token:?}"), "RawToken(<redacted>)");
        }
    }
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, value);
        if let Some(v) = refresh_cookie(&headers) {
            let _ = RawToken::parse(&v);
        }
    }
});
