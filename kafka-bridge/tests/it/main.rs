//! Integration tests of kafka-bridge against a real Apache Kafka 4.x broker (and Redis for the Redis store).
//!
//! One test binary (style.md §4.10). The broker address comes from `RKPROXY_TEST_KAFKA`, the Redis address
//! from `RKPROXY_TEST_REDIS`; `cargo xtask test` sets both. Without them the tests fail and say how to start
//! the servers; they never pass by skipping.

// clippy.toml allows unwrap inside `#[test]` functions only; the shared helpers here are test code too, and a
// failed unwrap in them is a failed test, which is what we want.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

mod commands;
mod managed;
mod prefetch;
mod support;
