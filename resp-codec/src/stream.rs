//! Incremental framing for values too big to buffer: a [`FrameScanner`] walks one frame as its bytes arrive,
//! in chunks of any size, and says where the frame ends, holding only a few bytes of state (never the
//! frame). [`big_request_head`] finds, in the first bytes of a multibulk request, a bulk string announced to be
//! big and the complete arguments before it (the command name and its keys), so a proxy can route the request
//! and forward the value as it arrives.
//!
//! Both follow the same grammar and limits as [`RequestDecoder`](crate::RequestDecoder) (requests) and
//! [`ReplyDecoder`](crate::ReplyDecoder) (replies, RESP2 and RESP3) and report the same errors.

use std::ops::Range;

use crate::grammar::{
    check_array_len, check_bulk_len, interpret_line, parse_strict_i64, Header, TypeKind,
    MAX_NUMBER_LINE,
};
use crate::{Limits, ProtocolError};

/// Which grammar a [`FrameScanner`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grammar {
    /// A client request: a `*N` multibulk of `$N` bulk strings (inline requests are not streamed).
    Request,
    /// A server reply of any RESP2/RESP3 type.
    Reply,
}

/// Where the scanner is inside the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The next byte starts an element (its type byte).
    TypeByte,
    /// Inside a header line after `kind`'s type byte: `len` content bytes seen, the first few kept.
    Line {
        kind: TypeKind,
        len: usize,
        kept: [u8; MAX_NUMBER_LINE],
        /// The last byte seen was `\r`.
        after_cr: bool,
    },
    /// Bulk data still to come; `offset` bytes of it were seen (a verbatim string's fourth byte is `:`).
    BulkData {
        remaining: usize,
        offset: usize,
        verbatim: bool,
    },
    /// The `\r\n` after bulk data; `seen` of its bytes were seen.
    BulkEnd { seen: usize },
}

/// Walks one RESP frame whose bytes arrive in chunks (see the module docs).
///
/// ```
/// use resp_codec::{FrameScanner, Limits};
///
/// let mut scanner = FrameScanner::reply(Limits::for_backend_replies());
/// assert_eq!(scanner.feed(b"$5\r\nhel").unwrap(), 7);
/// assert!(!scanner.is_complete());
/// // The frame ends after `lo\r\n`; the next reply's bytes are not taken.
/// assert_eq!(scanner.feed(b"lo\r\n+OK\r\n").unwrap(), 4);
/// assert!(scanner.is_complete());
/// assert_eq!(scanner.top_bulk_len(), Some(5));
/// ```
#[derive(Debug, Clone)]
pub struct FrameScanner {
    grammar: Grammar,
    limits: Limits,
    /// Elements still owed by each open aggregate, innermost last.
    open: Vec<usize>,
    step: Step,
    complete: bool,
    /// Whether any byte of the frame was seen.
    started: bool,
    /// The length a top-level bulk string announced, once its header is read.
    top_bulk_len: Option<usize>,
    /// The frame's first byte.
    first_byte: Option<u8>,
}

impl FrameScanner {
    /// A scanner for one client request (a multibulk), with the client's limits.
    pub fn request(limits: Limits) -> FrameScanner {
        FrameScanner::new(Grammar::Request, limits)
    }

    /// A scanner for one server reply.
    pub fn reply(limits: Limits) -> FrameScanner {
        FrameScanner::new(Grammar::Reply, limits)
    }

    fn new(grammar: Grammar, limits: Limits) -> FrameScanner {
        FrameScanner {
            grammar,
            limits,
            open: Vec::new(),
            step: Step::TypeByte,
            complete: false,
            started: false,
            top_bulk_len: None,
            first_byte: None,
        }
    }

    /// Whether the whole frame was seen.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// For a frame that is a bulk string (not inside an aggregate), the length its header announced.
    pub fn top_bulk_len(&self) -> Option<usize> {
        self.top_bulk_len
    }

    /// The frame's first byte, once seen (`-` for an error reply).
    pub fn first_byte(&self) -> Option<u8> {
        self.first_byte
    }

