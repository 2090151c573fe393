//! Property tests: pipelined frames split at arbitrary boundaries, agreement between the
//! hand-written framer and the combine parser, and no panic on arbitrary bytes.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use resp_codec::{
    encode_command, parse_frame, split_replies, Frame, FrameCodec, Limits, ProtocolError,
    ReplyDecoder, RequestDecoder,
};
use tokio_util::codec::Decoder;

use crate::support::decode_in_chunks;

fn bytes_strategy(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

/// Text for simple strings and errors: anything but CR and LF.
fn line_strategy() -> impl Strategy<Value = Bytes> {
    vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
        0..12,
    )
    .prop_map(Bytes::from)
}

fn leaf_strategy() -> impl Strategy<Value = Frame> {
    prop_oneof![
        line_strategy().prop_map(Frame::Simple),
        line_strategy().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        bytes_strategy(20).prop_map(Frame::Bulk),
        Just(Frame::NullBulk),
        Just(Frame::NullArray),
        Just(Frame::Null),
        prop_oneof![
            any::<f64>().prop_map(|value| Bytes::from(value.to_string())),
            Just(Bytes::from_static(b"inf")),
            Just(Bytes::from_static(b"-inf")),
            Just(Bytes::from_static(b"nan")),
        ]
        .prop_map(Frame::Double),
        any::<bool>().prop_map(Frame::Boolean),
        (any::<bool>(), "[0-9]{1,40}").prop_map(|(negative, digits)| {
            let sign = if negative { "-" } else { "" };
            Frame::BigNumber(Bytes::from(format!("{sign}{digits}")))
        }),
        (any::<[u8; 3]>(), bytes_strategy(20))
            .prop_map(|(format, text)| Frame::Verbatim { format, text }),
        bytes_strategy(20).prop_map(Frame::BulkError),
    ]
}

fn frame_strategy() -> impl Strategy<Value = Frame> {
    leaf_strategy().prop_recursive(4, 48, 6, |inner| {
        let pairs = vec((inner.clone(), inner.clone()), 0..4);
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Frame::Array),
            pairs.clone().prop_map(Frame::Map),
            vec(inner.clone(), 0..6).prop_map(Frame::Set),
            vec(inner.clone(), 0..6).prop_map(Frame::Push),
            (pairs, inner).prop_map(|(attributes, value)| Frame::Attribute {
                attributes,
                value: Box::new(value),
            }),
        ]
    })
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(1usize..40, 1..8)
}

/// A way to damage an encoded frame.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { index: usize, byte: u8 },
    Truncate { len: usize },
    Insert { index: usize, byte: u8 },
    Remove { index: usize },
}

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        any::<u8>(),
        Just(b'\r'),
        Just(b'\n'),
        Just(b'-'),
        Just(b'0'),
        Just(b'9'),
        Just(b'*'),
        Just(b'$'),
        Just(b'|'),
    ];
    prop_oneof![
        (any::<usize>(), interesting.clone())
            .prop_map(|(index, byte)| Mutation::Flip { index, byte }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (any::<usize>(), interesting).prop_map(|(index, byte)| Mutation::Insert { index, byte }),
        any::<usize>().prop_map(|index| Mutation::Remove { index }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = bytes.len();
        match *mutation {
            Mutation::Flip { index, byte } if len > 0 => bytes[index % len] = byte,
            Mutation::Truncate { len: keep } => bytes.truncate(keep % (len + 1)),
            Mutation::Insert { index, byte } => bytes.insert(index % (len + 1), byte),
            Mutation::Remove { index } if len > 0 => {
                bytes.remove(index % len);
            }
            _ => {}
        }
    }
    bytes
}

/// What a decoder made of a buffer holding one frame, reduced to something comparable.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Complete(usize),
    Incomplete,
    Rejected,
}

fn fast_outcome(input: &[u8], limits: Limits) -> Outcome {
    let mut buffer = BytesMut::from(input);
    match ReplyDecoder::new(limits).decode(&mut buffer) {
        Ok(Some(frame)) => Outcome::Complete(frame.len()),
        Ok(None) => Outcome::Incomplete,
        Err(_) => Outcome::Rejected,
    }
}

fn combine_outcome(input: &[u8], limits: Limits) -> Outcome {
    match parse_frame(input, &limits) {
        Ok(Some((_, used))) => Outcome::Complete(used),
        Ok(None) => Outcome::Incomplete,
        Err(_) => Outcome::Rejected,
    }
}

/// Limits small enough that random inputs hit them.
fn tight_limits() -> Limits {
    Limits {
        max_bulk_len: 16,
        max_array_len: 4,
        max_depth: 3,
        max_inline_len: 24,
    }
}

