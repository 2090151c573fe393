//! The reply-pairing stress test: no reply may ever reach the wrong request or the wrong client.
//!
//! Many clients at once, each on its own raw TCP connection, each sending random pipelines (single commands,
//! MGET/MSET/DEL/EXISTS over several hash tags, MULTI blocks of 1 to 2000 commands, errors, big values,
//! PING/ECHO), framing the replies itself with `resp_codec`. Every key and value is unique to its client and
//! request, and each client keeps a model of its own keys, so it knows the exact reply one Redis server would
//! give to each request, and checks every reply, in order (the expected reply is worked out when the reply is
//! checked, from the model as it is then: `pairing/checker.rs`). On a cluster pool a migrator moves the clients'
//! slots between masters the whole time, so the proxy meets ASK and MOVED, which a client must never see.
//!
//! One reply differs from one Redis server's, only during the migration: `-TRYAGAIN` for a command with keys in
//! one slot split between the two nodes, or for EXEC of a transaction (the command or transaction then had no
//! effect, and the model skips it), as a Redis Cluster would answer. The test counts and prints them.
//!
//! The run is reproducible per client: the seed is printed, and `RKPROXY_TEST_PAIRING_SEED=<seed>` replays the same
//! requests (the interleaving of clients and migration differs). `RKPROXY_TEST_PAIRING_MAX_MULTI=<n>` caps the MULTI
//! blocks, and `RKPROXY_TEST_PAIRING_REFUSED_IN_MULTI=0` leaves out the MULTI blocks with a command refused at queue
//! time (EXEC then fails with EXECABORT), and `RKPROXY_TEST_PAIRING_MIGRATE=0` keeps the cluster's slots still, to
//! tell one kind of failure from the rest.

mod checker;
mod migrator;
mod model;
mod script;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use resp_codec::{encode_command, parse_frame, Frame, Limits, ReplyDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_util::codec::Decoder;

use crate::support::*;
use checker::{Checker, TryAgainCounts, TryAgainPolicy};
use migrator::Migrator;
use model::show_bytes;
use script::{Script, Sent};

/// Clients at once, each on its own connection to the proxy.
const CLIENTS: usize = 14;
/// Pipelines each client sends at least (during a migration, more: until every slot has moved
/// [`MOVES_PER_SLOT`] times).
const PIPELINES: usize = 40;
/// During a migration, the clients go on until the migrator has moved each slot this many times (on average).
const MOVES_PER_SLOT: usize = 2;
/// The longest MULTI block (`RKPROXY_TEST_PAIRING_MAX_MULTI` may lower it).
const MAX_MULTI: usize = 2000;
/// No byte of reply for this long: the client reports the request it waits for instead of hanging.
const STALL_LIMIT: Duration = Duration::from_secs(30);
/// The clients stop sending after this, and the test fails saying what was left undone.
const RUN_LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_pair_with_requests_on_a_standalone_pool() {
    let _heavy = cpu_heavy().await;
    let settings = Settings::from_env();
    let proxy = start_proxy(&redis_addr()).await;
    let target = Target::Plain(proxy.local_addr());
    let report = run_clients(target, &unique("pairing"), &settings, None).await;
    proxy.shutdown().await;
    report.check();
}

/// The same clients over TLS to rkproxy's `tls_listen`, whose pool reaches the TLS-only redis-server: every
/// reply, big values and long MULTI blocks among them, crosses two TLS connections, in records of any size and
/// through the big-request lane (which a TLS connection takes by copying, not splicing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_pair_with_requests_over_tls_on_both_sides() {
    let _heavy = cpu_heavy().await;
    let settings = Settings::from_env();
    let proxy = start_proxy_toml(&format!(
        "tls_listen = '127.0.0.1:0'\ndefault_pool = 'secure'\n[tls]\ncert_file = '{}'\nkey_file = '{}'\n\
         [pools.secure]\nkind = 'standalone'\nnodes = ['{}']\ntls = true\nca_file = '{}'\n",
        tls_file("server.crt"),
        tls_file("server.key"),
        tls_redis(),
        tls_file("ca.crt"),
    ))
    .await;
    let target = Target::Tls(
        proxy.tls_local_addr().expect("tls_listen is on"),
        client_config("ca.crt", None),
    );
    let report = run_clients(target, &unique("pairing-tls"), &settings, None).await;
    proxy.shutdown().await;
    report.check();
}

