//! Writing RESP by hand: header lines, integers and bulk strings.
//!
//! Every writer of RESP in the workspace ([`encode_command`](crate::encode_command),
//! [`Frame::encode`](crate::Frame::encode), the proxy's split sub-commands and merged replies)
//! goes through these three functions, so the wire format's lines are written in one place.
//! Numbers are written by `itoa`: no `fmt` machinery and no allocation besides `dst`'s growth,
//! which matters on the proxy's per-command path.

use bytes::{BufMut, BytesMut};

/// Writes a header line, `<prefix><number>\r\n`.
///
/// The prefix says what follows: `*` an array of `number` elements, `$` a bulk string of
/// `number` bytes, `%` a map of `number` entries, `~` a set, `>` a push. The caller writes the
/// elements or bytes after it.
///
/// ```
/// use bytes::BytesMut;
/// use resp_codec::{put_bulk, put_header};
///
/// let mut buffer = BytesMut::new();
/// put_header(&mut buffer, b'*', 2);
/// put_bulk(&mut buffer, b"GET");
/// put_bulk(&mut buffer, b"key");
/// assert_eq!(&buffer[..], b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n");
/// ```
pub fn put_header(dst: &mut BytesMut, prefix: u8, number: usize) {
    let mut digits = itoa::Buffer::new();
    put_line(dst, prefix, digits.format(number).as_bytes());
}

/// Writes an integer line, `<prefix><value>\r\n`, with a `-` for negative values: `:42\r\n`
/// is the integer reply 42.
///
/// ```
/// use bytes::BytesMut;
/// use resp_codec::put_integer;
///
/// let mut buffer = BytesMut::new();
/// put_integer(&mut buffer, b':', -7);
/// assert_eq!(&buffer[..], b":-7\r\n");
/// ```
pub fn put_integer(dst: &mut BytesMut, prefix: u8, value: i64) {
    let mut digits = itoa::Buffer::new();
    put_line(dst, prefix, digits.format(value).as_bytes());
}

/// Writes one bulk string, `$<length>\r\n<value>\r\n`. The value is binary safe.
///
/// ```
/// use bytes::BytesMut;
/// use resp_codec::put_bulk;
///
/// let mut buffer = BytesMut::new();
/// put_bulk(&mut buffer, b"a\r\nb");
/// assert_eq!(&buffer[..], b"$4\r\na\r\nb\r\n");
/// ```
pub fn put_bulk(dst: &mut BytesMut, value: &[u8]) {
    // One reservation for the header (at most 20 digits) and the value.
    dst.reserve(value.len() + 25);
    put_header(dst, b'$', value.len());
    dst.put_slice(value);
    dst.put_slice(b"\r\n");
}

/// Writes `<prefix><text>\r\n` (simple strings, errors, doubles: lines without a length).
pub(crate) fn put_line(dst: &mut BytesMut, prefix: u8, text: &[u8]) {
    dst.reserve(text.len() + 3);
    dst.put_u8(prefix);
    dst.put_slice(text);
    dst.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use proptest::prelude::*;
    use tokio_util::codec::Decoder;

    use super::*;
    use crate::{parse_frame, Frame, Limits, ReplyDecoder};

    fn written(write: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut buffer = BytesMut::new();
        write(&mut buffer);
        buffer.to_vec()
    }

    #[test]
    fn headers_carry_the_number_in_decimal_without_leading_zeros() {
        assert_eq!(written(|b| put_header(b, b'*', 0)), b"*0\r\n");
        assert_eq!(written(|b| put_header(b, b'$', 10)), b"$10\r\n");
        assert_eq!(written(|b| put_header(b, b'%', 1234567)), b"%1234567\r\n");
        assert_eq!(
            written(|b| put_header(b, b'*', usize::MAX)),
            format!("*{}\r\n", usize::MAX).into_bytes()
        );
    }

    #[test]
    fn integers_keep_their_sign_at_both_ends_of_the_range() {
        assert_eq!(written(|b| put_integer(b, b':', 0)), b":0\r\n");
        assert_eq!(
            written(|b| put_integer(b, b':', i64::MIN)),
            b":-9223372036854775808\r\n"
        );
        assert_eq!(
            written(|b| put_integer(b, b':', i64::MAX)),
            b":9223372036854775807\r\n"
        );
    }

    #[test]
    fn writes_append_to_what_the_buffer_holds() {
        let mut buffer = BytesMut::from(&b"+OK\r\n"[..]);
        put_bulk(&mut buffer, b"");
        assert_eq!(&buffer[..], b"+OK\r\n$0\r\n\r\n");
    }

    proptest! {
        #[test]
        fn a_written_bulk_is_one_frame_holding_the_value(value in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buffer = BytesMut::new();
            put_bulk(&mut buffer, &value);
            let framed = ReplyDecoder::default().decode(&mut buffer).unwrap().unwrap();
            prop_assert!(buffer.is_empty());
            let (frame, used) = parse_frame(&framed, &Limits::default()).unwrap().unwrap();
            prop_assert_eq!(used, framed.len());
            prop_assert_eq!(frame, Frame::Bulk(value.into()));
        }

        #[test]
        fn a_written_integer_reads_back_as_the_same_integer(value in any::<i64>()) {
            let mut buffer = BytesMut::new();
            put_integer(&mut buffer, b':', value);
            let (frame, _) = parse_frame(&buffer, &Limits::default()).unwrap().unwrap();
            prop_assert_eq!(frame, Frame::Integer(value));
        }

        #[test]
        fn a_written_header_matches_fmt(number in any::<usize>()) {
            let mut buffer = BytesMut::new();
            put_header(&mut buffer, b'*', number);
            prop_assert_eq!(buffer.to_vec(), format!("*{number}\r\n").into_bytes());
        }
    }
}
