//! Standalone pools: the shared connections of one standalone Redis, created lazily per worker, database and
//! protocol.
//!
//! Clients never own a shared connection; they hold a cheap handle. A client is mapped to one of the
//! `connections_per_node` connections of a (db, protocol) pair by its id, and keeps that mapping, so its pipelined
//! commands stay in order on one connection. The lock here is taken only when a client first needs a (db,
//! protocol) pair; the per-command path never touches it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::big_lane::{BigLane, BigLanes};
use crate::backend::{Endpoint, SharedConnection};
use crate::config::{parse_node_address, Config, PoolConfig};

/// One standalone backend and its shared connections.
#[derive(Debug)]
pub struct StandalonePool {
    name: Arc<str>,
    template: Endpoint,
    connections_per_node: usize,
    /// Keyed by (worker thread, db, RESP3).
    shared: Mutex<HashMap<(usize, u32, bool), Vec<SharedConnection>>>,
    /// Connections of their own for big requests (see [`super::big_lane`]).
    big: BigLanes,
}

impl StandalonePool {
    pub fn new(name: &str, config: &PoolConfig, proxy: &Config) -> Result<StandalonePool, String> {
        let node = config
            .nodes
            .first()
            .ok_or_else(|| format!("pool '{name}' has no node"))?;
        let address = parse_node_address(node)?;
        Ok(StandalonePool {
            name: Arc::from(name),
            template: Endpoint::for_pool(&address, config, &proxy.timeouts)?,
            connections_per_node: config.connections_per_node.max(1),
            shared: Mutex::new(HashMap::new()),
            big: BigLanes::new(&proxy.big_requests),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn address(&self) -> &Arc<str> {
        &self.template.address
    }

    /// The shared connection this client uses for `db` and the protocol version on event loop `worker` (the
    /// session passes the index of the worker thread it runs on: each worker has its own backend connections,
    /// so nothing on the per-command path crosses threads).
    pub fn shared_connection(
        &self,
        worker: usize,
        client_id: u64,
        db: u32,
        resp3: bool,
    ) -> SharedConnection {
        // A poisoned lock only means another thread panicked while inserting; the map is still usable.
        let mut shared = self
            .shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let connections = shared.entry((worker, db, resp3)).or_insert_with(|| {
            (0..self.connections_per_node)
                .map(|_| SharedConnection::spawn(self.endpoint(db, resp3)))
                .collect()
        });
        let index = (client_id % connections.len() as u64) as usize;
        connections[index].clone()
    }

    pub fn big_lanes(&self) -> &BigLanes {
        &self.big
    }

    /// The big-request lane for `db` and the protocol version on event loop `worker`.
    pub fn big_lane(&self, worker: usize, db: u32, resp3: bool) -> Arc<BigLane> {
        self.big.lane(worker, self.endpoint(db, resp3))
    }

    /// Connection settings for a connection to this pool's node (for dedicated connections too).
    pub fn endpoint(&self, db: u32, resp3: bool) -> Endpoint {
        Endpoint {
            db,
            resp3,
            ..self.template.clone()
        }
    }
}
