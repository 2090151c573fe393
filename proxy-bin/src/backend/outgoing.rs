//! [`Outgoing`]: the request bytes a shared connection has queued and not written yet, in the order queued.
//!
//! Small requests are copied into one buffer, so a batch of them goes out in one piece. A request of at least
//! [`MIN_UNCOPIED_REQUEST`] bytes is never copied: it is written from where it is (the `Bytes` split from the
//! client's read buffer), as a piece of its own in the same vectored write.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWrite;

/// A request this big is written from where it is, never copied into the buffer: copying costs more than a
/// piece of its own in the vectored write (SET of 16 KB values at `-P 1`: 56,800 instructions per request with
/// the copies, 7,500 without), and a copy of many MB would hold up the event loop (every client on it) and
/// double the memory the request costs.
pub(super) const MIN_UNCOPIED_REQUEST: usize = 4 * 1024;
/// Most pieces one vectored write takes (what is queued after them waits for the next write).
const MAX_WRITE_PIECES: usize = 16;
/// A buffer that grew past this (for many requests at once) is given back once it is empty.
const MAX_IDLE_CAPACITY: usize = 4 * 1024 * 1024;
const BUFFER_CAPACITY: usize = 64 * 1024;

/// Request bytes queued and not written yet.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// Requests of at least [`MIN_UNCOPIED_REQUEST`] bytes (and, frozen, what was copied before each), oldest
    /// first, all queued before `buffer`'s bytes.
    uncopied: VecDeque<Bytes>,
    uncopied_bytes: usize,
    buffer: BytesMut,
}

impl Default for Outgoing {
    fn default() -> Outgoing {
        Outgoing {
            uncopied: VecDeque::new(),
            uncopied_bytes: 0,
            buffer: BytesMut::with_capacity(BUFFER_CAPACITY),
        }
    }
}

impl Outgoing {
    /// Queues `request` after everything queued before.
    pub(super) fn push(&mut self, request: Bytes) {
        if request.len() < MIN_UNCOPIED_REQUEST {
            self.buffer.extend_from_slice(&request);
            return;
        }
        if !self.buffer.is_empty() {
            let earlier = self.buffer.split().freeze();
            self.uncopied_bytes += earlier.len();
            self.uncopied.push_back(earlier);
        }
        self.uncopied_bytes += request.len();
        self.uncopied.push_back(request);
    }

    /// Bytes queued and not written yet.
    pub(super) fn len(&self) -> usize {
        self.uncopied_bytes + self.buffer.len()
    }

    /// What to write next, oldest first, in `slots`; returns the filled part of `slots`.
    pub(super) fn pieces<'a, 's>(
        &'a self,
        slots: &'s mut [IoSlice<'a>; MAX_WRITE_PIECES],
    ) -> &'s [IoSlice<'a>] {
        let uncopied = self.uncopied.iter().map(|piece| &piece[..]);
        let all = uncopied.chain(std::iter::once(&self.buffer[..]));
        let mut filled = 0;
        for (slot, piece) in slots.iter_mut().zip(all.filter(|piece| !piece.is_empty())) {
            *slot = IoSlice::new(piece);
            filled += 1;
        }
        &slots[..filled]
    }

    /// Writes what the writer takes of the queued bytes: one `write` of the buffer when no piece waits before
    /// it (small requests only, the usual case), else one vectored write of the pieces and the buffer.
    pub(super) fn poll_write_to<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        context: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        if self.uncopied.is_empty() {
            return Pin::new(writer).poll_write(context, &self.buffer);
        }
        let mut slots = [IoSlice::new(&[]); MAX_WRITE_PIECES];
        Pin::new(writer).poll_write_vectored(context, self.pieces(&mut slots))
    }

    /// The oldest piece: for a write that takes one slice.
    pub(super) fn first_piece(&self) -> &[u8] {
        match self.uncopied.front() {
            Some(front) => front,
            None => &self.buffer,
        }
    }

    /// Drops `count` written bytes from the front.
    pub(super) fn advance(&mut self, mut count: usize) {
        while count > 0 {
            let Some(front) = self.uncopied.front_mut() else {
                self.buffer.advance(count.min(self.buffer.len()));
                break;
            };
            let taken = count.min(front.len());
            front.advance(taken);
            self.uncopied_bytes -= taken;
            count -= taken;
            if front.is_empty() {
                self.uncopied.pop_front();
            }
        }
        if self.buffer.is_empty() && self.buffer.capacity() > MAX_IDLE_CAPACITY {
            self.buffer = BytesMut::with_capacity(BUFFER_CAPACITY);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Requests of random sizes around the copy threshold, written in random partial writes (each taking a
    /// random number of the bytes offered), come out whole and in order.
    #[test]
    fn random_requests_written_in_random_pieces_come_out_in_order() {
        for seed in 0..200 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut outgoing = Outgoing::default();
            let mut queued = Vec::new();
            let mut written = Vec::new();
            for number in 0..rng.usize(1..60) {
                let size = match rng.u8(0..3) {
                    0 => rng.usize(0..64),
                    1 => rng.usize(MIN_UNCOPIED_REQUEST - 2..MIN_UNCOPIED_REQUEST + 2),
                    _ => rng.usize(MIN_UNCOPIED_REQUEST..40_000),
                };
                let request: Vec<u8> = (0..size).map(|i| (number * 31 + i) as u8).collect();
                queued.extend_from_slice(&request);
                outgoing.push(Bytes::from(request));
                if rng.u8(0..4) == 0 && outgoing.len() > 0 {
                    write_some(&mut rng, &mut outgoing, &mut written);
                }
            }
            while outgoing.len() > 0 {
                write_some(&mut rng, &mut outgoing, &mut written);
            }
            assert_eq!(written, queued, "seed {seed}");
        }
    }

    /// One write of the pieces offered that takes a random part of them (at least one byte).
    fn write_some(rng: &mut fastrand::Rng, outgoing: &mut Outgoing, written: &mut Vec<u8>) {
        let mut slots = [IoSlice::new(&[]); MAX_WRITE_PIECES];
        let pieces = outgoing.pieces(&mut slots);
        let offered: usize = pieces.iter().map(|piece| piece.len()).sum();
        assert!(offered > 0 && pieces.len() <= MAX_WRITE_PIECES);
        assert_eq!(outgoing.first_piece(), &pieces[0][..]);
        let count = rng.usize(1..=offered);
        let mut left = count;
        for piece in pieces {
            let taken = left.min(piece.len());
            written.extend_from_slice(&piece[..taken]);
            left -= taken;
        }
        let before = outgoing.len();
        outgoing.advance(count);
        assert_eq!(outgoing.len(), before - count);
    }

    #[test]
    fn a_big_request_is_a_piece_of_its_own_and_small_ones_share_one() {
        let mut outgoing = Outgoing::default();
        outgoing.push(Bytes::from_static(b"small-1 "));
        outgoing.push(Bytes::from(vec![b'b'; MIN_UNCOPIED_REQUEST]));
        outgoing.push(Bytes::from_static(b"small-2 "));
        outgoing.push(Bytes::from_static(b"small-3"));
        let mut slots = [IoSlice::new(&[]); MAX_WRITE_PIECES];
        let pieces: Vec<usize> = outgoing
            .pieces(&mut slots)
            .iter()
            .map(|p| p.len())
            .collect();
        assert_eq!(pieces, vec![8, MIN_UNCOPIED_REQUEST, 15]);
    }
}
