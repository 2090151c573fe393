//! Cluster pools: routing each request by the slot map, following MOVED and ASK inside the proxy, splitting
//! multi-key commands across slots and merging the replies, whole-keyspace commands, SCAN, and transactions.
//!
//! - A keyed command goes to the master of its slot (or a replica, for a read-only command when the pool has
//!   `read_from = "prefer_replica"`). A keyless one goes to any master.
//! - Pipelines: the plain single-slot commands framed from one read are batched per master (one channel
//!   message, one write and one reply message per master instead of per command); the replies are split and
//!   put back in the client's order. A command answered with MOVED or ASK inside a batch is sent again on
//!   its own, in its place.
//! - MOVED: the command is sent again to the named node and the pool is asked to refresh its map; ASK: it is
//!   sent again to the named node right after `ASKING`, in one unit. At most [`MAX_REDIRECTS`] times, then the
//!   client gets a clear error. Clients never see MOVED or ASK.
//! - TRYAGAIN (a multi-key command met a slot in migration with its keys on both sides): the command is sent
//!   again to the same node, after `ASKING` (which only matters on the importing node, where TRYAGAIN comes
//!   from after ASK), after short, growing waits ([`TRY_AGAIN_DELAYS_MS`], about 1.3 s in all) until the keys
//!   are on one side; only then does the client see TRYAGAIN. This is done only when none of the client's later
//!   requests is still owed a reply (one of them may already have run on those keys, and sending the command
//!   again would put it behind); new requests are not read until it is answered. Otherwise the client gets
//!   TRYAGAIN at once, as from Redis Cluster: nothing ran, the client may send it again.
//! - MGET/MSET/DEL/UNLINK/EXISTS/TOUCH across slots: one sub-command per key (Redis refuses cross-slot
//!   commands even when one node holds both slots; one key per part means a migration can never answer a
//!   part TRYAGAIN after the others ran); each master's share goes in one message and one write, its replies
//!   come back in one message, and they are merged in the caller's order (`cluster_router::plan` encodes the
//!   shares, `cluster_router::merge` merges; MGET's merge reads the replies in place, without trees). A
//!   redirected sub-command is sent again on its own. These are not atomic across slots, as in any Redis
//!   Cluster client.
//! - SCAN: the proxy's cursor carries the master's index in its low bits and that master's cursor above them,
//!   and stays below 2^53 so that JavaScript clients read it exactly (`cluster_router::scan_cursor`).
//! - MULTI without WATCH: queued in the session (`+QUEUED`), then sent at EXEC as one unit
//!   (`MULTI` ... `EXEC`, nothing else written in between) on a shared connection to the node of its keys. Keys
//!   in more than one slot get `CROSSSLOT` when queued and make EXEC fail with `EXECABORT`, as queue-time errors
//!   do in Redis. Every reply of the unit is read: a MOVED, or an ASK for every keyed queued command (Redis then
//!   discards the transaction), sends the whole unit again to the named node, after `ASKING` for ASK. ASK for
//!   some queued commands while others were queued means the keys are split between the two nodes of a
//!   migration: that, and Redis's own TRYAGAIN, are handled like TRYAGAIN for a single command.

mod batch;
mod forward;
mod multi;
mod redirect;
mod split;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use cluster_router::commands::CommandSpec;
use cluster_router::plan::{route, RoutePlan};
use cluster_router::topology::NodeAddr;
use resp_codec::Request;

use crate::backend::{BackendReply, RedirectWatch, SharedConnection};
use crate::pools::big_lane::BigLane;
use crate::pools::cluster::{ClusterPool, Topology};
use crate::session::errors::{ClusterError, ErrorReply};
use crate::session::Session;

use self::batch::ClusterBatch;
use self::multi::Transaction;

/// How often one command may be redirected before the client gets an error.
const MAX_REDIRECTS: u8 = 5;

/// The waits before each new attempt of a command answered with TRYAGAIN. A migration moves a slot's keys in
/// batches, so a multi-key command finds them split for a short time only.
const TRY_AGAIN_DELAYS_MS: [u64; 8] = [5, 10, 20, 40, 80, 160, 320, 640];

/// A session's view of a cluster pool.
pub(in crate::session) struct ClusterSession {
    pool: Arc<ClusterPool>,
    /// The worker thread the session runs on: the pool keeps connections per worker.
    worker: usize,
    topology: Arc<Topology>,
    /// The current map's masters, by index, and this session's connection to each (the per-command path:
    /// no hashing, no address copies).
    masters: Vec<(Arc<NodeAddr>, Option<SharedConnection>)>,
    /// Connections to other nodes (replicas, redirect targets).
    connections: HashMap<(NodeAddr, bool), SharedConnection>,
    transaction: Option<Transaction>,
    /// Single-slot commands framed from the current read and not sent yet.
    batch: ClusterBatch,
    /// Raised by the connection tasks when a reply to one of this session's requests is MOVED, ASK or
    /// TRYAGAIN: the session then holds new requests back until every earlier one has run (see
    /// `Session::holding_for_redirects`).
    pub(in crate::session) redirects: RedirectWatch,
}

