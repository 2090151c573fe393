//! Key isolation: every key-taking command of the table gets the prefix on every key; patterns,
//! channels and replies; key_pattern; default_ttl.

use std::num::NonZeroU64;

use bytes::Bytes;
use cluster_router::commands::key_indices;
use cluster_router::lookup;
use proptest::prelude::*;
use resp_codec::Frame;

use super::rights::every_spec;
use super::{config, spec, tenant};
use crate::testing::{has_real_keys, sample_args};
use crate::{PolicyError, Rewrite, Tenant};

const PREFIX: &str = "t1:";

fn prefixed_tenant() -> std::sync::Arc<Tenant> {
    let mut config = config("t1");
    config.key_prefix = Some(PREFIX.to_owned());
    config.admin = true; // admins too are isolated; and it lets admin commands with keys through.
    tenant("t1", config)
}

#[test]
fn every_key_of_every_key_taking_command_gets_the_prefix() {
    let t1 = prefixed_tenant();
    let mut checked = Vec::new();
    for spec in every_spec().into_iter().filter(|spec| has_real_keys(spec)) {
        let args = sample_args(spec);
        let looked_up = lookup(&args).unwrap_or_else(|e| panic!("{}: {e}: {args:?}", spec.name));
        assert_eq!(looked_up.name, spec.name);
        let keys = key_indices(spec, &args).unwrap();
        assert!(
            !keys.is_empty(),
            "{}: sample {args:?} has no keys",
            spec.name
        );

        let Rewrite::Args(rewritten) = t1.rewrite_request(spec, &args).unwrap() else {
            panic!("{}: keys were not rewritten", spec.name);
        };
        // The rewritten request has its keys at the same places, each one prefixed.
        let rewritten_keys = key_indices(lookup(&rewritten).unwrap(), &rewritten).unwrap();
        assert_eq!(rewritten_keys, keys, "{}", spec.name);
        for index in &keys {
            let mut expected = PREFIX.as_bytes().to_vec();
            expected.extend_from_slice(&args[index]);
            assert_eq!(rewritten[index], expected, "{} key {index}", spec.name);
        }
        // Nothing else changed (SORT BY/GET patterns are covered separately).
        for (index, arg) in args.iter().enumerate() {
            if !keys.iter().any(|key| key == index) {
                assert_eq!(&rewritten[index][..], &arg[..], "{} arg {index}", spec.name);
            }
        }
        checked.push(spec.name);
    }
    assert!(
        checked.len() > 150,
        "only {} commands checked",
        checked.len()
    );
    for name in [
        "get",
        "mset",
        "eval",
        "fcall_ro",
        "xread",
        "migrate",
        "object|encoding",
        "memory|usage",
        "xgroup|create",
        "lmpop",
        "zunionstore",
        "georadius",
        "sort",
    ] {
        assert!(checked.contains(&name), "{name} not checked");
    }
}

/// Rewrites `args` for tenant t1 and returns the new arguments as strings.
fn rewrite(args: &[&str]) -> Vec<String> {
    let t1 = prefixed_tenant();
    match t1.rewrite_request(spec(args), &args).unwrap() {
        Rewrite::Args(new) => new
            .iter()
            .map(|arg| String::from_utf8(arg.to_vec()).unwrap())
            .collect(),
        Rewrite::Unchanged => args.iter().map(|arg| (*arg).to_owned()).collect(),
    }
}

#[test]
fn keys_scan_and_sort_patterns() {
    assert_eq!(rewrite(&["KEYS", "*"]), ["KEYS", "t1:*"]);
    assert_eq!(rewrite(&["KEYS", "t2:*"]), ["KEYS", "t1:t2:*"]);
    assert_eq!(rewrite(&["SCAN", "0"]), ["SCAN", "0", "MATCH", "t1:*"]);
    assert_eq!(
        rewrite(&["SCAN", "17", "COUNT", "100", "TYPE", "string"]),
        ["SCAN", "17", "COUNT", "100", "TYPE", "string", "MATCH", "t1:*"]
    );
    assert_eq!(
        rewrite(&["SCAN", "0", "match", "user:*", "COUNT", "10"]),
        ["SCAN", "0", "match", "t1:user:*", "COUNT", "10"]
    );
    // HSCAN's MATCH is about fields, not keys.
    assert_eq!(
        rewrite(&["HSCAN", "h", "0", "MATCH", "f*"]),
        ["HSCAN", "t1:h", "0", "MATCH", "f*"]
    );
    assert_eq!(
        rewrite(&["SORT", "l", "BY", "w_*", "GET", "#", "GET", "o_*->f", "STORE", "d"]),
        [
            "SORT",
            "t1:l",
            "BY",
            "t1:w_*",
            "GET",
            "#",
            "GET",
            "t1:o_*->f",
            "STORE",
            "t1:d"
        ]
    );
    assert_eq!(
        rewrite(&["SORT_RO", "l", "LIMIT", "0", "1", "by", "nosort"]),
        ["SORT_RO", "t1:l", "LIMIT", "0", "1", "by", "t1:nosort"]
    );
}

