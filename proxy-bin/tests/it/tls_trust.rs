//! Pools with `tls = true` and no `ca_file` trust the system's CA store (managed Redis and Kafka services
//! present publicly trusted certificates). rkproxy reads the store with rustls-native-certs, which reads the
//! file named by `SSL_CERT_FILE` instead of the platform's bundle when that variable is set: each test starts
//! the rkproxy binary with `SSL_CERT_FILE` naming a store file of its own (never set in this process, whose
//! in-process proxies other tests share), so the "system" store holds the test CA, another CA, or nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// The rkproxy binary started with `SSL_CERT_FILE` naming `store`, a file beside its configuration.
struct TrustingProxy {
    process: ReadyProxy,
    store: PathBuf,
    _config: ConfigFile,
}

impl TrustingProxy {
    /// Starts the binary on port 0 with `config` (without `listen`) and a system store holding the
    /// certificates of the file `trusted`.
    fn start(config: &str, trusted: &str) -> TrustingProxy {
        let config = ConfigFile::new(&format!("listen = '127.0.0.1:0'\n{config}"));
        let store = config.dir().join("system-store.pem");
        std::fs::copy(trusted, &store).unwrap();
        TrustingProxy {
            process: ReadyProxy::start(trusting_command(&config, &store)),
            store,
            _config: config,
        }
    }

    /// Replaces the store's content with the certificates of `trusted` (as a system update of its CA bundle
    /// would) and makes the process reload (SIGHUP), which reads the store again.
    fn trust_and_reload(&self, trusted: &str) {
        std::fs::copy(trusted, &self.store).unwrap();
        self.process.signal("-HUP");
    }
}

/// The binary with `--config` and `SSL_CERT_FILE=store` (and no `SSL_CERT_DIR`, which would be read too).
fn trusting_command(config: &ConfigFile, store: &Path) -> Command {
    let mut command = config.command();
    command
        .env("SSL_CERT_FILE", store)
        .env_remove("SSL_CERT_DIR");
    command
}

/// The standalone pool `main` on the TLS-only redis-server, with `tls = true` and no `ca_file`.
fn system_trust_pool() -> String {
    format!(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\ntls = true\n",
        tls_redis()
    )
}

/// SET through `connection` until it succeeds (within [`TLS_BOUNDED`]); the last error before.
async fn set_until_ok(connection: &mut redis::aio::MultiplexedConnection, key: &str) -> String {
    let deadline = Instant::now() + TLS_BOUNDED;
    let mut last_error = String::new();
    loop {
        let outcome: redis::RedisResult<String> = redis::cmd("SET")
            .arg(key)
            .arg("trusted")
            .query_async(connection)
            .await;
        match outcome {
            Ok(reply) => {
                assert_eq!(reply, "OK");
                return last_error;
            }
            Err(error) => last_error = error.to_string(),
        }
        assert!(
            Instant::now() < deadline,
            "SET still fails after the reload: {last_error}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A system store without the CA of the TLS Redis: a clear error reply naming the certificate problem, fast.
/// Once the store holds that CA (an updated bundle) a reload reads it again and the same client's commands
/// reach Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_pool_without_ca_file_trusts_the_system_store_read_again_at_reload() {
    let proxy = TrustingProxy::start(&system_trust_pool(), &tls_file("other-ca.crt"));
    let mut connection = client_at(proxy.process.listen, None).await;
    let started = Instant::now();
    let error = redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < TLS_BOUNDED, "{:?}", started.elapsed());
    assert!(
        error.contains("backend") && error.contains("UnknownIssuer"),
        "{error}"
    );

    proxy.trust_and_reload(&tls_file("ca.crt"));
    let key = unique("system-trust");
    set_until_ok(&mut connection, &key).await;
    let value: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(value, "trusted");
    // It reached the TLS-only server, whose CA the proxy found only in the system store.
    let mut direct = tls_connect(tls_redis().parse().unwrap(), client_config("ca.crt", None))
        .await
        .unwrap();
    let request = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
    let reply = tls_command(&mut direct, request.as_bytes()).await;
    assert_eq!(reply.as_deref(), Some("$7\r\ntrusted\r\n"));
}

/// A system store with no certificate at all: the proxy does not start, and says which key to set.
#[test]
fn an_empty_system_store_refuses_to_start_naming_ca_file() {
    let config = ConfigFile::new(&format!("listen = '127.0.0.1:0'\n{}", system_trust_pool()));
    let store = config.dir().join("empty.pem");
    std::fs::write(&store, "").unwrap();
    let mut child = trusting_command(&config, &store)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TLS_BOUNDED;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rkproxy started with an empty system store");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("config key `pools.main`: ca_file: ")
            && log.contains("no CA certificate found in the system's trust store"),
        "{log}"
    );
}

/// A Kafka pool with `tls = true` and no `ca_file` on the broker's SSL listener: its brokers are checked
/// against the system store too, which here holds the CA of the run's Kafka certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_pool_without_ca_file_trusts_the_system_store() {
    let broker = std::env::var("RKPROXY_TEST_KAFKA_SSL")
        .expect("RKPROXY_TEST_KAFKA_SSL: the broker's SSL listener that `cargo xtask test` starts");
    let certs = std::env::var("RKPROXY_TEST_KAFKA_CERTS").expect("RKPROXY_TEST_KAFKA_CERTS");
    let topic = unique_name("systemtrust");
    let config = format!(
        "default_pool = 'events'\n{}",
        kafka_pool_toml(
            &broker,
            "tls = true",
            &topic_toml(&topic, 1, &["*"], &["*"])
        )
    );
    let ca = PathBuf::from(certs).join("ca.pem").display().to_string();
    let proxy = TrustingProxy::start(&config, &ca);
    let mut connection = client_at(proxy.process.listen, None).await;
    wait_connected(&mut connection, &topic).await;
    kpush(&mut connection, &topic, "over the system store").await;
    let record = kpop(&mut connection, &topic).await;
    assert_eq!(record, Some((0, 0, b"over the system store".to_vec())));
}
