//! [`PlainSocket`]: a plaintext connection to a Redis node, over TCP or over a Unix domain socket (a standalone
//! pool's `unix:/path` node), and its two halves. Each method passes to tokio's own type; a shared connection
//! takes the halves of the variant it got (`backend::shared`), so its loop runs on tokio's types directly.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{tcp, unix, TcpStream, UnixStream};

/// A plaintext connection to a node.
#[derive(Debug)]
pub enum PlainSocket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// The reading half of a [`PlainSocket`].
#[derive(Debug)]
pub enum PlainReader {
    Tcp(tcp::OwnedReadHalf),
    Unix(unix::OwnedReadHalf),
}

/// The writing half of a [`PlainSocket`].
#[derive(Debug)]
pub enum PlainWriter {
    Tcp(tcp::OwnedWriteHalf),
    Unix(unix::OwnedWriteHalf),
}

impl PlainSocket {
    pub fn into_split(self) -> (PlainReader, PlainWriter) {
        match self {
            PlainSocket::Tcp(socket) => {
                let (reader, writer) = socket.into_split();
                (PlainReader::Tcp(reader), PlainWriter::Tcp(writer))
            }
            PlainSocket::Unix(socket) => {
                let (reader, writer) = socket.into_split();
                (PlainReader::Unix(reader), PlainWriter::Unix(writer))
            }
        }
    }

    /// Waits until the socket may take bytes (see tokio's `TcpStream::writable`).
    pub async fn writable(&self) -> io::Result<()> {
        match self {
            PlainSocket::Tcp(socket) => socket.writable().await,
            PlainSocket::Unix(socket) => socket.writable().await,
        }
    }

    /// Runs `io` on the socket's descriptor, clearing its readiness when `io` would block (see tokio's
    /// `TcpStream::try_io`).
    pub fn try_io<R>(
        &self,
        interest: Interest,
        io: impl FnOnce(BorrowedFd<'_>) -> io::Result<R>,
    ) -> io::Result<R> {
        match self {
            PlainSocket::Tcp(socket) => socket.try_io(interest, || io(socket.as_fd())),
            PlainSocket::Unix(socket) => socket.try_io(interest, || io(socket.as_fd())),
        }
    }

    /// Reads without waiting (`WouldBlock` when nothing is there).
    pub fn try_read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            PlainSocket::Tcp(socket) => socket.try_read(buffer),
            PlainSocket::Unix(socket) => socket.try_read(buffer),
        }
    }

    /// On a Unix domain socket, asks for a send buffer of `bytes` (`SO_SNDBUF`; the kernel caps it at
    /// `net.core.wmem_max` and doubles it for its bookkeeping). A Unix socket's send buffer is all the room there
    /// is between the two processes, and it stays at `net.core.wmem_default` (208 KiB) unless asked, where a TCP
    /// socket's grows by itself: a TCP socket is left as it is. Returns the size the socket has.
    pub fn widen_unix_send_buffer(&self, bytes: usize) -> io::Result<usize> {
        match self {
            PlainSocket::Tcp(socket) => rustix::net::sockopt::socket_send_buffer_size(socket),
            PlainSocket::Unix(socket) => {
                rustix::net::sockopt::set_socket_send_buffer_size(socket, bytes)?;
                rustix::net::sockopt::socket_send_buffer_size(socket)
            }
        }
        .map_err(io::Error::from)
    }
}

impl PlainReader {
    /// The socket again, if `writer` is its other half.
    pub fn reunite(self, writer: PlainWriter) -> Option<PlainSocket> {
        match (self, writer) {
            (PlainReader::Tcp(reader), PlainWriter::Tcp(writer)) => {
                reader.reunite(writer).ok().map(PlainSocket::Tcp)
            }
            (PlainReader::Unix(reader), PlainWriter::Unix(writer)) => {
                reader.reunite(writer).ok().map(PlainSocket::Unix)
            }
            _ => None,
        }
    }
}

/// Passes a method call to the variant's own value, whichever it is.
macro_rules! each_variant {
    ($value:expr, $enum:ident, $inner:ident => $call:expr) => {
        match $value {
            $enum::Tcp($inner) => $call,
            $enum::Unix($inner) => $call,
        }
    };
}

/// `AsyncRead` for an enum of a TCP and a Unix variant, passed to the variant.
macro_rules! async_read_of_each_variant {
    ($enum:ident) => {
        impl AsyncRead for $enum {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buffer: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                each_variant!(self.get_mut(), $enum, inner => Pin::new(inner).poll_read(cx, buffer))
            }
        }
    };
}

/// `AsyncWrite` for an enum of a TCP and a Unix variant, passed to the variant (vectored writes too).
macro_rules! async_write_of_each_variant {
    ($enum:ident) => {
        impl AsyncWrite for $enum {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bytes: &[u8],
            ) -> Poll<io::Result<usize>> {
                each_variant!(self.get_mut(), $enum, inner => Pin::new(inner).poll_write(cx, bytes))
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                slices: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                each_variant!(self.get_mut(), $enum, inner => {
                    Pin::new(inner).poll_write_vectored(cx, slices)
                })
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                each_variant!(self.get_mut(), $enum, inner => Pin::new(inner).poll_flush(cx))
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                each_variant!(self.get_mut(), $enum, inner => Pin::new(inner).poll_shutdown(cx))
            }
        }
    };
}

async_read_of_each_variant!(PlainSocket);
async_read_of_each_variant!(PlainReader);
async_write_of_each_variant!(PlainSocket);
async_write_of_each_variant!(PlainWriter);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// What Linux grants for a send buffer of `bytes`: at most `net.core.wmem_max`, doubled for its bookkeeping.
    fn granted(bytes: usize) -> usize {
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        bytes.min(cap) * 2
    }

    #[tokio::test]
    async fn a_unix_socket_gets_the_send_buffer_asked_and_a_tcp_socket_keeps_its_own() {
        let (near, _far) = UnixStream::pair().unwrap();
        let before = rustix::net::sockopt::socket_send_buffer_size(&near).unwrap();
        let unix = PlainSocket::Unix(near);
        let asked = 4 * before;
        assert_eq!(unix.widen_unix_send_buffer(asked).unwrap(), granted(asked));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let before = rustix::net::sockopt::socket_send_buffer_size(&tcp).unwrap();
        let tcp = PlainSocket::Tcp(tcp);
        assert_eq!(tcp.widen_unix_send_buffer(asked).unwrap(), before);
    }
}
