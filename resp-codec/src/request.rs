//! Client requests: [`Request`], its hand-written resumable [`RequestDecoder`], and
//! [`encode_command`].
//!
//! Requests follow redis-server's own reader (`processMultibulkBuffer` and
//! `processInlineBuffer` in `networking.c`): a buffer starting with `*` is a multibulk of
//! `$` bulk strings, anything else is an inline command line. Errors carry Redis's texts.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::grammar::{
    check_array_len, check_bulk_len, parse_strict_i64, plain_header, reserve_hint,
};
use crate::inline::split_inline_args;
use crate::write::{put_bulk, put_header};
use crate::{Limits, ProtocolError};

/// One client request, framed.
///
/// It holds the request's bytes as RESP multibulk (zero-copy, split from the read buffer)
/// and where each argument is. Inline requests are re-encoded as a multibulk, so
/// [`Request::raw`] can always be forwarded to a server as it is.
///
/// ```
/// use resp_codec::Request;
///
/// let request = Request::from_args(["SET", "key", "value"]);
/// assert_eq!(request.name(), b"SET");
/// assert_eq!(request.argc(), 3);
/// assert_eq!(request.arg(1), Some(&b"key"[..]));
/// assert_eq!(&request.raw()[..], b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    raw: Bytes,
    /// `(start, end)` of each argument inside `raw`.
    arg_spans: ArgSpans,
}

/// How many argument spans a request holds without a heap allocation (GET, SET with options, HSET, ...).
const INLINE_ARGS: usize = 5;

/// Argument spans: inline for short requests, so framing the common commands allocates nothing for them. Inline
/// spans are `u32` (a request is moved several times on its way; 80 bytes instead of 128), so a request
/// reaching past 4 GiB keeps its spans on the heap.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ArgSpans {
    Inline {
        len: u8,
        spans: [(u32, u32); INLINE_ARGS],
    },
    Heap(Vec<(usize, usize)>),
}

impl Default for ArgSpans {
    fn default() -> Self {
        ArgSpans::Inline {
            len: 0,
            spans: [(0, 0); INLINE_ARGS],
        }
    }
}

impl ArgSpans {
    /// Room for `expected` spans; a hostile count must not allocate by itself, so the heap vector starts
    /// small and grows as arguments actually arrive.
    #[inline]
    fn with_expected(expected: usize) -> ArgSpans {
        if expected <= INLINE_ARGS {
            ArgSpans::default()
        } else {
            ArgSpans::Heap(Vec::with_capacity(expected.min(1024)))
        }
    }

    #[inline]
    fn push(&mut self, span: (usize, usize)) {
        match self {
            ArgSpans::Inline { len, spans } if usize::from(*len) < INLINE_ARGS => {
                match (u32::try_from(span.0), u32::try_from(span.1)) {
                    (Ok(start), Ok(end)) => {
                        spans[usize::from(*len)] = (start, end);
                        *len += 1;
                    }
                    _ => self.spill(span),
                }
            }
            ArgSpans::Inline { .. } => self.spill(span),
            ArgSpans::Heap(heap) => heap.push(span),
        }
    }

    /// `push` when the inline spans are full or `span` does not fit them: they move to the heap.
    #[cold]
    #[inline(never)]
    fn spill(&mut self, span: (usize, usize)) {
        let mut heap = Vec::with_capacity(INLINE_ARGS * 2);
        heap.extend((0..self.len()).filter_map(|index| self.get(index)));
        heap.push(span);
        *self = ArgSpans::Heap(heap);
    }

    #[inline]
    fn len(&self) -> usize {
        match self {
            ArgSpans::Inline { len, .. } => usize::from(*len),
            ArgSpans::Heap(heap) => heap.len(),
        }
    }

    #[inline]
    fn get(&self, index: usize) -> Option<(usize, usize)> {
        match self {
            ArgSpans::Inline { len, spans } => spans[..usize::from(*len)]
                .get(index)
                .map(|&(start, end)| (start as usize, end as usize)),
            ArgSpans::Heap(heap) => heap.get(index).copied(),
        }
    }
}

// === impl Request ===

impl Request {
    /// The whole request as RESP multibulk, ready to forward.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The number of arguments, the command name included.
    ///
    /// Never 0 for a decoded request (empty arrays and blank lines are skipped); only
    /// [`Request::from_args`] with no arguments builds an empty one.
    pub fn argc(&self) -> usize {
        self.arg_spans.len()
    }

