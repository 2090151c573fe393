//! Checks of a Kafka pool's settings against the whole configuration (its tenants, its offset store pool).

use super::address::{is_unix_socket, parse_node_address, AddressError};
use super::kafka::{KafkaOffsetsConfig, KafkaPoolConfig, KafkaTopicConfig};
use super::pools::PoolConfig;
use super::{invalid, Config, ConfigError};

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
        pool.tls.validate(&key)?;
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
            Some(PoolConfig::Standalone(store)) if store.nodes.iter().any(|n| is_unix_socket(n)) => {
                return Err(invalid(
                    format!("{key}.pool"),
                    format!(
                        "pool '{pool}' is reached over a Unix domain socket; the offset store needs a \
                         host:port node"
                    ),
                ))
            }
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
