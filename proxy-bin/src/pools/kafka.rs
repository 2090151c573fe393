//! Kafka pools: a [`KafkaBridge`] connected in the background, and the K* commands run on it.
//!
//! A Kafka pool starts connecting when the proxy starts, but the proxy never waits for it: a broker that is down
//! must not keep Redis clients out. Until the bridge is connected, K* commands get
//! `-ERR kafka pool 'NAME' unavailable: <why>` at once (commands sent while the very first attempt is still
//! running wait for its outcome, for a bounded time), and a background task tries again every
//! `connect_retry_ms` until Kafka answers. Connecting creates missing topics and grows topics that have fewer
//! partitions than configured (the bridge does that). Once connected, the bridge stays: rskafka reconnects by
//! itself when the broker comes back after an outage.
//!
//! Every command runs in its own task and answers through a oneshot, so the session keeps serving its other
//! requests meanwhile and puts the reply in request order. Every command is bounded by the pool's command
//! timeout (three Kafka round trips), on top of the bridge's own `request_timeout` per round trip.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use kafka_bridge::{
    ConnectionDeliveries, CursorAdmin, Delivery, KafkaBridge, KafkaPoolConfig, KafkaSecurity,
    MemoryOffsetStore, OffsetStore, RedisOffsetStore, RedisStoreConfig, SaslMechanism,
    SaslSettings, TlsSettings, TopicConfig,
};
use resp_codec::Request;
use tenant_policy::Tenant;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use crate::backend::{one_line, BackendReply};
use crate::config::{
    parse_node_address, Config, KafkaDelivery, KafkaOffsetsConfig, KafkaTopicConfig, PoolConfig,
    DEFAULT_KAFKA_TENANT,
};
use crate::reply;
use crate::tls::PoolTlsFiles;

use super::PoolError;

/// How long to wait between connect attempts when the pool does not say.
const DEFAULT_CONNECT_RETRY: Duration = Duration::from_millis(1000);

/// The proxy's own errors around Kafka pools (the bridge's are [`kafka_bridge::KafkaError`]); each `Display`
/// is the RESP error line the client receives.
#[derive(Debug, thiserror::Error)]
pub enum KafkaPoolError {
    /// The pool has no connected bridge; `reason` is the last connect attempt's error without its `ERR `.
    #[error("ERR kafka pool '{pool}' unavailable: {reason} (retrying every {retry_ms} ms)")]
    Unavailable {
        pool: Arc<str>,
        reason: String,
        retry_ms: u128,
    },
    /// A command got no reply within the pool's command timeout.
    #[error("ERR kafka REQUEST_TIMED_OUT: no reply from Kafka pool '{pool}' within {after_ms} ms")]
    TimedOut { pool: Arc<str>, after_ms: u128 },
    /// A K* command on a connection that uses a Redis pool.
    #[error(
        "ERR {command} is a Kafka command and this connection uses Redis pool '{pool}'; a Kafka pool serves it \
         (a tenant of a Kafka pool, or USE <kafka pool>)"
    )]
    KafkaCommandOnRedisPool { command: String, pool: String },
    /// A Redis command the proxy does not answer itself, on a Kafka pool.
    #[error(
        "ERR command '{command}' is not served by Kafka pool '{pool}': it accepts KPUSH, KPOP, KPARTITIONS and KOFFSET"
    )]
    NotServedByKafkaPool { command: &'static str, pool: String },
    /// SELECT on a Kafka pool.
    #[error("ERR SELECT is not available on Kafka pool '{pool}': Kafka has no databases")]
    SelectOnKafkaPool { pool: String },
    /// A cursor admin command names a topic no Kafka pool has.
    #[error("ERR unknown topic '{topic}': no Kafka pool has it configured")]
    TopicInNoPool { topic: String },
    /// A cursor admin command names a topic several Kafka pools have, from a connection on none of them.
    #[error("ERR topic '{topic}' is in several Kafka pools ({pools}); USE one of them first")]
    TopicInSeveralPools { topic: String, pools: String },
}

impl KafkaPoolError {
    /// The RESP error reply (on one line, whatever a broker's message held).
    pub fn to_reply(&self) -> Bytes {
        reply::error(&self.to_string())
    }
}

