//! Unit tests for the command table, lookup and key finding (no server needed; the
//! comparison with a live Redis is in `tests/it`).

use super::keys::{key_indices_by_walk, parse_strict_i64, MAX_SEGMENTS};
use super::*;

fn spec_of(args: &[&[u8]]) -> &'static CommandSpec {
    lookup(&args).unwrap()
}

fn keys_of(args: &[&[u8]]) -> Vec<usize> {
    key_indices(spec_of(args), &args).unwrap().iter().collect()
}

fn key_error(args: &[&[u8]]) -> String {
    key_indices(spec_of(args), &args).unwrap_err().to_string()
}

fn every_spec() -> impl Iterator<Item = &'static CommandSpec> {
    all_commands()
        .iter()
        .flat_map(|spec| std::iter::once(spec).chain(spec.subcommands.iter()))
}

// === the table ===

#[test]
fn table_covers_redis_7_0_and_is_sorted_for_binary_search() {
    assert_eq!(REDIS_VERSION, "7.0.15");
    assert_eq!(all_commands().len(), 240);
    assert!(all_commands().windows(2).all(|w| w[0].name < w[1].name));
    for spec in all_commands() {
        assert_eq!(spec.name, spec.name.to_ascii_lowercase());
        assert!(spec.subcommands.windows(2).all(|w| w[0].name < w[1].name));
        for sub in spec.subcommands {
            assert_eq!(sub.container_name(), Some(spec.name), "{}", sub.name);
            assert!(!sub.is_container());
        }
    }
    assert!(every_spec().count() > 360);
}

#[test]
fn names_fit_the_lookup_buffer_and_key_specs_fit_key_indices() {
    for spec in every_spec() {
        let last = spec.name.rsplit('|').next().unwrap();
        assert!(last.len() <= 32, "{}", spec.name);
        assert!(spec.key_specs.len() <= MAX_SEGMENTS, "{}", spec.name);
    }
}

