//! Every limit, on every decoder, with its error.

use bytes::BytesMut;
use resp_codec::{parse_frame, FrameCodec, Limits, ProtocolError, ReplyDecoder, RequestDecoder};
use tokio_util::codec::Decoder;

fn small_limits() -> Limits {
    Limits {
        max_bulk_len: 10,
        max_array_len: 3,
        max_depth: 2,
        max_inline_len: 32,
    }
}

/// Runs all three reply-capable decoders on `input`, returning their errors.
fn reply_errors(input: &[u8]) -> Vec<ProtocolError> {
    let limits = small_limits();
    let mut errors = Vec::new();
    let mut buffer = BytesMut::from(input);
    errors.push(
        ReplyDecoder::new(limits)
            .decode(&mut buffer)
            .expect_err("the fast framer should reject"),
    );
    let mut buffer = BytesMut::from(input);
    errors.push(
        FrameCodec::new(limits)
            .decode(&mut buffer)
            .expect_err("the combine codec should reject"),
    );
    errors.push(parse_frame(input, &limits).expect_err("parse_frame should reject"));
    errors
}

#[test]
fn bulk_length_is_rejected_as_soon_as_the_header_arrives() {
    // No data follows the header: the error must not wait for it.
    for error in reply_errors(b"$11\r\n") {
        assert!(
            matches!(
                error,
                ProtocolError::BulkTooLong {
                    length: 11,
                    limit: 10
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "Protocol error: invalid bulk length");
    }
    let mut buffer = BytesMut::from(&b"*1\r\n$11\r\n"[..]);
    let error = RequestDecoder::new(small_limits())
        .decode(&mut buffer)
        .unwrap_err();
    assert!(matches!(error, ProtocolError::BulkTooLong { .. }));
    // Exactly at the limit is fine.
    let mut buffer = BytesMut::from(&b"$10\r\n0123456789\r\n"[..]);
    assert!(ReplyDecoder::new(small_limits())
        .decode(&mut buffer)
        .unwrap()
        .is_some());
}

#[test]
fn default_bulk_limit_is_redis_proto_max_bulk_len() {
    let mut buffer = BytesMut::from(&b"*1\r\n$536870912\r\n"[..]);
    assert!(RequestDecoder::default()
        .decode(&mut buffer)
        .unwrap()
        .is_none());
    let mut buffer = BytesMut::from(&b"*1\r\n$536870913\r\n"[..]);
    assert!(RequestDecoder::default().decode(&mut buffer).is_err());
}

#[test]
fn array_length_limit() {
    for input in [&b"*4\r\n"[..], b"%4\r\n", b"~4\r\n", b">4\r\n", b"|4\r\n"] {
        for error in reply_errors(input) {
            assert!(
                matches!(
                    error,
                    ProtocolError::ArrayTooLong {
                        length: 4,
                        limit: 3
                    }
                ),
                "{error:?}"
            );
        }
    }
    let mut buffer = BytesMut::from(&b"*4\r\n"[..]);
    let error = RequestDecoder::new(small_limits())
        .decode(&mut buffer)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Protocol error: invalid multibulk length"
    );
}

#[test]
fn nesting_depth_limit() {
    // Depth 2 is allowed, depth 3 is not.
    let mut buffer = BytesMut::from(&b"*1\r\n*1\r\n:1\r\n"[..]);
    assert!(ReplyDecoder::new(small_limits())
        .decode(&mut buffer)
        .unwrap()
        .is_some());
    assert!(parse_frame(b"*1\r\n*1\r\n:1\r\n", &small_limits())
        .unwrap()
        .is_some());
    for error in reply_errors(b"*1\r\n*1\r\n*1\r\n:1\r\n") {
        assert!(
            matches!(error, ProtocolError::TooDeep { limit: 2 }),
            "{error:?}"
        );
    }
    for error in reply_errors(b"*1\r\n%1\r\n~1\r\n") {
        assert!(
            matches!(error, ProtocolError::TooDeep { limit: 2 }),
            "{error:?}"
        );
    }
}

#[test]
fn default_depth_limit_is_128() {
    let nested = |depth: usize| {
        let mut input = b"*1\r\n".repeat(depth);
        input.extend_from_slice(b":1\r\n");
        input
    };
    let mut buffer = BytesMut::from(&nested(128)[..]);
    assert!(ReplyDecoder::default()
        .decode(&mut buffer)
        .unwrap()
        .is_some());
    let mut buffer = BytesMut::from(&nested(129)[..]);
    assert!(matches!(
        ReplyDecoder::default().decode(&mut buffer),
        Err(ProtocolError::TooDeep { limit: 128 })
    ));
    assert!(parse_frame(&nested(128), &Limits::default())
        .unwrap()
        .is_some());
    assert!(parse_frame(&nested(129), &Limits::default()).is_err());
}

#[test]
fn reply_line_limit() {
    // Text lines are held to max_bulk_len.
    for error in reply_errors(b"+0123456789ab") {
        assert!(matches!(error, ProtocolError::LineTooLong), "{error:?}");
    }
    let mut buffer = BytesMut::from(&b"+0123456789\r\n"[..]);
    assert!(ReplyDecoder::new(small_limits())
        .decode(&mut buffer)
        .unwrap()
        .is_some());
    // Numeric lines are short by nature and rejected without waiting for a line ending.
    for error in reply_errors(&[b':'; 40]) {
        assert!(matches!(error, ProtocolError::InvalidInteger), "{error:?}");
    }
}

/// A partly received bulk string costs room in proportion to what arrived, never to the length it announced:
/// a `$536870912` header followed by 1 KiB must not make either decoder reserve a megabyte or more.
#[test]
fn an_announced_huge_bulk_reserves_only_what_arrived() {
    let arrived = vec![b'x'; 1024];
    let mut request = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n"[..]);
    request.extend_from_slice(&arrived);
    assert!(RequestDecoder::new(Limits::default())
        .decode(&mut request)
        .expect("a valid prefix")
        .is_none());
    assert!(
        request.capacity() < 64 * 1024,
        "the request buffer reserved {} bytes for 1 KiB",
        request.capacity()
    );
    let mut reply = BytesMut::from(&b"$536870912\r\n"[..]);
    reply.extend_from_slice(&arrived);
    let mut decoder = ReplyDecoder::new(Limits::for_backend_replies());
    assert!(decoder
        .decode(&mut reply)
        .expect("a valid prefix")
        .is_none());
    assert!(
        reply.capacity() < 64 * 1024,
        "the reply buffer reserved {} bytes for 1 KiB",
        reply.capacity()
    );
}
