//! The command table against a live Redis: `COMMAND GETKEYS` for a long list of sample
//! commands (at least one for every command that has keys), the arity and subcommand error
//! texts, and the key-count error texts.

use std::collections::BTreeSet;

use cluster_router::commands::{self, key_indices, lookup, CommandSpec, KeySpecFlags};

use crate::live::{Live, Reply};

/// Sample commands, arguments separated by single spaces, `''` for an empty argument. Key
/// names are distinct from every other argument so that keys can be compared by value.
const SAMPLES: &[&str] = &[
    "APPEND k1 v",
    "BITCOUNT k1",
    "BITCOUNT k1 0 -1 BIT",
    "BITFIELD k1 GET u8 0",
    "BITFIELD k1 SET u8 0 1 INCRBY u8 0 1",
    "BITFIELD_RO k1 GET u8 0",
    "BITOP AND k1 k2 k3",
    "BITOP NOT k1 k2",
    "BITPOS k1 1 0 -1",
    "BLMOVE k1 k2 LEFT RIGHT 0",
    "BLMPOP 0 2 k1 k2 LEFT COUNT 3",
    "BLPOP k1 k2 k3 0",
    "BRPOP k1 0",
    "BRPOPLPUSH k1 k2 0",
    "BZMPOP 1.5 1 k1 MIN",
    "BZPOPMAX k1 k2 0",
    "BZPOPMIN k1 0",
    "COPY k1 k2 DB 0 REPLACE",
    "DECR k1",
    "DECRBY k1 5",
    "DEL k1 k2 k3",
    "DUMP k1",
    "EVAL s 2 k1 k2 a1 a2",
    "EVAL s 0 a1",
    "EVAL_RO s 1 k1",
    "EVALSHA 0123456789012345678901234567890123456789 1 k1 a1",
    "EVALSHA_RO 0123456789012345678901234567890123456789 2 k1 k2",
    "EXISTS k1 k2",
    "EXPIRE k1 10 NX",
    "EXPIREAT k1 10",
    "EXPIRETIME k1",
    "FCALL f 2 k1 k2 a1",
    "FCALL f 0",
    "FCALL_RO f 1 k1",
    "GEOADD k1 NX 1 2 m",
    "GEODIST k1 a b km",
    "GEOHASH k1 a b",
    "GEOPOS k1 a",
    "GEORADIUS k1 1 2 3 km",
    "GEORADIUS k1 1 2 3 km STORE k2",
    "GEORADIUS k1 1 2 3 km STOREDIST k2 COUNT 5",
    "GEORADIUS k1 1 2 3 km STORE k2 STOREDIST k3",
    "GEORADIUS k1 1 2 3 km WITHDIST STORE",
    "GEORADIUS_RO k1 1 2 3 km WITHCOORD",
    "GEORADIUSBYMEMBER k1 m 3 km STORE k2",
    "GEORADIUSBYMEMBER_RO k1 m 3 km",
    "GEOSEARCH k1 FROMMEMBER m BYRADIUS 3 km",
    "GEOSEARCHSTORE k1 k2 FROMMEMBER m BYBOX 1 2 km STOREDIST",
    "GET k1",
    "GETBIT k1 3",
    "GETDEL k1",
    "GETEX k1 PERSIST",
    "GETRANGE k1 0 3",
    "GETSET k1 v",
    "HDEL k1 f1 f2",
    "HEXISTS k1 f",
    "HGET k1 f",
    "HGETALL k1",
    "HINCRBY k1 f 1",
    "HINCRBYFLOAT k1 f 1.5",
    "HKEYS k1",
    "HLEN k1",
    "HMGET k1 f1 f2",
    "HMSET k1 f v",
    "HRANDFIELD k1 2 WITHVALUES",
    "HSCAN k1 0 MATCH x",
    "HSET k1 f v f2 v2",
    "HSETNX k1 f v",
    "HSTRLEN k1 f",
    "HVALS k1",
    "INCR k1",
    "INCRBY k1 2",
    "INCRBYFLOAT k1 2.5",
    "LCS k1 k2 LEN",
    "LINDEX k1 0",
    "LINSERT k1 BEFORE p v",
    "LLEN k1",
    "LMOVE k1 k2 LEFT LEFT",
    "LMPOP 2 k1 k2 RIGHT",
    "LMPOP 1 k1 LEFT COUNT 2",
    "LPOP k1 2",
    "LPOS k1 v RANK 1",
    "LPUSH k1 a b",
    "LPUSHX k1 a",
    "LRANGE k1 0 -1",
    "LREM k1 0 v",
    "LSET k1 0 v",
    "LTRIM k1 0 1",
    "MGET k1 k2 k3",
    "MIGRATE h 6379 k1 0 100",
    "MIGRATE h 6379 k1 0 100 COPY REPLACE",
    "MIGRATE h 6379 '' 0 100 COPY KEYS k1 k2",
    "MIGRATE h 6379 '' 0 100 AUTH pw KEYS k1",
    "MIGRATE h 6379 '' 0 100 AUTH2 u pw KEYS k1 k2 k3",
    "MOVE k1 1",
    "MSET k1 v1 k2 v2",
    "MSETNX k1 v1 k2 v2",
    "PERSIST k1",
    "PEXPIRE k1 100",
    "PEXPIREAT k1 100",
    "PEXPIRETIME k1",
    "PFADD k1 a b",
    "PFCOUNT k1 k2",
    "PFDEBUG GETREG k1",
    "PFMERGE k1 k2 k3",
    "PSETEX k1 100 v",
    "PTTL k1",
    "RENAME k1 k2",
    "RENAMENX k1 k2",
    "RESTORE k1 0 payload REPLACE",
    "RESTORE-ASKING k1 0 payload",
    "RPOP k1",
    "RPOPLPUSH k1 k2",
    "RPUSH k1 a",
    "RPUSHX k1 a",
    "SADD k1 a b",
    "SCARD k1",
    "SDIFF k1 k2",
    "SDIFFSTORE k1 k2 k3",
    "SET k1 v",
    "SET k1 v NX GET",
    "SET k1 v EX 10 KEEPTTL",
    "SETBIT k1 7 1",
    "SETEX k1 10 v",
    "SETNX k1 v",
    "SETRANGE k1 0 v",
    "SINTER k1 k2",
    "SINTERCARD 2 k1 k2 LIMIT 5",
    "SINTERSTORE k1 k2 k3",
    "SISMEMBER k1 m",
    "SMEMBERS k1",
    "SMISMEMBER k1 a b",
    "SMOVE k1 k2 m",
    "SORT k1",
    "SORT k1 BY w_* GET # GET o_* LIMIT 0 10 ALPHA",
    "SORT k1 STORE k2",
    "SORT k1 LIMIT 0 1 STORE k2 STORE k3",
    "SORT k1 BY store STORE k2",
    "SORT_RO k1 BY w_* GET #",
    "SPOP k1 2",
    "SRANDMEMBER k1 -2",
    "SREM k1 a",
    "SSCAN k1 0 COUNT 10",
    "STRLEN k1",
    "SUBSTR k1 0 1",
    "SUNION k1 k2",
    "SUNIONSTORE k1 k2 k3",
    "TOUCH k1 k2",
    "TTL k1",
    "TYPE k1",
    "UNLINK k1 k2",
    "WATCH k1 k2",
    "XACK k1 g 1-1 2-2",
    "XADD k1 MAXLEN ~ 10 * f v",
    "XAUTOCLAIM k1 g c 10 0-0 COUNT 5",
    "XCLAIM k1 g c 10 1-1 FORCE",
    "XDEL k1 1-1",
    "XLEN k1",
    "XPENDING k1 g - + 10",
    "XRANGE k1 - +",
    "XREAD STREAMS k1 0",
    "XREAD COUNT 5 BLOCK 10 STREAMS k1 k2 0 0",
    "XREAD STREAMS k1 k2 k3 0 0 0",
    "XREADGROUP GROUP g c STREAMS k1 >",
    "XREADGROUP GROUP streams c COUNT 1 NOACK STREAMS k1 k2 > >",
    "XREVRANGE k1 + -",
    "XSETID k1 5-5",
    "XTRIM k1 MAXLEN 10",
    "ZADD k1 NX 1 a",
    "ZCARD k1",
    "ZCOUNT k1 0 1",
    "ZDIFF 2 k1 k2 WITHSCORES",
    "ZDIFFSTORE k1 2 k2 k3",
    "ZINCRBY k1 1 m",
    "ZINTER 2 k1 k2 WEIGHTS 1 2",
    "ZINTERCARD 2 k1 k2 LIMIT 1",
    "ZINTERSTORE k1 2 k2 k3 AGGREGATE MAX",
    "ZLEXCOUNT k1 - +",
    "ZMPOP 2 k1 k2 MIN COUNT 1",
    "ZMSCORE k1 a b",
    "ZPOPMAX k1",
    "ZPOPMIN k1 2",
    "ZRANDMEMBER k1 2",
    "ZRANGE k1 0 -1 REV",
    "ZRANGEBYLEX k1 - +",
    "ZRANGEBYSCORE k1 0 1",
    "ZRANGESTORE k1 k2 0 -1",
    "ZRANK k1 m",
    "ZREM k1 a",
    "ZREMRANGEBYLEX k1 - +",
    "ZREMRANGEBYRANK k1 0 1",
    "ZREMRANGEBYSCORE k1 0 1",
    "ZREVRANGE k1 0 1",
    "ZREVRANGEBYLEX k1 + -",
    "ZREVRANGEBYSCORE k1 1 0",
    "ZREVRANK k1 m",
    "ZSCAN k1 0",
    "ZSCORE k1 m",
    "ZUNION 3 k1 k2 k3",
    "ZUNIONSTORE k1 1 k2",
    "MEMORY USAGE k1 SAMPLES 5",
    "OBJECT ENCODING k1",
    "OBJECT FREQ k1",
    "OBJECT IDLETIME k1",
    "OBJECT REFCOUNT k1",
    "XGROUP CREATE k1 g $ MKSTREAM",
    "XGROUP CREATECONSUMER k1 g c",
    "XGROUP DELCONSUMER k1 g c",
    "XGROUP DESTROY k1 g",
    "XGROUP SETID k1 g 0",
    "XINFO CONSUMERS k1 g",
    "XINFO GROUPS k1",
    "XINFO STREAM k1 FULL",
    // Commands whose only key specs are shard channels (not keys): no keys.
    "SPUBLISH ch m",
    "SSUBSCRIBE ch1 ch2",
    "SUNSUBSCRIBE ch1",
    // Keyless commands.
    "PING hello",
    "CONFIG GET maxmemory",
    "CLIENT SETNAME n",
    "KEYS *",
    "PUBLISH ch m",
];

