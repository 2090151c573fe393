//! Measuring a cluster node's replies in place, for the split and pipeline paths that only need
//! to know where each reply (or each element of an array reply) ends.
//!
//! The proxy reads a node's replies to a share of a split twice (once to see whether any is a
//! redirect, once to merge them), so measuring them is on the per-command path. The replies
//! those paths meet almost always are bulk strings, integers, nulls and flat arrays of them
//! (MGET, DEL, EXISTS, ...); [`reply_len`] measures these by their header lines alone and hands
//! everything else to `resp_codec::reply_len`, the general framer, which stays the authority:
//! the fast path answers only where the framer gives the same length, and leaves every doubtful
//! case (leading zeros, a missing CRLF, incomplete bytes, other types) to it.

use resp_codec::Limits;

/// Longest decimal number the fast path reads; longer ones go to the general framer (no
/// overflow checks needed below 10^18).
const MAX_DIGITS: usize = 18;

/// The length of the complete reply at the start of `src`, exactly as `resp_codec::reply_len`
/// measures it with [`Limits::for_backend_replies`]; `None` when the reply is incomplete or
/// malformed. `*2\r\n$1\r\na\r\n$-1\r\n` is measured here (16 bytes), `*1\r\n+OK\r\n` by the framer.
pub(crate) fn reply_len(src: &[u8]) -> Option<usize> {
    let quick = match src.first() {
        Some(b'*') => flat_array_len(src),
        _ => scalar_len(src),
    };
    match quick {
        Some(len) => Some(len),
        None => framer_len(src),
    }
}

/// `resp_codec::reply_len` with the backend limits, out of the fast path's way.
#[cold]
#[inline(never)]
fn framer_len(src: &[u8]) -> Option<usize> {
    resp_codec::reply_len(src, &Limits::for_backend_replies())
        .ok()
        .flatten()
}

/// An array whose elements are all measured by [`scalar_len`].
fn flat_array_len(src: &[u8]) -> Option<usize> {
    let (count, mut at) = count_line(src)?;
    for _ in 0..count {
        at += scalar_len(src.get(at..)?)?;
    }
    Some(at)
}

/// A bulk string, a RESP2 or RESP3 null, or an integer at the start of `src`.
fn scalar_len(src: &[u8]) -> Option<usize> {
    match src.first()? {
        b'$' if src.starts_with(b"$-1\r\n") => Some(5),
        b'$' => {
            let (len, data) = count_line(src)?;
            let end = data + len;
            (src.get(end..end + 2)? == b"\r\n").then_some(end + 2)
        }
        b'_' => src.starts_with(b"_\r\n").then_some(3),
        b':' => {
            let sign = usize::from(src.get(1) == Some(&b'-'));
            let (value, after) = count_line(src.get(sign..)?)?;
            // `:-0` is not a strict integer.
            (sign == 0 || value != 0).then_some(sign + after)
        }
        _ => None,
    }
}

/// A header line `<type byte><digits>\r\n` at the start of `src` whose digits are a strict
/// non-negative number (no sign, no leading zero) of at most [`MAX_DIGITS`] digits: the
/// number and where the line ends.
fn count_line(src: &[u8]) -> Option<(usize, usize)> {
    let digits = src.get(1..)?;
    let mut value: usize = 0;
    let mut line_len = 0;
    // One pass: digits up to the CR, at most MAX_DIGITS of them.
    loop {
        match *digits.get(line_len)? {
            b'\r' => break,
            digit @ b'0'..=b'9' if line_len < MAX_DIGITS => {
                value = value * 10 + usize::from(digit - b'0');
                line_len += 1;
            }
            _ => return None,
        }
    }
    let leading_zero = line_len > 1 && digits[0] == b'0';
    if line_len == 0 || leading_zero || digits.get(line_len + 1) != Some(&b'\n') {
        return None;
    }
    // The type byte, the digits, CRLF.
    Some((value, line_len + 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way of writing a reply the fast path might meet, and its neighbours that it must
    /// leave to the framer: both measures agree on each, complete or cut short.
    #[test]
    fn the_fast_path_measures_as_the_framer_does() {
        let replies: &[&[u8]] = &[
            b"$1\r\na\r\n",
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"$01\r\na\r\n",
            b"$-0\r\n",
            b"$2\r\na\r\n\r\n",
            b"$1\r\naXY",
            b"$ 1\r\na\r\n",
            b"$1\n\ra\r\n",
            b"_\r\n",
            b"_x\r\n",
            b":0\r\n",
            b":-0\r\n",
            b":-12\r\n",
            b":007\r\n",
            b":9223372036854775807\r\n",
            b":9223372036854775808\r\n",
            b":-9223372036854775808\r\n",
            b"*0\r\n",
            b"*-1\r\n",
            b"*00\r\n",
            b"*2\r\n$1\r\na\r\n$-1\r\n",
            b"*3\r\n:1\r\n_\r\n$3\r\nabc\r\n",
            b"*1\r\n*1\r\n$1\r\na\r\n",
            b"*2\r\n+OK\r\n-ERR x\r\n",
            b"*1\r\n$4\r\nab\r\n\r\n",
            b"-MOVED 1 h:1\r\n",
            b"+OK\r\n",
            b"%1\r\n$1\r\na\r\n:1\r\n",
            b"$99999999999999999999\r\n",
        ];
        let limits = Limits::for_backend_replies();
        for reply in replies {
            for cut in 0..=reply.len() {
                let src = &reply[..cut];
                let framer = resp_codec::reply_len(src, &limits).ok().flatten();
                assert_eq!(reply_len(src), framer, "{:?}", String::from_utf8_lossy(src));
            }
            let mut two = reply.to_vec();
            two.extend_from_slice(reply);
            let framer = resp_codec::reply_len(&two, &limits).ok().flatten();
            assert_eq!(
                reply_len(&two),
                framer,
                "{:?} twice",
                String::from_utf8_lossy(reply)
            );
        }
    }

    #[test]
    fn flat_arrays_of_scalars_are_measured_without_the_framer() {
        assert_eq!(flat_array_len(b"*2\r\n$1\r\na\r\n$-1\r\n:1\r\n"), Some(16));
        assert_eq!(scalar_len(b":-5\r\n"), Some(5));
        assert_eq!(flat_array_len(b"*1\r\n+OK\r\n"), None);
    }
}
