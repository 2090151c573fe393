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

use super::big_lane::{BigLane, BigLanes};
use crate::backend::{connect, Endpoint, SharedConnection};
use crate::config::{parse_node_address, Config, PoolConfig, ReadPolicy};

/// Refreshes are at least this far apart, however many MOVED replies ask for one.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(100);

/// A Redis Cluster pool.
#[derive(Debug)]
pub struct ClusterPool {
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

/// Which shared connections: (worker thread, node, RESP3, READONLY).
type ConnectionKey = (usize, NodeAddr, bool, bool);

/// One version of the slot map.
#[derive(Debug)]
pub struct Topology {
    pub map: SlotMap,
    pub generation: u64,
}

impl ClusterPool {
    /// Builds the pool; call [`ClusterPool::start`] to load the first map and keep it fresh.
    pub fn new(name: &str, config: &PoolConfig, proxy: &Config) -> Result<ClusterPool, String> {
        let mut seeds = Vec::new();
        for node in &config.nodes {
            let address = parse_node_address(node)?;
            seeds.push(
                NodeAddr::parse(&address).ok_or_else(|| format!("bad node address '{node}'"))?,
            );
        }
        let empty = SlotMap::from_shards(Vec::new()).map_err(|e| e.to_string())?;
        Ok(ClusterPool {
            name: Arc::from(name),
            seeds,
            // The address is set per node (`endpoint`).
            template: Endpoint::for_pool("", config, &proxy.timeouts)?,
            connections_per_node: config.connections_per_node.max(1),
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
            .shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let connections = shared
            .entry((worker, node.clone(), resp3, readonly))
            .or_insert_with(|| {
                (0..self.connections_per_node)
                    .map(|_| SharedConnection::spawn(self.endpoint(node, resp3, readonly)))
                    .collect()
            });
        let index = (client_id % connections.len() as u64) as usize;
        connections[index].clone()
    }

    pub fn big_lanes(&self) -> &BigLanes {
        &self.big
    }

    /// The big-request lane to `node` (a master) on event loop `worker`.
    pub fn big_lane(&self, worker: usize, node: &NodeAddr, resp3: bool) -> Arc<BigLane> {
        self.big.lane(worker, self.endpoint(node, resp3, false))
    }

    /// Connection settings for a node of this pool.
    pub fn endpoint(&self, node: &NodeAddr, resp3: bool, readonly: bool) -> Endpoint {
        Endpoint {
            address: Arc::from(node.to_string()),
            resp3,
            readonly,
            ..self.template.clone()
        }
    }

    /// Reads the slot map from the nodes and swaps it in when it is trustworthy and new.
    async fn refresh(&self) -> Result<(), String> {
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
            return Err(format!(
                "no node answered CLUSTER SLOTS ({})",
                problems.join("; ")
            ));
        }
        Err(format!(
            "no two nodes agree about the slot owners; keeping the current map ({})",
            problems.join("; ")
        ))
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

    async fn read_slots(&self, node: &NodeAddr) -> Result<SlotMap, String> {
        let endpoint = self.endpoint(node, false, false);
        let mut stream = connect(&endpoint).await?;
        let exchange = async {
            stream
                .write_all(b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n")
                .await
                .map_err(|e| format!("write failed: {e}"))?;
            let mut buffer = BytesMut::with_capacity(4096);
            loop {
                if stream
                    .read_buf(&mut buffer)
                    .await
                    .map_err(|e| format!("read failed: {e}"))?
                    == 0
                {
                    return Err("connection closed".to_owned());
                }
                if let Some((frame, _)) =
                    parse_frame(&buffer, &Limits::default()).map_err(|e| e.to_string())?
                {
                    return SlotMap::from_cluster_slots(&frame, node).map_err(|e| e.to_string());
                }
            }
        };
        let map = tokio::time::timeout(endpoint.command_timeout, exchange)
            .await
            .map_err(|_| "no CLUSTER SLOTS reply in time".to_owned())??;
        debug!(%node, masters = map.masters().len(), "read slot map");
        Ok(map)
    }
}
