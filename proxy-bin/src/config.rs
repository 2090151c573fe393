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
    /// Backend pools by name.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolConfig>,
    /// Tenants by name. With none configured, clients need no AUTH and use `default_pool`; with any, every
    /// client must authenticate as one (see tenant-policy's README for the keys).
    #[serde(default)]
    pub tenants: tenant_policy::TenantsConfig,
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
    /// How long a command may wait for its backend reply on a shared connection before the backend counts as
    /// unavailable. Blocking commands (BLPOP, ...) run on dedicated connections and are exempt.
    pub command_ms: u64,
    /// With tenants configured: a connection that has not authenticated within this time is closed.
    pub auth_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 1000,
            command_ms: 1000,
            auth_ms: 10_000,
        }
    }
}

/// Per-client bounds that keep one client from hurting the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientLimits {
    /// Requests a client may have in flight before the proxy stops reading from it (backpressure).
    pub max_pending_requests: usize,
    /// Largest single bulk string accepted from a client, in bytes (Redis's proto-max-bulk-len).
    pub max_bulk_bytes: usize,
    /// Most elements in one request array.
    pub max_arguments: usize,
    /// Most client connections at once; new ones beyond it get an error and are closed.
    pub max_connections: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_pending_requests: 1024,
            max_bulk_bytes: 512 * 1024 * 1024,
            max_arguments: 1024 * 1024,
            max_connections: 10_000,
        }
    }
}

/// What sits behind a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    /// One standalone redis-server.
    Standalone,
    /// A Redis Cluster, reached through seed nodes.
    Cluster,
}

/// One backend pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
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
        }
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
        if self.client_limits.max_pending_requests == 0 {
            return Err(invalid(
                "client_limits.max_pending_requests",
                "must be above 0",
            ));
        }
        if self.client_limits.max_connections == 0 {
            return Err(invalid("client_limits.max_connections", "must be above 0"));
        }
        Ok(())
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
                };
                (name.clone(), info)
            })
            .collect();
        tenant_policy::Tenants::new(&self.tenants, &pools)
            .map(Some)
            .map_err(|error| invalid(error.key.clone(), error.problem.clone()))
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

/// Accepts `host:port` and `redis://host:port`; returns `host:port`.
pub fn parse_node_address(node: &str) -> Result<String, String> {
    let address = node.strip_prefix("redis://").unwrap_or(node);
    if address.contains('@') {
        return Err("put credentials in `username`/`password`, not in the address".to_owned());
    }
    let address = address.trim_end_matches('/');
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_owned())?;
    if host.is_empty() {
        return Err("the host is empty".to_owned());
    }
    port.parse::<u16>()
        .map_err(|_| format!("port '{port}' is not a number from 1 to 65535"))
        .and_then(|port| {
            if port == 0 {
                Err("port 0 is not allowed".to_owned())
            } else {
                Ok(())
            }
        })?;
    Ok(address.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml: &str) -> Result<Config, ConfigError> {
        Config::from_toml(toml)
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

    #[test]
    fn node_addresses() {
        assert_eq!(parse_node_address("redis://h:1").unwrap(), "h:1");
        assert_eq!(parse_node_address("h:6379").unwrap(), "h:6379");
        assert!(parse_node_address("h").is_err());
        assert!(parse_node_address("redis://u:p@h:1").is_err());
        assert!(parse_node_address("h:0").is_err());
    }
}