/// One Kafka pool of the configuration.
#[derive(Debug)]
pub struct KafkaPool {
    name: Arc<str>,
    bridge_config: KafkaPoolConfig,
    offsets: Arc<dyn OffsetStore>,
    /// What the offsets live in, for the log.
    offsets_description: String,
    connect_retry: Duration,
    /// The longest a K* command waits for its reply.
    command_timeout: Duration,
    /// The longest a command waits for the first connect attempt to finish.
    first_connect_wait: Duration,
    status: watch::Sender<Status>,
    /// What the TLS files the pool was built from held, for a reload to see them rotated.
    tls_files: KafkaTlsFiles,
}

/// The content of the TLS files a Kafka pool is built from: its brokers' (`ca_file`, `cert_file`,
/// `key_file`) and those of the Redis pool that keeps its offsets (`offsets.pool`). The bridge reads them
/// only when the pool is built, so a reload that finds them changed builds the pool again.
#[derive(Debug, PartialEq, Eq)]
struct KafkaTlsFiles {
    brokers: Option<PoolTlsFiles>,
    offsets: Option<PoolTlsFiles>,
}

impl KafkaTlsFiles {
    /// Reads the files and checks the brokers' (the bridge reads them again, when it connects, which is too
    /// late to refuse a reload).
    fn read(
        pool: &crate::config::KafkaPoolConfig,
        config: &Config,
    ) -> Result<KafkaTlsFiles, PoolError> {
        let brokers = PoolTlsFiles::read(&pool.tls)?;
        if let Some(files) = &brokers {
            files.client_config()?;
            files.warn_of_client_certificate_expiry();
        }
        let store_pool = pool
            .offsets
            .as_ref()
            .and_then(|offsets| offsets.pool.as_ref())
            .and_then(|name| config.pools.get(name))
            .and_then(PoolConfig::redis);
        let offsets = match store_pool {
            Some(store_pool) => PoolTlsFiles::read(&store_pool.tls)?,
            None => None,
        };
        Ok(KafkaTlsFiles { brokers, offsets })
    }
}

/// Where the pool's connection stands.
#[derive(Debug, Clone)]
enum Status {
    /// The first connect attempt is running.
    Starting,
    /// The last attempt failed for this reason; the next one follows after `connect_retry`.
    Down(Arc<str>),
    /// Connected; the bridge recovers from broker outages by itself from now on.
    Up(KafkaBridge),
}

// === impl KafkaPool ===

impl KafkaPool {
    /// Builds the pool from its configuration (already validated). Nothing connects until [`KafkaPool::start`].
    pub fn new(
        name: &str,
        pool: &crate::config::KafkaPoolConfig,
        config: &Config,
    ) -> Result<KafkaPool, PoolError> {
        // Read before the bridge and the offset store read them: a file rotated in between is then seen as
        // changed at the next reload, never as unchanged.
        let tls_files = KafkaTlsFiles::read(pool, config)?;
        let bridge_config = bridge_config(pool)?;
        let request_timeout = bridge_config.request_timeout;
        let (offsets, offsets_description) =
            offset_store(name, pool.offsets.as_ref(), config, request_timeout)?;
        Ok(KafkaPool {
            name: Arc::from(name),
            bridge_config,
            offsets,
            offsets_description,
            connect_retry: pool
                .connect_retry_ms
                .map_or(DEFAULT_CONNECT_RETRY, Duration::from_millis),
            // A managed KPOP that must refill its buffer is an acknowledgement (at least once), a lease, a
            // fetch, and when the fetch is out of range a list of offsets and a cursor move: a few round trips,
            // each bounded by `request_timeout` inside the bridge; most KPOPs are served from memory.
            command_timeout: request_timeout * 3,
            first_connect_wait: request_timeout * 3,
            status: watch::Sender::new(Status::Starting),
            tls_files,
        })
    }

    /// When the client certificate this pool presents to its brokers expires (seconds since 1970).
    pub fn client_certificate_expiry(&self) -> Option<i64> {
        self.tls_files.brokers.as_ref()?.client_certificate_expiry()
    }

