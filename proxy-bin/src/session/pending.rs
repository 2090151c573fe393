//! The queue of replies a client is owed, in request order, and how each entry completes.
//!
//! Most entries wait on one backend reply. Cluster entries may be redirected (MOVED/ASK) before they complete,
//! and split or whole-keyspace commands wait on several parts that are merged. Entries only complete at the
//! front of the queue, which keeps replies in order and makes a redirected command retry before anything the
//! client sent after it.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cluster_router::commands::{CommandSpec, MergePolicy};
use cluster_router::plan::SplitPart;
use cluster_router::topology::NodeAddr;
use tokio::sync::oneshot;

use super::errors::{ErrorReply, ReplyError};
use crate::backend::BackendReply;

/// What the client will get for one request.
pub enum Pending {
    /// Already known (an error, or a command the proxy answers itself).
    Ready(Bytes),
    /// Waiting for one backend reply, passed on as it is (or converted, see [`Expect`]).
    Waiting(oneshot::Receiver<BackendReply>, Expect),
    /// Standalone pools: plain requests sent as one job, whose bytes are kept (a reference, not a copy) until
    /// they are answered, so that a big reply can be traced to its key for the big lane. Not boxed: every
    /// batch of a standalone session is one, and the allocation cost more than the larger entries.
    Sent(Sent),
    /// A cluster command sent to one node; it may come back as MOVED or ASK and be sent again.
    Routed(Box<Routed>),
    /// A command sent as several parts (a split multi-key command, a whole-keyspace command, SCAN).
    Merge(Box<Merge>),
    /// Cluster pools: single-slot commands framed from one read, sent as one batch per node; their replies are
    /// put back in the client's order, and any that come back as MOVED or ASK are sent again one by one.
    Pipeline(Box<Pipeline>),
    /// Cluster pools: a queued transaction sent at EXEC as one unit; sent again whole if Redis redirects it.
    Transaction(Box<ClusterExec>),
    /// A request written to the client's dedicated connection, whose replies the session reads itself (see
    /// the `dedicated` module): complete once no reply is owed.
    Dedicated(Box<Owed>),
}

/// How to turn a backend reply into the client's reply.
#[derive(Clone, Copy)]
pub enum Expect {
    /// Pass the reply through.
    Forward,
    /// A PING sent to check a newly selected db: success becomes `+OK`.
    SelectCheck,
    /// A batch of this many pipelined requests; the replies arrive concatenated.
    Batch(usize),
    /// The reply carries keys that lose the tenant's prefix (rewritten with this command's spec).
    Rewrite(&'static CommandSpec),
}

/// Plain requests on a shared connection (see [`Pending::Sent`]).
pub struct Sent {
    pub receiver: oneshot::Receiver<BackendReply>,
    /// The requests, back to back.
    pub requests: bytes::Bytes,
    /// How many requests `requests` holds; their replies arrive concatenated.
    pub count: usize,
}

/// A cluster request on its way to one node.
pub struct Routed {
    pub receiver: oneshot::Receiver<BackendReply>,
    pub request: Bytes,
    pub node: Arc<NodeAddr>,
    pub redirects: u8,
    /// The reply's keys lose the tenant's prefix (see `Expect::Rewrite`).
    pub rewrite: Option<&'static CommandSpec>,
}

/// One part of a [`Merge`]: one command to one node, or a master's share of a split command (several
/// sub-commands, written and answered back to back).
pub struct Part {
    pub receiver: PartReceiver,
    pub request: Bytes,
    /// How many commands `request` holds, each owed one reply; `reply` holds them all, back to back.
    pub commands: usize,
    pub node: Arc<NodeAddr>,
    pub redirects: u8,
    pub reply: Option<Bytes>,
}

/// How the parts' replies become one.
pub enum Combine {
    /// Merge with the router's policy (`split` holds the split plan for key-ordered merges).
    Policy {
        policy: MergePolicy,
        split: Vec<SplitPart>,
    },
    /// SCAN on master `node_index` of `masters`: rewrite the node's cursor into a proxy cursor.
    Scan { node_index: usize, masters: usize },
}

/// A request made of several parts.
pub struct Merge {
    pub parts: Vec<Part>,
    pub combine: Combine,
    /// The merged reply's keys lose the tenant's prefix.
    pub rewrite: Option<&'static CommandSpec>,
}

/// One node's share of a [`Pipeline`]: its requests, back to back, and their replies, back to back.
pub struct PipelinePart {
    pub receiver: PartReceiver,
    pub node: Arc<NodeAddr>,
    pub requests: Bytes,
    /// Where each request ends in `requests` (to send one again after a redirect).
    pub ends: Vec<usize>,
    pub reply: Option<BackendReply>,
}

/// Pipelined single-slot commands, batched per node.
pub struct Pipeline {
    pub parts: Vec<PipelinePart>,
    /// For each command, in the client's order, the index of the part it went out in.
    pub order: Vec<u16>,
}

/// A cluster transaction on its way: `MULTI`, the queued commands and `EXEC`, written as one unit to one node
/// (after `ASKING` when Redis asked for it). Every reply comes back, so a MOVED or ASK for any queued command
/// can be seen and the whole unit sent again where the slot is.
pub struct ClusterExec {
    pub receiver: oneshot::Receiver<BackendReply>,
    /// `MULTI` ... `EXEC`, without `ASKING`.
    pub unit: Bytes,
    /// How many commands the unit holds (queued commands plus `MULTI` and `EXEC`).
    pub commands: usize,
    /// Sent after `ASKING`, whose reply comes first.
    pub asking: bool,
    pub node: Arc<NodeAddr>,
    pub redirects: u8,
    /// How often the unit was sent again after TRYAGAIN.
    pub try_again: u8,
    /// Slow when a queued command is a script: the backend waits longer for EXEC.
    pub patience: crate::backend::Patience,
}

/// What a client's dedicated connection owes for one request (see [`Pending::Dedicated`]).
pub struct Owed {
    /// How many replies: one, or one per channel for SUBSCRIBE and friends. An error ends the request early.
    pub replies: usize,
    /// The request is a (un)subscription: its replies are subscription confirmations.
    pub pubsub: bool,
    /// The request is an UNSUBSCRIBE, PUNSUBSCRIBE or SUNSUBSCRIBE: it may end every subscription.
    pub unsubscribe: bool,
    /// With a spec, the reply's keys lose the tenant's prefix.
    pub rewrite: Option<&'static CommandSpec>,
    /// The client gets this instead of the backend's reply (EXEC of an aborted transaction, sent as DISCARD).
    pub instead: Option<Bytes>,
    /// Replies that arrived while an earlier entry of the reply queue was still waiting (see
    /// `dedicated::frame_dedicated_replies`).
    pub early: BytesMut,
}

impl Owed {
    pub fn one(rewrite: Option<&'static CommandSpec>) -> Owed {
        Owed {
            replies: 1,
            pubsub: false,
            unsubscribe: false,
            rewrite,
            instead: None,
            early: BytesMut::new(),
        }
    }

