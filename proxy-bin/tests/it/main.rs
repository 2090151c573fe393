//! Integration tests for the rkproxy binary and engine, against real redis-server processes started by
//! `cargo xtask test` (addresses in `RKPROXY_TEST_*`), through redis-cli and the redis-rs client library.

// A failed unwrap in a test is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

mod support;

mod backend_deadlines;
mod bad_input;
mod big_requests;
mod binary;
mod cluster;
mod deep_replies;
mod failures;
mod introspection;
mod kafka;
mod kafka_secure;
mod logs;
mod memory_bounds;
mod ops_stats;
mod pairing;
mod pairing_backend;
mod reload;
mod shutdown;
mod slowlog;
mod standalone;
mod stateful;
mod stats;
mod tenant_scripts;
mod tenants;
mod tls;
mod tls_reload;
mod tls_trust;
mod transactions;
mod unix_socket;