    /// Whether the TLS files this pool was built from (its settings `pool`, unchanged by a reload) hold
    /// something else now: the pool must then be built again. A file unreadable or invalid now is an error.
    pub fn tls_files_changed(
        &self,
        pool: &crate::config::KafkaPoolConfig,
        config: &Config,
    ) -> Result<bool, PoolError> {
        Ok(KafkaTlsFiles::read(pool, config)? != self.tls_files)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes over the offsets `previous` (this pool as configured before a reload) keeps in memory, when
    /// this one keeps them in memory too: a new memory store would forget every consumer group's cursor,
    /// and KPOP would hand out records again. Offsets kept in a Redis outlive any pool and need nothing.
    pub fn keep_memory_offsets(&mut self, previous: &KafkaPool) {
        if self.offsets_description == MEMORY_STORE && previous.offsets_description == MEMORY_STORE
        {
            self.offsets = Arc::clone(&previous.offsets);
        }
    }

    /// The pool's connection state for INFO and the stats: `starting`, `down` or `up`.
    pub fn state_name(&self) -> &'static str {
        match &*self.status.borrow() {
            Status::Starting => "starting",
            Status::Down(_) => "down",
            Status::Up(_) => "up",
        }
    }

    /// The bridge if the pool is connected now (never waits): for the stats' consumer lag.
    pub fn connected_bridge(&self) -> Option<KafkaBridge> {
        match &*self.status.borrow() {
            Status::Up(bridge) => Some(bridge.clone()),
            Status::Starting | Status::Down(_) => None,
        }
    }

    /// Records `KPOP topic` delivered again (at least once) by (group, topic), while connected.
    pub fn redelivered(&self) -> Vec<((String, String), u64)> {
        match &*self.status.borrow() {
            Status::Up(bridge) => bridge.redelivered(),
            Status::Starting | Status::Down(_) => Vec::new(),
        }
    }

    /// The bootstrap brokers.
    pub fn brokers(&self) -> &[String] {
        &self.bridge_config.bootstrap
    }

    /// Whether `topic` is one of this pool's configured topics.
    pub fn has_topic(&self, topic: &str) -> bool {
        self.bridge_config
            .topics
            .iter()
            .any(|configured| configured.name == topic)
    }

    /// Starts connecting in the background on the current runtime, retrying until Kafka answers. The task
    /// ends when it has connected, or when the pool is dropped.
    pub fn start(self: &Arc<Self>) {
        let pool = Arc::downgrade(self);
        tokio::spawn(connect_until_up(pool));
    }

    /// Runs one K* command for `tenant` (`None`: no tenants are configured) in a task of its own; the reply,
    /// RESP2 or RESP3, comes through the receiver. `deliveries` is the connection's at-least-once bookkeeping
    /// (its next KPOP acknowledges, its close releases; see [`ConnectionDeliveries`]).
    pub fn execute(
        self: &Arc<Self>,
        tenant: Option<Arc<Tenant>>,
        request: Request,
        resp3: bool,
        deliveries: Arc<ConnectionDeliveries>,
    ) -> oneshot::Receiver<BackendReply> {
        self.spawn_with_bridge(move |pool, bridge| async move {
            let args: Vec<&[u8]> = request.args().collect();
            let group = tenant.as_deref().map_or(DEFAULT_KAFKA_TENANT, Tenant::name);
            // Boxed: the bridge's future is deep enough to overflow the compiler's layout query limit when
            // it is nested in this one, and one allocation per command costs nothing next to a Kafka round trip.
            let executed = Box::pin(bridge.execute_for(group, &args, Some(&deliveries)));
            match tokio::time::timeout(pool.command_timeout, executed).await {
                Ok(kafka_reply) => kafka_reply.resp_bytes(resp3),
                Err(_) => pool.timed_out(),
            }
        })
    }

