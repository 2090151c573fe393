//! The `kafka` section of `cargo xtask bench`: KPUSH and KPOP through rkproxy's Kafka pool, against SET through
//! rkproxy's Redis pool with the same clients and value size.
//!
//! It starts a single-node Kafka broker (the same one `cargo xtask test` runs), a redis-server, and two release
//! rkproxy processes with the same settings: one whose default pool is a Kafka pool (one topic), one in front of
//! the redis-server. Each round runs, with redis-benchmark at `--clients` connections and `--requests` requests:
//!
//! - `SET` with 100-byte values (`-t set -d 100`) through the Redis proxy;
//! - `KPUSH topic <100-byte value>` through the Kafka proxy (each reply comes after Kafka acknowledged the
//!   record with acks=all);
//! - `KPOP topic` (proxy-managed offsets, the default prefetch of 500 records per partition, at most once)
//!   through the Kafka proxy, over the records the KPUSH runs left; before the run, the records not leased yet
//!   (high watermark minus the group's cursor) must cover every request, so the run cannot find the topic
//!   empty (nil replies would make a meaningless rate), and after it the cursor must have moved at least that
//!   far less the prefetch window;
//! - `KPOP topic` on a second topic with `delivery = "at_least_once"`, filled first by an unmeasured KPUSH
//!   run of as many records, with the same checks: each KPOP of a connection also acknowledges the record it
//!   popped before, one more round trip to the offset store.
//!
//! The Kafka pool keeps its offsets in the section's redis-server (`offsets = { redis = ... }`), as proxies
//! sharing a group do, so an acknowledgement is a real round trip; at most once, a lease is one round trip
//! per block of 500 records.
//!
//! With `--baseline PATH` (and `baseline` among the targets), an older rkproxy binary runs SET and KPUSH the
//! same way, in the same rounds, through its own pair of proxies on the same broker, topic and redis-server:
//! so "KPUSH unchanged" is read from one run. Its Kafka config leaves out the at-least-once topic, whose
//! `delivery` key a binary from before at least once does not know (its config rejects unknown keys), and it
//! runs no KPOP rows (its KPOP has neither prefetch nor at least once to compare).
//!
//! An unmeasured KPUSH run warms the broker's JVM first. The SET and KPUSH runs of every target take turns
//! going first (the order rotates each round); the KPOP runs come last. The rows join the main table; the
//! goal cell of KPUSH holds the KPUSH/SET ratio against the project's goal ([`KPUSH_GOAL`]), and rkproxy's
//! SET and KPUSH rows carry the ratio to the baseline's in the `rkproxy vs baseline` column.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{
    check_round_trip, median, parse_csv, redis_benchmark, spread, start_rkproxy, Measurement,
    TABLE_HEADER, TABLE_RULE,
};
use crate::flags::{BenchOptions, BenchTarget, Named};
use crate::redis::{self, RedisKind, RedisSpec};
use crate::resp::{Connection, Reply};
use crate::shell::{self, ChildGuard};
use crate::{bail, kafka, ports, signals, Result};

/// The least KPUSH/SET throughput ratio the project aims for.
const KPUSH_GOAL: f64 = 0.5;
/// The least KPOP/KPUSH throughput ratio the project aims for (issue 15).
const KPOP_GOAL: f64 = 0.7;
/// The records a proxy leases ahead per (group, partition) by default (`prefetch_records`): the group's
/// cursor may stand this far past what was served.
const PREFETCH_RECORDS: u64 = 500;
/// The topic KPUSH and KPOP use.
const TOPIC: &str = "rkproxy-bench";
/// The at-least-once topic of the second KPOP row.
const ALO_TOPIC: &str = "rkproxy-bench-alo";
/// Its partitions: concurrent KPUSHes to one partition go out as one produce request.
const PARTITIONS: u32 = 1;
/// The value size of SET and KPUSH.
const VALUE_BYTES: usize = 100;
/// How long the Kafka pool may take to connect and create its topic after the proxy started.
const POOL_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the section measured, ready to join the main table.
pub(super) struct KafkaSection {
    rows: Vec<String>,
    note: String,
}

