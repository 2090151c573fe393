//! The `bigreq` section of `cargo xtask bench`: big requests and clients that do not read, and what they cost in
//! memory and in the latency of a small request beside them (the load of the big-request issue).
//!
//! Row 1, through every chosen target (direct redis-server, rkproxy, twemproxy, predixy), each a fresh process
//! in front of one redis-server of the section's own, and `rkproxy-unix` and `twemproxy-unix`, each reaching that
//! server over its Unix domain socket (as when the proxy runs beside its Redis; rkproxy's `nodes =
//! ["unix:/path"]`): 20 clients each pipeline 50 SETs of 1 MiB at once (all
//! 50 written before any reply is read; each client overwrites one key of its own, so Redis holds 20 MiB);
//! meanwhile a control client GETs a small key every 10 ms. The row shows the proxy's peak RSS (`VmHWM` of its
//! process, read after the load), the small GETs' p50/p99 and the time until every SET was answered.
//!
//! Row 2, rkproxy only, with `client_limits.max_output_bytes = 16777216`: 10 clients each pipeline 2000 GETs
//! of a 100 KB value and never read; each then writes a PING every 50 ms, which fails once the proxy closed the
//! connection. The control client GETs the small key every 10 ms meanwhile. The row shows the peak RSS,
//! how many slow readers were disconnected (within 30 s), and the control client's errors.
//!
//! Each target runs once per round (a fresh process each time, since `VmHWM` is a peak since start), every
//! target in turn within a round (row 1); the table shows the median of the rounds and, for row 1, the median of
//! the per-round ratios of each target's time to direct's, with its 95% interval.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::{
    median, paired_median, predixy_standalone_pool, start_predixy, start_rkproxy,
    start_twemproxy_named, wait_round_trip,
};
use crate::flags::{BenchOptions, BenchTarget, Named};
use crate::redis::{self, RedisKind, RedisSpec};
use crate::shell::{self, ChildGuard};
use crate::{bail, ports, Result};

/// Row 1: clients, SETs per client, value size.
const SET_CLIENTS: usize = 20;
const SETS_PER_CLIENT: usize = 50;
const SET_VALUE_BYTES: usize = 1024 * 1024;
/// Row 2: slow readers, GETs each, value size, and rkproxy's output limit.
const SLOW_READERS: usize = 10;
const GETS_PER_READER: usize = 2000;
const GET_VALUE_BYTES: usize = 100 * 1024;
const OUTPUT_LIMIT: usize = 16_777_216;
/// How long row 2 waits for every slow reader to be disconnected.
const DISCONNECT_WAIT: Duration = Duration::from_secs(30);
/// The control client's GET interval.
const CONTROL_INTERVAL: Duration = Duration::from_millis(10);
/// The small key the control client reads.
const SMALL_KEY: &str = "bigreq:small";
const BIG_KEY: &str = "bigreq:big";
/// The goals for rkproxy in row 1.
const RSS_GOAL_MB: f64 = 64.0;
const P99_GOAL_VS_DIRECT: f64 = 2.0;
const TIME_GOAL_VS_DIRECT: f64 = 1.2;

/// What one run of a load measured.
#[derive(Debug, Clone, Default)]
struct Run {
    peak_rss_mb: Option<f64>,
    /// The proxy's CPU time (user and system, every thread) from its start to the end of the load, in seconds:
    /// steadier than the wall time on a shared machine.
    cpu_s: Option<f64>,
    p50_ms: f64,
    p99_ms: f64,
    total_s: f64,
    control_gets: usize,
    control_errors: usize,
    /// Row 2: slow readers disconnected.
    disconnected: usize,
}

