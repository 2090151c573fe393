//! The `rkproxy` binary itself: start-up forms, configuration errors, exit codes.

use std::process::Command;

use crate::support::*;

fn rkproxy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rkproxy"))
}

#[test]
fn bad_config_exits_non_zero_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("rkproxy-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "default_pool = 'main'\n[timeouts]\nconnect_ms = -5\n[pools.main]\nkind = 'standalone'\nnodes = ['127.0.0.1:1']\n",
    )
    .unwrap();
    let output = rkproxy().arg("--config").arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("timeouts.connect_ms"), "{stderr}");

    std::fs::write(
        &file,
        "default_pool = 'other'\n[pools.main]\nkind = 'standalone'\nnodes = ['127.0.0.1:1']\n",
    )
    .unwrap();
    let output = rkproxy().arg("--config").arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("default_pool"));

    let output = rkproxy()
        .arg("--config")
        .arg(dir.join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));

    let output = rkproxy().arg("--frobnicate").output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn environment_overrides_the_file() {
    let output = rkproxy()
        .args(["--backend", "redis://127.0.0.1:6399", "--check"])
        .env("RKPROXY_TIMEOUTS__CONNECT_MS", "zero")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr).to_ascii_lowercase();
    assert!(stderr.contains("timeouts.connect_ms"), "{stderr}");
    let output = rkproxy()
        .args(["--backend", "redis://127.0.0.1:6399", "--check"])
        .env("RKPROXY_TIMEOUTS__CONNECT_MS", "250")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn a_key_of_another_kind_of_pool_is_named_with_its_pool_wherever_it_comes_from() {
    let dir = std::env::temp_dir().join(format!("rkproxy-pool-kind-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pools.toml");
    std::fs::write(
        &file,
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['127.0.0.1:1']\nlinger_ms = 4\n",
    )
    .unwrap();
    // The bad key is in the file; the environment sets another key of the same pool. The message names the
    // key and the kind that has it, and does not blame the environment.
    let output = rkproxy()
        .arg("--config")
        .arg(&file)
        .arg("--check")
        .env("RKPROXY_POOLS__MAIN__CONNECTIONS_PER_NODE", "2")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`pools.main.linger_ms`") && stderr.contains("only Kafka pools"),
        "{stderr}"
    );
    assert!(!stderr.contains("environment"), "{stderr}");
    // A key of a Redis pool set in the environment on a Kafka pool: the same message, for that key.
    std::fs::write(
        &file,
        "default_pool = 'events'\n[pools.events]\nkind = 'kafka'\nnodes = ['127.0.0.1:9092']\n\
         [pools.events.topics.t]\npartitions = 1\n",
    )
    .unwrap();
    let output = rkproxy()
        .arg("--config")
        .arg(&file)
        .arg("--check")
        .env("RKPROXY_POOLS__EVENTS__CONNECTIONS_PER_NODE", "2")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`pools.events.connections_per_node`")
            && stderr.contains("only Redis pools"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quick_start_form_proxies_to_redis() {
    let proxy = ReadyProxy::in_front_of(&redis_addr(), &[]);
    let output = Command::new("redis-cli")
        .args(["-p", &proxy.listen.port().to_string(), "PING"])
        .output()
        .unwrap();
    drop(proxy);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "PONG\n");
}

#[test]
fn the_documented_example_config_is_valid() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rkproxy.toml");
    let output = rkproxy()
        .arg("--config")
        .arg(&example)
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "configuration OK\n"
    );
}
