//! The session's side of the client socket: writing replies (now, or all of them before the session ends or
//! changes mode), reading requests, when it may read more (backpressure and the holds after cluster
//! redirects), the idle timeout, and closing at shutdown without losing replies.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Decoder;

use super::errors::{AdminError, ErrorReply};
use super::{Session, SessionEnd, MIN_READ_ROOM, READ_BUFFER_BYTES};

/// How long a session closing at shutdown waits for the client to close its end (see
/// `Session::close_after_shutdown`).
const SHUTDOWN_LINGER: std::time::Duration = std::time::Duration::from_millis(500);

impl Session {
    /// Moves the gathered replies to the output and writes what the socket takes now, without waiting; the
    /// loop waits for the socket to take more while it goes on collecting replies (and reading requests, within
    /// the limits). Over `client_limits.max_output_bytes` the client is disconnected. Before AUTH the loop also
    /// watches the auth deadline, so a client that sends requests and never reads the replies cannot stay.
    pub(super) fn send_replies(&mut self) -> Result<(), SessionEnd> {
        self.observe_before_write(self.gathered.len());
        if let Err(over) = self.output.take(&mut self.gathered) {
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
    pub(super) async fn flush_output(&mut self) -> Result<(), SessionEnd> {
        self.observe_before_write(self.gathered.len());
        if let Err(over) = self.output.take(&mut self.gathered) {
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
    ///
    /// A buffer with little room left gets more first: reading into a few hundred bytes of room took a request
    /// in two `recv`s and copied its first part into a bigger buffer. While frames split off it are in flight
    /// the room comes from a fresh allocation, which copies only a partial frame's bytes (usually none).
    pub(super) fn read_some(&mut self) -> Result<Option<usize>, SessionEnd> {
        if self.read_buffer.capacity() - self.read_buffer.len() < MIN_READ_ROOM {
            self.read_buffer.reserve(READ_BUFFER_BYTES);
        }
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
    pub(super) fn may_idle_out(&self, idle_ms: u64) -> bool {
        idle_ms > 0 && !self.awaiting_auth() && self.pending.is_empty() && self.dedicated.is_none()
    }

    pub(super) fn idle_deadline(&self, idle_ms: u64) -> tokio::time::Instant {
        self.last_activity + std::time::Duration::from_millis(idle_ms)
    }

    /// The proxy shuts down and every request read so far is answered: requests that reached the proxy since
    /// (framed but not handled, or already in the socket) get the shutting-down error; then the session ends.
    pub(super) async fn refuse_unread_and_close(&mut self) -> Result<SessionEnd, SessionEnd> {
        // Whatever the client sent that arrived by now; nothing more is waited for.
        let _ = self.stream.try_read_buf(&mut self.read_buffer);
        let stopped = AdminError::ShuttingDown.to_reply();
        while let Ok(Some(_request)) = self.decoder.decode(&mut self.read_buffer) {
            self.gathered.buffer.extend_from_slice(&stopped);
        }
        self.flush_output().await?;
        self.close_after_shutdown().await
    }

    /// Ends the session at shutdown without losing the replies just written: closing a socket that still has
    /// unread input sends a reset, and the client's system may then drop replies it has not read yet. So the
    /// proxy sends its end of stream first and discards what the client still sends, until the client closes
    /// too or [`SHUTDOWN_LINGER`] has passed.
    pub(super) async fn close_after_shutdown(&mut self) -> Result<SessionEnd, SessionEnd> {
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
    pub(super) fn accepting_requests(&self, max_pending: usize) -> bool {
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
    pub(super) fn holding_for_redirects(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|cluster| cluster.redirects.seen())
            && !self.pending.is_empty()
    }

    /// Whether a cluster command is being sent again after TRYAGAIN: until it is answered, no new request is
    /// sent, so none can run before it (see `cluster::TRY_AGAIN_DELAYS_MS`).
    pub(super) fn holding_for_try_again(&self) -> bool {
        self.try_again_hold && !self.pending.is_empty()
    }
}
