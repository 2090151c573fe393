//! [`ClientStream`]: a client's connection, plaintext or TLS, with the readiness methods the session loop uses
//! on a `TcpStream` (`readable`, `try_read_buf`, `writable`, `try_write`) and tokio's `AsyncRead`/`AsyncWrite`.
//!
//! The session reads and writes without waiting and waits for readiness in its `select!`; a TLS stream keeps
//! that model. Its rustls connection sits behind a mutex that is only ever held for a non-blocking step (never
//! across an await), because the session waits for `readable()` and `writable()` at the same time. Two rules
//! make the model hold over TLS:
//! - `readable()` is ready at once while rustls holds decrypted bytes, which the socket's readiness knows
//!   nothing about;
//! - encrypted bytes rustls could not hand to the socket yet are [`ClientStream::has_unsent`]: the session
//!   waits for `writable()` while there are any, and `writable()` sends them.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConnection;

use crate::subject::Subject;

/// The most decrypted bytes handed over by one read.
const MAX_READ: usize = 256 * 1024;

/// A client connection.
#[derive(Debug)]
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsClient>),
}

/// A client connection after its TLS handshake.
#[derive(Debug)]
pub struct TlsClient {
    tcp: TcpStream,
    connection: Mutex<ServerConnection>,
    /// The subject of the certificate the client presented (mutual TLS), if any.
    subject: Option<Subject>,
}

impl From<TcpStream> for ClientStream {
    fn from(tcp: TcpStream) -> Self {
        ClientStream::Plain(tcp)
    }
}

impl ClientStream {
    pub(super) fn tls(
        tcp: TcpStream,
        connection: ServerConnection,
        subject: Option<Subject>,
    ) -> ClientStream {
        ClientStream::Tls(Box::new(TlsClient {
            tcp,
            connection: Mutex::new(connection),
            subject,
        }))
    }

    /// The underlying socket (addresses, file descriptor).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ClientStream::Plain(tcp) => tcp,
            ClientStream::Tls(tls) => &tls.tcp,
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    /// The subject of the client's verified certificate (mutual TLS).
    pub fn client_subject(&self) -> Option<&Subject> {
        match self {
            ClientStream::Plain(_) => None,
            ClientStream::Tls(tls) => tls.subject.as_ref(),
        }
    }

    /// Encrypted bytes that still wait for the socket: the caller must wait for [`ClientStream::writable`].
    #[inline]
    pub fn has_unsent(&self) -> bool {
        match self {
            ClientStream::Plain(_) => false,
            ClientStream::Tls(tls) => tls.lock().wants_write(),
        }
    }

    /// Ready when a read would find something (or the end); as `TcpStream::readable`.
    #[inline]
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            ClientStream::Plain(tcp) => tcp.readable().await,
            ClientStream::Tls(tls) => {
                if tls.has_buffered_input() {
                    return Ok(());
                }
                tls.tcp.readable().await
            }
        }
    }

    /// Ready when a write would take bytes; over TLS, first sends what rustls holds.
    #[inline]
    pub async fn writable(&self) -> io::Result<()> {
        match self {
            ClientStream::Plain(tcp) => tcp.writable().await,
            ClientStream::Tls(tls) => {
                while tls.send_pending()? {
                    tls.tcp.writable().await?;
                }
                tls.tcp.writable().await
            }
        }
    }

    /// Reads what is there without waiting; `WouldBlock` when nothing is; as `TcpStream::try_read_buf`.
    #[inline]
    pub fn try_read_buf(&self, buffer: &mut BytesMut) -> io::Result<usize> {
        match self {
            ClientStream::Plain(tcp) => tcp.try_read_buf(buffer),
            ClientStream::Tls(tls) => tls.try_read(|connection, available| {
                let start = buffer.len();
                buffer.resize(start + available.min(MAX_READ), 0);
                let read = connection.reader().read(&mut buffer[start..]);
                buffer.truncate(start + *read.as_ref().unwrap_or(&0));
                read
            }),
        }
    }

    /// Writes what the socket takes now; `WouldBlock` when it takes nothing; as `TcpStream::try_write`.
    #[inline]
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(tcp) => tcp.try_write(bytes),
            ClientStream::Tls(tls) => tls.try_write(bytes),
        }
    }
}

