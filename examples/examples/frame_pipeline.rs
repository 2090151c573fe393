//! Frames a pipeline of client requests and the server's replies with `resp-codec`, the way the proxy does:
//! requests keep their original bytes (zero-copy) plus argument positions; replies are framed without parsing,
//! and parsed into a `Frame` tree only when you need to look inside.
//!
//! Run: `cargo run -p rkproxy-examples --example frame_pipeline`

use bytes::BytesMut;
use resp_codec::{parse_frame, Frame, Limits, ReplyDecoder, RequestDecoder};
use tokio_util::codec::Decoder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Two pipelined requests, the second one an inline command, split across two reads.
    let mut requests = RequestDecoder::new(Limits::default());
    let mut buffer = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$5\r\nhello\r\n$5\r\nwo"[..]);
    assert!(
        requests.decode(&mut buffer)?.is_none(),
        "the first request is not complete yet"
    );
    buffer.extend_from_slice(b"rld\r\nGET hello\r\n");
    while let Some(request) = requests.decode(&mut buffer)? {
        let args: Vec<String> = request
            .args()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        println!(
            "request {args:?} forwarded as {} bytes",
            request.raw().len()
        );
    }

    // The replies: framed one by one, then one parsed into a tree.
    let mut replies = ReplyDecoder::new(Limits::default());
    let mut buffer = BytesMut::from(&b"+OK\r\n$5\r\nworld\r\n*2\r\n:1\r\n$-1\r\n"[..]);
    while let Some(raw) = replies.decode(&mut buffer)? {
        let frame = parse_frame(&raw, &Limits::default())?.map(|(frame, _)| frame);
        println!(
            "reply {:?} parses to {frame:?}",
            String::from_utf8_lossy(&raw)
        );
    }
    assert_eq!(Frame::Integer(7).to_bytes(), &b":7\r\n"[..]);
    Ok(())
}
