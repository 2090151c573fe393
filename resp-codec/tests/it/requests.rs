//! RequestDecoder and encode_command: multibulk, inline, and redis-server's error texts.
//! The inline expectations were checked against redis-server 7.0.15.

use bytes::{Bytes, BytesMut};
use resp_codec::{encode_command, Limits, ProtocolError, Request, RequestDecoder};
use tokio_util::codec::Decoder;

use crate::support::{decode_all, decode_in_chunks};

fn args_of(request: &Request) -> Vec<Vec<u8>> {
    request.args().map(<[u8]>::to_vec).collect()
}

fn decode_args(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
    let requests = decode_all(&mut RequestDecoder::default(), input)?;
    Ok(requests.iter().map(args_of).collect())
}

fn owned(args: &[&[u8]]) -> Vec<Vec<u8>> {
    args.iter().map(|arg| arg.to_vec()).collect()
}

fn error_text(input: &[u8]) -> String {
    let mut buffer = BytesMut::from(input);
    let mut decoder = RequestDecoder::default();
    loop {
        match decoder.decode(&mut buffer) {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("no error for {input:?}"),
            Err(error) => return error.to_string(),
        }
    }
}

#[test]
fn multibulk_request_is_zero_copy_with_argument_positions() {
    let input = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
    let mut buffer = BytesMut::from(&input[..]);
    let request = RequestDecoder::default()
        .decode(&mut buffer)
        .unwrap()
        .unwrap();
    assert!(buffer.is_empty());
    assert_eq!(&request.raw()[..], input);
    assert_eq!(request.argc(), 3);
    assert_eq!(request.name(), b"SET");
    assert_eq!(request.arg(2), Some(&b"value"[..]));
    assert_eq!(request.arg(3), None);
    let value = request.arg_bytes(2).unwrap();
    assert_eq!(value, Bytes::from_static(b"value"));
    // The argument is a slice of the same allocation as the raw bytes.
    let raw_range = request.raw().as_ptr() as usize..request.raw().as_ptr() as usize + input.len();
    assert!(raw_range.contains(&(value.as_ptr() as usize)));
}

#[test]
fn binary_arguments_and_empty_arguments() {
    let mut buffer = BytesMut::new();
    encode_command(&mut buffer, [&b"SET"[..], b"", b"\r\n\0\xff"]);
    assert_eq!(
        decode_args(&buffer).unwrap(),
        vec![owned(&[b"SET", b"", b"\r\n\0\xff"])]
    );
}

#[test]
fn empty_and_negative_multibulks_are_skipped_like_redis() {
    assert_eq!(
        decode_args(b"*0\r\n*-1\r\n*-5\r\n*1\r\n$4\r\nPING\r\n").unwrap(),
        vec![owned(&[b"PING"])]
    );
}

