//! [`Frame`]: a decoded RESP2/RESP3 value, and its encoding.

use bytes::{BufMut, Bytes, BytesMut};

use crate::write::{put_header, put_integer, put_line};

/// One RESP2 or RESP3 value, as a tree.
///
/// Built by the combine-based [`parse_frame`](crate::parse_frame) and
/// [`FrameCodec`](crate::FrameCodec). Forwarding code should prefer
/// [`ReplyDecoder`](crate::ReplyDecoder), which frames replies without building a tree.
///
/// ```
/// use resp_codec::Frame;
///
/// let frame = Frame::Array(vec![Frame::Bulk("GET".into()), Frame::Integer(-7)]);
/// assert_eq!(&frame.to_bytes()[..], b"*2\r\n$3\r\nGET\r\n:-7\r\n");
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+text`: a simple string.
    Simple(Bytes),
    /// `-text`: an error, the text after `-` (for example `ERR unknown command`).
    Error(Bytes),
    /// `:n`: a signed 64-bit integer.
    Integer(i64),
    /// `$n`: a bulk string.
    Bulk(Bytes),
    /// `$-1`: the RESP2 null bulk string.
    NullBulk,
    /// `*n`: an array.
    Array(Vec<Frame>),
    /// `*-1`: the RESP2 null array.
    NullArray,
    /// `_`: the RESP3 null.
    Null,
    /// `,text`: a RESP3 double, kept as text so it round-trips exactly.
    Double(Bytes),
    /// `#t` / `#f`: a RESP3 boolean.
    Boolean(bool),
    /// `(digits`: a RESP3 big number, as text.
    BigNumber(Bytes),
    /// `=n`: a RESP3 verbatim string, such as `txt:` or `mkd:` text.
    Verbatim {
        /// The three byte format, such as `txt`.
        format: [u8; 3],
        /// The text after `format:`.
        text: Bytes,
    },
    /// `!n`: a RESP3 bulk error.
    BulkError(Bytes),
    /// `%n`: a RESP3 map, in wire order.
    Map(Vec<(Frame, Frame)>),
    /// `~n`: a RESP3 set, in wire order.
    Set(Vec<Frame>),
    /// `>n`: a RESP3 push (out-of-band data such as pub/sub messages).
    Push(Vec<Frame>),
    /// `|n`: RESP3 attributes together with the value they annotate.
    Attribute {
        /// The attribute entries.
        attributes: Vec<(Frame, Frame)>,
        /// The annotated value.
        value: Box<Frame>,
    },
}

// === impl Frame ===

impl Frame {
    /// Appends the RESP encoding of this frame to `dst`.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use resp_codec::Frame;
    ///
    /// let mut buffer = BytesMut::new();
    /// Frame::Simple("OK".into()).encode(&mut buffer);
    /// Frame::NullBulk.encode(&mut buffer);
    /// assert_eq!(&buffer[..], b"+OK\r\n$-1\r\n");
    /// ```
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Frame::Simple(text) => put_line(dst, b'+', text),
            Frame::Error(text) => put_line(dst, b'-', text),
            Frame::Integer(value) => put_integer(dst, b':', *value),
            Frame::Bulk(data) => put_bulk_parts(dst, b'$', &[data]),
            Frame::NullBulk => dst.put_slice(b"$-1\r\n"),
            Frame::Array(items) => put_aggregate(dst, b'*', items),
            Frame::NullArray => dst.put_slice(b"*-1\r\n"),
            Frame::Null => dst.put_slice(b"_\r\n"),
            Frame::Double(text) => put_line(dst, b',', text),
            Frame::Boolean(value) => dst.put_slice(if *value { b"#t\r\n" } else { b"#f\r\n" }),
            Frame::BigNumber(text) => put_line(dst, b'(', text),
            Frame::Verbatim { format, text } => {
                put_bulk_parts(dst, b'=', &[&format[..], b":", text])
            }
            Frame::BulkError(data) => put_bulk_parts(dst, b'!', &[data]),
            Frame::Map(entries) => put_entries(dst, b'%', entries),
            Frame::Set(items) => put_aggregate(dst, b'~', items),
            Frame::Push(items) => put_aggregate(dst, b'>', items),
            Frame::Attribute { attributes, value } => {
                put_entries(dst, b'|', attributes);
                value.encode(dst);
            }
        }
    }

    /// The RESP encoding of this frame.
    ///
    /// ```
    /// use resp_codec::Frame;
    ///
    /// assert_eq!(&Frame::Boolean(true).to_bytes()[..], b"#t\r\n");
    /// ```
    pub fn to_bytes(&self) -> Bytes {
        let mut dst = BytesMut::new();
        self.encode(&mut dst);
        dst.freeze()
    }
}

/// Writes a bulk-like frame (`$`, `=`, `!`) whose data is `parts` joined.
fn put_bulk_parts(dst: &mut BytesMut, prefix: u8, parts: &[&[u8]]) {
    let len = parts.iter().map(|part| part.len()).sum();
    put_header(dst, prefix, len);
    dst.reserve(len + 2);
    for part in parts {
        dst.put_slice(part);
    }
    dst.put_slice(b"\r\n");
}

fn put_aggregate(dst: &mut BytesMut, prefix: u8, items: &[Frame]) {
    put_header(dst, prefix, items.len());
    for item in items {
        item.encode(dst);
    }
}

fn put_entries(dst: &mut BytesMut, prefix: u8, entries: &[(Frame, Frame)]) {
    put_header(dst, prefix, entries.len());
    for (key, value) in entries {
        key.encode(dst);
        value.encode(dst);
    }
}
