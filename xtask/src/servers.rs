//! The throw-away server set that `cargo xtask test` runs the workspace tests against.
//!
//! Every server is a child process on a free loopback port, with its data and log under
//! `target/rkproxy-servers/test-<xtask pid>/`. [`TestServers`] stops them all when dropped, so a
//! failing test run, an error during startup and Ctrl-C all end with no server left running.
//!
//! Adding a kind of server means: start it in [`TestServers::start`] (pushing its process into the
//! guard), keep its address in a field, and export it in [`TestServers::env`].
//!
//! `bench` starts the same cluster on its own with [`start_cluster`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::ports::PortReserver;
use crate::redis::{self, RedisKind, RedisSpec};
use crate::shell::{self, ChildGuard};
use crate::{kafka, ports, project, tls, Result};

/// How many nodes the test cluster has: three masters with one replica each.
pub const CLUSTER_NODES: usize = 6;

/// Which optional servers to start besides the Redis ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerChoice {
    pub kafka: bool,
}

/// Running test servers; dropping this stops them.
pub struct TestServers {
    pub dir: PathBuf,
    pub redis: SocketAddr,
    pub redis_auth: SocketAddr,
    pub cluster: Vec<SocketAddr>,
    /// The TLS-only redis-server, the TLS cluster's nodes, and their certificates' folder (`crate::tls`).
    pub tls_redis: SocketAddr,
    pub tls_cluster: Vec<SocketAddr>,
    pub tls_dir: PathBuf,
    pub kafka: Option<SocketAddr>,
    /// The broker's spec, for the secured listeners and the certificates the tests read.
    kafka_spec: Option<kafka::KafkaSpec>,
    /// Keep `dir` (logs, configs) after stopping.
    pub keep_data: bool,
    guard: ChildGuard,
    stopped: bool,
}

impl TestServers {
    /// Starts the whole set and waits until each server is ready (the cluster fully formed).
    pub fn start(choice: ServerChoice) -> Result<TestServers> {
        clean_up_interrupted_runs();
        let dir = project::servers_dir().join(format!("test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // The struct exists from the start so that an error halfway stops what already runs.
        let mut servers = TestServers {
            dir: dir.clone(),
            redis: ports::loopback(0),
            redis_auth: ports::loopback(0),
            cluster: Vec::new(),
            tls_redis: ports::loopback(0),
            tls_cluster: Vec::new(),
            tls_dir: dir.join("tls"),
            kafka: None,
            kafka_spec: None,
            keep_data: true,
            guard: ChildGuard::default(),
            stopped: false,
        };

        let mut reserver = PortReserver::default();
        let mut specs = vec![
            RedisSpec {
                name: "redis".into(),
                port: reserver.reserve()?,
                dir: dir.join("redis"),
                kind: RedisKind::Standalone,
                daemonize: false,
            },
            RedisSpec {
                name: "redis-auth".into(),
                port: reserver.reserve()?,
                dir: dir.join("redis-auth"),
                kind: RedisKind::StandaloneAuth,
                daemonize: false,
            },
        ];
        specs.extend(cluster_specs(&mut reserver, &dir)?);
        let first_tls = specs.len();
        specs.extend(crate::redis::tls_server_specs(&mut reserver, &dir)?);
        drop(reserver);
        let tls_started = Instant::now();
        let tls_files = tls::TlsFiles::generate(&servers.tls_dir)?;

        // The JVM starts in the background while the Redis servers come up.
        let kafka = if choice.kafka {
            Some(kafka::spawn_child_with(
                &dir.join("kafka"),
                &mut servers.guard,
                true,
            )?)
        } else {
            None
        };

        for spec in &mut specs {
            spawn_with_port_retries(spec, &mut servers.guard)?;
        }
        servers.redis = specs[0].addr();
        servers.redis_auth = specs[1].addr();
        servers.cluster = specs[2..first_tls].iter().map(RedisSpec::addr).collect();
        servers.tls_redis = specs[first_tls].addr();
        servers.tls_cluster = specs[first_tls + 1..].iter().map(RedisSpec::addr).collect();

        redis::create_cluster(&servers.cluster, &dir.join("cluster-create.log"))?;
        redis::wait_cluster_ok(&servers.cluster, Duration::from_secs(60))?;
        tls_files.create_cluster(&servers.tls_cluster, Duration::from_secs(60))?;
        eprintln!(
            "TLS servers ready (certificates, one server, a {}-node cluster; {:.1} s since their certificates were made)",
            servers.tls_cluster.len(),
            tls_started.elapsed().as_secs_f64()
        );

        if let Some(kafka) = kafka {
            kafka::wait_child_ready(&kafka, &mut servers.guard)?;
            servers.kafka = Some(kafka.addr());
            servers.kafka_spec = Some(kafka);
        }
        servers.keep_data = false;
        Ok(servers)
    }

    /// The environment variables the workspace tests read.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let cluster: Vec<String> = self.cluster.iter().map(SocketAddr::to_string).collect();
        let tls_cluster: Vec<String> = self.tls_cluster.iter().map(SocketAddr::to_string).collect();
        let mut vars = vec![
            ("RKPROXY_TEST_REDIS", self.redis.to_string()),
            ("RKPROXY_TEST_REDIS_AUTH", self.redis_auth.to_string()),
            ("RKPROXY_TEST_CLUSTER", cluster.join(",")),
            ("RKPROXY_TEST_TLS_REDIS", self.tls_redis.to_string()),
            ("RKPROXY_TEST_TLS_CLUSTER", tls_cluster.join(",")),
            ("RKPROXY_TEST_TLS_DIR", self.tls_dir.display().to_string()),
        ];
        if let Some(kafka) = self.kafka {
            vars.push(("RKPROXY_TEST_KAFKA", kafka.to_string()));
        }
        if let Some(spec) = &self.kafka_spec {
            vars.extend(kafka_secure_env(spec));
        }
        vars
    }

    /// Stops every server now (dropping does the same).
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.guard.stop_all();
        if self.keep_data {
            eprintln!(
                "server data and logs kept in {}",
                project::display(&self.dir)
            );
        } else if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("warning: cannot remove {}: {error}", self.dir.display());
        }
    }
}

