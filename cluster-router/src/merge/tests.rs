//! Unit tests for reply merging.

use super::*;

fn bulk(text: &str) -> Frame {
    Frame::Bulk(Bytes::from(text.to_owned()))
}

fn err(text: &str) -> Frame {
    Frame::Error(Bytes::from(text.to_owned()))
}

/// The part of the key at `position` (argument `position + 1`).
fn part(position: usize) -> SplitPart {
    SplitPart {
        slot: 0,
        node_index: 0,
        arg_indices: position + 1..position + 2,
        key_position: position,
    }
}

#[test]
fn ordered_merge_restores_caller_key_order() {
    let parts = [part(1), part(3), part(0), part(2)];
    let replies = vec![
        Frame::Array(vec![bulk("b")]),
        Frame::Array(vec![Frame::NullBulk]),
        Frame::Array(vec![bulk("a")]),
        Frame::Array(vec![bulk("c")]),
    ];
    assert_eq!(
        merge_replies(MergePolicy::OrderedByKey, &parts, replies),
        Frame::Array(vec![bulk("a"), bulk("b"), bulk("c"), Frame::NullBulk])
    );
}

#[test]
fn ordered_merge_reports_errors_and_bad_shapes() {
    let parts = [part(0), part(1)];
    assert_eq!(
        merge_ordered(
            &parts,
            vec![Frame::Array(vec![bulk("a")]), err("MOVED 1 h:1")]
        ),
        err("MOVED 1 h:1")
    );
    let wrong_length = merge_ordered(
        &parts,
        vec![
            Frame::Array(vec![bulk("a"), bulk("x")]),
            Frame::Array(vec![bulk("b")]),
        ],
    );
    assert!(
        matches!(wrong_length, Frame::Error(ref text) if text.starts_with(b"ERR unexpected reply"))
    );
    let missing_reply = merge_ordered(&parts, vec![Frame::Array(vec![bulk("a")])]);
    assert!(matches!(missing_reply, Frame::Error(_)));
    let not_array = merge_ordered(&parts, vec![bulk("a"), bulk("b")]);
    assert!(matches!(not_array, Frame::Error(_)));
    let duplicate_positions = merge_ordered(
        &[part(0), part(0)],
        vec![Frame::Array(vec![bulk("a")]), Frame::Array(vec![bulk("b")])],
    );
    assert!(matches!(duplicate_positions, Frame::Error(_)));
}

#[test]
fn sums_and_minimums() {
    assert_eq!(
        sum_integers(vec![
            Frame::Integer(1),
            Frame::Integer(0),
            Frame::Integer(2)
        ]),
        Frame::Integer(3)
    );
    assert_eq!(
        sum_integers(vec![Frame::Integer(i64::MAX), Frame::Integer(1)]),
        Frame::Integer(i64::MAX)
    );
    assert_eq!(
        sum_integers(vec![Frame::Integer(1), err("ERR x")]),
        err("ERR x")
    );
    assert!(matches!(sum_integers(vec![bulk("1")]), Frame::Error(_)));
    assert_eq!(
        min_integers(vec![Frame::Integer(3), Frame::Integer(1)]),
        Frame::Integer(1)
    );
    assert!(matches!(min_integers(vec![]), Frame::Error(_)));
}

#[test]
fn all_and_one_succeeded() {
    let ok = Frame::Simple(Bytes::from_static(b"OK"));
    assert_eq!(all_succeeded(vec![ok.clone(), ok.clone()]), ok);
    assert_eq!(
        all_succeeded(vec![ok.clone(), err("OOM no")]),
        err("OOM no")
    );
    assert_eq!(one_succeeded(vec![err("NOTBUSY a"), ok.clone()]), ok);
    assert_eq!(
        one_succeeded(vec![err("NOTBUSY a"), err("NOTBUSY b")]),
        err("NOTBUSY a")
    );
    assert!(matches!(all_succeeded(vec![]), Frame::Error(_)));
}

#[test]
fn array_concatenation_and_union() {
    let merged = concat_arrays(vec![
        Frame::Array(vec![bulk("a"), bulk("b")]),
        Frame::Array(vec![]),
        Frame::Array(vec![bulk("a")]),
    ]);
    assert_eq!(merged, Frame::Array(vec![bulk("a"), bulk("b"), bulk("a")]));
    let merged = union_arrays(vec![
        Frame::Array(vec![bulk("a"), bulk("b")]),
        Frame::Array(vec![bulk("a"), bulk("c")]),
    ]);
    assert_eq!(merged, Frame::Array(vec![bulk("a"), bulk("b"), bulk("c")]));
    assert_eq!(
        concat_arrays(vec![Frame::Array(vec![]), err("ERR x")]),
        err("ERR x")
    );
    assert!(matches!(
        concat_arrays(vec![Frame::Integer(1)]),
        Frame::Error(_)
    ));
}

