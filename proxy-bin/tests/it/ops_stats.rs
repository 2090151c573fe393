//! Operations counts added after the first stats: the backend round trip apart from the time in the proxy,
//! per-command times, big and hot keys, the proxy's own client list (a tenant's own sessions only), big-lane
//! series, requests streamed on the lane, and Kafka consumer lag. Each test runs its own proxy (and its own
//! Redis where it blocks the server), so the counts it checks are its own.

use crate::support::*;

/// A script that keeps the server busy for at least `ms` milliseconds (by the server's own clock).
fn busy_script(ms: u64) -> String {
    format!(
        "local t = redis.call('TIME') local start = t[1] * 1000000 + t[2] \
         repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= {} return 1",
        ms * 1000
    )
}

fn histogram_of(
    scrape: &prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
    body: &str,
) -> Vec<prometheus_parse::HistogramCount> {
    match sample(scrape, metric, labels).map(|s| &s.value) {
        Some(prometheus_parse::Value::Histogram(buckets)) => buckets.clone(),
        other => panic!("{metric} {labels:?} is {other:?} in\n{body}"),
    }
}

fn histogram_total(buckets: &[prometheus_parse::HistogramCount]) -> f64 {
    buckets
        .iter()
        .find(|b| b.less_than.is_infinite())
        .map_or(0.0, |b| b.count)
}

/// The count of observations at most `bound` seconds.
fn histogram_at(buckets: &[prometheus_parse::HistogramCount], bound: f64) -> f64 {
    buckets
        .iter()
        .find(|b| (b.less_than - bound).abs() < 1e-9)
        .map_or(f64::NAN, |b| b.count)
}

