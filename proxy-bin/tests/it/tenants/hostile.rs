//! A hostile tenant against the commands that take no key (issue 12): tenants `a` and `b` (key prefixes `a:`
//! and `b:`) and `c` (a db of its own, no prefix) share one standalone pool; `a`, then `c`, sends every command
//! of the table that names no key, with arguments an attacker would choose, and must neither see nor change
//! anything of `b`.
//!
//! The sweep is a non-interference test: the attacker runs every request once while `b` has nothing, and once
//! while `b` has keys, channel, pattern and shard-channel subscribers, a client blocked in BLPOP and an idle
//! connection. Every reply it gets must be the same both times (what `b` does cannot show through), must not
//! contain `b`'s names or values, and must be either a refusal or come from a command in tenant-policy's list
//! of commands without keys that tenants may run (each listed with its reason). Afterwards `b`'s keys,
//! subscriptions, blocked client and connection are checked, and the server's configuration, users, functions
//! and databases.
//! Each request runs on its own connection, once as it is and once inside MULTI ... EXEC.
//! CLIENT LIST and CLIENT KILL are answered by the proxy from the attacker's own connections: their replies
//! vary with them, and are checked to never name another tenant (`user=`) nor show `b`'s connections'
//! addresses or names.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use cluster_router::commands::{added_commands, all_commands, CommandSpec, KeySpecFlags};
use redis::AsyncCommands;

use crate::support::*;

/// Strings only `b` uses: one of them in a reply to the attacker is a leak (unless the attacker sent it).
const B_MARKERS: &[&str] = &[
    "b-secret", "bkey", "bchan", "bshard", "bpat", "bblock", "bconn",
];

/// Commands whose replies change by themselves from one call to the next: their replies are compared after
/// [`normalize`] removes what changes.
const VARIES_BY_ITSELF: &[(&str, &str)] = &[
    ("time", "the server's clock"),
    ("lolwut", "random art"),
    ("client|id", "this connection's id"),
    (
        "client|info",
        "this connection's id, address, age and buffers",
    ),
    ("hello", "this connection's id"),
    (
        "info",
        "uptime, the connection count (INFO's own test checks it) and the tenant's own totals (the stats tests check \
         them)",
    ),
    ("slowlog|get", "the tenant's own slow requests (the slow-log tests check whose entries it shows)"),
    ("slowlog|len", "the tenant's own slow requests"),
    (
        "client|list",
        "the tenant's own connections: their ids, addresses, ages and last commands ([`leaks_of`] checks that no \
         other tenant's show)",
    ),
    (
        "client|kill",
        "how many of the tenant's own connections it closed (b's are checked open afterwards)",
    ),
];

/// Tenants `a` and `b` (prefixed) and the admin `boss` on `pool`, and with `with_c` also `c` (db 1, the first
/// free one, without a prefix).
fn tenants_toml(pool: &str, with_c: bool) -> String {
    let c = if with_c {
        format!("[tenants.c]\npassword = 'c-pw'\npool = '{pool}'\ndb = 'auto'\n")
    } else {
        String::new()
    };
    format!(
        "[tenants.a]\npassword = 'a-pw'\npool = '{pool}'\nkey_prefix = 'a:'\n\
         [tenants.b]\npassword = 'b-pw'\npool = '{pool}'\nkey_prefix = 'b:'\n\
         [tenants.boss]\npassword = 'boss-pw'\npool = '{pool}'\nadmin = true\n{c}"
    )
}

/// Tenants `a`, `b`, `c` and `boss` on the standalone pool `main`.
async fn hostile_proxy(redis: &OwnRedis) -> rkproxy::Proxy {
    let addr = redis.addr();
    start_proxy_toml(&format!(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{addr}']\n{}",
        tenants_toml("main", true)
    ))
    .await
}

/// The servers behind the pool, to look at directly.
#[derive(Clone)]
struct Backend {
    nodes: Vec<String>,
    databases: u32,
    standalone: bool,
}

impl Backend {
    fn standalone(redis: &OwnRedis) -> Backend {
        Backend {
            nodes: vec![redis.addr()],
            databases: 16,
            standalone: true,
        }
    }

    fn cluster(cluster: &OwnCluster) -> Backend {
        Backend {
            nodes: cluster.addrs(),
            databases: 1,
            standalone: false,
        }
    }

