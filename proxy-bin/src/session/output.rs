//! Replies on their way to the client, written without ever blocking the session, and the limit on them
//! (`client_limits.max_output_bytes`).
//!
//! The session gathers ready replies in its write buffer; [`Output::take`] moves them here, and
//! [`Output::write_now`] writes what the socket accepts without waiting. While a client does not read, the
//! session goes on collecting the replies that arrive for it (instead of waiting in a `write` while they pile up
//! unseen in the reply queue), so it sees how much waits and disconnects the client over the limit, as Redis
//! does with `client-output-buffer-limit`.

use std::io::IoSlice;

use crate::piece_queue::{PieceQueue, MAX_WRITE_PIECES};
use crate::tls::ClientStream;
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

/// Above this capacity an emptied buffer is given back, so a client that once received a big reply does not
/// keep its memory.
const MAX_IDLE_CAPACITY: usize = 256 * 1024;

/// The client's replies waiting to be written exceed `client_limits.max_output_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("{waiting} bytes of replies waiting to be written exceed client_limits.max_output_bytes ({limit})")]
pub struct OverOutputLimit {
    pub waiting: usize,
    pub limit: usize,
}

/// Reply bytes taken from the session's write buffer and not written to the client yet, in order: the pieces
/// (big replies never copied, and what was gathered before each; only while the client keeps up), then the
/// copied bytes.
#[derive(Debug)]
pub(super) struct Output {
    unwritten: PieceQueue,
    /// `client_limits.max_output_bytes`; 0 = no limit.
    limit: usize,
}

impl Output {
    pub(super) fn new(limit: usize) -> Output {
        Output {
            unwritten: PieceQueue::default(),
            limit,
        }
    }

    /// Bytes waiting to be written.
    pub(super) fn len(&self) -> usize {
        self.unwritten.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.unwritten.is_empty()
    }

    /// Takes the replies gathered, leaving none. Fails when the replies waiting would then exceed the limit.
    /// One bulk string reply is never refused for its own size when nothing else waits (a GET of a value bigger
    /// than the limit works); what piles up behind anything is limited.
    #[inline]
    pub(super) fn take(&mut self, gathered: &mut PieceQueue) -> Result<(), OverOutputLimit> {
        if gathered.has_pieces() {
            return self.take_pieces(gathered);
        }
        let buffer = &mut gathered.buffer;
        if buffer.is_empty() {
            return Ok(());
        }
        self.check_limit(buffer.len(), || is_one_bulk_string(buffer))?;
        self.take_buffer(buffer);
        Ok(())
    }

    /// [`Output::take`] when big replies were gathered as pieces.
    #[inline(never)]
    fn take_pieces(&mut self, gathered: &mut PieceQueue) -> Result<(), OverOutputLimit> {
        self.check_limit(gathered.len(), || {
            gathered
                .only_piece()
                .is_some_and(|one| is_one_bulk_string(one))
        })?;
        let keep_pieces = self.is_empty();
        for piece in gathered.drain_pieces() {
            if keep_pieces {
                self.unwritten.push_piece(piece);
            } else {
                // The client is behind: copied, so that a slow reader's replies never keep the buffers a
                // backend connection read them into (shared with other clients' replies) alive.
                self.unwritten.buffer.extend_from_slice(&piece);
            }
        }
        self.take_buffer(&mut gathered.buffer);
        Ok(())
    }

    /// Refuses `adding` more bytes over the limit, unless they are one bulk string (`one_bulk_string`, asked
    /// only then) and nothing else waits.
    #[inline]
    fn check_limit(
        &self,
        adding: usize,
        one_bulk_string: impl FnOnce() -> bool,
    ) -> Result<(), OverOutputLimit> {
        let waiting = self.len() + adding;
        if self.limit > 0 && waiting > self.limit && !(self.is_empty() && one_bulk_string()) {
            return Err(OverOutputLimit {
                waiting,
                limit: self.limit,
            });
        }
        Ok(())
    }

    #[inline]
    fn take_buffer(&mut self, gathered: &mut BytesMut) {
        let buffer = &mut self.unwritten.buffer;
        if buffer.is_empty() {
            std::mem::swap(buffer, gathered);
        } else {
            buffer.extend_from_slice(gathered);
            gathered.clear();
        }
    }

