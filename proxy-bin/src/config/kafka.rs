//! `kind = "kafka"` pools: their keys (brokers, SASL, TLS, produce and fetch settings, topics, the offset store)
//! and the checks serde cannot make.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::pools::{parse_node_address, redacted, AddressError, PoolConfig};
use super::{invalid, Config, ConfigError};

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
    /// Connect to the brokers over TLS; needs `ca_file`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// With `tls`: the CA (PEM) that signs the brokers' certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// With `tls`: a client certificate (PEM) for brokers that require one, with `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
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
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
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

impl Config {
    /// Checks a Kafka pool: brokers, settings, topics, who may produce and consume, the offset store.
    pub(super) fn validate_kafka_pool(
        &self,
        name: &str,
        pool: &KafkaPoolConfig,
    ) -> Result<(), ConfigError> {
        let key = format!("pools.{name}");
        if pool.nodes.is_empty() {
            return Err(invalid(
                format!("{key}.nodes"),
                "must list at least one Kafka bootstrap broker (host:port)",
            ));
        }
        for node in &pool.nodes {
            parse_kafka_broker(node).map_err(|problem| {
                invalid(format!("{key}.nodes"), format!("'{node}': {problem}"))
            })?;
        }
        check_kafka_sasl(&key, pool)?;
        check_kafka_tls(&key, pool)?;
        for (tenant, group) in &pool.group_ids {
            let group_key = format!("{key}.group_ids.{tenant}");
            self.check_kafka_tenant(name, tenant)
                .map_err(|problem| invalid(&group_key, problem.to_string()))?;
            if group.is_empty() {
                return Err(invalid(group_key, "must not be empty"));
            }
        }
        check_kafka_settings(&key, pool)?;
        if pool.topics.is_empty() {
            return Err(invalid(
                format!("{key}.topics"),
                "a Kafka pool serves only its configured topics; add at least one [pools.NAME.topics.TOPIC]",
            ));
        }
        check_prefetch(&key, pool.prefetch_records, pool.prefetch_bytes)?;
        for (topic, settings) in &pool.topics {
            self.check_topic(name, &format!("{key}.topics.{topic}"), topic, settings)?;
        }
        if let Some(offsets) = &pool.offsets {
            self.check_offsets(&format!("{key}.offsets"), offsets)?;
        }
        Ok(())
    }

    /// One topic of Kafka pool `pool` (`key` is its table): its name, partitions, replication, prefetch, and
    /// the tenants named in it.
    fn check_topic(
        &self,
        pool: &str,
        key: &str,
        topic: &str,
        settings: &KafkaTopicConfig,
    ) -> Result<(), ConfigError> {
        check_topic_name(topic).map_err(|problem| invalid(key, problem.to_string()))?;
        if settings.partitions < 1 {
            return Err(invalid(format!("{key}.partitions"), "must be at least 1"));
        }
        if settings.replication_factor < 1 && settings.replication_factor != -1 {
            return Err(invalid(
                format!("{key}.replication_factor"),
                "must be at least 1 (or -1 for the broker's default)",
            ));
        }
        check_prefetch(key, settings.prefetch_records, settings.prefetch_bytes)?;
        if settings.ack_timeout_ms == Some(0) {
            return Err(invalid(format!("{key}.ack_timeout_ms"), "must be above 0"));
        }
        let named = [
            ("group_delivery", settings.group_delivery.keys().collect()),
            ("producers", settings.producers.iter().collect()),
            ("consumers", settings.consumers.iter().collect::<Vec<_>>()),
        ];
        for (field, tenants) in named {
            for tenant in tenants {
                self.check_kafka_tenant(pool, tenant)
                    .map_err(|problem| invalid(format!("{key}.{field}"), problem.to_string()))?;
            }
        }
        Ok(())
    }

    /// `offsets`: a Redis given by address (with its credentials) or a standalone pool's name, not both.
    fn check_offsets(&self, key: &str, offsets: &KafkaOffsetsConfig) -> Result<(), ConfigError> {
        match (&offsets.redis, &offsets.pool) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    key,
                    "give either `redis = \"host:port\"` or `pool = \"NAME\"`, not both",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    key,
                    "name the Redis that holds the offsets: `redis = \"host:port\"` or `pool = \"NAME\"` \
                     (leave `offsets` out to keep them in memory)",
                ))
            }
            (Some(address), None) => check_offsets_address(key, address, offsets)?,
            (None, Some(pool)) => self.check_offsets_pool(key, pool, offsets)?,
        }
        if offsets
            .connections
            .is_some_and(|connections| connections == 0 || connections > 64)
        {
            return Err(invalid(
                format!("{key}.connections"),
                "must be between 1 and 64",
            ));
        }
        Ok(())
    }

    /// `offsets = { pool = "NAME" }`: a standalone pool of this file, whose credentials are used.
    fn check_offsets_pool(
        &self,
        key: &str,
        pool: &str,
        offsets: &KafkaOffsetsConfig,
    ) -> Result<(), ConfigError> {
        match self.pools.get(pool) {
            Some(PoolConfig::Standalone(_)) => {}
            Some(_) => {
                return Err(invalid(
                    format!("{key}.pool"),
                    format!("pool '{pool}' is not a standalone Redis pool"),
                ))
            }
            None => {
                return Err(invalid(
                    format!("{key}.pool"),
                    format!("pool '{pool}' is not defined"),
                ))
            }
        }
        if offsets.username.is_some() || offsets.password.is_some() {
            return Err(invalid(
                format!("{key}.password"),
                "a named pool brings its own credentials; remove username/password here",
            ));
        }
        Ok(())
    }
}