/// One kind of request the section runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Test {
    Set,
    Kpush,
    Kpop,
    KpopAtLeastOnce,
}

impl Test {
    fn label(self) -> String {
        match self {
            Test::Set => format!("SET {VALUE_BYTES} B (Redis pool)"),
            Test::Kpush => format!("KPUSH {VALUE_BYTES} B"),
            Test::Kpop => "KPOP (managed offsets)".to_string(),
            Test::KpopAtLeastOnce => "KPOP (managed, at least once)".to_string(),
        }
    }
}

/// The two proxies of one target (rkproxy or the baseline): one with the Kafka pool, one in front of the
/// section's redis-server.
struct TargetProxies {
    target: BenchTarget,
    kafka: SocketAddr,
    redis: SocketAddr,
}

/// One measured run: which target, which request.
type Run = (BenchTarget, Test);

/// The medians' inputs of every run, in the order the rows are shown.
type Runs = Vec<(Run, Vec<Measurement>)>;

/// The rows of the section, in table order: each test with rkproxy first, then the baseline.
const ROWS: [Run; 6] = [
    (BenchTarget::Rkproxy, Test::Set),
    (BenchTarget::Baseline, Test::Set),
    (BenchTarget::Rkproxy, Test::Kpush),
    (BenchTarget::Baseline, Test::Kpush),
    (BenchTarget::Rkproxy, Test::Kpop),
    (BenchTarget::Rkproxy, Test::KpopAtLeastOnce),
];

/// Starts the servers, runs the rounds, and returns the rows.
pub(super) fn run(
    options: &BenchOptions,
    dir: &Path,
    guard: &mut ChildGuard,
) -> Result<KafkaSection> {
    if !options.wants_target(BenchTarget::Rkproxy) {
        bail!("the kafka section measures rkproxy; keep rkproxy among --targets");
    }
    shell::ensure_tools(kafka::KAFKA_TOOLS)?;
    eprintln!("starting Kafka for the kafka section...");
    let broker = kafka::spawn_child(&dir.join("kafka"), guard)?;
    // The JVM starts in the background while Redis comes up.
    let redis_spec = RedisSpec {
        name: "redis-kafka-section".into(),
        port: ports::free_port()?,
        dir: dir.join("redis-kafka-section"),
        kind: RedisKind::Standalone,
        daemonize: false,
    };
    guard.push("redis-kafka-section", redis::spawn_child(&redis_spec)?);
    kafka::wait_child_ready(&broker, guard)?;

    let mut proxies = Vec::new();
    for target in [BenchTarget::Rkproxy, BenchTarget::Baseline] {
        if options.wants_target(target) {
            let started = start_target_proxies(
                options,
                target,
                broker.addr(),
                redis_spec.addr(),
                dir,
                guard,
            )?;
            proxies.push(started);
        }
    }
    warm_up(options, &proxies)?;

    let mut runs: Runs = ROWS.iter().map(|run| (*run, Vec::new())).collect();
    for round in 0..options.rounds {
        for (target, test) in round_order(round, &proxies) {
            let Some(through) = proxies.iter().find(|proxies| proxies.target == target) else {
                continue;
            };
            let started = Instant::now();
            let measurement = measure(options, through, test)?;
            eprintln!(
                "round {}/{} kafka {:<10} {:<28} {:>12.0} req/s  p50 {:.3} ms  ({:.1} s)",
                round + 1,
                options.rounds,
                target.name(),
                test.label(),
                measurement.requests_per_second,
                measurement.p50_ms,
                started.elapsed().as_secs_f64(),
            );
            if let Some((_, measurements)) = runs.iter_mut().find(|(run, _)| *run == (target, test))
            {
                measurements.push(measurement);
            }
        }
    }
    Ok(section(&runs))
}

