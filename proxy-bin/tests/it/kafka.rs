//! Kafka pools through the proxy, against the real broker `cargo xtask test` starts (`RKPROXY_TEST_KAFKA`):
//! KPUSH read back byte for byte by kcat, kcat's messages out of KPOP, KPARTITIONS, KOFFSET, error replies on
//! a connection that stays open, tenants of Redis and Kafka pools, a broker that is down when the proxy starts,
//! the admin commands, and real rkproxy processes sharing a Redis offset store (concurrent consumers, a
//! restart). Every test uses topics of its own: tests run concurrently and share the broker.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;

use crate::support::*;

/// Delivery guarantees with a proxy killed: at least once and at most once.
mod delivery;

/// The error text of a command that must fail.
async fn error_of(connection: &mut MultiplexedConnection, command: &redis::Cmd) -> String {
    match command.query_async::<redis::Value>(connection).await {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => error.to_string(),
    }
}

/// Reads one record with kcat, a plain Kafka consumer: `Some(value)`, or `None` for a record without a value.
fn kcat_read(topic: &str, partition: i64, offset: i64) -> Option<Vec<u8>> {
    let output = Command::new("kcat")
        .args([
            "-C",
            "-b",
            &kafka_addr(),
            "-t",
            topic,
            "-q",
            "-e",
            "-c",
            "1",
        ])
        .args(["-p", &partition.to_string(), "-o", &offset.to_string()])
        // The value's length (-1 for none), a colon, then the value's bytes as they are.
        .args(["-f", "%S:%s"])
        .stdin(Stdio::null())
        .output()
        .expect("kcat runs (install the kcat package)");
    assert!(output.status.success(), "kcat failed: {output:?}");
    let colon = output
        .stdout
        .iter()
        .position(|byte| *byte == b':')
        .unwrap_or_else(|| panic!("kcat printed no record: {output:?}"));
    let length: i64 = std::str::from_utf8(&output.stdout[..colon])
        .unwrap()
        .parse()
        .unwrap();
    let value = output.stdout[colon + 1..].to_vec();
    if length < 0 {
        return None;
    }
    assert_eq!(value.len() as i64, length, "kcat's length and bytes differ");
    Some(value)
}

