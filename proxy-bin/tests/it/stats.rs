//! The proxy's counts: `RKPROXY STATS`, INFO's `# Proxy` section and `GET /metrics` (parsed with a real
//! Prometheus text parser), exact for the test's own proxy, and each tenant seeing only its own rows.

use redis::Value;

use crate::support::*;

async fn info_text(connection: &mut redis::aio::MultiplexedConnection, section: &str) -> String {
    let mut command = redis::cmd("INFO");
    if !section.is_empty() {
        command.arg(section);
    }
    match command.query_async::<Value>(connection).await.unwrap() {
        Value::BulkString(bytes) => String::from_utf8(bytes).unwrap(),
        Value::VerbatimString { text, .. } => text,
        other => panic!("INFO reply {other:?}"),
    }
}

fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (field, value) = line.trim_end().split_once(':')?;
        (field == name).then(|| value.to_owned())
    })
}

#[tokio::test]
async fn commands_errors_and_bytes_are_counted_exactly() {
    let proxy = start_proxy(&redis_addr()).await;
    let mut connection = client(&proxy).await;
    let key = unique("stats:exact");
    for _ in 0..7 {
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg("v")
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    // A pipeline of 20 GETs is framed from one read and sent as one batch: still 20 calls.
    let mut pipe = redis::pipe();
    for _ in 0..20 {
        pipe.cmd("GET").arg(&key);
    }
    let values: Vec<String> = pipe.query_async(&mut connection).await.unwrap();
    assert_eq!(values.len(), 20);
    // Refused by the proxy: an unknown command and a wrong arity.
    let unknown: redis::RedisResult<Value> = redis::cmd("NOSUCHCOMMAND")
        .query_async(&mut connection)
        .await;
    assert!(unknown.is_err());
    let arity: redis::RedisResult<Value> = redis::cmd("GET").query_async(&mut connection).await;
    assert!(arity.is_err());

    let commands = stats_lines(&mut connection, "commands").await;
    let set = line_with(
        &commands,
        &[("tenant", "default"), ("pool", "main"), ("command", "set")],
    )
    .unwrap_or_else(|| panic!("no set line in {commands:?}"));
    assert_eq!(number(&set, "calls"), 7);
    let set_bytes =
        format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$1\r\nv\r\n", key.len()).len() as u64;
    assert_eq!(number(&set, "bytes_in"), 7 * set_bytes);
    let get = line_with(&commands, &[("command", "get")]).unwrap();
    assert_eq!(number(&get, "calls"), 20);
    let unknown = line_with(&commands, &[("command", "unknown")]).unwrap();
    assert_eq!(number(&unknown, "calls"), 2);
    // This STATS request is counted before it is answered.
    let own = line_with(&commands, &[("command", "rkproxy")]).unwrap();
    assert_eq!(number(&own, "calls"), 1);

    let tenants = stats_lines(&mut connection, "tenants").await;
    let default = line_with(&tenants, &[("tenant", "default")]).unwrap();
    assert_eq!(number(&default, "errors_refused"), 2);
    assert_eq!(number(&default, "errors_backend"), 0);
    assert_eq!(number(&default, "connections"), 1);
    // 7 SETs and one batch entry for the 20 GETs: 27 requests timed at the backend.
    assert_eq!(number(&default, "timed"), 27);
    assert!(number(&default, "bytes_out") > 0);

    let pools = stats_lines(&mut connection, "pools").await;
    let main = line_with(&pools, &[("pool", "main")]).unwrap();
    assert_eq!(main["kind"], "standalone");
    assert_eq!(main["nodes"], redis_addr());

    let info = info_text(&mut connection, "proxy").await;
    assert!(info.starts_with("# Proxy\r\n"), "{info}");
    assert_eq!(
        info_field(&info, "rkproxy_version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        info_field(&info, "total_errors_refused").as_deref(),
        Some("2")
    );
    assert_eq!(info_field(&info, "connected_clients").as_deref(), Some("1"));
    assert!(info_field(&info, "pool_main").is_some_and(|line| line.starts_with("kind=standalone")));
    // INFO without arguments is the backend's, with the proxy's section after it.
    let all = info_text(&mut connection, "").await;
    assert!(all.contains("redis_version:"), "{all}");
    assert!(all.contains("\r\n# Proxy\r\n"), "{all}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn backend_failures_are_counted_by_kind() {
    let mut redis = OwnRedis::start(&[]);
    let proxy = start_proxy(&redis.addr()).await;
    let mut connection = client(&proxy).await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut connection)
        .await
        .unwrap();
    redis.stop();
    for _ in 0..3 {
        let failed: redis::RedisResult<Value> = redis::cmd("GET")
            .arg("k")
            .query_async(&mut connection)
            .await;
        assert!(failed.is_err());
    }
    let tenants = stats_lines(&mut connection, "tenants").await;
    let default = line_with(&tenants, &[("tenant", "default")]).unwrap();
    assert_eq!(number(&default, "errors_backend"), 3, "{tenants:?}");
    assert_eq!(number(&default, "errors_timeout"), 0);
    let nodes = stats_lines(&mut connection, "nodes").await;
    let node = line_with(&nodes, &[("node", redis.addr().as_str())]).unwrap();
    assert_eq!(node["up"], "0");
    // The SET and the three failed GETs went to that node.
    assert_eq!(number(&node, "requests"), 4, "{nodes:?}");
    assert_eq!(number(&node, "failures"), 3);
    proxy.shutdown().await;
}

const TENANTS: &str = "default_pool = 'main'
[pools.main]
kind = 'standalone'
nodes = ['{redis}']
[tenants.alpha]
password = 'alpha-pw'
pool = 'main'
key_prefix = 'alpha:'
[tenants.beta]
password = 'beta-pw'
pool = 'main'
key_prefix = 'beta:'
[tenants.boss]
password = 'boss-pw'
pool = 'main'
admin = true
";

#[tokio::test]
async fn a_tenant_sees_only_its_own_stats() {
    let proxy = start_proxy_toml(&TENANTS.replace("{redis}", &redis_addr())).await;
    let mut alpha = as_tenant(&proxy, "alpha", "alpha-pw").await;
    let mut beta = as_tenant(&proxy, "beta", "beta-pw").await;
    let mut boss = as_tenant(&proxy, "boss", "boss-pw").await;
    for _ in 0..3 {
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("1")
            .query_async(&mut alpha)
            .await
            .unwrap();
    }
    for _ in 0..5 {
        let _: Option<String> = redis::cmd("GET")
            .arg("k")
            .query_async(&mut beta)
            .await
            .unwrap();
    }
    // A command refused by the tenant's rights.
    let refused: redis::RedisResult<Value> = redis::cmd("FLUSHALL").query_async(&mut beta).await;
    assert!(refused.is_err());

    let alpha_view = stats_lines(&mut alpha, "commands").await;
    let alpha_calls: u64 = alpha_view
        .iter()
        .map(|line| number(&fields(line), "calls"))
        .sum();
    assert!(
        alpha_view
            .iter()
            .all(|line| fields(line)["tenant"] == "alpha"),
        "{alpha_view:?}"
    );
    let set = line_with(&alpha_view, &[("command", "set")]).unwrap();
    assert_eq!(number(&set, "calls"), 3);
    let beta_view = stats_lines(&mut beta, "tenants").await;
    assert_eq!(beta_view.len(), 1, "{beta_view:?}");
    assert_eq!(number(&fields(&beta_view[0]), "errors_refused"), 1);
    assert_eq!(number(&fields(&beta_view[0]), "connections"), 1);

    let boss_view = stats_lines(&mut boss, "commands").await;
    let beta_get = line_with(&boss_view, &[("tenant", "beta"), ("command", "get")]).unwrap();
    assert_eq!(number(&beta_get, "calls"), 5);
    assert!(line_with(&boss_view, &[("tenant", "alpha"), ("command", "set")]).is_some());

    let nodes: redis::RedisResult<Vec<String>> = redis::cmd("RKPROXY")
        .arg("STATS")
        .arg("NODES")
        .query_async(&mut alpha)
        .await;
    assert!(nodes.is_err(), "a tenant does not see the shared nodes");
    let info = info_text(&mut alpha, "proxy").await;
    assert_eq!(
        info_field(&info, "connected_clients").as_deref(),
        Some("1"),
        "{info}"
    );
    let alpha_total: u64 = info_field(&info, "total_commands")
        .unwrap()
        .parse()
        .unwrap();
    // alpha's own totals: what its commands view counted, then RKPROXY STATS NODES and this INFO.
    assert_eq!(alpha_total, alpha_calls + 2, "{info}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_text_format() {
    let toml = format!(
        "metrics_listen = '127.0.0.1:0'\ndefault_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n",
        redis_addr()
    );
    let proxy = start_proxy_toml(&toml).await;
    let metrics = proxy.metrics_addr().expect("metrics are served");
    let mut connection = client(&proxy).await;
    let key = unique("stats:metrics");
    for _ in 0..4 {
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg("v")
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    let unknown: redis::RedisResult<Value> = redis::cmd("NOSUCHCOMMAND")
        .query_async(&mut connection)
        .await;
    assert!(unknown.is_err());

    let (scrape, body) = scrape_metrics(&proxy).await;
    let main = [("pool", "main"), ("tenant", "default")];
    let sets = sample(
        &scrape,
        "rkproxy_commands_total",
        &[main[0], main[1], ("command", "set")],
    )
    .unwrap_or_else(|| panic!("no set sample in\n{body}"));
    assert!(
        matches!(sets.value, prometheus_parse::Value::Counter(n) if n == 4.0),
        "{body}"
    );
    let refused = sample(
        &scrape,
        "rkproxy_errors_total",
        &[main[0], main[1], ("kind", "refused")],
    )
    .unwrap();
    assert!(matches!(refused.value, prometheus_parse::Value::Counter(n) if n == 1.0));
    let duration = sample(&scrape, "rkproxy_command_duration_seconds", &main).unwrap();
    match &duration.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let all = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
            assert_eq!(all.count, 4.0, "{body}");
            assert!(buckets.len() > 10);
        }
        other => panic!("duration is {other:?}"),
    }
    let bytes_in = sample(
        &scrape,
        "rkproxy_bytes_total",
        &[("tenant", "default"), ("direction", "in")],
    )
    .unwrap();
    assert!(matches!(bytes_in.value, prometheus_parse::Value::Counter(n) if n > 0.0));
    let clients = sample(
        &scrape,
        "rkproxy_connected_clients",
        &[("tenant", "default")],
    )
    .unwrap();
    assert!(matches!(clients.value, prometheus_parse::Value::Gauge(n) if n == 1.0));
    let up = sample(
        &scrape,
        "rkproxy_backend_up",
        &[("pool", "main"), ("node", redis_addr().as_str())],
    )
    .unwrap();
    assert!(matches!(up.value, prometheus_parse::Value::Gauge(n) if n == 1.0));

    // Every series the shipped Grafana dashboard queries is one the proxy serves.
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/grafana-dashboard.json"),
    )
    .unwrap();
    let served: Vec<&String> = scrape.docs.keys().collect();
    for (start, _) in dashboard.match_indices("rkproxy_") {
        let name: String = dashboard[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let family = name.strip_suffix("_bucket").unwrap_or(&name);
        // Served only with tls_listen (this proxy has none), the second once a TLS client connected; tls.rs
        // checks them.
        let needs_tls = name == "rkproxy_tls_certificate_expiry_timestamp_seconds"
            || name == "rkproxy_tls_cipher_suites_total";
        assert!(
            scrape.docs.contains_key(family) || name == "rkproxy_" || needs_tls,
            "the dashboard's {name} is not served (served: {served:?})"
        );
    }

    let (status, _) = http_get(metrics, "/other").await;
    assert_eq!(status, "HTTP/1.0 404 Not Found");
    proxy.shutdown().await;
}

#[tokio::test]
async fn cluster_requests_are_counted_timed_and_logged_with_their_node() {
    let nodes = cluster_nodes();
    let proxy = start_cluster_proxy(&nodes, "[slowlog]\nslower_than_us = 0\nmax_len = 1000").await;
    let mut connection = client(&proxy).await;
    let keys: Vec<String> = (0..6)
        .map(|i| unique(&format!("stats:cluster{i}")))
        .collect();
    // Keys in several slots: routed one by one, batched per master in a pipeline, split and merged by MGET.
    for key in &keys {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("v")
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("GET").arg(key);
    }
    let values: Vec<String> = pipe.query_async(&mut connection).await.unwrap();
    assert_eq!(values.len(), keys.len());
    let merged: Vec<String> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(merged.len(), keys.len());

    let commands = stats_lines(&mut connection, "commands").await;
    let calls = |command: &str| {
        line_with(&commands, &[("pool", "c"), ("command", command)])
            .map_or(0, |line| number(&line, "calls"))
    };
    assert_eq!(calls("set"), 6, "{commands:?}");
    assert_eq!(calls("get"), 6);
    assert_eq!(calls("mget"), 1);
    let tenants = stats_lines(&mut connection, "tenants").await;
    let default = line_with(&tenants, &[("tenant", "default")]).unwrap();
    assert_eq!(number(&default, "timed"), 6 + 6 + 1, "{tenants:?}");

    let entries: Vec<Vec<Value>> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg("-1")
        .query_async(&mut connection)
        .await
        .unwrap();
    let set_nodes: Vec<String> = entries
        .iter()
        .filter(|entry| matches!(&entry[3], Value::Array(args) if args.first() == Some(&Value::BulkString(b"SET".to_vec()))))
        .map(|entry| match &entry[7] {
            Value::BulkString(node) => String::from_utf8_lossy(node).into_owned(),
            other => panic!("node is {other:?}"),
        })
        .collect();
    assert_eq!(set_nodes.len(), 6, "{entries:?}");
    // Every request reached a master: per node, the counts add up to what was sent (MGET's parts count per node).
    let node_lines = stats_lines(&mut connection, "nodes").await;
    let answered: u64 = node_lines
        .iter()
        .map(|line| number(&fields(line), "requests"))
        .sum();
    let slots: std::collections::BTreeSet<u16> = keys
        .iter()
        .map(|key| cluster_router::key_slot(key.as_bytes()))
        .collect();
    // MGET is split per slot: one sub-command per slot.
    assert_eq!(answered, 6 + 6 + slots.len() as u64, "{node_lines:?}");
    for node in set_nodes {
        assert!(nodes.contains(&node), "{node} is not a cluster node");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn kafka_pushes_and_pops_are_counted_per_topic() {
    let topic = unique_name("stats");
    let proxy = kafka_proxy("", &topic_toml(&topic, 1, &["default"], &["default"])).await;
    let mut connection = client(&proxy).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    wait_connected(&mut connection, &topic).await;
    let mut pushed_bytes = 0;
    for value in ["one", "two", "three"] {
        kpush(&mut connection, &topic, value).await;
        pushed_bytes += redis::cmd("KPUSH")
            .arg(&topic)
            .arg(value)
            .get_packed_command()
            .len();
    }
    let (mut popped, mut pops) = (0, 0);
    while popped < 3 {
        pops += 1;
        if kpop(&mut connection, &topic).await.is_some() {
            popped += 1;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "records never came back"
        );
    }
    let lines = stats_lines(&mut connection, "kafka").await;
    let line = line_with(&lines, &[("topic", topic.as_str())])
        .unwrap_or_else(|| panic!("no line for {topic} in {lines:?}"));
    assert_eq!(line["pool"], "events");
    assert_eq!(line["tenant"], "default");
    assert_eq!(number(&line, "kpush"), 3);
    assert_eq!(number(&line, "kpush_bytes"), pushed_bytes as u64);
    assert_eq!(number(&line, "kpop"), pops, "{line:?}");
    assert!(number(&line, "kpop_bytes") > 0, "{line:?}");
    proxy.shutdown().await;
}
