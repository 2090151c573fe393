//! Topology parsing, routing, redirects and merging against a live Redis Cluster
//! (`RKPROXY_TEST_CLUSTER`: 3 masters, 3 replicas).

use cluster_router::commands::{lookup, MergePolicy};
use cluster_router::merge::merge_replies;
use cluster_router::plan::{route, RoutePlan};
use cluster_router::redirect::{parse_redirect, RedirectKind};
use cluster_router::slot::key_slot;
use cluster_router::topology::{NodeAddr, SlotMap};
use resp_codec::Frame;

use crate::live::{env_addresses, Live, Reply};

fn cluster_addresses() -> Vec<String> {
    let addresses = env_addresses("RKPROXY_TEST_CLUSTER");
    assert!(
        addresses.len() >= 6,
        "RKPROXY_TEST_CLUSTER should list 6 nodes, got {addresses:?}"
    );
    addresses
}

fn slot_map_from(address: &str) -> SlotMap {
    let reply = Live::connect_to(address).call(&["CLUSTER", "SLOTS"]);
    SlotMap::from_cluster_slots(&reply.to_frame(), &NodeAddr::parse(address).unwrap()).unwrap()
}

fn connect(addr: &NodeAddr) -> Live {
    Live::connect_to(&addr.to_string())
}

/// A key that hashes to a slot served by master `shard`, with a test-specific prefix.
fn key_on_shard(map: &SlotMap, shard: usize, prefix: &str) -> String {
    (0..)
        .map(|n| format!("{prefix}:{n}"))
        .find(|key| map.shard_for_slot(key_slot(key.as_bytes())) == Some(shard))
        .unwrap()
}

#[test]
fn every_node_reports_the_same_complete_topology() {
    let addresses = cluster_addresses();
    let first = slot_map_from(&addresses[0]);
    assert!(first.is_complete(), "{first:?}");
    assert_eq!(first.masters().len(), 3, "{first:?}");
    for address in &addresses {
        let map = slot_map_from(address);
        assert_eq!(
            map.slots_disagreeing_with(&first),
            0,
            "{address} disagrees: {map:?} vs {first:?}"
        );
        let shards = Live::connect_to(address).call(&["CLUSTER", "SHARDS"]);
        let from_shards =
            SlotMap::from_cluster_shards(&shards.to_frame(), &NodeAddr::parse(address).unwrap())
                .unwrap();
        assert_eq!(
            from_shards.slots_disagreeing_with(&first),
            0,
            "CLUSTER SHARDS of {address}: {from_shards:?}"
        );
    }
}

#[test]
fn routed_slots_match_the_cluster_and_wrong_nodes_redirect() {
    let addresses = cluster_addresses();
    let map = slot_map_from(&addresses[0]);
    for n in 0..50 {
        let key = format!("rk-route:{n}");
        let args: Vec<&[u8]> = vec![b"GET", key.as_bytes()];
        let RoutePlan::Slot(slot) = route(lookup(&args).unwrap(), &args, &map).unwrap() else {
            panic!("GET routes to a slot");
        };
        let master = map.master_for_slot(slot).unwrap();
        let mut right = connect(master);
        assert_eq!(
            right.call(&["CLUSTER", "KEYSLOT", &key]),
            Reply::Integer(i64::from(slot))
        );
        assert!(
            !matches!(right.call(&args), Reply::Error(_)),
            "{key} on its own master"
        );

        let wrong = map.masters().iter().find(|m| *m != master).unwrap();
        let Reply::Error(message) = connect(wrong).call(&args) else {
            panic!("{key} on a wrong master must be redirected");
        };
        let redirect = parse_redirect(message.as_bytes()).unwrap();
        assert_eq!(redirect.kind, RedirectKind::Moved);
        assert_eq!(redirect.slot, slot);
        assert_eq!(&redirect.target_addr(wrong), master);
    }
}

#[test]
fn cross_slot_refusals_match_redis() {
    let map = slot_map_from(&cluster_addresses()[0]);
    let args: &[&[u8]] = &[b"SUNION", b"foo", b"bar"];
    let ours = route(lookup(&args).unwrap(), &args, &map).unwrap_err();
    let Reply::Error(theirs) = connect(map.master_for_slot(key_slot(b"foo")).unwrap()).call(args)
    else {
        panic!("SUNION foo bar must fail in a cluster");
    };
    assert_eq!(ours.to_string(), theirs);
}

