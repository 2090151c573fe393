//! Test support: server addresses from `cargo xtask test`, an in-process proxy, raw RESP over TCP, and
//! private redis-server processes for tests that kill their backend.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proxy_bin::config::Config;
use proxy_bin::server::RunningProxy;

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
pub async fn start_proxy_toml(toml: &str) -> RunningProxy {
    let toml = format!("listen = '127.0.0.1:0'\n{toml}");
    let config = Config::from_toml(&toml).expect("test config is valid");
    proxy_bin::server::start(config)
        .await
        .expect("proxy starts")
}

/// Starts a proxy in front of one standalone backend.
pub async fn start_proxy(backend: &str) -> RunningProxy {
    start_proxy_toml(&format!(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{backend}']\n"
    ))
    .await
}

/// A redis-rs multiplexed connection to the proxy.
pub async fn client(proxy: &RunningProxy) -> redis::aio::MultiplexedConnection {
    let url = format!("redis://{}/", proxy.local_addr);
    // The client's own timeout is longer than the proxy's, so tests see the proxy's errors.
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
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
        let mut redis = OwnRedis {
            port: free_port(),
            child: None,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        redis.restart();
        redis
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
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
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
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