    /// The argument at `index` (0 is the command name).
    pub fn arg(&self, index: usize) -> Option<&[u8]> {
        let (start, end) = self.arg_spans.get(index)?;
        self.raw.get(start..end)
    }

    /// The argument at `index` as a zero-copy slice of [`Request::raw`].
    ///
    /// ```
    /// use resp_codec::Request;
    ///
    /// let request = Request::from_args(["GET", "key"]);
    /// assert_eq!(request.arg_bytes(1).unwrap(), "key");
    /// assert!(request.arg_bytes(2).is_none());
    /// ```
    pub fn arg_bytes(&self, index: usize) -> Option<Bytes> {
        let (start, end) = self.arg_spans.get(index)?;
        Some(self.raw.slice(start..end))
    }

    /// All arguments in order, the command name first.
    pub fn args(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.argc()).filter_map(move |index| self.arg(index))
    }

    /// The command name (argument 0) as sent, not case-folded; empty if there are no arguments.
    pub fn name(&self) -> &[u8] {
        self.arg(0).unwrap_or_default()
    }

    /// Builds a request (and its multibulk encoding) from arguments.
    ///
    /// ```
    /// use resp_codec::Request;
    ///
    /// let request = Request::from_args([&b"PING"[..]]);
    /// assert_eq!(&request.raw()[..], b"*1\r\n$4\r\nPING\r\n");
    /// ```
    pub fn from_args<I, B>(args: I) -> Request
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let args: Vec<B> = args.into_iter().collect();
        let payload: usize = args.iter().map(|arg| arg.as_ref().len() + 16).sum();
        let mut raw = BytesMut::with_capacity(payload + 16);
        let mut arg_spans = ArgSpans::with_expected(args.len());
        put_header(&mut raw, b'*', args.len());
        for arg in &args {
            let arg = arg.as_ref();
            put_header(&mut raw, b'$', arg.len());
            let start = raw.len();
            raw.put_slice(arg);
            arg_spans.push((start, raw.len()));
            raw.put_slice(b"\r\n");
        }
        Request {
            raw: raw.freeze(),
            arg_spans,
        }
    }

    /// Consumes the request, returning its multibulk bytes.
    pub fn into_raw(self) -> Bytes {
        self.raw
    }
}

/// Shows the first few arguments, each cut short, so that logging a request with a huge
/// value stays cheap.
impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN_ARGS: usize = 8;
        const SHOWN_BYTES: usize = 64;
        let mut list = formatter.debug_list();
        for arg in self.args().take(SHOWN_ARGS) {
            let shown = &arg[..arg.len().min(SHOWN_BYTES)];
            if shown.len() < arg.len() {
                list.entry(&format_args!(
                    "{:?}... ({} bytes)",
                    String::from_utf8_lossy(shown),
                    arg.len()
                ));
            } else {
                list.entry(&String::from_utf8_lossy(shown));
            }
        }
        if self.argc() > SHOWN_ARGS {
            list.entry(&format_args!("... ({} arguments)", self.argc()));
        }
        list.finish()
    }
}

/// Writes a RESP command (a multibulk of bulk strings) to `dst`.
///
/// ```
/// use bytes::BytesMut;
/// use resp_codec::encode_command;
///
/// let mut buffer = BytesMut::new();
/// encode_command(&mut buffer, ["GET", "key"]);
/// assert_eq!(&buffer[..], b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n");
/// ```
pub fn encode_command<I, B>(dst: &mut BytesMut, args: I)
where
    I: IntoIterator<Item = B>,
    I::IntoIter: ExactSizeIterator,
    B: AsRef<[u8]>,
{
    let args = args.into_iter();
    put_header(dst, b'*', args.len());
    for arg in args {
        put_bulk(dst, arg.as_ref());
    }
}

