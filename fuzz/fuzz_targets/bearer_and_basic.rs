//! `Authorization` header parsing: Bearer for the API, Basic for OAuth clients.
#![no_main]

use axum::http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use rotor::testing::parsers::{basic_credentials, bearer};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value);
    if let Some(token) = bearer(&headers) {
        assert!(!token.is_empty());
    }
    let _ = basic_credentials(&headers);
});
