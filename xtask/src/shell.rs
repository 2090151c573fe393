//! Programs and processes: finding binaries, installing Debian packages, starting children that
//! keep running, and signalling, watching and stopping pids.
//!
//! Commands that run to completion are built and run with `xshell` (`cmd!`, which echoes them).
//! What xshell 0.2 cannot do stays here as small std code: it has no `PATH` lookup (so [`which`]),
//! and a `Cmd` only runs to completion with its output inherited or captured in memory, so
//! servers, children we watch or forward signals to, and output that streams into a log file go
//! through std's `Command` ([`spawn`], [`log_output`], [`ChildGuard`], [`wait_forwarding_signals`]).
//!
//! Signals are sent through `sh -c 'kill ...'` because std cannot signal an arbitrary pid without
//! `unsafe` libc calls, and `sh` (with its `kill` builtin) is on every Debian machine, unlike the
//! procps `kill` binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use xshell::{cmd, Cmd, Shell};

use crate::{bail, project, Result};

/// A program we need and the Debian package that ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub binary: &'static str,
    pub package: &'static str,
}

/// What every command that starts Redis needs.
pub const REDIS_TOOLS: &[Tool] = &[
    Tool {
        binary: "redis-server",
        package: "redis-server",
    },
    Tool {
        binary: "redis-cli",
        package: "redis-tools",
    },
];

/// What `bench` needs on top of [`REDIS_TOOLS`].
pub const BENCH_TOOLS: &[Tool] = &[
    Tool {
        binary: "redis-benchmark",
        package: "redis-tools",
    },
    Tool {
        binary: "nutcracker",
        package: "nutcracker",
    },
];

/// A std `Command` for an xshell one, echoed first, for what xshell cannot do (see the module
/// doc): the caller spawns it, or sends its output to a log file. Its stdin stays inherited.
pub fn spawnable(command: Cmd<'_>) -> Command {
    eprintln!("$ {command}");
    Command::from(command)
}

/// Sends a command's stdout and stderr to a (new) log file and closes its stdin.
pub fn log_output(command: &mut Command, log: &Path) -> Result<()> {
    let file = std::fs::File::create(log)?;
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    Ok(())
}

/// Starts a child that keeps running, echoing it first (see [`spawnable`]).
pub fn spawn(command: Cmd<'_>) -> Result<Child> {
    Ok(spawnable(command).spawn()?)
}

/// Finds a program like `which` does. The sbin folders are searched too because Debian puts
/// `nutcracker` in `/usr/sbin`, which is not on a normal user's `PATH`.
pub fn which(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Like [`which`], but an error naming the missing program.
pub fn require(binary: &str) -> Result<PathBuf> {
    which(binary).ok_or_else(|| format!("`{binary}` not found on PATH").into())
}

/// Whether we run as root, read from the effective uid in `/proc/self/status`.
pub fn is_root() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .is_some_and(|effective_uid| effective_uid == "0")
}

/// Makes sure every tool is installed. As root, missing packages are installed with apt-get;
/// otherwise the exact command to run is printed and an error returned.
pub fn ensure_tools(tools: &[Tool]) -> Result<()> {
    let mut missing_packages: Vec<&str> = Vec::new();
    for tool in tools {
        if which(tool.binary).is_none() && !missing_packages.contains(&tool.package) {
            missing_packages.push(tool.package);
        }
    }
    if missing_packages.is_empty() {
        return Ok(());
    }
    let list = missing_packages.join(" ");
    if !is_root() {
        bail!(
            "missing packages: {list}\ninstall them with:\n    sudo apt-get update && sudo apt-get install -y {list}\nthen run this command again"
        );
    }
    if which("apt-get").is_none() {
        bail!("missing packages: {list}, and apt-get is not available to install them");
    }
    eprintln!("installing missing packages: {list}");
    let sh = project::shell()?;
    let _noninteractive = sh.push_env("DEBIAN_FRONTEND", "noninteractive");
    // A failed update (for example one unreachable mirror) should not stop an install that the
    // existing package lists can still satisfy, so its failure is only reported.
    if let Err(error) = cmd!(sh, "apt-get update -q").run() {
        eprintln!("warning: {error}; trying the install anyway");
    }
    cmd!(
        sh,
        "apt-get install -y -q --no-install-recommends {missing_packages...}"
    )
    .run()?;
    for tool in tools {
        if which(tool.binary).is_none() {
            bail!(
                "`{}` is still missing after installing {}",
                tool.binary,
                tool.package
            );
        }
    }
    Ok(())
}

