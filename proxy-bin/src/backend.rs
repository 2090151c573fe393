//! Backend connections: connecting with a handshake, and shared, multiplexed connections.
//!
//! A [`SharedConnection`] is a handle to one TCP connection to one redis-server, used by many clients at once.
//! A task owns the socket. It takes requests from an unbounded channel, yields once to the event loop so that
//! clients made ready by the same round of I/O can add theirs, writes every request that is waiting in one
//! `write` (so many clients' commands reach Redis in one read there), and answers each request's oneshot in the
//! order the replies arrive, which is the order Redis received the requests.
//!
//! Failure handling: a connect (with its AUTH/SELECT handshake) has `connect_timeout`; a request on a live
//! connection has `command_timeout` to get its reply, after which the connection counts as broken. Every request
//! that cannot be answered gets [`BackendError::Unavailable`] fast, and the task reconnects by itself when the next
//! request arrives. Replies already acknowledged by Redis are delivered before a broken connection is given up.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use resp_codec::{encode_command, Limits, ReplyDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tracing::{debug, warn};

/// Most requests one shared connection has in flight before it stops taking more (the rest wait in the channel).
const MAX_IN_FLIGHT: usize = 16 * 1024;
/// Soft cap on how many request bytes are gathered into one write.
const MAX_WRITE_BATCH: usize = 256 * 1024;
/// After a failed connect, requests fail at once for this long instead of each trying to connect again.
const RECONNECT_HOLD_OFF: Duration = Duration::from_millis(100);

/// How to reach and log in to one backend node.
#[derive(Debug, Clone)]
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
    pub command_timeout: Duration,
}

impl Endpoint {
    /// A node of a pool: its credentials and timeouts, db 0, RESP2, no READONLY.
    pub fn for_pool(
        address: &str,
        config: &crate::config::PoolConfig,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Endpoint {
        Endpoint {
            address: Arc::from(address),
            username: config.username.clone(),
            password: config.password.clone(),
            db: 0,
            resp3: false,
            readonly: false,
            connect_timeout,
            command_timeout,
        }
    }
}

/// Why a backend could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("backend {address} unavailable: {reason}")]
    Unavailable { address: Arc<str>, reason: String },
}

impl BackendError {
    pub fn unavailable(address: &Arc<str>, reason: impl Into<String>) -> Self {
        BackendError::Unavailable {
            address: Arc::clone(address),
            reason: reason.into(),
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

struct Job {
    request: Bytes,
    /// Replies to drop before the ones that answer `reply` (the `+OK` of an `ASKING` sent in the same job).
    discard_replies: u8,
    /// How many replies answer `reply`; several are sent back concatenated, in order (a pipelined batch).
    replies: usize,
    reply: oneshot::Sender<BackendReply>,
}

/// A request (or batch) on the wire, waiting for its replies.
struct InFlight {
    /// `None`: a reply to drop.
    reply: Option<oneshot::Sender<BackendReply>>,
    /// Replies still to come for this entry.
    remaining: usize,
    /// The replies received so far, for a batch.
    collected: BytesMut,
    sent: Instant,
}

/// A cheap, cloneable handle to one shared backend connection.
#[derive(Clone, Debug)]
pub struct SharedConnection {
    jobs: mpsc::UnboundedSender<Job>,
}

impl SharedConnection {
    /// Starts the task that owns the connection. It connects when the first request arrives.
    pub fn spawn(endpoint: Endpoint) -> SharedConnection {
        let (jobs, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run_shared_connection(endpoint, receiver));
        SharedConnection { jobs }
    }

    /// Queues a request (complete RESP bytes) and returns where its reply will arrive.
    pub fn send(&self, request: Bytes) -> oneshot::Receiver<BackendReply> {
        self.send_job(request, 0, 1)
    }

    /// Queues `count` pipelined requests (complete RESP bytes, back to back); their replies arrive together,
    /// concatenated in order. One channel message and one oneshot per batch instead of per request.
    pub fn send_many(&self, requests: Bytes, count: usize) -> oneshot::Receiver<BackendReply> {
        self.send_job(requests, 0, count.max(1))
    }

    /// Sends `ASKING` and the request together, so no other client's command can come between them (ASKING
    /// applies to the next command on the connection); the reply is the request's.
    pub fn send_asking(&self, request: &[u8]) -> oneshot::Receiver<BackendReply> {
        let mut both = BytesMut::with_capacity(request.len() + 20);
        both.extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
        both.extend_from_slice(request);
        self.send_job(both.freeze(), 1, 1)
    }

    /// Sends several commands as one unit (nothing else is written between them) and answers with the last
    /// reply only; used for a cluster transaction (`MULTI` ... `EXEC`).
    pub fn send_batch(&self, commands: Bytes, replies: usize) -> oneshot::Receiver<BackendReply> {
        let discard = u8::try_from(replies.saturating_sub(1)).unwrap_or(u8::MAX);
        self.send_job(commands, discard, 1)
    }

    fn send_job(
        &self,
        request: Bytes,
        discard_replies: u8,
        replies: usize,
    ) -> oneshot::Receiver<BackendReply> {
        let (reply, receiver) = oneshot::channel();
        // If the task is gone, the dropped sender makes the receiver report an error; nothing else to do here.
        let _ = self.jobs.send(Job {
            request,
            discard_replies,
            replies,
            reply,
        });
        receiver
    }
}

/// Connects to the endpoint and runs the handshake (AUTH / HELLO, SELECT), all within `connect_timeout`.
pub async fn connect(endpoint: &Endpoint) -> Result<TcpStream, String> {
    match tokio::time::timeout(endpoint.connect_timeout, connect_inner(endpoint)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no connection within {} ms",
            endpoint.connect_timeout.as_millis()
        )),
    }
}

async fn connect_inner(endpoint: &Endpoint) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(&*endpoint.address)
        .await
        .map_err(|e| format!("connect failed: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set TCP_NODELAY failed: {e}"))?;

