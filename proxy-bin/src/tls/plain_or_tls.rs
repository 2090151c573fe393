//! [`PlainOrTls`]: the one shape of a client connection, a backend connection and a backend connection's halves,
//! each plaintext or TLS, with tokio's `AsyncRead`/`AsyncWrite` passed to the variant. Each TLS type brings its
//! own `AsyncRead`/`AsyncWrite` (a backend's TLS write is written through, see `backend_stream.rs`), so the
//! dispatch is written once here.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection (or a half of one), plaintext (`P`, tokio's own type) or TLS (`T`).
#[derive(Debug)]
pub enum PlainOrTls<P, T> {
    Plain(P),
    Tls(T),
}

impl<P: AsyncRead + Unpin, T: AsyncRead + Unpin> AsyncRead for PlainOrTls<P, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PlainOrTls::Plain(plain) => Pin::new(plain).poll_read(cx, buffer),
            PlainOrTls::Tls(tls) => Pin::new(tls).poll_read(cx, buffer),
        }
    }
}

impl<P: AsyncWrite + Unpin, T: AsyncWrite + Unpin> AsyncWrite for PlainOrTls<P, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PlainOrTls::Plain(plain) => Pin::new(plain).poll_write(cx, bytes),
            PlainOrTls::Tls(tls) => Pin::new(tls).poll_write(cx, bytes),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PlainOrTls::Plain(plain) => Pin::new(plain).poll_flush(cx),
            PlainOrTls::Tls(tls) => Pin::new(tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PlainOrTls::Plain(plain) => Pin::new(plain).poll_shutdown(cx),
            PlainOrTls::Tls(tls) => Pin::new(tls).poll_shutdown(cx),
        }
    }
}
