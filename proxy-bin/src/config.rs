//! Configuration: the TOML file, `RKPROXY_` environment overrides, and validation.
//!
//! Figment merges, in order: built-in defaults, the TOML file (if any), command-line values, then environment
//! variables prefixed with `RKPROXY_` (nested keys are separated by `__`, for example
//! `RKPROXY_TIMEOUTS__CONNECT_MS=500`). The result is deserialized with `deny_unknown_fields` and then checked by
//! [`Config::validate`], so a bad file fails at start with a message that names the key and the problem.
//!
//! `examples/rkproxy.toml` at the repository root documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Everything the proxy needs to run, validated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the proxy listens on, for example `127.0.0.1:7480`.
    pub listen: String,
    /// Address of a TLS listener beside `listen` (both serve the same pools and tenants); needs `[tls]`.
    /// Read at start only, like `listen`; the certificate files are read again at every reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_listen: Option<String>,
    /// The certificate `tls_listen` presents, and the CA that client certificates must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsConfig>,
    /// The pool that clients use.
    pub default_pool: String,
    /// Worker threads, each an event loop with its own listener and backend connections; 0 means one per CPU
    /// core. One thread is the fastest shape when the proxy shares a small machine with Redis and its clients.
    #[serde(default = "default_worker_threads")]
    pub worker_threads: usize,
    /// Log filter in `tracing_subscriber::EnvFilter` syntax; `RUST_LOG` wins when set.
    #[serde(default = "default_log")]
    pub log: String,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub client_limits: ClientLimits,
    /// Bytes the whole process may hold for its clients (read buffers, requests in flight, replies waiting);
    /// over it the proxy reads no new request until they drain. 0 = no limit.
    #[serde(default)]
    pub max_memory: usize,
    /// The big-request lane: separate backend connections for big requests and big replies.
    #[serde(default)]
    pub big_requests: BigRequests,
    /// Backend pools by name.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolConfig>,
    /// Tenants by name. With none configured, clients need no AUTH and use `default_pool`; with any, every
    /// client must authenticate as one (see tenant-policy's README for the keys).
    #[serde(default)]
    pub tenants: tenant_policy::TenantsConfig,
    /// `host:port` serving `GET /metrics` (Prometheus text format); unset: no metrics endpoint.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// `text` (default) or `json` (one JSON object per line).
    #[serde(default)]
    pub log_format: LogFormat,
    /// Count per tenant, pool and command (RKPROXY STATS, INFO proxy, /metrics, the slow log); on by default.
    #[serde(default = "default_stats")]
    pub stats: bool,
    #[serde(default)]
    pub slowlog: SlowlogConfig,
}

fn default_stats() -> bool {
    true
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The proxy's slow log (`SLOWLOG GET | LEN | RESET`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlowlogConfig {
    /// Requests whose reply took at least this long (from dispatch to the backend until the reply reached the
    /// proxy) are logged; negative turns the log off, 0 logs every request (as Redis's
    /// `slowlog-log-slower-than`).
    pub slower_than_us: i64,
    /// The newest entries kept.
    pub max_len: usize,
}

impl Default for SlowlogConfig {
    fn default() -> Self {
        SlowlogConfig {
            slower_than_us: 10_000,
            max_len: 128,
        }
    }
}

fn default_worker_threads() -> usize {
    1
}

fn default_log() -> String {
    "info".to_owned()
}

/// Timeouts. Every wait in the proxy has one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Connecting to a backend, including its AUTH and SELECT handshake.
    pub connect_ms: u64,
    /// How long a shared backend connection that owes replies may make no progress (no reply bytes read, no
    /// request bytes written) before the backend counts as unavailable. A slow reply that keeps arriving, or a
    /// big request that keeps leaving, is progress. Blocking commands (BLPOP, ...) run on dedicated
    /// connections and are exempt.
    pub command_ms: u64,
    /// The same allowance while a script or function (EVAL, EVALSHA, FCALL, ...) waits for its reply on the
    /// connection, or on any shared connection of this process to the same server: Redis answers no one until
    /// the script ends. Never shorter than `command_ms`.
    pub slow_command_ms: u64,
    /// With tenants configured: a connection that has not authenticated within this time is closed, whatever
    /// it sends, and even while the proxy waits to write replies it does not read.
    pub auth_ms: u64,
    /// An authenticated client that sends nothing for this long is closed (0: never, like Redis's `timeout`).
    /// Subscribers and clients waiting in a blocking command are exempt.
    pub idle_ms: u64,
    /// On SIGTERM/SIGINT (or [`Proxy::shutdown`](crate::Proxy::shutdown)): how long requests already read may
    /// take to be answered before the remaining connections are closed.
    pub shutdown_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 1000,
            command_ms: 1000,
            slow_command_ms: 30_000,
            auth_ms: 10_000,
            idle_ms: 0,
            shutdown_ms: 10_000,
        }
    }
}

