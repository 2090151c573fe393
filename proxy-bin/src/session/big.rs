//! Big requests in shared mode: which requests take the pool's big lane (`pools::big_lane`), and the barriers
//! that keep a client's requests in order across the lane and the shared connections.
//!
//! A lane request runs on another backend connection than the client's small requests, so without care it
//! could overtake them, or be overtaken: `SET k small`, `SET k big`, `GET k` pipelined must leave `k` big and
//! answer `GET` with the big value, as Redis does. So the session keeps a barrier on both sides of every lane
//! request: it is sent only once every earlier reply of the client has arrived (they ran), and the client's
//! next request, whatever it is, waits until the lane reply has arrived. Consecutive big requests of one
//! client therefore run one after the other; small requests of one client between them still pipeline.
//! Other clients are never held: the barriers are per session.

use std::sync::Arc;

use bytes::Bytes;
use cluster_router::commands::{self, CommandSpec, ProxyHandling};
use resp_codec::{split_replies, Limits, Request, RequestDecoder};
use tokio_util::codec::Decoder;

use super::pending::Sent;
use super::Session;
use crate::pools::big_lane::{BigLane, BigRequest, LaneSend};
use crate::pools::PoolHandle;

mod transfer;

pub(super) use self::transfer::LaneTransfer;
use cluster_router::topology::NodeAddr;

impl Session {
    /// Sends `request` down the big lane when it is big, and holds any request behind a barrier while the
    /// lane order requires it (see the module docs). Returns the request when it goes on by the usual path.
    pub(super) fn route_big_request(
        &mut self,
        spec: &'static CommandSpec,
        request: Request,
    ) -> Option<Request> {
        let big = self.is_big_request(spec, &request);
        if !big && !self.big_request_owed {
            return Some(request);
        }
        // Requests framed before this one go out first; then it waits until all of them are answered.
        self.flush_batch();
        if !self.pending.is_empty() {
            self.defer_policed(request);
            return None;
        }
        self.big_request_owed = false;
        if !big {
            return Some(request);
        }
        let unsent = self.send_big(spec, request);
        self.big_request_owed = unsent.is_none();
        unsent
    }

    /// Whether a request goes to the big lane: a plain forwarded command (not queued in a cluster MULTI) that
    /// is big itself or names, first, a key recently seen with a big value.
    fn is_big_request(&self, spec: &'static CommandSpec, request: &Request) -> bool {
        if spec.proxy != ProxyHandling::Forward
            || self
                .cluster
                .as_ref()
                .is_some_and(|cluster| cluster.in_transaction())
        {
            return false;
        }
        let Some(lanes) = self.pool.big_lanes() else {
            return false;
        };
        let size = request.raw().len();
        if size >= lanes.threshold() {
            return true;
        }
        // The usual case: no big key known, no key looked up.
        if lanes.recent().is_empty() {
            return false;
        }
        lanes.is_big(size, first_key(spec, request))
    }

    /// Carries a big request on the lane of its node (see [`LaneTransfer`]). The request comes back when it has
    /// no single node (a cluster command split across slots or sent to every node): it then goes the usual way.
    fn send_big(&mut self, spec: &'static CommandSpec, request: Request) -> Option<Request> {
        let key = first_key(spec, &request).map(Bytes::copy_from_slice);
        let rewrite = self.reply_rewrite(spec);
        let (lane, node) = match self.lane_for(spec, &request) {
            Some(found) => found,
            None => return Some(request),
        };
        self.lane_transfer = Some(Box::new(LaneTransfer {
            lane,
            command: spec.name,
            head: request.raw().clone(),
            rest: None,
            request_len: request.raw().len(),
            key,
            rewrite,
            node,
            refusal: None,
            wait_until: None,
        }));
        None
    }

    /// The lane a big request goes to, and on a cluster pool its node. `None` when it has no single node.
    fn lane_for(
        &mut self,
        spec: &'static CommandSpec,
        request: &Request,
    ) -> Option<(Arc<BigLane>, Option<Arc<NodeAddr>>)> {
        match &self.pool {
            PoolHandle::Standalone(pool) => {
                self.stats.lane_request(pool.address());
                Some((pool.big_lane(self.worker, self.db, self.resp3), None))
            }
            PoolHandle::Cluster(_) => {
                let (id, resp3) = (self.id, self.resp3);
                let cluster = self.cluster.as_mut()?;
                let node = cluster.master_for_big_request(spec, request, id)?;
                let lane = cluster.big_lane(&node, resp3);
                self.count_cluster_lane_request(&node);
                Some((lane, Some(node)))
            }
            PoolHandle::Kafka(_) => None,
        }
    }

    /// A reply that came back on a shared connection: when it is big, the key of its request (raw bytes of one
    /// command) is remembered, so the next request for that key takes the lane.
    pub(super) fn note_reply_size(&self, request: &[u8], reply: &[u8]) {
        let Some(lanes) = self.pool.big_lanes() else {
            return;
        };
        if reply.len() < lanes.threshold() {
            return;
        }
        let mut buffer = bytes::BytesMut::from(request);
        let Ok(Some(request)) =
            RequestDecoder::new(Limits::for_backend_replies()).decode(&mut buffer)
        else {
            return;
        };
        let Ok(spec) = commands::lookup(&request) else {
            return;
        };
        if let Some(key) = first_key(spec, &request) {
            lanes.recent().remember(key);
            self.note_big_reply(spec.name, key, reply.len());
        }
    }
}

impl Session {
    /// The replies to a standalone batch: any of them big has its request's key remembered. Only a batch whose
    /// replies add up to a big one is looked into.
    pub(super) fn note_batch_reply_sizes(&self, sent: &Sent, replies: &Bytes) {
        let Some(lanes) = self.pool.big_lanes() else {
            return;
        };
        if replies.len() < lanes.threshold() {
            return;
        }
        if sent.count == 1 {
            self.note_reply_size(&sent.requests, replies);
            return;
        }
        let limits = Limits::for_backend_replies();
        let (Ok(requests), Ok(replies)) = (
            split_replies(&sent.requests, &limits),
            split_replies(replies, &limits),
        ) else {
            return;
        };
        for (request, reply) in requests.iter().zip(&replies) {
            self.note_reply_size(request, reply);
        }
    }
}

/// The request's first key, if it names any.
fn first_key<'a>(spec: &'static CommandSpec, request: &'a Request) -> Option<&'a [u8]> {
    let index = commands::key_indices(spec, request).ok()?.first()?;
    request.arg(index)
}

/// Redirected cluster requests: a big one (by size) goes again on the lane of the node named by the redirect.
pub(super) fn redirect_on_lane(
    cluster_lane: impl FnOnce() -> Arc<crate::pools::big_lane::BigLane>,
    threshold: usize,
    request: &Bytes,
    asking: bool,
) -> Option<tokio::sync::oneshot::Receiver<crate::backend::BackendReply>> {
    if request.len() < threshold {
        return None;
    }
    let big = BigRequest {
        request: request.clone(),
        send: if asking {
            LaneSend::Asking
        } else {
            LaneSend::One
        },
        key: None,
    };
    Some(cluster_lane().send(big))
}
