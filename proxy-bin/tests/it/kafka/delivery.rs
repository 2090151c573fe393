//! `KPOP topic` delivery guarantees across two real rkproxy processes sharing a Redis offset store, one of them
//! killed with SIGKILL while it holds prefetched records: at least once loses nothing (and the survivor counts
//! the records it delivered again), at most once delivers nothing twice and loses at most the killed proxy's
//! leased window.

use super::*;

const MESSAGES: usize = 300;
const PARTITIONS: i32 = 2;

/// Two proxy processes with the same config; the first one's connections push `MESSAGES` values.
struct TwoProxies {
    first: ProxyProcess,
    second: ProxyProcess,
    produced: BTreeSet<Vec<u8>>,
}

async fn two_proxies_with_messages(name: &str, topic: &str, topic_keys: &str) -> TwoProxies {
    let key_prefix = format!("{}:", unique(&format!("kafka-it-{name}")));
    let config = shared_offsets_config(topic, PARTITIONS, &key_prefix, topic_keys);
    let first = blocking({
        let config = config.clone();
        let name = format!("{name}-a");
        move || ProxyProcess::start(&name, &config)
    })
    .await;
    let second = blocking({
        let name = format!("{name}-b");
        move || ProxyProcess::start(&name, &config)
    })
    .await;
    let mut producer = client_at(first.addr, None).await;
    wait_connected(&mut producer, topic).await;
    let mut produced = BTreeSet::new();
    for index in 0..MESSAGES {
        let value = format!("message {index}").into_bytes();
        kpush(&mut producer, topic, &value).await;
        produced.insert(value);
    }
    TwoProxies {
        first,
        second,
        produced,
    }
}

/// Pops `count` records through `addr` on one connection.
async fn pop_some(addr: SocketAddr, topic: &str, count: usize) -> Vec<Record> {
    let mut connection = client_at(addr, None).await;
    let mut records = Vec::new();
    while records.len() < count {
        records.push(kpop(&mut connection, topic).await.unwrap());
    }
    records
}

