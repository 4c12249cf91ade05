//! Hardening tests (issue 6): bad input, connection floods, descriptor and
//! thread exhaustion, slow readers and configuration errors, each against the
//! real server on 127.0.0.1:0 over real TCP. docs/hardening.md records what
//! each attack does to the server and how it was measured.
//!
//! Sizes here are scaled for CI (seconds per test on 2 cores); the full-size
//! runs are `#[ignore]`d and run by `make hardening-full`.

#[path = "../common/mod.rs"]
mod common;

mod client;
mod config_errors;
mod exhaustion;
mod flood;
mod input;
mod slow_reader;
mod support;
