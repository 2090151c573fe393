//! `cargo xtask`: developer automation for rkproxy.
//!
//! Everything a developer or CI needs besides plain `cargo` lives here, written in Rust so that it
//! runs wherever the workspace builds (the matklad "xtask" pattern). The commands are:
//!
//! - `demo`: start a standalone Redis and a Redis Cluster on fixed ports, then run rkproxy in front
//!   of them in the foreground.
//! - `test`: start throw-away servers on free ports and run `cargo test --workspace` against them.
//! - `cluster up|down|status`: the demo's servers, detached, for working by hand.
//! - `bench`: redis-benchmark against direct Redis, rkproxy and twemproxy, side by side.
//! - `ci`: formatting, clippy, then `test`.
//! - `codegen`: regenerate cluster-router's command table from a live redis-server.
//!
//! # Layout
//!
//! - `flags`: command line parsing (by hand, to keep dependencies at one).
//! - `project`: where the workspace, the target dir and cargo are.
//! - `shell`: running programs, checking for them, installing Debian packages, signalling pids.
//! - `signals`: turns Ctrl-C and SIGTERM into a flag that long waits poll.
//! - `resp`: a tiny blocking Redis client for health checks.
//! - `ports`: free loopback ports.
//! - `redis`: starting and stopping redis-server processes and forming clusters.
//! - `servers`: the server set used by `test` (and, later, Kafka).
//! - `kafka`: a single-node Apache Kafka broker from Maven Central jars.
//! - `fixed`: the fixed-port servers shared by `demo` and `cluster`.
//! - one module per command: `demo`, `test`, `cluster`, `bench`, `ci`, `codegen`.

#![forbid(unsafe_code)]

mod bench;
mod ci;
mod cluster;
mod codegen;
mod demo;
mod fixed;
mod flags;
mod kafka;
mod ports;
mod project;
mod redis;
mod resp;
mod servers;
mod shell;
mod signals;
mod test;

use std::process::ExitCode;

/// The error type of every task: xtask is a binary, so a message for a human is all we need.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The result type of every task.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns early with a formatted error message, like `anyhow::bail!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err(format!($($arg)*).into())
    };
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match flags::parse(&args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("error: {message}\n\n{}", flags::USAGE);
            return ExitCode::from(2);
        }
    };
    if let Err(error) = signals::install() {
        eprintln!("error: cannot install signal handlers: {error}");
        return ExitCode::FAILURE;
    }
    let outcome = match command {
        flags::Command::Help => {
            println!("{}", flags::USAGE);
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Demo(options) => demo::run(&options),
        flags::Command::Test(options) => test::run(&options),
        flags::Command::Cluster(action) => cluster::run(action),
        flags::Command::Bench(options) => bench::run(&options),
        flags::Command::Ci(options) => ci::run(&options),
        flags::Command::Codegen => codegen::run(&project::root())
            .map(|()| ExitCode::SUCCESS)
            .map_err(Error::from),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
