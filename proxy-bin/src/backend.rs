//! Backend connections: connecting with a handshake, and shared, multiplexed connections.
//!
//! A [`SharedConnection`] is a handle to one TCP connection to one redis-server, used by many clients at once.
//! A task owns the socket. It takes jobs (requests) from an unbounded channel, yields once to the event loop so
//! that clients made ready by the same round of I/O can add theirs, gathers the waiting requests into one write
//! buffer (so many clients' commands reach Redis in one read there), and answers each job's oneshot in the order
//! the replies arrive, which is the order Redis received the requests. Reading replies and writing requests go on
//! at the same time: a big request being written never stops replies being read, and the reverse.
//!
//! # Why a reply can never reach the wrong client
//!
//! Redis answers the commands of one connection in the order it read them, one reply per command. The task
//! keeps a FIFO [`ReplyQueue`] with one entry per job, in the order the jobs' bytes go into the write buffer,
//! and each entry records exactly how many replies it is owed ([`Expected`], counted in a `NonZeroUsize`: no
//! counter that can saturate or wrap, and no job that is owed nothing). Every reply read is consumed by the
//! oldest entry, and an entry's waiter is answered only with its own replies, once the last one arrived. A
//! reply that arrives when no entry is owed one means the connection is out of step: it is handed to no one;
//! the connection is dropped and every waiter gets [`BackendError::Unavailable`]. RESP3 push frames are not
//! replies and are never paired (shared connections never enable anything that sends them).
//!
//! # Deadlines: a backend that makes no progress
//!
//! A connect (with its AUTH/SELECT handshake) has `connect_timeout`. On a live connection the deadline is for
//! a backend that makes **no progress**: while replies are owed, the connection breaks only when, for
//! `command_timeout`, no reply bytes arrived and no request bytes left. So one client's long pipeline of big
//! replies, or a big request, delays the others but fails no one. A request that may keep the server busy
//! without a byte of progress ([`Patience::Slow`]: scripts and functions) gets `slow_command_timeout` instead
//! while it is owed a reply (Redis runs every command of a pipeline it has read before writing their replies,
//! so the replies to requests sent before the script wait for it too), and so do the other shared connections
//! of this process to the same server, which cannot be answered while it runs. Every request that cannot be answered gets
//! [`BackendError::Unavailable`] fast, and the task reconnects by itself when the next request arrives. Replies
//! already received are delivered before a broken connection is given up.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use cluster_router::commands::{self, CommandClass, CommandSpec};
use cluster_router::redirect::{classify_reply, ClusterReplyKind};
use resp_codec::{encode_command, Limits, ReplyDecoder, RequestDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tracing::{debug, warn};

pub use crate::tls::{BackendReader, BackendStream, BackendWriter};
use crate::tls::{BackendTls, ReadNow, WriteNow};

/// Most jobs one shared connection has in flight before it stops taking more (the rest wait in the channel).
const MAX_IN_FLIGHT: usize = 16 * 1024;
/// No more jobs are taken while this many request bytes wait to be written.
const MAX_WRITE_BATCH: usize = 256 * 1024;
/// A write buffer that grew past this (for a big request) is given back once it is empty.
const MAX_IDLE_WRITE_CAPACITY: usize = 4 * 1024 * 1024;
/// A request this big is written from where it is, never copied into the write buffer: a copy of many MB holds
/// up the event loop (every client on it) and doubles the memory the request costs.
const MIN_UNCOPIED_REQUEST: usize = MAX_WRITE_BATCH;
/// After a failed connect, requests fail at once for this long instead of each trying to connect again.
const RECONNECT_HOLD_OFF: Duration = Duration::from_millis(100);

/// How to reach and log in to one backend node.
#[derive(Clone)]
pub struct Endpoint {
    /// `host:port`.
    pub address: Arc<str>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Database selected after connecting (standalone pools).
    pub db: u32,
    /// Speak RESP3 (`HELLO 3`) on this connection.
    pub resp3: bool,
    /// Send `READONLY` after connecting, so a cluster replica serves reads.
    pub readonly: bool,
    pub connect_timeout: Duration,
    /// How long a shared connection that owes replies may go without progress (`timeouts.command_ms`).
    pub command_timeout: Duration,
    /// The same while a [`Patience::Slow`] request is owed a reply (`timeouts.slow_command_ms`).
    pub slow_command_timeout: Duration,
    /// Pools with `tls = true`: how the connection is encrypted.
    pub tls: Option<Arc<BackendTls>>,
}

/// No password in `Debug`.
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("resp3", &self.resp3)
            .field("readonly", &self.readonly)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("slow_command_timeout", &self.slow_command_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

impl Endpoint {
    /// A node of a pool: its credentials, timeouts and TLS settings (whose files are read here), db 0, RESP2,
    /// no READONLY.
    pub fn for_pool(
        address: &str,
        config: &crate::config::PoolConfig,
        timeouts: &crate::config::Timeouts,
    ) -> Result<Endpoint, crate::tls::TlsError> {
        let tls = BackendTls::for_pool(config)?;
        Ok(Endpoint {
            address: Arc::from(address),
            username: config.username.clone(),
            password: config.password.clone(),
            db: 0,
            resp3: false,
            readonly: false,
            connect_timeout: Duration::from_millis(timeouts.connect_ms),
            command_timeout: Duration::from_millis(timeouts.command_ms),
            slow_command_timeout: Duration::from_millis(timeouts.slow_command_ms),
            tls,
        })
    }
}

/// Why a backend could not answer. The reply names the backend and the reason; how the failure is counted
/// ([`BackendError::kind`]) and answered is decided by the reason's variant, never by its text.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("backend {address} unavailable: {reason}")]
    Unavailable {
        address: Arc<str>,
        reason: BackendFailure,
    },
}

/// The reason of a [`BackendError`], typed. Shared by every waiter of a broken connection, hence the `Arc`s
/// (an `io::Error` cannot be cloned).
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendFailure {
    /// No connection could be opened, or its handshake failed.
    #[error(transparent)]
    Connect(Arc<ConnectError>),
    /// A connection broke, or made no progress in time.
    #[error(transparent)]
    Lost(Arc<Broken>),
    /// The proxy's own mistake: requests sent that owe no reply (never sent, see `owed_nothing`).
    #[error("internal error: requests sent with no reply expected")]
    NothingOwed,
}

/// What kind of failure a [`BackendError`] is, for the stats and for the replies that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The backend made no progress within a deadline (connect, reply, write).
    Timeout,
    /// No connection could be opened (refused, unreachable, TLS failed).
    Unreachable,
    /// The backend answered the handshake (AUTH, HELLO, READONLY, SELECT) with an error.
    RefusedHandshake,
    /// A live connection broke: closed, an I/O error, or replies out of step.
    ConnectionLost,
    /// The proxy's own mistake.
    Internal,
}

