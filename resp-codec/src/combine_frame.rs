//! The general frame parser, built on `combine` the way redis-rs builds its own: one
//! recursive `frame` parser behind `opaque!(any_send_sync_partial_state(..))` so a
//! half-parsed tree survives in [`FrameCodec`]'s state between reads.
//!
//! It follows the same grammar and limits as the hand-written framers (both call the
//! helpers in `grammar.rs`), so it accepts exactly what they accept.
//!
//! One known cost: combine's `take_fn` does not accumulate its resume offset, so a
//! *text line* (`+`, `-`, `,`, `(`) arriving in many reads is partly rescanned on each read.
//! Numeric lines are capped at a few bytes and bulk data is taken by length, so only long
//! simple strings are affected; the hot paths use the hand-written framers anyway.

use bytes::{Buf, Bytes, BytesMut};
use combine::error::StreamError;
use combine::parser::combinator::{any_send_sync_partial_state, AnySendSyncPartialState};
use combine::parser::range::{take, take_fn, TakeRange};
use combine::stream::{easy, MaybePartialStream, RangeStream, StreamErrorFor};
use combine::{any, opaque, ParseError, Parser};
use tokio_util::codec::{Decoder, Encoder};

use crate::grammar::{find_line_end, interpret_line, Header, LineSearch, TypeKind};
use crate::{Frame, Limits, ProtocolError};

/// What a frame's header line says comes next.
#[derive(Debug, Clone)]
enum Step {
    /// The frame is complete.
    Done(Frame),
    /// Bulk data of `len` bytes follows.
    Bulk { kind: TypeKind, len: usize },
    /// `children` frames follow.
    Aggregate { kind: TypeKind, children: usize },
}

fn protocol_error<'a, I>(error: ProtocolError) -> StreamErrorFor<I>
where
    I: RangeStream<Token = u8, Range = &'a [u8]>,
    I::Error: ParseError<u8, &'a [u8], I::Position>,
{
    StreamErrorFor::<I>::other(error)
}

/// One line's content after the type byte, without its CRLF, held to `cap` bytes.
fn line<'a, I>(
    kind: TypeKind,
    cap: usize,
) -> impl Parser<I, Output = &'a [u8], PartialState = usize>
where
    I: RangeStream<Token = u8, Range = &'a [u8]>,
    I::Error: ParseError<u8, &'a [u8], I::Position>,
{
    take_fn(
        move |haystack: &'a [u8]| match find_line_end(haystack, 0, 0, cap) {
            LineSearch::Found(end) => TakeRange::Found(end + 2),
            // Keep the last byte: it may be the `\r` of a CRLF split across reads.
            LineSearch::NotYet(_) => TakeRange::NotFound(haystack.len().saturating_sub(1)),
            // Take everything so that the check below reports the error.
            LineSearch::TooLong => TakeRange::Found(haystack.len()),
        },
    )
    .and_then(move |line: &'a [u8]| match line.strip_suffix(b"\r\n") {
        Some(content) if content.len() <= cap => Ok(content),
        _ => Err(protocol_error::<I>(kind.line_error())),
    })
}

/// A scalar frame from its line content (already validated by `interpret_line`).
fn scalar_frame(kind: TypeKind, type_byte: u8, content: &[u8]) -> Frame {
    let text = || Bytes::copy_from_slice(content);
    match kind {
        TypeKind::Text if type_byte == b'-' => Frame::Error(text()),
        TypeKind::Double => Frame::Double(text()),
        TypeKind::BigNumber => Frame::BigNumber(text()),
        TypeKind::Integer => {
            Frame::Integer(crate::grammar::parse_strict_i64(content).unwrap_or_default())
        }
        TypeKind::Boolean => Frame::Boolean(content == b"t"),
        TypeKind::Null => Frame::Null,
        _ => Frame::Simple(text()),
    }
}