fn split(sample: &str) -> Vec<Vec<u8>> {
    sample
        .split(' ')
        .map(|arg| {
            if arg == "''" {
                Vec::new()
            } else {
                arg.as_bytes().to_vec()
            }
        })
        .collect()
}

fn has_real_keys(spec: &CommandSpec) -> bool {
    spec.key_specs
        .iter()
        .any(|key_spec| !key_spec.flags.contains(KeySpecFlags::NOT_KEY))
}

#[test]
fn key_indices_match_live_command_getkeys() {
    let mut redis = Live::connect("RKPROXY_TEST_REDIS");
    let mut failures = Vec::new();
    for sample in SAMPLES {
        let args = split(sample);
        let spec = lookup(&args).unwrap_or_else(|e| panic!("{sample}: lookup failed: {e}"));
        let ours: Vec<Vec<u8>> = key_indices(spec, &args)
            .unwrap_or_else(|e| panic!("{sample}: key_indices failed: {e}"))
            .iter()
            .map(|index| args[index].clone())
            .collect();
        let mut request = vec![b"COMMAND".to_vec(), b"GETKEYS".to_vec()];
        request.extend(args.iter().cloned());
        let theirs = match redis.call(&request) {
            Reply::Array(keys) => keys
                .into_iter()
                .map(|key| match key {
                    Reply::Bulk(key) => key,
                    other => panic!("{sample}: GETKEYS returned {other:?}"),
                })
                .collect(),
            // Redis's way of saying "no keys" for these calls.
            Reply::Error(message)
                if message.contains("no key arguments")
                    || message.contains("Invalid arguments") =>
            {
                Vec::new()
            }
            other => panic!("{sample}: COMMAND GETKEYS returned {other:?}"),
        };
        if ours != theirs {
            failures.push(format!(
                "{sample}: ours {:?}, redis {:?}",
                ours.iter()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect::<Vec<_>>(),
                theirs
                    .iter()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "key mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_command_with_keys_has_a_sample() {
    let sampled: BTreeSet<&str> = SAMPLES
        .iter()
        .map(|sample| lookup(&split(sample)).unwrap().name)
        .collect();
    let missing: Vec<&str> = commands::all_commands()
        .iter()
        .flat_map(|spec| std::iter::once(spec).chain(spec.subcommands))
        .filter(|spec| has_real_keys(spec) && !sampled.contains(spec.name))
        .map(|spec| spec.name)
        .collect();
    assert!(
        missing.is_empty(),
        "commands with keys but no GETKEYS sample: {missing:?}"
    );
}

/// Calls that fail before doing anything; our error text must be byte-for-byte Redis's.
const BAD_CALLS: &[&str] = &[
    "GET",
    "GET a b",
    "SET k",
    "CLIENT",
    "CLIENT SETNAME",
    "CLIENT bogus",
    "CONFIG nope",
    "OBJECT",
    "XINFO wat k",
    "EVAL s x",
    "EVAL s -1",
    "EVAL s 2 k1",
    "EVAL_RO s 01 k1",
    "EVALSHA 0123456789012345678901234567890123456789 5 k1",
    "EVALSHA_RO 0123456789012345678901234567890123456789 x",
    "SINTERCARD 0 k1",
    "SINTERCARD x k1",
    "SINTERCARD 3 k1 k2",
    "LMPOP 0 k1 LEFT",
    "LMPOP 2 k1 LEFT",
    "LMPOP x k1 LEFT",
    "ZMPOP -1 k1 MIN",
    "BLMPOP x 0 k1 LEFT",
    "BLMPOP 0 5 k1 LEFT",
    "BZMPOP 0 0 k1 MIN",
    "ZUNIONSTORE d 0 k1",
    "ZUNIONSTORE d 3 k1",
    "ZINTERSTORE d x k1",
    "ZDIFFSTORE d -1 k1",
    "ZUNION 0 k1",
    "ZINTER 3 k1",
    "ZDIFF x k1",
    "ZINTERCARD 0 k1",
    "ZINTERCARD 4 k1",
];

#[test]
fn error_texts_match_live_redis() {
    let mut redis = Live::connect("RKPROXY_TEST_REDIS");
    let mut failures = Vec::new();
    for call in BAD_CALLS {
        let args = split(call);
        let ours = match lookup(&args) {
            Err(error) => error.to_string(),
            Ok(spec) => match key_indices(spec, &args) {
                Err(error) => error.to_string(),
                Ok(keys) => panic!("{call}: expected an error, got keys {keys:?}"),
            },
        };
        let theirs = match redis.call(&args) {
            Reply::Error(message) => message,
            other => panic!("{call}: redis did not fail: {other:?}"),
        };
        if ours != theirs {
            failures.push(format!("{call}: ours {ours:?}, redis {theirs:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "error text mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn table_matches_live_command_info() {
    let mut redis = Live::connect("RKPROXY_TEST_REDIS");
    let Reply::Array(names) = redis.call(&["COMMAND", "LIST"]) else {
        panic!("COMMAND LIST failed");
    };
    let live: BTreeSet<String> = names
        .into_iter()
        .map(|name| match name {
            Reply::Bulk(name) => String::from_utf8(name).unwrap(),
            other => panic!("COMMAND LIST returned {other:?}"),
        })
        .collect();
    let ours: BTreeSet<String> = commands::all_commands()
        .iter()
        .flat_map(|spec| std::iter::once(spec).chain(spec.subcommands))
        .map(|spec| spec.name.to_owned())
        .collect();
    assert_eq!(
        ours, live,
        "the generated table differs from the live server; run cargo xtask codegen"
    );
}
