//! [`TlsSocket`]: a TCP socket and its rustls connection after the handshake, read and written without waiting
//! through a shared reference, so a task can wait for readability and writability at once (a session), or hand a
//! reading and a writing half to two futures (a backend connection) without `tokio::io::split`'s lock.
//!
//! The rustls connection sits behind a mutex that is only ever held for a non-blocking step (never across an
//! await); every holder is on the socket's own task, so it is never contended. Three things keep the system
//! calls per batch at what a plaintext socket makes:
//! - ciphertext is read with one `recv` of up to [`READ_CHUNK`] bytes into a per-thread buffer and handed to
//!   rustls from memory (rustls's own `read_tls` reads at most 4 KiB per call, so one `recv` per 4 KiB);
//! - a `recv` shorter than asked tells tokio the socket is drained, as tokio's own `poll_read` does (its
//!   `try_read` does not): the next wait for readability then waits for new bytes instead of returning at once
//!   for a `recv` that can only say EAGAIN;
//! - replies are encrypted in as few records as the caller's writes allow and sent with one `writev`.
//!
//! Two rules make the readiness model hold over TLS:
//! - [`TlsSocket::poll_readable`] is ready at once while rustls holds decrypted bytes, which the socket's readiness
//!   knows nothing about;
//! - encrypted bytes the socket did not take yet are [`TlsSocket::has_unsent`]: the caller waits for
//!   [`TlsSocket::poll_writable`] while there are any, and `poll_writable` sends them.

use std::cell::RefCell;
use std::io::{self, BufRead, Write};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::Connection;

/// The most ciphertext one `recv` asks for. The decrypted bytes go to the caller's buffer in the same call, so
/// a read asks for no more than the caller has room for, unless that is below [`MIN_RECV`].
const READ_CHUNK: usize = 64 * 1024;

/// The least ciphertext one `recv` asks for, however little room the caller's buffer has. A session's read
/// buffer has little room left before it is reclaimed (its frames are split off the front); asking only for
/// that room took a record in pieces: one `recv` of 4 bytes after another while the record was incomplete
/// (no plaintext came, so the room stayed as small), about one extra `recv` per pipelined batch at `-P 16`.
/// The plaintext that does not fit stays in rustls (see [`TlsSocket::decrypt`] why rustls always takes it)
/// and the next read takes it from there. rustls's own read size, so one `read_tls` usually takes it all.
const MIN_RECV: usize = 4 * 1024;