#[test]
fn every_overlay_row_names_a_real_command() {
    for row in overlay::OVERLAY {
        assert!(
            every_spec()
                .chain(added::ADDED.iter())
                .any(|spec| spec.name == row.name),
            "overlay names unknown command {:?}",
            row.name
        );
    }
    let mut names: Vec<_> = overlay::OVERLAY.iter().map(|row| row.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    // "time" appears twice on purpose (cluster routing and class); nothing else may repeat.
    assert_eq!(before - names.len(), 1);
}

#[test]
fn generated_metadata_matches_redis() {
    let get = spec_of(&[b"GET", b"k"]);
    assert_eq!(get.arity, 2);
    assert!(get.is_readonly() && !get.is_write());
    assert!(get.flags.contains(CommandFlags::FAST));
    assert_eq!((get.first_key, get.last_key, get.key_step), (1, 1, 1));
    assert!(get.acl_categories.contains(AclCategories::STRING));

    let mset = spec_of(&[b"MSET", b"a", b"1"]);
    assert_eq!((mset.first_key, mset.last_key, mset.key_step), (1, -1, 2));
    assert!(mset.tips.contains(Tips::REQUEST_MULTI_SHARD));

    let xread = spec_of(&[b"XREAD", b"STREAMS", b"s", b"0"]);
    assert_eq!(
        xread.key_specs[0].begin_search,
        BeginSearch::Keyword {
            keyword: "STREAMS",
            start_from: 1
        }
    );
    assert!(xread.flags.contains(CommandFlags::MOVABLEKEYS));
}

// === classes and policies ===

#[test]
fn classes_follow_flags_categories_and_overlay() {
    let class = |args: &[&[u8]]| spec_of(args).class;
    assert_eq!(class(&[b"get", b"k"]), CommandClass::Read);
    assert_eq!(class(&[b"set", b"k", b"v"]), CommandClass::Write);
    assert_eq!(class(&[b"blpop", b"k", b"0"]), CommandClass::Blocking);
    assert_eq!(
        class(&[b"xread", b"streams", b"s", b"0"]),
        CommandClass::Blocking
    );
    assert_eq!(class(&[b"subscribe", b"c"]), CommandClass::PubSub);
    assert_eq!(class(&[b"publish", b"c", b"m"]), CommandClass::PubSub);
    assert_eq!(class(&[b"multi"]), CommandClass::Transaction);
    assert_eq!(class(&[b"watch", b"k"]), CommandClass::Transaction);
    assert_eq!(class(&[b"eval", b"s", b"0"]), CommandClass::Scripting);
    assert_eq!(class(&[b"script", b"load", b"s"]), CommandClass::Scripting);
    assert_eq!(class(&[b"ping"]), CommandClass::Connection);
    assert_eq!(
        class(&[b"client", b"setname", b"n"]),
        CommandClass::Connection
    );
    assert_eq!(
        class(&[b"client", b"kill", b"id", b"1"]),
        CommandClass::Admin
    );
    assert_eq!(class(&[b"config", b"get", b"x"]), CommandClass::Admin);
    assert_eq!(class(&[b"info"]), CommandClass::Admin);
    assert_eq!(class(&[b"flushall"]), CommandClass::Write);
    assert_eq!(class(&[b"keys", b"*"]), CommandClass::Read);
    assert_eq!(class(&[b"time"]), CommandClass::Read);
}

#[test]
fn proxy_handling_matches_the_design() {
    let proxy = |args: &[&[u8]]| spec_of(args).proxy;
    use ProxyHandling::*;
    for args in [
        &[&b"get"[..], b"k"][..],
        &[b"mget", b"a", b"b"],
        &[b"publish", b"c", b"m"],
    ] {
        assert_eq!(proxy(args), Forward, "{args:?}");
    }
    for args in [
        &[&b"multi"[..]][..],
        &[b"exec"],
        &[b"watch", b"k"],
        &[b"blpop", b"k", b"0"],
        &[b"brpoplpush", b"a", b"b", b"0"],
        &[b"bzmpop", b"0", b"1", b"k", b"min"],
        &[b"subscribe", b"c"],
        &[b"ssubscribe", b"c"],
    ] {
        assert_eq!(proxy(args), Dedicated, "{args:?}");
    }
    assert_eq!(
        proxy(&[b"xread", b"streams", b"s", b"0"]),
        DedicatedWhenBlocking
    );
    for args in [
        &[&b"auth"[..], b"p"][..],
        &[b"hello"],
        &[b"select", b"0"],
        &[b"quit"],
        &[b"reset"],
        &[b"client", b"setname", b"x"],
        &[b"client", b"getname"],
        &[b"client", b"id"],
        &[b"client", b"tracking", b"on"],
        &[b"client", b"reply", b"off"],
        &[b"client", b"setinfo", b"lib-name", b"x"],
        &[b"client", b"kill", b"x"],
        &[b"config", b"set", b"a", b"b"],
        &[b"info"],
    ] {
        assert_eq!(proxy(args), Local, "{args:?}");
    }
    for args in [
        &[&b"monitor"[..]][..],
        &[b"sync"],
        &[b"psync", b"x", b"0"],
        &[b"client", b"pause", b"10"],
        &[b"shutdown"],
        &[b"debug", b"sleep", b"0"],
        &[b"replicaof", b"no", b"one"],
        &[b"slaveof", b"no", b"one"],
        &[b"failover"],
    ] {
        assert_eq!(proxy(args), Unsupported, "{args:?}");
    }
}

#[test]
fn cluster_routing_policies() {
    let cluster = |args: &[&[u8]]| spec_of(args).cluster;
    use ClusterRouting::*;
    assert_eq!(
        cluster(&[b"mget", b"a"]),
        Split {
            pattern: SplitPattern::KeysOnly,
            merge: MergePolicy::OrderedByKey
        }
    );
    assert_eq!(
        cluster(&[b"mset", b"a", b"1"]),
        Split {
            pattern: SplitPattern::KeyValuePairs,
            merge: MergePolicy::AllSucceeded
        }
    );
    for name in [&b"del"[..], b"unlink", b"exists", b"touch"] {
        assert_eq!(
            cluster(&[name, b"a"]),
            Split {
                pattern: SplitPattern::KeysOnly,
                merge: MergePolicy::Sum
            }
        );
    }
    assert_eq!(cluster(&[b"msetnx", b"a", b"1"]), ByKeys);
    assert_eq!(cluster(&[b"dbsize"]), AllMasters(MergePolicy::Sum));
    assert_eq!(
        cluster(&[b"keys", b"*"]),
        AllMasters(MergePolicy::ConcatArrays)
    );
    assert_eq!(cluster(&[b"scan", b"0"]), Scan);
    assert_eq!(
        cluster(&[b"flushall"]),
        AllMasters(MergePolicy::AllSucceeded)
    );
    assert_eq!(cluster(&[b"info"]), AllMasters(MergePolicy::Info));
    assert_eq!(cluster(&[b"ping"]), AnyNode);
    assert_eq!(
        cluster(&[b"script", b"load", b"s"]),
        AllNodes(MergePolicy::AllSucceeded)
    );
    assert_eq!(
        cluster(&[b"script", b"exists", b"a"]),
        AllNodes(MergePolicy::LogicalAnd)
    );
    assert_eq!(cluster(&[b"spublish", b"c", b"m"]), ByShardChannels);
    assert_eq!(
        cluster(&[b"cluster", b"countkeysinslot", b"1"]),
        SlotArgument(2)
    );
    assert_eq!(cluster(&[b"get", b"k"]), ByKeys);
}

// === lookup ===

#[test]
fn lookup_is_case_insensitive_and_resolves_subcommands() {
    assert_eq!(spec_of(&[b"gEt", b"k"]).name, "get");
    assert_eq!(
        spec_of(&[b"RESTORE-ASKING", b"k", b"0", b"v"]).name,
        "restore-asking"
    );
    assert_eq!(spec_of(&[b"Eval_RO", b"s", b"0"]).name, "eval_ro");
    assert_eq!(
        spec_of(&[b"CONFIG", b"get", b"maxmemory"]).name,
        "config|get"
    );
    assert_eq!(
        spec_of(&[b"object", b"ENCODING", b"k"]).name,
        "object|encoding"
    );
    assert_eq!(spec_of(&[b"xinfo", b"stream", b"s"]).name, "xinfo|stream");
    assert_eq!(spec_of(&[b"cluster", b"slots"]).name, "cluster|slots");
    assert_eq!(
        spec_of(&[b"script", b"load", b"return 1"]).name,
        "script|load"
    );
    assert_eq!(
        spec_of(&[b"memory", b"malloc-stats"]).name,
        "memory|malloc-stats"
    );
}

#[test]
fn every_command_and_subcommand_is_found_by_its_own_name_only() {
    for spec in all_commands() {
        let upper = spec.name.to_ascii_uppercase();
        for name in [spec.name.as_bytes(), upper.as_bytes()] {
            assert_eq!(find(all_commands(), name).map(|s| s.name), Some(spec.name));
        }
        for sub in spec.subcommands {
            let part = sub.name.split_once('|').unwrap().1;
            let upper = part.to_ascii_uppercase();
            for name in [part.as_bytes(), upper.as_bytes()] {
                assert_eq!(find(spec.subcommands, name).map(|s| s.name), Some(sub.name));
            }
        }
    }
    // Near misses of every name never resolve to that name.
    for spec in every_spec() {
        let part = spec.name.rsplit('|').next().unwrap().as_bytes();
        let table = if spec.container_name().is_some() {
            all_commands()
                .iter()
                .find(|c| Some(c.name) == spec.container_name())
                .unwrap()
                .subcommands
        } else {
            all_commands()
        };
        let mut longer = part.to_vec();
        longer.push(0);
        let mut suffixed = part.to_vec();
        suffixed.push(b'x');
        for near in [&longer[..], &suffixed[..], &part[..part.len() - 1]] {
            let found = find(table, near).map(|s| s.name);
            assert_ne!(found, Some(spec.name), "{near:?}");
            if let Some(found) = found {
                assert_eq!(found.rsplit('|').next().unwrap().as_bytes(), near);
            }
        }
    }
}

#[test]
fn unknown_commands_echo_a_sanitized_truncated_name() {
    let error = lookup(&[&b"FOO"[..], b"x"]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "ERR unknown or unsupported command 'FOO'"
    );
    assert_eq!(
        error.to_reply(),
        b"-ERR unknown or unsupported command 'FOO'\r\n"
    );

    let error = lookup(&[&b"b\r\nad'\xff"[..]]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "ERR unknown or unsupported command 'b??ad??'"
    );

    let long = vec![b'x'; 1000];
    let error = lookup(&[&long[..]]).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("ERR unknown or unsupported command '{}'", "x".repeat(128))
    );

    // An empty request and a name longer than the stack buffer are unknown, not a panic.
    let empty: &[&[u8]] = &[];
    assert!(matches!(lookup(&empty), Err(CommandError::Unknown { .. })));
    assert!(matches!(
        lookup(&[&b"getgetgetgetgetgetgetgetgetgetgetget"[..]]),
        Err(CommandError::Unknown { .. })
    ));
    // A prefix of a real name is not that name.
    assert!(lookup(&[&b"ge"[..], b"k"]).is_err());
}

