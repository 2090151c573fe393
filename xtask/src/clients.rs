//! `cargo xtask clients`: the Redis client libraries people use, against a real rkproxy.
//!
//! The workspace tests speak to rkproxy through redis-rs and raw sockets; applications use
//! redis-py, ioredis, node-redis, go-redis, Jedis, Lettuce. This command runs each of them, in plain
//! (non-cluster) mode, through the scenarios in `clients/matrix/<language>/`:
//!
//! 1. builds rkproxy (debug, or release with `--release`);
//! 2. installs each language's pinned packages: a venv under `target/clients/python/`, `npm ci`
//!    in a copy of the Node suite under `target/clients/node/`, `go mod download` for Go (the
//!    module cache is Go's own), Maven's test-compile for Java (build folder
//!    `target/clients/java/`, jars in Maven's own repository); nothing is written into `clients/`;
//! 3. starts the test servers that `cargo xtask test` uses (Kafka unless `--no-kafka`);
//! 4. starts two rkproxy processes in front of them (see [`open_config`] and [`tenant_config`]),
//!    with Kafka a third for the K* helper packages ([`client_helpers::config`]), and passes
//!    their addresses to the suites in `RKPROXY_CLIENTS_*` variables; for each suite it also
//!    writes the configuration of a proxy that only that suite starts, restarts and stops (see
//!    [`restart_env`]), so that restarting it disturbs no other suite;
//! 5. runs each suite with its own runner (pytest, node's test runner, go test, Maven Surefire
//!    with JUnit), each followed, with Kafka, by the tests of that language's K* helper package
//!    (`clients/<language>-rkproxy/`, see [`client_helpers`]), then stops everything and prints
//!    one line per suite with its time.
//!
//! Toolchains (python3, node and npm, go, java and mvn) are expected on the machine; only
//! packages are installed, from PyPI, npm, the Go module proxy and Maven Central.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use xshell::{cmd, Cmd};

use crate::flags::{ClientSuite, Clients, Named};
use crate::servers::{ServerChoice, TestServers};
use crate::shell::{self, ChildGuard};
use crate::{bail, client_helpers, kafka, ports, project, resp, signals, Result};

/// The name of the key-prefixed tenant (its AUTH user name).
const TENANT_USER: &str = "shop";
/// The password of the key-prefixed tenant.
const TENANT_PASSWORD: &str = "matrix-shop-pw";
/// The tenant's key prefix; the suites check that keys land under it.
const TENANT_PREFIX: &str = "matrix-shop:";
/// The topic of the Kafka pool (two partitions, anyone may produce and consume).
const KAFKA_TOPIC: &str = "matrix-clients";