#[test]
fn split_mget_mset_del_round_trip_through_the_cluster() {
    let map = slot_map_from(&cluster_addresses()[0]);
    let keys: Vec<String> = (0..3)
        .flat_map(|shard| (0..3).map(move |n| (shard, n)))
        .map(|(shard, n)| key_on_shard(&map, shard, &format!("rk-split-{n}")))
        .collect();
    let values: Vec<String> = (0..keys.len()).map(|n| format!("value-{n}")).collect();

    let run = |args: &[&[u8]]| -> Frame {
        let spec = lookup(&args).unwrap();
        match route(spec, &args, &map).unwrap() {
            RoutePlan::Split { parts, merge } => {
                let replies = parts
                    .iter()
                    .map(|part| {
                        let mut sub = vec![args[0]];
                        sub.extend(part.arg_indices.clone().map(|i| args[i]));
                        connect(&map.masters()[part.node_index])
                            .call(&sub)
                            .to_frame()
                    })
                    .collect();
                merge_replies(merge, &parts, replies)
            }
            RoutePlan::Slot(slot) => connect(map.master_for_slot(slot).unwrap())
                .call(args)
                .to_frame(),
            other => panic!("unexpected plan {other:?}"),
        }
    };

    let mut mset: Vec<&[u8]> = vec![b"MSET"];
    for (key, value) in keys.iter().zip(&values) {
        mset.push(key.as_bytes());
        mset.push(value.as_bytes());
    }
    assert_eq!(run(&mset), Frame::Simple("OK".into()));

    // Ask in a shuffled order, with a missing key in the middle.
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    let order = [4, 0, 8, 2, 7, 1, 3, 6, 5];
    for &i in &order[..4] {
        mget.push(keys[i].as_bytes());
    }
    mget.push(b"rk-split-missing");
    for &i in &order[4..] {
        mget.push(keys[i].as_bytes());
    }
    let mut expected: Vec<Frame> = order[..4]
        .iter()
        .map(|&i| Frame::Bulk(values[i].clone().into()))
        .collect();
    expected.push(Frame::NullBulk);
    expected.extend(
        order[4..]
            .iter()
            .map(|&i| Frame::Bulk(values[i].clone().into())),
    );
    assert_eq!(run(&mget), Frame::Array(expected));

    let mut exists: Vec<&[u8]> = vec![b"EXISTS"];
    exists.extend(keys.iter().map(|k| k.as_bytes()));
    exists.push(keys[0].as_bytes());
    assert_eq!(run(&exists), Frame::Integer(10));

    let mut del: Vec<&[u8]> = vec![b"DEL"];
    del.extend(keys.iter().map(|k| k.as_bytes()));
    assert_eq!(run(&del), Frame::Integer(9));
    assert_eq!(run(&exists), Frame::Integer(0));
}

#[test]
fn script_exists_merges_with_and_across_nodes() {
    let map = slot_map_from(&cluster_addresses()[0]);
    let args: &[&[u8]] = &[b"SCRIPT", b"EXISTS", b"a", b"b"];
    let RoutePlan::AllNodes(MergePolicy::LogicalAnd) =
        route(lookup(&args).unwrap(), &args, &map).unwrap()
    else {
        panic!("SCRIPT EXISTS goes to all nodes");
    };
    // A script unique to this run, loaded on one master only: it must not count as existing.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let script = format!("return 'rk-and-test-{}-{nanos}'", std::process::id());
    let Reply::Bulk(sha) = connect(&map.masters()[0]).call(&["SCRIPT", "LOAD", &script]) else {
        panic!("SCRIPT LOAD failed");
    };
    let sha = String::from_utf8(sha).unwrap();
    let replies: Vec<Frame> = map
        .nodes()
        .map(|node| connect(node).call(&["SCRIPT", "EXISTS", &sha]).to_frame())
        .collect();
    assert_eq!(
        merge_replies(MergePolicy::LogicalAnd, &[], replies),
        Frame::Array(vec![Frame::Integer(0)])
    );
    // Loaded everywhere, it exists.
    for node in map.nodes() {
        connect(node).call(&["SCRIPT", "LOAD", &script]);
    }
    let replies: Vec<Frame> = map
        .nodes()
        .map(|node| connect(node).call(&["SCRIPT", "EXISTS", &sha]).to_frame())
        .collect();
    assert_eq!(
        merge_replies(MergePolicy::LogicalAnd, &[], replies),
        Frame::Array(vec![Frame::Integer(1)])
    );
}