/// The same clients talking to redis-server directly: shows that the expected replies are Redis's own, so a
/// failure of the tests above is the proxy's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expected_replies_are_those_of_redis_itself() {
    let _heavy = cpu_heavy().await;
    let settings = Settings::from_env();
    let redis: SocketAddr = redis_addr()
        .parse()
        .expect("RKPROXY_TEST_REDIS is host:port");
    let report = run_clients(
        Target::Plain(redis),
        &unique("pairing-direct"),
        &settings,
        None,
    )
    .await;
    report.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_pair_with_requests_on_a_cluster_pool_during_slot_migration() {
    let _heavy = cpu_heavy().await;
    log_from_env();
    let settings = Settings::from_env();
    let cluster = blocking(|| OwnCluster::start(5000)).await;
    let proxy = start_cluster_proxy(&cluster.addrs(), "").await;
    let prefix = unique("pairing");
    let owners = slot_owners(&cluster, &prefix);
    let masters = masters_among(&cluster.addrs());
    // `RKPROXY_TEST_PAIRING_MONITOR=1`: every command each master runs is recorded (MONITOR), and a failure
    // shows those that name the failing client's keys.
    let monitors: Vec<Monitor> = match std::env::var("RKPROXY_TEST_PAIRING_MONITOR").as_deref() {
        Ok("1") => masters
            .iter()
            .map(|master| Monitor::start(master))
            .collect(),
        _ => Vec::new(),
    };
    let migrator = settings
        .migrate
        .then(|| Migrator::start(masters, owners, settings.seed));
    let target = Target::Plain(proxy.local_addr());
    let report = run_clients(target, &prefix, &settings, migrator.as_ref()).await;
    let migrations = match migrator {
        Some(migrator) => blocking(move || migrator.finish()).await,
        None => Ok(0),
    };
    proxy.shutdown().await;
    let migrations = migrations.unwrap_or_else(|error| panic!("the migrator failed: {error}"));
    println!("pairing: {migrations} slot moves in all");
    if !report.failures.is_empty() {
        show_where_keys_are(&masters_among(&cluster.addrs()), &prefix);
        // What the nodes said about slots and keys meanwhile (a node that loses a slot it still holds keys of
        // deletes them).
        for line in cluster.logs("lot").iter().chain(&cluster.logs("poch")) {
            println!("pairing: {line}");
        }
        for key in keys_named(&report.failures.join("\n")) {
            for monitor in &monitors {
                for line in monitor.lines_naming(&key) {
                    println!("pairing: {} ran: {line}", monitor.master);
                }
            }
        }
    }
    report.check();
    assert!(
        report.moves_during_run >= report.moves_wanted,
        "only {} of {} slot moves while the clients ran (stopped at the run limit of {RUN_LIMIT:?})",
        report.moves_during_run,
        report.moves_wanted
    );
}

/// What this run sends: the seed, the largest MULTI block, whether some MULTI blocks have a command refused at
/// queue time, and (on a cluster) whether slots move meanwhile.
struct Settings {
    seed: u64,
    max_multi: usize,
    refused_in_multi: bool,
    migrate: bool,
}