thread_local! {
    /// Ciphertext just received, before rustls takes it. One per thread, not per connection: it is empty again
    /// before the read that filled it returns.
    static CIPHERTEXT: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// A TCP socket after its TLS handshake (either side).
#[derive(Debug)]
pub struct TlsSocket {
    tcp: TcpStream,
    connection: Mutex<Connection>,
}

/// What one `recv` found.
enum Received {
    Bytes(usize),
    End,
}

impl TlsSocket {
    pub fn new(tcp: TcpStream, connection: impl Into<Connection>) -> TlsSocket {
        TlsSocket {
            tcp,
            connection: Mutex::new(connection.into()),
        }
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // Never held across an await or a panic-prone call; a poisoned lock is still a usable connection.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Encrypted bytes that still wait for the socket: the caller must wait for [`TlsSocket::poll_writable`].
    #[inline]
    pub fn has_unsent(&self) -> bool {
        self.lock().wants_write()
    }

    /// Ready when a read would find something (or the end), as `TcpStream::poll_read_ready` (registering `cx`
    /// in the socket's reader slot).
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.has_buffered_input() {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_read_ready(cx)
    }

    /// Ready when a write would take bytes, as `TcpStream::poll_write_ready`; first sends what rustls holds.
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_flush(cx))?;
        self.tcp.poll_write_ready(cx)
    }

    /// Decrypted bytes wait, or the peer closed: a read will not block. Every read decrypts all it receives, so
    /// no complete record waits undecrypted.
    fn has_buffered_input(&self) -> bool {
        !self.lock().wants_read()
    }

    /// Reads what is there without waiting: decrypted bytes rustls holds, else one `recv`. `Ok(())` with
    /// nothing added to `buffer` is the end of the stream; `Pending` registers `cx` for readability.
    pub fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut connection = self.lock();
        loop {
            let before = buffer.filled().len();
            // Decrypted bytes rustls holds, or the end, come first. Usually there are none: rustls then has
            // nothing to process either, so the read goes straight to `recv`.
            if !connection.wants_read() {
                let closed = self.decrypt(&mut connection, &[], buffer)?;
                if buffer.filled().len() > before || closed {
                    return Poll::Ready(Ok(()));
                }
            }
            if buffer.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let room = buffer.remaining().clamp(MIN_RECV, READ_CHUNK);
            let read = CIPHERTEXT.with_borrow_mut(|ciphertext| {
                let ciphertext = &mut ciphertext[..room];
                match ready!(self.poll_recv(cx, ciphertext)) {
                    Ok(Received::Bytes(count)) => {
                        Poll::Ready(self.decrypt(&mut connection, &ciphertext[..count], buffer))
                    }
                    Ok(Received::End) => {
                        // The peer closed the socket (with or without close_notify).
                        Poll::Ready(Ok(true))
                    }
                    Err(error) => Poll::Ready(Err(error)),
                }
            });
            let closed = ready!(read)?;
            if buffer.filled().len() > before || closed {
                return Poll::Ready(Ok(()));
            }
            // Only part of a record came: read on (the loop waits if the socket is drained).
        }
    }

    /// Reads what is there without waiting into `buffer`'s spare room; `WouldBlock` when nothing is; as
    /// `TcpStream::try_read_buf`.
    pub fn try_read_buf(&self, buffer: &mut BytesMut) -> io::Result<usize> {
        let mut cx = Context::from_waker(Waker::noop());
        match tokio_util::io::poll_read_buf(Pin::new(&mut Reading(self)), &mut cx, buffer) {
            Poll::Ready(read) => read,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Hands `ciphertext` to rustls and moves what it decrypts into `buffer`, sending what rustls wants to send
    /// meanwhile (an alert, a key update). `true` when the peer has closed the TLS session.
    ///
    /// rustls never refuses the rest of `ciphertext` (it refuses ciphertext while it holds more than 16 KiB
    /// of plaintext), as the caller receives only when rustls holds no plaintext, and then either
    /// - at most `buffer.remaining()` bytes: at most one record's plaintext (from a record begun by an earlier
    ///   read) stays in rustls; or
    /// - at most [`MIN_RECV`] bytes (4 KiB, rustls's own read size): the first `read_tls` takes them all, or,
    ///   when a record begun earlier fills rustls's buffer, as much as completes that record, whose plaintext
    ///   (at most 16 KiB, less what `buffer` took) is not over the limit when the second `read_tls` takes the
    ///   rest.
    fn decrypt(
        &self,
        connection: &mut Connection,
        mut ciphertext: &[u8],
        buffer: &mut ReadBuf<'_>,
    ) -> io::Result<bool> {
        loop {
            if !ciphertext.is_empty() {
                // At most 4 KiB per call, from memory. After the peer's close_notify rustls takes nothing
                // (`Ok(0)`), and the state below says it closed.
                connection.read_tls(&mut ciphertext)?;
            }
            let state = match connection.process_new_packets() {
                Ok(state) => state,
                Err(error) => {
                    // rustls queued an alert saying why: send it if the socket takes it now.
                    let _ = send_without_waiting(connection, &self.tcp);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, error));
                }
            };
            if state.plaintext_bytes_to_read() > 0 {
                copy_plaintext(connection, buffer);
            }
            if ciphertext.is_empty() || state.peer_has_closed() {
                if connection.wants_write() {
                    send_without_waiting(connection, &self.tcp)?;
                }
                return Ok(state.peer_has_closed() && state.plaintext_bytes_to_read() == 0);
            }
        }
    }

    /// One `recv` of up to `ciphertext.len()` bytes, or `Pending` (with `cx` registered) when none wait.
    fn poll_recv(&self, cx: &mut Context<'_>, ciphertext: &mut [u8]) -> Poll<io::Result<Received>> {
        loop {
            ready!(self.tcp.poll_read_ready(cx))?;
            let mut received = None;
            // `try_read` clears the socket's readiness only on EAGAIN. A read shorter than asked means the
            // socket is drained, so this closure reports it as EAGAIN to `try_io`, which then clears the
            // readiness, as tokio's `poll_read` does after a short read.
            let outcome = self.tcp.try_io(Interest::READABLE, || {
                let count = self.tcp.try_read(ciphertext)?;
                received = Some(count);
                if count > 0 && count < ciphertext.len() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(count)
            });
            match (outcome, received) {
                (_, Some(0)) => return Poll::Ready(Ok(Received::End)),
                (_, Some(count)) => return Poll::Ready(Ok(Received::Bytes(count))),
                (Err(error), None) if error.kind() == io::ErrorKind::WouldBlock => {}
                (Err(error), None) => return Poll::Ready(Err(error)),
                (Ok(_), None) => {}
            }
        }
    }

    /// Encrypts as much of `bytes` as rustls buffers and sends what the socket takes. Takes nothing
    /// (`WouldBlock`) while earlier encrypted bytes still wait for the socket.
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        self.try_write_vectored(&[io::IoSlice::new(bytes)])
    }

    /// [`TlsSocket::try_write`] of several slices in order (each encrypted in records of its own), sent with one
    /// `writev`.
    pub fn try_write_vectored(&self, slices: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut connection = self.lock();
        send_without_waiting(&mut connection, &self.tcp)?;
        if connection.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut taken = 0;
        for slice in slices {
            let count = connection.writer().write(slice)?;
            taken += count;
            if count < slice.len() {
                break;
            }
        }
        send_without_waiting(&mut connection, &self.tcp)?;
        if taken == 0 && slices.iter().any(|slice| !slice.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// Sends encrypted bytes without waiting; `true` while some still wait for the socket.
    fn send_pending(&self) -> io::Result<bool> {
        let mut connection = self.lock();
        send_without_waiting(&mut connection, &self.tcp)?;
        Ok(connection.wants_write())
    }

    /// [`TlsSocket::try_write`], registering `cx` for writability when the socket takes nothing.
    pub fn poll_write(&self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            match self.try_write(bytes) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_write_ready(cx))?;
                }
                done => return Poll::Ready(done),
            }
        }
    }

    /// Sends every encrypted byte rustls holds.
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.send_pending()? {
            ready!(self.tcp.poll_write_ready(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Queues the TLS close_notify alert (then [`TlsSocket::poll_flush`] sends it).
    pub fn send_close_notify(&self) {
        self.lock().send_close_notify();
    }

    /// The socket's own end of stream, after close_notify.
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.send_close_notify();
        ready!(self.poll_flush(cx))?;
        tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.tcp), cx)
    }
}

