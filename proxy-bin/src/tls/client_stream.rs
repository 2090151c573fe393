//! [`ClientStream`]: a client's connection, plaintext or TLS, with the readiness methods the session loop uses
//! on a `TcpStream` (`readable`, `try_read_buf`, `writable`, `try_write`) and tokio's `AsyncRead`/`AsyncWrite`.
//!
//! The session reads and writes without waiting and waits for readiness in its `select!`; a TLS stream keeps
//! that model through [`TlsSocket`] (see there how).

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{ServerConnection, SupportedCipherSuite};

use super::plain_or_tls::PlainOrTls;
use super::socket::TlsSocket;
use crate::subject::Subject;

/// A client connection: `ClientStream::Plain(TcpStream)` or `ClientStream::Tls(Box<TlsClient>)`.
pub type ClientStream = PlainOrTls<TcpStream, Box<TlsClient>>;

/// A client connection after its TLS handshake.
#[derive(Debug)]
pub struct TlsClient {
    socket: TlsSocket,
    /// The subject of the certificate the client presented (mutual TLS), if any.
    subject: Option<Subject>,
    /// The cipher suite the handshake agreed on (it implies the TLS version).
    cipher_suite: Option<SupportedCipherSuite>,
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
        let cipher_suite = connection.negotiated_cipher_suite();
        ClientStream::Tls(Box::new(TlsClient {
            socket: TlsSocket::new(tcp, connection),
            subject,
            cipher_suite,
        }))
    }

    /// The underlying socket (addresses, file descriptor).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ClientStream::Plain(tcp) => tcp,
            ClientStream::Tls(tls) => tls.socket.tcp(),
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

    /// The cipher suite of a TLS client's connection (`None` for a plaintext client).
    pub fn cipher_suite(&self) -> Option<SupportedCipherSuite> {
        match self {
            ClientStream::Plain(_) => None,
            ClientStream::Tls(tls) => tls.cipher_suite,
        }
    }

    /// Encrypted bytes that still wait for the socket: the caller must wait for [`ClientStream::writable`].
    #[inline]
    pub fn has_unsent(&self) -> bool {
        match self {
            ClientStream::Plain(_) => false,
            ClientStream::Tls(tls) => tls.socket.has_unsent(),
        }
    }

    /// Ready when a read would find something (or the end); as `TcpStream::readable`, but waiting through the
    /// socket's one reader slot (`poll_read_ready`) rather than a waiter list: a session waits for readability
    /// on every turn of its loop, and `readable()` locks that list twice per wait (to join it, and to leave it
    /// when another branch of the session's `select!` wins). Only the session's own task waits on its socket.
    #[inline]
    pub async fn readable(&self) -> io::Result<()> {
        poll_fn(|cx| match self {
            ClientStream::Plain(tcp) => tcp.poll_read_ready(cx),
            ClientStream::Tls(tls) => tls.socket.poll_readable(cx),
        })
        .await
    }

    /// Ready when a write would take bytes; over TLS, first sends what rustls holds. Waits through the
    /// socket's one writer slot, as [`ClientStream::readable`] does.
    #[inline]
    pub async fn writable(&self) -> io::Result<()> {
        poll_fn(|cx| match self {
            ClientStream::Plain(tcp) => tcp.poll_write_ready(cx),
            ClientStream::Tls(tls) => tls.socket.poll_writable(cx),
        })
        .await
    }

    /// Reads what is there without waiting; `WouldBlock` when nothing is; as `TcpStream::try_read_buf`.
    #[inline]
    pub fn try_read_buf(&self, buffer: &mut BytesMut) -> io::Result<usize> {
        match self {
            ClientStream::Plain(tcp) => tcp.try_read_buf(buffer),
            ClientStream::Tls(tls) => tls.socket.try_read_buf(buffer),
        }
    }

    /// Writes what the socket takes now; `WouldBlock` when it takes nothing; as `TcpStream::try_write`.
    #[inline]
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(tcp) => tcp.try_write(bytes),
            ClientStream::Tls(tls) => tls.socket.try_write(bytes),
        }
    }

    /// [`ClientStream::try_write`] of several slices in order, in one system call.
    #[inline]
    pub fn try_write_vectored(&self, slices: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(tcp) => tcp.try_write_vectored(slices),
            ClientStream::Tls(tls) => tls.socket.try_write_vectored(slices),
        }
    }
}

// === AsyncRead / AsyncWrite, for the session's reads and for the waits outside its loop (write_all, shutdown) ===

impl AsyncRead for TlsClient {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.socket.poll_read(cx, buffer)
    }
}

impl AsyncWrite for TlsClient {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.socket.poll_write(cx, bytes)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().socket.poll_shutdown(cx)
    }
}
