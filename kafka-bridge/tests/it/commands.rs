//! KPUSH, app-managed KPOP, KPARTITIONS, KOFFSET and the error replies, checked against the real broker and
//! against kcat as an independent client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_bridge::{KafkaBridge, KafkaPoolConfig, KafkaReply, MemoryOffsetStore, TopicConfig};

use crate::support::*;

#[tokio::test]
async fn kpush_writes_exactly_the_bytes_kcat_reads_back() {
    let name = unique_topic("push");
    let bridge = bridge(vec![topic(&name, 2)]).await;
    let binary: Vec<u8> = (0..=255u8).collect();
    let large: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let values: Vec<(Option<&str>, Vec<u8>)> = vec![
        (None, b"hello".to_vec()),
        (None, Vec::new()),
        (Some("1"), binary.clone()),
        (Some("0"), b"line\r\nbreaks\n".to_vec()),
        (None, large.clone()),
        (Some("1"), b"last".to_vec()),
    ];
    let mut written = Vec::new();
    for (partition, value) in &values {
        let reply = match partition {
            None => run(&bridge, "writer", &[b"KPUSH", name.as_bytes(), value]).await,
            Some(p) => {
                run(
                    &bridge,
                    "writer",
                    &[b"KPUSH", name.as_bytes(), p.as_bytes(), value],
                )
                .await
            }
        };
        let (got_partition, offset) = int_pair(&reply);
        if let Some(p) = partition {
            assert_eq!(got_partition.to_string(), *p);
        }
        written.push((i32::try_from(got_partition).unwrap(), offset, value.clone()));
    }
    // Round-robin spreads the pushes without a partition over both partitions.
    let chosen: Vec<i32> = written
        .iter()
        .zip(&values)
        .filter(|(_, (partition, _))| partition.is_none())
        .map(|((p, _, _), _)| *p)
        .collect();
    assert!(
        chosen.contains(&0) && chosen.contains(&1),
        "round-robin used {chosen:?}"
    );

    for (partition, offset, value) in &written {
        assert_eq!(
            &kcat_read(&name, *partition, *offset),
            value,
            "partition {partition} offset {offset}"
        );
        // And the bridge's own app-managed read agrees byte for byte.
        let reply = run(
            &bridge,
            "reader",
            &[
                b"KPOP",
                name.as_bytes(),
                partition.to_string().as_bytes(),
                offset.to_string().as_bytes(),
            ],
        )
        .await;
        assert_eq!(triple(&reply), (*partition, *offset, value.clone()));
    }
}

#[tokio::test]
async fn kcat_messages_come_out_of_managed_kpop() {
    let name = unique_topic("kcat");
    let bridge = bridge(vec![topic(&name, 3)]).await;
    let mut expected = Vec::new();
    for partition in 0..3 {
        let messages: Vec<String> = (0..4).map(|i| format!("p{partition}-m{i}")).collect();
        let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
        kcat_produce(&name, partition, &refs);
        for (offset, message) in messages.iter().enumerate() {
            expected.push((
                partition,
                i64::try_from(offset).unwrap(),
                message.as_bytes().to_vec(),
            ));
        }
    }
    let mut popped = Vec::new();
    loop {
        let reply = run(&bridge, "reader", &[b"KPOP", name.as_bytes()]).await;
        if reply == KafkaReply::Nil {
            break;
        }
        popped.push(triple(&reply));
        assert!(
            popped.len() <= expected.len(),
            "more records than produced: {popped:?}"
        );
    }
    popped.sort();
    assert_eq!(popped, expected);
    // Each group has its own cursors: another consumer tenant gets everything again.
    let reply = run(&bridge, "reader2", &[b"KPOP", name.as_bytes()]).await;
    assert!(expected.contains(&triple(&reply)));
}

