//! Kafka pools on secured listeners and Kafka's view of the consumer groups, against the broker `cargo xtask
//! test` starts: besides PLAINTEXT (`RKPROXY_TEST_KAFKA`) it has a SASL_PLAINTEXT listener with PLAIN and SCRAM
//! users (`RKPROXY_TEST_KAFKA_SASL`, `..._SCRAM_USER`, `..._PLAIN_USER` as `user:password`) and an SSL listener
//! whose certificate a CA made for the run signed (`RKPROXY_TEST_KAFKA_SSL`; the PEM files in
//! `RKPROXY_TEST_KAFKA_CERTS`). Kafka's own `kafka-consumer-groups.sh` is run as the class behind it, from the
//! broker's jars (`RKPROXY_TEST_KAFKA_LIB`). Every test uses topics and groups of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Reads a variable `cargo xtask test` exports for the secured listeners.
fn secured_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the secured listeners of the Kafka broker that \
             `cargo xtask test` starts."
        )
    })
}

/// `(user, password)` from a `user:password` variable.
fn credentials(name: &str) -> (String, String) {
    let value = secured_env(name);
    let (user, password) = value.split_once(':').expect("user:password");
    (user.to_owned(), password.to_owned())
}

fn cert_file(name: &str) -> String {
    PathBuf::from(secured_env("RKPROXY_TEST_KAFKA_CERTS"))
        .join(name)
        .display()
        .to_string()
}

/// A proxy config whose default pool is the Kafka pool `events` on `broker`, with `keys`, serving `topic` (with
/// `partitions`) to everyone.
fn pool_config(broker: &str, keys: &str, topic: &str, partitions: i32) -> String {
    format!(
        "default_pool = 'events'\n{}",
        kafka_pool_toml(broker, keys, &topic_toml(topic, partitions, &["*"], &["*"]))
    )
}

/// SASL keys for the user in the `user:password` variable `user_var`.
fn sasl_keys(user_var: &str, mechanism: &str) -> String {
    let (user, password) = credentials(user_var);
    format!("username = '{user}'\npassword = '{password}'\nsasl_mechanism = '{mechanism}'")
}

