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
//! An unmeasured KPUSH run warms the broker's JVM first. SET and KPUSH alternate which goes first. The rows
//! join the main table; the goal cell of KPUSH holds the KPUSH/SET ratio against the project's goal
//! ([`KPUSH_GOAL`]).

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

    let kafka_proxy = ports::loopback(ports::free_port()?);
    let config_path = dir.join("rkproxy-kafka.toml");
    std::fs::write(
        &config_path,
        rkproxy_kafka_config(kafka_proxy, broker.addr(), redis_spec.addr()),
    )?;
    let args = ["--config".to_string(), config_path.display().to_string()];
    start_rkproxy(
        options,
        BenchTarget::Rkproxy,
        "rkproxy-kafka",
        kafka_proxy,
        &args,
        dir,
        guard,
    )?;
    wait_pool_ready(kafka_proxy)?;
    check_kafka_round_trip(kafka_proxy)?;

    let redis_proxy = ports::loopback(ports::free_port()?);
    let args = [
        "--listen".to_string(),
        redis_proxy.to_string(),
        "--backend".to_string(),
        format!("redis://{}", redis_spec.addr()),
    ];
    start_rkproxy(
        options,
        BenchTarget::Rkproxy,
        "rkproxy-redis-kafka-section",
        redis_proxy,
        &args,
        dir,
        guard,
    )?;
    check_round_trip(BenchTarget::Rkproxy, redis_proxy)?;
    eprintln!("kafka      rkproxy    {kafka_proxy} (Kafka pool, topic {TOPIC})");
    eprintln!("kafka      rkproxy    {redis_proxy} (Redis pool)");

    // A cold JVM is several times slower than a warm one: one unmeasured KPUSH run first (its records are
    // popped by the measured KPOP runs).
    let started = Instant::now();
    let warm_up = BenchOptions {
        requests: (options.requests / 2).max(1),
        ..options.clone()
    };
    let args = ["KPUSH".to_string(), TOPIC.to_string(), kpush_value()];
    benchmark(&warm_up, kafka_proxy, &args)?;
    eprintln!(
        "kafka warm-up: {} KPUSHes ({:.1} s, not measured)",
        warm_up.requests,
        started.elapsed().as_secs_f64()
    );

    let mut runs: Vec<(Test, Vec<Measurement>)> = vec![
        (Test::Set, Vec::new()),
        (Test::Kpush, Vec::new()),
        (Test::Kpop, Vec::new()),
        (Test::KpopAtLeastOnce, Vec::new()),
    ];
    for round in 0..options.rounds {
        // SET and KPUSH take turns going first; KPOP runs last, over what the KPUSH runs produced.
        let order = if round % 2 == 0 {
            [Test::Set, Test::Kpush, Test::Kpop, Test::KpopAtLeastOnce]
        } else {
            [Test::Kpush, Test::Set, Test::Kpop, Test::KpopAtLeastOnce]
        };
        for test in order {
            let started = Instant::now();
            let measurement = match test {
                Test::Set => {
                    let args = ["-t", "set", "-d", &VALUE_BYTES.to_string()].map(String::from);
                    benchmark(options, redis_proxy, &args)?
                }
                Test::Kpush => {
                    let args = ["KPUSH".to_string(), TOPIC.to_string(), kpush_value()];
                    benchmark(options, kafka_proxy, &args)?
                }
                Test::Kpop => kpop_run(options, kafka_proxy, TOPIC)?,
                Test::KpopAtLeastOnce => {
                    let args = ["KPUSH".to_string(), ALO_TOPIC.to_string(), kpush_value()];
                    benchmark(options, kafka_proxy, &args)?;
                    kpop_run(options, kafka_proxy, ALO_TOPIC)?
                }
            };
            eprintln!(
                "round {}/{} kafka {:<10} {:<28} {:>12.0} req/s  p50 {:.3} ms  ({:.1} s)",
                round + 1,
                options.rounds,
                BenchTarget::Rkproxy.name(),
                test.label(),
                measurement.requests_per_second,
                measurement.p50_ms,
                started.elapsed().as_secs_f64(),
            );
            if let Some((_, measurements)) = runs.iter_mut().find(|(kind, _)| *kind == test) {
                measurements.push(measurement);
            }
        }
    }
    Ok(section(&runs))
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

