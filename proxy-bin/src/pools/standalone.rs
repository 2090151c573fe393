//! Standalone pools: the shared connections of one standalone Redis, created lazily per worker, database and
//! protocol.
//!
//! Clients never own a shared connection; they hold a cheap handle. A client is mapped to one of the
//! `connections_per_node` connections of a (db, protocol) pair by its id, and keeps that mapping, so its pipelined
//! commands stay in order on one connection. The lock here is taken only when a client first needs a (db,
//! protocol) pair; the per-command path never touches it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tenant_policy::BackendLogin;

use super::big_lane::{BigLane, BigLanes};
use super::PoolError;
use crate::backend::{Endpoint, SharedConnection};
use crate::config::{parse_standalone_node, Config, RedisPoolConfig};

/// One standalone backend and its shared connections, as one tenant (or every client without an ACL user of
/// its own) sees it: [`StandalonePool::for_login`] gives a tenant with a `backend_user` a view of the same pool
/// whose connections log in as that user, kept apart from everyone else's.
#[derive(Debug)]
pub struct StandalonePool {
    node: Arc<StandaloneNode>,
    /// The Redis ACL user this view's connections log in as; `None`: the pool's own credentials.
    login: Option<BackendLogin>,
}

/// What every view of one standalone pool shares.
#[derive(Debug)]
struct StandaloneNode {
    name: Arc<str>,
    template: Endpoint,
    connections_per_node: usize,
    shared: Mutex<HashMap<ConnectionKey, Vec<SharedConnection>>>,
    /// Connections of their own for big requests (see [`super::big_lane`]).
    big: BigLanes,
}

/// Which shared connections: (worker thread, db, RESP3, the ACL user they log in as).
type ConnectionKey = (usize, u32, bool, Option<BackendLogin>);

impl StandalonePool {
    pub fn new(
        name: &str,
        config: &RedisPoolConfig,
        proxy: &Config,
    ) -> Result<StandalonePool, PoolError> {
        let node = config
            .nodes
            .first()
            .ok_or_else(|| PoolError::NoNode(name.to_owned()))?;
        let address = parse_standalone_node(node)?;
        Ok(StandalonePool {
            node: Arc::new(StandaloneNode {
                name: Arc::from(name),
                template: Endpoint::for_pool(&address, config, &proxy.timeouts)?,
                connections_per_node: config.connections_per_node.max(1),
                shared: Mutex::new(HashMap::new()),
                big: BigLanes::new(&proxy.big_requests),
            }),
            login: None,
        })
    }

    /// The same pool, with connections that log in as `login` (a tenant's `backend_user`), or with the
    /// pool's own credentials for `None`.
    pub fn for_login(&self, login: Option<&BackendLogin>) -> StandalonePool {
        StandalonePool {
            node: Arc::clone(&self.node),
            login: login.cloned(),
        }
    }

    /// Whether both are views of the same pool (whatever user they log in as).
    pub fn same_node(&self, other: &StandalonePool) -> bool {
        Arc::ptr_eq(&self.node, &other.node)
    }

    /// The ACL user this view's connections log in as, if not the pool's own.
    pub fn login(&self) -> Option<&BackendLogin> {
        self.login.as_ref()
    }

    pub fn name(&self) -> &str {
        &self.node.name
    }

    pub fn address(&self) -> &Arc<str> {
        &self.node.template.address
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
            .node
            .shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (worker, db, resp3, self.login.clone());
        let connections = shared.entry(key).or_insert_with(|| {
            (0..self.node.connections_per_node)
                .map(|_| SharedConnection::spawn(self.endpoint(db, resp3)))
                .collect()
        });
        let index = (client_id % connections.len() as u64) as usize;
        connections[index].clone()
    }

    /// The settings every connection to the node starts from (its TLS settings among them).
    pub fn endpoint_template(&self) -> &Endpoint {
        &self.node.template
    }

    pub fn big_lanes(&self) -> &BigLanes {
        &self.node.big
    }

    /// The big-request lane for `db` and the protocol version on event loop `worker`.
    pub fn big_lane(&self, worker: usize, db: u32, resp3: bool) -> Arc<BigLane> {
        self.node.big.lane(worker, self.endpoint(db, resp3))
    }

    /// Connection settings for a connection to this pool's node (for dedicated connections too), logging in
    /// as this view's ACL user.
    pub fn endpoint(&self, db: u32, resp3: bool) -> Endpoint {
        let endpoint = Endpoint {
            db,
            resp3,
            ..self.node.template.clone()
        };
        super::logged_in_as(endpoint, self.login.as_ref())
    }
}
