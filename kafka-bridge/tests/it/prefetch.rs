//! KPOP prefetching (block leases, one buffer per group shared by its connections) and at-least-once delivery
//! (acknowledgement by the next KPOP or KACK, redelivery after a closed connection or the ack timeout), against
//! the real broker and the Redis offset store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_bridge::{
    ConnectionDeliveries, CursorKey, Delivery, KafkaBridge, KafkaReply, Lease, MemoryOffsetStore,
    OffsetStore, RedisOffsetStore, RedisStoreConfig,
};

use crate::support::*;

fn redis_store() -> RedisOffsetStore {
    let mut config = RedisStoreConfig::new(redis_address());
    config.key_prefix = format!("{}:", unique_topic("store"));
    RedisOffsetStore::new(config)
}

fn key(group: &str) -> CursorKey {
    CursorKey {
        group: group.into(),
        topic: "t".into(),
        partition: 0,
    }
}

fn offsets(lease: Option<Lease>) -> (Vec<i64>, bool) {
    let lease = lease.expect("a lease");
    (lease.offsets, lease.redelivered)
}

#[tokio::test]
async fn redis_store_leases_blocks_and_given_back_offsets() {
    let store = redis_store();
    let block = store
        .lease_block(&key("g"), 10, 4, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(block.offsets, vec![0, 1, 2, 3]);
    assert_eq!(block.cursor_advanced_to, Some(4));
    store.give_back(&key("g"), 1).await.unwrap();
    store.give_back(&key("g"), 3).await.unwrap();
    let back = store
        .lease_block(&key("g"), 10, 4, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((back.offsets, back.cursor_advanced_to), (vec![1, 3], None));
    // The block stops at the high watermark.
    assert_eq!(
        offsets(store.lease_block(&key("g"), 6, 100, None).await.unwrap()),
        (vec![4, 5], false)
    );
    assert_eq!(
        store.lease_block(&key("g"), 6, 100, None).await.unwrap(),
        None
    );
    assert_eq!(store.show(&key("g")).await.unwrap().next_offset, 6);
}

#[tokio::test]
async fn redis_store_redelivers_unacknowledged_offsets_after_their_deadline() {
    let store = redis_store();
    // Long enough that a loaded machine does not pass a deadline between two steps that expect it ahead.
    let hold = Some(Duration::from_millis(1000));
    assert_eq!(
        offsets(store.lease_block(&key("g"), 3, 10, hold).await.unwrap()),
        (vec![0, 1, 2], false)
    );
    assert_eq!(store.ack(&key("g"), &[0]).await.unwrap(), 1);
    assert_eq!(store.ack(&key("g"), &[0]).await.unwrap(), 0);
    // 1 and 2 are pending and not due: nothing to lease.
    assert_eq!(
        store.lease_block(&key("g"), 3, 10, hold).await.unwrap(),
        None
    );
    // A connection that closed releases its records: due at once.
    store.release(&key("g"), &[1]).await.unwrap();
    assert_eq!(
        offsets(store.lease_block(&key("g"), 3, 10, hold).await.unwrap()),
        (vec![1], true)
    );
    // Releasing an acknowledged offset does not bring it back.
    store.release(&key("g"), &[0]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        offsets(store.lease_block(&key("g"), 3, 10, hold).await.unwrap()),
        (vec![1, 2], true)
    );
    assert_eq!(store.ack(&key("g"), &[1, 2]).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        store.lease_block(&key("g"), 3, 10, hold).await.unwrap(),
        None
    );
    // Another group's cursor is its own.
    assert_eq!(
        offsets(store.lease_block(&key("other"), 3, 10, None).await.unwrap()),
        (vec![0, 1, 2], false)
    );
}

/// The bridge's count of records delivered again to `group` on `topic`.
fn redelivered(bridge: &KafkaBridge, group: &str, topic: &str) -> u64 {
    bridge
        .redelivered()
        .into_iter()
        .find(|((g, t), _)| g == group && t == topic)
        .map_or(0, |(_, count)| count)
}

async fn push(bridge: &KafkaBridge, name: &str, count: usize) {
    for i in 0..count {
        let reply = bridge
            .execute(
                "writer",
                &[b"KPUSH", name.as_bytes(), format!("v{i}").as_bytes()],
            )
            .await;
        int_pair(&reply);
    }
}

async fn kpop(
    bridge: &KafkaBridge,
    group: &str,
    name: &str,
    connection: &Arc<ConnectionDeliveries>,
) -> KafkaReply {
    bridge
        .execute_for(group, &[b"KPOP", name.as_bytes()], Some(connection))
        .await
}

#[tokio::test]
async fn a_group_leases_a_block_and_its_connections_share_the_buffer() {
    let name = unique_topic("prefetch");
    let store = Arc::new(MemoryOffsetStore::new());
    let bridge = bridge_with_store(
        vec![topic(&name, 1).prefetch(20, 64 * 1024)],
        Arc::clone(&store) as Arc<dyn OffsetStore>,
    )
    .await;
    push(&bridge, &name, 50).await;
    let one = Arc::new(ConnectionDeliveries::new());
    let two = Arc::new(ConnectionDeliveries::new());
    let mut values = Vec::new();
    for connection in [&one, &two, &one, &two] {
        values.push(triple(&kpop(&bridge, "reader", &name, connection).await).2);
    }
    assert_eq!(values, [b"v0", b"v1", b"v2", b"v3"]);
    // One block of prefetch_records was leased, not one offset per KPOP.
    let key = CursorKey {
        group: "reader".into(),
        topic: name.clone(),
        partition: 0,
    };
    assert_eq!(store.show(&key).await.unwrap().next_offset, 20);
    // Another group has a cursor and a buffer of its own.
    assert_eq!(
        triple(&kpop(&bridge, "reader2", &name, &one).await).2,
        b"v0"
    );
    // At most once: nothing is pending, so KACK acknowledges nothing.
    let ack = bridge
        .execute("reader", &[b"KACK", name.as_bytes(), b"0", b"0"])
        .await;
    assert_eq!(ack, KafkaReply::Integer(0));
    // Every record comes once, in order, across block boundaries.
    for i in 4..50 {
        let value = triple(&kpop(&bridge, "reader", &name, &two).await).2;
        assert_eq!(value, format!("v{i}").into_bytes());
    }
    assert_eq!(kpop(&bridge, "reader", &name, &two).await, KafkaReply::Nil);
    assert_eq!(redelivered(&bridge, "reader", &name), 0);
}

#[tokio::test]
async fn at_least_once_acknowledges_by_next_kpop_or_kack_and_redelivers_on_close() {
    let name = unique_topic("alo");
    let topics = vec![topic(&name, 1).delivery(Delivery::AtLeastOnce, Duration::from_secs(60))];
    let bridge = bridge_with_store(
        topics,
        Arc::new(RedisOffsetStore::new({
            let mut config = RedisStoreConfig::new(redis_address());
            config.key_prefix = format!("{}:", unique_topic("store"));
            config
        })),
    )
    .await;
    push(&bridge, &name, 3).await;
    let first = Arc::new(ConnectionDeliveries::new());
    assert_eq!(
        triple(&kpop(&bridge, "reader", &name, &first).await).2,
        b"v0"
    );
    // The next KPOP acknowledges v0.
    let (_, offset, value) = triple(&kpop(&bridge, "reader", &name, &first).await);
    assert_eq!(value, b"v1");
    // KACK: rights as for KPOP, then v1 acknowledged once.
    let refused = bridge
        .execute(
            "writer",
            &[
                b"KACK",
                name.as_bytes(),
                b"0",
                offset.to_string().as_bytes(),
            ],
        )
        .await;
    assert!(error_text(&refused).starts_with("NOPERM"), "{refused:?}");
    let ack = |bridge: KafkaBridge, connection: Arc<ConnectionDeliveries>| {
        let name = name.clone();
        async move {
            bridge
                .execute_for(
                    "reader",
                    &[
                        b"KACK",
                        name.as_bytes(),
                        b"0",
                        offset.to_string().as_bytes(),
                    ],
                    Some(&connection),
                )
                .await
        }
    };
    assert_eq!(
        ack(bridge.clone(), Arc::clone(&first)).await,
        KafkaReply::Integer(1)
    );
    assert_eq!(
        ack(bridge.clone(), Arc::clone(&first)).await,
        KafkaReply::Integer(0)
    );
    assert_eq!(
        triple(&kpop(&bridge, "reader", &name, &first).await).2,
        b"v2"
    );
    assert_eq!(first.unacked_count(), 1);
    // The connection closes without acknowledging v2: the group gets it again, from this bridge.
    drop(first);
    let second = Arc::new(ConnectionDeliveries::new());
    let deadline = Instant::now() + Duration::from_secs(5);
    let again = loop {
        let reply = kpop(&bridge, "reader", &name, &second).await;
        if reply != KafkaReply::Nil {
            break reply;
        }
        assert!(Instant::now() < deadline, "v2 was not delivered again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(triple(&again).2, b"v2");
    assert_eq!(redelivered(&bridge, "reader", &name), 1);
    // v0 and v1 were acknowledged: nothing else comes.
    assert_eq!(
        kpop(&bridge, "reader", &name, &second).await,
        KafkaReply::Nil
    );
}

#[tokio::test]
async fn at_least_once_redelivers_through_another_bridge_after_the_ack_timeout() {
    let name = unique_topic("alo-timeout");
    let store: Arc<dyn OffsetStore> = Arc::new(MemoryOffsetStore::new());
    let settings =
        || vec![topic(&name, 2).delivery(Delivery::AtLeastOnce, Duration::from_millis(3000))];
    let first = bridge_with_store(settings(), Arc::clone(&store)).await;
    let second = bridge_with_store(settings(), Arc::clone(&store)).await;
    push(&first, &name, 4).await;
    // The first bridge delivers everything, and nobody acknowledges (its process hangs or died).
    let mut delivered = Vec::new();
    for _ in 0..4 {
        delivered.push(triple(&first.execute("reader", &[b"KPOP", name.as_bytes()]).await).2);
    }
    delivered.sort();
    assert_eq!(
        second.execute("reader", &[b"KPOP", name.as_bytes()]).await,
        KafkaReply::Nil
    );
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let connection = Arc::new(ConnectionDeliveries::new());
    let mut again = Vec::new();
    for _ in 0..4 {
        again.push(triple(&kpop(&second, "reader", &name, &connection).await).2);
    }
    again.sort();
    assert_eq!(again, delivered);
    assert_eq!(redelivered(&second, "reader", &name), 4);
    assert_eq!(redelivered(&first, "reader", &name), 0);
}