/// Produces `values` (one record each) to one partition with kcat, a plain Kafka producer.
fn kcat_produce(topic: &str, partition: i64, values: &[String]) {
    let mut child = Command::new("kcat")
        .args(["-P", "-b", &kafka_addr(), "-t", topic])
        .args(["-p", &partition.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kcat runs (install the kcat package)");
    let mut input = child.stdin.take().unwrap();
    for value in values {
        writeln!(input, "{value}").unwrap();
    }
    drop(input);
    let status = child.wait().unwrap();
    assert!(status.success(), "kcat -P failed: {status}");
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpush_is_read_back_byte_for_byte_by_kcat() {
    let topic = unique_name("bytes");
    let proxy = kafka_proxy("", &topic_toml(&topic, 2, &["*"], &["*"])).await;
    let mut connection = client(&proxy).await;
    wait_connected(&mut connection, &topic).await;

    let big: Vec<u8> = (0..100_000u32).map(|index| (index % 251) as u8).collect();
    let values: Vec<Vec<u8>> = vec![
        (0..=255u8).collect(),
        Vec::new(),
        b"line one\r\nline two\r\n".to_vec(),
        b"*2\r\n$3\r\nGET\r\n".to_vec(),
        big,
        b"plain".to_vec(),
    ];
    let mut partitions_used = BTreeSet::new();
    for value in &values {
        let (partition, offset) = kpush(&mut connection, &topic, value).await;
        assert!(
            partition == 0 || partition == 1,
            "partition {partition} of a 2-partition topic"
        );
        partitions_used.insert(partition);
        let (topic, expected) = (topic.clone(), value.clone());
        let read = blocking(move || kcat_read(&topic, partition, offset)).await;
        assert_eq!(read, Some(expected), "record at {partition}/{offset}");
    }
    assert_eq!(
        partitions_used.len(),
        2,
        "KPUSH without a partition goes round-robin"
    );

    // An explicit partition, from redis-cli this time.
    let output = redis_cli(
        proxy.local_addr(),
        &["KPUSH", &topic, "1", "from redis-cli"],
    )
    .await;
    let numbers: Vec<i64> = output.lines().map(|line| line.parse().unwrap()).collect();
    assert_eq!(numbers.len(), 2, "{output}");
    assert_eq!(numbers[0], 1);
    let read = blocking({
        let topic = topic.clone();
        move || kcat_read(&topic, 1, numbers[1])
    })
    .await;
    assert_eq!(read.as_deref(), Some(&b"from redis-cli"[..]));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_messages_come_out_of_kpop() {
    let topic = unique_name("kcat");
    let proxy = kafka_proxy("", &topic_toml(&topic, 1, &[], &["default"])).await;
    let mut connection = client(&proxy).await;
    wait_connected(&mut connection, &topic).await;
    let values: Vec<String> = (0..5).map(|index| format!("message {index}")).collect();
    blocking({
        let (topic, values) = (topic.clone(), values.clone());
        move || kcat_produce(&topic, 0, &values)
    })
    .await;

    // Proxy-managed offsets: each record once, in order, then nil.
    for (index, value) in values.iter().enumerate() {
        let record = kpop(&mut connection, &topic).await;
        assert_eq!(record, Some((0, index as i64, value.clone().into_bytes())));
    }
    assert_eq!(kpop(&mut connection, &topic).await, None);

    // Application-managed offsets read anywhere and move no cursor.
    let record: Option<Record> = redis::cmd("KPOP")
        .arg(&topic)
        .arg(0)
        .arg(2)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(record, Some((0, 2, b"message 2".to_vec())));
    let records: Vec<Record> = redis::cmd("KPOP")
        .arg(&topic)
        .arg(0)
        .arg(1)
        .arg(3)
        .query_async(&mut connection)
        .await
        .unwrap();
    let offsets: Vec<i64> = records.iter().map(|record| record.1).collect();
    assert_eq!(offsets, [1, 2, 3]);
    assert_eq!(records[2].2, b"message 3");
    let past_the_end: Option<Record> = redis::cmd("KPOP")
        .arg(&topic)
        .arg(0)
        .arg(99)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(past_the_end, None);

    // The admin view: the group `default` has read offsets 0 to 4.
    let lines = koffsets(&mut connection, "default", &topic).await;
    assert_eq!(
        lines,
        ["partition=0 next_offset=5 given_back= pending=0 oldest_deadline_in_ms="]
    );

    // Resetting the cursor makes the group read from there again.
    kreset(&mut connection, "default", &topic, 0, 3).await;
    assert_eq!(
        kpop(&mut connection, &topic).await,
        Some((0, 3, b"message 3".to_vec()))
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpartitions_koffset_and_topic_growth() {
    let topic = unique_name("offsets");
    let proxy = kafka_proxy("", &topic_toml(&topic, 1, &["*"], &["*"])).await;
    let mut connection = client(&proxy).await;
    wait_connected(&mut connection, &topic).await;
    let partitions: Vec<i64> = redis::cmd("KPARTITIONS")
        .arg(&topic)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(partitions, [0]);
    proxy.shutdown().await;

    // A proxy configured with more partitions grows the topic when it connects.
    let proxy = kafka_proxy("", &topic_toml(&topic, 3, &["*"], &["*"])).await;
    let mut connection = client(&proxy).await;
    wait_connected(&mut connection, &topic).await;
    let partitions: Vec<i64> = redis::cmd("KPARTITIONS")
        .arg(&topic)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(partitions, [0, 1, 2]);

    let before = now_ms();
    for value in ["a", "b", "c"] {
        let pushed: (i64, i64) = redis::cmd("KPUSH")
            .arg(&topic)
            .arg(2)
            .arg(value)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(pushed.0, 2);
    }
    let koffset = |partition: i64, time: i64| {
        let mut command = redis::cmd("KOFFSET");
        command.arg(&topic).arg(partition).arg(time);
        command
    };
    let latest: (i64, i64) = koffset(2, -1).query_async(&mut connection).await.unwrap();
    assert_eq!(latest, (3, -1));
    let earliest: (i64, i64) = koffset(2, -2).query_async(&mut connection).await.unwrap();
    assert_eq!(earliest, (0, -1));
    let empty: (i64, i64) = koffset(1, -1).query_async(&mut connection).await.unwrap();
    assert_eq!(empty, (0, -1));
    let (offset, timestamp): (i64, i64) = koffset(2, before - 60_000)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(offset, 0);
    assert!(
        (before - 5_000..=now_ms() + 5_000).contains(&timestamp),
        "timestamp {timestamp}, pushed at {before}"
    );
    let future: (i64, i64) = koffset(2, now_ms() + 3_600_000)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(future, (-1, -1));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_replies_and_the_connection_stays_open() {
    let write_only = unique_name("write-only");
    let read_only = unique_name("read-only");
    let topics = format!(
        "{}{}",
        topic_toml(&write_only, 2, &["default"], &[]),
        topic_toml(&read_only, 1, &[], &["*"])
    );
    let proxy = kafka_proxy("", &topics).await;
    let mut connection = client(&proxy).await;
    wait_connected(&mut connection, &read_only).await;

    // Every error on one connection, pipelined, answered in order; the connection stays usable.
    let mut request = Vec::new();
    let commands: Vec<Vec<&str>> = vec![
        vec!["KPUSH", "no-such-topic", "v"],
        vec!["KPOP", &write_only],
        vec!["KPUSH", &read_only, "v"],
        vec!["KPUSH", &write_only, "7", "v"],
        vec!["KPOP", &read_only, "0", "abc"],
        vec!["KPOP", &read_only, "zero", "0"],
        vec!["KPOP", &read_only, "0"],
        vec!["KPUSH"],
        vec!["KOFFSET", &read_only, "0"],
        vec!["KOFFSET", &read_only, "0", "soon"],
        vec!["GET", "k"],
        vec!["SELECT", "1"],
        vec!["PING"],
        vec!["KPUSH", &write_only, "1", "after the errors"],
    ];
    for command in &commands {
        request.extend_from_slice(format!("*{}\r\n", command.len()).as_bytes());
        for arg in command {
            request.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
    }
    let addr = proxy.local_addr();
    let lines = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(&request);
        (0..16).map(|_| raw.read_line()).collect::<Vec<String>>()
    })
    .await;
    let expected = [
        "-ERR unknown topic 'no-such-topic': it is not configured in this Kafka pool\r\n".to_string(),
        format!("-NOPERM tenant 'default' is not allowed to consume from topic '{write_only}'\r\n"),
        format!("-NOPERM tenant 'default' is not allowed to produce to topic '{read_only}'\r\n"),
        format!("-ERR wrong partition 7 for topic '{write_only}': it has partitions 0 to 1\r\n"),
        "-ERR offset is not an integer or out of range\r\n".to_string(),
        "-ERR partition is not an integer or out of range\r\n".to_string(),
        "-ERR wrong number of arguments for 'kpop' command\r\n".to_string(),
        "-ERR wrong number of arguments for 'kpush' command\r\n".to_string(),
        "-ERR wrong number of arguments for 'koffset' command\r\n".to_string(),
        "-ERR time is not an integer or out of range\r\n".to_string(),
        "-ERR command 'get' is not served by Kafka pool 'events': it accepts KPUSH, KPOP, KPARTITIONS and KOFFSET\r\n"
            .to_string(),
        "-ERR SELECT is not available on Kafka pool 'events': Kafka has no databases\r\n".to_string(),
        "+PONG\r\n".to_string(),
        "*2\r\n".to_string(),
        ":1\r\n".to_string(),
        ":0\r\n".to_string(),
    ];
    assert_eq!(lines, expected);

    // redis-rs sees the same errors as errors, and its connection keeps working.
    let error = error_of(&mut connection, redis::cmd("KPOP").arg(&write_only)).await;
    assert!(
        error.contains(&format!(
            "tenant 'default' is not allowed to consume from topic '{write_only}'"
        )),
        "{error}"
    );
    let pushed: (i64, i64) = redis::cmd("KPUSH")
        .arg(&write_only)
        .arg(1)
        .arg("again")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(pushed, (1, 1));

    // RESP3: nothing to read is `_`.
    let lines = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(format!("HELLO 3\r\nPING\r\nKPOP {read_only}\r\n").as_bytes());
        let mut line = String::new();
        while line != "+PONG\r\n" {
            line = raw.read_line();
        }
        raw.read_line()
    })
    .await;
    assert_eq!(lines, "_\r\n");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_of_redis_and_kafka_pools() {
    let topic = unique_name("tenants");
    let redis = redis_addr();
    let proxy = start_proxy_toml(&format!(
        "default_pool = 'main'\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['{redis}']\n\
         {pool}\n\
         [tenants.app]\npassword = 'app-pw'\npool = 'main'\npools = ['events']\nkey_prefix = 'kafka-it-app:'\n\
         [tenants.writer]\npassword = 'writer-pw'\npool = 'events'\n\
         [tenants.reader]\npassword = 'reader-pw'\npool = 'events'\n\
         [tenants.boss]\npassword = 'boss-pw'\npool = 'main'\nadmin = true\n",
        pool = kafka_pool_toml(&kafka_addr(), "", &topic_toml(&topic, 1, &["writer"], &["reader", "app"])),
    ))
    .await;
    let addr = proxy.local_addr();

    // Before AUTH: NOAUTH, also for Kafka commands.
    let line = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(b"KPUSH x y\r\n");
        raw.read_line()
    })
    .await;
    assert_eq!(line, "-NOAUTH Authentication required.\r\n");

    let mut reader = client_at(addr, Some(("reader", "reader-pw"))).await;
    wait_connected(&mut reader, &topic).await;
    let mut writer = client_at(addr, Some(("writer", "writer-pw"))).await;
    let mut app = client_at(addr, Some(("app", "app-pw"))).await;
    let mut boss = client_at(addr, Some(("boss", "boss-pw"))).await;

    // A tenant of a Redis pool gets an error for KPUSH; a tenant of a Kafka pool for GET.
    let error = error_of(&mut app, redis::cmd("KPUSH").arg(&topic).arg("v")).await;
    assert!(
        error.contains("KPUSH is a Kafka command and this connection uses Redis pool 'main'"),
        "{error}"
    );
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut app)
        .await
        .unwrap();
    let error = error_of(&mut writer, redis::cmd("GET").arg("k")).await;
    assert!(
        error.contains("command 'get' is not served by Kafka pool 'events'"),
        "{error}"
    );

    // USE moves one connection between a Redis pool and a Kafka pool, and back.
    let used: String = redis::cmd("USE")
        .arg("events")
        .query_async(&mut app)
        .await
        .unwrap();
    assert_eq!(used, "OK");
    let partitions: Vec<i64> = redis::cmd("KPARTITIONS")
        .arg(&topic)
        .query_async(&mut app)
        .await
        .unwrap();
    assert_eq!(partitions, [0]);
    let error = error_of(&mut app, redis::cmd("GET").arg("k")).await;
    assert!(
        error.contains("not served by Kafka pool 'events'"),
        "{error}"
    );
    let used: String = redis::cmd("USE")
        .arg("main")
        .query_async(&mut app)
        .await
        .unwrap();
    assert_eq!(used, "OK");
    let value: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut app)
        .await
        .unwrap();
    assert_eq!(value, "v");

    // Producers produce, consumers consume, and not the other way round.
    let (partition, offset) = kpush(&mut writer, &topic, b"for the reader").await;
    assert_eq!((partition, offset), (0, 0));
    let error = error_of(&mut writer, redis::cmd("KPOP").arg(&topic)).await;
    assert!(
        error.contains(&format!(
            "tenant 'writer' is not allowed to consume from topic '{topic}'"
        )),
        "{error}"
    );
    let error = error_of(&mut reader, redis::cmd("KPUSH").arg(&topic).arg("x")).await;
    assert!(
        error.contains(&format!(
            "tenant 'reader' is not allowed to produce to topic '{topic}'"
        )),
        "{error}"
    );
    assert_eq!(
        kpop(&mut reader, &topic).await,
        Some((0, 0, b"for the reader".to_vec()))
    );
    assert_eq!(kpop(&mut reader, &topic).await, None);

    // The admin commands: admins only; the consumer group is the tenant.
    let error = error_of(
        &mut reader,
        redis::cmd("RKPROXY")
            .arg("KOFFSETS")
            .arg("reader")
            .arg(&topic),
    )
    .await;
    assert!(error.contains("is not an admin"), "{error}");
    let lines = koffsets(&mut boss, "reader", &topic).await;
    assert_eq!(
        lines,
        ["partition=0 next_offset=1 given_back= pending=0 oldest_deadline_in_ms="]
    );
    kreset(&mut boss, "reader", &topic, 0, 0).await;
    assert_eq!(
        kpop(&mut reader, &topic).await,
        Some((0, 0, b"for the reader".to_vec()))
    );
    let error = error_of(
        &mut boss,
        redis::cmd("RKPROXY")
            .arg("KRESET")
            .arg("reader")
            .arg(&topic)
            .arg(0)
            .arg("x"),
    )
    .await;
    assert!(error.contains("next_offset is not an integer"), "{error}");
    proxy.shutdown().await;
}

/// Forwards every connection accepted on `listener` to `target`, like a broker coming up on that address.
fn forward_connections(listener: tokio::net::TcpListener, target: String) {
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_at_start_gives_fast_errors_then_recovers() {
    let topic = unique_name("late-broker");
    // Nothing listens on this port yet: the bootstrap broker is down when the proxy starts.
    let port = free_port();
    let proxy = start_proxy_toml(&format!(
        "default_pool = 'events'\n\
         [pools.events]\nkind = 'kafka'\nnodes = ['127.0.0.1:{port}']\nrequest_timeout_ms = 500\nconnect_retry_ms = 200\n\
         {}",
        topic_toml(&topic, 2, &["*"], &["*"])
    ))
    .await;
    let mut connection = client(&proxy).await;

    let started = Instant::now();
    let error = error_of(&mut connection, redis::cmd("KPUSH").arg(&topic).arg("v")).await;
    assert!(
        error.contains("kafka pool 'events' unavailable:"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the first error took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let error = error_of(&mut connection, redis::cmd("KPOP").arg(&topic)).await;
    assert!(
        error.contains("kafka pool 'events' unavailable:"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "a later error took {:?}",
        started.elapsed()
    );
    let pong: String = redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(pong, "PONG");

    // The broker "comes up" on that address; the pool connects by itself and serves the same connection.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    forward_connections(listener, kafka_addr());
    let deadline = Instant::now() + Duration::from_secs(30);
    let (partition, offset) = loop {
        let pushed = redis::cmd("KPUSH")
            .arg(&topic)
            .arg("after recovery")
            .query_async::<(i64, i64)>(&mut connection)
            .await;
        match pushed {
            Ok(pushed) => break pushed,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "the pool did not recover: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let read = blocking({
        let topic = topic.clone();
        move || kcat_read(&topic, partition, offset)
    })
    .await;
    assert_eq!(read.as_deref(), Some(&b"after recovery"[..]));
    proxy.shutdown().await;
}

/// A proxy config with the Kafka pool `events` (one topic, everyone may use it, with `topic_keys` added to
/// its table) whose offsets live in the test Redis under `key_prefix`. It logs warnings only, but for the ready
/// line, which tells a [`ProxyProcess`] the port the proxy got.
fn shared_offsets_config(
    topic: &str,
    partitions: i32,
    key_prefix: &str,
    topic_keys: &str,
) -> String {
    format!(
        "default_pool = 'events'\nlog = 'warn,rkproxy::server=info'\n{}",
        kafka_pool_toml(
            &kafka_addr(),
            &format!(
                "offsets = {{ redis = '{}', key_prefix = '{key_prefix}' }}",
                redis_addr()
            ),
            &format!(
                "{}{topic_keys}\n",
                topic_toml(topic, partitions, &["*"], &["*"])
            ),
        )
    )
}

/// Pops until the proxy has nothing new, collecting the records.
async fn pop_all(connection: &mut MultiplexedConnection, topic: &str, into: &mut Vec<Record>) {
    while let Some(record) = kpop(connection, topic).await {
        into.push(record);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxy_processes_deliver_each_message_exactly_once() {
    let topic = unique_name("shared");
    let key_prefix = format!("{}:", unique("kafka-it-shared"));
    let config = shared_offsets_config(&topic, 3, &key_prefix, "");
    let first = blocking({
        let config = config.clone();
        move || ProxyProcess::start("shared-a", &config)
    })
    .await;
    let second = blocking({
        let config = config.clone();
        move || ProxyProcess::start("shared-b", &config)
    })
    .await;
    let mut producer = client_at(first.addr, None).await;
    wait_connected(&mut producer, &topic).await;
    let mut check = client_at(second.addr, None).await;
    wait_connected(&mut check, &topic).await;

    // Half the messages before the consumers start, half while they run.
    const MESSAGES: usize = 400;
    let mut produced = BTreeSet::new();
    for index in 0..MESSAGES / 2 {
        let value = format!("message {index}");
        kpush(&mut producer, &topic, value.as_bytes()).await;
        produced.insert(value.into_bytes());
    }
    let producing_done = Arc::new(AtomicBool::new(false));
    let mut consumers = Vec::new();
    for addr in [first.addr, second.addr, first.addr, second.addr] {
        let topic = topic.clone();
        let producing_done = Arc::clone(&producing_done);
        consumers.push(tokio::spawn(async move {
            let mut connection = client_at(addr, None).await;
            let mut records = Vec::new();
            let mut nils_after_done = 0;
            // Stop after two nils in a row seen once production has finished.
            while nils_after_done < 2 {
                let done = producing_done.load(Ordering::SeqCst);
                match kpop(&mut connection, &topic).await {
                    Some(record) => {
                        records.push(record);
                        nils_after_done = 0;
                    }
                    None if done => nils_after_done += 1,
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            records
        }));
    }
    let mut second_producer = client_at(second.addr, None).await;
    for index in MESSAGES / 2..MESSAGES {
        let value = format!("message {index}");
        kpush(&mut second_producer, &topic, value.as_bytes()).await;
        produced.insert(value.into_bytes());
    }
    producing_done.store(true, Ordering::SeqCst);

    let mut all: Vec<Record> = Vec::new();
    let mut per_consumer = Vec::new();
    for consumer in consumers {
        let records = consumer.await.unwrap();
        per_consumer.push(records.len());
        all.extend(records);
    }
    let positions: BTreeSet<(i64, i64)> = all.iter().map(|record| (record.0, record.1)).collect();
    assert_eq!(
        positions.len(),
        all.len(),
        "a record was delivered twice (per consumer: {per_consumer:?})"
    );
    let values: BTreeSet<Vec<u8>> = all.iter().map(|record| record.2.clone()).collect();
    assert_eq!(all.len(), MESSAGES, "per consumer: {per_consumer:?}");
    assert_eq!(values, produced);
    // Consumers 0 and 2 pop through the first proxy, 1 and 3 through the second.
    assert!(
        per_consumer[0] + per_consumer[2] > 0 && per_consumer[1] + per_consumer[3] > 0,
        "both proxies should have delivered records: {per_consumer:?}"
    );
    drop((first, second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_restart_loses_and_repeats_nothing() {
    let topic = unique_name("restart");
    let key_prefix = format!("{}:", unique("kafka-it-restart"));
    // Prefetching off: with it, a killed proxy loses its leased window (at most once; see kafka/delivery.rs).
    let config = shared_offsets_config(&topic, 2, &key_prefix, "prefetch_records = 1");
    let mut before = blocking({
        let config = config.clone();
        move || ProxyProcess::start("restart-before", &config)
    })
    .await;
    let mut connection = client_at(before.addr, None).await;
    wait_connected(&mut connection, &topic).await;
    const MESSAGES: usize = 100;
    let mut produced = BTreeMap::new();
    for index in 0..MESSAGES {
        let value = format!("message {index}").into_bytes();
        let position = kpush(&mut connection, &topic, &value).await;
        produced.insert(position, value);
    }
    let mut delivered: Vec<Record> = Vec::new();
    for _ in 0..40 {
        delivered.push(kpop(&mut connection, &topic).await.unwrap());
    }
    drop(connection);
    before.kill();

    let after = blocking(move || ProxyProcess::start("restart-after", &config)).await;
    let mut connection = client_at(after.addr, None).await;
    wait_connected(&mut connection, &topic).await;
    pop_all(&mut connection, &topic, &mut delivered).await;

    let mut got = BTreeMap::new();
    for (partition, offset, value) in delivered {
        let earlier = got.insert((partition, offset), value);
        assert!(
            earlier.is_none(),
            "record {partition}/{offset} was delivered twice"
        );
    }
    assert_eq!(got, produced);
}
