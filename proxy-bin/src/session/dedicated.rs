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
//! When the backend connection of a subscribed client breaks (a restart, a cluster failover), the session
//! connects again (in a cluster, to a master of the refreshed map) and subscribes again to every channel and
//! pattern, swallowing the confirmations, so the client keeps receiving messages. Any other lost dedicated
//! connection ends the client's session, since the server-side state (a transaction, WATCH) is gone.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cluster_router::commands::{self, CommandSpec, ProxyHandling};
use cluster_router::plan::{route, RoutePlan};
use cluster_router::topology::NodeAddr;
use resp_codec::{encode_command, parse_frame, Frame, Limits, ReplyDecoder, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::Decoder;
use tracing::{debug, info};

use super::{parse_u32, unsupported, PoolHandle, Session, SessionEnd, Step};
use crate::backend::{connect, BackendError, Endpoint};
use crate::reply;

/// A dedicated connection kept after its client went back to shared connections, for the next time.
pub(super) struct SpareConnection {
    address: std::sync::Arc<str>,
    db: u32,
    resp3: bool,
    stream: tokio::net::TcpStream,
}

impl SpareConnection {
    /// Whether it connects to the same place with the same settings, and the server has not closed it.
    fn fits(&self, endpoint: &Endpoint) -> bool {
        let mut probe = [0u8; 1];
        let still_open = matches!(
            self.stream.try_read(&mut probe),
            Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock
        );
        still_open
            && self.address == endpoint.address
            && self.db == endpoint.db
            && self.resp3 == endpoint.resp3
    }
}

/// How long a subscribed client waits for its backend to come back before its session ends.
const RESUBSCRIBE_WINDOW: Duration = Duration::from_secs(15);

/// A reply owed to the client on a dedicated connection.
enum Slot {
    /// The backend owes it; with a spec, the reply's keys lose the tenant's prefix.
    Backend(Option<&'static CommandSpec>),
    /// The proxy's own reply, waiting behind earlier backend replies.
    Local(Bytes),
}

/// Reply bookkeeping and subscriptions on a dedicated connection.
#[derive(Default)]
struct Dedicated {
    slots: VecDeque<Slot>,
    subscribed: bool,
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
    shard_channels: BTreeSet<Bytes>,
    /// Subscription confirmations still to swallow after subscribing again.
    swallow: usize,
    /// The cluster node this connection is on.
    node: Option<NodeAddr>,
    /// Inside MULTI ... EXEC/DISCARD.
    in_transaction: bool,
    /// Keys are WATCHed (until EXEC, DISCARD or UNWATCH).
    watching: bool,
    /// A tenant with a key prefix: pushes (pub/sub messages) lose it.
    tenant: Option<std::sync::Arc<tenant_policy::Tenant>>,
}

impl Dedicated {
    fn queue_local(&mut self, reply: Bytes, out: &mut BytesMut) {
        if self.slots.is_empty() {
            out.extend_from_slice(&reply);
        } else {
            self.slots.push_back(Slot::Local(reply));
        }
    }

    fn backend_frame(&mut self, frame: Bytes, out: &mut BytesMut) {
        if self.swallow > 0 && is_subscription_confirmation(&frame) {
            self.swallow -= 1;
            return;
        }
        if self.subscribed {
            // Pushes and subscription confirmations do not pair with requests.
            self.slots.retain(|slot| matches!(slot, Slot::Local(_)));
            let frame = match &self.tenant {
                Some(tenant) if tenant.key_prefix().is_some() => {
                    match parse_frame(&frame, &Limits::default()) {
                        Ok(Some((parsed, _))) => tenant.rewrite_push(parsed).to_bytes(),
                        _ => frame,
                    }
                }
                _ => frame,
            };
            out.extend_from_slice(&frame);
        } else if let Some(Slot::Backend(rewrite)) = self.slots.front() {
            let frame = match (rewrite, &self.tenant) {
                (Some(spec), Some(tenant)) if frame.first() != Some(&b'-') => {
                    match parse_frame(&frame, &Limits::default()) {
                        Ok(Some((parsed, _))) => tenant.rewrite_reply(spec, parsed).to_bytes(),
                        _ => frame,
                    }
                }
                _ => frame,
            };
            out.extend_from_slice(&frame);
            self.slots.pop_front();
        } else {
            out.extend_from_slice(&frame);
        }
        while let Some(Slot::Local(_)) = self.slots.front() {
            if let Some(Slot::Local(local)) = self.slots.pop_front() {
                out.extend_from_slice(&local);
            }
        }
    }

    /// Whether the server holds state for this client that a shared connection could not carry.
    fn holds_state(&self) -> bool {
        self.subscribed || self.in_transaction || self.watching
    }

    /// Records transaction state and (un)subscriptions (so they can be restored on a new connection).
    fn track(&mut self, spec: &CommandSpec, request: &Request) {
        match spec.name {
            "multi" => self.in_transaction = true,
            "exec" | "discard" => {
                self.in_transaction = false;
                self.watching = false;
            }
            "watch" => self.watching = true,
            "unwatch" => self.watching = false,
            _ => {}
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
        if matches!(spec.name, "subscribe" | "psubscribe" | "ssubscribe") {
            self.subscribed = true;
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

fn is_subscription_confirmation(frame: &[u8]) -> bool {
    let Ok(Some((parsed, _))) = parse_frame(frame, &Limits::default()) else {
        return false;
    };
    let items = match parsed {
        Frame::Array(items) | Frame::Push(items) => items,
        _ => return false,
    };
    matches!(items.first(), Some(Frame::Bulk(kind)) if
        kind.eq_ignore_ascii_case(b"subscribe") || kind.eq_ignore_ascii_case(b"psubscribe")
            || kind.eq_ignore_ascii_case(b"ssubscribe"))
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
            if !self.write_buffer.is_empty() {
                self.stream.write_all(&self.write_buffer).await?;
                self.write_buffer.clear();
            }
            if dedicated.slots.is_empty() {
                if let Some(end) = self.closing.take() {
                    return Ok(Step::End(end));
                }
                if !dedicated.holds_state() {
                    // Nothing left on the server for this client (a blocking command returned, a transaction
                    // ended): go back to shared connections, and keep this one for the next time.
                    if let Ok(stream) = backend_reader.reunite(backend_writer) {
                        if backend_buffer.is_empty() {
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
                && dedicated.slots.len() < max_pending
                && (dedicated.holds_state() || dedicated.slots.is_empty())
            {
                match self.decoder.decode(&mut self.read_buffer) {
                    Ok(Some(request)) => {
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
                && dedicated.slots.len() < max_pending
                && (dedicated.holds_state() || dedicated.slots.is_empty());
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
                            self.stream.write_all(&self.write_buffer).await?;
                            return Ok(Step::End(SessionEnd::Quit));
                        }
                        self.backend_lost(&mut dedicated, &mut endpoint, "connection closed by the backend", &mut backend_reader, &mut backend_writer).await?;
                        reply_decoder = ReplyDecoder::new(Limits::for_backend_replies());
                        backend_buffer.clear();
                    }
                }
                read = self.stream.read_buf(&mut self.read_buffer), if can_read => {
                    if read? == 0 {
                        return Ok(Step::End(SessionEnd::ClientClosed));
                    }
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
        reader: &mut OwnedReadHalf,
        writer: &mut OwnedWriteHalf,
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
                        dedicated.swallow = confirmations;
                        *reader = new_reader;
                        *writer = new_writer;
                        return Ok(());
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        let error = BackendError::unavailable(&endpoint.address, reason);
        for slot in dedicated.slots.drain(..) {
            match slot {
                Slot::Backend(_) => self.write_buffer.extend_from_slice(&error.to_reply()),
                Slot::Local(reply) => self.write_buffer.extend_from_slice(&reply),
            }
        }
        self.stream.write_all(&self.write_buffer).await?;
        self.write_buffer.clear();
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
                dedicated.queue_local(Bytes::from(error.to_reply()), &mut self.write_buffer);
                return;
            }
        };
        let verdict = if police {
            self.police(spec, request, false)
        } else {
            super::tenancy::Verdict::Proceed(request)
        };
        let request = match verdict {
            super::tenancy::Verdict::Proceed(request) => request,
            super::tenancy::Verdict::Refuse(reply) => {
                dedicated.queue_local(reply, &mut self.write_buffer);
                return;
            }
            super::tenancy::Verdict::Later(..) => {
                dedicated.queue_local(
                    reply::error("ERR over the tenant's traffic limit"),
                    &mut self.write_buffer,
                );
                return;
            }
        };
        match spec.proxy {
            ProxyHandling::Forward
            | ProxyHandling::Dedicated
            | ProxyHandling::DedicatedWhenBlocking => {}
            // On its own connection the backend can keep this state itself; the session mirrors it.
            ProxyHandling::Local => match spec.name {
                "select" if self.cluster.is_none() => {
                    // A tenant stays in its own db here too.
                    if let Some(tenant) = self.tenant() {
                        let checked = tenant
                            .check_select(self.pool.name(), request.arg(1).unwrap_or_default());
                        if let Err(error) = checked {
                            dedicated.queue_local(error.to_reply(), &mut self.write_buffer);
                            return;
                        }
                    }
                    if let Some(db) = request.arg(1).and_then(parse_u32) {
                        self.db = db;
                    }
                }
                "hello" => {
                    if request.args().any(|arg| arg.eq_ignore_ascii_case(b"AUTH")) {
                        let reply = self.hello(spec, &request);
                        dedicated.queue_local(reply, &mut self.write_buffer);
                        return;
                    }
                    match request.arg(1) {
                        Some(b"3") => self.resp3 = true,
                        Some(b"2") => self.resp3 = false,
                        _ => {}
                    }
                }
                "reset" => {
                    self.db = 0;
                    self.resp3 = false;
                    self.name = None;
                    dedicated.channels.clear();
                    dedicated.patterns.clear();
                    dedicated.shard_channels.clear();
                    dedicated.subscribed = false;
                }
                "quit" => self.closing = Some(SessionEnd::Quit),
                _ => {
                    let reply = self.answer_session_command(spec, &request);
                    dedicated.queue_local(reply, &mut self.write_buffer);
                    return;
                }
            },
            _ => {
                dedicated.queue_local(unsupported(&request), &mut self.write_buffer);
                return;
            }
        }
        if let (Some(node), PoolHandle::Cluster(pool)) = (&dedicated.node, &self.pool) {
            let topology = pool.topology();
            if let Ok(RoutePlan::Slot(slot)) = route(spec, &request, &topology.map) {
                if topology.map.master_for_slot(slot) != Some(node) {
                    dedicated.queue_local(
                        reply::error("CROSSSLOT Keys in request don't hash to the same slot"),
                        &mut self.write_buffer,
                    );
                    return;
                }
            }
        }
        dedicated.track(spec, &request);
        to_backend.extend_from_slice(request.raw());
        if !dedicated.subscribed {
            let rewrite = self.reply_rewrite(spec);
            dedicated.slots.push_back(Slot::Backend(rewrite));
        }
    }
}