#[tokio::test]
async fn app_managed_kpop_reads_at_offsets_and_never_moves_cursors() {
    let name = unique_topic("popat");
    let bridge = bridge(vec![topic(&name, 1)]).await;
    for i in 0..5 {
        let reply = run(
            &bridge,
            "writer",
            &[b"KPUSH", name.as_bytes(), b"0", format!("v{i}").as_bytes()],
        )
        .await;
        assert_eq!(int_pair(&reply), (0, i));
    }
    let topic = name.as_bytes();
    assert_eq!(
        triple(&run(&bridge, "reader", &[b"KPOP", topic, b"0", b"2"]).await),
        (0, 2, b"v2".to_vec())
    );

    let reply = run(&bridge, "reader", &[b"KPOP", topic, b"0", b"1", b"3"]).await;
    let KafkaReply::Array(items) = &reply else {
        panic!("expected an array, got {reply:?}")
    };
    let triples: Vec<_> = items.iter().map(triple).collect();
    assert_eq!(
        triples,
        vec![
            (0, 1, b"v1".to_vec()),
            (0, 2, b"v2".to_vec()),
            (0, 3, b"v3".to_vec())
        ]
    );
    // A count larger than what is left gives what is left; nothing left gives an empty array.
    let reply = run(&bridge, "reader", &[b"KPOP", topic, b"0", b"3", b"100"]).await;
    assert!(
        matches!(&reply, KafkaReply::Array(items) if items.len() == 2),
        "{reply:?}"
    );
    assert_eq!(
        run(&bridge, "reader", &[b"KPOP", topic, b"0", b"5", b"10"]).await,
        KafkaReply::Array(vec![])
    );

    // At the end of the log and past it: nil, quickly.
    let started = Instant::now();
    assert_eq!(
        run(&bridge, "reader", &[b"KPOP", topic, b"0", b"5"]).await,
        KafkaReply::Nil
    );
    assert_eq!(
        run(&bridge, "reader", &[b"KPOP", topic, b"0", b"1000"]).await,
        KafkaReply::Nil
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "nil took {:?}",
        started.elapsed()
    );

    // None of that touched the managed cursor: the managed KPOP still starts at offset 0.
    assert_eq!(
        triple(&run(&bridge, "reader", &[b"KPOP", topic]).await),
        (0, 0, b"v0".to_vec())
    );
}

#[tokio::test]
async fn kpartitions_and_partition_growth_never_shrinks() {
    let name = unique_topic("grow");
    let bridge_two = bridge(vec![topic(&name, 2)]).await;
    let partitions = |reply: KafkaReply| match reply {
        KafkaReply::Array(items) => items
            .into_iter()
            .map(|item| match item {
                KafkaReply::Integer(id) => id,
                other => panic!("partition id {other:?}"),
            })
            .collect::<Vec<i64>>(),
        other => panic!("expected an array, got {other:?}"),
    };
    assert_eq!(
        partitions(run(&bridge_two, "reader", &[b"KPARTITIONS", name.as_bytes()]).await),
        vec![0, 1]
    );

    // A configuration with more partitions grows the topic (CreatePartitions, written by hand).
    let bridge_four = bridge(vec![topic(&name, 4)]).await;
    assert_eq!(
        partitions(run(&bridge_four, "reader", &[b"KPARTITIONS", name.as_bytes()]).await),
        vec![0, 1, 2, 3]
    );
    let (partition, _) = int_pair(
        &run(
            &bridge_four,
            "writer",
            &[b"KPUSH", name.as_bytes(), b"3", b"x"],
        )
        .await,
    );
    assert_eq!(partition, 3);

    // A configuration with fewer partitions leaves the topic alone and serves all of them.
    let bridge_one = bridge(vec![topic(&name, 1)]).await;
    assert_eq!(
        partitions(run(&bridge_one, "reader", &[b"KPARTITIONS", name.as_bytes()]).await),
        vec![0, 1, 2, 3]
    );
}

