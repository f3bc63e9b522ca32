//! rotor: a session and refresh-token service.
//!
//! Read in this order:
//! - [`domain`]: the pure rules (token generation and hashing, successor derivation,
//!   rotation verdicts, access-token claims). No I/O.
//! - [`storage`]: repository traits and one implementation per database
//!   ([`storage::sqlite`], [`storage::postgres`]), with embedded migrations.
//! - [`service`]: the use cases (log in, rotate, log out, sessions, users, cleanup)
//!   on top of the two, in [`service::Rotor`].
//! - [`http`]: the axum routers and the one mapping from [`Error`] to responses.
//! - [`config`], [`jwt`], [`password`], [`ratelimit`], [`metrics`], [`clock`]:
//!   supporting pieces; [`cli`] is what the `rotor` binary runs.
//! - [`testing`]: factories for tests (`UserFactory`, `RefreshTokenFactory`).

pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod jwt;
pub mod metrics;
pub mod password;
pub mod ratelimit;
pub mod service;
pub mod storage;
pub mod testing;
pub mod webhooks;

pub use error::{Error, Result};
pub use service::Rotor;
