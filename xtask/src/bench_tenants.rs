//! The `tenants` section of `cargo xtask bench`: what a tenant's settings cost in throughput (issue 12).
//!
//! rkproxy only, in front of one redis-server of the section's own, with one prefixed tenant `t` that
//! redis-benchmark authenticates as (`--user t -a t-pw`), in four configurations, each a process of its own:
//! - `prefix`: the key prefix alone, the basis of the ratios;
//! - `limits`: with `ops_per_sec` and `bytes_per_sec` far above what the machine reaches (the local limiter's
//!   cost: every request is admitted);
//! - `limits_store`: the same limits shared through the pool's Redis (`limits_store = { pool = "main" }`: batches
//!   of tokens from a Lua token bucket, taken by a background task);
//! - `backend_user`: the tenant's connections log in as a Redis ACL user of its own (`backend_user`), on a
//!   pool it shares with a second tenant.
//!
//! GET and SET at pipeline 1 and 16, like the `standalone` section; each round runs every configuration in
//! a rotated order, and the table shows the median of the rounds and the ratio to `prefix`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use super::{
    median, parse_csv, redis_benchmark, start_rkproxy, Measurement, PIPELINED_REQUEST_FACTOR,
};
use crate::flags::{BenchOptions, BenchTarget};
use crate::redis::{self, RedisKind, RedisSpec};
use crate::resp::{Connection, Reply};
use crate::shell::ChildGuard;
use crate::{bail, ports, Result};

/// The configurations, in table order; the first is the basis of the ratios.
const CONFIGS: [&str; 4] = ["prefix", "limits", "limits_store", "backend_user"];
/// The ACL user of the `backend_user` configuration and its rules (README, Tenants).
const ACL_USER: &str = "bench-t";
const ACL_RULES: &[&str] = &[
    "reset",
    "on",
    ">bench-t-secret",
    "resetkeys",
    "~t:*",
    "resetchannels",
    "&t:*",
    "nocommands",
    "+@all",
    "-@dangerous",
    "+keys",
    "+sort",
    "+sort_ro",
    "-select",
    "-function",
    "-move",
    "-copy",
    "-randomkey",
    "-dbsize",
];

/// Runs the section and returns its table (printed after the main one).
pub(super) fn run(options: &BenchOptions, dir: &Path, guard: &mut ChildGuard) -> Result<String> {
    let redis_spec = RedisSpec {
        name: "redis-tenants".into(),
        port: ports::free_port()?,
        dir: dir.join("redis-tenants"),
        kind: RedisKind::Standalone,
        daemonize: false,
    };
    guard.push("redis-tenants", redis::spawn_child(&redis_spec)?);
    let redis_addr = redis_spec.addr();
    super::wait_round_trip(BenchTarget::Direct, redis_addr)?;
    create_acl_user(redis_addr)?;
    let mut proxies = Vec::new();
    for config in CONFIGS {
        let addr = ports::loopback(ports::free_port()?);
        let name = format!("tenants-{config}");
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, rkproxy_config(config, addr, redis_addr))?;
        let args = ["--config".to_string(), config_path.display().to_string()];
        start_rkproxy(
            options,
            BenchTarget::Rkproxy,
            &name,
            addr,
            &args,
            dir,
            guard,
        )?;
        check_as_tenant(addr)?;
        proxies.push((config, addr));
    }
    let mut results: BTreeMap<(String, u32, usize), Vec<Measurement>> = BTreeMap::new();
    for round in 0..options.rounds {
        for pipeline in [1, 16] {
            let mut order: Vec<(usize, &(&str, SocketAddr))> = proxies.iter().enumerate().collect();
            let shift = round % order.len();
            order.rotate_left(shift);
            for (index, (config, addr)) in order {
                for measurement in benchmark(options, *addr, pipeline)? {
                    eprintln!(
                        "round {}/{} tenants {:<13} {:<5} P{:<3} {:>12.0} req/s",
                        round + 1,
                        options.rounds,
                        config,
                        measurement.test,
                        pipeline,
                        measurement.requests_per_second,
                    );
                    let key = (measurement.test.clone(), pipeline, index);
                    results.entry(key).or_default().push(measurement);
                }
            }
        }
    }
    Ok(render(options, &results))
}