impl BackendError {
    /// Connecting to `address` failed.
    pub fn connect(address: &Arc<str>, reason: ConnectError) -> Self {
        Self::new(address, BackendFailure::Connect(Arc::new(reason)))
    }

    /// The connection to `address` broke.
    pub fn lost(address: &Arc<str>, reason: Broken) -> Self {
        Self::new(address, BackendFailure::Lost(Arc::new(reason)))
    }

    fn new(address: &Arc<str>, reason: BackendFailure) -> Self {
        BackendError::Unavailable {
            address: Arc::clone(address),
            reason,
        }
    }

    /// The backend that failed.
    pub fn address(&self) -> &Arc<str> {
        let BackendError::Unavailable { address, .. } = self;
        address
    }

    /// What kind of failure this is, from the reason's variant.
    pub fn kind(&self) -> FailureKind {
        let BackendError::Unavailable { reason, .. } = self;
        match reason {
            BackendFailure::Connect(error) => error.kind(),
            BackendFailure::Lost(broken) => broken.kind(),
            BackendFailure::NothingOwed => FailureKind::Internal,
        }
    }

    /// Redis's own error text when the handshake's SELECT was refused (the db does not exist): a client's
    /// SELECT gets it as Redis would have answered it.
    pub fn refused_select(&self) -> Option<&str> {
        match self {
            BackendError::Unavailable {
                reason: BackendFailure::Connect(error),
                ..
            } => match &**error {
                ConnectError::HandshakeRefused {
                    step: HandshakeStep::Select,
                    reply,
                } => Some(reply),
                _ => None,
            },
            _ => None,
        }
    }

    /// The error as a RESP error reply line.
    pub fn to_reply(&self) -> Bytes {
        Bytes::from(format!("-ERR {}\r\n", one_line(&self.to_string())))
    }
}

/// Keeps an error text on one line, as RESP requires.
pub fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// A backend's answer to one request: the raw reply frame, or why there is none.
pub type BackendReply = Result<Bytes, BackendError>;

/// Why a connection (shared, dedicated or a big-request lane) was given up. The texts are the `<reason>` of
/// [`BackendError::Unavailable`].
#[derive(Debug, thiserror::Error)]
pub enum Broken {
    #[error("connection closed by the backend")]
    Closed,
    /// A lane connection the server closed while a request was written.
    #[error("connection closed")]
    ClosedOnWrite,
    /// A lane connection the server closed before its reply was whole.
    #[error("connection closed while replying")]
    ClosedWhileReplying,
    #[error("read failed: {0}")]
    Read(std::io::Error),
    #[error("write failed: {0}")]
    Write(std::io::Error),
    #[error("bad reply from backend: {0}")]
    BadReply(resp_codec::ProtocolError),
    /// A lane reply that breaks the protocol (the text is the scanner's).
    #[error(transparent)]
    BadLaneReply(resp_codec::ProtocolError),
    #[error("reply without a request (protocol out of step)")]
    ReplyWithoutRequest,
    /// A lane connection that sent more than the reply asked for.
    #[error("bytes after the reply")]
    BytesAfterReply,
    /// A lane lease whose socket is gone (never expected: the socket is opened before it is used).
    #[error("no lane connection")]
    NoLaneConnection,
    #[error("no reply within {} ms", .0.as_millis())]
    NoReply(Duration),
    #[error("write blocked for {} ms", .0.as_millis())]
    WriteBlocked(Duration),
    /// A lane connection that neither took nor sent a byte within `slow_command_ms`.
    #[error("no progress for {} ms", .0.as_millis())]
    NoProgress(Duration),
}

impl Broken {
    /// A deadline without progress is a timeout; anything else broke the connection.
    pub fn kind(&self) -> FailureKind {
        match self {
            Broken::NoReply(_) | Broken::WriteBlocked(_) | Broken::NoProgress(_) => {
                FailureKind::Timeout
            }
            Broken::NoLaneConnection => FailureKind::Internal,
            _ => FailureKind::ConnectionLost,
        }
    }
}

// === reply bookkeeping ===

/// How many replies a job is owed, and which of them its waiter gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// One request, one reply.
    One,
    /// A pipelined batch: this many replies, handed back concatenated in order.
    Concatenated(NonZeroUsize),
    /// `ASKING` and one command: the `+OK` of `ASKING` is dropped, the command's reply handed back.
    AskingThenOne,
}

impl Expected {
    /// Replies owed.
    fn replies(self) -> NonZeroUsize {
        match self {
            Expected::One => NonZeroUsize::MIN,
            Expected::Concatenated(count) => count,
            Expected::AskingThenOne => NonZeroUsize::MIN.saturating_add(1),
        }
    }

    /// Whether every reply is handed back, or only the last.
    fn keeps_all(self) -> bool {
        matches!(self, Expected::One | Expected::Concatenated(_))
    }
}

/// One job on the wire: who waits for it, and how many replies it is still owed.
#[derive(Debug)]
struct Owed<W> {
    waiter: W,
    remaining: NonZeroUsize,
    keeps_all: bool,
    /// The replies received so far, when every reply is handed back.
    collected: BytesMut,
    patience: Patience,
    /// Set when one of this job's replies is a cluster redirect (see [`SharedConnection::watching_redirects`]).
    redirects: Option<RedirectWatch>,
}

/// The replies a connection is owed, oldest first, and who gets each (see the module docs for the invariant).
/// Pure bookkeeping, without I/O, so that it can be tested on its own; `W` is the waiter (a oneshot sender).
#[derive(Debug)]
struct ReplyQueue<W> {
    owed: VecDeque<Owed<W>>,
    /// How many entries of `owed` are [`Patience::Slow`].
    slow_owed: usize,
}

impl<W> Default for ReplyQueue<W> {
    fn default() -> Self {
        ReplyQueue {
            owed: VecDeque::new(),
            slow_owed: 0,
        }
    }
}

impl<W> ReplyQueue<W> {
    /// Records a job whose bytes were just queued for writing, behind every job queued before.
    #[cfg(test)]
    fn push(&mut self, waiter: W, expected: Expected, patience: Patience) {
        self.push_watched(waiter, expected, patience, None);
    }

