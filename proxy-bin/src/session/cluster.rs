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

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cluster_router::commands::{CommandSpec, MergePolicy};
use cluster_router::merge::{merge_ordered_raw, merge_replies};
use cluster_router::plan::{encode_parts, parts_by_node, route, RouteError, RoutePlan, SplitPart};
use cluster_router::redirect::{
    classify_batch, classify_reply, parse_redirect, ClusterReplyKind, RedirectKind,
};
use cluster_router::scan_cursor::{self, CursorError};
use cluster_router::topology::NodeAddr;
use resp_codec::{encode_command, parse_frame, split_replies, Frame, Limits, Request};

use super::errors::{ClusterError, ErrorReply, ReplyError};
use super::pending::{ClusterExec, Combine, Merge, Part, Pending, Pipeline, PipelinePart, Routed};
use super::transaction::{self, TransactionError};
use super::Session;
use crate::backend::{BackendReply, Patience, PatientSender, RedirectWatch, SharedConnection};
use crate::config::ReadPolicy;
use crate::pools::big_lane::BigLane;
use crate::pools::cluster::{ClusterPool, Topology};
use crate::reply;

/// How often one command may be redirected before the client gets an error.
const MAX_REDIRECTS: u8 = 5;

/// The waits before each new attempt of a command answered with TRYAGAIN. A migration moves a slot's keys in
/// batches, so a multi-key command finds them split for a short time only.
const TRY_AGAIN_DELAYS_MS: [u64; 8] = [5, 10, 20, 40, 80, 160, 320, 640];

/// A session's view of a cluster pool.
pub(super) struct ClusterSession {
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
    pub(super) redirects: RedirectWatch,
}

/// Single-slot commands waiting to go out, grouped by master: one write and one reply message per master and
/// read, instead of one per command.
#[derive(Default)]
struct ClusterBatch {
    /// By master index: the requests, back to back, and where each one ends.
    by_master: Vec<(BytesMut, Vec<usize>)>,
    /// The master index of each command, in the client's order.
    order: Vec<u16>,
    bytes: usize,
    /// Slow if a batched command is (a script): every part is then sent with the longer allowance.
    patience: Patience,
}

/// A MULTI queued in the session.
#[derive(Default)]
struct Transaction {
    commands: BytesMut,
    count: usize,
    slot: Option<u16>,
    /// Set by a queue-time error: EXEC then fails with EXECABORT.
    failed: bool,
    /// Slow if a queued command is (a script): the backend then waits longer for EXEC.
    patience: Patience,
}