/// Starts `target`'s Kafka proxy (checked with a KPUSH once its pool is ready) and its Redis proxy.
fn start_target_proxies(
    options: &BenchOptions,
    target: BenchTarget,
    broker: SocketAddr,
    store: SocketAddr,
    dir: &Path,
    guard: &mut ChildGuard,
) -> Result<TargetProxies> {
    let name = target.name();
    let kafka_proxy = ports::loopback(ports::free_port()?);
    let config_path = dir.join(format!("{name}-kafka.toml"));
    std::fs::write(
        &config_path,
        rkproxy_kafka_config(target, kafka_proxy, broker, store),
    )?;
    let args = ["--config".to_string(), config_path.display().to_string()];
    let child_name = format!("{name}-kafka");
    start_rkproxy(options, target, &child_name, kafka_proxy, &args, dir, guard)?;
    wait_pool_ready(kafka_proxy)?;
    check_kafka_round_trip(kafka_proxy)?;

    let redis_proxy = ports::loopback(ports::free_port()?);
    let args = [
        "--listen".to_string(),
        redis_proxy.to_string(),
        "--backend".to_string(),
        format!("redis://{store}"),
    ];
    let child_name = format!("{name}-redis-kafka-section");
    start_rkproxy(options, target, &child_name, redis_proxy, &args, dir, guard)?;
    check_round_trip(target, redis_proxy)?;
    eprintln!("kafka      {name:<10} {kafka_proxy} (Kafka pool, topic {TOPIC})");
    eprintln!("kafka      {name:<10} {redis_proxy} (Redis pool)");
    Ok(TargetProxies {
        target,
        kafka: kafka_proxy,
        redis: redis_proxy,
    })
}

