//! Client-IP resolution from `X-Forwarded-For` / `Forwarded` behind a trusted proxy:
//! any header gives an address, never a panic, and an untrusted peer is never
//! overridden.
#![no_main]

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use rotor::{config::Cidr, testing::parsers::client_ip};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
    for name in ["x-forwarded-for", "forwarded"] {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.clone());
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(client_ip(Some(proxy), &headers, &trusted).is_some());
        let direct: IpAddr = "203.0.113.5".parse().unwrap();
        assert_eq!(client_ip(Some(direct), &headers, &trusted), Some(direct));
    }
});
