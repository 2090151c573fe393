//! `cargo xtask cluster up|down|status`: the demo's servers, detached, for working by hand.

use std::process::ExitCode;

use crate::fixed::{self, Owner, UpOutcome};
use crate::flags::ClusterCmd;
use crate::{kafka, redis, shell, Result};

/// Runs the command.
pub fn run(action: ClusterCmd) -> Result<ExitCode> {
    match action {
        ClusterCmd::Up(up_flags) => up(!up_flags.no_kafka),
        ClusterCmd::Down(_) => down(),
        ClusterCmd::Status(_) => status(),
    }
}

fn up(with_kafka: bool) -> Result<ExitCode> {
    let mut tools = shell::REDIS_TOOLS.to_vec();
    if with_kafka {
        tools.extend_from_slice(kafka::KAFKA_TOOLS);
    }
    shell::ensure_tools(&tools)?;
    match fixed::up(Owner::ClusterUp, with_kafka)? {
        UpOutcome::Started => eprintln!("started the servers"),
        UpOutcome::Reused(owner) => {
            // A demo running now would stop them when it exits; from now on they stay up.
            fixed::set_owner(Owner::ClusterUp)?;
            match owner {
                Some(Owner::Demo) => eprintln!(
                    "the servers were already running (started by a demo); they now stay up \
                     until `cargo xtask cluster down`"
                ),
                _ => eprintln!("the servers were already running and healthy; nothing to do"),
            }
        }
    }
    print_status(&fixed::status());
    eprintln!("stop them with `cargo xtask cluster down`");
    Ok(ExitCode::SUCCESS)
}

fn down() -> Result<ExitCode> {
    let stopped = fixed::down()?;
    if stopped == 0 {
        eprintln!("no servers started by xtask were running");
    } else {
        eprintln!("stopped {stopped} servers");
    }
    Ok(ExitCode::SUCCESS)
}

fn status() -> Result<ExitCode> {
    let servers = fixed::status();
    print_status(&servers);
    let redis_up = servers
        .iter()
        .filter(|server| server.name != "kafka")
        .all(|server| server.answers_ping && server.pid.is_some());
    if redis_up {
        match redis::cluster_problem(&fixed::cluster_addrs()) {
            Ok(None) => println!("cluster: ok"),
            Ok(Some(problem)) => println!("cluster: not ok ({problem})"),
            Err(error) => println!("cluster: not ok ({error})"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(servers: &[fixed::ServerStatus]) {
    println!(
        "{:<18} {:<17} {:<8} {:<6} role",
        "server", "address", "pid", "ping"
    );
    for server in servers {
        println!(
            "{:<18} {:<17} {:<8} {:<6} {}",
            server.name,
            server.addr.to_string(),
            server
                .pid
                .map_or_else(|| "-".to_string(), |pid| pid.to_string()),
            match (server.answers_ping, server.name.as_str()) {
                (true, "kafka") => "ready",
                (true, _) => "PONG",
                (false, _) => "-",
            },
            server.role
        );
    }
}
