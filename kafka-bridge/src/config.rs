//! Configuration of one Kafka pool: brokers, topics with their producers and consumers, and timing knobs.
//!
//! The proxy builds these values from its own configuration file; this crate reads no files.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::security::KafkaSecurity;

/// Default of [`TopicConfig::prefetch_records`].
pub const DEFAULT_PREFETCH_RECORDS: usize = 500;
/// Default of [`TopicConfig::prefetch_bytes`].
pub const DEFAULT_PREFETCH_BYTES: usize = 512 * 1024;
/// Default of [`TopicConfig::ack_timeout`].
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// The most records one (group, partition) may hold leased and buffered; the offset store's scripts hand
/// out at most this many offsets in one call.
pub const MAX_PREFETCH_RECORDS: usize = 10_000;

/// What `KPOP topic` promises a consumer group, per topic (and optionally per group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Delivery {
    /// A leased record counts as delivered: never delivered twice, but lost if a proxy dies while it holds
    /// it (at most its leased, unserved window; see the `offsets` module).
    #[default]
    AtMostOnce,
    /// A popped record stays pending until acknowledged (by the connection's next `KPOP` on the topic or by
    /// `KACK`); one not acknowledged within the ack timeout, or whose connection closed, is delivered again
    /// to the group. Nothing is lost; a record may come twice.
    AtLeastOnce,
}

/// The acknowledgement level of produce requests.
///
/// rskafka 0.6 always sends `acks = -1` (all in-sync replicas) and has no knob for anything else, so `All` is
/// the only level offered; a KPUSH is answered only after every in-sync replica has the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Acks {
    /// Wait for all in-sync replicas (Kafka's `acks=all`).
    #[default]
    All,
}

/// One Kafka pool.
///
/// ```
/// use std::time::Duration;
/// use kafka_bridge::{KafkaPoolConfig, TopicConfig};
///
/// let mut config = KafkaPoolConfig::new(vec!["127.0.0.1:9092".to_string()]);
/// config.topics.push(TopicConfig::new("orders", 3).producers(["shop"]).consumers(["billing", "audit"]));
/// config.request_timeout = Duration::from_secs(1);
/// assert_eq!(config.topics[0].partitions, 3);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KafkaPoolConfig {
    /// Bootstrap brokers as `host:port`.
    pub bootstrap: Vec<String>,
    /// The topics this pool serves; any other topic is refused.
    pub topics: Vec<TopicConfig>,
    /// Produce acknowledgement level.
    pub acks: Acks,
    /// How long a produce batch waits for more KPUSHes to the same partition before it is sent (Kafka's
    /// `linger.ms`). Zero (the default) sends at once; records that arrive while a batch is in flight still
    /// join the next one, so batching happens under load anyway.
    pub linger: Duration,
    /// The most records in one produce request.
    pub max_batch_records: usize,
    /// The most value bytes in one produce request; keep it under the broker's `message.max.bytes` (1 MiB by
    /// default), which limits a whole record batch.
    pub max_batch_bytes: usize,
    /// The longest wait for any single Kafka (or offset store) round trip, retries included. A broker that is
    /// down gives an error after this long at most.
    pub request_timeout: Duration,
    /// How long a fetch may wait on the broker for data to arrive when there is none (Kafka's `max.wait.ms`).
    /// Zero answers nil at once when nothing is new.
    pub fetch_max_wait: Duration,
    /// The most bytes one `KPOP topic partition offset count` asks the broker for.
    pub fetch_max_bytes: i32,
    /// The client id sent to Kafka.
    pub client_id: String,
    /// SASL and TLS to the brokers (default: neither).
    pub security: KafkaSecurity,
    /// How often the cursors of `KPOP topic` are committed to Kafka as the consumer groups' offsets (so Kafka's
    /// tools show them and their lag); `None` commits nothing. See `group_commit`.
    pub group_commit_interval: Option<Duration>,
    /// The Kafka consumer group id of a tenant's cursors, when it is not the tenant's name.
    pub group_ids: HashMap<String, String>,
}

