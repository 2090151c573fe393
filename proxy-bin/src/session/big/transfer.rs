//! A big request carried by the session itself on a lane connection it borrows whole: the request's bytes go
//! to the server as they arrive from the client, and the reply's bytes to the client as they arrive from the
//! server, so the proxy holds a window of [`LANE_WINDOW`] bytes per big request, never the value.
//!
//! A request is streamed when the client's read buffer starts with a multibulk whose argument announces at
//! least `big_requests.threshold_bytes` and every argument before it (the command name and the keys) has
//! arrived: the request is routed and policed with those (the big argument and any after it stand in empty),
//! and the rest passes through [`FrameScanner`], which checks the grammar and finds where the request ends.
//! Requests whose keys come after the big argument, and requests that need what the proxy does with whole
//! requests (CLIENT REPLY filtering, transactions, ...) are framed whole as before.
//!
//! When the client is on plain TCP and the lane connection plaintext (TCP or a Unix domain socket), the big
//! argument's data is not even read: it
//! moves from one socket to the other by `splice(2)`, a pipe's worth at a time (`pools::big_lane::SplicePipe`,
//! 1 MiB of kernel pages, the lane connection's), and the scanner counts it unseen
//! (`FrameScanner::skip_bulk_data`). That saves the two copies of every byte through the proxy's memory, most
//! of its CPU time on big requests. Every piece of a streamed request but the last goes to the lane with
//! `MSG_MORE` (`LaneLease::write_more`), so the lane carries full segments. Over TLS the bytes are read and
//! written as they arrive.
//!
//! Ordering: a transfer starts only once every earlier reply of the client has arrived (`pending` is empty)
//! and the session reads no other request until the transfer ends, the lane's barrier on both sides. So the
//! lane reply is the client's next reply: once the earlier replies are written, it is written as it arrives
//! (unless it is an error, which is short and may be a cluster redirect, or needs rewriting).
//!
//! Failures: a client that closes or breaks the protocol mid-request, and a server that fails mid-request or
//! mid-reply, close the lane connection (dropped, never given back), so its next user cannot read a reply to
//! half a request. A request the server could not take is still read to its end from the client, which then
//! gets the error; a reply that fails half written closes the client's connection, since nothing else can tell
//! it the value is cut short.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use cluster_router::commands::{self, CommandSpec, ProxyHandling};
use cluster_router::redirect::{classify_reply, ClusterReplyKind};
use cluster_router::topology::NodeAddr;
use resp_codec::{
    big_request_head, put_bulk, put_header, BigRequestHead, FrameScanner, HeadScan, Limits,
    Request, RequestDecoder,
};
use tenant_policy::{police, OverLimit, Policed, Verdict as PolicyVerdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::super::observe::LaneTiming;
use super::super::pending::Pending;
use super::super::{Session, SessionEnd};
use super::first_key;
use crate::backend::{BackendError, Broken};
use crate::pools::big_lane::{BigLane, LaneLease, LANE_WINDOW};
use crate::pools::PoolHandle;
use crate::tls::ClientStream;

/// On a cluster pool, values smaller than this are framed whole, not streamed: a request answered MOVED or ASK
/// (its slot migrating) must be sent again, which needs the whole value; a streamed value is gone by then. Up
/// to this size the proxy keeps it (as it did before streaming); beyond it, a redirected streamed request gets
/// [`TransferError::Redirected`], a rare error in exchange for not holding hundreds of MB.
const CLUSTER_MIN_STREAMED: usize = 8 * 1024 * 1024;

/// Why a streamed request got an error of the proxy's own. The text is the client's error reply (after `-`).
#[derive(Debug, thiserror::Error)]
pub(in crate::session) enum TransferError {
    #[error(
        "ERR big request redirected by {node} while it was streamed; it was not run, try again"
    )]
    Redirected { node: Arc<str> },
    #[error("ERR rkproxy cannot stream this request as the tenant's rules rewrite it")]
    RewriteShape,
}

impl TransferError {
    fn to_reply(&self) -> Bytes {
        Bytes::from(format!("-{self}\r\n"))
    }
}

