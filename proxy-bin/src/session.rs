//! One client connection: framing requests, routing them, and writing replies back in order.
//!
//! The session reads requests as they come (many in flight: pipelining), sends each to its shared backend
//! connection, and keeps a queue of pending replies in request order. Replies that are ready are gathered and
//! written with one `write`. When a client has `max_pending_requests` in flight, the session stops reading from
//! it until replies drain (backpressure), so a fast writer cannot make the proxy buffer without bound.
//!
//! Connection state lives in the session, never in a shared backend connection:
//! - SELECT and HELLO pick which shared connection (db, protocol) serves the client; the proxy answers them.
//! - CLIENT SETNAME/GETNAME/ID are answered from the session.
//! - MULTI/WATCH, blocking commands and SUBSCRIBE move the client to a backend connection of its own (a
//!   dedicated connection) for the rest of its session; see [`Session::run_dedicated`].
//!
//! Whenever the backend connection that serves a client changes, the session first waits until every earlier
//! reply has arrived (a barrier), so commands never overtake each other.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cluster_router::commands::{self, CommandError, CommandSpec, ProxyHandling};
use resp_codec::{Limits, ReplyDecoder, Request, RequestDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::codec::Decoder;
use tracing::debug;

use crate::backend::{connect, one_line, BackendError, BackendReply, SharedConnection};
use crate::pool::StandalonePool;
use crate::reply;
use crate::server::ProxyState;

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
}

/// What the client will get for one request, in order.
enum Pending {
    /// Already known (an error, or a command the proxy answers itself).
    Ready(Bytes),
    /// Waiting for the backend.
    Waiting(oneshot::Receiver<BackendReply>, Expect),
}

/// How to turn a backend reply into the client's reply.
#[derive(Clone, Copy)]
enum Expect {
    /// Pass the reply through.
    Forward,
    /// A PING sent to check a newly selected db: success becomes `+OK`.
    SelectCheck,
}

/// A client's protocol state and its link to a pool.
pub struct Session {
    id: u64,
    state: Arc<ProxyState>,
    stream: TcpStream,
    read_buffer: BytesMut,
    write_buffer: BytesMut,
    decoder: RequestDecoder,
    pending: VecDeque<Pending>,
    /// A request that must wait until `pending` is empty (a barrier) before it runs.
    deferred: Option<Request>,
    closing: Option<SessionEnd>,
    db: u32,
    resp3: bool,
    name: Option<Bytes>,
    pool: Arc<StandalonePool>,
    route: Option<SharedConnection>,
    /// Set when the client needs its own backend connection; the session then switches to dedicated mode.
    go_dedicated: Option<Request>,
}

impl Session {
    pub fn new(id: u64, state: Arc<ProxyState>, stream: TcpStream) -> Session {
        let limits = state.client_codec_limits();
        let pool = Arc::clone(state.default_pool());
        Session {
            id,
            stream,
            read_buffer: BytesMut::with_capacity(16 * 1024),
            write_buffer: BytesMut::with_capacity(16 * 1024),
            decoder: RequestDecoder::new(limits),
            pending: VecDeque::new(),
            deferred: None,
            closing: None,
            db: 0,
            resp3: false,
            name: None,
            pool,
            route: None,
            go_dedicated: None,
            state,
        }
    }

    /// Serves the client until it leaves or breaks the protocol.
    pub async fn run(mut self) -> SessionEnd {
        match self.run_shared().await {
            Ok(end) | Err(end) => end,
        }
    }

