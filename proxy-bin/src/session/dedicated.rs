//! Dedicated mode: the rest of a session served over a backend connection of its own.
//!
//! Used once a client starts something that keeps state on the server: WATCH and MULTI (standalone pools),
//! blocking commands, SUBSCRIBE and friends. Requests are still framed and checked; backend bytes are framed and
//! passed on in order. Commands the proxy answers itself get their reply queued behind the backend replies still
//! owed, so order holds. Once the client subscribes, replies no longer pair with requests (pushes arrive at any
//! time); from then on every backend frame passes through as it comes.
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

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cluster_router::commands::{self, CommandClass, CommandSpec, ProxyHandling};
use cluster_router::plan::{route, RoutePlan};
use cluster_router::topology::NodeAddr;
use resp_codec::{encode_command, parse_frame, Frame, Limits, ReplyDecoder, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;
use tracing::{debug, info};

use super::tenancy::Verdict;
use super::transaction::{self, TransactionError};
use super::{parse_u32, unsupported, Session, SessionEnd, Step};
use crate::backend::{
    connect, BackendError, BackendReader, BackendStream, BackendWriter, Endpoint,
};
use crate::pools::PoolHandle;
use crate::reply;

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

/// A reply owed to the client on a dedicated connection.
enum Slot {
    /// The backend owes replies for one request.
    Backend(Owed),
    /// The proxy's own reply, waiting behind earlier backend replies.
    Local(Bytes),
}

/// What the backend owes for one request.
struct Owed {
    /// How many replies: one, or one per channel for SUBSCRIBE and friends. An error ends the request early.
    replies: usize,
    /// The request is a (un)subscription: its replies are subscription confirmations.
    pubsub: bool,
    /// The request is an UNSUBSCRIBE, PUNSUBSCRIBE or SUNSUBSCRIBE: it may end every subscription.
    unsubscribe: bool,
    /// With a spec, the reply's keys lose the tenant's prefix.
    rewrite: Option<&'static CommandSpec>,
    /// The client gets this instead of the backend's reply (EXEC of an aborted transaction, sent as DISCARD).
    instead: Option<Bytes>,
}

impl Owed {
    fn one(rewrite: Option<&'static CommandSpec>) -> Owed {
        Owed {
            replies: 1,
            pubsub: false,
            unsubscribe: false,
            rewrite,
            instead: None,
        }
    }
}

/// Reply bookkeeping and subscriptions on a dedicated connection.
///
/// Every request sent to the backend owes a known number of replies (its slot), subscribed or not; pub/sub
/// messages are told apart from replies by their kind and pass through as they come. So the session always
/// knows when every reply has arrived, and can go back to shared connections once the server holds no state
/// for the client: no transaction, no WATCH, and a subscription count of 0 as reported by Redis.
#[derive(Default)]
struct Dedicated {
    slots: VecDeque<Slot>,
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
    fn queue_local(&mut self, reply: Bytes, out: &mut BytesMut) {
        if self.slots.is_empty() {
            out.extend_from_slice(&reply);
        } else {
            self.slots.push_back(Slot::Local(reply));
        }
    }

    /// A command the proxy refuses itself; inside MULTI this aborts the transaction, as in Redis.
    fn refuse(&mut self, reply: Bytes, out: &mut BytesMut) {
        if self.in_transaction {
            self.aborted = true;
        }
        self.queue_local(reply, out);
    }

    /// Whether this frame may be a pub/sub frame (and is worth parsing to find out).
    fn may_be_pubsub(&self, frame: &[u8]) -> bool {
        match frame.first() {
            Some(b'>') => true,
            Some(b'*') => {
                self.subscribed
                    || matches!(self.slots.front(), Some(Slot::Backend(owed)) if owed.pubsub)
            }
            _ => false,
        }
    }

    fn backend_frame(&mut self, frame: Bytes, out: &mut BytesMut) {
        let pubsub = if self.may_be_pubsub(&frame) {
            pubsub_frame(&frame)
        } else {
            None
        };
        match pubsub {
            Some(PubSubFrame::Message) => {
                // Pushes answer no request: they pass through at once, local replies stay queued.
                out.extend_from_slice(&self.rewrite_push(frame));
                return;
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
                    return;
                }
            }
            None => {}
        }
        let is_error = frame.first() == Some(&b'-');
        let bytes = match self.slots.front() {
            Some(Slot::Backend(owed)) => match (&owed.instead, &pubsub) {
                (Some(instead), _) => instead.clone(),
                (None, Some(_)) => self.rewrite_push(frame),
                (None, None) => self.rewrite_reply(owed.rewrite, frame, is_error),
            },
            // Nothing owed (cannot happen while every request has its slot): pass it on rather than drop it.
            _ => frame,
        };
        out.extend_from_slice(&bytes);
        if let Some(Slot::Backend(owed)) = self.slots.front_mut() {
            owed.replies = owed.replies.saturating_sub(1);
            if owed.replies == 0 || is_error {
                let pubsub_request = owed.pubsub;
                self.slots.pop_front();
                if pubsub_request && is_error {
                    // A refused subscription: subscribed only if Redis said so, or another one is on its way.
                    self.subscribed = self.channel_count > 0
                        || self.shard_count > 0
                        || self
                            .slots
                            .iter()
                            .any(|slot| matches!(slot, Slot::Backend(owed) if owed.pubsub));
                }
            }
        }
        while let Some(Slot::Local(_)) = self.slots.front() {
            if let Some(Slot::Local(local)) = self.slots.pop_front() {
                out.extend_from_slice(&local);
            }
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

    /// Every reply still owed fails with `error` (the connection broke); local replies keep their place.
    fn fail_owed(&mut self, error: &Bytes, out: &mut BytesMut) {
        for slot in self.slots.drain(..) {
            match slot {
                Slot::Backend(owed) => {
                    for _ in 0..owed.replies {
                        out.extend_from_slice(error);
                    }
                }
                Slot::Local(reply) => out.extend_from_slice(&reply),
            }
        }
    }

    /// Whether more requests are taken on this connection now. Once the server holds no state for the client,
    /// or may stop holding it (an UNSUBSCRIBE whose confirmation has not come back; Redis reports the count
    /// that decides), requests wait until every reply owed has arrived: then the session knows whether they
    /// run here or, as in Redis, like any client's on shared connections.
    fn takes_requests(&self) -> bool {
        let unsubscribing = self
            .slots
            .iter()
            .any(|slot| matches!(slot, Slot::Backend(owed) if owed.unsubscribe));
        self.slots.is_empty() || (self.holds_state() && !unsubscribing)
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

impl Session {
    /// Serves the rest of the session over a backend connection of its own.
    pub(super) async fn run_dedicated(&mut self, first: Request) -> Result<Step, SessionEnd> {
        let mut dedicated = Dedicated {
            tenant: self.tenant().cloned(),
            ..Dedicated::default()
        };
        let endpoint = match self.dedicated_endpoint(&first, &mut dedicated) {
            Ok(endpoint) => endpoint,
            Err(reply) => {
                self.pending.push_back(super::Pending::Ready(reply));
                return Ok(Step::Shared);
            }
        };
        let spare = self
            .spare_dedicated
            .take()
            .filter(|spare| spare.fits(&endpoint));
        let backend = match spare {
            Some(spare) => Ok(spare.stream),
            None => connect(&endpoint).await,
        };
        let backend = match backend {
            Ok(stream) => stream,
            Err(reason) => {
                let error = BackendError::unavailable(&endpoint.address, reason);
                self.pending
                    .push_back(super::Pending::Ready(error.to_reply()));
                return Ok(Step::Shared);
            }
        };
        debug!(backend = %endpoint.address, "client moved to a dedicated backend connection");
        self.route = None;
        let (mut backend_reader, mut backend_writer) = backend.into_split();
        let mut endpoint = endpoint;
        let mut backend_buffer = BytesMut::with_capacity(16 * 1024);
        let mut reply_decoder = ReplyDecoder::new(Limits::for_backend_replies());
        let mut to_backend = BytesMut::new();
        // The first request was checked (and rewritten) in shared mode already.
        self.handle_dedicated(first, &mut dedicated, &mut to_backend, false);
        let max_pending = self.state.config().client_limits.max_pending_requests;

        loop {
            if !to_backend.is_empty() {
                if let Err(error) = backend_writer.write_all(&to_backend).await {
                    let reason = format!("write failed: {error}");
                    self.backend_lost(
                        &mut dedicated,
                        &mut endpoint,
                        &reason,
                        &mut backend_reader,
                        &mut backend_writer,
                    )
                    .await?;
                    reply_decoder = ReplyDecoder::new(Limits::for_backend_replies());
                    backend_buffer.clear();
                }
                to_backend.clear();
            }
            self.observe_before_write(self.write_buffer.len());
            self.send_replies()?;
            self.account_memory(backend_buffer.len() + to_backend.len());
            if dedicated.slots.is_empty() {
                if let Some(end) = self.closing.take() {
                    self.flush_output().await?;
                    return Ok(Step::End(end));
                }
                if let Some(refusal) = self.tenant_removed_by_reload() {
                    // A subscriber, or a client between the commands of a transaction, of a removed tenant.
                    self.stream.write_all(&refusal).await?;
                    return Ok(Step::End(SessionEnd::TenantRemoved));
                }
                if self.shutting_down {
                    // Every reply owed is written; a subscriber is told why its messages stop.
                    self.flush_output().await?;
                    if dedicated.subscribed {
                        self.stream.write_all(super::SHUTTING_DOWN).await?;
                    }
                    return self.close_after_shutdown().await;
                }
                if !dedicated.holds_state() {
                    // Nothing left on the server for this client (a blocking command returned, a transaction
                    // ended): go back to shared connections, and keep this one for the next time.
                    if let Some(stream) = backend_reader.reunite(backend_writer) {
                        if backend_buffer.is_empty() && !dedicated.reconfigured {
                            self.spare_dedicated = Some(SpareConnection {
                                address: endpoint.address.clone(),
                                db: endpoint.db,
                                resp3: endpoint.resp3,
                                stream,
                            });
                        }
                    }
                    debug!("client back on shared connections");
                    return Ok(Step::Shared);
                }
            }
            // Frame buffered client requests (bounded by the pending limit, as in shared mode).
            // Once the server holds no state for the client, stop taking requests here: after the replies owed
            // arrive, the session goes back to shared connections.
            let mut handled = false;
            while self.closing.is_none()
                && !self.shutting_down
                && dedicated.slots.len() < max_pending
                && dedicated.takes_requests()
                && !self.over_pending_bytes(0)
                && !self.memory.paused
            {
                match self.decoder.decode(&mut self.read_buffer) {
                    Ok(Some(request)) => {
                        self.count_request(&request);
                        self.handle_dedicated(request, &mut dedicated, &mut to_backend, true);
                        handled = true;
                    }
                    Ok(None) => break,
                    Err(error) => {
                        dedicated.queue_local(error.to_reply(), &mut self.write_buffer);
                        self.closing = Some(SessionEnd::Protocol(error.to_string()));
                        break;
                    }
                }
            }
            if handled {
                continue;
            }
            let can_read = self.closing.is_none()
                && !self.shutting_down
                && dedicated.slots.len() < max_pending
                && dedicated.takes_requests()
                && !self.over_pending_bytes(0)
                && !self.memory.paused;
            let writing = !self.output.is_empty() || self.stream.has_unsent();
            let memory_paused = self.memory.paused;
            tokio::select! {
                read = backend_reader.read_buf(&mut backend_buffer) => {
                    let read = match read {
                        Ok(read) => read,
                        Err(error) => {
                            let reason = format!("read failed: {error}");
                            self.backend_lost(&mut dedicated, &mut endpoint, &reason, &mut backend_reader, &mut backend_writer).await?;
                            reply_decoder = ReplyDecoder::new(Limits::for_backend_replies());
                            backend_buffer.clear();
                            continue;
                        }
                    };
                    loop {
                        match reply_decoder.decode(&mut backend_buffer) {
                            Ok(Some(frame)) => dedicated.backend_frame(frame, &mut self.write_buffer),
                            Ok(None) => break,
                            Err(e) => return Err(SessionEnd::BackendLost(format!("bad reply: {e}"))),
                        }
                    }
                    if read == 0 {
                        if matches!(self.closing, Some(SessionEnd::Quit)) {
                            // Redis closes the connection after QUIT's +OK.
                            self.flush_output().await?;
                            return Ok(Step::End(SessionEnd::Quit));
                        }
                        self.backend_lost(&mut dedicated, &mut endpoint, "connection closed by the backend", &mut backend_reader, &mut backend_writer).await?;
                        reply_decoder = ReplyDecoder::new(Limits::for_backend_replies());
                        backend_buffer.clear();
                    }
                }
                writable = self.stream.writable(), if writing => writable?,
                readable = self.stream.readable(), if can_read => {
                    readable?;
                    if self.read_some()? == Some(0) {
                        return Ok(Step::End(SessionEnd::ClientClosed));
                    }
                }
                () = self.memory.wait_for_room(), if memory_paused => {}
                _ = self.shutdown.changed(), if !self.shutting_down => {
                    self.shutting_down = true;
                }
            }
        }
    }

    /// The dedicated connection broke. A subscribed client is connected and subscribed again; anything else
    /// gets an error for every reply still owed, and the session ends.
    async fn backend_lost(
        &mut self,
        dedicated: &mut Dedicated,
        endpoint: &mut Endpoint,
        reason: &str,
        reader: &mut BackendReader,
        writer: &mut BackendWriter,
    ) -> Result<(), SessionEnd> {
        if dedicated.subscribed && self.closing.is_none() {
            let deadline = tokio::time::Instant::now() + RESUBSCRIBE_WINDOW;
            while tokio::time::Instant::now() < deadline {
                if let Some(candidate) = self.resubscribe_endpoint(dedicated) {
                    *endpoint = candidate;
                }
                if let Ok(stream) = connect(endpoint).await {
                    let (commands, confirmations) = dedicated.resubscribe_commands();
                    let (new_reader, mut new_writer) = stream.into_split();
                    if new_writer.write_all(&commands).await.is_ok() {
                        info!(backend = %endpoint.address, "dedicated connection lost; subscribed again");
                        // Replies owed by the old connection will never come.
                        let error = BackendError::unavailable(&endpoint.address, reason).to_reply();
                        dedicated.fail_owed(&error, &mut self.write_buffer);
                        dedicated.swallow = confirmations;
                        *reader = new_reader;
                        *writer = new_writer;
                        return Ok(());
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        let error = BackendError::unavailable(&endpoint.address, reason).to_reply();
        dedicated.fail_owed(&error, &mut self.write_buffer);
        self.flush_output().await?;
        Err(SessionEnd::BackendLost(reason.to_owned()))
    }

    /// Where a resubscribing client goes: in a cluster, a master of the (refreshed) map.
    fn resubscribe_endpoint(&self, dedicated: &Dedicated) -> Option<Endpoint> {
        let PoolHandle::Cluster(pool) = &self.pool else {
            return None;
        };
        pool.request_refresh();
        let topology = pool.topology();
        let masters = topology.map.masters();
        if masters.is_empty() {
            return None;
        }
        // Shard channels live on their slot's node; plain channels and patterns on any node.
        let node = match dedicated.shard_channels.iter().next() {
            Some(channel) => topology
                .map
                .master_for_slot(cluster_router::key_slot(channel))?
                .clone(),
            None => masters[(self.id as usize) % masters.len()].clone(),
        };
        Some(pool.endpoint(&node, self.resp3, false))
    }

    /// The backend a dedicated connection for `first` goes to.
    fn dedicated_endpoint(
        &self,
        first: &Request,
        dedicated: &mut Dedicated,
    ) -> Result<Endpoint, Bytes> {
        match &self.pool {
            PoolHandle::Standalone(pool) => Ok(pool.endpoint(self.db, self.resp3)),
            // The Kafka session code refuses every command that could need one; this is a safety net.
            PoolHandle::Kafka(pool) => Err(reply::error(&format!(
                "ERR kafka pool '{}' has no Redis connections",
                pool.name()
            ))),
            PoolHandle::Cluster(pool) => {
                let spec = commands::lookup(first).map_err(|e| Bytes::from(e.to_reply()))?;
                let topology = pool.topology();
                let masters = topology.map.masters();
                let node = match route(spec, first, &topology.map) {
                    Ok(RoutePlan::Slot(slot)) => topology.map.master_for_slot(slot).cloned(),
                    Ok(_) if !masters.is_empty() => {
                        Some(masters[(self.id as usize) % masters.len()].clone())
                    }
                    Ok(_) => None,
                    Err(error) => return Err(Bytes::from(error.to_reply())),
                };
                let node = node.ok_or_else(|| {
                    pool.request_refresh();
                    reply::error("CLUSTERDOWN Hash slot not served")
                })?;
                let endpoint = pool.endpoint(&node, self.resp3, false);
                dedicated.node = Some(node);
                Ok(endpoint)
            }
        }
    }

    fn handle_dedicated(
        &mut self,
        request: Request,
        dedicated: &mut Dedicated,
        to_backend: &mut BytesMut,
        police: bool,
    ) {
        let spec = match self.lookup(&request) {
            Ok(spec) => spec,
            Err(error) => {
                self.stats.error(crate::stats::ErrorKind::Refused, 1);
                dedicated.refuse(Bytes::from(error.to_reply()), &mut self.write_buffer);
                return;
            }
        };
        let verdict = if police {
            self.police(spec, request, false)
        } else {
            Verdict::Proceed(request)
        };
        let request = match verdict {
            Verdict::Proceed(request) => request,
            Verdict::Refuse(reply) => {
                dedicated.refuse(reply, &mut self.write_buffer);
                return;
            }
            Verdict::Later(..) => {
                self.stats.error(crate::stats::ErrorKind::Limit, 1);
                dedicated.refuse(
                    reply::error("ERR over the tenant's traffic limit"),
                    &mut self.write_buffer,
                );
                return;
            }
        };
        if dedicated.in_transaction && !self.queue_on_dedicated(spec, &request, dedicated) {
            return;
        }
        if !self.mirror_on_dedicated(spec, &request, dedicated) {
            return;
        }
        if let Some(refusal) = self.cluster_refusal(spec, &request, dedicated) {
            dedicated.refuse(refusal, &mut self.write_buffer);
            return;
        }
        // Inside MULTI the reply is +QUEUED; EXEC's array is passed on as it is.
        let rewrite = self
            .reply_rewrite(spec)
            .filter(|_| !dedicated.in_transaction);
        let mut owed = Owed::one(rewrite);
        owed.replies = dedicated.replies_owed(spec, &request);
        owed.pubsub = spec.class == CommandClass::PubSub && !dedicated.in_transaction;
        owed.unsubscribe =
            owed.pubsub && matches!(spec.name, "unsubscribe" | "punsubscribe" | "sunsubscribe");
        if spec.name == "exec" && dedicated.in_transaction && dedicated.aborted {
            // A command was refused while queued: Redis would discard the transaction at EXEC. DISCARD ends
            // it on the server (and its WATCH), and the client gets Redis's EXECABORT.
            to_backend.extend_from_slice(b"*1\r\n$7\r\nDISCARD\r\n");
            owed.instead = Some(TransactionError::ExecAbort.to_reply());
        } else {
            to_backend.extend_from_slice(request.raw());
        }
        if spec.name == "hello" && !dedicated.in_transaction {
            // The backend switches protocol; the client gets the proxy's own HELLO (its id, the backend's
            // version, one standalone mode), as on shared connections, not the node's.
            owed.instead = Some(self.hello_reply_now());
        }
        dedicated.track(spec, &request);
        dedicated.slots.push_back(Slot::Backend(owed));
    }

    /// Inside MULTI: whether the command goes to the backend to be queued there. QUIT and RESET run at once
    /// (as in Redis); a command the proxy cannot queue is refused, which aborts the transaction.
    fn queue_on_dedicated(
        &mut self,
        spec: &CommandSpec,
        request: &Request,
        dedicated: &mut Dedicated,
    ) -> bool {
        let handled_by_redis = matches!(
            spec.name,
            "multi" | "exec" | "discard" | "watch" | "unwatch" | "quit" | "reset"
        );
        if handled_by_redis || transaction::queueable(spec) {
            return true;
        }
        dedicated.refuse(transaction::refusal(spec, request), &mut self.write_buffer);
        false
    }

    /// Commands the proxy answers itself, on a dedicated connection: the backend keeps this state itself
    /// (SELECT, HELLO), so the session mirrors it and the request goes on; others are answered here. Returns
    /// whether the request goes to the backend.
    fn mirror_on_dedicated(
        &mut self,
        spec: &CommandSpec,
        request: &Request,
        dedicated: &mut Dedicated,
    ) -> bool {
        match spec.proxy {
            ProxyHandling::Forward
            | ProxyHandling::Dedicated
            | ProxyHandling::DedicatedWhenBlocking => true,
            ProxyHandling::Local if matches!(spec.name, "select" | "hello" | "reset") => {
                dedicated.reconfigured = true;
                self.mirror_connection_state(spec, request, dedicated)
            }
            ProxyHandling::Local => match spec.name {
                // Sent on: Redis answers +OK after every reply owed, then closes the connection.
                "quit" => {
                    self.closing = Some(SessionEnd::Quit);
                    true
                }
                // INFO and CONFIG for admins: this connection's backend answers.
                _ if self.backend_answers_on_dedicated(spec) => true,
                _ => {
                    let reply = self.answer_session_command(spec, request);
                    dedicated.queue_local(reply, &mut self.write_buffer);
                    false
                }
            },
            _ => {
                dedicated.refuse(unsupported(request), &mut self.write_buffer);
                false
            }
        }
    }

    /// SELECT, HELLO and RESET on a dedicated connection: the backend keeps this state itself, so the request
    /// goes on and the session mirrors it (HELLO with AUTH is answered here). Returns whether it goes on.
    fn mirror_connection_state(
        &mut self,
        spec: &CommandSpec,
        request: &Request,
        dedicated: &mut Dedicated,
    ) -> bool {
        match spec.name {
            "select" if self.cluster.is_none() => {
                // A tenant stays in its own db here too.
                if let Some(tenant) = self.tenant() {
                    let checked =
                        tenant.check_select(self.pool.name(), request.arg(1).unwrap_or_default());
                    if let Err(error) = checked {
                        dedicated.refuse(error.to_reply(), &mut self.write_buffer);
                        return false;
                    }
                }
                if let Some(db) = request.arg(1).and_then(parse_u32) {
                    self.db = db;
                }
                true
            }
            "hello" => {
                if request.args().any(|arg| arg.eq_ignore_ascii_case(b"AUTH")) {
                    let reply = self.hello(spec, request);
                    dedicated.queue_local(reply, &mut self.write_buffer);
                    return false;
                }
                match request.arg(1) {
                    Some(b"3") => self.resp3 = true,
                    Some(b"2") => self.resp3 = false,
                    _ => {}
                }
                true
            }
            "reset" => {
                self.db = 0;
                self.resp3 = false;
                self.name = None;
                true
            }
            // SELECT on a cluster pool.
            _ => {
                let reply = self.answer_session_command(spec, request);
                dedicated.queue_local(reply, &mut self.write_buffer);
                false
            }
        }
    }

    /// Cluster pools: a command whose keys are not all in one slot, or whose slot is on another node than this
    /// connection, gets `CROSSSLOT` (the client could not follow a MOVED to this connection).
    fn cluster_refusal(
        &self,
        spec: &'static CommandSpec,
        request: &Request,
        dedicated: &Dedicated,
    ) -> Option<Bytes> {
        let (Some(node), PoolHandle::Cluster(pool)) = (&dedicated.node, &self.pool) else {
            return None;
        };
        let topology = pool.topology();
        match route(spec, request, &topology.map) {
            Ok(RoutePlan::Slot(slot)) if topology.map.master_for_slot(slot) != Some(node) => Some(
                reply::error("CROSSSLOT Keys in request don't hash to the same slot"),
            ),
            Err(error) => Some(Bytes::from(error.to_reply())),
            _ => None,
        }
    }
}