impl Settings {
    /// From the `RKPROXY_TEST_PAIRING_*` variables, or the full test when they are unset; printed.
    fn from_env() -> Settings {
        let seed = std::env::var("RKPROXY_TEST_PAIRING_SEED")
            .ok()
            .map(|text| text.parse().expect("RKPROXY_TEST_PAIRING_SEED is a u64"))
            .unwrap_or_else(|| fastrand::u64(..));
        let max_multi = std::env::var("RKPROXY_TEST_PAIRING_MAX_MULTI")
            .ok()
            .map(|text| {
                text.parse()
                    .expect("RKPROXY_TEST_PAIRING_MAX_MULTI is a number")
            })
            .unwrap_or(MAX_MULTI);
        let refused_in_multi =
            std::env::var("RKPROXY_TEST_PAIRING_REFUSED_IN_MULTI").as_deref() != Ok("0");
        let migrate = std::env::var("RKPROXY_TEST_PAIRING_MIGRATE").as_deref() != Ok("0");
        println!(
            "pairing: seed {seed} (replay with RKPROXY_TEST_PAIRING_SEED={seed}), MULTI blocks up to {max_multi}, \
             queue-time errors in MULTI: {refused_in_multi}, slot migration (cluster): {migrate}"
        );
        Settings {
            seed,
            max_multi,
            refused_in_multi,
            migrate,
        }
    }
}

/// The outcome of one run: each client's first failure, and the counts of the clients that finished.
struct Report {
    seed: u64,
    failures: Vec<String>,
    finished: usize,
    commands: u64,
    multi_blocks: usize,
    largest_multi: usize,
    big_values: usize,
    /// Whether TRYAGAIN was accepted at all (during a migration only).
    try_again_accepted: bool,
    /// TRYAGAIN replies accepted by the clients that did not fail (a failed client's are in its failure).
    try_agains: TryAgainCounts,
    /// (client, TRYAGAIN replies it accepted), for the clients that accepted any.
    try_agains_per_client: Vec<(usize, usize)>,
    elapsed: Duration,
    moves_during_run: usize,
    moves_wanted: usize,
}

impl Report {
    fn check(&self) {
        println!(
            "pairing: {} of {CLIENTS} clients finished: {} commands, {} MULTI blocks (largest {}), {} big values; \
             {} slot moves meanwhile; {:?}",
            self.finished,
            self.commands,
            self.multi_blocks,
            self.largest_multi,
            self.big_values,
            self.moves_during_run,
            self.elapsed
        );
        if self.try_again_accepted {
            self.show_try_agains();
        }
        assert!(
            self.failures.is_empty(),
            "seed {} (replay with RKPROXY_TEST_PAIRING_SEED={}): {} client(s) got a wrong reply; first failure of each:\n{}",
            self.seed,
            self.seed,
            self.failures.len(),
            self.failures.join("\n\n")
        );
    }

    /// How often the proxy passed a TRYAGAIN on (so a run shows how common it is).
    fn show_try_agains(&self) {
        let per_client: Vec<String> = self
            .try_agains_per_client
            .iter()
            .map(|(client, count)| format!("client {client}: {count}"))
            .collect();
        println!(
            "pairing: {} TRYAGAIN replies accepted by the clients that did not fail ({} to multi-key commands, {} to \
             EXEC; per client: {})",
            self.try_agains.total(),
            self.try_agains.commands,
            self.try_agains.execs,
            per_client.join(", ")
        );
    }
}

/// One client's counts.
#[derive(Default)]
struct ClientCounts {
    commands: u64,
    multi_blocks: usize,
    largest_multi: usize,
    big_values: usize,
    try_agains: TryAgainCounts,
}

/// When the clients stop: after [`PIPELINES`] pipelines and, during a migration, once the migrator has made
/// `moves_wanted` moves; at once when one client has failed; and at the run limit whatever happened.
#[derive(Clone)]
struct Goal {
    moves_done: Option<Arc<AtomicUsize>>,
    moves_wanted: usize,
    deadline: Instant,
    failed: Arc<AtomicBool>,
}

impl Goal {
    /// Whether a client that has sent `pipelines` pipelines sends another.
    fn keep_going(&self, pipelines: usize) -> bool {
        let moving = self
            .moves_done
            .as_ref()
            .is_some_and(|done| done.load(Ordering::Relaxed) < self.moves_wanted);
        !self.failed.load(Ordering::Relaxed)
            && Instant::now() < self.deadline
            && (pipelines < PIPELINES || moving)
    }
}

