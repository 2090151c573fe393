//! `[pools.NAME]`: one backend pool per name, a type per `kind`.
//!
//! A pool's table is read in two steps: its `kind` first, then the rest of the table into that kind's type
//! (each with `deny_unknown_fields`). A key that belongs to another kind of pool (`linger_ms` on a standalone
//! pool, `read_from` on a Kafka pool) is refused with a message that names the pool, the key and the kind that
//! has it; the types then hold only the keys their kind has, so the code that builds a pool cannot read a key
//! of another kind.

use std::collections::BTreeMap;

use figment::value::{Dict, Value};
use serde::{Deserialize, Deserializer, Serialize};

use super::address::{
    is_unix_socket, parse_node_address, parse_standalone_node, redacted, AddressError,
};
use super::kafka::{KafkaPoolConfig, KAFKA_ONLY_KEYS};
use super::pool_tls::{PoolTlsConfig, NEEDS_TLS};
use super::table::{read_table, read_value};
use super::{invalid, ConfigError};

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

/// One backend pool (`[pools.NAME]`, told apart by its `kind` key). Its `Debug` shows no password.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PoolConfig {
    /// `kind = "standalone"`: one redis-server.
    Standalone(RedisPoolConfig),
    /// `kind = "cluster"`: a Redis Cluster.
    Cluster(ClusterPoolConfig),
    /// `kind = "kafka"`: Kafka brokers and the topics served (boxed: it is several times the size of the
    /// others).
    Kafka(Box<KafkaPoolConfig>),
}

/// The keys of a Redis pool, standalone or cluster. Its `Debug` shows no password.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisPoolConfig {
    /// `host:port` or `redis://host:port`; a standalone pool has exactly one (which may be `unix:/path`, a Unix
    /// domain socket), a cluster pool its seeds.
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
    /// `tls`, `ca_file`, `cert_file`, `key_file`: TLS to every node, including cluster nodes learned from the
    /// cluster (read apart by [`PoolTlsConfig::take_from`]).
    #[serde(flatten, skip_deserializing)]
    pub tls: PoolTlsConfig,
    /// With `tls`: the name the nodes' certificates must carry. Unset: each node's host (name or IP address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// A cluster pool: the keys of every Redis pool, and the two only a cluster has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterPoolConfig {
    #[serde(flatten)]
    pub redis: RedisPoolConfig,
    /// Where read-only commands go.
    pub read_from: ReadPolicy,
    /// How often the slot map is re-read even without a MOVED, in milliseconds.
    pub refresh_ms: u64,
}

/// The keys only a cluster pool has, read apart from the [`RedisPoolConfig`] keys (serde cannot flatten a
/// struct that denies unknown fields).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterOnlyKeys {
    #[serde(default)]
    read_from: ReadPolicy,
    #[serde(default = "default_refresh_ms")]
    refresh_ms: u64,
}

/// The keys of [`ClusterOnlyKeys`].
const CLUSTER_ONLY_KEYS: &[&str] = &["read_from", "refresh_ms"];

/// The keys Redis pools have and Kafka pools do not (besides [`CLUSTER_ONLY_KEYS`]).
const REDIS_ONLY_KEYS: &[&str] = &["connections_per_node", "server_name"];

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

impl std::fmt::Debug for RedisPoolConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPoolConfig")
            .field("nodes", &self.nodes)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("connections_per_node", &self.connections_per_node)
            .field("tls", &self.tls)
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl PoolKind {
    /// The pools that have `key` when this kind does not, for the error that names them; `None` when this
    /// kind has the key, or no kind has it.
    fn owner_of_foreign_key(self, key: &str) -> Option<&'static str> {
        let kafka_only = KAFKA_ONLY_KEYS.contains(&key);
        let cluster_only = CLUSTER_ONLY_KEYS.contains(&key);
        let redis_only = REDIS_ONLY_KEYS.contains(&key);
        match self {
            PoolKind::Standalone | PoolKind::Cluster if kafka_only => {
                Some("only Kafka pools (kind = \"kafka\") have this key")
            }
            PoolKind::Standalone | PoolKind::Kafka if cluster_only => {
                Some("only cluster pools (kind = \"cluster\") have this key")
            }
            PoolKind::Kafka if key == "server_name" => Some(
                "only Redis pools (kind = \"standalone\" or \"cluster\") have this key: Kafka brokers' \
                 certificates are checked against the names the brokers announce",
            ),
            PoolKind::Kafka if redis_only => {
                Some("only Redis pools (kind = \"standalone\" or \"cluster\") have this key")
            }
            _ => None,
        }
    }
}

impl PoolConfig {
    /// A standalone pool of one node with every other key at its default (`--backend`).
    pub fn standalone(node: String) -> PoolConfig {
        PoolConfig::Standalone(RedisPoolConfig {
            nodes: vec![node],
            username: None,
            password: None,
            connections_per_node: default_connections_per_node(),
            tls: PoolTlsConfig::default(),
            server_name: None,
        })
    }

    /// What sits behind the pool.
    pub fn kind(&self) -> PoolKind {
        match self {
            PoolConfig::Standalone(_) => PoolKind::Standalone,
            PoolConfig::Cluster(_) => PoolKind::Cluster,
            PoolConfig::Kafka(_) => PoolKind::Kafka,
        }
    }