#[test]
fn logical_and_of_script_exists() {
    let merged = logical_and(vec![
        Frame::Array(vec![
            Frame::Integer(1),
            Frame::Integer(1),
            Frame::Integer(0),
        ]),
        Frame::Array(vec![
            Frame::Integer(1),
            Frame::Integer(0),
            Frame::Integer(1),
        ]),
    ]);
    assert_eq!(
        merged,
        Frame::Array(vec![
            Frame::Integer(1),
            Frame::Integer(0),
            Frame::Integer(0)
        ])
    );
    let uneven = logical_and(vec![
        Frame::Array(vec![Frame::Integer(1)]),
        Frame::Array(vec![]),
    ]);
    assert!(matches!(uneven, Frame::Error(_)));
}

#[test]
fn pair_sums_keep_shape() {
    let merged = sum_pairs(vec![
        Frame::Array(vec![
            bulk("a"),
            Frame::Integer(1),
            bulk("b"),
            Frame::Integer(0),
        ]),
        Frame::Array(vec![
            bulk("a"),
            Frame::Integer(2),
            bulk("b"),
            Frame::Integer(5),
        ]),
    ]);
    assert_eq!(
        merged,
        Frame::Array(vec![
            bulk("a"),
            Frame::Integer(3),
            bulk("b"),
            Frame::Integer(5)
        ])
    );
    let merged = sum_pairs(vec![
        Frame::Map(vec![(bulk("a"), Frame::Integer(1))]),
        Frame::Map(vec![(bulk("a"), Frame::Integer(1))]),
    ]);
    assert_eq!(merged, Frame::Map(vec![(bulk("a"), Frame::Integer(2))]));
    assert!(matches!(
        sum_pairs(vec![Frame::Array(vec![bulk("a")])]),
        Frame::Error(_)
    ));
}

#[test]
fn first_non_null_for_randomkey() {
    assert_eq!(
        first_non_null(vec![Frame::NullBulk, bulk("k"), bulk("j")]),
        bulk("k")
    );
    assert_eq!(
        first_non_null(vec![Frame::NullBulk, Frame::NullBulk]),
        Frame::NullBulk
    );
    assert_eq!(first_non_null(vec![Frame::Null]), Frame::Null);
}

#[test]
fn info_keyspace_is_summed() {
    let node = |db0: &str, extra: &str| {
        bulk(&format!(
            "# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:{db0}\r\n{extra}"
        ))
    };
    let merged = merge_info(vec![
        node("keys=10,expires=1,avg_ttl=100", ""),
        node(
            "keys=5,expires=0,avg_ttl=300",
            "db1:keys=2,expires=2,avg_ttl=0\r\n",
        ),
    ]);
    assert_eq!(
        merged,
        bulk(
            "# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\n\
             db0:keys=15,expires=1,avg_ttl=300\r\ndb1:keys=2,expires=2,avg_ttl=0\r\n"
        )
    );
    // Sections after Keyspace survive, and RESP3 verbatim text keeps its type.
    let verbatim = |text: &str| Frame::Verbatim {
        format: *b"txt",
        text: Bytes::from(text.to_owned()),
    };
    let merged = merge_info(vec![
        verbatim("# Keyspace\r\n\r\n# Other\r\nx:1\r\n"),
        verbatim("# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n\r\n# Other\r\nx:2\r\n"),
    ]);
    assert_eq!(
        merged,
        verbatim("# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n\r\n# Other\r\nx:1\r\n")
    );
    assert!(matches!(
        merge_info(vec![Frame::Integer(1)]),
        Frame::Error(_)
    ));
}

mod raw {
    use proptest::prelude::*;
    use resp_codec::Frame;

    use super::{bulk, part};
    use crate::commands::lookup;
    use crate::merge::{merge_ordered, merge_ordered_raw};
    use crate::plan::{parts_by_node, route, RoutePlan, SplitPart};
    use crate::topology::{NodeAddr, ShardInfo, SlotMap};

    fn encoded(frame: &Frame) -> Vec<u8> {
        frame.to_bytes().to_vec()
    }

    fn three_masters() -> SlotMap {
        SlotMap::from_shards(vec![
            ShardInfo::new(vec![(0, 5460)], NodeAddr::new("a", 1), vec![]),
            ShardInfo::new(vec![(5461, 10922)], NodeAddr::new("b", 1), vec![]),
            ShardInfo::new(vec![(10923, 16383)], NodeAddr::new("c", 1), vec![]),
        ])
        .unwrap()
    }

    /// What the test's "server" holds for a key: keys ending in `x` are missing.
    fn value_of(key: &[u8]) -> Frame {
        if key.ends_with(b"x") {
            Frame::NullBulk
        } else {
            Frame::Bulk(key.iter().rev().copied().collect::<Vec<u8>>().into())
        }
    }