    /// Inside a bulk string's data: how many of its bytes are still to come (the `\r\n` after them not
    /// counted). A proxy may move that many bytes without looking at them (see [`FrameScanner::skip_bulk_data`]).
    pub fn bulk_data_remaining(&self) -> Option<usize> {
        match self.step {
            Step::BulkData { remaining, .. } => Some(remaining),
            _ => None,
        }
    }

    /// Counts up to `count` bytes of the current bulk string's data as seen without their content (they went
    /// on unread, e.g. by `splice(2)`); returns how many were counted: at most
    /// [`FrameScanner::bulk_data_remaining`], and none where the content must be checked (the start of a
    /// RESP3 verbatim string).
    pub fn skip_bulk_data(&mut self, count: usize) -> usize {
        let Step::BulkData {
            remaining,
            offset,
            verbatim,
        } = self.step
        else {
            return 0;
        };
        if verbatim && offset <= 3 {
            return 0;
        }
        let skipped = count.min(remaining);
        self.step = after_bulk_data(remaining, offset, verbatim, skipped);
        skipped
    }

    /// Walks `chunk`, the frame's next bytes, and returns how many of them belong to the frame: all of them
    /// until the frame is complete, then fewer (the rest belongs to what follows). Nothing is taken once the
    /// frame is complete. After an error the scanner must not be used again (the stream is out of sync).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<usize, ProtocolError> {
        let mut at = 0;
        while at < chunk.len() && !self.complete {
            at += self.step_once(&chunk[at..])?;
        }
        Ok(at)
    }

    /// Takes what the current step can from `rest` (never empty), at least one byte.
    fn step_once(&mut self, rest: &[u8]) -> Result<usize, ProtocolError> {
        match self.step {
            Step::TypeByte => {
                self.type_byte(rest[0])?;
                Ok(1)
            }
            Step::Line { .. } => self.line(rest),
            Step::BulkData {
                remaining,
                offset,
                verbatim,
            } => {
                let taken = remaining.min(rest.len());
                if verbatim && offset <= 3 && offset + taken > 3 && rest[3 - offset] != b':' {
                    return Err(ProtocolError::InvalidVerbatim);
                }
                self.step = after_bulk_data(remaining, offset, verbatim, taken);
                Ok(taken)
            }
            Step::BulkEnd { seen } => {
                let expected = if seen == 0 { b'\r' } else { b'\n' };
                if rest[0] != expected {
                    return Err(ProtocolError::ExpectedCrlf);
                }
                if seen == 0 {
                    self.step = Step::BulkEnd { seen: 1 };
                } else {
                    self.finish_element();
                }
                Ok(1)
            }
        }
    }

    fn type_byte(&mut self, byte: u8) -> Result<(), ProtocolError> {
        if !self.started {
            self.started = true;
            self.first_byte = Some(byte);
        }
        let kind = match self.grammar {
            Grammar::Request if self.open.is_empty() => {
                if byte != b'*' {
                    return Err(ProtocolError::ExpectedBulk { got: byte });
                }
                TypeKind::Array
            }
            Grammar::Request => {
                if byte != b'$' {
                    return Err(ProtocolError::ExpectedBulk { got: byte });
                }
                TypeKind::Bulk
            }
            Grammar::Reply => {
                let kind = TypeKind::from_byte(byte)
                    .ok_or(ProtocolError::InvalidTypeByte { got: byte })?;
                if kind.is_aggregate() && self.open.len() >= self.limits.max_depth {
                    return Err(ProtocolError::TooDeep {
                        limit: self.limits.max_depth,
                    });
                }
                kind
            }
        };
        self.step = Step::Line {
            kind,
            len: 0,
            kept: [0; MAX_NUMBER_LINE],
            after_cr: false,
        };
        Ok(())
    }

    /// Walks a header line; returns the bytes taken.
    fn line(&mut self, rest: &[u8]) -> Result<usize, ProtocolError> {
        let Step::Line {
            kind,
            mut len,
            mut kept,
            mut after_cr,
        } = self.step
        else {
            return Ok(0);
        };
        let cap = self.line_cap(kind);
        for (index, &byte) in rest.iter().enumerate() {
            if after_cr && byte == b'\n' {
                // `len` counts the `\r` too.
                let content_len = len - 1;
                self.end_line(kind, &kept[..content_len.min(MAX_NUMBER_LINE)], content_len)?;
                return Ok(index + 1);
            }
            if after_cr && self.grammar == Grammar::Request {
                // A request header's `\r` must be followed by `\n`.
                return Err(self.invalid_request_line(kind));
            }
            if byte != b'\r' && self.grammar == Grammar::Request && len > cap {
                return Err(self.too_big_request_line(kind));
            }
            if len < MAX_NUMBER_LINE {
                kept[len] = byte;
            }
            len += 1;
            after_cr = byte == b'\r';
            if self.grammar == Grammar::Reply && len > cap.saturating_add(1) {
                return Err(kind.line_error());
            }
        }
        self.step = Step::Line {
            kind,
            len,
            kept,
            after_cr,
        };
        Ok(rest.len())
    }

    fn line_cap(&self, kind: TypeKind) -> usize {
        match self.grammar {
            Grammar::Request => self.limits.max_inline_len,
            Grammar::Reply => kind.line_cap(&self.limits),
        }
    }

    fn invalid_request_line(&self, kind: TypeKind) -> ProtocolError {
        if kind == TypeKind::Array {
            ProtocolError::InvalidMultibulkLength
        } else {
            ProtocolError::InvalidBulkLength
        }
    }

    fn too_big_request_line(&self, kind: TypeKind) -> ProtocolError {
        if kind == TypeKind::Array {
            ProtocolError::TooBigMultibulkCount
        } else {
            ProtocolError::TooBigBulkCount
        }
    }

    /// A header line ended: `content` is its first bytes (all of them for numbers), `len` its length.
    fn end_line(
        &mut self,
        kind: TypeKind,
        content: &[u8],
        len: usize,
    ) -> Result<(), ProtocolError> {
        let header = match self.grammar {
            Grammar::Request => self.request_header(kind, content, len)?,
            Grammar::Reply if len > MAX_NUMBER_LINE => {
                // Only text lines (`+`, `-`, `,`, `(`) may be this long; their content is not needed.
                match kind {
                    TypeKind::Text => Header::Scalar,
                    _ => return Err(kind.line_error()),
                }
            }
            Grammar::Reply => interpret_line(kind, content, &self.limits)?,
        };
        match header {
            Header::Scalar | Header::Null | Header::Aggregate { children: 0 } => {
                self.finish_element();
            }
            Header::Bulk { len } => {
                if self.open.is_empty() {
                    self.top_bulk_len = Some(len);
                }
                self.step = if len == 0 {
                    Step::BulkEnd { seen: 0 }
                } else {
                    Step::BulkData {
                        remaining: len,
                        offset: 0,
                        verbatim: kind == TypeKind::Verbatim,
                    }
                };
            }
            Header::Aggregate { children } => {
                self.open.push(children);
                self.step = Step::TypeByte;
            }
        }
        Ok(())
    }

    /// A request's `*N` or `$N` line, read as `RequestDecoder` does.
    fn request_header(
        &self,
        kind: TypeKind,
        content: &[u8],
        len: usize,
    ) -> Result<Header, ProtocolError> {
        let invalid = self.invalid_request_line(kind);
        if len > MAX_NUMBER_LINE {
            return Err(invalid);
        }
        let number = parse_strict_i64(content).ok_or(invalid)?;
        if kind == TypeKind::Array {
            if number > i64::from(i32::MAX) {
                return Err(ProtocolError::InvalidMultibulkLength);
            }
            if number <= 0 {
                // Redis skips an empty request; it is a frame of its own.
                return Ok(Header::Aggregate { children: 0 });
            }
            let children = check_array_len(number, &self.limits)?;
            return Ok(Header::Aggregate { children });
        }
        let len = check_bulk_len(number, &self.limits)?;
        Ok(Header::Bulk { len })
    }

    /// One element ended: close every aggregate it completes; the frame is complete when none is open.
    fn finish_element(&mut self) {
        self.step = Step::TypeByte;
        loop {
            match self.open.last_mut() {
                None => {
                    self.complete = true;
                    return;
                }
                Some(remaining) => {
                    *remaining -= 1;
                    if *remaining > 0 {
                        return;
                    }
                    self.open.pop();
                }
            }
        }
    }
}