#[test]
fn glob_characters_in_the_prefix_are_escaped_in_patterns_only() {
    let mut config = config("g");
    config.key_prefix = Some("g*[1]:".to_owned());
    let g = tenant("g", config);
    let rewritten = |args: &[&str]| match g.rewrite_request(spec(args), &args).unwrap() {
        Rewrite::Args(new) => new,
        Rewrite::Unchanged => panic!("unchanged"),
    };
    assert_eq!(rewritten(&["KEYS", "a*"]), ["KEYS", "g\\*\\[1\\]:a*"]);
    assert_eq!(rewritten(&["GET", "a"]), ["GET", "g*[1]:a"]);
    assert_eq!(
        rewritten(&["PSUBSCRIBE", "n.*"]),
        ["PSUBSCRIBE", "g\\*\\[1\\]:n.*"]
    );
    assert_eq!(rewritten(&["SUBSCRIBE", "n"]), ["SUBSCRIBE", "g*[1]:n"]);
    // Replies: a pattern confirmation carries the escaped prefix, a message the plain one.
    let reply = Frame::Push(vec![
        Frame::Bulk("pmessage".into()),
        Frame::Bulk("g\\*\\[1\\]:n.*".into()),
        Frame::Bulk("g*[1]:n.1".into()),
        Frame::Bulk("hi".into()),
    ]);
    assert_eq!(
        g.rewrite_push(reply),
        Frame::Push(vec![
            Frame::Bulk("pmessage".into()),
            Frame::Bulk("n.*".into()),
            Frame::Bulk("n.1".into()),
            Frame::Bulk("hi".into()),
        ])
    );
}

