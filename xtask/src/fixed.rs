//! The fixed-port servers shared by `demo` and `cluster up|down|status`.
//!
//! A standalone Redis on 16379, a six-node Redis Cluster on 17000-17005 (bus ports 27000-27005)
//! and, unless left out, a Kafka broker on 19092 (controller 19093), all detached from xtask with
//! their pid files under `target/rkproxy-servers/fixed/`. The Redis servers and Kafka are checked
//! and reused independently, so `cluster up --no-kafka` followed by `demo` only adds Kafka. An
//! `owner` file there records which command started them: a demo stops servers it started, but
//! leaves running servers that `cluster up` started.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::kafka::{self, KafkaSpec};
use crate::redis::{self, RedisKind, RedisSpec};
use crate::{bail, ports, project, shell, Result};

/// The standalone server's port.
pub const STANDALONE_PORT: u16 = 16379;
/// The cluster nodes' ports; each node's bus port is 10000 higher.
pub const CLUSTER_PORTS: [u16; 6] = [17000, 17001, 17002, 17003, 17004, 17005];

/// The Kafka broker's port.
pub const KAFKA_PORT: u16 = 19092;
/// The Kafka controller's port.
pub const KAFKA_CONTROLLER_PORT: u16 = 19093;

/// Which command started the fixed servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    ClusterUp,
    Demo,
}

impl Owner {
    fn as_str(self) -> &'static str {
        match self {
            Owner::ClusterUp => "cluster-up",
            Owner::Demo => "demo",
        }
    }
}

/// What `up` found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpOutcome {
    /// We started the servers.
    Started,
    /// Healthy servers were already running; the owner recorded for them (possibly unknown).
    Reused(Option<Owner>),
}

fn dir() -> PathBuf {
    project::servers_dir().join("fixed")
}

fn owner_file() -> PathBuf {
    dir().join("owner")
}

/// Reads which command started the running servers.
pub fn owner() -> Option<Owner> {
    match std::fs::read_to_string(owner_file()).ok()?.trim() {
        "cluster-up" => Some(Owner::ClusterUp),
        "demo" => Some(Owner::Demo),
        _ => None,
    }
}

/// Records which command is now responsible for stopping the servers.
pub fn set_owner(owner: Owner) -> Result<()> {
    std::fs::create_dir_all(dir())?;
    std::fs::write(owner_file(), owner.as_str())?;
    Ok(())
}

/// The seven servers, standalone first.
pub fn specs() -> Vec<RedisSpec> {
    let mut specs = vec![RedisSpec {
        name: "standalone".into(),
        port: STANDALONE_PORT,
        dir: dir().join(format!("standalone-{STANDALONE_PORT}")),
        kind: RedisKind::Standalone,
        daemonize: true,
    }];
    for port in CLUSTER_PORTS {
        specs.push(RedisSpec {
            name: format!("cluster-{port}"),
            port,
            dir: dir().join(format!("cluster-{port}")),
            kind: RedisKind::ClusterNode {
                bus_port: port + 10000,
            },
            daemonize: true,
        });
    }
    specs
}

/// The Kafka broker.
pub fn kafka_spec() -> KafkaSpec {
    KafkaSpec {
        port: KAFKA_PORT,
        controller_port: KAFKA_CONTROLLER_PORT,
        dir: dir().join(format!("kafka-{KAFKA_PORT}")),
        secure: None,
    }
}

fn running_kafka_pid() -> Option<u32> {
    shell::read_pid_file(&kafka_spec().pid_file()).filter(|pid| kafka::is_server_pid(*pid))
}

/// The cluster nodes' addresses.
pub fn cluster_addrs() -> Vec<SocketAddr> {
    CLUSTER_PORTS.into_iter().map(ports::loopback).collect()
}

/// The pid of a server we started that is still running.
fn running_pid(spec: &RedisSpec) -> Option<u32> {
    shell::read_pid_file(&spec.pid_file()).filter(|pid| redis::is_redis_pid(*pid))
}

/// Starts the servers, or reuses them when all of ours already run and are healthy. Servers of
/// ours in a broken state are stopped and started fresh. Ports held by other programs are an
/// error naming the port.
pub fn up(owner: Owner, with_kafka: bool) -> Result<UpOutcome> {
    let previous_owner = self::owner();
    let redis_started = up_redis()?;
    let kafka_started = if with_kafka {
        match up_kafka() {
            Ok(started) => started,
            Err(error) => {
                if redis_started {
                    eprintln!("stopping the Redis servers started above");
                    let _ = down();
                }
                return Err(error);
            }
        }
    } else {
        false
    };
    if redis_started || kafka_started {
        // Whoever starts the Redis set (or the first server at all) owns the set; servers that
        // were reused keep their owner.
        if previous_owner.is_none() || redis_started {
            set_owner(owner)?;
        }
        Ok(UpOutcome::Started)
    } else {
        Ok(UpOutcome::Reused(previous_owner))
    }
}