/// A big request the session carries on a lane connection (see the module docs).
pub(in crate::session) struct LaneTransfer {
    pub(super) lane: Arc<BigLane>,
    /// The command's stats label (its time is recorded when the transfer ends).
    pub(super) command: &'static str,
    /// Sent first: the whole request, or a streamed request's head (the tenant's rewriting applied).
    pub(super) head: Bytes,
    /// A streamed request: the scanner of the rest (in the read buffer or still in the client's socket), and
    /// what goes after it (arguments the tenant's rules add, such as a default TTL).
    pub(super) rest: Option<(FrameScanner, Bytes)>,
    /// The request's size (announced, for a streamed one), for what the lane learns.
    pub(super) request_len: usize,
    /// The request's first key, remembered when the request or its reply is big.
    pub(super) key: Option<Bytes>,
    /// The reply's keys lose the tenant's prefix: the reply is read whole.
    pub(super) rewrite: Option<&'static CommandSpec>,
    /// Cluster pools: the node, so a redirected whole request can go again.
    pub(super) node: Option<Arc<NodeAddr>>,
    /// The request is not sent: it is read to its end and answered with this.
    pub(super) refusal: Option<Bytes>,
    /// Over the tenant's traffic limit: sent from then on.
    pub(super) wait_until: Option<Instant>,
}

/// After a value was spliced, reads from the client take at most this much: the rest of the request is short,
/// and the next request's value is better spliced than read.
const SPLICED_TAIL_WINDOW: usize = 16 * 1024;

/// What [`Session::splice_bulk_data`] did.
enum Spliced {
    /// Nothing: a socket is not plaintext, or no pipe could be made; the bytes are read and written instead.
    No,
    /// This many bytes went from the client to the lane.
    Moved(usize),
    /// This many bytes were taken from the client, and the lane failed (they are lost with its connection).
    LaneFailed(usize, BackendError),
}

/// How the request went to the server.
enum RequestOutcome {
    /// Written whole; its reply is owed.
    Sent(LaneLease),
    /// Not sent (refused, or the lane failed): the client gets this reply, once the request was read.
    Unsent(Bytes),
    /// The client broke the protocol: its error is queued and the session closes; nothing more is done.
    ClientBroke,
}

impl Session {
    /// Called when the read buffer holds no whole request: starts a streamed transfer when the buffer starts
    /// with the head of a big request the lane can carry (see the module docs). Returns whether it did.
    pub(in crate::session) fn begin_streamed_request(&mut self) -> bool {
        if self.lane_transfer.is_some() || self.read_buffer.first() != Some(&b'*') {
            return false;
        }
        let Some(threshold) = self.pool.big_lanes().map(|lanes| lanes.threshold()) else {
            return false;
        };
        let limits = *self.decoder.limits();
        let HeadScan::Big(head) = big_request_head(&self.read_buffer, threshold, &limits) else {
            return false;
        };
        if self.cluster.is_some() && head.big_len < CLUSTER_MIN_STREAMED {
            return false;
        }
        let stand_in = self.stand_in(&head);
        let Some(spec) = self.streamable(&head, &stand_in) else {
            return false;
        };
        let Some((lane, node)) = self.lane_for(spec, &stand_in) else {
            return false;
        };
        let announced = head.head_len + head.big_len + 2;
        let mut transfer = LaneTransfer {
            lane,
            command: spec.name,
            head: Bytes::copy_from_slice(&self.read_buffer[..head.head_len]),
            rest: Some((head.rest_scanner(limits), Bytes::new())),
            request_len: announced,
            key: first_key(spec, &stand_in).map(Bytes::copy_from_slice),
            rewrite: None,
            node,
            refusal: None,
            wait_until: None,
        };
        self.police_streamed(spec, &stand_in, &head, &mut transfer);
        self.count_request(&stand_in);
        // Requests framed before this one go out first; the transfer starts once they are answered.
        self.flush_batch();
        let _ = self.read_buffer.split_to(head.head_len);
        self.decoder = RequestDecoder::new(limits);
        self.lane_transfer = Some(Box::new(transfer));
        true
    }

