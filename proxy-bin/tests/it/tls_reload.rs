//! Certificates rotated in place (the same path, new content) reach a running proxy at a reload, on both
//! sides (issue 16; issue 13 item 5): a pool's `ca_file`, client certificate and key, and the TLS listener's
//! `[tls]` files. A file that became unreadable or invalid refuses the whole reload, naming the key, and the
//! running configuration keeps serving. The certificates are the ones `cargo xtask test` makes (see tls.rs);
//! each test rotates copies in a directory of its own.

use std::path::{Path, PathBuf};

use redis::AsyncCommands;
use rkproxy::config::Config;
use rkproxy::Proxy;

use crate::support::*;

/// A directory of the test's own holding a copy of each named file of the test certificates.
fn copies_of(names: &[&str]) -> TempDir {
    let dir = TempDir(std::env::temp_dir().join(unique("rkproxy-tls-rotation")));
    std::fs::create_dir_all(&dir.0).unwrap();
    for name in names {
        std::fs::copy(tls_file(name), dir.0.join(name)).unwrap();
    }
    dir
}

/// Replaces the content of `file` (keeping its path) with that of the test certificate file `source`.
fn rotate(file: &Path, source: &str) {
    std::fs::copy(tls_file(source), file).unwrap();
}

/// A proxy whose default pool `secure` is the TLS standalone Redis, trusting the CA in `ca_file`.
fn pool_config(ca_file: &Path) -> Config {
    Config::from_toml(&format!(
        "listen = '127.0.0.1:0'\ndefault_pool = 'secure'\n\
         [pools.secure]\nkind = 'standalone'\nnodes = ['{}']\ntls = true\nca_file = '{}'\n",
        tls_redis(),
        ca_file.display(),
    ))
    .unwrap()
}

/// A redis-rs connection to the proxy selecting `db` (a db no client used yet needs a new backend connection).
async fn client_on_db(proxy: &Proxy, db: u32) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{}/{db}", proxy.local_addr()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A pool started with the wrong CA in its `ca_file` cannot reach its TLS Redis; once the file holds the right
/// CA, a reload of the unchanged configuration makes the pool's next connection succeed.
#[tokio::test]
async fn a_reload_reads_a_pools_rotated_ca_file() {
    let dir = copies_of(&["other-ca.crt"]);
    let ca_file = dir.0.join("other-ca.crt");
    let config = pool_config(&ca_file);
    let proxy = Proxy::builder(config.clone()).start().await.unwrap();
    let mut client = client(&proxy).await;
    let refused = redis::cmd("PING")
        .query_async::<String>(&mut client)
        .await
        .expect_err("the Redis certificate is not signed by other-ca");
    assert!(refused.to_string().contains("UnknownIssuer"), "{refused}");

    rotate(&ca_file, "ca.crt");
    let report = proxy.reload(config).await.unwrap();
    assert!(report.pools_changed.is_empty(), "{report}");
    assert_eq!(report.pools_tls_reread, ["secure"], "{report}");
    let key = unique("rotated-ca");
    let _: () = client.set(&key, "through the new CA").await.unwrap();
    let stored: String = client.get(&key).await.unwrap();
    assert_eq!(stored, "through the new CA");
    proxy.shutdown().await;
}

/// A pool's `ca_file` that no longer holds a certificate, or is gone, refuses the reload with the key named;
/// the pool keeps the CA it read before, for its live connections and for new ones.
#[tokio::test]
async fn a_pools_broken_ca_file_refuses_the_reload() {
    let dir = copies_of(&["ca.crt"]);
    let ca_file = dir.0.join("ca.crt");
    let config = pool_config(&ca_file);
    let proxy = Proxy::builder(config.clone()).start().await.unwrap();
    let mut before = client(&proxy).await;
    let key = unique("broken-ca");
    let _: () = before.set(&key, "v").await.unwrap();

    std::fs::write(&ca_file, "not a certificate\n").unwrap();
    let error = proxy.reload(config.clone()).await.unwrap_err().to_string();
    assert!(
        error.contains("pools.secure") && error.contains("ca_file") && error.contains("no PEM"),
        "{error}"
    );
    std::fs::remove_file(&ca_file).unwrap();
    let error = proxy.reload(config).await.unwrap_err().to_string();
    assert!(
        error.contains("pools.secure") && error.contains("ca_file"),
        "{error}"
    );

    // The live connection, and a new one (db 1 is a new backend connection), still use the CA read before.
    let stored: String = before.get(&key).await.unwrap();
    assert_eq!(stored, "v");
    let mut new_connection = client_on_db(&proxy, 1).await;
    let pong: String = redis::cmd("PING")
        .query_async(&mut new_connection)
        .await
        .unwrap();
    assert_eq!(pong, "PONG");
    proxy.shutdown().await;
}

