//! Routing one request by the slot map: to a slot's master or replica, any master, every node, a split or SCAN.

use std::sync::Arc;

use bytes::Bytes;
use cluster_router::commands::{CommandSpec, MergePolicy};
use cluster_router::plan::{route, RouteError, RoutePlan};
use cluster_router::topology::NodeAddr;
use resp_codec::Request;

use crate::backend::{BackendReply, Patience};
use crate::config::ReadPolicy;
use crate::session::errors::{ClusterError, ErrorReply};
use crate::session::pending::{Combine, Merge, Part, Pending, Routed};
use crate::session::Session;

use super::split::scan;
use super::{no_topology, ClusterSession};

impl ClusterSession {
    /// Sends a request to the node serving `slot`: one of its replicas (chosen by client) when
    /// `prefer_replica` and it has any, else its master.
    // The session's routing context (client id, protocol) is passed as is, like `send_routed`'s.
    #[allow(clippy::too_many_arguments)]
    fn send_to_slot(
        &mut self,
        slot: u16,
        prefer_replica: bool,
        client_id: u64,
        resp3: bool,
        request: &Request,
        rewrite: Option<&'static CommandSpec>,
        patience: Patience,
    ) -> Pending {
        let map = &self.topology.map;
        let replicas = if prefer_replica {
            map.replicas_for_slot(slot)
        } else {
            &[]
        };
        if !replicas.is_empty() {
            let replica = Arc::new(replicas[(client_id as usize) % replicas.len()].clone());
            return self.send_routed(replica, true, client_id, resp3, request, rewrite, patience);
        }
        let sent = map.shard_for_slot(slot).and_then(|index| {
            self.send_to_master(index, client_id, resp3, request, rewrite, patience)
        });
        sent.unwrap_or_else(|| {
            self.pool.request_refresh();
            Pending::Ready(Bytes::from(RouteError::SlotNotServed { slot }.to_reply()))
        })
    }

    /// Sends a whole-keyspace command to every master (or, with `all_nodes`, every node), the
    /// replies merged with `policy`.
    fn send_to_every_node(
        &mut self,
        all_nodes: bool,
        policy: MergePolicy,
        request: &Request,
        rewrite: Option<&'static CommandSpec>,
        client_id: u64,
        resp3: bool,
    ) -> Pending {
        let nodes: Vec<Arc<NodeAddr>> = if all_nodes {
            self.topology.map.nodes().cloned().map(Arc::new).collect()
        } else {
            self.masters
                .iter()
                .map(|(node, _)| Arc::clone(node))
                .collect()
        };
        if nodes.is_empty() {
            return Pending::Ready(no_topology(&self.pool));
        }
        let parts = nodes
            .into_iter()
            .map(|node| {
                let receiver = self
                    .connection(&node, false, client_id, resp3)
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
}

impl Session {
    /// Routes a request on a cluster pool.
    pub(in crate::session) fn cluster_forward(
        &mut self,
        spec: &'static CommandSpec,
        request: Request,
    ) {
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
    pub(super) fn cluster_forward_planned(
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
                let prefer_replica =
                    spec.is_readonly() && cluster.pool.read_policy() == ReadPolicy::PreferReplica;
                cluster.send_to_slot(slot, prefer_replica, id, resp3, &request, rewrite, patience)
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
            RoutePlan::AllMasters(policy) => {
                cluster.send_to_every_node(false, policy, &request, rewrite, id, resp3)
            }
            RoutePlan::AllNodes(policy) => {
                cluster.send_to_every_node(true, policy, &request, rewrite, id, resp3)
            }
            RoutePlan::Scan => scan(cluster, &request, id, resp3, rewrite),
            _ => Pending::Ready(ClusterError::CannotRoute.to_reply()),
        };
        self.pending.push_back(entry);
    }

    /// A reply for a routed request: passed on, or (MOVED/ASK) the request goes out again.
    pub(in crate::session) fn cluster_reply(
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
}
