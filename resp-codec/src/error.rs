//! The error type shared by every decoder in this crate.
//!
//! Redis answers a malformed request with `-ERR Protocol error: ...` and then closes the
//! connection. A proxy should answer exactly the same way, so the `Display` text of each
//! variant is what goes after `-ERR ` (Redis's own wording where Redis has one), and
//! [`ProtocolError::to_reply`] builds the whole reply line.

use std::io;

use bytes::{BufMut, Bytes, BytesMut};

/// Why a byte stream could not be framed as RESP.
///
/// After any variant other than [`ProtocolError::Io`] the stream is out of sync and the
/// connection must be closed (after sending [`ProtocolError::to_reply`] to a client).
///
/// ```
/// use resp_codec::ProtocolError;
///
/// let error = ProtocolError::InvalidBulkLength;
/// assert_eq!(error.to_string(), "Protocol error: invalid bulk length");
/// assert_eq!(&error.to_reply()[..], b"-ERR Protocol error: invalid bulk length\r\n");
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A `*` header that is not a valid integer (or is above `i32::MAX`, like Redis).
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// An aggregate header above [`Limits::max_array_len`](crate::Limits::max_array_len).
    /// Redis uses the same text for an oversized count.
    #[error("Protocol error: invalid multibulk length")]
    ArrayTooLong {
        /// The declared number of elements (entries for maps and attributes).
        length: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A `$` (or `!`, `=`) header that is not a valid length.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// A bulk length above [`Limits::max_bulk_len`](crate::Limits::max_bulk_len), detected
    /// as soon as the header is read. Redis uses the same text for `proto-max-bulk-len`.
    #[error("Protocol error: invalid bulk length")]
    BulkTooLong {
        /// The declared length in bytes.
        length: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A `*N` request header line longer than the inline limit without a line ending.
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    /// A `$N` request header line longer than the inline limit without a line ending.
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// Inside a request array, an element that does not start with `$`.
    ///
    /// Like Redis, a CR or LF byte is shown as a space so the reply stays one line.
    #[error("Protocol error: expected '$', got '{}'", printable(*got))]
    ExpectedBulk {
        /// The byte found instead of `$`.
        got: u8,
    },
    /// An inline request line longer than [`Limits::max_inline_len`](crate::Limits::max_inline_len).
    #[error("Protocol error: too big inline request")]
    TooBigInlineRequest,
    /// An inline request with an unterminated quote, or a closing quote followed by
    /// something other than a space.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// Bulk data not followed by `\r\n`. redis-server silently skips two bytes here; a proxy
    /// rejects the frame instead of forwarding bytes that another server could read differently.
    #[error("Protocol error: expected CRLF after bulk data")]
    ExpectedCrlf,
    /// Aggregates nested deeper than [`Limits::max_depth`](crate::Limits::max_depth).
    #[error("Protocol error: nesting deeper than {limit} levels")]
    TooDeep {
        /// The configured limit.
        limit: usize,
    },
    /// A reply line (simple string, error, double, big number) longer than
    /// [`Limits::max_bulk_len`](crate::Limits::max_bulk_len).
    #[error("Protocol error: too big line")]
    LineTooLong,
    /// A frame starting with a byte that is not a RESP2/RESP3 type.
    #[error("Protocol error: invalid type byte '{}'", printable(*got))]
    InvalidTypeByte {
        /// The unexpected byte.
        got: u8,
    },
    /// A `:` line that is not a 64-bit integer.
    #[error("Protocol error: invalid integer")]
    InvalidInteger,
    /// A `,` line that is not a floating point number.
    #[error("Protocol error: invalid double")]
    InvalidDouble,
    /// A `(` line that is not an integer.
    #[error("Protocol error: invalid big number")]
    InvalidBigNumber,
    /// A `#` line other than `t` or `f`.
    #[error("Protocol error: invalid boolean")]
    InvalidBoolean,
    /// A `_` line with content.
    #[error("Protocol error: invalid null")]
    InvalidNull,
    /// A `=` verbatim string without its three byte format and colon.
    #[error("Protocol error: invalid verbatim string")]
    InvalidVerbatim,
    /// Bytes expected to hold only complete replies end inside one (see
    /// [`split_replies`](crate::split_replies)).
    #[error("Protocol error: incomplete reply")]
    IncompleteReply,
    /// Reading from or writing to the underlying stream failed (tokio-util codecs need it).
    #[error(transparent)]
    Io(#[from] io::Error),
}

// === impl ProtocolError ===

impl ProtocolError {
    /// The full RESP error reply for this error: `-ERR <Display text>\r\n`.
    ///
    /// For [`ProtocolError::ExpectedBulk`] and [`ProtocolError::InvalidTypeByte`] the offending
    /// byte is written as the raw byte (as Redis does with `%c`), not as its UTF-8 encoding.
    ///
    /// ```
    /// use resp_codec::ProtocolError;
    ///
    /// let reply = ProtocolError::ExpectedBulk { got: b'x' }.to_reply();
    /// assert_eq!(&reply[..], b"-ERR Protocol error: expected '$', got 'x'\r\n");
    /// ```
    pub fn to_reply(&self) -> Bytes {
        let mut reply = BytesMut::with_capacity(64);
        reply.put_slice(b"-ERR ");
        match self {
            ProtocolError::ExpectedBulk { got } => {
                reply.put_slice(b"Protocol error: expected '$', got '");
                reply.put_u8(reply_byte(*got));
                reply.put_slice(b"'");
            }
            ProtocolError::InvalidTypeByte { got } => {
                reply.put_slice(b"Protocol error: invalid type byte '");
                reply.put_u8(reply_byte(*got));
                reply.put_slice(b"'");
            }
            other => {
                // Io errors carry arbitrary text; keep the reply on one line.
                let text = other.to_string().replace(['\r', '\n'], " ");
                reply.put_slice(text.as_bytes());
            }
        }
        reply.put_slice(b"\r\n");
        reply.freeze()
    }
}

/// Redis replaces CR and LF with spaces in formatted error replies, so do the same.
fn reply_byte(byte: u8) -> u8 {
    match byte {
        b'\r' | b'\n' => b' ',
        other => other,
    }
}

/// The byte as a `char` for `Display` (Latin-1), with CR and LF replaced like Redis does.
fn printable(byte: u8) -> char {
    char::from(reply_byte(byte))
}
