//! `cargo xtask bench`: redis-benchmark against direct Redis, rkproxy, twemproxy and predixy, side
//! by side, and (with `--baseline PATH`) against an older rkproxy binary as target `baseline`.
//!
//! All targets run in one invocation on this machine, in front of the same redis-server, so their
//! numbers are comparable with each other (and with nothing else: on a 2-core machine the
//! benchmark client, the proxy and Redis compete for CPU). Each round runs every scenario against
//! every target, rotating the target order per round so no target always goes first; the table
//! shows the median of the rounds.
//!
//! The code is organised as sections (a set of endpoints plus the scenarios to run against them),
//! each selectable with `--sections`:
//!
//! - `standalone`: GET/SET through every target to one redis-server.
//! - `cluster`: GET/SET to a 3-master, 3-replica Redis Cluster, `redis-benchmark --cluster`
//!   direct versus plain redis-benchmark through rkproxy's cluster pool (and the baseline's, and
//!   predixy's `ClusterServerPool`).
//! - `tls` (bench_tls.rs): GET/SET with TLS between the client and rkproxy, and between rkproxy and
//!   Redis, against redis-server's own TLS port.
//! - `mget`: a 10-key MGET whose keys sit in ten slots over the three masters, through rkproxy
//!   (which splits it per slot and merges the replies; so do the baseline and predixy), versus a
//!   10-key MGET of keys sharing one hash tag sent straight to that slot's master (the best Redis
//!   itself can do).
//! - `tenants` (`bench_tenants.rs`): one prefixed tenant through rkproxy with no limits, local limits,
//!   `limits_store` and `backend_user`: what each costs.
//! - `stats` (`bench_stats.rs`): rkproxy with `stats = true` (the default) and `stats = false`: what counting
//!   costs (issue 13's goal: at most 3%).
//!
//! The baseline is started exactly like rkproxy, with the same generated configs, and predixy runs
//! one worker thread like rkproxy's default. The rkproxy rows carry the ratio of medians to each
//! of twemproxy, the baseline and predixy, so a before/after comparison is read from one run whose
//! rounds shared the machine's noise. predixy is a peer, not a requirement: when its binary is
//! missing the bench says so and runs the other targets.
//!
//! Some scenarios carry a goal, the least ratio of rkproxy to direct (or, for the standalone
//! pipelined scenario, to twemproxy) that the project aims for; the table says whether the run met
//! it. Each row also shows the lowest and highest of its rounds, since on a small shared machine
//! single runs scatter widely.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use xshell::{cmd, Shell};

use crate::flags::{BenchOptions, BenchSection, BenchTarget, Named};
use crate::redis::{self, ClusterMaster, RedisKind, RedisSpec};
use crate::resp::{Connection, Reply};
use crate::shell::{self, ChildGuard};
use crate::{bail, demo, ports, project, servers, signals, Result};

// The `kafka` section lives in its own file; as a child module it shares this module's helpers.
#[path = "bench_kafka.rs"]
mod kafka_section;
// So does the `bigreq` section.
#[path = "bench_bigreq.rs"]
mod bigreq_section;
// And the `tenants` and `stats` sections, which compare configurations of rkproxy with `bench_configs.rs`.
#[path = "bench_configs.rs"]
mod configs_section;
#[path = "bench_stats.rs"]
mod stats_section;
#[path = "bench_tenants.rs"]
mod tenants_section;
// And the `tls` section.
#[path = "bench_tls.rs"]
mod tls_section;

/// Pipelined runs send this many times more requests than `--requests`, so that both kinds of
/// run last a similar few seconds.
const PIPELINED_REQUEST_FACTOR: u64 = 8;
/// The key space for redis-benchmark's `-r`, so requests touch many keys rather than one.
const KEY_SPACE: u32 = 100_000;
/// How many keys the `mget` section's MGET reads.
const MGET_KEYS: usize = 10;
/// The hash tag that puts the direct MGET's keys in one slot.
const MGET_SAME_SLOT_TAG: &str = "{mget}";
/// The goals from the cluster issue: rkproxy/direct-cluster GET/SET throughput at pipeline 1 and
/// 16, and cross-slot MGET through rkproxy against a single-node MGET.
const CLUSTER_GOAL_UNPIPELINED: Goal = Goal::vs_direct(0.9);
const CLUSTER_GOAL_PIPELINED: Goal = Goal::vs_direct(0.8);
const MGET_GOAL: Goal = Goal::vs_direct(0.6);
/// The goals from the foundation issue: rkproxy at least 0.95x direct Redis at pipeline 1, and at
/// least twice twemproxy at pipeline 16.
const STANDALONE_GOAL_UNPIPELINED: Goal = Goal::vs_direct(0.95);
const STANDALONE_GOAL_PIPELINED: Goal = Goal {
    ratio: 2.0,
    basis: BenchTarget::Twemproxy,
};

/// The targets an rkproxy row is compared with, one column each after `vs direct`.
const RKPROXY_PEERS: [BenchTarget; 3] = [
    BenchTarget::Twemproxy,
    BenchTarget::Baseline,
    BenchTarget::Predixy,
];
/// The targets that can sit in front of the cluster (twemproxy does not speak Redis Cluster).
const CLUSTER_PROXIES: [BenchTarget; 3] = [
    BenchTarget::Rkproxy,
    BenchTarget::Baseline,
    BenchTarget::Predixy,
];

/// The least throughput ratio of rkproxy to `basis` that the project aims for.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Goal {
    ratio: f64,
    basis: BenchTarget,
}

impl Goal {
    const fn vs_direct(ratio: f64) -> Goal {
        Goal {
            ratio,
            basis: BenchTarget::Direct,
        }
    }
}

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
    /// A custom command, shown as `label` in the table. The command is given per target because
    /// targets may need different keys for the same kind of request: a direct MGET must keep its
    /// keys in one slot, while the one through rkproxy spreads them over the cluster.
    Custom {
        label: String,
        args: BTreeMap<BenchTarget, Vec<String>>,
    },
}

/// One redis-benchmark configuration, run against every endpoint of its section.
#[derive(Debug, Clone)]
struct Scenario {
    workload: Workload,
    pipeline: u32,
    requests: u64,
    /// The least rkproxy throughput ratio the project aims for, if it has set one.
    goal: Option<Goal>,
}

/// Endpoints plus the scenarios to run against them.
#[derive(Debug, Clone)]
struct Section {
    name: &'static str,
    /// What the section compares, printed under the table.
    note: String,
    endpoints: Vec<Endpoint>,
    scenarios: Vec<Scenario>,
}