/// A cold JVM is several times slower than a warm one: one unmeasured KPUSH run first, through rkproxy (its
/// records are popped by the measured KPOP runs).
fn warm_up(options: &BenchOptions, proxies: &[TargetProxies]) -> Result<()> {
    let Some(rkproxy) = proxies
        .iter()
        .find(|proxies| proxies.target == BenchTarget::Rkproxy)
    else {
        return Ok(());
    };
    let started = Instant::now();
    let warm_up = BenchOptions {
        requests: (options.requests / 2).max(1),
        ..options.clone()
    };
    let args = ["KPUSH".to_string(), TOPIC.to_string(), kpush_value()];
    benchmark(&warm_up, rkproxy.kafka, &args)?;
    eprintln!(
        "kafka warm-up: {} KPUSHes ({:.1} s, not measured)",
        warm_up.requests,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The runs of one round: every target's SET and KPUSH, rotated so each goes first in turn (with rkproxy
/// alone, SET and KPUSH alternate), then rkproxy's KPOP runs over what the KPUSH runs produced.
fn round_order(round: usize, proxies: &[TargetProxies]) -> Vec<Run> {
    let mut order: Vec<Run> = proxies
        .iter()
        .flat_map(|proxies| [(proxies.target, Test::Set), (proxies.target, Test::Kpush)])
        .collect();
    if !order.is_empty() {
        let turn = round % order.len();
        order.rotate_left(turn);
    }
    order.push((BenchTarget::Rkproxy, Test::Kpop));
    order.push((BenchTarget::Rkproxy, Test::KpopAtLeastOnce));
    order
}

/// One measured run of `test` through `proxies`.
fn measure(options: &BenchOptions, proxies: &TargetProxies, test: Test) -> Result<Measurement> {
    match test {
        Test::Set => {
            let args = ["-t", "set", "-d", &VALUE_BYTES.to_string()].map(String::from);
            benchmark(options, proxies.redis, &args)
        }
        Test::Kpush => {
            let args = ["KPUSH".to_string(), TOPIC.to_string(), kpush_value()];
            benchmark(options, proxies.kafka, &args)
        }
        Test::Kpop => kpop_run(options, proxies.kafka, TOPIC),
        Test::KpopAtLeastOnce => {
            let args = ["KPUSH".to_string(), ALO_TOPIC.to_string(), kpush_value()];
            benchmark(options, proxies.kafka, &args)?;
            kpop_run(options, proxies.kafka, ALO_TOPIC)
        }
    }
}

/// One measured KPOP run on `topic`, with the checks that every request found a record (see the module
/// documentation).
fn kpop_run(options: &BenchOptions, addr: SocketAddr, topic: &str) -> Result<Measurement> {
    let before = consumed(addr, topic)?;
    let available = produced(addr, topic)?.saturating_sub(before);
    if available < options.requests {
        bail!(
            "only {available} records of {topic} are left for {} KPOP requests: the topic would run dry, so \
             the rate would count nil replies",
            options.requests
        );
    }
    let args = ["KPOP".to_string(), topic.to_string()];
    let measurement = benchmark(options, addr, &args)?;
    let leased = consumed(addr, topic)? - before;
    if leased + PREFETCH_RECORDS * u64::from(PARTITIONS) < options.requests {
        bail!(
            "the group's cursor on {topic} moved {leased} for {} KPOP requests: records were not delivered",
            options.requests
        );
    }
    Ok(measurement)
}

impl KafkaSection {
    /// Inserts the rows after the last row of `table` (the main table) and the note after its notes.
    pub(super) fn add_to_table(&self, table: &str) -> String {
        let mut lines: Vec<String> = table.lines().map(String::from).collect();
        match lines.iter().rposition(|line| line.starts_with('|')) {
            Some(last_row) => {
                for (index, row) in self.rows.iter().enumerate() {
                    lines.insert(last_row + 1 + index, row.clone());
                }
            }
            None => {
                while lines.last().is_some_and(String::is_empty) {
                    lines.pop();
                }
                lines.push(String::new());
                lines.push(TABLE_HEADER.to_string());
                lines.push(TABLE_RULE.to_string());
                lines.extend(self.rows.iter().cloned());
            }
        }
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        // The notes sit under the table, after a blank line.
        if lines.last().is_some_and(|line| line.starts_with('|')) {
            lines.push(String::new());
        }
        lines.push(format!("- kafka: {}", self.note));
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }
}

/// Medians of the rounds as table rows, with the KPUSH/SET ratio in each KPUSH row's goal cell and, in
/// rkproxy's rows, the ratio to the baseline's same row.
fn section(runs: &[(Run, Vec<Measurement>)]) -> KafkaSection {
    let measurements_of = |run: Run| -> Option<&[Measurement]> {
        let (_, measurements) = runs.iter().find(|(kind, _)| *kind == run)?;
        (!measurements.is_empty()).then_some(measurements.as_slice())
    };
    let medians = |run: Run| -> Option<(f64, f64, f64)> {
        let measurements = measurements_of(run)?;
        let mut rps: Vec<f64> = measurements.iter().map(|m| m.requests_per_second).collect();
        let mut p50: Vec<f64> = measurements.iter().map(|m| m.p50_ms).collect();
        let mut p99: Vec<f64> = measurements.iter().map(|m| m.p99_ms).collect();
        Some((median(&mut rps), median(&mut p50), median(&mut p99)))
    };
    let rps_of = |run: Run| medians(run).map(|(rps, _, _)| rps);
    let mut rows = Vec::new();
    for (target, test) in ROWS {
        let (Some((rps, p50, p99)), Some(measurements)) =
            (medians((target, test)), measurements_of((target, test)))
        else {
            continue;
        };
        let range = spread(measurements);
        let goal = goal_cell(target, test, rps, |test| rps_of((target, test)));
        let vs_baseline = match target {
            BenchTarget::Rkproxy => rps_of((BenchTarget::Baseline, test))
                .map(|baseline| format!("{:.2}", rps / baseline))
                .unwrap_or_default(),
            _ => String::new(),
        };
        rows.push(format!(
            "| kafka | {} | {} | 1 | {rps:.0} | {range} | {p50:.3} | {p99:.3} | - |  |  | {vs_baseline} |  | {goal} |",
            target.name(),
            test.label(),
        ));
    }
    let baseline_ran = rps_of((BenchTarget::Baseline, Test::Kpush)).is_some();
    KafkaSection {
        rows,
        note: section_note(baseline_ran),
    }
}

/// The goal cell of `target`'s `test` row, whose median is `rps`; `rps_of` gives the same target's other
/// medians. The baseline's KPUSH row shows its KPUSH/SET ratio without a verdict: the goal is rkproxy's.
fn goal_cell(
    target: BenchTarget,
    test: Test,
    rps: f64,
    rps_of: impl Fn(Test) -> Option<f64>,
) -> String {
    match (target, test) {
        (BenchTarget::Rkproxy, Test::Kpush) => rps_of(Test::Set)
            .map(|set| kpush_verdict(rps / set))
            .unwrap_or_default(),
        (_, Test::Kpush) => rps_of(Test::Set)
            .map(|set| format!("KPUSH/SET {:.2}", rps / set))
            .unwrap_or_default(),
        (_, Test::Kpop) => rps_of(Test::Kpush)
            .map(|kpush| kpop_verdict(rps / kpush))
            .unwrap_or_default(),
        (_, Test::KpopAtLeastOnce) => rps_of(Test::Kpop)
            .map(|at_most_once| format!("vs KPOP at most once {:.2}", rps / at_most_once))
            .unwrap_or_default(),
        (_, Test::Set) => String::new(),
    }
}

/// The note under the table: what the section ran.
fn section_note(baseline_ran: bool) -> String {
    let mut note = format!(
        "rkproxy with a Kafka pool (single-node Kafka 4 broker, topic of {PARTITIONS} partition, acks=all, \
         linger 0) against rkproxy with a Redis pool, same clients; KPOP pops what the KPUSH runs produced \
         (prefetch {PREFETCH_RECORDS} records, at most once, offsets in a Redis store); the at-least-once \
         KPOP pops a second topic filled by an unmeasured KPUSH run, each KPOP acknowledging the \
         connection's previous record (one more Redis round trip); goals KPUSH >= {KPUSH_GOAL} x SET, \
         KPOP >= {KPOP_GOAL} x KPUSH"
    );
    if baseline_ran {
        note.push_str(
            "; the baseline binary ran SET and KPUSH in the same rounds (same broker, topic and Redis; its \
             config without the at-least-once topic, no KPOP rows), and rkproxy's SET and KPUSH rows give \
             rkproxy/baseline",
        );
    }
    note
}

/// The goal cell of the KPUSH row.
fn kpush_verdict(ratio: f64) -> String {
    let verdict = if ratio >= KPUSH_GOAL { "met" } else { "MISSED" };
    format!("KPUSH/SET {ratio:.2} >= {KPUSH_GOAL:.2} {verdict}")
}

/// The goal cell of the KPOP row.
fn kpop_verdict(ratio: f64) -> String {
    let verdict = if ratio >= KPOP_GOAL { "met" } else { "MISSED" };
    format!("KPOP/KPUSH {ratio:.2} >= {KPOP_GOAL:.2} {verdict}")
}

/// A 100-byte value: filler and redis-benchmark's 12-digit `__rand_int__` (it replaces it thanks to `-r`).
fn kpush_value() -> String {
    const PLACEHOLDER: &str = "__rand_int__";
    format!(
        "{}{PLACEHOLDER}",
        "v".repeat(VALUE_BYTES - PLACEHOLDER.len())
    )
}

/// The rkproxy config of `target`'s Kafka proxy: one Kafka pool with its offsets in the Redis at `store`, the
/// bench topic and (for rkproxy) the at-least-once topic; everyone may use them.
///
/// The baseline gets only keys an older binary knows (its config rejects unknown keys): the at-least-once
/// topic needs `delivery`, which came with at least once, so the baseline's config leaves that topic out.
fn rkproxy_kafka_config(
    target: BenchTarget,
    listen: SocketAddr,
    broker: SocketAddr,
    store: SocketAddr,
) -> String {
    let mut config = format!(
        "# Generated by `cargo xtask bench` (kafka section, {}).\n\
         listen = \"{listen}\"\n\
         default_pool = \"events\"\n\
         log = \"warn\"\n\
         \n\
         [pools.events]\n\
         kind = \"kafka\"\n\
         nodes = [\"{broker}\"]\n\
         offsets = {{ redis = \"{store}\" }}\n\
         \n\
         [pools.events.topics.{TOPIC}]\n\
         partitions = {PARTITIONS}\n\
         producers = [\"*\"]\n\
         consumers = [\"*\"]\n",
        target.name()
    );
    if target == BenchTarget::Rkproxy {
        config.push_str(&format!(
            "\n\
             [pools.events.topics.{ALO_TOPIC}]\n\
             partitions = {PARTITIONS}\n\
             producers = [\"*\"]\n\
             consumers = [\"*\"]\n\
             delivery = \"at_least_once\"\n"
        ));
    }
    config
}

/// Waits until the Kafka pool has connected and created the topic (KPARTITIONS answers an array).
fn wait_pool_ready(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + POOL_READY_TIMEOUT;
    loop {
        let mut connection = Connection::connect(addr)?;
        match connection.command(&["KPARTITIONS", TOPIC])? {
            Reply::Array(Some(partitions)) if !partitions.is_empty() => return Ok(()),
            other if Instant::now() > deadline => {
                bail!("the Kafka pool did not get ready within {POOL_READY_TIMEOUT:?}: {other:?}")
            }
            _ => signals::sleep(Duration::from_millis(200))?,
        }
    }
}

/// One KPUSH and the KOFFSET that shows it, so a broken pool fails before any benchmark runs.
fn check_kafka_round_trip(addr: SocketAddr) -> Result<()> {
    let mut connection = Connection::connect(addr)?;
    let (partition, offset) = match connection.command(&["KPUSH", TOPIC, "check"])? {
        Reply::Array(Some(items)) => match items.as_slice() {
            [Reply::Integer(partition), Reply::Integer(offset)] => (*partition, *offset),
            _ => bail!("KPUSH through {addr} answered {items:?}"),
        },
        other => bail!("KPUSH through {addr} answered {other:?}"),
    };
    let partition_text = partition.to_string();
    match connection.command(&["KOFFSET", TOPIC, &partition_text, "-1"])? {
        Reply::Array(Some(items)) if items.first() == Some(&Reply::Integer(offset + 1)) => Ok(()),
        other => bail!("KOFFSET after a KPUSH at offset {offset} answered {other:?}"),
    }
}

/// How many records the group `default` has consumed from `topic`: the sum of its cursors.
fn consumed(addr: SocketAddr, topic: &str) -> Result<u64> {
    let mut connection = Connection::connect(addr)?;
    let lines = match connection.command(&["RKPROXY", "KOFFSETS", "default", topic])? {
        Reply::Array(Some(lines)) => lines,
        other => bail!("RKPROXY KOFFSETS answered {other:?}"),
    };
    let mut total = 0;
    for line in lines {
        let text = line.text().unwrap_or_default();
        let next_offset = text
            .split(' ')
            .find_map(|field| field.strip_prefix("next_offset="))
            .and_then(|value| value.parse::<u64>().ok());
        match next_offset {
            Some(next_offset) => total += next_offset,
            None => bail!("RKPROXY KOFFSETS line {text:?} has no next_offset"),
        }
    }
    Ok(total)
}

/// How many records `topic` holds: the sum of its partitions' latest offsets (KOFFSET ... -1).
fn produced(addr: SocketAddr, topic: &str) -> Result<u64> {
    let mut connection = Connection::connect(addr)?;
    let mut total = 0;
    for partition in 0..PARTITIONS {
        let partition = partition.to_string();
        match connection.command(&["KOFFSET", topic, &partition, "-1"])? {
            Reply::Array(Some(items)) => match items.first() {
                Some(Reply::Integer(offset)) => total += u64::try_from(*offset).unwrap_or(0),
                _ => bail!("KOFFSET answered {items:?}"),
            },
            other => bail!("KOFFSET answered {other:?}"),
        }
    }
    Ok(total)
}

/// Runs redis-benchmark once (unpipelined) and returns its measurement.
fn benchmark(options: &BenchOptions, addr: SocketAddr, args: &[String]) -> Result<Measurement> {
    let (stdout, command) = redis_benchmark(options, addr, options.requests, args)?;
    match parse_csv(&stdout).into_iter().next() {
        Some(measurement) => Ok(measurement),
        None => bail!("no results from `{command}`:\n{stdout}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(rps: f64) -> Measurement {
        Measurement {
            test: String::new(),
            requests_per_second: rps,
            p50_ms: 1.0,
            p99_ms: 2.0,
        }
    }

    #[test]
    fn kpush_values_are_100_bytes_after_substitution() {
        let value = kpush_value();
        assert_eq!(value.len(), VALUE_BYTES);
        // redis-benchmark replaces the placeholder with 12 digits, keeping the length.
        assert!(value.ends_with("__rand_int__"));
    }

    #[test]
    fn rows_carry_medians_and_the_ratio() {
        let runs = vec![
            (
                (BenchTarget::Rkproxy, Test::Set),
                vec![measurement(100.0), measurement(300.0), measurement(200.0)],
            ),
            (
                (BenchTarget::Rkproxy, Test::Kpush),
                vec![measurement(120.0)],
            ),
            ((BenchTarget::Rkproxy, Test::Kpop), vec![measurement(50.0)]),
            (
                (BenchTarget::Rkproxy, Test::KpopAtLeastOnce),
                vec![measurement(40.0)],
            ),
        ];
        let section = section(&runs);
        assert_eq!(section.rows.len(), 4);
        assert!(section.rows[0]
            .starts_with("| kafka | rkproxy | SET 100 B (Redis pool) | 1 | 200 | 100-300 |"));
        assert!(
            section.rows[1].ends_with("| KPUSH/SET 0.60 >= 0.50 met |"),
            "{}",
            section.rows[1]
        );
        assert_eq!(kpush_verdict(0.4), "KPUSH/SET 0.40 >= 0.50 MISSED");
        assert!(
            section.rows[2].ends_with("| KPOP/KPUSH 0.42 >= 0.70 MISSED |"),
            "{}",
            section.rows[2]
        );
        assert!(
            section.rows[3].contains("| KPOP (managed, at least once) | 1 | 40 |")
                && section.rows[3].ends_with("| vs KPOP at most once 0.80 |"),
            "{}",
            section.rows[3]
        );
        assert!(!section.note.contains("baseline"), "{}", section.note);
    }

    #[test]
    fn baseline_rows_follow_rkproxy_rows_and_give_the_ratio() {
        let runs = vec![
            ((BenchTarget::Rkproxy, Test::Set), vec![measurement(200.0)]),
            ((BenchTarget::Baseline, Test::Set), vec![measurement(250.0)]),
            (
                (BenchTarget::Rkproxy, Test::Kpush),
                vec![measurement(120.0)],
            ),
            (
                (BenchTarget::Baseline, Test::Kpush),
                vec![measurement(100.0)],
            ),
            ((BenchTarget::Rkproxy, Test::Kpop), vec![measurement(90.0)]),
        ];
        let section = section(&runs);
        assert_eq!(section.rows.len(), 5, "{:?}", section.rows);
        assert_eq!(
            section.rows[0],
            "| kafka | rkproxy | SET 100 B (Redis pool) | 1 | 200 | 200-200 | 1.000 | 2.000 | - |  |  | 0.80 |  |  |"
        );
        assert_eq!(
            section.rows[1],
            "| kafka | baseline | SET 100 B (Redis pool) | 1 | 250 | 250-250 | 1.000 | 2.000 | - |  |  |  |  |  |"
        );
        assert!(
            section.rows[2].starts_with("| kafka | rkproxy | KPUSH 100 B | 1 | 120 |")
                && section.rows[2].ends_with("| - |  |  | 1.20 |  | KPUSH/SET 0.60 >= 0.50 met |"),
            "{}",
            section.rows[2]
        );
        assert!(
            section.rows[3].starts_with("| kafka | baseline | KPUSH 100 B | 1 | 100 |")
                && section.rows[3].ends_with("| - |  |  |  |  | KPUSH/SET 0.40 |"),
            "{}",
            section.rows[3]
        );
        // The baseline runs no KPOP: rkproxy's KPOP row has no ratio to it.
        assert!(
            section.rows[4].ends_with("| - |  |  |  |  | KPOP/KPUSH 0.75 >= 0.70 met |"),
            "{}",
            section.rows[4]
        );
        assert!(
            section.note.contains("rkproxy/baseline"),
            "{}",
            section.note
        );
    }

    fn proxies(target: BenchTarget) -> TargetProxies {
        TargetProxies {
            target,
            kafka: ports::loopback(1),
            redis: ports::loopback(2),
        }
    }

    #[test]
    fn every_target_s_writes_go_first_in_turn_and_kpop_comes_last() {
        use BenchTarget::{Baseline, Rkproxy};
        let alone = [proxies(Rkproxy)];
        assert_eq!(
            round_order(0, &alone),
            [
                (Rkproxy, Test::Set),
                (Rkproxy, Test::Kpush),
                (Rkproxy, Test::Kpop),
                (Rkproxy, Test::KpopAtLeastOnce)
            ]
        );
        assert_eq!(
            round_order(1, &alone)[..2],
            [(Rkproxy, Test::Kpush), (Rkproxy, Test::Set)]
        );
        let both = [proxies(Rkproxy), proxies(Baseline)];
        let firsts: Vec<Run> = (0..4).map(|round| round_order(round, &both)[0]).collect();
        assert_eq!(
            firsts,
            [
                (Rkproxy, Test::Set),
                (Rkproxy, Test::Kpush),
                (Baseline, Test::Set),
                (Baseline, Test::Kpush)
            ]
        );
        let order = round_order(3, &both);
        assert_eq!(order.len(), 6);
        assert_eq!(
            order[4..],
            [(Rkproxy, Test::Kpop), (Rkproxy, Test::KpopAtLeastOnce)]
        );
    }

    #[test]
    fn rows_join_the_main_table_before_its_notes() {
        let section = KafkaSection {
            rows: vec!["| kafka | row |".to_string()],
            note: "about kafka".to_string(),
        };
        let table = "\ntitle\n\n| h |\n|---|\n| a |\n\n- a: note\n";
        assert_eq!(
            section.add_to_table(table),
            "\ntitle\n\n| h |\n|---|\n| a |\n| kafka | row |\n\n- a: note\n- kafka: about kafka\n"
        );
        let alone = section.add_to_table("\ntitle\n\n");
        assert!(
            alone.contains(&format!(
                "{TABLE_HEADER}\n{TABLE_RULE}\n| kafka | row |\n\n- kafka: about kafka\n"
            )),
            "{alone}"
        );
    }

    #[test]
    fn the_kafka_proxy_config_has_the_pool_and_topic() {
        let text = rkproxy_kafka_config(
            BenchTarget::Rkproxy,
            ports::loopback(7490),
            ports::loopback(9092),
            ports::loopback(6390),
        );
        assert!(text.contains("default_pool = \"events\"\n"));
        assert!(text.contains(
            "[pools.events]\nkind = \"kafka\"\nnodes = [\"127.0.0.1:9092\"]\n\
             offsets = { redis = \"127.0.0.1:6390\" }\n"
        ));
        assert!(text.contains(&format!(
            "[pools.events.topics.{ALO_TOPIC}]\npartitions = {PARTITIONS}\n"
        )));
        assert!(text.contains("delivery = \"at_least_once\"\n"));
        assert!(text.contains(&format!(
            "[pools.events.topics.{TOPIC}]\npartitions = {PARTITIONS}\n"
        )));
    }

    #[test]
    fn the_baseline_config_has_only_keys_an_older_binary_knows() {
        let text = rkproxy_kafka_config(
            BenchTarget::Baseline,
            ports::loopback(7491),
            ports::loopback(9092),
            ports::loopback(6390),
        );
        assert!(text.contains(&format!(
            "[pools.events.topics.{TOPIC}]\npartitions = {PARTITIONS}\n"
        )));
        assert!(!text.contains(ALO_TOPIC), "{text}");
        assert!(!text.contains("delivery"), "{text}");
        assert!(!text.contains("prefetch"), "{text}");
    }
}
