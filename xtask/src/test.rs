//! `cargo xtask test`: run the workspace tests against real, throw-away servers.
//!
//! The tests are compiled first (`cargo test --no-run`), so servers do not sit idle during a long
//! build and a compile error needs no servers at all. Then the servers start on free ports, the
//! tests run with `RKPROXY_TEST_*` pointing at them, and the servers are stopped whatever happens.
//! The exit code is cargo's.

use std::ffi::OsString;
use std::process::ExitCode;

use xshell::cmd;

use crate::flags::Test;
use crate::servers::{ServerChoice, TestServers};
use crate::{kafka, project, shell, Result};

/// Runs the command.
pub fn run(options: &Test) -> Result<ExitCode> {
    let mut tools = shell::REDIS_TOOLS.to_vec();
    tools.push(crate::tls::OPENSSL);
    if !options.no_kafka {
        tools.extend_from_slice(kafka::KAFKA_TOOLS);
    }
    shell::ensure_tools(&tools)?;

    let sh = project::shell()?;
    let cargo = project::cargo();
    let build_args = cargo_test_args(&options.cargo_args, false);
    if let Err(error) = cmd!(sh, "{cargo} {build_args...} --no-run").run() {
        eprintln!("error: {error}");
        return Ok(ExitCode::FAILURE);
    }

    eprintln!("starting test servers...");
    let mut servers = TestServers::start(ServerChoice {
        kafka: !options.no_kafka,
    })?;
    eprintln!(
        "test servers (data and logs in {}):",
        project::display(&servers.dir)
    );
    for (name, value) in servers.env() {
        eprintln!("  {name}={value}");
    }

    let test_args = cargo_test_args(&options.cargo_args, true);
    let command = cmd!(sh, "{cargo} {test_args...}").envs(servers.env());
    // Spawned, not run by xshell, so that a SIGTERM to xtask reaches cargo test.
    let status =
        shell::spawn(command).and_then(|mut child| shell::wait_forwarding_signals(&mut child));

    servers.keep_data = options.keep_data || !matches!(&status, Ok(status) if status.success());
    servers.stop();
    let status = status?;
    eprintln!("cargo test finished ({status}); all test servers stopped");
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        // Killed by a signal (Ctrl-C): the conventional 128 + SIGINT.
        None => ExitCode::from(130),
    })
}

/// The arguments of `cargo test`, for the whole workspace unless the extra arguments pick packages
/// themselves. Arguments after a second `--` go to the test binaries, and are left out of the
/// build step.
fn cargo_test_args(extra_args: &[OsString], with_test_binary_args: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["test".into()];
    let (cargo_args, test_binary_args) = match extra_args.iter().position(|arg| arg == "--") {
        Some(split) => (&extra_args[..split], &extra_args[split..]),
        None => (extra_args, &[][..]),
    };
    let picks_packages = cargo_args.iter().any(|arg| {
        let arg = arg.to_string_lossy();
        arg.starts_with("-p") || arg.starts_with("--package") || arg == "--workspace"
    });
    if !picks_packages {
        args.push("--workspace".into());
    }
    // Report every failing test binary, not just the first.
    if !cargo_args.iter().any(|arg| arg == "--no-fail-fast") {
        args.push("--no-fail-fast".into());
    }
    args.extend_from_slice(cargo_args);
    if with_test_binary_args {
        args.extend_from_slice(test_binary_args);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_workspace_unless_packages_are_picked() {
        let extra: Vec<OsString> = vec!["--".into(), "--nocapture".into()];
        assert_eq!(
            cargo_test_args(&extra, true),
            ["test", "--workspace", "--no-fail-fast", "--", "--nocapture"]
        );
        assert_eq!(
            cargo_test_args(&extra, false),
            ["test", "--workspace", "--no-fail-fast"]
        );
        let extra: Vec<OsString> = vec!["-p".into(), "proxy-bin".into()];
        assert_eq!(
            cargo_test_args(&extra, true),
            ["test", "--no-fail-fast", "-p", "proxy-bin"]
        );
    }
}
