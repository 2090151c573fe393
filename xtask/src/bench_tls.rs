//! The `tls` section of `cargo xtask bench`: GET/SET at `-P 1` and `-P 16` with TLS on one side of rkproxy,
//! against redis-server's own TLS port (`redis-benchmark --tls`), in two tables:
//!
//! - `tls-client`: `redis-benchmark --tls` to rkproxy's `tls_listen`, rkproxy to a plaintext redis-server;
//! - `tls-client-unix`: the same, rkproxy reaching the plaintext redis-server over its Unix domain socket
//!   (`nodes = ["unix:/path"]`), as a TLS terminator beside its Redis is deployed;
//! - `tls-backend`: plain redis-benchmark to rkproxy, rkproxy to a TLS-only redis-server (`tls = true` pool).
//!
//! `direct` is `redis-benchmark --tls` to the TLS-only redis-server in both. The certificates are made for the
//! run as `cargo xtask test` makes them (xtask/src/tls.rs). The goal from the TLS issue: rkproxy at least
//! 0.9 x redis-server's TLS.

use std::net::SocketAddr;
use std::path::Path;

use super::{start_rkproxy, Endpoint, Goal, Scenario, Section, Workload, PIPELINED_REQUEST_FACTOR};
use crate::flags::{BenchOptions, BenchTarget};
use crate::redis::{self, RedisKind, RedisSpec};
use crate::shell::ChildGuard;
use crate::tls::TlsFiles;
use crate::{bail, ports, Result};

/// The goal of both directions, at both pipeline depths.
const TLS_GOAL: Goal = Goal::vs_direct(0.9);

/// Starts the servers and the two proxies; returns the two sections.
pub(super) fn sections(
    options: &BenchOptions,
    dir: &Path,
    guard: &mut ChildGuard,
) -> Result<Vec<Section>> {
    if !options.wants_target(BenchTarget::Rkproxy) {
        bail!("the tls section measures rkproxy; keep rkproxy among --targets");
    }
    let files = TlsFiles::generate(&dir.join("tls"))?;
    let plain = RedisSpec {
        name: "tls-bench-plain".into(),
        port: ports::free_port()?,
        dir: dir.join("tls-bench-plain"),
        kind: RedisKind::StandaloneWithSocket,
        daemonize: false,
    };
    guard.push("tls-bench-plain", redis::spawn_child(&plain)?);
    // In `dir`, beside `dir/tls`, where a TLS server finds the certificates.
    let secure = RedisSpec {
        name: "tls-bench-secure".into(),
        port: ports::free_port()?,
        dir: dir.join("tls-bench-secure"),
        kind: RedisKind::TlsStandalone,
        daemonize: false,
    };
    guard.push("tls-bench-secure", redis::spawn_child(&secure)?);

    let client_side = start_proxy(
        options,
        &files,
        "rkproxy-tls-client",
        &plain.addr().to_string(),
        false,
        dir,
        guard,
    )?;
    let unix_node = plain.unix_socket_node();
    let client_side_unix = start_proxy(
        options,
        &files,
        "rkproxy-tls-client-unix",
        &unix_node,
        false,
        dir,
        guard,
    )?;
    let backend_side = start_proxy(
        options,
        &files,
        "rkproxy-tls-backend",
        &secure.addr().to_string(),
        true,
        dir,
        guard,
    )?;
    let tls_args = vec![
        "--tls".to_string(),
        "--cacert".to_string(),
        files.path("ca.crt").display().to_string(),
    ];
    for (addr, tls) in [
        (secure.addr(), true),
        (client_side, true),
        (client_side_unix, true),
        (backend_side, false),
    ] {
        check(&files, addr, tls)?;
    }
    let direct = Endpoint {
        target: BenchTarget::Direct,
        addr: secure.addr(),
        extra_args: tls_args.clone(),
    };
    Ok(vec![
        Section {
            name: "tls-client",
            note: "redis-benchmark --tls to rkproxy's tls_listen (backend plaintext) vs redis-server's TLS port; \
                   goal rkproxy >= 0.9 x direct"
                .to_string(),
            endpoints: vec![
                direct.clone(),
                Endpoint {
                    target: BenchTarget::Rkproxy,
                    addr: client_side,
                    extra_args: tls_args.clone(),
                },
            ],
            scenarios: scenarios(options),
        },
        Section {
            name: "tls-client-unix",
            note: "the same, rkproxy reaching that plaintext redis-server over its Unix domain socket \
                   (nodes = [\"unix:/path\"]); goal rkproxy >= 0.9 x direct"
                .to_string(),
            endpoints: vec![
                direct.clone(),
                Endpoint {
                    target: BenchTarget::Rkproxy,
                    addr: client_side_unix,
                    extra_args: tls_args,
                },
            ],
            scenarios: scenarios(options),
        },
        Section {
            name: "tls-backend",
            note: "plain redis-benchmark to rkproxy, whose pool reaches a TLS-only redis-server, vs \
                   redis-benchmark --tls to that server; goal rkproxy >= 0.9 x direct"
                .to_string(),
            endpoints: vec![
                direct,
                Endpoint {
                    target: BenchTarget::Rkproxy,
                    addr: backend_side,
                    extra_args: Vec::new(),
                },
            ],
            scenarios: scenarios(options),
        },
    ])
}