impl Section {
    /// The goal of the section's scenario at `pipeline`, if it has one.
    fn goal(&self, pipeline: u32) -> Option<Goal> {
        self.scenarios
            .iter()
            .find(|scenario| scenario.pipeline == pipeline)
            .and_then(|scenario| scenario.goal)
    }
}

/// The cluster the `cluster` and `mget` sections share, and the proxies in front of it.
struct ClusterSetup {
    masters: Vec<ClusterMaster>,
    /// Each of [`CLUSTER_PROXIES`] among the targets, with the address it listens on.
    proxies: Vec<(BenchTarget, SocketAddr)>,
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
    let options = &runnable_options(options, &predixy_binary())?;
    let mut tools = shell::REDIS_TOOLS.to_vec();
    tools.extend_from_slice(shell::BENCH_TOOLS);
    shell::ensure_tools(&tools)?;
    let wants = |target| options.targets.contains(&target);
    if wants(BenchTarget::Rkproxy) && !options.no_build {
        demo::build_release_rkproxy()?;
    }

    servers::clean_up_interrupted_runs();
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

/// The options without predixy when its binary (`predixy`) is missing: it is a peer for
/// comparison, not a requirement, so the bench says so and runs the other targets. A missing
/// baseline binary is an error: the user asked for it by path.
fn runnable_options(options: &BenchOptions, predixy: &Path) -> Result<BenchOptions> {
    let mut options = options.clone();
    if options.wants_target(BenchTarget::Predixy) && !predixy.exists() {
        eprintln!(
            "predixy: {} not found; skipping target predixy (a peer for comparison only)",
            predixy.display()
        );
        options
            .targets
            .retain(|target| *target != BenchTarget::Predixy);
    }
    if let Some(baseline) = &options.baseline {
        if options.wants_target(BenchTarget::Baseline) && !baseline.exists() {
            bail!("--baseline {} does not exist", baseline.display());
        }
    }
    if options.targets.is_empty() {
        bail!("no target left to run");
    }
    Ok(options)
}

/// predixy, built outside this project: `shared/peers/predixy` beside the workspace.
fn predixy_binary() -> PathBuf {
    let root = project::root();
    let beside = root.parent().unwrap_or(&root);
    beside.join("shared").join("peers").join("predixy")
}

fn run_with_servers(
    options: &BenchOptions,
    dir: &Path,
    guard: &mut ChildGuard,
) -> Result<ExitCode> {
    let mut sections = Vec::new();
    if options.wants_section(BenchSection::Standalone) {
        let endpoints = start_standalone_targets(options, dir, guard)?;
        sections.push(standalone_section(options, endpoints));
    }
    if options.wants_section(BenchSection::Cluster) || options.wants_section(BenchSection::Mget) {
        let cluster = start_cluster_targets(options, dir, guard)?;
        if options.wants_section(BenchSection::Cluster) {
            sections.push(cluster_section(options, &cluster)?);
        }
        if options.wants_section(BenchSection::Mget) {
            sections.push(mget_section(options, &cluster)?);
        }
    }
    if options.wants_section(BenchSection::Tls) {
        sections.extend(tls_section::sections(options, dir, guard)?);
    }
    for section in &sections {
        for endpoint in &section.endpoints {
            eprintln!(
                "{:<10} {:<10} {} {}",
                section.name,
                endpoint.target.name(),
                endpoint.addr,
                endpoint.extra_args.join(" ")
            );
        }
    }

    let results = run_rounds(options, &sections)?;
    let table = render_table(options, &sections, &results);
    let bigreq = if options.wants_section(BenchSection::Bigreq) {
        Some(bigreq_section::run(options, dir, guard)?)
    } else {
        None
    };
    let tenants = if options.wants_section(BenchSection::Tenants) {
        Some(tenants_section::run(options, dir, guard)?)
    } else {
        None
    };
    let stats = if options.wants_section(BenchSection::Stats) {
        Some(stats_section::run(options, dir, guard)?)
    } else {
        None
    };
    if options.wants_section(BenchSection::Kafka) {
        let kafka = kafka_section::run(options, dir, guard)?;
        println!("{}", kafka.add_to_table(&table));
    } else if !sections.is_empty() {
        println!("{table}");
    }
    if let Some(bigreq) = bigreq {
        println!("{bigreq}");
    }
    if let Some(tenants) = tenants {
        println!("{tenants}");
    }
    if let Some(stats) = stats {
        println!("{stats}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One redis-server, and every chosen target in front of it.
fn start_standalone_targets(
    options: &BenchOptions,
    dir: &Path,
    guard: &mut ChildGuard,
) -> Result<Vec<Endpoint>> {
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
            BenchTarget::Rkproxy | BenchTarget::Baseline => {
                start_standalone_rkproxy(options, *target, redis_addr, dir, guard)?
            }
            BenchTarget::Twemproxy => start_twemproxy(redis_addr, dir, guard)?,
            BenchTarget::Predixy => {
                let pool = predixy_standalone_pool(redis_addr);
                start_predixy("predixy", &pool, dir, guard)?
            }
        };
        check_round_trip(*target, addr)?;
        endpoints.push(Endpoint {
            target: *target,
            addr,
            extra_args: Vec::new(),
        });
    }
    Ok(endpoints)
}

/// rkproxy (or the baseline: `target`) in front of one redis-server, configured by its flags.
fn start_standalone_rkproxy(
    options: &BenchOptions,
    target: BenchTarget,
    redis_addr: SocketAddr,
    dir: &Path,
    guard: &mut ChildGuard,
) -> Result<SocketAddr> {
    let addr = ports::loopback(ports::free_port()?);
    let args = [
        "--listen".to_string(),
        addr.to_string(),
        "--backend".to_string(),
        format!("redis://{redis_addr}"),
    ];
    start_rkproxy(options, target, target.name(), addr, &args, dir, guard)?;
    Ok(addr)
}

/// GET and SET without and with pipelining, through every target to one redis-server.
fn standalone_section(options: &BenchOptions, endpoints: Vec<Endpoint>) -> Section {
    Section {
        name: "standalone",
        note: "every target in front of one redis-server".to_string(),
        endpoints,
        scenarios: get_set_scenarios(
            options,
            Some(STANDALONE_GOAL_UNPIPELINED),
            Some(STANDALONE_GOAL_PIPELINED),
        ),
    }
}

/// GET and SET at pipeline 1 and 16, with the goals for each.
fn get_set_scenarios(
    options: &BenchOptions,
    unpipelined_goal: Option<Goal>,
    pipelined_goal: Option<Goal>,
) -> Vec<Scenario> {
    vec![
        Scenario {
            workload: Workload::Tests("get,set"),
            pipeline: 1,
            requests: options.requests,
            goal: unpipelined_goal,
        },
        Scenario {
            workload: Workload::Tests("get,set"),
            pipeline: 16,
            requests: options.requests * PIPELINED_REQUEST_FACTOR,
            goal: pipelined_goal,
        },
    ]
}

/// A 6-node cluster (3 masters, 3 replicas) like `cargo xtask test` runs, and in front of it each
/// of rkproxy, the baseline and predixy that is among the targets.
fn start_cluster_targets(
    options: &BenchOptions,
    dir: &Path,
    guard: &mut ChildGuard,
) -> Result<ClusterSetup> {
    let proxy_targets: Vec<BenchTarget> = CLUSTER_PROXIES
        .into_iter()
        .filter(|target| options.wants_target(*target))
        .collect();
    if !options.wants_target(BenchTarget::Direct) && proxy_targets.is_empty() {
        bail!(
            "the cluster and mget sections need direct, rkproxy, baseline or predixy among --targets"
        );
    }
    eprintln!("starting a {}-node cluster...", servers::CLUSTER_NODES);
    let nodes = servers::start_cluster(&dir.join("cluster"), guard)?;
    let Some(first_node) = nodes.first().copied() else {
        bail!("the cluster has no nodes");
    };
    let masters = redis::cluster_masters(first_node)?;
    if masters.len() != servers::CLUSTER_NODES / 2 {
        bail!(
            "expected {} masters, {first_node} reports {masters:?}",
            servers::CLUSTER_NODES / 2
        );
    }
    check_cluster_round_trip(first_node, &masters)?;

    let seeds: Vec<SocketAddr> = masters.iter().map(|master| master.addr).collect();
    let mut proxies = Vec::new();
    for target in proxy_targets {
        let addr = start_cluster_proxy(options, target, &seeds, dir, guard)?;
        proxies.push((target, addr));
    }
    Ok(ClusterSetup { masters, proxies })
}

/// One of [`CLUSTER_PROXIES`] in front of the cluster seeded with `seeds`, checked with a SET and
/// a GET. rkproxy and the baseline get the same generated config (only `listen` differs).
fn start_cluster_proxy(
    options: &BenchOptions,
    target: BenchTarget,
    seeds: &[SocketAddr],
    dir: &Path,
    guard: &mut ChildGuard,
) -> Result<SocketAddr> {
    let name = format!("{}-cluster", target.name());
    let addr = if target == BenchTarget::Predixy {
        start_predixy(&name, &predixy_cluster_pool(seeds), dir, guard)?
    } else {
        let addr = ports::loopback(ports::free_port()?);
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, rkproxy_cluster_config(addr, seeds))?;
        let args = ["--config".to_string(), config_path.display().to_string()];
        start_rkproxy(options, target, &name, addr, &args, dir, guard)?;
        addr
    };
    wait_round_trip(target, addr)?;
    Ok(addr)
}

/// The rkproxy config for the cluster sections: one cluster pool seeded with the masters.
fn rkproxy_cluster_config(listen: SocketAddr, seeds: &[SocketAddr]) -> String {
    let nodes: Vec<String> = seeds.iter().map(|seed| format!("\"{seed}\"")).collect();
    format!(
        "# Generated by `cargo xtask bench`.\n\
         listen = \"{listen}\"\n\
         default_pool = \"c\"\n\
         \n\
         [pools.c]\n\
         kind = \"cluster\"\n\
         nodes = [{nodes}]\n",
        nodes = nodes.join(", ")
    )
}

/// GET and SET to the cluster: `redis-benchmark --cluster` (which learns the slot map and sends
/// each client's keys to one master) against plain redis-benchmark through rkproxy.
fn cluster_section(options: &BenchOptions, cluster: &ClusterSetup) -> Result<Section> {
    let mut endpoints = Vec::new();
    if options.wants_target(BenchTarget::Direct) {
        let Some(master) = cluster.masters.first() else {
            bail!("the cluster has no masters");
        };
        endpoints.push(Endpoint {
            target: BenchTarget::Direct,
            addr: master.addr,
            extra_args: vec!["--cluster".to_string()],
        });
    }
    for &(target, addr) in &cluster.proxies {
        endpoints.push(Endpoint {
            target,
            addr,
            extra_args: Vec::new(),
        });
    }
    Ok(Section {
        name: "cluster",
        note: format!(
            "3 masters + 3 replicas; direct is `redis-benchmark --cluster` (clients split over the \
             masters, keys `key:{{tag}}:N` in one slot per master), rkproxy (and baseline, \
             predixy) is plain redis-benchmark through a cluster pool (keys `key:N` over all \
             slots); goals rkproxy >= {} x direct at -P 1, >= {} x at -P 16",
            CLUSTER_GOAL_UNPIPELINED.ratio,
            CLUSTER_GOAL_PIPELINED.ratio
        ),
        endpoints,
        scenarios: get_set_scenarios(
            options,
            Some(CLUSTER_GOAL_UNPIPELINED),
            Some(CLUSTER_GOAL_PIPELINED),
        ),
    })
}

/// A 10-key MGET: through each proxy with keys in ten slots spread over the three masters,
/// against one node directly with keys that share a hash tag. Stores the keys first and checks that
/// every target answers the MGET with every value.
fn mget_section(options: &BenchOptions, cluster: &ClusterSetup) -> Result<Section> {
    let Some(first_master) = cluster.masters.first() else {
        bail!("the cluster has no masters");
    };
    let mut connection = Connection::connect(first_master.addr)?;
    let cross_slot_keys = pick_cross_slot_keys(&mut connection, &cluster.masters)?;
    let same_slot_keys: Vec<String> = (1..=MGET_KEYS)
        .map(|index| format!("{MGET_SAME_SLOT_TAG}:{index}"))
        .collect();
    let same_slot_owner = owner_of(&mut connection, &same_slot_keys[0], &cluster.masters)?;
    for keys in [&cross_slot_keys, &same_slot_keys] {
        store_mget_keys(&mut connection, keys, &cluster.masters)?;
    }

    let mut endpoints = Vec::new();
    let mut args = BTreeMap::new();
    let mut add_target = |target, addr, keys: &[String]| -> Result<()> {
        check_mget(addr, keys)?;
        endpoints.push(Endpoint {
            target,
            addr,
            extra_args: Vec::new(),
        });
        args.insert(target, mget_command(keys));
        Ok(())
    };
    if options.wants_target(BenchTarget::Direct) {
        add_target(BenchTarget::Direct, same_slot_owner, &same_slot_keys)?;
    }
    for &(target, addr) in &cluster.proxies {
        add_target(target, addr, &cross_slot_keys)?;
    }
    eprintln!(
        "mget keys through the proxies: {}",
        cross_slot_keys.join(" ")
    );
    eprintln!(
        "mget keys direct on {same_slot_owner}: {}",
        same_slot_keys.join(" ")
    );
    Ok(Section {
        name: "mget",
        note: format!(
            "rkproxy (and baseline, predixy) is MGET of {MGET_KEYS} keys in {MGET_KEYS} slots over \
             the 3 masters (split and merged by the proxy); direct is MGET of {MGET_KEYS} keys \
             sharing the hash tag {MGET_SAME_SLOT_TAG} on that slot's master; goal rkproxy >= {} x \
             direct",
            MGET_GOAL.ratio
        ),
        endpoints,
        scenarios: vec![Scenario {
            workload: Workload::Custom {
                label: format!("MGET x{MGET_KEYS}"),
                args,
            },
            pipeline: 1,
            requests: options.requests,
            goal: Some(MGET_GOAL),
        }],
    })
}

/// SETs each of `keys` to its [`mget_value`] on the master that owns it.
fn store_mget_keys(
    connection: &mut Connection,
    keys: &[String],
    masters: &[ClusterMaster],
) -> Result<()> {
    for (index, key) in keys.iter().enumerate() {
        let owner = owner_of(connection, key, masters)?;
        let mut owner_connection = Connection::connect(owner)?;
        match owner_connection.command(&["SET", key, &mget_value(index)])? {
            Reply::Status(status) if status == "OK" => {}
            other => bail!("SET {key} on {owner} answered {other:?}"),
        }
    }
    Ok(())
}

/// Picks [`MGET_KEYS`] keys in distinct slots, taking the masters in turn so the keys spread
/// evenly over them.
fn pick_cross_slot_keys(
    connection: &mut Connection,
    masters: &[ClusterMaster],
) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut slots = Vec::new();
    for candidate in 0..100_000_u32 {
        if keys.len() == MGET_KEYS {
            return Ok(keys);
        }
        let key = format!("mget:{candidate}");
        let slot = key_slot(connection, &key)?;
        let wanted = &masters[keys.len() % masters.len()];
        if wanted.serves(slot) && !slots.contains(&slot) {
            keys.push(key);
            slots.push(slot);
        }
    }
    bail!("found only {} keys in distinct slots: {keys:?}", keys.len())
}

