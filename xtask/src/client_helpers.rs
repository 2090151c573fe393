//! The K* helper packages of `cargo xtask clients`: `clients/<language>-rkproxy/`.
//!
//! Each language has a small package that sends KPUSH, KPOP, KPARTITIONS and KOFFSET through its
//! Redis client and re-sends `USE pool` when the client reconnects. Their tests need Kafka, so they
//! run only without `--no-kafka`, after the language's matrix suite, against a third rkproxy
//! ([`config`]): its tenant's default pool is a Redis pool, so a helper must `USE` the Kafka pool,
//! and a second Kafka pool has no broker, so Kafka's errors can be checked.
//!
//! Packages are installed like the matrix's: Python uses the matrix's venv (same redis-py and
//! pytest pins) with the package's `src/` on pytest's path; the TypeScript package is copied to
//! `target/clients/node-rkproxy/`, installed with `npm ci` and compiled there with its own `tsc`;
//! Go downloads into Go's module cache; Maven builds into `target/clients/java-rkproxy/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use xshell::{cmd, Cmd, Shell};

use crate::flags::{ClientSuite, Named};
use crate::{project, Result};

/// The tenant the helper tests connect as.
const USER: &str = "app";
/// Its password.
const PASSWORD: &str = "helpers-app-pw";
/// The Kafka pool over the test broker.
const KAFKA_POOL: &str = "kafka";
/// A Kafka pool whose broker address nothing listens on: K* commands get Kafka's
/// BROKER_NOT_AVAILABLE there.
const DOWN_POOL: &str = "kafka-down";
/// The topic every helper test may use; `<TOPIC>-managed-<language>` is each language's own topic
/// for proxy-managed KPOP, where no other test writes.
pub const TOPIC: &str = "helpers";

/// The helper package of a language.
pub fn source(suite: ClientSuite) -> PathBuf {
    project::root()
        .join("clients")
        .join(format!("{}-rkproxy", suite.name()))
}

/// Where a helper package is built (Node and Java; Python and Go build nothing there).
fn build_dir(suite: ClientSuite) -> PathBuf {
    project::target_dir()
        .join("clients")
        .join(format!("{}-rkproxy", suite.name()))
}

/// The name of a helper suite in the summary.
pub fn suite_name(suite: ClientSuite) -> String {
    format!("{}-rkproxy", suite.name())
}

/// Installs a helper package's dependencies and compiles what needs compiling.
pub fn install(suite: ClientSuite) -> Result<()> {
    let sh = project::shell()?;
    let source = source(suite);
    let build = build_dir(suite);
    match suite {
        // The matrix's venv has redis-py and pytest; pytest finds the package in `src/`.
        ClientSuite::Python => {}
        ClientSuite::Node => {
            copy_node_package(&source, &build)?;
            sh.change_dir(&build);
            cmd!(sh, "npm ci --no-audit --no-fund --loglevel=error").run()?;
            let tsc = build.join("node_modules").join(".bin").join("tsc");
            cmd!(sh, "{tsc} -p tsconfig.test.json").run()?;
        }
        ClientSuite::Go => {
            sh.change_dir(&source);
            cmd!(sh, "go mod download").run()?;
        }
        ClientSuite::Java => {
            sh.change_dir(&source);
            let flag = maven_build_flag();
            cmd!(sh, "mvn -B -q -ntp test-compile {flag}").run()?;
        }
    }
    Ok(())
}

/// The command that runs a helper package's tests. `python` is the matrix venv's interpreter.
pub fn test_command<'a>(sh: &'a Shell, suite: ClientSuite, python: &Path) -> Cmd<'a> {
    let source = source(suite);
    match suite {
        ClientSuite::Python => {
            let tests = source.join("tests");
            cmd!(sh, "{python} -m pytest -q -p no:cacheprovider {tests}")
                .env("PYTHONDONTWRITEBYTECODE", "1")
        }
        ClientSuite::Node => {
            sh.change_dir(build_dir(suite));
            cmd!(sh, "node --test build/test/")
        }
        ClientSuite::Go => {
            sh.change_dir(&source);
            cmd!(sh, "go test -count=1 -v ./...")
        }
        ClientSuite::Java => {
            sh.change_dir(&source);
            let flag = maven_build_flag();
            cmd!(sh, "mvn -B -ntp test {flag}")
        }
    }
}

