//! The big-request lane (`[big_requests]`): big values pass byte for byte on both pool kinds, a big transfer
//! does not stall another client's small requests, a full lane answers with a clear error, and a client's
//! small and big requests to one key keep their order.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, OwnRedis};

const MB: usize = 1024 * 1024;

/// A value of `len` bytes that differs from any other of the same length made with another `seed`, and has no
/// long runs (so a shifted or truncated copy never compares equal).
fn value(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed) ^ ((index >> 8) as u8))
        .collect()
}

/// SETs then GETs values of `sizes` through `proxy`, each compared byte for byte.
async fn round_trip(proxy: &rkproxy::Proxy, prefix: &str, sizes: &[usize]) {
    let mut client = support::patient_client(proxy).await;
    for (index, &size) in sizes.iter().enumerate() {
        let key = format!("{}:{size}", support::unique(prefix));
        let sent = value(size, index as u8);
        let started = Instant::now();
        let () = client.set(&key, &sent).await.unwrap();
        let got: Vec<u8> = client.get(&key).await.unwrap();
        let took = started.elapsed();
        assert!(
            got == sent,
            "{key}: {} bytes came back, {size} sent",
            got.len()
        );
        eprintln!("{prefix}: {} MB set and read back in {took:?}", size / MB);
        let _: i64 = client.del(&key).await.unwrap();
    }
}

/// The big lane on a standalone pool: 1, 16 and 100 MB values, then the same through the shared connections
/// (a threshold no request reaches).
#[tokio::test]
async fn big_values_pass_byte_for_byte_on_a_standalone_pool() {
    let _heavy = support::cpu_heavy().await;
    let backend = support::redis_addr();
    let sizes = [MB, 16 * MB, 100 * MB];
    let lane = support::start_proxy_toml(&format!(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{backend}']\n"
    ))
    .await;
    round_trip(&lane, "big:lane", &sizes).await;
    let shared = support::start_proxy_toml(&format!(
        "default_pool = 'main'\n[big_requests]\nthreshold_bytes = 1099511627776\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['{backend}']\n"
    ))
    .await;
    round_trip(&shared, "big:shared", &sizes).await;
}

/// The big lane on a cluster pool (the lane of each key's master), then the shared connections.
#[tokio::test]
async fn big_values_pass_byte_for_byte_on_a_cluster_pool() {
    let _heavy = support::cpu_heavy().await;
    let seeds = support::cluster_nodes();
    let sizes = [MB, 16 * MB, 100 * MB];
    let lane = support::start_cluster_proxy(&seeds, "").await;
    round_trip(&lane, "big:clane", &sizes).await;
    let shared =
        support::start_cluster_proxy(&seeds, "[big_requests]\nthreshold_bytes = 1099511627776\n")
            .await;
    round_trip(&shared, "big:cshared", &sizes).await;
}

/// 400 MB through the lane and through the shared connection of a standalone pool of the test's own.
#[tokio::test]
async fn a_400_mb_value_passes_both_lanes_of_a_standalone_pool() {
    let _heavy = support::cpu_heavy().await;
    let redis = OwnRedis::start(&[]);
    let lane = support::start_proxy(&redis.addr()).await;
    round_trip(&lane, "big:400", &[400 * MB]).await;
    let shared = support::start_proxy_toml(&format!(
        "default_pool = 'main'\n[big_requests]\nthreshold_bytes = 1099511627776\n\
         [timeouts]\ncommand_ms = 10000\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n",
        redis.addr()
    ))
    .await;
    round_trip(&shared, "big:400shared", &[400 * MB]).await;
}

/// 400 MB through the lane of a cluster pool of the test's own (its replicas may drop off and resync: the
/// value is over their output buffer limit; the proxy only talks to masters).
#[tokio::test]
async fn a_400_mb_value_passes_the_lane_of_a_cluster_pool() {
    let _heavy = support::cpu_heavy().await;
    let cluster = support::blocking(|| support::OwnCluster::start(30_000)).await;
    let proxy = support::start_cluster_proxy(&cluster.addrs(), "").await;
    round_trip(&proxy, "big:c400", &[400 * MB]).await;
}

/// Where a big key's GET ran: on a connection of its own, not on the shared one that served a small SET.
#[tokio::test]
async fn a_big_key_is_read_on_the_lane_not_on_the_shared_connection() {
    let redis = OwnRedis::start(&[]);
    let proxy = support::start_proxy(&redis.addr()).await;
    let mut client = support::client(&proxy).await;
    let () = client.set("small", "1").await.unwrap();
    let big = value(MB, 7);
    let () = client.set("big", &big).await.unwrap();
    let got: Vec<u8> = client.get("big").await.unwrap();
    assert!(got == big);
    let mut direct = support::direct(&redis.addr(), 0).await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut direct)
        .await
        .unwrap();
    let last_commands: Vec<&str> = list
        .lines()
        .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("cmd=")))
        .collect();
    // Ours (client|list), the shared connection (the small SET was its last command), the lane (the GET).
    assert!(
        last_commands.contains(&"set") && last_commands.contains(&"get"),
        "{list}"
    );
}

