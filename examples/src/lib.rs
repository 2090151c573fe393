//! Examples of embedding the rkproxy crates; each file in `examples/` runs with
//! `cargo run -p rkproxy-examples --example NAME`:
//!
//! - `frame_pipeline`: framing pipelined requests and replies with `resp-codec`.
//! - `route_command`: planning where commands go in a Redis Cluster with `cluster-router`.
