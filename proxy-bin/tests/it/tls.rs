//! TLS on both sides (issue 16): clients to rkproxy's `tls_listen` (redis-cli `--tls`, redis-rs over
//! `rediss://`, raw rustls), rkproxy to TLS-only Redis servers (`RKPROXY_TEST_TLS_REDIS`, the TLS cluster
//! `RKPROXY_TEST_TLS_CLUSTER`, whose nodes require a client certificate), the Redis offset store of a Kafka
//! pool on the TLS-only server, mutual TLS tenants (client certificates required or optional, revocation
//! lists), `min_version`, `cipher_suites`, certificate reload, and the failures: a plaintext client on the TLS port, a client
//! trusting another CA, an expired certificate on either side, a revoked client certificate. Each failure
//! must end in a closed connection (or an error reply) within a few seconds and a log line that says why.
//! The certificates are made by `cargo xtask test` in `RKPROXY_TEST_TLS_DIR` (see xtask/src/tls.rs).

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use rkproxy::config::Config;
use rkproxy::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

use crate::support::*;

fn tls_cluster() -> Vec<String> {
    env_addr("RKPROXY_TEST_TLS_CLUSTER")
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// `[tls]` with the given certificate (`server`, `expired`, ...) and, with `mutual`, the test CA for clients.
fn listener_toml(cert: &str, mutual: bool) -> String {
    let client_ca = if mutual {
        format!("client_ca_file = '{}'\n", tls_file("ca.crt"))
    } else {
        String::new()
    };
    format!(
        "tls_listen = '127.0.0.1:0'\n[tls]\ncert_file = '{}'\nkey_file = '{}'\nhandshake_ms = 2000\n{client_ca}",
        tls_file(&format!("{cert}.crt")),
        tls_file(&format!("{cert}.key")),
    )
}

/// A TLS pool (`[pools.NAME]`) of `kind` on `nodes`, with the client certificate the TLS cluster requires.
fn tls_pool_toml(name: &str, kind: &str, nodes: &[String]) -> String {
    let nodes: Vec<String> = nodes.iter().map(|node| format!("'{node}'")).collect();
    format!(
        "[pools.{name}]\nkind = '{kind}'\nnodes = [{}]\ntls = true\nca_file = '{}'\ncert_file = '{}'\nkey_file = '{}'\n",
        nodes.join(", "),
        tls_file("ca.crt"),
        tls_file("client.crt"),
        tls_file("client.key"),
    )
}

/// Starts a proxy from `toml` (without `listen`).
async fn proxy_from(toml: &str) -> Proxy {
    let config = Config::from_toml(&format!("listen = '127.0.0.1:0'\n{toml}")).unwrap();
    Proxy::builder(config).start().await.unwrap()
}

/// A proxy with a TLS listener (the test certificate) in front of a TLS pool, `secure`, on the TLS standalone
/// Redis.
async fn tls_on_both_sides_proxy() -> Proxy {
    proxy_from(&format!(
        "default_pool = 'secure'\n{}\n{}",
        listener_toml("server", false),
        tls_pool_toml("secure", "standalone", &[tls_redis()]),
    ))
    .await
}

/// A proxy with a TLS listener (the test certificate) in front of the plaintext standalone Redis.
async fn tls_proxy() -> Proxy {
    proxy_from(&format!(
        "default_pool = 'main'\n{}\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n",
        listener_toml("server", false),
        redis_addr()
    ))
    .await
}

/// Whether the peer closes the connection (an error or end of stream) within [`TLS_BOUNDED`].
async fn closed_soon(stream: &mut TlsClient) -> bool {
    let mut buffer = [0u8; 256];
    let _ = stream.write_all(b"*1\r\n$4\r\nPING\r\n").await;
    let deadline = Instant::now() + TLS_BOUNDED;
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// redis-cli with `--tls --cacert ca.crt` against `addr`.
fn tls_redis_cli(addr: std::net::SocketAddr, stdin: Option<Vec<u8>>, args: &[&str]) -> String {
    let mut child = Command::new("redis-cli")
        .args(["--tls", "--cacert", &tls_file("ca.crt")])
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli runs");
    let mut input = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, &stdin.unwrap_or_default()).unwrap();
    drop(input);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn redis_cli_through_the_tls_port() {
    let proxy = tls_proxy().await;
    let addr = proxy.tls_local_addr().expect("tls_listen is on");
    let key = unique("tls-cli");
    let cli = move |stdin: Option<Vec<u8>>, args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            tls_redis_cli(addr, stdin, &args)
        })
    };
    let set = cli(None, vec!["SET".into(), key.clone(), "v1".into()])
        .await
        .unwrap();
    assert_eq!(set.trim(), "OK");
    let get = cli(None, vec!["GET".into(), key.clone()]).await.unwrap();
    assert_eq!(get.trim(), "v1");

    // A pipeline: every reply, in order.
    let mut pipeline = String::new();
    for index in 0..100 {
        pipeline.push_str(&format!("RPUSH {key}:list {index}\r\n"));
    }
    pipeline.push_str(&format!("LLEN {key}:list\r\n"));
    let piped = cli(Some(pipeline.into_bytes()), vec!["--pipe".into()])
        .await
        .unwrap();
    assert!(piped.contains("errors: 0, replies: 101"), "{piped}");
    let len = cli(None, vec!["LLEN".into(), format!("{key}:list")])
        .await
        .unwrap();
    assert_eq!(len.trim(), "100");

    // A 1 MB value, there and back.
    let big = vec![b'x'; 1024 * 1024];
    let set = cli(
        Some(big),
        vec!["-x".into(), "SET".into(), format!("{key}:big")],
    )
    .await
    .unwrap();
    assert_eq!(set.trim(), "OK");
    let length = cli(None, vec!["STRLEN".into(), format!("{key}:big")])
        .await
        .unwrap();
    assert_eq!(length.trim(), "1048576");
    let got = cli(None, vec!["GET".into(), format!("{key}:big")])
        .await
        .unwrap();
    assert_eq!(got.trim_end().len(), 1024 * 1024);
    assert!(got.trim_end().bytes().all(|byte| byte == b'x'));

    // The plaintext listener serves the same data.
    let mut plain = client(&proxy).await;
    let value: String = plain.get(&key).await.unwrap();
    assert_eq!(value, "v1");
    proxy.shutdown().await;
}