#[tokio::test]
async fn koffset_earliest_latest_and_timestamp() {
    let name = unique_topic("koffset");
    let bridge = bridge(vec![topic(&name, 1)]).await;
    let topic = name.as_bytes();
    assert_eq!(
        int_pair(&run(&bridge, "reader", &[b"KOFFSET", topic, b"0", b"-2"]).await),
        (0, -1)
    );
    assert_eq!(
        int_pair(&run(&bridge, "reader", &[b"KOFFSET", topic, b"0", b"-1"]).await),
        (0, -1)
    );

    run(&bridge, "writer", &[b"KPUSH", topic, b"0", b"early"]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let between = now_millis();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_, late_offset) =
        int_pair(&run(&bridge, "writer", &[b"KPUSH", topic, b"0", b"late"]).await);
    assert_eq!(late_offset, 1);

    assert_eq!(
        int_pair(&run(&bridge, "reader", &[b"KOFFSET", topic, b"0", b"-2"]).await),
        (0, -1)
    );
    assert_eq!(
        int_pair(&run(&bridge, "reader", &[b"KOFFSET", topic, b"0", b"-1"]).await),
        (2, -1)
    );
    let (offset, timestamp) = int_pair(
        &run(
            &bridge,
            "reader",
            &[b"KOFFSET", topic, b"0", between.to_string().as_bytes()],
        )
        .await,
    );
    assert_eq!(
        offset, 1,
        "the first record at or after the timestamp is the late one"
    );
    assert!(
        timestamp >= between && timestamp <= now_millis(),
        "timestamp {timestamp} vs {between}"
    );
    let (offset, timestamp) =
        int_pair(&run(&bridge, "reader", &[b"KOFFSET", topic, b"0", b"0"]).await);
    assert_eq!(offset, 0);
    assert!(timestamp > 0 && timestamp < between);
    // Nothing that recent: Kafka's answer is offset -1.
    let future = (now_millis() + 3_600_000).to_string();
    assert_eq!(
        int_pair(
            &run(
                &bridge,
                "reader",
                &[b"KOFFSET", topic, b"0", future.as_bytes()]
            )
            .await
        ),
        (-1, -1)
    );
}

#[tokio::test]
async fn errors_are_precise_resp_errors() {
    let name = unique_topic("errors");
    let bridge = bridge(vec![topic(&name, 2)]).await;
    let topic = name.as_bytes();
    let cases: Vec<(&str, Vec<&[u8]>, String)> = vec![
        ("writer", vec![b"KPUSH", b"not-configured", b"x"], "ERR unknown topic 'not-configured': it is not configured in this Kafka pool".into()),
        ("reader", vec![b"KPUSH", topic, b"x"], format!("NOPERM tenant 'reader' is not allowed to produce to topic '{name}'")),
        ("writer", vec![b"KPOP", topic], format!("NOPERM tenant 'writer' is not allowed to consume from topic '{name}'")),
        ("stranger", vec![b"KPARTITIONS", topic], format!("NOPERM tenant 'stranger' is not allowed to consume from topic '{name}'")),
        ("writer", vec![b"KPUSH", topic, b"7", b"x"], format!("ERR wrong partition 7 for topic '{name}': it has partitions 0 to 1")),
        ("reader", vec![b"KOFFSET", topic, b"-1", b"-1"], format!("ERR wrong partition -1 for topic '{name}': it has partitions 0 to 1")),
        ("writer", vec![b"KPUSH", topic, b"zero", b"x"], "ERR partition is not an integer or out of range".into()),
        ("reader", vec![b"KPOP", topic, b"0", b"first"], "ERR offset is not an integer or out of range".into()),
        ("reader", vec![b"KPOP", topic, b"0"], "ERR wrong number of arguments for 'kpop' command".into()),
        ("reader", vec![b"KOFFSET", topic], "ERR wrong number of arguments for 'koffset' command".into()),
        ("reader", vec![b"KDEL", topic], "ERR unknown command 'KDEL', the Kafka pool accepts KPUSH, KPOP, KPARTITIONS and KOFFSET".into()),
    ];
    for (tenant, args, expected) in cases {
        let reply = run(&bridge, tenant, &args).await;
        assert_eq!(error_text(&reply), expected, "for {tenant} {args:?}");
        assert!(reply.to_resp().starts_with(b"-"));
    }
}