fn bulk_frame(kind: TypeKind, data: &[u8]) -> Result<Frame, ProtocolError> {
    Ok(match kind {
        TypeKind::BulkError => Frame::BulkError(Bytes::copy_from_slice(data)),
        TypeKind::Verbatim => match data {
            [a, b, c, b':', text @ ..] => Frame::Verbatim {
                format: [*a, *b, *c],
                text: Bytes::copy_from_slice(text),
            },
            _ => return Err(ProtocolError::InvalidVerbatim),
        },
        _ => Frame::Bulk(Bytes::copy_from_slice(data)),
    })
}

fn pairs(items: Vec<Frame>) -> Vec<(Frame, Frame)> {
    let mut entries = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        entries.push((key, value));
    }
    entries
}

fn aggregate_frame(kind: TypeKind, mut items: Vec<Frame>) -> Frame {
    match kind {
        TypeKind::Map => Frame::Map(pairs(items)),
        TypeKind::Set => Frame::Set(items),
        TypeKind::Push => Frame::Push(items),
        TypeKind::Attribute => {
            // The count always includes the annotated value, so `pop` finds it.
            let value = items.pop().unwrap_or(Frame::Null);
            Frame::Attribute {
                attributes: pairs(items),
                value: Box::new(value),
            }
        }
        _ => Frame::Array(items),
    }
}

/// The recursive frame parser; `depth` is the number of enclosing aggregates.
fn frame<'a, I>(
    depth: usize,
    limits: Limits,
) -> impl Parser<I, Output = Frame, PartialState = AnySendSyncPartialState>
where
    I: RangeStream<Token = u8, Range = &'a [u8]>,
    I::Error: ParseError<u8, &'a [u8], I::Position>,
{
    opaque!(any_send_sync_partial_state(
        any()
            .and_then(move |type_byte: u8| {
                let kind = TypeKind::from_byte(type_byte).ok_or(protocol_error::<I>(
                    ProtocolError::InvalidTypeByte { got: type_byte },
                ))?;
                if kind.is_aggregate() && depth >= limits.max_depth {
                    return Err(protocol_error::<I>(ProtocolError::TooDeep {
                        limit: limits.max_depth,
                    }));
                }
                Ok((type_byte, kind))
            })
            .then_partial(move |&mut (type_byte, kind)| {
                line(kind, kind.line_cap(&limits)).and_then(move |content: &'a [u8]| {
                    let header =
                        interpret_line(kind, content, &limits).map_err(protocol_error::<I>)?;
                    Ok::<_, StreamErrorFor<I>>(match header {
                        Header::Scalar => Step::Done(scalar_frame(kind, type_byte, content)),
                        Header::Null if kind == TypeKind::Array => Step::Done(Frame::NullArray),
                        Header::Null => Step::Done(Frame::NullBulk),
                        Header::Bulk { len } => Step::Bulk { kind, len },
                        Header::Aggregate { children } => Step::Aggregate { kind, children },
                    })
                })
            })
            .then_partial(move |step| match *step {
                Step::Done(ref frame) => combine::value(frame.clone()).left().left(),
                Step::Bulk { kind, len } => take(len.saturating_add(2))
                    .and_then(move |data: &'a [u8]| match data.strip_suffix(b"\r\n") {
                        Some(data) => bulk_frame(kind, data).map_err(protocol_error::<I>),
                        None => Err(protocol_error::<I>(ProtocolError::ExpectedCrlf)),
                    })
                    .right()
                    .left(),
                Step::Aggregate { kind, children } => {
                    combine::parser::repeat::count_min_max(
                        children,
                        children,
                        frame(depth + 1, limits),
                    )
                    .map(move |items: Vec<Frame>| aggregate_frame(kind, items))
                    .right()
                }
            })
    ))
}