/// Sends a signal (a name such as `TERM` or `KILL`) to a pid. Returns whether it was delivered.
pub fn signal(pid: u32, signal_name: &str) -> bool {
    const KILL: &str = r#"kill -s "$1" "$2""#;
    let pid = pid.to_string();
    Shell::new().is_ok_and(|sh| {
        cmd!(sh, "sh -c {KILL} sh {signal_name} {pid}")
            .quiet()
            .ignore_stderr()
            .run()
            .is_ok()
    })
}

/// Whether a pid names a live process (zombies, which are dead but not yet reaped, count as gone).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the parenthesised command name, which may itself contain spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

/// The command line of a process, arguments joined with spaces, if it is alive.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> = raw
        .split(|byte| *byte == 0)
        .filter(|word| !word.is_empty())
        .map(|word| String::from_utf8_lossy(word).into_owned())
        .collect();
    Some(words.join(" "))
}

/// Reads a pid from a pid file, if the file exists and holds a number.
pub fn read_pid_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The last `count` lines of a text file, for showing why a server failed.
pub fn tail(path: &Path, count: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return format!("(no log at {})", path.display());
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_reaches_a_child_and_not_a_dead_pid() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        assert!(signal(child.id(), "TERM"));
        assert!(!child.wait().unwrap().success());
        assert!(!signal(child.id(), "TERM"));
    }

    #[test]
    fn this_process_is_alive_and_has_a_cmdline() {
        let pid = std::process::id();
        assert!(pid_alive(pid));
        assert!(cmdline(pid).is_some_and(|line| line.contains("xtask")));
    }

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("no-such-program-rkproxy").is_none());
    }
}

/// Child processes that are stopped when the guard is dropped: on success, on error and on
/// Ctrl-C alike (see `signals`), so a test run never leaves servers behind.
#[derive(Default)]
pub struct ChildGuard {
    children: Vec<(String, std::process::Child)>,
}

impl ChildGuard {
    /// Takes ownership of a running child. `name` is used in messages.
    pub fn push(&mut self, name: impl Into<String>, child: std::process::Child) {
        self.children.push((name.into(), child));
    }

    /// The child pushed under `name`, to check whether it is still running.
    pub fn child_mut(&mut self, name: &str) -> Option<&mut std::process::Child> {
        self.children
            .iter_mut()
            .find(|(child_name, _)| child_name == name)
            .map(|(_, child)| child)
    }

    /// Stops every child: SIGTERM to all first (so they shut down in parallel), then a wait of up
    /// to ten seconds each, then SIGKILL for any that is still running.
    pub fn stop_all(&mut self) {
        for (_, child) in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                signal(child.id(), "TERM");
            }
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        for (name, mut child) in self.children.drain(..) {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    Ok(None) => {
                        eprintln!("{name} (pid {}) ignored SIGTERM; killing it", child.id());
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Stops a process that is not our child (a daemon found through its pid file): SIGTERM, up to
/// ten seconds of waiting, then SIGKILL. Returns whether it is gone.
pub fn stop_pid(pid: u32) -> bool {
    if !pid_alive(pid) {
        return true;
    }
    signal(pid, "TERM");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    signal(pid, "KILL");
    std::thread::sleep(std::time::Duration::from_millis(200));
    !pid_alive(pid)
}

/// Waits for a child to exit while watching for Ctrl-C/SIGTERM. Children in the terminal's
/// process group get Ctrl-C themselves; a SIGTERM sent to xtask alone is forwarded here, and a
/// child that is still running ten seconds after the signal is killed. (xshell's `run` waits
/// without looking at signals, so a SIGTERM to xtask would not reach the child.)
pub fn wait_forwarding_signals(
    child: &mut std::process::Child,
) -> Result<std::process::ExitStatus> {
    let mut signalled_at: Option<std::time::Instant> = None;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if crate::signals::requested() {
            match signalled_at {
                None => {
                    signalled_at = Some(std::time::Instant::now());
                    // Give a child that got Ctrl-C itself a moment before forwarding.
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    if child.try_wait()?.is_none() {
                        signal(child.id(), "TERM");
                    }
                }
                Some(at) if at.elapsed() > std::time::Duration::from_secs(10) => {
                    let _ = child.kill();
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
