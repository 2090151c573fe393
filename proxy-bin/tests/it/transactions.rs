//! Transactions as Redis 7 runs them, checked differentially: the same raw command sequences go to redis-server
//! directly and through the proxy, and every reply must be the same bytes (standalone and cluster pools). Then
//! the proxy's own refusals inside MULTI (they abort the transaction, nothing is written), leaving pub/sub mode
//! once every subscription ended, and QUIT on a dedicated connection.

use std::time::Duration;

use crate::support::*;

/// A small deterministic generator (xorshift), so a failing case can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// One command of a case: which connection sends it, and its arguments (`@x` names key `x` of the case).
#[derive(Clone, Debug)]
struct Step {
    other: bool,
    args: Vec<&'static str>,
}

/// HELLO 3 switches the main connection to RESP3 (its reply is the proxy's own, so it is not compared).
fn hello_3() -> Step {
    main_step(&["HELLO", "3"])
}

fn main_step(args: &[&'static str]) -> Step {
    Step {
        other: false,
        args: args.to_vec(),
    }
}

fn other_step(args: &[&'static str]) -> Step {
    Step {
        other: true,
        args: args.to_vec(),
    }
}

/// Commands queued inside MULTI: valid ones, ones that fail at EXEC time (type errors), queue-time errors
/// (unknown command, wrong arity), transaction misuse, and RESET (which ends the transaction at once).
const QUEUED: &[&[&str]] = &[
    &["SET", "@a", "1"],
    &["SET", "@a", "hello"],
    &["GET", "@a"],
    &["INCR", "@n"],
    &["INCR", "@a"],
    &["LPUSH", "@l", "x"],
    &["LPUSH", "@a", "x"],
    &["LRANGE", "@l", "0", "-1"],
    &["GET", "@l"],
    &["APPEND", "@b", "z"],
    &["DEL", "@a"],
    &["EXISTS", "@a", "@b"],
    &["MSET", "@a", "2", "@b", "3"],
    &["PING"],
    &["ECHO", "hi"],
    &["BLPOP", "@l", "0.05"],
    &["NO-SUCH-COMMAND", "x"],
    &["SET", "@a"],
    &["GET"],
    &["MULTI"],
    &["WATCH", "@a"],
    &["UNWATCH"],
    &["RESET"],
];

/// A random sequence (RESP2, or RESP3 after HELLO 3): maybe some setup and WATCH, maybe a key changed by another client, a MULTI block of
/// random commands ended by EXEC or DISCARD (or not), maybe stray EXEC/DISCARD, then the keys read back.
fn generate(rng: &mut Rng) -> Vec<Step> {
    let mut steps = Vec::new();
    if rng.chance(30) {
        steps.push(hello_3());
    }
    if rng.chance(40) {
        steps.push(other_step(&["SET", "@a", rng.pick(&["5", "text"])]));
    }
    if rng.chance(20) {
        steps.push(main_step(&[rng.pick(&["EXEC", "DISCARD", "UNWATCH"])]));
    }
    let watching = rng.chance(50);
    if watching {
        steps.push(main_step(if rng.chance(50) {
            &["WATCH", "@a"]
        } else {
            &["WATCH", "@a", "@b"]
        }));
        if rng.chance(20) {
            steps.push(main_step(&["GET", "@a"]));
        }
        if rng.chance(20) {
            steps.push(main_step(&["UNWATCH"]));
        }
        if rng.chance(40) {
            steps.push(other_step(&["SET", rng.pick(&["@a", "@b"]), "changed"]));
        }
    }
    if rng.chance(90) {
        steps.push(main_step(&["MULTI"]));
        for _ in 0..rng.below(7) {
            let command = QUEUED[rng.below(QUEUED.len() as u64) as usize];
            steps.push(main_step(command));
            if rng.chance(10) {
                steps.push(other_step(&["SET", "@a", "meanwhile"]));
            }
        }
        match rng.below(10) {
            0..=6 => steps.push(main_step(&["EXEC"])),
            7 | 8 => steps.push(main_step(&["DISCARD"])),
            _ => {}
        }
    }
    if rng.chance(25) {
        steps.push(main_step(&[rng.pick(&["EXEC", "DISCARD", "MULTI"])]));
    }
    for key in ["@a", "@b", "@n"] {
        steps.push(other_step(&["GET", key]));
    }
    steps.push(other_step(&["LRANGE", "@l", "0", "-1"]));
    steps
}

/// Runs a case against one server, keys under `base`; returns every reply in order. Both runs' bases have
/// the same length, so bulk lengths stay comparable.
fn run_case(addr: &str, base: &str, steps: &[Step]) -> Vec<String> {
    let mut main = Resp::connect(addr);
    let mut other = Resp::connect(addr);
    steps
        .iter()
        .map(|step| {
            let args: Vec<String> = step
                .args
                .iter()
                .map(|arg| match arg.strip_prefix('@') {
                    Some(key) => format!("{base}:{key}"),
                    None => (*arg).to_owned(),
                })
                .collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let connection = if step.other { &mut other } else { &mut main };
            // Replies naming a key (BLPOP) name it without the run's own part.
            connection.command(&args).replace(base, "<base>")
        })
        .collect()
}

/// Replies must be the same bytes, except that the proxy words its unknown-command error its own way (README's
/// error table; both must still be an `ERR unknown` error) and answers HELLO with its own server fields.
fn same_reply(step: &Step, direct: &str, proxied: &str) -> bool {
    if step.args[0] == "HELLO" {
        return direct.starts_with('%') && proxied.starts_with('%');
    }
    if step.args[0] == "NO-SUCH-COMMAND" {
        return direct.starts_with("-ERR unknown ") && proxied.starts_with("-ERR unknown ");
    }
    direct == proxied
}

/// Runs `cases` random cases against `direct` and through `proxy`, comparing every reply. `tag` is a hash tag
/// that `direct` serves (the whole keyspace on a standalone server).
async fn differential(direct: String, proxy: String, tag: String, cases: u64) {
    let seed = std::env::var("RKPROXY_TX_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    blocking(move || {
        let mut rng = Rng(seed);
        for case in 0..cases {
            let steps = generate(&mut rng);
            let direct_replies = run_case(&direct, &format!("{{{tag}}}:{case}:d"), &steps);
            let proxied_replies = run_case(&proxy, &format!("{{{tag}}}:{case}:p"), &steps);
            for (index, step) in steps.iter().enumerate() {
                assert!(
                    same_reply(step, &direct_replies[index], &proxied_replies[index]),
                    "seed {seed} (RKPROXY_TX_SEED={seed} replays it), case {case}, step {index} {step:?}:\n\
                     direct:  {:?}\nthrough: {:?}\nsteps: {steps:#?}\ndirect replies: {direct_replies:#?}\n\
                     replies through the proxy: {proxied_replies:#?}",
                    direct_replies[index],
                    proxied_replies[index],
                );
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_match_redis_on_a_standalone_pool() {
    let redis = redis_addr();
    let proxy = start_proxy(&redis).await;
    differential(redis, proxy.local_addr().to_string(), unique("txdiff"), 300).await;
    proxy.shutdown().await;
}

/// The master serving `slot` in the shared test cluster.
fn cluster_master_of_slot(slot: u16) -> String {
    let nodes = redis_cli_at(&cluster_nodes()[0], &["CLUSTER", "NODES"]);
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
            continue;
        }
        for range in &fields[8..] {
            let (start, end) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(start), Ok(end)) = (start.parse::<u16>(), end.parse::<u16>()) {
                if (start..=end).contains(&slot) {
                    return fields[1].split('@').next().unwrap().to_owned();
                }
            }
        }
    }
    panic!("no master serves slot {slot}: {nodes}");
}

/// One key per master of the shared test cluster.
fn key_on_every_master(prefix: &str) -> Vec<String> {
    let mut masters = std::collections::BTreeMap::new();
    for index in 0..10_000 {
        let key = format!("{prefix}:{index}");
        let master = cluster_master_of_slot(cluster_router::key_slot(key.as_bytes()));
        masters.entry(master).or_insert(key);
        if masters.len() == 3 {
            break;
        }
    }
    assert_eq!(masters.len(), 3, "the test cluster has three masters");
    masters.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_match_redis_on_a_cluster_pool() {
    let proxy = start_cluster_proxy(&cluster_nodes(), "").await;
    let tag = unique("txdiff");
    let master = blocking({
        let tag = tag.clone();
        move || cluster_master_of_slot(cluster_router::key_slot(tag.as_bytes()))
    })
    .await;
    differential(master, proxy.local_addr().to_string(), tag, 500).await;
    proxy.shutdown().await;
}

/// A proxy with tenants whose refusals must abort a transaction; `pool` is the TOML of pool `p`.
async fn refusing_proxy(pool: &str) -> rkproxy::Proxy {
    start_proxy_toml(&format!(
        "default_pool = 'p'\n\
         [pools.p]\n{pool}\n\
         [tenants.reader]\npassword = 'reader-pw'\npool = 'p'\nreadonly = true\n\
         [tenants.pattern]\npassword = 'pattern-pw'\npool = 'p'\nkey_pattern = '^\\{{txok\\}}'\n\
         [tenants.small]\npassword = 'small-pw'\npool = 'p'\nmax_request_bytes = 200\n\
         [tenants.admin]\npassword = 'admin-pw'\npool = 'p'\nadmin = true\n"
    ))
    .await
}

/// Every refusal the proxy makes itself inside MULTI aborts the transaction: EXEC answers EXECABORT and
/// nothing is written; the connection works normally afterwards.
async fn refusals_abort(pool: &str) {
    let proxy = refusing_proxy(pool).await;
    let addr = proxy.local_addr().to_string();
    blocking(move || {
        let key = format!("{{txok}}:{}", unique("abort"));
        let big = "x".repeat(300);
        let cases: Vec<(&str, Vec<Vec<&str>>, &str)> = vec![
            ("admin", vec![vec!["NO-SUCH-COMMAND", "x"]], "-ERR unknown"),
            (
                "admin",
                vec![vec!["SET", &key]],
                "-ERR wrong number of arguments",
            ),
            ("reader", vec![vec!["SET", &key, "w"]], "-NOPERM"),
            (
                "pattern",
                vec![vec!["SET", "elsewhere", "w"]],
                "-ERR key 'elsewhere'",
            ),
            ("small", vec![vec!["SET", &key, &big]], "-ERR request of"),
            (
                "admin",
                vec![vec!["MONITOR"]],
                "-ERR unknown or unsupported command 'MONITOR'",
            ),
            (
                "admin",
                vec![vec!["CLIENT", "SETNAME", "n"]],
                "-ERR 'client setname' cannot",
            ),
            (
                "admin",
                vec![vec!["SUBSCRIBE", "c"]],
                "-ERR 'subscribe' cannot",
            ),
        ];
        for (user, refused, error) in cases {
            let mut client = Resp::connect(&addr);
            assert_eq!(
                client.command(&["AUTH", user, &format!("{user}-pw")]),
                "+OK\r\n"
            );
            // WATCH first (a dedicated connection on both pool kinds), or a plain MULTI.
            for watch in [false, true] {
                if watch {
                    assert_eq!(client.command(&["WATCH", &key]), "+OK\r\n");
                }
                assert_eq!(client.command(&["MULTI"]), "+OK\r\n");
                if user != "reader" {
                    assert_eq!(client.command(&["SET", &key, "before"]), "+QUEUED\r\n");
                } else {
                    assert_eq!(client.command(&["GET", &key]), "+QUEUED\r\n");
                }
                for command in &refused {
                    let reply = client.command(command);
                    assert!(reply.starts_with(error), "{user} {command:?}: {reply}");
                }
                assert_eq!(client.command(&["PING"]), "+QUEUED\r\n");
                assert_eq!(
                    client.command(&["EXEC"]),
                    "-EXECABORT Transaction discarded because of previous errors.\r\n",
                    "{user} {refused:?} watch={watch}"
                );
                // Nothing was written, and no transaction is left open on the server.
                assert_eq!(
                    client.command(&["GET", &key]),
                    "$-1\r\n",
                    "{user} {refused:?}"
                );
                assert_eq!(client.command(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
                assert_eq!(
                    client.command(&["DISCARD"]),
                    "-ERR DISCARD without MULTI\r\n"
                );
            }
        }
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_refusals_abort_transactions_on_a_standalone_pool() {
    refusals_abort(&format!(
        "kind = 'standalone'\nnodes = ['{}']",
        redis_addr()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_refusals_abort_transactions_on_a_cluster_pool() {
    let nodes = cluster_nodes()
        .iter()
        .map(|node| format!("'{node}'"))
        .collect::<Vec<_>>()
        .join(", ");
    refusals_abort(&format!("kind = 'cluster'\nnodes = [{nodes}]")).await;
}

/// Cluster pools: after WATCH the client is on its key's node; a command for another node gets CROSSSLOT,
/// which aborts the transaction like any queue-time error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_crossslot_under_watch_aborts() {
    let proxy = start_cluster_proxy(&cluster_nodes(), "").await;
    let addr = proxy.local_addr().to_string();
    blocking(move || {
        let keys = key_on_every_master(&unique("watchx"));
        let mut client = Resp::connect(&addr);
        assert_eq!(client.command(&["WATCH", &keys[0]]), "+OK\r\n");
        assert_eq!(client.command(&["MULTI"]), "+OK\r\n");
        assert_eq!(client.command(&["SET", &keys[0], "1"]), "+QUEUED\r\n");
        assert!(client
            .command(&["SET", &keys[1], "1"])
            .starts_with("-CROSSSLOT"));
        assert_eq!(
            client.command(&["EXEC"]),
            "-EXECABORT Transaction discarded because of previous errors.\r\n"
        );
        for key in &keys {
            assert_eq!(client.command(&["GET", key]), "$-1\r\n");
        }
    })
    .await;
    proxy.shutdown().await;
}

/// After every subscription ended (as Redis reports it: a count of 0), the client is back on shared
/// connections: keys on every master work from the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_client_leaves_its_node_after_unsubscribing() {
    let proxy = start_cluster_proxy(&cluster_nodes(), "").await;
    let addr = proxy.local_addr().to_string();
    blocking(move || {
        let keys = key_on_every_master(&unique("unsub"));
        let channel = unique("chan");
        let shard_channel = format!("{{{}}}s", unique("shard"));
        let pattern = format!("{}*", unique("pat"));
        let kinds: [(&str, &str, &str); 3] = [
            ("SUBSCRIBE", "UNSUBSCRIBE", &channel),
            ("PSUBSCRIBE", "PUNSUBSCRIBE", &pattern),
            ("SSUBSCRIBE", "SUNSUBSCRIBE", &shard_channel),
        ];
        let mut client = Resp::connect(&addr);
        for (subscribe, unsubscribe, name) in kinds {
            let confirmation = client.command(&[subscribe, name]);
            assert!(
                confirmation.contains(&subscribe.to_lowercase()),
                "{confirmation}"
            );
            let confirmation = client.command(&[unsubscribe]);
            assert!(confirmation.ends_with(":0\r\n"), "{confirmation}");
            for key in &keys {
                assert_eq!(
                    client.command(&["GET", key]),
                    "$-1\r\n",
                    "after {subscribe}/{unsubscribe}"
                );
            }
        }
        // Both kinds of count must be 0: a shard subscription keeps the client subscribed after UNSUBSCRIBE.
        client.command(&["SUBSCRIBE", &channel]);
        client.command(&["SSUBSCRIBE", &shard_channel]);
        assert!(client.command(&["UNSUBSCRIBE"]).ends_with(":0\r\n"));
        assert!(client.command(&["SUNSUBSCRIBE"]).ends_with(":0\r\n"));
        for key in &keys {
            assert_eq!(client.command(&["GET", key]), "$-1\r\n");
        }
    })
    .await;
    proxy.shutdown().await;
}

/// A client library that hands a connection back to its pool after pub/sub (redis-rs drops its PubSub with
/// UNSUBSCRIBE + PUNSUBSCRIBE) gets a connection that reaches every master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_connection_reused_after_pubsub_reaches_every_master() {
    let proxy = start_cluster_proxy(&cluster_nodes(), "").await;
    let url = format!("redis://{}/", proxy.local_addr());
    blocking(move || {
        let keys = key_on_every_master(&unique("pooled"));
        let client = redis::Client::open(url).unwrap();
        let mut connection = client.get_connection().unwrap();
        connection
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        for round in 0..3 {
            {
                let mut pubsub = connection.as_pubsub();
                pubsub.subscribe(unique("pooled-chan")).unwrap();
                pubsub
                    .psubscribe(format!("{}*", unique("pooled-pat")))
                    .unwrap();
            }
            for key in &keys {
                let value: Option<String> = redis::cmd("GET")
                    .arg(key)
                    .query(&mut connection)
                    .unwrap_or_else(|error| {
                        panic!("round {round}, GET {key} after pub/sub: {error}")
                    });
                assert_eq!(value, None);
            }
        }
    })
    .await;
    proxy.shutdown().await;
}

/// Sends `bytes` on a fresh connection and returns everything until the server closes it.
fn exchange_until_closed(addr: &str, bytes: &[u8]) -> String {
    let mut client = Resp::connect(addr);
    client.send_raw(bytes);
    client.until_closed()
}

/// QUIT on a dedicated connection (subscribed, in MULTI, after a blocking command): every reply owed, then
/// `+OK`, then the connection closes, byte for byte as Redis does it. Keys carry the hash tag `{quit}`, which
/// `direct` serves.
async fn quit_like_redis(direct: String, proxy: String) {
    blocking(move || {
        let list = format!("{{quit}}:{}", unique("list"));
        let key = format!("{{quit}}:{}", unique("key"));
        // Channel and pattern names no other test publishes to.
        let c = unique("quitchan");
        let sequences = [
            format!("SUBSCRIBE {c}\r\nQUIT\r\n"),
            format!("SUBSCRIBE {c} {c}other\r\nPSUBSCRIBE {c}pat*\r\nQUIT\r\n"),
            format!("SUBSCRIBE {c}\r\nUNSUBSCRIBE\r\nQUIT\r\n"),
            format!("MULTI\r\nSET {key} 1\r\nQUIT\r\n"),
            format!("WATCH {key}\r\nQUIT\r\n"),
            format!("BLPOP {list} 0.2\r\nQUIT\r\n"),
            format!("GET {key}\r\nBLPOP {list} 0.1\r\nGET {key}\r\nQUIT\r\n"),
        ];
        for sequence in sequences {
            let direct_bytes = exchange_until_closed(&direct, sequence.as_bytes());
            let proxied_bytes = exchange_until_closed(&proxy, sequence.as_bytes());
            assert_eq!(proxied_bytes, direct_bytes, "{sequence:?}");
            assert!(direct_bytes.ends_with("+OK\r\n"), "{direct_bytes:?}");
        }
        // Subscribing, then QUIT once the confirmation came back.
        let mut client = Resp::connect(&proxy);
        assert!(client.command(&["SUBSCRIBE", &c]).contains("subscribe"));
        assert_eq!(client.command(&["QUIT"]), "+OK\r\n");
        assert_eq!(client.until_closed(), "");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_on_a_dedicated_connection_answers_like_redis_standalone() {
    let redis = redis_addr();
    let proxy = start_proxy(&redis).await;
    quit_like_redis(redis, proxy.local_addr().to_string()).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_on_a_dedicated_connection_answers_like_redis_cluster() {
    let proxy = start_cluster_proxy(&cluster_nodes(), "").await;
    let master = blocking(|| cluster_master_of_slot(cluster_router::key_slot(b"quit"))).await;
    quit_like_redis(master, proxy.local_addr().to_string()).await;
    proxy.shutdown().await;
}

/// Cluster pools: a queued transaction whose slot is migrating (ASK) or has moved (MOVED) at EXEC is sent
/// again whole where the slot is (after ASKING for ASK); the client gets EXEC's real reply, never a spurious
/// EXECABORT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_transaction_follows_ask_and_moved() {
    let cluster = blocking(|| OwnCluster::start(2000)).await;
    let proxy = start_cluster_proxy(&cluster.addrs()[..1], "").await;
    let addr = proxy.local_addr().to_string();
    let addrs = cluster.addrs();
    let source = cluster
        .master_of_slot(cluster_router::key_slot(b"txmig"))
        .unwrap();
    blocking(move || {
        let slot = cluster_router::key_slot(b"txmig");
        let target = addrs
            .iter()
            .find(|a| **a != source && redis_cli_at(a, &["ROLE"]).starts_with("master"))
            .unwrap()
            .clone();
        let mut client = Resp::connect(&addr);
        assert_eq!(
            client.command(&["SET", "{txmig}moved", "before"]),
            "+OK\r\n"
        );
        let slot_move = SlotMove::begin(slot, &source, &target).unwrap();
        slot_move.migrate(&["{txmig}moved"]).unwrap();

        // Migrating: the source answers ASK for every queued command (their keys are not there); the unit goes
        // again to the target after ASKING. (Several different keys, some not there yet, would get Redis's
        // TRYAGAIN from the target, as a cluster client talking to Redis gets it.)
        let exec = |client: &mut Resp, commands: &[&[&str]]| {
            assert_eq!(client.command(&["MULTI"]), "+OK\r\n");
            for command in commands {
                assert_eq!(client.command(command), "+QUEUED\r\n");
            }
            client.command(&["EXEC"])
        };
        let reply = exec(
            &mut client,
            &[&["GET", "{txmig}moved"], &["APPEND", "{txmig}moved", "+"]],
        );
        assert_eq!(reply, "*2\r\n$6\r\nbefore\r\n:7\r\n");
        let reply = exec(
            &mut client,
            &[&["SET", "{txmig}new", "1"], &["INCR", "{txmig}new"]],
        );
        assert_eq!(reply, "*2\r\n+OK\r\n:2\r\n");
        assert_eq!(client.command(&["GET", "{txmig}new"]), "$1\r\n2\r\n");

        // Moved: the proxy's map still names the source, which answers MOVED.
        slot_move.finish(&masters_among(&addrs)).unwrap();
        let reply = exec(
            &mut client,
            &[&["INCR", "{txmig}count"], &["GET", "{txmig}moved"]],
        );
        assert_eq!(reply, "*2\r\n:1\r\n$7\r\nbefore+\r\n");
        assert_eq!(redis_cli_at(&target, &["GET", "{txmig}count"]).trim(), "1");
    })
    .await;
    proxy.shutdown().await;
    drop(cluster);
}

/// While a slot migrates with some of a multi-key command's keys on each side, Redis answers TRYAGAIN; a client
/// of one Redis server never sees that: the proxy waits and sends the command again (single commands, and
/// transactions whose queued commands got TRYAGAIN) until the migration of those keys is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_commands_wait_out_tryagain_during_a_migration() {
    let cluster = blocking(|| OwnCluster::start(2000)).await;
    let proxy = start_cluster_proxy(&cluster.addrs()[..1], "").await;
    let addr = proxy.local_addr().to_string();
    let addrs = cluster.addrs();
    let source = cluster
        .master_of_slot(cluster_router::key_slot(b"tryagain"))
        .unwrap();
    blocking(move || {
        let slot = cluster_router::key_slot(b"tryagain");
        let target = addrs
            .iter()
            .find(|a| **a != source && redis_cli_at(a, &["ROLE"]).starts_with("master"))
            .unwrap()
            .clone();
        let mut client = Resp::connect(&addr);
        for key in ["{tryagain}a", "{tryagain}b", "{tryagain}c"] {
            assert_eq!(client.command(&["SET", key, key]), "+OK\r\n");
        }
        let slot_move = SlotMove::begin(slot, &source, &target).unwrap();
        slot_move.migrate(&["{tryagain}a"]).unwrap();
        // Keys on both sides now: Redis itself answers TRYAGAIN to a multi-key command.
        let direct = redis_cli_at(&source, &["MGET", "{tryagain}a", "{tryagain}b"]);
        assert!(direct.contains("TRYAGAIN"), "{direct}");

        // The rest of the keys move a moment later, while the proxy's commands wait.
        let finish = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            slot_move.migrate(&["{tryagain}b", "{tryagain}c"]).unwrap();
            slot_move.finish(&masters_among(&addrs)).unwrap();
        });
        client.send(&["MGET", "{tryagain}a", "{tryagain}b"]);
        client.send(&["MULTI"]);
        client.send(&["MGET", "{tryagain}a", "{tryagain}c"]);
        client.send(&["EXEC"]);
        assert_eq!(
            client.reply(),
            "*2\r\n$11\r\n{tryagain}a\r\n$11\r\n{tryagain}b\r\n"
        );
        assert_eq!(client.reply(), "+OK\r\n");
        assert_eq!(client.reply(), "+QUEUED\r\n");
        assert_eq!(
            client.reply(),
            "*1\r\n*2\r\n$11\r\n{tryagain}a\r\n$11\r\n{tryagain}c\r\n"
        );
        finish.join().unwrap();
    })
    .await;
    proxy.shutdown().await;
    drop(cluster);
}

/// A dedicated connection that was moved to another db (SELECT while WATCHing) is not reused as if it were
/// still in its first db: a later transaction writes where the client's SELECT says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_connection_moved_to_another_db_is_not_reused() {
    let redis = redis_addr();
    let proxy = start_proxy(&redis).await;
    let addr = proxy.local_addr().to_string();
    let key = unique("reused");
    let replies = blocking({
        let key = key.clone();
        move || {
            let mut client = Resp::connect(&addr);
            let commands: [&[&str]; 8] = [
                &["WATCH", &key],
                &["SELECT", "5"],
                &["UNWATCH"],
                &["SELECT", "0"],
                &["WATCH", &key],
                &["MULTI"],
                &["SET", &key, "db0"],
                &["EXEC"],
            ];
            commands
                .iter()
                .map(|command| client.command(command))
                .collect::<Vec<_>>()
        }
    })
    .await;
    assert_eq!(replies[7], "*1\r\n+OK\r\n", "{replies:?}");
    let mut db0 = direct(&redis, 0).await;
    let value: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut db0)
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("db0"));
    proxy.shutdown().await;
}

/// Pipelined pub/sub sequences, byte for byte as Redis answers them: confirmations, replies of commands sent
/// while subscribed, the proxy's own replies in their place, and back to normal commands once every
/// subscription ended. Each sequence ends with QUIT, so both sides are read until they close. Keys and shard
/// channels carry the hash tag `{psq}`, which `direct` serves.
async fn pubsub_like_redis(direct: String, proxy: String) {
    blocking(move || {
        let key = format!("{{psq}}:{}", unique("key"));
        // Channel and pattern names no other test publishes to.
        let c = unique("psc");
        let sequences = [
            format!("SUBSCRIBE {c}\r\nUNSUBSCRIBE {c}\r\nCLIENT GETNAME\r\nGET {key}\r\nQUIT\r\n"),
            format!(
                "SUBSCRIBE {c}a {c}b\r\nPSUBSCRIBE {c}p*\r\nUNSUBSCRIBE\r\nPUNSUBSCRIBE\r\nPING\r\n\
                 QUIT\r\n"
            ),
            format!(
                "SSUBSCRIBE {{psq}}{c}\r\nSUBSCRIBE {c}\r\nUNSUBSCRIBE\r\nPING\r\nGET {key}\r\n\
                 SUNSUBSCRIBE\r\nGET {key}\r\nQUIT\r\n"
            ),
            "UNSUBSCRIBE\r\nPUNSUBSCRIBE\r\nPING\r\nQUIT\r\n".to_owned(),
            format!("SUBSCRIBE {c} {c}\r\nUNSUBSCRIBE\r\nECHO done\r\nQUIT\r\n"),
            format!(
                "PSUBSCRIBE {c}x* {c}y*\r\nPUNSUBSCRIBE {c}y* {c}x* {c}z*\r\nPING again\r\nQUIT\r\n"
            ),
        ];
        for sequence in sequences {
            let direct_bytes = exchange_until_closed(&direct, sequence.as_bytes());
            let proxied_bytes = exchange_until_closed(&proxy, sequence.as_bytes());
            assert_eq!(proxied_bytes, direct_bytes, "{sequence:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_sequences_answer_like_redis_standalone() {
    let redis = redis_addr();
    let proxy = start_proxy(&redis).await;
    pubsub_like_redis(redis, proxy.local_addr().to_string()).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_sequences_answer_like_redis_cluster() {
    let proxy = start_cluster_proxy(&cluster_nodes(), "").await;
    let master = blocking(|| cluster_master_of_slot(cluster_router::key_slot(b"psq"))).await;
    pubsub_like_redis(master, proxy.local_addr().to_string()).await;
    proxy.shutdown().await;
}

/// A reply nested thousands deep (a Lua table that contains itself) inside EXEC's array passes through a
/// dedicated connection unchanged; the nesting limit is for client requests only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_reply_inside_exec_passes_through_a_dedicated_connection() {
    let redis = redis_addr();
    let proxy = start_proxy(&redis).await;
    let addr = proxy.local_addr().to_string();
    blocking(move || {
        let script = "local a = {}; local b = {a}; a[1] = b; return a";
        let run = |addr: &str| {
            let mut client = Resp::connect(addr);
            [
                client.command(&["MULTI"]),
                client.command(&["EVAL", script, "0"]),
                client.command(&["EXEC"]),
                client.command(&["PING"]),
            ]
        };
        let direct_replies = run(&redis);
        let proxied_replies = run(&addr);
        assert!(direct_replies[2].len() > 1000, "{:?}", direct_replies[2]);
        assert_eq!(proxied_replies, direct_replies);
    })
    .await;
    proxy.shutdown().await;
}

/// A cluster transaction of a thousand commands: EXEC's reply is its own array, and a client sharing the
/// backend connection meanwhile gets its own replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_cluster_transaction_gets_its_own_reply() {
    let proxy = start_cluster_proxy(&cluster_nodes(), "").await;
    let addr = proxy.local_addr().to_string();
    blocking(move || {
        let tag = unique("bigtx");
        let counter = format!("{{{tag}}}:count");
        let mine = format!("{{{tag}}}:mine");
        let mut neighbour = Resp::connect(&addr);
        assert_eq!(neighbour.command(&["SET", &mine, "neighbour"]), "+OK\r\n");
        let mut client = Resp::connect(&addr);
        let mut pipeline = String::from("MULTI\r\n");
        for _ in 0..1000 {
            pipeline.push_str(&format!("INCR {counter}\r\n"));
        }
        pipeline.push_str("EXEC\r\n");
        client.send_raw(pipeline.as_bytes());
        for _ in 0..50 {
            neighbour.send(&["GET", &mine]);
        }
        assert_eq!(client.reply(), "+OK\r\n");
        for _ in 0..1000 {
            assert_eq!(client.reply(), "+QUEUED\r\n");
        }
        let mut expected = String::from("*1000\r\n");
        for value in 1..=1000 {
            expected.push_str(&format!(":{value}\r\n"));
        }
        assert_eq!(client.reply(), expected);
        for _ in 0..50 {
            assert_eq!(neighbour.reply(), "$9\r\nneighbour\r\n");
        }
    })
    .await;
    proxy.shutdown().await;
}
