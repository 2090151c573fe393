//! Configuration: the TOML file, `RKPROXY_` environment overrides, and validation.
//!
//! Figment merges, in order: built-in defaults, the TOML file (if any), command-line values, then environment
//! variables prefixed with `RKPROXY_` (nested keys are separated by `__`, for example
//! `RKPROXY_TIMEOUTS__CONNECT_MS=500`). The result is deserialized with `deny_unknown_fields` and then checked by
//! [`Config::validate`], so a bad file fails at start with a message that names the key and the problem.
//!
//! `examples/rkproxy.toml` at the repository root documents every key.
//!
//! The files of this module: `pools.rs` (`[pools.NAME]`, one type per pool kind, and node addresses), `kafka.rs`
//! (the keys of Kafka pools and their checks), `tenants.rs` (the one place `[tenants]` becomes
//! [`tenant_policy::Tenants`]), `limits.rs` (`[timeouts]`, `[client_limits]`, `[big_requests]`), `tls.rs` (`[tls]`
//! and `tls_listen`), `validate.rs` ([`Config::validate`]: what serde cannot check).

mod address;
mod kafka;
mod kafka_checks;
mod limits;
mod pool_tls;
mod pools;
mod table;
mod tenants;
mod tls;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use self::address::{
    is_unix_socket, parse_node_address, parse_standalone_node, AddressError, UNIX_SOCKET_PREFIX,
};
pub use self::kafka::{
    KafkaDelivery, KafkaOffsetsConfig, KafkaPoolConfig, KafkaTopicConfig, DEFAULT_KAFKA_TENANT,
};
pub use self::limits::{BigRequests, ClientLimits, Timeouts};
pub use self::pool_tls::PoolTlsConfig;
pub use self::pools::{ClusterPoolConfig, PoolConfig, PoolKind, ReadPolicy, RedisPoolConfig};
pub use self::tls::{CipherSuite, ClientAuth, ClientTlsConfig, TlsVersion};

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
    /// Backend pools by name; each pool's `kind` decides which keys it has (see [`PoolConfig`]).
    #[serde(default, deserialize_with = "pools::deserialize_pools")]
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

/// A configuration problem, with the key it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Figment(Box<figment::Error>),
    #[error("config key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

impl From<figment::Error> for ConfigError {
    fn from(mut error: figment::Error) -> Self {
        // A pool's table is read by `pools::deserialize_pools`, whose error already names the key in full
        // (`config key `pools.main.linger_ms`: ...`); figment's own "for key "default.pools"" would repeat
        // half of it, and its source is that of the whole `pools` table (the environment when any
        // `RKPROXY_POOLS__*` is set, even for a key the file has wrong), so both are left out.
        if error.path == [POOLS_KEY] && matches!(error.kind, figment::error::Kind::Message(_)) {
            error.path.clear();
            error.metadata = None;
        }
        ConfigError::Figment(Box::new(error))
    }
}

/// The key of the pools' tables, `[pools.NAME]`.
const POOLS_KEY: &str = "pools";

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
            figment = figment
                .merge(Serialized::default(
                    "pools.default",
                    PoolConfig::standalone(backend.clone()),
                ))
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