/// Where the clients connect, and how.
#[derive(Clone)]
enum Target {
    Plain(SocketAddr),
    /// TLS, trusting the CAs of the configuration (the name checked is `localhost`).
    Tls(SocketAddr, Arc<rustls::ClientConfig>),
}

/// A client's connection, plaintext or TLS.
trait ClientConnection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientConnection for T {}

impl Target {
    async fn connect(&self) -> std::io::Result<Box<dyn ClientConnection>> {
        match self {
            Target::Plain(addr) => Ok(Box::new(TcpStream::connect(addr).await?)),
            Target::Tls(addr, config) => {
                Ok(Box::new(tls_connect(*addr, Arc::clone(config)).await?))
            }
        }
    }
}

/// Runs every client against the proxy at `proxy` (keys under `prefix`) and collects their outcomes.
async fn run_clients(
    proxy: Target,
    prefix: &str,
    settings: &Settings,
    migrator: Option<&Migrator>,
) -> Report {
    let started = Instant::now();
    let moves_before = migrator.map_or(0, Migrator::completed);
    let goal = Goal {
        moves_done: migrator.map(Migrator::progress),
        moves_wanted: moves_before + migrator.map_or(0, |m| MOVES_PER_SLOT * m.slots()),
        deadline: started + RUN_LIMIT,
        failed: Arc::new(AtomicBool::new(false)),
    };
    // TRYAGAIN is a cluster's answer during a migration; one Redis server never gives it.
    let try_again = match migrator {
        Some(_) => TryAgainPolicy::DuringMigration,
        None => TryAgainPolicy::Never,
    };
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let script = Script::new(
            client,
            prefix,
            settings.seed,
            settings.max_multi,
            settings.refused_in_multi,
        );
        let checker = Checker::new(try_again);
        tasks.push(tokio::spawn(run_client(
            proxy.clone(),
            script,
            checker,
            goal.clone(),
        )));
    }
    let mut report = Report {
        seed: settings.seed,
        failures: Vec::new(),
        finished: 0,
        commands: 0,
        multi_blocks: 0,
        largest_multi: 0,
        big_values: 0,
        try_again_accepted: try_again == TryAgainPolicy::DuringMigration,
        try_agains: TryAgainCounts::default(),
        try_agains_per_client: Vec::new(),
        elapsed: Duration::ZERO,
        moves_during_run: 0,
        moves_wanted: goal.moves_wanted - moves_before,
    };
    // A client stuck in a read gives up after the stall limit; this only guards against a bug in the test.
    let deadline = tokio::time::Instant::now() + RUN_LIMIT + 2 * STALL_LIMIT;
    for (client, task) in tasks.into_iter().enumerate() {
        match tokio::time::timeout_at(deadline, task).await {
            Err(_) => report.failures.push(format!(
                "client {client}: not finished within {:?}",
                RUN_LIMIT + 2 * STALL_LIMIT
            )),
            Ok(Err(panic)) => report
                .failures
                .push(format!("client {client} panicked: {panic}")),
            Ok(Ok(Err(failure))) => report.failures.push(failure),
            Ok(Ok(Ok(counts))) => {
                report.finished += usize::from(counts.commands > 0);
                report.commands += counts.commands;
                report.multi_blocks += counts.multi_blocks;
                report.largest_multi = report.largest_multi.max(counts.largest_multi);
                report.big_values += counts.big_values;
                report.try_agains.add(counts.try_agains);
                if counts.try_agains.total() > 0 {
                    let accepted = (client, counts.try_agains.total());
                    report.try_agains_per_client.push(accepted);
                }
            }
        }
    }
    report.elapsed = started.elapsed();
    report.moves_during_run = migrator.map_or(0, Migrator::completed) - moves_before;
    report
}