    /// [`ReplyQueue::push`], with the flag to raise if a reply to this job is a cluster redirect.
    fn push_watched(
        &mut self,
        waiter: W,
        expected: Expected,
        patience: Patience,
        redirects: Option<RedirectWatch>,
    ) {
        if patience == Patience::Slow {
            self.slow_owed += 1;
        }
        self.owed.push_back(Owed {
            waiter,
            remaining: expected.replies(),
            keeps_all: expected.keeps_all(),
            collected: BytesMut::new(),
            patience,
            redirects,
        });
    }

    /// Gives one reply frame to the oldest job. Returns that job's waiter and its whole answer when this was
    /// the job's last reply; `None` while it is owed more. An error when no job is owed a reply.
    fn pair(&mut self, frame: Bytes) -> Result<Option<(W, Bytes)>, Broken> {
        let front = self.owed.front_mut().ok_or(Broken::ReplyWithoutRequest)?;
        if let Some(watch) = &front.redirects {
            watch.note(&frame);
        }
        if let Some(left) = NonZeroUsize::new(front.remaining.get() - 1) {
            front.remaining = left;
            if front.keeps_all {
                // Room for the rest if the replies are alike (a cluster split's share), capped: one allocation.
                front
                    .collected
                    .reserve(frame.len().saturating_mul(left.get() + 1).min(64 * 1024));
                front.collected.extend_from_slice(&frame);
            }
            return Ok(None);
        }
        let Some(done) = self.owed.pop_front() else {
            return Err(Broken::ReplyWithoutRequest);
        };
        if done.patience == Patience::Slow {
            self.slow_owed -= 1;
        }
        let answer = if done.collected.is_empty() {
            frame
        } else {
            let mut all = done.collected;
            all.extend_from_slice(&frame);
            all.freeze()
        };
        Ok(Some((done.waiter, answer)))
    }

    /// Slow while any job owed a reply is slow. Not only the oldest: Redis runs every command of a pipeline
    /// it has read before it writes their replies, so the replies to requests sent before a script wait for
    /// the script too.
    fn patience(&self) -> Patience {
        if self.slow_owed > 0 {
            Patience::Slow
        } else {
            Patience::Normal
        }
    }

    fn is_empty(&self) -> bool {
        self.owed.is_empty()
    }

    fn len(&self) -> usize {
        self.owed.len()
    }

    /// Every waiter still owed a reply, oldest first (to fail them).
    fn into_waiters(self) -> impl Iterator<Item = W> {
        self.owed.into_iter().map(|owed| owed.waiter)
    }
}

// === patience ===

/// How long the backend may go without progress while a request is owed its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Patience {
    /// `timeouts.command_ms`.
    #[default]
    Normal,
    /// `timeouts.slow_command_ms`: the command may legitimately keep the server busy, without a byte of
    /// progress, for longer (Lua scripts and functions: EVAL, EVALSHA, FCALL, ... which Redis runs to the end
    /// before it answers anyone).
    Slow,
}

impl Patience {
    /// The patience a command needs: slow for the command table's scripting class.
    pub fn for_command(spec: &CommandSpec) -> Patience {
        if spec.class == CommandClass::Scripting {
            Patience::Slow
        } else {
            Patience::Normal
        }
    }

    /// The patience for a request given as raw bytes (a redirected request, where only the bytes are kept).
    /// Normal for anything that is not one well-formed, known command, and for requests over 1 MiB, which
    /// are not copied to be looked at (a script is rarely that big; a huge SET often is).
    pub fn for_request_bytes(request: &[u8]) -> Patience {
        const MAX_LOOKED_AT: usize = 1024 * 1024;
        if request.len() > MAX_LOOKED_AT {
            return Patience::Normal;
        }
        let mut buffer = BytesMut::from(request);
        match RequestDecoder::default().decode(&mut buffer) {
            Ok(Some(request)) => {
                commands::lookup(&request).map_or(Patience::Normal, Self::for_command)
            }
            _ => Patience::Normal,
        }
    }
}

/// What the shared connections of this process to one server know about its scripts.
#[derive(Debug, Default)]
struct ServerScripts {
    /// How many connections owe a reply to a slow request. While one does, the server may be running a script
    /// and answer no one, so the others are patient too.
    busy_connections: AtomicUsize,
    /// Bumped whenever a connection stops owing a slow reply: the server finished a script, which is progress
    /// for every connection to it (the replies it held back meanwhile may still be on their way).
    finished: AtomicU64,
}

/// One connection's share of its server's [`ServerScripts`].
#[derive(Debug)]
struct SlowOwed {
    server: Arc<ServerScripts>,
    /// Whether this connection is counted in `busy_connections`.
    counted: bool,
    /// The value of `finished` this connection saw last.
    seen_finished: u64,
}

impl SlowOwed {
    fn for_address(address: &str) -> SlowOwed {
        static BY_ADDRESS: OnceLock<Mutex<HashMap<String, Arc<ServerScripts>>>> = OnceLock::new();
        let mut map = BY_ADDRESS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let server = Arc::clone(map.entry(address.to_owned()).or_default());
        let seen_finished = server.finished.load(Ordering::Relaxed);
        SlowOwed {
            server,
            counted: false,
            seen_finished,
        }
    }

    /// Records whether this connection owes a reply to a slow request.
    fn set(&mut self, slow: bool) {
        if slow == self.counted {
            return;
        }
        if slow {
            self.server.busy_connections.fetch_add(1, Ordering::Relaxed);
        } else {
            self.server.busy_connections.fetch_sub(1, Ordering::Relaxed);
            // Only compared for a change, so wrapping around is harmless. This connection read the script's
            // reply itself: that is not news to it.
            let before = self.server.finished.fetch_add(1, Ordering::Relaxed);
            self.seen_finished = before.wrapping_add(1);
        }
        self.counted = slow;
    }

    /// Whether some connection of this process to the server owes a reply to a slow request.
    fn server_may_be_busy(&self) -> bool {
        self.server.busy_connections.load(Ordering::Relaxed) > 0
    }

    /// Whether the server finished a script since this connection last asked (it asks when it starts owing
    /// replies, so older news do not count).
    fn script_finished_since_last_look(&mut self) -> bool {
        let finished = self.server.finished.load(Ordering::Relaxed);
        let news = finished != self.seen_finished;
        self.seen_finished = finished;
        news
    }
}