#[test]
fn arity_errors_use_redis_7_text() {
    let error = lookup(&[&b"GET"[..]]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "ERR wrong number of arguments for 'get' command"
    );
    let error = lookup(&[&b"get"[..], b"a", b"b"]).unwrap_err();
    assert_eq!(error, CommandError::WrongArity { command: "get" });
    let error = lookup(&[&b"client"[..], b"SETNAME"]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "ERR wrong number of arguments for 'client|setname' command"
    );
    let error = lookup(&[&b"CLIENT"[..]]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "ERR wrong number of arguments for 'client' command"
    );
    // Negative arity is a minimum.
    assert!(lookup(&[&b"mget"[..]]).is_err());
    assert!(lookup(&[&b"mget"[..], b"a", b"b", b"c"]).is_ok());
}

#[test]
fn unknown_subcommands_use_redis_text() {
    let error = lookup(&[&b"client"[..], b"Bogus\n"]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "ERR unknown subcommand 'Bogus?'. Try CLIENT HELP."
    );
    let error = lookup(&[&b"config"[..], b"nope"]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "ERR unknown subcommand 'nope'. Try CONFIG HELP."
    );
}

#[test]
fn unsupported_errors_name_the_command_as_sent() {
    let args: &[&[u8]] = &[b"Monitor"];
    assert_eq!(
        CommandError::unsupported(&args).to_string(),
        "ERR unknown or unsupported command 'Monitor'"
    );
    let args: &[&[u8]] = &[b"client", b"KILL", b"id", b"3"];
    assert_eq!(
        CommandError::unsupported(&args).to_string(),
        "ERR unknown or unsupported command 'client KILL'"
    );
}

