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
//! - `clients`: real client libraries (Python, Node, Go) against rkproxy and the test servers.
//!
//! # Layout
//!
//! - `flags`: command line parsing with `xflags`.
//! - `project`: where the workspace, the target dir and cargo are.
//! - `shell`: finding programs, installing Debian packages, children that keep running, signalling
//!   pids (commands that run to completion use `xshell` directly).
//! - `signals`: turns Ctrl-C and SIGTERM into a flag that long waits poll.
//! - `resp`: a tiny blocking Redis client for health checks.
//! - `ports`: free loopback ports.
//! - `redis`: starting and stopping redis-server processes and forming clusters.
//! - `servers`: the server set used by `test` (and, later, Kafka).
//! - `tls`: test certificates (Debian's `openssl`) and the TLS-only Redis servers of `test`.
//! - `kafka`: a single-node Apache Kafka broker from Maven Central jars.
//! - `fixed`: the fixed-port servers shared by `demo` and `cluster`.
//! - one module per command: `demo`, `test`, `cluster`, `bench`, `ci`, `codegen`, `clients`
//!   (with `client_helpers`, the K* helper packages it tests).

#![forbid(unsafe_code)]

mod bench;
mod ci;
mod client_helpers;
mod clients;
mod cluster;
mod codegen;
mod demo;
mod fixed;
mod flags;
mod kafka;
mod kafka_secure;
mod ports;
mod project;
mod redis;
mod resp;
mod servers;
mod shell;
mod signals;
mod test;
mod tls;

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
    let command = match flags::parse(std::env::args_os().skip(1).collect()) {
        Ok(command) => command,
        Err(error) if error.is_help() => flags::XtaskCmd::Help(flags::Help),
        Err(error) => {
            eprintln!("error: {error}\n(`cargo xtask help` lists the commands and their options)");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = signals::install() {
        eprintln!("error: cannot install signal handlers: {error}");
        return ExitCode::FAILURE;
    }
    let outcome = match command {
        flags::XtaskCmd::Help(_) => {
            println!("{}", flags::help());
            Ok(ExitCode::SUCCESS)
        }
        flags::XtaskCmd::Demo(options) => demo::run(&options),
        flags::XtaskCmd::Test(options) => test::run(&options),
        flags::XtaskCmd::Cluster(cluster) => cluster::run(cluster.subcommand),
        flags::XtaskCmd::Bench(options) => bench::run(&options.into()),
        flags::XtaskCmd::Ci(options) => ci::run(options),
        flags::XtaskCmd::Clients(options) => clients::run(&options),
        flags::XtaskCmd::Codegen(_) => codegen::run(&project::root())
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