    /// `RKPROXY KOFFSETS` (one line per partition with the group's next offset and the offsets given back for
    /// a later KPOP) or `RKPROXY KRESET` (sets the group's cursor, an admin repair), run by the bridge.
    pub fn run_cursor_admin(
        self: &Arc<Self>,
        command: CursorAdmin,
        resp3: bool,
    ) -> oneshot::Receiver<BackendReply> {
        self.spawn_with_bridge(move |pool, bridge| async move {
            let ran = bridge.run_cursor_admin(&command);
            match tokio::time::timeout(pool.command_timeout, ran).await {
                Ok(kafka_reply) => {
                    if let CursorAdmin::Reset { group, topic, partition, next_offset } = &command {
                        if !kafka_reply.is_error() {
                            info!(pool = %pool.name, group, topic, partition, next_offset, "Kafka cursor reset by an admin");
                        }
                    }
                    kafka_reply.resp_bytes(resp3)
                }
                Err(_) => pool.timed_out(),
            }
        })
    }

    /// Runs `work` with the connected bridge in a task of its own; without a bridge the reply is the error that
    /// says why. The reply comes through the receiver.
    fn spawn_with_bridge<F, Fut>(self: &Arc<Self>, work: F) -> oneshot::Receiver<BackendReply>
    where
        F: FnOnce(Arc<Self>, KafkaBridge) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Bytes> + Send,
    {
        let pool = Arc::clone(self);
        spawn_reply(async move {
            match pool.bridge().await {
                Ok(bridge) => work(pool, bridge).await,
                Err(refusal) => refusal,
            }
        })
    }

    /// The connected bridge, or the error reply that says why there is none.
    async fn bridge(&self) -> Result<KafkaBridge, Bytes> {
        if let Status::Up(bridge) = &*self.status.borrow() {
            return Ok(bridge.clone());
        }
        let mut status = self.status.subscribe();
        // Commands sent while the first attempt runs wait for its outcome, so a proxy that has just started
        // does not refuse its first commands; later attempts never hold commands up.
        let _ = tokio::time::timeout(
            self.first_connect_wait,
            status.wait_for(|status| !matches!(status, Status::Starting)),
        )
        .await;
        let current = status.borrow().clone();
        match current {
            Status::Up(bridge) => Ok(bridge),
            Status::Down(reason) => Err(self.unavailable(&reason)),
            Status::Starting => Err(self.unavailable(&format!(
                "still connecting after {} ms",
                self.first_connect_wait.as_millis()
            ))),
        }
    }

    fn unavailable(&self, reason: &str) -> Bytes {
        // The bridge's errors start with the RESP error code; inside this message it is noise.
        let reason = reason.strip_prefix("ERR ").unwrap_or(reason);
        KafkaPoolError::Unavailable {
            pool: Arc::clone(&self.name),
            reason: reason.to_owned(),
            retry_ms: self.connect_retry.as_millis(),
        }
        .to_reply()
    }

    fn timed_out(&self) -> Bytes {
        KafkaPoolError::TimedOut {
            pool: Arc::clone(&self.name),
            after_ms: self.command_timeout.as_millis(),
        }
        .to_reply()
    }
}

/// Connects the pool, retrying after failures, until it is up or the pool is gone.
async fn connect_until_up(pool: Weak<KafkaPool>) {
    let mut attempt: u64 = 0;
    loop {
        attempt += 1;
        let Some(strong) = pool.upgrade() else {
            return;
        };
        if attempt == 1 {
            info!(pool = %strong.name, brokers = %strong.bridge_config.bootstrap.join(","), offsets = %strong.offsets_description, "connecting to Kafka");
        }
        let connected =
            KafkaBridge::connect(strong.bridge_config.clone(), Arc::clone(&strong.offsets)).await;
        match connected {
            Ok(bridge) => {
                info!(pool = %strong.name, attempt, "Kafka pool connected; topics are ready");
                strong.status.send_replace(Status::Up(bridge));
                return;
            }
            Err(error) => {
                let reason = one_line(&error.to_string());
                // One line per state change: the pool going down is logged once; the retries while it stays
                // down only at debug level (the stats and INFO show the state meanwhile).
                let was_down = matches!(*strong.status.borrow(), Status::Down(_));
                if was_down {
                    debug!(pool = %strong.name, attempt, error = %reason, "Kafka pool still unavailable");
                } else {
                    warn!(pool = %strong.name, attempt, error = %reason, retry_ms = strong.connect_retry.as_millis() as u64, "Kafka pool unavailable; retrying in the background");
                }
                strong.status.send_replace(Status::Down(Arc::from(reason)));
            }
        }
        let retry = strong.connect_retry;
        drop(strong);
        tokio::time::sleep(retry).await;
    }
}