#[tokio::test]
async fn the_backend_round_trip_is_timed_per_node_apart_from_the_time_in_the_proxy() {
    let redis = OwnRedis::start(&[]);
    let node = redis.addr();
    let toml = format!(
        "metrics_listen = '127.0.0.1:0'\ndefault_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{node}']\n"
    );
    let proxy = start_proxy_toml(&toml).await;
    let mut connection = client(&proxy).await;
    let key = unique("ops:backend-time");
    // One request that spends at least 150 ms at the backend, five quick ones.
    let busy: i64 = redis::cmd("EVAL")
        .arg(busy_script(150))
        .arg(0)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(busy, 1);
    for _ in 0..5 {
        let _: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .unwrap();
    }

    let tenants = stats_lines(&mut connection, "tenants").await;
    let default = line_with(&tenants, &[("tenant", "default")]).unwrap();
    assert_eq!(number(&default, "timed"), 6, "{tenants:?}");
    assert_eq!(number(&default, "backend_timed"), 6, "{tenants:?}");
    // The time in the proxy holds the backend's and the proxy's own share.
    assert!(
        number(&default, "mean_us") >= number(&default, "backend_mean_us"),
        "{tenants:?}"
    );
    assert!(number(&default, "p99_le_us") >= 250_000, "{tenants:?}");

    let nodes = stats_lines(&mut connection, "nodes").await;
    let line = line_with(&nodes, &[("pool", "main"), ("node", node.as_str())])
        .unwrap_or_else(|| panic!("no line for {node} in {nodes:?}"));
    assert_eq!(number(&line, "requests"), 6, "{nodes:?}");
    assert_eq!(number(&line, "backend_timed"), 6, "{nodes:?}");
    // The slowest sixth is the script: the p99 bucket is at least the 250 ms one.
    assert!(number(&line, "backend_p99_le_us") >= 250_000, "{nodes:?}");
    assert!(number(&line, "backend_mean_us") >= 150_000 / 6, "{nodes:?}");

    let (scrape, body) = scrape_metrics(&proxy).await;
    let backend = histogram_of(
        &scrape,
        "rkproxy_backend_duration_seconds",
        &[("pool", "main"), ("node", node.as_str())],
        &body,
    );
    assert_eq!(histogram_total(&backend), 6.0, "{body}");
    // Five quick GETs at most 100 ms each on any machine that runs this; the script is above.
    assert!(histogram_at(&backend, 0.1) <= 5.0, "{body}");
    let in_proxy = histogram_of(
        &scrape,
        "rkproxy_command_duration_seconds",
        &[("pool", "main"), ("tenant", "default")],
        &body,
    );
    // RKPROXY STATS NODES is answered by a task (it probes the nodes): timed too.
    assert_eq!(histogram_total(&in_proxy), 7.0, "{body}");
    assert!(histogram_at(&in_proxy, 0.1) <= 6.0, "{body}");
    let sum = |name: &str| {
        scrape
            .samples
            .iter()
            .find_map(|s| match &s.value {
                prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Counter(v)
                    if s.metric == name =>
                {
                    Some(*v)
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {name} in\n{body}"))
    };
    let backend_sum = sum("rkproxy_backend_duration_seconds_sum");
    assert!(backend_sum >= 0.15, "{body}");
    assert!(
        sum("rkproxy_command_duration_seconds_sum") >= backend_sum,
        "{body}"
    );
    proxy.shutdown().await;
}

/// Two prefixed tenants and an admin on the shared Redis, with a 1 KiB big-request threshold; the prefixes are
/// unique to the test, so that a prefix shown anywhere is found.
fn tenants_toml(alpha_prefix: &str, beta_prefix: &str) -> String {
    format!(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n\
         [big_requests]\nthreshold_bytes = 1024\n\
         [tenants.alpha]\npassword = 'alpha-pw'\npool = 'main'\nkey_prefix = '{alpha_prefix}'\n\
         [tenants.beta]\npassword = 'beta-pw'\npool = 'main'\nkey_prefix = '{beta_prefix}'\n\
         [tenants.boss]\npassword = 'boss-pw'\npool = 'main'\nadmin = true\n",
        redis_addr()
    )
}

/// A raw connection to the proxy at `addr` logged in as tenant `user` of [`tenants_toml`] (`<user>-pw`).
fn login(addr: &str, user: &str) -> Resp {
    let mut connection = Resp::connect(addr);
    let password = format!("{user}-pw");
    assert_eq!(connection.command(&["AUTH", user, &password]), "+OK\r\n");
    connection
}

async fn key_lines(
    connection: &mut redis::aio::MultiplexedConnection,
    kind: &str,
    count: Option<u32>,
) -> Vec<String> {
    let mut command = redis::cmd("RKPROXY");
    command.arg(kind);
    if let Some(count) = count {
        command.arg(count);
    }
    command.query_async(connection).await.unwrap()
}

/// `times` GETs of `key`, pipelined.
async fn get_times(connection: &mut redis::aio::MultiplexedConnection, key: &str, times: usize) {
    let mut pipe = redis::pipe();
    for _ in 0..times {
        pipe.cmd("GET").arg(key);
    }
    let replies: Vec<Option<String>> = pipe.query_async(connection).await.unwrap();
    assert_eq!(replies.len(), times);
}

#[tokio::test]
async fn big_keys_are_listed_per_tenant_by_count_and_size_without_prefixes() {
    let (alpha_prefix, beta_prefix) = (unique("bk-alpha") + ":", unique("bk-beta") + ":");
    let proxy = start_proxy_toml(&tenants_toml(&alpha_prefix, &beta_prefix)).await;
    let mut alpha = as_tenant(&proxy, "alpha", "alpha-pw").await;
    let mut beta = as_tenant(&proxy, "beta", "beta-pw").await;
    let mut boss = as_tenant(&proxy, "boss", "boss-pw").await;
    // Big requests: two SETs of 2000 bytes and one of 5000 for one key, one of 3000 for another.
    for (key, size) in [
        ("often", 2000),
        ("often", 5000),
        ("often", 2000),
        ("once", 3000),
    ] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(vec![b'v'; size])
            .query_async(&mut alpha)
            .await
            .unwrap();
    }
    // A big reply: a value the proxy never saw written, read by its tenant.
    let mut direct = direct(&redis_addr(), 0).await;
    let _: () = redis::cmd("SET")
        .arg(format!("{beta_prefix}reply"))
        .arg(vec![b'r'; 4000])
        .query_async(&mut direct)
        .await
        .unwrap();
    let value: Vec<u8> = redis::cmd("GET")
        .arg("reply")
        .query_async(&mut beta)
        .await
        .unwrap();
    assert_eq!(value.len(), 4000);
    // Small requests are not big keys.
    let _: () = redis::cmd("SET")
        .arg("small")
        .arg("v")
        .query_async(&mut beta)
        .await
        .unwrap();

    let mine = key_lines(&mut alpha, "BIGKEYS", None).await;
    assert_eq!(mine.len(), 2, "{mine:?}");
    let often = line_with(&mine, &[("key", "often")]).unwrap();
    assert_eq!(often["tenant"], "alpha");
    assert_eq!(often["command"], "set");
    assert_eq!(often["side"], "request");
    assert_eq!(number(&often, "count"), 3);
    assert!(number(&often, "max_bytes") >= 5000, "{mine:?}");
    // By count first: the key seen three times leads.
    assert!(mine[0].contains("key=often"), "{mine:?}");
    assert_eq!(key_lines(&mut alpha, "BIGKEYS", Some(1)).await.len(), 1);

    let theirs = key_lines(&mut beta, "BIGKEYS", None).await;
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    let reply = line_with(&theirs, &[("key", "reply")]).unwrap();
    assert_eq!(
        (reply["side"].as_str(), reply["command"].as_str()),
        ("reply", "get")
    );
    assert!(number(&reply, "max_bytes") >= 4000);

    let all = key_lines(&mut boss, "BIGKEYS", None).await;
    assert_eq!(all.len(), 3, "{all:?}");
    for line in all.iter().chain(&mine).chain(&theirs) {
        assert!(
            !line.contains(&alpha_prefix) && !line.contains(&beta_prefix),
            "a prefix is shown: {line}"
        );
    }
    let _: () = redis::cmd("DEL")
        .arg(format!("{beta_prefix}reply"))
        .arg(format!("{alpha_prefix}often"))
        .arg(format!("{alpha_prefix}once"))
        .arg(format!("{beta_prefix}small"))
        .query_async(&mut direct)
        .await
        .unwrap();
    proxy.shutdown().await;
}

#[tokio::test]
async fn hot_keys_are_estimated_per_tenant_and_served_as_metrics() {
    let (alpha_prefix, beta_prefix) = (unique("hk-alpha") + ":", unique("hk-beta") + ":");
    let toml = format!(
        "metrics_listen = '127.0.0.1:0'\n{}",
        tenants_toml(&alpha_prefix, &beta_prefix)
    );
    let proxy = start_proxy_toml(&toml).await;
    let mut alpha = as_tenant(&proxy, "alpha", "alpha-pw").await;
    let mut beta = as_tenant(&proxy, "beta", "beta-pw").await;
    let mut boss = as_tenant(&proxy, "boss", "boss-pw").await;
    // One keyed request in 128 is sampled: 2560 GETs of one key are 20 samples, 128 of another one.
    get_times(&mut alpha, "hot", 2560).await;
    for cold in 0..5 {
        get_times(&mut alpha, &format!("cold{cold}"), 128).await;
    }
    get_times(&mut beta, "warm", 1280).await;

    let mine = key_lines(&mut alpha, "HOTKEYS", Some(3)).await;
    assert_eq!(mine.len(), 3, "{mine:?}");
    let first = fields(&mine[0]);
    assert_eq!(
        (first["tenant"].as_str(), first["key"].as_str()),
        ("alpha", "hot")
    );
    // An estimate: never below what was sampled, times the sampling rate.
    assert!(number(&first, "requests") >= 2560, "{mine:?}");
    assert!(mine.iter().all(|line| fields(line)["tenant"] == "alpha"));

    let theirs = key_lines(&mut beta, "HOTKEYS", None).await;
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert!(theirs[0].starts_with("tenant=beta pool=main key=warm requests="));

    let all = key_lines(&mut boss, "HOTKEYS", Some(1)).await;
    assert_eq!(all.len(), 2, "{all:?}");
    let refused: redis::RedisResult<Vec<String>> = redis::cmd("RKPROXY")
        .arg("HOTKEYS")
        .arg("0")
        .query_async(&mut boss)
        .await;
    assert!(refused.is_err());

    let (scrape, body) = scrape_metrics(&proxy).await;
    let hot = sample(
        &scrape,
        "rkproxy_hot_key_requests",
        &[("tenant", "alpha"), ("pool", "main"), ("key", "hot")],
    )
    .unwrap_or_else(|| panic!("no hot key series in\n{body}"));
    assert!(matches!(hot.value, prometheus_parse::Value::Gauge(n) if n >= 2560.0));
    assert!(!body.contains(&alpha_prefix) && !body.contains(&beta_prefix));
    proxy.shutdown().await;
}

/// The integer of a RESP reply (`:n\r\n`).
fn resp_integer(reply: &str) -> i64 {
    reply
        .strip_prefix(':')
        .and_then(|n| n.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("not an integer reply: {reply:?}"))
}

/// CLIENT LIST's lines (the bulk string's text), as `key=value` maps.
fn client_lines(reply: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let (_, text) = reply.split_once("\r\n").unwrap_or(("", ""));
    text.lines()
        .filter(|line| line.starts_with("id="))
        .map(fields)
        .collect()
}

#[tokio::test]
async fn client_list_shows_every_session_and_client_kill_closes_them() {
    let proxy = start_proxy(&redis_addr()).await;
    let addr = proxy.local_addr().to_string();
    let key = unique("ops:clients");
    blocking(move || {
        let mut admin = Resp::connect(&addr);
        let mut named = Resp::connect(&addr);
        let mut other = Resp::connect(&addr);
        assert_eq!(named.command(&["CLIENT", "SETNAME", "worker-7"]), "+OK\r\n");
        named.command(&["SET", &key, "v"]);
        named.command(&["GET", &key]);
        other.command(&["PING"]);
        let named_id = resp_integer(&named.command(&["CLIENT", "ID"]));
        let other_id = resp_integer(&other.command(&["CLIENT", "ID"]));

        let listed = client_lines(&admin.command(&["CLIENT", "LIST"]));
        assert_eq!(listed.len(), 3, "{listed:?}");
        let named_line = listed
            .iter()
            .find(|line| line["id"] == named_id.to_string())
            .unwrap_or_else(|| panic!("{named_id} not in {listed:?}"));
        assert_eq!(named_line["name"], "worker-7");
        assert_eq!(named_line["cmd"], "client|id");
        assert_eq!(named_line["user"], "default");
        assert_eq!(named_line["pool"], "main");
        assert_eq!(named_line["pending"], "0");
        assert!(named_line["addr"].starts_with("127.0.0.1:"));
        let ids: Vec<u64> = listed
            .iter()
            .map(|line| line["id"].parse().unwrap())
            .collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
        let only = client_lines(&admin.command(&["CLIENT", "LIST", "ID", &other_id.to_string()]));
        assert_eq!(only.len(), 1);
        assert_eq!(only[0]["cmd"], "client|id");

        // The filter form: the number closed; the client's connection ends.
        let killed = admin.command(&["CLIENT", "KILL", "ID", &named_id.to_string()]);
        assert_eq!(resp_integer(&killed), 1);
        assert_eq!(named.until_closed(), "");
        // The old form, by address.
        let other_addr = listed
            .iter()
            .find(|line| line["id"] == other_id.to_string())
            .map(|line| line["addr"].clone())
            .unwrap();
        assert_eq!(admin.command(&["CLIENT", "KILL", &other_addr]), "+OK\r\n");
        assert_eq!(other.until_closed(), "");
        let none = admin.command(&["CLIENT", "KILL", "127.0.0.1:1"]);
        assert!(none.starts_with("-ERR No such client"), "{none}");
        assert_eq!(
            resp_integer(&admin.command(&["CLIENT", "KILL", "ADDR", "127.0.0.1:1"])),
            0
        );
        // SKIPME yes is the default: the caller survives killing everyone.
        assert_eq!(
            resp_integer(&admin.command(&["CLIENT", "KILL", "TYPE", "normal"])),
            0
        );
        let left = client_lines(&admin.command(&["CLIENT", "LIST"]));
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0]["cmd"], "client|list");
        let bad = admin.command(&["CLIENT", "KILL", "ID", "0"]);
        assert!(
            bad.starts_with("-ERR client-id should be greater than 0"),
            "{bad}"
        );
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_admin_lists_and_kills_a_tenants_sessions_by_user() {
    let (alpha_prefix, beta_prefix) = (unique("cl-alpha") + ":", unique("cl-beta") + ":");
    let proxy = start_proxy_toml(&tenants_toml(&alpha_prefix, &beta_prefix)).await;
    let addr = proxy.local_addr().to_string();
    blocking(move || {
        let (mut alpha_one, mut alpha_two) = (login(&addr, "alpha"), login(&addr, "alpha"));
        let mut beta = login(&addr, "beta");
        let mut boss = login(&addr, "boss");

        let listed = client_lines(&boss.command(&["CLIENT", "LIST"]));
        let users: Vec<&str> = listed.iter().map(|line| line["user"].as_str()).collect();
        assert_eq!(
            users.iter().filter(|u| **u == "alpha").count(),
            2,
            "{listed:?}"
        );
        assert_eq!(
            users.iter().filter(|u| **u == "beta").count(),
            1,
            "{listed:?}"
        );
        assert_eq!(
            resp_integer(&boss.command(&["CLIENT", "KILL", "USER", "alpha"])),
            2
        );
        assert_eq!(alpha_one.until_closed(), "");
        assert_eq!(alpha_two.until_closed(), "");
        assert_eq!(beta.command(&["PING"]), "+PONG\r\n");
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_tenant_lists_and_kills_only_its_own_sessions() {
    let (alpha_prefix, beta_prefix) = (unique("own-alpha") + ":", unique("own-beta") + ":");
    let proxy = start_proxy_toml(&tenants_toml(&alpha_prefix, &beta_prefix)).await;
    let addr = proxy.local_addr().to_string();
    blocking(move || {
        let (mut alpha_one, mut alpha_two) = (login(&addr, "alpha"), login(&addr, "alpha"));
        let mut beta = login(&addr, "beta");
        let mut boss = login(&addr, "boss");
        assert_eq!(
            beta.command(&["CLIENT", "SETNAME", "beta-worker"]),
            "+OK\r\n"
        );
        let beta_id = resp_integer(&beta.command(&["CLIENT", "ID"]));
        let alpha_one_id = resp_integer(&alpha_one.command(&["CLIENT", "ID"]));
        let everyone = client_lines(&boss.command(&["CLIENT", "LIST"]));
        let beta_addr = everyone
            .iter()
            .find(|line| line["id"] == beta_id.to_string())
            .map(|line| line["addr"].clone())
            .unwrap_or_else(|| panic!("{beta_id} not in {everyone:?}"));

        // Each tenant lists its own connections only.
        let listed = alpha_one.command(&["CLIENT", "LIST"]);
        let mine = client_lines(&listed);
        assert_eq!(mine.len(), 2, "{listed}");
        assert!(mine.iter().all(|line| line["user"] == "alpha"), "{listed}");
        assert!(
            !listed.contains("beta") && !listed.contains(&beta_addr),
            "{listed}"
        );
        let by_id =
            client_lines(&alpha_one.command(&["CLIENT", "LIST", "ID", &beta_id.to_string()]));
        assert!(by_id.is_empty(), "{by_id:?}");
        let theirs = client_lines(&beta.command(&["CLIENT", "LIST"]));
        assert_eq!(theirs.len(), 1, "{theirs:?}");
        assert_eq!(theirs[0]["name"], "beta-worker");

        // Another tenant's connection cannot be killed, by any filter.
        assert_eq!(
            resp_integer(&alpha_one.command(&["CLIENT", "KILL", "ID", &beta_id.to_string()])),
            0
        );
        assert_eq!(
            resp_integer(&alpha_one.command(&["CLIENT", "KILL", "USER", "beta"])),
            0
        );
        assert_eq!(
            resp_integer(&alpha_one.command(&["CLIENT", "KILL", "ADDR", &beta_addr])),
            0
        );
        let old_form = alpha_one.command(&["CLIENT", "KILL", &beta_addr]);
        assert!(old_form.starts_with("-ERR No such client"), "{old_form}");
        // Killing every normal client kills the tenant's own other connection, and only it.
        assert_eq!(
            resp_integer(&alpha_one.command(&["CLIENT", "KILL", "TYPE", "normal"])),
            1
        );
        assert_eq!(alpha_two.until_closed(), "");
        assert_eq!(beta.command(&["PING"]), "+PONG\r\n");
        assert_eq!(boss.command(&["PING"]), "+PONG\r\n");
        // And the other way round.
        assert_eq!(
            resp_integer(&beta.command(&["CLIENT", "KILL", "ID", &alpha_one_id.to_string()])),
            0
        );
        assert_eq!(alpha_one.command(&["PING"]), "+PONG\r\n");
    })
    .await;
    proxy.shutdown().await;
}

/// The `key=value` lines of a raw RKPROXY STATS reply that start with `start`.
fn raw_stats_lines(reply: &str, start: &str) -> Vec<String> {
    reply
        .lines()
        .filter(|line| line.starts_with(start))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn big_lane_requests_and_busy_refusals_are_counted_per_pool_tenant_and_node() {
    let redis = OwnRedis::start(&[]);
    let node = redis.addr();
    // One worker, one lane connection and no queue: a second big request while the first is at the (paused)
    // backend is refused at once.
    let toml = format!(
        "metrics_listen = '127.0.0.1:0'\nworker_threads = 1\ndefault_pool = 'main'\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['{node}']\n\
         [big_requests]\nthreshold_bytes = 1024\nconnections_per_node = 1\nmax_queued = 0\n"
    );
    let proxy = start_proxy_toml(&toml).await;
    let addr = proxy.local_addr().to_string();
    let key = unique("ops:lane");
    let (lanes, redis) = blocking(move || {
        let value = "v".repeat(2000);
        let mut admin = Resp::connect(&addr);
        let mut first = Resp::connect(&addr);
        let mut second = Resp::connect(&addr);
        assert_eq!(first.command(&["SET", &key, &value]), "+OK\r\n");
        redis.pause();
        first.send(&["SET", &key, &value]);
        // Wait until the proxy has handed the request to the lane (the pool's lane count says so).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let reply = admin.command(&["RKPROXY", "STATS", "LANES"]);
            let pool = raw_stats_lines(&reply, "pool=main lane_requests=");
            if pool
                .first()
                .is_some_and(|line| fields(line)["lane_requests"] == "2")
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{reply}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let refused = second.command(&["SET", &key, &value]);
        assert!(
            refused.starts_with("-ERR big request lane of") && refused.contains("is busy"),
            "{refused}"
        );
        redis.resume();
        assert_eq!(first.reply(), "+OK\r\n");
        (admin.command(&["RKPROXY", "STATS", "LANES"]), redis)
    })
    .await;
    let pool = fields(&raw_stats_lines(&lanes, "pool=main lane_requests=")[0]);
    assert_eq!(
        (
            number(&pool, "lane_requests"),
            number(&pool, "lane_queued"),
            number(&pool, "lane_busy")
        ),
        (3, 0, 1),
        "{lanes}"
    );
    let tenant = fields(&raw_stats_lines(&lanes, "pool=main tenant=default")[0]);
    assert_eq!(number(&tenant, "lane_requests"), 3, "{lanes}");
    assert_eq!(number(&tenant, "lane_busy"), 1, "{lanes}");
    let by_node = fields(&raw_stats_lines(&lanes, &format!("pool=main node={node}"))[0]);
    assert_eq!(number(&by_node, "lane_requests"), 3, "{lanes}");
    assert_eq!(number(&by_node, "lane_busy"), 1, "{lanes}");

    let (scrape, body) = scrape_metrics(&proxy).await;
    let busy = sample(&scrape, "rkproxy_big_lane_busy_total", &[("pool", "main")])
        .unwrap_or_else(|| panic!("no busy series in\n{body}"));
    assert!(matches!(busy.value, prometheus_parse::Value::Counter(n) if n == 1.0));
    let tenant = sample(
        &scrape,
        "rkproxy_big_lane_tenant_requests_total",
        &[("pool", "main"), ("tenant", "default")],
    )
    .unwrap();
    assert!(matches!(tenant.value, prometheus_parse::Value::Counter(n) if n == 3.0));
    let node_busy = sample(
        &scrape,
        "rkproxy_big_lane_node_busy_total",
        &[("pool", "main"), ("node", node.as_str())],
    )
    .unwrap_or_else(|| panic!("no node busy series in\n{body}"));
    assert!(matches!(node_busy.value, prometheus_parse::Value::Counter(n) if n == 1.0));
    drop(redis);
    proxy.shutdown().await;
}

#[tokio::test]
async fn kafka_consumer_lag_is_read_per_group_and_partition() {
    let topic = unique_name("lag");
    let proxy = kafka_proxy(
        "metrics_listen = '127.0.0.1:0'",
        &topic_toml(&topic, 1, &["default"], &["default"]),
    )
    .await;
    let mut connection = client(&proxy).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    wait_connected(&mut connection, &topic).await;
    for value in ["one", "two", "three", "four", "five"] {
        kpush(&mut connection, &topic, value).await;
    }
    let mut popped = 0;
    while popped < 2 {
        popped += usize::from(kpop(&mut connection, &topic).await.is_some());
        assert!(
            std::time::Instant::now() < deadline,
            "records never came back"
        );
    }
    let lines = stats_lines(&mut connection, "kafka").await;
    let lag = line_with(&lines, &[("topic", topic.as_str()), ("group", "default")])
        .unwrap_or_else(|| panic!("no lag line for {topic} in {lines:?}"));
    assert_eq!(lag["partition"], "0");
    assert_eq!(number(&lag, "high_watermark"), 5, "{lines:?}");
    // The cursor stands past the block this proxy leased (prefetch); what it leased and did not serve counts
    // as lag, so the lag is the 3 records no client got.
    let next_offset = number(&lag, "next_offset");
    assert!((2..=5).contains(&next_offset), "{lines:?}");
    assert_eq!(number(&lag, "lag"), 3, "{lines:?}");

    let (scrape, body) = scrape_metrics(&proxy).await;
    let gauge = sample(
        &scrape,
        "rkproxy_kafka_consumer_lag",
        &[
            ("pool", "events"),
            ("topic", topic.as_str()),
            ("partition", "0"),
            ("group", "default"),
        ],
    )
    .unwrap_or_else(|| panic!("no lag series in\n{body}"));
    assert!(
        matches!(gauge.value, prometheus_parse::Value::Gauge(n) if n == 3.0),
        "{body}"
    );
    proxy.shutdown().await;
}

/// One raw SLOWLOG GET entry's arguments and node (Redis's six fields, then the tenant and the node).
fn slow_entries(reply: redis::Value) -> Vec<(Vec<String>, String)> {
    let text = |value: &redis::Value| match value {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => format!("{other:?}"),
    };
    let redis::Value::Array(entries) = &reply else {
        panic!("SLOWLOG GET gave {reply:?}");
    };
    entries
        .iter()
        .map(|entry| match entry {
            redis::Value::Array(fields) if fields.len() == 8 => {
                let args = match &fields[3] {
                    redis::Value::Array(args) => args.iter().map(text).collect(),
                    other => panic!("args are {other:?}"),
                };
                (args, text(&fields[7]))
            }
            other => panic!("entry {other:?}"),
        })
        .collect()
}

/// The requests counted at `node` so far, and how many of them were timed.
async fn node_requests(
    connection: &mut redis::aio::MultiplexedConnection,
    node: &str,
) -> (u64, u64) {
    let nodes = stats_lines(connection, "nodes").await;
    line_with(&nodes, &[("pool", "main"), ("node", node)]).map_or((0, 0), |line| {
        (number(&line, "requests"), number(&line, "backend_timed"))
    })
}

/// Big requests go to the lane (streamed as they arrive, or whole), bypassing the reply queue: each is still
/// recorded once when it completes, in the slow log, the node's counts, the tenant's and the command's times.
#[tokio::test]
async fn a_big_set_on_the_lane_is_slow_logged_and_counted_at_its_node() {
    let node = redis_addr();
    let toml = format!(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{node}']\n\
         [slowlog]\nslower_than_us = 0\n"
    );
    let proxy = start_proxy_toml(&toml).await;
    let mut connection = client(&proxy).await;
    let key = unique("ops:lane-timed");
    let before = node_requests(&mut connection, &node).await;
    let value = vec![b'v'; 1024 * 1024];
    let () = redis::cmd("SET")
        .arg(&key)
        .arg(&value)
        .query_async(&mut connection)
        .await
        .unwrap();
    let after = node_requests(&mut connection, &node).await;
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (1, 1),
        "{before:?} {after:?}"
    );

    let reply: redis::Value = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query_async(&mut connection)
        .await
        .unwrap();
    let entries = slow_entries(reply);
    let sets: Vec<&(Vec<String>, String)> = entries
        .iter()
        .filter(|(args, _)| {
            args.first()
                .is_some_and(|name| name.eq_ignore_ascii_case("set"))
        })
        .collect();
    assert_eq!(sets.len(), 1, "{entries:?}");
    let (args, logged_node) = sets[0];
    assert_eq!(args[1], key);
    assert!(args[2].ends_with("more bytes)"), "{args:?}");
    assert_eq!(*logged_node, node);

    let commands = stats_lines(&mut connection, "commands").await;
    let set = line_with(&commands, &[("command", "set")])
        .unwrap_or_else(|| panic!("no set line in {commands:?}"));
    assert_eq!(
        (number(&set, "calls"), number(&set, "timed")),
        (1, 1),
        "{commands:?}"
    );
    proxy.shutdown().await;
}

/// Each command gets the time of the reply-queue entry that carried it: a pipelined batch of three commands
/// counts one time for each, and a slow script's time is its own, not its neighbours'.
#[tokio::test]
async fn each_command_has_its_own_latency_histogram_in_stats_and_metrics() {
    let redis = OwnRedis::start(&[]);
    let toml = format!(
        "metrics_listen = '127.0.0.1:0'\ndefault_pool = 'main'\n[pools.main]\nkind = 'standalone'\n\
         nodes = ['{}']\n",
        redis.addr()
    );
    let proxy = start_proxy_toml(&toml).await;
    let mut connection = client(&proxy).await;
    let key = unique("ops:per-command");
    let busy: i64 = redis::cmd("EVAL")
        .arg(busy_script(120))
        .arg(0)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(busy, 1);
    get_times(&mut connection, &key, 4).await;
    let (_, _, count): ((), Option<String>, i64) = redis::pipe()
        .set(&key, "v")
        .get(&key)
        .incr(format!("{key}:n"), 1)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(count, 1);

    let lines = stats_lines(&mut connection, "commands").await;
    let line = |command: &str| {
        line_with(&lines, &[("tenant", "default"), ("command", command)])
            .unwrap_or_else(|| panic!("no {command} line in {lines:?}"))
    };
    let eval = line("eval");
    assert_eq!(number(&eval, "timed"), 1, "{lines:?}");
    assert!(number(&eval, "mean_us") >= 120_000, "{lines:?}");
    assert!(number(&eval, "p50_le_us") >= 250_000, "{lines:?}");
    assert_eq!(number(&line("get"), "timed"), 5, "{lines:?}");
    assert_eq!(number(&line("set"), "timed"), 1, "{lines:?}");
    // redis-rs sends INCR with an amount as INCRBY.
    assert_eq!(number(&line("incrby"), "timed"), 1, "{lines:?}");

    let (scrape, body) = scrape_metrics(&proxy).await;
    let per_command = |command: &str| {
        histogram_of(
            &scrape,
            "rkproxy_per_command_duration_seconds",
            &[
                ("pool", "main"),
                ("tenant", "default"),
                ("command", command),
            ],
            &body,
        )
    };
    let eval = per_command("eval");
    assert_eq!(histogram_total(&eval), 1.0, "{body}");
    assert_eq!(histogram_at(&eval, 0.1), 0.0, "{body}");
    assert_eq!(histogram_total(&per_command("get")), 5.0, "{body}");
    assert_eq!(histogram_total(&per_command("incrby")), 1.0, "{body}");
    drop(redis);
    proxy.shutdown().await;
}