/// Per-client bounds that keep one client from hurting the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientLimits {
    /// Requests a client may have in flight before the proxy stops reading from it (backpressure).
    pub max_pending_requests: usize,
    /// Bytes of a client's requests in flight and replies not yet written at which the proxy stops reading
    /// from it until they drain (a request bigger than this is still read, alone).
    pub max_pending_bytes: usize,
    /// Bytes of replies waiting to be written above which a client is disconnected (as Redis's
    /// `client-output-buffer-limit`); 0 = no limit. One bulk string bigger than this is still written when
    /// nothing else waits.
    pub max_output_bytes: usize,
    /// Largest single bulk string accepted from a client, in bytes (Redis's proto-max-bulk-len).
    pub max_bulk_bytes: usize,
    /// Most elements in one request array.
    pub max_arguments: usize,
    /// Most client connections at once; new ones beyond it get an error and are closed.
    pub max_connections: usize,
    /// With tenants configured: most connections at once that have not authenticated yet; new ones beyond it
    /// get an error and are closed. They never hold a tenant's `max_connections` place (taken at AUTH).
    pub max_unauthenticated: usize,
    /// With tenants configured: wrong passwords one connection may send; the last of them is answered with an
    /// error and the connection is closed.
    pub auth_max_failures: u32,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_pending_requests: 1024,
            max_pending_bytes: 1024 * 1024,
            max_output_bytes: 256 * 1024 * 1024,
            max_bulk_bytes: 512 * 1024 * 1024,
            max_arguments: 1024 * 1024,
            max_connections: 10_000,
            max_unauthenticated: 1024,
            auth_max_failures: 5,
        }
    }
}

/// The big-request lane (`[big_requests]`): a request of at least `threshold_bytes`, or one for a key recently
/// seen with a reply (or a value written) that big, goes to backend connections of its own, so a big transfer
/// never queues in front of the small requests of other clients on a shared connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BigRequests {
    /// A request (or reply) this big, in bytes, or bigger, is big.
    pub threshold_bytes: usize,
    /// Lane connections per backend node (per worker, db and protocol, like the shared ones); each carries one
    /// big request at a time.
    pub connections_per_node: usize,
    /// Big requests that may wait for a free lane connection of one node; one more is refused at once.
    pub max_queued: usize,
    /// How long a big request may wait for a free lane connection before it is refused.
    pub queue_wait_ms: u64,
}

impl Default for BigRequests {
    fn default() -> Self {
        BigRequests {
            threshold_bytes: 256 * 1024,
            connections_per_node: 2,
            max_queued: 64,
            queue_wait_ms: 5000,
        }
    }
}

impl BigRequests {
    pub fn queue_wait(&self) -> Duration {
        Duration::from_millis(self.queue_wait_ms)
    }

    /// Every key in range. The threshold is at least 1 KiB: below that, ordinary requests would take the lane
    /// and queue behind each other.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.threshold_bytes < 1024 {
            return Err(invalid(
                "big_requests.threshold_bytes",
                "must be at least 1024",
            ));
        }
        if self.connections_per_node == 0 || self.connections_per_node > 64 {
            return Err(invalid(
                "big_requests.connections_per_node",
                "must be between 1 and 64",
            ));
        }
        if self.queue_wait_ms == 0 {
            return Err(invalid("big_requests.queue_wait_ms", "must be above 0"));
        }
        Ok(())
    }
}

/// `[tls]`: the TLS listener's certificate and key (PEM files), and for mutual TLS the CA of client
/// certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// The certificate chain clients see, leaf first.
    pub cert_file: String,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// Mutual TLS: every client must present a certificate signed by this CA (a tenant with `tls_subject`
    /// is then logged in by its certificate, without AUTH).
    #[serde(default)]
    pub client_ca_file: Option<String>,
    /// A client that has not finished its handshake by then is closed.
    #[serde(default = "default_handshake_ms")]
    pub handshake_ms: u64,
}

fn default_handshake_ms() -> u64 {
    5000
}

/// What sits behind a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    /// One standalone redis-server.
    Standalone,
    /// A Redis Cluster, reached through seed nodes.
    Cluster,
    /// Apache Kafka, reached through bootstrap brokers and served as KPUSH/KPOP/KPARTITIONS/KOFFSET.
    Kafka,
}

/// One backend pool. Its `Debug` shows no password.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub kind: PoolKind,
    /// `host:port` or `redis://host:port`; a standalone pool has exactly one.
    pub nodes: Vec<String>,
    /// ACL user for the backend handshake; needs `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// Backend password (`AUTH password`, or `AUTH username password` with `username`).
    #[serde(default)]
    pub password: Option<String>,
    /// Shared connections per backend node (per db and protocol version); clients are spread across them.
    #[serde(default = "default_connections_per_node")]
    pub connections_per_node: usize,
    /// Cluster pools: where read-only commands go.
    #[serde(default)]
    pub read_from: ReadPolicy,
    /// Cluster pools: how often the slot map is re-read even without a MOVED, in milliseconds.
    #[serde(default = "default_refresh_ms")]
    pub refresh_ms: u64,
    /// Kafka pools: the topics served, by name (`[pools.NAME.topics.TOPIC]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topics: BTreeMap<String, KafkaTopicConfig>,
    /// Kafka pools: how long a produce batch waits for more KPUSHes before it is sent (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linger_ms: Option<u64>,
    /// Kafka pools: the longest wait for one Kafka or offset-store round trip (default 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
    /// Kafka pools: the most records in one produce request (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_records: Option<usize>,
    /// Kafka pools: the most value bytes in one produce request (default 921600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_bytes: Option<usize>,
    /// Kafka pools: how long a fetch may wait on the broker when nothing is new (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_max_wait_ms: Option<u64>,
    /// Kafka pools: the most bytes one `KPOP topic partition offset count` asks for (default 1048576).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_max_bytes: Option<u32>,
    /// Kafka pools: the client id sent to Kafka (default `rkproxy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Kafka pools: how long to wait between attempts to connect while Kafka is unreachable (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_retry_ms: Option<u64>,
    /// Kafka pools: where proxy-managed KPOP offsets live. Unset: in this process's memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsets: Option<KafkaOffsetsConfig>,
    /// Kafka pools: `prefetch_records` of the topics that do not set their own (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch_records: Option<usize>,
    /// Kafka pools: `prefetch_bytes` of the topics that do not set their own (default 524288).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch_bytes: Option<usize>,
    /// Kafka pools with `username`/`password`: the SASL mechanism, `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`
    /// (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<String>,
    /// Kafka pools: how often the cursors of `KPOP topic` are committed to Kafka as consumer-group offsets, in
    /// milliseconds (default 1000); 0 commits none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_commit_ms: Option<u64>,
    /// Kafka pools: the consumer group id (in Kafka) of a tenant's cursors, by tenant; default the tenant name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_ids: BTreeMap<String, String>,
    /// Connect to the nodes over TLS (Redis pools: every node, including cluster nodes learned from the
    /// cluster; Kafka pools: the brokers); needs `ca_file`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// With `tls`: the CA (PEM) that signs the nodes' certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// With `tls`: a client certificate (PEM) for nodes that require one, with `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// With `tls`: the name the nodes' certificates must carry. Unset: each node's host (name or IP address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// What `Debug` shows in place of a password, so a configuration printed for diagnosis leaks no secret.
