//! Configurations of rkproxy compared side by side, for the `tenants` and `stats` sections of `cargo xtask
//! bench`.
//!
//! Each configuration is a process of its own in front of the same redis-server. Each round runs GET and SET
//! (one redis-benchmark run each) at pipeline 1 and 16 through every configuration, in an order rotated per
//! round. The table shows per test, pipeline and configuration the median throughput, its ratio to the first
//! configuration's, and the median CPU time the proxy spent per request: all of its threads, read from
//! `/proc/<pid>/task/*/schedstat` (nanoseconds on a CPU) before and after the run. The CPU time is the
//! steadier measure on a small shared machine: another process's load lowers a run's throughput but hardly
//! changes what each request costs the proxy.
//!
//! The machine's speed drifts between rounds by more than the few percent these sections look for, so the
//! table also pairs each run with the first configuration's run of the same test in the same round (run
//! moments apart) and shows the median of those paired throughput ratios with a 95% confidence interval for
//! that median (distribution-free: order statistics of the ratios, at least six rounds). Many short rounds
//! (`--rounds 100 --requests 50000`) narrow it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use std::path::Path;

use super::{
    median, paired_median, parse_csv, redis_benchmark, Measurement, PIPELINED_REQUEST_FACTOR,
};
use crate::flags::{BenchOptions, BenchTarget};
use crate::redis::{self, RedisKind, RedisSpec};
use crate::shell::ChildGuard;
use crate::{bail, ports, Result};

/// Starts the section's own redis-server (`name`, data under `dir/name`) and waits until it answers.
pub(super) fn start_redis(name: &str, dir: &Path, guard: &mut ChildGuard) -> Result<SocketAddr> {
    let spec = RedisSpec {
        name: name.into(),
        port: ports::free_port()?,
        dir: dir.join(name),
        kind: RedisKind::Standalone,
        daemonize: false,
    };
    guard.push(name, redis::spawn_child(&spec)?);
    let addr = spec.addr();
    super::wait_round_trip(BenchTarget::Direct, addr)?;
    Ok(addr)
}

/// One configuration's running proxy.
pub(super) struct Configured {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub pid: u32,
}

/// What a section compares: its name (in progress lines), redis-benchmark's extra arguments (such as a
/// tenant's `--user` and `-a`), and the table's first line.
pub(super) struct Comparison<'a> {
    pub section: &'a str,
    pub extra_args: &'a [&'a str],
    pub heading: String,
}

/// A run's throughput and the proxy's CPU time per request in it.
struct Run {
    measurement: Measurement,
    cpu_ns_per_request: f64,
}

/// Runs the rounds and returns the table (the first of `proxies` is the basis of the ratios).
pub(super) fn compare(
    options: &BenchOptions,
    comparison: &Comparison<'_>,
    proxies: &[Configured],
) -> Result<String> {
    let mut results: BTreeMap<(String, u32, usize), Vec<Run>> = BTreeMap::new();
    for round in 0..options.rounds {
        for pipeline in [1, 16] {
            let mut order: Vec<(usize, &Configured)> = proxies.iter().enumerate().collect();
            let shift = round % proxies.len().max(1);
            order.rotate_left(shift);
            for (index, proxy) in order {
                for test in ["set", "get"] {
                    let run = benchmark(options, comparison, proxy, pipeline, test)?;
                    eprintln!(
                        "round {}/{} {} {:<13} {:<5} P{:<3} {:>12.0} req/s {:>8.0} ns CPU/request",
                        round + 1,
                        options.rounds,
                        comparison.section,
                        proxy.name,
                        run.measurement.test,
                        pipeline,
                        run.measurement.requests_per_second,
                        run.cpu_ns_per_request,
                    );
                    let key = (run.measurement.test.clone(), pipeline, index);
                    results.entry(key).or_default().push(run);
                }
            }
        }
    }
    Ok(render(comparison, proxies, &results))
}