/// The slot of `key`, asked from the cluster so xtask needs no CRC16 of its own.
fn key_slot(connection: &mut Connection, key: &str) -> Result<u16> {
    match connection.command(&["CLUSTER", "KEYSLOT", key])? {
        Reply::Integer(slot) => Ok(u16::try_from(slot)?),
        other => bail!("CLUSTER KEYSLOT {key} answered {other:?}"),
    }
}

/// The master that serves `key`.
fn owner_of(
    connection: &mut Connection,
    key: &str,
    masters: &[ClusterMaster],
) -> Result<SocketAddr> {
    let slot = key_slot(connection, key)?;
    match masters.iter().find(|master| master.serves(slot)) {
        Some(master) => Ok(master.addr),
        None => bail!("no master serves slot {slot} (key {key})"),
    }
}

/// The value stored under the `index`-th MGET key: three bytes, like redis-benchmark's default
/// `-d 3` values.
fn mget_value(index: usize) -> String {
    format!("{:03}", index + 1)
}

fn mget_command(keys: &[String]) -> Vec<String> {
    std::iter::once("MGET".to_string())
        .chain(keys.iter().cloned())
        .collect()
}

/// Checks that MGET of `keys` at `addr` answers every stored value, in order.
fn check_mget(addr: SocketAddr, keys: &[String]) -> Result<()> {
    let mut connection = Connection::connect(addr)?;
    let command = mget_command(keys);
    let args: Vec<&str> = command.iter().map(String::as_str).collect();
    let reply = connection.command(&args)?;
    let expected: Vec<Reply> = (0..keys.len())
        .map(|index| Reply::Bulk(Some(mget_value(index).into_bytes())))
        .collect();
    match reply {
        Reply::Array(Some(values)) if values == expected => Ok(()),
        other => bail!("MGET at {addr} answered {other:?}, expected {expected:?}"),
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
    let mut args = vec!["-P".to_string(), scenario.pipeline.to_string()];
    if let Some(value_bytes) = options.value_bytes {
        // Before the workload's arguments: a workload that sets its own `-d` (kafka's) keeps it.
        args.extend(["-d".to_string(), value_bytes.to_string()]);
    }
    args.extend_from_slice(&endpoint.extra_args);
    match &scenario.workload {
        Workload::Tests(tests) => args.extend(["-t".to_string(), tests.to_string()]),
        Workload::Custom {
            label,
            args: custom,
        } => match custom.get(&endpoint.target) {
            Some(custom) => args.extend_from_slice(custom),
            None => bail!("{label} has no command for {}", endpoint.target.name()),
        },
    }
    let (stdout, command) = redis_benchmark(options, endpoint.addr, scenario.requests, &args)?;
    let mut measurements = parse_csv(&stdout);
    if let Workload::Custom { label, .. } = &scenario.workload {
        for measurement in &mut measurements {
            measurement.test = label.clone();
        }
    }
    if measurements.is_empty() {
        bail!("no results from `{command}`:\n{stdout}");
    }
    Ok(measurements)
}

/// Runs redis-benchmark against `addr` with `--csv` and `args` appended, quietly (the table shows
/// the results), and returns its output and the command as text. A failure shows both streams.
fn redis_benchmark(
    options: &BenchOptions,
    addr: SocketAddr,
    requests: u64,
    args: &[String],
) -> Result<(String, String)> {
    if signals::requested() {
        bail!("interrupted");
    }
    let sh = Shell::new()?;
    let program = shell::require("redis-benchmark")?;
    let (host, port) = (addr.ip().to_string(), addr.port().to_string());
    let (clients, requests) = (options.clients.to_string(), requests.to_string());
    let key_space = KEY_SPACE.to_string();
    let command = cmd!(
        sh,
        "{program} -h {host} -p {port} -c {clients} -n {requests} -r {key_space} --csv {args...}"
    )
    .quiet()
    .ignore_status();
    let output = command.output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "`{command}` failed ({}):\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((stdout, command.to_string()))
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

/// The medians over the rounds of one table row.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Medians {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn medians(runs: &[Measurement]) -> Medians {
    let mut rps: Vec<f64> = runs.iter().map(|run| run.requests_per_second).collect();
    let mut p50: Vec<f64> = runs.iter().map(|run| run.p50_ms).collect();
    let mut p99: Vec<f64> = runs.iter().map(|run| run.p99_ms).collect();
    Medians {
        requests_per_second: median(&mut rps),
        p50_ms: median(&mut p50),
        p99_ms: median(&mut p99),
    }
}

/// The markdown table: one row per section, test, pipeline and target, with the median of the
/// rounds, the ratio to direct Redis and (for rkproxy) the ratios to each of [`RKPROXY_PEERS`].
fn render_table(
    options: &BenchOptions,
    sections: &[Section],
    results: &BTreeMap<RowKey, Vec<Measurement>>,
) -> String {
    let mut out = table_preamble(options);
    out.push_str(TABLE_HEADER);
    out.push('\n');
    out.push_str(TABLE_RULE);
    out.push('\n');
    for section in sections {
        for (test, pipeline) in tests_of(section.name, results) {
            for endpoint in &section.endpoints {
                let row = table_row(section, endpoint.target, &test, pipeline, results);
                out.push_str(&row.unwrap_or_default());
            }
        }
    }
    out.push('\n');
    for section in sections {
        out.push_str(&format!("- {}: {}\n", section.name, section.note));
    }
    out
}

/// What was run: the redis-benchmark settings, and which targets ran and which did not.
fn table_preamble(options: &BenchOptions) -> String {
    let ran: Vec<String> = options
        .targets
        .iter()
        .map(|target| match (target, &options.baseline) {
            (BenchTarget::Baseline, Some(path)) => format!("baseline ({})", path.display()),
            _ => target.name().to_string(),
        })
        .collect();
    let not_run: Vec<&str> = BenchTarget::ALL
        .iter()
        .filter(|target| !options.wants_target(**target))
        .map(|target| target.name())
        .collect();
    let not_run = match not_run.is_empty() {
        true => String::new(),
        false => format!("; not run: {}", not_run.join(", ")),
    };
    format!(
        "\nredis-benchmark -c {} -r {KEY_SPACE}, {} requests at pipeline 1 and {} when pipelined; \
         median of {} rounds; rkproxy worker_threads = {}\ntargets run: {}{not_run}\n\n",
        options.clients,
        options.requests,
        options.requests * PIPELINED_REQUEST_FACTOR,
        options.rounds,
        options
            .workers
            .map_or_else(|| "default (1)".to_string(), |workers| workers.to_string()),
        ran.join(", "),
    )
}

/// The tests a section measured, per pipeline: unpipelined first, SET before GET.
fn tests_of(section: &str, results: &BTreeMap<RowKey, Vec<Measurement>>) -> Vec<(String, u32)> {
    let mut tests: Vec<(String, u32)> = Vec::new();
    for (name, test, pipeline, _) in results.keys() {
        if *name == section && !tests.contains(&(test.clone(), *pipeline)) {
            tests.push((test.clone(), *pipeline));
        }
    }
    tests.sort_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
    tests
}

/// One line of the table, if `target` has results for this test. Only rkproxy's rows carry the
/// ratios to its peers and the goal verdict: those are the comparisons the project reads.
fn table_row(
    section: &Section,
    target: BenchTarget,
    test: &str,
    pipeline: u32,
    results: &BTreeMap<RowKey, Vec<Measurement>>,
) -> Option<String> {
    let runs_of = |target| results.get(&(section.name, test.to_string(), pipeline, target));
    let rps_of = |target| runs_of(target).map(|runs| medians(runs).requests_per_second);
    let runs = runs_of(target)?;
    let row = medians(runs);
    let ratio = |basis| ratio_cell(row.requests_per_second, rps_of(basis));
    let (peer_cells, goal_cell) = if target == BenchTarget::Rkproxy {
        let goal = section.goal(pipeline);
        let goal_basis = goal.and_then(|goal| rps_of(goal.basis));
        (
            RKPROXY_PEERS.map(ratio),
            goal_verdict(
                goal,
                goal_basis.map(|basis| row.requests_per_second / basis),
            ),
        )
    } else {
        (RKPROXY_PEERS.map(|_| String::new()), String::new())
    };
    let paired_cell = match runs_of(BenchTarget::Direct) {
        Some(direct) if target != BenchTarget::Direct => paired_median(
            runs.iter()
                .zip(direct)
                .map(|(run, direct)| run.requests_per_second / direct.requests_per_second)
                .collect(),
        ),
        _ => String::new(),
    };
    Some(format!(
        "| {} | {} | {test} | {pipeline} | {:.0} | {} | {:.3} | {:.3} | {} | {paired_cell} | {} | {goal_cell} |\n",
        section.name,
        target.name(),
        row.requests_per_second,
        spread(runs),
        row.p50_ms,
        row.p99_ms,
        ratio(BenchTarget::Direct),
        peer_cells.join(" | "),
    ))
}

/// The median of per-round ratios (each the throughput of one target over another's in the same round, moments
/// apart, so the machine's drift between rounds cancels), with its 95% confidence interval when there are
/// enough rounds for one: `median (low-high)`, or `median`.
pub(super) fn paired_median(mut ratios: Vec<f64>) -> String {
    // `median` sorts the ratios, as `median_interval` needs them.
    let middle = median(&mut ratios);
    match median_interval(&ratios) {
        Some((low, high)) => format!("{middle:.3} ({low:.3}-{high:.3})"),
        None => format!("{middle:.3}"),
    }
}

/// A distribution-free 95% confidence interval for the median of `sorted` (ascending): the `k`-th smallest
/// and `k`-th largest values, `k` the largest count with P(Binomial(n, 1/2) < k) <= 2.5%, so that the median
/// lies between them with at least 95% probability. `None` below six values (no such `k`).
fn median_interval(sorted: &[f64]) -> Option<(f64, f64)> {
    let n = sorted.len();
    let mut probability = 0.5f64.powi(i32::try_from(n).ok()?);
    let mut below = 0.0;
    let mut k = 0;
    // P(X < k + 1) = P(X <= k); the loop finds the largest k with P(X < k) <= 0.025.
    while k < n / 2 && below + probability <= 0.025 {
        below += probability;
        k += 1;
        probability *= (n - k + 1) as f64 / k as f64;
    }
    if k == 0 {
        return None;
    }
    Some((sorted[k - 1], sorted[n - k]))
}

/// `requests_per_second / basis` with two decimals, or `-` when the basis did not run.
fn ratio_cell(requests_per_second: f64, basis: Option<f64>) -> String {
    basis.map_or_else(
        || "-".to_string(),
        |basis| format!("{:.2}", requests_per_second / basis),
    )
}

/// The header and rule of the results table (the kafka section adds rows to it).
pub(crate) const TABLE_HEADER: &str = "| section | target | test | pipeline | requests/s | min-max | p50 ms | p99 ms | vs direct | paired vs direct (95% CI) | rkproxy vs twemproxy | rkproxy vs baseline | rkproxy vs predixy | goal |";
pub(crate) const TABLE_RULE: &str =
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

/// The lowest and highest requests per second among the rounds, as `low-high`.
fn spread(runs: &[Measurement]) -> String {
    let rps = runs.iter().map(|run| run.requests_per_second);
    let low = rps.clone().fold(f64::INFINITY, f64::min);
    let high = rps.fold(0.0, f64::max);
    format!("{low:.0}-{high:.0}")
}

/// The goal cell of an rkproxy row: the least ratio to the goal's basis and whether this run
/// reached it.
fn goal_verdict(goal: Option<Goal>, ratio: Option<f64>) -> String {
    let Some(goal) = goal else {
        return String::new();
    };
    let basis = goal.basis.name();
    let least = goal.ratio;
    match ratio {
        None => format!(">= {least:.2} x {basis} (no {basis} run)"),
        Some(ratio) if ratio >= least => format!(">= {least:.2} x {basis}: met"),
        Some(_) => format!(">= {least:.2} x {basis}: MISSED"),
    }
}

/// How the bench starts an rkproxy process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheduling {
    /// As it is: Linux's default policy, SCHED_OTHER.
    Normal,
    /// Under `chrt --batch 0` (SCHED_BATCH, util-linux): its wake-ups do not preempt the task running on
    /// the CPU, as `CPUSchedulingPolicy=batch` in a systemd unit does.
    Batch,
}