fn scenarios(options: &BenchOptions) -> Vec<Scenario> {
    vec![
        Scenario {
            workload: Workload::Tests("get,set"),
            pipeline: 1,
            requests: options.requests,
            goal: Some(TLS_GOAL),
        },
        Scenario {
            workload: Workload::Tests("get,set"),
            pipeline: 16,
            requests: options.requests * PIPELINED_REQUEST_FACTOR,
            goal: Some(TLS_GOAL),
        },
    ]
}

/// rkproxy in front of `backend` (a pool node: `host:port` or `unix:/path`): with a TLS listener (`backend_tls`
/// false), or with a TLS pool (true).
fn start_proxy(
    options: &BenchOptions,
    files: &TlsFiles,
    name: &str,
    backend: &str,
    backend_tls: bool,
    dir: &Path,
    guard: &mut ChildGuard,
) -> Result<SocketAddr> {
    let listen = ports::loopback(ports::free_port()?);
    let tls_listen = ports::loopback(ports::free_port()?);
    let pool_tls = if backend_tls {
        format!(
            "tls = true\nca_file = \"{}\"\n",
            files.path("ca.crt").display()
        )
    } else {
        String::new()
    };
    let config = format!(
        "# Generated by `cargo xtask bench`.\nlisten = \"{listen}\"\ntls_listen = \"{tls_listen}\"\n\
         default_pool = \"main\"\n[tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n\
         [pools.main]\nkind = \"standalone\"\nnodes = [\"{backend}\"]\n{pool_tls}",
        cert = files.path("server.crt").display(),
        key = files.path("server.key").display(),
    );
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config)?;
    let args = ["--config".to_string(), config_path.display().to_string()];
    start_rkproxy(
        options,
        BenchTarget::Rkproxy,
        name,
        listen,
        &args,
        dir,
        guard,
    )?;
    Ok(if backend_tls { listen } else { tls_listen })
}

/// SET then GET through `addr`, over TLS or not, so a broken setup fails before any benchmark.
fn check(files: &TlsFiles, addr: SocketAddr, tls: bool) -> Result<()> {
    let key = "xtask:bench:check:tls";
    let answer = if tls {
        files.redis_cli_output(addr, &["SET", key, "ok"])?
    } else {
        let mut connection = crate::resp::Connection::connect(addr)?;
        match connection.command(&["SET", key, "ok"])? {
            crate::resp::Reply::Status(status) => status,
            other => bail!("SET through {addr} answered {other:?}"),
        }
    };
    if answer.trim() != "OK" {
        bail!("SET through {addr} answered {answer}");
    }
    Ok(())
}