/// Runs the command.
pub fn run(options: &Clients) -> Result<ExitCode> {
    let started = Instant::now();
    let suites: Vec<ClientSuite> = options
        .only
        .as_ref()
        .map_or_else(|| ClientSuite::ALL.to_vec(), |list| list.0.clone());
    let mut tools = shell::REDIS_TOOLS.to_vec();
    if !options.no_kafka {
        tools.extend_from_slice(kafka::KAFKA_TOOLS);
    }
    shell::ensure_tools(&tools)?;
    for suite in &suites {
        for program in toolchain(*suite) {
            shell::require(program)?;
        }
    }

    let binary = build_rkproxy(options.release)?;
    let install_started = Instant::now();
    for suite in &suites {
        install(*suite)?;
        if !options.no_kafka {
            client_helpers::install(*suite)?;
        }
    }
    let install_time = install_started.elapsed();

    eprintln!("starting test servers...");
    let mut servers = TestServers::start(ServerChoice {
        kafka: !options.no_kafka,
    })?;
    let outcomes = start_proxies_and_run(&binary, &servers, &suites, options.no_kafka);
    let all_passed = matches!(&outcomes, Ok(list) if list.iter().all(|outcome| outcome.passed));
    servers.keep_data = options.keep_data || !all_passed;
    servers.stop();
    let outcomes = outcomes?;

    eprintln!();
    eprintln!("client matrix (packages installed in {install_time:.0?}):");
    for outcome in &outcomes {
        let verdict = if outcome.passed { "passed" } else { "FAILED" };
        eprintln!(
            "  {:<16} {verdict} in {:.1?}",
            outcome.name, outcome.elapsed
        );
    }
    if options.no_kafka {
        eprintln!("  (--no-kafka: the Kafka scenarios and the K* helper packages were left out)");
    }
    eprintln!("total {:.0?}", started.elapsed());
    Ok(if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How one suite went (a language's matrix, or its K* helper package).
struct Outcome {
    name: String,
    passed: bool,
    elapsed: Duration,
}

/// Starts the proxies, runs every suite against them, stops the proxies.
fn start_proxies_and_run(
    binary: &Path,
    servers: &TestServers,
    suites: &[ClientSuite],
    no_kafka: bool,
) -> Result<Vec<Outcome>> {
    let mut proxies = ChildGuard::default();
    let open = start_proxy(
        binary,
        "rkproxy-open",
        &servers.dir,
        &mut proxies,
        |listen| open_config(listen, servers),
    )?;
    let tenant = start_proxy(
        binary,
        "rkproxy-tenant",
        &servers.dir,
        &mut proxies,
        |listen| tenant_config(listen, servers),
    )?;
    let mut env = suite_env(open, tenant, servers.kafka.is_some());
    if let Some(kafka) = servers.kafka {
        wait_kafka_pool(open, &[&["USE", "kafka"]], KAFKA_TOPIC)?;
        let nowhere = ports::loopback(ports::free_port()?);
        let helpers = start_proxy(
            binary,
            "rkproxy-helpers",
            &servers.dir,
            &mut proxies,
            |listen| client_helpers::config(listen, servers.redis, kafka, nowhere),
        )?;
        wait_kafka_pool(helpers, client_helpers::LOGIN, client_helpers::TOPIC)?;
        env.extend(client_helpers::env(helpers));
    }
    for (name, value) in &env {
        eprintln!("  {name}={value}");
    }
    let mut outcomes = Vec::new();
    for suite in suites {
        let suite_started = Instant::now();
        let mut suite_env = env.clone();
        suite_env.extend(restart_env(binary, servers, *suite)?);
        let passed = run_suite(*suite, &suite_env, no_kafka)?;
        outcomes.push(Outcome {
            name: suite.name().to_string(),
            passed,
            elapsed: suite_started.elapsed(),
        });
        if !no_kafka && !signals::requested() {
            let helpers_started = Instant::now();
            let passed = run_helpers_suite(*suite, &env)?;
            outcomes.push(Outcome {
                name: client_helpers::suite_name(*suite),
                passed,
                elapsed: helpers_started.elapsed(),
            });
        }
        if signals::requested() {
            break;
        }
    }
    proxies.stop_all();
    Ok(outcomes)
}

/// The programs a suite runs (its toolchain, which this command does not install).
fn toolchain(suite: ClientSuite) -> &'static [&'static str] {
    match suite {
        ClientSuite::Python => &["python3"],
        ClientSuite::Node => &["node", "npm"],
        ClientSuite::Go => &["go"],
        ClientSuite::Java => &["java", "mvn"],
    }
}

/// Builds the rkproxy binary and returns its path.
fn build_rkproxy(release: bool) -> Result<PathBuf> {
    let sh = project::shell()?;
    let cargo = project::cargo();
    let profile: &[&str] = if release { &["--release"] } else { &[] };
    cmd!(sh, "{cargo} build -p proxy-bin --bin rkproxy {profile...}").run()?;
    let folder = if release { "release" } else { "debug" };
    Ok(project::target_dir().join(folder).join("rkproxy"))
}

/// Where a suite's sources are.
fn suite_source(suite: ClientSuite) -> PathBuf {
    project::root()
        .join("clients")
        .join("matrix")
        .join(suite.name())
}

/// Where a suite's installed packages are (Go's are in Go's module cache).
fn install_dir(suite: ClientSuite) -> PathBuf {
    project::target_dir().join("clients").join(suite.name())
}

/// Installs a suite's pinned packages.
fn install(suite: ClientSuite) -> Result<()> {
    let sh = project::shell()?;
    let source = suite_source(suite);
    let dir = install_dir(suite);
    match suite {
        ClientSuite::Python => {
            let venv = dir.join("venv");
            if !venv.join("bin").join("python").exists() {
                cmd!(sh, "python3 -m venv {venv}").run()?;
            }
            let pip = venv.join("bin").join("pip");
            let requirements = source.join("requirements.txt");
            cmd!(
                sh,
                "{pip} install --disable-pip-version-check -q -r {requirements}"
            )
            .run()?;
        }
        ClientSuite::Node => {
            copy_node_suite(&source, &dir)?;
            sh.change_dir(&dir);
            cmd!(sh, "npm ci --no-audit --no-fund --loglevel=error").run()?;
        }
        ClientSuite::Go => {
            sh.change_dir(&source);
            cmd!(sh, "go mod download").run()?;
        }
        ClientSuite::Java => {
            sh.change_dir(&source);
            let build = maven_build_flag();
            cmd!(sh, "mvn -B -q -ntp test-compile {build}").run()?;
        }
    }
    Ok(())
}

/// Copies the Node suite (manifest, lock file, tests) to `dir`, where `npm ci` installs it: npm
/// writes `node_modules` next to the manifest, and the sources stay clean.
fn copy_node_suite(source: &Path, dir: &Path) -> Result<()> {
    let tests = dir.join("test");
    if tests.exists() {
        std::fs::remove_dir_all(&tests)?;
    }
    std::fs::create_dir_all(&tests)?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(source.join(file), dir.join(file))?;
    }
    for entry in std::fs::read_dir(source.join("test"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), tests.join(entry.file_name()))?;
    }
    Ok(())
}