/// The listener's `[tls]` files in `dir`: `live.crt`/`live.key`, and with `client_ca` mutual TLS.
fn listener_config(dir: &Path, client_ca: Option<&PathBuf>) -> Config {
    let client_ca = client_ca
        .map(|path| format!("client_ca_file = '{}'\n", path.display()))
        .unwrap_or_default();
    Config::from_toml(&format!(
        "listen = '127.0.0.1:0'\ntls_listen = '127.0.0.1:0'\ndefault_pool = 'main'\n\
         [tls]\ncert_file = '{}'\nkey_file = '{}'\nhandshake_ms = 2000\n{client_ca}\
         [pools.main]\nkind = 'standalone'\nnodes = ['{}']\n",
        dir.join("server.crt").display(),
        dir.join("server.key").display(),
        redis_addr()
    ))
    .unwrap()
}

/// Whether a client with `client.crt` (signed by the test CA) gets a PONG from the TLS listener.
async fn client_certificate_accepted(proxy: &Proxy) -> bool {
    let addr = proxy.tls_local_addr().unwrap();
    match tls_connect(addr, client_config("ca.crt", Some("client"))).await {
        // TLS 1.3: a refused client certificate shows on the client's first read.
        Ok(mut stream) => tls_ping(&mut stream).await.as_deref() == Some("+PONG\r\n"),
        Err(_) => false,
    }
}

/// Mutual TLS: the CA clients' certificates must be signed by (`tls.client_ca_file`) rotates at a reload.
#[tokio::test]
async fn a_reload_reads_a_rotated_client_ca_file() {
    let dir = copies_of(&["server.crt", "server.key", "other-ca.crt"]);
    let client_ca = dir.0.join("other-ca.crt");
    let config = listener_config(&dir.0, Some(&client_ca));
    let proxy = Proxy::builder(config.clone()).start().await.unwrap();
    assert!(
        !client_certificate_accepted(&proxy).await,
        "client.crt is not signed by other-ca"
    );

    rotate(&client_ca, "ca.crt");
    proxy.reload(config).await.unwrap();
    assert!(
        client_certificate_accepted(&proxy).await,
        "client.crt is signed by the new client CA"
    );
    proxy.shutdown().await;
}

/// A listener certificate file that no longer holds a certificate refuses the reload with `tls.cert_file`
/// named; the listener keeps presenting the certificate it read before.
#[tokio::test]
async fn a_broken_listener_certificate_refuses_the_reload() {
    let dir = copies_of(&["server.crt", "server.key"]);
    let config = listener_config(&dir.0, None);
    let proxy = Proxy::builder(config.clone()).start().await.unwrap();

    std::fs::write(dir.0.join("server.crt"), "not a certificate\n").unwrap();
    let error = proxy.reload(config).await.unwrap_err().to_string();
    assert!(error.contains("tls.cert_file"), "{error}");
    let addr = proxy.tls_local_addr().unwrap();
    let mut stream = tls_connect(addr, client_config("ca.crt", None))
        .await
        .expect("the certificate read at start is still presented");
    assert_eq!(tls_ping(&mut stream).await.as_deref(), Some("+PONG\r\n"));
    proxy.shutdown().await;
}

/// A Kafka pool's brokers' `ca_file` rotated in place: the bridge reads it only when the pool is built, so a
/// reload builds the pool again; a broken one refuses the reload. (No broker is needed: the pool connects in
/// the background, and only the files are looked at here.)
#[tokio::test]
async fn a_kafka_pools_rotated_ca_file_rebuilds_it_and_a_broken_one_refuses_the_reload() {
    let dir = copies_of(&["ca.crt"]);
    let ca_file = dir.0.join("ca.crt");
    let config = Config::from_toml(&format!(
        "listen = '127.0.0.1:0'\ndefault_pool = 'main'\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['{}']\n\
         [pools.events]\nkind = 'kafka'\nnodes = ['127.0.0.1:{}']\ntls = true\nca_file = '{}'\n\
         [pools.events.topics.orders]\npartitions = 1\nproducers = ['*']\nconsumers = ['default']\n",
        redis_addr(),
        free_port(),
        ca_file.display(),
    ))
    .unwrap();
    let proxy = Proxy::builder(config.clone()).start().await.unwrap();
    let unchanged = proxy.reload(config.clone()).await.unwrap();
    assert!(unchanged.pools_changed.is_empty(), "{unchanged}");

    rotate(&ca_file, "other-ca.crt");
    let rotated = proxy.reload(config.clone()).await.unwrap();
    assert_eq!(rotated.pools_changed, ["events"], "{rotated}");

    std::fs::write(&ca_file, "not a certificate\n").unwrap();
    let error = proxy.reload(config).await.unwrap_err().to_string();
    assert!(
        error.contains("pools.events") && error.contains("ca_file"),
        "{error}"
    );
    proxy.shutdown().await;
}