impl Drop for SlowOwed {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// Decides when a connection that owes replies has made no progress for too long.
#[derive(Debug)]
struct Watchdog {
    command_timeout: Duration,
    slow_command_timeout: Duration,
    last_progress: Instant,
}

impl Watchdog {
    fn progress(&mut self) {
        self.last_progress = Instant::now();
    }

    /// `Ok(when to look again)`, or the allowance that ran out. Looks again at least every `command_timeout`,
    /// so a connection that stops being patient is failed on time.
    fn check(&self, now: Instant, patience: Patience) -> Result<Instant, Duration> {
        let allowance = match patience {
            Patience::Normal => self.command_timeout,
            Patience::Slow => self.slow_command_timeout.max(self.command_timeout),
        };
        let due = self.last_progress + allowance;
        if now >= due {
            Err(allowance)
        } else {
            Ok(due.min(now + self.command_timeout))
        }
    }
}

// === the handle ===

struct Job {
    request: Bytes,
    expected: Expected,
    patience: Patience,
    reply: oneshot::Sender<BackendReply>,
    redirects: Option<RedirectWatch>,
}

/// A cheap, cloneable handle to one shared backend connection.
#[derive(Clone, Debug)]
pub struct SharedConnection {
    address: Arc<str>,
    jobs: mpsc::UnboundedSender<Job>,
    redirects: Option<RedirectWatch>,
}

/// A flag a cluster session shares with its connection handles: the connection task raises it as soon as it
/// reads a MOVED, ASK or TRYAGAIN reply to one of the session's jobs, long before the session gets to that
/// reply in its queue. The session then sends no new request until every redirected one has run again, so no
/// later request can run first (the slot may have moved on, or back, meanwhile).
#[derive(Clone, Debug, Default)]
pub struct RedirectWatch(Arc<AtomicBool>);

impl RedirectWatch {
    /// Whether a redirect was seen since the last [`RedirectWatch::clear`].
    pub fn seen(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn clear(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    fn note(&self, reply: &[u8]) {
        if reply.first() == Some(&b'-') && classify_reply(reply) != ClusterReplyKind::Final {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Sends jobs with a given [`Patience`] (see [`SharedConnection::with_patience`]).
#[derive(Debug, Clone, Copy)]
pub struct PatientSender<'a> {
    connection: &'a SharedConnection,
    patience: Patience,
}

impl SharedConnection {
    /// Starts the task that owns the connection. It connects when the first request arrives.
    pub fn spawn(endpoint: Endpoint) -> SharedConnection {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let address = Arc::clone(&endpoint.address);
        tokio::spawn(run_shared_connection(endpoint, receiver));
        SharedConnection {
            address,
            jobs,
            redirects: None,
        }
    }

    /// This handle, raising `watch` for every redirect replied to a job sent through it.
    pub fn watching_redirects(mut self, watch: &RedirectWatch) -> SharedConnection {
        self.redirects = Some(watch.clone());
        self
    }

    /// Sends with `patience`: `connection.with_patience(Patience::for_command(spec)).send(request)`. The
    /// methods of `SharedConnection` itself send with [`Patience::Normal`].
    pub fn with_patience(&self, patience: Patience) -> PatientSender<'_> {
        PatientSender {
            connection: self,
            patience,
        }
    }

    /// Queues a request (complete RESP bytes) and returns where its reply will arrive.
    pub fn send(&self, request: Bytes) -> oneshot::Receiver<BackendReply> {
        self.with_patience(Patience::Normal).send(request)
    }
}

impl PatientSender<'_> {
    /// Queues a request (complete RESP bytes) and returns where its reply will arrive.
    pub fn send(self, request: Bytes) -> oneshot::Receiver<BackendReply> {
        self.send_job(request, Expected::One)
    }

    /// Queues `count` pipelined requests (complete RESP bytes, back to back); their replies arrive together,
    /// concatenated in order. One channel message and one oneshot per batch instead of per request.
    pub fn send_many(self, requests: Bytes, count: usize) -> oneshot::Receiver<BackendReply> {
        match NonZeroUsize::new(count) {
            Some(count) => self.send_job(requests, Expected::Concatenated(count)),
            None => self.owed_nothing(&requests),
        }
    }

    /// Sends `ASKING` and the request together, so no other client's command can come between them (ASKING
    /// applies to the next command on the connection); the reply is the request's.
    pub fn send_asking(self, request: &[u8]) -> oneshot::Receiver<BackendReply> {
        let mut both = BytesMut::with_capacity(request.len() + 20);
        both.extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
        both.extend_from_slice(request);
        self.send_job(both.freeze(), Expected::AskingThenOne)
    }

    fn send_job(self, request: Bytes, expected: Expected) -> oneshot::Receiver<BackendReply> {
        let (reply, receiver) = oneshot::channel();
        // If the task is gone, the dropped sender makes the receiver report an error; nothing else to do here.
        let _ = self.connection.jobs.send(Job {
            request,
            expected,
            patience: self.patience,
            reply,
            redirects: self.connection.redirects.clone(),
        });
        receiver
    }

    /// A job that expects no reply is never sent: bytes without an owed reply would put every later reply on
    /// the connection out of step. Nothing to send is answered with nothing; anything else is a caller's bug.
    fn owed_nothing(self, requests: &Bytes) -> oneshot::Receiver<BackendReply> {
        let (reply, receiver) = oneshot::channel();
        let answer = if requests.is_empty() {
            Ok(Bytes::new())
        } else {
            Err(BackendError::new(
                &self.connection.address,
                BackendFailure::NothingOwed,
            ))
        };
        let _ = reply.send(answer);
        receiver
    }
}

/// Why a backend connection could not be opened. The texts are the `<reason>` of
/// [`BackendError::Unavailable`].
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no connection within {0} ms")]
    Timeout(u128),
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("set TCP_NODELAY failed: {0}")]
    NoDelay(std::io::Error),
    #[error("handshake write failed: {0}")]
    HandshakeWrite(std::io::Error),
    #[error("handshake read failed: {0}")]
    HandshakeRead(std::io::Error),
    #[error("connection closed during handshake")]
    HandshakeClosed,
    #[error("handshake reply: {0}")]
    HandshakeReply(resp_codec::ProtocolError),
    /// The backend answered a command of the handshake with an error (a wrong password, a db out of range):
    /// `reply` is its error text.
    #[error("handshake refused: {reply}")]
    HandshakeRefused { step: HandshakeStep, reply: String },
    #[error(transparent)]
    Tls(#[from] crate::tls::BackendTlsError),
}

impl ConnectError {
    /// A connect or handshake that did not finish in time is a timeout; a refused handshake is told apart.
    pub fn kind(&self) -> FailureKind {
        match self {
            ConnectError::Timeout(_) => FailureKind::Timeout,
            ConnectError::HandshakeRefused { .. } => FailureKind::RefusedHandshake,
            _ => FailureKind::Unreachable,
        }
    }
}

/// The commands of a connection's handshake, in the order they are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStep {
    /// `HELLO 3` (with AUTH, if the endpoint has a password).
    Hello,
    Auth,
    ReadOnly,
    Select,
}

/// Connects to the endpoint and runs the handshake (AUTH / HELLO, SELECT), all within `connect_timeout`.
pub async fn connect(endpoint: &Endpoint) -> Result<BackendStream, ConnectError> {
    match tokio::time::timeout(endpoint.connect_timeout, connect_inner(endpoint)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout(endpoint.connect_timeout.as_millis())),
    }
}