#[tokio::test]
async fn redis_rs_over_tls() {
    let proxy = tls_proxy().await;
    let mut connection = tls_redis_rs_client(&proxy).await;
    let key = unique("tls-rs");
    let _: () = connection.set(&key, "hello").await.unwrap();
    let value: String = connection.get(&key).await.unwrap();
    assert_eq!(value, "hello");
    let mut pipe = redis::pipe();
    for index in 0..200 {
        pipe.cmd("INCR").arg(format!("{key}:n")).ignore();
        pipe.cmd("SET")
            .arg(format!("{key}:{index}"))
            .arg(index)
            .ignore();
    }
    pipe.cmd("GET").arg(format!("{key}:n"));
    let (count,): (u32,) = pipe.query_async(&mut connection).await.unwrap();
    assert_eq!(count, 200);
    let value: u32 = connection.get(format!("{key}:199")).await.unwrap();
    assert_eq!(value, 199);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_tls_standalone_pool_through_both_listeners() {
    let proxy = tls_on_both_sides_proxy().await;
    let key = unique("tls-pool");
    let mut plain = client(&proxy).await;
    let _: () = plain.set(&key, "via-tls-backend").await.unwrap();
    let value: String = plain.get(&key).await.unwrap();
    assert_eq!(value, "via-tls-backend");
    // A transaction runs on a dedicated connection, also over TLS.
    let (incremented,): (i64,) = redis::pipe()
        .atomic()
        .incr(format!("{key}:n"), 5)
        .query_async(&mut plain)
        .await
        .unwrap();
    assert_eq!(incremented, 5);
    // A 1 MiB value takes the big-request lane, whose connections are TLS too.
    let big = "b".repeat(1024 * 1024);
    let _: () = plain.set(format!("{key}:big"), &big).await.unwrap();
    let back: String = plain.get(format!("{key}:big")).await.unwrap();
    assert_eq!(back, big);
    // TLS on both sides.
    let mut tls = tls_connect(
        proxy.tls_local_addr().unwrap(),
        client_config("ca.crt", None),
    )
    .await
    .unwrap();
    let reply = tls_command(
        &mut tls,
        format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes(),
    )
    .await;
    assert_eq!(reply.as_deref(), Some("$15\r\nvia-tls-backend\r\n"));
    // The value really is in the TLS server.
    let direct = tls_redis_cli(tls_redis().parse().unwrap(), None, &["GET", &key]);
    assert_eq!(direct.trim(), "via-tls-backend");
    proxy.shutdown().await;
}

/// TLS on both sides at once, with more bytes than one read or one TLS record holds in either direction: a
/// pipeline of 4000 SETs and 4000 GETs of 300-byte values (about 2.5 MB each way, read in chunks that end in
/// the middle of records) and a 1 MiB value through the big-request lane. Every reply comes back, in order.
#[tokio::test]
async fn big_pipelines_and_big_values_over_tls_on_both_sides() {
    let proxy = tls_on_both_sides_proxy().await;
    let mut connection = tls_redis_rs_client(&proxy).await;
    let key = unique("tls-both");
    let value_of = |index: usize| format!("{index:0>300}");
    let mut sets = redis::pipe();
    for index in 0..4000 {
        sets.cmd("SET")
            .arg(format!("{key}:{index}"))
            .arg(value_of(index))
            .ignore();
    }
    let () = sets.query_async(&mut connection).await.unwrap();
    let mut gets = redis::pipe();
    for index in 0..4000 {
        gets.cmd("GET").arg(format!("{key}:{index}"));
    }
    let values: Vec<String> = gets.query_async(&mut connection).await.unwrap();
    assert_eq!(values.len(), 4000);
    for (index, value) in values.iter().enumerate() {
        assert_eq!(value, &value_of(index), "reply {index}");
    }
    let big: String = (0..1024 * 1024)
        .map(|index| char::from(b'a' + (index % 26) as u8))
        .collect();
    let _: () = connection.set(format!("{key}:big"), &big).await.unwrap();
    let back: String = connection.get(format!("{key}:big")).await.unwrap();
    assert!(back == big, "the 1 MiB value came back changed");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_tls_cluster_pool_with_cross_slot_commands() {
    let proxy = proxy_from(&format!(
        "default_pool = 'secure'\n{}",
        tls_pool_toml("secure", "cluster", &tls_cluster()[..1]),
    ))
    .await;
    let mut connection = client(&proxy).await;
    let base = unique("tls-cluster");
    // Keys spread over every master; the pool learned the other nodes from CLUSTER SLOTS (only one seed).
    let keys: Vec<String> = (0..30).map(|index| format!("{base}:{index}")).collect();
    let pairs: Vec<(String, String)> = keys
        .iter()
        .map(|key| (key.clone(), format!("v-{key}")))
        .collect();
    let _: () = connection.mset(&pairs).await.unwrap();
    let values: Vec<String> = connection.mget(&keys).await.unwrap();
    let expected: Vec<String> = keys.iter().map(|key| format!("v-{key}")).collect();
    assert_eq!(values, expected);
    let slots: std::collections::BTreeSet<u16> = keys.iter().map(|key| slot_of(key)).collect();
    assert!(slots.len() > 10, "the keys span many slots");
    let deleted: usize = connection.del(&keys).await.unwrap();
    assert_eq!(deleted, keys.len());
    proxy.shutdown().await;
}

fn slot_of(key: &str) -> u16 {
    cluster_router::key_slot(key.as_bytes())
}

/// The Redis offset store of a Kafka pool over TLS: `offsets = { pool = ... }` names a TLS standalone pool on
/// the TLS-only redis-server, whose TLS settings the store's connections take. KPUSH, then KPOP with
/// proxy-managed offsets, and the group's cursor is read back from that redis-server itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_pool_keeps_its_offsets_in_a_tls_redis() {
    let topic = unique_name("tls-offsets");
    let key_prefix = format!("{}:", unique("kafka-tls-offsets"));
    let offsets = format!("offsets = {{ pool = 'secure', key_prefix = '{key_prefix}' }}");
    let proxy = proxy_from(&format!(
        "default_pool = 'events'\n{}\n{}",
        tls_pool_toml("secure", "standalone", &[tls_redis()]),
        kafka_pool_toml(
            &kafka_addr(),
            &offsets,
            &topic_toml(&topic, 1, &["*"], &["*"])
        ),
    ))
    .await;
    let mut connection = client(&proxy).await;
    wait_connected(&mut connection, &topic).await;
    let values = ["first", "second", "third"];
    for value in values {
        kpush(&mut connection, &topic, value).await;
    }
    for (offset, value) in (0..).zip(values) {
        let record = kpop(&mut connection, &topic).await;
        assert_eq!(record, Some((0, offset, value.as_bytes().to_vec())));
    }
    assert_eq!(kpop(&mut connection, &topic).await, None);
    // The cursor of group `default` (the tenant) on partition 0, under the store's key for it.
    let cursor_key = format!("{key_prefix}{{{topic}/0/default}}:next");
    let store = tls_redis().parse().unwrap();
    let cursor = blocking(move || tls_redis_cli(store, None, &["GET", &cursor_key])).await;
    assert_eq!(cursor.trim(), "3");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused() {
    let proxy = tls_proxy().await;
    let outcome = tls_connect(
        proxy.tls_local_addr().unwrap(),
        client_config("other-ca.crt", None),
    )
    .await;
    let error = outcome.expect_err("the proxy's certificate is not signed by other-ca");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
    // The proxy is fine afterwards.
    let mut good = tls_connect(
        proxy.tls_local_addr().unwrap(),
        client_config("ca.crt", None),
    )
    .await
    .unwrap();
    assert_eq!(tls_ping(&mut good).await.as_deref(), Some("+PONG\r\n"));
    proxy.shutdown().await;
}

/// A TLS pool `secure` on the TLS-only Redis presenting the expired certificate as its client certificate (the
/// standalone server does not ask for one, so the pool works; only its expiry is looked at).
fn pool_with_expired_client_certificate() -> String {
    format!(
        "[pools.secure]\nkind = 'standalone'\nnodes = ['{}']\ntls = true\nca_file = '{}'\ncert_file = '{}'\n\
         key_file = '{}'\n",
        tls_redis(),
        tls_file("ca.crt"),
        tls_file("expired.crt"),
        tls_file("expired.key"),
    )
}

#[tokio::test]
async fn an_expired_proxy_certificate_is_refused_by_clients() {
    let proxy = proxy_from(&format!(
        "metrics_listen = '127.0.0.1:0'\ndefault_pool = 'main'\n{}\n[pools.main]\nkind = 'standalone'\n\
         nodes = ['{}']\n{}",
        listener_toml("expired", false),
        redis_addr(),
        pool_with_expired_client_certificate()
    ))
    .await;
    let outcome = tls_connect(
        proxy.tls_local_addr().unwrap(),
        client_config("ca.crt", None),
    )
    .await;
    let error = outcome.expect_err("an expired certificate is refused");
    assert!(error.to_string().contains("certificate expired"), "{error}");
    // The metrics say when it expired: 2020-01-02 00:00:00 UTC (xtask/src/tls.rs); the same for the pool's
    // client certificate, and the plaintext pool has none.
    let (scrape, body) = scrape_metrics(&proxy).await;
    let expiries: Vec<(&str, &prometheus_parse::Value)> = scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == "rkproxy_tls_certificate_expiry_timestamp_seconds")
        .map(|sample| {
            (
                sample.labels.get("certificate").unwrap_or(""),
                &sample.value,
            )
        })
        .collect();
    let expired = prometheus_parse::Value::Gauge(1_577_923_200.0);
    assert_eq!(
        expiries,
        [
            ("tls.cert_file", &expired),
            ("pools.secure.cert_file", &expired)
        ],
        "{body}"
    );
    // The pool serves all the same (its Redis does not check client certificates).
    let mut connection = client_at(proxy.local_addr(), None).await;
    let pong: String = redis::cmd("USE")
        .arg("secure")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(pong, "OK");
    let pong: String = redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(pong, "PONG");
    proxy.shutdown().await;
}

/// Sends `request` through a proxy whose default pool is the TLS standalone Redis `backend`: the first reply
/// line, and how long it took. The raw client blocks its thread: call it from a multi-threaded runtime.
async fn first_reply_through_tls_pool(backend: &OwnTlsRedis, request: &[u8]) -> (String, Duration) {
    first_reply_through_tls_pool_with(backend, "", request).await
}

/// [`first_reply_through_tls_pool`] with `pool_keys` added to the pool's table.
async fn first_reply_through_tls_pool_with(
    backend: &OwnTlsRedis,
    pool_keys: &str,
    request: &[u8],
) -> (String, Duration) {
    let proxy = proxy_from(&format!(
        "default_pool = 'secure'\n{}{pool_keys}\n",
        tls_pool_toml("secure", "standalone", &[backend.addr()]),
    ))
    .await;
    let mut raw = RawClient::connect(proxy.local_addr());
    let started = Instant::now();
    raw.send(request);
    let line = raw.read_line();
    let took = started.elapsed();
    proxy.shutdown().await;
    (line, took)
}

/// A pool's `crl_file`: a node whose certificate the CA revoked is refused at the handshake, an error reply
/// that says so, in bounded time; the same node passes with the CA's list from before the revocation, and a
/// node whose certificate is not revoked passes with the list that names the revoked ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_backend_certificate_is_an_error_reply() {
    let revoked = OwnTlsRedis::start("revoked-server");
    let good = OwnTlsRedis::start("server");
    let crl = |name: &str| format!("crl_file = '{}'", tls_file(name));
    let ping = b"*1\r\n$4\r\nPING\r\n";
    let (line, took) = first_reply_through_tls_pool_with(&revoked, &crl("ca.crl"), ping).await;
    assert!(took < TLS_BOUNDED, "{took:?}");
    assert!(
        line.starts_with("-ERR backend") && line.contains("invalid peer certificate: Revoked"),
        "{line}"
    );
    let (line, _) = first_reply_through_tls_pool_with(&revoked, &crl("ca-empty.crl"), ping).await;
    assert_eq!(line, "+PONG\r\n");
    let (line, _) = first_reply_through_tls_pool_with(&good, &crl("ca.crl"), ping).await;
    assert_eq!(line, "+PONG\r\n");
}