/// Starts `target`'s rkproxy binary (see [`rkproxy_binary`]) with `args` (which must make it
/// listen on `addr`), logging to `dir/<name>.log`, and waits until it accepts. `name` must be
/// unique among the guard's children. `--workers` becomes `RKPROXY_WORKER_THREADS`. Returns its pid.
fn start_rkproxy(
    options: &BenchOptions,
    target: BenchTarget,
    name: &str,
    addr: SocketAddr,
    args: &[String],
    dir: &Path,
    guard: &mut ChildGuard,
) -> Result<u32> {
    let process = ProxyProcess { name, addr, dir };
    start_rkproxy_scheduled(options, target, &process, args, Scheduling::Normal, guard)
}

/// The name, listening address and log folder of a proxy the bench starts (see [`start_rkproxy`]).
struct ProxyProcess<'a> {
    name: &'a str,
    addr: SocketAddr,
    dir: &'a Path,
}

/// [`start_rkproxy`] under the given scheduling policy.
fn start_rkproxy_scheduled(
    options: &BenchOptions,
    target: BenchTarget,
    process: &ProxyProcess<'_>,
    args: &[String],
    scheduling: Scheduling,
    guard: &mut ChildGuard,
) -> Result<u32> {
    let ProxyProcess { name, addr, dir } = *process;
    let binary = rkproxy_binary(options, target)?;
    if !binary.exists() {
        bail!(
            "{} does not exist; build it or leave {} out with --targets",
            binary.display(),
            target.name()
        );
    }
    let log_path = dir.join(format!("{name}.log"));
    let sh = Shell::new()?;
    let mut command = match scheduling {
        Scheduling::Normal => cmd!(sh, "{binary} {args...}"),
        Scheduling::Batch => cmd!(sh, "chrt --batch 0 {binary} {args...}"),
    };
    if let Some(workers) = options.workers {
        command = command.env("RKPROXY_WORKER_THREADS", workers.to_string());
    }
    let mut command = shell::spawnable(command);
    shell::log_output(&mut command, &log_path)?;
    let child = command.spawn()?;
    let pid = child.id();
    guard.push(name, child);
    wait_accepting(guard, name, addr, &log_path)?;
    Ok(pid)
}