async fn connect_inner(endpoint: &Endpoint) -> Result<BackendStream, ConnectError> {
    let tcp = TcpStream::connect(&*endpoint.address)
        .await
        .map_err(ConnectError::Connect)?;
    tcp.set_nodelay(true).map_err(ConnectError::NoDelay)?;
    let mut stream = match &endpoint.tls {
        None => BackendStream::Plain(tcp),
        Some(tls) => tls
            .connect(tcp, &endpoint.address)
            .await
            .map_err(ConnectError::Tls)?,
    };

    let mut handshake = BytesMut::new();
    // The steps sent, in order: the n-th reply answers the n-th step.
    let mut steps = Vec::with_capacity(4);
    if endpoint.resp3 {
        let mut args: Vec<&[u8]> = vec![b"HELLO", b"3"];
        if let Some(password) = &endpoint.password {
            args.push(b"AUTH");
            args.push(endpoint.username.as_deref().unwrap_or("default").as_bytes());
            args.push(password.as_bytes());
        }
        encode_command(&mut handshake, args);
        steps.push(HandshakeStep::Hello);
    } else if let Some(password) = &endpoint.password {
        match &endpoint.username {
            Some(user) => encode_command(
                &mut handshake,
                [&b"AUTH"[..], user.as_bytes(), password.as_bytes()],
            ),
            None => encode_command(&mut handshake, [&b"AUTH"[..], password.as_bytes()]),
        }
        steps.push(HandshakeStep::Auth);
    }
    if endpoint.readonly {
        encode_command(&mut handshake, [&b"READONLY"[..]]);
        steps.push(HandshakeStep::ReadOnly);
    }
    if endpoint.db != 0 {
        let db = endpoint.db.to_string();
        encode_command(&mut handshake, [&b"SELECT"[..], db.as_bytes()]);
        steps.push(HandshakeStep::Select);
    }
    if steps.is_empty() {
        return Ok(stream);
    }
    // The flush: over TLS, the last encrypted bytes may still wait for the socket.
    let sent = async {
        stream.write_all(&handshake).await?;
        stream.flush().await
    };
    sent.await.map_err(ConnectError::HandshakeWrite)?;
    let mut decoder = ReplyDecoder::new(Limits::for_backend_replies());
    let mut buffer = BytesMut::with_capacity(1024);
    let mut received = 0;
    while received < steps.len() {
        let read = stream
            .read_buf(&mut buffer)
            .await
            .map_err(ConnectError::HandshakeRead)?;
        if read == 0 {
            return Err(ConnectError::HandshakeClosed);
        }
        while let Some(frame) = decoder
            .decode(&mut buffer)
            .map_err(ConnectError::HandshakeReply)?
        {
            if frame.first() == Some(&b'-') {
                let reply = String::from_utf8_lossy(&frame[1..]).trim_end().to_owned();
                // A reply beyond the steps sent (a server out of step) has no step of its own: `Auth` stands in.
                let step = steps.get(received).copied().unwrap_or(HandshakeStep::Auth);
                return Err(ConnectError::HandshakeRefused { step, reply });
            }
            received += 1;
        }
    }
    Ok(stream)
}

async fn run_shared_connection(endpoint: Endpoint, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut last_failure: Option<(Instant, BackendError)> = None;
    loop {
        // Connect only when there is work, so an idle proxy does not hammer a dead backend.
        let Some(first) = jobs.recv().await else {
            return;
        };
        if let Some((when, error)) = &last_failure {
            if when.elapsed() < RECONNECT_HOLD_OFF {
                fail_all(error, first, &mut jobs);
                continue;
            }
        }
        match connect(&endpoint).await {
            Ok(stream) => {
                debug!(backend = %endpoint.address, db = endpoint.db, "backend connected");
                let mut live = Live::new(&endpoint);
                let Err(broken) = live.serve(stream, first, &mut jobs).await else {
                    return;
                };
                warn!(backend = %endpoint.address, reason = %broken, "backend connection lost");
                let error = BackendError::lost(&endpoint.address, broken);
                for waiter in live.queue.into_waiters() {
                    let _ = waiter.send(Err(error.clone()));
                }
                last_failure = Some((Instant::now(), error));
            }
            Err(reason) => {
                warn!(backend = %endpoint.address, %reason, "backend connect failed");
                let error = BackendError::connect(&endpoint.address, reason);
                fail_all(&error, first, &mut jobs);
                last_failure = Some((Instant::now(), error));
            }
        }
    }
}

/// Answers `first` and every job already waiting with the error.
fn fail_all(error: &BackendError, first: Job, jobs: &mut mpsc::UnboundedReceiver<Job>) {
    let _ = first.reply.send(Err(error.clone()));
    while let Ok(job) = jobs.try_recv() {
        let _ = job.reply.send(Err(error.clone()));
    }
}

/// The state of one live shared connection.
struct Live {
    queue: ReplyQueue<oneshot::Sender<BackendReply>>,
    decoder: ReplyDecoder,
    read_buffer: BytesMut,
    write_buffer: BytesMut,
    /// Requests of at least [`MIN_UNCOPIED_REQUEST`] bytes (and, frozen, what was queued before each), written
    /// as they are, oldest first, before `write_buffer`, whose bytes were all queued after them.
    uncopied: VecDeque<Bytes>,
    uncopied_bytes: usize,
    watchdog: Watchdog,
    scripts_on_server: SlowOwed,
    /// Every handle is gone: finish what is owed, then stop.
    handles_gone: bool,
}