/// Runs `work` in a task of its own and hands its reply to the returned receiver.
fn spawn_reply(
    work: impl std::future::Future<Output = Bytes> + Send + 'static,
) -> oneshot::Receiver<BackendReply> {
    let (sender, receiver) = oneshot::channel();
    tokio::spawn(async move {
        let _ = sender.send(Ok(work.await));
    });
    receiver
}

/// The bridge's configuration from the pool's keys, with the bridge's defaults for the keys left out.
fn bridge_config(pool: &crate::config::KafkaPoolConfig) -> Result<KafkaPoolConfig, PoolError> {
    let mut config = KafkaPoolConfig::new(pool.nodes.clone());
    if let Some(ms) = pool.linger_ms {
        config.linger = Duration::from_millis(ms);
    }
    if let Some(ms) = pool.request_timeout_ms {
        config.request_timeout = Duration::from_millis(ms);
    }
    if let Some(records) = pool.max_batch_records {
        config.max_batch_records = records;
    }
    if let Some(bytes) = pool.max_batch_bytes {
        config.max_batch_bytes = bytes;
    }
    if let Some(ms) = pool.fetch_max_wait_ms {
        config.fetch_max_wait = Duration::from_millis(ms);
    }
    if let Some(bytes) = pool.fetch_max_bytes {
        config.fetch_max_bytes =
            i32::try_from(bytes).map_err(|_| PoolError::FetchMaxBytesTooLarge)?;
    }
    if let Some(client_id) = &pool.client_id {
        config.client_id = client_id.clone();
    }
    config.security = security(pool)?;
    config.group_commit_interval = match pool.group_commit_ms {
        Some(0) => None,
        Some(ms) => Some(Duration::from_millis(ms)),
        None => config.group_commit_interval,
    };
    config.group_ids = pool
        .group_ids
        .iter()
        .map(|(tenant, group)| (tenant.clone(), group.clone()))
        .collect();
    for (name, topic) in &pool.topics {
        config.topics.push(topic_config(name, topic, pool));
    }
    Ok(config)
}

/// The bridge's settings of one topic: its own keys, else the pool's prefetch keys, else the bridge's defaults.
fn topic_config(
    name: &str,
    topic: &KafkaTopicConfig,
    pool: &crate::config::KafkaPoolConfig,
) -> TopicConfig {
    let mut config = TopicConfig::new(name, topic.partitions)
        .replication_factor(topic.replication_factor)
        .producers(topic.producers.iter().cloned())
        .consumers(topic.consumers.iter().cloned());
    if let Some(records) = topic.prefetch_records.or(pool.prefetch_records) {
        config.prefetch_records = records;
    }
    if let Some(bytes) = topic.prefetch_bytes.or(pool.prefetch_bytes) {
        config.prefetch_bytes = bytes;
    }
    if let Some(ms) = topic.ack_timeout_ms {
        config.ack_timeout = Duration::from_millis(ms);
    }
    config.delivery = delivery(topic.delivery);
    config.group_delivery = topic
        .group_delivery
        .iter()
        .map(|(group, chosen)| (group.clone(), delivery(*chosen)))
        .collect();
    config
}

fn delivery(configured: KafkaDelivery) -> Delivery {
    match configured {
        KafkaDelivery::AtMostOnce => Delivery::AtMostOnce,
        KafkaDelivery::AtLeastOnce => Delivery::AtLeastOnce,
    }
}

