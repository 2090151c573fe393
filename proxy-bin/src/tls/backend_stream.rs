//! [`BackendStream`]: a connection to a Redis node, plaintext or TLS, and its two halves.
//!
//! A shared backend connection reads and writes at once from two halves, and looks at both without waiting
//! when its watchdog rings ([`ReadNow`], [`WriteNow`]). The plaintext halves are tokio's own
//! (`OwnedReadHalf`, `OwnedWriteHalf`, the code path of a plaintext pool is unchanged); the TLS halves share
//! one [`TlsSocket`], whose methods take a shared reference, so neither half waits for a lock the other holds
//! across a poll (as `tokio::io::split`'s halves do).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::ClientConnection;

use super::plain_or_tls::PlainOrTls;
use super::plain_socket::{PlainReader, PlainSocket, PlainWriter};
use super::socket::TlsSocket;

/// A connection to a backend node: `BackendStream::Plain(PlainSocket)` (TCP or a Unix domain socket) or
/// `BackendStream::Tls(Box<TlsBackend>)`.
pub type BackendStream = PlainOrTls<PlainSocket, Box<TlsBackend>>;

/// A TLS connection to a node, written through (see [`WriteThrough`]).
#[derive(Debug)]
pub struct TlsBackend {
    socket: TlsSocket,
    write: WriteThrough,
}

/// The reading half of a [`BackendStream`].
pub type BackendReader = PlainOrTls<PlainReader, TlsReader>;

/// The writing half of a [`BackendStream`].
pub type BackendWriter = PlainOrTls<PlainWriter, TlsWriter>;

/// The reading half of a TLS connection.
#[derive(Debug)]
pub struct TlsReader(Arc<TlsSocket>);

/// The writing half of a TLS connection, written through (see [`WriteThrough`]).
#[derive(Debug)]
pub struct TlsWriter {
    socket: Arc<TlsSocket>,
    write: WriteThrough,
}

/// TLS writes are written through: a write counts only once its encrypted bytes are all in the socket. A
/// write may take bytes whose encryption the socket does not take at once, and the callers write only while
/// they have bytes to write (the shared connection task, the offset store): the rest of the last request
/// would wait for the next one.
#[derive(Debug, Default)]
struct WriteThrough {
    /// Bytes taken by the last write whose encryption is not all sent yet: the next write sends the rest and
    /// reports them (the caller writes the same bytes again until a write returns).
    taken: Option<usize>,
}

impl WriteThrough {
    fn poll_write(
        &mut self,
        socket: &TlsSocket,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let taken = match self.taken {
            Some(taken) => taken,
            None => {
                let taken = ready!(socket.poll_write(cx, bytes))?;
                self.taken = Some(taken);
                taken
            }
        };
        ready!(socket.poll_flush(cx))?;
        self.taken = None;
        Poll::Ready(Ok(taken))
    }
}

impl TlsBackend {
    pub(super) fn new(tcp: TcpStream, connection: ClientConnection) -> TlsBackend {
        TlsBackend {
            socket: TlsSocket::new(tcp, connection),
            write: WriteThrough::default(),
        }
    }

    /// The halves, for a task that reads and writes at once.
    pub fn into_halves(self: Box<Self>) -> (TlsReader, TlsWriter) {
        let TlsBackend { socket, write } = *self;
        let socket = Arc::new(socket);
        (TlsReader(Arc::clone(&socket)), TlsWriter { socket, write })
    }
}

impl BackendStream {
    pub fn into_split(self) -> (BackendReader, BackendWriter) {
        match self {
            BackendStream::Plain(socket) => {
                let (reader, writer) = socket.into_split();
                (BackendReader::Plain(reader), BackendWriter::Plain(writer))
            }
            BackendStream::Tls(tls) => {
                let (reader, writer) = tls.into_halves();
                (BackendReader::Tls(reader), BackendWriter::Tls(writer))
            }
        }
    }

    /// Whether the server has not closed the connection (nothing to read, no end of stream): a spare
    /// connection is reused only then. Over TLS, any byte waiting (a closing alert) counts as closed.
    pub fn still_open(&self) -> bool {
        let mut probe = [0u8; 1];
        let tcp = match self {
            BackendStream::Plain(socket) => {
                return matches!(
                    socket.try_read(&mut probe),
                    Err(ref e) if e.kind() == io::ErrorKind::WouldBlock
                )
            }
            BackendStream::Tls(tls) => tls.socket.tcp(),
        };
        let mut cx = Context::from_waker(Waker::noop());
        let mut buffer = ReadBuf::new(&mut probe);
        tcp.poll_peek(&mut cx, &mut buffer).is_pending()
    }
}

impl BackendReader {
    /// The stream again, if `writer` is its other half.
    pub fn reunite(self, writer: BackendWriter) -> Option<BackendStream> {
        match (self, writer) {
            (BackendReader::Plain(reader), BackendWriter::Plain(writer)) => {
                reader.reunite(writer).map(BackendStream::Plain)
            }
            (BackendReader::Tls(TlsReader(reader)), BackendWriter::Tls(writer))
                if Arc::ptr_eq(&reader, &writer.socket) =>
            {
                let TlsWriter { socket, write } = writer;
                drop(socket);
                let socket = Arc::into_inner(reader)?;
                Some(BackendStream::Tls(Box::new(TlsBackend { socket, write })))
            }
            _ => None,
        }
    }
}

/// Reads what is there without waiting (`WouldBlock` when nothing is).
pub trait ReadNow {
    fn read_now(&mut self, buffer: &mut BytesMut) -> io::Result<usize>;
}

/// Writes what the socket takes now (`WouldBlock` when it takes nothing).
pub trait WriteNow {
    fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize>;
}

impl ReadNow for OwnedReadHalf {
    fn read_now(&mut self, buffer: &mut BytesMut) -> io::Result<usize> {
        self.try_read_buf(buffer)
    }
}

impl WriteNow for OwnedWriteHalf {
    fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.try_write(bytes)
    }
}

impl ReadNow for tokio::net::unix::OwnedReadHalf {
    fn read_now(&mut self, buffer: &mut BytesMut) -> io::Result<usize> {
        self.try_read_buf(buffer)
    }
}

impl WriteNow for tokio::net::unix::OwnedWriteHalf {
    fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.try_write(bytes)
    }
}

impl ReadNow for TlsReader {
    fn read_now(&mut self, buffer: &mut BytesMut) -> io::Result<usize> {
        self.0.try_read_buf(buffer)
    }
}

/// Polled once with a waker that does nothing; the caller's next real poll registers its own.
impl WriteNow for TlsWriter {
    fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut cx = Context::from_waker(Waker::noop());
        match self.write.poll_write(&self.socket, &mut cx, bytes) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl AsyncRead for TlsReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.poll_read(cx, buffer)
    }
}

impl AsyncWrite for TlsWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.write.poll_write(&this.socket, cx, bytes)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket.poll_flush(cx)
    }

    /// Sends close_notify; the socket's own end of stream comes when both halves are dropped.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket.send_close_notify();
        self.socket.poll_flush(cx)
    }
}

impl AsyncRead for TlsBackend {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.socket.poll_read(cx, buffer)
    }
}

impl AsyncWrite for TlsBackend {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.write.poll_write(&this.socket, cx, bytes)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().socket.poll_shutdown(cx)
    }
}