#[test]
fn inline_commands_split_like_redis_server() {
    type Case = (&'static [u8], Vec<Vec<Vec<u8>>>);
    let cases: Vec<Case> = vec![
        (
            b"SET \"a b\" c\r\nGET \"a b\"\r\n",
            vec![owned(&[b"SET", b"a b", b"c"]), owned(&[b"GET", b"a b"])],
        ),
        (
            b"SET \"a\\x41\\n\" 'it\\'s'\r\n",
            vec![owned(&[b"SET", b"aA\n", b"it's"])],
        ),
        (b"\r\n\r\nPING\r\n", vec![owned(&[b"PING"])]),
        (b"  \t  \nPING\n", vec![owned(&[b"PING"])]),
        (b"ECHO a\x0bb\r\n", vec![owned(&[b"ECHO", b"a\x0bb"])]),
        (b"ECHO x\r\r\n", vec![owned(&[b"ECHO", b"x"])]),
    ];
    for (input, expected) in cases {
        assert_eq!(decode_args(input).unwrap(), expected, "{input:?}");
    }
}

#[test]
fn inline_request_is_reencoded_as_multibulk() {
    let mut buffer = BytesMut::from(&b"set k \"v 1\"\n"[..]);
    let request = RequestDecoder::default()
        .decode(&mut buffer)
        .unwrap()
        .unwrap();
    assert_eq!(
        &request.raw()[..],
        b"*3\r\n$3\r\nset\r\n$1\r\nk\r\n$3\r\nv 1\r\n"
    );
}

#[test]
fn inline_line_with_nul_never_ends_like_redis() {
    // redis-server finds the line end with strchr, which stops at the NUL: it waits, and
    // errors only once the buffer outgrows the inline limit.
    let limits = Limits {
        max_inline_len: 20,
        ..Limits::default()
    };
    let mut decoder = RequestDecoder::new(limits);
    let mut buffer = BytesMut::from(&b"ECHO a\0b c\r\n"[..]);
    assert!(decoder.decode(&mut buffer).unwrap().is_none());
    buffer.extend_from_slice(b"PING\r\n");
    assert!(decoder.decode(&mut buffer).unwrap().is_none());
    buffer.extend_from_slice(b"PING\r\n");
    assert!(matches!(
        decoder.decode(&mut buffer),
        Err(ProtocolError::TooBigInlineRequest)
    ));
}

#[test]
fn redis_error_texts() {
    let cases: Vec<(&[u8], &str)> = vec![
        (
            b"SET \"a b\r\n",
            "Protocol error: unbalanced quotes in request",
        ),
        (
            b"SET \"a\"b c\r\n",
            "Protocol error: unbalanced quotes in request",
        ),
        (
            b"SET 'a\r\n",
            "Protocol error: unbalanced quotes in request",
        ),
        (b"*1\r\nx", "Protocol error: expected '$', got 'x'"),
        (b"*1\r\n\r\n", "Protocol error: expected '$', got ' '"),
        (b"*abc\r\n", "Protocol error: invalid multibulk length"),
        (b"*01\r\n", "Protocol error: invalid multibulk length"),
        (
            b"*2147483648\r\n",
            "Protocol error: invalid multibulk length",
        ),
        (b"*1\r\n$abc\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
        (
            b"*1\r\n$536870913\r\n",
            "Protocol error: invalid bulk length",
        ),
        (
            b"*1\r\n$4\r\nPINGxx",
            "Protocol error: expected CRLF after bulk data",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(error_text(input), expected, "{input:?}");
    }
}

#[test]
fn to_reply_is_the_full_error_line() {
    let error = RequestDecoder::default()
        .decode(&mut BytesMut::from(&b"*1\r\n\r\n"[..]))
        .unwrap_err();
    assert_eq!(
        &error.to_reply()[..],
        b"-ERR Protocol error: expected '$', got ' '\r\n"
    );
    let error = RequestDecoder::default()
        .decode(&mut BytesMut::from(&b"*1\r\n\xe9"[..]))
        .unwrap_err();
    assert_eq!(
        &error.to_reply()[..],
        b"-ERR Protocol error: expected '$', got '\xe9'\r\n"
    );
}

#[test]
fn too_big_header_lines_and_inline_requests() {
    let limits = Limits {
        max_inline_len: 64,
        ..Limits::default()
    };
    let long = vec![b'1'; 65];
    let mut input = b"*".to_vec();
    input.extend_from_slice(&long);
    let result = decode_all(&mut RequestDecoder::new(limits), &input);
    assert!(matches!(result, Err(ProtocolError::TooBigMultibulkCount)));

    let mut input = b"*1\r\n$".to_vec();
    input.extend_from_slice(&long);
    let result = decode_all(&mut RequestDecoder::new(limits), &input);
    assert!(matches!(result, Err(ProtocolError::TooBigBulkCount)));

    let mut input = b"SET k ".to_vec();
    input.extend_from_slice(&[b'v'; 59]);
    let result = decode_in_chunks(&mut RequestDecoder::new(limits), &input, &[1]);
    assert!(matches!(result, Err(ProtocolError::TooBigInlineRequest)));
    // Exactly at the limit is accepted (the line ending does not count).
    input.truncate(64);
    input.extend_from_slice(b"\n");
    let requests = decode_in_chunks(&mut RequestDecoder::new(limits), &input, &[1]).unwrap();
    assert_eq!(requests[0].arg(2).unwrap().len(), 58);
}

#[test]
fn from_args_matches_encode_command_and_decoding() {
    let args: Vec<&[u8]> = vec![b"MSET", b"a", b"1", b"b", b""];
    let request = Request::from_args(&args);
    let mut encoded = BytesMut::new();
    encode_command(&mut encoded, &args);
    assert_eq!(&request.raw()[..], &encoded[..]);
    let decoded = decode_all(&mut RequestDecoder::default(), &encoded).unwrap();
    assert_eq!(decoded, vec![request]);
}

#[test]
fn many_small_arguments_in_small_reads_are_walked_once() {
    // A quadratic rescan would take minutes here; a linear walk takes well under a second.
    let argc = 1_000_000;
    let mut input = BytesMut::new();
    encode_command(&mut input, std::iter::repeat_n(&b"x"[..], argc));
    let started = std::time::Instant::now();
    let requests = decode_in_chunks(&mut RequestDecoder::default(), &input, &[1024]).unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].argc(), argc);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn big_bulk_in_64k_reads_is_not_rescanned() {
    let len = 64 * 1024 * 1024;
    let mut input = BytesMut::new();
    encode_command(&mut input, [&b"SET"[..], b"k", &vec![b'v'; len]]);
    let started = std::time::Instant::now();
    let requests = decode_in_chunks(&mut RequestDecoder::default(), &input, &[64 * 1024]).unwrap();
    assert_eq!(requests[0].arg(2).unwrap().len(), len);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}
