use std::time::Duration;

use super::*;

#[test]
fn reads_merge_live_sessions_and_ended_ones_over_workers() {
    let stats = Stats::new(true, 10_000, 128);
    let mut one = SessionStats::new(&stats, 0, "main", "shop");
    let mut two = SessionStats::new(&stats, 1, "main", "shop");
    one.command("get", 10);
    one.command("get", 10);
    one.error(ErrorKind::Limit, 1);
    two.command("get", 5);
    two.bytes_out(7);
    one.publish_commands();
    two.publish_commands();
    // Counts are read in place: visible once published (each read pass), before the sessions end or change
    // anything.
    let key: CommandKey = (Arc::from("main"), Arc::from("shop"), "get");
    assert_eq!(stats.snapshot().commands[&key].calls, 3);
    drop(two);
    let all = stats.snapshot();
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
fn command_latency_is_kept_per_command() {
    let stats = Stats::new(true, 10_000, 128);
    let mut session = SessionStats::new(&stats, 0, "main", "shop");
    session.command("get", 10);
    session.command("set", 10);
    session.command_latency("get", Observation::of(Duration::from_micros(80)), 1);
    session.command_latency("set", Observation::of(Duration::from_millis(20)), 1);
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
    session.command_latency("get", Observation::of(Duration::from_millis(2)), 1);
    session.backend_latency(Observation::of(Duration::from_millis(1)), 1);
    drop(session);
    assert!(stats.snapshot().commands.is_empty());
}

#[test]
fn a_session_with_more_commands_and_nodes_than_slots_loses_no_count() {
    let stats = Stats::new(true, 10_000, 128);
    let mut session = SessionStats::new(&stats, 0, "main", "shop");
    // Leaked names: each is a distinct 'static command name, as table entries are.
    let names: Vec<&'static str> = (0..40)
        .map(|index| &*Box::leak(format!("command{index}").into_boxed_str()))
        .collect();
    let nodes: Vec<Arc<str>> = (0..40)
        .map(|index| Arc::from(format!("10.0.0.{index}:6379")))
        .collect();
    for round in 0..3u64 {
        for (index, &name) in names.iter().enumerate() {
            session.command(name, 10);
            session.publish_commands();
            session.command_latency(
                name,
                Observation::of(Duration::from_micros(100 * round + 1)),
                1,
            );
            session.node(
                &nodes[index],
                1,
                round % 2,
                Some(Observation::of(Duration::from_micros(60))),
            );
            // Counts are complete at every moment, whatever was retired on the way.
            let read = stats.snapshot();
            let calls: u64 = read.commands.values().map(|c| c.calls).sum();
            assert_eq!(calls, round * 40 + index as u64 + 1);
        }
    }
    let read = stats.snapshot();
    assert_eq!(read.commands.len(), 40);
    assert!(read
        .commands
        .values()
        .all(|c| c.calls == 3 && c.latency.count() == 3));
    assert_eq!(read.nodes.len(), 40);
    assert!(read
        .nodes
        .values()
        .all(|n| n.requests == 3 && n.failures == 1));
    let traffic = &read.traffic[&(Arc::from("main"), Arc::from("shop"))];
    assert_eq!(traffic.bytes_in, 1_200);
    assert_eq!(
        traffic.latency.count(),
        120,
        "the pool's time is its commands'"
    );
    assert_eq!(session.last_command(), "command39");
    drop(session);
    let after = stats.snapshot();
    assert_eq!(after.commands, read.commands);
}

#[test]
fn a_reader_never_sees_counts_twice_or_lose_them_while_a_session_starts_over() {
    let stats = Stats::new(true, 10_000, 128);
    let names: Vec<&'static str> = (0..50)
        .map(|index| &*Box::leak(format!("command{index}").into_boxed_str()))
        .collect();
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let (stats, done) = (Arc::clone(&stats), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut session = SessionStats::new(&stats, 0, "main", "shop");
            for round in 0..20_000u64 {
                // Fifty commands in turn: the slots run out every sixteen, and the counts move to the worker.
                session.command(names[(round % 50) as usize], 1);
                session.publish_commands();
                if round % 5_000 == 4_999 {
                    session.relabel(
                        "main",
                        if round % 10_000 == 4_999 {
                            "other"
                        } else {
                            "shop"
                        },
                    );
                }
                done.store(round + 1, std::sync::atomic::Ordering::Release);
            }
        })
    };
    let mut last = 0;
    while !writer.is_finished() {
        let written_before = done.load(std::sync::atomic::Ordering::Acquire);
        let calls: u64 = stats.snapshot().commands.values().map(|c| c.calls).sum();
        let written_after = done.load(std::sync::atomic::Ordering::Acquire);
        assert!(
            calls >= last && calls >= written_before && calls <= written_after + 1,
            "{calls}: {last} {written_before} {written_after}"
        );
        last = calls;
    }
    writer.join().expect("the session thread");
    let calls: u64 = stats.snapshot().commands.values().map(|c| c.calls).sum();
    assert_eq!(calls, 20_000);
}

#[test]
fn a_run_of_one_command_is_seen_once_published_and_under_the_labels_it_was_made_under() {
    let stats = Stats::new(true, 10_000, 128);
    let mut session = SessionStats::new(&stats, 0, "main", "shop");
    let calls = |stats: &Stats, tenant: &str| -> u64 {
        let read = stats.snapshot();
        read.commands
            .iter()
            .filter(|((_, of, _), _)| **of == *tenant)
            .map(|(_, counts)| counts.calls)
            .sum()
    };
    for _ in 0..16 {
        session.command("get", 30);
    }
    assert_eq!(calls(&stats, "shop"), 0, "not published yet");
    session.publish_commands();
    assert_eq!(calls(&stats, "shop"), 16);
    session.command("get", 30);
    session.command("set", 40);
    assert_eq!(
        calls(&stats, "shop"),
        17,
        "another command publishes the run before it"
    );
    session.relabel("main", "other");
    session.command("set", 40);
    drop(session);
    assert_eq!(calls(&stats, "shop"), 18);
    assert_eq!(
        calls(&stats, "other"),
        1,
        "dropping the session publishes its last run"
    );
    let read = stats.snapshot();
    let bytes: u64 = read.commands.values().map(|counts| counts.bytes_in).sum();
    assert_eq!(bytes, 17 * 30 + 2 * 40);
}
