//! Real rkproxy processes: [`ReadyProxy`], a binary on port 0 found by its ready line, and [`ProxyProcess`], one
//! started from a configuration file of its own, for tests that kill a proxy (`kill -9`), run several against
//! one offset store, or reload its configuration file with SIGHUP.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{unique, TempDir};

/// A real rkproxy process (killed on drop) started from a [`ConfigFile`] of its own, with `listen` on port 0:
/// `addr` is the address its ready line names.
pub struct ProxyProcess {
    process: ReadyProxy,
    pub addr: SocketAddr,
    config: ConfigFile,
}

impl ProxyProcess {
    /// Starts the binary with `config` (everything but `listen`) and waits until it is ready; `name` names its
    /// folder, for a reader of the temporary directory. `config`'s `log` must let the ready line through (INFO
    /// of `rkproxy::server`).
    pub fn start(name: &str, config: &str) -> ProxyProcess {
        let config = ConfigFile::in_folder(&format!("rkproxy-it-{name}"), &with_listen(config));
        let process = ReadyProxy::start(config.command());
        ProxyProcess {
            addr: process.listen,
            process,
            config,
        }
    }

    /// Rewrites the configuration file with `config` (the same `listen` on port 0, which a reload sees as
    /// unchanged) and makes the process reload it (SIGHUP).
    pub fn reload(&self, config: &str) {
        self.config.write(&with_listen(config));
        self.process.signal("-HUP");
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// Kills the process at once (SIGKILL), like a crash or a `kill -9` restart.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// `config` with `listen` on port 0 in front.
fn with_listen(config: &str) -> String {
    format!("listen = '127.0.0.1:0'\n{config}")
}

/// A configuration file in a temporary folder of its own (removed on drop), for the binary's `--config` and for
/// reload tests that rewrite it.
pub struct ConfigFile {
    pub path: PathBuf,
    dir: TempDir,
}

impl ConfigFile {
    pub fn new(toml: &str) -> ConfigFile {
        ConfigFile::in_folder("rkproxy-config", toml)
    }

    /// [`ConfigFile::new`] in a folder whose name starts with `prefix`, for a reader of the temporary directory.
    pub fn in_folder(prefix: &str, toml: &str) -> ConfigFile {
        let dir = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&dir).unwrap();
        let file = ConfigFile {
            path: dir.join("rkproxy.toml"),
            dir: TempDir(dir),
        };
        file.write(toml);
        file
    }

    pub fn write(&self, toml: &str) {
        std::fs::write(&self.path, toml).unwrap();
    }

    /// The folder it is in, for other files a test needs beside it.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// The rkproxy binary with `--config` this file (stdout dropped), for [`ReadyProxy::start`].
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rkproxy"));
        command
            .arg("--config")
            .arg(&self.path)
            .stdout(Stdio::null());
        command
    }
}

/// A spawned rkproxy binary told to listen on port 0 (`listen = "127.0.0.1:0"`, `--listen 127.0.0.1:0`), once
/// it logged `rkproxy ready`: the addresses that line names (so no port is picked before the proxy binds it,
/// and no other process's listener can be mistaken for the proxy), and its log so far and from then on.
/// Killed on drop.
pub struct ReadyProxy {
    pub child: Child,
    pub listen: SocketAddr,
    pub tls_listen: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
    /// Copies the process's stderr into `log` until the process closes it.
    reader: Option<JoinHandle<()>>,
}

impl ReadyProxy {
    /// Spawns `command` (its stderr piped here) and waits up to 20 s for the ready line, in the text or the JSON
    /// log format. `RUST_LOG` is removed unless `command` sets it, so that the caller's filter cannot hide the
    /// ready line.
    pub fn start(mut command: Command) -> ReadyProxy {
        if !command.get_envs().any(|(name, _)| name == "RUST_LOG") {
            command.env_remove("RUST_LOG");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
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
        // `listen=ADDR` in the text format, `"listen":"ADDR"` in JSON (`tls_listen` is `off` without TLS).
        let field = |name: &str| {
            let start = [format!(" {name}="), format!("\"{name}\":\"")]
                .iter()
                .find_map(|key| Some(ready.find(key.as_str())? + key.len()))?;
            ready[start..]
                .split(|c: char| c.is_whitespace() || c == '"')
                .next()?
                .parse()
                .ok()
        };
        ReadyProxy {
            listen: field("listen").unwrap_or_else(|| panic!("no listen address in {ready}")),
            tls_listen: field("tls_listen"),
            child,
            log,
            reader: Some(reader),
        }
    }

    /// The quick-start form in front of the Redis at `backend` (`--listen 127.0.0.1:0 --backend
    /// redis://BACKEND`), with the environment variables `env` (settings, say) added; stdout is dropped.
    pub fn in_front_of(backend: &str, env: &[(&str, &str)]) -> ReadyProxy {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rkproxy"));
        command
            .args(["--listen", "127.0.0.1:0", "--backend"])
            .arg(format!("redis://{backend}"))
            .envs(env.iter().copied())
            .stdout(Stdio::null());
        ReadyProxy::start(command)
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends the process `signal` (`-HUP`, `-TERM`) with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// Stops the process with SIGTERM (a graceful shutdown) and returns everything it logged, to its last line.
    pub fn terminate(mut self) -> String {
        self.signal("-TERM");
        let _ = self.child.wait();
        // The process has exited: the reader ends at the end of its stderr, having copied all of it.
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.log_text()
    }

    /// Kills the process at once (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A field of the process's `/proc/<pid>/status` in kB (`VmRSS`, `VmSize`, `VmHWM`).
    pub fn status_kb(&self, field: &str) -> u64 {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status
            .lines()
            .find(|line| line.starts_with(field))
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for ReadyProxy {
    fn drop(&mut self) {
        self.kill();
    }
}