impl Drop for TestServers {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The secured listeners, their certificates (see `kafka_secure`) and the broker's jars (for Kafka's own
/// tools, such as `ConsumerGroupCommand`).
fn kafka_secure_env(spec: &kafka::KafkaSpec) -> Vec<(&'static str, String)> {
    let mut vars = Vec::new();
    if let (Some(sasl), Some(ssl)) = (spec.sasl_addr(), spec.ssl_addr()) {
        vars.push(("RKPROXY_TEST_KAFKA_SASL", sasl.to_string()));
        vars.push(("RKPROXY_TEST_KAFKA_SSL", ssl.to_string()));
        vars.push((
            "RKPROXY_TEST_KAFKA_CERTS",
            spec.certs_dir().display().to_string(),
        ));
        use crate::kafka_secure::{PLAIN_PASSWORD, PLAIN_USER, SCRAM_PASSWORD, SCRAM_USER};
        vars.push((
            "RKPROXY_TEST_KAFKA_SCRAM_USER",
            format!("{SCRAM_USER}:{SCRAM_PASSWORD}"),
        ));
        vars.push((
            "RKPROXY_TEST_KAFKA_PLAIN_USER",
            format!("{PLAIN_USER}:{PLAIN_PASSWORD}"),
        ));
    }
    if let Ok(lib) = kafka::ensure_distribution() {
        vars.push(("RKPROXY_TEST_KAFKA_LIB", lib.display().to_string()));
    }
    vars
}

/// The nodes of a throw-away cluster, on reserved free ports, with data in `dir/cluster-<n>`.
fn cluster_specs(reserver: &mut PortReserver, dir: &Path) -> Result<Vec<RedisSpec>> {
    let mut specs = Vec::with_capacity(CLUSTER_NODES);
    for index in 0..CLUSTER_NODES {
        specs.push(RedisSpec {
            name: format!("cluster-{index}"),
            port: reserver.reserve()?,
            dir: dir.join(format!("cluster-{index}")),
            kind: RedisKind::ClusterNode {
                bus_port: reserver.reserve()?,
            },
            daemonize: false,
        });
    }
    Ok(specs)
}

/// Starts a throw-away cluster like the one `test` uses ([`CLUSTER_NODES`] nodes: three masters
/// with one replica each) as children in `guard`, with data under `dir`, and waits until it is
/// fully formed. Returns the node addresses. Used by `bench`.
pub fn start_cluster(dir: &Path, guard: &mut ChildGuard) -> Result<Vec<SocketAddr>> {
    let mut reserver = PortReserver::default();
    let mut specs = cluster_specs(&mut reserver, dir)?;
    drop(reserver);
    for spec in &mut specs {
        spawn_with_port_retries(spec, guard)?;
    }
    let nodes: Vec<SocketAddr> = specs.iter().map(RedisSpec::addr).collect();
    redis::create_cluster(&nodes, &dir.join("cluster-create.log"))?;
    redis::wait_cluster_ok(&nodes, Duration::from_secs(60))?;
    Ok(nodes)
}

/// Starts one redis-server child; if its port was taken between picking and binding, picks new
/// ports and tries again.
fn spawn_with_port_retries(spec: &mut RedisSpec, guard: &mut ChildGuard) -> Result<()> {
    let mut attempt = 1;
    loop {
        match redis::spawn_child(spec) {
            Ok(child) => {
                guard.push(spec.name.clone(), child);
                return Ok(());
            }
            Err(_) if attempt < 3 && spec.failed_on_busy_port() => {
                eprintln!(
                    "{} could not bind port {}; retrying on another port",
                    spec.name, spec.port
                );
                let mut reserver = PortReserver::default();
                spec.port = reserver.reserve()?;
                match spec.kind {
                    RedisKind::ClusterNode { .. } => {
                        spec.kind = RedisKind::ClusterNode {
                            bus_port: reserver.reserve()?,
                        };
                    }
                    RedisKind::TlsClusterNode { .. } => {
                        spec.kind = RedisKind::TlsClusterNode {
                            bus_port: reserver.reserve()?,
                        };
                    }
                    _ => {}
                }
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Stops servers left by an earlier `test` or `bench` run whose xtask died without cleaning up
/// (killed with SIGKILL, for example), and removes its folder. Runs of other live xtask processes,
/// which may share this target dir, are left alone.
pub fn clean_up_interrupted_runs() {
    let Ok(entries) = std::fs::read_dir(project::servers_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("test-")
            .or_else(|| name.strip_prefix("bench-"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let owner_alive = shell::cmdline(pid).is_some_and(|line| line.contains("xtask"));
        if owner_alive && shell::pid_alive(pid) {
            continue;
        }
        let stopped = stop_servers_in(&entry.path());
        if stopped > 0 {
            eprintln!("stopped {stopped} servers left running by an interrupted run ({name})");
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// Stops every live server whose pid file sits in a subfolder of `dir`. Returns how many.
fn stop_servers_in(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut stopped = 0;
    for entry in entries.flatten() {
        for pid_file in ["redis.pid", "kafka.pid"] {
            if let Some(pid) = shell::read_pid_file(&entry.path().join(pid_file)) {
                if kafka::is_server_pid(pid) || redis::is_redis_pid(pid) {
                    shell::stop_pid(pid);
                    stopped += 1;
                }
            }
        }
    }
    stopped
}
