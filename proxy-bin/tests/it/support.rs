//! Test support: server addresses from `cargo xtask test`, an in-process proxy, raw RESP over TCP, private
//! redis-server processes for tests that kill their backend, real rkproxy processes (`process`), the Kafka
//! tests' set-up (`kafka`), reading the proxy's counts (`stats`) and TLS clients (`tls`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod kafka;
mod process;
mod slot_move;
mod stats;
mod tls;

use bytes::BytesMut;
use resp_codec::{Limits, ReplyDecoder};
use tokio_util::codec::Decoder;

pub use kafka::{
    kafka_pool_toml, kafka_proxy, koffsets, kpop, kpush, kreset, serve_within, topic_toml,
    unique_name, wait_connected, wait_serving, Record, Retry,
};
pub use process::{ConfigFile, ProxyProcess, ReadyProxy};
use rkproxy::config::Config;
use rkproxy::Proxy;
pub use slot_move::{masters_among, SlotMove};
pub use stats::{fields, http_get, line_with, number, sample, scrape_metrics, stats_lines};
pub use tls::{
    client_config, tls12_client_config, tls_command, tls_connect, tls_file, tls_ping, tls_redis,
    tls_redis_rs_client, TlsClient, TLS_BOUNDED,
};

/// Reads a server address that `cargo xtask test` exports; fails loudly when it is missing.
pub fn env_addr(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need live Redis servers. Run them with `cargo xtask test`, \
             which starts the servers and sets the variables."
        )
    })
}

/// The standalone redis-server without a password.
pub fn redis_addr() -> String {
    env_addr("RKPROXY_TEST_REDIS")
}

/// Starts a proxy in this process in front of `toml`'s pools, listening on a free port.
pub async fn start_proxy_toml(toml: &str) -> Proxy {
    let toml = format!("listen = '127.0.0.1:0'\n{toml}");
    let config = Config::from_toml(&toml).expect("test config is valid");
    Proxy::builder(config).start().await.expect("proxy starts")
}

/// Starts a proxy in front of one standalone backend.
pub async fn start_proxy(backend: &str) -> Proxy {
    start_proxy_toml(&format!(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{backend}']\n"
    ))
    .await
}

/// A redis-rs multiplexed connection to the proxy.
pub async fn client(proxy: &Proxy) -> redis::aio::MultiplexedConnection {
    // The client's own timeout is longer than the proxy's, so tests see the proxy's errors.
    connect(
        format!("redis://{}/", proxy.local_addr()),
        Duration::from_secs(10),
    )
    .await
}

/// A redis-rs connection to the proxy that waits up to a minute for each reply (for clients whose commands
/// may queue behind a big transfer on a loaded machine, where only an error would be a failure).
pub async fn patient_client(proxy: &Proxy) -> redis::aio::MultiplexedConnection {
    connect(
        format!("redis://{}/", proxy.local_addr()),
        Duration::from_secs(60),
    )
    .await
}

/// A redis-rs connection to the proxy authenticated as `user` (AUTH user password at connect).
pub async fn as_tenant(
    proxy: &Proxy,
    user: &str,
    password: &str,
) -> redis::aio::MultiplexedConnection {
    let url = format!("redis://{user}:{password}@{}/", proxy.local_addr());
    connect(url, Duration::from_secs(10)).await
}

/// A redis-rs connection to a proxy at `addr` (a [`ProxyProcess`], say), as `user` (name, password) when
/// given; each reply may take 15 seconds (a Kafka round trip on a loaded machine).
pub async fn client_at(
    addr: SocketAddr,
    user: Option<(&str, &str)>,
) -> redis::aio::MultiplexedConnection {
    let url = match user {
        Some((name, password)) => format!("redis://{name}:{password}@{addr}/"),
        None => format!("redis://{addr}/"),
    };
    connect(url, Duration::from_secs(15)).await
}

async fn connect(url: String, reply_timeout: Duration) -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(reply_timeout));
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