    async fn run_shared(&mut self) -> Result<SessionEnd, SessionEnd> {
        let max_pending = self.state.config().client_limits.max_pending_requests;
        loop {
            self.collect_ready_replies();
            if !self.write_buffer.is_empty() {
                self.stream.write_all(&self.write_buffer).await?;
                self.write_buffer.clear();
            }
            if self.pending.is_empty() {
                if let Some(end) = self.closing.take() {
                    return Ok(end);
                }
                if let Some(request) = self.deferred.take() {
                    self.handle(request);
                    continue;
                }
                if let Some(request) = self.go_dedicated.take() {
                    return self.run_dedicated(request).await;
                }
            }
            // Frame what is already buffered before reading more.
            if self.closing.is_none()
                && self.deferred.is_none()
                && self.go_dedicated.is_none()
                && self.pending.len() < max_pending
                && !self.read_buffer.is_empty()
            {
                if self.decode_buffered(max_pending) {
                    continue;
                }
            }
            let can_read = self.closing.is_none()
                && self.deferred.is_none()
                && self.go_dedicated.is_none()
                && self.pending.len() < max_pending;
            let front_waiting = matches!(self.pending.front(), Some(Pending::Waiting(..)));
            tokio::select! {
                biased;
                reply = wait_front(&mut self.pending), if front_waiting => {
                    self.pending.pop_front();
                    self.write_buffer.extend_from_slice(&reply);
                }
                read = self.stream.read_buf(&mut self.read_buffer), if can_read => {
                    if read? == 0 {
                        return Ok(SessionEnd::ClientClosed);
                    }
                }
            }
        }
    }

    /// Moves every reply that is already available, from the front of the queue, into the write buffer.
    fn collect_ready_replies(&mut self) {
        while let Some(front) = self.pending.front_mut() {
            let bytes = match front {
                Pending::Ready(bytes) => std::mem::take(bytes),
                Pending::Waiting(receiver, expect) => match receiver.try_recv() {
                    Ok(reply) => convert_reply(reply, *expect),
                    Err(oneshot::error::TryRecvError::Empty) => return,
                    Err(oneshot::error::TryRecvError::Closed) => lost_reply(),
                },
            };
            self.write_buffer.extend_from_slice(&bytes);
            self.pending.pop_front();
        }
    }

    /// Frames and handles buffered requests until the buffer runs dry or something asks to pause.
    /// Returns whether it handled anything.
    fn decode_buffered(&mut self, max_pending: usize) -> bool {
        let mut handled = false;
        while self.closing.is_none()
            && self.deferred.is_none()
            && self.go_dedicated.is_none()
            && self.pending.len() < max_pending
        {
            match self.decoder.decode(&mut self.read_buffer) {
                Ok(Some(request)) => {
                    self.handle(request);
                    handled = true;
                }
                Ok(None) => return handled,
                Err(error) => {
                    // Like redis-server: reply with the protocol error, then close the connection.
                    self.pending.push_back(Pending::Ready(error.to_reply()));
                    self.closing = Some(SessionEnd::Protocol(error.to_string()));
                    return true;
                }
            }
        }
        handled
    }

    /// Routes one request in shared mode.
    fn handle(&mut self, request: Request) {
        let spec = match commands::lookup(&reply::RequestArgs(&request)) {
            Ok(spec) => spec,
            Err(error) => {
                self.pending
                    .push_back(Pending::Ready(Bytes::from(error.to_reply())));
                return;
            }
        };
        let needs_barrier = changes_connection(spec, &request);
        if needs_barrier && !self.pending.is_empty() {
            self.deferred = Some(request);
            return;
        }
        match spec.proxy {
            ProxyHandling::Forward => self.forward(request),
            ProxyHandling::Dedicated | ProxyHandling::DedicatedWhenBlocking => {
                if needs_barrier {
                    self.go_dedicated = Some(request);
                } else {
                    self.forward(request);
                }
            }
            ProxyHandling::Local => self.answer_locally(spec, request),
            _ => self.pending.push_back(Pending::Ready(unsupported(&request))),
        }
    }

    fn forward(&mut self, request: Request) {
        let route = match &self.route {
            Some(route) => route,
            None => self.route.insert(
                self.pool
                    .shared_connection(self.id, self.db, self.resp3),
            ),
        };
        let receiver = route.send(request.raw().clone());
        self.pending
            .push_back(Pending::Waiting(receiver, Expect::Forward));
    }

