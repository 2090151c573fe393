//! `cargo xtask demo`: everything needed to try rkproxy by hand, in one command.
//!
//! Installs Redis (and Kafka's tools) if missing, builds rkproxy in release, starts the fixed-port
//! servers (see `fixed`), writes `target/rkproxy-demo/rkproxy.toml` and runs rkproxy in the foreground on
//! 127.0.0.1:7480. When rkproxy exits (Ctrl-C included) the servers this demo started are stopped;
//! servers that `cargo xtask cluster up` started are reused and left running.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use xshell::cmd;

use crate::fixed::{self, Owner};
use crate::flags::Demo;
use crate::{bail, kafka, ports, project, shell, signals, Result};

/// Where the demo proxy listens.
pub const LISTEN_PORT: u16 = 7480;

/// Runs the command.
pub fn run(options: &Demo) -> Result<ExitCode> {
    let mut tools = shell::REDIS_TOOLS.to_vec();
    if !options.no_kafka {
        tools.extend_from_slice(kafka::KAFKA_TOOLS);
    }
    shell::ensure_tools(&tools)?;
    if !options.no_build {
        build_release_rkproxy()?;
    }
    let binary = project::release_rkproxy();
    if !binary.exists() {
        bail!(
            "{} does not exist; build it with `cargo build --release -p proxy-bin`",
            binary.display()
        );
    }
    if !ports::is_free(LISTEN_PORT) {
        bail!(
            "127.0.0.1:{LISTEN_PORT} is already in use (another demo still running?); \
             stop that program first"
        );
    }

    fixed::up(Owner::Demo, !options.no_kafka)?;
    // The owner file says who stops the servers: a demo stops what it owns, and leaves running
    // the servers that `cargo xtask cluster up` started (even if the demo added Kafka to them).
    let stop_at_exit = fixed::owner() == Some(Owner::Demo);
    if stop_at_exit {
        eprintln!("the servers stop when the demo exits");
    } else {
        eprintln!(
            "the servers were started by `cargo xtask cluster up` and keep running after the demo \
             (stop them with `cargo xtask cluster down`)"
        );
    }
    let _servers = StopServersOnDrop {
        enabled: stop_at_exit,
    };

    let config_path = write_config(!options.no_kafka)?;
    let sh = project::shell()?;
    let mut child = shell::spawn(cmd!(sh, "{binary} --config {config_path}"))?;
    let ready = wait_listening(&mut child, Duration::from_secs(30));
    if let Err(error) = ready {
        if child.try_wait()?.is_none() {
            let _ = child.kill();
        }
        let _ = child.wait();
        return Err(error);
    }
    eprintln!();
    eprintln!(
        "rkproxy is listening on 127.0.0.1:{LISTEN_PORT} (config: {})",
        project::display(&config_path)
    );
    eprintln!("connect with:");
    eprintln!("    redis-cli -p {LISTEN_PORT}");
    eprintln!("then try `USE cluster` for the Redis Cluster pool");
    if !options.no_kafka {
        eprintln!("or `USE kafka` and `KPUSH demo hello`, `KPOP demo` for the Kafka pool");
        eprintln!(
            "Kafka runs on 127.0.0.1:{} (kcat -b 127.0.0.1:{} -L)",
            fixed::KAFKA_PORT,
            fixed::KAFKA_PORT
        );
    }
    eprintln!("press Ctrl-C to stop");
    eprintln!();
    let status = shell::wait_forwarding_signals(&mut child)?;
    eprintln!("rkproxy exited ({status})");
    if signals::requested() || status.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// Builds the release binary.
pub fn build_release_rkproxy() -> Result<()> {
    let sh = project::shell()?;
    let cargo = project::cargo();
    cmd!(sh, "{cargo} build --release -p proxy-bin").run()?;
    Ok(())
}

/// The demo config: the standalone server as the default pool, the cluster as a second pool, and (with
/// `kafka`) the Kafka broker as a third, with a topic `demo`.
pub fn config_text(kafka: bool) -> String {
    let cluster_nodes: Vec<String> = fixed::CLUSTER_PORTS[..3]
        .iter()
        .map(|port| format!("\"127.0.0.1:{port}\""))
        .collect();
    format!(
        "listen = \"127.0.0.1:{LISTEN_PORT}\"\n\
         default_pool = \"standalone\"\n\
         \n\
         [pools.standalone]\n\
         kind = \"standalone\"\n\
         nodes = [\"127.0.0.1:{standalone}\"]\n\
         \n\
         [pools.cluster]\n\
         kind = \"cluster\"\n\
         nodes = [{cluster}]\n{kafka}",
        standalone = fixed::STANDALONE_PORT,
        cluster = cluster_nodes.join(", "),
        kafka = if kafka {
            format!(
                "\n[pools.kafka]\n\
                 kind = \"kafka\"\n\
                 nodes = [\"127.0.0.1:{}\"]\n\
                 \n\
                 [pools.kafka.topics.demo]\n\
                 partitions = 3\n\
                 producers = [\"*\"]\n\
                 consumers = [\"*\"]\n",
                fixed::KAFKA_PORT
            )
        } else {
            String::new()
        },
    )
}

fn write_config(kafka: bool) -> Result<PathBuf> {
    let dir = project::target_dir().join("rkproxy-demo");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("rkproxy.toml");
    std::fs::write(&path, config_text(kafka))?;
    Ok(path)
}

/// Waits until the proxy accepts connections, failing early if it exits.
fn wait_listening(child: &mut std::process::Child, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("rkproxy exited during startup ({status})");
        }
        if TcpStream::connect_timeout(&ports::loopback(LISTEN_PORT), Duration::from_millis(200))
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("rkproxy did not listen on 127.0.0.1:{LISTEN_PORT} within {timeout:?}");
        }
        signals::sleep(Duration::from_millis(50))?;
    }
}

/// Stops the fixed servers when the demo ends, if the demo is responsible for them.
struct StopServersOnDrop {
    enabled: bool,
}

impl Drop for StopServersOnDrop {
    fn drop(&mut self) {
        if !self.enabled {
            return;
        }
        // `cluster up` may have adopted the servers while the demo ran.
        if fixed::owner() == Some(Owner::ClusterUp) {
            eprintln!("leaving the servers running: `cargo xtask cluster up` adopted them");
            return;
        }
        match fixed::down() {
            Ok(stopped) => eprintln!("stopped the {stopped} servers the demo started"),
            Err(error) => eprintln!("error while stopping the servers: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_the_documented_shape() {
        let expected = r#"listen = "127.0.0.1:7480"
default_pool = "standalone"

[pools.standalone]
kind = "standalone"
nodes = ["127.0.0.1:16379"]

[pools.cluster]
kind = "cluster"
nodes = ["127.0.0.1:17000", "127.0.0.1:17001", "127.0.0.1:17002"]
"#;
        assert_eq!(config_text(false), expected);
        let with_kafka = config_text(true);
        assert!(with_kafka.starts_with(expected));
        assert!(
            with_kafka.contains("[pools.kafka]\nkind = \"kafka\"\nnodes = [\"127.0.0.1:19092\"]\n")
        );
        assert!(with_kafka.contains("[pools.kafka.topics.demo]\npartitions = 3\n"));
    }
}