    let mut handshake = BytesMut::new();
    let mut expected = 0;
    if endpoint.resp3 {
        let mut args: Vec<&[u8]> = vec![b"HELLO", b"3"];
        if let Some(password) = &endpoint.password {
            args.push(b"AUTH");
            args.push(endpoint.username.as_deref().unwrap_or("default").as_bytes());
            args.push(password.as_bytes());
        }
        encode_command(&mut handshake, args);
        expected += 1;
    } else if let Some(password) = &endpoint.password {
        match &endpoint.username {
            Some(user) => encode_command(
                &mut handshake,
                [&b"AUTH"[..], user.as_bytes(), password.as_bytes()],
            ),
            None => encode_command(&mut handshake, [&b"AUTH"[..], password.as_bytes()]),
        }
        expected += 1;
    }
    if endpoint.readonly {
        encode_command(&mut handshake, [&b"READONLY"[..]]);
        expected += 1;
    }
    if endpoint.db != 0 {
        let db = endpoint.db.to_string();
        encode_command(&mut handshake, [&b"SELECT"[..], db.as_bytes()]);
        expected += 1;
    }
    if expected == 0 {
        return Ok(stream);
    }
    stream
        .write_all(&handshake)
        .await
        .map_err(|e| format!("handshake write failed: {e}"))?;
    let mut decoder = ReplyDecoder::new(Limits::default());
    let mut buffer = BytesMut::with_capacity(1024);
    let mut received = 0;
    while received < expected {
        let read = stream
            .read_buf(&mut buffer)
            .await
            .map_err(|e| format!("handshake read failed: {e}"))?;
        if read == 0 {
            return Err("connection closed during handshake".to_owned());
        }
        while let Some(frame) = decoder
            .decode(&mut buffer)
            .map_err(|e| format!("handshake reply: {e}"))?
        {
            received += 1;
            if frame.first() == Some(&b'-') {
                let text = String::from_utf8_lossy(&frame[1..]).trim_end().to_owned();
                return Err(format!("handshake refused: {text}"));
            }
        }
    }
    Ok(stream)
}

async fn run_shared_connection(endpoint: Endpoint, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut last_failure: Option<(Instant, String)> = None;
    loop {
        // Connect only when there is work, so an idle proxy does not hammer a dead backend.
        let Some(first) = jobs.recv().await else {
            return;
        };
        if let Some((when, reason)) = &last_failure {
            if when.elapsed() < RECONNECT_HOLD_OFF {
                let error = BackendError::unavailable(&endpoint.address, reason.clone());
                let _ = first.reply.send(Err(error.clone()));
                while let Ok(job) = jobs.try_recv() {
                    let _ = job.reply.send(Err(error.clone()));
                }
                continue;
            }
        }
        match connect(&endpoint).await {
            Ok(stream) => {
                debug!(backend = %endpoint.address, db = endpoint.db, "backend connected");
                let (reason, in_flight) = serve(&endpoint, stream, first, &mut jobs).await;
                let Some(reason) = reason else {
                    return;
                };
                warn!(backend = %endpoint.address, %reason, "backend connection lost");
                let error = BackendError::unavailable(&endpoint.address, reason.clone());
                for reply in in_flight {
                    let _ = reply.send(Err(error.clone()));
                }
                last_failure = Some((Instant::now(), reason));
            }
            Err(reason) => {
                warn!(backend = %endpoint.address, %reason, "backend connect failed");
                let error = BackendError::unavailable(&endpoint.address, reason.clone());
                let _ = first.reply.send(Err(error.clone()));
                while let Ok(job) = jobs.try_recv() {
                    let _ = job.reply.send(Err(error.clone()));
                }
                last_failure = Some((Instant::now(), reason));
            }
        }
    }
}