impl Live {
    fn new(endpoint: &Endpoint) -> Live {
        Live {
            queue: ReplyQueue::default(),
            // Any reply Redis can produce must pass, however deep; the client limits are for client requests.
            decoder: ReplyDecoder::new(Limits::for_backend_replies()),
            read_buffer: BytesMut::with_capacity(64 * 1024),
            write_buffer: BytesMut::with_capacity(64 * 1024),
            uncopied: VecDeque::new(),
            uncopied_bytes: 0,
            watchdog: Watchdog {
                command_timeout: endpoint.command_timeout,
                slow_command_timeout: endpoint.slow_command_timeout,
                last_progress: Instant::now(),
            },
            scripts_on_server: SlowOwed::for_address(&endpoint.address),
            handles_gone: false,
        }
    }

    /// Runs the connection until it breaks (`Err`, the jobs still owed stay in `queue`) or every handle is
    /// gone and nothing is owed (`Ok`). Reads, writes and new jobs are served as each becomes ready, so neither
    /// direction waits for the other.
    async fn serve(
        &mut self,
        stream: BackendStream,
        first: Job,
        jobs: &mut mpsc::UnboundedReceiver<Job>,
    ) -> Result<(), Broken> {
        // Each kind of stream gets its own copy of the loop: a plaintext connection runs on tokio's socket
        // halves exactly as before TLS existed.
        match stream {
            BackendStream::Plain(tcp) => {
                let (reader, writer) = tcp.into_split();
                self.serve_halves(reader, writer, first, jobs).await
            }
            BackendStream::Tls(tls) => {
                let (reader, writer) = tls.into_halves();
                self.serve_halves(reader, writer, first, jobs).await
            }
        }
    }

    async fn serve_halves<R, W>(
        &mut self,
        mut reader: R,
        mut writer: W,
        first: Job,
        jobs: &mut mpsc::UnboundedReceiver<Job>,
    ) -> Result<(), Broken>
    where
        R: AsyncRead + ReadNow + Unpin,
        W: AsyncWrite + WriteNow + Unpin,
    {
        let alarm = tokio::time::sleep(self.watchdog.command_timeout);
        tokio::pin!(alarm);
        self.take_jobs(first, jobs, alarm.as_mut());
        loop {
            let accepting = !self.handles_gone
                && self.unwritten() < MAX_WRITE_BATCH
                && self.queue.len() < MAX_IN_FLIGHT;
            tokio::select! {
                read = reader.read_buf(&mut self.read_buffer) => self.on_read(read)?,
                written = writer.write(next_bytes(&self.uncopied, &self.write_buffer)), if self.unwritten() > 0 => {
                    self.on_written(written)?;
                }
                job = jobs.recv(), if accepting => match job {
                    Some(job) => {
                        // Coalescing: let the event loop run once more (it polls for I/O before resuming a task
                        // that yielded), so the clients whose requests arrived meanwhile add them to this write.
                        // Fewer, larger writes mean fewer reads and wake-ups in Redis; cluster GET/SET at `-P 1`
                        // gained about 15%.
                        tokio::task::yield_now().await;
                        self.take_jobs(job, jobs, alarm.as_mut());
                    }
                    None => self.handles_gone = true,
                },
                () = &mut alarm, if !self.queue.is_empty() => {
                    self.catch_up(&mut reader, &mut writer)?;
                    let next = self.check_progress()?;
                    alarm.as_mut().reset(next);
                }
            }
            if self.handles_gone && self.queue.is_empty() {
                return Ok(());
            }
        }
    }

    /// Queues `first` and every job already waiting (up to the batch limits) for writing.
    fn take_jobs(
        &mut self,
        first: Job,
        jobs: &mut mpsc::UnboundedReceiver<Job>,
        alarm: std::pin::Pin<&mut tokio::time::Sleep>,
    ) {
        if self.queue.is_empty() {
            // The clock starts when work is owed. The alarm is left alone if it rings soon enough anyway.
            self.watchdog.progress();
            self.scripts_on_server.script_finished_since_last_look();
            let now = self.watchdog.last_progress;
            if alarm.deadline() <= now {
                alarm.reset(now + self.watchdog.command_timeout);
            }
        }
        self.queue_job(first);
        while self.unwritten() < MAX_WRITE_BATCH && self.queue.len() < MAX_IN_FLIGHT {
            match jobs.try_recv() {
                Ok(job) => self.queue_job(job),
                Err(_) => break,
            }
        }
        self.scripts_on_server
            .set(self.queue.patience() == Patience::Slow);
    }

    fn queue_job(&mut self, job: Job) {
        if job.request.len() >= MIN_UNCOPIED_REQUEST {
            if !self.write_buffer.is_empty() {
                let earlier = self.write_buffer.split().freeze();
                self.uncopied_bytes += earlier.len();
                self.uncopied.push_back(earlier);
            }
            self.uncopied_bytes += job.request.len();
            self.uncopied.push_back(job.request);
        } else {
            self.write_buffer.extend_from_slice(&job.request);
        }
        self.queue
            .push_watched(job.reply, job.expected, job.patience, job.redirects);
    }

    /// Request bytes queued and not written yet.
    fn unwritten(&self) -> usize {
        self.uncopied_bytes + self.write_buffer.len()
    }

    fn on_read(&mut self, read: std::io::Result<usize>) -> Result<(), Broken> {
        match read {
            Ok(0) => return Err(Broken::Closed),
            Ok(_) => self.watchdog.progress(),
            Err(e) => return Err(Broken::Read(e)),
        }
        while let Some(frame) = self
            .decoder
            .decode(&mut self.read_buffer)
            .map_err(Broken::BadReply)?
        {
            // RESP3 push frames are not replies to a request (shared connections never enable tracking or
            // subscriptions, so none should come); skipping them keeps the pairing in step.
            if frame.first() == Some(&b'>') {
                continue;
            }
            if let Some((waiter, answer)) = self.queue.pair(frame)? {
                let _ = waiter.send(Ok(answer));
            }
        }
        self.scripts_on_server
            .set(self.queue.patience() == Patience::Slow);
        Ok(())
    }

    fn on_written(&mut self, written: std::io::Result<usize>) -> Result<(), Broken> {
        match written {
            Ok(0) => Err(Broken::Write(std::io::ErrorKind::WriteZero.into())),
            Ok(count) => {
                self.advance_written(count);
                self.watchdog.progress();
                if self.write_buffer.is_empty()
                    && self.write_buffer.capacity() > MAX_IDLE_WRITE_CAPACITY
                {
                    self.write_buffer = BytesMut::with_capacity(64 * 1024);
                }
                Ok(())
            }
            Err(e) => Err(Broken::Write(e)),
        }
    }