/// One topic of a pool.
///
/// Tenant lists hold tenant names; `"*"` admits every tenant. A tenant in `consumers` is also the consumer
/// group of its proxy-managed cursors.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicConfig {
    /// The Kafka topic name.
    pub name: String,
    /// The wanted partition count: a missing topic is created with it, a smaller one grows to it, a larger one
    /// is left alone (partitions never shrink).
    pub partitions: i32,
    /// The replication factor used when the topic is created.
    pub replication_factor: i16,
    /// Tenants that may KPUSH.
    pub producers: Vec<String>,
    /// Tenants that may KPOP, KACK, KPARTITIONS and KOFFSET.
    pub consumers: Vec<String>,
    /// The most records leased ahead and buffered per (consumer group, partition) in one proxy process for
    /// `KPOP topic`; 1 turns prefetching off (one lease and one fetch per KPOP).
    pub prefetch_records: usize,
    /// The most record bytes one prefetch fetch asks for, and about the most a (group, partition) buffer holds
    /// (Kafka returns at least one whole record batch, which may exceed it).
    pub prefetch_bytes: usize,
    /// The delivery guarantee of the topic's consumer groups, unless `group_delivery` names the group.
    pub delivery: Delivery,
    /// Per consumer group overrides of `delivery`.
    pub group_delivery: BTreeMap<String, Delivery>,
    /// At least once: how long a leased record may stay unacknowledged before it is delivered again.
    pub ack_timeout: Duration,
}

// === impl KafkaPoolConfig ===

impl KafkaPoolConfig {
    /// A pool with the given bootstrap brokers, no topics, and the default knobs.
    pub fn new(bootstrap: Vec<String>) -> Self {
        KafkaPoolConfig {
            bootstrap,
            topics: Vec::new(),
            acks: Acks::All,
            // Measured on the dev broker (see README): with one produce request in flight per partition,
            // records that arrive during a round trip already form the next batch, and a 1 ms linger only
            // added latency (64 callers, 1 partition: 61k pushes/s at linger 0 against 18k/s at 1 ms).
            linger: Duration::ZERO,
            max_batch_records: 1000,
            max_batch_bytes: 900 * 1024,
            request_timeout: Duration::from_secs(2),
            fetch_max_wait: Duration::ZERO,
            fetch_max_bytes: 1024 * 1024,
            client_id: "rkproxy".to_string(),
            security: KafkaSecurity::default(),
            group_commit_interval: Some(Duration::from_secs(1)),
            group_ids: HashMap::new(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.bootstrap.is_empty() {
            return Err("the pool has no bootstrap brokers".into());
        }
        if self.max_batch_records == 0 || self.max_batch_bytes == 0 {
            return Err("max_batch_records and max_batch_bytes must be at least 1".into());
        }
        if self.request_timeout.is_zero() {
            return Err("request_timeout must be more than zero".into());
        }
        if self
            .group_commit_interval
            .is_some_and(|interval| interval.is_zero())
        {
            return Err(
                "group_commit_interval must be more than zero (None turns commits off)".into(),
            );
        }
        if let Some((tenant, _)) = self.group_ids.iter().find(|(_, group)| group.is_empty()) {
            return Err(format!("the group id of tenant '{tenant}' is empty"));
        }
        if self.fetch_max_bytes <= 0 {
            return Err("fetch_max_bytes must be at least 1".into());
        }
        let mut seen = std::collections::HashSet::new();
        for topic in &self.topics {
            if topic.name.is_empty() {
                return Err("a topic has an empty name".into());
            }
            if !seen.insert(topic.name.as_str()) {
                return Err(format!("topic '{}' is configured twice", topic.name));
            }
            if topic.partitions < 1 {
                return Err(format!("topic '{}' needs at least 1 partition", topic.name));
            }
            if topic.prefetch_records == 0 || topic.prefetch_records > MAX_PREFETCH_RECORDS {
                return Err(format!(
                    "topic '{}' needs prefetch_records between 1 and {MAX_PREFETCH_RECORDS}",
                    topic.name
                ));
            }
            if topic.prefetch_bytes == 0 || i32::try_from(topic.prefetch_bytes).is_err() {
                return Err(format!(
                    "topic '{}' needs prefetch_bytes between 1 and {}",
                    topic.name,
                    i32::MAX
                ));
            }
            if topic.ack_timeout.is_zero() {
                return Err(format!(
                    "topic '{}' needs an ack_timeout above zero",
                    topic.name
                ));
            }
            if topic.replication_factor < 1 && topic.replication_factor != -1 {
                return Err(format!(
                    "topic '{}' needs a replication factor of at least 1 (or -1 for the broker default)",
                    topic.name
                ));
            }
        }
        Ok(())
    }
}

// === impl TopicConfig ===

impl TopicConfig {
    /// A topic with `partitions` partitions, replication factor 1, and no producers or consumers yet.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        TopicConfig {
            name: name.into(),
            partitions,
            replication_factor: 1,
            producers: Vec::new(),
            consumers: Vec::new(),
            prefetch_records: DEFAULT_PREFETCH_RECORDS,
            prefetch_bytes: DEFAULT_PREFETCH_BYTES,
            delivery: Delivery::AtMostOnce,
            group_delivery: BTreeMap::new(),
            ack_timeout: DEFAULT_ACK_TIMEOUT,
        }
    }