/// One client: pipelines until the goal is reached, then a last one that deletes its keys and ECHOes (which also
/// shows that no extra reply is left over). Stops early, without failing, once another client has failed.
async fn run_client(
    proxy: Target,
    mut script: Script,
    mut checker: Checker,
    goal: Goal,
) -> Result<ClientCounts, String> {
    let client = script.client();
    let mut stream = proxy
        .connect()
        .await
        .map_err(|error| format!("client {client}: connect: {error}"))?;
    let mut commands = 0;
    let mut pipelines = 0;
    while goal.keep_going(pipelines) {
        let sent = script.pipeline();
        commands +=
            send_pipeline(&mut stream, sent, &mut checker, &goal, client, pipelines).await?;
        pipelines += 1;
    }
    if goal.failed.load(Ordering::Relaxed) {
        return Ok(ClientCounts {
            try_agains: checker.try_agains,
            ..ClientCounts::default()
        });
    }
    if pipelines < PIPELINES {
        return Err(format!(
            "client {client}: only {pipelines} of {PIPELINES} pipelines within {RUN_LIMIT:?}"
        ));
    }
    let sent = script.final_pipeline();
    commands += send_pipeline(&mut stream, sent, &mut checker, &goal, client, pipelines).await?;
    Ok(ClientCounts {
        commands,
        multi_blocks: script.multi_blocks,
        largest_multi: script.largest_multi,
        big_values: script.big_values,
        try_agains: checker.try_agains,
    })
}

/// Sends one pipeline and checks its replies; a failure is marked in `goal`, so the other clients stop.
async fn send_pipeline(
    stream: &mut Box<dyn ClientConnection>,
    sent: Vec<Sent>,
    checker: &mut Checker,
    goal: &Goal,
    client: usize,
    pipeline: usize,
) -> Result<u64, String> {
    match exchange(stream, &sent, checker).await {
        Ok(()) => Ok(sent.len() as u64),
        Err(failure) => {
            goal.failed.store(true, Ordering::Relaxed);
            let accepted = checker.try_agains.total();
            Err(format!(
                "client {client}, pipeline {pipeline} (after {accepted} accepted TRYAGAIN replies): {failure}"
            ))
        }
    }
}

/// Writes one pipeline while reading and checking its replies (both at once: a pipeline can be far bigger than
/// the socket buffers).
async fn exchange(
    stream: &mut Box<dyn ClientConnection>,
    sent: &[Sent],
    checker: &mut Checker,
) -> Result<(), String> {
    let mut request = BytesMut::new();
    for one in sent {
        encode_command(&mut request, one.args.iter());
    }
    let (mut reader, mut writer) = tokio::io::split(stream);
    // Flushed: a TLS stream may still hold encrypted bytes once it took all of the request.
    let write = async {
        writer.write_all(&request).await?;
        writer.flush().await
    };
    let write = async {
        write
            .await
            .map_err(|error| format!("write failed: {error}"))
    };
    tokio::try_join!(write, read_replies(&mut reader, sent, checker))?;
    Ok(())
}

/// Reads one reply per request of `sent` and checks each against the model's expectation, in order.
async fn read_replies(
    reader: &mut (impl AsyncRead + Unpin),
    sent: &[Sent],
    checker: &mut Checker,
) -> Result<(), String> {
    let limits = Limits::default();
    let mut decoder = ReplyDecoder::new(limits);
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    let mut index = 0;
    while index < sent.len() {
        if let Some(reply) = decoder
            .decode(&mut buffer)
            .map_err(|error| failure(sent, index, &format!("unframeable reply: {error}")))?
        {
            let frame = parse_reply(sent, index, &reply, &limits)?;
            checker
                .check(&sent[index], &frame)
                .map_err(|problem| failure(sent, index, &problem))?;
            index += 1;
            continue;
        }
        let read = tokio::time::timeout(STALL_LIMIT, reader.read_buf(&mut buffer)).await;
        match read {
            Err(_) => {
                let waited = format!("no reply for {STALL_LIMIT:?}");
                return Err(failure(sent, index, &waited));
            }
            Ok(Ok(0)) => return Err(failure(sent, index, "the proxy closed the connection")),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(failure(sent, index, &format!("read failed: {error}"))),
        }
    }
    if !buffer.is_empty() {
        let extra = format!("bytes after the last reply: {}", show_bytes(&buffer));
        return Err(failure(sent, sent.len() - 1, &extra));
    }
    Ok(())
}