/// Feeds arbitrary bytes to a decoder in chunks; any outcome but a panic is fine.
fn feed<D: Decoder<Error = ProtocolError>>(mut decoder: D, input: &[u8], chunks: &[usize]) {
    let _ = decode_in_chunks(&mut decoder, input, chunks);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn pipelined_frames_decode_the_same_at_any_split(
        frames in vec(frame_strategy(), 1..6),
        chunks in chunk_sizes(),
    ) {
        let encoded: Vec<Bytes> = frames.iter().map(Frame::to_bytes).collect();
        let pipelined = encoded.concat();

        let decoded = decode_in_chunks(&mut FrameCodec::default(), &pipelined, &chunks).unwrap();
        prop_assert_eq!(&decoded, &frames);

        let replies = decode_in_chunks(&mut ReplyDecoder::default(), &pipelined, &chunks).unwrap();
        prop_assert_eq!(&replies, &encoded);

        for (frame, bytes) in frames.iter().zip(&encoded) {
            prop_assert_eq!(
                parse_frame(bytes, &Limits::default()).unwrap(),
                Some((frame.clone(), bytes.len()))
            );
        }

        // A complete batch splits back into its replies. Cut short between replies, it splits into the ones
        // before the cut; cut inside a reply, it is an error.
        let batch = Bytes::from(pipelined);
        prop_assert_eq!(&split_replies(&batch, &Limits::default()).unwrap(), &encoded);
        let end = batch.len() - chunks.first().copied().unwrap_or(1) % batch.len();
        let short = split_replies(&batch.slice(..end), &Limits::default());
        let mut boundary = 0;
        let whole = encoded.iter().take_while(|reply| {
            boundary += reply.len();
            boundary <= end
        }).count();
        if encoded[..whole].iter().map(Bytes::len).sum::<usize>() == end {
            prop_assert_eq!(&short.unwrap(), &encoded[..whole].to_vec());
        } else {
            prop_assert!(short.is_err());
        }
    }

    #[test]
    fn pipelined_requests_decode_the_same_at_any_split(
        commands in vec(vec(vec(any::<u8>(), 0..12), 1..6), 1..8),
        inline in vec(vec("[a-zA-Z0-9]{1,6}", 1..4), 0..3),
        chunks in chunk_sizes(),
    ) {
        let mut pipelined = BytesMut::new();
        let mut expected: Vec<Vec<Vec<u8>>> = Vec::new();
        for args in &commands {
            encode_command(&mut pipelined, args);
            expected.push(args.clone());
        }
        for args in &inline {
            pipelined.extend_from_slice(args.join(" ").as_bytes());
            pipelined.extend_from_slice(b"\r\n");
            expected.push(args.iter().map(|arg| arg.as_bytes().to_vec()).collect());
        }
        let requests =
            decode_in_chunks(&mut RequestDecoder::default(), &pipelined, &chunks).unwrap();
        let decoded: Vec<Vec<Vec<u8>>> = requests
            .iter()
            .map(|request| request.args().map(<[u8]>::to_vec).collect())
            .collect();
        prop_assert_eq!(&decoded, &expected);
        for (request, args) in requests.iter().zip(&expected) {
            let mut reencoded = BytesMut::new();
            encode_command(&mut reencoded, args);
            prop_assert_eq!(&request.raw()[..], &reencoded[..]);
        }
    }

    #[test]
    fn framer_and_combine_agree_on_mutated_frames(
        frame in frame_strategy(),
        mutations in vec(mutation_strategy(), 1..4),
        tight in any::<bool>(),
    ) {
        let limits = if tight { tight_limits() } else { Limits::default() };
        let input = mutate(frame.to_bytes().to_vec(), &mutations);
        prop_assert_eq!(fast_outcome(&input, limits), combine_outcome(&input, limits));
    }

    #[test]
    fn framer_and_combine_agree_on_random_bytes(
        input in prop_oneof![
            vec(any::<u8>(), 0..64),
            vec(prop_oneof![
                Just(b'*'), Just(b'$'), Just(b'%'), Just(b'|'), Just(b'='), Just(b':'),
                Just(b'+'), Just(b'\r'), Just(b'\n'), Just(b'-'), Just(b'1'), Just(b'0'),
                Just(b'3'), Just(b't'), Just(b'_'), Just(b','), Just(b'('), Just(b'>'),
            ], 0..64),
        ],
        tight in any::<bool>(),
    ) {
        let limits = if tight { tight_limits() } else { Limits::default() };
        prop_assert_eq!(fast_outcome(&input, limits), combine_outcome(&input, limits));
    }

    #[test]
    fn no_decoder_panics_on_arbitrary_input(
        input in vec(any::<u8>(), 0..256),
        chunks in chunk_sizes(),
        tight in any::<bool>(),
    ) {
        let limits = if tight { tight_limits() } else { Limits::default() };
        feed(RequestDecoder::new(limits), &input, &chunks);
        feed(ReplyDecoder::new(limits), &input, &chunks);
        feed(FrameCodec::new(limits), &input, &chunks);
        let _ = parse_frame(&input, &limits);
    }
}