    /// Drops `count` written bytes from the front of what was queued (see [`next_bytes`]).
    fn advance_written(&mut self, count: usize) {
        match self.uncopied.front_mut() {
            Some(front) => {
                let count = count.min(front.len());
                front.advance(count);
                self.uncopied_bytes -= count;
                if front.is_empty() {
                    self.uncopied.pop_front();
                }
            }
            None => self.write_buffer.advance(count),
        }
    }

    /// Takes the bytes the backend sent, and gives it the bytes it can accept, without waiting. The alarm can
    /// ring when this task was not polled for a while (its thread busy with other tasks) although the backend
    /// kept going: what it did meanwhile is progress, and must be seen before the backend is judged.
    fn catch_up(
        &mut self,
        reader: &mut impl ReadNow,
        writer: &mut impl WriteNow,
    ) -> Result<(), Broken> {
        match reader.read_now(&mut self.read_buffer) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            read => self.on_read(read)?,
        }
        if self.unwritten() > 0 {
            match writer.write_now(next_bytes(&self.uncopied, &self.write_buffer)) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                written => self.on_written(written)?,
            }
        }
        Ok(())
    }

    /// When the alarm rings: the next time to look, or why the connection counts as broken.
    fn check_progress(&mut self) -> Result<Instant, Broken> {
        if self.scripts_on_server.script_finished_since_last_look() {
            self.watchdog.progress();
        }
        let patience = if self.scripts_on_server.server_may_be_busy() {
            Patience::Slow
        } else {
            self.queue.patience()
        };
        self.watchdog
            .check(Instant::now(), patience)
            .map_err(|allowance| {
                if self.unwritten() == 0 {
                    Broken::NoReply(allowance)
                } else {
                    Broken::WriteBlocked(allowance)
                }
            })
    }
}