#[test]
fn channels_get_the_prefix() {
    assert_eq!(
        rewrite(&["SUBSCRIBE", "a", "b"]),
        ["SUBSCRIBE", "t1:a", "t1:b"]
    );
    assert_eq!(rewrite(&["UNSUBSCRIBE"]), ["UNSUBSCRIBE"]);
    assert_eq!(
        rewrite(&["PSUBSCRIBE", "news.*"]),
        ["PSUBSCRIBE", "t1:news.*"]
    );
    assert_eq!(
        rewrite(&["PUBLISH", "a", "hello"]),
        ["PUBLISH", "t1:a", "hello"]
    );
    assert_eq!(
        rewrite(&["SPUBLISH", "a", "hello"]),
        ["SPUBLISH", "t1:a", "hello"]
    );
    assert_eq!(rewrite(&["SSUBSCRIBE", "a"]), ["SSUBSCRIBE", "t1:a"]);
    assert_eq!(
        rewrite(&["PUBSUB", "CHANNELS"]),
        ["PUBSUB", "CHANNELS", "t1:*"]
    );
    assert_eq!(
        rewrite(&["PUBSUB", "CHANNELS", "n*"]),
        ["PUBSUB", "CHANNELS", "t1:n*"]
    );
    assert_eq!(
        rewrite(&["PUBSUB", "NUMSUB", "a", "b"]),
        ["PUBSUB", "NUMSUB", "t1:a", "t1:b"]
    );
    assert_eq!(
        rewrite(&["CLIENT", "TRACKING", "on", "BCAST"]),
        ["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "t1:"]
    );
    assert_eq!(
        rewrite(&["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "u:"]),
        ["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "t1:u:"]
    );
}

fn bulk(text: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(text.as_bytes()))
}

fn bulks(texts: &[&str]) -> Vec<Frame> {
    texts.iter().map(|text| bulk(text)).collect()
}

#[test]
fn replies_lose_the_prefix() {
    let t1 = prefixed_tenant();
    let reply = |args: &[&str], frame: Frame| {
        let spec = spec(args);
        assert!(t1.reply_needs_rewrite(spec), "{args:?}");
        t1.rewrite_reply(spec, frame)
    };
    // KEYS drops anything without the prefix (cannot happen, but would be another tenant's).
    assert_eq!(
        reply(
            &["KEYS", "*"],
            Frame::Array(bulks(&["t1:a", "t2:b", "t1:t1:c"]))
        ),
        Frame::Array(bulks(&["a", "t1:c"]))
    );
    assert_eq!(
        reply(
            &["SCAN", "0"],
            Frame::Array(vec![bulk("42"), Frame::Array(bulks(&["t1:a", "t1:b"]))])
        ),
        Frame::Array(vec![bulk("42"), Frame::Array(bulks(&["a", "b"]))])
    );
    assert_eq!(
        reply(
            &["BZPOPMIN", "z", "0"],
            Frame::Array(bulks(&["t1:z", "m", "1"]))
        ),
        Frame::Array(bulks(&["z", "m", "1"]))
    );
    assert_eq!(
        reply(&["BLPOP", "q", "0"], Frame::NullArray),
        Frame::NullArray
    );
    assert_eq!(
        reply(
            &["LMPOP", "1", "l", "LEFT"],
            Frame::Array(vec![bulk("t1:l"), Frame::Array(bulks(&["x"]))])
        ),
        Frame::Array(vec![bulk("l"), Frame::Array(bulks(&["x"]))])
    );
    let entries = Frame::Array(vec![Frame::Array(vec![
        bulk("1-0"),
        Frame::Array(bulks(&["f", "v"])),
    ])]);
    assert_eq!(
        reply(
            &["XREAD", "STREAMS", "s", "0"],
            Frame::Array(vec![Frame::Array(vec![bulk("t1:s"), entries.clone()])])
        ),
        Frame::Array(vec![Frame::Array(vec![bulk("s"), entries.clone()])])
    );
    // RESP3: a map of stream name to entries.
    assert_eq!(
        reply(
            &["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"],
            Frame::Map(vec![(bulk("t1:s"), entries.clone())])
        ),
        Frame::Map(vec![(bulk("s"), entries)])
    );
    assert_eq!(
        reply(
            &["SUBSCRIBE", "a"],
            Frame::Array(vec![bulk("subscribe"), bulk("t1:a"), Frame::Integer(1)])
        ),
        Frame::Array(vec![bulk("subscribe"), bulk("a"), Frame::Integer(1)])
    );
    assert_eq!(
        reply(
            &["PUBSUB", "NUMSUB", "a"],
            Frame::Array(vec![bulk("t1:a"), Frame::Integer(3)])
        ),
        Frame::Array(vec![bulk("a"), Frame::Integer(3)])
    );
    assert_eq!(
        reply(&["PUBSUB", "CHANNELS"], Frame::Array(bulks(&["t1:a"]))),
        Frame::Array(bulks(&["a"]))
    );
    // Errors pass through.
    assert_eq!(
        reply(&["KEYS", "*"], Frame::Error("ERR x".into())),
        Frame::Error("ERR x".into())
    );
    // Push messages and invalidations.
    assert_eq!(
        t1.rewrite_push(Frame::Push(vec![
            bulk("message"),
            bulk("t1:a"),
            bulk("t1:payload")
        ])),
        Frame::Push(vec![bulk("message"), bulk("a"), bulk("t1:payload")])
    );
    assert_eq!(
        t1.rewrite_push(Frame::Push(vec![
            bulk("invalidate"),
            Frame::Array(bulks(&["t1:k"]))
        ])),
        Frame::Push(vec![bulk("invalidate"), Frame::Array(bulks(&["k"]))])
    );
    // EXEC: each element with its queued command.
    let queued = [spec(&["GET", "k"]), spec(&["KEYS", "*"])];
    assert_eq!(
        t1.rewrite_exec_reply(
            &queued,
            Frame::Array(vec![bulk("t1:value"), Frame::Array(bulks(&["t1:k"]))])
        ),
        Frame::Array(vec![bulk("t1:value"), Frame::Array(bulks(&["k"]))])
    );
    // Commands whose replies carry no keys are not parsed at all.
    assert!(!t1.reply_needs_rewrite(spec(&["GET", "k"])));
    assert!(!tenant("plain", config("plain")).reply_needs_rewrite(spec(&["KEYS", "*"])));
}

#[test]
fn key_pattern_is_checked_on_the_key_as_sent() {
    let mut config = config("k");
    config.key_prefix = Some("k:".to_owned());
    config.key_pattern = Some("^[a-z]+$".to_owned());
    let k = tenant("k", config);
    let args = ["MSET", "good", "1", "Bad!", "2"];
    assert_eq!(
        k.rewrite_request(spec(&args), &args)
            .unwrap_err()
            .to_string(),
        "ERR key 'Bad!' does not match the key pattern of tenant 'k'"
    );
    let args: [&[u8]; 2] = [b"GET", b"\xff\n'"];
    assert_eq!(
        k.rewrite_request(lookup(&args).unwrap(), &args)
            .unwrap_err(),
        PolicyError::KeyPattern {
            tenant: "k".to_owned(),
            key: "???".to_owned()
        }
    );
    let args = ["GET", "fine"];
    assert!(matches!(
        k.rewrite_request(spec(&args), &args),
        Ok(Rewrite::Args(_))
    ));
    // Patterns (KEYS) are not keys.
    let args = ["KEYS", "*"];
    assert!(k.rewrite_request(spec(&args), &args).is_ok());
    // A bad key count is the command table's error.
    let args = ["EVAL", "s", "5", "k"];
    assert_eq!(
        k.rewrite_request(spec(&args), &args)
            .unwrap_err()
            .to_string(),
        "ERR Number of keys can't be greater than number of args"
    );
}

#[test]
fn default_ttl_goes_on_set_without_expiry_only() {
    let mut config = config("ttl");
    config.default_ttl = NonZeroU64::new(3600);
    let ttl = tenant("ttl", config);
    let run = |args: &[&str]| match ttl.rewrite_request(spec(args), &args).unwrap() {
        Rewrite::Args(new) => new,
        Rewrite::Unchanged => args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect(),
    };
    assert_eq!(run(&["SET", "k", "v"]), ["SET", "k", "v", "EX", "3600"]);
    assert_eq!(
        run(&["set", "k", "v", "NX", "GET"]),
        ["set", "k", "v", "NX", "GET", "EX", "3600"]
    );
    for kept in [
        &["SET", "k", "v", "EX", "5"][..],
        &["SET", "k", "v", "px", "5"],
        &["SET", "k", "v", "EXAT", "5"],
        &["SET", "k", "v", "PXAT", "5"],
        &["SET", "k", "v", "KEEPTTL"],
        &["SETEX", "k", "5", "v"],
        &["MSET", "k", "v"],
        &["GET", "k"],
    ] {
        assert_eq!(
            ttl.rewrite_request(spec(kept), &kept).unwrap(),
            Rewrite::Unchanged,
            "{kept:?}"
        );
    }
}

#[test]
fn a_tenant_without_isolation_settings_never_rewrites() {
    let plain = tenant("plain", config("plain"));
    assert!(!plain.rewrites_requests());
    for args in [
        &["GET", "k"][..],
        &["SCAN", "0"],
        &["KEYS", "*"],
        &["SUBSCRIBE", "c"],
    ] {
        assert_eq!(
            plain.rewrite_request(spec(args), &args).unwrap(),
            Rewrite::Unchanged
        );
    }
}

/// Redis's `stringmatchlen` for `*`, `?`, `[...]` and `\` escapes, to check escaped prefixes.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob_match(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((b'\\', rest)) if !rest.is_empty() => {
            text.first() == rest.first() && glob_match(&rest[1..], &text[1..])
        }
        Some((b'[', rest)) => {
            let Some(close) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            !text.is_empty()
                && rest[..close].contains(&text[0])
                && glob_match(&rest[close + 1..], &text[1..])
        }
        Some((&literal, rest)) => text.first() == Some(&literal) && glob_match(rest, &text[1..]),
    }
}