    /// Writes as much as the socket takes now, without waiting; returns the bytes written.
    pub(super) fn write_now(&mut self, stream: &ClientStream) -> std::io::Result<usize> {
        let mut written = 0;
        while !self.is_empty() {
            let attempt = if self.unwritten.has_pieces() {
                let mut slots = [IoSlice::new(&[]); MAX_WRITE_PIECES];
                stream.try_write_vectored(self.unwritten.slices(&mut slots))
            } else {
                stream.try_write(&self.unwritten.buffer)
            };
            match attempt {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(count) => {
                    self.unwritten.advance(count);
                    written += count;
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(error),
            }
        }
        self.release_if_idle();
        Ok(written)
    }

    /// Writes everything waiting, however long the client takes (used when a session ends or changes mode,
    /// where the caller bounds the wait); returns the bytes written.
    pub(super) async fn write_all(&mut self, stream: &mut ClientStream) -> std::io::Result<usize> {
        let written = self.len();
        for piece in self.unwritten.drain_pieces() {
            stream.write_all(&piece).await?;
        }
        stream.write_all(&self.unwritten.buffer).await?;
        // Over TLS, the last encrypted bytes may still wait for the socket; over TCP this does nothing.
        stream.flush().await?;
        self.unwritten.buffer.clear();
        self.release_if_idle();
        Ok(written)
    }

    fn release_if_idle(&mut self) {
        let buffer = &mut self.unwritten.buffer;
        if buffer.is_empty() && buffer.capacity() > MAX_IDLE_CAPACITY {
            *buffer = BytesMut::new();
        }
    }
}

/// Whether `bytes` is exactly one RESP bulk string (`$<len>\r\n<data>\r\n`).
fn is_one_bulk_string(bytes: &[u8]) -> bool {
    let Some(rest) = bytes.strip_prefix(b"$") else {
        return false;
    };
    let Some(line_end) = rest.iter().position(|&byte| byte == b'\r') else {
        return false;
    };
    let length = std::str::from_utf8(&rest[..line_end])
        .ok()
        .and_then(|text| text.parse::<usize>().ok());
    // `$` + header + `\r\n` + data + `\r\n`
    length.is_some_and(|length| 1 + line_end + 2 + length + 2 == bytes.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;

    /// Replies gathered as `pieces`, then `buffer`'s bytes.
    fn replies(pieces: &[&'static [u8]], buffer: &[u8]) -> PieceQueue {
        let mut gathered = PieceQueue::default();
        for piece in pieces {
            gathered.push_piece(Bytes::from_static(piece));
        }
        gathered.buffer.extend_from_slice(buffer);
        gathered
    }

    #[test]
    fn replies_beyond_the_limit_are_refused() {
        let mut output = Output::new(10);
        let mut gathered = replies(&[], b"+OK\r\n+OK\r\n");
        assert!(output.take(&mut gathered).is_ok());
        assert!(gathered.is_empty());
        let mut more = replies(&[], b"+OK\r\n");
        let over = output.take(&mut more).unwrap_err();
        assert_eq!((over.waiting, over.limit), (15, 10));
    }

    #[test]
    fn one_big_bulk_string_alone_is_written() {
        let mut output = Output::new(4);
        let mut gathered = replies(&[], b"$10\r\n0123456789\r\n");
        assert!(output.take(&mut gathered).is_ok());
        assert_eq!(output.len(), 17);
        let mut two = replies(&[], b"$1\r\na\r\n$1\r\nb\r\n");
        let mut empty = Output::new(4);
        assert!(empty.take(&mut two).is_err());
    }

    #[test]
    fn no_limit_takes_everything() {
        let mut output = Output::new(0);
        let mut gathered = replies(&[], &[b'x'; 1000]);
        assert!(output.take(&mut gathered).is_ok());
        assert_eq!(output.len(), 1000);
    }

    #[test]
    fn one_big_bulk_string_alone_as_a_piece_is_written() {
        let mut output = Output::new(4);
        let mut pieces = replies(&[b"$10\r\n0123456789\r\n"], b"");
        assert!(output.take(&mut pieces).is_ok());
        assert_eq!(output.len(), 17);
        let mut empty = Output::new(4);
        let mut two = replies(&[b"$1\r\na\r\n", b"$1\r\nb\r\n"], b"");
        assert!(empty.take(&mut two).is_err());
    }

    /// Pieces are kept while the output is empty, copied behind what waits otherwise; either way the client
    /// gets every byte in order, through partial writes.
    #[tokio::test]
    async fn pieces_and_gathered_bytes_reach_the_client_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(address).await.unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        let stream = ClientStream::from(client);
        let mut output = Output::new(0);
        let mut expected = Vec::new();
        for round in 0..20u8 {
            let big = Bytes::from(vec![b'a' + round; 300_000 + usize::from(round)]);
            let small = Bytes::from(vec![b'A' + round; 10]);
            let tail = BytesMut::from(&[b'0' + round % 10; 7][..]);
            for part in [&big[..], &small[..], &tail[..]] {
                expected.extend_from_slice(part);
            }
            let kept_before = output.unwritten.pieces_count();
            let behind = !output.is_empty();
            let mut gathered = PieceQueue::default();
            gathered.push_piece(big);
            gathered.push_piece(small);
            gathered.buffer.extend_from_slice(&tail);
            output.take(&mut gathered).unwrap();
            if behind {
                assert_eq!(
                    output.unwritten.pieces_count(),
                    kept_before,
                    "a client behind gets copies"
                );
            }
            output.write_now(&stream).unwrap();
        }
        let reader = tokio::spawn(async move {
            let mut received = vec![0; expected.len()];
            peer.read_exact(&mut received).await.unwrap();
            assert!(received == expected, "the bytes arrived out of order");
        });
        while !output.is_empty() {
            stream.writable().await.unwrap();
            output.write_now(&stream).unwrap();
        }
        reader.await.unwrap();
    }

    #[test]
    fn bulk_string_shapes() {
        assert!(is_one_bulk_string(b"$0\r\n\r\n"));
        assert!(is_one_bulk_string(b"$3\r\nabc\r\n"));
        assert!(!is_one_bulk_string(b"$3\r\nabc\r\n+OK\r\n"));
        assert!(!is_one_bulk_string(b"$-1\r\n"));
        assert!(!is_one_bulk_string(b"*1\r\n$1\r\na\r\n"));
        assert!(!is_one_bulk_string(b"$3\r\nab"));
    }
}