/// Runs the section and returns its table (printed after the main one).
pub(super) fn run(options: &BenchOptions, dir: &Path, guard: &mut ChildGuard) -> Result<String> {
    let redis_spec = RedisSpec {
        name: "redis-bigreq".into(),
        port: ports::free_port()?,
        dir: dir.join("redis-bigreq"),
        kind: RedisKind::StandaloneWithSocket,
        daemonize: false,
    };
    guard.push("redis-bigreq", redis::spawn_child(&redis_spec)?);
    let redis_addr = redis_spec.addr();
    let redis_pid = guard.child_mut("redis-bigreq").map(|child| child.id());
    wait_round_trip(BenchTarget::Direct, redis_addr)?;
    set_value(redis_addr, SMALL_KEY, b"v")?;
    set_value(redis_addr, BIG_KEY, &vec![b'x'; GET_VALUE_BYTES])?;

    let unix_node = redis_spec.unix_socket_node();
    let mut targets: Vec<RowTarget> = Vec::new();
    for &target in &options.targets {
        if target == BenchTarget::Baseline && options.baseline.is_none() {
            continue;
        }
        targets.push(RowTarget {
            target,
            over_unix: false,
        });
        if matches!(target, BenchTarget::Rkproxy | BenchTarget::Twemproxy) {
            targets.push(RowTarget {
                target,
                over_unix: true,
            });
        }
    }
    // Round by round, every target in turn (the order rotated each round), so that a run can be paired with
    // direct's run of the same round, moments apart.
    let mut runs_of: Vec<Vec<Run>> = vec![Vec::new(); targets.len()];
    for round in 0..options.rounds {
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.rotate_left(round % targets.len().max(1));
        for index in order {
            let backend = Backend {
                addr: redis_addr,
                node: if targets[index].over_unix {
                    unix_node.clone()
                } else {
                    redis_addr.to_string()
                },
            };
            let run = row_one_run(
                options,
                targets[index],
                round,
                &backend,
                redis_pid,
                dir,
                guard,
            )?;
            runs_of[index].push(run);
        }
    }
    let direct = targets
        .iter()
        .position(|row| row.target == BenchTarget::Direct)
        .map(|index| runs_of[index].as_slice());
    let mut rows = Vec::new();
    for (target, runs) in targets.iter().zip(&runs_of) {
        rows.push(row_one_line(*target, runs, direct));
    }

    if options.wants_target(BenchTarget::Rkproxy) {
        let mut runs = Vec::new();
        for round in 0..options.rounds {
            let name = format!("bigreq-slow-rkproxy-{round}");
            let backend = Backend {
                addr: redis_addr,
                node: redis_addr.to_string(),
            };
            let (addr, pid) = start_target(
                options,
                BenchTarget::Rkproxy,
                &name,
                &backend,
                Some(OUTPUT_LIMIT),
                dir,
                guard,
            )?;
            eprintln!(
                "bigreq     rkproxy    {addr} slow readers, round {}",
                round + 1
            );
            let mut run = slow_readers(addr)?;
            run.peak_rss_mb = pid.and_then(peak_rss_mb);
            run.cpu_s = pid.and_then(cpu_seconds);
            stop(pid);
            runs.push(run);
        }
        rows.push(row_two_line(&medians(&runs)));
    }
    Ok(render(&rows))
}

/// A target of row 1: rkproxy and twemproxy appear twice, reaching Redis over TCP and over its Unix domain
/// socket (predixy reaches Redis over TCP only).
#[derive(Debug, Clone, Copy)]
struct RowTarget {
    target: BenchTarget,
    over_unix: bool,
}

impl RowTarget {
    fn name(self) -> &'static str {
        match (self.target, self.over_unix) {
            (BenchTarget::Rkproxy, true) => "rkproxy-unix",
            (BenchTarget::Twemproxy, true) => "twemproxy-unix",
            (target, _) => target.name(),
        }
    }
}

/// The section's redis-server: its TCP address, and the node rkproxy's pool names (its address, or
/// `unix:/path`).
struct Backend {
    addr: SocketAddr,
    node: String,
}

impl Backend {
    /// The server as twemproxy names it: the node without rkproxy's `unix:` prefix.
    fn twemproxy_server(&self) -> &str {
        self.node.strip_prefix("unix:").unwrap_or(&self.node)
    }
}

/// One round of row 1 through `row`, a fresh process (except `direct`), with its peak RSS and CPU time.
fn row_one_run(
    options: &BenchOptions,
    row: RowTarget,
    round: usize,
    backend: &Backend,
    redis_pid: Option<u32>,
    dir: &Path,
    guard: &mut ChildGuard,
) -> Result<Run> {
    let target = row.target;
    let name = format!("bigreq-{}-{round}", row.name());
    let (addr, pid) = start_target(options, target, &name, backend, None, dir, guard)?;
    eprintln!("bigreq     {:<12} {addr} round {}", row.name(), round + 1);
    let redis_before = redis_pid.and_then(cpu_seconds);
    let mut run = big_sets(addr)?;
    if let (Some(before), Some(after)) = (redis_before, redis_pid.and_then(cpu_seconds)) {
        eprintln!(
            "bigreq     {:<12} redis-server cpu {:.2} s during the load",
            row.name(),
            after - before
        );
    }
    run.peak_rss_mb = pid.and_then(peak_rss_mb);
    run.cpu_s = pid.and_then(cpu_seconds);
    if let Some(split) = pid.and_then(cpu_split) {
        eprintln!("bigreq     {:<12} {split}", row.name());
    }
    stop(pid);
    Ok(run)
}

