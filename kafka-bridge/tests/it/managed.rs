//! Proxy-managed offsets: every message once per consumer group, none skipped and none twice, across
//! partitions, across bridges sharing one store (two proxy processes), and across restarts (Redis store).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_bridge::{
    CursorKey, KafkaBridge, KafkaReply, MemoryOffsetStore, OffsetStore, RedisOffsetStore,
    RedisStoreConfig,
};

use crate::support::*;

const MESSAGES: usize = 600;
const PARTITIONS: i32 = 3;

/// Two bridges (as two proxy processes would) pop concurrently, four tasks each, while a producer is still
/// pushing; between them they must deliver every message exactly once.
async fn two_bridges_deliver_each_message_once(store: Arc<dyn OffsetStore>) {
    let name = unique_topic("managed");
    let first = bridge_with_store(vec![topic(&name, PARTITIONS)], Arc::clone(&store)).await;
    let second = bridge_with_store(vec![topic(&name, PARTITIONS)], Arc::clone(&store)).await;

    let producer = {
        let bridge = first.clone();
        let name = name.clone();
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                let reply = bridge
                    .execute(
                        "writer",
                        &[b"KPUSH", name.as_bytes(), format!("m{i}").as_bytes()],
                    )
                    .await;
                int_pair(&reply);
            }
        })
    };

    let mut consumers = Vec::new();
    for bridge in [&first, &second] {
        for _ in 0..4 {
            consumers.push(tokio::spawn(pop_until_quiet(bridge.clone(), name.clone())));
        }
    }
    producer.await.unwrap();
    let mut delivered = Vec::new();
    for consumer in consumers {
        delivered.extend(consumer.await.unwrap());
    }
    let unique: HashSet<&Vec<u8>> = delivered.iter().collect();
    assert_eq!(
        unique.len(),
        delivered.len(),
        "a message was delivered twice"
    );
    let expected: HashSet<Vec<u8>> = (0..MESSAGES)
        .map(|i| format!("m{i}").into_bytes())
        .collect();
    let delivered: HashSet<Vec<u8>> = delivered.into_iter().collect();
    assert_eq!(delivered, expected, "messages were skipped");
}

