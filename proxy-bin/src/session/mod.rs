//! One client connection: framing requests, routing them, and writing replies back in order.
//!
//! The session reads requests as they come (many in flight: pipelining), sends each to a shared backend
//! connection, and keeps a queue of pending replies in request order ([`pending`]). Replies that are ready are
//! gathered and written with one `write`. When a client has `max_pending_requests` in flight, the session stops
//! reading from it until replies drain (backpressure), so a fast writer cannot make the proxy buffer without bound.
//!
//! Connection state lives in the session, never in a shared backend connection:
//! - SELECT and HELLO pick which shared connection (db, protocol) serves the client; the proxy answers them
//!   ([`local`]).
//! - CLIENT SETNAME/GETNAME/ID/INFO/SETINFO are answered from the session; INFO, CONFIG and CLIENT REPLY are
//!   handled by the proxy too ([`introspection`]).
//! - MULTI/WATCH, blocking commands and SUBSCRIBE move the client to a backend connection of its own (a
//!   dedicated connection) until the server holds no state for it any more ([`dedicated`]). In a cluster pool, a
//!   MULTI without WATCH is instead queued in the session and sent at EXEC as one unit to the node of its keys
//!   ([`cluster`]). Both follow Redis's transaction rules ([`transaction`]): a command refused while MULTI is
//!   open, here or by Redis, makes EXEC fail with EXECABORT.
//!
//! Kafka commands (KPUSH, KPOP, KPARTITIONS, KOFFSET) and sessions on a Kafka pool are served by [`kafka`]: each
//! command runs in a task of its own and its reply waits in the same queue, in request order.
//!
//! Whenever the backend connection that serves a client changes (or, in a cluster, the slot map does), the
//! session first waits until every earlier reply has arrived (a barrier), so commands never overtake each other.