    /// The Redis keys of a standalone or cluster pool; `None` for a Kafka pool.
    pub fn redis(&self) -> Option<&RedisPoolConfig> {
        match self {
            PoolConfig::Standalone(redis) => Some(redis),
            PoolConfig::Cluster(cluster) => Some(&cluster.redis),
            PoolConfig::Kafka(_) => None,
        }
    }

    /// Reads the table of pool `name`: its `kind`, then the rest into that kind's type.
    fn from_table(name: &str, table: Value) -> Result<PoolConfig, ConfigError> {
        let key = format!("pools.{name}");
        let Value::Dict(_, mut keys) = table else {
            return Err(invalid(key, "must be a table ([pools.NAME])"));
        };
        let Some(kind) = keys.remove("kind") else {
            return Err(invalid(
                format!("{key}.kind"),
                "missing: \"standalone\", \"cluster\" or \"kafka\"",
            ));
        };
        let kind: PoolKind = read_value(&format!("{key}.kind"), &kind)?;
        for field in keys.keys() {
            if let Some(problem) = kind.owner_of_foreign_key(field) {
                return Err(invalid(format!("{key}.{field}"), problem));
            }
        }
        let tls = PoolTlsConfig::take_from(&key, &mut keys)?;
        Ok(match kind {
            PoolKind::Standalone => PoolConfig::Standalone(RedisPoolConfig {
                tls,
                ..read_table(&key, keys)?
            }),
            PoolKind::Cluster => {
                let cluster_keys: Dict = CLUSTER_ONLY_KEYS
                    .iter()
                    .filter_map(|field| keys.remove_entry(*field))
                    .collect();
                let only: ClusterOnlyKeys = read_table(&key, cluster_keys)?;
                PoolConfig::Cluster(ClusterPoolConfig {
                    redis: RedisPoolConfig {
                        tls,
                        ..read_table(&key, keys)?
                    },
                    read_from: only.read_from,
                    refresh_ms: only.refresh_ms,
                })
            }
            PoolKind::Kafka => PoolConfig::Kafka(Box::new(KafkaPoolConfig {
                tls,
                ..read_table(&key, keys)?
            })),
        })
    }
}

/// Deserializes `[pools]` (serde's `deserialize_with` for [`Config::pools`](super::Config::pools)): every
/// pool's table into the type of its `kind`, an error naming the pool and the key otherwise.
pub(super) fn deserialize_pools<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, PoolConfig>, D::Error> {
    let tables = BTreeMap::<String, Value>::deserialize(deserializer)?;
    tables
        .into_iter()
        .map(|(name, table)| {
            let pool = PoolConfig::from_table(&name, table).map_err(serde::de::Error::custom)?;
            Ok((name, pool))
        })
        .collect()
}

impl RedisPoolConfig {
    /// Nodes parse (with `parse_node`), credentials and connections make sense, TLS keys go together. `key` is
    /// the pool's table.
    fn validate(
        &self,
        key: &str,
        parse_node: fn(&str) -> Result<String, AddressError>,
    ) -> Result<(), ConfigError> {
        if self.nodes.is_empty() {
            return Err(invalid(
                format!("{key}.nodes"),
                "must list at least one node",
            ));
        }
        for node in &self.nodes {
            parse_node(node).map_err(|problem| {
                invalid(format!("{key}.nodes"), format!("'{node}': {problem}"))
            })?;
        }
        if self.username.is_some() && self.password.is_none() {
            return Err(invalid(
                format!("{key}.password"),
                "a username needs a password",
            ));
        }
        if self.connections_per_node == 0 || self.connections_per_node > 64 {
            return Err(invalid(
                format!("{key}.connections_per_node"),
                "must be between 1 and 64",
            ));
        }
        self.validate_tls(key)
    }

    /// The checks of the TLS keys, then `server_name` (a Redis pool's own TLS key) only with `tls = true`.
    fn validate_tls(&self, key: &str) -> Result<(), ConfigError> {
        self.tls.validate(key)?;
        if !self.tls.enabled && self.server_name.is_some() {
            return Err(invalid(format!("{key}.server_name"), NEEDS_TLS));
        }
        Ok(())
    }
}

impl RedisPoolConfig {
    /// A standalone pool's checks: those of every Redis pool, exactly one node, which may be a Unix domain
    /// socket (then without TLS).
    pub(super) fn validate_standalone(&self, key: &str) -> Result<(), ConfigError> {
        self.validate(key, parse_standalone_node)?;
        if self.tls.enabled && self.nodes.iter().any(|node| is_unix_socket(node)) {
            return Err(invalid(
                format!("{key}.tls"),
                "a unix: node is reached without TLS (the socket never leaves the host); remove tls",
            ));
        }
        if self.nodes.len() != 1 {
            return Err(invalid(
                format!("{key}.nodes"),
                format!(
                    "a standalone pool has exactly one node, found {}",
                    self.nodes.len()
                ),
            ));
        }
        Ok(())
    }
}

impl ClusterPoolConfig {
    /// A cluster pool's checks: those of every Redis pool, and a refresh interval of at least 100 ms.
    pub(super) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        self.redis.validate(key, parse_node_address)?;
        if self.refresh_ms < 100 {
            return Err(invalid(format!("{key}.refresh_ms"), "must be at least 100"));
        }
        Ok(())
    }
}