    /// Sets how many records are leased ahead per (group, partition); 1 turns prefetching off.
    pub fn prefetch(mut self, records: usize, bytes: usize) -> Self {
        self.prefetch_records = records;
        self.prefetch_bytes = bytes;
        self
    }

    /// Sets the topic's delivery guarantee and, for at least once, the ack timeout.
    pub fn delivery(mut self, delivery: Delivery, ack_timeout: Duration) -> Self {
        self.delivery = delivery;
        self.ack_timeout = ack_timeout;
        self
    }

    /// The delivery guarantee of `group` on this topic.
    pub fn delivery_for(&self, group: &str) -> Delivery {
        self.group_delivery
            .get(group)
            .copied()
            .unwrap_or(self.delivery)
    }

    /// Sets the tenants that may produce.
    pub fn producers<I, S>(mut self, tenants: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.producers = tenants.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the tenants that may consume.
    pub fn consumers<I, S>(mut self, tenants: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.consumers = tenants.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the replication factor used when the topic is created.
    pub fn replication_factor(mut self, replication_factor: i16) -> Self {
        self.replication_factor = replication_factor;
        self
    }

    pub(crate) fn may_produce(&self, tenant: &str) -> bool {
        self.producers
            .iter()
            .any(|allowed| allowed == "*" || allowed == tenant)
    }

    pub(crate) fn may_consume(&self, tenant: &str) -> bool {
        self.consumers
            .iter()
            .any(|allowed| allowed == "*" || allowed == tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_problem() {
        let mut config = KafkaPoolConfig::new(vec![]);
        assert_eq!(
            config.validate().unwrap_err(),
            "the pool has no bootstrap brokers"
        );
        config.bootstrap.push("127.0.0.1:9092".into());
        config.topics.push(TopicConfig::new("a", 0));
        assert_eq!(
            config.validate().unwrap_err(),
            "topic 'a' needs at least 1 partition"
        );
        config.topics[0].partitions = 2;
        config.topics.push(TopicConfig::new("a", 1));
        assert_eq!(
            config.validate().unwrap_err(),
            "topic 'a' is configured twice"
        );
        config.topics.pop();
        assert!(config.validate().is_ok());
    }

    #[test]
    fn star_admits_every_tenant() {
        let topic = TopicConfig::new("t", 1)
            .producers(["*"])
            .consumers(["reader"]);
        assert!(topic.may_produce("anyone"));
        assert!(topic.may_consume("reader"));
        assert!(!topic.may_consume("anyone"));
    }
}
