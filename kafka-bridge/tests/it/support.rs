//! Shared helpers: server addresses from the environment, unique topic names, bridges, and kcat.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_bridge::{
    KafkaBridge, KafkaPoolConfig, KafkaReply, MemoryOffsetStore, OffsetStore, TopicConfig,
};

/// The broker under test, or a failure that says how to get one.
pub fn kafka_address() -> String {
    std::env::var("RKPROXY_TEST_KAFKA").unwrap_or_else(|_| {
        panic!(
            "RKPROXY_TEST_KAFKA is not set. Run the tests with `cargo xtask test`, which starts Apache Kafka, or \
             start a broker by hand as described in notes/kafka-broker.md and run \
             `RKPROXY_TEST_KAFKA=127.0.0.1:19092 cargo test -p kafka-bridge`."
        )
    })
}

/// The Redis under test, or a failure that says how to get one.
pub fn redis_address() -> String {
    std::env::var("RKPROXY_TEST_REDIS").unwrap_or_else(|_| {
        panic!(
            "RKPROXY_TEST_REDIS is not set. Run the tests with `cargo xtask test`, or start one with \
             `redis-server --port 16379 --save '' --daemonize yes` and set RKPROXY_TEST_REDIS=127.0.0.1:16379."
        )
    })
}

/// A topic name no other test (or earlier run) uses.
pub fn unique_topic(name: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "it-{name}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A pool config for the test broker with the given topics.
pub fn pool_config(topics: Vec<TopicConfig>) -> KafkaPoolConfig {
    let mut config = KafkaPoolConfig::new(vec![kafka_address()]);
    config.topics = topics;
    config.request_timeout = Duration::from_secs(5);
    config
}

/// A topic where tenant `writer` produces and tenants `reader` and `reader2` consume.
pub fn topic(name: &str, partitions: i32) -> TopicConfig {
    TopicConfig::new(name, partitions)
        .producers(["writer"])
        .consumers(["reader", "reader2"])
}

/// Connects a bridge with a fresh memory store.
pub async fn bridge(topics: Vec<TopicConfig>) -> KafkaBridge {
    bridge_with_store(topics, Arc::new(MemoryOffsetStore::new())).await
}

pub async fn bridge_with_store(
    topics: Vec<TopicConfig>,
    store: Arc<dyn OffsetStore>,
) -> KafkaBridge {
    KafkaBridge::connect(pool_config(topics), store)
        .await
        .unwrap()
}

/// Runs a command given as byte strings.
pub async fn run(bridge: &KafkaBridge, tenant: &str, args: &[&[u8]]) -> KafkaReply {
    bridge.execute(tenant, args).await
}

/// `[a, b]` of integers, or a failure showing the reply.
pub fn int_pair(reply: &KafkaReply) -> (i64, i64) {
    match reply {
        KafkaReply::Array(items) => match items.as_slice() {
            [KafkaReply::Integer(a), KafkaReply::Integer(b)] => (*a, *b),
            _ => panic!("expected [int, int], got {reply:?}"),
        },
        _ => panic!("expected [int, int], got {reply:?}"),
    }
}

/// `[partition, offset, value]`, or a failure showing the reply.
pub fn triple(reply: &KafkaReply) -> (i32, i64, Vec<u8>) {
    match reply {
        KafkaReply::Array(items) => match items.as_slice() {
            [KafkaReply::Integer(p), KafkaReply::Integer(o), KafkaReply::Bulk(value)] => {
                (i32::try_from(*p).unwrap(), *o, value.to_vec())
            }
            _ => panic!("expected [partition, offset, value], got {reply:?}"),
        },
        _ => panic!("expected [partition, offset, value], got {reply:?}"),
    }
}

/// The error text of an error reply, or a failure showing the reply.
pub fn error_text(reply: &KafkaReply) -> &str {
    match reply {
        KafkaReply::Error(text) => text,
        _ => panic!("expected an error, got {reply:?}"),
    }
}

/// Reads one record with kcat, an independent Kafka client (librdkafka): returns the value bytes exactly.
pub fn kcat_read(topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    // `%o %S %s`: offset, payload size in bytes, payload; the size tells an empty value from a missing one.
    let output = Command::new("kcat")
        .args(["-C", "-b", &kafka_address(), "-t", topic])
        .args(["-p", &partition.to_string(), "-o", &offset.to_string()])
        .args(["-c", "1", "-e", "-q", "-f", "%o %S %s"])
        .stderr(Stdio::inherit())
        .output()
        .expect("kcat must be installed (Debian package kcat)");
    assert!(output.status.success(), "kcat failed: {output:?}");
    let out = output.stdout;
    let mut fields = out.splitn(3, |byte| *byte == b' ');
    let read_offset: i64 = std::str::from_utf8(fields.next().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(read_offset, offset, "kcat read another offset");
    let size: i64 = std::str::from_utf8(fields.next().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    let value = fields.next().unwrap_or_default().to_vec();
    assert_eq!(
        i64::try_from(value.len()).unwrap(),
        size.max(0),
        "kcat payload size"
    );
    value
}

/// Produces newline-separated text messages to one partition with kcat.
pub fn kcat_produce(topic: &str, partition: i32, messages: &[&str]) {
    use std::io::Write;
    let mut child = Command::new("kcat")
        .args([
            "-P",
            "-b",
            &kafka_address(),
            "-t",
            topic,
            "-p",
            &partition.to_string(),
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat must be installed (Debian package kcat)");
    let mut stdin = child.stdin.take().unwrap();
    for message in messages {
        stdin.write_all(message.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success(), "kcat -P failed");
}
