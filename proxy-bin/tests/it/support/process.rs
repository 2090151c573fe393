//! A real rkproxy process, for tests that kill a proxy (`kill -9`), run several against one offset store, or
//! reload its configuration file with SIGHUP; and [`ReadyProxy`], a binary on port 0 found by its ready line.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{free_port, TempDir};

/// A real rkproxy process (killed on drop), listening on a free port, logging to a file of its own folder.
pub struct ProxyProcess {
    child: Child,
    pub addr: SocketAddr,
    config_path: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

impl ProxyProcess {
    /// Starts the binary with `config` (everything but `listen`) and waits until it accepts connections;
    /// `name` names its folder, for a reader of the temporary directory.
    pub fn start(name: &str, config: &str) -> ProxyProcess {
        let dir = std::env::temp_dir().join(format!(
            "rkproxy-it-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config_path = dir.join("rkproxy.toml");
        write_config(&config_path, addr, config);
        let log = dir.join("rkproxy.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rkproxy"))
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut process = ProxyProcess {
            child,
            addr,
            config_path,
            log,
            _dir: TempDir(dir),
        };
        process.wait_listening();
        process
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(self.addr).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("rkproxy exited ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "rkproxy did not listen:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Rewrites the configuration file with `config` (same `listen`) and makes the process reload it (SIGHUP).
    pub fn reload(&self, config: &str) {
        write_config(&self.config_path, self.addr, config);
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process at once (SIGKILL), like a crash or a `kill -9` restart.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn write_config(path: &Path, listen: SocketAddr, config: &str) {
    std::fs::write(path, format!("listen = '{listen}'\n{config}")).unwrap();
}

/// A spawned rkproxy binary told to listen on port 0 (`listen = "127.0.0.1:0"`, `--listen 127.0.0.1:0`), once
/// it logged `rkproxy ready`: the addresses that line names (so no port is picked before the proxy binds it,
/// and no other process's listener can be mistaken for the proxy), and its log so far and from then on.
pub struct ReadyProxy {
    pub child: Child,
    pub listen: SocketAddr,
    pub tls_listen: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
}

impl ReadyProxy {
    /// Spawns `command` (its stderr piped here; text log format) and waits up to 20 s for the ready line.
    pub fn start(mut command: Command) -> ReadyProxy {
        let mut child = command
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read) = stderr.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buffer[..read]);
                sink.lock().unwrap().push_str(&text);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let ready = loop {
            let text = log.lock().unwrap().clone();
            if let Some(line) = text.lines().find(|line| line.contains("rkproxy ready")) {
                if text.contains(&format!("{line}\n")) {
                    break line.to_owned();
                }
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("rkproxy exited ({status}):\n{text}");
            }
            assert!(Instant::now() < deadline, "rkproxy is not ready:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let field = |name: &str| {
            let start = ready.find(&format!(" {name}="))? + name.len() + 2;
            ready[start..].split_whitespace().next()?.parse().ok()
        };
        ReadyProxy {
            child,
            listen: field("listen").unwrap_or_else(|| panic!("no listen address in {ready}")),
            tls_listen: field("tls_listen"),
            log,
        }
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ReadyProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