mod big;
mod certificate;
mod cluster;
mod dedicated;
mod errors;
mod introspection;
mod kafka;
mod local;
mod memory;
mod observe;
mod output;
mod pending;
mod reload;
mod tenancy;
mod transaction;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cluster_router::commands::{self, CommandError, CommandSpec, ProxyHandling};
use resp_codec::{Request, RequestDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;

use crate::backend::{BackendReply, Patience, SharedConnection};
use crate::pools::PoolHandle;
use crate::reply;
use crate::state::ProxyState;
use crate::tls::ClientStream;

pub use self::observe::{kafka_lag, probe_nodes, proxy_facts};

use self::cluster::ClusterSession;
use self::errors::{AdminError, ErrorReply};
use self::pending::{next_front_event, try_front_event, Expect, FrontEvent, Pending, Sent};
use self::tenancy::Verdict;

/// Why a session ended, for the connection's log line.
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    #[error("client closed the connection")]
    ClientClosed,
    #[error("client sent QUIT")]
    Quit,
    #[error("protocol error from client: {0}")]
    Protocol(String),
    #[error("client socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("dedicated backend connection lost: {0}")]
    BackendLost(String),
    #[error("no AUTH within the authentication timeout")]
    AuthTimeout,
    #[error("the tenant has too many connections")]
    TenantConnectionLimit,
    #[error("too many connections that have not authenticated")]
    TooManyUnauthenticated,
    #[error("too many wrong passwords")]
    TooManyAuthFailures,
    #[error("idle for longer than timeouts.idle_ms")]
    Idle,
    #[error("the proxy is shutting down")]
    Shutdown,
    #[error("the proxy shut down before every reply was written (timeouts.shutdown_ms)")]
    ShutdownDeadline,
    #[error("the tenant was removed by a configuration reload")]
    TenantRemoved,
    #[error(transparent)]
    OutputLimit(#[from] output::OverOutputLimit),
}

/// How long a session closing at shutdown waits for the client to close its end (see
/// `Session::close_after_shutdown`).
const SHUTDOWN_LINGER: std::time::Duration = std::time::Duration::from_millis(500);

/// A client's protocol state and its link to a pool.
pub struct Session {
    id: u64,
    /// The worker thread (event loop) this session runs on; pools keep backend connections per worker.
    worker: usize,
    state: Arc<ProxyState>,
    stream: ClientStream,
    read_buffer: BytesMut,
    /// Replies gathered in this turn of the loop (filtered by CLIENT REPLY), then moved to `output`.
    write_buffer: BytesMut,
    /// Replies on their way to the client, written without blocking (`client_limits.max_output_bytes`).
    output: output::Output,
    /// This session's share of the process's memory budget (`max_memory`).
    memory: memory::ClientMemory,
    decoder: RequestDecoder,
    /// The replies owed, in request order, each timed (see `observe`), with the requests in flight counted.
    pending: observe::PendingQueue,
    /// This session's counts, flushed into its worker's before each write.
    stats: crate::stats::SessionStats,
    /// A request that must wait until `pending` is empty (a barrier) before it runs.
    deferred: Option<Request>,
    /// The deferred request was already policed (and rewritten) when it was read: it runs as it is.
    deferred_is_policed: bool,
    closing: Option<SessionEnd>,
    db: u32,
    resp3: bool,
    name: Option<Bytes>,
    pool: PoolHandle,
    /// Standalone pools: the shared connection for the current (db, protocol).
    route: Option<SharedConnection>,
    /// Cluster pools: the slot map this session routes with, and its connections.
    cluster: Option<ClusterSession>,
    /// Set when the client needs its own backend connection; the session then switches to dedicated mode.
    go_dedicated: Option<Request>,
    /// The client's backend connection of its own, while it has one: requests go there instead of to the pool
    /// (see [`dedicated`]).
    dedicated: Option<dedicated::Dedicated>,
    /// The last dedicated connection, kept for reuse after the client went back to shared connections.
    spare_dedicated: Option<dedicated::SpareConnection>,
    /// The last command looked up: a pipeline of one command skips the table search.
    last_command: Option<LastCommand>,
    /// The command table entry of the request just framed, found while counting it: `handle` then need not
    /// look it up again (the lookup is a large part of the per-request cost).
    looked_up: Option<&'static CommandSpec>,
    /// Loop turns since the session's counts were last flushed into its worker's table (see `observe`).
    writes_since_flush: u32,
    /// Standalone pools: plain requests framed from one read and not sent yet; they go to the backend as one
    /// batch (one channel message, one reply message), in order. (Cluster pools batch per master, see
    /// `cluster::ClusterBatch`.)
    batch: BytesMut,
    batch_count: usize,
    /// Slow if a request in `batch` is (a script): the backend then waits longer for the batch's replies.
    batch_patience: Patience,
    /// The tenant this connection is authenticated as (and its place in the tenant's connection count).
    tenant: Option<tenant_policy::ConnectionPermit>,
    /// With tenants configured: when an unauthenticated connection is closed.
    auth_deadline: tokio::time::Instant,
    /// With tenants configured: this connection's place among the unauthenticated ones, until it authenticates.
    unauthenticated: Option<crate::state::ClientPermit>,
    /// Wrong passwords sent on this connection.
    auth_failures: u32,
    /// After a wrong password: no reply is written (and nothing read) before then.
    reply_hold: Option<tokio::time::Instant>,
    /// The client's IP, for the AUTH failure throttle and its log lines.
    client_ip: Option<std::net::IpAddr>,
    /// When the client last sent something (for `timeouts.idle_ms`).
    last_activity: tokio::time::Instant,
    /// A deferred request waits for the tenant's traffic budget until then.
    resume_at: Option<tokio::time::Instant>,
    /// A cluster command answered TRYAGAIN is being sent again: read no new request until it is answered.
    try_again_hold: bool,
    /// What CLIENT INFO and CLIENT REPLY need: start time, library name and version, reply mode.
    client: introspection::ClientState,
    /// Turns true when the proxy shuts down.
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// The proxy is shutting down: read no more requests, answer those already read, then close.
    shutting_down: bool,
    /// A configuration reload removed this session's tenant or pool: requests get this error.
    retired: Option<reload::Retired>,
    /// A request went down the big lane: the next request waits until it is answered (see [`big`]).
    big_request_owed: bool,
    /// At-least-once Kafka records this connection received and has not acknowledged (see [`kafka`]); made
    /// on its first Kafka command, released when the connection closes.
    kafka_deliveries: Option<Arc<kafka_bridge::ConnectionDeliveries>>,
    /// A big request the session carries on a lane connection once every earlier reply has arrived; no other
    /// request is read meanwhile (see `big::transfer`).
    lane_transfer: Option<Box<big::LaneTransfer>>,
}

/// A batch is sent once it holds this many requests or bytes, even if more are buffered.
const MAX_BATCH_REQUESTS: usize = 512;
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// A looked-up command name (lowercase) and its table entry.
struct LastCommand {
    name: [u8; LAST_COMMAND_NAME],
    len: usize,
    spec: &'static CommandSpec,
}

const LAST_COMMAND_NAME: usize = 16;

impl Session {
    /// A session for client `id`, accepted by the listener of worker `worker` (the thread it runs on).
    /// `shutdown` is that worker's shutdown signal (true, or its sender gone, once the proxy shuts down).
    pub fn new(
        id: u64,
        worker: usize,
        state: Arc<ProxyState>,
        stream: ClientStream,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Session {
        let limits = state.client_codec_limits();
        let pool = state.default_pool().clone();
        let client_ip = stream.peer_addr().ok().map(|addr| addr.ip());
        let shutting_down = *shutdown.borrow() || shutdown.has_changed().is_err();
        let stats = observe::session_stats(&state, worker, id, &stream);
        Session {
            id,
            worker,
            stream,
            read_buffer: BytesMut::with_capacity(16 * 1024),
            write_buffer: BytesMut::with_capacity(16 * 1024),
            output: output::Output::new(state.config().client_limits.max_output_bytes),
            memory: memory::ClientMemory::new(Arc::clone(state.memory()), id),
            decoder: RequestDecoder::new(limits),
            pending: observe::new_queue(state.stats()),
            stats,
            deferred: None,
            deferred_is_policed: false,
            closing: None,
            db: 0,
            resp3: false,
            name: None,
            cluster: match &pool {
                PoolHandle::Cluster(pool) => Some(ClusterSession::new(Arc::clone(pool), worker)),
                PoolHandle::Standalone(_) | PoolHandle::Kafka(_) => None,
            },
            pool,
            route: None,
            go_dedicated: None,
            dedicated: None,
            spare_dedicated: None,
            last_command: None,
            looked_up: None,
            writes_since_flush: 0,
            batch: BytesMut::new(),
            batch_count: 0,
            batch_patience: Patience::Normal,
            tenant: None,
            auth_deadline: tenancy::auth_deadline(state.config().timeouts.auth_ms),
            unauthenticated: None,
            auth_failures: 0,
            reply_hold: None,
            client_ip,
            last_activity: tokio::time::Instant::now(),
            resume_at: None,
            try_again_hold: false,
            client: introspection::ClientState::new(),
            shutdown,
            shutting_down,
            retired: None,
            big_request_owed: false,
            kafka_deliveries: None,
            lane_transfer: None,
            state,
        }
    }

    /// Serves the client until it leaves or breaks the protocol, or the proxy shuts down: then the session
    /// answers what it has read and closes, or is closed `timeouts.shutdown_ms` after the shutdown began.
    pub async fn run(mut self) -> SessionEnd {
        if let Err(end) = self.admit_unauthenticated().await {
            return end;
        }
        self.log_in_by_certificate();
        let shutdown = self.shutdown.clone();
        let limit = self.state.shutdown_limit();
        tokio::select! {
            end = self.serve() => end,
            () = shutdown_deadline(shutdown, limit) => SessionEnd::ShutdownDeadline,
        }
    }

    async fn serve(&mut self) -> SessionEnd {
        match self.run_loop().await {
            Ok(end) | Err(end) => end,
        }
    }

    /// The session loop, on shared connections and on a dedicated one alike: replies are collected and
    /// written, requests framed and handled (`handle` sends them where the client is served), and the loop
    /// waits for whichever comes next: a reply, the client, the dedicated connection, a timer, the shutdown.
    async fn run_loop(&mut self) -> Result<SessionEnd, SessionEnd> {
        let mut max_pending = self.state.config().client_limits.max_pending_requests;
        let mut idle_ms = self.state.config().timeouts.idle_ms;
        self.last_activity = tokio::time::Instant::now();
        loop {
            if let Some(until) = self.reply_hold.take() {
                self.hold_replies(until).await?;
            }
            self.write_dedicated().await?;
            self.collect_ready_replies();
            self.filter_replies();
            self.send_replies()?;
            self.account_memory(
                self.dedicated
                    .as_ref()
                    .map_or(0, dedicated::Dedicated::buffered),
            );
            if let Some(resume_at) = self.resume_at {
                // Waiting for the tenant's traffic budget; replies still flow meanwhile. A command being sent
                // again after TRYAGAIN holds the deferred one back too.
                let holding = self.holding_for_try_again() || self.holding_for_redirects();
                if holding || tokio::time::Instant::now() < resume_at {
                    let front_waiting = self.pending.front().is_some_and(Pending::is_waiting);
                    let writing = !self.output.is_empty() || self.stream.has_unsent();
                    tokio::select! {
                        event = next_front_event(self.pending.front_mut()), if front_waiting => {
                            self.apply_front_event(event);
                        }
                        writable = self.stream.writable(), if writing => writable?,
                        () = tokio::time::sleep_until(resume_at), if !holding => {}
                        else => {}
                    }
                    continue;
                }
                self.resume_at = None;
                if let Some(request) = self.deferred.take() {
                    self.handle(request);
                    self.flush_batch();
                    continue;
                }
            }
            if self.pending.is_empty() {
                self.try_again_hold = false;
                if let Some(cluster) = &self.cluster {
                    cluster.redirects.clear();
                }
                // A barrier: a reloaded configuration is taken up here (not on a dedicated connection, nor while
                // moving to one, which was decided under the current one).
                if self.dedicated.is_none()
                    && self.go_dedicated.is_none()
                    && self.adopt_newest_state()
                {
                    max_pending = self.state.config().client_limits.max_pending_requests;
                    idle_ms = self.state.config().timeouts.idle_ms;
                }
                if let Some(end) = self.closing.take() {
                    self.flush_output().await?;
                    return Ok(end);
                }
                if let Some(end) = self.dedicated_barrier().await? {
                    return Ok(end);
                }
                if self.lane_transfer.is_some() {
                    self.run_lane_transfer().await?;
                    continue;
                }
                if let Some(request) = self.deferred.take() {
                    self.handle(request);
                    self.flush_batch();
                    continue;
                }
                if let Some(request) = self.go_dedicated.take() {
                    self.reply_filter_leaves_shared_mode();
                    self.pending.forget_unattributed();
                    self.start_dedicated(request).await;
                    continue;
                }
                if self.shutting_down {
                    return self.refuse_unread_and_close().await;
                }
            }
            // Frame what is already buffered before reading more.
            if self.accepting_requests(max_pending)
                && !self.read_buffer.is_empty()
                && self.decode_buffered(max_pending)
            {
                continue;
            }
            let can_read = self.accepting_requests(max_pending);
            let front_waiting = self.pending.front().is_some_and(Pending::is_waiting);
            let on_dedicated = self.dedicated.is_some();
            let writing = !self.output.is_empty() || self.stream.has_unsent();
            let memory_paused = self.memory.paused;
            let awaiting_auth = self.awaiting_auth();
            let may_idle_out = self.may_idle_out(idle_ms);
            let idle_deadline = self.idle_deadline(idle_ms);
            tokio::select! {
                biased;
                event = next_front_event(self.pending.front_mut()), if front_waiting => {
                    self.apply_front_event(event);
                }
                read = dedicated::read_dedicated(self.dedicated.as_mut()), if on_dedicated => {
                    if let Some(end) = self.on_dedicated_read(read).await? {
                        return Ok(end);
                    }
                }
                writable = self.stream.writable(), if writing => writable?,
                readable = self.stream.readable(), if can_read => {
                    readable?;
                    if self.read_some()? == Some(0) {
                        return Ok(SessionEnd::ClientClosed);
                    }
                }
                () = self.memory.wait_for_room(), if memory_paused => {}
                () = sleep_until_lazily(self.auth_deadline), if awaiting_auth => {
                    return Ok(SessionEnd::AuthTimeout);
                }
                () = sleep_until_lazily(idle_deadline), if may_idle_out => {
                    return Ok(SessionEnd::Idle);
                }
                _ = self.shutdown.changed(), if !self.shutting_down => {
                    self.shutting_down = true;
                }
            }
        }
    }

    /// Moves the gathered replies to the output and writes what the socket takes now, without waiting; the
    /// loop waits for the socket to take more while it goes on collecting replies (and reading requests, within
    /// the limits). Over `client_limits.max_output_bytes` the client is disconnected. Before AUTH the loop also
    /// watches the auth deadline, so a client that sends requests and never reads the replies cannot stay.
    fn send_replies(&mut self) -> Result<(), SessionEnd> {
        self.observe_before_write(self.write_buffer.len());
        if let Err(over) = self.output.take(&mut self.write_buffer) {
            return Err(self.output_limit_reached(over));
        }
        if !self.output.is_empty() {
            let written = self.output.write_now(&self.stream)?;
            self.charge_reply(written);
        }
        Ok(())
    }

    /// Writes every reply gathered or waiting, however long it takes (the session is about to end or change
    /// mode). Before AUTH the write must finish by the auth deadline.
    async fn flush_output(&mut self) -> Result<(), SessionEnd> {
        self.observe_before_write(self.write_buffer.len());
        if let Err(over) = self.output.take(&mut self.write_buffer) {
            return Err(self.output_limit_reached(over));
        }
        let written = if self.awaiting_auth() {
            let write = self.output.write_all(&mut self.stream);
            match tokio::time::timeout_at(self.auth_deadline, write).await {
                Ok(written) => written?,
                Err(_) => return Err(SessionEnd::AuthTimeout),
            }
        } else {
            self.output.write_all(&mut self.stream).await?
        };
        self.charge_reply(written);
        Ok(())
    }

    /// Reads what the client sent, without waiting: `Some(0)` when it closed, `None` when nothing was there
    /// after all (the socket's readiness was stale).
    ///
    /// A poll with a waker that does nothing, not `try_read_buf`: after a read shorter than the buffer, tokio
    /// takes the socket as drained, so the next turn waits for readiness instead of making a `recvfrom` that
    /// can only say EAGAIN (one wasted system call per batch of requests otherwise). The loop's `readable()`
    /// registers the real waker again before it waits.
    fn read_some(&mut self) -> Result<Option<usize>, SessionEnd> {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let stream = std::pin::Pin::new(&mut self.stream);
        match tokio_util::io::poll_read_buf(stream, &mut context, &mut self.read_buffer) {
            std::task::Poll::Ready(Ok(read)) => {
                self.last_activity = tokio::time::Instant::now();
                Ok(Some(read))
            }
            std::task::Poll::Ready(Err(error)) => Err(error.into()),
            std::task::Poll::Pending => Ok(None),
        }
    }

    /// Whether `timeouts.idle_ms` can close the connection now: it is on, the client is authenticated (or
    /// there are no tenants), no reply is owed and the client is not on a dedicated connection (subscribers,
    /// blocked clients and open transactions never idle out).
    fn may_idle_out(&self, idle_ms: u64) -> bool {
        idle_ms > 0 && !self.awaiting_auth() && self.pending.is_empty() && self.dedicated.is_none()
    }

    fn idle_deadline(&self, idle_ms: u64) -> tokio::time::Instant {
        self.last_activity + std::time::Duration::from_millis(idle_ms)
    }

    /// The proxy shuts down and every request read so far is answered: requests that reached the proxy since
    /// (framed but not handled, or already in the socket) get the shutting-down error; then the session ends.
    async fn refuse_unread_and_close(&mut self) -> Result<SessionEnd, SessionEnd> {
        // Whatever the client sent that arrived by now; nothing more is waited for.
        let _ = self.stream.try_read_buf(&mut self.read_buffer);
        let stopped = AdminError::ShuttingDown.to_reply();
        while let Ok(Some(_request)) = self.decoder.decode(&mut self.read_buffer) {
            self.write_buffer.extend_from_slice(&stopped);
        }
        self.flush_output().await?;
        self.close_after_shutdown().await
    }

    /// Ends the session at shutdown without losing the replies just written: closing a socket that still has
    /// unread input sends a reset, and the client's system may then drop replies it has not read yet. So the
    /// proxy sends its end of stream first and discards what the client still sends, until the client closes
    /// too or [`SHUTDOWN_LINGER`] has passed.
    async fn close_after_shutdown(&mut self) -> Result<SessionEnd, SessionEnd> {
        self.stream.shutdown().await?;
        let linger = tokio::time::sleep(SHUTDOWN_LINGER);
        tokio::pin!(linger);
        let mut discard = [0u8; 16 * 1024];
        loop {
            tokio::select! {
                read = self.stream.read(&mut discard) => {
                    if matches!(read, Ok(0) | Err(_)) {
                        break;
                    }
                }
                () = &mut linger => break,
            }
        }
        Ok(SessionEnd::Shutdown)
    }

    /// Whether the session may frame (and read) more requests: nothing holds it back, the client's requests in
    /// flight are below `max_pending_requests` (counting each request of a batch) and, with its replies not yet
    /// written, below `max_pending_bytes`, and the proxy is not over `max_memory`; on a dedicated connection,
    /// while it takes requests (see `Dedicated::takes_requests`).
    fn accepting_requests(&self, max_pending: usize) -> bool {
        self.closing.is_none()
            && !self.shutting_down
            && self.deferred.is_none()
            && self.go_dedicated.is_none()
            && self.lane_transfer.is_none()
            && self.pending.len() < max_pending
            && self.pending.in_flight_requests() < max_pending
            && !self.over_pending_bytes(self.pending.in_flight_bytes())
            && !self.memory.paused
            && !self.holding_for_try_again()
            && !self.holding_for_redirects()
            && self
                .dedicated
                .as_ref()
                .is_none_or(|dedicated| dedicated.takes_requests(&self.pending))
    }

    /// Whether a reply to one of the client's requests was a cluster redirect (MOVED, ASK, TRYAGAIN) and some
    /// request is still owed: that request runs again only when it reaches the front of the queue, so no new
    /// request is sent before then. A later request could otherwise run first, on a node the slot moved back
    /// to meanwhile. Pipelining resumes once the queue is empty.
    fn holding_for_redirects(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|cluster| cluster.redirects.seen())
            && !self.pending.is_empty()
    }

    /// Whether a cluster command is being sent again after TRYAGAIN: until it is answered, no new request is
    /// sent, so none can run before it (see `cluster::TRY_AGAIN_DELAYS_MS`).
    fn holding_for_try_again(&self) -> bool {
        self.try_again_hold && !self.pending.is_empty()
    }

    /// Whether any request behind the front entry is still owed by a backend: then it may already have run, and
    /// the front entry can no longer be sent again without changing the order the client sees.
    fn later_requests_in_flight(&self) -> bool {
        self.pending.iter().any(Pending::is_waiting)
    }

    /// Moves every reply that is already available, from the front of the queue, into the write buffer.
    fn collect_ready_replies(&mut self) {
        loop {
            let Some(front) = self.pending.front_mut() else {
                return;
            };
            if let Pending::Ready(bytes) = front {
                let bytes = std::mem::take(bytes);
                self.write_buffer.extend_from_slice(&bytes);
                self.pending.pop_front();
                continue;
            }
            if let Pending::Dedicated(owed) = front {
                // Replies that came while earlier entries waited; complete once none is owed.
                if !owed.deliver_early(&mut self.write_buffer) {
                    return;
                }
                self.pending.pop_front();
                continue;
            }
            match try_front_event(front) {
                Some(event) => self.apply_front_event(event),
                None => return,
            }
        }
    }

    /// Applies an event to the front entry: completes it into the write buffer, or (cluster) sends it again.
    fn apply_front_event(&mut self, event: FrontEvent) {
        let Some(front) = self.pending.pop_front() else {
            return;
        };
        self.count_backend_failure(&front, &event);
        match (front, event) {
            (Pending::Waiting(_, Expect::Rewrite(spec)), FrontEvent::Reply(reply)) => {
                let bytes = convert_reply(reply, Expect::Forward);
                let bytes = self.rewrite_reply_bytes(spec, bytes);
                self.write_buffer.extend_from_slice(&bytes);
            }
            (Pending::Waiting(_, expect), FrontEvent::Reply(reply)) => {
                let bytes = convert_reply(reply, expect);
                self.write_buffer.extend_from_slice(&bytes);
            }
            (Pending::Sent(sent), FrontEvent::Reply(reply)) => {
                let bytes = convert_reply(reply, Expect::Batch(sent.count));
                self.note_batch_reply_sizes(&sent, &bytes);
                self.write_buffer.extend_from_slice(&bytes);
            }
            (Pending::Routed(routed), FrontEvent::Reply(reply)) => {
                match self.cluster_reply(routed, reply) {
                    Ok(bytes) => self.write_buffer.extend_from_slice(&bytes),
                    Err(again) => self.pending.push_front(again),
                }
            }
            (Pending::Transaction(exec), FrontEvent::Reply(reply)) => {
                match self.cluster_exec_reply(*exec, reply) {
                    Ok(bytes) => self.write_buffer.extend_from_slice(&bytes),
                    Err(again) => self.pending.push_front(again),
                }
            }
            (Pending::Merge(merge), FrontEvent::Part(index, reply)) => {
                match self.cluster_part_reply(merge, index, reply) {
                    Ok(bytes) => self.write_buffer.extend_from_slice(&bytes),
                    Err(again) => self.pending.push_front(again),
                }
            }
            (Pending::Pipeline(pipeline), FrontEvent::Part(index, reply)) => {
                if let Err(again) = self.cluster_pipeline_reply(pipeline, index, reply) {
                    self.pending.push_front(again);
                }
            }
            (other, _) => self.pending.push_front(other),
        }
    }

    /// Frames and handles buffered requests until the buffer runs dry or something asks to pause.
    /// Returns whether it handled anything.
    fn decode_buffered(&mut self, max_pending: usize) -> bool {
        let mut handled = false;
        while self.accepting_requests(max_pending) {
            match self.decoder.decode(&mut self.read_buffer) {
                Ok(Some(request)) => {
                    let counted = self.count_request(&request);
                    self.pending
                        .framed(request.raw().len(), self.stats.last_command());
                    if !self.screen_for_reply_mode(&request) {
                        self.looked_up = counted;
                        self.handle(request);
                    }
                    handled = true;
                }
                Ok(None) => {
                    // A big request whose head arrived is streamed rather than buffered (see `big`).
                    handled |= self.begin_streamed_request();
                    break;
                }
                Err(error) => {
                    // Like redis-server: reply with the protocol error, then close the connection.
                    self.flush_batch();
                    self.pending.push_back(Pending::Ready(error.to_reply()));
                    self.closing = Some(SessionEnd::Protocol(error.to_string()));
                    handled = true;
                    break;
                }
            }
        }
        self.flush_batch();
        self.pending.forget_unattributed();
        handled
    }

    /// Standalone pools: the shared connection for the session's (db, protocol), looked up once.
    fn standalone_route(&mut self) -> Option<&SharedConnection> {
        let PoolHandle::Standalone(pool) = &self.pool else {
            return None;
        };
        Some(self.route.get_or_insert_with(|| {
            pool.shared_connection(self.worker, self.id, self.db, self.resp3)
        }))
    }

    /// Standalone pools: the node's address (for the slow log).
    fn standalone_address(&self) -> Arc<str> {
        match &self.pool {
            PoolHandle::Standalone(pool) => Arc::clone(pool.address()),
            _ => Arc::from(""),
        }
    }

    /// Sends the batched requests, if any, as one pending entry.
    fn flush_batch(&mut self) {
        if self.cluster.is_some() {
            self.flush_cluster_batch();
            return;
        }
        if self.batch_count == 0 {
            return;
        }
        // Only standalone pools batch, so there is always a route here.
        let requests = self.batch.split().freeze();
        let count = std::mem::take(&mut self.batch_count);
        let patience = std::mem::take(&mut self.batch_patience);
        let node = self.standalone_address();
        let Some(route) = self.standalone_route() else {
            return;
        };
        let route = route.with_patience(patience);
        let entry = if requests.len() <= MAX_BATCH_BYTES {
            // Small enough to keep until answered: a big reply is then traced to its key (see `big`).
            let receiver = route.send_many(requests.clone(), count);
            Pending::Sent(Box::new(Sent {
                receiver,
                requests: requests.clone(),
                count,
            }))
        } else if count == 1 {
            Pending::Waiting(route.send(requests.clone()), Expect::Forward)
        } else {
            Pending::Waiting(
                route.send_many(requests.clone(), count),
                Expect::Batch(count),
            )
        };
        self.pending.push_sent(entry, &requests, &node);
    }

    /// Looks a request up in the command table (see [`commands::lookup`]), remembering the last plain command.
    fn lookup(&mut self, request: &Request) -> Result<&'static CommandSpec, CommandError> {
        let name = request.name();
        if let Some(last) = &self.last_command {
            if name.len() == last.len
                && name.eq_ignore_ascii_case(&last.name[..last.len])
                && last.spec.arity_accepts(request.argc())
            {
                return Ok(last.spec);
            }
        }
        let spec = commands::lookup(request)?;
        // Subcommands depend on the second argument too; only plain commands are remembered.
        if !spec.name.contains('|') && name.len() <= LAST_COMMAND_NAME {
            let mut stored = [0u8; LAST_COMMAND_NAME];
            stored[..name.len()].copy_from_slice(name);
            self.last_command = Some(LastCommand {
                name: stored,
                len: name.len(),
                spec,
            });
        }
        Ok(spec)
    }

    /// Holds a request that was policed (and rewritten) already until every earlier reply arrived.
    fn defer_policed(&mut self, request: Request) {
        self.deferred = Some(request);
        self.deferred_is_policed = true;
    }

    /// Routes one request in shared mode.
    fn handle(&mut self, request: Request) {
        // Taken first, so that no later call of `handle` (a deferred request) finds it.
        let mut looked_up = self.looked_up.take();
        if let Some(refusal) = self.refuse_after_reload(&request) {
            self.pending.push_back(Pending::Ready(refusal));
            return;
        }
        // Kafka commands, Kafka pools and the Kafka admin commands are served by `kafka.rs` (not on a dedicated
        // connection, where the command table refuses them as unknown, as before: they cannot be queued).
        let request = if self.dedicated.is_none() && self.may_concern_kafka(&request) {
            looked_up = None;
            match self.route_kafka(request) {
                Some(request) => request,
                None => return,
            }
        } else {
            request
        };
        if let Some(name) = request.arg(0) {
            if self.is_proxy_command(name) {
                self.flush_batch();
                // USE moves the connection to another pool: earlier replies first.
                if !self.pending.is_empty() {
                    self.deferred = Some(request);
                    return;
                }
                if is_stats_command(&request) {
                    let entry = self.stats_command(&request);
                    self.pending.push_back(entry);
                    return;
                }
                if let Some(reply) = self.proxy_command(&request) {
                    self.pending.push_back(Pending::Ready(reply));
                }
                return;
            }
        }
        let spec = match looked_up.map_or_else(|| self.lookup(&request), Ok) {
            Ok(spec) => spec,
            Err(error) => {
                self.flush_batch();
                self.fail_transaction();
                self.stats.error(crate::stats::ErrorKind::Refused, 1);
                self.pending
                    .push_back(Pending::Ready(Bytes::from(error.to_reply())));
                return;
            }
        };
        if spec.name.starts_with("slowlog|") {
            // The proxy's own slow log, not the backend's (a tenant sees only its own entries). Inside MULTI on
            // a dedicated connection it cannot be queued (its reply would belong in EXEC's array).
            self.flush_batch();
            let reply = if self.in_dedicated_transaction() {
                self.fail_transaction();
                transaction::TransactionError::not_queueable(spec).to_reply()
            } else {
                self.slowlog_command(spec.name, &request)
            };
            self.pending.push_back(Pending::Ready(reply));
            return;
        }
        // A request over the tenant's traffic limit waits in shared mode; on a dedicated connection (a
        // transaction, a blocking command, a subscription) it is refused at once.
        let policed = if std::mem::take(&mut self.deferred_is_policed) {
            Verdict::Proceed(request)
        } else {
            let may_wait = self.dedicated.is_none();
            self.police(spec, request, may_wait)
        };
        let request = match policed {
            Verdict::Proceed(request) => request,
            Verdict::Refuse(reply) => {
                self.flush_batch();
                self.fail_transaction();
                self.pending.push_back(Pending::Ready(reply));
                return;
            }
            Verdict::Later(request, at) => {
                self.flush_batch();
                self.deferred = Some(request);
                self.resume_at = Some(at);
                return;
            }
        };
        if self.dedicated.is_some() {
            self.send_dedicated(spec, request);
            return;
        }
        let Some(request) = self.route_big_request(spec, request) else {
            return;
        };
        let plain = spec.proxy == ProxyHandling::Forward && self.reply_rewrite(spec).is_none();
        if plain
            && self
                .cluster
                .as_ref()
                .is_some_and(|cluster| !cluster.in_transaction())
        {
            self.cluster_forward_or_batch(spec, request);
            return;
        }
        if plain && self.cluster.is_none() {
            self.batch.extend_from_slice(request.raw());
            self.batch_count += 1;
            self.batch_patience = self.batch_patience.max(Patience::for_command(spec));
            if self.batch_count >= MAX_BATCH_REQUESTS || self.batch.len() >= MAX_BATCH_BYTES {
                self.flush_batch();
            }
            return;
        }
        // Anything else is queued behind the batch, so the batch goes first.
        self.flush_batch();
        if let Some(cluster) = &mut self.cluster {
            if cluster.in_transaction() {
                if !matches!(spec.name, "quit" | "reset") {
                    let reply = self.queue_in_transaction(spec, request);
                    if let Some(reply) = reply {
                        self.pending.push_back(reply);
                    }
                    return;
                }
                // QUIT and RESET run at once inside MULTI, as in Redis; the transaction ends with them.
                cluster.end_transaction();
            }
        }
        if let Some(reply) = transaction_command_without_state(spec) {
            self.pending.push_back(Pending::Ready(reply));
            return;
        }
        let needs_barrier = self.changes_connection(spec, &request);
        if needs_barrier && !self.pending.is_empty() {
            self.defer_policed(request);
            return;
        }
        match spec.proxy {
            ProxyHandling::Forward => self.forward(spec, request),
            ProxyHandling::Dedicated | ProxyHandling::DedicatedWhenBlocking => {
                if !commands::needs_dedicated_connection(spec, &request) {
                    self.forward(spec, request);
                } else if self.cluster.is_some() && spec.name == "multi" {
                    self.begin_cluster_transaction();
                } else {
                    self.go_dedicated = Some(request);
                }
            }
            ProxyHandling::Local => self.answer_locally(spec, request),
            _ => self
                .pending
                .push_back(Pending::Ready(unsupported(&request))),
        }
    }

    /// `USE` and `RKPROXY`, the proxy's own commands, answered here. On a dedicated connection USE is not one
    /// (the connection belongs to the current pool), nor is RKPROXY inside MULTI (it cannot be queued): the
    /// command table then refuses them as unknown commands.
    fn is_proxy_command(&self, name: &[u8]) -> bool {
        if name.eq_ignore_ascii_case(b"USE") {
            return self.dedicated.is_none();
        }
        name.eq_ignore_ascii_case(b"RKPROXY") && !self.in_dedicated_transaction()
    }

    /// Sends a request down the pool's shared connections.
    fn forward(&mut self, spec: &'static CommandSpec, request: Request) {
        if self.cluster.is_some() {
            self.cluster_forward(spec, request);
            return;
        }
        let node = self.standalone_address();
        let Some(route) = self.standalone_route() else {
            return;
        };
        let receiver = route
            .with_patience(Patience::for_command(spec))
            .send(request.raw().clone());
        let expect = match self.reply_rewrite(spec) {
            Some(spec) => Expect::Rewrite(spec),
            None => Expect::Forward,
        };
        self.pending
            .push_sent(Pending::Waiting(receiver, expect), request.raw(), &node);
    }

    /// Commands after which the client is served by another backend connection.
    fn changes_connection(&self, spec: &CommandSpec, request: &Request) -> bool {
        match spec.proxy {
            // CLIENT REPLY OFF/SKIP starts dropping replies once the earlier ones are written.
            ProxyHandling::Local => matches!(
                spec.name,
                "select" | "hello" | "reset" | "auth" | "client|reply"
            ),
            _ => {
                commands::needs_dedicated_connection(spec, request)
                    // A cluster MULTI is queued in the session and needs no barrier.
                    && !(self.cluster.is_some() && spec.name == "multi")
            }
        }
    }
}