/// Starts `target` in front of Redis (a fresh process, except `direct`); returns its address and process id.
fn start_target(
    options: &BenchOptions,
    target: BenchTarget,
    name: &str,
    backend: &Backend,
    max_output_bytes: Option<usize>,
    dir: &Path,
    guard: &mut ChildGuard,
) -> Result<(SocketAddr, Option<u32>)> {
    let run_dir = dir.join(name);
    std::fs::create_dir_all(&run_dir)?;
    let redis_addr = backend.addr;
    let addr = match target {
        BenchTarget::Direct => return Ok((redis_addr, None)),
        BenchTarget::Rkproxy | BenchTarget::Baseline => {
            let addr = ports::loopback(ports::free_port()?);
            let config = run_dir.join("rkproxy.toml");
            std::fs::write(
                &config,
                rkproxy_config(addr, &backend.node, max_output_bytes),
            )?;
            let args = ["--config".to_string(), config.display().to_string()];
            start_rkproxy(options, target, name, addr, &args, &run_dir, guard)?;
            addr
        }
        BenchTarget::Twemproxy => {
            start_twemproxy_named(name, backend.twemproxy_server(), &run_dir, guard)?
        }
        BenchTarget::Predixy => {
            let pool = predixy_standalone_pool(redis_addr);
            start_predixy(name, &pool, &run_dir, guard)?
        }
    };
    wait_round_trip(target, addr)?;
    let pid = guard.child_mut(name).map(|child| child.id());
    Ok((addr, pid))
}

/// The rkproxy config of the section: one standalone pool whose node is `redis`; row 2 sets the output limit.
fn rkproxy_config(listen: SocketAddr, redis: &str, max_output_bytes: Option<usize>) -> String {
    let limits = max_output_bytes
        .map(|limit| format!("[client_limits]\nmax_output_bytes = {limit}\n"))
        .unwrap_or_default();
    format!(
        "listen = \"{listen}\"\ndefault_pool = \"main\"\nlog = \"warn\"\n{limits}\
         [pools.main]\nkind = \"standalone\"\nnodes = [\"{redis}\"]\n"
    )
}

fn stop(pid: Option<u32>) {
    if let Some(pid) = pid {
        shell::stop_pid(pid);
    }
}

/// `VmHWM` (peak resident set) of process `pid`, in MB.
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The CPU time of process `pid` so far, in seconds: the sum over its threads of the time they ran
/// (`/proc/<pid>/task/*/schedstat`, first field, in nanoseconds).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut nanoseconds: u64 = 0;
    for task in tasks.flatten() {
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        let ran: u64 = schedstat.split_whitespace().next()?.parse().ok()?;
        nanoseconds += ran;
    }
    Some(nanoseconds as f64 / 1e9)
}

/// The user and system CPU time and the minor page faults of process `pid` (`/proc/<pid>/stat`), as a line
/// for the log: where the proxy's CPU time goes (system time is mostly the copies of the socket data).
fn cpu_split(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |number: usize| -> Option<f64> { fields.get(number - 3)?.parse().ok() };
    // Fields 10 (minflt), 14 (utime) and 15 (stime), in clock ticks of 1/100 s.
    let (faults, user, system) = (field(10)?, field(14)?, field(15)?);
    Some(format!(
        "cpu user {:.2} s, system {:.2} s, minor faults {faults:.0}",
        user / 100.0,
        system / 100.0
    ))
}

fn set_value(addr: SocketAddr, key: &str, value: &[u8]) -> Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(&set_command(key, value))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line != "+OK\r\n" {
        bail!("SET {key} through {addr}: {line:?}");
    }
    Ok(())
}

