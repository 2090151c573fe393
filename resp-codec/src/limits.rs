//! Size limits that keep a hostile or broken peer from making a decoder buffer without bound.

/// Bounds applied by every decoder in this crate.
///
/// | field | default | why |
/// | --- | --- | --- |
/// | `max_bulk_len` | 512 MiB | Redis's `proto-max-bulk-len` default. |
/// | `max_array_len` | 16 Mi elements (`1 << 24`) | Rejects absurd counts at once while a reply to `LRANGE`/`KEYS`/`SMEMBERS` over a multi-million element collection still passes. |
/// | `max_depth` | 128 | Nested aggregates; no client request nests at all. |
/// | `max_inline_len` | 64 KiB | Redis's `PROTO_INLINE_MAX_SIZE`. |
///
/// Array counts cost little memory by themselves: decoders preallocate at most a few
/// thousand slots and otherwise grow only as elements (at least three bytes each) arrive.
/// Bulk lengths are checked as soon as the `$N` header is read, before any data arrives.
///
/// These defaults are for input from clients. Replies read from a backend use
/// [`Limits::for_backend_replies`], which accepts any reply a server can produce.
///
/// ```
/// use resp_codec::Limits;
///
/// let limits = Limits { max_bulk_len: 1024 * 1024, ..Limits::default() };
/// assert_eq!(limits.max_depth, 128);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest accepted bulk string (`$`, `!`, `=`) in bytes. Reply lines (`+`, `-`,
    /// `,`, `(`) are held to the same bound.
    pub max_bulk_len: usize,
    /// The largest accepted element count of one aggregate (entries for maps and attributes).
    pub max_array_len: usize,
    /// The deepest accepted nesting of aggregates; a top-level array has depth 1.
    pub max_depth: usize,
    /// The longest accepted inline request line, and the longest `*N`/`$N` request header
    /// line before Redis's "too big ... count string" errors.
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_array_len: 1 << 24,
            max_depth: 128,
            max_inline_len: 64 * 1024,
        }
    }
}

impl Limits {
    /// Limits for replies read from a backend server: no depth, bulk or aggregate bound.
    ///
    /// A proxy must pass on any reply its backend produces, and Redis can produce replies the client
    /// defaults refuse: a Lua script returning a table that contains itself makes Redis nest arrays
    /// thousands of levels deep (ending in `-ERR reached lua stack limit`), and a server configured with a
    /// larger `proto-max-bulk-len` can hold bigger values. The framers ([`ReplyDecoder`](crate::ReplyDecoder),
    /// [`split_replies`](crate::split_replies)) walk with a heap-allocated stack, not recursion, so depth
    /// costs one `usize` per level and never the call stack. The recursive tree parser
    /// ([`parse_frame`](crate::parse_frame)) should keep a finite depth.
    ///
    /// ```
    /// use resp_codec::Limits;
    ///
    /// assert_eq!(Limits::for_backend_replies().max_depth, usize::MAX);
    /// ```
    pub fn for_backend_replies() -> Self {
        Limits {
            max_bulk_len: usize::MAX,
            max_array_len: usize::MAX,
            max_depth: usize::MAX,
            ..Limits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::{Bytes, BytesMut};
    use tokio_util::codec::Decoder;

    use super::Limits;
    use crate::{split_replies, ProtocolError, ReplyDecoder, RequestDecoder};

    /// `depth` arrays of one element each around an integer.
    fn nested_reply(depth: usize) -> Vec<u8> {
        let mut reply = b"*1\r\n".repeat(depth);
        reply.extend_from_slice(b":1\r\n");
        reply
    }

    #[test]
    fn backend_replies_nested_100_000_deep_are_framed() {
        let reply = nested_reply(100_000);
        let mut buffer = BytesMut::from(&reply[..]);
        buffer.extend_from_slice(b"+OK\r\n");
        let mut decoder = ReplyDecoder::new(Limits::for_backend_replies());
        assert_eq!(decoder.decode(&mut buffer).unwrap().unwrap(), reply);
        assert_eq!(
            &decoder.decode(&mut buffer).unwrap().unwrap()[..],
            b"+OK\r\n"
        );
    }

    #[test]
    fn backend_replies_nested_a_million_deep_arriving_in_pieces_are_framed() {
        // The framer keeps its stack on the heap: a million levels must not touch the call stack.
        let reply = nested_reply(1_000_000);
        let mut decoder = ReplyDecoder::new(Limits::for_backend_replies());
        let mut buffer = BytesMut::new();
        let mut framed = None;
        for piece in reply.chunks(4093) {
            assert!(framed.is_none(), "framed before the last byte");
            buffer.extend_from_slice(piece);
            framed = decoder.decode(&mut buffer).unwrap();
        }
        assert_eq!(framed.unwrap(), reply);
        let batch = Bytes::from([&reply[..], b":2\r\n"].concat());
        let split = split_replies(&batch, &Limits::for_backend_replies()).unwrap();
        assert_eq!(split.len(), 2);
        assert_eq!(split[0], reply);
    }

    #[test]
    fn client_limits_still_refuse_129_levels() {
        let mut buffer = BytesMut::from(&nested_reply(129)[..]);
        assert!(matches!(
            ReplyDecoder::new(Limits::default()).decode(&mut buffer),
            Err(ProtocolError::TooDeep { limit: 128 })
        ));
        // A request cannot nest at all: an array inside a request is refused like redis-server does.
        let mut request = BytesMut::from(&nested_reply(129)[..]);
        assert!(RequestDecoder::new(Limits::default())
            .decode(&mut request)
            .is_err());
    }
}