/// Turns combine's error list back into the `ProtocolError` the grammar raised.
fn into_protocol_error<P>(errors: easy::Errors<u8, &[u8], P>) -> ProtocolError {
    let text = format!("unexpected parse failure: {:?}", errors.errors);
    for error in errors.errors {
        if let easy::Error::Other(boxed) = error {
            if let Ok(protocol_error) = boxed.downcast::<ProtocolError>() {
                return *protocol_error;
            }
        }
    }
    // Every failure in the grammar is raised as a `ProtocolError`, so this is only a
    // safety net that keeps combine's own description.
    ProtocolError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, text))
}

/// Parses one frame from the start of `src` with combine.
///
/// Returns the frame and the number of bytes it used, `Ok(None)` if `src` holds only part
/// of a frame, or the protocol error.
///
/// ```
/// use resp_codec::{parse_frame, Frame, Limits};
///
/// let parsed = parse_frame(b"%1\r\n+key\r\n,1.5\r\nrest", &Limits::default()).unwrap();
/// let expected = Frame::Map(vec![(Frame::Simple("key".into()), Frame::Double("1.5".into()))]);
/// assert_eq!(parsed, Some((expected, 16)));
/// assert_eq!(parse_frame(b"$5\r\nhel", &Limits::default()).unwrap(), None);
/// assert!(parse_frame(b"?", &Limits::default()).is_err());
/// ```
pub fn parse_frame(src: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, ProtocolError> {
    let mut state = AnySendSyncPartialState::default();
    let mut stream = easy::Stream(MaybePartialStream(src, true));
    let (frame, used) = combine::stream::decode(frame(0, *limits), &mut stream, &mut state)
        .map_err(into_protocol_error)?;
    Ok(frame.map(|frame| (frame, used)))
}

/// A combine-based codec for whole [`Frame`] trees: `Decoder<Item = Frame>` and
/// `Encoder<Frame>` / `Encoder<&Frame>`.
///
/// Half-parsed frames are kept in the codec's state between reads, and bytes already
/// parsed are removed from the buffer.
///
/// ```
/// use bytes::BytesMut;
/// use resp_codec::{Frame, FrameCodec};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = FrameCodec::default();
/// let mut buffer = BytesMut::new();
/// codec.encode(Frame::Set(vec![Frame::Integer(1), Frame::Null]), &mut buffer).unwrap();
/// assert_eq!(&buffer[..], b"~2\r\n:1\r\n_\r\n");
/// let mut first_half = buffer.split_to(5);
/// assert_eq!(codec.decode(&mut first_half).unwrap(), None);
/// first_half.unsplit(buffer);
/// let frame = codec.decode(&mut first_half).unwrap().unwrap();
/// assert_eq!(frame, Frame::Set(vec![Frame::Integer(1), Frame::Null]));
/// ```
#[derive(Default)]
pub struct FrameCodec {
    limits: Limits,
    state: AnySendSyncPartialState,
    /// Whether bytes of an unfinished frame were already consumed from the buffer.
    mid_frame: bool,
}

// === impl FrameCodec ===

impl FrameCodec {
    /// A codec enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        FrameCodec {
            limits,
            state: AnySendSyncPartialState::default(),
            mid_frame: false,
        }
    }

    /// The limits this codec enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl std::fmt::Debug for FrameCodec {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FrameCodec")
            .field("limits", &self.limits)
            .field("mid_frame", &self.mid_frame)
            .finish_non_exhaustive()
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let (frame, used) = {
            let buffer = &src[..];
            let mut stream = easy::Stream(MaybePartialStream(buffer, true));
            match combine::stream::decode_tokio(frame(0, self.limits), &mut stream, &mut self.state)
            {
                Ok(decoded) => decoded,
                Err(errors) => {
                    self.state = AnySendSyncPartialState::default();
                    self.mid_frame = false;
                    return Err(into_protocol_error(errors));
                }
            }
        };
        src.advance(used);
        self.mid_frame = frame.is_none() && (self.mid_frame || used > 0);
        Ok(frame)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && !self.mid_frame => Ok(None),
            None => Err(ProtocolError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "stream ended inside a RESP frame",
            ))),
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        item.encode(dst);
        Ok(())
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        item.encode(dst);
        Ok(())
    }
}