/// Frames client requests out of a read buffer; see the crate docs for the rules.
///
/// `*0\r\n`, `*-1\r\n` and blank inline lines are skipped like redis-server does. The
/// decoder is resumable: it keeps a cursor and the arguments found so far, so a request
/// arriving in many small reads is walked once.
///
/// ```
/// use bytes::BytesMut;
/// use resp_codec::RequestDecoder;
/// use tokio_util::codec::Decoder;
///
/// let mut decoder = RequestDecoder::default();
/// let mut buffer = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING \"a b\"\r\n"[..]);
/// let get = decoder.decode(&mut buffer).unwrap().unwrap();
/// assert_eq!(get.args().collect::<Vec<_>>(), [&b"GET"[..], b"k"]);
/// let ping = decoder.decode(&mut buffer).unwrap().unwrap();
/// assert_eq!(ping.arg(1), Some(&b"a b"[..]));
/// assert_eq!(&ping.raw()[..], b"*2\r\n$4\r\nPING\r\n$3\r\na b\r\n");
///
/// let mut bad = BytesMut::from(&b"*1\r\nx"[..]);
/// let error = decoder.decode(&mut bad).unwrap_err();
/// assert_eq!(error.to_string(), "Protocol error: expected '$', got 'x'");
/// ```
#[derive(Debug, Default)]
pub struct RequestDecoder {
    limits: Limits,
    state: RequestState,
    /// Tests only: read every request and header through the general path, to compare it with the shortcuts
    /// of [`complete_small_request`] and [`plain_header`].
    general_path_only: bool,
}

impl Default for RequestState {
    fn default() -> Self {
        RequestState::Start { line_scan: 0 }
    }
}

/// Progress on the request at byte 0 of the buffer.
#[derive(Debug)]
enum RequestState {
    /// Nothing walked yet, except perhaps part of a `*N` line: no `\r` before `line_scan`.
    Start { line_scan: usize },
    /// An inline line; no `\n` before `line_scan`.
    Inline { line_scan: usize },
    /// Inside a multibulk.
    Multibulk(MultibulkProgress),
}

#[derive(Debug)]
struct MultibulkProgress {
    argc: usize,
    arg_spans: ArgSpans,
    /// The next byte not yet walked.
    cursor: usize,
    /// Where to resume looking for the `\r` of the `$N` line at `cursor`.
    line_scan: usize,
    /// The length of the bulk whose data starts at `cursor`, once its header is read.
    pending_bulk: Option<usize>,
}

impl MultibulkProgress {
    /// A request of `argc` arguments whose first `$` header starts at `cursor`.
    fn new(argc: usize, cursor: usize) -> MultibulkProgress {
        MultibulkProgress {
            argc,
            arg_spans: ArgSpans::with_expected(argc),
            cursor,
            line_scan: 0,
            pending_bulk: None,
        }
    }
}

/// The outcome of looking for the `\r\n` that ends a request header line.
enum HeaderLine {
    /// The content ends at this index and the line (with `\r\n`) at index + 2.
    Complete(usize),
    /// Resume the search here later.
    Incomplete(usize),
}

// === impl RequestDecoder ===