/// A pool's `min_version = "1.3"` refuses a node that speaks TLS 1.2 only (an error reply, in bounded time);
/// by default the same node serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_with_min_version_1_3_refuses_a_tls_1_2_node() {
    let old_node = OwnTlsRedis::start_with("server", &["--tls-protocols", "TLSv1.2"]);
    let ping = b"*1\r\n$4\r\nPING\r\n";
    let (line, took) =
        first_reply_through_tls_pool_with(&old_node, "min_version = '1.3'", ping).await;
    assert!(took < TLS_BOUNDED, "{took:?}");
    assert!(
        line.starts_with("-ERR backend") && line.contains("TLS handshake failed"),
        "{line}"
    );
    let (line, _) = first_reply_through_tls_pool(&old_node, ping).await;
    assert_eq!(line, "+PONG\r\n");
}

/// A `crl_file` that holds no revocation list refuses the start, naming the pool and the key.
#[tokio::test]
async fn a_pool_crl_file_without_a_list_is_refused() {
    let config = Config::from_toml(&format!(
        "listen = '127.0.0.1:0'\ndefault_pool = 'secure'\n{}crl_file = '{}'\n",
        tls_pool_toml("secure", "standalone", &[tls_redis()]),
        tls_file("ca.crt"),
    ))
    .unwrap();
    let error = Proxy::builder(config)
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("config key `pools.secure`: crl_file: ")
            && error.contains("holds no PEM certificate revocation list"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_backend_certificate_is_an_error_reply() {
    let expired = OwnTlsRedis::start("expired");
    let (line, took) =
        first_reply_through_tls_pool(&expired, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").await;
    assert!(took < TLS_BOUNDED);
    assert!(
        line.starts_with("-ERR backend") && line.contains("certificate expired"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_signed_by_another_ca_is_an_error_reply() {
    let other = OwnTlsRedis::start("other-server");
    let (line, _) = first_reply_through_tls_pool(&other, b"*1\r\n$4\r\nPING\r\n").await;
    assert!(
        line.starts_with("-ERR backend") && line.contains("UnknownIssuer"),
        "{line}"
    );
}

/// A mutual TLS listener (`[tls]` keys `tls_extra` added) in front of the plaintext standalone Redis, with two
/// tenants: `shop`, bound to the subject of `client.crt` (keys under `{prefix}:`), and `other`, password
/// `{prefix}-other` (keys under `{prefix}-other:`).
async fn mutual_tls_tenants_proxy(prefix: &str, tls_extra: &str) -> Proxy {
    proxy_from(&format!(
        "default_pool = 'main'\n{}{tls_extra}[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n\
         [tenants.shop]\npassword = '{prefix}-never-sent'\npool = 'main'\nkey_prefix = '{prefix}:'\n\
         tls_subject = 'CN=tenant-client, O=rkproxy-test'\n\
         [tenants.other]\npassword = '{prefix}-other'\npool = 'main'\nkey_prefix = '{prefix}-other:'\n",
        listener_toml("server", true),
        redis_addr()
    ))
    .await
}

#[tokio::test]
async fn mutual_tls_logs_a_bound_tenant_in_without_a_password() {
    let prefix = unique("mtls");
    let proxy = mutual_tls_tenants_proxy(&prefix, "").await;
    let addr = proxy.tls_local_addr().unwrap();
    let mut tenant = tls_connect(addr, client_config("ca.crt", Some("client")))
        .await
        .unwrap();
    let reply = tls_command(&mut tenant, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n").await;
    assert_eq!(reply.as_deref(), Some("+OK\r\n"), "no AUTH needed");
    // The key went under the tenant's prefix.
    let mut direct = direct(&redis_addr(), 0).await;
    let stored: String = direct.get(format!("{prefix}:k")).await.unwrap();
    assert_eq!(stored, "v1");

    // Without a certificate the handshake is refused (client_ca_file requires one).
    assert!(
        refused(addr, client_config("ca.crt", None)).await,
        "a client without a certificate is refused"
    );
    proxy.shutdown().await;
}

/// Whether a client with `config` is refused by the listener at `addr`: the handshake fails, or (TLS 1.3, where
/// the client finishes first) the connection closes at its first command.
async fn refused(addr: std::net::SocketAddr, config: Arc<rustls::ClientConfig>) -> bool {
    match tls_connect(addr, config).await {
        Err(_) => true,
        Ok(mut stream) => closed_soon(&mut stream).await,
    }
}

/// The count of `rkproxy_tls_handshakes_total{result}` in the proxy's metrics.
async fn handshakes(proxy: &Proxy, result: &str) -> f64 {
    let (scrape, body) = scrape_metrics(proxy).await;
    match sample(
        &scrape,
        "rkproxy_tls_handshakes_total",
        &[("result", result)],
    ) {
        Some(sample) => match sample.value {
            prometheus_parse::Value::Counter(count) => count,
            ref other => panic!("{other:?} in {body}"),
        },
        None => panic!("no rkproxy_tls_handshakes_total{{result={result}}} in {body}"),
    }
}

#[tokio::test]
async fn a_revoked_client_certificate_is_refused_and_a_reload_puts_a_new_list_in_force() {
    let dir = std::env::temp_dir().join(unique("rkproxy-tls-crl"));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("clients.crl");
    std::fs::copy(tls_file("ca-empty.crl"), &list).unwrap();
    let config = Config::from_toml(&format!(
        "listen = '127.0.0.1:0'\nmetrics_listen = '127.0.0.1:0'\ndefault_pool = 'main'\n{}\
         client_crl_file = '{}'\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n",
        listener_toml("server", true),
        list.display(),
        redis_addr()
    ))
    .unwrap();
    let proxy = Proxy::builder(config.clone()).start().await.unwrap();
    let addr = proxy.tls_local_addr().unwrap();
    let revoked_client = || client_config("ca.crt", Some("revoked-client"));
    let mut before = tls_connect(addr, revoked_client()).await.unwrap();
    assert_eq!(
        tls_ping(&mut before).await.as_deref(),
        Some("+PONG\r\n"),
        "not revoked yet"
    );

    // The CA revokes it: the list is replaced in place and the same configuration reloaded.
    std::fs::copy(tls_file("ca.crl"), &list).unwrap();
    proxy.reload(config.clone()).await.unwrap();
    assert!(refused(addr, revoked_client()).await, "revoked");
    let mut valid = tls_connect(addr, client_config("ca.crt", Some("client")))
        .await
        .unwrap();
    assert_eq!(tls_ping(&mut valid).await.as_deref(), Some("+PONG\r\n"));
    assert_eq!(handshakes(&proxy, "ok").await, 2.0);
    assert_eq!(handshakes(&proxy, "failed").await, 1.0);
    assert_eq!(handshakes(&proxy, "not_tls").await, 0.0);

    // A list that does not parse refuses the reload, names the key, and the old list stays in force.
    std::fs::write(
        &list,
        "-----BEGIN X509 CRL-----\nbm90IGEgbGlzdA==\n-----END X509 CRL-----\n",
    )
    .unwrap();
    let error = proxy.reload(config.clone()).await.unwrap_err().to_string();
    assert!(error.contains("tls.client_crl_file"), "{error}");
    std::fs::write(&list, "no PEM here").unwrap();
    let error = proxy.reload(config).await.unwrap_err().to_string();
    assert!(
        error.contains("tls.client_crl_file")
            && error.contains("holds no PEM certificate revocation list"),
        "{error}"
    );
    assert!(refused(addr, revoked_client()).await, "still revoked");
    proxy.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn with_revocation_lists_a_client_ca_without_one_is_refused() {
    let dir = std::env::temp_dir().join(unique("rkproxy-tls-crl-unknown"));
    std::fs::create_dir_all(&dir).unwrap();
    // Clients of two CAs, and a revocation list of the first only.
    let both_cas = dir.join("client-cas.crt");
    let pem = [tls_file("ca.crt"), tls_file("other-ca.crt")]
        .map(|path| std::fs::read_to_string(path).unwrap())
        .concat();
    std::fs::write(&both_cas, pem).unwrap();
    let listener = |crl: &str| {
        format!(
            "tls_listen = '127.0.0.1:0'\ndefault_pool = 'main'\n[tls]\ncert_file = '{}'\nkey_file = '{}'\n\
             client_ca_file = '{}'\n{crl}[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n",
            tls_file("server.crt"),
            tls_file("server.key"),
            both_cas.display(),
            redis_addr()
        )
    };
    let other_client = || client_config("ca.crt", Some("other-server"));
    let without_lists = proxy_from(&listener("")).await;
    let mut accepted = tls_connect(without_lists.tls_local_addr().unwrap(), other_client())
        .await
        .unwrap();
    assert_eq!(tls_ping(&mut accepted).await.as_deref(), Some("+PONG\r\n"));
    without_lists.shutdown().await;

    let crl = format!("client_crl_file = '{}'\n", tls_file("ca-empty.crl"));
    let with_lists = proxy_from(&listener(&crl)).await;
    let addr = with_lists.tls_local_addr().unwrap();
    assert!(
        refused(addr, other_client()).await,
        "unknown revocation status"
    );
    let mut listed = tls_connect(addr, client_config("ca.crt", Some("client")))
        .await
        .unwrap();
    assert_eq!(tls_ping(&mut listed).await.as_deref(), Some("+PONG\r\n"));
    with_lists.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn optional_client_certificates_log_bound_tenants_in_and_let_others_use_auth() {
    let prefix = unique("mtls-optional");
    let proxy = mutual_tls_tenants_proxy(&prefix, "client_auth = 'optional'\n").await;
    let addr = proxy.tls_local_addr().unwrap();
    let set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n";

    let mut bound = tls_connect(addr, client_config("ca.crt", Some("client")))
        .await
        .unwrap();
    assert_eq!(
        tls_command(&mut bound, set).await.as_deref(),
        Some("+OK\r\n")
    );

    let mut anonymous = tls_connect(addr, client_config("ca.crt", None))
        .await
        .unwrap();
    let reply = tls_command(&mut anonymous, set).await.unwrap();
    assert!(reply.starts_with("-NOAUTH"), "{reply}");
    let auth = format!(
        "*2\r\n$4\r\nAUTH\r\n${}\r\n{prefix}-other\r\n",
        prefix.len() + 6
    );
    assert_eq!(
        tls_command(&mut anonymous, auth.as_bytes())
            .await
            .as_deref(),
        Some("+OK\r\n")
    );
    assert_eq!(
        tls_command(&mut anonymous, set).await.as_deref(),
        Some("+OK\r\n")
    );

    let mut direct = direct(&redis_addr(), 0).await;
    let stored: String = direct.get(format!("{prefix}:k")).await.unwrap();
    assert_eq!(stored, "v1", "the certificate's tenant");
    let stored: String = direct.get(format!("{prefix}-other:k")).await.unwrap();
    assert_eq!(stored, "v1", "the password's tenant");

    // A certificate that is presented is still checked: one of another CA is refused.
    assert!(refused(addr, client_config("ca.crt", Some("other-server"))).await);
    proxy.shutdown().await;
}

/// Connects with `config` (which remembers sessions), runs `request` and says how the handshake went.
async fn session_kind(
    addr: std::net::SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    request: &[u8],
) -> (rustls::HandshakeKind, Option<String>) {
    let mut stream = tls_connect(addr, Arc::clone(config)).await.unwrap();
    // The reply also carries the session tickets a TLS 1.3 server sends after its handshake.
    let reply = tls_command(&mut stream, request).await;
    (stream.get_ref().1.handshake_kind().unwrap(), reply)
}

#[tokio::test]
async fn returning_clients_resume_their_tls_session_and_keep_their_certificate_tenant() {
    let prefix = unique("tls-resume");
    let toml = |extra: &str| {
        format!(
            "listen = '127.0.0.1:0'\ndefault_pool = 'main'\n{}{extra}[pools.main]\nkind = 'standalone'\n\
             nodes = ['{}']\n[tenants.shop]\npassword = '{prefix}-never-sent'\npool = 'main'\n\
             key_prefix = '{prefix}:'\ntls_subject = 'CN=tenant-client, O=rkproxy-test'\n",
            listener_toml("server", true),
            redis_addr()
        )
    };
    let config = Config::from_toml(&toml("")).unwrap();
    let proxy = Proxy::builder(config.clone()).start().await.unwrap();
    let addr = proxy.tls_local_addr().unwrap();
    let client = client_config("ca.crt", Some("client"));
    let set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
    let ok = Some("+OK\r\n".to_owned());
    assert_eq!(
        session_kind(addr, &client, set).await,
        (rustls::HandshakeKind::Full, ok.clone())
    );
    // The resumed session still names the certificate: the tenant is logged in without AUTH.
    assert_eq!(
        session_kind(addr, &client, set).await,
        (rustls::HandshakeKind::Resumed, ok.clone())
    );
    let mut direct = direct(&redis_addr(), 0).await;
    let stored: String = direct.get(format!("{prefix}:k")).await.unwrap();
    assert_eq!(stored, "v");

    // A reload starts a new cache: a certificate check that changed (a revocation list, another CA) is
    // never skipped by resuming a session made under the old one.
    proxy.reload(config).await.unwrap();
    assert_eq!(
        session_kind(addr, &client, set).await.0,
        rustls::HandshakeKind::Full
    );
    assert_eq!(
        session_kind(addr, &client, set).await.0,
        rustls::HandshakeKind::Resumed
    );
    proxy.shutdown().await;

    let without_cache = Config::from_toml(&toml("session_cache_size = 0\n")).unwrap();
    let proxy = Proxy::builder(without_cache).start().await.unwrap();
    let addr = proxy.tls_local_addr().unwrap();
    let client = client_config("ca.crt", Some("client"));
    for _ in 0..2 {
        assert_eq!(
            session_kind(addr, &client, set).await,
            (rustls::HandshakeKind::Full, ok.clone())
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn min_version_1_3_refuses_tls_1_2_clients() {
    let proxy = tls_proxy().await;
    let mut tls12 = tls_connect(
        proxy.tls_local_addr().unwrap(),
        tls12_client_config("ca.crt"),
    )
    .await
    .expect("TLS 1.2 is accepted by default");
    assert_eq!(tls_ping(&mut tls12).await.as_deref(), Some("+PONG\r\n"));
    proxy.shutdown().await;

    let proxy = proxy_from(&format!(
        "default_pool = 'main'\n{}min_version = '1.3'\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n",
        listener_toml("server", false),
        redis_addr()
    ))
    .await;
    let addr = proxy.tls_local_addr().unwrap();
    assert!(tls_connect(addr, tls12_client_config("ca.crt"))
        .await
        .is_err());
    let mut tls13 = tls_connect(addr, client_config("ca.crt", None))
        .await
        .unwrap();
    assert_eq!(tls_ping(&mut tls13).await.as_deref(), Some("+PONG\r\n"));
    proxy.shutdown().await;
}

/// redis-cli with `--tls --cacert ca.crt` and `args` against `addr`, which may fail: its exit status and
/// what it printed (standard output, then standard error).
fn tls_redis_cli_outcome(addr: std::net::SocketAddr, args: &[&str]) -> (bool, String) {
    let output = Command::new("redis-cli")
        .args(["--tls", "--cacert", &tls_file("ca.crt")])
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

/// `[tls]`'s `cipher_suites` is all a client may choose from: redis-cli offering only another TLS 1.3 suite is
/// refused at the handshake (counted as failed), redis-cli offering a listed one is served with it, and a
/// TLS 1.2 client gets the TLS 1.2 suite of the list (named by OpenSSL's name); the metrics count each
/// suite chosen. A reload puts a new list in force for new connections; open ones keep their suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_offers_only_its_cipher_suites() {
    let config_with = |suites: &str| {
        format!(
            "listen = '127.0.0.1:0'\nmetrics_listen = '127.0.0.1:0'\ndefault_pool = 'main'\n\
             {}cipher_suites = [{suites}]\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n",
            listener_toml("server", false),
            redis_addr()
        )
    };
    let first = config_with("'TLS_AES_256_GCM_SHA384', 'ECDHE-ECDSA-AES128-GCM-SHA256'");
    let proxy = Proxy::builder(Config::from_toml(&first).unwrap())
        .start()
        .await
        .unwrap();
    let addr = proxy.tls_local_addr().unwrap();
    let failed_before = handshakes(&proxy, "failed").await;
    assert!(!pinged_with_suite(addr, "TLS_AES_128_GCM_SHA256").await);
    // redis-cli tries again once the first connection failed: at least one failure.
    assert!(handshakes(&proxy, "failed").await > failed_before);
    assert!(pinged_with_suite(addr, "TLS_AES_256_GCM_SHA384").await);

    let negotiated = |stream: &TlsClient| {
        stream
            .get_ref()
            .1
            .negotiated_cipher_suite()
            .map(|s| s.suite())
    };
    let mut tls13 = tls_connect(addr, client_config("ca.crt", None))
        .await
        .unwrap();
    assert_eq!(tls_ping(&mut tls13).await.as_deref(), Some("+PONG\r\n"));
    assert_eq!(
        negotiated(&tls13),
        Some(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384)
    );
    let mut tls12 = tls_connect(addr, tls12_client_config("ca.crt"))
        .await
        .unwrap();
    assert_eq!(tls_ping(&mut tls12).await.as_deref(), Some("+PONG\r\n"));
    assert_eq!(
        negotiated(&tls12),
        Some(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
    );

    // What the successful handshakes agreed on: redis-cli's and the TLS 1.3 client's, the TLS 1.2 client's.
    assert_eq!(
        suite_count(&proxy, "TLSv1.3", "TLS_AES_256_GCM_SHA384").await,
        Some(2.0)
    );
    assert_eq!(
        suite_count(&proxy, "TLSv1.2", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256").await,
        Some(1.0)
    );
    assert_eq!(
        suite_count(&proxy, "TLSv1.3", "TLS_AES_128_GCM_SHA256").await,
        None,
        "only suites chosen are listed"
    );

    let second = config_with("'TLS_AES_128_GCM_SHA256'");
    proxy
        .reload(Config::from_toml(&second).unwrap())
        .await
        .unwrap();
    assert!(!pinged_with_suite(addr, "TLS_AES_256_GCM_SHA384").await);
    assert!(pinged_with_suite(addr, "TLS_AES_128_GCM_SHA256").await);
    assert_eq!(tls_ping(&mut tls13).await.as_deref(), Some("+PONG\r\n"));
    assert_eq!(
        suite_count(&proxy, "TLSv1.3", "TLS_AES_128_GCM_SHA256").await,
        Some(1.0)
    );
    proxy.shutdown().await;
}

/// The count of `rkproxy_tls_cipher_suites_total{version,cipher_suite}` in the proxy's metrics, if listed.
async fn suite_count(proxy: &Proxy, version: &str, suite: &str) -> Option<f64> {
    let (scrape, body) = scrape_metrics(proxy).await;
    let labels = [("version", version), ("cipher_suite", suite)];
    let found = sample(&scrape, "rkproxy_tls_cipher_suites_total", &labels)?;
    match found.value {
        prometheus_parse::Value::Counter(count) => Some(count),
        ref other => panic!("{other:?} in {body}"),
    }
}

/// Whether redis-cli offering only the TLS 1.3 suite `suite` gets PONG from the TLS port `addr`; when it does
/// not, it must say that the handshake failed.
async fn pinged_with_suite(addr: std::net::SocketAddr, suite: &'static str) -> bool {
    let (served, printed) =
        blocking(move || tls_redis_cli_outcome(addr, &["--tls-ciphersuites", suite, "PING"])).await;
    if served && printed == "PONG\n" {
        return true;
    }
    assert!(printed.contains("SSL_connect failed"), "{printed}");
    false
}

/// A pool's `cipher_suites` is all rkproxy offers its nodes: a node that accepts only another suite (Redis's
/// `tls-ciphersuites`, and `tls-ciphers` for TLS 1.2) is a failed connect, an error reply in bounded time; a
/// list with a suite the node accepts serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_offers_only_its_cipher_suites() {
    let tls13_node =
        OwnTlsRedis::start_with("server", &["--tls-ciphersuites", "TLS_AES_128_GCM_SHA256"]);
    let tls12_node = OwnTlsRedis::start_with(
        "server",
        &[
            "--tls-protocols",
            "TLSv1.2",
            "--tls-ciphers",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ],
    );
    let ping = b"*1\r\n$4\r\nPING\r\n";
    let refused = [
        (&tls13_node, "cipher_suites = ['TLS_AES_256_GCM_SHA384']"),
        (
            &tls12_node,
            "cipher_suites = ['TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384']",
        ),
    ];
    for (node, keys) in refused {
        let (line, took) = first_reply_through_tls_pool_with(node, keys, ping).await;
        assert!(took < TLS_BOUNDED, "{took:?}");
        assert!(
            line.starts_with("-ERR backend")
                && line.contains("TLS handshake failed: received fatal alert: HandshakeFailure"),
            "{keys}: {line}"
        );
    }
    let served = [
        (
            &tls13_node,
            "cipher_suites = ['TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256']",
        ),
        (
            &tls12_node,
            "cipher_suites = ['ECDHE-ECDSA-AES256-GCM-SHA384']",
        ),
    ];
    for (node, keys) in served {
        let (line, _) = first_reply_through_tls_pool_with(node, keys, ping).await;
        assert_eq!(line, "+PONG\r\n", "{keys}");
    }
}

#[tokio::test]
async fn a_reload_puts_a_new_certificate_in_use_without_a_restart() {
    let dir = std::env::temp_dir().join(unique("rkproxy-tls-reload"));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("live.crt"), dir.join("live.key"));
    std::fs::copy(tls_file("server.crt"), &cert).unwrap();
    std::fs::copy(tls_file("server.key"), &key).unwrap();
    let config = Config::from_toml(&format!(
        "listen = '127.0.0.1:0'\ntls_listen = '127.0.0.1:0'\ndefault_pool = 'main'\n\
         [tls]\ncert_file = '{}'\nkey_file = '{}'\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n",
        cert.display(),
        key.display(),
        redis_addr()
    ))
    .unwrap();
    let proxy = Proxy::builder(config.clone()).start().await.unwrap();
    let addr = proxy.tls_local_addr().unwrap();
    let mut before = tls_connect(addr, client_config("ca.crt", None))
        .await
        .unwrap();
    assert!(tls_connect(addr, client_config("other-ca.crt", None))
        .await
        .is_err());

    // Rotate: the files now hold a certificate of the other CA; the same configuration is reloaded.
    std::fs::copy(tls_file("other-server.crt"), &cert).unwrap();
    std::fs::copy(tls_file("other-server.key"), &key).unwrap();
    proxy.reload(config).await.unwrap();
    let mut after = tls_connect(addr, client_config("other-ca.crt", None))
        .await
        .expect("new connections get the new certificate");
    assert_eq!(tls_ping(&mut after).await.as_deref(), Some("+PONG\r\n"));
    assert!(tls_connect(addr, client_config("ca.crt", None))
        .await
        .is_err());
    // A connection opened before keeps working.
    assert_eq!(tls_ping(&mut before).await.as_deref(), Some("+PONG\r\n"));
    proxy.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The log lines of the rkproxy binary: a plaintext client on the TLS port, a client that rejects the
/// proxy's certificate, a client whose certificate is revoked, and a client that never finishes its handshake
/// each get a warning naming the cause, and a closed connection in bounded time.
#[test]
fn failed_handshakes_are_logged_and_closed() {
    let config = ConfigFile::new(&format!(
        "listen = '127.0.0.1:0'\ndefault_pool = 'main'\n{}client_crl_file = '{}'\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['{}']\n",
        listener_toml("server", true),
        tls_file("ca.crl"),
        redis_addr()
    ));
    let mut proxy = LoggingProxy::start(&config);
    let address = proxy.tls_addr();

    // A plaintext client on the TLS port: closed at once.
    let mut plain = std::net::TcpStream::connect(address).unwrap();
    std::io::Write::write_all(&mut plain, b"*1\r\n$4\r\nPING\r\n").unwrap();
    assert!(
        closed_within(&mut plain),
        "the plaintext client is disconnected"
    );
    proxy.wait_for_log("plaintext client on the TLS port");

    // A client that trusts another CA aborts the handshake; the proxy logs the alert it got.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(tls_connect(address, client_config("other-ca.crt", None)));
    assert!(outcome.is_err());
    proxy.wait_for_log("UnknownCA");

    // A client whose certificate the CA revoked (client_crl_file) is refused; the log says why.
    let revoked_client = client_config("ca.crt", Some("revoked-client"));
    assert!(
        runtime.block_on(refused(address, revoked_client)),
        "a revoked client certificate is refused"
    );
    proxy.wait_for_log("invalid peer certificate: Revoked");

    // A client that connects and sends nothing is closed at handshake_ms.
    let mut silent = std::net::TcpStream::connect(address).unwrap();
    assert!(
        closed_within(&mut silent),
        "a silent client is disconnected"
    );
    proxy.wait_for_log("no TLS handshake within 2000 ms");
}

/// The rkproxy binary warns at start that the TLS listener's certificate and a pool's client certificate have
/// expired.
#[test]
fn expired_certificates_the_proxy_presents_are_warned_about_at_start() {
    let config = ConfigFile::new(&format!(
        "listen = '127.0.0.1:0'\ndefault_pool = 'main'\n{}\n[pools.main]\nkind = 'standalone'\n\
         nodes = ['{}']\n{}",
        listener_toml("expired", false),
        redis_addr(),
        pool_with_expired_client_certificate()
    ));
    let mut proxy = LoggingProxy::start(&config);
    proxy.wait_for_line("the TLS listener's certificate has expired; clients will refuse it");
    let log = proxy.wait_for_line(
        "a pool's TLS client certificate has expired; backends that check client certificates will refuse it",
    );
    assert!(log.contains(&tls_file("expired.crt")), "{log}");
}

/// Whether the peer closes the socket (end of stream or reset) within [`TLS_BOUNDED`], whatever it sends first.
fn closed_within(stream: &mut std::net::TcpStream) -> bool {
    let deadline = Instant::now() + TLS_BOUNDED;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buffer = [0u8; 256];
    while Instant::now() < deadline {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// The rkproxy binary with its log collected, on the ports its ready line names.
struct LoggingProxy(ReadyProxy);

impl LoggingProxy {
    /// Starts the binary with `config`, whose `listen` and `tls_listen` are on port 0.
    fn start(config: &ConfigFile) -> LoggingProxy {
        LoggingProxy(ReadyProxy::start(config.command()))
    }

    /// Where TLS clients connect.
    fn tls_addr(&self) -> std::net::SocketAddr {
        self.0.tls_listen.expect("tls_listen is on")
    }

    /// Waits for a handshake failure logged with `text` in it.
    fn wait_for_log(&mut self, text: &str) {
        let log = self.wait_for_line(text);
        assert!(
            log.contains("TLS handshake with a client failed; connection closed"),
            "{log}"
        );
    }

    /// Waits until the log holds `text` (within [`TLS_BOUNDED`]); the log so far.
    fn wait_for_line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + TLS_BOUNDED;
        loop {
            let log = self.0.log_text();
            if log.contains(text) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with '{text}' in:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A redis-server of the test's own serving TLS with the certificate `cert` (`expired`, `other-server`) on
/// `tls_port`, the only port the tests use. It is an [`OwnRedis`] with a TLS port added, chosen afresh on each
/// attempt like a cluster node's bus port: redis-server binds all its ports before it answers anything (and
/// exits when one is taken), so once its plaintext port answers with its pid, the TLS port is its own too.
struct OwnTlsRedis {
    tls_port: u16,
    /// Stopped on drop.
    _server: OwnRedis,
}

impl OwnTlsRedis {
    fn start(cert: &str) -> OwnTlsRedis {
        OwnTlsRedis::start_with(cert, &[])
    }

    /// A server with `cert` and the redis-server arguments `extra` added.
    fn start_with(cert: &str, extra: &[&str]) -> OwnTlsRedis {
        let (cert_file, key_file) = (
            tls_file(&format!("{cert}.crt")),
            tls_file(&format!("{cert}.key")),
        );
        let ca_file = tls_file("ca.crt");
        let mut tls_port = 0;
        let server = OwnRedis::start_with(|| {
            tls_port = free_port();
            let port = tls_port.to_string();
            let tls_args = [
                "--tls-port",
                &port,
                "--tls-cert-file",
                &cert_file,
                "--tls-key-file",
                &key_file,
                "--tls-ca-cert-file",
                &ca_file,
                "--tls-auth-clients",
                "no",
            ];
            tls_args
                .iter()
                .chain(extra)
                .map(|arg| arg.to_string())
                .collect()
        });
        // The last attempt's port: the one the server started on.
        OwnTlsRedis {
            tls_port,
            _server: server,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.tls_port)
    }
}
