//! Graceful shutdown of the `rkproxy` binary (SIGTERM, SIGINT): requests already read are answered, subscribers are
//! told, and a client that is never answered does not keep the process alive past `timeouts.shutdown_ms`.
//! Each test runs its own rkproxy process and its own redis-server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;

/// How much later than `shutdown_ms` the process may exit (runtime teardown, a loaded test machine).
const EXIT_MARGIN: Duration = Duration::from_secs(3);

/// An rkproxy process serving one standalone pool on `redis`, with its configuration file.
struct RunningProxy {
    process: ReadyProxy,
    _dir: TempDir,
}

impl RunningProxy {
    fn start(redis: &OwnRedis, shutdown_ms: u64) -> RunningProxy {
        let dir = TempDir(std::env::temp_dir().join(unique("rkproxy-shutdown-test")));
        std::fs::create_dir_all(&dir.0).unwrap();
        let file = dir.0.join("rkproxy.toml");
        std::fs::write(
            &file,
            format!(
                "listen = '127.0.0.1:0'\n\
                 default_pool = 'main'\n\
                 [timeouts]\n\
                 shutdown_ms = {shutdown_ms}\n\
                 [pools.main]\n\
                 kind = 'standalone'\n\
                 nodes = ['{}']\n",
                redis.addr()
            ),
        )
        .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_rkproxy"));
        command.arg("--config").arg(&file).stdout(Stdio::null());
        RunningProxy {
            process: ReadyProxy::start(command),
            _dir: dir,
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.process.listen).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
    }

    fn terminate(&self) {
        self.process.signal("-TERM");
    }

    /// Waits for the process to exit, at most `limit`; its status and how long it took.
    fn wait_exit(&mut self, limit: Duration) -> (Option<ExitStatus>, Duration) {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.process.child.try_wait().unwrap() {
                return (Some(status), started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (None, started.elapsed())
    }
}

/// A RESP request.
fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    out
}

/// A client that pipelines INCR on its own counter as fast as it can until the proxy closes the connection;
/// returns the counter's key and the last value an INCR reply showed.
fn pipeline_incrs(stream: TcpStream, key: String) -> (String, i64) {
    let done = Arc::new(AtomicBool::new(false));
    let mut writer = stream.try_clone().unwrap();
    let writer_done = Arc::clone(&done);
    let batch = command(&["INCR", &key]).repeat(50);
    let writer = std::thread::spawn(move || {
        while !writer_done.load(Ordering::Relaxed) && writer.write_all(&batch).is_ok() {}
    });
    let mut reader = BufReader::new(stream);
    let mut last = 0;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Some(value) = line.strip_prefix(':') {
            let value: i64 = value.trim_end().parse().unwrap();
            assert_eq!(value, last + 1, "INCR replies out of order");
            last = value;
        } else {
            assert_eq!(line, "-ERR rkproxy is shutting down\r\n");
        }
    }
    done.store(true, Ordering::Relaxed);
    drop(reader);
    writer.join().unwrap();
    (key, last)
}

