//! One integration-test binary: every module runs against the real storage backends
//! (SQLite and PostgreSQL), most through the real HTTP server on a random port.

mod process;
mod support;

/// Adopting the original backend's PostgreSQL database in place; rollback.
mod adoption;
/// The original `/v1` API, route by route (docs/behaviour.md), and the fixes of the
/// original's defects.
mod api;
/// Each use case commits all of its writes or none (failures injected between them).
mod atomicity;
/// `rotor backup` during a refresh storm; restoring by starting on the copy.
mod backup;
/// The security review's findings, attacked as the reviewer did.
mod hardening;
/// Email identity: look-alike addresses, the admin address, the key migration.
mod identity;
/// `rotor import --from URL`: original and rotor sources, both targets, re-runs.
mod import;
/// Signing keys: EdDSA/ES256 key ring, JWKS, rotation.
mod keys;
/// Property test of the rotation rules against a model.
mod model;
/// OAuth 2.0 endpoints and a stock client library.
mod oauth;
/// No `/oauth/*` failure answers in FastAPI's shape.
mod oauth_errors;
/// Operations: CLI, cleanup at scale, metrics, limits, proxies, shutdown.
mod ops;
/// A fixture builder for the original backend's database, and its statements.
mod original;
/// PostgreSQL connections kept between hot statements: closed by the server, or
/// abandoned mid-statement.
mod pg_connections;
/// Several server processes on one PostgreSQL; SIGKILL at random points.
mod resilience;
/// The OpenAPI document checked by Schemathesis against the live server.
mod schema;
/// Forged tokens, brute force, oversized and slow requests, login floods.
mod security;
/// Device sessions, the grace window, absolute lifetime, the security log.
mod sessions;
/// Slow request bodies and connection caps, against the real binary.
mod slow_clients;
/// The storage conformance suite.
mod storage;
/// Signed webhooks from the transactional outbox, checked by a stock verifier.
mod webhooks;