/// The start of a multibulk request whose argument `big_index` announces `big_len >= threshold` bytes: the
/// arguments before it are complete (see [`big_request_head`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigRequestHead {
    /// The request's argument count (the `*N` header).
    pub argc: usize,
    /// Where each argument before the big one lies in the buffer given to [`big_request_head`].
    pub args: Vec<Range<usize>>,
    /// The index of the big argument (0 is the command name).
    pub big_index: usize,
    /// The length the big argument announced.
    pub big_len: usize,
    /// The bytes from the request's start through the big argument's `$N\r\n` header.
    pub head_len: usize,
}

impl BigRequestHead {
    /// A scanner for the rest of the request, the bytes after `head_len`: the big argument's data and every
    /// argument after it.
    pub fn rest_scanner(&self, limits: Limits) -> FrameScanner {
        let mut scanner = FrameScanner::request(limits);
        scanner.started = true;
        scanner.first_byte = Some(b'*');
        scanner.open.push(self.argc - self.big_index);
        scanner.step = if self.big_len == 0 {
            Step::BulkEnd { seen: 0 }
        } else {
            Step::BulkData {
                remaining: self.big_len,
                offset: 0,
                verbatim: false,
            }
        };
        scanner
    }
}

/// What [`big_request_head`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadScan {
    /// A big request whose head is complete.
    Big(BigRequestHead),
    /// Perhaps a big request, but its head has not arrived whole yet.
    NeedMore,
    /// Not a big request (or not a valid one: the ordinary decoder reports the error).
    NotBig,
}