/// The binary an rkproxy target runs: this workspace's release build for `rkproxy`, the
/// `--baseline` one for `baseline`.
fn rkproxy_binary(options: &BenchOptions, target: BenchTarget) -> Result<PathBuf> {
    match (target, &options.baseline) {
        (BenchTarget::Baseline, Some(path)) => Ok(path.clone()),
        (BenchTarget::Baseline, None) => bail!("target baseline needs --baseline PATH"),
        _ => Ok(project::release_rkproxy()),
    }
}

/// Starts predixy with one worker thread and `pool` (a server pool section of its config),
/// logging to `dir/<name>.log`, and waits until it accepts.
fn start_predixy(name: &str, pool: &str, dir: &Path, guard: &mut ChildGuard) -> Result<SocketAddr> {
    let addr = ports::loopback(ports::free_port()?);
    let config_path = dir.join(format!("{name}.conf"));
    std::fs::write(&config_path, predixy_config(addr, pool))?;
    let log_path = dir.join(format!("{name}.log"));
    let sh = Shell::new()?;
    let binary = predixy_binary();
    let mut command = shell::spawnable(cmd!(sh, "{binary} {config_path}"));
    shell::log_output(&mut command, &log_path)?;
    guard.push(name, command.spawn()?);
    wait_accepting(guard, name, addr, &log_path)?;
    Ok(addr)
}

