//! Unit tests for routing plans.

use super::*;
use crate::commands::lookup;
use crate::topology::{NodeAddr, ShardInfo};

fn three_masters() -> SlotMap {
    SlotMap::from_shards(vec![
        ShardInfo::new(
            vec![(0, 5460)],
            NodeAddr::new("a", 1),
            vec![NodeAddr::new("a", 2)],
        ),
        ShardInfo::new(vec![(5461, 10922)], NodeAddr::new("b", 1), vec![]),
        ShardInfo::new(vec![(10923, 16383)], NodeAddr::new("c", 1), vec![]),
    ])
    .unwrap()
}

fn plan(args: &[&[u8]]) -> Result<RoutePlan, RouteError> {
    let spec = lookup(&args).unwrap();
    route(spec, &args, &three_masters())
}

#[test]
fn single_key_commands_route_to_their_slot() {
    assert_eq!(plan(&[b"get", b"foo"]), Ok(RoutePlan::Slot(12182)));
    assert_eq!(
        plan(&[b"SET", b"{user1000}.following", b"x"]),
        Ok(RoutePlan::Slot(key_slot(b"user1000")))
    );
    assert_eq!(
        plan(&[b"object", b"encoding", b"bar"]),
        Ok(RoutePlan::Slot(5061))
    );
    assert_eq!(
        plan(&[b"xread", b"streams", b"foo", b"0"]),
        Ok(RoutePlan::Slot(12182))
    );
}

#[test]
fn same_slot_multi_key_commands_route_to_that_slot() {
    let slot = key_slot(b"t");
    assert_eq!(
        plan(&[b"sunionstore", b"{t}d", b"{t}a", b"{t}b"]),
        Ok(RoutePlan::Slot(slot))
    );
    assert_eq!(
        plan(&[b"eval", b"s", b"2", b"{t}1", b"{t}2", b"x"]),
        Ok(RoutePlan::Slot(slot))
    );
    assert_eq!(
        plan(&[b"msetnx", b"{t}1", b"v", b"{t}2", b"v"]),
        Ok(RoutePlan::Slot(slot))
    );
    // Split commands whose keys share a slot are not split.
    assert_eq!(
        plan(&[b"mget", b"{t}1", b"{t}2"]),
        Ok(RoutePlan::Slot(slot))
    );
    assert_eq!(plan(&[b"del", b"foo"]), Ok(RoutePlan::Slot(12182)));
}

#[test]
fn cross_slot_commands_are_refused_with_redis_text() {
    for args in [
        &[&b"sunionstore"[..], b"d", b"a", b"b"][..],
        &[b"msetnx", b"foo", b"1", b"bar", b"2"],
        &[b"eval", b"s", b"2", b"foo", b"bar"],
        &[b"rename", b"foo", b"bar"],
        &[b"blpop", b"foo", b"bar", b"0"],
        &[b"watch", b"foo", b"bar"],
    ] {
        let error = plan(args).unwrap_err();
        assert_eq!(error, RouteError::CrossSlot);
        assert_eq!(
            error.to_string(),
            "CROSSSLOT Keys in request don't hash to the same slot"
        );
    }
}

#[test]
fn keyless_and_whole_keyspace_commands() {
    assert_eq!(plan(&[b"ping"]), Ok(RoutePlan::Keyless));
    assert_eq!(plan(&[b"eval", b"s", b"0"]), Ok(RoutePlan::Keyless));
    assert_eq!(plan(&[b"publish", b"ch", b"m"]), Ok(RoutePlan::Keyless));
    assert_eq!(
        plan(&[b"dbsize"]),
        Ok(RoutePlan::AllMasters(MergePolicy::Sum))
    );
    assert_eq!(
        plan(&[b"keys", b"*"]),
        Ok(RoutePlan::AllMasters(MergePolicy::ConcatArrays))
    );
    assert_eq!(
        plan(&[b"flushdb"]),
        Ok(RoutePlan::AllMasters(MergePolicy::AllSucceeded))
    );
    assert_eq!(
        plan(&[b"script", b"exists", b"abc"]),
        Ok(RoutePlan::AllNodes(MergePolicy::LogicalAnd))
    );
    assert_eq!(plan(&[b"scan", b"0", b"match", b"x*"]), Ok(RoutePlan::Scan));
}

