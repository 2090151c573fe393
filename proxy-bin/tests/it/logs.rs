//! Logs: `log_format = "json"` writes one JSON object per line; the ready line names the ports the proxy got;
//! a log written to a pipe has no colour escapes.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn json_log_format_writes_one_object_per_line() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rkproxy"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--backend",
            &format!("redis://{}", redis_addr()),
        ])
        .env("RKPROXY_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "rkproxy did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    // "rkproxy ready" is logged before the accept loop starts; stop the proxy and read all it wrote.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let _ = child.wait();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let ready = lines
        .iter()
        .find(|line| line["fields"]["message"] == "rkproxy ready")
        .unwrap_or_else(|| panic!("no ready line in {stderr}"));
    assert_eq!(ready["level"], "INFO");
    assert_eq!(ready["fields"]["threads"], 1);
}

/// A Kafka pool whose broker never answers logs one line when it goes down, however many attempts follow
/// (each retry is a debug line, which this test turns on to count the attempts).
#[test]
fn a_kafka_pool_logs_one_line_per_state_change() {
    use std::io::{BufRead, BufReader};
    let (port, broker_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(unique("rkproxy-kafka-log").replace(':', "-"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("rkproxy.toml");
    std::fs::write(
        &config,
        format!(
            "listen = '127.0.0.1:{port}'\ndefault_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n\
             [pools.events]\nkind = 'kafka'\nnodes = ['127.0.0.1:{broker_port}']\nrequest_timeout_ms = 100\n\
             connect_retry_ms = 10\n[pools.events.topics.t]\npartitions = 1\n",
            redis_addr()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rkproxy"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info,rkproxy::pools::kafka=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        lines.push(line);
        let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
        // Twelve failed attempts (the old code logged the first and the tenth at WARN), or a second WARN.
        if count("Kafka pool still unavailable") >= 11 || count("Kafka pool unavailable;") >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{lines:#?}");
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let down: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("WARN") && line.contains("Kafka pool unavailable"))
        .collect();
    assert_eq!(down.len(), 1, "{lines:#?}");
    assert_eq!(
        lines
            .iter()
            .filter(|line| line.contains("connecting to Kafka"))
            .count(),
        1
    );
}

/// `listen` and `tls_listen` on port 0 with two workers: the ready line names the ports the proxy got (both
/// workers share them), and a log written to a pipe holds no colour escapes.
#[test]
fn the_ready_line_names_the_ports_it_got_and_a_piped_log_has_no_colours() {
    use std::io::Write;
    let dir = std::env::temp_dir().join(unique("rkproxy-ready-log").replace(':', "-"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("rkproxy.toml");
    std::fs::write(
        &config,
        format!(
            "listen = '127.0.0.1:0'\ntls_listen = '127.0.0.1:0'\nworker_threads = 2\ndefault_pool = 'main'\n\
             [tls]\ncert_file = '{}'\nkey_file = '{}'\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n",
            tls_file("server.crt"),
            tls_file("server.key"),
            redis_addr()
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_rkproxy"));
    command
        .arg("--config")
        .arg(&config)
        .env_remove("NO_COLOR")
        .stdout(Stdio::null());
    let proxy = ReadyProxy::start(command);
    let log = proxy.log_text();
    assert!(
        !log.contains('\u{1b}'),
        "colour escapes in a piped log: {log:?}"
    );
    let (plain, tls) = (proxy.listen, proxy.tls_listen.expect("tls_listen is on"));
    assert!(plain.port() != 0 && tls.port() != 0, "{log}");
    assert!(log.contains("threads=2"), "{log}");
    for _ in 0..8 {
        let mut client = std::net::TcpStream::connect(plain).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
        let mut reply = [0u8; 7];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"+PONG\r\n");
    }
    let output = Command::new("redis-cli")
        .args(["--tls", "--cacert", &tls_file("ca.crt")])
        .args(["-h", "127.0.0.1", "-p", &tls.port().to_string(), "PING"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "PONG\n",
        "{output:?}"
    );
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}