const REDACTED: &str = "<redacted>";

fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| REDACTED)
}

impl std::fmt::Debug for PoolConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolConfig")
            .field("kind", &self.kind)
            .field("nodes", &self.nodes)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("connections_per_node", &self.connections_per_node)
            .field("read_from", &self.read_from)
            .field("refresh_ms", &self.refresh_ms)
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
            .field("server_name", &self.server_name)
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

/// Where a cluster pool sends read-only commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadPolicy {
    /// Every command goes to the slot's master (always up to date).
    #[default]
    Master,
    /// Read-only commands go to one of the slot's replicas when it has any (reads may lag behind writes).
    PreferReplica,
}

fn default_refresh_ms() -> u64 {
    10_000
}

fn default_connections_per_node() -> usize {
    1
}

/// A configuration problem, with the key it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Figment(Box<figment::Error>),
    #[error("config key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> Self {
        ConfigError::Figment(Box::new(error))
    }
}

pub(crate) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// Values given on the command line; they override the file and are overridden by the environment.
#[derive(Debug, Default, Clone)]
pub struct CommandLineOverrides {
    pub listen: Option<String>,
    /// `--backend redis://host:port`: a standalone pool named `default` that becomes the default pool.
    pub backend: Option<String>,
}

impl Config {
    /// Loads and validates the configuration from an optional TOML file, command-line values and `RKPROXY_*`.
    pub fn load(
        file: Option<&Path>,
        overrides: &CommandLineOverrides,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::new().merge(Serialized::defaults(Defaults::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        if let Some(listen) = &overrides.listen {
            figment = figment.merge(Serialized::default("listen", listen));
        }
        if let Some(backend) = &overrides.backend {
            let pool = PoolConfig {
                kind: PoolKind::Standalone,
                nodes: vec![backend.clone()],
                username: None,
                password: None,
                connections_per_node: default_connections_per_node(),
                read_from: ReadPolicy::Master,
                refresh_ms: default_refresh_ms(),
                topics: BTreeMap::new(),
                linger_ms: None,
                request_timeout_ms: None,
                max_batch_records: None,
                max_batch_bytes: None,
                fetch_max_wait_ms: None,
                fetch_max_bytes: None,
                client_id: None,
                connect_retry_ms: None,
                offsets: None,
                prefetch_records: None,
                prefetch_bytes: None,
                sasl_mechanism: None,
                group_commit_ms: None,
                group_ids: BTreeMap::new(),
                tls: false,
                ca_file: None,
                cert_file: None,
                key_file: None,
                server_name: None,
            };
            figment = figment
                .merge(Serialized::default("pools.default", pool))
                .merge(Serialized::default("default_pool", "default"));
        }
        // `RKPROXY_TEST_*` variables belong to the test harness, not to the proxy.
        let env = Env::prefixed("RKPROXY_")
            .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"))
            .split("__");
        let config: Config = figment.merge(env).extract()?;
        config.validate()?;
        Ok(config)
    }

    /// Loads and validates a configuration from TOML text alone (no environment), for tests and embedders.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = Figment::new()
            .merge(Serialized::defaults(Defaults::default()))
            .merge(Toml::string(text))
            .extract()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: addresses parse, pools exist and have the right shape.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if self.pools.is_empty() {
            return Err(invalid(
                "pools",
                "no pool is configured (add [pools.NAME] or pass --backend)",
            ));
        }
        if !self.pools.contains_key(&self.default_pool) {
            return Err(invalid(
                "default_pool",
                format!(
                    "pool '{}' is not defined (defined: {})",
                    self.default_pool,
                    self.pools.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        for (name, pool) in &self.pools {
            let key = format!("pools.{name}");
            if pool.kind == PoolKind::Kafka {
                self.validate_kafka_pool(name, pool)?;
                continue;
            }
            if let Some(field) = pool.kafka_only_key() {
                return Err(invalid(
                    format!("{key}.{field}"),
                    "only Kafka pools (kind = \"kafka\") have this key",
                ));
            }
            if pool.nodes.is_empty() {
                return Err(invalid(
                    format!("{key}.nodes"),
                    "must list at least one node",
                ));
            }
            if pool.kind == PoolKind::Standalone && pool.nodes.len() != 1 {
                return Err(invalid(
                    format!("{key}.nodes"),
                    format!(
                        "a standalone pool has exactly one node, found {}",
                        pool.nodes.len()
                    ),
                ));
            }
            if pool.kind == PoolKind::Cluster && pool.refresh_ms < 100 {
                return Err(invalid(format!("{key}.refresh_ms"), "must be at least 100"));
            }
            if pool.kind == PoolKind::Standalone && pool.read_from != ReadPolicy::Master {
                return Err(invalid(
                    format!("{key}.read_from"),
                    "only cluster pools have replicas to read from",
                ));
            }
            for node in &pool.nodes {
                parse_node_address(node).map_err(|problem| {
                    invalid(format!("{key}.nodes"), format!("'{node}': {problem}"))
                })?;
            }
            if pool.username.is_some() && pool.password.is_none() {
                return Err(invalid(
                    format!("{key}.password"),
                    "a username needs a password",
                ));
            }
            if pool.connections_per_node == 0 || pool.connections_per_node > 64 {
                return Err(invalid(
                    format!("{key}.connections_per_node"),
                    "must be between 1 and 64",
                ));
            }
            pool.validate_tls(&key)?;
        }
        self.validate_tls()?;
        if self.timeouts.connect_ms == 0 {
            return Err(invalid("timeouts.connect_ms", "must be above 0"));
        }
        if self.timeouts.auth_ms == 0 {
            return Err(invalid("timeouts.auth_ms", "must be above 0"));
        }
        self.build_tenants()?;
        if self.timeouts.command_ms == 0 {
            return Err(invalid("timeouts.command_ms", "must be above 0"));
        }
        if self.timeouts.slow_command_ms < self.timeouts.command_ms {
            return Err(invalid(
                "timeouts.slow_command_ms",
                "must not be below timeouts.command_ms",
            ));
        }
        if self.client_limits.max_pending_requests == 0 {
            return Err(invalid(
                "client_limits.max_pending_requests",
                "must be above 0",
            ));
        }
        if self.client_limits.max_pending_bytes == 0 {
            return Err(invalid(
                "client_limits.max_pending_bytes",
                "must be above 0",
            ));
        }
        if self.client_limits.max_connections == 0 {
            return Err(invalid("client_limits.max_connections", "must be above 0"));
        }
        if self.client_limits.max_unauthenticated == 0 {
            return Err(invalid(
                "client_limits.max_unauthenticated",
                "must be above 0",
            ));
        }
        if let Some(metrics) = &self.metrics_listen {
            metrics.parse::<SocketAddr>().map_err(|e| {
                invalid(
                    "metrics_listen",
                    format!("'{metrics}' is not host:port: {e}"),
                )
            })?;
        }
        if self.slowlog.max_len > 100_000 {
            return Err(invalid("slowlog.max_len", "must be at most 100000"));
        }
        if self.client_limits.auth_max_failures == 0 {
            return Err(invalid(
                "client_limits.auth_max_failures",
                "must be above 0",
            ));
        }
        self.big_requests.validate()
    }

    /// The tenants, validated against the pools (`None` when no tenant is configured).
    pub fn build_tenants(&self) -> Result<Option<tenant_policy::Tenants>, ConfigError> {
        if self.tenants.is_empty() {
            return Ok(None);
        }
        let pools = self
            .pools
            .iter()
            .map(|(name, pool)| {
                let info = match pool.kind {
                    PoolKind::Standalone => tenant_policy::PoolInfo::standalone(),
                    PoolKind::Cluster => tenant_policy::PoolInfo::cluster(),
                    // Kafka has no databases; db 0 is all a tenant of a Kafka pool can have.
                    PoolKind::Kafka => tenant_policy::PoolInfo::with_databases(1),
                };
                (name.clone(), info)
            })
            .collect();
        self.check_backend_users_have_redis_pools()?;
        tenant_policy::Tenants::new(&self.tenants, &pools)
            .map(Some)
            .map_err(|error| invalid(error.key.clone(), error.problem.clone()))
    }

    /// A tenant's `backend_user` is a Redis ACL user: a tenant configured only on Kafka pools has no
    /// connection that would log in as it.
    fn check_backend_users_have_redis_pools(&self) -> Result<(), ConfigError> {
        for (name, tenant) in &self.tenants {
            if tenant.backend_user.is_none() {
                continue;
            }
            let on_redis = std::iter::once(&tenant.pool)
                .chain(&tenant.pools)
                .filter_map(|pool| self.pools.get(pool))
                .any(|pool| pool.kind != PoolKind::Kafka);
            if !on_redis {
                return Err(invalid(
                    format!("tenants.{name}.backend_user"),
                    "the tenant is configured on no Redis pool (Kafka pools have no Redis ACL user); \
                     remove backend_user and backend_password",
                ));
            }
        }
        Ok(())
    }

    /// Checks a `kind = "kafka"` pool: brokers, settings, topics, who may produce and consume, the offset store.
    fn validate_kafka_pool(&self, name: &str, pool: &PoolConfig) -> Result<(), ConfigError> {
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
        if pool.server_name.is_some() {
            return Err(invalid(
                format!("{key}.server_name"),
                "Kafka brokers' certificates are checked against the names the brokers announce",
            ));
        }
        if pool.read_from != ReadPolicy::Master {
            return Err(invalid(
                format!("{key}.read_from"),
                "only cluster pools have replicas to read from",
            ));
        }
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
        if pool.topics.is_empty() {
            return Err(invalid(
                format!("{key}.topics"),
                "a Kafka pool serves only its configured topics; add at least one [pools.NAME.topics.TOPIC]",
            ));
        }
        check_prefetch(&key, pool.prefetch_records, pool.prefetch_bytes)?;
        for (topic, settings) in &pool.topics {
            let topic_key = format!("{key}.topics.{topic}");
            check_topic_name(topic).map_err(|problem| invalid(&topic_key, problem.to_string()))?;
            if settings.partitions < 1 {
                return Err(invalid(
                    format!("{topic_key}.partitions"),
                    "must be at least 1",
                ));
            }
            if settings.replication_factor < 1 && settings.replication_factor != -1 {
                return Err(invalid(
                    format!("{topic_key}.replication_factor"),
                    "must be at least 1 (or -1 for the broker's default)",
                ));
            }
            check_prefetch(
                &topic_key,
                settings.prefetch_records,
                settings.prefetch_bytes,
            )?;
            if settings.ack_timeout_ms == Some(0) {
                return Err(invalid(
                    format!("{topic_key}.ack_timeout_ms"),
                    "must be above 0",
                ));
            }
            for group in settings.group_delivery.keys() {
                self.check_kafka_tenant(name, group).map_err(|problem| {
                    invalid(format!("{topic_key}.group_delivery"), problem.to_string())
                })?;
            }
            for (field, names) in [
                ("producers", &settings.producers),
                ("consumers", &settings.consumers),
            ] {
                for tenant in names {
                    self.check_kafka_tenant(name, tenant).map_err(|problem| {
                        invalid(format!("{topic_key}.{field}"), problem.to_string())
                    })?;
                }
            }
        }
        if let Some(offsets) = &pool.offsets {
            self.check_offsets(&format!("{key}.offsets"), offsets)?;
        }
        Ok(())
    }

    /// A producer or consumer name must be `*` or a tenant that can reach the pool (`default` without tenants).
    fn check_kafka_tenant(&self, pool: &str, tenant: &str) -> Result<(), KafkaTenantError> {
        if tenant == "*" {
            return Ok(());
        }
        if self.tenants.is_empty() {
            if tenant == DEFAULT_KAFKA_TENANT {
                return Ok(());
            }
            return Err(KafkaTenantError::NoTenants(tenant.to_owned()));
        }
        let Some(config) = self.tenants.get(tenant) else {
            return Err(KafkaTenantError::Unknown {
                tenant: tenant.to_owned(),
                known: self.tenants.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        if config.pool == pool || config.pools.iter().any(|p| p == pool) || config.admin {
            Ok(())
        } else {
            Err(KafkaTenantError::Unreachable {
                tenant: tenant.to_owned(),
                pool: pool.to_owned(),
            })
        }
    }

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
            (Some(address), None) => {
                parse_node_address(address).map_err(|problem| {
                    invalid(format!("{key}.redis"), format!("'{address}': {problem}"))
                })?;
                if offsets.username.is_some() && offsets.password.is_none() {
                    return Err(invalid(
                        format!("{key}.password"),
                        "a username needs a password",
                    ));
                }
            }
            (None, Some(pool)) => {
                match self.pools.get(pool) {
                    Some(found) if found.kind == PoolKind::Standalone => {}
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
            }
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

    /// `tls_listen` parses and has `[tls]`; tenants' `tls_subject`s parse, are unique and have a client CA.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        if let Some(listen) = &self.tls_listen {
            listen.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "tls_listen",
                    format!("'{listen}' is not an ip:port address"),
                )
            })?;
            if self.tls.is_none() {
                return Err(invalid(
                    "tls",
                    "tls_listen needs [tls] with cert_file and key_file",
                ));
            }
        }
        if self.tls.as_ref().is_some_and(|tls| tls.handshake_ms == 0) {
            return Err(invalid("tls.handshake_ms", "must be above 0"));
        }
        let mut bound = Vec::new();
        for (name, tenant) in &self.tenants {
            let Some(text) = &tenant.tls_subject else {
                continue;
            };
            let key = format!("tenants.{name}.tls_subject");
            let subject = crate::subject::Subject::parse(text)
                .map_err(|problem| invalid(&key, problem.to_string()))?;
            if self
                .tls
                .as_ref()
                .and_then(|tls| tls.client_ca_file.as_ref())
                .is_none()
            {
                return Err(invalid(
                    key,
                    "needs tls.client_ca_file (clients prove their subject with a certificate)",
                ));
            }
            if bound.contains(&subject) {
                return Err(invalid(
                    key,
                    format!("another tenant is bound to '{subject}'"),
                ));
            }
            bound.push(subject);
        }
        Ok(())
    }

    /// The TLS listener's address, if there is one.
    pub fn tls_listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.tls_listen
            .as_ref()
            .map(|listen| {
                listen.parse().map_err(|_| {
                    invalid(
                        "tls_listen",
                        format!("'{listen}' is not an ip:port address"),
                    )
                })
            })
            .transpose()
    }

    /// The listen address as a socket address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            invalid(
                "listen",
                format!("'{}' is not an ip:port address", self.listen),
            )
        })
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.timeouts.connect_ms)
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.timeouts.command_ms)
    }
}