impl ClusterSession {
    pub(super) fn new(pool: Arc<ClusterPool>, worker: usize) -> ClusterSession {
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

    /// Queues a request for master `index` in the batch of the current read. False if there is no such master.
    fn batch_for_master(&mut self, index: usize, request: &Request) -> bool {
        let Ok(order) = u16::try_from(index) else {
            return false;
        };
        if index >= self.masters.len() {
            return false;
        }
        if self.batch.by_master.len() <= index {
            self.batch
                .by_master
                .resize_with(index + 1, Default::default);
        }
        let (requests, ends) = &mut self.batch.by_master[index];
        requests.extend_from_slice(request.raw());
        ends.push(requests.len());
        self.batch.order.push(order);
        self.batch.bytes += request.raw().len();
        true
    }

    fn batch_is_full(&self) -> bool {
        self.batch.order.len() >= super::MAX_BATCH_REQUESTS
            || self.batch.bytes >= super::MAX_BATCH_BYTES
    }

    /// Sends the batched requests: one batch per master. `None` if there were none.
    fn flush_batch(&mut self, client_id: u64, resp3: bool) -> Option<Pending> {
        if self.batch.order.is_empty() {
            return None;
        }
        let mut order = std::mem::take(&mut self.batch.order);
        self.batch.bytes = 0;
        let patience = std::mem::take(&mut self.batch.patience);
        // `batch_for_master` only queues for masters that exist, and the masters change only when nothing is
        // batched, so every part below finds its connection. Should that ever fail, every command of the batch
        // still gets a reply (an error), so that no client waits for ever.
        let unroutable = |commands: usize| {
            let error = ClusterError::LostBatchMaster.to_reply();
            Pending::Ready(error.repeat(commands).into())
        };
        if let [index] = order[..] {
            // One command: the plain routed entry, no reordering to do.
            let index = usize::from(index);
            let (requests, ends) = &mut self.batch.by_master[index];
            let request = requests.split().freeze();
            ends.clear();
            let Some((node, connection)) = self.master(index, client_id, resp3) else {
                return Some(unroutable(1));
            };
            let receiver = connection.with_patience(patience).send(request.clone());
            return Some(Pending::Routed(Box::new(Routed {
                receiver,
                request,
                node,
                redirects: 0,
                rewrite: None,
            })));
        }
        // Masters in the batch become parts; `order` is rewritten from master indices to part indices (at most
        // one part per master, and master indices fit in u16).
        let mut by_master = std::mem::take(&mut self.batch.by_master);
        let mut part_of_master = vec![0u16; by_master.len()];
        let mut parts = Vec::new();
        for (index, (requests, ends)) in by_master.iter_mut().enumerate() {
            if ends.is_empty() {
                continue;
            }
            let requests = requests.split().freeze();
            let ends = std::mem::take(ends);
            let Some((node, connection)) = self.master(index, client_id, resp3) else {
                by_master.iter_mut().for_each(|(requests, ends)| {
                    requests.clear();
                    ends.clear();
                });
                self.batch.by_master = by_master;
                return Some(unroutable(order.len()));
            };
            let receiver = connection
                .with_patience(patience)
                .send_many(requests.clone(), ends.len());
            part_of_master[index] = parts.len() as u16;
            parts.push(PipelinePart {
                receiver: Some(receiver),
                node,
                requests,
                ends,
                reply: None,
            });
        }
        // Keep the buffers' allocations for the next read.
        self.batch.by_master = by_master;
        for entry in &mut order {
            *entry = part_of_master[usize::from(*entry)];
        }
        Some(Pending::Pipeline(Box::new(Pipeline { parts, order })))
    }

    pub(super) fn in_transaction(&self) -> bool {
        self.transaction.is_some()
    }

    /// Drops cached connection handles (after the protocol version changed).
    pub(super) fn forget_connections(&mut self) {
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

    /// Sends a request to master `index`; the pending entry follows MOVED/ASK later.
    fn send_to_master(
        &mut self,
        index: usize,
        client_id: u64,
        resp3: bool,
        request: &Request,
        rewrite: Option<&'static CommandSpec>,
        patience: Patience,
    ) -> Option<Pending> {
        let (node, connection) = self.master(index, client_id, resp3)?;
        let receiver = connection
            .with_patience(patience)
            .send(request.raw().clone());
        Some(Pending::Routed(Box::new(Routed {
            receiver,
            request: request.raw().clone(),
            node,
            redirects: 0,
            rewrite,
        })))
    }

    /// Sends a request to any node (a replica, say); the pending entry follows MOVED/ASK later.
    // The session's routing context (client id, protocol) is passed as is, like `send_to_master`'s.
    #[allow(clippy::too_many_arguments)]
    fn send_routed(
        &mut self,
        node: Arc<NodeAddr>,
        readonly: bool,
        client_id: u64,
        resp3: bool,
        request: &Request,
        rewrite: Option<&'static CommandSpec>,
        patience: Patience,
    ) -> Pending {
        let receiver = self
            .connection(&node, readonly, client_id, resp3)
            .with_patience(patience)
            .send(request.raw().clone());
        Pending::Routed(Box::new(Routed {
            receiver,
            request: request.raw().clone(),
            node,
            redirects: 0,
            rewrite,
        }))
    }

    /// Sends a command split across slots: each master gets its share of the sub-commands in one write (encoded
    /// by `cluster_router::plan`) and answers them in one reply message; the merge waits for every master.
    // The session's routing context (client id, protocol) is passed as is, like `send_routed`'s.
    #[allow(clippy::too_many_arguments)]
    fn send_split(
        &mut self,
        request: &Request,
        split: Vec<SplitPart>,
        policy: MergePolicy,
        rewrite: Option<&'static CommandSpec>,
        client_id: u64,
        resp3: bool,
    ) -> Pending {
        // Room for every share at once (the keys, plus the name and headers per part): one allocation in all.
        let mut wire = BytesMut::with_capacity(
            request.raw().len() + split.len() * (request.name().len() + 16),
        );
        let mut shares = Vec::with_capacity(self.masters.len().min(split.len()));
        for run in parts_by_node(&split) {
            let Some(first) = run.first() else {
                continue;
            };
            encode_parts(request, run, &mut wire);
            let requests = wire.split().freeze();
            // Every share must go out, or the merged reply would miss keys.
            let Some((node, connection)) = self.master(first.node_index, client_id, resp3) else {
                self.pool.request_refresh();
                let error = RouteError::SlotNotServed { slot: first.slot };
                return Pending::Ready(Bytes::from(error.to_reply()));
            };
            let receiver = connection
                .with_patience(Patience::Normal)
                .send_many(requests.clone(), run.len());
            shares.push(Part {
                receiver: Some(receiver),
                request: requests,
                commands: run.len(),
                node,
                redirects: 0,
                reply: None,
            });
        }
        Pending::Merge(Box::new(Merge {
            parts: shares,
            combine: Combine::Policy { policy, split },
            rewrite,
        }))
    }

    /// The master a big request goes to: its slot's master, or any master for a keyless one. `None` for a
    /// request split across slots or sent to every node (it stays on shared connections). A new slot map is
    /// picked up first: the caller owes the client no reply, so nothing routed with the old map can be
    /// overtaken.
    pub(super) fn master_for_big_request(
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
    pub(super) fn big_lane(&self, node: &NodeAddr, resp3: bool) -> Arc<BigLane> {
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
    /// Cluster pools: puts a plain command for one slot's master into the batch of the current read (see
    /// `ClusterBatch`); anything else is routed on its own, after the batch is sent.
    pub(super) fn cluster_forward_or_batch(
        &mut self,
        spec: &'static CommandSpec,
        request: Request,
    ) {
        let plan = match self.cluster.as_mut() {
            Some(cluster)
                if cluster.pool.generation() == cluster.topology.generation
                    && !(spec.is_readonly()
                        && cluster.pool.read_policy() == ReadPolicy::PreferReplica) =>
            {
                route(spec, &request, &cluster.topology.map)
            }
            _ => {
                self.flush_batch();
                self.cluster_forward(spec, request);
                return;
            }
        };
        if let (Ok(RoutePlan::Slot(slot)), Some(cluster)) = (&plan, self.cluster.as_mut()) {
            let queued = cluster
                .topology
                .map
                .shard_for_slot(*slot)
                .is_some_and(|index| cluster.batch_for_master(index, &request));
            if queued {
                cluster.batch.patience = cluster.batch.patience.max(Patience::for_command(spec));
                if cluster.batch_is_full() {
                    self.flush_batch();
                }
                return;
            }
        }
        self.flush_batch();
        self.cluster_forward_planned(spec, request, plan);
    }

    /// Sends the batch of the current read, if any, as one pending entry.
    pub(super) fn flush_cluster_batch(&mut self) {
        let (id, resp3) = (self.id, self.resp3);
        if let Some(entry) = self
            .cluster
            .as_mut()
            .and_then(|cluster| cluster.flush_batch(id, resp3))
        {
            self.pending.push_back(entry);
        }
    }

    /// Routes a request on a cluster pool.
    pub(super) fn cluster_forward(&mut self, spec: &'static CommandSpec, request: Request) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        // A new slot map: let everything routed with the old one finish first, so nothing overtakes.
        if cluster.pool.generation() != cluster.topology.generation {
            if !self.pending.is_empty() {
                self.defer_policed(request);
                return;
            }
            let topology = cluster.pool.topology();
            cluster.use_topology(topology);
        }
        let plan = route(spec, &request, &cluster.topology.map);
        self.cluster_forward_planned(spec, request, plan);
    }

    /// Carries out a routing plan made with the session's current slot map.
    fn cluster_forward_planned(
        &mut self,
        spec: &'static CommandSpec,
        request: Request,
        plan: Result<RoutePlan, RouteError>,
    ) {
        let (id, resp3) = (self.id, self.resp3);
        let rewrite = self.reply_rewrite(spec);
        let patience = Patience::for_command(spec);
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let plan = match plan {
            Ok(plan) => plan,
            Err(error) => {
                if matches!(error, RouteError::SlotNotServed { .. }) {
                    cluster.pool.request_refresh();
                }
                self.pending
                    .push_back(Pending::Ready(Bytes::from(error.to_reply())));
                return;
            }
        };
        let entry = match plan {
            RoutePlan::Slot(slot) => {
                let map = &cluster.topology.map;
                let prefer_replica =
                    spec.is_readonly() && cluster.pool.read_policy() == ReadPolicy::PreferReplica;
                let replicas = if prefer_replica {
                    map.replicas_for_slot(slot)
                } else {
                    &[]
                };
                let use_replica = !replicas.is_empty();
                if use_replica {
                    let replica = Arc::new(replicas[(id as usize) % replicas.len()].clone());
                    cluster.send_routed(replica, true, id, resp3, &request, rewrite, patience)
                } else {
                    let sent = map.shard_for_slot(slot).and_then(|index| {
                        cluster.send_to_master(index, id, resp3, &request, rewrite, patience)
                    });
                    sent.unwrap_or_else(|| {
                        cluster.pool.request_refresh();
                        Pending::Ready(Bytes::from(RouteError::SlotNotServed { slot }.to_reply()))
                    })
                }
            }
            RoutePlan::Keyless => {
                let sent = cluster.any_master_index(id).and_then(|index| {
                    cluster.send_to_master(index, id, resp3, &request, rewrite, patience)
                });
                sent.unwrap_or_else(|| Pending::Ready(no_topology(&cluster.pool)))
            }
            RoutePlan::Split { parts, merge } => {
                cluster.send_split(&request, parts, merge, rewrite, id, resp3)
            }
            RoutePlan::AllMasters(policy) | RoutePlan::AllNodes(policy) => {
                let all_nodes = matches!(plan, RoutePlan::AllNodes(_));
                let nodes: Vec<Arc<NodeAddr>> = if all_nodes {
                    cluster
                        .topology
                        .map
                        .nodes()
                        .cloned()
                        .map(Arc::new)
                        .collect()
                } else {
                    cluster
                        .masters
                        .iter()
                        .map(|(node, _)| Arc::clone(node))
                        .collect()
                };
                if nodes.is_empty() {
                    Pending::Ready(no_topology(&cluster.pool))
                } else {
                    let parts = nodes
                        .into_iter()
                        .map(|node| {
                            let receiver = cluster
                                .connection(&node, false, id, resp3)
                                .send(request.raw().clone());
                            Part {
                                receiver: Some(receiver),
                                request: request.raw().clone(),
                                commands: 1,
                                node,
                                redirects: 0,
                                reply: None,
                            }
                        })
                        .collect();
                    Pending::Merge(Box::new(Merge {
                        parts,
                        combine: Combine::Policy {
                            policy,
                            split: Vec::new(),
                        },
                        rewrite,
                    }))
                }
            }
            RoutePlan::Scan => scan(cluster, &request, id, resp3, rewrite),
            _ => Pending::Ready(ClusterError::CannotRoute.to_reply()),
        };
        self.pending.push_back(entry);
    }

    /// A reply for a routed request: passed on, or (MOVED/ASK) the request goes out again.
    pub(super) fn cluster_reply(
        &mut self,
        mut routed: Box<Routed>,
        reply: BackendReply,
    ) -> Result<Bytes, Pending> {
        let later_in_flight = self.later_requests_in_flight();
        let redirects = routed.redirects;
        match self.follow_redirect(
            &routed.request,
            &routed.node,
            redirects,
            later_in_flight,
            &reply,
        ) {
            Some(Ok((receiver, node))) => {
                routed.receiver = receiver;
                routed.node = Arc::new(node);
                routed.redirects += 1;
                Err(Pending::Routed(routed))
            }
            Some(Err(error)) => Ok(error),
            None => {
                let bytes = self.finish_reply(reply);
                self.note_reply_size(&routed.request, &bytes);
                Ok(match routed.rewrite {
                    Some(spec) => self.rewrite_reply_bytes(spec, bytes),
                    None => bytes,
                })
            }
        }
    }

    /// A reply for one part of a merge; the merged reply once every part has answered.
    pub(super) fn cluster_part_reply(
        &mut self,
        mut merge: Box<Merge>,
        index: usize,
        reply: BackendReply,
    ) -> Result<Bytes, Pending> {
        let Some(part) = merge.parts.get_mut(index) else {
            return Ok(ClusterError::UnknownPart.to_reply());
        };
        let later_in_flight = self.later_requests_in_flight();
        if part.commands > 1 {
            self.settle_share(&mut merge.parts, index, reply, later_in_flight);
        } else {
            self.settle_part(part, reply, later_in_flight);
        }
        if merge.parts.iter().any(|part| part.reply.is_none()) {
            return Err(Pending::Merge(merge));
        }
        let rewrite = merge.rewrite;
        let bytes = combine(*merge, self.resp3);
        Ok(match rewrite {
            Some(spec) => self.rewrite_reply_bytes(spec, bytes),
            None => bytes,
        })
    }

    /// One command's reply in a merge: kept, or (MOVED, ASK, TRYAGAIN) the command goes out again and the part
    /// waits for the new reply.
    fn settle_part(&mut self, part: &mut Part, reply: BackendReply, later_in_flight: bool) {
        match self.follow_redirect(
            &part.request,
            &part.node,
            part.redirects,
            later_in_flight,
            &reply,
        ) {
            Some(Ok((receiver, node))) => {
                part.receiver = Some(receiver);
                part.node = Arc::new(node);
                part.redirects += 1;
            }
            Some(Err(error)) => part.reply = Some(error),
            None => part.reply = Some(self.finish_reply(reply)),
        }
    }

    /// The replies to a master's share of a split (`parts[index]`, several sub-commands answered back to back).
    /// Kept whole when every reply is final, the usual case: the merge reads them where they are. Otherwise the
    /// share becomes one part per sub-command, in its place, and each is settled on its own.
    fn settle_share(
        &mut self,
        parts: &mut Vec<Part>,
        index: usize,
        reply: BackendReply,
        later_in_flight: bool,
    ) {
        let Some(share) = parts.get_mut(index) else {
            return;
        };
        let bytes = match reply {
            Ok(bytes) => bytes,
            Err(error) => {
                share.reply = Some(self.finish_reply(Err(error)));
                return;
            }
        };
        match classify_batch(&bytes) {
            Some((count, ClusterReplyKind::Final)) if count == share.commands => {
                share.reply = Some(bytes);
                return;
            }
            Some((count, _)) if count == share.commands => {}
            _ => {
                share.reply = Some(ReplyError::Unreadable.to_reply());
                return;
            }
        }
        // The sub-commands are RESP arrays of bulk strings, so the reply framer splits them as well.
        let limits = Limits::for_backend_replies();
        let (Ok(requests), Ok(replies)) = (
            split_replies(&share.request, &limits),
            split_replies(&bytes, &limits),
        ) else {
            share.reply = Some(ReplyError::Unreadable.to_reply());
            return;
        };
        let mut singles: Vec<Part> = requests
            .into_iter()
            .map(|request| Part {
                receiver: None,
                request,
                commands: 1,
                node: Arc::clone(&share.node),
                redirects: share.redirects,
                reply: None,
            })
            .collect();
        for (single, reply) in singles.iter_mut().zip(replies) {
            self.settle_part(single, Ok(reply), later_in_flight);
        }
        parts.splice(index..=index, singles);
    }

    /// A reply for one part of a pipeline. Once every part has answered, the replies go to the client in its
    /// order; commands answered with MOVED or ASK are sent again, each as a routed entry in its place.
    pub(super) fn cluster_pipeline_reply(
        &mut self,
        mut pipeline: Box<Pipeline>,
        index: usize,
        reply: BackendReply,
    ) -> Result<(), Pending> {
        if let Some(part) = pipeline.parts.get_mut(index) {
            part.reply = Some(reply);
        }
        if pipeline.parts.iter().any(|part| part.reply.is_none()) {
            return Err(Pending::Pipeline(pipeline));
        }
        let Pipeline { parts, order } = *pipeline;
        let mut replies = Vec::with_capacity(parts.len());
        let mut redirected = false;
        for part in &parts {
            let frames = match &part.reply {
                Some(Ok(bytes)) => match split_replies(bytes, &Limits::for_backend_replies()) {
                    Ok(frames) if frames.len() == part.ends.len() => frames,
                    _ => vec![ReplyError::Unreadable.to_reply(); part.ends.len()],
                },
                Some(Err(error)) => {
                    if let Some(cluster) = &self.cluster {
                        cluster.pool.request_refresh();
                    }
                    vec![error.to_reply(); part.ends.len()]
                }
                None => Vec::new(),
            };
            redirected |= frames
                .iter()
                .any(|frame| classify_reply(frame) != ClusterReplyKind::Final);
            replies.push(frames.into_iter());
        }
        if !redirected {
            let threshold = self
                .pool
                .big_lanes()
                .map_or(usize::MAX, |lanes| lanes.threshold());
            let mut next_request = vec![0usize; parts.len()];
            for &part in &order {
                let part = usize::from(part);
                if let Some(frame) = replies.get_mut(part).and_then(Iterator::next) {
                    if frame.len() >= threshold {
                        self.note_pipelined_reply(&parts, part, next_request[part], &frame);
                    }
                    self.write_buffer.extend_from_slice(&frame);
                }
                if let Some(next) = next_request.get_mut(part) {
                    *next += 1;
                }
            }
            return Ok(());
        }
        // Redirects: every command becomes an entry of its own, in order, in front of the queue.
        let mut entries = Vec::with_capacity(order.len());
        let mut next_request = vec![0usize; parts.len()];
        for (position, &part_index) in order.iter().enumerate() {
            let part_index = usize::from(part_index);
            let (Some(part), Some(frame)) = (
                parts.get(part_index),
                replies.get_mut(part_index).and_then(Iterator::next),
            ) else {
                continue;
            };
            let number = next_request[part_index];
            next_request[part_index] += 1;
            let start = number.checked_sub(1).map_or(0, |before| part.ends[before]);
            let request = part.requests.slice(start..part.ends[number]);
            let later_in_flight = position + 1 < order.len() || self.later_requests_in_flight();
            let redirect =
                self.follow_redirect(&request, &part.node, 0, later_in_flight, &Ok(frame.clone()));
            entries.push(match redirect {
                Some(Ok((receiver, node))) => Pending::Routed(Box::new(Routed {
                    receiver,
                    request,
                    node: Arc::new(node),
                    redirects: 1,
                    rewrite: None,
                })),
                Some(Err(error)) => Pending::Ready(error),
                None => Pending::Ready(frame),
            });
        }
        for entry in entries.into_iter().rev() {
            self.pending.push_front(entry);
        }
        Ok(())
    }

    /// A big reply to request `number` of pipeline part `part`: its key is remembered for the big lane.
    fn note_pipelined_reply(
        &self,
        parts: &[PipelinePart],
        part: usize,
        number: usize,
        reply: &[u8],
    ) {
        let Some(part) = parts.get(part) else {
            return;
        };
        let start = number
            .checked_sub(1)
            .and_then(|before| part.ends.get(before))
            .copied()
            .unwrap_or(0);
        if let Some(request) = part
            .ends
            .get(number)
            .and_then(|&end| part.requests.get(start..end))
        {
            self.note_reply_size(request, reply);
        }
    }

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

    /// If `reply` is MOVED or ASK, sends `request` to the named node. `None`: not a redirect.
    /// `Some(Err)`: too many redirects, the client's error.
    #[allow(clippy::type_complexity)]
    fn follow_redirect(
        &mut self,
        request: &Bytes,
        replied_by: &NodeAddr,
        redirects: u8,
        later_in_flight: bool,
        reply: &BackendReply,
    ) -> Option<Result<(tokio::sync::oneshot::Receiver<BackendReply>, NodeAddr), Bytes>> {
        let Ok(frame) = reply else {
            return None;
        };
        let kind = classify_reply(frame);
        // TRYAGAIN: sending the command again later is only safe when none of the client's later requests can
        // have run meanwhile (they might touch the same keys); otherwise the client gets Redis's TRYAGAIN.
        if kind == ClusterReplyKind::Final
            || (kind == ClusterReplyKind::TryAgain && later_in_flight)
        {
            return None;
        }
        if kind == ClusterReplyKind::TryAgain {
            self.try_again_hold = true;
        }
        let (id, resp3) = (self.id, self.resp3);
        let cluster = self.cluster.as_mut()?;
        if kind == ClusterReplyKind::TryAgain {
            tracing::debug!(target: "rkproxy::cluster", client = id, node = %replied_by,
                command = %command_summary(request), "TRYAGAIN: sending again later");
            let connection = cluster.connection(replied_by, false, id, resp3).clone();
            let patience = Patience::for_request_bytes(request);
            let receiver = send_until_not_try_again(connection, patience, request.clone());
            return Some(Ok((receiver, replied_by.clone())));
        }
        let redirect = parse_redirect(frame)?;
        if redirect.kind == RedirectKind::Moved {
            cluster.pool.request_refresh();
        }
        if redirects >= MAX_REDIRECTS {
            let last = String::from_utf8_lossy(&frame[1..]).trim_end().to_owned();
            return Some(Err(ClusterError::TooManyRedirections { last }.to_reply()));
        }
        let target = redirect.target_addr(replied_by);
        tracing::debug!(target: "rkproxy::cluster", client = id, from = %replied_by, to = %target,
            ask = redirect.kind == RedirectKind::Ask, command = %command_summary(request), "redirected");
        // A big request goes again on the big lane of the node named.
        let threshold = cluster.pool.big_lanes().threshold();
        let asking = redirect.kind == RedirectKind::Ask;
        let lane = || cluster.big_lane(&target, resp3);
        if let Some(receiver) = super::big::redirect_on_lane(lane, threshold, request, asking) {
            return Some(Ok((receiver, target)));
        }
        // Only the bytes of a redirected request are kept; redirects are rare enough to look it up again.
        let connection = cluster
            .connection(&target, false, id, resp3)
            .with_patience(Patience::for_request_bytes(request));
        let receiver = match redirect.kind {
            RedirectKind::Ask => connection.send_asking(request),
            _ => connection.send(request.clone()),
        };
        Some(Ok((receiver, target)))
    }

    // === transactions ===

    pub(super) fn begin_cluster_transaction(&mut self) {
        if let Some(cluster) = &mut self.cluster {
            cluster.transaction = Some(Transaction::default());
        }
        self.pending.push_back(Pending::Ready(reply::ok()));
    }

    /// Handles a command while a cluster MULTI is open: queue it, or run EXEC/DISCARD.
    pub(super) fn queue_in_transaction(
        &mut self,
        spec: &CommandSpec,
        request: Request,
    ) -> Option<Pending> {
        let (id, resp3) = (self.id, self.resp3);
        let cluster = self.cluster.as_mut()?;
        let transaction = cluster.transaction.as_mut()?;
        // A queue-time error: answered at once, and EXEC then fails with EXECABORT, as in Redis.
        let refuse = |transaction: &mut Transaction, reply: Bytes| {
            transaction.failed = true;
            Some(Pending::Ready(reply))
        };
        match spec.name {
            // Errors that do not abort the transaction, as in Redis.
            "multi" => return Some(Pending::Ready(TransactionError::NestedMulti.to_reply())),
            "watch" => {
                return Some(Pending::Ready(
                    TransactionError::WatchInsideMulti.to_reply(),
                ))
            }
            "discard" => {
                cluster.transaction = None;
                return Some(Pending::Ready(reply::ok()));
            }
            "exec" => {
                let transaction = cluster.transaction.take()?;
                return Some(cluster.send_transaction(transaction, id, resp3));
            }
            _ => {}
        }
        if !transaction::queueable(spec) {
            return refuse(transaction, transaction::refusal(spec, &request));
        }
        let crossslot = || Bytes::from(RouteError::CrossSlot.to_reply());
        match route(spec, &request, &cluster.topology.map) {
            Ok(RoutePlan::Slot(slot)) => match transaction.slot {
                Some(first) if first != slot => return refuse(transaction, crossslot()),
                _ => transaction.slot = Some(slot),
            },
            Ok(RoutePlan::Keyless) => {}
            Ok(_) => return refuse(transaction, crossslot()),
            Err(error) => return refuse(transaction, Bytes::from(error.to_reply())),
        }
        transaction.commands.extend_from_slice(request.raw());
        transaction.count += 1;
        transaction.patience = transaction.patience.max(Patience::for_command(spec));
        Some(Pending::Ready(reply::simple("QUEUED")))
    }

    /// A command refused while a MULTI is open (a cluster MULTI queued here, or one on a dedicated connection)
    /// makes EXEC fail, as in Redis.
    pub(super) fn fail_transaction(&mut self) {
        self.fail_dedicated_transaction();
        if let Some(transaction) = self.cluster.as_mut().and_then(|c| c.transaction.as_mut()) {
            transaction.failed = true;
        }
    }

    /// The reply to a transaction unit: EXEC's reply, or (MOVED/ASK for any queued command, or for EXEC) the
    /// whole unit goes again to the named node. Redis discards a transaction in which a command was redirected,
    /// so nothing ran and sending it again is safe; the client never sees the redirect nor a spurious EXECABORT.
    pub(super) fn cluster_exec_reply(
        &mut self,
        exec: ClusterExec,
        reply: BackendReply,
    ) -> Result<Bytes, Pending> {
        let bytes = match reply {
            Ok(bytes) => bytes,
            Err(error) => return Ok(self.finish_reply(Err(error))),
        };
        let expected = exec.commands + usize::from(exec.asking);
        let mut frames = match split_replies(&bytes, &Limits::for_backend_replies()) {
            Ok(frames) if frames.len() == expected => frames,
            _ => return Ok(ReplyError::Unreadable.to_reply()),
        };
        let queued = || frames.iter().skip(usize::from(exec.asking));
        let redirect = queued()
            .find(|frame| classify_reply(frame) == ClusterReplyKind::Redirect)
            .cloned();
        // ASK for some queued commands while others were queued or answered TRYAGAIN: the transaction's keys
        // are split between the two nodes of a migration, and neither can run it whole (the importing node
        // would treat the keys still on the other side as missing). Redis's answer to a multi-key command in
        // that state is TRYAGAIN, and it is handled as one: sending the unit to the importing node could run it
        // after later requests of the client that ran on the keys still at the old owner.
        let asked = |r: &Bytes| parse_redirect(r).is_some_and(|r| r.kind == RedirectKind::Ask);
        let split_by_migration = redirect.as_ref().is_some_and(asked)
            && queued().any(|frame| {
                frame.starts_with(b"+QUEUED") || classify_reply(frame) == ClusterReplyKind::TryAgain
            });
        let (redirect, try_again) = if split_by_migration {
            (None, Some(ClusterError::TryAgain.to_reply()))
        } else {
            let try_again = queued()
                .find(|frame| classify_reply(frame) == ClusterReplyKind::TryAgain)
                .cloned();
            (redirect, try_again)
        };
        let later_in_flight = self.later_requests_in_flight();
        let (id, resp3) = (self.id, self.resp3);
        let redirect = match (redirect, try_again) {
            (Some(redirect), _) => redirect,
            // Nothing ran; the client gets Redis's TRYAGAIN as EXEC's reply when sending the unit again could
            // put it behind later requests, or when the attempts are used up.
            (None, Some(try_again)) if later_in_flight => return Ok(try_again),
            (None, Some(try_again)) => {
                let Some(cluster) = self.cluster.as_mut() else {
                    return Ok(try_again);
                };
                return match cluster.send_unit_again_later(exec, id, resp3) {
                    Some(again) => {
                        self.try_again_hold = true;
                        Err(again)
                    }
                    None => Ok(try_again),
                };
            }
            (None, None) => return Ok(frames.pop().unwrap_or_default()),
        };
        let Some(cluster) = self.cluster.as_mut() else {
            return Ok(redirect);
        };
        let Some(parsed) = parse_redirect(&redirect) else {
            return Ok(redirect);
        };
        if parsed.kind == RedirectKind::Moved {
            cluster.pool.request_refresh();
        }
        if exec.redirects >= MAX_REDIRECTS {
            let last = String::from_utf8_lossy(&redirect[1..])
                .trim_end()
                .to_owned();
            return Ok(ClusterError::TooManyRedirections { last }.to_reply());
        }
        let target = parsed.target_addr(&exec.node);
        let asking = parsed.kind == RedirectKind::Ask;
        tracing::debug!(target: "rkproxy::cluster", client = id, from = %exec.node, to = %target, ask = asking,
            commands = exec.commands, replies = %reply_kinds(&frames), "transaction redirected");
        let receiver = cluster
            .connection(&target, false, id, resp3)
            .with_patience(exec.patience);
        let receiver = send_unit(receiver, &exec.unit, exec.commands, asking);
        Err(Pending::Transaction(Box::new(ClusterExec {
            receiver,
            unit: exec.unit,
            commands: exec.commands,
            asking,
            node: Arc::new(target),
            redirects: exec.redirects + 1,
            try_again: exec.try_again,
            patience: exec.patience,
        })))
    }
}

impl ClusterSession {
    /// EXEC of a queued transaction: EXECABORT after a queue-time error, `*0` when empty, otherwise the unit
    /// (`MULTI` ... `EXEC`) goes to the master of its slot.
    fn send_transaction(&mut self, transaction: Transaction, id: u64, resp3: bool) -> Pending {
        if transaction.failed {
            return Pending::Ready(TransactionError::ExecAbort.to_reply());
        }
        if transaction.count == 0 {
            return Pending::Ready(Bytes::from_static(b"*0\r\n"));
        }
        let node = match transaction.slot {
            Some(slot) => self.topology.map.master_for_slot(slot).cloned(),
            None => self.any_master(id),
        };
        let Some(node) = node else {
            return Pending::Ready(no_topology(&self.pool));
        };
        let mut unit = BytesMut::with_capacity(transaction.commands.len() + 32);
        unit.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n");
        unit.extend_from_slice(&transaction.commands);
        unit.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
        let unit = unit.freeze();
        let commands = transaction.count + 2;
        let patience = transaction.patience;
        let connection = self.connection(&node, false, id, resp3);
        let receiver = send_unit(connection.with_patience(patience), &unit, commands, false);
        Pending::Transaction(Box::new(ClusterExec {
            receiver,
            unit,
            commands,
            asking: false,
            node: Arc::new(node),
            redirects: 0,
            try_again: 0,
            patience,
        }))
    }

    /// A transaction unit answered TRYAGAIN for a queued command (Redis discarded it): the unit goes again to the
    /// same node, after `ASKING` and a wait. `None` when the attempts are used up.
    fn send_unit_again_later(
        &mut self,
        exec: ClusterExec,
        id: u64,
        resp3: bool,
    ) -> Option<Pending> {
        let delay = *TRY_AGAIN_DELAYS_MS.get(usize::from(exec.try_again))?;
        let connection = self.connection(&exec.node, false, id, resp3).clone();
        let (unit, commands, patience) = (exec.unit.clone(), exec.commands, exec.patience);
        let receiver = send_later(std::time::Duration::from_millis(delay), move || {
            send_unit(connection.with_patience(patience), &unit, commands, true)
        });
        Some(Pending::Transaction(Box::new(ClusterExec {
            receiver,
            asking: true,
            try_again: exec.try_again + 1,
            ..exec
        })))
    }

    /// Ends an open MULTI (QUIT or RESET inside it).
    pub(super) fn end_transaction(&mut self) {
        self.transaction = None;
    }
}

/// Writes a transaction unit (after `ASKING`: Redis keeps the ASKING flag for the whole MULTI block) and asks
/// for every reply.
fn send_unit(
    connection: PatientSender<'_>,
    unit: &Bytes,
    commands: usize,
    asking: bool,
) -> tokio::sync::oneshot::Receiver<BackendReply> {
    if !asking {
        return connection.send_many(unit.clone(), commands);
    }
    let mut both = BytesMut::with_capacity(unit.len() + 20);
    both.extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
    both.extend_from_slice(unit);
    connection.send_many(both.freeze(), commands + 1)
}

/// Sends a request that was answered TRYAGAIN again, after `ASKING` (TRYAGAIN after ASK comes from the importing
/// node, which needs it; on the slot's owner it changes nothing), waiting [`TRY_AGAIN_DELAYS_MS`] before each
/// attempt, until the reply is something else or the attempts are used up (the client then gets TRYAGAIN).
fn send_until_not_try_again(
    connection: SharedConnection,
    patience: Patience,
    request: Bytes,
) -> tokio::sync::oneshot::Receiver<BackendReply> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut reply = super::pending::lost();
        for delay in TRY_AGAIN_DELAYS_MS {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            let attempt = connection.with_patience(patience).send_asking(&request);
            reply = attempt.await.unwrap_or_else(|_| super::pending::lost());
            let again =
                matches!(&reply, Ok(frame) if classify_reply(frame) == ClusterReplyKind::TryAgain);
            if !again {
                break;
            }
        }
        let _ = sender.send(reply);
    });
    receiver
}

/// The first bytes of each reply, for debug logs (`+QUEUED -ASK -TRYAGAIN ...`).
fn reply_kinds(frames: &[Bytes]) -> String {
    let kinds: Vec<String> = frames
        .iter()
        .map(|frame| {
            let end = frame
                .iter()
                .position(|&byte| byte == b' ' || byte == b'\r')
                .unwrap_or(frame.len());
            String::from_utf8_lossy(&frame[..end]).into_owned()
        })
        .collect();
    kinds.join(" ")
}

/// The command name and first argument of a request, for debug logs (values are never logged).
fn command_summary(request: &[u8]) -> String {
    let limits = Limits::for_backend_replies();
    match parse_frame(request, &limits) {
        Ok(Some((Frame::Array(args), _))) => args
            .iter()
            .take(2)
            .filter_map(|arg| match arg {
                Frame::Bulk(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::from("?"),
    }
}

/// Runs `send` after `delay`, in a task of its own, and hands its reply on.
fn send_later(
    delay: std::time::Duration,
    send: impl FnOnce() -> tokio::sync::oneshot::Receiver<BackendReply> + Send + 'static,
) -> tokio::sync::oneshot::Receiver<BackendReply> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let reply = send().await.unwrap_or_else(|_| super::pending::lost());
        let _ = sender.send(reply);
    });
    receiver
}

/// Starts one step of a cluster-wide SCAN.
fn scan(
    cluster: &mut ClusterSession,
    request: &Request,
    id: u64,
    resp3: bool,
    rewrite: Option<&'static CommandSpec>,
) -> Pending {
    let masters = cluster.topology.map.masters().len();
    if masters == 0 {
        return Pending::Ready(no_topology(&cluster.pool));
    }
    let position = match scan_cursor::decode(request.arg(1).unwrap_or_default(), masters) {
        Ok(position) => position,
        Err(error) => return Pending::Ready(reply::error(&error.to_string())),
    };
    let node_index = position.node_index;
    let Some(node) = cluster.topology.map.masters().get(node_index).cloned() else {
        return Pending::Ready(reply::error(&CursorError::Invalid.to_string()));
    };
    let node_cursor = position.node_cursor.to_string();
    let mut sub = BytesMut::new();
    let args: Vec<&[u8]> = request
        .args()
        .enumerate()
        .map(|(index, arg)| {
            if index == 1 {
                node_cursor.as_bytes()
            } else {
                arg
            }
        })
        .collect();
    encode_command(&mut sub, args);
    let sub = sub.freeze();
    let receiver = cluster
        .connection(&node, false, id, resp3)
        .send(sub.clone());
    Pending::Merge(Box::new(Merge {
        parts: vec![Part {
            receiver: Some(receiver),
            request: sub,
            commands: 1,
            node: Arc::new(node),
            redirects: 0,
            reply: None,
        }],
        combine: Combine::Scan {
            node_index,
            masters,
        },
        rewrite,
    }))
}

/// Merges the parts' replies into the client's reply. Any error is the reply.
fn combine(merge: Merge, _resp3: bool) -> Bytes {
    if let Combine::Policy {
        policy: MergePolicy::OrderedByKey,
        split,
    } = &merge.combine
    {
        let replies = merge
            .parts
            .iter()
            .map(|part| part.reply.as_deref().unwrap_or_default());
        if let Some(merged) = merge_ordered_raw(split, replies) {
            return merged;
        }
    }
    let limits = Limits::default();
    let mut frames = Vec::with_capacity(merge.parts.len());
    for part in merge.parts {
        let raw = part.reply.unwrap_or_default();
        // A part holds one reply per command it sent (several for a master's share of a split).
        let Ok(replies) = split_replies(&raw, &Limits::for_backend_replies()) else {
            return ReplyError::Unmergeable.to_reply();
        };
        for one in replies {
            if one.first() == Some(&b'-') {
                return one;
            }
            match parse_frame(&one, &limits) {
                Ok(Some((frame, _))) => frames.push(frame),
                _ => return ReplyError::Unmergeable.to_reply(),
            }
        }
    }
    match merge.combine {
        Combine::Policy { policy, split } => merge_replies(policy, &split, frames).to_bytes(),
        Combine::Scan {
            node_index,
            masters,
        } => {
            let Some(Frame::Array(mut items)) = frames.pop() else {
                return ReplyError::ScanReply.to_reply();
            };
            let node_cursor = match items.first() {
                Some(Frame::Bulk(text)) => std::str::from_utf8(text)
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok()),
                _ => None,
            };
            let Some(node_cursor) = node_cursor else {
                return ReplyError::ScanCursor.to_reply();
            };
            let next = match scan_cursor::next_cursor(node_index, node_cursor, masters) {
                Ok(next) => next,
                Err(error) => return reply::error(&error.to_string()),
            };
            items[0] = Frame::Bulk(Bytes::from(next.to_string()));
            Frame::Array(items).to_bytes()
        }
    }
}