/// Runs one suite with its own test runner; returns whether it passed.
fn run_suite(suite: ClientSuite, env: &[(&str, String)], no_kafka: bool) -> Result<bool> {
    eprintln!();
    eprintln!("=== {} client suite ===", suite.name());
    let sh = project::shell()?;
    let source = suite_source(suite);
    let command: Cmd<'_> = match suite {
        ClientSuite::Python => {
            let python = install_dir(suite).join("venv").join("bin").join("python");
            let kafka_test = source.join("test_kafka.py");
            let skip_kafka: Vec<String> = if no_kafka {
                vec![format!("--ignore={}", kafka_test.display())]
            } else {
                Vec::new()
            };
            cmd!(
                sh,
                "{python} -m pytest -q -p no:cacheprovider {source} {skip_kafka...}"
            )
            .env("PYTHONDONTWRITEBYTECODE", "1")
        }
        ClientSuite::Node => {
            sh.change_dir(install_dir(suite));
            cmd!(
                sh,
                "node --test test/ioredis.test.mjs test/node-redis.test.mjs test/ioredis-more.test.mjs test/node-redis-more.test.mjs test/restart.test.mjs"
            )
        }
        ClientSuite::Go => {
            sh.change_dir(&source);
            let skip_kafka: &[&str] = if no_kafka {
                &["-skip", "TestKafka"]
            } else {
                &[]
            };
            cmd!(sh, "go test -count=1 -v {skip_kafka...} ./...")
        }
        ClientSuite::Java => {
            sh.change_dir(&source);
            let build = maven_build_flag();
            let skip_kafka: &[&str] = if no_kafka {
                &["-DexcludedGroups=kafka"]
            } else {
                &[]
            };
            cmd!(sh, "mvn -B -ntp test {build} {skip_kafka...}")
        }
    };
    run_with_env(command, env)
}

/// Runs the tests of a language's K* helper package; returns whether they passed.
fn run_helpers_suite(suite: ClientSuite, env: &[(&str, String)]) -> Result<bool> {
    eprintln!();
    eprintln!("=== {} ===", client_helpers::suite_name(suite));
    let sh = project::shell()?;
    let python = install_dir(ClientSuite::Python)
        .join("venv")
        .join("bin")
        .join("python");
    run_with_env(client_helpers::test_command(&sh, suite, &python), env)
}

