//! `rkproxy_examples::kafka_commands` against an embedded rkproxy in front of the Redis and the
//! Kafka broker that `cargo xtask test` starts (`RKPROXY_TEST_REDIS`, `RKPROXY_TEST_KAFKA`).
//!
//! The proxy's tenant has a Redis pool as default pool and may `USE` the Kafka pool `events` (one
//! topic of this test's own, two partitions) and the Kafka pool `down`, whose broker address
//! nothing listens on.

use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use rkproxy::config::Config;
use rkproxy::Proxy;
use rkproxy_examples::kafka_commands::{
    connect_to_pool, KafkaCommandError, KafkaCommands, OffsetAt, Record, EARLIEST, LATEST,
};

const PASSWORD: &str = "examples-kafka-pw";

fn server(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run this test with `cargo xtask test`, which starts the servers")
    })
}

/// A topic no earlier run against the same broker used.
fn unique_topic() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos();
    format!("examples-kafka-{}-{nanos}", std::process::id())
}

/// A loopback address nothing listens on (a port that was free a moment ago).
fn nowhere() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").to_string()
}

async fn start_proxy(topic: &str) -> Proxy {
    let topic_table = |pool: &str| {
        format!(
            "[pools.{pool}.topics.{topic}]\npartitions = 2\nproducers = ['app']\nconsumers = ['app']\n"
        )
    };
    let config = format!(
        "listen = '127.0.0.1:0'\ndefault_pool = 'apps'\n\
         [pools.apps]\nkind = 'standalone'\nnodes = ['{redis}']\n\
         [pools.events]\nkind = 'kafka'\nnodes = ['{kafka}']\n{events_topic}\
         [pools.down]\nkind = 'kafka'\nnodes = ['{nowhere}']\n{down_topic}\
         [tenants.app]\npassword = '{PASSWORD}'\npool = 'apps'\npools = ['events', 'down']\n",
        redis = server("RKPROXY_TEST_REDIS"),
        kafka = server("RKPROXY_TEST_KAFKA"),
        nowhere = nowhere(),
        events_topic = topic_table("events"),
        down_topic = topic_table("down"),
    );
    let config = Config::from_toml(&config).expect("the test configuration is valid");
    Proxy::builder(config)
        .start()
        .await
        .expect("the proxy starts")
}

/// Replies may take a while: a Kafka pool answers after its first connection attempt, and the
/// machine may be busy.
fn patient() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(15)))
}

fn tenant_client(proxy: &Proxy) -> redis::Client {
    redis::Client::open(format!("redis://app:{PASSWORD}@{}/", proxy.local_addr()))
        .expect("a valid URL")
}

/// Waits until the Kafka pool has connected and serves `topic` (it connects in the background).
async fn wait_ready(connection: &mut MultiplexedConnection, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match connection.kpartitions(topic).await {
            Ok(partitions) => {
                assert_eq!(partitions, [0, 1]);
                return;
            }
            Err(error) if Instant::now() < deadline => {
                eprintln!("waiting for the Kafka pool: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("the Kafka pool does not serve {topic}: {error}"),
        }
    }
}

#[tokio::test]
async fn kafka_commands_through_rkproxy_and_kafka() {
    let topic = unique_topic();
    let proxy = start_proxy(&topic).await;
    let client = tenant_client(&proxy);
    let mut kafka = connect_to_pool(&client, &patient(), "events")
        .await
        .expect("USE events");
    wait_ready(&mut kafka, &topic).await;

    let value = b"rust\x00\xff\r\n value".to_vec();
    let pushed = kafka.kpush_to(&topic, 1, &value).await.expect("KPUSH");
    assert_eq!(pushed.partition, 1);
    let record = Record {
        partition: 1,
        offset: pushed.offset,
        value: Some(value.clone()),
    };
    assert_eq!(
        kafka.kpop_at(&topic, 1, pushed.offset).await.expect("KPOP"),
        Some(record.clone())
    );
    let empty = kafka.kpush_to(&topic, 1, b"").await.expect("KPUSH empty");
    let records = kafka
        .kpop_many(&topic, 1, pushed.offset, 2)
        .await
        .expect("KPOP count");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0], record);
    assert_eq!(records[1].offset, empty.offset);
    assert_eq!(records[1].value, Some(Vec::new()));

    let latest = kafka.koffset(&topic, 1, LATEST).await.expect("KOFFSET");
    assert_eq!(
        latest,
        OffsetAt {
            offset: empty.offset + 1,
            timestamp: -1
        }
    );
    let earliest = kafka.koffset(&topic, 1, EARLIEST).await.expect("KOFFSET");
    assert_eq!(earliest.offset, 0);
    assert_eq!(
        kafka.kpop_at(&topic, 1, latest.offset).await.expect("KPOP"),
        None
    );
    assert_eq!(
        kafka
            .kpop_many(&topic, 1, latest.offset, 5)
            .await
            .expect("KPOP"),
        []
    );

    // Proxy-managed offsets: every record of the topic once, then nothing.
    let round_robin = kafka.kpush(&topic, b"round robin").await.expect("KPUSH");
    let mut popped = Vec::new();
    while let Some(record) = kafka.kpop(&topic).await.expect("KPOP") {
        popped.push((record.partition, record.offset));
        assert!(
            popped.len() <= 3,
            "more records than were pushed: {popped:?}"
        );
    }
    popped.sort();
    let mut expected = vec![
        (1, pushed.offset),
        (1, empty.offset),
        (round_robin.partition, round_robin.offset),
    ];
    expected.sort();
    assert_eq!(popped, expected);

    proxy.shutdown().await;
}

#[tokio::test]
async fn errors_carry_kafka_names_and_use_holds_per_connection() {
    let topic = unique_topic();
    let proxy = start_proxy(&topic).await;
    let client = tenant_client(&proxy);
    let mut kafka = connect_to_pool(&client, &patient(), "events")
        .await
        .expect("USE events");
    wait_ready(&mut kafka, &topic).await;

    let mut down = connect_to_pool(&client, &patient(), "down")
        .await
        .expect("USE down");
    let error = down.kpush(&topic, b"nowhere").await.expect_err("no broker");
    assert_eq!(
        error.kafka_error_name(),
        Some("BROKER_NOT_AVAILABLE"),
        "{error}"
    );

    let error = kafka
        .kpush("no-such-topic", b"x")
        .await
        .expect_err("unknown topic");
    assert!(matches!(error, KafkaCommandError::Redis(_)), "{error:?}");
    assert!(error.to_string().contains("unknown topic"), "{error}");

    // A new connection is on the tenant's default (Redis) pool until it sends USE again: the
    // reason every connection is made with `connect_to_pool`.
    let mut plain = client
        .get_multiplexed_async_connection_with_config(&patient())
        .await
        .expect("connect");
    let error = plain.kpush(&topic, b"x").await.expect_err("a Redis pool");
    assert!(
        error.to_string().contains("uses Redis pool 'apps'"),
        "{error}"
    );

    proxy.shutdown().await;
}
