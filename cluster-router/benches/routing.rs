//! Cost of the routing hot path: command lookup, key finding, slot hashing and planning.
//! Run with `cargo bench -p cluster-router`.

use std::hint::black_box;

use cluster_router::commands::{key_indices, lookup};
use cluster_router::plan::route;
use cluster_router::slot::key_slot;
use cluster_router::topology::{NodeAddr, ShardInfo, SlotMap};
use criterion::{criterion_group, criterion_main, Criterion};

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

criterion_group!(benches, routing);
criterion_main!(benches);