/// SASL (`username`, `password`, `sasl_mechanism`) and TLS (`tls`, `ca_file`, `cert_file`, `key_file`) of a
/// Kafka pool, as validated by the configuration.
fn security(pool: &crate::config::KafkaPoolConfig) -> Result<KafkaSecurity, PoolError> {
    let sasl = match (&pool.username, &pool.password) {
        (Some(username), Some(password)) => {
            let name = pool.sasl_mechanism.as_deref().unwrap_or("SCRAM-SHA-512");
            let mechanism = SaslMechanism::parse(name)
                .ok_or_else(|| PoolError::UnknownSaslMechanism(name.to_owned()))?;
            Some(SaslSettings::new(mechanism, username, password))
        }
        _ => None,
    };
    let tls = pool.tls.enabled.then(|| TlsSettings {
        ca_file: pool.tls.ca_file.as_ref().map(Into::into),
        crl_file: pool.tls.crl_file.as_ref().map(Into::into),
        tls13_only: pool.tls.min_version == Some(crate::config::TlsVersion::Tls13),
        cipher_suites: pool.tls.cipher_suites.as_ref().map(|suites| {
            suites
                .iter()
                .copied()
                .map(|suite| crate::tls::supported_suite(suite).suite())
                .collect()
        }),
        cert_file: pool.tls.cert_file.as_ref().map(Into::into),
        key_file: pool.tls.key_file.as_ref().map(Into::into),
    });
    Ok(KafkaSecurity { sasl, tls })
}

/// How the log describes offsets kept in this process's memory.
const MEMORY_STORE: &str = "memory (this process only)";