/// Brings up the Redis servers; returns whether it started them (false: reused).
fn up_redis() -> Result<bool> {
    let specs = specs();
    let running: Vec<Option<u32>> = specs.iter().map(running_pid).collect();
    if running.iter().all(Option::is_some) {
        let standalone_ok = redis::ping(specs[0].addr(), None);
        match redis::cluster_problem(&cluster_addrs()) {
            Ok(None) if standalone_ok => {
                eprintln!("Redis on 16379 and the cluster on 17000-17005 are already running; reusing them");
                return Ok(false);
            }
            Ok(Some(problem)) => eprintln!("the running cluster is not healthy ({problem})"),
            Err(error) => eprintln!("the running cluster is not healthy ({error})"),
            Ok(None) => eprintln!("the running standalone server does not answer PING"),
        }
    }
    let leftovers: Vec<u32> = running.iter().flatten().copied().collect();
    if !leftovers.is_empty() {
        eprintln!(
            "stopping {} Redis servers left from an earlier run, to start fresh ones",
            leftovers.len()
        );
        for pid in leftovers {
            shell::stop_pid(pid);
        }
    }

    for spec in &specs {
        let mut needed = vec![spec.port];
        if let RedisKind::ClusterNode { bus_port } = spec.kind {
            needed.push(bus_port);
        }
        for port in needed {
            check_port_free(port, &spec.name)?;
        }
    }

    // From here on, an error (or Ctrl-C) must not leave half a set running.
    if let Err(error) = start_all(&specs) {
        eprintln!("startup failed; stopping what was started");
        let _ = down();
        return Err(error);
    }
    eprintln!("started Redis on 16379 and a Redis Cluster on 17000-17005");
    Ok(true)
}

/// Brings up the Kafka broker; returns whether it started it (false: reused).
fn up_kafka() -> Result<bool> {
    let spec = kafka_spec();
    if let Some(pid) = running_kafka_pid() {
        if kafka::serves_metadata(spec.addr()) {
            eprintln!("Kafka on {KAFKA_PORT} is already running; reusing it");
            return Ok(false);
        }
        eprintln!("the running Kafka (pid {pid}) does not serve metadata; restarting it");
        shell::stop_pid(pid);
    }
    let ports_free = check_port_free(KAFKA_PORT, "kafka")
        .and_then(|()| check_port_free(KAFKA_CONTROLLER_PORT, "the kafka controller"));
    if let Err(error) = ports_free {
        bail!("{error}; or leave Kafka out with --no-kafka");
    }
    eprintln!("starting Kafka {} on {KAFKA_PORT}...", kafka::KAFKA_VERSION);
    kafka::start_detached(&spec)?;
    eprintln!("started Kafka on 127.0.0.1:{KAFKA_PORT}");
    Ok(true)
}

fn check_port_free(port: u16, what: &str) -> Result<()> {
    if !ports::is_free(port) {
        bail!(
            "port {port} (for {what}) is in use by a program not started by xtask; \
             stop it and try again (`ss -ltnp 'sport = :{port}'` shows which)"
        );
    }
    Ok(())
}

fn start_all(specs: &[RedisSpec]) -> Result<()> {
    for spec in specs {
        redis::start_daemon(spec)?;
    }
    let cluster = cluster_addrs();
    redis::create_cluster(&cluster, &dir().join("cluster-create.log"))?;
    redis::wait_cluster_ok(&cluster, Duration::from_secs(60))?;
    Ok(())
}

/// Stops every fixed server we started that is still running. Returns how many were stopped.
pub fn down() -> Result<usize> {
    let mut stopped = 0;
    let mut stubborn = Vec::new();
    let specs = specs();
    // Signal all first so they shut down in parallel, then wait for each.
    let mut pids: Vec<(String, u32)> = specs
        .iter()
        .filter_map(|spec| running_pid(spec).map(|pid| (spec.name.clone(), pid)))
        .collect();
    if let Some(pid) = running_kafka_pid() {
        pids.push(("kafka".to_string(), pid));
    }
    for (_, pid) in &pids {
        shell::signal(*pid, "TERM");
    }
    for (name, pid) in pids {
        if shell::stop_pid(pid) {
            stopped += 1;
        } else {
            stubborn.push(format!("{name} (pid {pid})"));
        }
    }
    let _ = std::fs::remove_file(owner_file());
    if !stubborn.is_empty() {
        bail!("could not stop {}", stubborn.join(", "));
    }
    Ok(stopped)
}

/// One server's state, for `cluster status`.
pub struct ServerStatus {
    pub name: String,
    pub addr: SocketAddr,
    pub pid: Option<u32>,
    pub answers_ping: bool,
    pub role: String,
}

/// The state of every fixed server.
pub fn status() -> Vec<ServerStatus> {
    let kafka = kafka_spec();
    let kafka_pid = running_kafka_pid();
    let kafka_ready = kafka_pid.is_some() && kafka::serves_metadata(kafka.addr());
    let kafka_status = ServerStatus {
        name: "kafka".to_string(),
        addr: kafka.addr(),
        pid: kafka_pid,
        answers_ping: kafka_ready,
        role: if kafka_ready {
            "broker+controller".to_string()
        } else {
            "-".to_string()
        },
    };
    let mut servers: Vec<ServerStatus> = specs()
        .iter()
        .map(|spec| {
            let answers_ping = redis::ping(spec.addr(), None);
            let role = if answers_ping {
                role_of(spec.addr())
            } else {
                "-".to_string()
            };
            ServerStatus {
                name: spec.name.clone(),
                addr: spec.addr(),
                pid: running_pid(spec),
                answers_ping,
                role,
            }
        })
        .collect();
    servers.push(kafka_status);
    servers
}

fn role_of(addr: SocketAddr) -> String {
    let Ok(mut connection) = crate::resp::Connection::connect(addr) else {
        return "?".to_string();
    };
    let Ok(info) = connection.text_command(&["INFO", "replication"]) else {
        return "?".to_string();
    };
    let role = crate::resp::info_field(&info, "role").unwrap_or("?");
    match crate::resp::info_field(&info, "master_port") {
        Some(master_port) if role == "slave" => format!("replica of {master_port}"),
        _ => role.to_string(),
    }
}