#[test]
fn shard_channels_and_slot_arguments() {
    assert_eq!(
        plan(&[b"spublish", b"foo", b"m"]),
        Ok(RoutePlan::Slot(12182))
    );
    assert_eq!(
        plan(&[b"ssubscribe", b"{x}a", b"{x}b"]),
        Ok(RoutePlan::Slot(key_slot(b"x")))
    );
    assert_eq!(
        plan(&[b"ssubscribe", b"foo", b"bar"]),
        Err(RouteError::CrossSlot)
    );
    assert_eq!(
        plan(&[b"cluster", b"countkeysinslot", b"42"]),
        Ok(RoutePlan::Slot(42))
    );
    assert_eq!(
        plan(&[b"cluster", b"getkeysinslot", b"16383", b"10"]),
        Ok(RoutePlan::Slot(16383))
    );
    assert_eq!(
        plan(&[b"cluster", b"countkeysinslot", b"16384"]),
        Ok(RoutePlan::Keyless)
    );
    assert_eq!(
        plan(&[b"cluster", b"countkeysinslot", b"x"]),
        Ok(RoutePlan::Keyless)
    );
}

#[test]
fn mget_splits_per_key_keeping_caller_order() {
    // foo: 12182 (c), bar: 5061 (a), {foo}x: 12182 (c), hello: 866 (a), baz: 4813 (a).
    let args: &[&[u8]] = &[b"MGET", b"foo", b"bar", b"{foo}x", b"hello", b"baz"];
    let RoutePlan::Split { parts, merge } = plan(args).unwrap() else {
        panic!("expected a split");
    };
    assert_eq!(merge, MergePolicy::OrderedByKey);
    let summary: Vec<(u16, usize, Vec<usize>, usize)> = parts
        .iter()
        .map(|p| {
            (
                p.slot,
                p.node_index,
                p.arg_indices.clone().collect(),
                p.key_position,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (866, 0, vec![4], 3),
            (4813, 0, vec![5], 4),
            (5061, 0, vec![2], 1),
            // Two keys of one slot are two parts, in the caller's order: a one-key part never gets TRYAGAIN.
            (12182, 2, vec![1], 0),
            (12182, 2, vec![3], 2),
        ]
    );
}

#[test]
fn mset_parts_carry_key_value_pairs() {
    let args: &[&[u8]] = &[b"MSET", b"foo", b"1", b"bar", b"2", b"{foo}y", b"3"];
    let RoutePlan::Split { parts, merge } = plan(args).unwrap() else {
        panic!("expected a split");
    };
    assert_eq!(merge, MergePolicy::AllSucceeded);
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0].arg_indices, 3..5);
    assert_eq!(parts[1].arg_indices, 1..3);
    assert_eq!(parts[2].arg_indices, 5..7);
    assert_eq!(parts[2].key_position, 2);
    // An odd MSET is an arity error, as in Redis.
    let error = plan(&[b"MSET", b"foo", b"1", b"bar"]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "ERR wrong number of arguments for 'mset' command"
    );
}

#[test]
fn counting_commands_split_with_sum() {
    let RoutePlan::Split { parts, merge } = plan(&[b"DEL", b"foo", b"bar", b"hello"]).unwrap()
    else {
        panic!("expected a split");
    };
    assert_eq!(merge, MergePolicy::Sum);
    assert_eq!(parts.len(), 3);
}

#[test]
fn splits_fail_on_unserved_slots() {
    let partial = SlotMap::from_shards(vec![ShardInfo::new(
        vec![(0, 10000)],
        NodeAddr::new("a", 1),
        vec![],
    )])
    .unwrap();
    let args: &[&[u8]] = &[b"MGET", b"bar", b"foo"];
    let error = route(lookup(&args).unwrap(), &args, &partial).unwrap_err();
    assert_eq!(error, RouteError::SlotNotServed { slot: 12182 });
    assert_eq!(error.to_reply(), b"-CLUSTERDOWN Hash slot not served\r\n");
}