/// GET and SET through `addr` as tenant `t`.
fn benchmark(options: &BenchOptions, addr: SocketAddr, pipeline: u32) -> Result<Vec<Measurement>> {
    let requests = if pipeline > 1 {
        options.requests * PIPELINED_REQUEST_FACTOR
    } else {
        options.requests
    };
    let args: Vec<String> = [
        "--user",
        "t",
        "-a",
        "t-pw",
        "-P",
        &pipeline.to_string(),
        "-t",
        "get,set",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let (stdout, command) = redis_benchmark(options, addr, requests, &args)?;
    let measurements = parse_csv(&stdout);
    if measurements.is_empty() {
        bail!("no results from `{command}`:\n{stdout}");
    }
    Ok(measurements)
}

fn create_acl_user(redis_addr: SocketAddr) -> Result<()> {
    let mut connection = Connection::connect(redis_addr)?;
    let mut args = vec!["ACL", "SETUSER", ACL_USER];
    args.extend_from_slice(ACL_RULES);
    match connection.command(&args)? {
        Reply::Status(status) if status == "OK" => Ok(()),
        other => bail!("ACL SETUSER {ACL_USER} answered {other:?}"),
    }
}

/// The rkproxy configuration of one of [`CONFIGS`].
fn rkproxy_config(config: &str, listen: SocketAddr, redis: SocketAddr) -> String {
    let limits = "ops_per_sec = 100000000\nbytes_per_sec = 100000000000\n";
    let tenant = match config {
        "limits" => limits.to_string(),
        "limits_store" => format!("{limits}limits_store = {{ pool = \"main\" }}\n"),
        "backend_user" => format!(
            "backend_user = \"{ACL_USER}\"\nbackend_password = \"bench-t-secret\"\n\n\
             [tenants.other]\npassword = \"other-pw\"\npool = \"main\"\nkey_prefix = \"o:\"\n"
        ),
        _ => String::new(),
    };
    format!(
        "# Generated by `cargo xtask bench` (tenants section, {config}).\n\
         listen = \"{listen}\"\n\
         default_pool = \"main\"\n\
         \n\
         [pools.main]\n\
         kind = \"standalone\"\n\
         nodes = [\"{redis}\"]\n\
         \n\
         [tenants.t]\n\
         password = \"t-pw\"\n\
         pool = \"main\"\n\
         key_prefix = \"t:\"\n\
         {tenant}"
    )
}

/// AUTH as `t`, then SET and GET, so a broken configuration fails before any benchmark runs.
fn check_as_tenant(addr: SocketAddr) -> Result<()> {
    let mut connection = Connection::connect(addr)?;
    for (args, expected) in [
        (&["AUTH", "t", "t-pw"][..], "OK"),
        (&["SET", "check", "ok"][..], "OK"),
    ] {
        match connection.command(args)? {
            Reply::Status(status) if status == expected => {}
            other => bail!("tenants section: {args:?} through {addr} answered {other:?}"),
        }
    }
    match connection.command(&["GET", "check"])? {
        Reply::Bulk(Some(value)) if value == b"ok" => Ok(()),
        other => bail!("tenants section: GET through {addr} answered {other:?}"),
    }
}

/// The table: one row per test, pipeline and configuration.
fn render(
    options: &BenchOptions,
    results: &BTreeMap<(String, u32, usize), Vec<Measurement>>,
) -> String {
    let mut out = format!(
        "tenants: one prefixed tenant through rkproxy, {} round(s), medians; ratio = req/s / the `prefix` row's\n\
         | test | P | configuration | req/s | vs prefix | p50 ms |\n|---|---|---|---|---|---|\n",
        options.rounds
    );
    let rps = |runs: &[Measurement]| {
        median(
            &mut runs
                .iter()
                .map(|m| m.requests_per_second)
                .collect::<Vec<_>>(),
        )
    };
    for ((test, pipeline, index), runs) in results {
        let basis = results
            .get(&(test.clone(), *pipeline, 0))
            .map(|runs| rps(runs));
        let requests_per_second = rps(runs);
        let p50 = median(&mut runs.iter().map(|m| m.p50_ms).collect::<Vec<_>>());
        let ratio = basis.map_or_else(
            || "-".to_string(),
            |basis| format!("{:.2}", requests_per_second / basis),
        );
        out.push_str(&format!(
            "| {test} | {pipeline} | {} | {requests_per_second:.0} | {ratio} | {p50:.3} |\n",
            CONFIGS[*index]
        ));
    }
    out
}
