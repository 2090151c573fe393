//! Logs: `log_format = "json"` writes one JSON object per line.

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
