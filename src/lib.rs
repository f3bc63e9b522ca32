//! rotor: a session and refresh-token service.
//!
//! Most deployments run the `rotor` binary (see the README). This library is what
//! the binary is built from, and what an application embeds when it wants rotor's
//! API inside its own axum server: build a [`Settings`](config::Settings), open a
//! store with [`storage::connect`], make a [`Rotor`], and merge
//! [`http::routes`] into the application's router (`examples/embedded.rs`).
//!
//! Read in this order:
//! - [`domain`]: the pure rules (token generation and hashing, successor derivation,
//!   rotation verdicts, access-token claims, the e-mail identity key). No I/O.
//! - [`storage`]: the repository traits and one implementation per database
//!   ([`storage::sqlite`], [`storage::postgres`]), with embedded migrations.
//! - [`service`]: the use cases (log in, rotate, log out, sessions, users, cleanup)
//!   on top of the two, in [`Rotor`].
//! - [`http`]: the axum routers, the extractors an application can use on its own
//!   routes ([`http::Auth`], [`http::Admin`]) and rotor's hardened server.
//! - [`config`], [`jwt`], [`clock`]: settings, access tokens, time.
//! - [`cli`]: what the `rotor` binary runs, and the background jobs an embedding
//!   application starts too.
//!
//! With the `testing` feature, `testing` adds factories and fault-injection hooks
//! for tests; rotor's own test suite turns it on.
#![deny(missing_docs)]
#![cfg_attr(feature = "testing", deny(unreachable_pub))]

pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
mod error;
pub mod http;
pub mod jwt;
mod logging;
mod metrics;
mod password;
mod ratelimit;
pub mod service;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhooks;

pub use error::{Error, FieldError, Result};
pub use password::PasswordError;
pub use service::Rotor;