/// predixy's config: one worker thread (rkproxy's default), no password, and `pool`.
fn predixy_config(listen: SocketAddr, pool: &str) -> String {
    format!(
        "# Generated by `cargo xtask bench`.\n\
         Bind {listen}\n\
         WorkerThreads 1\n\
         Authority {{\n Auth {{\n  Mode write\n }}\n}}\n\
         {pool}"
    )
}

/// A predixy pool of one redis-server.
fn predixy_standalone_pool(redis: SocketAddr) -> String {
    format!("StandaloneServerPool {{\n RefreshMethod fixed\n Group g {{\n  + {redis}\n }}\n}}\n")
}

/// A predixy pool in front of a Redis Cluster seeded with `seeds`. Reads go to the masters only
/// (master priority above the replicas'), as they do through rkproxy.
fn predixy_cluster_pool(seeds: &[SocketAddr]) -> String {
    let servers: String = seeds.iter().map(|seed| format!("  + {seed}\n")).collect();
    format!(
        "ClusterServerPool {{\n MasterReadPriority 60\n StaticSlaveReadPriority 50\n \
         DynamicSlaveReadPriority 50\n Servers {{\n{servers} }}\n}}\n"
    )
}

/// Starts twemproxy (nutcracker) in front of `backend` and waits until it accepts.
fn start_twemproxy(backend: SocketAddr, dir: &Path, guard: &mut ChildGuard) -> Result<SocketAddr> {
    start_twemproxy_named("twemproxy", &backend.to_string(), dir, guard)
}