impl ClusterSession {
    pub(in crate::session) fn new(pool: Arc<ClusterPool>, worker: usize) -> ClusterSession {
        let topology = pool.topology();
        let mut session = ClusterSession {
            pool,
            worker,
            topology,
            masters: Vec::new(),
            connections: HashMap::new(),
            transaction: None,
            batch: ClusterBatch::default(),
            redirects: RedirectWatch::default(),
        };
        session.use_topology(session.topology.clone());
        session
    }

    /// Routes with `topology` from now on.
    fn use_topology(&mut self, topology: Arc<Topology>) {
        self.masters = topology
            .map
            .masters()
            .iter()
            .map(|node| (Arc::new(node.clone()), None))
            .collect();
        self.topology = topology;
    }

    /// Master `index` of the current map and this session's connection to it.
    fn master(
        &mut self,
        index: usize,
        client_id: u64,
        resp3: bool,
    ) -> Option<(Arc<NodeAddr>, &SharedConnection)> {
        let (pool, worker, redirects) = (&self.pool, self.worker, &self.redirects);
        let (node, connection) = self.masters.get_mut(index)?;
        let connection = connection.get_or_insert_with(|| {
            pool.shared_connection(worker, node, client_id, resp3, false)
                .watching_redirects(redirects)
        });
        Some((Arc::clone(node), connection))
    }

    pub(in crate::session) fn in_transaction(&self) -> bool {
        self.transaction.is_some()
    }

    /// Drops cached connection handles (after the protocol version changed).
    pub(in crate::session) fn forget_connections(&mut self) {
        self.connections.clear();
        for (_, connection) in &mut self.masters {
            *connection = None;
        }
    }

    fn connection(
        &mut self,
        node: &NodeAddr,
        readonly: bool,
        client_id: u64,
        resp3: bool,
    ) -> &SharedConnection {
        let (pool, worker, redirects) = (&self.pool, self.worker, &self.redirects);
        self.connections
            .entry((node.clone(), readonly))
            .or_insert_with(|| {
                pool.shared_connection(worker, node, client_id, resp3, readonly)
                    .watching_redirects(redirects)
            })
    }

    /// The master a big request goes to: its slot's master, or any master for a keyless one. `None` for a
    /// request split across slots or sent to every node (it stays on shared connections). A new slot map is
    /// picked up first: the caller owes the client no reply, so nothing routed with the old map can be
    /// overtaken.
    pub(in crate::session) fn master_for_big_request(
        &mut self,
        spec: &'static CommandSpec,
        request: &Request,
        client_id: u64,
    ) -> Option<Arc<NodeAddr>> {
        if self.pool.generation() != self.topology.generation {
            let topology = self.pool.topology();
            self.use_topology(topology);
        }
        let index = match route(spec, request, &self.topology.map) {
            Ok(RoutePlan::Slot(slot)) => self.topology.map.shard_for_slot(slot)?,
            Ok(RoutePlan::Keyless) => self.any_master_index(client_id)?,
            _ => return None,
        };
        self.masters.get(index).map(|(node, _)| Arc::clone(node))
    }

    /// The big-request lane to `node` for this session's worker.
    pub(in crate::session) fn big_lane(&self, node: &NodeAddr, resp3: bool) -> Arc<BigLane> {
        self.pool.big_lane(self.worker, node, resp3)
    }

    fn any_master(&self, client_id: u64) -> Option<NodeAddr> {
        let masters = self.topology.map.masters();
        if masters.is_empty() {
            None
        } else {
            Some(masters[(client_id as usize) % masters.len()].clone())
        }
    }

    fn any_master_index(&self, client_id: u64) -> Option<usize> {
        let count = self.masters.len();
        (count > 0).then(|| (client_id as usize) % count)
    }
}

fn no_topology(pool: &ClusterPool) -> Bytes {
    pool.request_refresh();
    ClusterError::NoSlotMap {
        pool: pool.name().to_owned(),
    }
    .to_reply()
}

impl Session {
    /// The bytes for a final reply; a failed backend also asks the pool to re-read the slot map.
    fn finish_reply(&self, reply: BackendReply) -> Bytes {
        match reply {
            Ok(frame) => frame,
            Err(error) => {
                if let Some(cluster) = &self.cluster {
                    cluster.pool.request_refresh();
                }
                error.to_reply()
            }
        }
    }
}
