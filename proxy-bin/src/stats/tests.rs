use std::time::Duration;

use super::*;

#[test]
fn sessions_flush_into_their_worker_and_reads_merge_workers() {
    let stats = Stats::new(true, 10_000, 128);
    let mut one = SessionStats::new(&stats, 0, "main", "shop");
    let mut two = SessionStats::new(&stats, 1, "main", "shop");
    one.command("get", 10);
    one.command("get", 10);
    one.error(ErrorKind::Limit, 1);
    two.command("get", 5);
    two.bytes_out(7);
    // Nothing is visible before a flush.
    assert!(stats.snapshot().commands.is_empty());
    one.flush();
    drop(two);
    let all = stats.snapshot();
    let key: CommandKey = (Arc::from("main"), Arc::from("shop"), "get");
    assert_eq!(
        all.commands.get(&key),
        Some(&CommandCounts {
            calls: 3,
            bytes_in: 25,
            latency: Histogram::default(),
        })
    );
    let traffic = &all.traffic[&(Arc::from("main"), Arc::from("shop"))];
    assert_eq!(traffic.error(ErrorKind::Limit), 1);
    assert_eq!((traffic.bytes_in, traffic.bytes_out), (25, 7));
}

#[test]
fn command_latency_is_kept_per_command_and_flushed_after_its_calls() {
    let stats = Stats::new(true, 10_000, 128);
    let mut session = SessionStats::new(&stats, 0, "main", "shop");
    session.command("get", 10);
    session.command("set", 10);
    session.flush();
    // Replies come after the calls were flushed: their times still reach the worker's table.
    session.command_latency("get", Duration::from_micros(80), 1);
    session.command_latency("set", Duration::from_millis(20), 1);
    drop(session);
    let all = stats.snapshot();
    let key = |name: &'static str| -> CommandKey { (Arc::from("main"), Arc::from("shop"), name) };
    let (get, set) = (&all.commands[&key("get")], &all.commands[&key("set")]);
    assert_eq!((get.calls, get.latency.count()), (1, 1));
    assert_eq!(get.latency.quantile_upper_us(1.0), Some(100));
    assert_eq!(set.latency.quantile_upper_us(1.0), Some(25_000));
}

#[test]
fn relabelling_keeps_earlier_counts_under_the_old_labels() {
    let stats = Stats::new(true, 10_000, 128);
    let mut session = SessionStats::new(&stats, 0, "main", UNAUTHENTICATED);
    session.command("auth", 20);
    session.relabel("cache", "shop");
    session.command("get", 10);
    drop(session);
    let all = stats.snapshot();
    assert_eq!(all.commands.len(), 2);
    assert!(all
        .commands
        .contains_key(&(Arc::from("main"), Arc::from(UNAUTHENTICATED), "auth")));
    assert!(all
        .commands
        .contains_key(&(Arc::from("cache"), Arc::from("shop"), "get")));
}

#[test]
fn disabled_stats_count_nothing() {
    let stats = Stats::new(false, 10_000, 128);
    let mut session = SessionStats::new(&stats, 0, "main", "shop");
    session.command("get", 10);
    session.latency(Duration::from_millis(2), Duration::from_millis(1), 1);
    drop(session);
    assert!(stats.snapshot().commands.is_empty());
}
