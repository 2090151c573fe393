//! `kind = "kafka"` pools: their keys (brokers, SASL, TLS, produce and fetch settings, topics, the offset store)
//! and the checks serde cannot make.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::address::redacted;
use super::pool_tls::PoolTlsConfig;

/// The tenant name Kafka permissions use when no tenants are configured.
pub const DEFAULT_KAFKA_TENANT: &str = "default";

/// A Kafka pool (`kind = "kafka"`). Its `Debug` shows no password.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaPoolConfig {
    /// Bootstrap brokers, `host:port` (no scheme).
    pub nodes: Vec<String>,
    /// SASL user; needs `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// SASL password.
    #[serde(default)]
    pub password: Option<String>,
    /// The topics served, by name (`[pools.NAME.topics.TOPIC]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topics: BTreeMap<String, KafkaTopicConfig>,
    /// How long a produce batch waits for more KPUSHes before it is sent (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linger_ms: Option<u64>,
    /// The longest wait for one Kafka or offset-store round trip (default 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
    /// The most records in one produce request (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_records: Option<usize>,
    /// The most value bytes in one produce request (default 921600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_bytes: Option<usize>,
    /// How long a fetch may wait on the broker when nothing is new (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_max_wait_ms: Option<u64>,
    /// The most bytes one `KPOP topic partition offset count` asks for (default 1048576).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_max_bytes: Option<u32>,
    /// The client id sent to Kafka (default `rkproxy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// How long to wait between attempts to connect while Kafka is unreachable (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_retry_ms: Option<u64>,
    /// Where proxy-managed KPOP offsets live. Unset: in this process's memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsets: Option<KafkaOffsetsConfig>,
    /// `prefetch_records` of the topics that do not set their own (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch_records: Option<usize>,
    /// `prefetch_bytes` of the topics that do not set their own (default 524288).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch_bytes: Option<usize>,
    /// With `username`/`password`: the SASL mechanism, `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`
    /// (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<String>,
    /// How often the cursors of `KPOP topic` are committed to Kafka as consumer-group offsets, in
    /// Milliseconds (default 1000); 0 commits none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_commit_ms: Option<u64>,
    /// The consumer group id (in Kafka) of a tenant's cursors, by tenant; default the tenant name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_ids: BTreeMap<String, String>,
    /// `tls`, `ca_file`, `cert_file`, `key_file`: TLS to the brokers (read apart by
    /// [`PoolTlsConfig::take_from`]).
    #[serde(flatten, skip_deserializing)]
    pub tls: PoolTlsConfig,
}

/// The keys only Kafka pools have (a Redis pool that sets one is refused, naming the key).
pub(super) const KAFKA_ONLY_KEYS: &[&str] = &[
    "topics",
    "linger_ms",
    "request_timeout_ms",
    "max_batch_records",
    "max_batch_bytes",
    "fetch_max_wait_ms",
    "fetch_max_bytes",
    "client_id",
    "connect_retry_ms",
    "offsets",
    "prefetch_records",
    "prefetch_bytes",
    "sasl_mechanism",
    "group_commit_ms",
    "group_ids",
];

impl std::fmt::Debug for KafkaPoolConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPoolConfig")
            .field("nodes", &self.nodes)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("topics", &self.topics)
            .field("linger_ms", &self.linger_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("max_batch_records", &self.max_batch_records)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("fetch_max_wait_ms", &self.fetch_max_wait_ms)
            .field("fetch_max_bytes", &self.fetch_max_bytes)
            .field("client_id", &self.client_id)
            .field("connect_retry_ms", &self.connect_retry_ms)
            .field("offsets", &self.offsets)
            .field("prefetch_records", &self.prefetch_records)
            .field("prefetch_bytes", &self.prefetch_bytes)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("group_commit_ms", &self.group_commit_ms)
            .field("group_ids", &self.group_ids)
            .field("tls", &self.tls)
            .finish()
    }
}

/// One topic of a Kafka pool: `[pools.NAME.topics.TOPIC]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTopicConfig {
    /// Partitions: a missing topic is created with this many, a topic with fewer is grown (never shrunk).
    pub partitions: i32,
    /// Replication factor used when the proxy creates the topic; -1 takes the broker's default.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i16,
    /// Tenants that may KPUSH; `"*"` admits every tenant. Without tenants the client is called `default`.
    #[serde(default)]
    pub producers: Vec<String>,
    /// Tenants that may KPOP, KACK, KPARTITIONS and KOFFSET; `"*"` admits every tenant.
    #[serde(default)]
    pub consumers: Vec<String>,
    /// Records leased and fetched ahead per (consumer group, partition) in each proxy process for `KPOP
    /// topic` (default 500; 1 turns prefetching off). At most once, a proxy that dies loses at most these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch_records: Option<usize>,
    /// The most bytes one prefetch asks Kafka for, and about the most one buffer holds (default 524288).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch_bytes: Option<usize>,
    /// What `KPOP topic` promises its consumer groups (default `at_most_once`).
    #[serde(default)]
    pub delivery: KafkaDelivery,
    /// Per consumer group (tenant) overrides of `delivery`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_delivery: BTreeMap<String, KafkaDelivery>,
    /// At least once: how long a popped record may stay unacknowledged before the group gets it again
    /// (default 30000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_timeout_ms: Option<u64>,
}

/// `delivery` of a Kafka topic: `at_most_once` (a record is never delivered twice; a proxy that dies loses
/// what it leased and had not served) or `at_least_once` (nothing is lost; a record not acknowledged in time
/// is delivered again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaDelivery {
    /// The default: never twice.
    #[default]
    AtMostOnce,
    /// Never lost; acknowledged by the connection's next KPOP on the topic or by KACK.
    AtLeastOnce,
}

fn default_replication_factor() -> i16 {
    1
}

/// Where a Kafka pool keeps proxy-managed KPOP offsets: a Redis shared by every proxy process, given by
/// address (`redis = "host:port"`) or by naming a standalone pool (`pool = "main"`, whose node and credentials
/// are used). Without an `offsets` table the offsets live in the proxy's memory. Its `Debug` shows no password.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaOffsetsConfig {
    /// `host:port` of the Redis that holds the offsets.
    #[serde(default)]
    pub redis: Option<String>,
    /// A standalone pool whose Redis holds the offsets.
    #[serde(default)]
    pub pool: Option<String>,
    /// ACL user for `redis` (a named pool brings its own).
    #[serde(default)]
    pub username: Option<String>,
    /// Password for `redis` (a named pool brings its own).
    #[serde(default)]
    pub password: Option<String>,
    /// Prefix of the keys the offsets are kept under (default `rkproxy:kafka:`).
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// Connections to that Redis (default 4).
    #[serde(default)]
    pub connections: Option<usize>,
}

impl std::fmt::Debug for KafkaOffsetsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOffsetsConfig")
            .field("redis", &self.redis)
            .field("pool", &self.pool)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("key_prefix", &self.key_prefix)
            .field("connections", &self.connections)
            .finish()
    }
}