/// Runs a suite's command with the suites' variables, forwarding Ctrl-C; returns whether it passed.
fn run_with_env(command: Cmd<'_>, env: &[(&str, String)]) -> Result<bool> {
    let command = command.envs(env.iter().map(|(name, value)| (*name, value)));
    let status =
        shell::spawn(command).and_then(|mut child| shell::wait_forwarding_signals(&mut child))?;
    Ok(status.success())
}

/// Maven's build folder for the Java suite, under the target dir (the pom's default is the same
/// place for a workspace without `CARGO_TARGET_DIR`).
fn maven_build_flag() -> String {
    format!(
        "-Dmatrix.build={}",
        install_dir(ClientSuite::Java).display()
    )
}

/// The variables the suites read.
fn suite_env(open: SocketAddr, tenant: SocketAddr, kafka: bool) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("RKPROXY_CLIENTS_PROXY", open.to_string()),
        ("RKPROXY_CLIENTS_TENANT_PROXY", tenant.to_string()),
        ("RKPROXY_CLIENTS_TENANT_USER", TENANT_USER.to_string()),
        (
            "RKPROXY_CLIENTS_TENANT_PASSWORD",
            TENANT_PASSWORD.to_string(),
        ),
        ("RKPROXY_CLIENTS_TENANT_PREFIX", TENANT_PREFIX.to_string()),
    ];
    if kafka {
        env.push(("RKPROXY_CLIENTS_KAFKA_TOPIC", KAFKA_TOPIC.to_string()));
    }
    env
}

/// The variables of a suite's own restartable proxy: the rkproxy binary, a configuration
/// ([`restart_config`], on a free port, written to the servers folder) that the suite starts
/// it with, the address it will listen on, and the standalone Redis's own address (to check
/// from outside the proxy where a key landed). The suite starts the process itself, stops it
/// with SIGTERM and starts it again on the same port, so restarting it disturbs no other
/// suite; rkproxy must be started without the `RKPROXY_CLIENTS_*` variables, which it would
/// read as configuration keys.
fn restart_env(
    binary: &Path,
    servers: &TestServers,
    suite: ClientSuite,
) -> Result<Vec<(&'static str, String)>> {
    let listen = ports::loopback(ports::free_port()?);
    let config_path = servers
        .dir
        .join(format!("rkproxy-restart-{}.toml", suite.name()));
    std::fs::write(&config_path, restart_config(listen, servers))?;
    Ok(vec![
        (
            "RKPROXY_CLIENTS_RESTART_BINARY",
            binary.display().to_string(),
        ),
        (
            "RKPROXY_CLIENTS_RESTART_CONFIG",
            config_path.display().to_string(),
        ),
        ("RKPROXY_CLIENTS_RESTART_PROXY", listen.to_string()),
        ("RKPROXY_CLIENTS_REDIS", servers.redis.to_string()),
    ])
}

/// The restartable proxy: the key-prefixed tenant of [`tenant_config`] on the standalone pool,
/// allowed to `USE` the cluster pool (so a suite can see whether a `USE` survives the restart).
fn restart_config(listen: SocketAddr, servers: &TestServers) -> String {
    format!(
        "{redis_pools}\n\
         [tenants.{TENANT_USER}]\n\
         password = \"{TENANT_PASSWORD}\"\n\
         pool = \"standalone\"\n\
         pools = [\"cluster\"]\n\
         key_prefix = \"{TENANT_PREFIX}\"\n",
        redis_pools = redis_pools(listen, servers),
    )
}

/// The proxy without tenants: the standalone Redis as default pool, the cluster as pool
/// `cluster`, and Kafka as pool `kafka` with one topic. Clients reach a pool with `USE`.
fn open_config(listen: SocketAddr, servers: &TestServers) -> String {
    let mut config = redis_pools(listen, servers);
    if let Some(kafka) = servers.kafka {
        config.push_str(&format!(
            "\n[pools.kafka]\n\
             kind = \"kafka\"\n\
             nodes = [\"{kafka}\"]\n\
             \n\
             [pools.kafka.topics.{KAFKA_TOPIC}]\n\
             partitions = 2\n\
             producers = [\"*\"]\n\
             consumers = [\"*\"]\n"
        ));
    }
    config
}

