//! Pipelined single-slot commands from one read, batched per master, and their replies put back in order.

use std::sync::Arc;

use bytes::BytesMut;
use cluster_router::commands::CommandSpec;
use cluster_router::plan::{route, RoutePlan};
use cluster_router::redirect::{classify_reply, ClusterReplyKind};
use resp_codec::{split_replies_into, Limits, Request};

use crate::backend::{BackendReply, Patience};
use crate::config::ReadPolicy;
use crate::session::errors::{ClusterError, ErrorReply, ReplyError};
use crate::session::pending::{Pending, Pipeline, PipelinePart, Routed};
use crate::session::Session;
use crate::session::MIN_UNBATCHED_REQUEST;

use super::ClusterSession;

/// Single-slot commands waiting to go out, grouped by master: one write and one reply message per master and
/// read, instead of one per command.
#[derive(Default)]
pub(super) struct ClusterBatch {
    /// By master index: the requests, back to back, and where each one ends.
    by_master: Vec<(BytesMut, Vec<usize>)>,
    /// The master index of each command, in the client's order.
    order: Vec<u16>,
    bytes: usize,
    /// Slow if a batched command is (a script): every part is then sent with the longer allowance.
    patience: Patience,
}

impl ClusterSession {
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
        self.batch.order.len() >= crate::session::MAX_BATCH_REQUESTS
            || self.batch.bytes >= crate::session::MAX_BATCH_BYTES
    }

    /// Sends the batched requests: one batch per master. `None` if there were none.
    pub(super) fn flush_batch(&mut self, client_id: u64, resp3: bool) -> Option<Pending> {
        if self.batch.order.is_empty() {
            return None;
        }
        let single = match self.batch.order[..] {
            [index] => Some(index),
            _ => None,
        };
        // Copied out at their exact size (below), so the batch keeps its grown buffers for the next read (taking
        // them would make every read grow new ones from nothing, one reallocation per doubling).
        let mut order = match single {
            Some(_) => Vec::new(),
            None => self.batch.order.clone(),
        };
        self.batch.order.clear();
        self.batch.bytes = 0;
        let patience = std::mem::take(&mut self.batch.patience);
        // `batch_for_master` only queues for masters that exist, and the masters change only when nothing is
        // batched, so every part below finds its connection. Should that ever fail, every command of the batch
        // still gets a reply (an error), so that no client waits for ever.
        let unroutable = |commands: usize| {
            let error = ClusterError::LostBatchMaster.to_reply();
            Pending::Ready(error.repeat(commands).into())
        };
        if let Some(index) = single {
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
        let mut parts = Vec::with_capacity(by_master.len());
        for (index, (requests, ends)) in by_master.iter_mut().enumerate() {
            if ends.is_empty() {
                continue;
            }
            let requests = requests.split().freeze();
            let ends_of_part = ends.clone();
            ends.clear();
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
                .send_many(requests.clone(), ends_of_part.len());
            part_of_master[index] = parts.len() as u16;
            parts.push(PipelinePart {
                receiver: Some(receiver),
                node,
                requests,
                ends: ends_of_part,
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
}

impl Session {
    /// Cluster pools: puts a plain command for one slot's master into the batch of the current read (see
    /// `ClusterBatch`); anything else is routed on its own, after the batch is sent.
    pub(in crate::session) fn cluster_forward_or_batch(
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
        // A request of MIN_UNBATCHED_REQUEST or more is routed on its own, never copied into a batch.
        let batchable = request.raw().len() < MIN_UNBATCHED_REQUEST;
        if let (Ok(RoutePlan::Slot(slot)), Some(cluster), true) =
            (&plan, self.cluster.as_mut(), batchable)
        {
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
    pub(in crate::session) fn flush_cluster_batch(&mut self) {
        let (id, resp3) = (self.id, self.resp3);
        if let Some(entry) = self
            .cluster
            .as_mut()
            .and_then(|cluster| cluster.flush_batch(id, resp3))
        {
            self.pending.push_back(entry);
        }
    }

    /// A reply for one part of a pipeline. Once every part has answered, the replies go to the client in its
    /// order; commands answered with MOVED or ASK are sent again, each as a routed entry in its place.
    pub(in crate::session) fn cluster_pipeline_reply(
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
                Some(Ok(bytes)) => {
                    let mut frames = Vec::with_capacity(part.ends.len());
                    match split_replies_into(bytes, &Limits::for_backend_replies(), &mut frames) {
                        Ok(()) if frames.len() == part.ends.len() => frames,
                        _ => vec![ReplyError::Unreadable.to_reply(); part.ends.len()],
                    }
                }
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
                    self.gathered.buffer.extend_from_slice(&frame);
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
}