/// Held by the tests that load the whole machine (the reply-pairing stress tests, a script keeping a core
/// busy, gigabytes through the proxy), so that they run one at a time and none starves another's servers past
/// a timeout on a 2-core machine.
pub async fn cpu_heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static CPU_HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    CPU_HEAVY.lock().await
}

/// A direct connection to a backend (to check what the proxy did there).
pub async fn direct(addr: &str, db: u32) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{addr}/{db}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Runs redis-cli against an address and returns its stdout (`--no-raw` off: raw output, one reply per line).
pub async fn redis_cli(addr: SocketAddr, args: &[&str]) -> String {
    let mut command = Command::new("redis-cli");
    command
        .arg("-h")
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("redis-cli runs (install redis-tools)");
    assert!(output.status.success(), "redis-cli failed: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// A blocking raw TCP client, for sending bytes no client library would send.
pub struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        RawClient { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one line (through CRLF).
    pub fn read_line(&mut self) -> String {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.stream.read(&mut byte) {
                Ok(0) => break,
                Ok(_) => {
                    line.push(byte[0]);
                    if line.ends_with(b"\r\n") {
                        break;
                    }
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
        String::from_utf8_lossy(&line).into_owned()
    }

    /// True when the peer closed the connection (a read returns 0) within the read timeout.
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 64];
        matches!(self.stream.read(&mut byte), Ok(0))
    }
}

/// A blocking RESP connection that reads one complete reply per command.
pub struct Resp {
    stream: TcpStream,
    buffer: BytesMut,
    /// Frames replies of any depth (a Lua script can return arrays thousands deep).
    decoder: ReplyDecoder,
}

impl Resp {
    pub fn connect(addr: &str) -> Resp {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Resp {
            stream,
            buffer: BytesMut::new(),
            decoder: ReplyDecoder::new(Limits {
                max_depth: usize::MAX,
                ..Limits::default()
            }),
        }
    }

    pub fn send(&mut self, args: &[&str]) {
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.stream.write_all(out.as_bytes()).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn command(&mut self, args: &[&str]) -> String {
        self.send(args);
        self.reply()
    }

    /// One complete reply frame, as text.
    pub fn reply(&mut self) -> String {
        loop {
            if let Some(frame) = self
                .decoder
                .decode(&mut self.buffer)
                .expect("a valid reply")
            {
                return String::from_utf8_lossy(&frame).into_owned();
            }
            let mut chunk = [0u8; 16 * 1024];
            let read = self.stream.read(&mut chunk).expect("a reply in time");
            assert!(read > 0, "connection closed while waiting for a reply");
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// Every byte until the peer closes the connection.
    pub fn until_closed(&mut self) -> String {
        let mut rest = self.buffer.split().to_vec();
        self.stream.read_to_end(&mut rest).expect("closed in time");
        String::from_utf8_lossy(&rest).into_owned()
    }
}

/// Runs a raw exchange on a blocking thread, so the in-process proxy keeps running.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server owned by one test (killed on drop), for tests that stop or restart their backend.
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
    extra_args: Vec<String>,
}

impl OwnRedis {
    pub fn start(extra_args: &[&str]) -> OwnRedis {
        OwnRedis::start_with(|| extra_args.iter().map(|s| s.to_string()).collect())
    }

    /// Starts a server on a free port, with the extra arguments `args` makes. A port is free when chosen, but a
    /// parallel test's connection can take it before redis-server binds it: the server then exits at once
    /// ("Address already in use"), and it is started again on a new port, with `args` called again (so ports
    /// among them are chosen afresh too).
    pub fn start_with(mut args: impl FnMut() -> Vec<String>) -> OwnRedis {
        for _ in 0..5 {
            let mut redis = OwnRedis {
                port: free_port(),
                child: None,
                extra_args: args(),
            };
            if redis.try_restart() {
                return redis;
            }
        }
        panic!("redis-server did not start in 5 attempts on fresh ports");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A stand-in for a node that was taken out (already stopped; dropping it does nothing).
    pub fn placeholder(port: u16) -> OwnRedis {
        OwnRedis {
            port,
            child: None,
            extra_args: Vec::new(),
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it keeps its connections but answers nothing, like a stalled host.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("server is running").id();
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    pub fn restart(&mut self) {
        assert!(
            self.try_restart(),
            "redis-server did not start on port {}",
            self.port
        );
    }

    /// Starts the server again on its port; false if it exited (its port taken), another server answers on
    /// the port, or it did not listen in 10 s. A connection alone does not tell: a parallel test's server may
    /// hold the port while this one is still failing to bind, so the answering server's pid is checked.
    pub fn try_restart(&mut self) -> bool {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answering = pid_answering_on(self.port);
            // Exited: it could not bind (another process's port), whatever answered the connection.
            let exited = self
                .child
                .as_mut()
                .is_none_or(|child| !matches!(child.try_wait(), Ok(None)));
            if exited {
                self.child = None;
                return false;
            }
            let own_pid = self.child.as_ref().map(Child::id);
            match answering {
                Some(pid) if Some(pid) == own_pid => return true,
                Some(_) => {
                    self.stop();
                    return false;
                }
                None => {}
            }
            if Instant::now() >= deadline {
                self.stop();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The pid of the redis-server answering `INFO server` on `port`, if one answers within a second.
fn pid_answering_on(port: u16) -> Option<u32> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while reply.len() < 64 * 1024 {
        let read = stream.read(&mut chunk).ok()?;
        if read == 0 {
            return None;
        }
        reply.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&reply);
        let field = text.split("process_id:").nth(1);
        if let Some((pid, _)) = field.and_then(|rest| rest.split_once("\r\n")) {
            return pid.trim().parse().ok();
        }
    }
    None
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A unique key prefix per test, so tests sharing one Redis never see each other's keys.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}:{}:{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The 6-node test cluster that `cargo xtask test` started (3 masters, 3 replicas).
pub fn cluster_nodes() -> Vec<String> {
    env_addr("RKPROXY_TEST_CLUSTER")
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// A proxy whose default pool is a cluster pool over `seeds`, with extra pool keys.
pub async fn start_cluster_proxy(seeds: &[String], extra: &str) -> Proxy {
    let nodes = seeds
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    start_proxy_toml(&format!(
        "default_pool = 'c'\n[pools.c]\nkind = 'cluster'\nnodes = [{nodes}]\n{extra}\n"
    ))
    .await
}

/// Runs redis-cli against a `host:port` string and returns stdout.
pub fn redis_cli_at(addr: &str, args: &[&str]) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let output = Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A Redis Cluster owned by one test (3 masters, 3 replicas, short node timeout), for tests that kill nodes or
/// move slots. Every node is killed on drop.
pub struct OwnCluster {
    pub nodes: Vec<OwnRedis>,
    _dir: TempDir,
}

/// A directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl OwnCluster {
    pub fn start(node_timeout_ms: u32) -> OwnCluster {
        let dir = std::env::temp_dir().join(format!(
            "rkproxy-own-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut nodes = Vec::new();
        for index in 0..6 {
            let node_dir = dir.join(format!("node-{index}"));
            std::fs::create_dir_all(&node_dir).unwrap();
            let timeout = node_timeout_ms.to_string();
            let node_dir_text = node_dir.display().to_string();
            // Each node logs to its own file, which a test may show when it fails (`OwnCluster::logs`).
            let log_file = node_dir.join("redis.log").display().to_string();
            // The cluster bus port is chosen afresh on each attempt, like the node's own.
            nodes.push(OwnRedis::start_with(|| {
                // A failed attempt may have left its node identity behind.
                let _ = std::fs::remove_file(node_dir.join("nodes.conf"));
                let bus = free_port().to_string();
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    &timeout,
                    "--cluster-port",
                    &bus,
                    "--dir",
                    &node_dir_text,
                    "--logfile",
                    &log_file,
                ]
                .iter()
                .map(|arg| arg.to_string())
                .collect()
            }));
        }
        let addrs: Vec<String> = nodes.iter().map(OwnRedis::addr).collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create").args(&addrs);
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let output = create.output().unwrap();
        assert!(output.status.success(), "cluster create failed: {output:?}");
        let cluster = OwnCluster {
            nodes,
            _dir: TempDir(dir),
        };
        cluster.wait_until_ok(Duration::from_secs(30));
        cluster
    }

    /// The lines of every node's log file that contain `needle`, each after its node's address.
    pub fn logs(&self, needle: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for (index, node) in self.nodes.iter().enumerate() {
            let file = self._dir.0.join(format!("node-{index}")).join("redis.log");
            let text = std::fs::read_to_string(file).unwrap_or_default();
            lines.extend(
                text.lines()
                    .filter(|line| line.contains(needle))
                    .map(|line| format!("{}: {line}", node.addr())),
            );
        }
        lines
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(OwnRedis::addr).collect()
    }

    /// Waits until every live node reports `cluster_state:ok` and all agree on the slot owners.
    pub fn wait_until_ok(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let live: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| n.is_running())
                .map(OwnRedis::addr)
                .collect();
            let all_ok = live
                .iter()
                .all(|a| redis_cli_at(a, &["CLUSTER", "INFO"]).contains("cluster_state:ok"));
            let maps: Vec<String> = live.iter().map(|a| masters_of(a)).collect();
            // A replica that never finished its first sync cannot take over from its master.
            let replicas_synced = live.iter().all(|a| {
                let info = redis_cli_at(a, &["INFO", "replication"]);
                info.contains("role:master") || info.contains("master_link_status:up")
            });
            if all_ok && replicas_synced && maps.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster not ok in time: {maps:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The address of the master that serves `slot`, as the first live node sees it (`None` while a failed
    /// master's slots have no new owner yet).
    pub fn master_of_slot(&self, slot: u16) -> Option<String> {
        let live = self.nodes.iter().find(|n| n.is_running()).unwrap().addr();
        let nodes = redis_cli_at(&live, &["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            for range in &fields[8..] {
                let (start, end) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(start), Ok(end)) = (start.parse::<u16>(), end.parse::<u16>()) {
                    if (start..=end).contains(&slot) {
                        return Some(fields[1].split('@').next().unwrap().to_owned());
                    }
                }
            }
        }
        None
    }

    pub fn node_mut(&mut self, addr: &str) -> &mut OwnRedis {
        self.nodes.iter_mut().find(|n| n.addr() == addr).unwrap()
    }

    /// Stops node `addr` on a blocking thread (an in-process proxy keeps running); a placeholder takes its place.
    pub async fn kill(&mut self, addr: &str) {
        let node = self.node_mut(addr);
        let port = node.port;
        let mut killed = std::mem::replace(node, OwnRedis::placeholder(port));
        blocking(move || killed.stop()).await;
    }
}

/// `host:port` of every master serving slots, sorted, as one node sees the cluster.
fn masters_of(addr: &str) -> String {
    let nodes = redis_cli_at(addr, &["CLUSTER", "NODES"]);
    let mut masters: Vec<String> = nodes
        .lines()
        .filter(|l| l.contains("master") && !l.contains("fail") && l.split(' ').count() > 8)
        .map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            format!(
                "{} {}",
                fields[1].split('@').next().unwrap_or(""),
                fields[8..].join(",")
            )
        })
        .collect();
    masters.sort();
    masters.join(";")
}

/// The Kafka broker that `cargo xtask test` started; fails loudly when it is missing.
pub fn kafka_addr() -> String {
    std::env::var("RKPROXY_TEST_KAFKA").unwrap_or_else(|_| {
        panic!(
            "RKPROXY_TEST_KAFKA is not set: the Kafka tests need a live Apache Kafka 4 broker. Run them with \
             `cargo xtask test`, which starts one (and the Redis servers) and sets the variables."
        )
    })
}

/// Test-run logging: with `RKPROXY_TEST_LOG=<filter>` (for example `rkproxy::cluster=debug`), the proxy's events
/// go to the test's captured output, shown when the test fails. Without it, nothing is logged.
pub fn log_from_env() {
    if let Ok(filter) = std::env::var("RKPROXY_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}
