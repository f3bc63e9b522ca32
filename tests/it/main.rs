//! One integration-test binary: every module runs against the real storage backends
//! (SQLite and PostgreSQL), most through the real HTTP server on a random port.

mod support;

mod api;
mod storage;