#[test]
fn dedicated_connection_for_xread_depends_on_block() {
    let check = |args: &[&[u8]]| needs_dedicated_connection(spec_of(args), &args);
    assert!(check(&[
        b"XREAD", b"COUNT", b"1", b"BLOCK", b"0", b"STREAMS", b"s", b"0"
    ]));
    assert!(!check(&[
        b"XREAD", b"COUNT", b"1", b"STREAMS", b"block", b"0"
    ]));
    // A group or consumer named "block" is not the BLOCK option.
    assert!(!check(&[
        b"XREADGROUP",
        b"GROUP",
        b"block",
        b"block",
        b"STREAMS",
        b"s",
        b">"
    ]));
    assert!(check(&[
        b"XREADGROUP",
        b"GROUP",
        b"g",
        b"c",
        b"NOACK",
        b"BLOCK",
        b"10",
        b"STREAMS",
        b"s",
        b">"
    ]));
    assert!(check(&[b"BLPOP", b"k", b"0"]));
    assert!(check(&[b"MULTI"]));
    assert!(!check(&[b"GET", b"k"]));
}

// === key finding ===

#[test]
fn keys_from_ranges_and_indexes() {
    assert_eq!(keys_of(&[b"get", b"k"]), [1]);
    assert_eq!(keys_of(&[b"mget", b"a", b"b", b"c"]), [1, 2, 3]);
    assert_eq!(keys_of(&[b"mset", b"a", b"1", b"b", b"2"]), [1, 3]);
    assert_eq!(keys_of(&[b"lmove", b"a", b"b", b"left", b"right"]), [1, 2]);
    assert_eq!(keys_of(&[b"bitop", b"and", b"dest", b"a", b"b"]), [2, 3, 4]);
    assert_eq!(keys_of(&[b"blpop", b"a", b"b", b"0"]), [1, 2]);
    assert_eq!(keys_of(&[b"object", b"encoding", b"k"]), [2]);
    assert_eq!(keys_of(&[b"memory", b"usage", b"k", b"samples", b"5"]), [2]);
    assert_eq!(keys_of(&[b"xinfo", b"stream", b"s", b"full"]), [2]);
    assert!(keys_of(&[b"ping"]).is_empty());
    assert!(keys_of(&[b"client", b"setname", b"x"]).is_empty());
}

