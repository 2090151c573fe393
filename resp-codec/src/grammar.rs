//! Pieces of the RESP grammar shared by the hand-written framers and the combine parser,
//! so that both accept and reject exactly the same inputs.

use memchr::memchr_iter;

use crate::{Limits, ProtocolError};

/// The longest content accepted on a numeric line (`:`, `#`, `_` and every length header).
/// An `i64` needs at most 20 characters, so anything longer is garbage and is rejected
/// without buffering it.
pub(crate) const MAX_NUMBER_LINE: usize = 32;

/// The largest `reserve` hint given for a partly received bulk string. `BytesMut` grows by
/// doubling, so a bounded hint keeps growth amortised without letting a bare `$N` header
/// make us allocate `N` bytes up front.
pub(crate) const MAX_RESERVE_HINT: usize = 1 << 20;

/// The hint [`reserve_hint`] may always give, however little has arrived.
pub(crate) const MIN_RESERVE_HINT: usize = 16 * 1024;

/// How much room to make for the rest of a partly received bulk string: no more than is missing,
/// than [`MAX_RESERVE_HINT`], or than what has `arrived` (at least [`MIN_RESERVE_HINT`]). The
/// buffer then doubles with what the peer actually sent, so a connection that announced a huge
/// bulk and sent a few bytes costs memory in proportion to those bytes, never to the length it
/// announced (a proxy holding many such connections would otherwise hold a megabyte for each).
pub(crate) fn reserve_hint(missing: usize, arrived: usize) -> usize {
    missing
        .min(MAX_RESERVE_HINT)
        .min(arrived.max(MIN_RESERVE_HINT))
}

/// What follows a type byte, and how it is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeKind {
    /// A line of text: `+` simple string, `-` error.
    Text,
    /// `,` double as text.
    Double,
    /// `(` big number as text.
    BigNumber,
    /// `:` integer.
    Integer,
    /// `#` boolean.
    Boolean,
    /// `_` null.
    Null,
    /// `$` bulk string (`$-1` is a null bulk).
    Bulk,
    /// `!` bulk error.
    BulkError,
    /// `=` verbatim string.
    Verbatim,
    /// `*` array (`*-1` is a null array).
    Array,
    /// `%` map: the count is of entries, each a key and a value.
    Map,
    /// `~` set.
    Set,
    /// `>` push.
    Push,
    /// `|` attribute: entries, then the value they annotate.
    Attribute,
}

impl TypeKind {
    /// Classifies a type byte; `None` means the byte starts no RESP2/RESP3 frame.
    pub(crate) fn from_byte(byte: u8) -> Option<TypeKind> {
        Some(match byte {
            b'+' | b'-' => TypeKind::Text,
            b',' => TypeKind::Double,
            b'(' => TypeKind::BigNumber,
            b':' => TypeKind::Integer,
            b'#' => TypeKind::Boolean,
            b'_' => TypeKind::Null,
            b'$' => TypeKind::Bulk,
            b'!' => TypeKind::BulkError,
            b'=' => TypeKind::Verbatim,
            b'*' => TypeKind::Array,
            b'%' => TypeKind::Map,
            b'~' => TypeKind::Set,
            b'>' => TypeKind::Push,
            b'|' => TypeKind::Attribute,
            _ => return None,
        })
    }

    pub(crate) fn is_aggregate(self) -> bool {
        matches!(
            self,
            TypeKind::Array | TypeKind::Map | TypeKind::Set | TypeKind::Push | TypeKind::Attribute
        )
    }

    /// The longest line content accepted after this type byte.
    pub(crate) fn line_cap(self, limits: &Limits) -> usize {
        match self {
            TypeKind::Text | TypeKind::Double | TypeKind::BigNumber => limits.max_bulk_len,
            _ => MAX_NUMBER_LINE,
        }
    }

    /// The error reported when this type's line is malformed or over its cap.
    pub(crate) fn line_error(self) -> ProtocolError {
        match self {
            TypeKind::Text | TypeKind::Double | TypeKind::BigNumber => ProtocolError::LineTooLong,
            TypeKind::Integer => ProtocolError::InvalidInteger,
            TypeKind::Boolean => ProtocolError::InvalidBoolean,
            TypeKind::Null => ProtocolError::InvalidNull,
            TypeKind::Bulk | TypeKind::BulkError | TypeKind::Verbatim => {
                ProtocolError::InvalidBulkLength
            }
            TypeKind::Array
            | TypeKind::Map
            | TypeKind::Set
            | TypeKind::Push
            | TypeKind::Attribute => ProtocolError::InvalidMultibulkLength,
        }
    }
}

