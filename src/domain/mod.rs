//! The pure rules of rotor: no I/O, no database, no clock reads. Everything here takes
//! its inputs as arguments so it can be tested (and fuzzed) in isolation.

pub mod claims;
pub mod email;
pub mod rotation;
pub mod token;