    /// Each part's reply as a node gives it: the values of the part's keys, in the part's order.
    fn part_reply(part: &SplitPart, args: &[&[u8]]) -> Frame {
        Frame::Array(
            part.arg_indices
                .clone()
                .map(|index| value_of(args[index]))
                .collect(),
        )
    }

    #[test]
    fn elements_go_back_to_the_callers_key_order_across_chunks() {
        let parts = [part(1), part(3), part(0), part(2)];
        // A node's two replies in one chunk, then the other node's two.
        let first = [
            encoded(&Frame::Array(vec![bulk("b")])),
            encoded(&Frame::Array(vec![Frame::NullBulk])),
        ]
        .concat();
        let rest = [
            encoded(&Frame::Array(vec![bulk("a")])),
            encoded(&Frame::Array(vec![Frame::Null])),
        ]
        .concat();
        let merged = merge_ordered_raw(&parts, [&first[..], &rest[..]]).unwrap();
        assert_eq!(&merged[..], b"*4\r\n$1\r\na\r\n$1\r\nb\r\n_\r\n$-1\r\n");
    }

    #[test]
    fn anything_but_the_expected_arrays_is_left_to_the_parsing_merge() {
        let parts = [part(0), part(1)];
        let one = encoded(&Frame::Array(vec![bulk("a")]));
        let cases: [(&str, Vec<&[u8]>); 7] = [
            ("an error", vec![&one, b"-ERR down\r\n"]),
            ("a redirect", vec![b"-MOVED 1 h:1\r\n", &one]),
            ("a short array", vec![&one, b"*0\r\n"]),
            ("a long array", vec![&one, b"*2\r\n:1\r\n:2\r\n"]),
            ("a missing reply", vec![&one]),
            ("bytes left over", vec![&one, &one, b"+OK\r\n"]),
            ("a cut element", vec![&one, b"*1\r\n$3\r\nab"]),
        ];
        for (what, replies) in cases {
            assert_eq!(merge_ordered_raw(&parts, replies), None, "{what}");
        }
        assert_eq!(
            merge_ordered_raw(&[part(0), part(0)], [&one[..], &one[..]]),
            None,
            "a position twice"
        );
        assert_eq!(
            merge_ordered_raw(&[part(0), part(5)], [&one[..], &one[..]]),
            None,
            "a position past the keys"
        );
    }

    #[test]
    fn malformed_array_headers_are_refused() {
        let parts = [part(0)];
        for header in [
            &b"*\r\n"[..],
            b"*-1\r\n",
            b"*+1\r\n$1\r\na\r\n",
            b"*1\n$1\r\na\r\n",
            b"*99999999999999999999999\r\n",
            b"*18446744073709551616\r\n",
            b"$1\r\na\r\n",
        ] {
            assert_eq!(
                merge_ordered_raw(&parts, [header]),
                None,
                "{}",
                String::from_utf8_lossy(header)
            );
        }
    }

    proptest! {
        #[test]
        fn raw_merge_equals_the_parsing_merge_for_any_split_mget(
            keys in proptest::collection::vec("[a-e{}]{1,4}x?", 1..24),
            batched_by_node in any::<bool>(),
        ) {
            let mut args: Vec<&[u8]> = vec![b"MGET"];
            args.extend(keys.iter().map(String::as_bytes));
            let map = three_masters();
            let RoutePlan::Split { parts, .. } = route(lookup(&args).unwrap(), &args, &map).unwrap() else {
                // All keys in one slot: nothing to merge.
                return Ok(());
            };
            let replies: Vec<Frame> = parts.iter().map(|part| part_reply(part, &args)).collect();
            let chunks: Vec<Vec<u8>> = if batched_by_node {
                let mut next = replies.iter();
                parts_by_node(&parts)
                    .map(|run| run.iter().zip(&mut next).flat_map(|(_, reply)| encoded(reply)).collect())
                    .collect()
            } else {
                replies.iter().map(encoded).collect()
            };
            let merged = merge_ordered_raw(&parts, chunks.iter().map(Vec::as_slice)).unwrap();
            let expected = Frame::Array(args[1..].iter().map(|key| value_of(key)).collect());
            prop_assert_eq!(&merged[..], &encoded(&expected)[..]);
            prop_assert_eq!(&merged[..], &encoded(&merge_ordered(&parts, replies))[..]);
        }

        #[test]
        fn raw_merge_never_panics(
            replies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..4),
            positions in proptest::collection::vec(0usize..6, 1..5),
        ) {
            let parts: Vec<SplitPart> = positions.iter().map(|&position| part(position)).collect();
            let _ = merge_ordered_raw(&parts, replies.iter().map(Vec::as_slice));
        }
    }
}