fn set_command(key: &str, value: &[u8]) -> Vec<u8> {
    let mut command = format!(
        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n",
        key.len(),
        value.len()
    )
    .into_bytes();
    command.extend_from_slice(value);
    command.extend_from_slice(b"\r\n");
    command
}

fn get_command(key: &str) -> Vec<u8> {
    format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).into_bytes()
}

/// Row 1: 20 clients each pipeline 50 SETs of 1 MiB at once, beside the control client.
fn big_sets(addr: SocketAddr) -> Result<Run> {
    let stop = Arc::new(AtomicBool::new(false));
    let control = spawn_control(addr, Arc::clone(&stop))?;
    let start = Arc::new(Barrier::new(SET_CLIENTS + 1));
    let mut clients = Vec::new();
    for client in 0..SET_CLIENTS {
        let start = Arc::clone(&start);
        clients.push(std::thread::spawn(move || -> Result<()> {
            let key = format!("bigreq:set:{client}");
            let one = set_command(&key, &vec![b's'; SET_VALUE_BYTES]);
            let pipeline = one.repeat(SETS_PER_CLIENT);
            let stream = TcpStream::connect(addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(120)))?;
            let mut writer = stream.try_clone()?;
            start.wait();
            let sending = std::thread::spawn(move || writer.write_all(&pipeline));
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            for n in 0..SETS_PER_CLIENT {
                line.clear();
                reader.read_line(&mut line)?;
                if line != "+OK\r\n" {
                    bail!("SET {n} of client {client}: {line:?}");
                }
            }
            sending.join().map_err(|_| "the writer thread panicked")??;
            Ok(())
        }));
    }
    start.wait();
    let started = Instant::now();
    let mut failure = None;
    for client in clients {
        match client.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failure = Some(error.to_string()),
            Err(_) => failure = Some("a client thread panicked".into()),
        }
    }
    let total_s = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, errors) = control.join().map_err(|_| "the control client panicked")?;
    if let Some(failure) = failure {
        bail!("bigreq SETs through {addr}: {failure}");
    }
    Ok(Run {
        p50_ms: percentile(&mut latencies, 0.50),
        p99_ms: percentile(&mut latencies, 0.99),
        total_s,
        control_gets: latencies.len(),
        control_errors: errors,
        ..Run::default()
    })
}

/// Row 2: 10 clients pipeline 2000 GETs of 100 KB each and never read, beside the control client.
fn slow_readers(addr: SocketAddr) -> Result<Run> {
    let stop = Arc::new(AtomicBool::new(false));
    let control = spawn_control(addr, Arc::clone(&stop))?;
    let started = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..SLOW_READERS {
        readers.push(std::thread::spawn(move || -> Result<bool> {
            let mut stream = TcpStream::connect(addr)?;
            stream.set_write_timeout(Some(Duration::from_millis(200)))?;
            let pipeline = get_command(BIG_KEY).repeat(GETS_PER_READER);
            write_ignoring_timeouts(&mut stream, &pipeline)?;
            Ok(wait_until_closed(&mut stream))
        }));
    }
    let mut disconnected = 0;
    for reader in readers {
        if matches!(reader.join(), Ok(Ok(true))) {
            disconnected += 1;
        }
    }
    let total_s = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, errors) = control.join().map_err(|_| "the control client panicked")?;
    Ok(Run {
        p50_ms: percentile(&mut latencies, 0.50),
        p99_ms: percentile(&mut latencies, 0.99),
        total_s,
        control_gets: latencies.len(),
        control_errors: errors,
        disconnected,
        ..Run::default()
    })
}

