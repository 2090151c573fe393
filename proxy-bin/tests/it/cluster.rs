//! Redis Cluster pools: routing, redirects, cross-slot splits, whole-keyspace commands, transactions,
//! pub/sub, replica reads and failover. Clients are plain (non-cluster) clients: redis-cli without `-c` and
//! redis-rs in standalone mode.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::AsyncCommands;

use crate::support::*;

/// Keys that hash to many different slots (and so to every master).
fn spread_keys(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}:{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_redis_cli_reaches_every_slot() {
    let nodes = cluster_nodes();
    let proxy = start_cluster_proxy(&nodes[..2], "").await;
    let keys = spread_keys(&unique("cli"), 40);
    for key in &keys {
        assert_eq!(
            redis_cli(proxy.local_addr(), &["SET", key, key]).await,
            "OK\n"
        );
    }
    for key in &keys {
        assert_eq!(
            redis_cli(proxy.local_addr(), &["GET", key]).await,
            format!("{key}\n")
        );
        // The value is on the node that owns the slot: a cluster-aware redis-cli finds it there.
        let direct = redis_cli_at(&nodes[0], &["-c", "GET", key]);
        assert_eq!(direct, format!("{key}\n"));
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_multi_key_commands_are_split_and_merged_in_order() {
    let proxy = start_cluster_proxy(&cluster_nodes(), "").await;
    let mut connection = client(&proxy).await;
    let keys = spread_keys(&unique("split"), 25);
    let pairs: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("v-{k}"))).collect();
    let _: () = connection.mset(&pairs).await.unwrap();
    let mut asked = keys.clone();
    asked.insert(3, unique("missing"));
    asked.reverse();
    let values: Vec<Option<String>> = connection.mget(&asked).await.unwrap();
    for (key, value) in asked.iter().zip(&values) {
        if key.contains("missing") {
            assert_eq!(value, &None);
        } else {
            assert_eq!(
                value.as_deref(),
                Some(format!("v-{key}").as_str()),
                "MGET order for {key}"
            );
        }
    }
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&keys)
        .arg(&keys[0])
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(exists, 26, "EXISTS counts a repeated key twice, like Redis");
    let touched: i64 = redis::cmd("TOUCH")
        .arg(&keys)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(touched, 25);

    // Inside a pipeline the merged replies stay in order with the others.
    let (first, count, second, deleted): (Vec<Option<String>>, i64, String, i64) = redis::pipe()
        .cmd("MGET")
        .arg(&keys[..10])
        .cmd("EXISTS")
        .arg(&keys[5..])
        .cmd("GET")
        .arg(&keys[7])
        .cmd("UNLINK")
        .arg(&keys[..12])
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(first[9].as_deref(), Some(format!("v-{}", keys[9]).as_str()));
    assert_eq!(count, 20);
    assert_eq!(second, format!("v-{}", keys[7]));
    assert_eq!(deleted, 12);
    let deleted: i64 = connection.del(&keys).await.unwrap();
    assert_eq!(deleted, 13);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_cannot_span_slots_get_crossslot() {
    let proxy = start_cluster_proxy(&cluster_nodes(), "").await;
    let mut connection = client(&proxy).await;
    let a = unique("a");
    let b = unique("b");
    for command in [
        vec!["MSETNX", a.as_str(), "1", b.as_str(), "2"],
        vec!["SUNIONSTORE", a.as_str(), b.as_str()],
        vec!["RENAME", a.as_str(), b.as_str()],
        vec!["BLMOVE", a.as_str(), b.as_str(), "LEFT", "RIGHT", "0.1"],
    ] {
        let mut cmd = redis::cmd(command[0]);
        cmd.arg(&command[1..]);
        let error = cmd
            .query_async::<()>(&mut connection)
            .await
            .unwrap_err()
            .to_string();
        // redis-rs shows the CROSSSLOT code as "CrossSlot".
        assert!(
            error.to_lowercase().contains("crossslot")
                && error.contains("don't hash to the same slot"),
            "{command:?}: {error}"
        );
    }
    // With a hash tag the same commands work.
    let (x, y) = (format!("{{{a}}}.x"), format!("{{{a}}}.y"));
    let set: i64 = redis::cmd("MSETNX")
        .arg(&x)
        .arg(1)
        .arg(&y)
        .arg(2)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(set, 1);
    let _: () = redis::cmd("RENAME")
        .arg(&x)
        .arg(format!("{{{a}}}.z"))
        .query_async(&mut connection)
        .await
        .unwrap();
    let _: () = connection.rpush(&x, "item").await.unwrap();
    let moved: Option<String> = redis::cmd("BLMOVE")
        .arg(&x)
        .arg(&y)
        .arg("LEFT")
        .arg("RIGHT")
        .arg(1)
        .query_async(&mut connection)
        .await
        .unwrap_or(None);
    // y holds a string, so BLMOVE fails with WRONGTYPE; use a fresh list key instead.
    assert_eq!(moved, None);
    let list = format!("{{{a}}}.list");
    let moved: Option<String> = redis::cmd("BLMOVE")
        .arg(&x)
        .arg(&list)
        .arg("LEFT")
        .arg("RIGHT")
        .arg(1)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(moved.as_deref(), Some("item"));
    let _: i64 = connection
        .del(&[&x, &y, &list, &format!("{{{a}}}.z")])
        .await
        .unwrap();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_keyspace_commands_cover_every_master() {
    let nodes = cluster_nodes();
    let proxy = start_cluster_proxy(&nodes, "").await;
    let mut connection = client(&proxy).await;
    let prefix = unique("space");
    let keys = spread_keys(&prefix, 60);
    for key in &keys {
        let _: () = connection.set(key, 1).await.unwrap();
    }
    // KEYS sees every key, from all masters.
    let found: Vec<String> = connection.keys(format!("{prefix}:*")).await.unwrap();
    assert_eq!(
        found.into_iter().collect::<BTreeSet<_>>(),
        keys.iter().cloned().collect::<BTreeSet<_>>()
    );
    // SCAN walks every master; every key comes back, and the walk ends with cursor 0.
    let mut cursor = 0u64;
    let mut scanned = Vec::new();
    let mut rounds = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(20)
            .query_async(&mut connection)
            .await
            .unwrap();
        scanned.extend(batch);
        cursor = next;
        rounds += 1;
        if cursor == 0 {
            break;
        }
        assert!(rounds < 10_000, "SCAN never ends");
    }
    let scanned: BTreeSet<String> = scanned.into_iter().collect();
    assert_eq!(scanned, keys.iter().cloned().collect::<BTreeSet<_>>());
    let error = redis::cmd("SCAN")
        .arg("banana")
        .query_async::<()>(&mut connection)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("invalid cursor"), "{error}");
    // Scripts are loaded on every master, so EVALSHA works whatever the key's slot.
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return redis.call('GET', KEYS[1])")
        .query_async(&mut connection)
        .await
        .unwrap();
    for key in &keys[..10] {
        let value: i64 = redis::cmd("EVALSHA")
            .arg(&sha)
            .arg(1)
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(value, 1);
    }
    let exists: Vec<i64> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&sha)
        .arg("0000000000000000000000000000000000000000")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(exists, vec![1, 0]);
    let pong: String = redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(pong, "PONG");
    let random: Option<String> = redis::cmd("RANDOMKEY")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(random.is_some());
    let info: String = redis::cmd("INFO")
        .arg("keyspace")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(info.contains("db0:keys="), "{info}");
    let _: i64 = connection.del(&keys).await.unwrap();
    proxy.shutdown().await;
}

