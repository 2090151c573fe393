//! Unit tests for slot maps and topology reply parsing.

use resp_codec::Frame;

use super::*;

fn bulk(text: &str) -> Frame {
    Frame::Bulk(text.to_owned().into())
}

fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

fn arr(items: Vec<Frame>) -> Frame {
    Frame::Array(items)
}

fn addr(text: &str) -> NodeAddr {
    NodeAddr::parse(text).unwrap()
}

/// A CLUSTER SLOTS node: `[host, port, id, metadata]` as Redis 7 sends it.
fn slots_node(host: &str, port: i64, id: &str) -> Frame {
    arr(vec![bulk(host), int(port), bulk(id), arr(vec![])])
}

fn three_shards() -> Frame {
    arr(vec![
        arr(vec![
            int(0),
            int(5460),
            slots_node("10.0.0.1", 7000, "a"),
            slots_node("10.0.0.4", 7003, "d"),
        ]),
        arr(vec![
            int(5461),
            int(10922),
            slots_node("10.0.0.2", 7001, "b"),
            slots_node("10.0.0.5", 7004, "e"),
        ]),
        arr(vec![
            int(10923),
            int(16383),
            slots_node("10.0.0.3", 7002, "c"),
            slots_node("10.0.0.6", 7005, "f"),
        ]),
    ])
}

#[test]
fn node_addresses_parse_and_print() {
    assert_eq!(addr("127.0.0.1:6379"), NodeAddr::new("127.0.0.1", 6379));
    assert_eq!(addr("redis-1.local:7000").host, "redis-1.local");
    // Redis prints IPv6 without brackets in MOVED and CLUSTER NODES.
    assert_eq!(addr("::1:7000"), NodeAddr::new("::1", 7000));
    assert_eq!(addr("[::1]:7000"), NodeAddr::new("::1", 7000));
    assert_eq!(NodeAddr::new("::1", 7000).to_string(), "[::1]:7000");
    assert_eq!(NodeAddr::parse("no-port"), None);
    assert_eq!(NodeAddr::parse("host:99999"), None);
    assert_eq!(NodeAddr::parse(":7000"), Some(NodeAddr::new("", 7000)));
}

#[test]
fn cluster_slots_reply_builds_a_complete_map() {
    let map = SlotMap::from_cluster_slots(&three_shards(), &addr("10.0.0.1:7000")).unwrap();
    assert!(map.is_complete());
    assert_eq!(map.unassigned_slots(), 0);
    assert_eq!(map.masters().len(), 3);
    assert_eq!(map.master_for_slot(0), Some(&addr("10.0.0.1:7000")));
    assert_eq!(map.master_for_slot(5461), Some(&addr("10.0.0.2:7001")));
    assert_eq!(map.master_for_slot(12182), Some(&addr("10.0.0.3:7002")));
    assert_eq!(map.replicas_for_slot(16383), [addr("10.0.0.6:7005")]);
    assert_eq!(map.shard_for_slot(5460), Some(0));
    assert_eq!(map.slot_ranges(1), [(5461, 10922)]);
    assert_eq!(map.nodes().count(), 6);
    assert_eq!(map.replicas_of(2), [addr("10.0.0.6:7005")]);
}

#[test]
fn empty_host_means_the_replying_node_and_question_mark_means_unknown() {
    let reply = arr(vec![
        arr(vec![
            int(0),
            int(100),
            slots_node("", 7000, "a"),
            slots_node("?", 7003, "d"),
        ]),
        arr(vec![int(101), int(200), slots_node("?", 7001, "b")]),
    ]);
    let map = SlotMap::from_cluster_slots(&reply, &addr("192.168.1.5:7000")).unwrap();
    assert_eq!(map.master_for_slot(50), Some(&addr("192.168.1.5:7000")));
    assert!(map.replicas_for_slot(50).is_empty());
    // The unknown master leaves its slots unassigned.
    assert_eq!(map.master_for_slot(150), None);
    assert!(!map.is_complete());
    assert_eq!(map.unassigned_slots(), 16384 - 101);
}

