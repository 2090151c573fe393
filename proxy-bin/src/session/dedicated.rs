//! Dedicated mode: a client served over a backend connection of its own, by the same session loop as shared
//! mode (`Session::run_loop`); only where requests go and where replies come from differ.
//!
//! Used once a client starts something that keeps state on the server: WATCH and MULTI (standalone pools),
//! blocking commands, SUBSCRIBE and friends. Requests are framed, counted, checked and answered as in shared
//! mode (the proxy's own commands, the slow log, INFO); those for the backend are written to this connection,
//! and each owes a [`Pending::Dedicated`] entry in the session's reply queue, so commands the proxy answers
//! itself keep their place behind the backend replies still owed, and every entry is timed and counted like a
//! shared-mode one. Once the client subscribes, pushes (pub/sub messages) arrive at any time: they answer no
//! request and pass through as they come.
//!
//! In a cluster pool the connection goes to the node of the first command's keys (any master for SUBSCRIBE);
//! later commands whose keys live on another node get `CROSSSLOT` instead of a MOVED the client could not follow.
//!
//! Inside MULTI, a command the proxy refuses itself (its own checks, tenant rules, a command it cannot queue)
//! aborts the transaction as a queue-time error does in Redis: EXEC is sent as DISCARD, which ends the
//! transaction and its WATCH on the server, and the client gets `EXECABORT`. QUIT goes to the backend, so the
//! client gets every reply still owed, then Redis's `+OK`, then the connection closes.
//!
//! When the backend connection of a subscribed client breaks (a restart, a cluster failover), the session
//! connects again (in a cluster, to a master of the refreshed map) and subscribes again to every channel and
//! pattern, swallowing the confirmations, so the client keeps receiving messages. Any other lost dedicated
//! connection ends the client's session, since the server-side state (a transaction, WATCH) is gone.
//!
//! The parts: this file holds the connection's own state ([`Dedicated`]: reply bookkeeping, subscriptions,
//! transaction state, tenant rewriting of its frames); the session's side is in `dedicated/switch.rs` (moving
//! to a dedicated connection and back), `dedicated/replies.rs` (writing to it, reading its replies, a lost
//! connection and re-subscription) and `dedicated/requests.rs` (what a request on it does: sent, mirrored or
//! answered here, refused inside MULTI or across cluster nodes).

mod replies;
mod requests;
mod switch;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cluster_router::commands::CommandSpec;
use cluster_router::topology::NodeAddr;
use resp_codec::{encode_command, parse_frame, Frame, Limits, ReplyDecoder, Request};
use tokio::io::AsyncReadExt;

use super::observe::PendingQueue;
use super::pending::{Owed, Pending};
use crate::backend::{BackendReader, BackendStream, BackendWriter, Endpoint};

/// A dedicated connection kept after its client went back to shared connections, for the next time.
pub(super) struct SpareConnection {
    address: std::sync::Arc<str>,
    db: u32,
    resp3: bool,
    stream: BackendStream,
}

impl SpareConnection {
    /// Whether it connects to the same place with the same settings, and the server has not closed it.
    fn fits(&self, endpoint: &Endpoint) -> bool {
        self.stream.still_open()
            && self.address == endpoint.address
            && self.db == endpoint.db
            && self.resp3 == endpoint.resp3
    }
}

/// How long a subscribed client waits for its backend to come back before its session ends.
const RESUBSCRIBE_WINDOW: Duration = Duration::from_secs(15);

