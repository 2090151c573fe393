//! Unit tests of the configuration: defaults, and errors that name the key.

use super::*;

fn load_str(toml: &str) -> Result<Config, ConfigError> {
    Config::from_toml(toml)
}

#[test]
fn debug_output_shows_no_password() {
    let config = load_str(
        "default_pool = 'main'\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['h:1']\npassword = 'pool-secret-1'\n\
         [pools.events]\nkind = 'kafka'\nnodes = ['h:9092']\n\
         offsets = { redis = 'h:2', password = 'offsets-secret-2' }\n\
         username = 'app'\npassword = 'kafka-secret-4'\n\
         [pools.events.topics.t]\npartitions = 1\n\
         [tenants.shop]\npassword = 'tenant-secret-3'\npool = 'main'\n\
         backend_user = 'acl-shop'\nbackend_password = 'backend-secret-4'\n",
    )
    .unwrap();
    let shown = format!("{config:?}");
    for secret in [
        "pool-secret-1",
        "offsets-secret-2",
        "tenant-secret-3",
        "backend-secret-4",
        "kafka-secret-4",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("<redacted>"));
}

#[test]
fn kafka_sasl_and_tls_keys_are_checked() {
    let pool = |keys: &str| {
        format!(
            "default_pool = 'events'\n[pools.events]\nkind = 'kafka'\nnodes = ['h:9092']\n{keys}\n\
             [pools.events.topics.t]\npartitions = 1\n"
        )
    };
    let error_of = |keys: &str| load_str(&pool(keys)).unwrap_err().to_string();
    assert!(load_str(&pool(
        "username = 'u'\npassword = 'p'\nsasl_mechanism = 'PLAIN'"
    ))
    .is_ok());
    assert!(load_str(&pool("tls = true\nca_file = '/ca.pem'")).is_ok());
    let error = error_of("username = 'u'");
    assert!(error.contains("pools.events.password"), "{error}");
    let error = error_of("username = 'u'\npassword = 'p'\nsasl_mechanism = 'GSSAPI'");
    assert!(error.contains("'GSSAPI' is not one of PLAIN"), "{error}");
    let error = error_of("sasl_mechanism = 'PLAIN'");
    assert!(
        error.contains("SASL needs `username` and `password`"),
        "{error}"
    );
    // Without ca_file the brokers are checked against the system's trust store.
    assert!(load_str(&pool("tls = true")).is_ok());
    let error = error_of("ca_file = '/ca.pem'");
    assert!(error.contains("set `tls = true`"), "{error}");
    let error = error_of("tls = true\nca_file = '/ca.pem'\ncert_file = '/c.pem'");
    assert!(error.contains("both `cert_file` and `key_file`"), "{error}");
    let error = error_of("group_ids = { nobody = 'g' }");
    assert!(error.contains("pools.events.group_ids.nobody"), "{error}");
}

#[test]
fn operations_keys_have_defaults_and_are_checked() {
    let pool = "[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n";
    let config = load_str(&format!("default_pool = 'main'\n{pool}")).unwrap();
    assert_eq!(config.slowlog.slower_than_us, 10_000);
    assert_eq!(config.slowlog.max_len, 128);
    assert_eq!(config.log_format, LogFormat::Text);
    assert!(config.stats);
    assert!(config.metrics_listen.is_none());
    let config = load_str(&format!(
        "default_pool = 'main'\nlog_format = 'json'\nmetrics_listen = '127.0.0.1:9100'\n{pool}"
    ))
    .unwrap();
    assert_eq!(config.log_format, LogFormat::Json);
    let error = load_str(&format!(
        "default_pool = 'main'\nmetrics_listen = 'nowhere'\n{pool}"
    ))
    .unwrap_err()
    .to_string();
    assert!(error.contains("metrics_listen"), "{error}");
}

#[test]
fn minimal_file_gets_defaults() {
    let config = load_str(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['redis://127.0.0.1:6379']\n",
    )
    .unwrap();
    assert_eq!(config.listen, "127.0.0.1:7480");
    assert_eq!(config.timeouts.connect_ms, 1000);
    assert_eq!(
        config.pools["main"].redis().unwrap().connections_per_node,
        1
    );
}

