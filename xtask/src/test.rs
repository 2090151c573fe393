//! `cargo xtask test`: run the workspace tests against real, throw-away servers.
//!
//! The tests are compiled first (`cargo test --no-run`), so servers do not sit idle during a long
//! build and a compile error needs no servers at all. Then the servers start on free ports, the
//! tests run with `RKPROXY_TEST_*` pointing at them, and the servers are stopped whatever happens.
//! The exit code is cargo's.

use std::process::{Command, ExitCode};

use crate::flags::TestOptions;
use crate::servers::{ServerChoice, TestServers};
use crate::{kafka, project, shell, Result};

/// Runs the command.
pub fn run(options: &TestOptions) -> Result<ExitCode> {
    let mut tools = shell::REDIS_TOOLS.to_vec();
    if !options.no_kafka {
        tools.extend_from_slice(kafka::KAFKA_TOOLS);
    }
    shell::ensure_tools(&tools)?;

    let mut build = cargo_test(&options.cargo_args, false);
    build.arg("--no-run");
    let build_status = shell::run(&mut build);
    if let Err(error) = build_status {
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

    let mut command = cargo_test(&options.cargo_args, true);
    command.envs(servers.env());
    eprintln!("$ {}", shell::format_command(&command));
    let status = command.spawn().and_then(|mut child| {
        shell::wait_forwarding_signals(&mut child).map_err(std::io::Error::other)
    });

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

/// `cargo test`, for the whole workspace unless the extra arguments pick packages themselves.
/// Arguments after a second `--` go to the test binaries, and are left out of the build step.
fn cargo_test(extra_args: &[String], with_test_binary_args: bool) -> Command {
    let mut command = project::cargo();
    command.arg("test");
    let (cargo_args, test_binary_args) = match extra_args.iter().position(|arg| arg == "--") {
        Some(split) => (&extra_args[..split], &extra_args[split..]),
        None => (extra_args, &[][..]),
    };
    let picks_packages = cargo_args
        .iter()
        .any(|arg| arg.starts_with("-p") || arg.starts_with("--package") || arg == "--workspace");
    if !picks_packages {
        command.arg("--workspace");
    }
    // Report every failing test binary, not just the first.
    if !cargo_args.iter().any(|arg| arg == "--no-fail-fast") {
        command.arg("--no-fail-fast");
    }
    command.args(cargo_args);
    if with_test_binary_args {
        command.args(test_binary_args);
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(command: &Command) -> Vec<String> {
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn whole_workspace_unless_packages_are_picked() {
        let extra: Vec<String> = vec!["--".into(), "--nocapture".into()];
        assert_eq!(
            args_of(&cargo_test(&extra, true)),
            ["test", "--workspace", "--no-fail-fast", "--", "--nocapture"]
        );
        assert_eq!(
            args_of(&cargo_test(&extra, false)),
            ["test", "--workspace", "--no-fail-fast"]
        );
        let extra: Vec<String> = vec!["-p".into(), "proxy-bin".into()];
        assert_eq!(
            args_of(&cargo_test(&extra, true)),
            ["test", "--no-fail-fast", "-p", "proxy-bin"]
        );
    }
}