#[test]
fn keys_from_numkeys() {
    assert_eq!(keys_of(&[b"eval", b"s", b"2", b"a", b"b", b"arg"]), [3, 4]);
    assert!(keys_of(&[b"eval", b"s", b"0", b"arg"]).is_empty());
    assert_eq!(keys_of(&[b"fcall", b"f", b"1", b"a"]), [3]);
    assert_eq!(
        keys_of(&[b"zunionstore", b"d", b"2", b"a", b"b"]),
        [1, 3, 4]
    );
    assert_eq!(
        keys_of(&[b"zinter", b"2", b"a", b"b", b"withscores"]),
        [2, 3]
    );
    assert_eq!(
        keys_of(&[b"sintercard", b"2", b"a", b"b", b"limit", b"1"]),
        [2, 3]
    );
    assert_eq!(keys_of(&[b"lmpop", b"2", b"a", b"b", b"left"]), [2, 3]);
    assert_eq!(
        keys_of(&[b"blmpop", b"0", b"1", b"a", b"left", b"count", b"2"]),
        [3]
    );
}

#[test]
fn keys_from_keywords_and_fallbacks() {
    assert_eq!(
        keys_of(&[b"xread", b"count", b"2", b"streams", b"a", b"b", b"0", b"0"]),
        [4, 5]
    );
    assert_eq!(
        keys_of(&[b"xreadgroup", b"group", b"g", b"c", b"streams", b"a", b">"]),
        [5]
    );
    assert_eq!(
        keys_of(&[b"georadius", b"g", b"0", b"0", b"1", b"km", b"store", b"d"]),
        [1, 7]
    );
    assert_eq!(
        keys_of(&[b"georadius", b"g", b"0", b"0", b"1", b"km", b"store"]),
        [1]
    );
    assert_eq!(keys_of(&[b"sort", b"k"]), [1]);
    assert_eq!(
        keys_of(&[b"sort", b"k", b"by", b"w_*", b"get", b"#", b"store", b"d"]),
        [1, 7]
    );
    assert_eq!(
        keys_of(&[b"sort", b"k", b"store", b"a", b"store", b"b"]),
        [1, 5]
    );
    assert_eq!(keys_of(&[b"sort_ro", b"k", b"by", b"x"]), [1]);
    assert_eq!(keys_of(&[b"migrate", b"h", b"1", b"k", b"0", b"10"]), [3]);
    assert_eq!(
        keys_of(&[b"migrate", b"h", b"1", b"", b"0", b"10", b"copy", b"keys", b"a", b"b"]),
        [8, 9]
    );
    assert_eq!(keys_of(&[b"set", b"k", b"v", b"get"]), [1]);
    assert_eq!(keys_of(&[b"bitfield", b"k", b"get", b"u8", b"0"]), [1]);
}

#[test]
fn shard_channels_are_found_only_on_request() {
    let args: &[&[u8]] = &[b"spublish", b"chan", b"msg"];
    let spec = spec_of(args);
    assert!(key_indices(spec, &args).unwrap().is_empty());
    assert_eq!(channel_indices(spec, &args).iter().collect::<Vec<_>>(), [1]);
    let args: &[&[u8]] = &[b"ssubscribe", b"a", b"b"];
    assert_eq!(
        channel_indices(spec_of(args), &args)
            .iter()
            .collect::<Vec<_>>(),
        [1, 2]
    );
}

