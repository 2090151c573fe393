//! Size limits that keep a hostile or broken peer from making a decoder buffer without bound.

/// Bounds applied by every decoder in this crate.
///
/// | field | default | why |
/// | --- | --- | --- |
/// | `max_bulk_len` | 512 MiB | Redis's `proto-max-bulk-len` default. |
/// | `max_array_len` | 16 Mi elements (`1 << 24`) | Rejects absurd counts at once while a reply to `LRANGE`/`KEYS`/`SMEMBERS` over a multi-million element collection still passes. |
/// | `max_depth` | 128 | Nested aggregates; Redis itself never nests deeply. |
/// | `max_inline_len` | 64 KiB | Redis's `PROTO_INLINE_MAX_SIZE`. |
///
/// Array counts cost little memory by themselves: decoders preallocate at most a few
/// thousand slots and otherwise grow only as elements (at least three bytes each) arrive.
/// Bulk lengths are checked as soon as the `$N` header is read, before any data arrives.
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
