//! Cost of the routing hot path: command lookup, key finding, slot hashing and planning, and of
//! a split MGET's encoding and merge.
//! Run with `cargo bench -p cluster-router`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use cluster_router::commands::{key_indices, lookup};
use cluster_router::merge::{merge_ordered, merge_ordered_raw};
use cluster_router::plan::{encode_parts, parts_by_node, route, RoutePlan};
use cluster_router::slot::key_slot;
use cluster_router::topology::{NodeAddr, ShardInfo, SlotMap};
use criterion::{criterion_group, criterion_main, Criterion};
use resp_codec::{parse_frame, Frame, Limits};

fn three_masters() -> SlotMap {
    SlotMap::from_shards(vec![
        ShardInfo::new(vec![(0, 5460)], NodeAddr::new("a", 1), vec![]),
        ShardInfo::new(vec![(5461, 10922)], NodeAddr::new("b", 1), vec![]),
        ShardInfo::new(vec![(10923, 16383)], NodeAddr::new("c", 1), vec![]),
    ])
    .expect("a valid map")
}

fn routing(c: &mut Criterion) {
    let map = three_masters();
    let get: &[&[u8]] = &[b"GET", b"user:1000:profile"];
    let config_get: &[&[u8]] = &[b"config", b"GET", b"maxmemory"];
    let eval: &[&[u8]] = &[
        b"EVALSHA",
        b"0123456789012345678901234567890123456789",
        b"2",
        b"{u}a",
        b"{u}b",
        b"x",
    ];
    let mget_keys: Vec<Vec<u8>> = (0..10).map(|n| format!("key:{n}").into_bytes()).collect();
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(mget_keys.iter().map(Vec::as_slice));

    c.bench_function("lookup GET", |b| b.iter(|| lookup(black_box(&get))));
    c.bench_function("lookup CONFIG GET (subcommand)", |b| {
        b.iter(|| lookup(black_box(&config_get)))
    });
    c.bench_function("key_slot 17 bytes", |b| {
        b.iter(|| key_slot(black_box(b"user:1000:profile")))
    });
    c.bench_function("lookup + key_indices + route GET", |b| {
        b.iter(|| {
            let args = black_box(get);
            let spec = lookup(&args).expect("known command");
            route(spec, &args, &map)
        })
    });
    c.bench_function("key_indices EVALSHA numkeys", |b| {
        let spec = lookup(&eval).expect("known command");
        b.iter(|| key_indices(spec, black_box(&eval)))
    });
    c.bench_function("lookup + route MGET 10 keys (split)", |b| {
        b.iter(|| {
            let args = black_box(&mget);
            let spec = lookup(args).expect("known command");
            route(spec, args, &map)
        })
    });
}

/// The proxy's cross-slot MGET fan-out without the sockets: encoding each node's share of the
/// split, and merging the nodes' replies, raw and through trees.
fn split_mget(c: &mut Criterion) {
    let map = three_masters();
    let mget_keys: Vec<Vec<u8>> = (0..10).map(|n| format!("key:{n}").into_bytes()).collect();
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(mget_keys.iter().map(Vec::as_slice));
    let spec = lookup(&mget).expect("known command");
    let Ok(RoutePlan::Split { parts, .. }) = route(spec, &mget, &map) else {
        panic!("ten keys in several slots are split");
    };
    // Each node's replies back to back, as a node answers its share in one batch.
    let node_replies: Vec<Vec<u8>> = parts_by_node(&parts)
        .map(|run| {
            let mut replies = BytesMut::new();
            // One array of one value per part: each part is one key.
            for _ in run {
                Frame::Array(vec![Frame::Bulk(Bytes::from_static(b"xxx"))]).encode(&mut replies);
            }
            replies.to_vec()
        })
        .collect();
    c.bench_function("encode MGET 10 keys by node", |b| {
        let mut wire = BytesMut::with_capacity(1024);
        b.iter(|| {
            for run in parts_by_node(black_box(&parts)) {
                encode_parts(&mget, run, &mut wire);
                black_box(wire.split());
            }
        })
    });
    c.bench_function("merge_ordered_raw MGET 10 keys", |b| {
        b.iter(|| merge_ordered_raw(black_box(&parts), node_replies.iter().map(Vec::as_slice)))
    });
    c.bench_function("parse + merge_ordered MGET 10 keys", |b| {
        b.iter(|| {
            let limits = Limits::for_backend_replies();
            let mut frames = Vec::new();
            for replies in &node_replies {
                let mut rest = &replies[..];
                while let Ok(Some((frame, used))) = parse_frame(rest, &limits) {
                    frames.push(frame);
                    rest = &rest[used..];
                }
            }
            merge_ordered(black_box(&parts), frames).to_bytes()
        })
    });
}

criterion_group!(benches, routing, split_mget);
criterion_main!(benches);