/// Copies the TypeScript package (manifest, lock file, tsconfigs, sources, tests) to `build`, where
/// `npm ci` installs it and `tsc` compiles it, so that `clients/` stays clean.
fn copy_node_package(source: &Path, build: &Path) -> Result<()> {
    std::fs::create_dir_all(build)?;
    for file in [
        "package.json",
        "package-lock.json",
        "tsconfig.json",
        "tsconfig.test.json",
    ] {
        std::fs::copy(source.join(file), build.join(file))?;
    }
    for folder in ["src", "test", "build"] {
        let copy = build.join(folder);
        if copy.exists() {
            std::fs::remove_dir_all(&copy)?;
        }
    }
    for folder in ["src", "test"] {
        std::fs::create_dir_all(build.join(folder))?;
        for entry in std::fs::read_dir(source.join(folder))? {
            let entry = entry?;
            std::fs::copy(entry.path(), build.join(folder).join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Maven's build folder for the Java package, under the target dir.
fn maven_build_flag() -> String {
    format!("-Dhelpers.build={}", build_dir(ClientSuite::Java).display())
}

/// The variables the helper tests read.
pub fn env(proxy: SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        ("RKPROXY_CLIENTS_HELPERS_PROXY", proxy.to_string()),
        ("RKPROXY_CLIENTS_HELPERS_USER", USER.to_string()),
        ("RKPROXY_CLIENTS_HELPERS_PASSWORD", PASSWORD.to_string()),
        ("RKPROXY_CLIENTS_HELPERS_POOL", KAFKA_POOL.to_string()),
        ("RKPROXY_CLIENTS_HELPERS_DOWN_POOL", DOWN_POOL.to_string()),
        ("RKPROXY_CLIENTS_HELPERS_TOPIC", TOPIC.to_string()),
    ]
}

/// The helpers' proxy: tenant `app` on the Redis pool `apps` by default, allowed to `USE` the Kafka
/// pool (its topics, two partitions each) and the Kafka pool without a broker, whose bootstrap
/// address is `nowhere` (a free port nothing listens on).
pub fn config(
    listen: SocketAddr,
    redis: SocketAddr,
    kafka: SocketAddr,
    nowhere: SocketAddr,
) -> String {
    let topic = |pool: &str, name: &str| {
        format!(
            "\n[pools.{pool}.topics.{name}]\n\
             partitions = 2\n\
             producers = [\"{USER}\"]\n\
             consumers = [\"{USER}\"]\n"
        )
    };
    let mut config = format!(
        "listen = \"{listen}\"\n\
         default_pool = \"apps\"\n\
         \n\
         [pools.apps]\n\
         kind = \"standalone\"\n\
         nodes = [\"{redis}\"]\n\
         \n\
         [pools.{KAFKA_POOL}]\n\
         kind = \"kafka\"\n\
         nodes = [\"{kafka}\"]\n"
    );
    config.push_str(&topic(KAFKA_POOL, TOPIC));
    for suite in ClientSuite::ALL {
        config.push_str(&topic(
            KAFKA_POOL,
            &format!("{TOPIC}-managed-{}", suite.name()),
        ));
    }
    config.push_str(&format!(
        "\n[pools.{DOWN_POOL}]\n\
         kind = \"kafka\"\n\
         nodes = [\"{nowhere}\"]\n"
    ));
    config.push_str(&topic(DOWN_POOL, TOPIC));
    config.push_str(&format!(
        "\n[tenants.{USER}]\n\
         password = \"{PASSWORD}\"\n\
         pool = \"apps\"\n\
         pools = [\"{KAFKA_POOL}\", \"{DOWN_POOL}\"]\n"
    ));
    config
}

/// The commands that authenticate as the helpers' tenant and switch to its Kafka pool (for the
/// readiness check).
pub const LOGIN: &[&[&str]] = &[&["AUTH", USER, PASSWORD], &["USE", KAFKA_POOL]];
