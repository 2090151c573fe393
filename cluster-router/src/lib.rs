//! cluster-router: decides where a Redis command goes. Command plus slot map in, routing
//! plan out.
//!
//! # Job
//! - [`commands`]: the Redis 7.0 command table (generated from `COMMAND INFO` by
//!   `cargo xtask codegen`, plus a hand-kept policy overlay: class, proxy handling, cluster
//!   routing), case-insensitive lookup with subcommands and arity checks, and key finding
//!   that matches Redis's own (`COMMAND GETKEYS`).
//! - [`slot`]: CRC16 hash slots with hash tags.
//! - [`topology`]: the immutable [`SlotMap`], built from `CLUSTER SLOTS`/`CLUSTER SHARDS`.
//! - [`redirect`]: parsing `MOVED`/`ASK` errors and classifying cluster replies (`TRYAGAIN`).
//! - [`plan`]: [`route`] turns a command and a slot map into a [`RoutePlan`] (one slot, any
//!   node, a per-slot split, all masters, all nodes, or a SCAN walk) or a `CROSSSLOT` error;
//!   and how a split goes on the wire: its sub-commands encoded one run per node
//!   ([`plan::encode_parts`], [`plan::parts_by_node`]).
//! - [`merge`]: combining the replies of a split or fan-out into one reply; MGET's on raw
//!   bytes, without trees ([`merge::merge_ordered_raw`]).
//! - [`scan_cursor`]: the proxy's cluster-wide SCAN cursors (master index and master cursor, below 2^53).
//!
//! ```
//! use cluster_router::{lookup, route, RoutePlan, NodeAddr, SlotMap};
//! use cluster_router::topology::ShardInfo;
//!
//! let map = SlotMap::from_shards(vec![ShardInfo::new(
//!     vec![(0, 16383)],
//!     NodeAddr::new("127.0.0.1", 7000),
//!     vec![],
//! )])
//! .unwrap();
//! let args: &[&[u8]] = &[b"get", b"foo"];
//! let spec = lookup(&args).unwrap();
//! assert_eq!(route(spec, &args, &map).unwrap(), RoutePlan::Slot(12182));
//! ```
//!
//! # Architecture invariants
//! - **Pure.** No I/O, no tokio, no sockets, no clocks, no global state: every function is a
//!   deterministic function of its arguments, so the proxy can call it on the hot path and
//!   tests need no servers (except the ones that check the table against a live Redis).
//! - **Requests are seen only through [`Args`]**, so the crate does not care how the proxy
//!   stores a parsed request.
//! - **The hot path does not allocate**: [`commands::lookup`], [`commands::key_indices`] and
//!   [`slot::key_slot`] work on borrowed bytes and stack buffers; only errors allocate.
//! - **No panics on client data**: malformed requests produce errors or "no keys", never a
//!   panic.

mod args;
pub mod commands;
pub mod merge;
pub mod plan;
pub mod redirect;
pub mod scan_cursor;
pub mod slot;
pub mod topology;
mod walk;

pub use args::Args;
pub use commands::{key_indices, lookup, CommandError, CommandSpec};
pub use plan::{route, RouteError, RoutePlan};
pub use redirect::{classify_reply, parse_redirect, ClusterReplyKind, Redirect};
pub use slot::key_slot;
pub use topology::{NodeAddr, SlotMap};