/// DBSIZE is the sum over the masters. It counts every key, so it runs on a cluster of its own: on the shared one,
/// other tests add and delete keys meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbsize_is_the_sum_over_the_masters() {
    let cluster = blocking(|| OwnCluster::start(5000)).await;
    let nodes = cluster.addrs();
    let proxy = start_cluster_proxy(&nodes, "").await;
    let mut connection = client(&proxy).await;
    let keys = spread_keys("dbsize", 60);
    for key in &keys {
        let _: () = connection.set(key, 1).await.unwrap();
    }
    let total: i64 = redis::cmd("DBSIZE")
        .query_async(&mut connection)
        .await
        .unwrap();
    let direct_total: i64 = blocking(move || {
        nodes
            .iter()
            .filter(|n| redis_cli_at(n, &["ROLE"]).starts_with("master"))
            .map(|n| redis_cli_at(n, &["DBSIZE"]).trim().parse::<i64>().unwrap())
            .sum()
    })
    .await;
    assert_eq!((total, direct_total), (60, 60), "(proxy, masters)");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_in_one_slot_work_and_across_slots_abort() {
    let proxy = start_cluster_proxy(&cluster_nodes(), "").await;
    let mut connection = client(&proxy).await;
    let tag = unique("tx");
    let (a, b) = (format!("{{{tag}}}.a"), format!("{{{tag}}}.b"));
    let (set, incr, got): (String, i64, String) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(&a)
        .arg(10)
        .cmd("INCRBY")
        .arg(&a)
        .arg(5)
        .cmd("SET")
        .arg(&b)
        .arg("x")
        .ignore()
        .cmd("GET")
        .arg(&b)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!((set.as_str(), incr, got.as_str()), ("OK", 15, "x"));

    let other = unique("elsewhere");
    let error = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(&a)
        .arg(1)
        .cmd("SET")
        .arg(&other)
        .arg(1)
        .query_async::<()>(&mut connection)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.to_lowercase().contains("crossslot"), "{error}");
    let still: i64 = connection.get(&a).await.unwrap();
    assert_eq!(still, 15, "an aborted transaction changed nothing");

    // WATCH runs on a dedicated connection to the key's node; a change by another client aborts EXEC.
    let mut other_client = client(&proxy).await;
    let _: () = redis::cmd("WATCH")
        .arg(&a)
        .query_async(&mut connection)
        .await
        .unwrap();
    let _: () = other_client.set(&a, 99).await.unwrap();
    let result: Option<(i64,)> = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg(&a)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(result, None);
    // Afterwards the client is back on shared connections and reaches every slot again.
    let keys = spread_keys(&unique("after"), 20);
    for key in &keys {
        let _: () = connection.set(key, 1).await.unwrap();
    }
    let _: i64 = connection.del(&keys).await.unwrap();
    let _: i64 = connection.del(&[&a, &b]).await.unwrap();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_pop_and_pubsub_in_a_cluster() {
    let proxy = start_cluster_proxy(&cluster_nodes(), "").await;
    let key = unique("queue");
    let mut waiter = client(&proxy).await;
    let mut pusher = client(&proxy).await;
    let waiting_key = key.clone();
    let task = tokio::spawn(async move {
        let popped: Option<(String, String)> = redis::cmd("BRPOP")
            .arg(&waiting_key)
            .arg(5)
            .query_async(&mut waiter)
            .await
            .unwrap();
        // The same client then works on other slots.
        let _: () = waiter.set(unique("post-block"), 1).await.unwrap();
        popped
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _: () = pusher.lpush(&key, "job-1").await.unwrap();
    let popped = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(popped, Some((key, "job-1".to_owned())));

    let channel = unique("news");
    let url = format!("redis://{}/", proxy.local_addr());
    let mut pubsub = redis::Client::open(url)
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    pubsub.subscribe(&channel).await.unwrap();
    // Published through another client and another node: cluster pub/sub reaches every node.
    for i in 0..3 {
        let _: i64 = pusher.publish(&channel, format!("m{i}")).await.unwrap();
    }
    let mut messages = pubsub.on_message();
    for i in 0..3 {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(message.get_payload::<String>().unwrap(), format!("m{i}"));
    }
    proxy.shutdown().await;
}

/// Counts the GETs the replicas served (INFO commandstats), so it runs on a cluster of its own: on the shared
/// one, other tests' commands (or a CONFIG RESETSTAT) would change the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_can_go_to_replicas() {
    let cluster = blocking(|| OwnCluster::start(5000)).await;
    let nodes = cluster.addrs();
    let warm_nodes = nodes.clone();
    blocking(move || wait_until_replicas_are_listed(&warm_nodes)).await;
    let proxy = start_cluster_proxy(&nodes, "read_from = 'prefer_replica'").await;
    let mut connection = client(&proxy).await;
    let counted_nodes = nodes.clone();
    let before = blocking(move || replica_gets(&counted_nodes)).await;
    let keys = spread_keys(&unique("replica"), 30);
    for key in &keys {
        let _: () = connection.set(key, "v").await.unwrap();
    }
    for key in &keys {
        // Replication is asynchronous: a read right after a write may miss; retry until a deadline.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut value: Option<String> = connection.get(key).await.unwrap();
        while value.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            value = connection.get(key).await.unwrap();
        }
        assert_eq!(value.as_deref(), Some("v"));
    }
    let after = blocking(move || replica_gets(&nodes)).await;
    assert!(
        after - before >= 30,
        "replicas served {} GETs",
        after - before
    );
    let _: i64 = connection.del(&keys).await.unwrap();
    proxy.shutdown().await;
}