/// Looks at the request at the start of `buffer`: a multibulk with an argument announced at `threshold`
/// bytes or more, every argument before it complete. Reads only headers and skips argument data, so it costs
/// little whatever the buffer holds.
///
/// ```
/// use resp_codec::{big_request_head, HeadScan, Limits};
///
/// let start = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000\r\nxx";
/// let HeadScan::Big(head) = big_request_head(start, 100, &Limits::default()) else { panic!() };
/// assert_eq!((head.argc, head.big_index, head.big_len), (3, 2, 1000));
/// assert_eq!(&start[head.args[1].clone()], b"k");
/// assert_eq!(head.head_len, start.len() - 2);
/// assert_eq!(big_request_head(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", 100, &Limits::default()), HeadScan::NotBig);
/// ```
pub fn big_request_head(buffer: &[u8], threshold: usize, limits: &Limits) -> HeadScan {
    if buffer.is_empty() {
        return HeadScan::NeedMore;
    }
    let Some(rest) = buffer.strip_prefix(b"*") else {
        return HeadScan::NotBig;
    };
    let Some((argc, mut at)) = number_line(rest, 1) else {
        return short_or_not(buffer, 1, limits);
    };
    let Ok(argc) = usize::try_from(argc) else {
        return HeadScan::NotBig;
    };
    if argc == 0 || argc > limits.max_array_len {
        return HeadScan::NotBig;
    }
    let mut args = Vec::new();
    for index in 0..argc {
        match buffer.get(at) {
            None => return HeadScan::NeedMore,
            Some(b'$') => {}
            Some(_) => return HeadScan::NotBig,
        }
        let Some((len, data_start)) = number_line(&buffer[at + 1..], at + 1) else {
            return short_or_not(buffer, at + 1, limits);
        };
        let Ok(len) = usize::try_from(len) else {
            return HeadScan::NotBig;
        };
        if len > limits.max_bulk_len {
            return HeadScan::NotBig;
        }
        if len >= threshold {
            return HeadScan::Big(BigRequestHead {
                argc,
                args,
                big_index: index,
                big_len: len,
                head_len: data_start,
            });
        }
        let end = data_start + len;
        if buffer.len() < end + 2 {
            return HeadScan::NeedMore;
        }
        if &buffer[end..end + 2] != b"\r\n" {
            return HeadScan::NotBig;
        }
        args.push(data_start..end);
        at = end + 2;
    }
    HeadScan::NotBig
}

