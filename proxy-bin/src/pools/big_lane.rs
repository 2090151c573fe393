//! The big-request lane: backend connections of their own for big requests and for requests whose replies are
//! big, so that a transfer of many megabytes never queues in front of the small requests that other clients
//! sent down a shared connection.
//!
//! A pool keeps one [`BigLane`] per (worker, node, db, protocol), like its shared connections, each with
//! `big_requests.connections_per_node` connections. A lane connection carries one big request at a time: a big
//! request takes a free connection, or waits for one (at most `max_queued` wait, each at most
//! `queue_wait_ms`); otherwise it is answered [`BigLaneError::Busy`] without being sent, so nothing ran.
//!
//! Which requests are big is decided by [`BigLanes::is_big`]: the request's size, or its first key being one
//! the pool recently saw with a big reply or a big value written ([`RecentBigKeys`], a fixed-size table: its
//! memory is bounded whatever clients do). Ordering is the session's job: it waits for a client's earlier
//! replies before a lane request and for the lane reply before the client's next request (see
//! `session/big.rs`).
//!
//! A lane connection is borrowed whole by one request ([`LaneLease`]), so the session can write a big value to
//! it as it arrives from the client and write the reply to the client as it arrives from the server, holding a
//! window of [`LANE_WINDOW`] bytes, never the value. In plaintext (a TCP client; a lane over TCP or a Unix domain
//! socket) the value's bytes go from the client's socket to the lane's by `splice(2)` ([`SplicePipe`], [`LaneLease::drain_pipe`]), never copied into the proxy.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use resp_codec::{FrameScanner, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::backend::{connect, BackendError, BackendReply, BackendStream, Broken, Endpoint};
use crate::config::BigRequests;
use crate::tls::PlainSocket;

mod splice;

use self::splice::send_more;
pub use self::splice::{SplicePipe, SPLICE_PIPE_BYTES};

/// Why a big request was not sent. The text is the client's error reply (after `-`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum BigLaneError {
    #[error("ERR big request lane of {node} is busy, try again")]
    Busy { node: Arc<str> },
}

impl BigLaneError {
    /// The error as a RESP error reply.
    pub fn to_reply(&self) -> Bytes {
        Bytes::from(format!("-{self}\r\n"))
    }
}

/// What the big lanes of one pool did, for the stats (read with [`BigLaneStats::snapshot`]).
#[derive(Debug, Default)]
pub struct BigLaneStats {
    big_requests: AtomicU64,
    queue_waits: AtomicU64,
    rejections: AtomicU64,
}

/// A copy of [`BigLaneStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BigLaneCounts {
    /// Requests that went to the lane (sent, or refused as busy).
    pub big_requests: u64,
    /// Of those, how many had to wait for a free lane connection.
    pub queue_waits: u64,
    /// Of those, how many were refused: the queue was full or the wait too long.
    pub rejections: u64,
}