/// Redis lists a replica in CLUSTER SLOTS only once it has replicated some data, and a young cluster's nodes learn
/// of each other's replicas by gossip: writes to every master until every node's CLUSTER SLOTS shows a replica
/// for each of the three slot ranges (the proxy may ask any of them).
fn wait_until_replicas_are_listed(nodes: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut writes = 0;
    loop {
        for i in 0..30 {
            redis_cli_at(
                &nodes[0],
                &["-c", "SET", &format!("replica-warmup:{writes}:{i}"), "1"],
            );
        }
        writes += 1;
        let views: Vec<String> = nodes
            .iter()
            .map(|node| redis_cli_at(node, &["CLUSTER", "SLOTS"]))
            .collect();
        if views.iter().all(|slots| node_entries(slots) >= 6) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas never appeared in every node's CLUSTER SLOTS:\n{views:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The node entries in redis-cli's CLUSTER SLOTS output: per range, start and end, then 3 lines per node (ip,
/// port, id); a range with a replica has 2 nodes. Ports are the numbers above the last slot, 16383.
fn node_entries(slots: &str) -> usize {
    slots
        .lines()
        .filter(|line| line.parse::<u16>().is_ok_and(|n| n > 16383))
        .count()
}

/// The GETs all replicas among `nodes` have served (INFO commandstats).
fn replica_gets(nodes: &[String]) -> i64 {
    nodes
        .iter()
        .filter(|n| redis_cli_at(n, &["ROLE"]).starts_with("slave"))
        .map(|n| {
            let stats = redis_cli_at(n, &["INFO", "commandstats"]);
            stats
                .lines()
                .find(|l| l.starts_with("cmdstat_get:"))
                .and_then(|l| l.split("calls=").nth(1))
                .and_then(|l| l.split(',').next())
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_and_ask_are_hidden_during_resharding() {
    let cluster = blocking(|| OwnCluster::start(2000)).await;
    let proxy = start_cluster_proxy(&cluster.addrs()[..1], "").await;
    let mut connection = client(&proxy).await;
    let key = "{reshard}existing".to_owned();
    let slot = cluster_router::key_slot(key.as_bytes());
    let _: () = connection.set(&key, "before").await.unwrap();

    let source = cluster.master_of_slot(slot).unwrap();
    let target = cluster
        .addrs()
        .into_iter()
        .find(|a| *a != source && redis_cli_at(a, &["ROLE"]).starts_with("master"))
        .unwrap();
    let slot_move = SlotMove::begin(slot, &source, &target).unwrap();
    let slot_text = slot.to_string();

    // A new key in a migrating slot belongs on the target: the source answers ASK, the proxy follows it.
    let _: () = connection.set("{reshard}new", "during").await.unwrap();
    assert_eq!(
        redis_cli_at(&target, &["CLUSTER", "COUNTKEYSINSLOT", &slot_text]).trim(),
        "1"
    );
    // Move the existing key; reading it now needs ASK too.
    slot_move.migrate(&[&key]).unwrap();
    let value: String = connection.get(&key).await.unwrap();
    assert_eq!(value, "before");
    // A pipeline over every master, with the migrated key between other keys: its GETs come back as ASK inside
    // the per-node batches, are sent again, and every reply still arrives in order.
    let others = spread_keys("reshard-pipeline", 12);
    assert_eq!(
        pipelined_reads(&mut connection, &key, &others).await,
        expected_reads("before", &others)
    );
    // An MGET over every master with the migrated key among the others: its sub-command comes back as ASK inside
    // its master's share of the split, is sent again on its own, and every value still arrives in order.
    let on_source = |other: &String| {
        cluster.master_of_slot(cluster_router::key_slot(other.as_bytes())) == Some(source.clone())
    };
    assert!(
        others.iter().any(on_source),
        "the source's share must hold more than the migrated key's sub-command"
    );
    assert_eq!(
        mget_around(&mut connection, &key, &others).await,
        expected_mget("before", &others)
    );
    // Finish the move on every master; the proxy then meets MOVED and refreshes its map.
    slot_move.finish(&masters_among(&cluster.addrs())).unwrap();
    // The same MGET and pipeline with the proxy's map still naming the old owner: MOVED inside the batches.
    assert_eq!(
        mget_around(&mut connection, &key, &others).await,
        expected_mget("before", &others)
    );
    assert_eq!(
        pipelined_reads(&mut connection, &key, &others).await,
        expected_reads("before", &others)
    );
    cluster.wait_until_ok(Duration::from_secs(20));
    for _ in 0..20 {
        let value: String = connection.get(&key).await.unwrap();
        assert_eq!(value, "before");
        let value: String = connection.get("{reshard}new").await.unwrap();
        assert_eq!(value, "during");
    }
    proxy.shutdown().await;
}

/// A command answered with ASK is sent again only when it reaches the front of the client's queue; requests the
/// client sends meanwhile must not run before it. Here the slot moves to another master and straight back while
/// the redirected SET waits behind a slow script: a DEL sent after it must still run after it, as one Redis server
/// would run them. (The DEL used to go to the old owner at once, which had the key again, so the late SET
/// brought back the value the DEL had removed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_write_runs_before_later_requests_when_its_slot_moves_back() {
    // The script below keeps one master busy for seconds; the others must not fail it over meanwhile.
    let cluster = blocking(|| OwnCluster::start(20_000)).await;
    // No periodic map refresh during the test: the proxy's map keeps naming the first owner throughout.
    let proxy = start_cluster_proxy(&cluster.addrs(), "refresh_ms = 600000").await;
    let addr = proxy.local_addr().to_string();
    let key = "{comeback}k";
    let (first_owner, other, slow_key) = three_masters_for(&cluster, key);
    blocking(move || {
        let slot = cluster_router::key_slot(key.as_bytes());
        let both = [first_owner.clone(), other.clone()];
        let mut client = Resp::connect(&addr);
        assert_eq!(client.command(&["SET", key, "v0"]), "+OK\r\n");
        let away = SlotMove::begin(slot, &first_owner, &other).unwrap();
        away.migrate(&[key]).unwrap();
        let asked_before = rejected_calls(&first_owner, "set");
        let script_sent = Instant::now();
        client.send(&[
            "EVAL",
            BUSY_SCRIPT,
            "1",
            &slow_key,
            &SCRIPT_RUNS.as_micros().to_string(),
        ]);
        client.send(&["SET", key, "v1"]);
        // The first owner answered the SET with ASK (the key is on the other master now).
        while rejected_calls(&first_owner, "set") == asked_before {
            assert!(
                script_sent.elapsed() < SCRIPT_RUNS,
                "the SET never reached {first_owner}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // The slot moves on, and back, with the key; the proxy's map names the first owner again, rightly.
        away.finish(&both).unwrap();
        let back = SlotMove::begin(slot, &other, &first_owner).unwrap();
        back.migrate(&[key]).unwrap();
        back.finish(&both).unwrap();
        client.send(&["DEL", key]);
        client.send(&["GET", key]);
        // (A busy server answers nobody before its script ends, so the time is the only witness that the DEL
        // reached the proxy while the SET still waited behind the script.)
        assert!(
            script_sent.elapsed() < SCRIPT_RUNS,
            "the slot moves took longer than the script runs ({SCRIPT_RUNS:?}): nothing was tested"
        );
        assert_eq!(client.reply(), ":1\r\n", "EVAL");
        assert_eq!(client.reply(), "+OK\r\n", "SET");
        assert_eq!(client.reply(), ":1\r\n", "DEL");
        assert_eq!(client.reply(), "$-1\r\n", "GET");
        assert_eq!(
            client.command(&["GET", key]),
            "$-1\r\n",
            "the DEL ran before the SET"
        );
    })
    .await;
    proxy.shutdown().await;
}

/// For the tests above: the master of `key`'s slot, another master the slot can move to, and a key on the third
/// master, where the slow script runs (the two others must answer the slot moves meanwhile).
fn three_masters_for(cluster: &OwnCluster, key: &str) -> (String, String, String) {
    let owner = cluster
        .master_of_slot(cluster_router::key_slot(key.as_bytes()))
        .unwrap();
    let masters = masters_among(&cluster.addrs());
    let other = masters.iter().find(|m| **m != owner).unwrap().clone();
    let slow_key = (0..1000)
        .map(|n| format!("{{slow{n}}}"))
        .find(|candidate| {
            let node = cluster.master_of_slot(cluster_router::key_slot(candidate.as_bytes()));
            node.is_some_and(|node| node != owner && node != other)
        })
        .unwrap();
    (owner, other, slow_key)
}

/// How long the script of the test above keeps its master busy.
const SCRIPT_RUNS: Duration = Duration::from_secs(5);

/// A Lua script that keeps its server busy for ARGV[1] microseconds, then returns 1.
const BUSY_SCRIPT: &str = "local start = redis.call('TIME') \
    while true do \
        local now = redis.call('TIME') \
        if (now[1] - start[1]) * 1000000 + (now[2] - start[2]) > tonumber(ARGV[1]) then return 1 end \
    end";

/// How many calls of `command` the node refused (`rejected_calls` in INFO commandstats: redirects among them).
fn rejected_calls(node: &str, command: &str) -> u64 {
    command_stat(node, command, "rejected_calls")
}

/// One field of `command`'s line in the node's INFO commandstats (`calls`, `rejected_calls`, ...); 0 if none.
fn command_stat(node: &str, command: &str, field: &str) -> u64 {
    let stats = redis_cli_at(node, &["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:");
    let field = format!("{field}=");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|fields| {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(field.as_str()))
        })
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

/// A transaction refused because a migration split its keys (some queued commands answered ASK, others TRYAGAIN:
/// nothing ran) must not run later behind the client's back: a SET the client sent after EXEC already ran on the
/// keys still at the old owner. Redis Cluster's answer, passed on, is TRYAGAIN for EXEC. (The proxy used to send
/// the whole unit again to the new owner, where it ran after that SET and overwrote it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_split_by_a_migration_never_runs_after_later_requests() {
    let cluster = blocking(|| OwnCluster::start(20_000)).await;
    let proxy = start_cluster_proxy(&cluster.addrs(), "refresh_ms = 600000").await;
    let addr = proxy.local_addr().to_string();
    let (a, b) = ("{splittx}a", "{splittx}b");
    let (owner, other, slow_key) = three_masters_for(&cluster, a);
    blocking(move || {
        let slot = cluster_router::key_slot(a.as_bytes());
        let mut client = Resp::connect(&addr);
        assert_eq!(client.command(&["MSET", a, "a0", b, "b0"]), "+OK\r\n");
        let slot_move = SlotMove::begin(slot, &owner, &other).unwrap();
        slot_move.migrate(&[a]).unwrap();
        let sets_before = command_stat(&owner, "set", "calls");
        let script_sent = Instant::now();
        // The slow script keeps the transaction's reply from being handled until the migration is over.
        client.send(&[
            "EVAL",
            BUSY_SCRIPT,
            "1",
            &slow_key,
            &SCRIPT_RUNS.as_micros().to_string(),
        ]);
        client.send(&["MULTI"]);
        client.send(&["GET", a]);
        client.send(&["MSET", a, "x", b, "y"]);
        client.send(&["EXEC"]);
        client.send(&["SET", b, "later"]);
        // The later SET ran at the old owner, where b still is.
        while command_stat(&owner, "set", "calls") == sets_before {
            assert!(
                script_sent.elapsed() < SCRIPT_RUNS,
                "the later SET never ran on {owner}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        slot_move.migrate(&[b]).unwrap();
        slot_move.finish(&[owner.clone(), other.clone()]).unwrap();
        assert!(
            script_sent.elapsed() < SCRIPT_RUNS,
            "the migration took longer than the script runs ({SCRIPT_RUNS:?}): nothing was tested"
        );
        assert_eq!(client.reply(), ":1\r\n", "EVAL");
        assert_eq!(client.reply(), "+OK\r\n", "MULTI");
        assert_eq!(client.reply(), "+QUEUED\r\n", "GET");
        assert_eq!(client.reply(), "+QUEUED\r\n", "MSET");
        let exec = client.reply();
        assert_eq!(client.reply(), "+OK\r\n", "SET");
        assert_eq!(
            client.command(&["GET", b]),
            "$5\r\nlater\r\n",
            "the transaction ran after the later SET (EXEC's reply: {exec:?})"
        );
        assert!(exec.starts_with("-TRYAGAIN"), "EXEC's reply: {exec:?}");
    })
    .await;
    proxy.shutdown().await;
}

/// Sets each of `others` to its index, then reads `key` and each other key in turn, all in one pipeline.
async fn pipelined_reads(
    connection: &mut redis::aio::MultiplexedConnection,
    key: &str,
    others: &[String],
) -> Vec<String> {
    let mut pipe = redis::pipe();
    for (index, other) in others.iter().enumerate() {
        pipe.set(other, index).ignore();
    }
    for other in others {
        pipe.get(key).get(other);
    }
    pipe.query_async(connection).await.unwrap()
}

/// MGET of `others` with `key` in their middle.
async fn mget_around(
    connection: &mut redis::aio::MultiplexedConnection,
    key: &str,
    others: &[String],
) -> Vec<String> {
    let mut keys: Vec<&str> = others.iter().map(String::as_str).collect();
    keys.insert(others.len() / 2, key);
    connection.mget(&keys).await.unwrap()
}

/// What [`mget_around`] returns when `key` holds `value` and each of `others` its index (as
/// [`pipelined_reads`] left them).
fn expected_mget(value: &str, others: &[String]) -> Vec<String> {
    let mut values: Vec<String> = (0..others.len()).map(|index| index.to_string()).collect();
    values.insert(others.len() / 2, value.to_owned());
    values
}

/// What [`pipelined_reads`] returns when `key` holds `value`.
fn expected_reads(value: &str, others: &[String]) -> Vec<String> {
    (0..others.len())
        .flat_map(|index| [value.to_owned(), index.to_string()])
        .collect()
}

/// A master dies under steady load; once a replica has taken over, the load recovers and stays recovered. No
/// fixed time window: the load runs until it has had [`RECOVERED_STREAK`] successes in a row after the failover,
/// and any error after that would have reset the streak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_survives_a_master_failover() {
    let mut cluster = blocking(|| OwnCluster::start(1000)).await;
    let seeds = cluster.addrs();
    let proxy = start_cluster_proxy(&seeds, "refresh_ms = 1000").await;
    let mut connection = client(&proxy).await;
    let keys = spread_keys("failover", 30);
    for key in &keys {
        let _: () = connection.set(key, 0).await.unwrap();
    }
    let victim = cluster
        .master_of_slot(cluster_router::key_slot(keys[0].as_bytes()))
        .unwrap();
    let failed_over = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(steady_load(
        format!("redis://{}/", proxy.local_addr()),
        keys.clone(),
        failed_over.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = Instant::now();
    cluster.kill(&victim).await;
    // Wait for a replica to take over.
    let slot = cluster_router::key_slot(keys[0].as_bytes());
    loop {
        let master = cluster.master_of_slot(slot);
        if master.is_some() && master.as_deref() != Some(victim.as_str()) {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no failover happened: {}",
            redis_cli_at(
                &cluster.addrs().into_iter().find(|a| *a != victim).unwrap(),
                &["CLUSTER", "NODES"]
            )
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failover_took = killed_at.elapsed();
    failed_over.store(true, Ordering::Relaxed);
    let outcome = load.await.unwrap();
    println!(
        "failover: replica took over {failover_took:?} after the kill; {} INCRs succeeded, {} failed; \
         the load recovered {:?} after the failover was seen",
        outcome.successes,
        outcome.errors.len(),
        outcome.recovered_after
    );
    for error in &outcome.errors {
        println!("  error: {error}");
        assert!(
            !error.contains("MOVED") && !error.contains("ASK"),
            "redirect leaked: {error}"
        );
    }
    assert!(
        outcome.recovered_after.is_some(),
        "no {RECOVERED_STREAK} INCRs in a row within {LOAD_LIMIT:?} after the failover"
    );
    // Everything still works through the same proxy, without a restart.
    for key in &keys {
        let _: i64 = connection.incr(key, 1).await.unwrap();
    }
    proxy.shutdown().await;
}

/// Successes in a row after a failover that show the load has recovered.
const RECOVERED_STREAK: u32 = 200;
/// How long the load may take to recover after the failover was seen.
const LOAD_LIMIT: Duration = Duration::from_secs(20);

/// What [`steady_load`] saw.
struct LoadOutcome {
    successes: u64,
    errors: Vec<String>,
    /// From the failover being seen to the first success of the final streak; `None` if it never came.
    recovered_after: Option<Duration>,
}

/// INCRs every key in turn until, after `failed_over` is set, [`RECOVERED_STREAK`] of them succeed in a row
/// (or [`LOAD_LIMIT`] passes).
async fn steady_load(url: String, keys: Vec<String>, failed_over: Arc<AtomicBool>) -> LoadOutcome {
    let mut connection = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut outcome = LoadOutcome {
        successes: 0,
        errors: Vec::new(),
        recovered_after: None,
    };
    let mut streak = 0;
    let mut streak_start = Instant::now();
    let mut failover_seen: Option<Instant> = None;
    for index in 0.. {
        if failover_seen.is_none() && failed_over.load(Ordering::Relaxed) {
            // Only successes after the failover count towards the streak.
            failover_seen = Some(Instant::now());
            streak = 0;
        }
        if let Some(seen) = failover_seen {
            if streak >= RECOVERED_STREAK || seen.elapsed() > LOAD_LIMIT {
                break;
            }
        }
        let key = &keys[index % keys.len()];
        match connection.incr::<_, _, i64>(key, 1).await {
            Ok(_) => {
                if streak == 0 {
                    streak_start = Instant::now();
                }
                streak += 1;
                outcome.successes += 1;
            }
            Err(error) => {
                streak = 0;
                outcome.errors.push(error.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let (Some(seen), true) = (failover_seen, streak >= RECOVERED_STREAK) {
        outcome.recovered_after = Some(streak_start.saturating_duration_since(seen));
    }
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_keeps_receiving_after_its_node_fails_over() {
    let mut cluster = blocking(|| OwnCluster::start(1000)).await;
    let proxy = start_cluster_proxy(&cluster.addrs(), "refresh_ms = 500").await;
    let channel = "failover-news";
    let url = format!("redis://{}/", proxy.local_addr());
    let mut pubsub = redis::Client::open(url)
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    pubsub.subscribe(channel).await.unwrap();
    let mut publisher = client(&proxy).await;
    let _: i64 = publisher.publish(channel, "before").await.unwrap();
    let mut messages = pubsub.on_message();
    let first = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.get_payload::<String>().unwrap(), "before");

    // The master holding the proxy's subscription connection.
    let holder = cluster
        .addrs()
        .into_iter()
        .find(|addr| {
            redis_cli_at(addr, &["PUBSUB", "NUMSUB", channel])
                .lines()
                .nth(1)
                == Some("1")
        })
        .expect("one node holds the subscription");
    assert!(redis_cli_at(&holder, &["ROLE"]).starts_with("master"));
    let killed_at = Instant::now();
    cluster.node_mut(&holder).stop();

    // Keep publishing until a message arrives through the new subscription.
    let mut received = None;
    while killed_at.elapsed() < Duration::from_secs(25) {
        let _ = publisher.publish::<_, _, i64>(channel, "after").await;
        if let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(300), messages.next()).await
        {
            received = Some(message.get_payload::<String>().unwrap());
            break;
        }
    }
    assert_eq!(
        received.as_deref(),
        Some("after"),
        "no message after the failover"
    );
    println!(
        "subscription restored {:?} after the kill",
        killed_at.elapsed()
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_pubsub_reaches_the_channels_node() {
    let proxy = start_cluster_proxy(&cluster_nodes(), "").await;
    let channel = unique("shard-news");
    let addr = proxy.local_addr();
    let subscribe_channel = channel.clone();
    let subscriber = tokio::task::spawn_blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(format!("SSUBSCRIBE {subscribe_channel}\r\n").as_bytes());
        let confirmation: Vec<String> = (0..6).map(|_| raw.read_line()).collect();
        let message: Vec<String> = (0..7).map(|_| raw.read_line()).collect();
        (confirmation, message)
    });
    let mut publisher = client(&proxy).await;
    // Publish until the subscriber has subscribed (SPUBLISH returns the receiver count).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let receivers: i64 = redis::cmd("SPUBLISH")
            .arg(&channel)
            .arg("sharded")
            .query_async(&mut publisher)
            .await
            .unwrap();
        if receivers == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the subscriber never subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (confirmation, message) = subscriber.await.unwrap();
    assert_eq!(confirmation[0], "*3\r\n");
    assert_eq!(confirmation[2], "ssubscribe\r\n");
    assert_eq!(message[2], "smessage\r\n");
    assert_eq!(message[4], format!("{channel}\r\n"));
    assert_eq!(message[6], "sharded\r\n");
    proxy.shutdown().await;
}

/// With one master dead (and no failover yet), a pipeline over every master still gets one reply per command, in
/// order: the dead master's share of the per-node batches fails with the backend error, the rest is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_master_fails_only_its_share_of_a_pipeline() {
    // A node timeout far longer than the test, so no replica takes over meanwhile.
    let mut cluster = blocking(|| OwnCluster::start(60_000)).await;
    let proxy = start_cluster_proxy(&cluster.addrs(), "").await;
    let mut connection = client(&proxy).await;
    let keys = spread_keys("dead-master", 12);
    for key in &keys {
        let _: () = connection.set(key, key).await.unwrap();
    }
    let owner = |key: &String| cluster.master_of_slot(cluster_router::key_slot(key.as_bytes()));
    let victim = owner(&keys[0]).unwrap();
    let on_victim: Vec<bool> = keys
        .iter()
        .map(|key| owner(key).as_deref() == Some(victim.as_str()))
        .collect();
    assert!(
        on_victim.iter().any(|dead| !dead),
        "the keys should span more than one master"
    );
    cluster.kill(&victim).await;

    let addr = proxy.local_addr();
    let pipelined = keys.clone();
    let replies = blocking(move || {
        let mut raw = RawClient::connect(addr);
        let mut pipeline = String::new();
        for key in &pipelined {
            pipeline.push_str(&format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()));
        }
        raw.send(pipeline.as_bytes());
        pipelined
            .iter()
            .map(|_| {
                let line = raw.read_line();
                let line = if line.starts_with('$') {
                    raw.read_line()
                } else {
                    line
                };
                line.trim_end().to_owned()
            })
            .collect::<Vec<String>>()
    })
    .await;
    for ((key, reply), dead) in keys.iter().zip(&replies).zip(&on_victim) {
        if *dead {
            assert!(
                reply.starts_with(&format!("-ERR backend {victim} unavailable")),
                "{key} (on the dead master {victim}): {reply}"
            );
        } else {
            assert_eq!(reply, key, "{key} lives on a master that is up");
        }
    }
    proxy.shutdown().await;
}