#[test]
fn sigterm_answers_every_pipelined_incr_that_redis_ran() {
    let redis = OwnRedis::start(&[]);
    let mut proxy = RunningProxy::start(&redis, 5000);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stream = proxy.connect();
            let key = unique("shutdown:counter");
            std::thread::spawn(move || pipeline_incrs(stream, key))
        })
        .collect();
    // Let the pipelines get going, then stop the proxy under load.
    let warm_up = Instant::now() + Duration::from_secs(10);
    while redis_cli_at(&redis.addr(), &["DBSIZE"]).trim() != "4" {
        assert!(Instant::now() < warm_up, "clients did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    proxy.terminate();
    let (status, took) = proxy.wait_exit(Duration::from_millis(5000) + EXIT_MARGIN);
    let status = status.expect("rkproxy did not exit within shutdown_ms");
    assert!(status.success(), "{status:?} after {took:?}");
    for client in clients {
        let (key, last_reply) = client.join().unwrap();
        let in_redis: i64 = redis_cli_at(&redis.addr(), &["GET", &key])
            .trim()
            .parse()
            .unwrap();
        assert!(last_reply > 0, "{key}: no reply at all");
        assert_eq!(
            last_reply, in_redis,
            "{key}: Redis ran {in_redis} INCRs, the client saw replies up to {last_reply}"
        );
    }
}

#[test]
fn sigterm_lets_a_running_script_reply() {
    let redis = OwnRedis::start(&[]);
    let mut proxy = RunningProxy::start(&redis, 5000);
    let mut client = proxy.connect();
    let script = "local t = redis.call('TIME') \
                  local start = t[1] * 1000000 + t[2] \
                  repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= 2000000 \
                  return 'done'";
    client.write_all(&command(&["EVAL", script, "0"])).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    proxy.terminate();
    let mut reply = String::new();
    let _ = client.read_to_string(&mut reply);
    assert_eq!(reply, "$4\r\ndone\r\n");
    let (status, took) = proxy.wait_exit(Duration::from_millis(5000) + EXIT_MARGIN);
    let status = status.expect("rkproxy did not exit within shutdown_ms");
    assert!(status.success(), "{status:?} after {took:?}");
}

#[test]
fn sigint_tells_subscribers_the_proxy_is_shutting_down() {
    let redis = OwnRedis::start(&[]);
    let mut proxy = RunningProxy::start(&redis, 5000);
    let channel = unique("shutdown:channel");
    let mut subscriber = proxy.connect();
    subscriber
        .write_all(&command(&["SUBSCRIBE", &channel]))
        .unwrap();
    let mut reader = BufReader::new(subscriber.try_clone().unwrap());
    let mut confirmation = Vec::new();
    for _ in 0..6 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        confirmation.push(line);
    }
    assert_eq!(confirmation[2], "subscribe\r\n", "{confirmation:?}");
    proxy.process.signal("-INT");
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest);
    assert_eq!(rest, "-ERR rkproxy is shutting down\r\n");
    let (status, took) = proxy.wait_exit(Duration::from_millis(5000) + EXIT_MARGIN);
    let status = status.expect("rkproxy did not exit within shutdown_ms");
    assert!(status.success(), "{status:?} after {took:?}");
}

#[test]
fn sigterm_serves_blocked_clients_until_shutdown_ms_then_exits() {
    let redis = OwnRedis::start(&[]);
    let shutdown_ms = 2000;
    let mut proxy = RunningProxy::start(&redis, shutdown_ms);
    let served_key = unique("shutdown:served");
    let stuck_key = unique("shutdown:stuck");
    let mut served = proxy.connect();
    served
        .write_all(&command(&["BLPOP", &served_key, "0"]))
        .unwrap();
    let mut stuck = proxy.connect();
    stuck
        .write_all(&command(&["BLPOP", &stuck_key, "0"]))
        .unwrap();
    // Both are blocked in Redis before the signal.
    let blocked = Instant::now() + Duration::from_secs(10);
    while !redis_cli_at(&redis.addr(), &["INFO", "clients"]).contains("blocked_clients:2") {
        assert!(Instant::now() < blocked, "clients did not block");
        std::thread::sleep(Duration::from_millis(10));
    }
    proxy.terminate();
    let signalled = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    redis_cli_at(&redis.addr(), &["RPUSH", &served_key, "v"]);
    let mut reply = String::new();
    let _ = served.read_to_string(&mut reply);
    let expected = format!("*2\r\n${}\r\n{served_key}\r\n$1\r\nv\r\n", served_key.len());
    assert_eq!(reply, expected);
    let (status, _) = proxy.wait_exit(Duration::from_millis(shutdown_ms) + EXIT_MARGIN);
    let took = signalled.elapsed();
    let status = status.expect("a blocked client kept rkproxy alive past shutdown_ms");
    assert!(status.success(), "{status:?} after {took:?}");
    assert!(
        took >= Duration::from_millis(shutdown_ms),
        "rkproxy exited after {took:?}, before shutdown_ms, while a client was still owed a reply"
    );
    let mut rest = Vec::new();
    let _ = stuck.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[tokio::test]
async fn embedded_shutdown_waits_for_a_running_script_to_reply() {
    let redis = OwnRedis::start(&[]);
    let proxy = start_proxy(&redis.addr()).await;
    let addr = proxy.local_addr();
    let received = Arc::new(std::sync::Mutex::new(None));
    let client_received = Arc::clone(&received);
    let client = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let script = "local t = redis.call('TIME') \
                      local start = t[1] * 1000000 + t[2] \
                      repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= 1000000 \
                      return 'done'";
        stream.write_all(&command(&["EVAL", script, "0"])).unwrap();
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        // Recorded before the client closes its end, which the proxy waits for.
        *client_received.lock().unwrap() = Some(reply);
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.shutdown().await;
    let reply = received.lock().unwrap().take();
    assert_eq!(
        reply.as_deref(),
        Some("$4\r\ndone\r\n"),
        "shutdown() returned before the script's reply was written"
    );
    blocking(move || client.join().unwrap()).await;
}
