//! Cost per command of framing pipelined GET/SET traffic: the hand-written framers against
//! the combine parser. Run with `cargo bench -p resp-codec`; divide the time per iteration
//! by 1000 for nanoseconds per command.

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use resp_codec::{encode_command, parse_frame, FrameCodec, Limits, ReplyDecoder, RequestDecoder};
use tokio_util::codec::Decoder;

const COMMANDS: usize = 1000;

/// 1000 pipelined commands, alternating `SET key:N value` and `GET key:N`.
fn pipelined_requests() -> BytesMut {
    let mut buffer = BytesMut::new();
    for n in 0..COMMANDS {
        let key = format!("key:{n}");
        if n % 2 == 0 {
            encode_command(&mut buffer, ["SET", key.as_str(), "value"]);
        } else {
            encode_command(&mut buffer, ["GET", key.as_str()]);
        }
    }
    buffer
}

/// The replies to those commands: `+OK` and `$5 value`.
fn pipelined_replies() -> BytesMut {
    let mut buffer = BytesMut::new();
    for n in 0..COMMANDS {
        if n % 2 == 0 {
            buffer.extend_from_slice(b"+OK\r\n");
        } else {
            buffer.extend_from_slice(b"$5\r\nvalue\r\n");
        }
    }
    buffer
}

/// Decodes every item in a fresh copy of `input`, returning how many there were.
fn drain<D: Decoder>(mut decoder: D, mut buffer: BytesMut) -> usize
where
    D::Error: std::fmt::Debug,
{
    let mut count = 0;
    while let Ok(Some(item)) = decoder.decode(&mut buffer) {
        black_box(item);
        count += 1;
    }
    assert_eq!(count, COMMANDS);
    count
}

/// combine without a codec: `parse_frame` on a slice, the cheapest way to use it.
fn drain_parse_frame(input: &[u8]) -> usize {
    let limits = Limits::default();
    let mut offset = 0;
    let mut count = 0;
    while let Ok(Some((frame, used))) = parse_frame(&input[offset..], &limits) {
        black_box(frame);
        offset += used;
        count += 1;
    }
    assert_eq!(count, COMMANDS);
    count
}

fn bench_requests(criterion: &mut Criterion) {
    let input = pipelined_requests();
    let mut group = criterion.benchmark_group("requests_1000_pipelined_get_set");
    group.throughput(Throughput::Elements(COMMANDS as u64));
    group.bench_function("hand_written_RequestDecoder", |bencher| {
        bencher.iter_batched(
            || input.clone(),
            |buffer| drain(RequestDecoder::default(), buffer),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("hand_written_ReplyDecoder_framing", |bencher| {
        bencher.iter_batched(
            || input.clone(),
            |buffer| drain(ReplyDecoder::default(), buffer),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("combine_FrameCodec", |bencher| {
        bencher.iter_batched(
            || input.clone(),
            |buffer| drain(FrameCodec::default(), buffer),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("combine_parse_frame", |bencher| {
        bencher.iter(|| drain_parse_frame(&input))
    });
    group.finish();
}

fn bench_replies(criterion: &mut Criterion) {
    let input = pipelined_replies();
    let mut group = criterion.benchmark_group("replies_1000_pipelined_ok_bulk");
    group.throughput(Throughput::Elements(COMMANDS as u64));
    group.bench_function("hand_written_ReplyDecoder", |bencher| {
        bencher.iter_batched(
            || input.clone(),
            |buffer| drain(ReplyDecoder::default(), buffer),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("combine_FrameCodec", |bencher| {
        bencher.iter_batched(
            || input.clone(),
            |buffer| drain(FrameCodec::default(), buffer),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn short_runs() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = short_runs();
    targets = bench_requests, bench_replies
}
criterion_main!(benches);