/// `reply`, the reply to `sent[index]` (one whole reply, as framed by the decoder), as a frame.
fn parse_reply(
    sent: &[Sent],
    index: usize,
    reply: &Bytes,
    limits: &Limits,
) -> Result<Frame, String> {
    match parse_frame(reply, limits) {
        Ok(Some((frame, used))) if used == reply.len() => Ok(frame),
        other => {
            let problem = format!("reply {} does not parse: {other:?}", show_bytes(reply));
            Err(failure(sent, index, &problem))
        }
    }
}

/// A failure message naming the request (its number, place in the pipeline and arguments) and the two before.
fn failure(sent: &[Sent], index: usize, problem: &str) -> String {
    let mut text = format!(
        "request #{} ({} of {} in this pipeline): {}\n  {problem}",
        sent[index].number,
        index + 1,
        sent.len(),
        show_args(&sent[index].args)
    );
    for earlier in sent[index.saturating_sub(2)..index].iter() {
        text.push_str(&format!(
            "\n  after #{}: {}",
            earlier.number,
            show_args(&earlier.args)
        ));
    }
    text
}

/// The first arguments of a command, long ones shortened.
fn show_args(args: &[Bytes]) -> String {
    let mut shown: Vec<String> = args.iter().take(6).map(|arg| show_bytes(arg)).collect();
    if args.len() > 6 {
        shown.push(format!("... ({} arguments)", args.len()));
    }
    shown.join(" ")
}

/// The master of each slot the clients' hash tags live in.
fn slot_owners(cluster: &OwnCluster, prefix: &str) -> HashMap<u16, String> {
    let mut owners = HashMap::new();
    for client in 0..CLIENTS {
        for tag in Script::new(client, prefix, 0, 1, false).tags() {
            let slot = cluster_router::key_slot(format!("{{{tag}}}").as_bytes());
            let owner = cluster
                .master_of_slot(slot)
                .expect("every slot has a master");
            owners.insert(slot, owner);
        }
    }
    owners
}

/// After a failure: which master holds each of the clients' keys now, and the slots in migration.
fn show_where_keys_are(masters: &[String], prefix: &str) {
    for master in masters {
        let listed = redis_cli_at(master, &["KEYS", &format!("*{prefix}*")]);
        let mut keys: Vec<&str> = listed.lines().collect();
        keys.sort_unstable();
        println!("pairing: keys on {master}: {}", keys.join(" "));
    }
    if let Some(master) = masters.first() {
        let nodes = redis_cli_at(master, &["CLUSTER", "NODES"]);
        println!("pairing: CLUSTER NODES from {master}:\n{nodes}");
    }
}

/// `redis-cli MONITOR` on one master, into a file.
struct Monitor {
    master: String,
    file: std::path::PathBuf,
    child: std::process::Child,
}

impl Monitor {
    fn start(master: &str) -> Monitor {
        let (host, port) = master.rsplit_once(':').expect("host:port");
        let file =
            std::env::temp_dir().join(format!("rkproxy-monitor-{}-{port}.txt", std::process::id()));
        let out = std::fs::File::create(&file).expect("monitor file");
        let child = std::process::Command::new("redis-cli")
            .args(["-h", host, "-p", port, "MONITOR"])
            .stdout(out)
            .spawn()
            .expect("redis-cli runs");
        Monitor {
            master: master.to_owned(),
            file,
            child,
        }
    }

    /// The last recorded commands that name `key`.
    fn lines_naming(&self, key: &str) -> Vec<String> {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        let quoted = format!("\"{key}\"");
        let lines: Vec<String> = text
            .lines()
            .filter(|line| line.contains(&quoted))
            .map(str::to_owned)
            .collect();
        lines[lines.len().saturating_sub(60)..].to_vec()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The distinct `{...}:kN` keys a failure message names.
fn keys_named(text: &str) -> Vec<String> {
    let mut keys: Vec<String> = text
        .split('"')
        .filter(|part| part.starts_with('{') && part.contains("}:k"))
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys.dedup();
    keys
}