/// A client's backend connection of its own, with its reply bookkeeping and subscriptions.
///
/// Every request sent to the backend owes a known number of replies (its [`Owed`] entry in the reply queue),
/// subscribed or not; pub/sub messages are told apart from replies by their kind and pass through as they come.
/// So the session always knows when every reply has arrived, and can go back to shared connections once the
/// server holds no state for the client: no transaction, no WATCH, and a subscription count of 0 as reported
/// by Redis.
pub(super) struct Dedicated {
    reader: BackendReader,
    writer: BackendWriter,
    endpoint: Endpoint,
    /// Bytes read from the backend and not framed yet.
    from_backend: BytesMut,
    decoder: ReplyDecoder,
    /// Requests framed and not yet written to the backend (written at the top of the session loop).
    to_backend: BytesMut,
    /// Redis reported a subscription count above 0 (channels and patterns, or shard channels).
    subscribed: bool,
    /// The last counts Redis reported: channels and patterns (SUBSCRIBE, PSUBSCRIBE and their UNSUBSCRIBE),
    /// and shard channels (SSUBSCRIBE, SUNSUBSCRIBE). Redis leaves pub/sub mode when both are 0.
    channel_count: i64,
    shard_count: i64,
    /// What the client asked to subscribe to, to subscribe again after a reconnect.
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
    shard_channels: BTreeSet<Bytes>,
    /// Subscription confirmations still to swallow after subscribing again.
    swallow: usize,
    /// The cluster node this connection is on.
    node: Option<NodeAddr>,
    /// Inside MULTI ... EXEC/DISCARD.
    in_transaction: bool,
    /// A command was refused while queued: EXEC is sent as DISCARD and answered with EXECABORT, as Redis does.
    aborted: bool,
    /// Keys are WATCHed (until EXEC, DISCARD or UNWATCH).
    watching: bool,
    /// SELECT, HELLO or RESET went to this connection: its db or protocol may no longer be its endpoint's, so
    /// it is not kept for reuse.
    reconfigured: bool,
    /// A tenant with a key prefix: pushes (pub/sub messages) lose it.
    tenant: Option<std::sync::Arc<tenant_policy::Tenant>>,
}

/// What a backend frame did to the entry at the front of the reply queue.
#[derive(PartialEq, Eq)]
enum FrameEffect {
    /// A push, a swallowed confirmation, or one of several replies the entry owes.
    None,
    /// The entry got its last reply.
    Completed,
    /// The entry, a subscription, was refused: whether the client is still subscribed must be decided again.
    RefusedSubscription,
}

/// A pub/sub frame from the backend.
enum PubSubFrame {
    /// A message (or any other RESP3 push) that answers no request.
    Message,
    /// A (un)subscribe confirmation with the count Redis reports; `shard` for SSUBSCRIBE/SUNSUBSCRIBE.
    Confirmation {
        subscribe: bool,
        shard: bool,
        count: i64,
    },
}

impl Dedicated {
    fn new(
        stream: BackendStream,
        endpoint: Endpoint,
        node: Option<NodeAddr>,
        tenant: Option<std::sync::Arc<tenant_policy::Tenant>>,
    ) -> Dedicated {
        let (reader, writer) = stream.into_split();
        Dedicated {
            reader,
            writer,
            endpoint,
            from_backend: BytesMut::with_capacity(16 * 1024),
            decoder: ReplyDecoder::new(Limits::for_backend_replies()),
            to_backend: BytesMut::new(),
            subscribed: false,
            channel_count: 0,
            shard_count: 0,
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
            shard_channels: BTreeSet::new(),
            swallow: 0,
            node,
            in_transaction: false,
            aborted: false,
            watching: false,
            reconfigured: false,
            tenant,
        }
    }

    /// Bytes held besides the session's own buffers (for the memory budget).
    pub(super) fn buffered(&self) -> usize {
        self.from_backend.len() + self.to_backend.len()
    }

    /// Replaces the broken connection with a new one; whatever the old one had buffered is gone.
    fn reconnected(&mut self, stream: BackendStream) {
        let (reader, writer) = stream.into_split();
        self.reader = reader;
        self.writer = writer;
        self.from_backend.clear();
        self.to_backend.clear();
        self.decoder = ReplyDecoder::new(Limits::for_backend_replies());
    }

    /// Whether this frame may be a pub/sub frame (and is worth parsing to find out).
    fn may_be_pubsub(&self, frame: &[u8], front: Option<&Owed>) -> bool {
        match frame.first() {
            Some(b'>') => true,
            Some(b'*') => self.subscribed || front.is_some_and(|owed| owed.pubsub),
            _ => false,
        }
    }