/// [`start_twemproxy`] with a child `name` of its own (unique among the guard's children), in front of `server`
/// (`host:port`, or the absolute path of Redis's Unix domain socket).
fn start_twemproxy_named(
    name: &str,
    server: &str,
    dir: &Path,
    guard: &mut ChildGuard,
) -> Result<SocketAddr> {
    let mut reserver = ports::PortReserver::default();
    let addr = ports::loopback(reserver.reserve()?);
    let stats_port = reserver.reserve()?;
    drop(reserver);
    let config_path = dir.join("nutcracker.yml");
    std::fs::write(&config_path, twemproxy_config(addr, server))?;
    let log_path = dir.join("nutcracker.log");
    let sh = Shell::new()?;
    let nutcracker = shell::require("nutcracker")?;
    let stats_port = stats_port.to_string();
    // The stats server listens on 0.0.0.0:22222 unless told otherwise; keep it on loopback and
    // on a free port so parallel runs do not collide.
    let mut command = shell::spawnable(cmd!(
        sh,
        "{nutcracker} -c {config_path} -o {log_path} -a 127.0.0.1 -s {stats_port}"
    ));
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    guard.push(name, command.spawn()?);
    wait_accepting(guard, name, addr, &log_path)?;
    Ok(addr)
}

/// The nutcracker YAML: one pool, one server (`host:port` or a socket's path), no ejection.
fn twemproxy_config(listen: SocketAddr, server: &str) -> String {
    format!(
        "rkbench:\n  \
           listen: {listen}\n  \
           hash: fnv1a_64\n  \
           distribution: ketama\n  \
           redis: true\n  \
           auto_eject_hosts: false\n  \
           server_connections: 1\n  \
           servers:\n    \
             - {server}:1\n"
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

/// [`check_round_trip`], retried for up to ten seconds: a proxy in front of a cluster may accept
/// connections before it has learned the slot map.
fn wait_round_trip(target: BenchTarget, addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match check_round_trip(target, addr) {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() > deadline => return Err(error),
            Err(_) => signals::sleep(Duration::from_millis(100))?,
        }
    }
}

/// Checks SET then GET on the master that owns the check key, so a cluster that cannot serve
/// writes fails before any benchmark runs.
fn check_cluster_round_trip(node: SocketAddr, masters: &[ClusterMaster]) -> Result<()> {
    let mut connection = Connection::connect(node)?;
    let key = format!("xtask:bench:check:{}", BenchTarget::Direct.name());
    let owner = owner_of(&mut connection, &key, masters)?;
    check_round_trip(BenchTarget::Direct, owner)
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
    fn rkproxy_cluster_config_has_one_cluster_pool() {
        let seeds = [ports::loopback(7001), ports::loopback(7002)];
        let text = rkproxy_cluster_config(ports::loopback(7480), &seeds);
        assert!(text.contains("listen = \"127.0.0.1:7480\"\n"));
        assert!(text.contains("default_pool = \"c\"\n"));
        assert!(text.contains(
            "[pools.c]\nkind = \"cluster\"\nnodes = [\"127.0.0.1:7001\", \"127.0.0.1:7002\"]\n"
        ));
    }

    #[test]
    fn goal_verdicts() {
        let direct = Some(Goal::vs_direct(0.9));
        assert_eq!(goal_verdict(None, Some(0.5)), "");
        assert_eq!(goal_verdict(direct, Some(0.95)), ">= 0.90 x direct: met");
        assert_eq!(goal_verdict(direct, Some(0.85)), ">= 0.90 x direct: MISSED");
        assert_eq!(
            goal_verdict(Some(MGET_GOAL), None),
            ">= 0.60 x direct (no direct run)"
        );
        assert_eq!(
            goal_verdict(Some(STANDALONE_GOAL_PIPELINED), Some(1.5)),
            ">= 2.00 x twemproxy: MISSED"
        );
    }

    #[test]
    fn mget_values_are_three_bytes() {
        assert_eq!(mget_value(0), "001");
        assert_eq!(mget_value(9), "010");
        assert_eq!(
            mget_command(&["a".to_string(), "b".to_string()]),
            ["MGET", "a", "b"]
        );
    }

    fn measurement(test: &str, requests_per_second: f64) -> Measurement {
        Measurement {
            test: test.to_string(),
            requests_per_second,
            p50_ms: 0.3,
            p99_ms: 0.6,
        }
    }

    fn options_for_table(targets: &[BenchTarget]) -> BenchOptions {
        BenchOptions {
            requests: 1000,
            rounds: 3,
            clients: 50,
            value_bytes: None,
            targets: targets.to_vec(),
            sections: vec![BenchSection::Standalone],
            baseline: Some(PathBuf::from("/tmp/rkproxy-old")),
            workers: None,
            no_build: true,
        }
    }

    /// A standalone section with `targets` and GET at pipeline 1, with a goal of 0.5 x direct.
    fn section_for_table(targets: &[BenchTarget]) -> Section {
        let endpoints = targets.iter().map(|&target| Endpoint {
            target,
            addr: ports::loopback(1),
            extra_args: Vec::new(),
        });
        Section {
            name: "standalone",
            note: "note".to_string(),
            endpoints: endpoints.collect(),
            scenarios: vec![Scenario {
                workload: Workload::Tests("get"),
                pipeline: 1,
                requests: 1000,
                goal: Some(Goal::vs_direct(0.5)),
            }],
        }
    }

    #[test]
    fn rkproxy_rows_carry_ratios_of_medians_to_baseline_and_predixy() {
        use BenchTarget::{Baseline, Direct, Predixy, Rkproxy};
        let targets = [Direct, Rkproxy, Baseline, Predixy];
        let mut results = BTreeMap::new();
        for (target, rounds) in [
            (Direct, vec![125.0]),
            (Rkproxy, vec![110.0, 90.0, 100.0]),
            (Baseline, vec![80.0]),
            (Predixy, vec![300.0, 200.0, 100.0]),
        ] {
            let runs = rounds.iter().map(|rps| measurement("GET", *rps)).collect();
            results.insert(("standalone", "GET".to_string(), 1, target), runs);
        }
        let table = render_table(
            &options_for_table(&targets),
            &[section_for_table(&targets)],
            &results,
        );
        let rows: Vec<&str> = table.lines().filter(|line| line.starts_with('|')).collect();
        assert_eq!(rows[0], TABLE_HEADER);
        assert_eq!(
            rows[3],
            "| standalone | rkproxy | GET | 1 | 100 | 90-110 | 0.300 | 0.600 | 0.80 | 0.880 | - \
             | 1.25 | 0.50 | >= 0.50 x direct: met |"
        );
        assert_eq!(
            rows[4],
            "| standalone | baseline | GET | 1 | 80 | 80-80 | 0.300 | 0.600 | 0.64 | 0.640 |  |  |  |  |"
        );
        let columns = |row: &str| row.matches('|').count();
        assert!(rows.iter().all(|row| columns(row) == columns(TABLE_HEADER)));
        assert!(table.contains(
            "targets run: direct, rkproxy, baseline (/tmp/rkproxy-old), predixy; not run: twemproxy\n"
        ));
    }

    #[test]
    fn the_median_interval_follows_the_binomial_order_statistics() {
        let values = |n: usize| (1..=n).map(|value| value as f64).collect::<Vec<_>>();
        // Five values cannot give 95%: the widest interval, from the least to the greatest, has 93.75%.
        assert_eq!(median_interval(&values(5)), None);
        // Six: the least and the greatest (96.9%).
        assert_eq!(median_interval(&values(6)), Some((1.0, 6.0)));
        // Tables of the sign test: n = 20 gives the 6th smallest and 15th (k = 6), n = 100 the 40th and 61st.
        assert_eq!(median_interval(&values(20)), Some((6.0, 15.0)));
        assert_eq!(median_interval(&values(100)), Some((40.0, 61.0)));
    }

    #[test]
    fn paired_ratios_to_direct_pair_the_runs_of_each_round() {
        use BenchTarget::{Direct, Rkproxy};
        let targets = [Direct, Rkproxy];
        // The rounds differ by far more than the 10% between the targets in each round.
        let direct = [100.0, 300.0, 200.0, 50.0, 400.0, 250.0];
        let mut results = BTreeMap::new();
        for (target, factor) in [(Direct, 1.0), (Rkproxy, 0.9)] {
            let runs = direct
                .iter()
                .map(|rps| measurement("GET", rps * factor))
                .collect();
            results.insert(("standalone", "GET".to_string(), 1, target), runs);
        }
        let table = render_table(
            &options_for_table(&targets),
            &[section_for_table(&targets)],
            &results,
        );
        let rkproxy = table.lines().find(|line| line.contains("| rkproxy |"));
        assert!(rkproxy.is_some_and(|row| row.contains("| 0.900 (0.900-0.900) |")));
    }

    #[test]
    fn predixy_configs_have_one_thread_and_the_servers() {
        let standalone = predixy_config(
            ports::loopback(7617),
            &predixy_standalone_pool(ports::loopback(6379)),
        );
        assert!(standalone.contains("Bind 127.0.0.1:7617\nWorkerThreads 1\n"));
        assert!(standalone.contains("  Mode write\n"));
        assert!(standalone.contains(
            "StandaloneServerPool {\n RefreshMethod fixed\n Group g {\n  + 127.0.0.1:6379\n }\n}\n"
        ));
        let cluster = predixy_cluster_pool(&[ports::loopback(7001), ports::loopback(7002)]);
        assert!(cluster.starts_with("ClusterServerPool {\n"));
        assert!(cluster.contains(" Servers {\n  + 127.0.0.1:7001\n  + 127.0.0.1:7002\n }\n}\n"));
    }

    #[test]
    fn a_missing_predixy_is_skipped_and_a_missing_baseline_is_an_error() {
        use BenchTarget::{Baseline, Direct, Predixy, Rkproxy};
        let nowhere = Path::new("/nonexistent/predixy");
        let mut options = options_for_table(&[Direct, Rkproxy, Predixy]);
        let runnable = runnable_options(&options, nowhere)
            .ok()
            .map(|run| run.targets);
        assert_eq!(runnable, Some(vec![Direct, Rkproxy]));
        assert!(table_preamble(&options_for_table(&[Direct, Rkproxy]))
            .contains("targets run: direct, rkproxy; not run: baseline, twemproxy, predixy\n"));
        let present = Path::new("/bin/sh");
        let runnable = runnable_options(&options, present)
            .ok()
            .map(|run| run.targets);
        assert_eq!(runnable, Some(vec![Direct, Rkproxy, Predixy]));
        options.targets = vec![Predixy];
        assert!(runnable_options(&options, nowhere).is_err());
        options.targets = vec![Rkproxy, Baseline];
        options.baseline = Some(PathBuf::from("/nonexistent/rkproxy-old"));
        assert!(runnable_options(&options, present).is_err());
    }

    #[test]
    fn baseline_runs_its_own_binary() {
        let options = options_for_table(&[BenchTarget::Rkproxy, BenchTarget::Baseline]);
        assert_eq!(
            rkproxy_binary(&options, BenchTarget::Baseline).ok(),
            Some(PathBuf::from("/tmp/rkproxy-old"))
        );
        assert_eq!(
            rkproxy_binary(&options, BenchTarget::Rkproxy).ok(),
            Some(project::release_rkproxy())
        );
        let without = BenchOptions {
            baseline: None,
            ..options
        };
        assert!(rkproxy_binary(&without, BenchTarget::Baseline).is_err());
    }

    #[test]
    fn twemproxy_config_names_one_server_without_ejection() {
        let text = twemproxy_config(ports::loopback(22121), "127.0.0.1:6390");
        assert!(text.contains("  listen: 127.0.0.1:22121\n"));
        assert!(text.contains("  redis: true\n"));
        assert!(text.contains("  auto_eject_hosts: false\n"));
        assert!(text.contains("    - 127.0.0.1:6390:1\n"));
        let over_unix = twemproxy_config(ports::loopback(22121), "/r/redis.sock");
        assert!(over_unix.contains("    - /r/redis.sock:1\n"));
    }
}