/// Completes `limit` after the proxy began to shut down (never, if it does not).
/// `tokio::time::sleep_until`, made only when first polled: `select!` builds every branch's future on every
/// turn, even a disabled one, and a timer costs a runtime handle clone and drop each time.
async fn sleep_until_lazily(deadline: tokio::time::Instant) {
    tokio::time::sleep_until(deadline).await;
}

async fn shutdown_deadline(
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    limit: std::time::Duration,
) {
    // The worker's signal turns true, or its sender is dropped as the accept loop ends: both mean shutdown.
    let _ = shutdown.wait_for(|&shutting_down| shutting_down).await;
    tokio::time::sleep(limit).await;
}

fn convert_reply(reply: BackendReply, expect: Expect) -> Bytes {
    match (reply, expect) {
        (Ok(frame), Expect::Forward | Expect::Batch(_) | Expect::Rewrite(_)) => frame,
        (Err(error), Expect::Batch(count)) => {
            let one = error.to_reply();
            let mut all = BytesMut::with_capacity(one.len() * count);
            for _ in 0..count {
                all.extend_from_slice(&one);
            }
            all.freeze()
        }
        (Ok(frame), Expect::SelectCheck) if frame.first() == Some(&b'-') => frame,
        (Ok(_), Expect::SelectCheck) => reply::ok(),
        (Err(error), Expect::SelectCheck) => match error.refused_select() {
            Some(refusal) => reply::error(refusal),
            None => error.to_reply(),
        },
        (Err(error), _) => error.to_reply(),
    }
}

