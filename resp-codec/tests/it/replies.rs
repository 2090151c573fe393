//! ReplyDecoder: every RESP2/RESP3 type framed zero-copy, attributes kept with their value.

use bytes::BytesMut;
use resp_codec::{parse_frame, Limits, ProtocolError, ReplyDecoder};
use tokio_util::codec::Decoder;

use crate::support::{decode_all, decode_in_chunks};

/// One example of every reply type, as (bytes, description).
pub const EVERY_TYPE: &[&[u8]] = &[
    b"+OK\r\n",
    b"-ERR unknown command 'x'\r\n",
    b":-42\r\n",
    b"$5\r\nhello\r\n",
    b"$0\r\n\r\n",
    b"$-1\r\n",
    b"*2\r\n$3\r\nfoo\r\n:1\r\n",
    b"*0\r\n",
    b"*-1\r\n",
    b"_\r\n",
    b",3.14\r\n",
    b",-inf\r\n",
    b"#t\r\n",
    b"#f\r\n",
    b"(3492890328409238509324850943850943825024385\r\n",
    b"=15\r\ntxt:Some string\r\n",
    b"!21\r\nSYNTAX invalid syntax\r\n",
    b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
    b"~3\r\n+a\r\n+b\r\n+c\r\n",
    b">3\r\n+message\r\n+channel\r\n$5\r\nhello\r\n",
    b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n",
    b"*3\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n$3\r\nkey\r\n:2\r\n",
];

#[test]
fn frames_every_type_as_one_item() {
    let pipelined: Vec<u8> = EVERY_TYPE.concat();
    for chunk in [1, 2, 3, 7, 64, pipelined.len()] {
        let replies = decode_in_chunks(&mut ReplyDecoder::default(), &pipelined, &[chunk]).unwrap();
        let replies: Vec<&[u8]> = replies.iter().map(|reply| &reply[..]).collect();
        assert_eq!(replies, EVERY_TYPE, "chunk size {chunk}");
    }
}

#[test]
fn agrees_with_combine_on_every_type() {
    for reply in EVERY_TYPE {
        let (_, used) = parse_frame(reply, &Limits::default()).unwrap().unwrap();
        assert_eq!(used, reply.len(), "{:?}", String::from_utf8_lossy(reply));
    }
}

#[test]
fn attribute_at_top_level_is_returned_with_its_value() {
    let mut buffer = BytesMut::from(&b"|1\r\n+a\r\n+b\r\n+value\r\n+next\r\n"[..]);
    let mut decoder = ReplyDecoder::default();
    let first = decoder.decode(&mut buffer).unwrap().unwrap();
    assert_eq!(&first[..], b"|1\r\n+a\r\n+b\r\n+value\r\n");
    let second = decoder.decode(&mut buffer).unwrap().unwrap();
    assert_eq!(&second[..], b"+next\r\n");
}

#[test]
fn rejects_malformed_replies() {
    let cases: Vec<(&[u8], &str)> = vec![
        (b"?\r\n", "Protocol error: invalid type byte '?'"),
        (b":12a\r\n", "Protocol error: invalid integer"),
        (b"$-2\r\n", "Protocol error: invalid bulk length"),
        (
            b"$3\r\nabcd\r\n",
            "Protocol error: expected CRLF after bulk data",
        ),
        (b"*-2\r\n", "Protocol error: invalid multibulk length"),
        (b"%-1\r\n", "Protocol error: invalid multibulk length"),
        (b"#x\r\n", "Protocol error: invalid boolean"),
        (b"_x\r\n", "Protocol error: invalid null"),
        (b",abc\r\n", "Protocol error: invalid double"),
        (b"(12x\r\n", "Protocol error: invalid big number"),
        (b"=3\r\ntxt\r\n", "Protocol error: invalid verbatim string"),
        (
            b"=5\r\ntxtxy\r\n",
            "Protocol error: invalid verbatim string",
        ),
        (
            b":1111111111111111111111111111111111111",
            "Protocol error: invalid integer",
        ),
    ];
    for (input, expected) in cases {
        let fast = decode_all(&mut ReplyDecoder::default(), input).unwrap_err();
        assert_eq!(fast.to_string(), expected, "fast framer on {input:?}");
        let combine = parse_frame(input, &Limits::default()).unwrap_err();
        assert_eq!(combine.to_string(), expected, "combine on {input:?}");
    }
}

#[test]
fn lone_cr_and_lf_inside_a_simple_string_are_content() {
    let input = b"+a\rb\nc\r\n";
    let replies = decode_all(&mut ReplyDecoder::default(), input).unwrap();
    assert_eq!(&replies[0][..], input);
    assert!(parse_frame(input, &Limits::default()).unwrap().is_some());
}

#[test]
fn a_million_small_elements_in_small_reads_are_walked_once() {
    let count = 1_000_000;
    let mut input = format!("*{count}\r\n").into_bytes();
    for _ in 0..count {
        input.extend_from_slice(b":1\r\n");
    }
    let started = std::time::Instant::now();
    let replies = decode_in_chunks(&mut ReplyDecoder::default(), &input, &[1000]).unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].len(), input.len());
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn long_simple_string_in_small_reads_is_scanned_once() {
    let mut input = b"+".to_vec();
    input.extend(std::iter::repeat_n(b'a', 8 * 1024 * 1024));
    input.extend_from_slice(b"\r\n");
    let started = std::time::Instant::now();
    let replies = decode_in_chunks(&mut ReplyDecoder::default(), &input, &[4096]).unwrap();
    assert_eq!(replies[0].len(), input.len());
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn io_errors_convert() {
    let error: ProtocolError = std::io::Error::other("boom").into();
    assert!(matches!(error, ProtocolError::Io(_)));
    assert_eq!(&error.to_reply()[..], b"-ERR boom\r\n");
}

#[test]
fn reply_len_measures_every_type_and_waits_for_the_end_of_each() {
    for reply in EVERY_TYPE {
        let mut followed = reply.to_vec();
        followed.extend_from_slice(b"+next\r\n");
        let length = resp_codec::reply_len(&followed, &Limits::default()).unwrap();
        assert_eq!(
            length,
            Some(reply.len()),
            "{}",
            String::from_utf8_lossy(reply)
        );
        for cut in 0..reply.len() {
            let partial = resp_codec::reply_len(&reply[..cut], &Limits::default()).unwrap();
            assert_eq!(
                partial,
                None,
                "cut at {cut}: {}",
                String::from_utf8_lossy(reply)
            );
        }
    }
}
