//! A hand-written, resumable framer for replies: it finds where one complete RESP2/RESP3
//! reply ends and hands back its bytes without building a tree.
//!
//! The framer keeps a cursor and a stack of "children still expected" counts between calls,
//! so bytes already walked are never walked again, however the reply is split into reads.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::grammar::{
    find_line_end, interpret_line, parse_strict_i64, plain_header, reserve_hint, Header,
    LineSearch, TypeKind, MAX_NUMBER_LINE,
};
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

    /// [`Decoder::decode`] without freezing the reply: replies split one after another from one buffer can be
    /// joined again without a copy (`BytesMut::unsplit`), as a proxy does with the replies of a pipelined batch.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use resp_codec::ReplyDecoder;
    ///
    /// let mut decoder = ReplyDecoder::default();
    /// let mut buffer = BytesMut::from(&b"+OK\r\n:1\r\n"[..]);
    /// let mut both = decoder.split_reply(&mut buffer).unwrap().unwrap();
    /// both.unsplit(decoder.split_reply(&mut buffer).unwrap().unwrap());
    /// assert_eq!(&both[..], b"+OK\r\n:1\r\n");
    /// ```
    pub fn split_reply(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, ProtocolError> {
        match self.framer.advance(src, &self.limits)? {
            Some(length) => Ok(Some(src.split_to(length))),
            None => Ok(None),
        }
    }

    /// The length of the complete reply at the start of `src`, without taking it out: `None` while more bytes
    /// are needed (the progress is kept; call again with the same reply's bytes, from its start, once more
    /// arrived). A reader that frames many replies in one buffer and takes them out together, with one split,
    /// uses this; [`ReplyDecoder::reserve_for_reply`] then makes room for the rest of an incomplete one.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use resp_codec::ReplyDecoder;
    ///
    /// let mut decoder = ReplyDecoder::default();
    /// let mut buffer = BytesMut::from(&b"+OK\r\n:1\r\n$5\r\nhel"[..]);
    /// assert_eq!(decoder.reply_length(&buffer).unwrap(), Some(5));
    /// assert_eq!(decoder.reply_length(&buffer[5..]).unwrap(), Some(4));
    /// assert_eq!(decoder.reply_length(&buffer[9..]).unwrap(), None);
    /// let both = buffer.split_to(9);
    /// decoder.reserve_for_reply(&mut buffer);
    /// buffer.extend_from_slice(b"lo\r\n");
    /// assert_eq!(decoder.reply_length(&buffer).unwrap(), Some(11));
    /// assert_eq!(&both[..], b"+OK\r\n:1\r\n");
    /// ```
    pub fn reply_length(&mut self, src: &[u8]) -> Result<Option<usize>, ProtocolError> {
        self.framer.frame_length(src, &self.limits)
    }

    /// Makes room in `src`, which starts with an incomplete reply, for the rest of a bulk string whose header
    /// was read, so that it arrives in few reads (see [`ReplyDecoder::reply_length`]).
    pub fn reserve_for_reply(&self, src: &mut BytesMut) {
        self.framer.reserve_for_bulk(src);
    }
}

impl Decoder for ReplyDecoder {
    type Item = Bytes;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, ProtocolError> {
        Ok(self.split_reply(src)?.map(BytesMut::freeze))
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
    /// Tests only: walk every reply through the general path, to compare it with the shortcut of
    /// [`complete_simple_reply`].
    general_only: bool,
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
        let result = self.frame_length(src, limits);
        if matches!(result, Ok(None)) {
            self.reserve_for_bulk(src);
        }
        result
    }