/// The offset store of a pool: memory, or a Redis given by address or by a standalone pool's name.
fn offset_store(
    pool_name: &str,
    offsets: Option<&KafkaOffsetsConfig>,
    config: &Config,
    request_timeout: Duration,
) -> Result<(Arc<dyn OffsetStore>, String), PoolError> {
    let Some(offsets) = offsets else {
        return Ok((Arc::new(MemoryOffsetStore::new()), MEMORY_STORE.to_owned()));
    };
    let mut store = match (&offsets.redis, &offsets.pool) {
        (Some(address), _) => {
            let mut store = RedisStoreConfig::new(parse_node_address(address)?);
            store.username = offsets.username.clone();
            store.password = offsets.password.clone();
            store
        }
        (None, Some(redis_pool)) => {
            // Config::validate allows only a standalone pool here.
            let Some(PoolConfig::Standalone(found)) = config.pools.get(redis_pool) else {
                return Err(PoolError::OffsetsPoolUndefined {
                    pool: pool_name.to_owned(),
                    store_pool: redis_pool.clone(),
                });
            };
            let node = found
                .nodes
                .first()
                .ok_or_else(|| PoolError::OffsetsPoolWithoutNode {
                    pool: pool_name.to_owned(),
                    store_pool: redis_pool.clone(),
                })?;
            let mut store = RedisStoreConfig::new(parse_node_address(node)?);
            store.username = found.username.clone();
            store.password = found.password.clone();
            store.transport = crate::tls::StoreTls::for_pool(found)?;
            store
        }
        (None, None) => return Err(PoolError::OffsetsStoreUnnamed(pool_name.to_owned())),
    };
    if let Some(prefix) = &offsets.key_prefix {
        store.key_prefix = prefix.clone();
    }
    if let Some(connections) = offsets.connections {
        store.connections = connections;
    }
    // An offset-store call is one of the round trips the bridge bounds by `request_timeout`.
    store.timeout = request_timeout;
    let description = format!("redis {} (prefix {})", store.address, store.key_prefix);
    Ok((Arc::new(RedisOffsetStore::new(store)), description))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Kafka pool `events` of a test configuration.
    fn kafka_pool(config: &Config) -> &crate::config::KafkaPoolConfig {
        match &config.pools["events"] {
            PoolConfig::Kafka(pool) => pool,
            other => panic!("events is not a Kafka pool: {other:?}"),
        }
    }

    #[test]
    fn config_keys_reach_the_bridge() {
        let config = Config::from_toml(
            "default_pool = 'events'\n\
             [pools.events]\nkind = 'kafka'\nnodes = ['127.0.0.1:9092']\nlinger_ms = 3\nrequest_timeout_ms = 500\n\
             [pools.events.topics.orders]\npartitions = 3\nproducers = ['*']\nconsumers = ['default']\n",
        )
        .unwrap();
        let bridge = bridge_config(kafka_pool(&config)).unwrap();
        assert_eq!(bridge.bootstrap, ["127.0.0.1:9092"]);
        assert_eq!(bridge.linger, Duration::from_millis(3));
        assert_eq!(bridge.request_timeout, Duration::from_millis(500));
        assert_eq!(bridge.topics.len(), 1);
        assert_eq!(bridge.topics[0].name, "orders");
        assert_eq!(bridge.topics[0].partitions, 3);
        assert_eq!(bridge.topics[0].replication_factor, 1);
        assert_eq!(bridge.topics[0].producers, ["*"]);
        assert_eq!(bridge.topics[0].consumers, ["default"]);
        assert_eq!(bridge.topics[0].prefetch_records, 500);
        assert_eq!(bridge.topics[0].delivery, Delivery::AtMostOnce);
        assert_eq!(bridge.security, KafkaSecurity::default());
        assert_eq!(bridge.group_commit_interval, Some(Duration::from_secs(1)));
    }

    #[test]
    fn delivery_and_prefetch_keys_reach_the_bridge() {
        let config = Config::from_toml(
            "default_pool = 'events'\n\
             [pools.events]\nkind = 'kafka'\nnodes = ['127.0.0.1:9092']\nprefetch_records = 9\n\
             [pools.events.topics.orders]\npartitions = 1\nconsumers = ['*']\nprefetch_records = 7\n\
             prefetch_bytes = 4096\ndelivery = 'at_least_once'\nack_timeout_ms = 250\n\
             group_delivery = { default = 'at_most_once' }\n\
             [pools.events.topics.audit]\npartitions = 1\n",
        )
        .unwrap();
        let bridge = bridge_config(kafka_pool(&config)).unwrap();
        // Topics come in name order: audit takes the pool's prefetch_records, orders its own.
        let audit = &bridge.topics[0];
        assert_eq!(
            (audit.prefetch_records, audit.prefetch_bytes),
            (9, 512 * 1024)
        );
        let topic = &bridge.topics[1];
        assert_eq!((topic.prefetch_records, topic.prefetch_bytes), (7, 4096));
        assert_eq!(topic.ack_timeout, Duration::from_millis(250));
        assert_eq!(topic.delivery_for("billing"), Delivery::AtLeastOnce);
        assert_eq!(topic.delivery_for("default"), Delivery::AtMostOnce);
        for (bad, key) in [
            ("prefetch_records = 0", "prefetch_records"),
            ("prefetch_records = 10001", "prefetch_records"),
            ("prefetch_bytes = 0", "prefetch_bytes"),
            ("ack_timeout_ms = 0", "ack_timeout_ms"),
            ("delivery = 'exactly_once'", "delivery"),
        ] {
            let error = Config::from_toml(&format!(
                "default_pool = 'events'\n[pools.events]\nkind = 'kafka'\nnodes = ['h:9092']\n\
                 [pools.events.topics.orders]\npartitions = 1\n{bad}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(error.contains(key), "{bad}: {error}");
        }
        let error = Config::from_toml(
            "default_pool = 'events'\n[pools.events]\nkind = 'kafka'\nnodes = ['h:9092']\n\
             prefetch_bytes = 0\n[pools.events.topics.orders]\npartitions = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("pools.events.prefetch_bytes"), "{error}");
    }

    #[test]
    fn security_and_group_keys_reach_the_bridge() {
        let config = Config::from_toml(
            "default_pool = 'events'\n\
             [pools.events]\nkind = 'kafka'\nnodes = ['127.0.0.1:9093']\n\
             username = 'app'\npassword = 'pw'\nsasl_mechanism = 'scram-sha-256'\n\
             tls = true\nca_file = '/etc/ca.pem'\ncert_file = '/etc/c.pem'\nkey_file = '/etc/c.key'\n\
             group_commit_ms = 250\ngroup_ids = { default = 'billing' }\n\
             [pools.events.topics.orders]\npartitions = 1\nconsumers = ['default']\n",
        )
        .unwrap();
        let bridge = bridge_config(kafka_pool(&config)).unwrap();
        let sasl = bridge.security.sasl.unwrap();
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha256);
        assert_eq!(
            (sasl.username.as_str(), sasl.password.as_str()),
            ("app", "pw")
        );
        let tls = bridge.security.tls.unwrap();
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert_eq!(
            tls.key_file.as_deref(),
            Some(std::path::Path::new("/etc/c.key"))
        );
        assert_eq!(
            bridge.group_commit_interval,
            Some(Duration::from_millis(250))
        );
        assert_eq!(bridge.group_ids["default"], "billing");
    }
}