    /// The request with its complete arguments, the big one and those after it empty.
    fn stand_in(&self, head: &BigRequestHead) -> Request {
        let known = head.args.iter().map(|span| &self.read_buffer[span.clone()]);
        let empty = std::iter::repeat_n(&b""[..], head.argc - head.big_index);
        Request::from_args(known.chain(empty))
    }

    /// The command of a request that can be streamed: a plain forwarded command (not the proxy's own, not
    /// Kafka's, not in a cluster transaction) whose keys all come before the big argument, on a session whose
    /// replies are not filtered. With tenants, the big argument must be the last one, so the tenant's rules see
    /// the request as it is (a default TTL is added after it).
    fn streamable(
        &mut self,
        head: &BigRequestHead,
        stand_in: &Request,
    ) -> Option<&'static CommandSpec> {
        let unusual = self.retired.is_some()
            || self.client.reply_filter.is_some()
            || self.may_concern_kafka(stand_in)
            || self
                .cluster
                .as_ref()
                .is_some_and(|cluster| cluster.in_transaction())
            || (self.state.tenants().is_some() && head.big_index + 1 != head.argc);
        if unusual {
            return None;
        }
        let spec = self.lookup(stand_in).ok()?;
        if spec.proxy != ProxyHandling::Forward || spec.name.starts_with("slowlog|") {
            return None;
        }
        let keys = commands::key_indices(spec, stand_in).ok()?;
        keys.iter()
            .all(|index| index < head.big_index)
            .then_some(spec)
    }

    /// Applies the tenant's rules to a streamed request (its size being the announced one): the head is
    /// rewritten (key prefix; arguments added go after the request), the request waits, or it is refused.
    fn police_streamed(
        &mut self,
        spec: &'static CommandSpec,
        stand_in: &Request,
        head: &BigRequestHead,
        transfer: &mut LaneTransfer,
    ) {
        if self.state.tenants().is_none() {
            return;
        }
        let policed = Policed {
            spec: Some(spec),
            args: stand_in,
            pool: self.pool.name(),
            size: transfer.request_len,
            over_limit: OverLimit::Wait,
        };
        match police(self.tenant().map(|tenant| &**tenant), policed) {
            PolicyVerdict::Proceed => {}
            PolicyVerdict::Rewritten(args) => match rewritten_head(&args, head) {
                Some((bytes, tail)) => {
                    let rewritten = Request::from_args(&args);
                    transfer.key = first_key(spec, &rewritten).map(Bytes::copy_from_slice);
                    transfer.head = bytes;
                    if let Some((_, after)) = transfer.rest.as_mut() {
                        *after = tail;
                    }
                }
                None => transfer.refusal = Some(TransferError::RewriteShape.to_reply()),
            },
            PolicyVerdict::Wait(delay) => transfer.wait_until = Some(Instant::now() + delay),
            PolicyVerdict::Refuse(error) => {
                self.stats
                    .error(super::super::observe::refusal_kind(&error), 1);
                transfer.refusal = Some(error.to_reply());
            }
        }
        transfer.rewrite = self.reply_rewrite(spec);
    }

    /// Carries the session's lane transfer, if any: sends the request, reads its reply, and writes or queues
    /// the reply. Every earlier reply has arrived (`pending` is empty).
    pub(in crate::session) async fn run_lane_transfer(&mut self) -> Result<(), SessionEnd> {
        let Some(transfer) = self.lane_transfer.take() else {
            return Ok(());
        };
        // The earlier replies are written first: the lane reply may go straight to the socket after them.
        self.flush_output().await?;
        let started = self.lane_clock();
        if let Some(until) = transfer.wait_until {
            tokio::time::sleep_until(until).await;
        }
        let lease = match &transfer.refusal {
            Some(refusal) => Err(refusal.clone()),
            None => match transfer.lane.checkout().await {
                Ok(lease) => Ok(lease),
                Err(busy) => {
                    self.count_lane_busy(transfer.node.as_ref());
                    Err(busy.to_reply())
                }
            },
        };
        let dispatched = self.lane_clock();
        match self.send_lane_request(&transfer, lease).await? {
            RequestOutcome::Sent(lease) => {
                let answered = self.carry_lane_reply(&transfer, lease).await?;
                // An error reply handed to the reply queue (a cluster redirect to follow) is recorded there.
                if answered && self.pending.is_empty() {
                    self.observe_lane_request(LaneTiming {
                        command: transfer.command,
                        head: &transfer.head,
                        node: transfer.node.as_ref(),
                        started,
                        dispatched,
                    });
                }
                Ok(())
            }
            RequestOutcome::Unsent(reply) => {
                self.gathered.buffer.extend_from_slice(&reply);
                Ok(())
            }
            RequestOutcome::ClientBroke => Ok(()),
        }
    }

    /// Writes the request to the lane connection: the head, then (streamed) the rest as it arrives from the
    /// client. When the lane cannot take it, the rest is still read from the client and dropped.
    async fn send_lane_request(
        &mut self,
        transfer: &LaneTransfer,
        lease: Result<LaneLease, Bytes>,
    ) -> Result<RequestOutcome, SessionEnd> {
        // A streamed request's head, and every piece of it but the last, goes with MSG_MORE (`write_more`), so
        // the kernel sends it in the value's full segments, not in short packets of its own.
        let streamed = transfer.rest.is_some();
        let mut lease = match lease {
            Ok(mut lease) => match write_piece(&mut lease, &transfer.head, streamed).await {
                Ok(()) => Ok(lease),
                Err(failure) => {
                    self.count_lane_failure(&failure);
                    Err(failure.to_reply())
                }
            },
            Err(reply) => Err(reply),
        };
        if let Some((scanner, after)) = &transfer.rest {
            let mut scanner = scanner.clone();
            let mut window = LANE_WINDOW;
            loop {
                let taken = match scanner.feed(&self.read_buffer) {
                    Ok(taken) => taken,
                    Err(error) => {
                        // Like a malformed request framed whole: the error, then the connection closes. The lane
                        // connection holds half a request and is dropped with the lease.
                        self.gathered.buffer.extend_from_slice(&error.to_reply());
                        self.closing = Some(SessionEnd::Protocol(error.to_string()));
                        return Ok(RequestOutcome::ClientBroke);
                    }
                };
                if taken > 0 {
                    // Dropped before the next read, so the read buffer's room is reused, not reallocated.
                    let chunk = self.read_buffer.split_to(taken);
                    let more = !scanner.is_complete() || !after.is_empty();
                    if let Ok(open) = &mut lease {
                        if let Err(failure) = write_piece(open, &chunk, more).await {
                            self.count_lane_failure(&failure);
                            lease = Err(failure.to_reply());
                        }
                    }
                }
                if scanner.is_complete() {
                    break;
                }
                if let (Some(remaining), Ok(open)) = (scanner.bulk_data_remaining(), &mut lease) {
                    match self.splice_bulk_data(open, remaining).await? {
                        Spliced::No => {}
                        Spliced::Moved(moved) => {
                            scanner.skip_bulk_data(moved);
                            // What follows the value is short (its `\r\n`, perhaps a few arguments): reading a
                            // whole window would read the next request's value too, which is better spliced.
                            window = SPLICED_TAIL_WINDOW;
                            continue;
                        }
                        Spliced::LaneFailed(moved, failure) => {
                            scanner.skip_bulk_data(moved);
                            self.count_lane_failure(&failure);
                            lease = Err(failure.to_reply());
                            continue;
                        }
                    }
                }
                self.read_request_bytes(window).await?;
            }
            if let Ok(open) = &mut lease {
                if let Err(failure) = open.write(after).await {
                    self.count_lane_failure(&failure);
                    lease = Err(failure.to_reply());
                }
            }
        }
        Ok(match lease {
            Ok(lease) => RequestOutcome::Sent(lease),
            Err(reply) => RequestOutcome::Unsent(reply),
        })
    }

    /// Moves the rest of a big argument's data (`remaining` bytes) from the client to the lane with `splice(2)`
    /// when both sockets are plaintext: at most a pipe's worth (a window) per call, so the proxy neither copies
    /// the value nor holds more than a window of it. Waits for the client like [`Session::read_request_bytes`].
    async fn splice_bulk_data(
        &mut self,
        lease: &mut LaneLease,
        remaining: usize,
    ) -> Result<Spliced, SessionEnd> {
        if !lease.is_plain() || !matches!(self.stream, ClientStream::Plain(_)) {
            return Ok(Spliced::No);
        }
        // Without a pipe (the process is out of descriptors) the value is copied as before.
        let Some(pipe) = lease.pipe() else {
            return Ok(Spliced::No);
        };
        let (deadline, end) = self.client_read_deadline();
        let ClientStream::Plain(client) = &self.stream else {
            return Ok(Spliced::No);
        };
        let fill = pipe.fill_from(client, remaining);
        let moved = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, fill).await {
                Ok(moved) => moved?,
                Err(_) => return Err(end),
            },
            None => fill.await?,
        };
        if moved == 0 {
            return Err(SessionEnd::ClientClosed);
        }
        self.last_activity = Instant::now();
        Ok(match lease.drain_pipe().await {
            Ok(()) => Spliced::Moved(moved),
            Err(failure) => Spliced::LaneFailed(moved, failure),
        })
    }

    /// How long the session waits for the client's next bytes mid-request, and why it ends when they do not
    /// come: before AUTH the authentication deadline, else `timeouts.idle_ms` (when on).
    fn client_read_deadline(&self) -> (Option<Instant>, SessionEnd) {
        let idle_ms = self.state.config().timeouts.idle_ms;
        if self.awaiting_auth() {
            (Some(self.auth_deadline), SessionEnd::AuthTimeout)
        } else if idle_ms > 0 {
            let idle = std::time::Duration::from_millis(idle_ms);
            (Some(Instant::now() + idle), SessionEnd::Idle)
        } else {
            (None, SessionEnd::Idle)
        }
    }

    /// Reads more of a streamed request from the client: at most `window` bytes, waiting as long as the client
    /// takes (a slow sender holds only its own lane connection), within [`Session::client_read_deadline`].
    async fn read_request_bytes(&mut self, window: usize) -> Result<(), SessionEnd> {
        let (deadline, end) = self.client_read_deadline();
        self.read_buffer.reserve(window);
        let mut room = (&mut self.read_buffer).limit(window);
        let read = match deadline {
            Some(deadline) => {
                match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut room)).await {
                    Ok(read) => read?,
                    Err(_) => return Err(end),
                }
            }
            None => self.stream.read_buf(&mut room).await?,
        };
        if read == 0 {
            return Err(SessionEnd::ClientClosed);
        }
        self.last_activity = Instant::now();
        Ok(())
    }

    /// Reads the reply from the lane connection. It is written to the client as it arrives once it proves big
    /// (a bulk string announced at the threshold or more, or a window's worth of anything but an error), or
    /// queued whole when small, an error (a cluster redirect is followed as for any routed request), or to be
    /// rewritten or filtered. Returns whether the reply arrived whole (else the lane failed, and was counted).
    async fn carry_lane_reply(
        &mut self,
        transfer: &LaneTransfer,
        mut lease: LaneLease,
    ) -> Result<bool, SessionEnd> {
        let may_stream = transfer.rewrite.is_none() && self.client.reply_filter.is_none();
        let threshold = transfer.lane.threshold();
        let mut scanner = FrameScanner::reply(Limits::for_backend_replies());
        let mut held = BytesMut::new();
        let mut streaming = false;
        let mut reply_len = 0;
        loop {
            let start = held.len();
            let read = match lease.read(&mut held).await {
                Ok(read) => read,
                Err(failure) => return self.lane_reply_failed(failure, streaming),
            };
            let taken = match scanner.feed(&held[start..]) {
                Ok(taken) => taken,
                Err(error) => {
                    let failure = BackendError::lost(lease.node(), Broken::BadLaneReply(error));
                    return self.lane_reply_failed(failure, streaming);
                }
            };
            // Redis sends nothing unasked; bytes after the reply mean the connection is not to be reused.
            let surplus = taken < read;
            held.truncate(start + taken);
            reply_len += taken;
            if may_stream && !streaming && scanner.first_byte() != Some(b'-') {
                streaming = scanner.top_bulk_len().is_some_and(|len| len >= threshold)
                    || held.len() >= LANE_WINDOW;
            }
            if streaming {
                let chunk = held.split();
                self.stream.write_all(&chunk).await?;
                self.charge_reply(chunk.len());
            }
            if scanner.is_complete() {
                if !surplus {
                    lease.give_back();
                }
                break;
            }
        }
        transfer
            .lane
            .learn(transfer.key.as_deref(), transfer.request_len, reply_len);
        if !streaming {
            self.queue_lane_reply(transfer, held.freeze());
        }
        Ok(true)
    }

    /// The lane failed while replying: an error for the client if none of the reply was written, or else the
    /// end of the client's connection (it cannot be told the value is cut short). The lease was dropped.
    fn lane_reply_failed(
        &mut self,
        failure: BackendError,
        streaming: bool,
    ) -> Result<bool, SessionEnd> {
        self.count_lane_failure(&failure);
        if streaming {
            return Err(SessionEnd::BackendLost(failure.to_string()));
        }
        self.gathered.buffer.extend_from_slice(&failure.to_reply());
        Ok(false)
    }

    /// A whole lane reply: rewritten if need be; on a cluster pool an error reply of a whole request goes
    /// through the usual redirect handling, and one of a streamed request (which cannot be sent again) asks
    /// for a new slot map when it is a redirect.
    fn queue_lane_reply(&mut self, transfer: &LaneTransfer, reply: Bytes) {
        if let (Some(node), PoolHandle::Cluster(pool)) = (&transfer.node, &self.pool) {
            if reply.first() == Some(&b'-') {
                if transfer.rest.is_none() {
                    let (sender, receiver) = tokio::sync::oneshot::channel();
                    let _ = sender.send(Ok(reply));
                    self.pending.push_back(Pending::Routed(Box::new(
                        super::super::pending::Routed {
                            receiver,
                            request: transfer.head.clone(),
                            node: Arc::clone(node),
                            redirects: 0,
                            rewrite: transfer.rewrite,
                        },
                    )));
                    return;
                }
                if is_redirect(&reply) {
                    pool.request_refresh();
                    let node = Arc::from(node.to_string());
                    let error = TransferError::Redirected { node };
                    self.gathered.buffer.extend_from_slice(&error.to_reply());
                    return;
                }
            }
        }
        let reply = match transfer.rewrite {
            Some(spec) => self.rewrite_reply_bytes(spec, reply),
            None => reply,
        };
        self.gathered.buffer.extend_from_slice(&reply);
    }
}