impl BigLaneStats {
    // Read by the stats of the operations issue; only the tests read it so far.
    #[allow(dead_code)]
    pub fn snapshot(&self) -> BigLaneCounts {
        BigLaneCounts {
            big_requests: self.big_requests.load(Ordering::Relaxed),
            queue_waits: self.queue_waits.load(Ordering::Relaxed),
            rejections: self.rejections.load(Ordering::Relaxed),
        }
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Slots in [`RecentBigKeys`]: 8 KiB per pool.
const RECENT_KEY_SLOTS: usize = 1024;

/// The keys a pool recently saw with a big reply or a big value written, as 64-bit hashes in a fixed table: a
/// key goes to the slot its hash picks and pushes out whatever was there. So memory is bounded, lookups take no
/// lock, and a forgotten or mistaken key only costs a request its lane (never a wrong reply).
#[derive(Debug)]
pub struct RecentBigKeys {
    slots: Box<[AtomicU64]>,
    /// Slots in use; when 0 (the usual case) the session skips looking for a request's key.
    used: AtomicUsize,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for RecentBigKeys {
    fn default() -> Self {
        RecentBigKeys {
            slots: (0..RECENT_KEY_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            used: AtomicUsize::new(0),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl RecentBigKeys {
    /// A key's hash (never 0, which marks a free slot) and its slot.
    fn locate(&self, key: &[u8]) -> (u64, &AtomicU64) {
        let hash = self.hasher.hash_one(key).max(1);
        // The table length is a power of two.
        let slot = &self.slots[(hash as usize) & (RECENT_KEY_SLOTS - 1)];
        (hash, slot)
    }

    pub fn remember(&self, key: &[u8]) {
        let (hash, slot) = self.locate(key);
        if slot.swap(hash, Ordering::Relaxed) == 0 {
            self.used.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn forget(&self, key: &[u8]) {
        let (hash, slot) = self.locate(key);
        if slot
            .compare_exchange(hash, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.used.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        let (hash, slot) = self.locate(key);
        slot.load(Ordering::Relaxed) == hash
    }

    pub fn is_empty(&self) -> bool {
        self.used.load(Ordering::Relaxed) == 0
    }
}

/// Which lane: (worker thread, node address, db, RESP3, the user and password it logs in with).
type LaneKey = (usize, Arc<str>, u32, bool, Option<String>, Option<String>);

/// The big lanes of one pool, created lazily, with what they share: the settings, the recent big keys and the
/// counters.
#[derive(Debug)]
pub struct BigLanes {
    settings: BigRequests,
    lanes: Mutex<HashMap<LaneKey, Arc<BigLane>>>,
    recent: Arc<RecentBigKeys>,
    stats: Arc<BigLaneStats>,
}

impl BigLanes {
    pub fn new(settings: &BigRequests) -> BigLanes {
        BigLanes {
            settings: settings.clone(),
            lanes: Mutex::new(HashMap::new()),
            recent: Arc::default(),
            stats: Arc::default(),
        }
    }

    pub fn threshold(&self) -> usize {
        self.settings.threshold_bytes
    }

    pub fn recent(&self) -> &RecentBigKeys {
        &self.recent
    }

    // Read by the stats of the operations issue.
    #[allow(dead_code)]
    pub fn stats(&self) -> &BigLaneStats {
        &self.stats
    }

    /// Whether a request of `size` bytes whose first key is `key` goes to the lane.
    pub fn is_big(&self, size: usize, key: Option<&[u8]>) -> bool {
        size >= self.settings.threshold_bytes
            || (!self.recent.is_empty() && key.is_some_and(|key| self.recent.contains(key)))
    }

    /// The lane to `endpoint` (its address, db and protocol) on event loop `worker`. The lane's connections are
    /// tasks of the calling worker's runtime, like shared connections.
    pub fn lane(&self, worker: usize, endpoint: Endpoint) -> Arc<BigLane> {
        // The user a lane logs in as is part of its key: a tenant with a backend_user has lanes of its own.
        let key = (
            worker,
            Arc::clone(&endpoint.address),
            endpoint.db,
            endpoint.resp3,
            endpoint.username.clone(),
            endpoint.password.clone(),
        );
        let mut lanes = self
            .lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let lane = lanes.entry(key).or_insert_with(|| {
            Arc::new(BigLane::new(
                endpoint,
                &self.settings,
                Arc::clone(&self.recent),
                Arc::clone(&self.stats),
            ))
        });
        Arc::clone(lane)
    }
}

/// How a lane request is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneSend {
    /// The request alone.
    One,
    /// `ASKING` and the request together (a cluster ASK redirect).
    Asking,
}

/// A big request and what the lane learns from its reply.
#[derive(Debug)]
pub struct BigRequest {
    pub request: Bytes,
    pub send: LaneSend,
    /// The request's first key, remembered when the reply is big (or the request is), forgotten when neither.
    pub key: Option<Bytes>,
}

/// The lane connections to one node for one (worker, db, protocol).
///
/// A lane connection is a plain socket (after the handshake) that one big request at a time borrows whole
/// ([`LaneLease`]): the session writes the request to it as the client's bytes arrive, and reads the reply as
/// the server sends it. A lease ended cleanly (the whole request written, its whole reply read) gives the
/// socket back; any other end closes it, so a half-written request or a half-read reply never reaches the
/// connection's next user.
#[derive(Debug)]
pub struct BigLane {
    node: Arc<str>,
    endpoint: Endpoint,
    /// Connected sockets not carrying a request; at most as many as `permits` has permits.
    idle: Mutex<Vec<BackendStream>>,
    /// Empty pipes of requests that ended cleanly, for the next ones to splice through (at most one per
    /// permit): a pipe made and closed per request cost five system calls of about a dozen.
    idle_pipes: Mutex<Vec<SplicePipe>>,
    permits: Arc<Semaphore>,
    /// Requests waiting for a permit.
    waiting: AtomicUsize,
    max_queued: usize,
    queue_wait: Duration,
    threshold: usize,
    recent: Arc<RecentBigKeys>,
    stats: Arc<BigLaneStats>,
}

/// The window a lane transfer holds: at most this many bytes of a big request or reply are read before they
/// are written on.
pub const LANE_WINDOW: usize = 256 * 1024;

/// The send buffer a lane connection over a Unix domain socket asks for (`SO_SNDBUF`; Linux grants twice
/// this, at most twice `net.core.wmem_max`). With the system's default (208 KiB) a 1 MiB value went in five
/// `splice` calls, each waiting for Redis to read the last, and Redis read it in as many wake-ups: the bench's
/// big SETs took 1.2x the time of direct through the socket, and as long as direct with this buffer (1.1x when
/// `net.core.wmem_max` holds it at 1 MiB, no gain at the kernel's default of 208 KiB).
pub const UNIX_LANE_SEND_BUFFER: usize = 2 * SPLICE_PIPE_BYTES;

/// Whether the log already said that `net.core.wmem_max` holds the lane's send buffer down (said once).
static SEND_BUFFER_CAP_LOGGED: AtomicBool = AtomicBool::new(false);

/// Gives a new lane connection over a Unix domain socket [`UNIX_LANE_SEND_BUFFER`]. Refused or held down by
/// `net.core.wmem_max`, the lane still works, with more passes per value; the log says so once per process.
fn widen_send_buffer(stream: &BackendStream, node: &str) {
    let BackendStream::Plain(socket @ PlainSocket::Unix(_)) = stream else {
        return;
    };
    let granted = match socket.widen_unix_send_buffer(UNIX_LANE_SEND_BUFFER) {
        Ok(granted) => granted,
        Err(error) => {
            tracing::debug!(node, %error, "the big-request lane's send buffer was not widened");
            return;
        }
    };
    if granted < 2 * UNIX_LANE_SEND_BUFFER && !SEND_BUFFER_CAP_LOGGED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            node,
            granted,
            "net.core.wmem_max holds the send buffer of big-request lane connections over a Unix domain socket \
             below the {UNIX_LANE_SEND_BUFFER} bytes asked: big values take more passes; raise \
             net.core.wmem_max to at least {UNIX_LANE_SEND_BUFFER}"
        );
    }
}

/// A lane connection borrowed by one big request (see [`BigLane`]).
#[derive(Debug)]
pub struct LaneLease {
    lane: Arc<BigLane>,
    socket: Option<BackendStream>,
    /// The pipe a value is spliced through ([`LaneLease::pipe`]), taken from the lane on first use.
    pipe: Option<SplicePipe>,
    _permit: OwnedSemaphorePermit,
}

impl LaneLease {
    /// The node this lane goes to.
    pub fn node(&self) -> &Arc<str> {
        &self.lane.node
    }

    /// The socket, connected (and its handshake done) on first use. An idle socket the server closed
    /// meanwhile is replaced.
    async fn socket(&mut self) -> Result<&mut BackendStream, BackendError> {
        if self.socket.is_none() {
            let idle = self.lane.take_idle();
            self.socket = match idle {
                Some(socket) => Some(socket),
                None => {
                    let stream = connect(&self.lane.endpoint)
                        .await
                        .map_err(|reason| BackendError::connect(&self.lane.node, reason))?;
                    widen_send_buffer(&stream, &self.lane.node);
                    Some(stream)
                }
            };
        }
        self.socket
            .as_mut()
            .ok_or_else(|| BackendError::lost(&self.lane.node, Broken::NoLaneConnection))
    }

    /// Writes `bytes` to the server; the socket must take some of them every `slow_command_ms`.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), BackendError> {
        let patience = self.lane.endpoint.slow_command_timeout;
        let node = Arc::clone(&self.lane.node);
        let socket = self.socket().await?;
        let mut rest = bytes;
        while !rest.is_empty() {
            let written = match tokio::time::timeout(patience, socket.write(rest)).await {
                Ok(Ok(0)) => return Err(BackendError::lost(&node, Broken::ClosedOnWrite)),
                Ok(Ok(written)) => written,
                Ok(Err(error)) => return Err(BackendError::lost(&node, Broken::Write(error))),
                Err(_) => return Err(BackendError::lost(&node, Broken::NoProgress(patience))),
            };
            rest = &rest[written..];
        }
        // Over TLS the last encrypted bytes may still wait in the stream (a no-op over TCP).
        match tokio::time::timeout(patience, socket.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(BackendError::lost(&node, Broken::Write(error))),
            Err(_) => Err(BackendError::lost(&node, Broken::NoProgress(patience))),
        }
    }

    /// Writes `bytes` that more of the same request follows at once: in plaintext with `MSG_MORE`
    /// ([`send_more`]), so the kernel sends them in the value's full segments rather than in a short packet of
    /// their own; over TLS as [`LaneLease::write`]. The request's last bytes go with [`LaneLease::write`],
    /// which sends whatever the kernel still holds.
    pub async fn write_more(&mut self, bytes: &[u8]) -> Result<(), BackendError> {
        if !matches!(self.socket().await?, BackendStream::Plain(_)) {
            return self.write(bytes).await;
        }
        let patience = self.lane.endpoint.slow_command_timeout;
        let node = &self.lane.node;
        let Some(BackendStream::Plain(socket)) = &self.socket else {
            return Err(BackendError::lost(node, Broken::NoLaneConnection));
        };
        let mut rest = bytes;
        while !rest.is_empty() {
            let sent = match tokio::time::timeout(patience, send_more(socket, rest)).await {
                Ok(Ok(0)) => return Err(BackendError::lost(node, Broken::ClosedOnWrite)),
                Ok(Ok(sent)) => sent,
                Ok(Err(error)) => return Err(BackendError::lost(node, Broken::Write(error))),
                Err(_) => return Err(BackendError::lost(node, Broken::NoProgress(patience))),
            };
            rest = &rest[sent..];
        }
        Ok(())
    }

    /// Whether the lease's socket is plaintext (TCP or a Unix domain socket), so a value can be spliced to it
    /// ([`LaneLease::drain_pipe`]).
    pub fn is_plain(&self) -> bool {
        matches!(self.socket, Some(BackendStream::Plain(_)))
    }

    /// The pipe to splice a value through to this lane connection (plaintext only, see
    /// [`LaneLease::is_plain`]): an idle one of the lane's, or a new one. `None` when none can be made (the
    /// process is out of descriptors); the value is then copied as over TLS.
    pub fn pipe(&mut self) -> Option<&mut SplicePipe> {
        if self.pipe.is_none() {
            self.pipe = self
                .lane
                .take_idle_pipe()
                .or_else(|| SplicePipe::new().ok());
        }
        self.pipe.as_mut()
    }

    /// Writes everything the lease's pipe holds to the server (plaintext only); the socket must take some of
    /// it every `slow_command_ms`, as with [`LaneLease::write`].
    pub async fn drain_pipe(&mut self) -> Result<(), BackendError> {
        let patience = self.lane.endpoint.slow_command_timeout;
        let node = &self.lane.node;
        let (Some(BackendStream::Plain(socket)), Some(pipe)) = (&self.socket, &mut self.pipe)
        else {
            return Err(BackendError::lost(node, Broken::NoLaneConnection));
        };
        while pipe.held() > 0 {
            match tokio::time::timeout(patience, pipe.drain_to(socket)).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) if error.kind() == std::io::ErrorKind::WriteZero => {
                    return Err(BackendError::lost(node, Broken::ClosedOnWrite))
                }
                Ok(Err(error)) => return Err(BackendError::lost(node, Broken::Write(error))),
                Err(_) => return Err(BackendError::lost(node, Broken::NoProgress(patience))),
            }
        }
        Ok(())
    }

    /// Reads what the server sent next, at most `LANE_WINDOW` bytes, into `buffer`; at least one byte within
    /// `slow_command_ms`, or the connection counts as failed.
    pub async fn read(&mut self, buffer: &mut BytesMut) -> Result<usize, BackendError> {
        let patience = self.lane.endpoint.slow_command_timeout;
        let node = Arc::clone(&self.lane.node);
        let socket = self.socket().await?;
        buffer.reserve(LANE_WINDOW);
        let mut room = (&mut *buffer).limit(LANE_WINDOW);
        match tokio::time::timeout(patience, socket.read_buf(&mut room)).await {
            Ok(Ok(0)) => Err(BackendError::lost(&node, Broken::ClosedWhileReplying)),
            Ok(Ok(read)) => Ok(read),
            Ok(Err(error)) => Err(BackendError::lost(&node, Broken::Read(error))),
            Err(_) => Err(BackendError::lost(&node, Broken::NoProgress(patience))),
        }
    }

    /// The request and its reply passed whole: the socket, and the pipe when it is empty, go back to the lane
    /// for the next request. (A lease dropped otherwise closes both, with whatever they still hold.)
    pub fn give_back(mut self) {
        if let Some(socket) = self.socket.take() {
            self.lane.put_idle(socket);
        }
        if let Some(pipe) = self.pipe.take().filter(|pipe| pipe.held() == 0) {
            self.lane.put_idle_pipe(pipe);
        }
    }
}

impl BigLane {
    fn new(
        endpoint: Endpoint,
        settings: &BigRequests,
        recent: Arc<RecentBigKeys>,
        stats: Arc<BigLaneStats>,
    ) -> BigLane {
        let count = settings.connections_per_node.max(1);
        BigLane {
            node: Arc::clone(&endpoint.address),
            endpoint,
            idle: Mutex::new(Vec::with_capacity(count)),
            idle_pipes: Mutex::new(Vec::with_capacity(count)),
            permits: Arc::new(Semaphore::new(count)),
            waiting: AtomicUsize::new(0),
            max_queued: settings.max_queued,
            queue_wait: settings.queue_wait(),
            threshold: settings.threshold_bytes,
            recent,
            stats,
        }
    }

    /// `big_requests.threshold_bytes`.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Takes a lane connection for one big request, waiting for one if need be (at most `max_queued` wait,
    /// each at most `queue_wait_ms`); counted in the stats. A request refused here was not sent.
    pub async fn checkout(self: &Arc<Self>) -> Result<LaneLease, BigLaneError> {
        let permit = self.try_permit()?;
        self.wait_for_permit(permit).await
    }

    /// A permit at once, or a place in the queue (`None`), or the busy error when the queue is full.
    fn try_permit(&self) -> Result<Option<OwnedSemaphorePermit>, BigLaneError> {
        BigLaneStats::count(&self.stats.big_requests);
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Ok(Some(permit)),
            Err(_) if self.enter_queue() => Ok(None),
            Err(_) => Err(self.busy()),
        }
    }

    async fn wait_for_permit(
        self: &Arc<Self>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<LaneLease, BigLaneError> {
        let permit = match permit {
            Some(permit) => permit,
            None => {
                let waited = tokio::time::timeout(
                    self.queue_wait,
                    Arc::clone(&self.permits).acquire_owned(),
                )
                .await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                match waited {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) | Err(_) => return Err(self.busy()),
                }
            }
        };
        Ok(LaneLease {
            lane: Arc::clone(self),
            socket: None,
            pipe: None,
            _permit: permit,
        })
    }

    /// Sends a whole big request on a free lane connection, waiting for one if need be, and returns where its
    /// reply arrives (buffered whole: for requests the session cannot carry itself, such as a cluster request
    /// sent again after a redirect). A request that finds the queue full, or waits too long, gets
    /// [`BigLaneError::Busy`] as its reply and is never sent.
    pub fn send(self: &Arc<Self>, big: BigRequest) -> oneshot::Receiver<BackendReply> {
        let (reply, receiver) = oneshot::channel();
        let permit = match self.try_permit() {
            Ok(permit) => permit,
            Err(busy) => {
                let _ = reply.send(Ok(busy.to_reply()));
                return receiver;
            }
        };
        let lane = Arc::clone(self);
        tokio::spawn(async move {
            let answer = match lane.wait_for_permit(permit).await {
                Ok(lease) => lane.carry_whole(lease, &big).await,
                Err(busy) => Ok(busy.to_reply()),
            };
            let _ = reply.send(answer);
        });
        receiver
    }

    /// Writes a whole request and reads its whole reply (after `ASKING`'s, when it goes first).
    async fn carry_whole(&self, mut lease: LaneLease, big: &BigRequest) -> BackendReply {
        let replies = if big.send == LaneSend::Asking {
            lease.write(ASKING).await?;
            2
        } else {
            1
        };
        lease.write(&big.request).await?;
        let reply = read_last_frame(&mut lease, replies).await?;
        lease.give_back();
        self.learn(big.key.as_deref(), big.request.len(), reply.len());
        Ok(reply)
    }

    /// Takes a place in the queue, if one is left.
    fn enter_queue(&self) -> bool {
        let before = self.waiting.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_queued {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        BigLaneStats::count(&self.stats.queue_waits);
        true
    }

    /// The busy error, counted.
    fn busy(&self) -> BigLaneError {
        BigLaneStats::count(&self.stats.rejections);
        BigLaneError::Busy {
            node: Arc::clone(&self.node),
        }
    }

    /// An idle socket that is still open and silent (the server closed none of them meanwhile).
    fn take_idle(&self) -> Option<BackendStream> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(socket) = idle.pop() {
            if socket.still_open() {
                return Some(socket);
            }
        }
        None
    }

    fn take_idle_pipe(&self) -> Option<SplicePipe> {
        self.idle_pipes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
    }

    fn put_idle_pipe(&self, pipe: SplicePipe) {
        self.idle_pipes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(pipe);
    }

    fn put_idle(&self, socket: BackendStream) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        idle.push(socket);
    }

    /// Remembers the key of a big value (written or read), forgets it when neither was big.
    pub fn learn(&self, key: Option<&[u8]>, request_len: usize, reply_len: usize) {
        let Some(key) = key else {
            return;
        };
        if reply_len >= self.threshold || request_len >= self.threshold {
            self.recent.remember(key);
        } else {
            self.recent.forget(key);
        }
    }
}

/// `ASKING`, sent before a request redirected by ASK.
const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

/// Reads `count` whole replies and returns the last one.
async fn read_last_frame(lease: &mut LaneLease, count: usize) -> Result<Bytes, BackendError> {
    let mut buffer = BytesMut::new();
    let mut scanner = FrameScanner::reply(Limits::for_backend_replies());
    let (mut left, mut frame_start, mut scanned) = (count, 0, 0);
    loop {
        while scanned < buffer.len() {
            scanned += scanner
                .feed(&buffer[scanned..])
                .map_err(|error| BackendError::lost(lease.node(), Broken::BadLaneReply(error)))?;
            if scanner.is_complete() {
                left = left.saturating_sub(1);
                if left == 0 {
                    if scanned != buffer.len() {
                        return Err(BackendError::lost(lease.node(), Broken::BytesAfterReply));
                    }
                    return Ok(buffer.split_off(frame_start).freeze());
                }
                frame_start = scanned;
                scanner = FrameScanner::reply(Limits::for_backend_replies());
            }
        }
        lease.read(&mut buffer).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_big_keys_remember_and_forget() {
        let recent = RecentBigKeys::default();
        assert!(recent.is_empty());
        recent.remember(b"big");
        assert!(recent.contains(b"big") && !recent.contains(b"small"));
        assert!(!recent.is_empty());
        recent.forget(b"small");
        assert!(recent.contains(b"big"));
        recent.forget(b"big");
        assert!(!recent.contains(b"big") && recent.is_empty());
    }

    #[test]
    fn recent_big_keys_stay_bounded() {
        let recent = RecentBigKeys::default();
        for index in 0..100_000u32 {
            recent.remember(&index.to_be_bytes());
        }
        assert!(recent.used.load(Ordering::Relaxed) <= RECENT_KEY_SLOTS);
        assert_eq!(recent.slots.len(), RECENT_KEY_SLOTS);
        // The newest key is always there; most old ones were pushed out.
        assert!(recent.contains(&99_999u32.to_be_bytes()));
        let kept = (0..100_000u32)
            .filter(|index| recent.contains(&index.to_be_bytes()))
            .count();
        assert!(kept <= RECENT_KEY_SLOTS, "{kept}");
    }

    /// A lane of one connection with room for one waiting request, to a server that accepts and never answers:
    /// the first request holds the connection, the second waits and gives up after `queue_wait_ms`, the third
    /// finds the queue full and is refused at once. Each is counted.
    #[tokio::test]
    async fn a_full_lane_refuses_and_counts() {
        #![allow(clippy::unwrap_used)]
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = silent.local_addr().unwrap().to_string();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        });
        let settings = BigRequests {
            connections_per_node: 1,
            max_queued: 1,
            queue_wait_ms: 50,
            ..BigRequests::default()
        };
        let lanes = BigLanes::new(&settings);
        let lane = lanes.lane(0, plain_endpoint(&address));
        let request = |key: &'static str| BigRequest {
            request: Bytes::from(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len())),
            send: LaneSend::One,
            key: None,
        };
        let _holding = lane.send(request("a"));
        let waiting = lane.send(request("b"));
        let refused = lane.send(request("c"));
        let busy = format!("-ERR big request lane of {address} is busy, try again\r\n");
        assert_eq!(&refused.await.unwrap().unwrap()[..], busy.as_bytes());
        assert_eq!(&waiting.await.unwrap().unwrap()[..], busy.as_bytes());
        assert_eq!(
            lanes.stats().snapshot(),
            BigLaneCounts {
                big_requests: 3,
                queue_waits: 1,
                rejections: 2,
            }
        );
        holder.abort();
    }

    /// A plain TCP endpoint to `address`, db 0, RESP2.
    fn plain_endpoint(address: &str) -> Endpoint {
        Endpoint {
            address: Arc::from(address),
            username: None,
            password: None,
            db: 0,
            resp3: false,
            readonly: false,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(30),
            slow_command_timeout: Duration::from_secs(30),
            tls: None,
        }
    }

    /// A lease's pipe goes back to the lane when the lease ends cleanly with the pipe empty, and the next lease
    /// splices through it (no pipe made per request); a lease that ends with bytes in its pipe (a failed
    /// transfer) closes it, so no stale bytes reach the next request.
    #[tokio::test]
    async fn an_empty_pipe_is_kept_for_the_next_request_and_one_holding_bytes_is_not() {
        #![allow(clippy::unwrap_used)]
        let lanes = BigLanes::new(&BigRequests::default());
        let lane = lanes.lane(0, plain_endpoint("127.0.0.1:1"));
        let idle_pipes = || lane.idle_pipes.lock().unwrap().len();
        let mut lease = lane.checkout().await.unwrap();
        assert!(lease.pipe().is_some());
        lease.give_back();
        assert_eq!(idle_pipes(), 1, "an empty pipe is kept");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut sender = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (receiver, _) = listener.accept().await.unwrap();
        sender.write_all(b"stale").await.unwrap();
        let mut lease = lane.checkout().await.unwrap();
        let pipe = lease.pipe().unwrap();
        assert_eq!(idle_pipes(), 0, "the kept pipe is reused");
        assert_eq!(pipe.fill_from(&receiver, 5).await.unwrap(), 5);
        lease.give_back();
        assert_eq!(idle_pipes(), 0, "a pipe holding bytes is closed");
    }

    #[test]
    fn the_busy_error_names_the_node() {
        let error = BigLaneError::Busy {
            node: Arc::from("10.0.0.1:6379"),
        };
        assert_eq!(
            &error.to_reply()[..],
            b"-ERR big request lane of 10.0.0.1:6379 is busy, try again\r\n"
        );
    }
}
