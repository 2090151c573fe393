//! kafka-bridge: rkproxy's Kafka commands (`KPUSH`, `KPOP`, `KPARTITIONS`, `KOFFSET`) turned into Kafka requests.
//!
//! The proxy hands each Kafka command of a tenant to [`KafkaBridge::execute`] and writes the returned
//! [`KafkaReply`] (in the client's protocol via [`KafkaReply::resp_bytes`]) back to the client; a proxy passes
//! each connection's [`ConnectionDeliveries`] too ([`KafkaBridge::execute_for`]), for at-least-once topics. The admin
//! commands on cursors, `RKPROXY KOFFSETS` and `RKPROXY KRESET`, are parsed here too ([`CursorAdminKind`]) and
//! run by [`KafkaBridge::run_cursor_admin`]. RESP framing and encoding (replies, and the Redis offset store's
//! requests and replies) come from `resp-codec`.
//!
//! # The Kafka client: rskafka
//!
//! The bridge uses `rskafka` 0.6 with `default-features = false` (no compression codecs) and its `transport-tls`
//! feature (rustls with ring) for secured brokers: SASL and TLS are rskafka's own (see [`security`]).
//! The `kafka` crate (kafka-rust) named by the design card cannot talk to Kafka 4: it always sends protocol
//! version 0 or 1 (Produce v0, Fetch v0, ListOffsets v0, ...), which Kafka 4.0 removed (KIP-896), and it is
//! blocking. rskafka is async (tokio), negotiates versions with ApiVersions, runs its CI against Kafka 4.1, and
//! maps almost one to one onto our commands: `produce`, a stateless `fetch_records(offset, ...)` for every KPOP,
//! `get_offset(Earliest | Latest | Timestamp)` for KOFFSET, `list_topics` and `create_topic`. It has no
//! consumer groups, which we do not need for delivery (cursors are ours, see [`OffsetStore`]; a copy is committed
//! to Kafka for its tools by `group_commit`, with the `kafka-protocol` crate), and no CreatePartitions, which
//! the `admin` module writes by hand. Two limits: produce always uses `acks=all` (see [`Acks`]), and records
//! compressed by other producers (gzip, lz4, snappy, zstd) cannot be read because the codecs are left out.
//!
//! # Layout
//!
//! - [`command`]: pure parsing of argument slices into a [`KafkaCommand`].
//! - [`cursor_admin`]: pure parsing of `RKPROXY KOFFSETS` / `KRESET` into a [`CursorAdmin`].
//! - [`reply`]: the [`KafkaReply`] value and its RESP2/RESP3 encoding.
//! - [`config`]: [`KafkaPoolConfig`] and [`TopicConfig`].
//! - [`bridge`]: [`KafkaBridge`], permissions, managed and app-managed KPOP, KOFFSET, topic setup.
//! - `partition`: per-partition rskafka clients and the produce batcher (concurrent KPUSHes, one request).
//! - `prefetch`: the per-(group, partition) buffers of `KPOP topic` (leased offsets, fetched records).
//! - [`delivery`]: [`ConnectionDeliveries`], a connection's unacknowledged records (at least once).
//! - [`offsets`]: the [`OffsetStore`] trait (proxy-managed cursors, block leases, pending records) and
//!   [`MemoryOffsetStore`].
//! - [`redis_store`]: [`RedisOffsetStore`], cursors shared by every proxy process through one Redis.
//! - `admin`: the hand-written CreatePartitions request.
//! - [`security`]: [`KafkaSecurity`] (SASL and TLS), for rskafka and for the bridge's own connections.
//! - `group_commit`: the cursors of `KPOP topic` committed to Kafka as consumer-group offsets (kafka-protocol).
//! - [`error`]: [`KafkaError`], whose text is the RESP error line.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use kafka_bridge::{KafkaBridge, KafkaPoolConfig, MemoryOffsetStore, TopicConfig};
//!
//! # async fn demo() -> Result<(), kafka_bridge::KafkaError> {
//! let mut config = KafkaPoolConfig::new(vec!["127.0.0.1:9092".into()]);
//! config.topics.push(TopicConfig::new("orders", 3).producers(["shop"]).consumers(["billing"]));
//! let bridge = KafkaBridge::connect(config, Arc::new(MemoryOffsetStore::new())).await?;
//! let reply = bridge.execute("shop", &[b"KPUSH", b"orders", b"hello"]).await;   // [partition, offset]
//! let reply = bridge.execute("billing", &[b"KPOP", b"orders"]).await;          // [partition, offset, "hello"]
//! # Ok(()) }
//! ```

mod admin;
pub mod bridge;
pub mod command;
pub mod config;
pub mod cursor_admin;
pub mod delivery;
pub mod error;
mod group_commit;
pub mod offsets;
mod partition;
mod prefetch;
pub mod redis_store;
pub mod reply;
pub mod security;

pub use bridge::{KafkaBridge, PartitionLag};
pub use command::{is_kafka_command, parse_command, KafkaCommand, OffsetQuery, MAX_POP_COUNT};
pub use config::{Acks, Delivery, KafkaPoolConfig, TopicConfig};
pub use cursor_admin::{CursorAdmin, CursorAdminKind};
pub use delivery::ConnectionDeliveries;
pub use error::{KafkaError, OffsetStoreError};
pub use offsets::{BoxFuture, CursorKey, CursorState, Lease, MemoryOffsetStore, OffsetStore};
pub use redis_store::{RedisOffsetStore, RedisStoreConfig, StoreStream, StoreTransport};
pub use reply::KafkaReply;
pub use security::{KafkaSecurity, SaslMechanism, SaslSettings, TlsSettings};