/// Latencies, sorted: (p50, p99).
fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |per_mille: usize| samples[(samples.len() * per_mille / 1000).min(samples.len() - 1)];
    (at(500), at(990))
}

/// A proxy on a thread and event loop of its own, as in the binary, so the test's clients never hold up
/// its event loop (nor it theirs).
struct ProxyThread {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProxyThread {
    fn start(toml: String) -> ProxyThread {
        let (addr_sender, addr) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let proxy = support::start_proxy_toml(&toml).await;
                addr_sender.send(proxy.local_addr()).unwrap();
                let _ = stopped.await;
                proxy.shutdown().await;
            });
        });
        ProxyThread {
            addr: addr.recv().unwrap(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    async fn client(&self) -> redis::aio::MultiplexedConnection {
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
        redis::Client::open(format!("redis://{}/", self.addr))
            .unwrap()
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap()
    }
}

impl Drop for ProxyThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// GETs of a small key, one started every millisecond on one connection (so many are in flight at once), each
/// timed from start to reply: at least 1000, and more until `until` is finished.
async fn small_get_latencies(
    proxy: &ProxyThread,
    key: &str,
    until: Option<&std::thread::JoinHandle<u32>>,
) -> Vec<Duration> {
    let client = proxy.client().await;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut gets = Vec::with_capacity(1000);
    while gets.len() < 1000 || until.is_some_and(|thread| !thread.is_finished()) {
        tick.tick().await;
        let mut client = client.clone();
        let key = key.to_owned();
        gets.push(tokio::spawn(async move {
            let started = Instant::now();
            let got: String = client.get(&key).await.unwrap();
            assert_eq!(got, "small");
            started.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(gets.len());
    for get in gets {
        latencies.push(get.await.unwrap());
    }
    latencies
}

/// SETs a 100 MB value `times` times, on a thread of its own (making and packing 100 MB takes a while, and
/// must not hold up the small GETs being timed). Returns once the value is made and the first SET about to
/// go; the thread ends after the last SET.
fn big_writer(addr: std::net::SocketAddr, times: u32) -> std::thread::JoinHandle<u32> {
    let (ready, is_ready) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        let big_value = value(100 * MB, 3);
        let mut client = redis::Client::open(format!("redis://{addr}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        ready.send(()).unwrap();
        for _ in 0..times {
            let () = redis::Commands::set(&mut client, "big-key", &big_value).unwrap();
        }
        times
    });
    is_ready.recv().unwrap();
    writer
}

/// A client SETting 100 MB values does not stall another client's small GETs on the shared connection (one
/// per node, the default): their p50 stays within tens of ms and their p99 within a few hundred while the
/// transfers run. Without the lane every GET queues behind the value being written (p50 and p99 near 900 ms
/// here in a debug build).
#[tokio::test]
async fn small_gets_keep_their_latency_beside_a_big_set() {
    let _heavy = support::cpu_heavy().await;
    let redis = OwnRedis::start(&[]);
    let proxy = ProxyThread::start(format!(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n",
        redis.addr()
    ));
    let mut setup = proxy.client().await;
    let () = setup.set("small-key", "small").await.unwrap();
    let (base_p50, base_p99) = percentiles(small_get_latencies(&proxy, "small-key", None).await);

    let writer = big_writer(proxy.addr, 3);
    let started = Instant::now();
    let latencies = small_get_latencies(&proxy, "small-key", Some(&writer)).await;
    let measured_for = started.elapsed();
    let written = support::blocking(move || writer.join().unwrap()).await;
    let count = latencies.len();
    let (p50, p99) = percentiles(latencies);
    eprintln!(
        "small GETs alone p50 {base_p50:?} p99 {base_p99:?}; {count} GETs beside {written} SETs of 100 MB \
         ({measured_for:?}) p50 {p50:?} p99 {p99:?}"
    );
    // Generous bounds for a loaded 2-core machine; without the lane p50 and p99 are both near 900 ms.
    assert!(
        p50 < Duration::from_millis(150) && p99 < Duration::from_millis(600).max(base_p99 * 4),
        "small GETs stalled beside the big SETs: p50 {p50:?} p99 {p99:?} (alone {base_p99:?})"
    );
}

/// A TCP relay to `backend` that passes at most `bytes_per_sec` towards the backend on each connection (a slow
/// link), and replies at full speed. Runs on the calling runtime until dropped with it.
async fn slow_link(backend: String, bytes_per_sec: usize) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&backend).await else {
                continue;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let mut chunk = vec![0u8; 64 * 1024];
                let pause = Duration::from_secs_f64(chunk.len() as f64 / bytes_per_sec as f64);
                while let Ok(read) = client_read.read(&mut chunk).await {
                    if read == 0 || server_write.write_all(&chunk[..read]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(pause.mul_f64(read as f64 / chunk.len() as f64)).await;
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
        }
    });
    addr
}

/// The big lane's purpose: a big SET crawling over a slow link to Redis (32 MB/s per connection) holds only
/// its lane connection, so another client's small GETs on the shared connection (one per node, the default)
/// keep their latency. On the old code every GET waited behind the value on the one shared connection (p50
/// and p99 of hundreds of ms).
#[tokio::test]
async fn small_gets_are_not_stalled_by_a_big_set_on_a_slow_link() {
    // Latencies are only meaningful when the machine is not also running the heavy tests.
    let _heavy = support::cpu_heavy().await;
    let redis = OwnRedis::start(&[]);
    let link = slow_link(redis.addr(), 32 * MB).await;
    let proxy = ProxyThread::start(format!(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{link}']\n"
    ));
    let mut setup = proxy.client().await;
    let () = setup.set("small-key", "small").await.unwrap();
    let writer = std::thread::spawn({
        let addr = proxy.addr;
        move || {
            let big_value = value(16 * MB, 5);
            let mut client = redis::Client::open(format!("redis://{addr}/"))
                .unwrap()
                .get_connection()
                .unwrap();
            for _ in 0..2 {
                let () = redis::Commands::set(&mut client, "big-key", &big_value).unwrap();
            }
            2
        }
    });
    let started = Instant::now();
    let latencies = small_get_latencies(&proxy, "small-key", Some(&writer)).await;
    let measured_for = started.elapsed();
    let written = support::blocking(move || writer.join().unwrap()).await;
    let count = latencies.len();
    let (p50, p99) = percentiles(latencies);
    eprintln!(
        "{count} small GETs beside {written} SETs of 16 MB over a 32 MB/s link ({measured_for:?}): \
         p50 {p50:?} p99 {p99:?}"
    );
    assert!(
        measured_for > Duration::from_millis(900),
        "the big SETs did not take the slow link"
    );
    assert!(
        p99 < Duration::from_millis(250),
        "small GETs stalled behind the big SETs: p50 {p50:?} p99 {p99:?}"
    );
}

/// Sends `SET key <len bytes>` on a raw connection and returns the first line of the reply.
async fn raw_big_set(proxy: std::net::SocketAddr, key: String, len: usize) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let mut request =
        format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${len}\r\n", key.len()).into_bytes();
    request.extend(value(len, 1));
    request.extend_from_slice(b"\r\n");
    stream.write_all(&request).await.unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        reply.push(byte[0]);
    }
    String::from_utf8_lossy(&reply).into_owned()
}

/// A proxy whose big lane to `backend` has one connection and room for one waiting request.
async fn narrow_lane_proxy(backend: &str, queue_wait_ms: u64) -> rkproxy::Proxy {
    support::start_proxy_toml(&format!(
        "default_pool = 'main'\n[timeouts]\ncommand_ms = 30000\nslow_command_ms = 30000\n\
         [big_requests]\nconnections_per_node = 1\nmax_queued = 1\nqueue_wait_ms = {queue_wait_ms}\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['{backend}']\n"
    ))
    .await
}

/// With the backend stalled, one big request holds the only lane connection, one waits, and the third is
/// refused at once with the lane's error; once the backend goes on, the two others succeed.
#[tokio::test]
async fn a_full_lane_refuses_big_requests_with_a_clear_error() {
    let redis = OwnRedis::start(&[]);
    let proxy = narrow_lane_proxy(&redis.addr(), 60_000).await;
    let addr = proxy.local_addr();
    redis.pause();
    let mut sets: Vec<_> = (0..3)
        .map(|index| tokio::spawn(raw_big_set(addr, format!("k{index}"), MB)))
        .collect();
    let busy = format!(
        "-ERR big request lane of {} is busy, try again\r\n",
        redis.addr()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        assert!(Instant::now() < deadline, "no request was refused");
        if let Some(done) = sets.iter().position(tokio::task::JoinHandle::is_finished) {
            break sets.remove(done).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    redis.resume();
    assert_eq!(refused, busy);
    for set in sets {
        assert_eq!(set.await.unwrap(), "+OK\r\n");
    }
}

/// A big request that waits for a lane connection longer than `queue_wait_ms` gets the lane's error.
#[tokio::test]
async fn a_big_request_waiting_too_long_is_refused() {
    let redis = OwnRedis::start(&[]);
    let proxy = narrow_lane_proxy(&redis.addr(), 300).await;
    let addr = proxy.local_addr();
    redis.pause();
    let first = tokio::spawn(raw_big_set(addr, "first".to_owned(), MB));
    // The second finds the lane connection taken (or takes it and the first waits): one of them waits.
    let second = tokio::spawn(raw_big_set(addr, "second".to_owned(), MB));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !first.is_finished() && !second.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the waiting request was not refused"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis.resume();
    let replies = [first.await.unwrap(), second.await.unwrap()];
    let busy = format!(
        "-ERR big request lane of {} is busy, try again\r\n",
        redis.addr()
    );
    assert!(
        replies.contains(&busy) && replies.contains(&"+OK\r\n".to_owned()),
        "{replies:?}"
    );
}

/// On a cluster pool each master has its own lane: with one master stalled, its lane (one connection, no
/// queue) refuses a second big request naming that master, while a big request for another master's key goes
/// through; once the master goes on, the held request succeeds.
#[tokio::test]
async fn each_cluster_master_has_its_own_lane() {
    // A long node timeout: the stalled master must not be failed over.
    let mut cluster = support::blocking(|| support::OwnCluster::start(30_000)).await;
    let addrs = cluster.addrs();
    let slot_of = |key: &str| -> u16 {
        support::redis_cli_at(&addrs[0], &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .unwrap()
    };
    let stalled = cluster.master_of_slot(slot_of("{lane}a")).unwrap();
    let other_key = (0..100)
        .map(|index| format!("other{index}"))
        .find(|key| cluster.master_of_slot(slot_of(key)).as_deref() != Some(stalled.as_str()))
        .unwrap();
    let proxy = support::start_cluster_proxy(
        &addrs,
        "[timeouts]\ncommand_ms = 30000\nslow_command_ms = 30000\n\
         [big_requests]\nconnections_per_node = 1\nmax_queued = 0\n",
    )
    .await;
    let addr = proxy.local_addr();
    cluster.node_mut(&stalled).pause();
    let mut on_stalled: Vec<_> = ["{lane}a", "{lane}b"]
        .into_iter()
        .map(|key| tokio::spawn(raw_big_set(addr, key.to_owned(), MB)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        assert!(Instant::now() < deadline, "no request was refused");
        if let Some(done) = on_stalled
            .iter()
            .position(tokio::task::JoinHandle::is_finished)
        {
            break on_stalled.remove(done).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let elsewhere = tokio::time::timeout(
        Duration::from_secs(20),
        raw_big_set(addr, other_key.clone(), MB),
    )
    .await;
    cluster.node_mut(&stalled).resume();
    assert_eq!(
        refused,
        format!("-ERR big request lane of {stalled} is busy, try again\r\n")
    );
    assert_eq!(
        elsewhere.expect("the other master's lane is not held up"),
        "+OK\r\n",
        "{other_key}"
    );
    for held in on_stalled {
        assert_eq!(held.await.unwrap(), "+OK\r\n");
    }
}

/// One step of an ordering case and what Redis answers.
enum Step {
    Set(usize, Vec<u8>),
    Get(usize),
    Strlen(usize),
    Append(usize, Vec<u8>),
}

/// Random pipelines of small and big writes and reads of a few keys, sent in one write each; every reply must
/// be what Redis gives for that order (a model of the keys), so no big request overtook a small one of the
/// same client or the reverse.
async fn check_ordering(proxy: &rkproxy::Proxy, prefix: &str, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let keys: Vec<String> = (0..3).map(|_| support::unique(prefix)).collect();
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut decoder = ReplyReader::default();
    for round in 0..20 {
        let mut model: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
        let mut wire = Vec::new();
        for key in &keys {
            encode(&mut wire, &[b"DEL", key.as_bytes()]);
        }
        let mut expected_replies: Vec<Vec<u8>> = Vec::new();
        let mut dels = 0;
        let steps: Vec<Step> = (0..12)
            .map(|_| {
                let key = rng.usize(..keys.len());
                let len = if rng.bool() {
                    rng.usize(1..64)
                } else {
                    rng.usize(300_000..1_200_000)
                };
                match rng.u8(..4) {
                    0 => Step::Set(key, value(len, rng.u8(..))),
                    1 => Step::Get(key),
                    2 => Step::Strlen(key),
                    _ => Step::Append(key, value(len.min(400_000), rng.u8(..))),
                }
            })
            .collect();
        for step in &steps {
            match step {
                Step::Set(key, bytes) => {
                    encode(&mut wire, &[b"SET", keys[*key].as_bytes(), bytes]);
                    model[*key] = Some(bytes.clone());
                    expected_replies.push(b"+OK\r\n".to_vec());
                }
                Step::Get(key) => {
                    encode(&mut wire, &[b"GET", keys[*key].as_bytes()]);
                    expected_replies.push(match &model[*key] {
                        Some(bytes) => bulk(bytes),
                        None => b"$-1\r\n".to_vec(),
                    });
                }
                Step::Strlen(key) => {
                    encode(&mut wire, &[b"STRLEN", keys[*key].as_bytes()]);
                    let len = model[*key].as_ref().map_or(0, Vec::len);
                    expected_replies.push(format!(":{len}\r\n").into_bytes());
                }
                Step::Append(key, bytes) => {
                    encode(&mut wire, &[b"APPEND", keys[*key].as_bytes(), bytes]);
                    let stored = model[*key].get_or_insert_with(Vec::new);
                    stored.extend_from_slice(bytes);
                    expected_replies.push(format!(":{}\r\n", stored.len()).into_bytes());
                }
            }
        }
        stream.write_all(&wire).await.unwrap();
        // The DELs' replies first (0 or 1 each: the keys may exist from the round before).
        while dels < keys.len() {
            let reply = decoder.next(&mut stream).await;
            assert!(
                reply == b":0\r\n" || reply == b":1\r\n",
                "DEL: {:?}",
                short(&reply)
            );
            dels += 1;
        }
        for (index, want) in expected_replies.iter().enumerate() {
            let got = decoder.next(&mut stream).await;
            assert!(
                &got == want,
                "seed {seed} round {round} step {index}: got {:?}, want {:?}",
                short(&got),
                short(want)
            );
        }
    }
}

/// The start and length of a reply, for assertion messages.
fn short(reply: &[u8]) -> String {
    format!(
        "{} ({} bytes)",
        String::from_utf8_lossy(&reply[..reply.len().min(40)]),
        reply.len()
    )
}

fn encode(wire: &mut Vec<u8>, args: &[&[u8]]) {
    wire.extend(format!("*{}\r\n", args.len()).into_bytes());
    for arg in args {
        wire.extend(bulk(arg));
    }
}

fn bulk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

/// Reads whole replies of the kinds the ordering test gets (simple, integer, bulk) from a stream.
#[derive(Default)]
struct ReplyReader {
    buffer: Vec<u8>,
}

impl ReplyReader {
    async fn next(&mut self, stream: &mut TcpStream) -> Vec<u8> {
        loop {
            if let Some(len) = self.complete_len() {
                return self.buffer.drain(..len).collect();
            }
            let mut chunk = vec![0u8; 1024 * 1024];
            let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
                .await
                .expect("a reply within 30 s")
                .unwrap();
            assert!(read > 0, "the proxy closed the connection");
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    fn complete_len(&self) -> Option<usize> {
        let line_end = self.buffer.windows(2).position(|w| w == b"\r\n")? + 2;
        if self.buffer.first() != Some(&b'$') {
            return Some(line_end);
        }
        let len: i64 = std::str::from_utf8(&self.buffer[1..line_end - 2])
            .ok()?
            .parse()
            .ok()?;
        if len < 0 {
            return Some(line_end);
        }
        let total = line_end + len as usize + 2;
        (self.buffer.len() >= total).then_some(total)
    }
}

fn seed() -> u64 {
    std::env::var("RKPROXY_BIG_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

/// A client's small and big requests to the same keys, pipelined, run in the order sent: standalone pool.
#[tokio::test]
async fn small_and_big_requests_of_a_client_keep_their_order_on_a_standalone_pool() {
    let _heavy = support::cpu_heavy().await;
    let proxy = support::start_proxy(&support::redis_addr()).await;
    let seed = seed();
    eprintln!("RKPROXY_BIG_SEED={seed}");
    check_ordering(&proxy, "big:order", seed).await;
}

/// The same on a cluster pool, with the keys on one slot (a hash tag) and spread over the masters.
#[tokio::test]
async fn small_and_big_requests_of_a_client_keep_their_order_on_a_cluster_pool() {
    let _heavy = support::cpu_heavy().await;
    let proxy = support::start_cluster_proxy(&support::cluster_nodes(), "").await;
    let seed = seed();
    eprintln!("RKPROXY_BIG_SEED={seed}");
    check_ordering(&proxy, "{big:order}", seed).await;
    check_ordering(&proxy, "big:corder", seed.wrapping_add(1)).await;
}

// === Streaming: a big value passes in a bounded window, and failures mid-value harm nobody else ===

/// The start of `SET key <len bytes>`, through the value's header.
fn set_head(key: &str, len: usize) -> Vec<u8> {
    format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${len}\r\n", key.len()).into_bytes()
}

/// Reads one line (through CRLF) from a raw connection; what came before the connection closed otherwise.
async fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => line.push(byte[0]),
            Err(_) => panic!("no reply within 30 s; got {line:?}"),
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Reads until the peer closes (or 30 s pass, which fails the test); returns how many bytes came.
async fn read_until_closed(stream: &mut TcpStream) -> usize {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return total,
            Ok(Ok(read)) => total += read,
            Err(_) => panic!("the connection stayed open ({total} bytes read)"),
        }
    }
}

/// A proxy in front of `backend` whose lane has one connection, so whoever uses the lane next gets the
/// connection a failed transfer used (unless that one was closed, as it must be).
async fn one_lane_connection_proxy(backend: &str) -> rkproxy::Proxy {
    narrow_lane_proxy(backend, 30_000).await
}

/// After a failed transfer on the only lane connection: a big SET and its GET through the lane get their own
/// replies, and the failed transfer's key was never set.
async fn lane_still_answers_right(proxy: &rkproxy::Proxy, failed_key: &str) {
    let mut client = support::patient_client(proxy).await;
    // Same hash tag as the failed key: on a cluster, the same master and so the same lane connection.
    let key = format!("{failed_key}:next");
    let sent = value(2 * MB, 9);
    let () = client.set(&key, &sent).await.unwrap();
    let got: Vec<u8> = client.get(&key).await.unwrap();
    assert!(got == sent, "{} bytes came back", got.len());
    let exists: bool = client.exists(failed_key).await.unwrap();
    assert!(!exists, "half a value was stored under {failed_key}");
}

/// A client sends part of a big value and closes.
async fn leave_mid_value(proxy: &rkproxy::Proxy, key: &str) {
    let mut leaver = TcpStream::connect(proxy.local_addr()).await.unwrap();
    leaver.write_all(&set_head(key, 16 * MB)).await.unwrap();
    leaver.write_all(&value(MB, 3)).await.unwrap();
    drop(leaver);
}

/// A client sends a big value without the CRLF after it: Redis's protocol error, then its connection closes.
async fn break_protocol_mid_value(proxy: &rkproxy::Proxy, key: &str) {
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    // Streamed on both pool kinds (cluster pools stream values of 8 MiB and more).
    let len = 16 * MB;
    client.write_all(&set_head(key, len)).await.unwrap();
    client.write_all(&value(len, 4)).await.unwrap();
    client.write_all(b"XX*1\r\n$4\r\nPING\r\n").await.unwrap();
    assert_eq!(
        read_line(&mut client).await,
        "-ERR Protocol error: expected CRLF after bulk data\r\n"
    );
    assert_eq!(read_until_closed(&mut client).await, 0);
}

/// One lane connection per master of the shared test cluster.
async fn one_lane_connection_cluster_proxy() -> rkproxy::Proxy {
    support::start_cluster_proxy(
        &support::cluster_nodes(),
        "[big_requests]\nconnections_per_node = 1\nqueue_wait_ms = 30000\n",
    )
    .await
}

/// A client that leaves mid-value on a cluster pool: the master's lane connection is closed, the next big
/// request on it is answered right.
#[tokio::test]
async fn a_client_leaving_mid_value_leaves_the_cluster_lane_clean() {
    let proxy = one_lane_connection_cluster_proxy().await;
    let key = support::unique("{stream:cleft}");
    leave_mid_value(&proxy, &key).await;
    lane_still_answers_right(&proxy, &key).await;
}

/// Malformed bytes mid-value on a cluster pool: the protocol error, and the lane stays right.
#[tokio::test]
async fn malformed_bytes_mid_value_on_a_cluster_pool_close_the_client() {
    let proxy = one_lane_connection_cluster_proxy().await;
    let key = support::unique("{stream:cbad}");
    break_protocol_mid_value(&proxy, &key).await;
    lane_still_answers_right(&proxy, &key).await;
}

/// A client that sends part of a big value and closes: the lane connection that held half a request is
/// closed, not given to the next big request (which would otherwise be read as the rest of the value).
#[tokio::test]
async fn a_client_leaving_mid_value_leaves_the_lane_clean() {
    let redis = OwnRedis::start(&[]);
    let proxy = one_lane_connection_proxy(&redis.addr()).await;
    let key = support::unique("stream:left");
    leave_mid_value(&proxy, &key).await;
    lane_still_answers_right(&proxy, &key).await;
}

/// Malformed bytes mid-value (no CRLF after the data): the client gets Redis's protocol error and is closed,
/// and the lane connection that held the half request is closed too.
#[tokio::test]
async fn malformed_bytes_mid_value_close_the_client_and_its_lane_connection() {
    let redis = OwnRedis::start(&[]);
    let proxy = one_lane_connection_proxy(&redis.addr()).await;
    let key = support::unique("stream:bad");
    break_protocol_mid_value(&proxy, &key).await;
    lane_still_answers_right(&proxy, &key).await;
}

/// The server dies while a big value is being streamed to it: the rest of the value is still read from the
/// client, which then gets the backend error (not a hang, not a closed connection).
#[tokio::test]
async fn a_backend_dying_mid_request_gives_the_client_an_error() {
    let mut redis = OwnRedis::start(&[]);
    let proxy = one_lane_connection_proxy(&redis.addr()).await;
    let key = support::unique("stream:died");
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let len = 32 * MB;
    client.write_all(&set_head(&key, len)).await.unwrap();
    client.write_all(&value(MB, 5)).await.unwrap();
    // The value's first megabyte reached the server: it holds a half-read request.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let clients = support::redis_cli_at(&redis.addr(), &["CLIENT", "LIST"]);
        let buffered = clients
            .split_whitespace()
            .filter_map(|field| field.strip_prefix("qbuf="))
            .filter_map(|number| number.parse::<usize>().ok())
            .max()
            .unwrap_or(0);
        if buffered > 64 * 1024 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the value never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.stop();
    client.write_all(&value(len - MB, 6)).await.unwrap();
    client.write_all(b"\r\n").await.unwrap();
    let reply = read_line(&mut client).await;
    assert!(
        reply.starts_with(&format!("-ERR backend {} unavailable: ", redis.addr())),
        "{reply:?}"
    );
    // The connection goes on: the next request is read (and answered, with the server gone, by an error).
    client.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    assert!(read_line(&mut client).await.starts_with('-'));
}

/// The server dies while a big reply is being streamed to the client: the client, which has part of the value,
/// is disconnected (nothing else could tell it the value is cut short); it never gets a complete-looking reply.
#[tokio::test]
async fn a_backend_dying_mid_reply_closes_the_client() {
    let mut redis = OwnRedis::start(&[]);
    let proxy = one_lane_connection_proxy(&redis.addr()).await;
    let key = support::unique("stream:cut");
    let len = 64 * MB;
    // Written through the proxy, so the proxy knows the key as big and reads it on the lane.
    let mut client = support::patient_client(&proxy).await;
    let () = client.set(&key, value(len, 7)).await.unwrap();
    let mut reader = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let get = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
    reader.write_all(get.as_bytes()).await.unwrap();
    // The reply has started: its header and some of the value.
    let header = format!("${len}\r\n");
    let mut start = vec![0u8; header.len()];
    reader.read_exact(&mut start).await.unwrap();
    assert_eq!(start, header.as_bytes());
    redis.stop();
    let rest = read_until_closed(&mut reader).await;
    assert!(
        rest < len + 2,
        "the whole value came ({rest} bytes) although the server died"
    );
}

/// Reads a bulk string reply of `len` bytes (its header, data and CRLF) from a raw connection.
async fn read_bulk(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    assert_eq!(read_line(stream).await, format!("${len}\r\n"));
    let mut data = vec![0u8; len + 2];
    tokio::time::timeout(Duration::from_secs(30), stream.read_exact(&mut data))
        .await
        .expect("the value within 30 s")
        .unwrap();
    assert!(data.ends_with(b"\r\n"), "no CRLF after the value");
    data.truncate(len);
    data
}

/// A big value whose bytes are moved to the lane without being read (splice, on plain TCP) must still end where
/// the client's request ends: the value arrives in pieces of odd sizes, its last bytes in the same write as the
/// next requests (a GET and a second big SET), and every reply is right, byte for byte.
#[tokio::test]
async fn a_value_in_odd_pieces_with_requests_right_after_it_passes_byte_for_byte() {
    let backend = support::redis_addr();
    let proxy = support::start_proxy_toml(&format!(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{backend}']\n"
    ))
    .await;
    let key = support::unique("big:pieces");
    let (first, second) = (value(3 * MB + 5, 11), value(2 * MB, 12));
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    client
        .write_all(&set_head(&key, first.len()))
        .await
        .unwrap();
    let mut at = 0;
    for piece in [1, 7, 4096, 65_537, 300_000, MB] {
        client.write_all(&first[at..at + piece]).await.unwrap();
        client.flush().await.unwrap();
        at += piece;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut rest = first[at..].to_vec();
    rest.extend_from_slice(b"\r\n");
    encode(&mut rest, &[b"GET", key.as_bytes()]);
    encode(&mut rest, &[b"SET", key.as_bytes(), &second]);
    encode(&mut rest, &[b"GET", key.as_bytes()]);
    client.write_all(&rest).await.unwrap();
    assert_eq!(read_line(&mut client).await, "+OK\r\n");
    assert!(
        read_bulk(&mut client, first.len()).await == first,
        "the first value changed"
    );
    assert_eq!(read_line(&mut client).await, "+OK\r\n");
    assert!(
        read_bulk(&mut client, second.len()).await == second,
        "the second value changed"
    );
    let mut cleanup = support::patient_client(&proxy).await;
    let _: i64 = cleanup.del(&key).await.unwrap();
}

/// A client that sends a big value slowly holds one lane connection; the other (two per node) still serves
/// another client's big requests, and small requests pass on the shared connection.
#[tokio::test]
async fn a_slow_sender_holds_only_its_own_lane_connection() {
    let redis = OwnRedis::start(&[]);
    let proxy = support::start_proxy(&redis.addr()).await;
    let slow_key = support::unique("stream:slow");
    let mut slow = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let len = 4 * MB;
    let sent = value(len, 8);
    slow.write_all(&set_head(&slow_key, len)).await.unwrap();
    slow.write_all(&sent[..MB]).await.unwrap();
    // Meanwhile: a big SET and GET and a small one from another client.
    let mut other = support::patient_client(&proxy).await;
    let key = support::unique("stream:beside");
    let big = value(MB, 2);
    let () = other.set(&key, &big).await.unwrap();
    let got: Vec<u8> = other.get(&key).await.unwrap();
    assert!(got == big);
    let () = other.set(format!("{key}:small"), "1").await.unwrap();
    // The slow sender finishes; its value is whole.
    slow.write_all(&sent[MB..]).await.unwrap();
    slow.write_all(b"\r\n").await.unwrap();
    assert_eq!(read_line(&mut slow).await, "+OK\r\n");
    let stored: Vec<u8> = other.get(&slow_key).await.unwrap();
    assert!(stored == sent);
}

/// What the tenant's rules do to a request apply to a streamed one: the key gets the tenant's prefix and a
/// SET without expiry gets the tenant's default TTL. Without tenants, arguments after the value (`EX`) pass.
#[tokio::test]
async fn a_streamed_value_keeps_the_tenants_prefix_and_the_options_after_it() {
    let redis = OwnRedis::start(&[]);
    let proxy = support::start_proxy_toml(&format!(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n\
         [tenants.big]\npassword = 'big-pw'\npool = 'main'\nkey_prefix = 'big:'\ndefault_ttl = 600\n",
        redis.addr()
    ))
    .await;
    let mut tenant = support::as_tenant(&proxy, "big", "big-pw").await;
    let sent = value(MB, 11);
    let () = tenant.set("k", &sent).await.unwrap();
    let got: Vec<u8> = tenant.get("k").await.unwrap();
    assert!(got == sent);
    let mut direct = support::direct(&redis.addr(), 0).await;
    let stored: Vec<u8> = direct.get("big:k").await.unwrap();
    assert!(stored == sent, "not stored under the tenant's prefix");
    let ttl: i64 = direct.ttl("big:k").await.unwrap();
    assert!(ttl > 0 && ttl <= 600, "TTL {ttl}");

    let plain = support::start_proxy(&redis.addr()).await;
    let mut raw = TcpStream::connect(plain.local_addr()).await.unwrap();
    let mut request = b"*5\r\n$3\r\nSET\r\n$5\r\nplain\r\n".to_vec();
    request.extend_from_slice(format!("${}\r\n", sent.len()).as_bytes());
    request.extend_from_slice(&sent);
    request.extend_from_slice(b"\r\n$2\r\nEX\r\n$3\r\n100\r\n");
    raw.write_all(&request).await.unwrap();
    assert_eq!(read_line(&mut raw).await, "+OK\r\n");
    let ttl: i64 = direct.ttl("plain").await.unwrap();
    assert!(ttl > 0 && ttl <= 100, "TTL {ttl}");
    let stored: Vec<u8> = direct.get("plain").await.unwrap();
    assert!(stored == sent);
}

/// A 200 MB value written through the proxy and read back, byte for byte, each way in 1 MB pieces that the
/// test makes as it goes (so it never holds the value either): the proxy process's peak RSS (`VmHWM`) grows by
/// far less than the value, since it holds a window, not the value.
#[tokio::test]
async fn a_200_mb_value_passes_the_proxy_in_a_bounded_window() {
    let _heavy = support::cpu_heavy().await;
    let redis = OwnRedis::start(&[]);
    let proxy = support::ReadyProxy::in_front_of(
        &redis.addr(),
        &[("RKPROXY_TIMEOUTS__SLOW_COMMAND_MS", "60000")],
    );
    let mut client = TcpStream::connect(proxy.listen).await.unwrap();
    // A big request first, so the lane and its buffers exist before measuring.
    client.write_all(&set_head("warm", MB)).await.unwrap();
    client.write_all(&value(MB, 0)).await.unwrap();
    client.write_all(b"\r\n").await.unwrap();
    assert_eq!(read_line(&mut client).await, "+OK\r\n");
    let before = proxy.status_kb("VmHWM");

    let pieces = 200;
    let key = support::unique("stream:200");
    client
        .write_all(&set_head(&key, pieces * MB))
        .await
        .unwrap();
    for piece in 0..pieces {
        client.write_all(&value(MB, piece as u8)).await.unwrap();
    }
    client.write_all(b"\r\n").await.unwrap();
    assert_eq!(read_line(&mut client).await, "+OK\r\n");
    let get = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
    client.write_all(get.as_bytes()).await.unwrap();
    assert_eq!(
        read_line(&mut client).await,
        format!("${}\r\n", pieces * MB)
    );
    let mut piece_read = vec![0u8; MB];
    for piece in 0..pieces {
        client.read_exact(&mut piece_read).await.unwrap();
        assert!(piece_read == value(MB, piece as u8), "MB {piece} differs");
    }
    assert_eq!(read_line(&mut client).await, "\r\n");
    let growth_mb = proxy.status_kb("VmHWM").saturating_sub(before) / 1024;
    eprintln!("proxy peak RSS grew by {growth_mb} MB while 200 MB passed each way");
    assert!(growth_mb < 32, "peak RSS grew by {growth_mb} MB");
}

/// A streamed value goes to the lane with MSG_MORE, which lets the kernel hold a last partial segment until the
/// request's next bytes come. So the request's last bytes must send whatever is held, even when they come
/// alone, after everything before them has gone out: the value's last byte and then its CRLF arrive after
/// pauses, and the SET is still answered at once and stored whole.
#[tokio::test]
async fn a_value_whose_last_bytes_come_after_pauses_is_answered_and_stored_whole() {
    let backend = support::redis_addr();
    let proxy = support::start_proxy(&backend).await;
    let key = support::unique("big:pauses");
    let sent = value(MB + 3, 21);
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    client.write_all(&set_head(&key, sent.len())).await.unwrap();
    let (most, last) = sent.split_at(sent.len() - 1);
    client.write_all(most).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.write_all(last).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.write_all(b"\r\n").await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), read_line(&mut client))
        .await
        .expect("the SET answered within 5 s of its last bytes");
    assert_eq!(reply, "+OK\r\n");
    let mut direct = support::direct(&backend, 0).await;
    let stored: Vec<u8> = direct.get(&key).await.unwrap();
    assert!(stored == sent, "the value changed on the way");
    let _: i64 = direct.del(&key).await.unwrap();
}
