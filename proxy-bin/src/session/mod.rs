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
//!
//! The parts: this file holds the [`Session`] (its state), its creation and the session loop (`run_loop`);
//! [`routing`] what a request on shared connections does (framing, the command table, policing, batching,
//! forwarding, barriers), [`replies`] the front of the reply queue (ready replies into the write buffer, in
//! order), [`client_io`] the client socket (writing replies, reading, backpressure, idle timeout, closing at
//! shutdown).

mod big;
mod certificate;
mod client_io;
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
mod replies;
mod routing;
mod tenancy;
mod transaction;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cluster_router::commands::{CommandError, CommandSpec};
use resp_codec::{Request, RequestDecoder};

use crate::backend::{Patience, SharedConnection};
use crate::piece_queue::PieceQueue;
use crate::pools::PoolHandle;
use crate::state::ProxyState;
use crate::tls::ClientStream;

pub use self::observe::{kafka_lag, probe_nodes, proxy_facts};

use self::cluster::ClusterSession;
use self::pending::{next_front_event, Pending};

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

/// A client's protocol state and its link to a pool.
pub struct Session {
    id: u64,
    /// The worker thread (event loop) this session runs on; pools keep backend connections per worker.
    worker: usize,
    state: Arc<ProxyState>,
    stream: ClientStream,
    read_buffer: BytesMut,
    /// Replies gathered in this turn of the loop (filtered by CLIENT REPLY), then moved to `output`: big
    /// replies as pieces, never copied (and, frozen, what was gathered before each), then the copied bytes.
    gathered: PieceQueue,
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
    /// The client's address, read once (the AUTH failure throttle, log lines, slow-log entries, CLIENT
    /// INFO): asking the socket costs a system call each time.
    peer: Option<std::net::SocketAddr>,
    /// When the client last sent something (for `timeouts.idle_ms`).
    last_activity: tokio::time::Instant,
    /// A deferred request waits for the tenant's traffic budget until then.
    resume_at: Option<tokio::time::Instant>,
    /// A cluster command answered TRYAGAIN is being sent again: read no new request until it is answered.
    try_again_hold: bool,
    /// What CLIENT INFO and CLIENT REPLY need: start time, library name and version, reply mode.
    client: introspection::ClientState,
    /// Turns true when the proxy shuts down.
    shutdown: crate::shutdown::ShutdownWatch,
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

/// A batch is sent once it holds this many requests or bytes, even if more are buffered. The count also bounds
/// a batch's answer, which the shared connection joins into one buffer (copying where replies did not arrive
/// one after another): 512 GETs of 100 KB made 50 MB buffers, each fresh pages (a slow-reader load took 384,000
/// page faults); 128 keeps them within what the allocator reuses and costs nothing measurable at `-P 256`.
const MAX_BATCH_REQUESTS: usize = 128;
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// A session's read buffer: what one `recv` may take. Before a read, a buffer with less room than
/// [`MIN_READ_ROOM`] gets this much again (see `Session::read_some`).
const READ_BUFFER_BYTES: usize = 16 * 1024;
const MIN_READ_ROOM: usize = 4 * 1024;
/// A request this big is sent as a batch of its own (on a cluster pool, routed on its own), straight from the
/// read buffer it arrived in, never copied into a batch: copying 16 KB costs more than a job of its own (SET of
/// 16 KB values at `-P 1` copied each request three times on its way to Redis).
pub(super) const MIN_UNBATCHED_REQUEST: usize = 4 * 1024;
/// A reply this big is gathered as a piece of its own, never copied into the write buffer (the output writes
/// the pieces with one vectored write).
const MIN_UNCOPIED_REPLY: usize = 4 * 1024;

/// A looked-up command name (lowercase) and its table entry.
struct LastCommand {
    name: [u8; LAST_COMMAND_NAME],
    len: usize,
    spec: &'static CommandSpec,
}

const LAST_COMMAND_NAME: usize = 16;

impl Session {
    /// The client's address as text (empty if the socket could not say).
    fn peer_text(&self) -> String {
        self.peer.map(|addr| addr.to_string()).unwrap_or_default()
    }

    /// A session for client `id`, accepted by the listener of worker `worker` (the thread it runs on).
    /// `shutdown` is that worker's shutdown signal (begun, or its sender gone, once the proxy shuts down).
    pub fn new(
        id: u64,
        worker: usize,
        state: Arc<ProxyState>,
        stream: ClientStream,
        shutdown: crate::shutdown::ShutdownWatch,
    ) -> Session {
        let limits = state.client_codec_limits();
        let pool = state.default_pool().clone();
        let peer = stream.peer_addr().ok();
        let shutting_down = shutdown.has_begun();
        let stats = observe::session_stats(&state, worker, id, &stream);
        Session {
            id,
            worker,
            stream,
            read_buffer: BytesMut::with_capacity(READ_BUFFER_BYTES),
            gathered: PieceQueue::with_capacity(16 * 1024),
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
            batch: BytesMut::new(),
            batch_count: 0,
            batch_patience: Patience::Normal,
            tenant: None,
            auth_deadline: tenancy::auth_deadline(state.config().timeouts.auth_ms),
            unauthenticated: None,
            auth_failures: 0,
            reply_hold: None,
            peer,
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
        // Biased: polled on every wake-up of the session, and the random start of an unbiased `select!` costs
        // a thread-local generator each time; the deadline only matters once the session stops being served.
        tokio::select! {
            biased;
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
        // Long on purpose (about 125 lines): one turn reads top to bottom, its steps `continue` or `return` the
        // loop and share `max_pending` and `idle_ms`, and the `select!` needs every branch in one place.
        let mut max_pending = self.state.config().client_limits.max_pending_requests;
        let mut idle_ms = self.state.config().timeouts.idle_ms;
        self.last_activity = tokio::time::Instant::now();
        loop {
            // The replies' clock of a pass must not outlive a wait (see `PendingQueue::take_replies_clock`).
            if let Some(until) = self.reply_hold.take() {
                self.hold_replies(until).await?;
                self.pending.take_replies_clock();
            }
            if self.dedicated.is_some() {
                self.write_dedicated().await?;
                self.pending.take_replies_clock();
            }
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
                () = self.shutdown.begun(), if !self.shutting_down => {
                    self.shutting_down = true;
                }
            }
        }
    }
}

/// `tokio::time::sleep_until`, made only when first polled: `select!` builds every branch's future on every
/// turn, even a disabled one, and a timer costs a runtime handle clone and drop each time.
async fn sleep_until_lazily(deadline: tokio::time::Instant) {
    tokio::time::sleep_until(deadline).await;
}

/// Completes `limit` after the proxy began to shut down (never, if it does not).
async fn shutdown_deadline(
    mut shutdown: crate::shutdown::ShutdownWatch,
    limit: std::time::Duration,
) {
    shutdown.begun().await;
    tokio::time::sleep(limit).await;
}

/// The reply for a command the table knows but rkproxy does not serve.
fn unsupported(request: &Request) -> Bytes {
    Bytes::from(CommandError::unsupported(request).to_reply())
}

fn parse_u32(bytes: &[u8]) -> Option<u32> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}