/// Writes a piece of a request to the lane: with MSG_MORE when `more` of the request follows at once (see
/// [`LaneLease::write_more`]); the last piece without, which sends everything.
async fn write_piece(lease: &mut LaneLease, piece: &[u8], more: bool) -> Result<(), BackendError> {
    if more {
        lease.write_more(piece).await
    } else {
        lease.write(piece).await
    }
}

/// A cluster redirect (or a slot being migrated): the request did not run there.
fn is_redirect(reply: &[u8]) -> bool {
    classify_reply(reply) != ClusterReplyKind::Final
}

/// The head of a streamed request as the tenant's rules rewrote its stand-in: the same arguments before the
/// big one (keys prefixed), the big one still empty, and perhaps arguments added at the end (which go after
/// the request). `None` when the rewrite has another shape.
fn rewritten_head(args: &[Bytes], head: &BigRequestHead) -> Option<(Bytes, Bytes)> {
    if args.len() < head.argc || args.get(head.big_index).is_none_or(|big| !big.is_empty()) {
        return None;
    }
    let mut bytes = BytesMut::new();
    put_header(&mut bytes, b'*', args.len());
    for arg in &args[..head.big_index] {
        put_bulk(&mut bytes, arg);
    }
    put_header(&mut bytes, b'$', head.big_len);
    let mut tail = BytesMut::new();
    for arg in &args[head.argc..] {
        put_bulk(&mut tail, arg);
    }
    Some((bytes.freeze(), tail.freeze()))
}