/// Writes `bytes`; a write that times out (the proxy stopped reading: backpressure) just stops the writing.
fn write_ignoring_timeouts(stream: &mut TcpStream, bytes: &[u8]) -> Result<()> {
    match stream.write_all(bytes) {
        Ok(()) => Ok(()),
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// Writes a PING every 50 ms, never reading, until a write fails (the proxy closed the connection: true) or
/// [`DISCONNECT_WAIT`] passed (false).
fn wait_until_closed(stream: &mut TcpStream) -> bool {
    let deadline = Instant::now() + DISCONNECT_WAIT;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        match stream.write(b"*1\r\n$4\r\nPING\r\n") {
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// The control client: GET the small key every 10 ms until `stop`; returns the latencies (ms) and errors.
fn spawn_control(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<(Vec<f64>, usize)>> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(std::thread::spawn(move || {
        let mut latencies = Vec::new();
        let mut errors = 0;
        let Ok(mut writer) = stream.try_clone() else {
            return (latencies, 1);
        };
        let mut reader = BufReader::new(stream);
        let command = get_command(SMALL_KEY);
        let expected = b"$1\r\nv\r\n";
        let mut reply = [0u8; 7];
        while !stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            let ok = writer.write_all(&command).is_ok()
                && reader.read_exact(&mut reply).is_ok()
                && &reply == expected;
            if ok {
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            } else {
                errors += 1;
                break;
            }
            std::thread::sleep(CONTROL_INTERVAL);
        }
        (latencies, errors)
    }))
}

fn percentile(values: &mut [f64], quantile: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 - 1.0) * quantile).round() as usize;
    values[index.min(values.len() - 1)]
}

/// The median of each measure over the rounds (counts: the worst round).
fn medians(runs: &[Run]) -> Run {
    let of = |pick: fn(&Run) -> f64| median(&mut runs.iter().map(pick).collect::<Vec<_>>());
    Run {
        peak_rss_mb: runs
            .iter()
            .all(|run| run.peak_rss_mb.is_some())
            .then(|| of(|run| run.peak_rss_mb.unwrap_or_default())),
        cpu_s: runs
            .iter()
            .all(|run| run.cpu_s.is_some())
            .then(|| of(|run| run.cpu_s.unwrap_or_default())),
        p50_ms: of(|run| run.p50_ms),
        p99_ms: of(|run| run.p99_ms),
        total_s: of(|run| run.total_s),
        control_gets: runs.iter().map(|run| run.control_gets).min().unwrap_or(0),
        control_errors: runs.iter().map(|run| run.control_errors).max().unwrap_or(0),
        disconnected: runs.iter().map(|run| run.disconnected).min().unwrap_or(0),
    }
}

fn rss_cell(run: &Run) -> String {
    run.peak_rss_mb
        .map_or_else(|| "–".to_string(), |mb| format!("{mb:.0} MB"))
}

fn cpu_cell(run: &Run) -> String {
    run.cpu_s
        .map_or_else(|| "–".to_string(), |seconds| format!("{seconds:.2} s"))
}

/// The time against direct's in the same run, when both were measured.
fn ratio_cell(run: &Run, direct: Option<&Run>) -> String {
    direct.filter(|direct| direct.total_s > 0.0).map_or_else(
        || "–".to_string(),
        |direct| format!("{:.2}x", run.total_s / direct.total_s),
    )
}

/// The median of the per-round time ratios of `runs` to direct's runs (same round), with its 95% interval.
fn paired_time_cell(runs: &[Run], direct: Option<&[Run]>) -> String {
    match direct {
        Some(direct)
            if runs.len() == direct.len() && direct.iter().all(|run| run.total_s > 0.0) =>
        {
            paired_median(
                runs.iter()
                    .zip(direct)
                    .map(|(run, direct)| run.total_s / direct.total_s)
                    .collect(),
            )
        }
        _ => "–".to_string(),
    }
}

fn row_one_line(row: RowTarget, runs: &[Run], direct: Option<&[Run]>) -> String {
    let target = row.target;
    let run = medians(runs);
    let direct_median = direct.map(medians);
    let goal = if target == BenchTarget::Rkproxy {
        row_one_goal(&run, direct_median.as_ref())
    } else {
        String::new()
    };
    let paired = match target {
        BenchTarget::Direct => String::new(),
        _ => paired_time_cell(runs, direct),
    };
    format!(
        "| {SET_CLIENTS} clients x {SETS_PER_CLIENT} pipelined SETs of 1 MiB | {} | {} | {} | {:.1} | {:.1} | {:.2} s | {} | {paired} | control: {} GETs, {} errors | {goal} |",
        row.name(),
        rss_cell(&run),
        cpu_cell(&run),
        run.p50_ms,
        run.p99_ms,
        run.total_s,
        ratio_cell(&run, direct_median.as_ref()),
        run.control_gets,
        run.control_errors,
    )
}

/// The goals for rkproxy: peak RSS, p99 and time against direct.
fn row_one_goal(run: &Run, direct: Option<&Run>) -> String {
    let mut verdicts = Vec::new();
    if let Some(mb) = run.peak_rss_mb {
        verdicts.push(verdict(
            mb <= RSS_GOAL_MB,
            &format!("RSS <= {RSS_GOAL_MB:.0} MB"),
        ));
    }
    if let Some(direct) = direct {
        verdicts.push(verdict(
            run.p99_ms <= P99_GOAL_VS_DIRECT * direct.p99_ms,
            &format!("p99 <= {P99_GOAL_VS_DIRECT}x direct"),
        ));
        verdicts.push(verdict(
            run.total_s <= TIME_GOAL_VS_DIRECT * direct.total_s,
            &format!("time <= {TIME_GOAL_VS_DIRECT}x direct"),
        ));
    }
    verdicts.join("; ")
}

fn verdict(met: bool, goal: &str) -> String {
    format!("{goal}: {}", if met { "met" } else { "missed" })
}

fn row_two_line(run: &Run) -> String {
    let met = run.disconnected == SLOW_READERS && run.control_errors == 0;
    format!(
        "| {SLOW_READERS} clients x {GETS_PER_READER} pipelined GETs of 100 KB, never read (max_output_bytes = {OUTPUT_LIMIT}) | rkproxy | {} | {} | {:.1} | {:.1} | {:.2} s | – | – | {}/{SLOW_READERS} slow readers disconnected; control: {} GETs, {} errors | {} |",
        rss_cell(run),
        cpu_cell(run),
        run.p50_ms,
        run.p99_ms,
        run.total_s,
        run.disconnected,
        run.control_gets,
        run.control_errors,
        verdict(met, "every slow reader disconnected, control without errors"),
    )
}

fn render(rows: &[String]) -> String {
    let mut out = String::from(
        "\n| bigreq load | target | peak RSS (VmHWM) | proxy CPU | small GET p50 ms | small GET p99 ms | time | time vs direct | time vs direct, paired (95% CI) | clients | goal |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        out.push_str(row);
        out.push('\n');
    }
    out.push_str(
        "- bigreq: every target a fresh process per round in front of one redis-server; the control client GETs a \
         small key every 10 ms during the load; time is until every SET was answered (row 1) or every slow \
         reader was disconnected (row 2, at most 30 s); proxy CPU is the proxy process's CPU time (all threads, \
         from its start to the end of the load); each round runs every target in turn, and the paired column is \
         the median of the per-round ratios of a target's time to direct's; rkproxy-unix and twemproxy-unix reach \
         the same redis-server over its Unix domain socket (rkproxy: nodes = [\"unix:/path\"]), the clients and \
         direct over TCP as for every target.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_sorted_samples() {
        let mut values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut values, 0.5), 51.0);
        assert_eq!(percentile(&mut values, 0.99), 99.0);
        assert!(percentile(&mut [], 0.5).is_nan());
    }

    #[test]
    fn row_one_pairs_each_round_with_directs_round() {
        let run = |total_s: f64| Run {
            total_s,
            ..Run::default()
        };
        // The rounds differ by far more than the 1.5x between rkproxy and direct in each round.
        let direct: Vec<Run> = [0.5, 1.0, 0.6, 2.0, 0.8, 0.7].map(run).into();
        let rkproxy: Vec<Run> = [0.75, 1.5, 0.9, 3.0, 1.2, 1.05].map(run).into();
        assert_eq!(
            paired_time_cell(&rkproxy, Some(&direct)),
            "1.500 (1.500-1.500)"
        );
        let over_tcp = RowTarget {
            target: BenchTarget::Rkproxy,
            over_unix: false,
        };
        let line = row_one_line(over_tcp, &rkproxy, Some(&direct));
        assert!(line.contains("| 1.50x | 1.500 (1.500-1.500) |"), "{line}");
        assert_eq!(paired_time_cell(&rkproxy, None), "–");
    }

    #[test]
    fn the_slow_reader_config_sets_the_output_limit() {
        let listen: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let config = rkproxy_config(listen, "127.0.0.1:2", Some(OUTPUT_LIMIT));
        assert!(config.contains("max_output_bytes = 16777216"));
        let over_unix = rkproxy_config(listen, "unix:/r/redis.sock", None);
        assert!(!over_unix.contains("client_limits"));
        assert!(over_unix.contains("nodes = [\"unix:/r/redis.sock\"]"));
    }
}
