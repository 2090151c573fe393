//! `cargo xtask bench`: redis-benchmark against direct Redis, rkproxy and twemproxy, side by side.
//!
//! All targets run in one invocation on this machine, in front of the same redis-server, so their
//! numbers are comparable with each other (and with nothing else: on a 2-core machine the
//! benchmark client, the proxy and Redis compete for CPU). Each round runs every scenario against
//! every target, rotating the target order per round so no target always goes first; the table
//! shows the median of the rounds.
//!
//! The code is organised as sections (a set of endpoints plus the scenarios to run against them)
//! so later sections, such as cluster routing or Kafka, add one `Section` each.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::flags::{BenchOptions, BenchTarget};
use crate::redis::{self, RedisKind, RedisSpec};
use crate::resp::{Connection, Reply};
use crate::shell::{self, ChildGuard};
use crate::{bail, demo, ports, project, signals, Result};

/// Pipelined runs send this many times more requests than `--requests`, so that both kinds of
/// run last a similar few seconds.
const PIPELINED_REQUEST_FACTOR: u64 = 8;
/// The key space for redis-benchmark's `-r`, so requests touch many keys rather than one.
const KEY_SPACE: u32 = 100_000;

/// One process the benchmark sends load to.
#[derive(Debug, Clone)]
struct Endpoint {
    target: BenchTarget,
    addr: SocketAddr,
    /// Extra redis-benchmark arguments for this endpoint (for example `--cluster`).
    extra_args: Vec<String>,
}

/// What redis-benchmark runs: built-in tests (`-t get,set`) or one custom command.
#[derive(Debug, Clone)]
enum Workload {
    Tests(&'static str),
    #[allow(
        dead_code,
        reason = "used by the cluster MGET section that issue 3 adds"
    )]
    Custom {
        label: String,
        args: Vec<String>,
    },
}

/// One redis-benchmark configuration, run against every endpoint of its section.
#[derive(Debug, Clone)]
struct Scenario {
    workload: Workload,
    pipeline: u32,
    requests: u64,
}

/// Endpoints plus the scenarios to run against them.
#[derive(Debug, Clone)]
struct Section {
    name: &'static str,
    endpoints: Vec<Endpoint>,
    scenarios: Vec<Scenario>,
}