    /// At the front of the reply queue: moves the replies that came early to `out`; whether every reply has
    /// arrived (the entry is complete).
    pub fn deliver_early(&mut self, out: &mut BytesMut) -> bool {
        out.extend_from_slice(&self.early.split());
        self.replies == 0
    }
}

/// Something that happened to the entry at the front of the queue.
pub enum FrontEvent {
    /// The single reply of a `Waiting` or `Routed` entry.
    Reply(BackendReply),
    /// The reply of part `index` of a `Merge` or `Pipeline` entry.
    Part(usize, BackendReply),
}

/// The reply when a backend connection went away without answering.
pub fn lost() -> BackendReply {
    Ok(ReplyError::ConnectionClosed.to_reply())
}

pub type PartReceiver = Option<oneshot::Receiver<BackendReply>>;

/// The front entry's next event, if one is ready now (never waits).
pub fn try_front_event(front: &mut Pending) -> Option<FrontEvent> {
    match front {
        Pending::Ready(_) | Pending::Dedicated(_) => None,
        Pending::Waiting(receiver, _) => try_one(receiver).map(FrontEvent::Reply),
        Pending::Sent(sent) => try_one(&mut sent.receiver).map(FrontEvent::Reply),
        Pending::Routed(routed) => try_one(&mut routed.receiver).map(FrontEvent::Reply),
        Pending::Transaction(exec) => try_one(&mut exec.receiver).map(FrontEvent::Reply),
        Pending::Merge(merge) => try_parts(merge.parts.iter_mut().map(|part| &mut part.receiver)),
        Pending::Pipeline(pipeline) => {
            try_parts(pipeline.parts.iter_mut().map(|part| &mut part.receiver))
        }
    }
}

fn try_one(receiver: &mut oneshot::Receiver<BackendReply>) -> Option<BackendReply> {
    match receiver.try_recv() {
        Ok(reply) => Some(reply),
        Err(oneshot::error::TryRecvError::Empty) => None,
        Err(oneshot::error::TryRecvError::Closed) => Some(lost()),
    }
}

/// The first part (of a merge or pipeline) whose reply has arrived.
fn try_parts<'a>(receivers: impl Iterator<Item = &'a mut PartReceiver>) -> Option<FrontEvent> {
    receivers.enumerate().find_map(|(index, receiver)| {
        let reply = try_one(receiver.as_mut()?)?;
        *receiver = None;
        Some(FrontEvent::Part(index, reply))
    })
}

/// Waits for the front entry's next event. The caller checks that the front entry waits on something.
pub async fn next_front_event(front: Option<&mut Pending>) -> FrontEvent {
    match front {
        Some(Pending::Waiting(receiver, _)) => FrontEvent::Reply(wait(receiver).await),
        Some(Pending::Sent(sent)) => FrontEvent::Reply(wait(&mut sent.receiver).await),
        Some(Pending::Routed(routed)) => FrontEvent::Reply(wait(&mut routed.receiver).await),
        Some(Pending::Transaction(exec)) => FrontEvent::Reply(wait(&mut exec.receiver).await),
        Some(Pending::Merge(merge)) => {
            wait_parts(merge.parts.iter_mut().map(|part| &mut part.receiver)).await
        }
        Some(Pending::Pipeline(pipeline)) => {
            wait_parts(pipeline.parts.iter_mut().map(|part| &mut part.receiver)).await
        }
        _ => std::future::pending().await,
    }
}

async fn wait(receiver: &mut oneshot::Receiver<BackendReply>) -> BackendReply {
    receiver.await.unwrap_or_else(|_| lost())
}

/// Waits for the first part (of a merge or pipeline) that still owes its reply. Parts complete in any order;
/// waiting on the first open one is enough, as the others are picked up by `try_front_event` afterwards.
async fn wait_parts<'a>(receivers: impl Iterator<Item = &'a mut PartReceiver>) -> FrontEvent {
    let next = receivers
        .enumerate()
        .find(|(_, receiver)| receiver.is_some());
    match next {
        Some((index, receiver)) => {
            let reply = match receiver.as_mut() {
                Some(open) => wait(open).await,
                None => lost(),
            };
            *receiver = None;
            FrontEvent::Part(index, reply)
        }
        None => std::future::pending().await,
    }
}

impl Pending {
    /// Whether this entry waits on the backend (so the session should wait for its event).
    pub fn is_waiting(&self) -> bool {
        !matches!(self, Pending::Ready(_))
    }
}