/// One redis-benchmark run of `test` through `proxy`, with the proxy's CPU time over it.
fn benchmark(
    options: &BenchOptions,
    comparison: &Comparison<'_>,
    proxy: &Configured,
    pipeline: u32,
    test: &str,
) -> Result<Run> {
    let requests = if pipeline > 1 {
        options.requests * PIPELINED_REQUEST_FACTOR
    } else {
        options.requests
    };
    let mut args: Vec<String> = comparison
        .extra_args
        .iter()
        .map(|a| a.to_string())
        .collect();
    args.extend([
        "-P".to_string(),
        pipeline.to_string(),
        "-t".to_string(),
        test.to_string(),
    ]);
    let cpu_before = cpu_ns(proxy.pid)?;
    let (stdout, command) = redis_benchmark(options, proxy.addr, requests, &args)?;
    let cpu_after = cpu_ns(proxy.pid)?;
    let Some(measurement) = parse_csv(&stdout).into_iter().next() else {
        bail!("no results from `{command}`:\n{stdout}");
    };
    Ok(Run {
        measurement,
        cpu_ns_per_request: cpu_after.saturating_sub(cpu_before) as f64 / requests as f64,
    })
}

/// Nanoseconds all threads of process `pid` have spent on a CPU (the first field of each thread's
/// `schedstat`).
fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread may end between the listing and the read: it no longer counts.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|field| field.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// The table: one row per test, pipeline and configuration.
fn render(
    comparison: &Comparison<'_>,
    proxies: &[Configured],
    results: &BTreeMap<(String, u32, usize), Vec<Run>>,
) -> String {
    let first = proxies.first().map_or("-", |proxy| proxy.name);
    let mut out = format!(
        "{}\n| test | P | configuration | req/s | vs {first} | paired vs {first} (95% CI) | proxy CPU ns/request | vs {first} | p50 ms |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        comparison.heading
    );
    let rps = |runs: &[Run]| {
        median(
            &mut runs
                .iter()
                .map(|r| r.measurement.requests_per_second)
                .collect::<Vec<_>>(),
        )
    };
    let cpu = |runs: &[Run]| {
        median(
            &mut runs
                .iter()
                .map(|r| r.cpu_ns_per_request)
                .collect::<Vec<_>>(),
        )
    };
    let ratio = |value: f64, basis: Option<f64>| {
        basis.map_or_else(|| "-".to_string(), |basis| format!("{:.3}", value / basis))
    };
    for ((test, pipeline, index), runs) in results {
        let basis = results.get(&(test.clone(), *pipeline, 0));
        let (requests_per_second, cpu_per_request) = (rps(runs), cpu(runs));
        let p50 = median(
            &mut runs
                .iter()
                .map(|r| r.measurement.p50_ms)
                .collect::<Vec<_>>(),
        );
        let paired = match basis {
            Some(basis) if *index > 0 => paired_ratio(runs, basis),
            _ => "-".to_string(),
        };
        out.push_str(&format!(
            "| {test} | {pipeline} | {} | {requests_per_second:.0} | {} | {paired} | {cpu_per_request:.0} | {} | {p50:.3} |\n",
            proxies.get(*index).map_or("-", |proxy| proxy.name),
            ratio(requests_per_second, basis.map(|runs| rps(runs))),
            ratio(cpu_per_request, basis.map(|runs| cpu(runs))),
        ));
    }
    out
}

/// The median of the per-round throughput ratios of `runs` to `basis` (the same test and pipeline, the first
/// configuration, one run of each per round, in round order), with its 95% confidence interval when there
/// are enough rounds for one (see [`paired_median`]).
fn paired_ratio(runs: &[Run], basis: &[Run]) -> String {
    paired_median(
        runs.iter()
            .zip(basis)
            .map(|(run, basis)| {
                run.measurement.requests_per_second / basis.measurement.requests_per_second
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_ratios_pair_runs_of_the_same_round() {
        let run = |rps: f64| Run {
            measurement: Measurement {
                test: "GET".into(),
                requests_per_second: rps,
                p50_ms: 0.1,
                p99_ms: 0.2,
            },
            cpu_ns_per_request: 1.0,
        };
        // Each round's two runs differ by 2% while the rounds differ by far more.
        let basis: Vec<Run> = [100.0, 300.0, 200.0, 50.0, 400.0, 250.0].map(run).into();
        let runs: Vec<Run> = [102.0, 306.0, 204.0, 51.0, 408.0, 255.0].map(run).into();
        assert_eq!(paired_ratio(&runs, &basis), "1.020 (1.020-1.020)");
        assert_eq!(paired_ratio(&runs[..2], &basis[..2]), "1.020");
    }
}