#[test]
fn key_count_errors_surface_as_route_errors() {
    let error = plan(&[b"eval", b"s", b"5", b"a"]).unwrap_err();
    assert_eq!(
        error.to_reply(),
        b"-ERR Number of keys can't be greater than number of args\r\n"
    );
}

#[test]
fn huge_mget_splits_quickly() {
    let keys: Vec<Vec<u8>> = (0..20_000)
        .map(|n| format!("key:{n}").into_bytes())
        .collect();
    let mut args: Vec<&[u8]> = vec![b"MGET"];
    args.extend(keys.iter().map(Vec::as_slice));
    let RoutePlan::Split { parts, .. } =
        route(lookup(&args).unwrap(), &args, &three_masters()).unwrap()
    else {
        panic!("expected a split");
    };
    // One part per key, grouped by node and slot, each slot's keys in the caller's order.
    assert_eq!(parts.len(), 20_000);
    assert!(parts.windows(2).all(|w| {
        let (a, b) = (&w[0], &w[1]);
        (a.node_index, a.slot, a.key_position) < (b.node_index, b.slot, b.key_position)
    }));
}

mod encoding {
    use bytes::BytesMut;
    use proptest::prelude::*;
    use resp_codec::RequestDecoder;
    use tokio_util::codec::Decoder;

    use super::three_masters;
    use crate::commands::lookup;
    use crate::plan::{encode_parts, parts_by_node, route, RoutePlan};

    #[test]
    fn a_part_keeps_the_clients_spelling_of_the_name_and_binary_arguments() {
        let args: &[&[u8]] = &[b"mSeT", b"foo", b"a\r\nb", b"bar", b""];
        let Ok(RoutePlan::Split { parts, .. }) =
            route(lookup(&args).unwrap(), &args, &three_masters())
        else {
            panic!("foo and bar are in two slots");
        };
        let mut wire = BytesMut::new();
        encode_parts(&args, &parts, &mut wire);
        assert_eq!(
            &wire[..],
            b"*3\r\n$4\r\nmSeT\r\n$3\r\nbar\r\n$0\r\n\r\n*3\r\n$4\r\nmSeT\r\n$3\r\nfoo\r\n$4\r\na\r\nb\r\n"
        );
    }

    proptest! {
        /// Whatever the keys, the runs of `parts_by_node` cover every part once, one run per node,
        /// and each run's encoding frames back into its parts' commands, in order.
        #[test]
        fn node_runs_encode_to_the_parts_commands(
            keys in proptest::collection::vec("[a-f{}]{1,5}", 2..30),
            command in prop::sample::select(vec!["MGET", "DEL", "EXISTS", "MSET"]),
        ) {
            let mut args: Vec<Vec<u8>> = vec![command.as_bytes().to_vec()];
            for key in &keys {
                args.push(key.as_bytes().to_vec());
                if command == "MSET" {
                    args.push(format!("value of {key}").into_bytes());
                }
            }
            let plan = route(lookup(&args).unwrap(), &args, &three_masters()).unwrap();
            let RoutePlan::Split { parts, .. } = plan else {
                return Ok(());
            };
            let mut nodes_seen = Vec::new();
            let mut covered = 0;
            for run in parts_by_node(&parts) {
                let node = run[0].node_index;
                prop_assert!(run.iter().all(|part| part.node_index == node));
                prop_assert!(!nodes_seen.contains(&node), "node {} has two runs", node);
                nodes_seen.push(node);
                let mut wire = BytesMut::new();
                encode_parts(&args, run, &mut wire);
                let mut decoder = RequestDecoder::default();
                for part in run {
                    let request = decoder.decode(&mut wire).unwrap().unwrap();
                    let expected: Vec<&[u8]> = std::iter::once(&args[0])
                        .chain(part.arg_indices.clone().map(|index| &args[index]))
                        .map(Vec::as_slice)
                        .collect();
                    prop_assert_eq!(request.args().collect::<Vec<_>>(), expected);
                }
                prop_assert!(wire.is_empty());
                covered += run.len();
            }
            prop_assert_eq!(covered, parts.len());
        }
    }
}
