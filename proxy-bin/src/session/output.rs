//! Replies on their way to the client, written without ever blocking the session, and the limit on them
//! (`client_limits.max_output_bytes`).
//!
//! The session gathers ready replies in its write buffer; [`Output::take`] moves them here, and
//! [`Output::write_now`] writes what the socket accepts without waiting. While a client does not read, the
//! session goes on collecting the replies that arrive for it (instead of waiting in a `write` while they pile up
//! unseen in the reply queue), so it sees how much waits and disconnects the client over the limit, as Redis
//! does with `client-output-buffer-limit`.

use crate::tls::ClientStream;
use bytes::{Buf, BytesMut};
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

/// Reply bytes taken from the session's write buffer and not written to the client yet.
#[derive(Debug)]
pub(super) struct Output {
    unwritten: BytesMut,
    /// `client_limits.max_output_bytes`; 0 = no limit.
    limit: usize,
}

impl Output {
    pub(super) fn new(limit: usize) -> Output {
        Output {
            unwritten: BytesMut::new(),
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

    /// Takes the replies gathered in `gathered`, leaving it empty. Fails when the replies waiting would then
    /// exceed the limit. One bulk string reply is never refused for its own size when nothing else waits (a
    /// GET of a value bigger than the limit works); what piles up behind anything is limited.
    pub(super) fn take(&mut self, gathered: &mut BytesMut) -> Result<(), OverOutputLimit> {
        if gathered.is_empty() {
            return Ok(());
        }
        let waiting = self.unwritten.len() + gathered.len();
        let exempt = self.unwritten.is_empty() && is_one_bulk_string(gathered);
        if self.limit > 0 && waiting > self.limit && !exempt {
            return Err(OverOutputLimit {
                waiting,
                limit: self.limit,
            });
        }
        if self.unwritten.is_empty() {
            std::mem::swap(&mut self.unwritten, gathered);
        } else {
            self.unwritten.extend_from_slice(gathered);
            gathered.clear();
        }
        Ok(())
    }

    /// Writes as much as the socket takes now, without waiting; returns the bytes written.
    pub(super) fn write_now(&mut self, stream: &ClientStream) -> std::io::Result<usize> {
        let mut written = 0;
        while !self.unwritten.is_empty() {
            match stream.try_write(&self.unwritten) {
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
        stream.write_all(&self.unwritten).await?;
        // Over TLS, the last encrypted bytes may still wait for the socket; over TCP this does nothing.
        stream.flush().await?;
        let written = self.unwritten.len();
        self.unwritten.clear();
        self.release_if_idle();
        Ok(written)
    }

    fn release_if_idle(&mut self) {
        if self.unwritten.is_empty() && self.unwritten.capacity() > MAX_IDLE_CAPACITY {
            self.unwritten = BytesMut::new();
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
    use super::*;

    #[test]
    fn replies_beyond_the_limit_are_refused() {
        let mut output = Output::new(10);
        let mut gathered = BytesMut::from(&b"+OK\r\n+OK\r\n"[..]);
        assert!(output.take(&mut gathered).is_ok());
        assert!(gathered.is_empty());
        let mut more = BytesMut::from(&b"+OK\r\n"[..]);
        let over = output.take(&mut more).unwrap_err();
        assert_eq!((over.waiting, over.limit), (15, 10));
    }

    #[test]
    fn one_big_bulk_string_alone_is_written() {
        let mut output = Output::new(4);
        let mut gathered = BytesMut::from(&b"$10\r\n0123456789\r\n"[..]);
        assert!(output.take(&mut gathered).is_ok());
        assert_eq!(output.len(), 17);
        let mut two = BytesMut::from(&b"$1\r\na\r\n$1\r\nb\r\n"[..]);
        let mut empty = Output::new(4);
        assert!(empty.take(&mut two).is_err());
    }

    #[test]
    fn no_limit_takes_everything() {
        let mut output = Output::new(0);
        let mut gathered = BytesMut::from(&[b'x'; 1000][..]);
        assert!(output.take(&mut gathered).is_ok());
        assert_eq!(output.len(), 1000);
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
