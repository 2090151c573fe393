//! Logs: `log_format = "json"` writes one JSON object per line; the ready line names the ports the proxy got;
//! a log written to a pipe has no colour escapes.

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn json_log_format_writes_one_object_per_line() {
    let proxy = ReadyProxy::in_front_of(&redis_addr(), &[("RKPROXY_LOG_FORMAT", "json")]);
    // Stop the proxy and read all it wrote, so that every line it logs is checked.
    let stderr = proxy.terminate();
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
    // A port nothing listened on when chosen stands for the broker that never answers: a broker's address
    // cannot be port 0, which only a listener can ask for.
    let broker_port = free_port();
    let config = ConfigFile::new(&format!(
        "listen = '127.0.0.1:0'\ndefault_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n\
         [pools.events]\nkind = 'kafka'\nnodes = ['127.0.0.1:{broker_port}']\nrequest_timeout_ms = 100\n\
         connect_retry_ms = 10\n[pools.events.topics.t]\npartitions = 1\n",
        redis_addr()
    ));
    let mut command = config.command();
    command.env("RUST_LOG", "info,rkproxy::pools::kafka=debug");
    let proxy = ReadyProxy::start(command);
    let deadline = Instant::now() + Duration::from_secs(60);
    let lines = loop {
        let log = proxy.log_text();
        // Whole lines only: the last one may still be arriving.
        let whole = &log[..log.rfind('\n').map_or(0, |end| end + 1)];
        let lines: Vec<String> = whole.lines().map(str::to_owned).collect();
        let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
        // Twelve failed attempts (the old code logged the first and the tenth at WARN), or a second WARN.
        if count("Kafka pool still unavailable") >= 11 || count("Kafka pool unavailable;") >= 2 {
            break lines;
        }
        assert!(Instant::now() < deadline, "{lines:#?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(proxy);
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
    let config = ConfigFile::new(&format!(
        "listen = '127.0.0.1:0'\ntls_listen = '127.0.0.1:0'\nworker_threads = 2\ndefault_pool = 'main'\n\
         [tls]\ncert_file = '{}'\nkey_file = '{}'\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n",
        tls_file("server.crt"),
        tls_file("server.key"),
        redis_addr()
    ));
    let mut command = config.command();
    command.env_remove("NO_COLOR");
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
}