/// A shared reference as an `AsyncRead`, for tokio-util's `poll_read_buf`.
struct Reading<'a>(&'a TlsSocket);

impl AsyncRead for Reading<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.poll_read(cx, buffer)
    }
}

/// Moves the plaintext rustls holds into `buffer`, as much as fits.
fn copy_plaintext(connection: &mut Connection, buffer: &mut ReadBuf<'_>) {
    let mut reader = connection.reader();
    while buffer.remaining() > 0 {
        let Ok(chunk) = reader.fill_buf() else {
            return;
        };
        if chunk.is_empty() {
            return;
        }
        let count = chunk.len().min(buffer.remaining());
        buffer.put_slice(&chunk[..count]);
        reader.consume(count);
    }
}

/// What rustls holds, to the socket, until it is all sent or the socket takes no more (not an error).
fn send_without_waiting(connection: &mut Connection, tcp: &TcpStream) -> io::Result<()> {
    while connection.wants_write() {
        match connection.write_tls(&mut SocketWriter(tcp)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Dropping a TLS socket sends what rustls still holds if the socket takes it now (the last replies, an alert).
impl Drop for TlsSocket {
    fn drop(&mut self) {
        let connection = self
            .connection
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = send_without_waiting(connection, &self.tcp);
    }
}

/// `std::io::Write` over a tokio socket without waiting, for rustls's `write_tls` (one `writev` per call).
struct SocketWriter<'a>(&'a TcpStream);

impl Write for SocketWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.try_write(bytes)
    }

    fn write_vectored(&mut self, buffers: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(buffers)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[path = "socket_tests.rs"]
mod tests;