/// The tenant name Kafka permissions use when no tenants are configured.
pub const DEFAULT_KAFKA_TENANT: &str = "default";

impl PoolConfig {
    /// The first TLS key set on this pool.
    fn tls_key(&self) -> Option<&'static str> {
        [
            ("tls", self.tls),
            ("ca_file", self.ca_file.is_some()),
            ("cert_file", self.cert_file.is_some()),
            ("key_file", self.key_file.is_some()),
            ("server_name", self.server_name.is_some()),
        ]
        .into_iter()
        .find_map(|(field, set)| set.then_some(field))
    }

    /// `tls = true` needs `ca_file`; the other TLS keys need `tls = true`; a client certificate needs its key.
    fn validate_tls(&self, key: &str) -> Result<(), ConfigError> {
        if !self.tls {
            return match self.tls_key() {
                Some(field) => Err(invalid(format!("{key}.{field}"), "needs tls = true")),
                None => Ok(()),
            };
        }
        if self.ca_file.is_none() {
            return Err(invalid(
                format!("{key}.ca_file"),
                "tls = true needs the CA that signs the nodes' certificates",
            ));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(invalid(
                format!("{key}.cert_file"),
                "a client certificate needs both cert_file and key_file",
            ));
        }
        Ok(())
    }

    /// The first Kafka-only key set on this pool, for the error when a Redis pool has one.
    fn kafka_only_key(&self) -> Option<&'static str> {
        [
            ("topics", !self.topics.is_empty()),
            ("linger_ms", self.linger_ms.is_some()),
            ("request_timeout_ms", self.request_timeout_ms.is_some()),
            ("max_batch_records", self.max_batch_records.is_some()),
            ("max_batch_bytes", self.max_batch_bytes.is_some()),
            ("fetch_max_wait_ms", self.fetch_max_wait_ms.is_some()),
            ("fetch_max_bytes", self.fetch_max_bytes.is_some()),
            ("client_id", self.client_id.is_some()),
            ("connect_retry_ms", self.connect_retry_ms.is_some()),
            ("offsets", self.offsets.is_some()),
            ("prefetch_records", self.prefetch_records.is_some()),
            ("prefetch_bytes", self.prefetch_bytes.is_some()),
            ("sasl_mechanism", self.sasl_mechanism.is_some()),
            ("group_commit_ms", self.group_commit_ms.is_some()),
            ("group_ids", !self.group_ids.is_empty()),
        ]
        .into_iter()
        .find_map(|(field, set)| set.then_some(field))
    }
}