/// What a header line announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// A complete scalar (the line was all of it).
    Scalar,
    /// A null bulk or null array.
    Null,
    /// `len` bytes of bulk data follow, then CRLF.
    Bulk { len: usize },
    /// `children` frames follow (0 for an empty aggregate).
    Aggregate { children: usize },
}

/// Validates the content of a line after a type byte and says what follows it.
///
/// `content` excludes the type byte and the CRLF, and is at most `kind.line_cap()` long.
pub(crate) fn interpret_line(
    kind: TypeKind,
    content: &[u8],
    limits: &Limits,
) -> Result<Header, ProtocolError> {
    match kind {
        TypeKind::Text => Ok(Header::Scalar),
        TypeKind::Double => {
            parse_double(content).ok_or(ProtocolError::InvalidDouble)?;
            Ok(Header::Scalar)
        }
        TypeKind::BigNumber => {
            if is_big_number(content) {
                Ok(Header::Scalar)
            } else {
                Err(ProtocolError::InvalidBigNumber)
            }
        }
        TypeKind::Integer => {
            parse_strict_i64(content).ok_or(ProtocolError::InvalidInteger)?;
            Ok(Header::Scalar)
        }
        TypeKind::Boolean => {
            parse_boolean(content).ok_or(ProtocolError::InvalidBoolean)?;
            Ok(Header::Scalar)
        }
        TypeKind::Null => {
            if content.is_empty() {
                Ok(Header::Scalar)
            } else {
                Err(ProtocolError::InvalidNull)
            }
        }
        TypeKind::Bulk | TypeKind::BulkError | TypeKind::Verbatim => {
            let len = parse_strict_i64(content).ok_or(ProtocolError::InvalidBulkLength)?;
            if len == -1 && kind == TypeKind::Bulk {
                return Ok(Header::Null);
            }
            let len = check_bulk_len(len, limits)?;
            if kind == TypeKind::Verbatim && len < 4 {
                return Err(ProtocolError::InvalidVerbatim);
            }
            Ok(Header::Bulk { len })
        }
        TypeKind::Array | TypeKind::Map | TypeKind::Set | TypeKind::Push | TypeKind::Attribute => {
            let count = parse_strict_i64(content).ok_or(ProtocolError::InvalidMultibulkLength)?;
            if count == -1 && kind == TypeKind::Array {
                return Ok(Header::Null);
            }
            let count = check_array_len(count, limits)?;
            let children = match kind {
                TypeKind::Map => count * 2,
                TypeKind::Attribute => count * 2 + 1,
                _ => count,
            };
            Ok(Header::Aggregate { children })
        }
    }
}

/// The usual `*N` or `$N` header (of a request or a reply), read in one pass: 1 to 9 ASCII digits, the first not
/// `0`, then `\r\n`, all in `src` from `start`. Gives the number and the index of the `\r`. `None` for anything
/// else (a `0`, a sign, a longer number, a line not complete yet, a bad ending): the general path reads those,
/// with Redis's errors. Nine digits stay below `i32::MAX`, the largest count the general path accepts.
#[inline(always)]
pub(crate) fn plain_header(src: &[u8], start: usize) -> Option<(i64, usize)> {
    let digits = src.get(start..)?;
    let first = *digits.first()?;
    if !(b'1'..=b'9').contains(&first) {
        return None;
    }
    let mut value = i64::from(first - b'0');
    let mut offset = 1;
    loop {
        match *digits.get(offset)? {
            byte @ b'0'..=b'9' if offset < 9 => value = value * 10 + i64::from(byte - b'0'),
            b'\r' if digits.get(offset + 1) == Some(&b'\n') => {
                return Some((value, start + offset))
            }
            _ => return None,
        }
        offset += 1;
    }
}

/// Checks a declared bulk length against the limits.
pub(crate) fn check_bulk_len(len: i64, limits: &Limits) -> Result<usize, ProtocolError> {
    let len = u64::try_from(len).map_err(|_| ProtocolError::InvalidBulkLength)?;
    match usize::try_from(len) {
        Ok(fits) if fits <= limits.max_bulk_len => Ok(fits),
        _ => Err(ProtocolError::BulkTooLong {
            length: len,
            limit: limits.max_bulk_len,
        }),
    }
}

