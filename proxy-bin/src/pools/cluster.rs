//! Redis Cluster pools: the slot map, its refresh, and shared connections per node.
//!
//! The slot map is immutable; a refresh builds a new one and swaps it in, bumping a generation counter. Sessions
//! keep the map they routed with and compare one atomic generation per request, so the hot path takes no lock.
//!
//! Refreshes happen at start, periodically (`cluster_refresh_ms`), on MOVED, and on backend connection errors
//! (a request to refresh is cheap; refreshes are spaced at least `MIN_REFRESH_GAP` apart). A map read from one
//! node does not replace the current one unless a second node reports the same slot owners: a node cut off in a
//! minority partition can report a stale map. Only when no map is known yet (or only one node is known) is a
//! single node's word taken.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use cluster_router::topology::{NodeAddr, SlotMap};
use resp_codec::{parse_frame, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use tenant_policy::BackendLogin;

use super::big_lane::{BigLane, BigLanes};
use super::PoolError;
use crate::backend::{connect, ConnectError, Endpoint, SharedConnection};
use crate::config::{parse_node_address, ClusterPoolConfig, Config, ReadPolicy};

/// Refreshes are at least this far apart, however many MOVED replies ask for one.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(100);

/// A Redis Cluster pool, as one tenant (or every client without an ACL user of its own) sees it:
/// [`ClusterPool::for_login`] gives a tenant with a `backend_user` a view of the same pool (same slot map)
/// whose connections log in as that user, kept apart from everyone else's. Everything but the connections is
/// the shared [`ClusterCore`]'s.
#[derive(Debug)]
pub struct ClusterPool {
    core: Arc<ClusterCore>,
    /// The Redis ACL user this view's connections log in as; `None`: the pool's own credentials.
    login: Option<BackendLogin>,
}

/// What every view of one cluster pool shares: the slot map and its refresh (read with the pool's own
/// credentials), the connections and the big-request lanes.
#[derive(Debug)]
pub struct ClusterCore {
    name: Arc<str>,
    seeds: Vec<NodeAddr>,
    template: Endpoint,
    connections_per_node: usize,
    read_policy: ReadPolicy,
    refresh_interval: Duration,
    topology: RwLock<Arc<Topology>>,
    generation: AtomicU64,
    shared: Mutex<HashMap<ConnectionKey, Vec<SharedConnection>>>,
    refresh_requested: Notify,
    /// Connections of their own for big requests, per master (see [`super::big_lane`]).
    big: BigLanes,
}

/// Which shared connections: (worker thread, node, RESP3, READONLY, the ACL user they log in as).
type ConnectionKey = (usize, NodeAddr, bool, bool, Option<BackendLogin>);

impl std::ops::Deref for ClusterPool {
    type Target = ClusterCore;

    fn deref(&self) -> &ClusterCore {
        &self.core
    }
}

impl ClusterPool {
    /// Builds the pool; call [`ClusterPool::start`] to load the first map and keep it fresh.
    pub fn new(
        name: &str,
        config: &ClusterPoolConfig,
        proxy: &Config,
    ) -> Result<ClusterPool, PoolError> {
        Ok(ClusterPool {
            core: Arc::new(ClusterCore::new(name, config, proxy)?),
            login: None,
        })
    }

    /// Loads the first slot map and starts the task that keeps it fresh (see [`ClusterCore::start`]).
    pub async fn start(&self) {
        ClusterCore::start(&self.core).await;
    }

    /// The same pool, with connections that log in as `login` (a tenant's `backend_user`), or with the
    /// pool's own credentials for `None`.
    pub fn for_login(&self, login: Option<&BackendLogin>) -> ClusterPool {
        ClusterPool {
            core: Arc::clone(&self.core),
            login: login.cloned(),
        }
    }

    /// Whether both are views of the same pool (whatever user they log in as).
    pub fn same_core(&self, other: &ClusterPool) -> bool {
        Arc::ptr_eq(&self.core, &other.core)
    }

    /// The ACL user this view's connections log in as, if not the pool's own.
    pub fn login(&self) -> Option<&BackendLogin> {
        self.login.as_ref()
    }

    /// The shared connection this client uses to reach `node` on event loop `worker` (see
    /// [`StandalonePool::shared_connection`](super::standalone::StandalonePool::shared_connection)).
    pub fn shared_connection(
        &self,
        worker: usize,
        node: &NodeAddr,
        client_id: u64,
        resp3: bool,
        readonly: bool,
    ) -> SharedConnection {
        let mut shared = self
            .core
            .shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (worker, node.clone(), resp3, readonly, self.login.clone());
        let connections = shared.entry(key).or_insert_with(|| {
            (0..self.core.connections_per_node)
                .map(|_| SharedConnection::spawn(self.endpoint(node, resp3, readonly)))
                .collect()
        });
        let index = (client_id % connections.len() as u64) as usize;
        connections[index].clone()
    }

    /// The big-request lane to `node` (a master) on event loop `worker`.
    pub fn big_lane(&self, worker: usize, node: &NodeAddr, resp3: bool) -> Arc<BigLane> {
        self.core
            .big
            .lane(worker, self.endpoint(node, resp3, false))
    }

    /// Connection settings for a node of this pool, logging in as this view's ACL user.
    pub fn endpoint(&self, node: &NodeAddr, resp3: bool, readonly: bool) -> Endpoint {
        super::logged_in_as(
            self.core.pool_endpoint(node, resp3, readonly),
            self.login.as_ref(),
        )
    }
}

/// Why a refresh kept the current slot map.
#[derive(Debug, thiserror::Error)]
enum RefreshError {
    /// Each node's problem, `node: problem`, joined by `; `.
    #[error("no node answered CLUSTER SLOTS ({0})")]
    NoAnswer(String),
    #[error("no two nodes agree about the slot owners; keeping the current map ({0})")]
    NoAgreement(String),
}

/// Why one node's slot map could not be read.
#[derive(Debug, thiserror::Error)]
enum SlotsError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("write failed: {0}")]
    Write(std::io::Error),
    #[error("read failed: {0}")]
    Read(std::io::Error),
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Reply(#[from] resp_codec::ProtocolError),
    #[error(transparent)]
    Map(#[from] cluster_router::topology::TopologyError),
    #[error("no CLUSTER SLOTS reply in time")]
    Timeout,
}

/// One version of the slot map.
#[derive(Debug)]
pub struct Topology {
    pub map: SlotMap,
    pub generation: u64,
}

impl ClusterCore {
    fn new(
        name: &str,
        config: &ClusterPoolConfig,
        proxy: &Config,
    ) -> Result<ClusterCore, PoolError> {
        let mut seeds = Vec::new();
        for node in &config.redis.nodes {
            let address = parse_node_address(node)?;
            seeds.push(NodeAddr::parse(&address).ok_or_else(|| PoolError::BadNode(node.clone()))?);
        }
        let empty = SlotMap::from_shards(Vec::new())?;
        Ok(ClusterCore {
            name: Arc::from(name),
            seeds,
            // The address is set per node (`endpoint`).
            template: Endpoint::for_pool("", &config.redis, &proxy.timeouts)?,
            connections_per_node: config.redis.connections_per_node.max(1),
            read_policy: config.read_from,
            refresh_interval: Duration::from_millis(config.refresh_ms),
            topology: RwLock::new(Arc::new(Topology {
                map: empty,
                generation: 0,
            })),
            generation: AtomicU64::new(0),
            shared: Mutex::new(HashMap::new()),
            refresh_requested: Notify::new(),
            big: BigLanes::new(&proxy.big_requests),
        })
    }

    /// Loads the first slot map (waiting at most about one connect timeout per seed) and starts the task that
    /// keeps it fresh. The proxy starts even when no node answers; requests then get a clear error until a map
    /// is known.
    pub async fn start(self: &Arc<Self>) {
        if let Err(reason) = self.refresh().await {
            warn!(pool = %self.name, %reason, "no cluster topology at start; will keep trying");
        }
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(interval) = pool.upgrade().map(|pool| pool.refresh_interval) else {
                    return;
                };
                let Some(notify_pool) = pool.upgrade() else {
                    return;
                };
                let wait_for_request = notify_pool.refresh_requested.notified();
                tokio::select! {
                    () = wait_for_request => {}
                    () = tokio::time::sleep(interval) => {}
                }
                drop(notify_pool);
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                if let Err(reason) = pool.refresh().await {
                    warn!(pool = %pool.name, %reason, "cluster topology refresh failed");
                }
                tokio::time::sleep(MIN_REFRESH_GAP).await;
            }
        });
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings every connection to a node starts from (its TLS settings among them).
    pub fn endpoint_template(&self) -> &Endpoint {
        &self.template
    }

    /// Asks the refresh task to reload the slot map soon (after a MOVED or a connection error).
    pub fn request_refresh(&self) {
        self.refresh_requested.notify_one();
    }

    /// The generation of the current map; changes whenever a new map is swapped in.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current map.
    pub fn topology(&self) -> Arc<Topology> {
        Arc::clone(
            &self
                .topology
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    pub fn read_policy(&self) -> ReadPolicy {
        self.read_policy
    }

    pub fn big_lanes(&self) -> &BigLanes {
        &self.big
    }

    /// Connection settings for a node of this pool with the pool's own credentials (the slot map is read
    /// with them).
    fn pool_endpoint(&self, node: &NodeAddr, resp3: bool, readonly: bool) -> Endpoint {
        Endpoint {
            address: Arc::from(node.to_string()),
            resp3,
            readonly,
            ..self.template.clone()
        }
    }

    /// Reads the slot map from the nodes and swaps it in when it is trustworthy and new.
    async fn refresh(&self) -> Result<(), RefreshError> {
        let current = self.topology();
        let mut candidates: Vec<NodeAddr> = current.map.nodes().cloned().collect();
        for seed in &self.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let mut maps: Vec<SlotMap> = Vec::new();
        let mut problems = Vec::new();
        for node in &candidates {
            match self.read_slots(node).await {
                Ok(map) => {
                    // Two nodes must agree on who owns every slot. Replica lists are not compared: Redis lists a
                    // replica in CLUSTER SLOTS only once it has replicated data, so they differ between nodes
                    // for a while on a healthy cluster. The newer reading is installed.
                    if maps.iter().any(|m| m.slots_disagreeing_with(&map) == 0) {
                        self.install(&current, map);
                        return Ok(());
                    }
                    maps.push(map);
                }
                Err(problem) => problems.push(format!("{node}: {problem}")),
            }
        }
        // No confirmed map. With no map at all, any complete reading beats none (MOVED corrects a stale one);
        // a known map is kept.
        if current.map.masters().is_empty() || candidates.len() == 1 {
            let best = maps
                .iter()
                .position(SlotMap::is_complete)
                .or(if maps.is_empty() { None } else { Some(0) });
            if let Some(index) = best {
                let map = maps.swap_remove(index);
                self.install(&current, map);
                return Ok(());
            }
        }
        if maps.is_empty() {
            return Err(RefreshError::NoAnswer(problems.join("; ")));
        }
        Err(RefreshError::NoAgreement(problems.join("; ")))
    }

    fn install(&self, current: &Topology, map: SlotMap) {
        if current.map.agrees_with(&map) && !current.map.masters().is_empty() {
            return;
        }
        let mut slot = self
            .topology
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let generation = slot.generation + 1;
        info!(
            pool = %self.name,
            generation,
            masters = map.masters().len(),
            complete = map.is_complete(),
            "cluster topology updated"
        );
        *slot = Arc::new(Topology { map, generation });
        self.generation.store(generation, Ordering::Release);
    }

    async fn read_slots(&self, node: &NodeAddr) -> Result<SlotMap, SlotsError> {
        let endpoint = self.pool_endpoint(node, false, false);
        let mut stream = connect(&endpoint).await?;
        let exchange = async {
            stream
                .write_all(b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n")
                .await
                .map_err(SlotsError::Write)?;
            let mut buffer = BytesMut::with_capacity(4096);
            loop {
                if stream
                    .read_buf(&mut buffer)
                    .await
                    .map_err(SlotsError::Read)?
                    == 0
                {
                    return Err(SlotsError::Closed);
                }
                if let Some((frame, _)) = parse_frame(&buffer, &Limits::default())? {
                    return Ok(SlotMap::from_cluster_slots(&frame, node)?);
                }
            }
        };
        let map = tokio::time::timeout(endpoint.command_timeout, exchange)
            .await
            .map_err(|_| SlotsError::Timeout)??;
        debug!(%node, masters = map.masters().len(), "read slot map");
        Ok(map)
    }
}
