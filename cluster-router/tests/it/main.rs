//! Integration tests of cluster-router against live servers (one test binary for the crate).
//!
//! They need a standalone redis-server 7.0 at `RKPROXY_TEST_REDIS` (`host:port`) and a
//! 3-master, 3-replica Redis Cluster at `RKPROXY_TEST_CLUSTER` (`host:port,...`), which
//! `cargo xtask test` starts and exports. They fail, never skip, when those are missing.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod cluster;
mod getkeys;
mod live;