#[tokio::test]
async fn a_topic_deleted_in_kafka_gives_the_kafka_error_name() {
    // The bridge creates the topic; then it is deleted in Kafka behind the bridge's back (with rskafka's
    // admin client, as an operator would with kafka-topics.sh).
    let name = unique_topic("deleted");
    let bridge = bridge(vec![topic(&name, 1)]).await;
    let client = rskafka::client::ClientBuilder::new(vec![kafka_address()])
        .build()
        .await
        .unwrap();
    client
        .controller_client()
        .unwrap()
        .delete_topic(name.clone(), 5_000)
        .await
        .unwrap();
    // Wait until the broker no longer hosts the partition, then every command names Kafka's error.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = run(&bridge, "writer", &[b"KPUSH", name.as_bytes(), b"0", b"x"]).await;
        match &reply {
            KafkaReply::Error(text)
                if text.starts_with("ERR kafka UNKNOWN_TOPIC_OR_PARTITION: ") =>
            {
                assert!(text.contains(&name), "{text}");
                break;
            }
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("expected UNKNOWN_TOPIC_OR_PARTITION, got {other:?}"),
        }
    }
    let reply = run(
        &bridge,
        "reader",
        &[b"KOFFSET", name.as_bytes(), b"0", b"-1"],
    )
    .await;
    assert!(
        error_text(&reply).starts_with("ERR kafka UNKNOWN_TOPIC_OR_PARTITION: "),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_broker_that_is_down_gives_a_fast_error() {
    // Nothing listens on port 1 of loopback: connecting is refused at once, and the bridge gives up within
    // its request timeout instead of retrying forever.
    let mut config = KafkaPoolConfig::new(vec!["127.0.0.1:1".into()]);
    config.topics.push(TopicConfig::new("t", 1));
    config.request_timeout = Duration::from_millis(800);
    let started = Instant::now();
    let error = KafkaBridge::connect(config, Arc::new(MemoryOffsetStore::new()))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(error.to_string().starts_with("ERR kafka "), "{error}");
    assert!(
        elapsed < Duration::from_secs(3),
        "took {elapsed:?}: {error}"
    );
}

#[tokio::test]
async fn a_refused_broker_is_reported_as_not_available_never_as_a_timeout() {
    // rskafka retries a refused connection until its deadline, which is the request timeout, and the bridge's
    // own timeout around the connect is the same length: whichever fired first decided the error's name. A
    // broker that refuses connections is not available; it did not time out. Twenty connects at once, with a
    // short timeout, so the two deadlines meet often.
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..20 {
        attempts.spawn(async {
            let mut config = KafkaPoolConfig::new(vec!["127.0.0.1:1".into()]);
            config.topics.push(TopicConfig::new("t", 1));
            config.request_timeout = Duration::from_millis(300);
            KafkaBridge::connect(config, Arc::new(MemoryOffsetStore::new()))
                .await
                .unwrap_err()
                .to_string()
        });
    }
    while let Some(error) = attempts.join_next().await {
        let error = error.unwrap();
        assert!(
            error.starts_with("ERR kafka BROKER_NOT_AVAILABLE: "),
            "{error}"
        );
    }
}

#[tokio::test]
async fn concurrent_pushes_to_one_partition_all_get_distinct_offsets() {
    let name = unique_topic("batch");
    let bridge = bridge(vec![topic(&name, 1)]).await;
    let mut tasks = Vec::new();
    for i in 0..500 {
        let bridge = bridge.clone();
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            let value = format!("value-{i}");
            let reply = bridge
                .execute(
                    "writer",
                    &[b"KPUSH", name.as_bytes(), b"0", value.as_bytes()],
                )
                .await;
            (int_pair(&reply).1, value)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results.sort();
    let offsets: Vec<i64> = results.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, (0..500).collect::<Vec<i64>>());
    // Each caller got the offset of its own record.
    for (offset, value) in results.iter().step_by(50) {
        assert_eq!(kcat_read(&name, 0, *offset), value.as_bytes());
    }
}

fn now_millis() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}