/// The bytes to write next: the oldest uncopied request (or what was queued before it), else the write buffer.
fn next_bytes<'a>(uncopied: &'a VecDeque<Bytes>, write_buffer: &'a BytesMut) -> &'a [u8] {
    match uncopied.front() {
        Some(front) => front,
        None => write_buffer,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn count(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    /// Feeds `frames` to the queue and returns (waiter, answer) in the order the waiters were answered.
    fn feed(queue: &mut ReplyQueue<u32>, frames: &[&'static [u8]]) -> Vec<(u32, Bytes)> {
        let mut answered = Vec::new();
        for frame in frames {
            if let Some(done) = queue.pair(Bytes::from_static(frame)).unwrap() {
                answered.push(done);
            }
        }
        answered
    }

    #[test]
    fn each_shape_gets_exactly_its_replies() {
        let mut queue = ReplyQueue::default();
        queue.push(1, Expected::One, Patience::Normal);
        queue.push(2, Expected::Concatenated(count(2)), Patience::Normal);
        queue.push(4, Expected::AskingThenOne, Patience::Normal);
        queue.push(5, Expected::One, Patience::Normal);
        let answered = feed(
            &mut queue,
            &[
                b"$2\r\nv1\r\n",
                b":1\r\n",
                b":2\r\n",
                b"+OK\r\n",
                b"$3\r\nask\r\n",
                b"$2\r\nv5\r\n",
            ],
        );
        assert_eq!(
            answered,
            [
                (1, Bytes::from_static(b"$2\r\nv1\r\n")),
                (2, Bytes::from_static(b":1\r\n:2\r\n")),
                (4, Bytes::from_static(b"$3\r\nask\r\n")),
                (5, Bytes::from_static(b"$2\r\nv5\r\n")),
            ]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn a_reply_nobody_is_owed_breaks_the_connection() {
        let mut queue = ReplyQueue::default();
        queue.push(1, Expected::One, Patience::Normal);
        assert!(queue
            .pair(Bytes::from_static(b"+OK\r\n"))
            .unwrap()
            .is_some());
        assert!(matches!(
            queue.pair(Bytes::from_static(b"+OK\r\n")),
            Err(Broken::ReplyWithoutRequest)
        ));
    }

    #[test]
    fn a_transaction_of_10_000_commands_between_other_clients_replies() {
        // The old bookkeeping capped the replies owed at 255: every later waiter got someone else's reply. A
        // cluster transaction (MULTI, the queued commands, EXEC) is one job owed every one of its replies.
        let commands = 10_000;
        let mut queue = ReplyQueue::default();
        queue.push(1, Expected::One, Patience::Normal);
        queue.push(
            2,
            Expected::Concatenated(count(commands + 2)),
            Patience::Normal,
        );
        queue.push(3, Expected::One, Patience::Normal);
        let mut answered = Vec::new();
        let mut give = |frame: Bytes| {
            if let Some(done) = queue.pair(frame).unwrap() {
                answered.push(done);
            }
        };
        give(Bytes::from_static(b"$6\r\nclient\r\n"));
        give(Bytes::from_static(b"+OK\r\n"));
        for _ in 0..commands {
            give(Bytes::from_static(b"+QUEUED\r\n"));
        }
        let exec = format!("*{commands}\r\n{}", "+OK\r\n".repeat(commands));
        give(Bytes::from(exec.clone()));
        give(Bytes::from_static(b"$5\r\nother\r\n"));
        assert_eq!(
            answered,
            [
                (1, Bytes::from_static(b"$6\r\nclient\r\n")),
                (
                    2,
                    Bytes::from(format!("+OK\r\n{}{exec}", "+QUEUED\r\n".repeat(commands)))
                ),
                (3, Bytes::from_static(b"$5\r\nother\r\n")),
            ]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn a_pipeline_of_10_000_replies_comes_back_whole_and_in_order() {
        let commands = 10_000;
        let mut queue = ReplyQueue::default();
        queue.push(7, Expected::Concatenated(count(commands)), Patience::Normal);
        queue.push(8, Expected::One, Patience::Normal);
        let mut expected = BytesMut::new();
        let mut answered = Vec::new();
        for n in 0..commands {
            let frame = Bytes::from(format!(":{n}\r\n"));
            expected.extend_from_slice(&frame);
            if let Some(done) = queue.pair(frame).unwrap() {
                answered.push(done);
            }
        }
        assert_eq!(answered, [(7, expected.freeze())]);
        assert_eq!(
            feed(&mut queue, &[b"+PONG\r\n"]),
            [(8, Bytes::from_static(b"+PONG\r\n"))]
        );
    }

    #[test]
    fn a_connection_is_patient_while_a_script_is_owed_a_reply() {
        let mut queue = ReplyQueue::default();
        assert_eq!(queue.patience(), Patience::Normal);
        queue.push(1, Expected::One, Patience::Normal);
        assert_eq!(queue.patience(), Patience::Normal);
        // Redis holds the first reply back until the script that follows it has run.
        queue.push(2, Expected::One, Patience::Slow);
        queue.push(3, Expected::One, Patience::Normal);
        assert_eq!(queue.patience(), Patience::Slow);
        feed(&mut queue, &[b"+OK\r\n", b":1\r\n"]);
        assert_eq!(queue.patience(), Patience::Normal);
    }

    #[test]
    fn a_script_on_one_connection_makes_the_others_patient_and_its_end_is_news_to_them() {
        let address = "test.invalid:1";
        let mut scripting = SlowOwed::for_address(address);
        let mut other = SlowOwed::for_address(address);
        assert!(!other.server_may_be_busy());
        scripting.set(true);
        assert!(other.server_may_be_busy());
        assert!(!other.script_finished_since_last_look());
        scripting.set(false);
        assert!(!other.server_may_be_busy());
        assert!(other.script_finished_since_last_look());
        assert!(!other.script_finished_since_last_look());
        assert!(!scripting.script_finished_since_last_look());
        // A connection that breaks while it owes a script's reply no longer counts.
        scripting.set(true);
        drop(scripting);
        assert!(!other.server_may_be_busy());
    }

    #[test]
    fn scripts_are_slow_and_reads_are_not() {
        let eval = b"*3\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n0\r\n";
        assert_eq!(Patience::for_request_bytes(eval), Patience::Slow);
        let fcall = b"*3\r\n$5\r\nfcall\r\n$1\r\nf\r\n$1\r\n0\r\n";
        assert_eq!(Patience::for_request_bytes(fcall), Patience::Slow);
        let get = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        assert_eq!(Patience::for_request_bytes(get), Patience::Normal);
        assert_eq!(Patience::for_request_bytes(b"*2\r\n$3"), Patience::Normal);
    }

    #[test]
    fn the_watchdog_fails_only_after_the_allowance_without_progress() {
        let start = Instant::now();
        let watchdog = Watchdog {
            command_timeout: Duration::from_millis(1000),
            slow_command_timeout: Duration::from_millis(30_000),
            last_progress: start,
        };
        let early = start + Duration::from_millis(400);
        assert_eq!(
            watchdog.check(early, Patience::Normal),
            Ok(start + Duration::from_millis(1000))
        );
        let late = start + Duration::from_millis(1000);
        assert_eq!(
            watchdog.check(late, Patience::Normal),
            Err(Duration::from_millis(1000))
        );
        // A slow request is given more time, but the watchdog looks again every command_timeout.
        assert_eq!(
            watchdog.check(late, Patience::Slow),
            Ok(late + Duration::from_millis(1000))
        );
        let much_later = start + Duration::from_millis(30_000);
        assert_eq!(
            watchdog.check(much_later, Patience::Slow),
            Err(Duration::from_millis(30_000))
        );
    }

    /// An endpoint on `address` with a password and a db, so the handshake is AUTH then SELECT.
    fn auth_and_select(address: &str) -> Endpoint {
        Endpoint {
            address: Arc::from(address),
            username: None,
            password: Some("secret".to_owned()),
            db: 99,
            resp3: false,
            readonly: false,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
            slow_command_timeout: Duration::from_secs(5),
            tls: None,
        }
    }

    /// A one-shot server on loopback that reads the handshake and sends `answer`.
    async fn answering(answer: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 256];
            let _ = socket.read(&mut request).await;
            let _ = socket.write_all(answer).await;
            // Hold the socket open until the client is done.
            let _ = socket.read(&mut request).await;
        });
        address
    }

    #[tokio::test]
    async fn a_refused_select_is_told_apart_from_a_refused_auth() {
        let address = answering(b"+OK\r\n-ERR DB index is out of range\r\n").await;
        let endpoint = auth_and_select(&address);
        let Err(refused) = connect(&endpoint).await else {
            panic!("the handshake passed");
        };
        let error = BackendError::connect(&endpoint.address, refused);
        assert_eq!(error.kind(), FailureKind::RefusedHandshake);
        assert_eq!(error.refused_select(), Some("ERR DB index is out of range"));
        assert_eq!(
            error.to_string(),
            format!(
                "backend {address} unavailable: handshake refused: ERR DB index is out of range"
            )
        );

        let address = answering(b"-WRONGPASS invalid username-password pair\r\n").await;
        let endpoint = auth_and_select(&address);
        let Err(refused) = connect(&endpoint).await else {
            panic!("the handshake passed");
        };
        let error = BackendError::connect(&endpoint.address, refused);
        assert_eq!(error.kind(), FailureKind::RefusedHandshake);
        assert_eq!(error.refused_select(), None);
    }

    #[test]
    fn failures_are_counted_by_their_variant() {
        let address: Arc<str> = Arc::from("10.0.0.1:6379");
        let second = Duration::from_secs(1);
        let kind = |broken| BackendError::lost(&address, broken).kind();
        assert_eq!(kind(Broken::NoReply(second)), FailureKind::Timeout);
        assert_eq!(kind(Broken::WriteBlocked(second)), FailureKind::Timeout);
        assert_eq!(kind(Broken::NoProgress(second)), FailureKind::Timeout);
        assert_eq!(kind(Broken::Closed), FailureKind::ConnectionLost);
        assert_eq!(
            kind(Broken::ReplyWithoutRequest),
            FailureKind::ConnectionLost
        );
        let timed_out = BackendError::connect(&address, ConnectError::Timeout(1000));
        assert_eq!(timed_out.kind(), FailureKind::Timeout);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let unreachable = BackendError::connect(&address, ConnectError::Connect(refused));
        assert_eq!(unreachable.kind(), FailureKind::Unreachable);
        // The texts clients see are the same as when the reason was a string.
        assert_eq!(
            &BackendError::lost(&address, Broken::NoProgress(second)).to_reply()[..],
            b"-ERR backend 10.0.0.1:6379 unavailable: no progress for 1000 ms\r\n"
        );
    }
}
