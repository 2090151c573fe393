//! A hand-written, resumable framer for replies: it finds where one complete RESP2/RESP3
//! reply ends and hands back its bytes without building a tree.
//!
//! The framer keeps a cursor and a stack of "children still expected" counts between calls,
//! so bytes already walked are never walked again, however the reply is split into reads.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::grammar::{find_line_end, interpret_line, reserve_hint, Header, LineSearch, TypeKind};
use crate::{Limits, ProtocolError};

/// Frames one complete reply of any RESP2/RESP3 type and returns its raw bytes, zero-copy.
///
/// A RESP3 attribute (`|`) is returned together with the frame it annotates, as one item.
/// Depth, bulk and array limits apply; an over-long bulk is rejected when its header is read.
///
/// ```
/// use bytes::BytesMut;
/// use resp_codec::ReplyDecoder;
/// use tokio_util::codec::Decoder;
///
/// let mut decoder = ReplyDecoder::default();
/// let mut buffer = BytesMut::from(&b"*2\r\n$3\r\nfoo\r\n:42\r\n+OK\r\n"[..]);
/// let first = decoder.decode(&mut buffer).unwrap().unwrap();
/// assert_eq!(&first[..], b"*2\r\n$3\r\nfoo\r\n:42\r\n");
/// let second = decoder.decode(&mut buffer).unwrap().unwrap();
/// assert_eq!(&second[..], b"+OK\r\n");
/// assert!(decoder.decode(&mut buffer).unwrap().is_none());
/// ```
#[derive(Debug, Default)]
pub struct ReplyDecoder {
    limits: Limits,
    framer: Framer,
}

// === impl ReplyDecoder ===

