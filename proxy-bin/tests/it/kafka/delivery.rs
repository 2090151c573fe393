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
    let mut producer = connect(first.addr, None).await;
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
    let mut connection = connect(addr, None).await;
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
    let topic = unique_topic("alo-kill");
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

    let mut connection = connect(proxies.second.addr, None).await;
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
    let topic = unique_topic("amo-kill");
    let mut proxies = two_proxies_with_messages(
        "amo-kill",
        &topic,
        &format!("prefetch_records = {PREFETCH}"),
    )
    .await;
    let mut delivered = pop_some(proxies.first.addr, &topic, 100).await;
    proxies.first.kill();
    let mut connection = connect(proxies.second.addr, None).await;
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
