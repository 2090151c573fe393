//! Moving a big value from the client's socket to a lane socket with `splice(2)`, through a pipe, so its bytes
//! never enter the proxy's memory: the kernel hands the socket buffers' pages on instead of the proxy reading
//! them into a buffer and writing them out again (two copies of every byte, most of the proxy's CPU time on
//! big requests). Plain TCP on both sides only: TLS needs the bytes in user space.
//!
//! The pipe holds at most [`LANE_WINDOW`] bytes, the same bound as the buffered path's window. It is filled
//! only when empty, so a `splice` from the client that finds nothing to move means the client's socket is empty
//! (never that the pipe is full), and the socket's readiness can be cleared safely.

use std::io;
use std::os::fd::OwnedFd;

use rustix::pipe::{
    fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags,
};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::LANE_WINDOW;

/// A pipe between a client socket and a lane socket, and how many bytes it holds.
#[derive(Debug)]
pub struct SplicePipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
    held: usize,
}

impl SplicePipe {
    /// A non-blocking pipe of [`LANE_WINDOW`] bytes (or the system's default size, when the system refuses
    /// that one).
    pub fn new() -> io::Result<SplicePipe> {
        let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        let capacity = match fcntl_setpipe_size(&write, LANE_WINDOW) {
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
    /// least one). 0 means the pipe was empty.
    pub async fn drain_to(&mut self, lane: &TcpStream) -> io::Result<usize> {
        if self.held == 0 {
            return Ok(0);
        }
        loop {
            lane.writable().await?;
            let moved = lane.try_io(Interest::WRITABLE, || {
                splice(
                    &self.read,
                    None,
                    lane,
                    None,
                    self.held,
                    SpliceFlags::NONBLOCK,
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
    /// bytes sent after them stay in the first socket, unread.
    #[tokio::test]
    async fn a_value_moves_between_sockets_byte_for_byte_and_no_further() {
        let (mut client, from_client) = connected_pair().await;
        let (to_lane, mut lane) = connected_pair().await;
        let value: Vec<u8> = (0..3_000_000u32).map(|index| (index % 251) as u8).collect();
        let sent = value.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.write_all(b"NEXT").await.unwrap();
            client
        });
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 3_000_000];
            lane.read_exact(&mut got).await.unwrap();
            got
        });
        let mut pipe = SplicePipe::new().unwrap();
        let mut left = value.len();
        while left > 0 {
            let moved = pipe.fill_from(&from_client, left).await.unwrap();
            assert!(moved > 0 && moved <= LANE_WINDOW.max(pipe.capacity));
            while pipe.held() > 0 {
                pipe.drain_to(&to_lane).await.unwrap();
            }
            left -= moved;
        }
        assert!(
            reader.await.unwrap() == value,
            "the value changed on the way"
        );
        let _client = writer.await.unwrap();
        let mut next = [0u8; 4];
        let mut from_client = from_client;
        from_client.read_exact(&mut next).await.unwrap();
        assert_eq!(&next, b"NEXT");
    }
}
