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

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cluster_router::commands::{self, CommandClass, CommandSpec, ProxyHandling};
use cluster_router::plan::{route, RouteError, RoutePlan};
use cluster_router::topology::NodeAddr;
use resp_codec::{encode_command, parse_frame, Frame, Limits, ReplyDecoder, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;
use tracing::{debug, info};

use super::errors::{AdminError, ClusterError, ErrorReply, Unsupported};
use super::observe::PendingQueue;
use super::pending::{Owed, Pending};
use super::transaction::{self, TransactionError};
use super::{parse_u32, unsupported, Session, SessionEnd};
use crate::backend::{
    connect, BackendError, BackendReader, BackendStream, BackendWriter, Broken, Endpoint,
};
use crate::pools::PoolHandle;

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

impl Session {
    /// At a barrier, with a request that needs a backend connection of its own: connects (or takes the spare
    /// connection) and sends the request there. If that fails, the request gets the error and the client stays
    /// on shared connections.
    pub(super) async fn start_dedicated(&mut self, first: Request) {
        let (endpoint, node) = match self.dedicated_endpoint(&first) {
            Ok(found) => found,
            Err(reply) => {
                self.pending.push_back(Pending::Ready(reply));
                return;
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
        let stream = match backend {
            Ok(stream) => stream,
            Err(reason) => {
                let error = BackendError::connect(&endpoint.address, reason);
                self.pending.push_back(Pending::Ready(error.to_reply()));
                return;
            }
        };
        debug!(backend = %endpoint.address, "client moved to a dedicated backend connection");
        self.route = None;
        let tenant = self.tenant().cloned();
        self.dedicated = Some(Dedicated::new(stream, endpoint, node, tenant));
        // The first request was checked (and rewritten) in shared mode already.
        self.deferred_is_policed = true;
        self.handle(first);
    }

    /// At a barrier (no reply owed) on a dedicated connection: a removed tenant's session ends, and at shutdown
    /// the session closes (a subscriber is told why its messages stop); once the server holds no state for the
    /// client, it goes back to shared connections. `Some` when the session ends.
    pub(super) async fn dedicated_barrier(&mut self) -> Result<Option<SessionEnd>, SessionEnd> {
        let Some(dedicated) = &self.dedicated else {
            return Ok(None);
        };
        let (subscribed, holds_state) = (dedicated.subscribed, dedicated.holds_state());
        if let Some(refusal) = self.tenant_removed_by_reload() {
            // A subscriber, or a client between the commands of a transaction, of a removed tenant.
            self.write_buffer.extend_from_slice(&refusal);
            self.flush_output().await?;
            return Ok(Some(SessionEnd::TenantRemoved));
        }
        if self.shutting_down {
            self.flush_output().await?;
            if subscribed {
                let stopped = AdminError::ShuttingDown.to_reply();
                self.stream.write_all(&stopped).await?;
            }
            return self.close_after_shutdown().await.map(Some);
        }
        if !holds_state {
            self.leave_dedicated();
        }
        Ok(None)
    }

    /// Nothing left on the server for this client (a blocking command returned, a transaction ended): back to
    /// shared connections, keeping this one for the next time.
    fn leave_dedicated(&mut self) {
        let Some(dedicated) = self.dedicated.take() else {
            return;
        };
        if let Some(stream) = dedicated.reader.reunite(dedicated.writer) {
            if dedicated.from_backend.is_empty() && !dedicated.reconfigured {
                self.spare_dedicated = Some(SpareConnection {
                    address: dedicated.endpoint.address.clone(),
                    db: dedicated.endpoint.db,
                    resp3: dedicated.endpoint.resp3,
                    stream,
                });
            }
        }
        // Idle time counts from here: a subscriber may not have sent anything for long.
        self.last_activity = tokio::time::Instant::now();
        debug!("client back on shared connections");
    }

    /// Writes the requests framed for the dedicated connection since the last turn of the session loop.
    pub(super) async fn write_dedicated(&mut self) -> Result<(), SessionEnd> {
        let Some(dedicated) = self.dedicated.as_mut() else {
            return Ok(());
        };
        if dedicated.to_backend.is_empty() {
            return Ok(());
        }
        let written = dedicated.writer.write_all(&dedicated.to_backend).await;
        dedicated.to_backend.clear();
        if let Err(error) = written {
            self.backend_lost(Broken::Write(error)).await?;
        }
        Ok(())
    }

    /// What a read from the dedicated connection brought: replies and pushes for the client, the end of the
    /// connection or an error. `Some` when the session ends here (Redis closed the connection after QUIT).
    pub(super) async fn on_dedicated_read(
        &mut self,
        read: std::io::Result<usize>,
    ) -> Result<Option<SessionEnd>, SessionEnd> {
        let read = match read {
            Ok(read) => read,
            Err(error) => {
                self.backend_lost(Broken::Read(error)).await?;
                return Ok(None);
            }
        };
        self.frame_dedicated_replies()?;
        if read == 0 {
            if matches!(self.closing, Some(SessionEnd::Quit)) {
                // Redis closes the connection after QUIT's +OK.
                self.flush_output().await?;
                return Ok(Some(SessionEnd::Quit));
            }
            self.backend_lost(Broken::Closed).await?;
        }
        Ok(None)
    }

    /// Frames what the dedicated connection sent. A reply goes to the first entry of the reply queue still
    /// owed by this connection: into the write buffer when that entry is at the front, else kept in the entry
    /// until it is (an earlier reply the proxy builds in a task, `RKPROXY RELOAD` say, comes first).
    fn frame_dedicated_replies(&mut self) -> Result<(), SessionEnd> {
        loop {
            let Some(dedicated) = self.dedicated.as_mut() else {
                return Ok(());
            };
            let frame = match dedicated.decoder.decode(&mut dedicated.from_backend) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(e) => return Err(SessionEnd::BackendLost(format!("bad reply: {e}"))),
            };
            let owed = self
                .pending
                .iter_mut()
                .enumerate()
                .find_map(|(at, entry)| match entry {
                    Pending::Dedicated(owed) if owed.replies > 0 => Some((at, &mut **owed)),
                    _ => None,
                });
            let effect = match owed {
                Some((0, owed)) => {
                    dedicated.backend_frame(frame, Some(owed), &mut self.write_buffer)
                }
                Some((_, owed)) => {
                    let mut early = std::mem::take(&mut owed.early);
                    let effect = dedicated.backend_frame(frame, Some(&mut *owed), &mut early);
                    owed.early = early;
                    effect
                }
                None => dedicated.backend_frame(frame, None, &mut self.write_buffer),
            };
            if effect == FrameEffect::None {
                continue;
            }
            if effect == FrameEffect::RefusedSubscription {
                // Subscribed only if Redis said so, or another subscription is on its way.
                let on_its_way = self.pending.iter().any(
                    |entry| matches!(entry, Pending::Dedicated(owed) if owed.pubsub && owed.replies > 0),
                );
                dedicated.subscribed =
                    dedicated.channel_count > 0 || dedicated.shard_count > 0 || on_its_way;
            }
            // The entry is complete: it and the proxy's own replies queued behind it go out now.
            self.collect_ready_replies();
        }
    }

    /// The dedicated connection broke. A subscribed client is connected and subscribed again; anything else
    /// gets an error for every reply still owed, and the session ends.
    async fn backend_lost(&mut self, reason: Broken) -> Result<(), SessionEnd> {
        let Some(mut dedicated) = self.dedicated.take() else {
            return Ok(());
        };
        let resubscribed = dedicated.subscribed
            && self.closing.is_none()
            && self.resubscribe(&mut dedicated).await;
        // Replies owed by the old connection will never come.
        let lost = reason.to_string();
        let error = BackendError::lost(&dedicated.endpoint.address, reason);
        self.fail_owed(&error);
        if resubscribed {
            self.dedicated = Some(dedicated);
            return Ok(());
        }
        self.flush_output().await?;
        Err(SessionEnd::BackendLost(lost))
    }

    /// Connects again (within [`RESUBSCRIBE_WINDOW`]) and restores every subscription; whether it could.
    async fn resubscribe(&self, dedicated: &mut Dedicated) -> bool {
        let deadline = tokio::time::Instant::now() + RESUBSCRIBE_WINDOW;
        while tokio::time::Instant::now() < deadline {
            if let Some(candidate) = self.resubscribe_endpoint(dedicated) {
                dedicated.endpoint = candidate;
            }
            if let Ok(stream) = connect(&dedicated.endpoint).await {
                let (commands, confirmations) = dedicated.resubscribe_commands();
                dedicated.reconnected(stream);
                if dedicated.writer.write_all(&commands).await.is_ok() {
                    info!(backend = %dedicated.endpoint.address, "dedicated connection lost; subscribed again");
                    dedicated.swallow = confirmations;
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    }

    /// Every reply still owed by the dedicated connection fails with `error`; the proxy's own replies keep
    /// their place. Each failed request is counted as a backend failure.
    fn fail_owed(&mut self, error: &BackendError) {
        let reply = error.to_reply();
        let mut failed = 0;
        for entry in self.pending.iter_mut() {
            if let Pending::Dedicated(owed) = entry {
                if owed.replies > 0 {
                    for _ in 0..std::mem::take(&mut owed.replies) {
                        owed.early.extend_from_slice(&reply);
                    }
                    failed += 1;
                }
            }
        }
        if failed > 0 {
            self.stats
                .error(super::observe::failure_kind(error), failed);
            self.stats.node(error.address(), 0, failed, None);
        }
        self.collect_ready_replies();
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

    /// The backend a dedicated connection for `first` goes to, and in a cluster its node.
    fn dedicated_endpoint(&self, first: &Request) -> Result<(Endpoint, Option<NodeAddr>), Bytes> {
        match &self.pool {
            PoolHandle::Standalone(pool) => Ok((pool.endpoint(self.db, self.resp3), None)),
            // The Kafka session code refuses every command that could need one; this is a safety net.
            PoolHandle::Kafka(pool) => Err(Unsupported::KafkaWithoutRedis {
                pool: pool.name().to_owned(),
            }
            .to_reply()),
            PoolHandle::Cluster(pool) => {
                let spec = commands::lookup(first).map_err(|e| Bytes::from(e.to_reply()))?;
                let topology = pool.topology();
                let masters = topology.map.masters();
                // No master for the slot, or none at all (keyless), as on shared connections.
                let node = match route(spec, first, &topology.map) {
                    Ok(RoutePlan::Slot(slot)) => {
                        topology.map.master_for_slot(slot).cloned().ok_or_else(|| {
                            Bytes::from(RouteError::SlotNotServed { slot }.to_reply())
                        })
                    }
                    Ok(_) if !masters.is_empty() => {
                        Ok(masters[(self.id as usize) % masters.len()].clone())
                    }
                    Ok(_) => Err(ClusterError::NoSlotMap {
                        pool: pool.name().to_owned(),
                    }
                    .to_reply()),
                    Err(error) => return Err(Bytes::from(error.to_reply())),
                };
                let node = node.inspect_err(|_| pool.request_refresh())?;
                let endpoint = pool.endpoint(&node, self.resp3, false);
                Ok((endpoint, Some(node)))
            }
        }
    }

    /// A request (looked up and policed, like any) on a dedicated connection: written to the backend, which
    /// owes its replies, or answered here.
    pub(super) fn send_dedicated(&mut self, spec: &'static CommandSpec, request: Request) {
        let in_transaction = self
            .dedicated
            .as_ref()
            .is_some_and(|dedicated| dedicated.in_transaction);
        if in_transaction && !self.queue_on_dedicated(spec, &request) {
            return;
        }
        if !self.mirror_on_dedicated(spec, &request) {
            return;
        }
        if let Some(refusal) = self.cluster_refusal(spec, &request) {
            self.refuse_on_dedicated(refusal);
            return;
        }
        // Inside MULTI the reply is +QUEUED; EXEC's array is passed on as it is.
        let rewrite = self.reply_rewrite(spec).filter(|_| !in_transaction);
        // The backend switches protocol; the client gets the proxy's own HELLO (its id, the backend's version,
        // one standalone mode), as on shared connections, not the node's.
        let hello = (spec.name == "hello" && !in_transaction).then(|| self.hello_reply_now());
        let Some(dedicated) = self.dedicated.as_mut() else {
            return;
        };
        let mut owed = Owed::one(rewrite);
        owed.replies = dedicated.replies_owed(spec, &request);
        owed.pubsub = spec.class == CommandClass::PubSub && !in_transaction;
        owed.unsubscribe =
            owed.pubsub && matches!(spec.name, "unsubscribe" | "punsubscribe" | "sunsubscribe");
        if spec.name == "exec" && in_transaction && dedicated.aborted {
            // A command was refused while queued: Redis would discard the transaction at EXEC. DISCARD ends
            // it on the server (and its WATCH), and the client gets Redis's EXECABORT.
            dedicated
                .to_backend
                .extend_from_slice(b"*1\r\n$7\r\nDISCARD\r\n");
            owed.instead = Some(TransactionError::ExecAbort.to_reply());
        } else {
            dedicated.to_backend.extend_from_slice(request.raw());
        }
        if hello.is_some() {
            owed.instead = hello;
        }
        dedicated.track(spec, &request);
        let node = dedicated.endpoint.address.clone();
        self.pending
            .push_sent(Pending::Dedicated(Box::new(owed)), request.raw(), &node);
    }

    /// A command the proxy refuses itself on a dedicated connection; inside MULTI this aborts the transaction,
    /// as in Redis.
    fn refuse_on_dedicated(&mut self, reply: Bytes) {
        self.fail_transaction();
        self.pending.push_back(Pending::Ready(reply));
    }

    /// Inside MULTI on a dedicated connection: marks the transaction so that EXEC fails with EXECABORT.
    pub(super) fn fail_dedicated_transaction(&mut self) {
        if let Some(dedicated) = self.dedicated.as_mut() {
            dedicated.aborted |= dedicated.in_transaction;
        }
    }

    /// Whether the client is inside MULTI on a dedicated connection.
    pub(super) fn in_dedicated_transaction(&self) -> bool {
        self.dedicated
            .as_ref()
            .is_some_and(|dedicated| dedicated.in_transaction)
    }

    /// Inside MULTI: whether the command goes to the backend to be queued there. QUIT and RESET run at once
    /// (as in Redis); a command the proxy cannot queue is refused, which aborts the transaction.
    fn queue_on_dedicated(&mut self, spec: &CommandSpec, request: &Request) -> bool {
        let handled_by_redis = matches!(
            spec.name,
            "multi" | "exec" | "discard" | "watch" | "unwatch" | "quit" | "reset"
        );
        if handled_by_redis || transaction::queueable(spec) {
            return true;
        }
        self.refuse_on_dedicated(transaction::refusal(spec, request));
        false
    }

    /// Commands the proxy answers itself, on a dedicated connection: the backend keeps this state itself
    /// (SELECT, HELLO), so the session mirrors it and the request goes on; others are answered here. Returns
    /// whether the request goes to the backend.
    fn mirror_on_dedicated(&mut self, spec: &CommandSpec, request: &Request) -> bool {
        match spec.proxy {
            ProxyHandling::Forward
            | ProxyHandling::Dedicated
            | ProxyHandling::DedicatedWhenBlocking => true,
            ProxyHandling::Local if matches!(spec.name, "select" | "hello" | "reset") => {
                if let Some(dedicated) = self.dedicated.as_mut() {
                    dedicated.reconfigured = true;
                }
                self.mirror_connection_state(spec, request)
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
                    self.pending.push_back(Pending::Ready(reply));
                    false
                }
            },
            _ => {
                self.refuse_on_dedicated(unsupported(request));
                false
            }
        }
    }

    /// SELECT, HELLO and RESET on a dedicated connection: the backend keeps this state itself, so the request
    /// goes on and the session mirrors it (HELLO with AUTH is answered here). Returns whether it goes on.
    fn mirror_connection_state(&mut self, spec: &CommandSpec, request: &Request) -> bool {
        match spec.name {
            "select" if self.cluster.is_none() => {
                // A tenant stays in its own db here too.
                if let Some(tenant) = self.tenant() {
                    let checked =
                        tenant.check_select(self.pool.name(), request.arg(1).unwrap_or_default());
                    if let Err(error) = checked {
                        self.refuse_on_dedicated(error.to_reply());
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
                    self.pending.push_back(Pending::Ready(reply));
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
                self.pending.push_back(Pending::Ready(reply));
                false
            }
        }
    }

    /// Cluster pools: a command whose keys are not all in one slot, or whose slot is on another node than this
    /// connection, gets `CROSSSLOT` (the client could not follow a MOVED to this connection).
    fn cluster_refusal(&self, spec: &'static CommandSpec, request: &Request) -> Option<Bytes> {
        let node = self.dedicated.as_ref()?.node.as_ref()?;
        let PoolHandle::Cluster(pool) = &self.pool else {
            return None;
        };
        let topology = pool.topology();
        match route(spec, request, &topology.map) {
            Ok(RoutePlan::Slot(slot)) if topology.map.master_for_slot(slot) != Some(node) => {
                Some(Bytes::from(RouteError::CrossSlot.to_reply()))
            }
            Err(error) => Some(Bytes::from(error.to_reply())),
            _ => None,
        }
    }
}