impl RequestDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            state: RequestState::default(),
            general_path_only: false,
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn decode_inner(&mut self, src: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        loop {
            match &mut self.state {
                RequestState::Start { line_scan } => {
                    let Some(&first) = src.first() else {
                        return Ok(None);
                    };
                    if first != b'*' {
                        self.state = RequestState::Inline { line_scan: 0 };
                        continue;
                    }
                    // `decode` tries `complete_small_request` before calling here; after an empty `*0` above,
                    // the next request is read by the general path, as it must be read anyway when not small.
                    if let Some((argc, line_end)) =
                        plain_header(src, 1).filter(|_| !self.general_path_only)
                    {
                        let argc = check_array_len(argc, &self.limits)?;
                        self.state =
                            RequestState::Multibulk(MultibulkProgress::new(argc, line_end + 2));
                        continue;
                    }
                    let line_end = match find_request_header_end(
                        src,
                        1,
                        *line_scan,
                        self.limits.max_inline_len,
                        HeaderKind::Multibulk,
                    )? {
                        HeaderLine::Complete(end) => end,
                        HeaderLine::Incomplete(resume) => {
                            *line_scan = resume;
                            return Ok(None);
                        }
                    };
                    let argc = parse_strict_i64(&src[1..line_end])
                        .filter(|&argc| argc <= i64::from(i32::MAX))
                        .ok_or(ProtocolError::InvalidMultibulkLength)?;
                    if argc <= 0 {
                        // Redis treats `*0` and negative counts as an empty request and moves on.
                        src.advance(line_end + 2);
                        *line_scan = 0;
                        continue;
                    }
                    let argc = check_array_len(argc, &self.limits)?;
                    self.state =
                        RequestState::Multibulk(MultibulkProgress::new(argc, line_end + 2));
                }
                RequestState::Inline { line_scan } => {
                    let max = self.limits.max_inline_len;
                    let search_from = (*line_scan).min(src.len());
                    // redis-server looks for the `\n` with `strchr`, which stops at a NUL byte:
                    // a NUL before the line ending means the line never ends, until the
                    // buffer outgrows the inline limit. Mirror that.
                    let found =
                        memchr::memchr2(b'\n', 0, &src[search_from..]).map(|i| i + search_from);
                    let newline = match found {
                        Some(newline) if src[newline] == b'\n' => newline,
                        stuck_or_none => {
                            if src.len() > max {
                                return Err(ProtocolError::TooBigInlineRequest);
                            }
                            *line_scan = stuck_or_none.unwrap_or(src.len());
                            return Ok(None);
                        }
                    };
                    if newline > max {
                        return Err(ProtocolError::TooBigInlineRequest);
                    }
                    let mut line = &src[..newline];
                    if let Some(without_cr) = line.strip_suffix(b"\r") {
                        line = without_cr;
                    }
                    let args =
                        split_inline_args(line).map_err(|_| ProtocolError::UnbalancedQuotes)?;
                    src.advance(newline + 1);
                    self.state = RequestState::default();
                    if !args.is_empty() {
                        return Ok(Some(Request::from_args(args)));
                    }
                }
                RequestState::Multibulk(_) => return self.continue_multibulk(src),
            }
        }
    }

    fn continue_multibulk(&mut self, src: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        let limits = self.limits;
        let RequestState::Multibulk(progress) = &mut self.state else {
            return Ok(None);
        };
        // The spans read so far, counted here (asking the spans for their length costs a match per argument).
        let mut read = progress.arg_spans.len();
        while read < progress.argc {
            let len = match progress.pending_bulk {
                Some(len) => len,
                None => {
                    let Some(&type_byte) = src.get(progress.cursor) else {
                        return Ok(None);
                    };
                    if type_byte != b'$' {
                        return Err(ProtocolError::ExpectedBulk { got: type_byte });
                    }
                    let content_start = progress.cursor + 1;
                    if let Some((len, line_end)) =
                        plain_header(src, content_start).filter(|_| !self.general_path_only)
                    {
                        let len = check_bulk_len(len, &limits)?;
                        progress.cursor = line_end + 2;
                        progress.pending_bulk = Some(len);
                        continue;
                    }
                    let line_end = match find_request_header_end(
                        src,
                        content_start,
                        progress.line_scan,
                        limits.max_inline_len,
                        HeaderKind::Bulk,
                    )? {
                        HeaderLine::Complete(end) => end,
                        HeaderLine::Incomplete(resume) => {
                            progress.line_scan = resume;
                            return Ok(None);
                        }
                    };
                    progress.line_scan = 0;
                    let len = parse_strict_i64(&src[content_start..line_end])
                        .ok_or(ProtocolError::InvalidBulkLength)?;
                    let len = check_bulk_len(len, &limits)?;
                    progress.cursor = line_end + 2;
                    progress.pending_bulk = Some(len);
                    len
                }
            };
            let end = progress.cursor.saturating_add(len).saturating_add(2);
            if src.len() < end {
                src.reserve(reserve_hint(end - src.len(), src.len()));
                return Ok(None);
            }
            if &src[end - 2..end] != b"\r\n" {
                return Err(ProtocolError::ExpectedCrlf);
            }
            progress.arg_spans.push((progress.cursor, end - 2));
            read += 1;
            progress.cursor = end;
            progress.pending_bulk = None;
        }
        let arg_spans = std::mem::take(&mut progress.arg_spans);
        let raw = src.split_to(progress.cursor).freeze();
        self.state = RequestState::default();
        Ok(Some(Request { raw, arg_spans }))
    }
}

