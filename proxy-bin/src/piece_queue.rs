//! [`PieceQueue`]: bytes waiting to be written, in order: pieces written from where they are (never copied), then
//! a buffer of copied bytes. The backend's queued requests and a session's unwritten replies are both one.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Most pieces one vectored write takes (what waits after them goes in the next write).
pub const MAX_WRITE_PIECES: usize = 16;

/// Bytes waiting to be written: `pieces`, oldest first, then `buffer`.
#[derive(Debug, Default)]
pub struct PieceQueue {
    pieces: VecDeque<Bytes>,
    pieces_len: usize,
    /// Bytes copied here, written after every piece.
    pub buffer: BytesMut,
}

impl PieceQueue {
    pub fn with_capacity(capacity: usize) -> PieceQueue {
        PieceQueue {
            buffer: BytesMut::with_capacity(capacity),
            ..PieceQueue::default()
        }
    }

    /// Bytes waiting.
    #[inline]
    pub fn len(&self) -> usize {
        self.pieces_len + self.buffer.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a piece waits before the buffer's bytes.
    #[inline]
    pub fn has_pieces(&self) -> bool {
        !self.pieces.is_empty()
    }

    /// How many pieces wait.
    #[cfg(test)]
    pub fn pieces_count(&self) -> usize {
        self.pieces.len()
    }

    /// Queues `piece` after everything queued, the buffer's bytes included (they become a piece before it).
    pub fn push_piece(&mut self, piece: Bytes) {
        if !self.buffer.is_empty() {
            let earlier = self.buffer.split().freeze();
            self.push_back(earlier);
        }
        self.push_back(piece);
    }

    fn push_back(&mut self, piece: Bytes) {
        self.pieces_len += piece.len();
        self.pieces.push_back(piece);
    }

    /// What to write next, oldest first, in `slots`; returns the filled part of `slots`.
    pub fn slices<'a, 's>(
        &'a self,
        slots: &'s mut [IoSlice<'a>; MAX_WRITE_PIECES],
    ) -> &'s [IoSlice<'a>] {
        let pieces = self.pieces.iter().map(|piece| &piece[..]);
        let all = pieces.chain(std::iter::once(&self.buffer[..]));
        let mut filled = 0;
        for (slot, bytes) in slots.iter_mut().zip(all.filter(|bytes| !bytes.is_empty())) {
            *slot = IoSlice::new(bytes);
            filled += 1;
        }
        &slots[..filled]
    }

    /// The oldest piece (or the buffer): for a write that takes one slice.
    pub fn first(&self) -> &[u8] {
        match self.pieces.front() {
            Some(front) => front,
            None => &self.buffer,
        }
    }

    /// Drops `count` written bytes from the front.
    pub fn advance(&mut self, mut count: usize) {
        while count > 0 {
            let Some(front) = self.pieces.front_mut() else {
                self.buffer.advance(count.min(self.buffer.len()));
                return;
            };
            let taken = count.min(front.len());
            front.advance(taken);
            self.pieces_len -= taken;
            count -= taken;
            if front.is_empty() {
                self.pieces.pop_front();
            }
        }
    }

    /// The one piece waiting, when nothing else waits.
    pub fn only_piece(&self) -> Option<&Bytes> {
        match (self.pieces.len(), self.buffer.is_empty()) {
            (1, true) => self.pieces.front(),
            _ => None,
        }
    }

    /// Copies the pieces into the buffer, before the bytes already there, for what must see every byte in one
    /// buffer.
    pub fn join_pieces(&mut self) {
        if self.pieces.is_empty() {
            return;
        }
        let mut joined = BytesMut::with_capacity(self.len());
        for piece in self.drain_pieces() {
            joined.extend_from_slice(&piece);
        }
        joined.extend_from_slice(&self.buffer);
        self.buffer = joined;
    }

    /// Every piece, oldest first, leaving none (the buffer stays).
    pub fn drain_pieces(&mut self) -> impl Iterator<Item = Bytes> + '_ {
        self.pieces_len = 0;
        self.pieces.drain(..)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Pieces and buffered bytes of random sizes, written in random partial writes (each taking a random
    /// number of the bytes offered), come out whole and in order.
    #[test]
    fn random_pieces_written_in_random_parts_come_out_in_order() {
        for seed in 0..200 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut queue = PieceQueue::default();
            let mut queued = Vec::new();
            let mut written = Vec::new();
            for number in 0..rng.usize(1..60) {
                let bytes: Vec<u8> = (0..rng.usize(0..9000))
                    .map(|i| (number * 31 + i) as u8)
                    .collect();
                queued.extend_from_slice(&bytes);
                if rng.bool() {
                    queue.push_piece(Bytes::from(bytes));
                } else {
                    queue.buffer.extend_from_slice(&bytes);
                }
                if rng.u8(0..4) == 0 && !queue.is_empty() {
                    write_some(&mut rng, &mut queue, &mut written);
                }
            }
            while !queue.is_empty() {
                write_some(&mut rng, &mut queue, &mut written);
            }
            assert_eq!(written, queued, "seed {seed}");
        }
    }

    /// One write of the slices offered that takes a random part of them (at least one byte).
    fn write_some(rng: &mut fastrand::Rng, queue: &mut PieceQueue, written: &mut Vec<u8>) {
        let mut slots = [IoSlice::new(&[]); MAX_WRITE_PIECES];
        let slices = queue.slices(&mut slots);
        let offered: usize = slices.iter().map(|slice| slice.len()).sum();
        assert!(offered > 0);
        assert_eq!(queue.first(), &slices[0][..]);
        let count = rng.usize(1..=offered);
        let mut left = count;
        for slice in slices {
            let taken = left.min(slice.len());
            written.extend_from_slice(&slice[..taken]);
            left -= taken;
        }
        let before = queue.len();
        queue.advance(count);
        assert_eq!(queue.len(), before - count);
    }
}
