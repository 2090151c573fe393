//! The `tls` section of `cargo xtask bench`: GET/SET at `-P 1` and `-P 16` with TLS on one side of rkproxy,
//! against redis-server's own TLS port (`redis-benchmark --tls`), in four tables:
//!
//! - `tls-client`: `redis-benchmark --tls` to rkproxy's `tls_listen`, rkproxy to a plaintext redis-server;
//! - `tls-client-batch`: the same, rkproxy started under `chrt --batch 0` (SCHED_BATCH), as a deployment whose
//!   proxy shares its cores with its clients or Redis would run it (see the README's "Behaviour worth knowing");
//! - `tls-client-unix`: the same (normal scheduling), rkproxy reaching the plaintext redis-server over its Unix
//!   domain socket (`nodes = ["unix:/path"]`), as a TLS terminator beside its Redis is deployed;
//! - `tls-backend`: plain redis-benchmark to rkproxy, rkproxy to a TLS-only redis-server (`tls = true` pool).
//!
//! `direct` is `redis-benchmark --tls` to the TLS-only redis-server in all four. The certificates are made for
//! the run as `cargo xtask test` makes them (xtask/src/tls.rs). The goal from the TLS issue: rkproxy at least
//! 0.9 x redis-server's TLS.

use std::net::SocketAddr;
use std::path::Path;

use super::{
    start_rkproxy_scheduled, Endpoint, Goal, ProxyProcess, Scenario, Scheduling, Section, Workload,
    PIPELINED_REQUEST_FACTOR,
};
use crate::flags::{BenchOptions, BenchTarget};
use crate::redis::{self, RedisKind, RedisSpec};
use crate::shell::ChildGuard;
use crate::tls::TlsFiles;
use crate::{bail, ports, Result};

/// The goal of both directions, at both pipeline depths.
const TLS_GOAL: Goal = Goal::vs_direct(0.9);

/// Starts the servers and the four proxies; returns the four tables.
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

    let plain_node = plain.addr().to_string();
    let unix_node = plain.unix_socket_node();
    let secure_node = secure.addr().to_string();
    let mut start = |name, backend, backend_tls, scheduling| {
        let proxy = TlsProxy {
            name,
            backend,
            backend_tls,
            scheduling,
        };
        start_proxy(options, &files, &proxy, dir, guard)
    };
    let client_side = start("rkproxy-tls-client", &plain_node, false, Scheduling::Normal)?;
    let client_side_batch = start(
        "rkproxy-tls-client-batch",
        &plain_node,
        false,
        Scheduling::Batch,
    )?;
    let client_side_unix = start(
        "rkproxy-tls-client-unix",
        &unix_node,
        false,
        Scheduling::Normal,
    )?;
    let backend_side = start(
        "rkproxy-tls-backend",
        &secure_node,
        true,
        Scheduling::Normal,
    )?;
    for (addr, tls) in [
        (secure.addr(), true),
        (client_side, true),
        (client_side_batch, true),
        (client_side_unix, true),
        (backend_side, false),
    ] {
        check(&files, addr, tls)?;
    }
    let tls_args = vec![
        "--tls".to_string(),
        "--cacert".to_string(),
        files.path("ca.crt").display().to_string(),
    ];
    let direct = Endpoint {
        target: BenchTarget::Direct,
        addr: secure.addr(),
        extra_args: tls_args.clone(),
    };
    let section = |name, note: &str, addr, extra_args| Section {
        name,
        note: format!("{note}; goal rkproxy >= 0.9 x direct"),
        endpoints: vec![
            direct.clone(),
            Endpoint {
                target: BenchTarget::Rkproxy,
                addr,
                extra_args,
            },
        ],
        scenarios: scenarios(options),
    };
    Ok(vec![
        section(
            "tls-client",
            "redis-benchmark --tls to rkproxy's tls_listen (backend plaintext) vs redis-server's TLS port",
            client_side,
            tls_args.clone(),
        ),
        section(
            "tls-client-batch",
            "the same, rkproxy started under `chrt --batch 0` (SCHED_BATCH: its wake-ups do not preempt the \
             process running on the CPU)",
            client_side_batch,
            tls_args.clone(),
        ),
        section(
            "tls-client-unix",
            "the same (normal scheduling), rkproxy reaching that plaintext redis-server over its Unix domain \
             socket (nodes = [\"unix:/path\"])",
            client_side_unix,
            tls_args,
        ),
        section(
            "tls-backend",
            "plain redis-benchmark to rkproxy, whose pool reaches a TLS-only redis-server, vs \
             redis-benchmark --tls to that server",
            backend_side,
            Vec::new(),
        ),
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

/// One of the section's proxies: its name, the pool node it reaches (`host:port` or `unix:/path`), whether
/// that node speaks TLS, and how the process is started.
struct TlsProxy<'a> {
    name: &'a str,
    backend: &'a str,
    backend_tls: bool,
    scheduling: Scheduling,
}

/// Starts `proxy`: with a TLS listener in front of a plaintext node (`backend_tls` false; returns the TLS
/// listener's address), or with a plaintext listener and a TLS pool (true; returns the plaintext one).
fn start_proxy(
    options: &BenchOptions,
    files: &TlsFiles,
    proxy: &TlsProxy<'_>,
    dir: &Path,
    guard: &mut ChildGuard,
) -> Result<SocketAddr> {
    let listen = ports::loopback(ports::free_port()?);
    let tls_listen = ports::loopback(ports::free_port()?);
    let pool_tls = if proxy.backend_tls {
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
        backend = proxy.backend,
    );
    let config_path = dir.join(format!("{}.toml", proxy.name));
    std::fs::write(&config_path, config)?;
    let args = ["--config".to_string(), config_path.display().to_string()];
    let process = ProxyProcess {
        name: proxy.name,
        addr: listen,
        dir,
    };
    start_rkproxy_scheduled(
        options,
        BenchTarget::Rkproxy,
        &process,
        &args,
        proxy.scheduling,
        guard,
    )?;
    Ok(if proxy.backend_tls {
        listen
    } else {
        tls_listen
    })
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