/// `offsets = { redis = "host:port" }`: the address parses; a username comes with a password.
fn check_offsets_address(
    key: &str,
    address: &str,
    offsets: &KafkaOffsetsConfig,
) -> Result<(), ConfigError> {
    parse_node_address(address)
        .map_err(|problem| invalid(format!("{key}.redis"), format!("'{address}': {problem}")))?;
    if offsets.username.is_some() && offsets.password.is_none() {
        return Err(invalid(
            format!("{key}.password"),
            "a username needs a password",
        ));
    }
    Ok(())
}

/// The produce, fetch and connect settings of a Kafka pool (`key` is its table) are in range.
fn check_kafka_settings(key: &str, pool: &KafkaPoolConfig) -> Result<(), ConfigError> {
    let positive = |field: &str, value: Option<u64>| match value {
        Some(0) => Err(invalid(format!("{key}.{field}"), "must be above 0")),
        _ => Ok(()),
    };
    positive("request_timeout_ms", pool.request_timeout_ms)?;
    positive(
        "max_batch_records",
        pool.max_batch_records.map(|n| n as u64),
    )?;
    positive("max_batch_bytes", pool.max_batch_bytes.map(|n| n as u64))?;
    positive("fetch_max_bytes", pool.fetch_max_bytes.map(u64::from))?;
    if pool
        .fetch_max_bytes
        .is_some_and(|bytes| i32::try_from(bytes).is_err())
    {
        return Err(invalid(
            format!("{key}.fetch_max_bytes"),
            "must be at most 2147483647",
        ));
    }
    if pool.connect_retry_ms.is_some_and(|ms| ms < 10) {
        return Err(invalid(
            format!("{key}.connect_retry_ms"),
            "must be at least 10",
        ));
    }
    if pool.client_id.as_deref().is_some_and(str::is_empty) {
        return Err(invalid(format!("{key}.client_id"), "must not be empty"));
    }
    Ok(())
}

/// The prefetch settings of a Kafka pool or topic (`key` is its table).
fn check_prefetch(
    key: &str,
    records: Option<usize>,
    bytes: Option<usize>,
) -> Result<(), ConfigError> {
    let max_records = kafka_bridge::config::MAX_PREFETCH_RECORDS;
    if records.is_some_and(|records| records == 0 || records > max_records) {
        return Err(invalid(
            format!("{key}.prefetch_records"),
            format!("must be between 1 and {max_records}"),
        ));
    }
    if bytes.is_some_and(|bytes| bytes == 0 || i32::try_from(bytes).is_err()) {
        return Err(invalid(
            format!("{key}.prefetch_bytes"),
            "must be between 1 and 2147483647",
        ));
    }
    Ok(())
}

/// SASL on a Kafka pool: `username` and `password` together, and a mechanism Kafka offers for them.
fn check_kafka_sasl(key: &str, pool: &KafkaPoolConfig) -> Result<(), ConfigError> {
    match (&pool.username, &pool.password) {
        (Some(_), Some(_)) => {}
        (None, None) if pool.sasl_mechanism.is_none() => return Ok(()),
        (None, None) => {
            return Err(invalid(
                format!("{key}.sasl_mechanism"),
                "SASL needs `username` and `password`",
            ))
        }
        _ => {
            return Err(invalid(
                format!("{key}.password"),
                "SASL needs both `username` and `password`",
            ))
        }
    }
    if let Some(mechanism) = &pool.sasl_mechanism {
        if kafka_bridge::SaslMechanism::parse(mechanism).is_none() {
            return Err(invalid(
                format!("{key}.sasl_mechanism"),
                format!("'{mechanism}' is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
            ));
        }
    }
    Ok(())
}

/// TLS on a Kafka pool: `tls = true` with a `ca_file`; a client certificate is `cert_file` with `key_file`.
fn check_kafka_tls(key: &str, pool: &KafkaPoolConfig) -> Result<(), ConfigError> {
    if !pool.tls {
        return match ["ca_file", "cert_file", "key_file"]
            .into_iter()
            .zip([&pool.ca_file, &pool.cert_file, &pool.key_file])
            .find(|(_, value)| value.is_some())
        {
            Some((field, _)) => Err(invalid(
                format!("{key}.{field}"),
                "set `tls = true` to use it",
            )),
            None => Ok(()),
        };
    }
    if pool.ca_file.is_none() {
        return Err(invalid(
            format!("{key}.ca_file"),
            "`tls = true` needs the CA (PEM file) that signs the brokers' certificates",
        ));
    }
    if pool.cert_file.is_some() != pool.key_file.is_some() {
        return Err(invalid(
            format!("{key}.key_file"),
            "a client certificate needs both `cert_file` and `key_file`",
        ));
    }
    Ok(())
}

/// A Kafka bootstrap broker is `host:port`.
fn parse_kafka_broker(node: &str) -> Result<(), AddressError> {
    if node.contains("://") {
        return Err(AddressError::KafkaScheme);
    }
    parse_node_address(node).map(|_| ())
}

/// A topic name that breaks Kafka's rule.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a valid Kafka topic name (1 to 249 of a-z, A-Z, 0-9, '.', '_', '-')")]
struct InvalidTopicName(String);

/// Kafka's rule for topic names: 1 to 249 of `a-z A-Z 0-9 . _ -`, and not `.` or `..`.
fn check_topic_name(topic: &str) -> Result<(), InvalidTopicName> {
    let legal = topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if topic.is_empty() || topic.len() > 249 || !legal || topic == "." || topic == ".." {
        return Err(InvalidTopicName(topic.to_owned()));
    }
    Ok(())
}