    /// [`Framer::advance`] without making room: walks `src`, which starts with the frame.
    pub(crate) fn frame_length(
        &mut self,
        src: &[u8],
        limits: &Limits,
    ) -> Result<Option<usize>, ProtocolError> {
        let result = self.walk(src, limits);
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

    /// While waiting for bulk data, makes room for it in `src` (which starts with the frame), so it arrives
    /// in few reads.
    pub(crate) fn reserve_for_bulk(&self, src: &mut BytesMut) {
        if let Some(bulk) = self.pending_bulk {
            let end = self.cursor.saturating_add(bulk.len).saturating_add(2);
            src.reserve(reserve_hint(end.saturating_sub(src.len()), src.len()));
        }
    }

    fn walk(&mut self, src: &[u8], limits: &Limits) -> Result<Option<usize>, ProtocolError> {
        // At cursor 0 nothing of this frame was walked (a bulk header or an aggregate moves the cursor).
        if self.cursor == 0 && !self.general_only {
            if let Some(length) = complete_simple_reply(src, limits) {
                return Ok(Some(length));
            }
        }
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

/// The longest status or error line (with its type byte) that [`complete_simple_reply`] looks at.
const SHORT_STATUS_LINE: usize = 256;

/// The RESP2 null bulk string and null array (the same length).
const NULL_BULK: &[u8] = b"$-1\r\n";
const NULL_ARRAY: &[u8] = b"*-1\r\n";

/// The length of a complete status, error, integer, bulk or null reply at the start of `src` whose line is of
/// the usual kind, found in one pass without the walk's state: most replies are like this (a null is a cache
/// miss's GET, a timed-out BLPOP). `None` for anything else (not complete yet, an aggregate or another type, a
/// `\r` inside a status line, an unusual header, over the limits): the general walk reads those and gives the
/// errors.
#[inline]
fn complete_simple_reply(src: &[u8], limits: &Limits) -> Option<usize> {
    // A null array is an aggregate for the depth limit, as in the walk.
    let null_array = limits.max_depth > 0 && src.starts_with(NULL_ARRAY);
    if src.starts_with(NULL_BULK) || null_array {
        return Some(NULL_BULK.len());
    }
    match *src.first()? {
        b'+' | b'-' => {
            // Only a short line: the walk resumes a long line where it stopped, this would search it again
            // from the start on every call while it arrives.
            let line = &src[1..src.len().min(SHORT_STATUS_LINE)];
            let carriage_return = 1 + memchr::memchr(b'\r', line)?;
            let fits = carriage_return - 1 <= limits.max_bulk_len;
            (fits && src.get(carriage_return + 1) == Some(&b'\n')).then_some(carriage_return + 2)
        }
        b':' => {
            let line = &src[..src.len().min(MAX_NUMBER_LINE)];
            let carriage_return = memchr::memchr(b'\r', line)?;
            let valid = parse_strict_i64(&src[1..carriage_return]).is_some();
            (valid && src.get(carriage_return + 1) == Some(&b'\n')).then_some(carriage_return + 2)
        }
        b'$' => {
            let (len, line_end) = plain_header(src, 1)?;
            // Nine digits at most: no overflow below.
            let len = usize::try_from(len)
                .ok()
                .filter(|&len| len <= limits.max_bulk_len)?;
            let end = line_end + 2 + len;
            (src.get(end..end + 2)? == b"\r\n").then_some(end + 2)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// One piece of a reply stream: the usual replies, the unusual ones only the general walk reads, and broken ones.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        let text = vec(
            prop_oneof![4 => b'a'..=b'z', 1 => Just(b'\r'), 1 => Just(b'\n')],
            0..8,
        );
        let number = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            Just("-0".to_string()),
            Just("007".to_string()),
            Just("".to_string()),
            Just("1x".to_string()),
            Just("99999999999999999999".to_string()),
        ];
        prop_oneof![
            (prop_oneof![Just(b'+'), Just(b'-')], text.clone()).prop_map(|(kind, line)| [
                &[kind][..],
                &line,
                b"\r\n"
            ]
            .concat()),
            number
                .clone()
                .prop_map(|n| format!(":{n}\r\n").into_bytes()),
            vec(b'a'..=b'z', 0..12).prop_map(|data| [
                format!("${}\r\n", data.len()).as_bytes(),
                &data,
                b"\r\n"
            ]
            .concat()),
            (number, text)
                .prop_map(|(n, data)| [format!("${n}\r\n").as_bytes(), &data, b"\r\n"].concat()),
            (0usize..4).prop_map(|n| format!("*{n}\r\n").into_bytes()),
            // Around the longest status line the shortcut looks at.
            vec(b'a'..=b'z', 250..260).prop_map(|line| [&b"+"[..], &line, b"\r\n"].concat()),
            Just(b"$-1\r\n".to_vec()),
            Just(b"*-1\r\n".to_vec()),
            Just(b"$-2\r\n".to_vec()),
            Just(b"_\r\n".to_vec()),
            Just(b"$3\r\nabcx\n".to_vec()),
        ]
    }

    /// Everything `decoder` makes of `stream` fed in chunks of `chunk` bytes: each reply, then the error, if any.
    fn decode_all(decoder: ReplyDecoder, stream: &[u8], chunk: usize) -> Vec<String> {
        crate::test_support::decode_all(decoder, stream, chunk, |reply| format!("{reply:?}"))
    }

    proptest! {
        #[test]
        fn the_shortcut_frames_as_the_general_walk(
            pieces in vec(piece(), 1..12),
            chunk in prop_oneof![1usize..40, Just(usize::MAX)],
            max_bulk_len in prop_oneof![Just(1_000_000usize), 0usize..8],
            max_depth in prop_oneof![Just(Limits::default().max_depth), 0usize..2],
        ) {
            let stream = pieces.concat();
            let limits = Limits { max_bulk_len, max_depth, ..Limits::default() };
            let mut general = ReplyDecoder::new(limits);
            general.framer.general_only = true;
            prop_assert_eq!(
                decode_all(ReplyDecoder::new(limits), &stream, chunk),
                decode_all(general, &stream, chunk)
            );
        }
    }
}