/// A producer or consumer of a Kafka topic that is not `*` nor a tenant that can reach the pool.
#[derive(Debug, thiserror::Error)]
enum KafkaTenantError {
    #[error(
        "'{0}' is not a tenant: without [tenants] every client is '{default}' (or use \"*\")",
        default = DEFAULT_KAFKA_TENANT
    )]
    NoTenants(String),
    #[error("'{tenant}' is not a configured tenant (tenants: {known})")]
    Unknown { tenant: String, known: String },
    #[error(
        "tenant '{tenant}' cannot reach pool '{pool}': make it the tenant's `pool` or add it to its `pools`"
    )]
    Unreachable { tenant: String, pool: String },
}

/// Why a node, broker or offset-store address is not `host:port`.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("put credentials in `username`/`password`, not in the address")]
    Credentials,
    #[error("expected host:port")]
    NoPort,
    #[error("the host is empty")]
    EmptyHost,
    #[error("port '{0}' is not a number from 1 to 65535")]
    BadPort(String),
    #[error("port 0 is not allowed")]
    PortZero,
    #[error("write a Kafka broker as host:port, without a scheme")]
    KafkaScheme,
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
fn check_kafka_sasl(key: &str, pool: &PoolConfig) -> Result<(), ConfigError> {
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
fn check_kafka_tls(key: &str, pool: &PoolConfig) -> Result<(), ConfigError> {
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

/// Defaults for the keys that have one, as a figment layer (the rest must come from the file or the command line).
#[derive(Serialize)]
struct Defaults {
    listen: &'static str,
    default_pool: &'static str,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            listen: "127.0.0.1:7480",
            default_pool: "default",
        }
    }
}