/// A `N\r\n` line at the start of `text` (which starts at `offset` in the buffer): the number and the offset
/// after the line. `None` when the line is incomplete or not a number.
fn number_line(text: &[u8], offset: usize) -> Option<(i64, usize)> {
    let cr = memchr::memchr(b'\r', text)?;
    if text.get(cr + 1) != Some(&b'\n') {
        return None;
    }
    let number = parse_strict_i64(&text[..cr])?;
    Some((number, offset + cr + 2))
}

/// After a header line that did not read as a number: more may come while the line is short and unended.
fn short_or_not(buffer: &[u8], content_start: usize, limits: &Limits) -> HeadScan {
    let line = &buffer[content_start..];
    let ended = memchr::memchr(b'\r', line).is_some_and(|cr| cr + 1 < line.len());
    if ended || line.len() > MAX_NUMBER_LINE.min(limits.max_inline_len) {
        HeadScan::NotBig
    } else {
        HeadScan::NeedMore
    }
}

/// The step after `taken` bytes of a bulk string's data, of the `remaining` ones at `offset`: more data, or its
/// `\r\n`.
fn after_bulk_data(remaining: usize, offset: usize, verbatim: bool, taken: usize) -> Step {
    if taken == remaining {
        Step::BulkEnd { seen: 0 }
    } else {
        Step::BulkData {
            remaining: remaining - taken,
            offset: offset + taken,
            verbatim,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;
    use crate::{reply_len, RequestDecoder};
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    fn scan_whole(scanner: &mut FrameScanner, bytes: &[u8]) -> usize {
        scanner.feed(bytes).unwrap()
    }

    /// Bulk data skipped unseen counts like bulk data fed: the frame still ends after its `\r\n`, and bad
    /// bytes after the skipped data are still caught.
    #[test]
    fn skipped_bulk_data_counts_as_seen() {
        let mut scanner = FrameScanner::request(Limits::default());
        assert_eq!(
            scanner
                .feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\nab")
                .unwrap(),
            27
        );
        assert_eq!(scanner.bulk_data_remaining(), Some(8));
        assert_eq!(scanner.skip_bulk_data(5), 5);
        assert_eq!(scanner.bulk_data_remaining(), Some(3));
        assert_eq!(scanner.skip_bulk_data(100), 3);
        assert_eq!(scanner.bulk_data_remaining(), None);
        assert_eq!(scanner.skip_bulk_data(1), 0);
        assert_eq!(scanner.feed(b"\r\n*1\r\n").unwrap(), 2);
        assert!(scanner.is_complete());

        let mut broken = FrameScanner::request(Limits::default());
        broken.feed(b"*2\r\n$3\r\nGET\r\n$4\r\n").unwrap();
        assert_eq!(broken.skip_bulk_data(4), 4);
        assert!(broken.feed(b"xx").is_err());
    }

    /// Feeds `bytes` in chunks ending at `cuts`, returns the bytes taken and whether the frame completed.
    fn scan_split(mut scanner: FrameScanner, bytes: &[u8], cuts: &[usize]) -> (usize, bool) {
        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let (mut start, mut taken) = (0, 0);
        for cut in cuts {
            if cut < start {
                continue;
            }
            let chunk = &bytes[start..cut];
            let took = scanner.feed(chunk).unwrap();
            taken += took;
            if scanner.is_complete() {
                return (taken, true);
            }
            assert_eq!(took, chunk.len(), "an incomplete frame takes every byte");
            start = cut;
        }
        (taken, scanner.is_complete())
    }

    #[test]
    fn a_request_split_anywhere_ends_where_the_decoder_says() {
        let request = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$10\r\n0123456789\r\n*1\r\n$4\r\nPING\r\n";
        for cut in 0..request.len() {
            let taken = scan_split(FrameScanner::request(Limits::default()), request, &[cut]);
            assert_eq!(taken, (request.len() - 14, true), "cut at {cut}");
        }
    }

    #[test]
    fn request_errors_are_the_decoders() {
        let cases: [(&[u8], &str); 5] = [
            (b"*1\r\nx", "Protocol error: expected '$', got 'x'"),
            (
                b"*1\r\n$3\r\nGETxx",
                "Protocol error: expected CRLF after bulk data",
            ),
            (b"*1\r\n$-3\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$3\rx", "Protocol error: invalid bulk length"),
            (b"*x\r\n", "Protocol error: invalid multibulk length"),
        ];
        for (bytes, text) in cases {
            let error = FrameScanner::request(Limits::default())
                .feed(bytes)
                .unwrap_err();
            assert_eq!(error.to_string(), text, "{bytes:?}");
            let decoded = RequestDecoder::default()
                .decode(&mut BytesMut::from(bytes))
                .unwrap_err();
            assert_eq!(decoded.to_string(), text, "decoder on {bytes:?}");
        }
    }

    #[test]
    fn a_bulk_header_longer_than_the_inline_limit_is_too_big() {
        let limits = Limits {
            max_inline_len: 8,
            ..Limits::default()
        };
        let error = FrameScanner::request(limits)
            .feed(b"*1\r\n$0000000000000")
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "Protocol error: too big bulk count string"
        );
    }

    #[test]
    fn replies_of_every_type_end_where_reply_len_says() {
        let replies: [&[u8]; 8] = [
            b"+OK\r\n",
            b"-ERR wrong\r\n",
            b"$-1\r\n",
            b"*2\r\n$1\r\na\r\n*1\r\n:5\r\n",
            b"%1\r\n+k\r\n=7\r\ntxt:abc\r\n",
            b"|1\r\n+a\r\n:1\r\n$2\r\nhi\r\n",
            b"*0\r\n",
            b">2\r\n#t\r\n_\r\n",
        ];
        for reply in replies {
            let limits = Limits::for_backend_replies();
            let expected = reply_len(reply, &limits).unwrap().unwrap();
            let mut with_more = reply.to_vec();
            with_more.extend_from_slice(b"+NEXT\r\n");
            for cut in 0..with_more.len() {
                let taken = scan_split(FrameScanner::reply(limits), &with_more, &[cut]);
                assert_eq!(taken, (expected, true), "{reply:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn reply_errors() {
        let limits = Limits::for_backend_replies();
        let mut scanner = FrameScanner::reply(limits);
        assert!(matches!(
            scanner.feed(b"?x\r\n"),
            Err(ProtocolError::InvalidTypeByte { got: b'?' })
        ));
        let mut scanner = FrameScanner::reply(limits);
        assert!(matches!(
            scanner.feed(b"$2\r\nabc"),
            Err(ProtocolError::ExpectedCrlf)
        ));
        let mut scanner = FrameScanner::reply(limits);
        assert!(matches!(
            scanner.feed(b"=5\r\ntxtxa\r\n"),
            Err(ProtocolError::InvalidVerbatim)
        ));
    }

    #[test]
    fn a_top_level_bulk_announces_its_length_before_its_data() {
        let mut scanner = FrameScanner::reply(Limits::for_backend_replies());
        assert_eq!(scan_whole(&mut scanner, b"$1000000\r\nab"), 12);
        assert_eq!(scanner.top_bulk_len(), Some(1_000_000));
        assert_eq!(scanner.first_byte(), Some(b'$'));
        let mut nested = FrameScanner::reply(Limits::for_backend_replies());
        scan_whole(&mut nested, b"*1\r\n$3\r\nabc\r\n");
        assert_eq!(nested.top_bulk_len(), None);
    }

    #[test]
    fn heads_of_big_requests() {
        let limits = Limits::default();
        // The key is complete, the value announced big: a head.
        let start = b"*5\r\n$3\r\nSET\r\n$3\r\nkey\r\n$100\r\nvalue";
        let HeadScan::Big(head) = big_request_head(start, 100, &limits) else {
            panic!("no head");
        };
        assert_eq!(head.args, vec![8..11, 17..20]);
        assert_eq!((head.argc, head.big_index, head.big_len), (5, 2, 100));
        assert_eq!(
            &start[..head.head_len],
            b"*5\r\n$3\r\nSET\r\n$3\r\nkey\r\n$100\r\n"
        );
        // Parts missing: more is needed.
        for cut in 0..start.len() - 5 {
            assert_eq!(
                big_request_head(&start[..cut], 100, &limits),
                HeadScan::NeedMore
            );
        }
        assert_eq!(
            big_request_head(b"GET k\r\n", 100, &limits),
            HeadScan::NotBig
        );
        assert_eq!(big_request_head(b"*1\r\nx", 100, &limits), HeadScan::NotBig);
        assert_eq!(
            big_request_head(b"*1\r\n$x\r\n", 100, &limits),
            HeadScan::NotBig
        );
    }

    /// A request of `args` (the value at `big` made `big_len` long) as bytes.
    fn request_bytes(args: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            bytes.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            bytes.extend_from_slice(arg);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes
    }

    fn arb_reply() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![
            "[a-zA-Z ]{0,12}".prop_map(|text| format!("+{text}\r\n").into_bytes()),
            "[a-zA-Z ]{0,12}".prop_map(|text| format!("-ERR {text}\r\n").into_bytes()),
            any::<i64>().prop_map(|number| format!(":{number}\r\n").into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(|data| {
                let mut bytes = format!("${}\r\n", data.len()).into_bytes();
                bytes.extend_from_slice(&data);
                bytes.extend_from_slice(b"\r\n");
                bytes
            }),
            Just(b"$-1\r\n".to_vec()),
            Just(b"_\r\n".to_vec()),
            Just(b"#f\r\n".to_vec()),
            Just(b",1.5\r\n".to_vec()),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            (
                prop_oneof![Just('*'), Just('~'), Just('>')],
                proptest::collection::vec(inner, 0..6),
            )
                .prop_map(|(kind, children)| {
                    let mut bytes = format!("{kind}{}\r\n", children.len()).into_bytes();
                    for child in children {
                        bytes.extend_from_slice(&child);
                    }
                    bytes
                })
        })
    }

    proptest! {
        /// Any split of a reply into chunks gives what the whole reply gives, and the end `reply_len` finds.
        #[test]
        fn any_split_of_a_reply_gives_the_whole_frame(
            reply in arb_reply(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let limits = Limits::for_backend_replies();
            let mut bytes = reply.clone();
            bytes.extend_from_slice(b"+AFTER\r\n");
            let mut whole = FrameScanner::reply(limits);
            let taken_whole = whole.feed(&bytes).unwrap();
            prop_assert!(whole.is_complete());
            prop_assert_eq!(taken_whole, reply.len());
            prop_assert_eq!(Some(reply.len()), reply_len(&reply, &limits).unwrap());
            let (taken, complete) = scan_split(FrameScanner::reply(limits), &bytes, &cuts);
            prop_assert_eq!((taken, complete), (taken_whole, true));
        }

        /// Any split of a request gives what the decoder gives; a big one's head plus its rest scanner too.
        #[test]
        fn any_split_of_a_request_gives_the_whole_frame(
            args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 1..6),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            threshold in 1usize..500,
        ) {
            let limits = Limits::default();
            let request = request_bytes(&args);
            let mut bytes = request.clone();
            bytes.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
            let decoded = RequestDecoder::default()
                .decode(&mut BytesMut::from(&bytes[..]))
                .unwrap()
                .unwrap();
            prop_assert_eq!(decoded.raw().len(), request.len());
            let (taken, complete) = scan_split(FrameScanner::request(limits), &bytes, &cuts);
            prop_assert_eq!((taken, complete), (request.len(), true));
            match big_request_head(&bytes, threshold, &limits) {
                HeadScan::Big(head) => {
                    prop_assert!(args[head.big_index].len() >= threshold);
                    prop_assert!(args[..head.big_index].iter().all(|arg| arg.len() < threshold));
                    for (span, arg) in head.args.iter().zip(&args) {
                        prop_assert_eq!(&bytes[span.clone()], &arg[..]);
                    }
                    let rest = &bytes[head.head_len..];
                    let (taken, complete) = scan_split(head.rest_scanner(limits), rest, &cuts);
                    prop_assert_eq!((head.head_len + taken, complete), (request.len(), true));
                }
                HeadScan::NotBig => prop_assert!(args.iter().all(|arg| arg.len() < threshold)),
                HeadScan::NeedMore => prop_assert!(false, "the whole request was there"),
            }
        }
    }
}