/// A complete multibulk request of at most [`INLINE_ARGS`] arguments whose headers are all plain (see
/// [`plain_header`]), framed in one pass without the general path's state: most requests are like this. `None`
/// for anything else (not complete yet, more arguments, an unusual header, a bad ending, over the limits): the
/// general path reads those from the start again and gives the errors.
#[inline]
fn complete_small_request(src: &mut BytesMut, limits: &Limits) -> Option<Request> {
    const _: () = assert!(
        INLINE_ARGS == 5,
        "the count below is one digit up to INLINE_ARGS"
    );
    let bytes: &[u8] = src;
    let argc = match bytes.get(..4)? {
        [b'*', count @ b'1'..=b'5', b'\r', b'\n'] => count - b'0',
        _ => return None,
    };
    if usize::from(argc) > limits.max_array_len {
        return None;
    }
    let mut spans = [(0, 0); INLINE_ARGS];
    let mut cursor: usize = 4;
    for span in &mut spans[..usize::from(argc)] {
        if *bytes.get(cursor)? != b'$' {
            return None;
        }
        let (len, line_end) = plain_header(bytes, cursor + 1)?;
        // Nine digits at most: no overflow below.
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= limits.max_bulk_len)?;
        let start = line_end + 2;
        let end = start + len;
        if bytes.get(end..end + 2)? != b"\r\n" {
            return None;
        }
        *span = (u32::try_from(start).ok()?, u32::try_from(end).ok()?);
        cursor = end + 2;
    }
    let raw = src.split_to(cursor).freeze();
    Some(Request {
        raw,
        arg_spans: ArgSpans::Inline { len: argc, spans },
    })
}

/// Which request header a line ends: it names the errors of a bad one. (The errors are made only when one
/// occurs: this runs several times per request.)
#[derive(Clone, Copy)]
enum HeaderKind {
    /// `*N`.
    Multibulk,
    /// `$N`.
    Bulk,
}

impl HeaderKind {
    fn too_big(self) -> ProtocolError {
        match self {
            HeaderKind::Multibulk => ProtocolError::TooBigMultibulkCount,
            HeaderKind::Bulk => ProtocolError::TooBigBulkCount,
        }
    }

    fn invalid(self) -> ProtocolError {
        match self {
            HeaderKind::Multibulk => ProtocolError::InvalidMultibulkLength,
            HeaderKind::Bulk => ProtocolError::InvalidBulkLength,
        }
    }
}

/// Finds the `\r\n` ending a `*N` or `$N` request header. Like Redis, a missing `\r` is only
/// an error ("too big ... count string") once more than `cap` bytes arrived; unlike Redis,
/// the byte after `\r` must be `\n` (Redis skips it unseen).
fn find_request_header_end(
    src: &[u8],
    content_start: usize,
    resume: usize,
    cap: usize,
    kind: HeaderKind,
) -> Result<HeaderLine, ProtocolError> {
    let search_from = resume.max(content_start).min(src.len());
    match memchr::memchr(b'\r', &src[search_from..]).map(|i| i + search_from) {
        None => {
            if src.len() - content_start > cap {
                Err(kind.too_big())
            } else {
                Ok(HeaderLine::Incomplete(src.len()))
            }
        }
        Some(carriage_return) => {
            if carriage_return - content_start > cap {
                return Err(kind.too_big());
            }
            match src.get(carriage_return + 1) {
                None => Ok(HeaderLine::Incomplete(carriage_return)),
                Some(b'\n') => Ok(HeaderLine::Complete(carriage_return)),
                Some(_) => Err(kind.invalid()),
            }
        }
    }
}

impl Decoder for RequestDecoder {
    type Item = Request;
    type Error = ProtocolError;

    /// Inlined into the caller for the usual cases (an empty buffer between requests, a complete small
    /// request; see [`complete_small_request`]); everything else goes to the general path, out of line.
    #[inline]
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        if matches!(self.state, RequestState::Start { .. }) && !self.general_path_only {
            match src.first() {
                None => return Ok(None),
                Some(b'*') => {
                    if let Some(request) = complete_small_request(src, &self.limits) {
                        return Ok(Some(request));
                    }
                }
                Some(_) => {}
            }
        }
        self.decode_general(src)
    }
}

impl RequestDecoder {
    /// The general path: every request, resumed where the last call stopped, and every error (after which
    /// the decoder starts afresh).
    #[inline(never)]
    fn decode_general(&mut self, src: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        let result = self.decode_inner(src);
        if result.is_err() {
            self.state = RequestState::default();
        }
        result
    }
}

/// Writes a request's multibulk bytes (for example when forwarding it to a server).
impl Encoder<Request> for RequestDecoder {
    type Error = ProtocolError;

    fn encode(&mut self, item: Request, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        dst.extend_from_slice(&item.raw);
        Ok(())
    }
}

impl Encoder<&Request> for RequestDecoder {
    type Error = ProtocolError;