/// Accepts `host:port` and `redis://host:port`; returns `host:port`.
pub fn parse_node_address(node: &str) -> Result<String, AddressError> {
    let address = node.strip_prefix("redis://").unwrap_or(node);
    if address.contains('@') {
        return Err(AddressError::Credentials);
    }
    let address = address.trim_end_matches('/');
    let (host, port) = address.rsplit_once(':').ok_or(AddressError::NoPort)?;
    if host.is_empty() {
        return Err(AddressError::EmptyHost);
    }
    match port.parse::<u16>() {
        Ok(0) => return Err(AddressError::PortZero),
        Ok(_) => {}
        Err(_) => return Err(AddressError::BadPort(port.to_owned())),
    }
    Ok(address.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml: &str) -> Result<Config, ConfigError> {
        Config::from_toml(toml)
    }

    #[test]
    fn debug_output_shows_no_password() {
        let config = load_str(
            "default_pool = 'main'\n\
             [pools.main]\nkind = 'standalone'\nnodes = ['h:1']\npassword = 'pool-secret-1'\n\
             [pools.events]\nkind = 'kafka'\nnodes = ['h:9092']\n\
             offsets = { redis = 'h:2', password = 'offsets-secret-2' }\n\
             username = 'app'\npassword = 'kafka-secret-4'\n\
             [pools.events.topics.t]\npartitions = 1\n\
             [tenants.shop]\npassword = 'tenant-secret-3'\npool = 'main'\n\
             backend_user = 'acl-shop'\nbackend_password = 'backend-secret-4'\n",
        )
        .unwrap();
        let shown = format!("{config:?}");
        for secret in [
            "pool-secret-1",
            "offsets-secret-2",
            "tenant-secret-3",
            "backend-secret-4",
            "kafka-secret-4",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn kafka_sasl_and_tls_keys_are_checked() {
        let pool = |keys: &str| {
            format!(
                "default_pool = 'events'\n[pools.events]\nkind = 'kafka'\nnodes = ['h:9092']\n{keys}\n\
                 [pools.events.topics.t]\npartitions = 1\n"
            )
        };
        let error_of = |keys: &str| load_str(&pool(keys)).unwrap_err().to_string();
        assert!(load_str(&pool(
            "username = 'u'\npassword = 'p'\nsasl_mechanism = 'PLAIN'"
        ))
        .is_ok());
        assert!(load_str(&pool("tls = true\nca_file = '/ca.pem'")).is_ok());
        let error = error_of("username = 'u'");
        assert!(error.contains("pools.events.password"), "{error}");
        let error = error_of("username = 'u'\npassword = 'p'\nsasl_mechanism = 'GSSAPI'");
        assert!(error.contains("'GSSAPI' is not one of PLAIN"), "{error}");
        let error = error_of("sasl_mechanism = 'PLAIN'");
        assert!(
            error.contains("SASL needs `username` and `password`"),
            "{error}"
        );
        let error = error_of("tls = true");
        assert!(error.contains("pools.events.ca_file"), "{error}");
        let error = error_of("ca_file = '/ca.pem'");
        assert!(error.contains("set `tls = true`"), "{error}");
        let error = error_of("tls = true\nca_file = '/ca.pem'\ncert_file = '/c.pem'");
        assert!(error.contains("both `cert_file` and `key_file`"), "{error}");
        let error = error_of("group_ids = { nobody = 'g' }");
        assert!(error.contains("pools.events.group_ids.nobody"), "{error}");
    }

    #[test]
    fn operations_keys_have_defaults_and_are_checked() {
        let pool = "[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n";
        let config = load_str(&format!("default_pool = 'main'\n{pool}")).unwrap();
        assert_eq!(config.slowlog.slower_than_us, 10_000);
        assert_eq!(config.slowlog.max_len, 128);
        assert_eq!(config.log_format, LogFormat::Text);
        assert!(config.stats);
        assert!(config.metrics_listen.is_none());
        let config = load_str(&format!(
            "default_pool = 'main'\nlog_format = 'json'\nmetrics_listen = '127.0.0.1:9100'\n{pool}"
        ))
        .unwrap();
        assert_eq!(config.log_format, LogFormat::Json);
        let error = load_str(&format!(
            "default_pool = 'main'\nmetrics_listen = 'nowhere'\n{pool}"
        ))
        .unwrap_err()
        .to_string();
        assert!(error.contains("metrics_listen"), "{error}");
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let config = load_str(
            "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['redis://127.0.0.1:6379']\n",
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:7480");
        assert_eq!(config.timeouts.connect_ms, 1000);
        assert_eq!(config.pools["main"].connections_per_node, 1);
    }

    #[test]
    fn big_requests_have_defaults_and_are_checked() {
        let pool = "[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n";
        let config = load_str(&format!("default_pool = 'main'\n{pool}")).unwrap();
        assert_eq!(config.big_requests.threshold_bytes, 262_144);
        assert_eq!(config.big_requests.connections_per_node, 2);
        assert_eq!(config.big_requests.max_queued, 64);
        assert_eq!(config.big_requests.queue_wait_ms, 5000);
        for (setting, key) in [
            ("threshold_bytes = 100", "big_requests.threshold_bytes"),
            (
                "connections_per_node = 0",
                "big_requests.connections_per_node",
            ),
            ("queue_wait_ms = 0", "big_requests.queue_wait_ms"),
        ] {
            let error = load_str(&format!(
                "default_pool = 'main'\n[big_requests]\n{setting}\n{pool}"
            ))
            .unwrap_err()
            .to_string();
            assert!(error.contains(key), "{setting}: {error}");
        }
    }

    #[test]
    fn scripts_get_a_longer_allowance_never_a_shorter_one() {
        let pool = "[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n";
        let config = load_str(&format!("default_pool = 'main'\n{pool}")).unwrap();
        assert_eq!(config.timeouts.slow_command_ms, 30_000);
        let error = load_str(&format!(
            "default_pool = 'main'\n[timeouts]\ncommand_ms = 5000\nslow_command_ms = 2000\n{pool}"
        ))
        .unwrap_err()
        .to_string();
        assert!(error.contains("timeouts.slow_command_ms"), "{error}");
    }

    #[test]
    fn tls_errors_name_the_key() {
        let pool = "[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n";
        let cases = [
            ("tls_listen = '127.0.0.1:1'\n", "`tls`"),
            (
                "tls_listen = 'nowhere'\n[tls]\ncert_file = 'c'\nkey_file = 'k'\n",
                "tls_listen",
            ),
            (
                "[tls]\ncert_file = 'c'\nkey_file = 'k'\nhandshake_ms = 0\n",
                "tls.handshake_ms",
            ),
            (
                "[tenants.t]\npassword = 'p'\npool = 'main'\ntls_subject = 'CN=a'\n",
                "tenants.t.tls_subject",
            ),
        ];
        for (extra, key) in cases {
            let error = load_str(&format!("default_pool = 'main'\n{extra}{pool}"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(key), "{extra}: {error}");
        }
        let pool_cases = [
            ("tls = true\n", "pools.main.ca_file"),
            ("ca_file = 'ca'\n", "pools.main.ca_file"),
            (
                "tls = true\nca_file = 'ca'\ncert_file = 'c'\n",
                "pools.main.cert_file",
            ),
        ];
        for (extra, key) in pool_cases {
            let error = load_str(&format!("default_pool = 'main'\n{pool}{extra}"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(key), "{extra}: {error}");
        }
        let kafka = load_str(
            "default_pool = 'events'\n[pools.events]\nkind = 'kafka'\nnodes = ['h:9092']\ntls = true\n\
             ca_file = 'ca'\nserver_name = 'x'\n[pools.events.topics.t]\npartitions = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(kafka.contains("pools.events.server_name"), "{kafka}");
        let missing = Config {
            tls: Some(ClientTlsConfig {
                cert_file: "/nonexistent/proxy.crt".into(),
                key_file: "k".into(),
                client_ca_file: None,
                handshake_ms: 1,
            }),
            ..load_str(&format!("default_pool = 'main'\n{pool}")).unwrap()
        };
        let error = crate::tls::ClientTls::for_config(&missing)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("tls.cert_file") && error.contains("/nonexistent/proxy.crt"),
            "{error}"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let error =
            load_str("default_pool = 'nope'\n[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n")
                .unwrap_err()
                .to_string();
        assert!(
            error.contains("default_pool") && error.contains("nope"),
            "{error}"
        );

        let error =
            load_str("default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['h:x']\n")
                .unwrap_err()
                .to_string();
        assert!(
            error.contains("pools.main.nodes") && error.contains("port 'x'"),
            "{error}"
        );

        let error = load_str("default_pool = 'main'\n[timeouts]\nconnect_ms = 'soon'\n[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("connect_ms"), "{error}");

        let error = load_str("default_pool = 'main'\nlisten_here = 1\n[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("listen_here"), "{error}");

        let error = load_str(
            "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['a:1', 'b:2']\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("exactly one node"), "{error}");
    }

    const KAFKA_POOL: &str =
        "default_pool = 'events'\n[pools.events]\nkind = 'kafka'\nnodes = ['127.0.0.1:9092']\n";

    #[test]
    fn kafka_pool_with_topics_and_offsets() {
        let config = load_str(&format!(
            "{KAFKA_POOL}linger_ms = 2\noffsets = {{ pool = 'main' }}\n\
             [pools.events.topics.orders]\npartitions = 3\nproducers = ['*']\nconsumers = ['default']\n\
             [pools.main]\nkind = 'standalone'\nnodes = ['127.0.0.1:6379']\n"
        ))
        .unwrap();
        let pool = &config.pools["events"];
        assert_eq!(pool.kind, PoolKind::Kafka);
        assert_eq!(pool.linger_ms, Some(2));
        assert_eq!(pool.topics["orders"].partitions, 3);
        assert_eq!(pool.topics["orders"].replication_factor, 1);
        assert_eq!(pool.offsets.as_ref().unwrap().pool.as_deref(), Some("main"));
    }

    #[test]
    fn kafka_errors_name_the_key() {
        let topic = "[pools.events.topics.t]\npartitions = 1\n";
        let error_of = |extra: &str| {
            load_str(&format!("{KAFKA_POOL}{extra}"))
                .unwrap_err()
                .to_string()
        };

        let error = error_of("");
        assert!(
            error.contains("pools.events.topics") && error.contains("at least one"),
            "{error}"
        );
        let error = error_of("[pools.events.topics.t]\npartitions = 0\n");
        assert!(
            error.contains("pools.events.topics.t.partitions"),
            "{error}"
        );
        let error = error_of("[pools.events.topics.'a b']\npartitions = 1\n");
        assert!(error.contains("not a valid Kafka topic name"), "{error}");
        let error = error_of(&format!("{topic}producers = ['app1']\n"));
        assert!(
            error.contains("pools.events.topics.t.producers") && error.contains("'default'"),
            "{error}"
        );
        let error = error_of(&format!("password = 'x'\n{topic}"));
        assert!(
            error.contains("pools.events.password") && error.contains("SASL"),
            "{error}"
        );
        let error = error_of(&format!(
            "offsets = {{ redis = 'h:1', pool = 'main' }}\n{topic}"
        ));
        assert!(
            error.contains("pools.events.offsets") && error.contains("not both"),
            "{error}"
        );
        let error = error_of(&format!("offsets = {{ pool = 'events' }}\n{topic}"));
        assert!(error.contains("not a standalone Redis pool"), "{error}");

        let error = load_str(&format!(
            "default_pool = 'events'\n[pools.events]\nkind = 'kafka'\nnodes = ['kafka://h:9092']\n{topic}"
        ))
        .unwrap_err()
        .to_string();
        assert!(error.contains("without a scheme"), "{error}");
        let error = load_str(
            "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\nlinger_ms = 5\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("pools.main.linger_ms") && error.contains("only Kafka pools"),
            "{error}"
        );
    }

    #[test]
    fn kafka_topic_tenants_must_reach_the_pool() {
        let base = "default_pool = 'main'\n\
                    [pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n\
                    [pools.events]\nkind = 'kafka'\nnodes = ['h:9092']\n\
                    [pools.events.topics.t]\npartitions = 1\nproducers = ['writer']\n\
                    [tenants.writer]\npassword = 'w'\n";
        assert!(load_str(&format!("{base}pool = 'events'\n")).is_ok());
        assert!(load_str(&format!("{base}pool = 'main'\npools = ['events']\n")).is_ok());
        let error = load_str(&format!("{base}pool = 'main'\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot reach pool 'events'"), "{error}");
    }

    #[test]
    fn node_addresses() {
        assert_eq!(parse_node_address("redis://h:1").unwrap(), "h:1");
        assert_eq!(parse_node_address("h:6379").unwrap(), "h:6379");
        assert!(parse_node_address("h").is_err());
        assert!(parse_node_address("redis://u:p@h:1").is_err());
        assert!(parse_node_address("h:0").is_err());
    }
}
