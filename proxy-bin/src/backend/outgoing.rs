//! [`Outgoing`]: the request bytes a shared connection has queued and not written yet, in the order queued.
//!
//! Small requests are copied into one buffer, so a batch of them goes out in one piece. A request of at least
//! [`MIN_UNCOPIED_REQUEST`] bytes is never copied: it is written from where it is (the `Bytes` split from the
//! client's read buffer), as a piece of its own in the same vectored write.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;

use crate::piece_queue::{PieceQueue, MAX_WRITE_PIECES};

/// A request this big is written from where it is, never copied into the buffer: copying costs more than a
/// piece of its own in the vectored write (SET of 16 KB values at `-P 1`: 56,800 instructions per request with
/// the copies, 7,500 without), and a copy of many MB would hold up the event loop (every client on it) and
/// double the memory the request costs.
pub(super) const MIN_UNCOPIED_REQUEST: usize = 4 * 1024;
/// A buffer that grew past this (for many requests at once) is given back once it is empty.
const MAX_IDLE_CAPACITY: usize = 4 * 1024 * 1024;
const BUFFER_CAPACITY: usize = 64 * 1024;

/// Request bytes queued and not written yet.
#[derive(Debug)]
pub(super) struct Outgoing {
    queue: PieceQueue,
}

impl Default for Outgoing {
    fn default() -> Outgoing {
        Outgoing {
            queue: PieceQueue::with_capacity(BUFFER_CAPACITY),
        }
    }
}

impl Outgoing {
    /// Queues `request` after everything queued before.
    pub(super) fn push(&mut self, request: Bytes) {
        if request.len() < MIN_UNCOPIED_REQUEST {
            self.queue.buffer.extend_from_slice(&request);
        } else {
            self.queue.push_piece(request);
        }
    }

    /// Bytes queued and not written yet.
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Writes what the writer takes of the queued bytes: one `write` of the buffer when no piece waits before
    /// it (small requests only, the usual case), else one vectored write of the pieces and the buffer.
    pub(super) fn poll_write_to<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        context: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        if !self.queue.has_pieces() {
            return Pin::new(writer).poll_write(context, &self.queue.buffer);
        }
        let mut slots = [IoSlice::new(&[]); MAX_WRITE_PIECES];
        Pin::new(writer).poll_write_vectored(context, self.queue.slices(&mut slots))
    }

    /// The oldest piece: for a write that takes one slice.
    pub(super) fn first_piece(&self) -> &[u8] {
        self.queue.first()
    }

    /// Drops `count` written bytes from the front.
    pub(super) fn advance(&mut self, count: usize) {
        self.queue.advance(count);
        let buffer = &mut self.queue.buffer;
        if buffer.is_empty() && buffer.capacity() > MAX_IDLE_CAPACITY {
            *buffer = BytesMut::with_capacity(BUFFER_CAPACITY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_request_is_a_piece_of_its_own_and_small_ones_share_one() {
        let mut outgoing = Outgoing::default();
        outgoing.push(Bytes::from_static(b"small-1 "));
        outgoing.push(Bytes::from(vec![b'b'; MIN_UNCOPIED_REQUEST]));
        outgoing.push(Bytes::from_static(b"small-2 "));
        outgoing.push(Bytes::from_static(b"small-3"));
        let mut slots = [IoSlice::new(&[]); MAX_WRITE_PIECES];
        let pieces: Vec<usize> = outgoing
            .queue
            .slices(&mut slots)
            .iter()
            .map(|p| p.len())
            .collect();
        assert_eq!(pieces, vec![8, MIN_UNCOPIED_REQUEST, 15]);
        outgoing.advance(8 + MIN_UNCOPIED_REQUEST + 15);
        assert_eq!(outgoing.len(), 0);
    }
}