/// KPUSHes three values through a proxy whose pool is on `broker` with `keys`, and KPOPs them back.
async fn push_and_pop_through(broker: &str, keys: &str) {
    let topic = unique_name("roundtrip");
    let proxy = start_proxy_toml(&pool_config(broker, keys, &topic, 2)).await;
    let mut connection = client(&proxy).await;
    wait_connected(&mut connection, &topic).await;
    let values = ["one", "two", "three"];
    for value in values {
        kpush(&mut connection, &topic, value).await;
    }
    let mut popped = BTreeSet::new();
    while let Some((_, _, value)) = kpop(&mut connection, &topic).await {
        popped.insert(value);
    }
    let pushed: BTreeSet<Vec<u8>> = values
        .iter()
        .map(|value| value.as_bytes().to_vec())
        .collect();
    assert_eq!(popped, pushed);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpush_and_kpop_over_sasl_scram_sha_256() {
    let keys = sasl_keys("RKPROXY_TEST_KAFKA_SCRAM_USER", "SCRAM-SHA-256");
    push_and_pop_through(&secured_env("RKPROXY_TEST_KAFKA_SASL"), &keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpush_and_kpop_over_sasl_plain() {
    let keys = sasl_keys("RKPROXY_TEST_KAFKA_PLAIN_USER", "PLAIN");
    push_and_pop_through(&secured_env("RKPROXY_TEST_KAFKA_SASL"), &keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpush_and_kpop_over_tls_with_the_ca() {
    let keys = format!("tls = true\nca_file = '{}'", cert_file("ca.pem"));
    push_and_pop_through(&secured_env("RKPROXY_TEST_KAFKA_SSL"), &keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpush_and_kpop_over_tls_with_a_client_certificate() {
    let keys = format!(
        "tls = true\nca_file = '{}'\ncert_file = '{}'\nkey_file = '{}'",
        cert_file("ca.pem"),
        cert_file("client.pem"),
        cert_file("client.key")
    );
    push_and_pop_through(&secured_env("RKPROXY_TEST_KAFKA_SSL"), &keys).await;
}

/// SCRAM-SHA-512 (the default mechanism), and growing a topic: CreatePartitions goes over a connection the
/// bridge opens itself, which must authenticate like rskafka's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_512_serves_and_grows_a_topic() {
    let (user, password) = credentials("RKPROXY_TEST_KAFKA_SCRAM_USER");
    let keys = format!("username = '{user}'\npassword = '{password}'");
    let broker = secured_env("RKPROXY_TEST_KAFKA_SASL");
    let topic = unique_name("grow");
    let proxy = start_proxy_toml(&pool_config(&broker, &keys, &topic, 1)).await;
    let mut connection = client(&proxy).await;
    let partitions = serve_within(&mut connection, &topic, Duration::from_secs(60)).await;
    assert_eq!(partitions.unwrap(), [0]);
    let grown = rkproxy::config::Config::from_toml(&format!(
        "listen = '127.0.0.1:0'\n{}",
        pool_config(&broker, &keys, &topic, 3)
    ))
    .unwrap();
    proxy.reload(grown).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let partitions = serve_within(&mut connection, &topic, Duration::from_secs(60)).await;
        if partitions.as_deref() == Ok(&[0, 1, 2][..]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the topic did not grow: {partitions:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (partition, _) = kpush(&mut connection, &topic, "after growth").await;
    assert!((0..3).contains(&partition));
    proxy.shutdown().await;
}

/// A CA that did not sign the broker's certificate: a clear error naming the certificate problem, within the
/// pool's own bounds (never a hang).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_a_clear_error_not_a_hang() {
    let keys = format!("tls = true\nca_file = '{}'", cert_file("other-ca.pem"));
    let error = first_error_over_tls(&keys, "wrongca").await;
    assert!(
        error.contains("kafka pool 'events' unavailable: kafka BROKER_NOT_AVAILABLE")
            && error.contains("TLS handshake failed: invalid peer certificate: UnknownIssuer"),
        "{error}"
    );
}

/// A pool's `cipher_suites` is all rkproxy offers the brokers: a TLS 1.3 suite of the list serves; a list of
/// TLS 1.2 suites for RSA keys alone, which the broker's ECDSA certificate cannot serve, is refused at the
/// handshake: a clear error, never a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_pool_offers_only_its_cipher_suites() {
    let keys = |suites: &str| {
        format!(
            "tls = true\nca_file = '{}'\ncipher_suites = [{suites}]",
            cert_file("ca.pem")
        )
    };
    let broker = secured_env("RKPROXY_TEST_KAFKA_SSL");
    push_and_pop_through(&broker, &keys("'TLS_CHACHA20_POLY1305_SHA256'")).await;
    let rsa_only = keys("'ECDHE-RSA-AES128-GCM-SHA256', 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384'");
    let error = first_error_over_tls(&rsa_only, "suites").await;
    assert!(
        error.contains("kafka pool 'events' unavailable")
            && error.contains("TLS handshake failed: received fatal alert: HandshakeFailure"),
        "{error}"
    );
}

/// Revocation lists (`crl_file`) are checked for the brokers too: with lists of another CA only, the
/// broker's issuer has none, its certificate's status is unknown and it is refused (fail closed), a clear
/// error and no hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_whose_ca_has_no_revocation_list_is_refused() {
    let other_lists =
        std::path::Path::new(&secured_env("RKPROXY_TEST_TLS_DIR")).join("ca-empty.crl");
    let keys = format!(
        "tls = true\nca_file = '{}'\ncrl_file = '{}'",
        cert_file("ca.pem"),
        other_lists.display()
    );
    let error = first_error_over_tls(&keys, "nocrl").await;
    assert!(
        error.contains("kafka pool 'events' unavailable")
            && error.contains("invalid peer certificate: UnknownRevocationStatus"),
        "{error}"
    );
}

/// The error of the first command through a pool on the SSL listener with `keys` (and a 1 s request timeout),
/// a topic named after `topic_prefix`; it must come within three request timeouts (the first attempt's
/// outcome), never a hang.
async fn first_error_over_tls(keys: &str, topic_prefix: &str) -> String {
    let keys = format!("{keys}\nrequest_timeout_ms = 1000");
    let topic = unique_name(topic_prefix);
    let proxy = start_proxy_toml(&pool_config(
        &secured_env("RKPROXY_TEST_KAFKA_SSL"),
        &keys,
        &topic,
        1,
    ))
    .await;
    let mut connection = client(&proxy).await;
    let started = Instant::now();
    let error = redis::cmd("KPARTITIONS")
        .arg(&topic)
        .query_async::<Vec<i64>>(&mut connection)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    proxy.shutdown().await;
    error
}

/// A wrong password: the client and the log get Kafka's SASL_AUTHENTICATION_FAILED (never the password), the
/// pool keeps retrying, and once a reload fixes the password the same connection's commands work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_error_and_a_reload_fixes_it() {
    let (user, password) = credentials("RKPROXY_TEST_KAFKA_SCRAM_USER");
    let broker = secured_env("RKPROXY_TEST_KAFKA_SASL");
    let topic = unique_name("wrongpw");
    let wrong = format!(
        "username = '{user}'\npassword = 'not-{password}-xyzzy'\nsasl_mechanism = 'SCRAM-SHA-256'\n\
         connect_retry_ms = 200"
    );
    let right = format!(
        "username = '{user}'\npassword = '{password}'\nsasl_mechanism = 'SCRAM-SHA-256'\nconnect_retry_ms = 200"
    );
    let proxy = ProxyProcess::start("wrongpw", &pool_config(&broker, &wrong, &topic, 1));
    let mut connection = client_at(proxy.addr, None).await;

    let error = serve_within(&mut connection, &topic, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        error.contains("kafka pool 'events' unavailable: kafka SASL_AUTHENTICATION_FAILED: SASL authentication with")
            && error.contains("invalid credentials with SASL mechanism SCRAM-SHA-256")
            && error.contains("retrying"),
        "{error}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !proxy.log_text().contains("SASL_AUTHENTICATION_FAILED") {
        assert!(
            Instant::now() < deadline,
            "not logged:\n{}",
            proxy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!proxy.log_text().contains("xyzzy"), "{}", proxy.log_text());

    proxy.reload(&pool_config(&broker, &right, &topic, 1));
    serve_within(&mut connection, &topic, Duration::from_secs(60))
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", proxy.log_text()));
    let (_, offset) = kpush(&mut connection, &topic, "after the fix").await;
    assert_eq!(offset, 0);
}

/// Runs one of Kafka's command-line tools (its class, from the broker's jars) against the PLAINTEXT listener.
fn kafka_tool(class: &str, args: &[&str]) -> std::process::Output {
    let lib = secured_env("RKPROXY_TEST_KAFKA_LIB");
    Command::new("java")
        .args(["-Xmx256m", "-cp", &format!("{lib}/*"), class])
        .args(["--bootstrap-server", &kafka_addr()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A SCRAM user that does not exist yet: the pool retries on its own, and serves once `kafka-configs.sh` creates
/// the user on the broker (no reload, no restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_comes_up_once_its_scram_user_is_created() {
    let user = unique_name("user");
    let keys = format!(
        "username = '{user}'\npassword = 'late-secret'\nsasl_mechanism = 'SCRAM-SHA-256'\n\
         connect_retry_ms = 200"
    );
    let topic = unique_name("lateuser");
    let proxy = start_proxy_toml(&pool_config(
        &secured_env("RKPROXY_TEST_KAFKA_SASL"),
        &keys,
        &topic,
        1,
    ))
    .await;
    let mut connection = client(&proxy).await;
    let error = serve_within(&mut connection, &topic, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(error.contains("SASL_AUTHENTICATION_FAILED"), "{error}");

    let created = blocking({
        let user = user.clone();
        move || {
            kafka_tool(
                "kafka.admin.ConfigCommand",
                &[
                    "--alter",
                    "--add-config",
                    "SCRAM-SHA-256=[password=late-secret]",
                    "--entity-type",
                    "users",
                    "--entity-name",
                    &user,
                ],
            )
        }
    })
    .await;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    wait_connected(&mut connection, &topic).await;
    let (_, offset) = kpush(&mut connection, &topic, "hello").await;
    assert_eq!(offset, 0);
    proxy.shutdown().await;
}

/// One line of `kafka-consumer-groups.sh --describe`: current offset, log end offset and lag, as printed.
type GroupRow = (String, String, String);

/// Runs Kafka's `kafka-consumer-groups.sh --describe --group group` (its class, from the broker's jars) against
/// the PLAINTEXT listener; returns the rows of `topic` by partition.
fn describe_group(group: &str, topic: &str) -> BTreeMap<i64, GroupRow> {
    let output = kafka_tool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &["--describe", "--group", group],
    );
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [g, t, partition, current, end, lag, ..] if *g == group && *t == topic => Some((
                    partition.parse().ok()?,
                    (current.to_string(), end.to_string(), lag.to_string()),
                )),
                _ => None,
            }
        })
        .collect()
}

/// Polls the tool until partition 0 of `topic` shows `want` for `group`.
async fn wait_for_group_row(group: &str, topic: &str, want: (&str, &str, &str)) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let rows = blocking({
            let (group, topic) = (group.to_owned(), topic.to_owned());
            move || describe_group(&group, &topic)
        })
        .await;
        let row = rows.get(&0);
        if row.map(|(c, e, l)| (c.as_str(), e.as_str(), l.as_str())) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} shows {rows:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits for the pool, KPUSHes five records to `topic` and KPOPs three (offsets 0 to 2); then waits until
/// Kafka's tool shows `group` at offset 3 of 5, lag 2.
async fn push_five_pop_three(
    connection: &mut redis::aio::MultiplexedConnection,
    group: &str,
    topic: &str,
) {
    wait_connected(connection, topic).await;
    for index in 0..5 {
        kpush(connection, topic, &format!("record {index}")).await;
    }
    for expected in 0..3 {
        let (_, offset, _) = kpop(connection, topic).await.unwrap();
        assert_eq!(offset, expected);
    }
    wait_for_group_row(group, topic, ("3", "5", "2")).await;
}

/// The cursors of `KPOP topic` are the consumer group's offsets in Kafka: `kafka-consumer-groups.sh
/// --describe` shows the current offset and the lag after pushes and pops. The pool is on the SCRAM listener,
/// so the commits' own connections authenticate too; the group id comes from `group_ids`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_tools_show_the_group_offsets_and_lag() {
    let group = unique_name("group");
    let topic = unique_name("lag");
    let keys = format!(
        "{}\ngroup_commit_ms = 200\ngroup_ids = {{ default = '{group}' }}",
        sasl_keys("RKPROXY_TEST_KAFKA_SCRAM_USER", "SCRAM-SHA-512")
    );
    let proxy = start_proxy_toml(&pool_config(
        &secured_env("RKPROXY_TEST_KAFKA_SASL"),
        &keys,
        &topic,
        1,
    ))
    .await;
    let mut connection = client(&proxy).await;
    push_five_pop_three(&mut connection, &group, &topic).await;

    while kpop(&mut connection, &topic).await.is_some() {}
    kpush(&mut connection, &topic, "one more").await;
    wait_for_group_row(&group, &topic, ("5", "6", "1")).await;
    proxy.shutdown().await;
}

/// `RKPROXY KRESET` moves the group's offset in Kafka too: `kafka-consumer-groups.sh --describe` shows the
/// reset cursor (here back, below what was delivered) without waiting for a delivery, and the proxy's next
/// `KPOP topic` reads from it although it had prefetched the records after what it served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_tools_show_a_reset_cursor() {
    let group = unique_name("reset-group");
    let topic = unique_name("reset");
    let keys = format!("group_commit_ms = 200\ngroup_ids = {{ default = '{group}' }}");
    let proxy = start_proxy_toml(&pool_config(&kafka_addr(), &keys, &topic, 1)).await;
    let mut connection = client(&proxy).await;
    // The first KPOP prefetches all five records; three are served.
    push_five_pop_three(&mut connection, &group, &topic).await;

    kreset(&mut connection, "default", &topic, 0, 1).await;
    wait_for_group_row(&group, &topic, ("1", "5", "4")).await;
    let (_, offset, value) = kpop(&mut connection, &topic).await.unwrap();
    assert_eq!((offset, &value[..]), (1, &b"record 1"[..]));
    wait_for_group_row(&group, &topic, ("2", "5", "3")).await;
    proxy.shutdown().await;
}