#[test]
fn big_requests_have_defaults_and_are_checked() {
    let pool = "[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n";
    let config = load_str(&format!("default_pool = 'main'\n{pool}")).unwrap();
    assert_eq!(config.big_requests.threshold_bytes, 262_144);
    assert_eq!(config.big_requests.connections_per_node, 2);
    assert_eq!(config.big_requests.max_queued, 64);
    assert_eq!(config.big_requests.queue_wait_ms, 5000);
    for (setting, key) in [
        ("threshold_bytes = 100", "big_requests.threshold_bytes"),
        (
            "connections_per_node = 0",
            "big_requests.connections_per_node",
        ),
        ("queue_wait_ms = 0", "big_requests.queue_wait_ms"),
    ] {
        let error = load_str(&format!(
            "default_pool = 'main'\n[big_requests]\n{setting}\n{pool}"
        ))
        .unwrap_err()
        .to_string();
        assert!(error.contains(key), "{setting}: {error}");
    }
}

#[test]
fn scripts_get_a_longer_allowance_never_a_shorter_one() {
    let pool = "[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n";
    let config = load_str(&format!("default_pool = 'main'\n{pool}")).unwrap();
    assert_eq!(config.timeouts.slow_command_ms, 30_000);
    let error = load_str(&format!(
        "default_pool = 'main'\n[timeouts]\ncommand_ms = 5000\nslow_command_ms = 2000\n{pool}"
    ))
    .unwrap_err()
    .to_string();
    assert!(error.contains("timeouts.slow_command_ms"), "{error}");
}

#[test]
fn tls_errors_name_the_key() {
    let pool = "[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n";
    let cases = [
        ("tls_listen = '127.0.0.1:1'\n", "`tls`"),
        (
            "tls_listen = 'nowhere'\n[tls]\ncert_file = 'c'\nkey_file = 'k'\n",
            "tls_listen",
        ),
        (
            "[tls]\ncert_file = 'c'\nkey_file = 'k'\nhandshake_ms = 0\n",
            "tls.handshake_ms",
        ),
        (
            "[tls]\ncert_file = 'c'\nkey_file = 'k'\nclient_auth = 'optional'\n",
            "tls.client_auth",
        ),
        (
            "[tls]\ncert_file = 'c'\nkey_file = 'k'\nclient_crl_file = 'crl.pem'\n",
            "tls.client_crl_file",
        ),
        (
            "[tls]\ncert_file = 'c'\nkey_file = 'k'\nmin_version = '1.1'\n",
            "min_version",
        ),
        (
            "[tls]\ncert_file = 'c'\nkey_file = 'k'\ncipher_suites = ['TLS_RSA_WITH_RC4_128_MD5']\n",
            "tls.cipher_suites.0",
        ),
        (
            "[tls]\ncert_file = 'c'\nkey_file = 'k'\ncipher_suites = []\n",
            "tls.cipher_suites",
        ),
        (
            "[tls]\ncert_file = 'c'\nkey_file = 'k'\nmin_version = '1.3'\n\
             cipher_suites = ['ECDHE-ECDSA-AES128-GCM-SHA256']\n",
            "tls.cipher_suites",
        ),
        (
            "[tenants.t]\npassword = 'p'\npool = 'main'\ntls_subject = 'CN=a'\n",
            "tenants.t.tls_subject",
        ),
    ];
    for (extra, key) in cases {
        let error = load_str(&format!("default_pool = 'main'\n{extra}{pool}"))
            .unwrap_err()
            .to_string();
        assert!(error.contains(key), "{extra}: {error}");
    }
    let pool_cases = [
        ("ca_file = 'ca'\n", "pools.main.ca_file"),
        (
            "tls = true\nca_file = 'ca'\ncert_file = 'c'\n",
            "pools.main.cert_file",
        ),
    ];
    for (extra, key) in pool_cases {
        let error = load_str(&format!("default_pool = 'main'\n{pool}{extra}"))
            .unwrap_err()
            .to_string();
        assert!(error.contains(key), "{extra}: {error}");
    }
    let kafka = load_str(
        "default_pool = 'events'\n[pools.events]\nkind = 'kafka'\nnodes = ['h:9092']\ntls = true\n\
         ca_file = 'ca'\nserver_name = 'x'\n[pools.events.topics.t]\npartitions = 1\n",
    )
    .unwrap_err()
    .to_string();
    assert!(kafka.contains("pools.events.server_name"), "{kafka}");
    let missing = Config {
        tls: Some(ClientTlsConfig {
            cert_file: "/nonexistent/proxy.crt".into(),
            key_file: "k".into(),
            client_ca_file: None,
            client_auth: ClientAuth::Required,
            client_crl_file: None,
            min_version: TlsVersion::Tls12,
            cipher_suites: None,
            session_cache_size: 0,
            handshake_ms: 1,
        }),
        ..load_str(&format!("default_pool = 'main'\n{pool}")).unwrap()
    };
    let error = crate::tls::ClientTls::for_config(&missing)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("tls.cert_file") && error.contains("/nonexistent/proxy.crt"),
        "{error}"
    );
}

