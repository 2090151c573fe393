//! What every session shares: the configuration, the pools, the tenants, the connection limit and client ids.
//!
//! The listener builds one [`ProxyState`] at start and hands an `Arc` of it to every session; sessions read the
//! configuration and find pools only through it. It is the snapshot a configuration reload will build anew and
//! swap (the operations issue); nothing else holds configuration that a reload would have to chase.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use resp_codec::Limits;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::auth_throttle::AuthThrottle;
use crate::config::Config;
use crate::introspection::BackendVersion;
use crate::pools::kafka::KafkaPool;
use crate::pools::PoolHandle;
use crate::stats::Stats;

/// Waits until the shutdown watched by `signal` (from [`ProxyState::shutdown_signal`]) has begun; false if
/// the proxy's state is gone, so it never will.
pub async fn shutdown_begun(signal: &mut watch::Receiver<bool>) -> bool {
    signal
        .wait_for(|&shutting_down| shutting_down)
        .await
        .is_ok()
}

/// How often a shutdown checks whether every connection has closed.
const DRAIN_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// What every session shares: the configuration, the pools, the connection limit and client ids.
#[derive(Debug)]
pub struct ProxyState {
    config: Arc<Config>,
    pools: HashMap<String, PoolHandle>,
    default_pool: PoolHandle,
    connections: Arc<Semaphore>,
    /// Places for connections that have not authenticated yet (`client_limits.max_unauthenticated`).
    unauthenticated: Arc<Semaphore>,
    /// Recent AUTH failures per client IP, and their total.
    auth_failures: AuthThrottle,
    next_client_id: AtomicU64,
    tenants: Option<tenant_policy::Tenants>,
    /// When the proxy started, for INFO's uptime.
    started: std::time::Instant,
    /// Each Redis pool's backend version, learned on first use (HELLO, INFO).
    backend_versions: HashMap<String, BackendVersion>,
    /// Becomes true once the proxy shuts down: accept loops stop, sessions drain and close.
    shutdown: watch::Sender<bool>,
    /// Counts and the slow log: created once per process and carried across configuration reloads.
    stats: Arc<Stats>,
}

impl ProxyState {
    /// Builds the pools. Standalone backends are connected lazily, when clients first need them; cluster pools
    /// read their slot map first.
    pub async fn new(config: Config) -> Result<ProxyState, String> {
        let stats = Stats::new(
            config.stats,
            config.slowlog.slower_than_us,
            config.slowlog.max_len,
        );
        let mut pools = HashMap::new();
        for (name, pool) in &config.pools {
            pools.insert(name.clone(), PoolHandle::start(name, pool, &config).await?);
        }
        let default_pool = pools
            .get(&config.default_pool)
            .cloned()
            .ok_or_else(|| format!("default_pool '{}' is not defined", config.default_pool))?;
        let tenants = config.build_tenants().map_err(|e| e.to_string())?;
        let backend_versions = pools
            .keys()
            .map(|name| (name.clone(), Default::default()))
            .collect();
        Ok(ProxyState {
            tenants,
            started: std::time::Instant::now(),
            backend_versions,
            connections: Arc::new(Semaphore::new(config.client_limits.max_connections)),
            unauthenticated: Arc::new(Semaphore::new(config.client_limits.max_unauthenticated)),
            auth_failures: AuthThrottle::default(),
            config: Arc::new(config),
            pools,
            default_pool,
            next_client_id: AtomicU64::new(1),
            shutdown: watch::Sender::new(false),
            stats,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn default_pool(&self) -> &PoolHandle {
        &self.default_pool
    }

    /// The tenants, when any are configured (then every client must AUTH).
    pub fn tenants(&self) -> Option<&tenant_policy::Tenants> {
        self.tenants.as_ref()
    }

    pub fn pool(&self, name: &str) -> Option<&PoolHandle> {
        self.pools.get(name)
    }

    /// Every pool.
    pub fn pool_handles(&self) -> impl Iterator<Item = &PoolHandle> {
        self.pools.values()
    }

    /// The process's counts and slow log (they outlive a configuration reload: carry this `Arc` over).
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// How long the proxy has been running.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// A new client's id: unique in this process, never reused.
    pub fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// One of the `max_connections` permits for a new client, held for as long as its connection is open;
    /// `None` when every permit is taken.
    pub fn admit_client(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.connections).try_acquire_owned().ok()
    }

    /// One of the `max_unauthenticated` places, held until the connection authenticates or closes; `None`
    /// when every place is taken.
    pub fn admit_unauthenticated(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.unauthenticated).try_acquire_owned().ok()
    }

    /// Per-IP AUTH failures (their delays) and their count.
    pub fn auth_failures(&self) -> &AuthThrottle {
        &self.auth_failures
    }

    /// Client connections open now (each holds one of the `max_connections` permits).
    pub fn connected_clients(&self) -> usize {
        self.config
            .client_limits
            .max_connections
            .saturating_sub(self.connections.available_permits())
    }

    /// Starts the graceful shutdown: every accept loop and session watching [`Self::shutdown_signal`] sees it.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Watches for the shutdown; the value is true once it has begun.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// How long sessions may take to answer what they have read, once the shutdown has begun.
    pub fn shutdown_limit(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.config.timeouts.shutdown_ms)
    }

    /// Waits until every client connection has closed, or `limit` has passed; returns how many are still open.
    pub async fn drained(&self, limit: std::time::Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        while self.connected_clients() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        self.connected_clients()
    }

    /// The backend version of pool `name`, once learned.
    pub fn backend_version(&self, name: &str) -> Option<&BackendVersion> {
        self.backend_versions.get(name)
    }

    /// Every Kafka pool, for the proxy's Kafka admin commands.
    pub fn kafka_pools(&self) -> impl Iterator<Item = &Arc<KafkaPool>> {
        self.pools.values().filter_map(|pool| match pool {
            PoolHandle::Kafka(kafka) => Some(kafka),
            _ => None,
        })
    }

    /// Codec limits for client requests.
    pub fn client_codec_limits(&self) -> Limits {
        let limits = &self.config.client_limits;
        Limits {
            max_bulk_len: limits.max_bulk_bytes,
            max_array_len: limits.max_arguments,
            ..Limits::default()
        }
    }
}
