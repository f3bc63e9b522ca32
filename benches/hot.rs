//! Micro-benchmarks of the CPU work on rotor's hot path, without I/O:
//! refresh-token generation and hashing, successor derivation, access-token signing
//! and verification for every supported algorithm, and the rotation rules.
//!
//! `cargo bench --bench hot` (add e.g. `-- jwt/` to filter). Under `cargo test
//! --all-targets` each benchmark runs once, as a smoke test.
//!
//! The EdDSA and ES256 key rings live in the database (private keys sealed), so this
//! builds them the public way: a SQLite store in a temporary directory, then
//! `AccessTokens::ensure_signing_key`, which generates and loads a key.

use std::{hint::black_box, path::PathBuf};

use chrono::{DateTime, Duration, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rotor::{
    config::{JwtAlgorithm, Settings},
    domain::{
        rotation::{judge, successor_expiry, PresentedToken},
        token::{hash_token, RawToken, SuccessorKey},
    },
    jwt::{AccessTokens, TokenOptions},
};
use uuid::Uuid;

const SECRET: &[u8] = b"bench-secret-key-that-is-long-enough-0123456789";

fn tokens(c: &mut Criterion) {
    let mut g = c.benchmark_group("token");
    g.throughput(Throughput::Elements(1));
    g.bench_function("generate", |b| b.iter(RawToken::generate));
    let raw = RawToken::generate();
    g.bench_function("hash_token", |b| {
        b.iter(|| hash_token(black_box(raw.as_str())))
    });
    let key = SuccessorKey::from_secret(SECRET);
    g.bench_function("successor", |b| b.iter(|| key.successor(black_box(&raw))));
    // Everything a refresh computes before it touches the database: parse the
    // presented token, hash it, derive the successor and hash that.
    g.bench_function("refresh_prelude", |b| {
        b.iter(|| {
            let presented = RawToken::parse(black_box(raw.as_str())).expect("a token");
            let h = presented.hash();
            let next = key.successor(&presented);
            (h, next.hash())
        })
    });
    g.finish();
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("rotor-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An `AccessTokens` ready to sign with `alg`. Asymmetric rings are generated in a
/// SQLite store in `dir` (the only public way to obtain a signing key).
fn access_tokens(alg: JwtAlgorithm, dir: &TempDir, now: DateTime<Utc>) -> AccessTokens {
    let tokens = AccessTokens::new(TokenOptions {
        algorithm: alg,
        secret: SECRET,
        key_encryption_key: None,
        lifetime: Duration::minutes(15),
        issuer: None,
        require_issuer: false,
        audience: None,
    });
    if !alg.is_symmetric() {
        let mut settings = Settings::for_tests(&dir.0.join(alg.as_str()));
        settings.jwt_algorithm = alg;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async {
            let store = rotor::storage::connect(&settings)
                .await
                .expect("open the SQLite store");
            tokens
                .ensure_signing_key(store.as_ref(), now)
                .await
                .expect("generate a signing key");
            store.close().await;
        });
    }
    tokens
}

fn jwt(c: &mut Criterion) {
    let dir = TempDir::new();
    let now = Utc::now();
    let user = Uuid::now_v7();
    let sid = Uuid::now_v7();
    let mut g = c.benchmark_group("jwt");
    g.throughput(Throughput::Elements(1));
    for alg in [
        JwtAlgorithm::HS256,
        JwtAlgorithm::HS384,
        JwtAlgorithm::HS512,
        JwtAlgorithm::EdDSA,
        JwtAlgorithm::ES256,
    ] {
        let t = access_tokens(alg, &dir, now);
        g.bench_with_input(BenchmarkId::new("sign", alg.as_str()), &t, |b, t| {
            b.iter(|| t.issue(black_box(user), 0, Some(sid), now).expect("sign"))
        });
        let jwt = t.issue(user, 0, Some(sid), now).expect("sign");
        t.verify(&jwt, now).expect("the token just signed verifies");
        g.bench_with_input(BenchmarkId::new("verify", alg.as_str()), &jwt, |b, jwt| {
            b.iter(|| t.verify(black_box(jwt), now).expect("verify"))
        });
    }
    g.finish();
}

fn rotation(c: &mut Criterion) {
    let now = DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp");
    let grace = Duration::seconds(10);
    let week = Duration::days(7);
    let cases = [
        ("unknown", None),
        (
            "live_not_usable",
            Some(PresentedToken {
                is_revoked: false,
                revoked_at: None,
                expires_at: now + week,
            }),
        ),
        (
            "grace_candidate",
            Some(PresentedToken {
                is_revoked: true,
                revoked_at: Some(now - Duration::seconds(3)),
                expires_at: now + week,
            }),
        ),
        (
            "replay",
            Some(PresentedToken {
                is_revoked: true,
                revoked_at: Some(now - Duration::minutes(5)),
                expires_at: now + week,
            }),
        ),
    ];
    let mut g = c.benchmark_group("rotation");
    g.throughput(Throughput::Elements(1));
    for (name, token) in cases {
        g.bench_with_input(BenchmarkId::new("judge", name), &token, |b, token| {
            b.iter(|| judge(black_box(token.as_ref()), black_box(now), grace))
        });
    }
    let end = Some(now + Duration::days(30));
    g.bench_function("successor_expiry", |b| {
        b.iter(|| successor_expiry(black_box(now), week, black_box(end)))
    });
    g.finish();
}

criterion_group!(benches, tokens, jwt, rotation);
criterion_main!(benches);