    fn encode(&mut self, item: &Request, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        dst.extend_from_slice(&item.raw);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// The text of a `*N` or `$N` header: the usual numbers and the ones only the general path reads.
    fn header_text() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (1u64..5).prop_map(|n| n.to_string().into_bytes()),
            (0u64..20_000_000_000).prop_map(|n| n.to_string().into_bytes()),
            Just(b"0".to_vec()),
            Just(b"-1".to_vec()),
            Just(b"007".to_vec()),
            Just(b"".to_vec()),
            Just(b"+3".to_vec()),
            Just(b"1x".to_vec()),
            Just(b"999999999".to_vec()),
            Just(b"1000000000".to_vec()),
        ]
    }

    fn line_ending() -> impl Strategy<Value = &'static [u8]> {
        prop_oneof![
            8 => Just(&b"\r\n"[..]),
            1 => Just(&b"\r"[..]),
            1 => Just(&b"\rx"[..]),
            1 => Just(&b"\n"[..]),
        ]
    }

    /// One piece of a request stream: an array header, or a bulk header and its data.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (header_text(), line_ending()).prop_map(|(text, end)| [&b"*"[..], &text, end].concat()),
            (header_text(), line_ending(), vec(any::<u8>(), 0..6))
                .prop_map(|(text, end, data)| { [&b"$"[..], &text, end, &data, b"\r\n"].concat() }),
            (1usize..4).prop_map(|len| format!("${len}\r\n{}\r\n", "v".repeat(len)).into_bytes()),
        ]
    }

    /// Everything `decoder` makes of `stream` fed in chunks of `chunk` bytes: each request's raw bytes and
    /// arguments, then the error that stopped it, if any.
    fn decode_all(decoder: RequestDecoder, stream: &[u8], chunk: usize) -> Vec<String> {
        crate::test_support::decode_all(decoder, stream, chunk, |request| {
            format!(
                "{:?} {:?}",
                request.raw(),
                (0..request.argc())
                    .map(|i| request.arg(i))
                    .collect::<Vec<_>>()
            )
        })
    }

    #[test]
    fn spans_past_4_gib_move_to_the_heap_and_keep_their_order() {
        let mut spans = ArgSpans::default();
        spans.push((4, 7));
        spans.push((9, 1 << 33));
        spans.push((1 << 33, (1 << 33) + 2));
        assert!(matches!(spans, ArgSpans::Heap(_)));
        let all: Vec<_> = (0..spans.len())
            .filter_map(|index| spans.get(index))
            .collect();
        assert_eq!(all, [(4, 7), (9, 1 << 33), (1 << 33, (1 << 33) + 2)]);
        assert!(spans.get(3).is_none());
    }

    #[test]
    fn a_request_stays_small_to_move() {
        assert!(std::mem::size_of::<Request>() <= 80);
    }

    proptest! {
        #[test]
        fn the_shortcuts_decode_as_the_general_path(
            pieces in vec(piece(), 1..12),
            chunk in prop_oneof![1usize..40, Just(usize::MAX)],
            max_bulk_len in prop_oneof![Just(1_000_000usize), 0usize..4],
            max_array_len in prop_oneof![Just(1usize << 24), 0usize..4],
        ) {
            let stream = pieces.concat();
            let limits = Limits { max_bulk_len, max_array_len, ..Limits::default() };
            let general = RequestDecoder { general_path_only: true, ..RequestDecoder::new(limits) };
            prop_assert_eq!(
                decode_all(RequestDecoder::new(limits), &stream, chunk),
                decode_all(general, &stream, chunk)
            );
        }

        #[test]
        fn well_formed_requests_near_the_limits_decode_as_the_general_path(
            requests in vec(vec(vec(any::<u8>(), 0..12), 1..8), 1..8),
            chunk in prop_oneof![1usize..40, Just(usize::MAX)],
            max_bulk_len in prop_oneof![Just(1_000_000usize), 0usize..12],
            max_array_len in prop_oneof![Just(1usize << 24), 0usize..8],
        ) {
            let mut stream = BytesMut::new();
            for args in &requests {
                encode_command(&mut stream, args);
            }
            let limits = Limits { max_bulk_len, max_array_len, ..Limits::default() };
            let general = RequestDecoder { general_path_only: true, ..RequestDecoder::new(limits) };
            prop_assert_eq!(
                decode_all(RequestDecoder::new(limits), &stream, chunk),
                decode_all(general, &stream, chunk)
            );
        }
    }
}