/// Medians of the rounds as table rows, with the KPUSH/SET ratio in the KPUSH row's goal cell.
fn section(runs: &[(Test, Vec<Measurement>)]) -> KafkaSection {
    let measurements_of = |test: Test| -> Option<&[Measurement]> {
        let (_, measurements) = runs.iter().find(|(kind, _)| *kind == test)?;
        (!measurements.is_empty()).then_some(measurements.as_slice())
    };
    let medians = |test: Test| -> Option<(f64, f64, f64)> {
        let measurements = measurements_of(test)?;
        let mut rps: Vec<f64> = measurements.iter().map(|m| m.requests_per_second).collect();
        let mut p50: Vec<f64> = measurements.iter().map(|m| m.p50_ms).collect();
        let mut p99: Vec<f64> = measurements.iter().map(|m| m.p99_ms).collect();
        Some((median(&mut rps), median(&mut p50), median(&mut p99)))
    };
    let set_rps = medians(Test::Set).map(|(rps, _, _)| rps);
    let kpush_rps = medians(Test::Kpush).map(|(rps, _, _)| rps);
    let kpop_rps = medians(Test::Kpop).map(|(rps, _, _)| rps);
    let mut rows = Vec::new();
    for test in [Test::Set, Test::Kpush, Test::Kpop, Test::KpopAtLeastOnce] {
        let (Some((rps, p50, p99)), Some(measurements)) = (medians(test), measurements_of(test))
        else {
            continue;
        };
        let range = spread(measurements);
        let goal = match (test, set_rps, kpush_rps) {
            (Test::Kpush, Some(set), _) => kpush_verdict(rps / set),
            (Test::Kpop, _, Some(kpush)) => kpop_verdict(rps / kpush),
            (Test::KpopAtLeastOnce, _, _) => kpop_rps
                .map(|at_most_once| format!("vs KPOP at most once {:.2}", rps / at_most_once))
                .unwrap_or_default(),
            _ => String::new(),
        };
        rows.push(format!(
            "| kafka | {} | {} | 1 | {rps:.0} | {range} | {p50:.3} | {p99:.3} | - |  |  |  | {goal} |",
            BenchTarget::Rkproxy.name(),
            test.label(),
        ));
    }
    KafkaSection {
        rows,
        note: format!(
            "rkproxy with a Kafka pool (single-node Kafka 4 broker, topic of {PARTITIONS} partition, acks=all, \
             linger 0) against rkproxy with a Redis pool, same clients; KPOP pops what the KPUSH runs produced \
             (prefetch {PREFETCH_RECORDS} records, at most once, offsets in a Redis store); the at-least-once \
             KPOP pops a second topic filled by an unmeasured KPUSH run, each KPOP acknowledging the \
             connection's previous record (one more Redis round trip); goals KPUSH >= {KPUSH_GOAL} x SET, \
             KPOP >= {KPOP_GOAL} x KPUSH"
        ),
    }
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

/// The rkproxy config of the Kafka proxy: one Kafka pool with its offsets in the Redis at `store`, the bench
/// topic and the at-least-once topic; everyone may use them.
fn rkproxy_kafka_config(listen: SocketAddr, broker: SocketAddr, store: SocketAddr) -> String {
    format!(
        "# Generated by `cargo xtask bench` (kafka section).\n\
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
         consumers = [\"*\"]\n\
         \n\
         [pools.events.topics.{ALO_TOPIC}]\n\
         partitions = {PARTITIONS}\n\
         producers = [\"*\"]\n\
         consumers = [\"*\"]\n\
         delivery = \"at_least_once\"\n"
    )
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
                Test::Set,
                vec![measurement(100.0), measurement(300.0), measurement(200.0)],
            ),
            (Test::Kpush, vec![measurement(120.0)]),
            (Test::Kpop, vec![measurement(50.0)]),
            (Test::KpopAtLeastOnce, vec![measurement(40.0)]),
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
}