    /// Passes one backend frame to the client (into `out`): a push at once, a reply as the next one that
    /// `front` (the reply queue's front entry, if it waits on this connection) owes.
    fn backend_frame(
        &mut self,
        frame: Bytes,
        front: Option<&mut Owed>,
        out: &mut BytesMut,
    ) -> FrameEffect {
        let pubsub = if self.may_be_pubsub(&frame, front.as_deref()) {
            pubsub_frame(&frame)
        } else {
            None
        };
        match pubsub {
            Some(PubSubFrame::Message) => {
                // Pushes answer no request: they pass through at once, local replies stay queued.
                out.extend_from_slice(&self.rewrite_push(frame));
                return FrameEffect::None;
            }
            Some(PubSubFrame::Confirmation {
                subscribe,
                shard,
                count,
            }) => {
                if shard {
                    self.shard_count = count;
                } else {
                    self.channel_count = count;
                }
                self.subscribed = self.channel_count > 0 || self.shard_count > 0;
                if subscribe && self.swallow > 0 {
                    self.swallow -= 1;
                    return FrameEffect::None;
                }
            }
            None => {}
        }
        let is_error = frame.first() == Some(&b'-');
        let Some(owed) = front else {
            // Nothing owed (cannot happen while every request has its entry): pass it on rather than drop it.
            out.extend_from_slice(&frame);
            return FrameEffect::None;
        };
        let bytes = match (&owed.instead, &pubsub) {
            (Some(instead), _) => instead.clone(),
            (None, Some(_)) => self.rewrite_push(frame),
            (None, None) => self.rewrite_reply(owed.rewrite, frame, is_error),
        };
        out.extend_from_slice(&bytes);
        owed.replies = owed.replies.saturating_sub(1);
        if is_error {
            // An error ends the request early.
            owed.replies = 0;
        }
        if owed.pubsub && is_error {
            FrameEffect::RefusedSubscription
        } else if owed.replies == 0 || is_error {
            FrameEffect::Completed
        } else {
            FrameEffect::None
        }
    }

    /// A pub/sub frame loses the tenant's key prefix in channel names.
    fn rewrite_push(&self, frame: Bytes) -> Bytes {
        match &self.tenant {
            Some(tenant) if tenant.key_prefix().is_some() => {
                match parse_frame(&frame, &Limits::default()) {
                    Ok(Some((parsed, _))) => tenant.rewrite_push(parsed).to_bytes(),
                    _ => frame,
                }
            }
            _ => frame,
        }
    }

    /// A reply's keys lose the tenant's prefix.
    fn rewrite_reply(
        &self,
        rewrite: Option<&'static CommandSpec>,
        frame: Bytes,
        is_error: bool,
    ) -> Bytes {
        match (rewrite, &self.tenant) {
            (Some(spec), Some(tenant)) if !is_error => {
                match parse_frame(&frame, &Limits::default()) {
                    Ok(Some((parsed, _))) => tenant.rewrite_reply(spec, parsed).to_bytes(),
                    _ => frame,
                }
            }
            _ => frame,
        }
    }

    /// Whether more requests are taken on this connection now. Once the server holds no state for the client,
    /// or may stop holding it (an UNSUBSCRIBE whose confirmation has not come back; Redis reports the count
    /// that decides), requests wait until every reply owed has arrived: then the session knows whether they
    /// run here or, as in Redis, like any client's on shared connections.
    pub(super) fn takes_requests(&self, pending: &PendingQueue) -> bool {
        let unsubscribing = pending
            .iter()
            .any(|entry| matches!(entry, Pending::Dedicated(owed) if owed.unsubscribe));
        pending.is_empty() || (self.holds_state() && !unsubscribing)
    }

    /// Whether the server holds state for this client that a shared connection could not carry.
    fn holds_state(&self) -> bool {
        self.subscribed || self.in_transaction || self.watching
    }

    /// How many replies the backend owes for a request, decided before `track` records it. Inside MULTI
    /// every command gets one (`+QUEUED` or an error); SUBSCRIBE and friends get one per channel, and an
    /// UNSUBSCRIBE without arguments one per channel it ends (at least one).
    fn replies_owed(&self, spec: &CommandSpec, request: &Request) -> usize {
        let named = request.argc().saturating_sub(1);
        if self.in_transaction {
            return 1;
        }
        match spec.name {
            "subscribe" | "psubscribe" | "ssubscribe" => named.max(1),
            "unsubscribe" | "punsubscribe" | "sunsubscribe" if named > 0 => named,
            "unsubscribe" => self.channels.len().max(1),
            "punsubscribe" => self.patterns.len().max(1),
            "sunsubscribe" => self.shard_channels.len().max(1),
            _ => 1,
        }
    }