/// Runs a live connection until it breaks (returns the reason) or every handle is gone (returns `None`).
/// Also returns the requests still waiting for a reply, so the caller can fail them.
async fn serve(
    endpoint: &Endpoint,
    stream: TcpStream,
    first: Job,
    jobs: &mut mpsc::UnboundedReceiver<Job>,
) -> (Option<String>, Vec<oneshot::Sender<BackendReply>>) {
    let (mut reader, mut writer) = stream.into_split();
    let mut decoder = ReplyDecoder::new(Limits::default());
    let mut read_buffer = BytesMut::with_capacity(64 * 1024);
    let mut write_buffer = BytesMut::with_capacity(64 * 1024);
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut pending_first = Some(first);
    let command_timeout = endpoint.command_timeout;
    let mut handles_gone = false;
    let deadline = tokio::time::sleep(command_timeout);
    tokio::pin!(deadline);

    let reason = loop {
        if let Some(job) = pending_first.take() {
            let was_idle = in_flight.is_empty();
            // Coalescing: let the event loop run once more (it polls for I/O before resuming a task that
            // yielded), so the clients whose requests arrived meanwhile add them to this write. Fewer, larger
            // writes mean fewer reads and wake-ups in Redis; cluster GET/SET at `-P 1` gained about 15%.
            tokio::task::yield_now().await;
            let now = Instant::now();
            queue_job(job, now, &mut write_buffer, &mut in_flight);
            while write_buffer.len() < MAX_WRITE_BATCH && in_flight.len() < MAX_IN_FLIGHT {
                match jobs.try_recv() {
                    Ok(job) => queue_job(job, now, &mut write_buffer, &mut in_flight),
                    Err(_) => break,
                }
            }
            if was_idle {
                if let Some(front) = in_flight.front() {
                    deadline.as_mut().reset(front.sent + command_timeout);
                }
            }
            match tokio::time::timeout(command_timeout, writer.write_all(&write_buffer)).await {
                Ok(Ok(())) => write_buffer.clear(),
                Ok(Err(e)) => break format!("write failed: {e}"),
                Err(_) => break format!("write blocked for {} ms", command_timeout.as_millis()),
            }
        }
        tokio::select! {
            biased;
            read = reader.read_buf(&mut read_buffer) => {
                match read {
                    Ok(0) => break "connection closed by the backend".to_owned(),
                    Ok(_) => {}
                    Err(e) => break format!("read failed: {e}"),
                }
                let mut front_changed = false;
                loop {
                    match decoder.decode(&mut read_buffer) {
                        Ok(Some(frame)) => {
                            // RESP3 push frames are not replies to a request (we never enable tracking on shared
                            // connections, so none should come); skip them rather than mis-assign replies.
                            if frame.first() == Some(&b'>') {
                                continue;
                            }
                            let Some(front) = in_flight.front_mut() else {
                                return (Some("reply without a request (protocol out of step)".to_owned()), Vec::new());
                            };
                            front.remaining -= 1;
                            if front.remaining > 0 {
                                front.collected.extend_from_slice(&frame);
                                continue;
                            }
                            if let Some(done) = in_flight.pop_front() {
                                if let Some(reply) = done.reply {
                                    let bytes = if done.collected.is_empty() {
                                        frame
                                    } else {
                                        let mut all = done.collected;
                                        all.extend_from_slice(&frame);
                                        all.freeze()
                                    };
                                    let _ = reply.send(Ok(bytes));
                                }
                            }
                            front_changed = true;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let reason = format!("bad reply from backend: {e}");
                            return (Some(reason), in_flight.into_iter().filter_map(|entry| entry.reply).collect());
                        }
                    }
                }
                if handles_gone && in_flight.is_empty() {
                    return (None, Vec::new());
                }
                if front_changed {
                    if let Some(front) = in_flight.front() {
                        deadline.as_mut().reset(front.sent + command_timeout);
                    }
                }
            }
            job = jobs.recv(), if !handles_gone && in_flight.len() < MAX_IN_FLIGHT => {
                match job {
                    Some(job) => pending_first = Some(job),
                    None => {
                        if in_flight.is_empty() {
                            return (None, Vec::new());
                        }
                        // No handles left, but replies are owed: keep reading until they arrive or time out.
                        handles_gone = true;
                    }
                }
            }
            () = &mut deadline, if !in_flight.is_empty() => {
                break format!("no reply within {} ms", command_timeout.as_millis());
            }
        }
    };
    (
        Some(reason),
        in_flight
            .into_iter()
            .filter_map(|entry| entry.reply)
            .collect(),
    )
}

fn queue_job(
    job: Job,
    now: Instant,
    write_buffer: &mut BytesMut,
    in_flight: &mut VecDeque<InFlight>,
) {
    write_buffer.extend_from_slice(&job.request);
    for _ in 0..job.discard_replies {
        in_flight.push_back(InFlight {
            reply: None,
            remaining: 1,
            collected: BytesMut::new(),
            sent: now,
        });
    }
    in_flight.push_back(InFlight {
        reply: Some(job.reply),
        remaining: job.replies.max(1),
        collected: BytesMut::new(),
        sent: now,
    });
}