/// Checks a declared aggregate count against the limits.
pub(crate) fn check_array_len(count: i64, limits: &Limits) -> Result<usize, ProtocolError> {
    let count = u64::try_from(count).map_err(|_| ProtocolError::InvalidMultibulkLength)?;
    match usize::try_from(count) {
        // The cap on `usize::MAX / 4` keeps `count * 2 + 1` from overflowing whatever the limit.
        Ok(fits) if fits <= limits.max_array_len && fits <= usize::MAX / 4 => Ok(fits),
        _ => Err(ProtocolError::ArrayTooLong {
            length: count,
            limit: limits.max_array_len,
        }),
    }
}

/// Parses an integer exactly like Redis's `string2ll`: an optional `-`, no `+`, no leading
/// zeros, no spaces, and it must fit an `i64`.
pub(crate) fn parse_strict_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        None => return None,
        Some((b'0', [])) => return Some(0),
        Some((b'-', rest)) => (true, rest),
        Some(_) => (false, text),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut magnitude: u64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    if negative {
        // i64::MIN has a magnitude one above i64::MAX.
        if magnitude == i64::MIN.unsigned_abs() {
            Some(i64::MIN)
        } else {
            i64::try_from(magnitude).ok().map(|value| -value)
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Parses a RESP3 double (`1.5`, `-inf`, `nan`, `1e10` ...).
pub(crate) fn parse_double(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text).ok()?.parse::<f64>().ok()
}

/// A RESP3 big number: an optional sign and at least one digit.
pub(crate) fn is_big_number(text: &[u8]) -> bool {
    let digits = match text.first() {
        Some(b'-') | Some(b'+') => &text[1..],
        _ => text,
    };
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// A RESP3 boolean: `t` or `f`.
pub(crate) fn parse_boolean(text: &[u8]) -> Option<bool> {
    match text {
        b"t" => Some(true),
        b"f" => Some(false),
        _ => None,
    }
}

/// Result of looking for the CRLF that ends a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineSearch {
    /// The line content ends at this absolute index (where `\r\n` starts).
    Found(usize),
    /// No CRLF yet; resume searching from this absolute index.
    NotYet(usize),
    /// No CRLF within the cap.
    TooLong,
}

/// Finds the first `\r\n` at or after `content_start`, resuming at `resume_from` (an index
/// returned earlier by [`LineSearch::NotYet`], or anything `<= content_start`).
///
/// The line is too long when its content would exceed `cap` bytes: either the CRLF is found
/// past the cap, or more than `cap + 1` bytes arrived without one.
pub(crate) fn find_line_end(
    buf: &[u8],
    content_start: usize,
    resume_from: usize,
    cap: usize,
) -> LineSearch {
    let search_from = resume_from.max(content_start);
    if search_from < buf.len() {
        for newline in memchr_iter(b'\n', &buf[search_from..]) {
            let newline = search_from + newline;
            if newline > content_start && buf[newline - 1] == b'\r' {
                let end = newline - 1;
                return if end - content_start > cap {
                    LineSearch::TooLong
                } else {
                    LineSearch::Found(end)
                };
            }
        }
    }
    if buf.len().saturating_sub(content_start) > cap.saturating_add(1) {
        LineSearch::TooLong
    } else {
        LineSearch::NotYet(buf.len().max(search_from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_integers_follow_string2ll() {
        assert_eq!(parse_strict_i64(b"0"), Some(0));
        assert_eq!(parse_strict_i64(b"12"), Some(12));
        assert_eq!(parse_strict_i64(b"-1"), Some(-1));
        assert_eq!(parse_strict_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_strict_i64(b"9223372036854775807"), Some(i64::MAX));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"1a",
        ] {
            assert_eq!(parse_strict_i64(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn line_search_resumes_and_caps() {
        assert_eq!(find_line_end(b"+OK\r\n", 1, 0, 10), LineSearch::Found(3));
        assert_eq!(find_line_end(b"+OK\r", 1, 0, 10), LineSearch::NotYet(4));
        assert_eq!(find_line_end(b"+OK\r\n", 1, 4, 10), LineSearch::Found(3));
        assert_eq!(find_line_end(b"+a\nb\r\n", 1, 0, 10), LineSearch::Found(4));
        assert_eq!(find_line_end(b"+abc\r\n", 1, 0, 2), LineSearch::TooLong);
        assert_eq!(find_line_end(b"+abc", 1, 0, 2), LineSearch::NotYet(4));
        assert_eq!(find_line_end(b"+abcd", 1, 0, 2), LineSearch::TooLong);
        assert_eq!(find_line_end(b"+ab\r\n", 1, 0, 2), LineSearch::Found(3));
    }
}
