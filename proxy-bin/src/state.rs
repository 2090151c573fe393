//! What every session shares: the configuration, the pools, the tenants, the connection limit and client ids.
//!
//! The listener builds the first [`ProxyState`] at start, inside a [`Live`] cell, and hands an `Arc` of the
//! newest one to every session it creates; sessions read the configuration and find pools only through it.
//! Each `ProxyState` is one configuration, never changed: a hot reload ([`Live::reload`], in `state/reload.rs`)
//! validates a new configuration, builds the next `ProxyState` (keeping the pools whose settings did not change
//! and everything that lives as long as the process) and swaps it into the cell atomically (`arc-swap`).
//! Sessions move to it at their next barrier; nothing else holds configuration that a reload would have to
//! chase.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use resp_codec::Limits;
use tokio::sync::watch;

use crate::auth_throttle::AuthThrottle;
use crate::config::Config;
use crate::introspection::BackendVersion;
use crate::memory::MemoryBudget;
use crate::pools::kafka::KafkaPool;
use crate::pools::PoolHandle;
use crate::stats::Stats;
use crate::tls::HandshakeCounts;

mod reload;

pub use self::reload::{ConfigSource, Live, ReloadError, ReloadReport, StateError};

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

/// What every session shares: the configuration, the pools, the tenants, and (through [`Process`]) what lives
/// as long as the proxy. One `ProxyState` is one configuration: a reload builds the next one and publishes it
/// in the [`Live`] cell; sessions move to it at their next barrier ([`ProxyState::is_newest`]).
#[derive(Debug)]
pub struct ProxyState {
    config: Arc<Config>,
    pools: HashMap<String, PoolHandle>,
    default_pool: PoolHandle,
    tenants: Option<tenant_policy::Tenants>,
    /// Each Redis pool's backend version, learned on first use (HELLO, INFO); a pool a reload keeps keeps it.
    backend_versions: HashMap<String, Arc<BackendVersion>>,
    /// Which configuration this is: 0 at start, one more for each reload.
    generation: u64,
    process: Arc<Process>,
    /// Where the newest state is published. Weak, because the cell holds this state: a strong link would be a
    /// cycle that keeps every pool alive after the proxy stopped.
    live: Weak<Live>,
}

/// What lives as long as the proxy, whatever its configuration: a reload carries it from one [`ProxyState`] to
/// the next and never rebuilds it. (Counters and registries that must survive a reload belong here.)
#[derive(Debug)]
struct Process {
    connections: ClientLimit,
    /// Places for connections that have not authenticated yet (`client_limits.max_unauthenticated`).
    unauthenticated: ClientLimit,
    /// Recent AUTH failures per client IP, and their total.
    auth_failures: AuthThrottle,
    next_client_id: AtomicU64,
    /// When the proxy started, for INFO's uptime.
    started: std::time::Instant,
    /// Becomes true once the proxy shuts down: accept loops stop, sessions drain and close.
    shutdown: watch::Sender<bool>,
    /// The generation of the newest [`ProxyState`]: a session compares its own with it (one relaxed load) to
    /// learn that a reload happened.
    newest_generation: AtomicU64,
    /// Bytes held for clients in the whole process (`max_memory`), and the memory limits' counters.
    memory: Arc<MemoryBudget>,
    /// Counts and the slow log: created once per process and carried across configuration reloads.
    stats: Arc<Stats>,
    /// Client TLS handshakes by how they ended.
    tls_handshakes: HandshakeCounts,
}

impl Process {
    fn new(config: &Config) -> Process {
        let limits = &config.client_limits;
        Process {
            connections: ClientLimit::new(limits.max_connections),
            unauthenticated: ClientLimit::new(limits.max_unauthenticated),
            auth_failures: AuthThrottle::default(),
            next_client_id: AtomicU64::new(1),
            started: std::time::Instant::now(),
            shutdown: watch::Sender::new(false),
            newest_generation: AtomicU64::new(0),
            memory: Arc::new(MemoryBudget::new(config.max_memory)),
            stats: Stats::new(
                config.stats,
                config.slowlog.slower_than_us,
                config.slowlog.max_len,
            ),
            tls_handshakes: HandshakeCounts::default(),
        }
    }
}

/// A limit on connections (`max_connections`, `max_unauthenticated`) that a reload can raise or lower while
/// connections are open.
#[derive(Debug)]
struct ClientLimit(Arc<ClientCount>);

#[derive(Debug)]
struct ClientCount {
    open: AtomicUsize,
    limit: AtomicUsize,
}

/// One place under a [`ClientLimit`], held while the connection is open (or, for `max_unauthenticated`, until
/// it authenticates); dropping it frees the place.
#[derive(Debug)]
pub struct ClientPermit(Arc<ClientCount>);

impl Drop for ClientPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ClientLimit {
    fn new(limit: usize) -> ClientLimit {
        ClientLimit(Arc::new(ClientCount {
            open: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
        }))
    }

    /// A place, unless every place is taken.
    fn try_acquire(&self) -> Option<ClientPermit> {
        let limit = self.0.limit.load(Ordering::Acquire);
        self.0
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < limit).then_some(open + 1)
            })
            .ok()?;
        Some(ClientPermit(Arc::clone(&self.0)))
    }

    /// Places held now.
    fn in_use(&self) -> usize {
        self.0.open.load(Ordering::Acquire)
    }

    /// Makes the limit `limit`. Lowering it below the places held closes no connection: new ones are refused
    /// until enough have closed.
    fn resize(&self, limit: usize) {
        self.0.limit.store(limit, Ordering::Release);
    }
}

