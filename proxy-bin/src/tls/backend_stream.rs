//! [`BackendStream`]: a connection to a Redis node, plaintext or TLS, and its two halves.
//!
//! A shared backend connection reads and writes at once from two halves, and looks at both without waiting
//! when its watchdog rings ([`ReadNow`], [`WriteNow`]). The plaintext halves are tokio's own
//! (`OwnedReadHalf`, `OwnedWriteHalf`, the code path of a plaintext pool is unchanged); a TLS stream is split
//! with `tokio::io::split`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

type Tls = TlsStream<TcpStream>;

/// A connection to a backend node.
#[derive(Debug)]
pub enum BackendStream {
    Plain(TcpStream),
    Tls(Box<Tls>),
}

/// The reading half of a [`BackendStream`].
#[derive(Debug)]
pub enum BackendReader {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<Box<Tls>>),
}

/// The writing half of a [`BackendStream`].
#[derive(Debug)]
pub enum BackendWriter {
    Plain(OwnedWriteHalf),
    Tls(TlsWriter),
}

/// The writing half of a TLS stream, written through: a write counts only once its encrypted bytes are all in
/// the socket. tokio-rustls may take bytes and keep part of their encryption for a later write or flush, and
/// the connection task writes only while it has bytes to write: the rest of the last request would wait
/// for the next one.
#[derive(Debug)]
pub struct TlsWriter {
    half: WriteHalf<Box<Tls>>,
    /// Bytes taken by the last write whose encryption is not all sent yet: the next write sends the rest and
    /// reports them (the caller writes the same bytes again until a write returns).
    taken: Option<usize>,
}

impl BackendStream {
    pub fn into_split(self) -> (BackendReader, BackendWriter) {
        match self {
            BackendStream::Plain(tcp) => {
                let (reader, writer) = tcp.into_split();
                (BackendReader::Plain(reader), BackendWriter::Plain(writer))
            }
            BackendStream::Tls(tls) => {
                let (reader, writer) = split_tls(tls);
                (BackendReader::Tls(reader), BackendWriter::Tls(writer))
            }
        }
    }

    /// Whether the server has not closed the connection (nothing to read, no end of stream): a spare
    /// connection is reused only then. Over TLS, any byte waiting (a closing alert) counts as closed.
    pub fn still_open(&self) -> bool {
        let mut probe = [0u8; 1];
        let tcp = match self {
            BackendStream::Plain(tcp) => {
                return matches!(
                    tcp.try_read(&mut probe),
                    Err(ref e) if e.kind() == io::ErrorKind::WouldBlock
                )
            }
            BackendStream::Tls(tls) => tls.get_ref().0,
        };
        let mut cx = Context::from_waker(Waker::noop());
        let mut buffer = ReadBuf::new(&mut probe);
        tcp.poll_peek(&mut cx, &mut buffer).is_pending()
    }
}

/// The halves of a TLS stream.
pub fn split_tls(
    tls: Box<TlsStream<TcpStream>>,
) -> (ReadHalf<Box<TlsStream<TcpStream>>>, TlsWriter) {
    let (reader, writer) = tokio::io::split(tls);
    (
        reader,
        TlsWriter {
            half: writer,
            taken: None,
        },
    )
}

impl BackendReader {
    /// The stream again, if `writer` is its other half.
    pub fn reunite(self, writer: BackendWriter) -> Option<BackendStream> {
        match (self, writer) {
            (BackendReader::Plain(reader), BackendWriter::Plain(writer)) => {
                reader.reunite(writer).ok().map(BackendStream::Plain)
            }
            (BackendReader::Tls(reader), BackendWriter::Tls(writer))
                if reader.is_pair_of(&writer.half) =>
            {
                Some(BackendStream::Tls(reader.unsplit(writer.half)))
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

/// A TLS half is polled once with a waker that does nothing; the caller's next real poll registers its own.
impl ReadNow for ReadHalf<Box<Tls>> {
    fn read_now(&mut self, buffer: &mut BytesMut) -> io::Result<usize> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut read = std::pin::pin!(tokio::io::AsyncReadExt::read_buf(self, buffer));
        match read.as_mut().poll(&mut cx) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl WriteNow for TlsWriter {
    fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(self).poll_write(&mut cx, bytes) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl AsyncRead for BackendStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buffer),
            BackendStream::Tls(tls) => Pin::new(tls).poll_read(cx, buffer),
        }
    }
}

impl AsyncWrite for BackendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Plain(tcp) => Pin::new(tcp).poll_write(cx, bytes),
            BackendStream::Tls(tls) => Pin::new(tls).poll_write(cx, bytes),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            BackendStream::Tls(tls) => Pin::new(tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            BackendStream::Tls(tls) => Pin::new(tls).poll_shutdown(cx),
        }
    }
}

impl AsyncWrite for TlsWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let taken = match this.taken {
            Some(taken) => taken,
            None => {
                let taken = ready!(Pin::new(&mut this.half).poll_write(cx, bytes))?;
                this.taken = Some(taken);
                taken
            }
        };
        ready!(Pin::new(&mut this.half).poll_flush(cx))?;
        this.taken = None;
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().half).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().half).poll_shutdown(cx)
    }
}

impl AsyncRead for BackendReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendReader::Plain(reader) => Pin::new(reader).poll_read(cx, buffer),
            BackendReader::Tls(reader) => Pin::new(reader).poll_read(cx, buffer),
        }
    }
}

impl AsyncWrite for BackendWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendWriter::Plain(writer) => Pin::new(writer).poll_write(cx, bytes),
            BackendWriter::Tls(writer) => Pin::new(writer).poll_write(cx, bytes),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendWriter::Plain(writer) => Pin::new(writer).poll_flush(cx),
            BackendWriter::Tls(writer) => Pin::new(writer).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendWriter::Plain(writer) => Pin::new(writer).poll_shutdown(cx),
            BackendWriter::Tls(writer) => Pin::new(writer).poll_shutdown(cx),
        }
    }
}