impl TlsClient {
    fn lock(&self) -> MutexGuard<'_, ServerConnection> {
        // Never held across an await or a panic-prone call; a poisoned lock is still a usable connection.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Decrypted bytes wait, the client closed, or the connection failed: a read will not block.
    fn has_buffered_input(&self) -> bool {
        match self.lock().process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
            Err(_) => true,
        }
    }

    /// Reads decrypted bytes with `take(connection, available)`, reading and decrypting from the socket as
    /// long as it has bytes and nothing is decrypted yet. `Ok(0)`: the client closed the connection.
    fn try_read(
        &self,
        mut take: impl FnMut(&mut ServerConnection, usize) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut connection = self.lock();
        loop {
            let state = match connection.process_new_packets() {
                Ok(state) => state,
                Err(error) => {
                    // rustls queued an alert saying why: send it if the socket takes it now.
                    let _ = send_without_waiting(&mut connection, &self.tcp);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, error));
                }
            };
            let available = state.plaintext_bytes_to_read();
            let closed = state.peer_has_closed();
            if connection.wants_write() {
                send_without_waiting(&mut connection, &self.tcp)?;
            }
            if available > 0 {
                return take(&mut connection, available);
            }
            if closed {
                return Ok(0);
            }
            match connection.read_tls(&mut SocketReader(&self.tcp)) {
                // The client closed the socket (with or without close_notify).
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Encrypts as much of `bytes` as rustls buffers and sends what the socket takes. Takes nothing
    /// (`WouldBlock`) while earlier encrypted bytes still wait for the socket.
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        let mut connection = self.lock();
        send_without_waiting(&mut connection, &self.tcp)?;
        if connection.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let taken = connection.writer().write(bytes)?;
        send_without_waiting(&mut connection, &self.tcp)?;
        if taken == 0 && !bytes.is_empty() {
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
}

/// What rustls holds, to the socket, until it is all sent or the socket takes no more (not an error).
fn send_without_waiting(connection: &mut ServerConnection, tcp: &TcpStream) -> io::Result<()> {
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

/// Dropping a TLS client sends what rustls still holds if the socket takes it now (the last replies, an alert).
impl Drop for TlsClient {
    fn drop(&mut self) {
        let connection = self
            .connection
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = send_without_waiting(connection, &self.tcp);
    }
}

/// `std::io::Read` over a tokio socket without waiting (`WouldBlock` when empty), for rustls's `read_tls`.
struct SocketReader<'a>(&'a TcpStream);

impl Read for SocketReader<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buffer)
    }
}

/// `std::io::Write` over a tokio socket without waiting, for rustls's `write_tls`.
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

// === AsyncRead / AsyncWrite, for the waits outside the session loop (write_all, shutdown, read) ===

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buffer),
            ClientStream::Tls(tls) => loop {
                let read = tls.try_read(|connection, _available| {
                    connection.reader().read(buffer.initialize_unfilled())
                });
                match read {
                    Ok(count) => {
                        buffer.advance(count);
                        return Poll::Ready(Ok(()));
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        ready!(tls.tcp.poll_read_ready(cx))?;
                    }
                    Err(error) => return Poll::Ready(Err(error)),
                }
            },
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(tcp) => Pin::new(tcp).poll_write(cx, bytes),
            ClientStream::Tls(tls) => loop {
                match tls.try_write(bytes) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        ready!(tls.tcp.poll_write_ready(cx))?;
                    }
                    done => return Poll::Ready(done),
                }
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            ClientStream::Tls(tls) => poll_send_all(tls, cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            ClientStream::Tls(tls) => {
                tls.lock().send_close_notify();
                ready!(poll_send_all(tls, cx))?;
                Pin::new(&mut tls.tcp).poll_shutdown(cx)
            }
        }
    }
}

fn poll_send_all(tls: &TlsClient, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    while tls.send_pending()? {
        ready!(tls.tcp.poll_write_ready(cx))?;
    }
    Poll::Ready(Ok(()))
}
