//! Frame encoding and the combine-based parse_frame / FrameCodec.

use bytes::{Bytes, BytesMut};
use resp_codec::{parse_frame, Frame, FrameCodec, Limits, ProtocolError};
use tokio_util::codec::{Decoder, Encoder};

use crate::replies::EVERY_TYPE;
use crate::support::decode_in_chunks;

fn every_frame() -> Vec<Frame> {
    let bulk = |text: &'static str| Frame::Bulk(Bytes::from_static(text.as_bytes()));
    let simple = |text: &'static str| Frame::Simple(Bytes::from_static(text.as_bytes()));
    vec![
        simple("OK"),
        Frame::Error("ERR boom".into()),
        Frame::Integer(i64::MIN),
        Frame::Integer(0),
        Frame::Integer(i64::MAX),
        bulk("hello"),
        bulk(""),
        Frame::NullBulk,
        Frame::Array(vec![bulk("a"), Frame::Array(vec![]), Frame::NullArray]),
        Frame::NullArray,
        Frame::Null,
        Frame::Double("1.5e-3".into()),
        Frame::Double("nan".into()),
        Frame::Boolean(true),
        Frame::Boolean(false),
        Frame::BigNumber("-123456789012345678901234567890".into()),
        Frame::Verbatim {
            format: *b"mkd",
            text: "# title".into(),
        },
        Frame::BulkError("SYNTAX bad\r\nthing".into()),
        Frame::Map(vec![
            (simple("k"), Frame::Integer(1)),
            (bulk("m"), Frame::Null),
        ]),
        Frame::Set(vec![simple("x")]),
        Frame::Push(vec![bulk("message"), bulk("ch"), bulk("payload")]),
        Frame::Attribute {
            attributes: vec![(simple("ttl"), Frame::Integer(3600))],
            value: Box::new(Frame::Array(vec![bulk("v")])),
        },
    ]
}

#[test]
fn every_frame_type_round_trips() {
    for frame in every_frame() {
        let bytes = frame.to_bytes();
        let parsed = parse_frame(&bytes, &Limits::default()).unwrap();
        assert_eq!(parsed, Some((frame.clone(), bytes.len())), "{frame:?}");
        let mut codec = FrameCodec::default();
        let mut buffer = BytesMut::new();
        codec.encode(&frame, &mut buffer).unwrap();
        assert_eq!(codec.decode(&mut buffer).unwrap(), Some(frame));
        assert!(buffer.is_empty());
    }
}

#[test]
fn every_wire_example_reencodes_identically() {
    for reply in EVERY_TYPE {
        let (frame, _) = parse_frame(reply, &Limits::default()).unwrap().unwrap();
        assert_eq!(&frame.to_bytes()[..], *reply, "{frame:?}");
    }
}

#[test]
fn frame_codec_survives_every_split() {
    let frames = every_frame();
    let mut pipelined = BytesMut::new();
    for frame in &frames {
        frame.encode(&mut pipelined);
    }
    for chunk in [1, 2, 5, 13] {
        let decoded = decode_in_chunks(&mut FrameCodec::default(), &pipelined, &[chunk]).unwrap();
        assert_eq!(decoded, frames, "chunk size {chunk}");
    }
}

#[test]
fn frame_codec_reports_truncated_stream_at_eof() {
    let mut codec = FrameCodec::default();
    let mut buffer = BytesMut::from(&b"*2\r\n:1\r\n"[..]);
    assert_eq!(codec.decode(&mut buffer).unwrap(), None);
    // The parsed prefix was consumed into the codec's state: the buffer may be empty while
    // a frame is unfinished, and end of stream must still be an error.
    assert!(matches!(
        codec.decode_eof(&mut buffer),
        Err(ProtocolError::Io(_))
    ));
    assert_eq!(
        FrameCodec::default()
            .decode_eof(&mut BytesMut::new())
            .unwrap(),
        None
    );
}

#[test]
fn parse_frame_reports_partial_input() {
    for reply in EVERY_TYPE {
        for cut in 0..reply.len() {
            assert_eq!(
                parse_frame(&reply[..cut], &Limits::default()).unwrap(),
                None,
                "{:?} cut at {cut}",
                String::from_utf8_lossy(reply)
            );
        }
    }
}