/// One measured result line from redis-benchmark's CSV output.
#[derive(Debug, Clone, PartialEq)]
struct Measurement {
    test: String,
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The key of one table row: section, test, pipeline, target.
type RowKey = (&'static str, String, u32, BenchTarget);

/// Runs the command.
pub fn run(options: &BenchOptions) -> Result<ExitCode> {
    let mut tools = shell::REDIS_TOOLS.to_vec();
    tools.extend_from_slice(shell::BENCH_TOOLS);
    shell::ensure_tools(&tools)?;
    let wants = |target| options.targets.contains(&target);
    if wants(BenchTarget::Rkproxy) && !options.no_build {
        demo::build_release_rkproxy()?;
    }

    let dir = project::servers_dir().join(format!("bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut guard = ChildGuard::default();
    let outcome = run_with_servers(options, &dir, &mut guard);
    guard.stop_all();
    match &outcome {
        Ok(_) => {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Err(_) => eprintln!(
            "bench servers stopped; their logs are in {}",
            project::display(&dir)
        ),
    }
    outcome
}

fn run_with_servers(
    options: &BenchOptions,
    dir: &Path,
    guard: &mut ChildGuard,
) -> Result<ExitCode> {
    let redis_spec = RedisSpec {
        name: "redis".into(),
        port: ports::free_port()?,
        dir: dir.join("redis"),
        kind: RedisKind::Standalone,
        daemonize: false,
    };
    guard.push("redis", redis::spawn_child(&redis_spec)?);
    let redis_addr = redis_spec.addr();

    let mut endpoints = Vec::new();
    for target in &options.targets {
        let addr = match target {
            BenchTarget::Direct => redis_addr,
            BenchTarget::Rkproxy => start_rkproxy(redis_addr, dir, guard)?,
            BenchTarget::Twemproxy => start_twemproxy(redis_addr, dir, guard)?,
        };
        check_round_trip(*target, addr)?;
        endpoints.push(Endpoint {
            target: *target,
            addr,
            extra_args: Vec::new(),
        });
    }
    for endpoint in &endpoints {
        eprintln!("{:<10} {}", endpoint.target.name(), endpoint.addr);
    }

    let sections = vec![standalone_section(options, endpoints)];
    let results = run_rounds(options, &sections)?;
    println!("{}", render_table(options, &sections, &results));
    Ok(ExitCode::SUCCESS)
}

/// GET and SET without and with pipelining, through every target to one redis-server.
fn standalone_section(options: &BenchOptions, endpoints: Vec<Endpoint>) -> Section {
    Section {
        name: "standalone",
        endpoints,
        scenarios: vec![
            Scenario {
                workload: Workload::Tests("get,set"),
                pipeline: 1,
                requests: options.requests,
            },
            Scenario {
                workload: Workload::Tests("get,set"),
                pipeline: 16,
                requests: options.requests * PIPELINED_REQUEST_FACTOR,
            },
        ],
    }
}

fn run_rounds(
    options: &BenchOptions,
    sections: &[Section],
) -> Result<BTreeMap<RowKey, Vec<Measurement>>> {
    let mut results: BTreeMap<RowKey, Vec<Measurement>> = BTreeMap::new();
    for round in 0..options.rounds {
        for section in sections {
            for scenario in &section.scenarios {
                // Rotate the order so that no target always runs first (warm caches, thermal state).
                let mut order = section.endpoints.clone();
                let shift = round % order.len().max(1);
                order.rotate_left(shift);
                for endpoint in &order {
                    let started = Instant::now();
                    let measurements = run_benchmark(options, endpoint, scenario)?;
                    for measurement in measurements {
                        eprintln!(
                            "round {}/{} {} {:<10} {:<5} P{:<3} {:>12.0} req/s  p50 {:.3} ms  ({:.1} s)",
                            round + 1,
                            options.rounds,
                            section.name,
                            endpoint.target.name(),
                            measurement.test,
                            scenario.pipeline,
                            measurement.requests_per_second,
                            measurement.p50_ms,
                            started.elapsed().as_secs_f64(),
                        );
                        let key = (
                            section.name,
                            measurement.test.clone(),
                            scenario.pipeline,
                            endpoint.target,
                        );
                        results.entry(key).or_default().push(measurement);
                    }
                }
            }
        }
    }
    Ok(results)
}

fn run_benchmark(
    options: &BenchOptions,
    endpoint: &Endpoint,
    scenario: &Scenario,
) -> Result<Vec<Measurement>> {
    if signals::requested() {
        bail!("interrupted");
    }
    let mut command = Command::new(shell::require("redis-benchmark")?);
    command
        .args([
            "-h",
            &endpoint.addr.ip().to_string(),
            "-p",
            &endpoint.addr.port().to_string(),
        ])
        .args(["-c", &options.clients.to_string()])
        .args(["-n", &scenario.requests.to_string()])
        .args(["-P", &scenario.pipeline.to_string()])
        .args(["-r", &KEY_SPACE.to_string()])
        .arg("--csv")
        .args(&endpoint.extra_args);
    match &scenario.workload {
        Workload::Tests(tests) => {
            command.args(["-t", tests]);
        }
        Workload::Custom { args, .. } => {
            command.args(args);
        }
    }
    let output = command.stdin(Stdio::null()).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "`{}` failed ({}):\n{}{}",
            shell::format_command(&command),
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut measurements = parse_csv(&stdout);
    if let Workload::Custom { label, .. } = &scenario.workload {
        for measurement in &mut measurements {
            measurement.test = label.clone();
        }
    }
    if measurements.is_empty() {
        bail!(
            "no results from `{}`:\n{stdout}",
            shell::format_command(&command)
        );
    }
    Ok(measurements)
}

/// Parses redis-benchmark's `--csv` output:
/// `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"`.
fn parse_csv(text: &str) -> Vec<Measurement> {
    let mut measurements = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    for line in text.lines() {
        let fields: Vec<String> = line
            .split("\",\"")
            .map(|field| field.trim_matches('"').to_string())
            .collect();
        if fields.first().is_some_and(|first| first == "test") {
            columns = fields;
            continue;
        }
        let column = |name: &str| -> Option<f64> {
            let index = columns.iter().position(|column| column == name)?;
            fields.get(index)?.parse().ok()
        };
        if let (Some(test), Some(rps)) = (fields.first(), column("rps")) {
            measurements.push(Measurement {
                test: test.clone(),
                requests_per_second: rps,
                p50_ms: column("p50_latency_ms").unwrap_or(f64::NAN),
                p99_ms: column("p99_latency_ms").unwrap_or(f64::NAN),
            });
        }
    }
    measurements
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The markdown table: one row per section, test, pipeline and target, with the median of the
/// rounds and the ratios to direct Redis and (for rkproxy) to twemproxy.
fn render_table(
    options: &BenchOptions,
    sections: &[Section],
    results: &BTreeMap<RowKey, Vec<Measurement>>,
) -> String {
    let mut out = format!(
        "\nredis-benchmark -c {} -r {KEY_SPACE}, {} requests at pipeline 1 and {} when pipelined; \
         median of {} rounds\n\n",
        options.clients,
        options.requests,
        options.requests * PIPELINED_REQUEST_FACTOR,
        options.rounds,
    );
    out.push_str("| section | target | test | pipeline | requests/s | p50 ms | p99 ms | vs direct | rkproxy vs twemproxy |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|\n");
    let medians = |key: &RowKey| -> Option<(f64, f64, f64)> {
        let runs = results.get(key)?;
        let mut rps: Vec<f64> = runs.iter().map(|run| run.requests_per_second).collect();
        let mut p50: Vec<f64> = runs.iter().map(|run| run.p50_ms).collect();
        let mut p99: Vec<f64> = runs.iter().map(|run| run.p99_ms).collect();
        Some((median(&mut rps), median(&mut p50), median(&mut p99)))
    };
    for section in sections {
        // Tests in the order redis-benchmark reported them, per pipeline.
        let mut tests: Vec<(String, u32)> = Vec::new();
        for (name, test, pipeline, _) in results.keys() {
            if *name == section.name && !tests.contains(&(test.clone(), *pipeline)) {
                tests.push((test.clone(), *pipeline));
            }
        }
        tests.sort_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
        for (test, pipeline) in tests {
            let row = |target| (section.name, test.clone(), pipeline, target);
            let direct = medians(&row(BenchTarget::Direct)).map(|(rps, _, _)| rps);
            let twemproxy = medians(&row(BenchTarget::Twemproxy)).map(|(rps, _, _)| rps);
            for endpoint in &section.endpoints {
                let Some((rps, p50, p99)) = medians(&row(endpoint.target)) else {
                    continue;
                };
                let ratio = |base: Option<f64>| {
                    base.map_or_else(|| "-".to_string(), |base| format!("{:.2}", rps / base))
                };
                let vs_twemproxy = if endpoint.target == BenchTarget::Rkproxy {
                    ratio(twemproxy)
                } else {
                    String::new()
                };
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {:.0} | {:.3} | {:.3} | {} | {} |\n",
                    section.name,
                    endpoint.target.name(),
                    test,
                    pipeline,
                    rps,
                    p50,
                    p99,
                    ratio(direct),
                    vs_twemproxy,
                ));
            }
        }
    }
    out
}

/// Starts rkproxy in front of `backend`, logging to a file, and waits until it accepts.
fn start_rkproxy(backend: SocketAddr, dir: &Path, guard: &mut ChildGuard) -> Result<SocketAddr> {
    let binary = project::release_rkproxy();
    if !binary.exists() {
        bail!(
            "{} does not exist; build it or leave rkproxy out with --targets",
            binary.display()
        );
    }
    let addr = ports::loopback(ports::free_port()?);
    let log_path = dir.join("rkproxy.log");
    let log = std::fs::File::create(&log_path)?;
    let mut command = Command::new(binary);
    command
        .args([
            "--listen",
            &addr.to_string(),
            "--backend",
            &format!("redis://{backend}"),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    eprintln!("$ {}", shell::format_command(&command));
    guard.push("rkproxy", command.spawn()?);
    wait_accepting(guard, "rkproxy", addr, &log_path)?;
    Ok(addr)
}

/// Starts twemproxy (nutcracker) in front of `backend` and waits until it accepts.
fn start_twemproxy(backend: SocketAddr, dir: &Path, guard: &mut ChildGuard) -> Result<SocketAddr> {
    let mut reserver = ports::PortReserver::default();
    let addr = ports::loopback(reserver.reserve()?);
    let stats_port = reserver.reserve()?;
    drop(reserver);
    let config_path = dir.join("nutcracker.yml");
    std::fs::write(&config_path, twemproxy_config(addr, backend))?;
    let log_path = dir.join("nutcracker.log");
    let mut command = Command::new(shell::require("nutcracker")?);
    command
        .arg("-c")
        .arg(&config_path)
        .arg("-o")
        .arg(&log_path)
        // The stats server listens on 0.0.0.0:22222 unless told otherwise; keep it on loopback and
        // on a free port so parallel runs do not collide.
        .args(["-a", "127.0.0.1", "-s", &stats_port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    eprintln!("$ {}", shell::format_command(&command));
    guard.push("twemproxy", command.spawn()?);
    wait_accepting(guard, "twemproxy", addr, &log_path)?;
    Ok(addr)
}

/// The nutcracker YAML: one pool, one server, no ejection.
fn twemproxy_config(listen: SocketAddr, backend: SocketAddr) -> String {
    format!(
        "rkbench:\n  \
           listen: {listen}\n  \
           hash: fnv1a_64\n  \
           distribution: ketama\n  \
           redis: true\n  \
           auto_eject_hosts: false\n  \
           server_connections: 1\n  \
           servers:\n    \
             - {backend}:1\n"
    )
}

fn wait_accepting(guard: &mut ChildGuard, name: &str, addr: SocketAddr, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(child) = guard.child_mut(name) {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{name} exited during startup ({status}); log:\n{}",
                    shell::tail(log, 20)
                );
            }
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{name} did not listen on {addr} within 20 s; log:\n{}",
                shell::tail(log, 20)
            );
        }
        signals::sleep(Duration::from_millis(30))?;
    }
}

/// Checks that SET then GET through the target works, so a broken proxy fails loudly instead of
/// producing a fast table of error replies.
fn check_round_trip(target: BenchTarget, addr: SocketAddr) -> Result<()> {
    let mut connection = Connection::connect(addr)?;
    let key = format!("xtask:bench:check:{}", target.name());
    match connection.command(&["SET", &key, "ok"])? {
        Reply::Status(status) if status == "OK" => {}
        other => bail!("{}: SET through {addr} answered {other:?}", target.name()),
    }
    match connection.command(&["GET", &key])? {
        Reply::Bulk(Some(value)) if value == b"ok" => Ok(()),
        other => bail!("{}: GET through {addr} answered {other:?}", target.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_csv() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                    \"SET\",\"86206.90\",\"0.317\",\"0.096\",\"0.295\",\"0.471\",\"0.679\",\"1.543\"\n\
                    \"GET\",\"90909.09\",\"0.301\",\"0.088\",\"0.287\",\"0.455\",\"0.600\",\"1.100\"\n";
        let measurements = parse_csv(text);
        assert_eq!(measurements.len(), 2);
        assert_eq!(measurements[0].test, "SET");
        assert!((measurements[0].requests_per_second - 86206.90).abs() < 1e-6);
        assert!((measurements[1].p50_ms - 0.287).abs() < 1e-9);
        assert!((measurements[1].p99_ms - 0.600).abs() < 1e-9);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn twemproxy_config_names_one_server_without_ejection() {
        let text = twemproxy_config(ports::loopback(22121), ports::loopback(6390));
        assert!(text.contains("  listen: 127.0.0.1:22121\n"));
        assert!(text.contains("  redis: true\n"));
        assert!(text.contains("  auto_eject_hosts: false\n"));
        assert!(text.contains("    - 127.0.0.1:6390:1\n"));
    }
}