/// The parts of a [`ProxyState`] that come from one configuration, built before the state is published.
#[derive(Debug)]
struct Snapshot {
    config: Config,
    pools: HashMap<String, PoolHandle>,
    default_pool: PoolHandle,
    tenants: Option<tenant_policy::Tenants>,
    backend_versions: HashMap<String, Arc<BackendVersion>>,
}

/// The configuration's `default_pool` names no pool.
#[derive(Debug, thiserror::Error)]
#[error("default_pool '{0}' is not defined")]
pub struct UndefinedDefaultPool(String);

impl Snapshot {
    /// Checks that the default pool exists and gathers the parts.
    fn new(
        config: Config,
        pools: HashMap<String, PoolHandle>,
        tenants: Option<tenant_policy::Tenants>,
        backend_versions: HashMap<String, Arc<BackendVersion>>,
    ) -> Result<Snapshot, UndefinedDefaultPool> {
        let default_pool = pools
            .get(&config.default_pool)
            .cloned()
            .ok_or_else(|| UndefinedDefaultPool(config.default_pool.clone()))?;
        Ok(Snapshot {
            config,
            pools,
            default_pool,
            tenants,
            backend_versions,
        })
    }
}

impl ProxyState {
    /// The state of a snapshot, for generation `generation` of the process's configuration.
    fn assemble(
        snapshot: Snapshot,
        generation: u64,
        process: Arc<Process>,
        live: Weak<Live>,
    ) -> ProxyState {
        ProxyState {
            config: Arc::new(snapshot.config),
            pools: snapshot.pools,
            default_pool: snapshot.default_pool,
            tenants: snapshot.tenants,
            backend_versions: snapshot.backend_versions,
            generation,
            process,
            live,
        }
    }

    /// Whether this is the newest configuration. Cheap (one relaxed atomic load): sessions ask at each barrier.
    pub fn is_newest(&self) -> bool {
        self.process.newest_generation.load(Ordering::Relaxed) == self.generation
    }

    /// The newest state (this one when no reload happened since), `None` once the proxy is gone.
    pub fn newest(&self) -> Option<Arc<ProxyState>> {
        self.live.upgrade().map(|live| live.current())
    }

    /// The proxy's reload cell, for `RKPROXY RELOAD`; `None` once the proxy is gone.
    pub fn live(&self) -> Option<Arc<Live>> {
        self.live.upgrade()
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

    /// The process's counts and slow log (they live in the process, so they outlive a configuration reload).
    pub fn stats(&self) -> &Arc<Stats> {
        &self.process.stats
    }

    /// How long the proxy has been running.
    pub fn uptime(&self) -> std::time::Duration {
        self.process.started.elapsed()
    }

    /// A new client's id: unique in this process, never reused.
    pub fn next_client_id(&self) -> u64 {
        self.process.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// One of the `max_connections` permits for a new client, held for as long as its connection is open;
    /// `None` when every permit is taken.
    pub fn admit_client(&self) -> Option<ClientPermit> {
        self.process.connections.try_acquire()
    }

    /// One of the `max_unauthenticated` places, held until the connection authenticates or closes; `None`
    /// when every place is taken.
    pub fn admit_unauthenticated(&self) -> Option<ClientPermit> {
        self.process.unauthenticated.try_acquire()
    }

    /// Per-IP AUTH failures (their delays) and their count.
    pub fn auth_failures(&self) -> &AuthThrottle {
        &self.process.auth_failures
    }

    /// Client TLS handshakes by how they ended, since the proxy started.
    pub fn tls_handshakes(&self) -> &HandshakeCounts {
        &self.process.tls_handshakes
    }

    /// Client connections open now (each holds one of the `max_connections` permits).
    pub fn connected_clients(&self) -> usize {
        self.process.connections.in_use()
    }

    /// Starts the graceful shutdown: every accept loop and session watching [`Self::shutdown_signal`] sees it.
    pub fn begin_shutdown(&self) {
        self.process.shutdown.send_replace(true);
    }

    /// Watches for the shutdown; the value is true once it has begun.
    /// Bytes held for clients in the whole process, `max_memory`, and the memory limits' counters.
    pub fn memory(&self) -> &Arc<MemoryBudget> {
        &self.process.memory
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.process.shutdown.subscribe()
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
        self.backend_versions.get(name).map(|version| &**version)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_client_limit_closes_nothing_and_refuses_until_below_it() {
        let limit = ClientLimit::new(2);
        let (first, second) = (limit.try_acquire().unwrap(), limit.try_acquire().unwrap());
        assert!(limit.try_acquire().is_none());
        limit.resize(1);
        assert_eq!(limit.in_use(), 2);
        drop(first);
        assert!(limit.try_acquire().is_none(), "one open, limit one");
        drop(second);
        let third = limit.try_acquire().unwrap();
        limit.resize(3);
        let more = [limit.try_acquire().unwrap(), limit.try_acquire().unwrap()];
        assert!(limit.try_acquire().is_none());
        drop((third, more));
        assert_eq!(limit.in_use(), 0);
    }
}