/// The start of the open and the restartable proxy's configurations: the listen address, the
/// standalone Redis as default pool `standalone`, and the cluster as pool `cluster`.
fn redis_pools(listen: SocketAddr, servers: &TestServers) -> String {
    let nodes: Vec<String> = servers
        .cluster
        .iter()
        .map(|node| format!("\"{node}\""))
        .collect();
    format!(
        "listen = \"{listen}\"\n\
         default_pool = \"standalone\"\n\
         \n\
         [pools.standalone]\n\
         kind = \"standalone\"\n\
         nodes = [\"{redis}\"]\n\
         \n\
         [pools.cluster]\n\
         kind = \"cluster\"\n\
         nodes = [{nodes}]\n",
        redis = servers.redis,
        nodes = nodes.join(", "),
    )
}

/// The proxy with one tenant, which must AUTH and whose keys get a prefix, on a standalone pool
/// over the same Redis as the open proxy's default pool (so the suites can see the prefix).
fn tenant_config(listen: SocketAddr, servers: &TestServers) -> String {
    format!(
        "listen = \"{listen}\"\n\
         default_pool = \"standalone\"\n\
         \n\
         [pools.standalone]\n\
         kind = \"standalone\"\n\
         nodes = [\"{redis}\"]\n\
         \n\
         [tenants.{TENANT_USER}]\n\
         password = \"{TENANT_PASSWORD}\"\n\
         pool = \"standalone\"\n\
         key_prefix = \"{TENANT_PREFIX}\"\n",
        redis = servers.redis,
    )
}

/// Writes `dir/<name>.toml`, starts rkproxy with it (output in `dir/<name>.log`) on a free
/// port, and waits until it listens. Returns its address.
fn start_proxy(
    binary: &Path,
    name: &str,
    dir: &Path,
    guard: &mut ChildGuard,
    config: impl Fn(SocketAddr) -> String,
) -> Result<SocketAddr> {
    let listen = ports::loopback(ports::free_port()?);
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config(listen))?;
    let sh = project::shell()?;
    let mut command = shell::spawnable(cmd!(sh, "{binary} --config {config_path}"));
    shell::log_output(&mut command, &dir.join(format!("{name}.log")))?;
    guard.push(name, command.spawn()?);
    let Some(child) = guard.child_mut(name) else {
        bail!("{name} was not recorded");
    };
    wait_listening(child, listen, Duration::from_secs(30))?;
    eprintln!("{name} listens on {listen}");
    Ok(listen)
}

/// Waits until the proxy accepts connections, failing early if it exits.
fn wait_listening(
    child: &mut std::process::Child,
    listen: SocketAddr,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("rkproxy exited during startup ({status}); see its log in the servers folder");
        }
        if TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("rkproxy did not listen on {listen} within {timeout:?}");
        }
        signals::sleep(Duration::from_millis(50))?;
    }
}

/// Waits until the Kafka pool that `login` (AUTH, USE) reaches serves `topic` (the proxy connects
/// to Kafka and creates the topics in the background after it starts listening).
fn wait_kafka_pool(proxy: SocketAddr, login: &[&[&str]], topic: &str) -> Result<()> {
    let timeout = Duration::from_secs(60);
    let deadline = Instant::now() + timeout;
    let mut connection = resp::Connection::connect(proxy)?;
    for command in login {
        connection.text_command(command)?;
    }
    loop {
        let reply = connection.command(&["KPARTITIONS", topic])?;
        if matches!(&reply, resp::Reply::Array(Some(partitions)) if !partitions.is_empty()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the Kafka pool did not serve {topic} within {timeout:?}: {reply:?}");
        }
        signals::sleep(Duration::from_millis(200))?;
    }
}