#[test]
fn a_master_with_several_ranges_is_one_shard() {
    let reply = arr(vec![
        arr(vec![int(0), int(10), slots_node("h", 1, "a")]),
        arr(vec![int(11), int(20), slots_node("h", 2, "b")]),
        arr(vec![int(21), int(30), slots_node("h", 1, "a")]),
    ]);
    let map = SlotMap::from_cluster_slots(&reply, &addr("h:1")).unwrap();
    assert_eq!(map.masters().len(), 2);
    assert_eq!(map.slot_ranges(0), [(0, 10), (21, 30)]);
    assert_eq!(map.shard_for_slot(25), Some(0));
}

#[test]
fn malformed_slots_replies_are_errors_not_panics() {
    let replied_by = addr("h:1");
    let bad = [
        bulk("nope"),
        arr(vec![bulk("x")]),
        arr(vec![arr(vec![int(0), int(1)])]),
        arr(vec![arr(vec![int(0), int(16384), slots_node("h", 1, "a")])]),
        arr(vec![arr(vec![int(5), int(1), slots_node("h", 1, "a")])]),
        arr(vec![arr(vec![int(-1), int(1), slots_node("h", 1, "a")])]),
        arr(vec![arr(vec![int(0), int(1), arr(vec![bulk("h")])])]),
        arr(vec![arr(vec![
            int(0),
            int(1),
            arr(vec![bulk("h"), int(70000)]),
        ])]),
        arr(vec![arr(vec![
            bulk("zero"),
            int(1),
            slots_node("h", 1, "a"),
        ])]),
    ];
    for reply in &bad {
        assert!(
            SlotMap::from_cluster_slots(reply, &replied_by).is_err(),
            "{reply:?}"
        );
    }
    let error = SlotMap::from_cluster_slots(
        &Frame::Error("ERR This instance has cluster support disabled".into()),
        &replied_by,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "cluster topology request failed: ERR This instance has cluster support disabled"
    );
}

#[test]
fn conflicting_owners_are_rejected() {
    let reply = arr(vec![
        arr(vec![int(0), int(100), slots_node("h", 1, "a")]),
        arr(vec![int(50), int(200), slots_node("h", 2, "b")]),
    ]);
    let error = SlotMap::from_cluster_slots(&reply, &addr("h:1")).unwrap_err();
    assert_eq!(
        error,
        TopologyError::ConflictingOwners {
            slot: 50,
            first: addr("h:1"),
            second: addr("h:2")
        }
    );
}

fn shards_node(endpoint: &str, ip: &str, port: i64, role: &str, health: &str) -> Vec<Frame> {
    vec![
        bulk("id"),
        bulk("0123"),
        bulk("port"),
        int(port),
        bulk("ip"),
        bulk(ip),
        bulk("endpoint"),
        bulk(endpoint),
        bulk("role"),
        bulk(role),
        bulk("replication-offset"),
        int(0),
        bulk("health"),
        bulk(health),
    ]
}

#[test]
fn cluster_shards_resp2_reply_builds_a_map() {
    let reply = arr(vec![
        arr(vec![
            bulk("slots"),
            arr(vec![int(0), int(8000), int(9000), int(16383)]),
            bulk("nodes"),
            arr(vec![
                arr(shards_node(
                    "10.0.0.1", "10.0.0.1", 7000, "master", "online",
                )),
                arr(shards_node(
                    "10.0.0.4", "10.0.0.4", 7003, "replica", "online",
                )),
                arr(shards_node(
                    "10.0.0.7", "10.0.0.7", 7006, "replica", "loading",
                )),
            ]),
        ]),
        arr(vec![
            bulk("slots"),
            arr(vec![int(8001), int(8999)]),
            bulk("nodes"),
            // An empty endpoint falls back to the ip; an empty ip means the replying host.
            arr(vec![arr(shards_node("", "", 7001, "master", "online"))]),
        ]),
    ]);
    let map = SlotMap::from_cluster_shards(&reply, &addr("10.9.9.9:7001")).unwrap();
    assert!(map.is_complete());
    assert_eq!(map.master_for_slot(16000), Some(&addr("10.0.0.1:7000")));
    // Only online replicas can serve reads.
    assert_eq!(map.replicas_for_slot(0), [addr("10.0.0.4:7003")]);
    assert_eq!(map.master_for_slot(8500), Some(&addr("10.9.9.9:7001")));
    assert_eq!(map.slot_ranges(0), [(0, 8000), (9000, 16383)]);
}