#[test]
fn errors_name_the_key() {
    let error =
        load_str("default_pool = 'nope'\n[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n")
            .unwrap_err()
            .to_string();
    assert!(
        error.contains("default_pool") && error.contains("nope"),
        "{error}"
    );

    let error =
        load_str("default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['h:x']\n")
            .unwrap_err()
            .to_string();
    assert!(
        error.contains("pools.main.nodes") && error.contains("port 'x'"),
        "{error}"
    );

    let error = load_str("default_pool = 'main'\n[timeouts]\nconnect_ms = 'soon'\n[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("connect_ms"), "{error}");

    let error = load_str("default_pool = 'main'\nlisten_here = 1\n[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("listen_here"), "{error}");

    let error = load_str(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['a:1', 'b:2']\n",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("exactly one node"), "{error}");
}

const KAFKA_POOL: &str =
    "default_pool = 'events'\n[pools.events]\nkind = 'kafka'\nnodes = ['127.0.0.1:9092']\n";

#[test]
fn kafka_pool_with_topics_and_offsets() {
    let config = load_str(&format!(
        "{KAFKA_POOL}linger_ms = 2\noffsets = {{ pool = 'main' }}\n\
         [pools.events.topics.orders]\npartitions = 3\nproducers = ['*']\nconsumers = ['default']\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['127.0.0.1:6379']\n"
    ))
    .unwrap();
    let PoolConfig::Kafka(pool) = &config.pools["events"] else {
        panic!("events is a Kafka pool: {:?}", config.pools["events"]);
    };
    assert_eq!(pool.linger_ms, Some(2));
    assert_eq!(pool.topics["orders"].partitions, 3);
    assert_eq!(pool.topics["orders"].replication_factor, 1);
    assert_eq!(pool.offsets.as_ref().unwrap().pool.as_deref(), Some("main"));
}

#[test]
fn kafka_errors_name_the_key() {
    let topic = "[pools.events.topics.t]\npartitions = 1\n";
    let error_of = |extra: &str| {
        load_str(&format!("{KAFKA_POOL}{extra}"))
            .unwrap_err()
            .to_string()
    };

    let error = error_of("");
    assert!(
        error.contains("pools.events.topics") && error.contains("at least one"),
        "{error}"
    );
    let error = error_of("[pools.events.topics.t]\npartitions = 0\n");
    assert!(
        error.contains("pools.events.topics.t.partitions"),
        "{error}"
    );
    let error = error_of("[pools.events.topics.'a b']\npartitions = 1\n");
    assert!(error.contains("not a valid Kafka topic name"), "{error}");
    let error = error_of(&format!("{topic}producers = ['app1']\n"));
    assert!(
        error.contains("pools.events.topics.t.producers") && error.contains("'default'"),
        "{error}"
    );
    let error = error_of(&format!("password = 'x'\n{topic}"));
    assert!(
        error.contains("pools.events.password") && error.contains("SASL"),
        "{error}"
    );
    let error = error_of(&format!(
        "offsets = {{ redis = 'h:1', pool = 'main' }}\n{topic}"
    ));
    assert!(
        error.contains("pools.events.offsets") && error.contains("not both"),
        "{error}"
    );
    let error = error_of(&format!("offsets = {{ pool = 'events' }}\n{topic}"));
    assert!(error.contains("not a standalone Redis pool"), "{error}");

    let error = load_str(&format!(
        "default_pool = 'events'\n[pools.events]\nkind = 'kafka'\nnodes = ['kafka://h:9092']\n{topic}"
    ))
    .unwrap_err()
    .to_string();
    assert!(error.contains("without a scheme"), "{error}");
    let error = load_str(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\nlinger_ms = 5\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("pools.main.linger_ms") && error.contains("only Kafka pools"),
        "{error}"
    );
}

#[test]
fn kafka_topic_tenants_must_reach_the_pool() {
    let base = "default_pool = 'main'\n\
                [pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n\
                [pools.events]\nkind = 'kafka'\nnodes = ['h:9092']\n\
                [pools.events.topics.t]\npartitions = 1\nproducers = ['writer']\n\
                [tenants.writer]\npassword = 'w'\n";
    assert!(load_str(&format!("{base}pool = 'events'\n")).is_ok());
    assert!(load_str(&format!("{base}pool = 'main'\npools = ['events']\n")).is_ok());
    let error = load_str(&format!("{base}pool = 'main'\n"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot reach pool 'events'"), "{error}");
}

#[test]
fn node_addresses() {
    assert_eq!(parse_node_address("redis://h:1").unwrap(), "h:1");
    assert_eq!(parse_node_address("h:6379").unwrap(), "h:6379");
    assert!(parse_node_address("h").is_err());
    assert!(parse_node_address("redis://u:p@h:1").is_err());
    assert!(parse_node_address("h:0").is_err());
    assert!(parse_node_address("unix:/r.sock").is_err());
}

#[test]
fn a_standalone_node_may_be_a_unix_socket_and_only_there() {
    let standalone = |node: &str, keys: &str| {
        load_str(&format!(
            "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{node}']\n{keys}"
        ))
    };
    let config = standalone("unix:/run/redis/redis.sock", "").unwrap();
    let Some(PoolConfig::Standalone(pool)) = config.pools.get("main") else {
        panic!("a standalone pool");
    };
    assert_eq!(pool.nodes, ["unix:/run/redis/redis.sock"]);
    let error = standalone("unix:redis.sock", "").unwrap_err().to_string();
    assert!(
        error.contains("pools.main.nodes") && error.contains("absolute path"),
        "{error}"
    );
    let error = standalone("unix:/r.sock", "tls = true\nca_file = '/ca.pem'")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("pools.main.tls") && error.contains("without TLS"),
        "{error}"
    );
    let error =
        load_str("default_pool = 'c'\n[pools.c]\nkind = 'cluster'\nnodes = ['unix:/r.sock']\n")
            .unwrap_err()
            .to_string();
    assert!(
        error.contains("pools.c.nodes") && error.contains("only a standalone pool"),
        "{error}"
    );
    let error = load_str(
        "default_pool = 'k'\n[pools.s]\nkind = 'standalone'\nnodes = ['unix:/r.sock']\n\
         [pools.k]\nkind = 'kafka'\nnodes = ['h:9092']\noffsets = { pool = 's' }\n\
         [pools.k.topics.t]\npartitions = 1\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("pools.k.offsets.pool") && error.contains("Unix domain socket"),
        "{error}"
    );
}

/// `default_pool = 'main'` and pool `main` of `kind` with `keys`: the error, as text.
fn pool_error(kind: &str, keys: &str) -> String {
    let topic = if kind == "kafka" {
        "[pools.main.topics.t]\npartitions = 1\n"
    } else {
        ""
    };
    load_str(&format!(
        "default_pool = 'main'\n[pools.main]\nkind = '{kind}'\nnodes = ['h:1']\n{keys}\n{topic}"
    ))
    .unwrap_err()
    .to_string()
}

#[test]
fn keys_of_another_kind_of_pool_name_the_pool_and_the_key() {
    let cases = [
        (
            "standalone",
            "refresh_ms = 500",
            "refresh_ms",
            "only cluster pools",
        ),
        (
            "standalone",
            "read_from = 'master'",
            "read_from",
            "only cluster pools",
        ),
        ("cluster", "linger_ms = 5", "linger_ms", "only Kafka pools"),
        (
            "cluster",
            "offsets = { pool = 'main' }",
            "offsets",
            "only Kafka pools",
        ),
        (
            "kafka",
            "connections_per_node = 2",
            "connections_per_node",
            "only Redis pools",
        ),
        (
            "kafka",
            "server_name = 'x'",
            "server_name",
            "only Redis pools",
        ),
        (
            "kafka",
            "refresh_ms = 500",
            "refresh_ms",
            "only cluster pools",
        ),
        (
            "kafka",
            "read_from = 'prefer_replica'",
            "read_from",
            "only cluster pools",
        ),
    ];
    for (kind, keys, key, problem) in cases {
        let error = pool_error(kind, keys);
        assert!(
            error.contains(&format!("`pools.main.{key}`")) && error.contains(problem),
            "{kind} with {keys}: {error}"
        );
    }
    // Every Kafka-only key, whatever its value, is refused on a Redis pool before its value is read.
    for key in kafka::KAFKA_ONLY_KEYS {
        let error = pool_error("standalone", &format!("{key} = 1"));
        assert!(
            error.contains(&format!("`pools.main.{key}`")) && error.contains("only Kafka pools"),
            "{key}: {error}"
        );
    }
}

#[test]
fn errors_inside_a_pool_table_name_the_pool_and_the_key() {
    let cases = [
        (
            "standalone",
            "nodez = ['h:2']",
            "pools.main.nodez",
            "unknown field",
        ),
        (
            "cluster",
            "refresh_ms = 'soon'",
            "pools.main.refresh_ms",
            "expected u64",
        ),
        (
            "cluster",
            "read_from = 'anywhere'",
            "pools.main.read_from",
            "prefer_replica",
        ),
        ("redis", "", "pools.main.kind", "unknown variant"),
    ];
    for (kind, keys, key, problem) in cases {
        let error = pool_error(kind, keys);
        assert!(
            error.contains(&format!("`{key}`")) && error.contains(problem),
            "{kind} with {keys}: {error}"
        );
    }
    let error = load_str("default_pool = 'main'\n[pools.main]\nnodes = ['h:1']\n")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`pools.main.kind`")
            && error.contains("\"standalone\", \"cluster\" or \"kafka\""),
        "{error}"
    );
    let error = load_str(
        "default_pool = 'main'\n[pools.main]\nkind = 'kafka'\nnodes = ['h:1']\n\
         [pools.main.topics.t]\npartitions = 'three'\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("`pools.main.topics.t.partitions`") && error.contains("expected i32"),
        "{error}"
    );
}

#[test]
fn each_kind_of_pool_reads_into_its_own_type() {
    let config = load_str(
        "default_pool = 'one'\n\
         [pools.one]\nkind = 'standalone'\nnodes = ['h:1']\nconnections_per_node = 3\n\
         [pools.ring]\nkind = 'cluster'\nnodes = ['h:2', 'h:3']\nread_from = 'prefer_replica'\n\
         [pools.events]\nkind = 'kafka'\nnodes = ['h:9092']\nlinger_ms = 4\n\
         [pools.events.topics.t]\npartitions = 1\n",
    )
    .unwrap();
    let PoolConfig::Standalone(one) = &config.pools["one"] else {
        panic!("one: {:?}", config.pools["one"]);
    };
    assert_eq!(one.connections_per_node, 3);
    let PoolConfig::Cluster(ring) = &config.pools["ring"] else {
        panic!("ring: {:?}", config.pools["ring"]);
    };
    assert_eq!(ring.redis.nodes, ["h:2", "h:3"]);
    assert_eq!(ring.read_from, ReadPolicy::PreferReplica);
    assert_eq!(ring.refresh_ms, 10_000);
    let PoolConfig::Kafka(events) = &config.pools["events"] else {
        panic!("events: {:?}", config.pools["events"]);
    };
    assert_eq!(events.linger_ms, Some(4));
    assert_eq!(config.pools["events"].kind(), PoolKind::Kafka);
    assert!(config.pools["events"].redis().is_none());
}

#[test]
fn backend_on_the_command_line_is_a_standalone_pool() {
    let overrides = CommandLineOverrides {
        listen: None,
        backend: Some("redis://127.0.0.1:6390".to_owned()),
    };
    let config = Config::load(None, &overrides).unwrap();
    assert_eq!(config.default_pool, "default");
    assert_eq!(
        config.pools["default"],
        PoolConfig::standalone("redis://127.0.0.1:6390".to_owned())
    );
}

#[test]
fn validation_hands_back_the_tenants_it_built() {
    let pool = "[pools.main]\nkind = 'standalone'\nnodes = ['h:1']\n";
    let config = load_str(&format!("default_pool = 'main'\n{pool}")).unwrap();
    assert!(config.validate_and_build_tenants().unwrap().is_none());
    let config = load_str(&format!(
        "default_pool = 'main'\n{pool}[tenants.shop]\npassword = 'p'\npool = 'main'\n"
    ))
    .unwrap();
    let tenants = config.validate_and_build_tenants().unwrap().unwrap();
    assert!(tenants.get("shop").is_some());
}

/// The TLS keys are one struct on Redis and Kafka pools: read from the pool's own table, written back as the
/// pool's own keys (the `--backend` pool goes through figment that way), and checked with the same errors.
/// IANA names and, for TLS 1.2 suites, OpenSSL's; written back with the IANA name.
#[test]
fn cipher_suites_are_read_by_either_name() {
    let config = load_str(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['127.0.0.1:6379']\n\
         [tls]\ncert_file = 'c'\nkey_file = 'k'\n\
         cipher_suites = ['TLS_AES_128_GCM_SHA256', 'ECDHE-RSA-AES256-GCM-SHA384']\n",
    )
    .unwrap();
    let tls = config.tls.unwrap();
    assert_eq!(
        tls.cipher_suites,
        Some(vec![
            CipherSuite::Tls13Aes128GcmSha256,
            CipherSuite::EcdheRsaAes256GcmSha384
        ])
    );
    let written = figment::value::Value::serialize(&tls).unwrap();
    let names: Vec<_> = written.as_dict().unwrap()["cipher_suites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "TLS_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
        ]
    );
}

#[test]
fn pool_tls_keys_are_read_written_and_checked_alike_on_redis_and_kafka_pools() {
    for kind in ["standalone", "cluster", "kafka"] {
        let pool = |keys: &str| {
            format!(
                "default_pool = 'p'\n[pools.p]\nkind = '{kind}'\nnodes = ['h:1']\n{keys}\n{}",
                topics_of(kind)
            )
        };
        let config = load_str(&pool(
            "tls = true\nca_file = 'ca.pem'\ncert_file = 'c.pem'\nkey_file = 'c.key'",
        ))
        .unwrap();
        let read = &config.pools["p"];
        let tls = match read {
            PoolConfig::Kafka(kafka) => &kafka.tls,
            redis => &redis.redis().unwrap().tls,
        };
        let files = |name: &str| Some(name.to_owned());
        assert_eq!(
            *tls,
            PoolTlsConfig {
                enabled: true,
                ca_file: files("ca.pem"),
                crl_file: None,
                cert_file: files("c.pem"),
                key_file: files("c.key"),
                min_version: None,
                cipher_suites: None,
            },
            "{kind}"
        );
        // Without ca_file the pool trusts the system's store (read when the pool is built, not here).
        let system = load_str(&pool("tls = true")).unwrap();
        let system_tls = match &system.pools["p"] {
            PoolConfig::Kafka(kafka) => &kafka.tls,
            redis => &redis.redis().unwrap().tls,
        };
        assert!(system_tls.enabled && system_tls.ca_file.is_none(), "{kind}");
        let written = figment::value::Value::serialize(read).unwrap();
        let written = written.as_dict().unwrap();
        assert_eq!(written["tls"].to_bool(), Some(true), "{kind}: {written:?}");
        assert_eq!(written["ca_file"].as_str(), Some("ca.pem"), "{kind}");

        let cases = [
            ("ca_file = 'ca.pem'", "pools.p.ca_file", "set `tls = true`"),
            (
                "crl_file = 'ca.crl'",
                "pools.p.crl_file",
                "set `tls = true`",
            ),
            (
                "min_version = '1.3'",
                "pools.p.min_version",
                "set `tls = true`",
            ),
            (
                "tls = true\nmin_version = '1.1'",
                "pools.p.min_version",
                "unknown variant",
            ),
            (
                "cipher_suites = ['TLS_AES_128_GCM_SHA256']",
                "pools.p.cipher_suites",
                "set `tls = true`",
            ),
            (
                "tls = true\ncipher_suites = ['TLS_AES_128_GCM_SHA255']",
                "pools.p.cipher_suites",
                "unknown variant",
            ),
            (
                "tls = true\nmin_version = '1.3'\ncipher_suites = ['TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256']",
                "pools.p.cipher_suites",
                "needs a TLS 1.3 suite",
            ),
            (
                "tls = true\nca_file = 'ca.pem'\nkey_file = 'c.key'",
                "pools.p.cert_file",
                "both `cert_file` and `key_file`",
            ),
            ("tls = 'yes'", "pools.p.tls", "bool"),
            (
                "tls = true\nca_file = 'ca.pem'\nca_flie = 'x'",
                "pools.p.ca_flie",
                "unknown field",
            ),
        ];
        for (keys, key, problem) in cases {
            let error = load_str(&pool(keys)).unwrap_err().to_string();
            assert!(
                error.contains(key) && error.contains(problem),
                "{kind} with {keys}: {error}"
            );
        }
    }
}

/// The topics table a pool of `kind` needs (a Kafka pool serves at least one topic), else nothing.
fn topics_of(kind: &str) -> &'static str {
    match kind {
        "kafka" => "[pools.p.topics.t]\npartitions = 1\n",
        _ => "",
    }
}