    /// Records transaction state and (un)subscriptions (so they can be restored on a new connection), the way
    /// Redis changes them when it runs the request.
    fn track(&mut self, spec: &CommandSpec, request: &Request) {
        match spec.name {
            "multi" => self.in_transaction = true,
            // Without MULTI, EXEC and DISCARD are errors that keep the WATCHed keys.
            "exec" | "discard" if self.in_transaction => {
                self.in_transaction = false;
                self.aborted = false;
                self.watching = false;
            }
            // Inside MULTI, WATCH is an error and UNWATCH is queued (EXEC unwatches anyway).
            "watch" if !self.in_transaction => self.watching = true,
            "unwatch" if !self.in_transaction => self.watching = false,
            "reset" => {
                self.in_transaction = false;
                self.aborted = false;
                self.watching = false;
                self.channels.clear();
                self.patterns.clear();
                self.shard_channels.clear();
                self.channel_count = 0;
                self.shard_count = 0;
                self.subscribed = false;
            }
            _ => {}
        }
        if self.in_transaction {
            return;
        }
        let names = || (1..request.argc()).filter_map(|i| request.arg_bytes(i));
        match spec.name {
            "subscribe" => self.channels.extend(names()),
            "psubscribe" => self.patterns.extend(names()),
            "ssubscribe" => self.shard_channels.extend(names()),
            "unsubscribe" | "punsubscribe" | "sunsubscribe" => {
                let set = match spec.name {
                    "unsubscribe" => &mut self.channels,
                    "punsubscribe" => &mut self.patterns,
                    _ => &mut self.shard_channels,
                };
                if request.argc() == 1 {
                    set.clear();
                } else {
                    for name in names() {
                        set.remove(&name);
                    }
                }
            }
            _ => {}
        }
    }

    /// The commands that restore every subscription, and how many confirmations they produce.
    fn resubscribe_commands(&self) -> (BytesMut, usize) {
        let mut out = BytesMut::new();
        let mut confirmations = 0;
        for (command, set) in [
            (&b"SUBSCRIBE"[..], &self.channels),
            (b"PSUBSCRIBE", &self.patterns),
            (b"SSUBSCRIBE", &self.shard_channels),
        ] {
            if !set.is_empty() {
                let args: Vec<&[u8]> = std::iter::once(command)
                    .chain(set.iter().map(|b| b.as_ref()))
                    .collect();
                encode_command(&mut out, args);
                confirmations += set.len();
            }
        }
        (out, confirmations)
    }
}

/// What a pub/sub frame is; `None` for anything else.
fn pubsub_frame(frame: &[u8]) -> Option<PubSubFrame> {
    let Ok(Some((parsed, _))) = parse_frame(frame, &Limits::default()) else {
        return None;
    };
    let (items, push) = match parsed {
        Frame::Array(items) => (items, false),
        Frame::Push(items) => (items, true),
        _ => return None,
    };
    let kind = match items.first() {
        Some(Frame::Bulk(kind)) => kind.to_ascii_lowercase(),
        _ => {
            return if push {
                Some(PubSubFrame::Message)
            } else {
                None
            }
        }
    };
    let count = match items.get(2) {
        Some(Frame::Integer(count)) => Some(*count),
        _ => None,
    };
    let confirmation = |subscribe: bool, shard: bool| {
        count.map(|count| PubSubFrame::Confirmation {
            subscribe,
            shard,
            count,
        })
    };
    match kind.as_slice() {
        b"subscribe" | b"psubscribe" => confirmation(true, false),
        b"ssubscribe" => confirmation(true, true),
        b"unsubscribe" | b"punsubscribe" => confirmation(false, false),
        b"sunsubscribe" => confirmation(false, true),
        b"message" | b"pmessage" | b"smessage" => Some(PubSubFrame::Message),
        // Any other RESP3 push (an invalidation, say) answers no request either.
        _ if push => Some(PubSubFrame::Message),
        _ => None,
    }
}

/// Waits for bytes from the dedicated connection, if the session has one (never completes otherwise).
pub(super) async fn read_dedicated(dedicated: Option<&mut Dedicated>) -> std::io::Result<usize> {
    match dedicated {
        Some(dedicated) => dedicated.reader.read_buf(&mut dedicated.from_backend).await,
        None => std::future::pending().await,
    }
}