proptest! {
    /// With any prefix, `<escaped prefix>*` matches exactly the keys that start with the prefix.
    #[test]
    fn escaped_prefix_star_matches_only_the_prefix(
        prefix in proptest::collection::vec(prop::sample::select(b"ab*?[]\\:".to_vec()), 1..6),
        key in proptest::collection::vec(prop::sample::select(b"ab*?[]\\:".to_vec()), 0..10),
    ) {
        let mut pattern = crate::escape_glob(&prefix).to_vec();
        pattern.push(b'*');
        prop_assert_eq!(glob_match(&pattern, &key), key.starts_with(&prefix));
    }

    /// Whatever the keys, DEL/MGET/MSET keys all come out prefixed and nothing else changes.
    #[test]
    fn arbitrary_keys_are_prefixed(keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 1..6)) {
        let t1 = prefixed_tenant();
        for command in ["DEL", "MGET", "MSET"] {
            let mut args: Vec<Vec<u8>> = vec![command.as_bytes().to_vec()];
            for key in &keys {
                args.push(key.clone());
                if command == "MSET" {
                    args.push(b"value".to_vec());
                }
            }
            let spec = lookup(&args).unwrap();
            let Rewrite::Args(rewritten) = t1.rewrite_request(spec, &args).unwrap() else {
                panic!("not rewritten");
            };
            prop_assert_eq!(rewritten.len(), args.len());
            let step = if command == "MSET" { 2 } else { 1 };
            for (index, arg) in args.iter().enumerate().skip(1) {
                if (index - 1) % step == 0 {
                    prop_assert_eq!(&rewritten[index][..PREFIX.len()], PREFIX.as_bytes());
                    prop_assert_eq!(&rewritten[index][PREFIX.len()..], &arg[..]);
                } else {
                    prop_assert_eq!(&rewritten[index][..], &arg[..]);
                }
            }
        }
    }
}