    /// Clients blocked in a command, on every node.
    fn blocked_clients(&self) -> usize {
        self.nodes
            .iter()
            .map(|node| {
                let mut raw = RawClient::connect(node.parse().unwrap());
                raw.send(b"INFO clients\r\n");
                let info = read_reply(&mut raw).unwrap_or_default();
                info.lines()
                    .find_map(|line| line.strip_prefix("blocked_clients:"))
                    .and_then(|count| count.trim().parse::<usize>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }
}

/// The tenant that attacks: `a` (prefix `a:`) or `c` (a db of its own, no prefix).
#[derive(Clone, Copy, Debug)]
struct Attacker {
    user: &'static str,
    password: &'static str,
}

const ATTACKERS: [Attacker; 2] = [
    Attacker {
        user: "a",
        password: "a-pw",
    },
    Attacker {
        user: "c",
        password: "c-pw",
    },
];

/// One request of the sweep.
#[derive(Clone, Debug)]
struct Probe {
    /// The command table's name (`client|kill`).
    name: &'static str,
    args: Vec<String>,
}

/// Whether a command names keys (a key spec that is not flagged `not_key`; channels of SSUBSCRIBE and friends
/// are `not_key`).
fn takes_keys(spec: &CommandSpec) -> bool {
    spec.key_specs
        .iter()
        .any(|key_spec| !key_spec.flags.contains(KeySpecFlags::NOT_KEY))
}

/// Every command and subcommand without keys, and the containers that run without a subcommand (COMMAND).
fn keyless_specs() -> Vec<&'static CommandSpec> {
    let mut specs = Vec::new();
    for spec in all_commands() {
        if spec.is_container() {
            if spec.arity_accepts(1) {
                specs.push(spec);
            }
            specs.extend(spec.subcommands.iter().filter(|sub| !takes_keys(sub)));
        } else if !takes_keys(spec) {
            specs.push(spec);
        }
    }
    specs.extend(added_commands().iter().filter(|spec| !takes_keys(spec)));
    specs
}

/// The arguments a hostile tenant tries, for the commands where the choice matters; `None`: a request of
/// the right arity (see [`plain_args`]).
fn hostile_variants(name: &str) -> Option<&'static [&'static [&'static str]]> {
    Some(match name {
        "select" => &[&["SELECT", "1"], &["SELECT", "0"]],
        "hello" => &[&["HELLO", "3"], &["HELLO", "2"]],
        "client|reply" => &[&["CLIENT", "REPLY", "ON"]],
        "client|kill" => &[
            &["CLIENT", "KILL", "TYPE", "normal"],
            &["CLIENT", "KILL", "TYPE", "pubsub"],
            &["CLIENT", "KILL", "USER", "default"],
            &["CLIENT", "KILL", "ID", "5"],
            &["CLIENT", "KILL", "127.0.0.1:1"],
        ],
        "client|list" => &[&["CLIENT", "LIST"], &["CLIENT", "LIST", "TYPE", "pubsub"]],
        "client|unblock" => &[
            &["CLIENT", "UNBLOCK", "5", "ERROR"],
            &["CLIENT", "UNBLOCK", "6"],
        ],
        "client|pause" => &[&["CLIENT", "PAUSE", "200", "WRITE"]],
        "client|no-evict" => &[&["CLIENT", "NO-EVICT", "ON"]],
        "client|tracking" => &[
            &["CLIENT", "TRACKING", "ON", "BCAST"],
            &["CLIENT", "TRACKING", "OFF"],
        ],
        "debug" => &[
            &["DEBUG", "SLEEP", "0"],
            &["DEBUG", "OBJECT", "b:bkey-0"],
            &["DEBUG", "JMAP"],
        ],
        "latency|history" => &[&["LATENCY", "HISTORY", "command"]],
        "latency|graph" => &[&["LATENCY", "GRAPH", "command"]],
        "wait" => &[&["WAIT", "0", "0"]],
        "pubsub|channels" => &[
            &["PUBSUB", "CHANNELS"],
            &["PUBSUB", "CHANNELS", "*"],
            &["PUBSUB", "CHANNELS", "b:*"],
            &["PUBSUB", "CHANNELS", "?:*"],
        ],
        "pubsub|shardchannels" => &[
            &["PUBSUB", "SHARDCHANNELS"],
            &["PUBSUB", "SHARDCHANNELS", "*"],
            &["PUBSUB", "SHARDCHANNELS", "b:*"],
        ],
        "pubsub|numsub" => &[&["PUBSUB", "NUMSUB", "news", "b:news", "*"]],
        "pubsub|shardnumsub" => &[&["PUBSUB", "SHARDNUMSUB", "{bshard}1", "b:{bshard}1"]],
        "publish" => &[
            &["PUBLISH", "news", "from-a"],
            &["PUBLISH", "b:news", "from-a"],
        ],
        "spublish" => &[
            &["SPUBLISH", "{bshard}1", "from-a"],
            &["SPUBLISH", "b:{bshard}1", "from-a"],
        ],
        "subscribe" => &[&["SUBSCRIBE", "news", "b:news"]],
        "psubscribe" => &[&["PSUBSCRIBE", "*", "b:*", "n*"]],
        "ssubscribe" => &[&["SSUBSCRIBE", "{bshard}1"], &["SSUBSCRIBE", "b:{bshard}1"]],
        "keys" => &[&["KEYS", "*"], &["KEYS", "b:*"], &["KEYS", "\\b*"]],
        "scan" => &[
            &["SCAN", "0", "COUNT", "100000"],
            &["SCAN", "0", "MATCH", "b:*", "COUNT", "100000"],
            &["SCAN", "0", "COUNT", "100000", "TYPE", "string"],
        ],
        "flushdb" => &[&["FLUSHDB"], &["FLUSHDB", "ASYNC"]],
        "flushall" => &[&["FLUSHALL"], &["FLUSHALL", "SYNC"]],
        "swapdb" => &[&["SWAPDB", "0", "1"]],
        "config|get" => &[&["CONFIG", "GET", "*"]],
        "config|set" => &[&["CONFIG", "SET", "maxmemory", "1"]],
        "shutdown" => &[&["SHUTDOWN", "NOSAVE"]],
        "replicaof" => &[&["REPLICAOF", "127.0.0.1", "1"]],
        "slaveof" => &[&["SLAVEOF", "127.0.0.1", "1"]],
        "acl|getuser" => &[&["ACL", "GETUSER", "default"]],
        "acl|setuser" => &[&["ACL", "SETUSER", "default", "resetpass"]],
        "acl|dryrun" => &[&["ACL", "DRYRUN", "default", "GET", "b:bkey-0"]],
        "module|load" => &[&["MODULE", "LOAD", "/nonexistent/module.so"]],
        "slowlog|get" => &[&["SLOWLOG", "GET", "128"]],
        "info" => &[&["INFO"], &["INFO", "keyspace"], &["INFO", "everything"]],
        "command|info" => &[&["COMMAND", "INFO", "get"]],
        "command|docs" => &[&["COMMAND", "DOCS", "get"]],
        "command|getkeys" => &[&["COMMAND", "GETKEYS", "get", "b:bkey-0"]],
        "echo" => &[&["ECHO", "hi"]],
        // Ending the connection or leaving replies off would end the probe; these are answered by the proxy
        // from this connection's own state.
        "client|setname" => &[&["CLIENT", "SETNAME", "hostile"]],
        "client|setinfo" => &[&["CLIENT", "SETINFO", "LIB-NAME", "hostile"]],
        _ => return None,
    })
}

/// A request of the right arity: the name (and subcommand), then `x` arguments.
fn plain_args(spec: &CommandSpec) -> Vec<String> {
    let mut args: Vec<String> = spec.name.split('|').map(str::to_ascii_uppercase).collect();
    let arity = spec.arity.unsigned_abs() as usize;
    while args.len() < arity {
        args.push("x".to_owned());
    }
    args
}

fn probes(attacker: Attacker) -> Vec<Probe> {
    let mut probes = Vec::new();
    for spec in keyless_specs() {
        if spec.name == "auth" {
            probes.push(Probe {
                name: spec.name,
                args: vec![
                    "AUTH".into(),
                    attacker.user.into(),
                    attacker.password.into(),
                ],
            });
            continue;
        }
        match hostile_variants(spec.name) {
            Some(variants) => probes.extend(variants.iter().map(|args| Probe {
                name: spec.name,
                args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            })),
            None => probes.push(Probe {
                name: spec.name,
                args: plain_args(spec),
            }),
        }
    }
    probes
}

fn encode(args: &[String]) -> Vec<u8> {
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    request
}

/// Reads one complete RESP2/RESP3 reply, as its text; `None` when the connection closed first.
fn read_reply(raw: &mut RawClient) -> Option<String> {
    let line = raw.read_line();
    if line.is_empty() {
        return None;
    }
    let mut text = line.clone();
    let count = |line: &str| line[1..].trim_end().parse::<i64>().unwrap_or(-1);
    match line.as_bytes()[0] {
        b'$' | b'=' | b'!' => {
            let Ok(len) = usize::try_from(count(&line)) else {
                return Some(text);
            };
            let mut body = String::new();
            while body.len() < len + 2 {
                let more = raw.read_line();
                if more.is_empty() {
                    return None;
                }
                body.push_str(&more);
            }
            text.push_str(&body);
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let per_entry = if matches!(line.as_bytes()[0], b'%' | b'|') {
                2
            } else {
                1
            };
            for _ in 0..count(&line).max(0) * per_entry {
                text.push_str(&read_reply(raw)?);
            }
            if line.as_bytes()[0] == b'|' {
                text.push_str(&read_reply(raw)?);
            }
        }
        _ => {}
    }
    Some(text)
}

/// The reply to the PING sent after each probe, in every state a probe can leave the connection in: subscribed
/// (RESP2 or RESP3), or in a transaction (a MULTI sent on its own).
fn is_ping_reply(reply: &str, transaction_open: bool) -> bool {
    match reply {
        "+PONG\r\n" | "*2\r\n$4\r\npong\r\n$0\r\n\r\n" | ">2\r\n$4\r\npong\r\n$0\r\n\r\n" => true,
        "+QUEUED\r\n" => transaction_open,
        _ => false,
    }
}

/// Runs one probe as tenant `a` on a new connection (inside MULTI ... EXEC when `in_multi`), and returns every
/// reply it got, in order.
fn run_probe(addr: SocketAddr, attacker: Attacker, probe: &Probe, in_multi: bool) -> Vec<String> {
    let mut raw = RawClient::connect(addr);
    let mut request = format!("AUTH {} {}\r\n", attacker.user, attacker.password).into_bytes();
    if in_multi {
        request.extend_from_slice(b"MULTI\r\n");
    }
    request.extend_from_slice(&encode(&probe.args));
    if in_multi {
        request.extend_from_slice(b"EXEC\r\n");
    }
    request.extend_from_slice(b"PING\r\n");
    raw.send(&request);
    assert_eq!(
        read_reply(&mut raw).as_deref(),
        Some("+OK\r\n"),
        "{probe:?}"
    );
    if in_multi {
        assert_eq!(
            read_reply(&mut raw).as_deref(),
            Some("+OK\r\n"),
            "{probe:?}"
        );
    }
    let mut replies = Vec::new();
    while let Some(reply) = read_reply(&mut raw) {
        // MULTI sent on its own leaves a transaction open; its own +OK comes first.
        let transaction_open = !in_multi && probe.name == "multi" && !replies.is_empty();
        if is_ping_reply(&reply, transaction_open) {
            break;
        }
        replies.push(reply);
    }
    end_probe(&mut raw);
    replies
}

/// RESET, which ends whatever the probe left (a subscription, a transaction) on the server before `+RESET`
/// comes back, so that no later probe sees a subscription of this one.
fn end_probe(raw: &mut RawClient) {
    raw.send(b"RESET\r\n");
    while let Some(reply) = read_reply(raw) {
        if reply == "+RESET\r\n" {
            return;
        }
    }
}

/// Whether the proxy refused the request without running it: no rights, a command it does not serve, or one
/// it cannot queue in a transaction.
fn is_refusal(reply: &str) -> bool {
    reply.starts_with("-NOPERM ")
        || reply.starts_with("-ERR unknown or unsupported command")
        || reply.contains("cannot be queued in a transaction through rkproxy")
}

/// The reply with what changes by itself removed (see [`VARIES_BY_ITSELF`]), its lines sorted (the order of
/// KEYS and SCAN replies follows the server's hash table, which others' keys resize).
fn normalize(name: &str, replies: &[String]) -> String {
    let text = replies.concat();
    if !VARIES_BY_ITSELF.iter().any(|(varies, _)| *varies == name) {
        let mut lines: Vec<&str> = text.split_inclusive("\r\n").collect();
        lines.sort_unstable();
        return lines.concat();
    }
    if name == "info" {
        let mut lines: Vec<&str> = text
            .split_inclusive("\r\n")
            .filter(|line| {
                !line.starts_with('$')
                    && !line.starts_with("uptime_in_")
                    && !line.starts_with("connected_clients:")
                    && !line.starts_with("total_")
            })
            .collect();
        lines.sort_unstable();
        return lines.concat();
    }
    // Only whether it succeeded.
    text.chars().next().map(String::from).unwrap_or_default()
}

/// Runs every probe, as it is and inside MULTI; the replies by (probe index, in MULTI).
async fn sweep(
    addr: SocketAddr,
    attacker: Attacker,
    probes: &[Probe],
) -> BTreeMap<(usize, bool), Vec<String>> {
    let probes = probes.to_vec();
    blocking(move || {
        let mut replies = BTreeMap::new();
        for (index, probe) in probes.iter().enumerate() {
            for in_multi in [false, true] {
                replies.insert(
                    (index, in_multi),
                    run_probe(addr, attacker, probe, in_multi),
                );
            }
        }
        replies
    })
    .await
}

/// Everything of `b` that an attacker might disturb, kept open during the second sweeps.
struct TenantB {
    subscriber: RawClient,
    pattern_subscriber: RawClient,
    shard_subscriber: RawClient,
    blocked: RawClient,
    idle: RawClient,
    keys: Vec<String>,
}

/// Authenticates as `b`, sends `command` and reads `replies` replies.
fn b_client(addr: SocketAddr, command: &str, replies: usize) -> RawClient {
    let mut raw = RawClient::connect(addr);
    raw.send(format!("AUTH b b-pw\r\n{command}\r\n").as_bytes());
    assert_eq!(read_reply(&mut raw).as_deref(), Some("+OK\r\n"));
    for _ in 0..replies {
        read_reply(&mut raw).unwrap();
    }
    raw
}

async fn populate_b(proxy: &rkproxy::Proxy, backend: &Backend) -> TenantB {
    let mut b = as_tenant(proxy, "b", "b-pw").await;
    let keys: Vec<String> = (0..40).map(|i| format!("bkey-{i}")).collect();
    for key in &keys {
        let _: () = b.set(key, format!("b-secret-{key}")).await.unwrap();
    }
    let addr = proxy.local_addr();
    let b = blocking(move || {
        let blocked = {
            let mut raw = RawClient::connect(addr);
            raw.send(b"AUTH b b-pw\r\nBLPOP bblock 0\r\n");
            assert_eq!(read_reply(&mut raw).as_deref(), Some("+OK\r\n"));
            raw
        };
        TenantB {
            subscriber: b_client(addr, "SUBSCRIBE bchan news", 2),
            pattern_subscriber: b_client(addr, "PSUBSCRIBE bpat* *", 2),
            // One hash tag: on a cluster, shard channels of one SSUBSCRIBE must share a slot.
            shard_subscriber: b_client(addr, "SSUBSCRIBE {bshard}1 {bshard}2", 2),
            blocked,
            idle: b_client(addr, "CLIENT SETNAME bconn-idle", 1),
            keys,
        }
    })
    .await;
    // The blocked client is blocked on the server before the sweep starts.
    for _ in 0..500 {
        let backend = backend.clone();
        if blocking(move || backend.blocked_clients() == 1).await {
            return b;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("b's BLPOP did not block");
}

/// After the sweep: `b`'s subscribers got only `b`'s own messages, its blocked client was not released, its
/// idle connection is open, and its keys hold their values.
async fn check_b_untouched(proxy: &rkproxy::Proxy, b: TenantB) {
    let mut publisher = as_tenant(proxy, "b", "b-pw").await;
    for channel in ["bchan", "news", "bpat-1"] {
        let _: i64 = publisher.publish(channel, "from-b").await.unwrap();
    }
    let _: i64 = redis::cmd("SPUBLISH")
        .arg("{bshard}1")
        .arg("from-b")
        .query_async(&mut publisher)
        .await
        .unwrap();
    let _: i64 = publisher.rpush("bblock", "from-b").await.unwrap();
    let keys = b.keys.clone();
    let TenantB {
        mut subscriber,
        mut pattern_subscriber,
        mut shard_subscriber,
        mut blocked,
        mut idle,
        ..
    } = b;
    blocking(move || {
        // Nothing of the attacker's PUBLISH/SPUBLISH arrived before `b`'s own messages (in any order: on a
        // cluster they may come through different nodes).
        let mut messages: Vec<String> = (0..2)
            .map(|_| read_reply(&mut subscriber).unwrap())
            .collect();
        messages.sort();
        assert_eq!(
            messages,
            [
                "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$6\r\nfrom-b\r\n",
                "*3\r\n$7\r\nmessage\r\n$5\r\nbchan\r\n$6\r\nfrom-b\r\n",
            ]
        );
        // `*` matches the three messages, `bpat*` one of them.
        for _ in 0..4 {
            let message = read_reply(&mut pattern_subscriber).unwrap();
            assert!(message.starts_with("*4\r\n$8\r\npmessage\r\n"), "{message}");
            assert!(message.ends_with("$6\r\nfrom-b\r\n"), "{message}");
        }
        let message = read_reply(&mut shard_subscriber).unwrap();
        assert_eq!(
            message,
            "*3\r\n$8\r\nsmessage\r\n$9\r\n{bshard}1\r\n$6\r\nfrom-b\r\n"
        );
        let popped = read_reply(&mut blocked).unwrap();
        assert_eq!(popped, "*2\r\n$6\r\nbblock\r\n$6\r\nfrom-b\r\n");
        idle.send(b"PING\r\n");
        assert_eq!(read_reply(&mut idle).as_deref(), Some("+PONG\r\n"));
    })
    .await;
    let mut b = as_tenant(proxy, "b", "b-pw").await;
    for key in &keys {
        let value: Option<String> = b.get(key).await.unwrap();
        assert_eq!(value, Some(format!("b-secret-{key}")), "b's {key}");
    }
}

/// What the servers hold that a tenant must not change: every database's keys, the configuration, the ACL
/// users, the function libraries, and on a standalone server the role and the last save.
async fn server_state(backend: &Backend) -> Vec<String> {
    let mut state = Vec::new();
    for node in &backend.nodes {
        let mut server = direct(node, 0).await;
        for db in 0..backend.databases {
            let mut conn = direct(node, db).await;
            let mut keys: Vec<String> = conn.keys("*").await.unwrap();
            keys.sort();
            state.push(format!("{node} db{db}: {keys:?}"));
        }
        let mut commands = vec![
            &["CONFIG", "GET", "*"][..],
            &["ACL", "LIST"],
            &["FUNCTION", "LIST"],
        ];
        if backend.standalone {
            // A cluster node's role carries replication offsets, which move by themselves.
            commands.extend([&["ROLE"][..], &["LASTSAVE"]]);
        }
        for command in commands {
            let mut cmd = redis::cmd(command[0]);
            for arg in &command[1..] {
                cmd.arg(*arg);
            }
            let value: redis::Value = cmd.query_async(&mut server).await.unwrap();
            let mut text = format!("{value:?}");
            if command[0] == "CONFIG" {
                // CONFIG GET * answers in hash-table order: compare it as a set of pairs.
                let mut pairs: Vec<String> = match value {
                    redis::Value::Array(items) => {
                        items.chunks(2).map(|pair| format!("{pair:?}")).collect()
                    }
                    other => vec![format!("{other:?}")],
                };
                pairs.sort();
                text = pairs.concat();
            }
            state.push(format!("{node} {command:?}: {text}"));
        }
    }
    state
}

/// What is wrong with one attacker's replies (see the module docs); adds the commands that ran, or were
/// refused only for the key prefix, to `ran`.
fn problems_of(
    attacker: Attacker,
    probes: &[Probe],
    before: &BTreeMap<(usize, bool), Vec<String>>,
    during: &BTreeMap<(usize, bool), Vec<String>>,
    b_addresses: &[String],
    ran: &mut std::collections::BTreeSet<&'static str>,
) -> Vec<String> {
    let allowed = tenant_policy::KEYLESS_COMMANDS_FOR_TENANTS;
    let mut problems = Vec::new();
    let who = attacker.user;
    for (index, probe) in probes.iter().enumerate() {
        for in_multi in [false, true] {
            let replies = &during[&(index, in_multi)];
            let first = replies.first().map(String::as_str).unwrap_or("");
            let sent = probe.args.concat();
            let text = replies.concat();
            for marker in B_MARKERS {
                if text.contains(marker) && !sent.contains(marker) {
                    problems.push(format!(
                        "{who}: {probe:?} (multi {in_multi}) shows b's {marker}: {text:?}"
                    ));
                }
            }
            for leak in leaks_of(who, &text, b_addresses) {
                problems.push(format!(
                    "{who}: {probe:?} (multi {in_multi}) shows {leak}: {text:?}"
                ));
            }
            let earlier = &before[&(index, in_multi)];
            if normalize(probe.name, earlier) != normalize(probe.name, replies) {
                problems.push(format!(
                    "{who}: {probe:?} (multi {in_multi}) answers differently once b has data: \
                     {earlier:?} then {replies:?}"
                ));
            }
            if first.contains("has a key prefix and") {
                // Listed for tenants without a key prefix, refused under one.
                ran.insert(probe.name);
            }
            if is_refusal(first) {
                continue;
            }
            if !in_multi {
                ran.insert(probe.name);
            }
            if !allowed.iter().any(|(name, _)| *name == probe.name) {
                problems.push(format!(
                    "{who}: {probe:?} (multi {in_multi}) ran for a tenant without being listed as \
                     safe: {text:?}"
                ));
            }
        }
    }
    problems
}

/// What a reply to `attacker` shows of other tenants' connections (CLIENT LIST, CLIENT KILL, CLIENT INFO): a
/// `user=` other than the attacker, or the address of one of `b`'s connections.
fn leaks_of(attacker: &str, text: &str, b_addresses: &[String]) -> Vec<String> {
    let mut leaks: Vec<String> = text
        .split(|c: char| c.is_whitespace())
        .filter_map(|field| field.strip_prefix("user="))
        .filter(|user| *user != attacker)
        .map(|user| format!("the connection of user {user}"))
        .collect();
    for address in b_addresses {
        let shown = [
            format!("={address} "),
            format!("={address}\r"),
            format!("={address}\n"),
        ];
        if shown.iter().any(|field| text.contains(field.as_str())) {
            leaks.push(format!("b's connection {address}"));
        }
    }
    leaks
}

/// The client addresses of `b`'s connections, as the admin's CLIENT LIST shows them.
async fn b_addresses(addr: SocketAddr) -> Vec<String> {
    blocking(move || {
        let mut boss = RawClient::connect(addr);
        boss.send(b"AUTH boss boss-pw\r\nCLIENT LIST\r\n");
        assert_eq!(read_reply(&mut boss).as_deref(), Some("+OK\r\n"));
        let list = read_reply(&mut boss).unwrap();
        let addresses: Vec<String> = list
            .lines()
            .filter(|line| line.split(' ').any(|field| field == "user=b"))
            .filter_map(|line| {
                line.split(' ')
                    .find_map(|field| field.strip_prefix("addr="))
                    .map(str::to_owned)
            })
            .collect();
        // The subscribers, the blocked client and the idle connection.
        assert!(addresses.len() >= 5, "{list}");
        addresses
    })
    .await
}

/// The sweep (see the module docs) by `attackers` against `b`, through `proxy` in front of `backend`.
async fn sweep_against_b(proxy: &rkproxy::Proxy, backend: &Backend, attackers: &[Attacker]) {
    let addr = proxy.local_addr();
    let probes: Vec<Vec<Probe>> = attackers.iter().map(|attacker| probes(*attacker)).collect();
    assert!(probes[0].len() > 150, "only {} probes", probes[0].len());
    let mut before = Vec::new();
    for (attacker, probes) in attackers.iter().zip(&probes) {
        before.push(sweep(addr, *attacker, probes).await);
    }
    let b = populate_b(proxy, backend).await;
    let b_addresses = b_addresses(addr).await;
    let server_before = server_state(backend).await;
    let mut during = Vec::new();
    for (attacker, probes) in attackers.iter().zip(&probes) {
        during.push(sweep(addr, *attacker, probes).await);
    }
    let server_after = server_state(backend).await;

    let mut ran = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for (index, attacker) in attackers.iter().enumerate() {
        problems.extend(problems_of(
            *attacker,
            &probes[index],
            &before[index],
            &during[index],
            &b_addresses,
            &mut ran,
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    check_b_untouched(proxy, b).await;
    assert_eq!(server_before, server_after, "the server was changed");
    // The list is not stale: every listed command ran, or was refused only for the key prefix (scripts are
    // refused on this shared pool).
    let script_commands = ["function|", "script|"];
    for (name, _) in tenant_policy::KEYLESS_COMMANDS_FOR_TENANTS {
        if script_commands
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            continue;
        }
        assert!(
            ran.contains(name),
            "{name} is listed as safe but did not run"
        );
    }
}

/// The sweep on a standalone pool, by `a` (prefixed like `b`) and by `c` (a db of its own, no prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_without_keys_lets_a_tenant_see_or_touch_another_tenant() {
    let redis = blocking(|| OwnRedis::start(&[])).await;
    let proxy = hostile_proxy(&redis).await;
    // The attackers have keys of their own, so their replies are not all empty (`c` one, so that its
    // RANDOMKEY does not vary by itself).
    let mut a = as_tenant(&proxy, "a", "a-pw").await;
    for key in ["mine-1", "mine-2"] {
        let _: () = a.set(key, "a-value").await.unwrap();
    }
    let mut c = as_tenant(&proxy, "c", "c-pw").await;
    let _: () = c.set("mine-1", "c-value").await.unwrap();
    sweep_against_b(&proxy, &Backend::standalone(&redis), &ATTACKERS).await;
    proxy.shutdown().await;
}

/// The sweep on a cluster pool, by `a` (a cluster has no databases for `c`): there the proxy sends keyless
/// commands to every node or master and merges the replies (PUBSUB CHANNELS, KEYS, SCAN, ...), and `b` must not
/// show through the merged replies either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_pool_no_command_without_keys_lets_a_tenant_see_or_touch_another_tenant() {
    let cluster = blocking(|| OwnCluster::start(5000)).await;
    let proxy = start_cluster_proxy(&cluster.addrs(), &tenants_toml("c", false)).await;
    let mut a = as_tenant(&proxy, "a", "a-pw").await;
    for key in ["mine-1", "mine-2"] {
        let _: () = a.set(key, "a-value").await.unwrap();
    }
    sweep_against_b(&proxy, &Backend::cluster(&cluster), &ATTACKERS[..1]).await;
    proxy.shutdown().await;
}

/// INFO for a tenant that is not an admin counts only that tenant's connections: the proxy's total would tell
/// it how many connections the other tenants have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_counts_only_the_tenants_own_connections() {
    let redis = blocking(|| OwnRedis::start(&[])).await;
    let proxy = hostile_proxy(&redis).await;
    let addr = proxy.local_addr();
    let mut a = as_tenant(&proxy, "a", "a-pw").await;
    let alone: String = redis::cmd("INFO").query_async(&mut a).await.unwrap();
    let b_connections = blocking(move || {
        (0..5)
            .map(|_| b_client(addr, "PING", 1))
            .collect::<Vec<_>>()
    })
    .await;
    let with_b: String = redis::cmd("INFO").query_async(&mut a).await.unwrap();
    let clients = |info: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix("connected_clients:"))
            .map(str::to_owned)
    };
    assert_eq!(clients(&alone).as_deref(), Some("1"), "{alone}");
    assert_eq!(clients(&with_b).as_deref(), Some("1"), "{with_b}");
    // The admin sees the backend's INFO; the keyspace of a prefixed tenant cannot be counted, so it is empty.
    assert!(with_b.contains("# Keyspace\r\n"), "{with_b}");
    assert!(!with_b.contains("db0:"), "{with_b}");
    drop(b_connections);
    proxy.shutdown().await;
}

/// Under a key prefix, DBSIZE and PUBSUB NUMPAT would count every tenant's keys and patterns: refused with the
/// reason. PUBSUB CHANNELS and NUMSUB show the tenant's own channels, without the prefix, and none of another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counting_commands_show_only_the_tenants_own_keys_and_channels() {
    let redis = blocking(|| OwnRedis::start(&[])).await;
    let proxy = hostile_proxy(&redis).await;
    let addr = proxy.local_addr();
    let (a_subscriber, b_subscriber) = blocking(move || {
        let mut a = RawClient::connect(addr);
        a.send(b"AUTH a a-pw\r\nSUBSCRIBE mine\r\nPSUBSCRIBE mine*\r\n");
        for _ in 0..3 {
            read_reply(&mut a).unwrap();
        }
        (a, b_client(addr, "SUBSCRIBE theirs", 1))
    })
    .await;
    let mut a = as_tenant(&proxy, "a", "a-pw").await;
    for (command, what) in [
        (
            &["DBSIZE"][..],
            "DBSIZE would count every tenant's keys; use SCAN",
        ),
        (
            &["PUBSUB", "NUMPAT"][..],
            "PUBSUB NUMPAT would count every tenant's patterns",
        ),
    ] {
        let mut cmd = redis::cmd(command[0]);
        for arg in &command[1..] {
            cmd.arg(*arg);
        }
        let error = cmd.query_async::<i64>(&mut a).await.unwrap_err();
        let name = command.join("|").to_ascii_lowercase();
        assert_eq!(error.code(), Some("NOPERM"), "{error}");
        assert_eq!(
            error.detail(),
            Some(
                format!(
                    "this user has no permissions to run the '{name}' command (tenant 'a' has a key prefix \
                     and {what})"
                )
                .as_str()
            ),
        );
    }
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query_async(&mut a)
        .await
        .unwrap();
    assert_eq!(channels, vec!["mine".to_owned()]);
    let counts: Vec<redis::Value> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("mine")
        .arg("theirs")
        .arg("b:theirs")
        .query_async(&mut a)
        .await
        .unwrap();
    assert_eq!(
        format!("{counts:?}"),
        format!(
            "{:?}",
            [
                redis::Value::BulkString(b"mine".to_vec()),
                redis::Value::Int(1),
                redis::Value::BulkString(b"theirs".to_vec()),
                redis::Value::Int(0),
                redis::Value::BulkString(b"b:theirs".to_vec()),
                redis::Value::Int(0),
            ]
        )
    );
    drop((a_subscriber, b_subscriber));
    proxy.shutdown().await;
}
