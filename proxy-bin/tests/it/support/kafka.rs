//! Kafka set-up shared by the Kafka tests (kafka.rs, kafka/*.rs, kafka_secure.rs), the TLS offset-store test
//! in tls.rs and the Kafka reload test in reload.rs: names no other test uses, pool and topic tables, waiting
//! until a Kafka pool serves a topic (it connects in the background at start or after a reload), and KPUSH/KPOP
//! through redis-rs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use rkproxy::Proxy;

use super::{kafka_addr, start_proxy_toml};

/// A record as KPOP returns it: partition, offset, value.
pub type Record = (i64, i64, Vec<u8>);

/// How long a Kafka pool may take to connect and create its topics (the broker may be busy with other tests).
const POOL_READY: Duration = Duration::from_secs(60);

/// A topic, group or user name no other test (or earlier run against the same broker) uses: tests run
/// concurrently and share the broker, which keeps its topics between runs.
pub fn unique_name(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "it-{name}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `[pools.events.topics.NAME]` with its producers and consumers.
pub fn topic_toml(name: &str, partitions: i32, producers: &[&str], consumers: &[&str]) -> String {
    let list = |names: &[&str]| {
        names
            .iter()
            .map(|name| format!("'{name}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[pools.events.topics.{name}]\npartitions = {partitions}\nproducers = [{}]\nconsumers = [{}]\n",
        list(producers),
        list(consumers)
    )
}

/// The `[pools.events]` Kafka pool over `broker`: pool keys, then its topics (see [`topic_toml`]).
pub fn kafka_pool_toml(broker: &str, pool_keys: &str, topics: &str) -> String {
    format!("[pools.events]\nkind = 'kafka'\nnodes = ['{broker}']\n{pool_keys}\n{topics}")
}

/// Which KPARTITIONS errors mean "the pool is not serving yet" while a test waits for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Every error: the pool may still be logging in, or its broker may come up later.
    AnyError,
    /// Only the pool's "unavailable" error (a new or rebuilt pool connecting in the background); any other
    /// error is the answer at once.
    WhileUnavailable,
}

/// An in-process proxy whose default pool is the Kafka pool `events` on the test broker with `topics`;
/// `top_level` holds keys that go before the tables (`metrics_listen = ...`).
pub async fn kafka_proxy(top_level: &str, topics: &str) -> Proxy {
    start_proxy_toml(&format!(
        "{top_level}\ndefault_pool = 'events'\n{}\n",
        kafka_pool_toml(&kafka_addr(), "", topics)
    ))
    .await
}

/// Waits until the pool serves `topic` (KPARTITIONS answers) and returns its partitions; the last error if it
/// does not within `within` (`Duration::ZERO`: the first answer, whatever it is).
pub async fn serve_within(
    connection: &mut MultiplexedConnection,
    topic: &str,
    within: Duration,
) -> Result<Vec<i64>, String> {
    serve_retrying(connection, topic, within, Retry::AnyError).await
}

/// [`serve_within`], retrying only the errors `retry` names.
async fn serve_retrying(
    connection: &mut MultiplexedConnection,
    topic: &str,
    within: Duration,
    retry: Retry,
) -> Result<Vec<i64>, String> {
    let deadline = Instant::now() + within;
    loop {
        let partitions = redis::cmd("KPARTITIONS")
            .arg(topic)
            .query_async::<Vec<i64>>(connection)
            .await;
        match partitions {
            Ok(partitions) => return Ok(partitions),
            Err(error) if Instant::now() >= deadline => return Err(error.to_string()),
            Err(error)
                if retry == Retry::WhileUnavailable
                    && !error.to_string().contains("unavailable") =>
            {
                return Err(error.to_string())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Waits until the proxy's Kafka pool serves `topic`; fails the test if it does not within a minute.
pub async fn wait_connected(connection: &mut MultiplexedConnection, topic: &str) {
    wait_serving(connection, topic, Retry::AnyError).await;
}

/// Waits until the proxy's Kafka pool serves `topic`, retrying the errors `retry` names, and returns its
/// partitions; fails the test on another error or if the pool does not serve within a minute.
pub async fn wait_serving(
    connection: &mut MultiplexedConnection,
    topic: &str,
    retry: Retry,
) -> Vec<i64> {
    serve_retrying(connection, topic, POOL_READY, retry)
        .await
        .unwrap_or_else(|error| panic!("the Kafka pool does not serve topic {topic}: {error}"))
}

/// `KPUSH topic value`: the record's partition and offset.
pub async fn kpush(
    connection: &mut MultiplexedConnection,
    topic: &str,
    value: impl AsRef<[u8]>,
) -> (i64, i64) {
    redis::cmd("KPUSH")
        .arg(topic)
        .arg(value.as_ref())
        .query_async(connection)
        .await
        .unwrap()
}

/// `KPOP topic` (proxy-managed offsets): the group's next record, `None` when there is nothing new.
pub async fn kpop(connection: &mut MultiplexedConnection, topic: &str) -> Option<Record> {
    redis::cmd("KPOP")
        .arg(topic)
        .query_async(connection)
        .await
        .unwrap()
}

/// `RKPROXY KOFFSETS group topic` (admins only): one line per partition, as the proxy prints it.
pub async fn koffsets(
    connection: &mut MultiplexedConnection,
    group: &str,
    topic: &str,
) -> Vec<String> {
    redis::cmd("RKPROXY")
        .arg("KOFFSETS")
        .arg(group)
        .arg(topic)
        .query_async(connection)
        .await
        .unwrap()
}

/// `RKPROXY KRESET group topic partition next_offset` (admins only) succeeds.
pub async fn kreset(
    connection: &mut MultiplexedConnection,
    group: &str,
    topic: &str,
    partition: i32,
    next_offset: i64,
) {
    let reset: String = redis::cmd("RKPROXY")
        .arg("KRESET")
        .arg(group)
        .arg(topic)
        .arg(partition)
        .arg(next_offset)
        .query_async(connection)
        .await
        .unwrap();
    assert_eq!(reset, "OK");
}