#[test]
fn cluster_shards_resp3_maps_are_accepted() {
    let node: Vec<(Frame, Frame)> = shards_node("h", "h", 7000, "master", "online")
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    let reply = arr(vec![Frame::Map(vec![
        (bulk("slots"), arr(vec![int(0), int(16383)])),
        (bulk("nodes"), arr(vec![Frame::Map(node)])),
    ])]);
    let map = SlotMap::from_cluster_shards(&reply, &addr("h:7000")).unwrap();
    assert!(map.is_complete());
    assert_eq!(map.masters(), [addr("h:7000")]);
}

#[test]
fn agreement_compares_owners_and_replicas_not_order() {
    let a = SlotMap::from_cluster_slots(&three_shards(), &addr("10.0.0.1:7000")).unwrap();
    // The same topology, listed in another order, with replicas in another order.
    let b = SlotMap::from_shards(vec![
        ShardInfo::new(
            vec![(10923, 16383)],
            addr("10.0.0.3:7002"),
            vec![addr("10.0.0.6:7005")],
        ),
        ShardInfo::new(
            vec![(0, 5460)],
            addr("10.0.0.1:7000"),
            vec![addr("10.0.0.4:7003")],
        ),
        ShardInfo::new(
            vec![(5461, 10922)],
            addr("10.0.0.2:7001"),
            vec![addr("10.0.0.5:7004")],
        ),
    ])
    .unwrap();
    assert!(a.agrees_with(&b));
    assert_eq!(a, b);

    // One slot moved.
    let moved = SlotMap::from_shards(vec![
        ShardInfo::new(
            vec![(0, 5459)],
            addr("10.0.0.1:7000"),
            vec![addr("10.0.0.4:7003")],
        ),
        ShardInfo::new(
            vec![(5460, 10922)],
            addr("10.0.0.2:7001"),
            vec![addr("10.0.0.5:7004")],
        ),
        ShardInfo::new(
            vec![(10923, 16383)],
            addr("10.0.0.3:7002"),
            vec![addr("10.0.0.6:7005")],
        ),
    ])
    .unwrap();
    assert!(!a.agrees_with(&moved));
    assert_eq!(a.slots_disagreeing_with(&moved), 1);

    // Same owners, a replica lost.
    let fewer_replicas = SlotMap::from_shards(vec![
        ShardInfo::new(vec![(0, 5460)], addr("10.0.0.1:7000"), vec![]),
        ShardInfo::new(
            vec![(5461, 10922)],
            addr("10.0.0.2:7001"),
            vec![addr("10.0.0.5:7004")],
        ),
        ShardInfo::new(
            vec![(10923, 16383)],
            addr("10.0.0.3:7002"),
            vec![addr("10.0.0.6:7005")],
        ),
    ])
    .unwrap();
    assert_eq!(a.slots_disagreeing_with(&fewer_replicas), 0);
    assert!(!a.agrees_with(&fewer_replicas));
}

#[test]
fn debug_output_lists_shards() {
    let map = SlotMap::from_shards(vec![ShardInfo::new(
        vec![(0, 16383)],
        addr("h:1"),
        vec![addr("h:2")],
    )])
    .unwrap();
    assert_eq!(
        format!("{map:?}"),
        r#"[h:1 (replicas ["h:2"]) slots [(0, 16383)]]"#
    );
}
