//! Moving a big value from the client's socket to a lane socket with `splice(2)`, through a pipe, so its bytes
//! never enter the proxy's memory: the kernel hands the socket buffers' pages on instead of the proxy reading
//! them into a buffer and writing them out again (two copies of every byte, most of the proxy's CPU time on
//! big requests). Plaintext on both sides only (the lane's socket TCP or a Unix domain socket): TLS needs the
//! bytes in user space.
//!
//! The pipe holds at most [`SPLICE_PIPE_BYTES`] (1 MiB) of kernel pages, not the proxy's memory; a lane keeps
//! at most one pipe per connection (a lease uses it, and gives it back empty). It is bigger than the buffered
//! path's window ([`LANE_WINDOW`]) because every pass through it costs two system calls, a wake-up and a short
//! TCP segment: a 1 MiB value goes in one pass instead of four. When the system refuses that size (an
//! unprivileged user over `pipe-user-pages-soft`), the pipe gets [`LANE_WINDOW`], else the system's default.
//! It is filled only when empty, so a `splice` from the client that finds nothing to move means the client's
//! socket is empty (never that the pipe is full), and the socket's readiness can be cleared safely.
//!
//! The value goes to the lane socket with `SPLICE_F_MORE` (`MSG_MORE`): the kernel sends full segments and
//! holds a last partial one until the request's next bytes come. Those always follow: a bulk string's data is
//! followed by its `\r\n`, which the session reads and writes without `MSG_MORE`, which sends what is held.

use std::io;
use std::os::fd::OwnedFd;

use rustix::net::{send, SendFlags};
use rustix::pipe::{
    fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags,
};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::LANE_WINDOW;
use crate::tls::PlainSocket;

/// The size asked for the pipe (see the module docs).
pub const SPLICE_PIPE_BYTES: usize = 1024 * 1024;

/// A pipe between a client socket and a lane socket, and how many bytes it holds.
#[derive(Debug)]
pub struct SplicePipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
    held: usize,
}

impl SplicePipe {
    /// A non-blocking pipe of [`SPLICE_PIPE_BYTES`], or [`LANE_WINDOW`], or the system's default size, the
    /// first the system grants.
    pub fn new() -> io::Result<SplicePipe> {
        let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        let capacity = match fcntl_setpipe_size(&write, SPLICE_PIPE_BYTES)
            .or_else(|_| fcntl_setpipe_size(&write, LANE_WINDOW))
        {
            Ok(size) => size,
            Err(_) => fcntl_getpipe_size(&write)?,
        };
        Ok(SplicePipe {
            read,
            write,
            capacity,
            held: 0,
        })
    }

    /// Bytes in the pipe, not yet moved to the lane socket.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Moves at most `max` bytes (and at most the pipe's size) from `client` into the empty pipe, waiting until
    /// the client sent some. Returns 0 when the client closed its end.
    pub async fn fill_from(&mut self, client: &TcpStream, max: usize) -> io::Result<usize> {
        debug_assert_eq!(self.held, 0, "the pipe is filled only when empty");
        let len = max.min(self.capacity);
        loop {
            client.readable().await?;
            let moved = client.try_io(Interest::READABLE, || {
                splice(client, None, &self.write, None, len, SpliceFlags::NONBLOCK)
                    .map_err(io::Error::from)
            });
            match moved {
                Ok(moved) => {
                    self.held = moved;
                    return Ok(moved);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// Moves what the pipe holds to `lane`, waiting while its socket is full; returns the bytes moved (at
    /// least one). 0 means the pipe was empty. Sent with `SPLICE_F_MORE`: the caller writes the request's
    /// next bytes without it (see the module docs).
    pub async fn drain_to(&mut self, lane: &PlainSocket) -> io::Result<usize> {
        if self.held == 0 {
            return Ok(0);
        }
        loop {
            lane.writable().await?;
            let moved = lane.try_io(Interest::WRITABLE, |lane| {
                splice(
                    &self.read,
                    None,
                    lane,
                    None,
                    self.held,
                    SpliceFlags::NONBLOCK | SpliceFlags::MORE,
                )
                .map_err(io::Error::from)
            });
            match moved {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(moved) => {
                    self.held -= moved.min(self.held);
                    return Ok(moved);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Err(error),
            }
        }
    }
}

/// Writes some of `bytes` to `socket` with `MSG_MORE`, waiting while it is full; returns how many it took. The
/// kernel holds a last partial segment until bytes written without `MSG_MORE` follow, so a request's short
/// pieces (its head, a few KiB read with it) ride in the value's full segments instead of packets of their own.
pub async fn send_more(socket: &PlainSocket, bytes: &[u8]) -> io::Result<usize> {
    loop {
        socket.writable().await?;
        let sent = socket.try_io(Interest::WRITABLE, |socket| {
            send(socket, bytes, SendFlags::MORE | SendFlags::NOSIGNAL).map_err(io::Error::from)
        });
        match sent {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Two ends of a loopback TCP connection.
    async fn connected_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (far, _) = listener.accept().await.unwrap();
        (near, far)
    }

    /// 3 MB go from one socket to another through the pipe, a pipe's worth at a time, byte for byte; the
    /// bytes sent after them stay in the first socket, unread. The lane is TCP, then a Unix domain socket.
    #[tokio::test]
    async fn a_value_moves_between_sockets_byte_for_byte_and_no_further() {
        let (to_lane, lane) = connected_pair().await;
        move_a_value(PlainSocket::Tcp(to_lane), lane).await;
        let (to_lane, lane) = tokio::net::UnixStream::pair().unwrap();
        move_a_value(PlainSocket::Unix(to_lane), lane).await;
    }

    async fn move_a_value(
        mut to_lane: PlainSocket,
        mut lane: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    ) {
        let (mut client, from_client) = connected_pair().await;
        let value: Vec<u8> = (0..3_000_000u32).map(|index| (index % 251) as u8).collect();
        let sent = value.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.write_all(b"NEXT").await.unwrap();
            client
        });
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 3_000_000 + 2];
            lane.read_exact(&mut got).await.unwrap();
            got
        });
        let mut pipe = SplicePipe::new().unwrap();
        let mut left = value.len();
        while left > 0 {
            let moved = pipe.fill_from(&from_client, left).await.unwrap();
            assert!(moved > 0 && moved <= pipe.capacity);
            while pipe.held() > 0 {
                pipe.drain_to(&to_lane).await.unwrap();
            }
            left -= moved;
        }
        // Spliced with SPLICE_F_MORE: the last bytes go once bytes without it follow (the value's `\r\n`).
        to_lane.write_all(b"\r\n").await.unwrap();
        let mut expected = value;
        expected.extend_from_slice(b"\r\n");
        assert!(
            reader.await.unwrap() == expected,
            "the value changed on the way"
        );
        let _client = writer.await.unwrap();
        let mut next = [0u8; 4];
        let mut from_client = from_client;
        from_client.read_exact(&mut next).await.unwrap();
        assert_eq!(&next, b"NEXT");
    }
}