#[test]
fn bad_key_counts_get_redis_errors() {
    assert_eq!(
        key_error(&[b"eval", b"s", b"x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        key_error(&[b"eval", b"s", b"01"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        key_error(&[b"eval", b"s", b"-1"]),
        "ERR Number of keys can't be negative"
    );
    assert_eq!(
        key_error(&[b"eval", b"s", b"2", b"a"]),
        "ERR Number of keys can't be greater than number of args"
    );
    let sha = [b'a'; 40];
    assert_eq!(
        key_error(&[b"evalsha", &sha, b"3"]),
        "ERR Number of keys can't be greater than number of args"
    );
    // A short SHA: Redis answers NOSCRIPT first, so no key-count error is made up here.
    assert!(key_indices(
        spec_of(&[b"evalsha", b"abc", b"x"]),
        &[&b"evalsha"[..], b"abc", b"x"]
    )
    .unwrap()
    .is_empty());
    assert_eq!(
        key_error(&[b"sintercard", b"0", b"a"]),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(
        key_error(&[b"sintercard", b"x", b"a"]),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(
        key_error(&[b"sintercard", b"3", b"a"]),
        "ERR Number of keys can't be greater than number of args"
    );
    assert_eq!(
        key_error(&[b"lmpop", b"0", b"a", b"left"]),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(
        key_error(&[b"lmpop", b"2", b"a", b"left"]),
        "ERR syntax error"
    );
    assert_eq!(
        key_error(&[b"blmpop", b"0", b"0", b"a", b"left"]),
        "ERR numkeys should be greater than 0"
    );
    assert_eq!(
        key_error(&[b"zunionstore", b"d", b"0", b"a"]),
        "ERR at least 1 input key is needed for 'zunionstore' command"
    );
    assert_eq!(
        key_error(&[b"zinter", b"-1", b"a"]),
        "ERR at least 1 input key is needed for 'zinter' command"
    );
    assert_eq!(key_error(&[b"zdiff", b"3", b"a"]), "ERR syntax error");
    assert_eq!(
        key_error(&[b"zunion", b"x", b"a"]),
        "ERR value is not an integer or out of range"
    );
    // FCALL looks up the function first; the node reports whichever error applies.
    let args: &[&[u8]] = &[b"fcall", b"f", b"9", b"a"];
    assert!(key_indices(spec_of(args), &args).unwrap().is_empty());
}

#[test]
fn key_indices_iterates_segments_in_order() {
    let keys = key_indices(
        spec_of(&[b"zunionstore", b"d", b"3", b"a", b"b", b"c"]),
        &[&b"zunionstore"[..], b"d", b"3", b"a", b"b", b"c"],
    )
    .unwrap();
    assert_eq!(keys.len(), 4);
    assert_eq!(keys.first(), Some(1));
    assert_eq!((&keys).into_iter().collect::<Vec<_>>(), [1, 3, 4, 5]);
    assert_eq!(format!("{keys:?}"), "[1, 3, 4, 5]");
    assert!(KeyIndices::none().is_empty());
    assert_eq!(KeyIndices::none().len(), 0);
}

#[test]
fn strict_integers_follow_redis_string2ll() {
    assert_eq!(parse_strict_i64(b"0"), Some(0));
    assert_eq!(parse_strict_i64(b"-12"), Some(-12));
    assert_eq!(parse_strict_i64(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(parse_strict_i64(b"-9223372036854775808"), Some(i64::MIN));
    for bad in [
        &b""[..],
        b"-",
        b"01",
        b"-0",
        b"+1",
        b" 1",
        b"1 ",
        b"9223372036854775808",
        b"1x",
    ] {
        assert_eq!(parse_strict_i64(bad), None, "{bad:?}");
    }
}

#[test]
fn client_setinfo_is_found_though_newer_than_the_table() {
    let spec = spec_of(&[b"CLIENT", b"SetInfo", b"lib-name", b"x"]);
    assert_eq!(spec.name, "client|setinfo");
    assert_eq!(spec.proxy, ProxyHandling::Local);
    assert_eq!(spec.class, CommandClass::Connection);
    assert_eq!(
        lookup(&[&b"client"[..], b"setinfo", b"lib-name"])
            .unwrap_err()
            .to_string(),
        "ERR wrong number of arguments for 'client|setinfo' command"
    );
}

#[test]
fn the_single_key_shortcut_agrees_with_the_general_walk_for_every_command() {
    // Arguments that steer the walk: numbers (key counts), keywords of key specs, and plain words.
    let words: [&[u8]; 6] = [b"k", b"1", b"2", b"STREAMS", b"STORE", b"-1"];
    let mut compared = 0;
    for spec in every_spec().chain(added::ADDED.iter()) {
        for argc in 0..7usize {
            for (offset, _) in words.iter().enumerate() {
                let args: Vec<&[u8]> = (0..argc)
                    .map(|i| {
                        if i == 0 {
                            spec.name.as_bytes()
                        } else {
                            words[(i + offset) % words.len()]
                        }
                    })
                    .collect();
                let fast = key_indices(spec, &args).map(|keys| keys.iter().collect::<Vec<_>>());
                let walked =
                    key_indices_by_walk(spec, &args).map(|keys| keys.iter().collect::<Vec<_>>());
                assert_eq!(
                    fast.as_ref().map_err(ToString::to_string),
                    walked.as_ref().map_err(ToString::to_string),
                    "{} {:?}",
                    spec.name,
                    args
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 10_000);
}