/// On shared connections the client has no transaction and no WATCHed keys on the server (both move it to a
/// dedicated connection, or, for a cluster MULTI, into the session), so EXEC, DISCARD and UNWATCH get Redis's
/// replies for that state at once.
fn transaction_command_without_state(spec: &CommandSpec) -> Option<Bytes> {
    match spec.name {
        "exec" => Some(transaction::TransactionError::ExecWithoutMulti.to_reply()),
        "discard" => Some(transaction::TransactionError::DiscardWithoutMulti.to_reply()),
        "unwatch" => Some(reply::ok()),
        _ => None,
    }
}

/// Whether `request` is `RKPROXY STATS | BIGKEYS | HOTKEYS ...` (answered by `observe`).
fn is_stats_command(request: &Request) -> bool {
    request.name().eq_ignore_ascii_case(b"RKPROXY")
        && request.arg(1).is_some_and(|sub| {
            [&b"STATS"[..], b"BIGKEYS", b"HOTKEYS"]
                .iter()
                .any(|name| sub.eq_ignore_ascii_case(name))
        })
}

/// The reply for a command the table knows but rkproxy does not serve.
fn unsupported(request: &Request) -> Bytes {
    Bytes::from(CommandError::unsupported(request).to_reply())
}

fn parse_u32(bytes: &[u8]) -> Option<u32> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}