/// Pops until nothing new has come for a while (the producer is done by then).
async fn pop_until_quiet(bridge: KafkaBridge, name: String) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(2) {
        let reply = bridge.execute("reader", &[b"KPOP", name.as_bytes()]).await;
        if reply == KafkaReply::Nil {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let (_, _, value) = triple(&reply);
        values.push(value);
        quiet_since = Instant::now();
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_sharing_a_memory_store_deliver_each_message_once() {
    two_bridges_deliver_each_message_once(Arc::new(MemoryOffsetStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_sharing_a_redis_store_deliver_each_message_once() {
    let mut config = RedisStoreConfig::new(redis_address());
    config.key_prefix = format!("{}:", unique_topic("store"));
    let store = RedisOffsetStore::new(config);
    store.check().await.unwrap();
    two_bridges_deliver_each_message_once(Arc::new(store)).await;
}

#[tokio::test]
async fn redis_cursors_survive_a_proxy_restart() {
    let name = unique_topic("restart");
    let mut config = RedisStoreConfig::new(redis_address());
    config.key_prefix = format!("{}:", unique_topic("store"));
    // Prefetching off: the cursor moves one offset per KPOP (prefetch.rs tests restarts with prefetching).
    let unbuffered = || vec![topic(&name, 1).prefetch(1, 1024)];
    let first = bridge_with_store(
        unbuffered(),
        Arc::new(RedisOffsetStore::new(config.clone())),
    )
    .await;
    for i in 0..4 {
        first
            .execute(
                "writer",
                &[b"KPUSH", name.as_bytes(), format!("r{i}").as_bytes()],
            )
            .await;
    }
    assert_eq!(
        triple(&first.execute("reader", &[b"KPOP", name.as_bytes()]).await).2,
        b"r0"
    );
    assert_eq!(
        triple(&first.execute("reader", &[b"KPOP", name.as_bytes()]).await).2,
        b"r1"
    );
    drop(first);

    // A new process: new bridge, new store client, same Redis keys. It continues at r2.
    let store = Arc::new(RedisOffsetStore::new(config));
    let second = bridge_with_store(unbuffered(), Arc::clone(&store) as Arc<dyn OffsetStore>).await;
    assert_eq!(
        triple(&second.execute("reader", &[b"KPOP", name.as_bytes()]).await).2,
        b"r2"
    );
    let cursors = second.show_cursors("reader", &name).await.unwrap();
    assert_eq!(cursors.len(), 1);
    assert_eq!(cursors[0].1.next_offset, 3);

    // The admin reset rewinds the cursor.
    second.reset_cursor("reader", &name, 0, 1).await.unwrap();
    assert_eq!(
        triple(&second.execute("reader", &[b"KPOP", name.as_bytes()]).await).2,
        b"r1"
    );
}

#[tokio::test]
async fn redis_store_leases_give_backs_and_skips_atomically() {
    let mut config = RedisStoreConfig::new(redis_address());
    config.key_prefix = format!("{}:", unique_topic("store"));
    let store = RedisOffsetStore::new(config);
    let key = CursorKey {
        group: "g".into(),
        topic: "t".into(),
        partition: 0,
    };
    assert_eq!(store.lease(&key, 3).await.unwrap(), Some(0));
    assert_eq!(store.lease(&key, 3).await.unwrap(), Some(1));
    assert_eq!(store.lease(&key, 3).await.unwrap(), Some(2));
    assert_eq!(store.lease(&key, 3).await.unwrap(), None);
    store.give_back(&key, 1).await.unwrap();
    store.give_back(&key, 0).await.unwrap();
    store.give_back(&key, 9).await.unwrap(); // never leased: ignored
    let state = store.show(&key).await.unwrap();
    assert_eq!((state.next_offset, state.given_back), (3, vec![0, 1]));
    assert_eq!(store.lease(&key, 3).await.unwrap(), Some(0));
    store.skip_to(&key, 2).await.unwrap();
    let state = store.show(&key).await.unwrap();
    assert_eq!((state.next_offset, state.given_back), (3, vec![]));
    store.skip_to(&key, 10).await.unwrap();
    assert_eq!(store.lease(&key, 11).await.unwrap(), Some(10));
    // Offsets beyond what a double can count exactly still round-trip (these scripts never format numbers;
    // the block lease's are exact below 2^53).
    store.reset(&key, 1 << 53).await.unwrap();
    assert_eq!(store.lease(&key, i64::MAX).await.unwrap(), Some(1 << 53));
    assert_eq!(store.show(&key).await.unwrap().next_offset, (1 << 53) + 1);
}

#[tokio::test]
async fn redis_store_with_auth() {
    // The AUTH server of `cargo xtask test` (requirepass rkproxy-test-pass, ACL user proxyuser).
    let address = std::env::var("RKPROXY_TEST_REDIS_AUTH").unwrap_or_else(|_| {
        panic!(
            "RKPROXY_TEST_REDIS_AUTH is not set. Run the tests with `cargo xtask test`, or start one with \
             `redis-server --port 16380 --save '' --requirepass rkproxy-test-pass --daemonize yes` and set \
             RKPROXY_TEST_REDIS_AUTH=127.0.0.1:16380."
        )
    });
    let key = CursorKey {
        group: "g".into(),
        topic: "auth".into(),
        partition: 0,
    };
    let mut config = RedisStoreConfig::new(address);
    config.key_prefix = format!("{}:", unique_topic("store"));
    let no_password = RedisOffsetStore::new(config.clone());
    let error = no_password.lease(&key, 1).await.unwrap_err();
    assert!(error.to_string().contains("NOAUTH"), "{error}");
    config.password = Some("rkproxy-test-pass".into());
    let with_password = RedisOffsetStore::new(config);
    assert_eq!(with_password.lease(&key, 1).await.unwrap(), Some(0));
}
