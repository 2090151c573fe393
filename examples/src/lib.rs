//! Examples of embedding the rkproxy crates; each file in `examples/` runs with
//! `cargo run -p rkproxy-examples --example NAME`:
//!
//! - `embed_proxy`: the whole proxy inside a small service (`rkproxy::Proxy::builder`), with a Redis client
//!   talking through it; it needs a Redis server (`-- HOST:PORT`, default 127.0.0.1:6379).
//! - `frame_pipeline`: framing pipelined requests and replies with `resp-codec`.
//! - `route_command`: planning where commands go in a Redis Cluster with `cluster-router`.
//!
//! The library itself holds [`kafka_commands`]: rkproxy's Kafka commands (KPUSH, KPOP, KPARTITIONS,
//! KOFFSET) as a trait over redis-rs connections, with typed results.

pub mod kafka_commands;