/// The `kpop_redelivered` count of `topic` in `RKPROXY STATS kafka`.
async fn redelivered_in_stats(connection: &mut MultiplexedConnection, topic: &str) -> u64 {
    let lines: Vec<String> = redis::cmd("RKPROXY")
        .arg("STATS")
        .arg("kafka")
        .query_async(connection)
        .await
        .unwrap();
    lines
        .iter()
        .filter(|line| line.contains(&format!(" topic={topic} ")))
        .filter_map(|line| line.split(" kpop_redelivered=").nth(1))
        .map(|count| count.trim().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_loses_nothing_when_a_proxy_is_killed() {
    let topic = unique_name("alo-kill");
    let mut proxies = two_proxies_with_messages(
        "alo-kill",
        &topic,
        "delivery = 'at_least_once'\nack_timeout_ms = 1000",
    )
    .await;
    // Each KPOP acknowledges the one before on its connection; the last one stays unacknowledged, and the
    // first proxy holds more records leased ahead of them.
    let mut delivered = pop_some(proxies.first.addr, &topic, 100).await;
    proxies.first.kill();

    let mut connection = client_at(proxies.second.addr, None).await;
    let mut seen: BTreeSet<Vec<u8>> = delivered.iter().map(|record| record.2.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen != proxies.produced {
        assert!(
            Instant::now() < deadline,
            "{} records lost after the kill",
            proxies.produced.difference(&seen).count()
        );
        match kpop(&mut connection, &topic).await {
            Some(record) => {
                seen.insert(record.2.clone());
                delivered.push(record);
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let positions: BTreeSet<(i64, i64)> = delivered.iter().map(|r| (r.0, r.1)).collect();
    let duplicates = (delivered.len() - positions.len()) as u64;
    // The killed proxy's last delivery was never acknowledged: it came again.
    assert!(duplicates >= 1, "no record was delivered twice");
    // The second proxy counted what it handed out again: the duplicates, and the records the killed proxy
    // had leased but not served yet (the store cannot tell those apart: both were past their deadline).
    let counted = redelivered_in_stats(&mut connection, &topic).await;
    assert!(
        counted >= duplicates,
        "{counted} counted, {duplicates} duplicates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_once_repeats_nothing_when_a_proxy_is_killed() {
    const PREFETCH: usize = 40;
    let topic = unique_name("amo-kill");
    let mut proxies = two_proxies_with_messages(
        "amo-kill",
        &topic,
        &format!("prefetch_records = {PREFETCH}"),
    )
    .await;
    let mut delivered = pop_some(proxies.first.addr, &topic, 100).await;
    proxies.first.kill();
    let mut connection = client_at(proxies.second.addr, None).await;
    pop_all(&mut connection, &topic, &mut delivered).await;

    let positions: BTreeSet<(i64, i64)> = delivered.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(positions.len(), delivered.len(), "a record came twice");
    let values: BTreeSet<Vec<u8>> = delivered.iter().map(|record| record.2.clone()).collect();
    assert!(values.is_subset(&proxies.produced));
    // Lost: only what the killed proxy had leased and not served, at most its window per partition.
    let lost = proxies.produced.len() - values.len();
    assert!(
        lost <= PREFETCH * PARTITIONS as usize,
        "{lost} records lost, more than the prefetch window"
    );
    assert_eq!(redelivered_in_stats(&mut connection, &topic).await, 0);
}

/// The one line of `RKPROXY KOFFSETS default topic` (a one-partition topic).
async fn koffsets_line(connection: &mut MultiplexedConnection, topic: &str) -> String {
    let lines = koffsets(connection, "default", topic).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].clone()
}

/// The ms of `oldest_deadline_in_ms=` in a KOFFSETS line, `None` when the field is empty.
fn oldest_deadline_ms(line: &str) -> Option<u64> {
    let value = line.split(" oldest_deadline_in_ms=").nth(1).unwrap();
    (!value.is_empty()).then(|| value.parse().unwrap())
}

/// `RKPROXY KOFFSETS` lists the records of an at-least-once topic that wait for an acknowledgement (served, not
/// acknowledged yet) and how long until the oldest of their deadlines; a record released by a closed connection
/// is due at once (0). `offsets_keys` chooses the offset store.
async fn koffsets_lists_pending_records(offsets_keys: &str) {
    let topic = unique_name("koffsets-pending");
    let topic_keys = "delivery = 'at_least_once'\nack_timeout_ms = 60000\n";
    let config = format!(
        "default_pool = 'events'\n{}",
        kafka_pool_toml(
            &kafka_addr(),
            offsets_keys,
            &format!("{}{topic_keys}", topic_toml(&topic, 1, &["*"], &["*"]))
        )
    );
    let proxy = start_proxy_toml(&config).await;
    let mut first = client(&proxy).await;
    let mut second = client(&proxy).await;
    wait_connected(&mut first, &topic).await;
    for index in 0..3 {
        kpush(&mut first, &topic, format!("record {index}").as_bytes()).await;
    }
    // Every record served; the second connection's second KPOP acknowledged its first record.
    let of_first = kpop(&mut first, &topic).await.unwrap().1;
    let second_first = kpop(&mut second, &topic).await.unwrap().1;
    let second_last = kpop(&mut second, &topic).await.unwrap().1;
    let mut offsets = [of_first, second_first, second_last];
    offsets.sort_unstable();
    assert_eq!(offsets, [0, 1, 2]);
    let line = koffsets_line(&mut first, &topic).await;
    assert!(
        line.starts_with("partition=0 next_offset=3 given_back= pending=2 oldest_deadline_in_ms="),
        "{line}"
    );
    let due_in = oldest_deadline_ms(&line).unwrap();
    assert!(due_in > 0 && due_in <= 60_000, "{line}");

    // KACK the second connection's last record; the first connection's goes back when it closes.
    let kacked: i64 = redis::cmd("KACK")
        .arg(&topic)
        .arg(0)
        .arg(second_last)
        .query_async(&mut second)
        .await
        .unwrap();
    assert_eq!(kacked, 1);
    let line = koffsets_line(&mut second, &topic).await;
    assert!(
        line.contains(" pending=1 ") && oldest_deadline_ms(&line).is_some_and(|ms| ms > 0),
        "{line}"
    );
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let line = koffsets_line(&mut second, &topic).await;
        if line.ends_with(" pending=1 oldest_deadline_in_ms=0") {
            break;
        }
        assert!(Instant::now() < deadline, "{line}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn koffsets_lists_pending_records_in_memory() {
    koffsets_lists_pending_records("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn koffsets_lists_pending_records_in_the_redis_store() {
    let key_prefix = format!("{}:", unique("kafka-it-koffsets"));
    koffsets_lists_pending_records(&format!(
        "offsets = {{ redis = '{}', key_prefix = '{key_prefix}' }}",
        redis_addr()
    ))
    .await;
}