    fn answer_locally(&mut self, spec: &CommandSpec, request: Request) {
        let reply = match spec.name {
            "quit" => {
                self.closing = Some(SessionEnd::Quit);
                reply::ok()
            }
            "select" => return self.select(&request),
            "hello" => self.hello(&request),
            "reset" => {
                self.db = 0;
                self.resp3 = false;
                self.name = None;
                self.route = None;
                reply::simple("RESET")
            }
            _ => self.answer_session_command(spec, &request),
        };
        self.pending.push_back(Pending::Ready(reply));
    }

    /// Commands answered from session state in both shared and dedicated mode.
    fn answer_session_command(&mut self, spec: &CommandSpec, request: &Request) -> Bytes {
        match spec.name {
            "auth" => reply::error(
                "ERR AUTH <password> called without any password configured for the default user. \
                 Are you sure your configuration is correct?",
            ),
            "client|setname" => match request.arg(2) {
                Some(name) if name.iter().any(|b| *b <= b' ' || *b > b'~') => reply::error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                ),
                Some(name) => {
                    self.name = if name.is_empty() {
                        None
                    } else {
                        Some(Bytes::copy_from_slice(name))
                    };
                    reply::ok()
                }
                None => reply::wrong_arity("client|setname"),
            },
            "client|getname" => match &self.name {
                Some(name) => reply::bulk(name),
                None => reply::null(self.resp3),
            },
            "client|id" => reply::integer(self.id as i64),
            "client|setinfo" => reply::ok(),
            _ => unsupported(request),
        }
    }

    /// SELECT: the session moves to the shared connection of that db. A PING on it checks that the db exists.
    fn select(&mut self, request: &Request) {
        let Some(db) = request.arg(1).and_then(parse_u32) else {
            self.pending.push_back(Pending::Ready(reply::error(
                "ERR value is not an integer or out of range",
            )));
            return;
        };
        self.db = db;
        let route = self.pool.shared_connection(self.id, db, self.resp3);
        let receiver = route.send(Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"));
        self.route = Some(route);
        self.pending
            .push_back(Pending::Waiting(receiver, Expect::SelectCheck));
    }

    /// HELLO [protover [AUTH user pass] [SETNAME name]]
    fn hello(&mut self, request: &Request) -> Bytes {
        let mut resp3 = self.resp3;
        if let Some(version) = request.arg(1) {
            match version {
                b"2" => resp3 = false,
                b"3" => resp3 = true,
                _ if parse_u32(version).is_none() => {
                    return reply::error("ERR Protocol version is not an integer or out of range")
                }
                _ => return reply::error("NOPROTO unsupported protocol version"),
            }
        }
        let mut index = 2;
        let mut new_name = None;
        while index < request.argc() {
            let option = request.arg(index).unwrap_or_default();
            if option.eq_ignore_ascii_case(b"AUTH") && index + 2 < request.argc() {
                return reply::error(
                    "ERR AUTH <password> called without any password configured for the default user. \
                     Are you sure your configuration is correct?",
                );
            } else if option.eq_ignore_ascii_case(b"SETNAME") && index + 1 < request.argc() {
                new_name = request.arg(index + 1).map(Bytes::copy_from_slice);
                index += 2;
            } else {
                return reply::error(&format!(
                    "ERR Syntax error in HELLO option '{}'",
                    one_line(&String::from_utf8_lossy(option))
                ));
            }
        }
        if resp3 != self.resp3 {
            self.resp3 = resp3;
            self.route = None;
        }
        if let Some(name) = new_name {
            self.name = Some(name);
        }
        reply::hello(self.id, resp3)
    }

    /// Serves the rest of the session over a backend connection of its own.
    ///
    /// Requests are still framed and checked; backend bytes are framed and passed on in order. Commands the
    /// proxy answers itself get their reply queued behind the backend replies still owed, so order holds.
    /// Once the client subscribes, replies no longer pair with requests (pushes arrive at any time); from then on
    /// the proxy passes every backend frame through as it comes.
    async fn run_dedicated(&mut self, first: Request) -> Result<SessionEnd, SessionEnd> {
        let endpoint = self.pool.endpoint(self.db, self.resp3);
        let backend = match connect(&endpoint).await {
            Ok(stream) => stream,
            Err(reason) => {
                let error = BackendError::unavailable(&endpoint.address, reason);
                self.pending.push_back(Pending::Ready(error.to_reply()));
                return Box::pin(self.run_shared()).await;
            }
        };
        debug!(backend = %endpoint.address, "client moved to a dedicated backend connection");
        self.route = None;
        let (mut backend_reader, mut backend_writer) = backend.into_split();
        let mut dedicated = Dedicated::default();
        let mut backend_buffer = BytesMut::with_capacity(16 * 1024);
        let mut reply_decoder = ReplyDecoder::new(Limits::default());
        let mut to_backend = BytesMut::new();
        self.handle_dedicated(first, &mut dedicated, &mut to_backend);

        loop {
            if !to_backend.is_empty() {
                backend_writer
                    .write_all(&to_backend)
                    .await
                    .map_err(|e| SessionEnd::BackendLost(e.to_string()))?;
                to_backend.clear();
            }
            if !self.write_buffer.is_empty() {
                self.stream.write_all(&self.write_buffer).await?;
                self.write_buffer.clear();
            }
            if dedicated.slots.is_empty() {
                if let Some(end) = self.closing.take() {
                    return Ok(end);
                }
            }
            // Frame buffered client requests (bounded by the pending limit, as in shared mode).
            let max_pending = self.state.config().client_limits.max_pending_requests;
            let mut handled = false;
            while self.closing.is_none() && dedicated.slots.len() < max_pending {
                match self.decoder.decode(&mut self.read_buffer) {
                    Ok(Some(request)) => {
                        self.handle_dedicated(request, &mut dedicated, &mut to_backend);
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
            let can_read = self.closing.is_none() && dedicated.slots.len() < max_pending;
            tokio::select! {
                read = backend_reader.read_buf(&mut backend_buffer) => {
                    let read = read.map_err(|e| SessionEnd::BackendLost(e.to_string()))?;
                    loop {
                        match reply_decoder.decode(&mut backend_buffer) {
                            Ok(Some(frame)) => dedicated.backend_frame(frame, &mut self.write_buffer),
                            Ok(None) => break,
                            Err(e) => return Err(SessionEnd::BackendLost(format!("bad reply: {e}"))),
                        }
                    }
                    if read == 0 {
                        // Redis closes after QUIT; otherwise the backend went away with the client's state.
                        if !dedicated.slots.is_empty() {
                            let error = BackendError::unavailable(&endpoint.address, "connection closed by the backend");
                            for _ in 0..dedicated.slots.len() {
                                self.write_buffer.extend_from_slice(&error.to_reply());
                            }
                        }
                        self.stream.write_all(&self.write_buffer).await?;
                        return Err(SessionEnd::BackendLost("connection closed by the backend".to_owned()));
                    }
                }
                read = self.stream.read_buf(&mut self.read_buffer), if can_read => {
                    if read? == 0 {
                        return Ok(SessionEnd::ClientClosed);
                    }
                }
            }
        }
    }

    fn handle_dedicated(
        &mut self,
        request: Request,
        dedicated: &mut Dedicated,
        to_backend: &mut BytesMut,
    ) {
        let spec = match commands::lookup(&reply::RequestArgs(&request)) {
            Ok(spec) => spec,
            Err(error) => {
                dedicated.queue_local(Bytes::from(error.to_reply()), &mut self.write_buffer);
                return;
            }
        };
        let forward = match spec.proxy {
            ProxyHandling::Forward
            | ProxyHandling::Dedicated
            | ProxyHandling::DedicatedWhenBlocking => true,
            // On its own connection the backend can keep this state itself; the session mirrors it.
            ProxyHandling::Local => match spec.name {
                "select" => {
                    if let Some(db) = request.arg(1).and_then(parse_u32) {
                        self.db = db;
                    }
                    true
                }
                "hello" => {
                    let has_auth = request.args().any(|arg| arg.eq_ignore_ascii_case(b"AUTH"));
                    if has_auth {
                        let reply = self.hello(&request);
                        dedicated.queue_local(reply, &mut self.write_buffer);
                        return;
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
                "quit" => {
                    self.closing = Some(SessionEnd::Quit);
                    true
                }
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
        };
        if forward {
            if matches!(spec.name, "subscribe" | "psubscribe" | "ssubscribe") {
                dedicated.subscribed = true;
            }
            to_backend.extend_from_slice(request.raw());
            if !dedicated.subscribed {
                dedicated.slots.push_back(None);
            }
        }
    }
}

/// Reply bookkeeping on a dedicated connection: `None` is a reply owed by the backend, `Some` a local reply
/// waiting behind it.
#[derive(Default)]
struct Dedicated {
    slots: VecDeque<Option<Bytes>>,
    subscribed: bool,
}

impl Dedicated {
    fn queue_local(&mut self, reply: Bytes, out: &mut BytesMut) {
        if self.slots.is_empty() {
            out.extend_from_slice(&reply);
        } else {
            self.slots.push_back(Some(reply));
        }
    }

    fn backend_frame(&mut self, frame: Bytes, out: &mut BytesMut) {
        out.extend_from_slice(&frame);
        if self.subscribed {
            // Pushes and subscription confirmations do not pair with requests.
            self.slots.retain(|slot| slot.is_some());
        } else if let Some(None) = self.slots.front() {
            self.slots.pop_front();
        }
        while let Some(Some(_)) = self.slots.front() {
            if let Some(Some(local)) = self.slots.pop_front() {
                out.extend_from_slice(&local);
            }
        }
    }
}

/// Waits for the reply at the front of the queue (which the caller checked is `Waiting`).
async fn wait_front(pending: &mut VecDeque<Pending>) -> Bytes {
    match pending.front_mut() {
        Some(Pending::Waiting(receiver, expect)) => match receiver.await {
            Ok(reply) => convert_reply(reply, *expect),
            Err(_) => lost_reply(),
        },
        _ => std::future::pending().await,
    }
}

fn convert_reply(reply: BackendReply, expect: Expect) -> Bytes {
    match (reply, expect) {
        (Ok(frame), Expect::Forward) => frame,
        (Ok(frame), Expect::SelectCheck) if frame.first() == Some(&b'-') => frame,
        (Ok(_), Expect::SelectCheck) => reply::ok(),
        (Err(BackendError::Unavailable { reason, .. }), Expect::SelectCheck)
            if reason.contains("DB index is out of range") =>
        {
            reply::error("ERR DB index is out of range")
        }
        (Err(error), _) => error.to_reply(),
    }
}

fn lost_reply() -> Bytes {
    reply::error("ERR backend connection closed before replying")
}

/// Commands after which the client is served by another backend connection.
fn changes_connection(spec: &CommandSpec, request: &Request) -> bool {
    match spec.proxy {
        ProxyHandling::Local => matches!(spec.name, "select" | "hello" | "reset"),
        _ => commands::needs_dedicated_connection(spec, &reply::RequestArgs(request)),
    }
}

/// The reply for a command the table knows but rkproxy does not serve.
fn unsupported(request: &Request) -> Bytes {
    Bytes::from(CommandError::unsupported(&reply::RequestArgs(request)).to_reply())
}

fn parse_u32(bytes: &[u8]) -> Option<u32> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}