impl ReplyDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        ReplyDecoder {
            limits,
            framer: Framer::default(),
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl Decoder for ReplyDecoder {
    type Item = Bytes;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, ProtocolError> {
        match self.framer.advance(src, &self.limits)? {
            Some(length) => Ok(Some(src.split_to(length).freeze())),
            None => Ok(None),
        }
    }
}

/// Splits `replies`, complete replies written back to back, into one `Bytes` per reply, without copying.
///
/// This is for a batch of replies that is already known to be complete (a pipelined batch read back from a
/// server): bytes that end inside a reply are an error, [`ProtocolError::IncompleteReply`].
///
/// ```
/// use bytes::Bytes;
/// use resp_codec::{split_replies, Limits};
///
/// let replies = Bytes::from_static(b"+OK\r\n$3\r\nbar\r\n*1\r\n:1\r\n");
/// let split = split_replies(&replies, &Limits::default()).unwrap();
/// assert_eq!(split, [&b"+OK\r\n"[..], b"$3\r\nbar\r\n", b"*1\r\n:1\r\n"]);
/// assert!(split_replies(&Bytes::from_static(b"+OK\r\n$3\r\nba"), &Limits::default()).is_err());
/// ```
pub fn split_replies(replies: &Bytes, limits: &Limits) -> Result<Vec<Bytes>, ProtocolError> {
    let mut split = Vec::new();
    split_replies_into(replies, limits, &mut split)?;
    Ok(split)
}

/// [`split_replies`] into `split` (appended), for a caller that knows how many replies to expect and sizes the
/// vector once instead of growing it reply by reply. On an error, `split` holds the replies before the bad one.
///
/// ```
/// use bytes::Bytes;
/// use resp_codec::{split_replies_into, Limits};
///
/// let replies = Bytes::from_static(b"+OK\r\n:1\r\n");
/// let mut split = Vec::with_capacity(2);
/// split_replies_into(&replies, &Limits::default(), &mut split).unwrap();
/// assert_eq!(split, [&b"+OK\r\n"[..], b":1\r\n"]);
/// ```
pub fn split_replies_into(
    replies: &Bytes,
    limits: &Limits,
    split: &mut Vec<Bytes>,
) -> Result<(), ProtocolError> {
    let mut framer = Framer::default();
    let mut start = 0;
    while start < replies.len() {
        let rest = &replies[start..];
        let length = framer
            .walk(rest, limits)?
            .ok_or(ProtocolError::IncompleteReply)?;
        framer.cursor = 0;
        framer.line_scan = 0;
        framer.pending_bulk = None;
        framer.open_aggregates.clear();
        split.push(replies.slice(start..start + length));
        start += length;
    }
    Ok(())
}

/// The length of the complete reply at the start of `src`, or `None` if `src` ends inside it.
///
/// The same walk as [`ReplyDecoder`], over a borrowed slice: for code that reads replies in
/// place (the proxy's raw MGET merge picks array elements out of a node's reply this way,
/// without a `Bytes` per element). It allocates only for nested aggregates.
///
/// ```
/// use resp_codec::{reply_len, Limits};
///
/// let replies = b"*2\r\n$1\r\na\r\n:1\r\n+OK\r\n";
/// assert_eq!(reply_len(replies, &Limits::default()).unwrap(), Some(15));
/// assert_eq!(reply_len(&replies[..10], &Limits::default()).unwrap(), None);
/// assert!(reply_len(b"?\r\n", &Limits::default()).is_err());
/// ```
pub fn reply_len(src: &[u8], limits: &Limits) -> Result<Option<usize>, ProtocolError> {
    Framer::default().walk(src, limits)
}

/// Resumable state of the frame walk over a buffer whose byte 0 starts the current frame.
#[derive(Debug, Default)]
pub(crate) struct Framer {
    /// Index of the next byte not yet walked.
    cursor: usize,
    /// Where to resume looking for a CRLF when the line at `cursor` was incomplete.
    line_scan: usize,
    /// Set when a bulk header was read and its data (plus CRLF) starts at `cursor`.
    pending_bulk: Option<PendingBulk>,
    /// For each open aggregate, the number of children still expected.
    open_aggregates: Vec<usize>,
}

#[derive(Debug, Clone, Copy)]
struct PendingBulk {
    len: usize,
    verbatim: bool,
}

// === impl Framer ===

impl Framer {
    /// Walks as far as `src` allows. Returns the length of the first complete frame, or
    /// `None` if more bytes are needed (the progress is kept). After `Some` the state is
    /// reset, ready for a buffer whose byte 0 starts the next frame.
    pub(crate) fn advance(
        &mut self,
        src: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<usize>, ProtocolError> {
        let result = self.walk(src, limits);
        if let (Ok(None), Some(bulk)) = (&result, self.pending_bulk) {
            // Waiting for bulk data: make room for it now, so it arrives in few reads.
            let end = self.cursor.saturating_add(bulk.len).saturating_add(2);
            src.reserve(reserve_hint(end.saturating_sub(src.len()), src.len()));
        }
        if !matches!(result, Ok(None)) {
            // Done with this frame (or the stream is broken): start afresh, keeping the
            // stack's allocation.
            self.cursor = 0;
            self.line_scan = 0;
            self.pending_bulk = None;
            self.open_aggregates.clear();
        }
        result
    }

    fn walk(&mut self, src: &[u8], limits: &Limits) -> Result<Option<usize>, ProtocolError> {
        loop {
            if let Some(bulk) = self.pending_bulk {
                let end = self.cursor.saturating_add(bulk.len).saturating_add(2);
                if src.len() < end {
                    return Ok(None);
                }
                if &src[end - 2..end] != b"\r\n" {
                    return Err(ProtocolError::ExpectedCrlf);
                }
                if bulk.verbatim && src[self.cursor + 3] != b':' {
                    return Err(ProtocolError::InvalidVerbatim);
                }
                self.pending_bulk = None;
                self.cursor = end;
            } else {
                let Some(&type_byte) = src.get(self.cursor) else {
                    return Ok(None);
                };
                let kind = TypeKind::from_byte(type_byte)
                    .ok_or(ProtocolError::InvalidTypeByte { got: type_byte })?;
                if kind.is_aggregate() && self.open_aggregates.len() >= limits.max_depth {
                    return Err(ProtocolError::TooDeep {
                        limit: limits.max_depth,
                    });
                }
                let content_start = self.cursor + 1;
                let line_end = match find_line_end(
                    src,
                    content_start,
                    self.line_scan,
                    kind.line_cap(limits),
                ) {
                    LineSearch::Found(end) => end,
                    LineSearch::NotYet(resume) => {
                        self.line_scan = resume;
                        return Ok(None);
                    }
                    LineSearch::TooLong => return Err(kind.line_error()),
                };
                self.line_scan = 0;
                let header = interpret_line(kind, &src[content_start..line_end], limits)?;
                self.cursor = line_end + 2;
                match header {
                    Header::Scalar | Header::Null | Header::Aggregate { children: 0 } => {}
                    Header::Bulk { len } => {
                        self.pending_bulk = Some(PendingBulk {
                            len,
                            verbatim: kind == TypeKind::Verbatim,
                        });
                        continue;
                    }
                    Header::Aggregate { children } => {
                        self.open_aggregates.push(children);
                        continue;
                    }
                }
            }
            // One element finished at `self.cursor`: close every aggregate it completes.
            loop {
                match self.open_aggregates.last_mut() {
                    None => return Ok(Some(self.cursor)),
                    Some(remaining) => {
                        *remaining -= 1;
                        if *remaining > 0 {
                            break;
                        }
                        self.open_aggregates.pop();
                    }
                }
            }
        }
    }
}
