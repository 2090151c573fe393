//! What clients see at connect time and from connection and introspection commands: CLIENT TRACKING refused
//! with a reason, cluster SCAN cursors below 2^53, CLIENT INFO / LIST with every field Redis gives, INFO for
//! every tenant and on Kafka pools, HELLO with the backend's version, READONLY as Redis answers it, CONFIG for
//! admins, CLIENT REPLY emulated, and the other connection commands answered as Redis would.

use std::collections::{BTreeMap, BTreeSet};

use redis::Value;

use crate::support::*;

/// A reply as text: bulk, verbatim and simple strings; errors as `-` plus their text.
fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::SimpleString(text) => text.clone(),
        Value::Okay => "OK".to_owned(),
        Value::ServerError(error) => format!("-{} {}", error.code(), error.details().unwrap_or("")),
        other => format!("{other:?}"),
    }
}

/// Runs one command and returns its reply; an error comes back as a simple string starting with `-`.
async fn run(connection: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> Value {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command
        .query_async::<Value>(connection)
        .await
        .unwrap_or_else(|error| Value::SimpleString(format!("-{error}")))
}

/// Runs one command and returns its reply or error as text.
async fn run_text(connection: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> String {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    match command.query_async::<Value>(connection).await {
        Ok(value) => text(&value),
        Err(error) => format!("-{error}"),
    }
}

/// `key=value` fields of one CLIENT INFO / CLIENT LIST line, in order.
fn fields(line: &str) -> Vec<(String, String)> {
    line.trim_end()
        .split(' ')
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The `name:value` lines of an INFO text.
fn info_fields(info: &str) -> BTreeMap<String, String> {
    info.lines()
        .filter_map(|line| line.trim_end().split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The backend's `redis_version`, asked directly.
async fn backend_version(addr: &str) -> String {
    let mut direct = direct(addr, 0).await;
    let info = text(&run(&mut direct, &["INFO", "server"]).await);
    info_fields(&info)["redis_version"].clone()
}

/// Reads one RESP reply from a raw connection as lines (a bulk string's header and its data, an array's
/// header and its elements).
fn read_reply(raw: &mut RawClient) -> Vec<String> {
    let first = raw.read_line();
    let mut lines = vec![first.trim_end().to_owned()];
    match first.as_bytes().first() {
        Some(b'$') if !first.starts_with("$-1") => {
            let length: usize = first[1..].trim_end().parse().unwrap_or(0);
            let mut data = String::new();
            while data.len() < length + 2 {
                data.push_str(&raw.read_line());
            }
            lines.push(data.trim_end().to_owned());
        }
        Some(b'*') => {
            let count: usize = first[1..].trim_end().parse().unwrap_or(0);
            for _ in 0..count {
                lines.extend(read_reply(raw));
            }
        }
        _ => {}
    }
    lines
}

#[tokio::test]
async fn client_tracking_is_refused_with_a_reason_and_off_is_ok() {
    let proxy = start_proxy(&redis_addr()).await;
    let addr = proxy.local_addr();
    let replies = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(
            b"CLIENT TRACKING ON\r\nCLIENT TRACKING OFF\r\nCLIENT GETREDIR\r\nCLIENT CACHING yes\r\n\
              CLIENT TRACKING maybe\r\nPING\r\n",
        );
        (0..6).map(|_| raw.read_line()).collect::<Vec<_>>()
    })
    .await;
    assert!(
        replies[0].starts_with("-ERR CLIENT TRACKING is not supported by rkproxy")
            && replies[0].contains("client-side caching"),
        "{replies:?}"
    );
    assert_eq!(replies[1], "+OK\r\n");
    assert_eq!(replies[2], ":-1\r\n");
    assert_eq!(
        replies[3],
        "-ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode \
         enabled\r\n"
    );
    assert_eq!(replies[4], "-ERR syntax error\r\n");
    assert_eq!(replies[5], "+PONG\r\n");

    // A client library's call sees the refusal as an error too.
    let mut connection = client(&proxy).await;
    let error = redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .query_async::<Value>(&mut connection)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("not supported by rkproxy"),
        "{error}"
    );
    let proxy_says = run(&mut connection, &["CLIENT", "TRACKINGINFO"]).await;
    let mut direct_connection = direct(&redis_addr(), 0).await;
    let redis_says = run(&mut direct_connection, &["CLIENT", "TRACKINGINFO"]).await;
    assert_eq!(proxy_says, redis_says);
}

#[tokio::test]
async fn cluster_scan_cursors_stay_below_2_pow_53_and_see_every_key_once() {
    let proxy = start_cluster_proxy(&cluster_nodes(), "").await;
    let mut connection = client(&proxy).await;
    let prefix = unique("scan53");
    let keys: BTreeSet<String> = (0..300).map(|i| format!("{prefix}:{i}")).collect();
    for key in &keys {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(1)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    let mut seen: Vec<String> = Vec::new();
    let mut cursor = "0".to_owned();
    let mut steps = 0;
    loop {
        let (next, batch): (String, Vec<String>) = redis::cmd("SCAN")
            .arg(&cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(50)
            .query_async(&mut connection)
            .await
            .unwrap();
        let value: u64 = next.parse().unwrap();
        assert!(value < 1 << 53, "cursor {value} is not below 2^53");
        seen.extend(batch);
        cursor = next;
        steps += 1;
        assert!(steps < 10_000, "SCAN does not end");
        if cursor == "0" {
            break;
        }
    }
    let distinct: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(distinct.len(), seen.len(), "a key was returned twice");
    assert_eq!(distinct, keys);
    for bad in ["1023", "9007199254740993", "abc", "-1"] {
        let reply = run_text(&mut connection, &["SCAN", bad]).await;
        assert!(reply.contains("invalid cursor"), "SCAN {bad}: {reply}");
    }
}

#[tokio::test]
async fn client_info_and_list_give_every_field_redis_gives() {
    let mut direct_connection = direct(&redis_addr(), 0).await;
    let redis_line = text(&run(&mut direct_connection, &["CLIENT", "INFO"]).await);
    let mut redis_fields: BTreeSet<String> =
        fields(&redis_line).into_iter().map(|(k, _)| k).collect();
    // Redis 7.2+ adds these; rkproxy gives them whatever the backend's version.
    for newer in ["lib-name", "lib-ver", "watch"] {
        redis_fields.insert(newer.to_owned());
    }
    assert!(redis_fields.len() > 25, "{redis_line}");

    let proxy = start_proxy(&redis_addr()).await;
    let mut connection = client(&proxy).await;
    assert_eq!(
        text(&run(&mut connection, &["CLIENT", "SETNAME", "introspect"]).await),
        "OK"
    );
    assert_eq!(
        text(
            &run(
                &mut connection,
                &["CLIENT", "SETINFO", "lib-name", "redis-rs-test"]
            )
            .await
        ),
        "OK"
    );
    assert_eq!(
        text(&run(&mut connection, &["CLIENT", "SETINFO", "LIB-VER", "1.2.3"]).await),
        "OK"
    );
    let refused = run_text(&mut connection, &["CLIENT", "SETINFO", "colour", "red"]).await;
    assert!(
        refused.contains("Unrecognized option 'colour'"),
        "{refused}"
    );
    let refused = run_text(&mut connection, &["CLIENT", "SETINFO", "lib-name", "a b"]).await;
    assert!(refused.contains("cannot contain spaces"), "{refused}");
    assert_eq!(text(&run(&mut connection, &["SELECT", "2"]).await), "OK");
    let id = match run(&mut connection, &["CLIENT", "ID"]).await {
        Value::Int(id) => id,
        other => panic!("{other:?}"),
    };

    let line = text(&run(&mut connection, &["CLIENT", "INFO"]).await);
    let info: BTreeMap<String, String> = fields(&line).into_iter().collect();
    let missing: Vec<&String> = redis_fields
        .iter()
        .filter(|f| !info.contains_key(*f))
        .collect();
    assert!(missing.is_empty(), "missing {missing:?} in {line}");
    assert_eq!(info["id"], id.to_string());
    assert_eq!(info["laddr"], proxy.local_addr().to_string());
    assert!(info["addr"].starts_with("127.0.0.1:"), "{line}");
    assert_eq!(info["name"], "introspect");
    assert_eq!(info["db"], "2");
    assert_eq!(info["resp"], "2");
    assert_eq!(info["multi"], "-1");
    assert_eq!(info["user"], "default");
    assert_eq!(info["cmd"], "client|info");
    assert_eq!(info["lib-name"], "redis-rs-test");
    assert_eq!(info["lib-ver"], "1.2.3");
    assert!(
        info["age"].parse::<u64>().is_ok() && info["omem"].parse::<u64>().is_ok(),
        "{line}"
    );

    let list = text(&run(&mut connection, &["CLIENT", "LIST"]).await);
    let listed: BTreeMap<String, String> = fields(&list).into_iter().collect();
    assert_eq!(listed["id"], id.to_string());
    assert_eq!(listed["cmd"], "client|list");
    assert!(
        redis_fields.iter().all(|f| listed.contains_key(f)),
        "{list}"
    );
    let mine = text(
        &run(
            &mut connection,
            &["CLIENT", "LIST", "ID", &id.to_string(), "999999999"],
        )
        .await,
    );
    assert!(mine.starts_with(&format!("id={id} ")), "{mine}");
    let other = text(&run(&mut connection, &["CLIENT", "LIST", "ID", "999999999"]).await);
    assert_eq!(other, "");
    let normal = text(&run(&mut connection, &["CLIENT", "LIST", "TYPE", "normal"]).await);
    assert!(normal.starts_with(&format!("id={id} ")), "{normal}");
    let pubsub = text(&run(&mut connection, &["CLIENT", "LIST", "TYPE", "pubsub"]).await);
    assert_eq!(pubsub, "");
    let bad = run_text(&mut connection, &["CLIENT", "LIST", "TYPE", "foo"]).await;
    assert!(bad.contains("Unknown client type 'foo'"), "{bad}");
    let bad = run_text(&mut connection, &["CLIENT", "LIST", "ID", "abc"]).await;
    assert!(bad.contains("Invalid client ID"), "{bad}");
}

/// A proxy over the test Redis with an admin and a non-admin tenant (own db 5), plus a Kafka pool whose broker
/// is absent.
async fn tenant_proxy() -> rkproxy::Proxy {
    let port = free_port();
    start_proxy_toml(&format!(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n\
         [pools.events]\nkind = 'kafka'\nnodes = ['127.0.0.1:{port}']\nrequest_timeout_ms = 500\nconnect_retry_ms = 200\n\
         [pools.events.topics.t]\npartitions = 1\nreplication_factor = 1\nproducers = ['*']\nconsumers = ['*']\n\
         [tenants.root]\npassword = 'root-pw'\npool = 'main'\nadmin = true\n\
         [tenants.app]\npassword = 'app-pw'\npool = 'main'\ndb = 5\n\
         [tenants.streams]\npassword = 'streams-pw'\npool = 'events'\n",
        redis_addr()
    ))
    .await
}

#[tokio::test]
async fn info_is_answered_for_every_tenant_and_the_full_one_for_admins() {
    let proxy = tenant_proxy().await;
    let version = backend_version(&redis_addr()).await;
    let mut connection = client(&proxy).await;
    let before = run_text(&mut connection, &["INFO"]).await;
    assert!(before.contains("NOAUTH"), "{before}");
    assert_eq!(text(&run(&mut connection, &["AUTH", "app-pw"]).await), "OK");
    let key = unique("infokey");
    assert_eq!(text(&run(&mut connection, &["SET", &key, "1"]).await), "OK");

    let info = text(&run(&mut connection, &["INFO"]).await);
    let found = info_fields(&info);
    assert!(
        info.contains("# Server") && info.contains("# Clients") && info.contains("# Keyspace"),
        "{info}"
    );
    assert_eq!(found["redis_version"], version);
    assert_eq!(found["redis_mode"], "standalone");
    assert_eq!(found["rkproxy_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(found["process_id"], std::process::id().to_string());
    assert_eq!(found["tcp_port"], proxy.local_addr().port().to_string());
    assert!(found["uptime_in_seconds"].parse::<u64>().is_ok(), "{info}");
    assert!(
        found["connected_clients"].parse::<u64>().unwrap() >= 1,
        "{info}"
    );
    assert!(found["db5"].starts_with("keys="), "{info}");
    // Only the tenant's own db, and nothing of the backend's private state.
    assert!(
        !found.contains_key("db0") && !found.contains_key("used_memory"),
        "{info}"
    );
    let server_only = text(&run(&mut connection, &["INFO", "server"]).await);
    assert!(
        server_only.contains("redis_version") && !server_only.contains("# Keyspace"),
        "{server_only}"
    );

    let mut admin = client(&proxy).await;
    assert_eq!(text(&run(&mut admin, &["AUTH", "root-pw"]).await), "OK");
    let full = text(&run(&mut admin, &["INFO"]).await);
    assert!(info_fields(&full).contains_key("used_memory"), "{full}");

    // A Kafka pool whose broker is absent answers INFO too.
    let mut streams = client(&proxy).await;
    assert_eq!(
        text(&run(&mut streams, &["AUTH", "streams-pw"]).await),
        "OK"
    );
    let kafka_info = text(&run(&mut streams, &["INFO"]).await);
    let kafka_fields = info_fields(&kafka_info);
    assert!(kafka_fields.contains_key("redis_version"), "{kafka_info}");
    assert_eq!(kafka_fields["redis_mode"], "standalone");
    // And without tenants, on a Kafka pool.
    let port = free_port();
    let kafka_only = start_proxy_toml(&format!(
        "default_pool = 'events'\n[pools.events]\nkind = 'kafka'\nnodes = ['127.0.0.1:{port}']\n\
         [pools.events.topics.t]\npartitions = 1\nreplication_factor = 1\nproducers = ['*']\nconsumers = ['*']\n"
    ))
    .await;
    let mut kafka_client = client(&kafka_only).await;
    let kafka_info = text(&run(&mut kafka_client, &["INFO", "server"]).await);
    assert!(kafka_info.contains("redis_version:"), "{kafka_info}");
}

#[tokio::test]
async fn hello_reports_the_backend_version_and_one_standalone_mode() {
    let version = backend_version(&redis_addr()).await;
    let proxy = start_proxy(&redis_addr()).await;
    let addr = proxy.local_addr();
    let hello = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(b"HELLO 2\r\n");
        read_reply(&mut raw)
    })
    .await;
    let at = |name: &str| {
        let index = hello.iter().position(|line| line == name).unwrap();
        hello[index + 2].clone()
    };
    assert_eq!(at("version"), version, "{hello:?}");
    assert_eq!(at("mode"), "standalone");

    let nodes = cluster_nodes();
    let cluster_version = backend_version(&nodes[0]).await;
    let cluster_proxy = start_cluster_proxy(&nodes, "").await;
    let addr = cluster_proxy.local_addr();
    let hello = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(b"HELLO 2\r\nINFO server\r\n");
        let hello = read_reply(&mut raw);
        let info = read_reply(&mut raw);
        (hello, info)
    })
    .await;
    let (hello, info) = hello;
    let index = hello.iter().position(|line| line == "mode").unwrap();
    assert_eq!(hello[index + 2], "standalone", "{hello:?}");
    let index = hello.iter().position(|line| line == "version").unwrap();
    assert_eq!(hello[index + 2], cluster_version, "{hello:?}");
    let info = info.join("\n");
    assert!(info.contains("redis_mode:standalone"), "{info}");

    // On a dedicated backend connection (WATCH) too: the proxy's HELLO, not the cluster node's.
    let key = unique("{hello}dedicated");
    let (id, hello) = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(b"CLIENT ID\r\n");
        let id = read_reply(&mut raw);
        let watch = format!("*2\r\n$5\r\nWATCH\r\n${}\r\n{key}\r\n", key.len());
        raw.send(watch.as_bytes());
        assert_eq!(read_reply(&mut raw), ["+OK"]);
        raw.send(b"HELLO 2\r\n");
        (id, read_reply(&mut raw))
    })
    .await;
    let at = |name: &str| {
        let index = hello.iter().position(|line| line == name).unwrap();
        hello[index + 1].clone()
    };
    assert_eq!(
        hello[hello.iter().position(|l| l == "mode").unwrap() + 2],
        "standalone",
        "{hello:?}"
    );
    assert_eq!(at("id"), id[0], "{hello:?}");
}

#[tokio::test]
async fn readonly_is_refused_on_standalone_pools_as_redis_does() {
    let proxy = start_proxy(&redis_addr()).await;
    let mut connection = client(&proxy).await;
    let mut direct_connection = direct(&redis_addr(), 0).await;
    let redis_says = run_text(&mut direct_connection, &["READONLY"]).await;
    let proxy_says = run_text(&mut connection, &["READONLY"]).await;
    assert!(
        redis_says.contains("cluster support disabled"),
        "{redis_says}"
    );
    assert_eq!(proxy_says, redis_says);
    let cluster_proxy = start_cluster_proxy(&cluster_nodes(), "").await;
    let mut cluster = client(&cluster_proxy).await;
    assert_eq!(run_text(&mut cluster, &["READONLY"]).await, "OK");
    assert_eq!(run_text(&mut cluster, &["READWRITE"]).await, "OK");
}

#[tokio::test]
async fn config_works_for_admins_on_standalone_and_cluster_pools() {
    let own = OwnRedis::start(&[]);
    let proxy = start_proxy(&own.addr()).await;
    let mut connection = client(&proxy).await;
    assert_eq!(
        run_text(&mut connection, &["CONFIG", "SET", "slowlog-max-len", "77"]).await,
        "OK"
    );
    let got = run(&mut connection, &["CONFIG", "GET", "slowlog-max-len"]).await;
    let values: Vec<String> = match got {
        Value::Array(items) => items.iter().map(text).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(values, ["slowlog-max-len", "77"]);
    assert_eq!(
        run_text(&mut connection, &["CONFIG", "RESETSTAT"]).await,
        "OK"
    );
    let mut direct_connection = direct(&own.addr(), 0).await;
    let direct_values: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("slowlog-max-len")
        .query_async(&mut direct_connection)
        .await
        .unwrap();
    assert_eq!(direct_values, ["slowlog-max-len", "77"]);

    // A cluster pool: every node, masters and replicas, gets the SET; an error names the node.
    let nodes = cluster_nodes();
    let cluster_proxy = start_cluster_proxy(&nodes, "").await;
    let mut cluster = client(&cluster_proxy).await;
    let current = redis_cli_at(&nodes[0], &["CONFIG", "GET", "slowlog-max-len"]);
    let value = current.lines().nth(1).unwrap_or("128").to_owned();
    assert_eq!(
        run_text(&mut cluster, &["CONFIG", "SET", "slowlog-max-len", &value]).await,
        "OK"
    );
    for node in &nodes {
        let got = redis_cli_at(node, &["CONFIG", "GET", "slowlog-max-len"]);
        assert_eq!(got.lines().nth(1), Some(value.as_str()), "{node}");
    }
    let got = run(&mut cluster, &["CONFIG", "GET", "slowlog-max-len"]).await;
    assert!(
        matches!(&got, Value::Array(items) if items.len() == 2),
        "{got:?}"
    );
    assert_eq!(run_text(&mut cluster, &["CONFIG", "RESETSTAT"]).await, "OK");
    let error = run_text(&mut cluster, &["CONFIG", "SET", "no-such-parameter", "1"]).await;
    assert!(
        error.contains("no-such-parameter") && nodes.iter().any(|n| error.contains(n.as_str())),
        "{error}"
    );
}

#[tokio::test]
async fn config_is_refused_to_non_admin_tenants() {
    let proxy = tenant_proxy().await;
    let mut connection = client(&proxy).await;
    assert_eq!(text(&run(&mut connection, &["AUTH", "app-pw"]).await), "OK");
    let refused = run_text(&mut connection, &["CONFIG", "GET", "maxmemory"]).await;
    assert!(
        refused.contains("no permissions to run the 'config|get'"),
        "{refused}"
    );
    let refused = run_text(&mut connection, &["CONFIG", "SET", "maxmemory", "0"]).await;
    assert!(
        refused.contains("no permissions to run the 'config|set'"),
        "{refused}"
    );
    let mut admin = client(&proxy).await;
    assert_eq!(text(&run(&mut admin, &["AUTH", "root-pw"]).await), "OK");
    let got = run(&mut admin, &["CONFIG", "GET", "slowlog-max-len"]).await;
    let values: Vec<String> = match got {
        Value::Array(items) => items.iter().map(text).collect(),
        other => panic!("{other:?}"),
    };
    // Setting the current value again: the shared test server does not change.
    assert_eq!(
        run_text(
            &mut admin,
            &["CONFIG", "SET", "slowlog-max-len", &values[1]]
        )
        .await,
        "OK"
    );
}

#[tokio::test]
async fn client_reply_off_on_and_skip_are_emulated() {
    let proxy = start_proxy(&redis_addr()).await;
    let addr = proxy.local_addr();
    let key = unique("replymode");
    let replies = blocking(move || {
        let mut raw = RawClient::connect(addr);
        let k = key.as_str();
        raw.send(
            format!(
                "CLIENT REPLY OFF\r\nSET {k} 1\r\nGET {k}\r\nNO-SUCH-COMMAND\r\nCLIENT REPLY ON\r\nGET {k}\r\n\
                 CLIENT REPLY SKIP\r\nSET {k} 2\r\nGET {k}\r\nCLIENT REPLY SKIP\r\nCLIENT REPLY bad\r\nPING\r\n"
            )
            .as_bytes(),
        );
        (0..5).map(|_| raw.read_line()).collect::<Vec<_>>()
    })
    .await;
    assert_eq!(
        replies,
        ["+OK\r\n", "$1\r\n", "1\r\n", "$1\r\n", "2\r\n"].map(String::from)
    );
    let replies = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(b"CLIENT REPLY SKIP\r\nCLIENT REPLY bad\r\nPING\r\nCLIENT REPLY bad\r\n");
        (0..2).map(|_| raw.read_line()).collect::<Vec<_>>()
    })
    .await;
    assert_eq!(
        replies,
        ["+PONG\r\n", "-ERR syntax error\r\n"].map(String::from)
    );
}

/// Replies of 4 KiB or more go to the client without a copy, beside the write buffer: CLIENT REPLY SKIP and
/// OFF still drop exactly the replies they name, big ones and small ones, in a pipeline that mixes them.
#[tokio::test]
async fn client_reply_skip_and_off_drop_big_replies_too() {
    let proxy = start_proxy(&redis_addr()).await;
    let addr = proxy.local_addr();
    let key = unique("replymode-big");
    let big = "b".repeat(20_000);
    let received = blocking(move || {
        let k = key.as_str();
        let payload = format!(
            "SET {k} {big}\r\nGET {k}\r\nCLIENT REPLY SKIP\r\nGET {k}\r\nPING\r\nGET {k}\r\n\
             CLIENT REPLY OFF\r\nGET {k}\r\nGET {k}\r\nCLIENT REPLY ON\r\nGET {k}\r\n"
        );
        exchange(addr, payload.as_bytes())
    })
    .await;
    let value = format!("$20000\r\n{}\r\n", "b".repeat(20_000));
    // `exchange` keeps the header of its closing ECHO's reply.
    let expected = format!("+OK\r\n{value}+PONG\r\n{value}+OK\r\n{value}$15\r\n");
    assert!(
        received == expected,
        "got {} bytes: {:.80}",
        received.len(),
        received
    );
}

/// Sends `payload` then `ECHO end-of-exchange`, and returns every byte received up to that echo.
fn exchange(addr: std::net::SocketAddr, payload: &[u8]) -> String {
    let mut raw = RawClient::connect(addr);
    raw.send(payload);
    raw.send(b"ECHO end-of-exchange\r\n");
    let mut received = String::new();
    loop {
        let line = raw.read_line();
        assert!(!line.is_empty(), "closed after {received:?}");
        if line == "end-of-exchange\r\n" {
            return received;
        }
        received.push_str(&line);
    }
}

#[tokio::test]
async fn client_reply_sequences_match_redis_on_standalone_and_cluster_pools() {
    let standalone = start_proxy(&redis_addr()).await;
    let cluster = start_cluster_proxy(&cluster_nodes(), "").await;
    let redis: std::net::SocketAddr = redis_addr().parse().unwrap();
    let sequences: [&[u8]; 5] = [
        b"CLIENT REPLY SKIP\r\nCLIENT REPLY bad\r\nPING\r\nCLIENT REPLY bad\r\n",
        b"CLIENT REPLY OFF\r\nCLIENT REPLY SKIP\r\nPING\r\nCLIENT REPLY ON\r\nPING\r\n",
        b"CLIENT REPLY OFF\r\nRESET\r\nPING\r\n",
        b"PING a\r\nCLIENT REPLY OFF\r\nPING b\r\nMGET x y z\r\nCLIENT REPLY ON\r\nPING c\r\nCLIENT REPLY SKIP\r\nPING d\r\nPING e\r\n",
        b"CLIENT REPLY SKIP\r\nCLIENT REPLY SKIP\r\nPING f\r\nPING g\r\n",
    ];
    for sequence in sequences {
        let proxies = [standalone.local_addr(), cluster.local_addr()];
        let (expected, got) = blocking(move || {
            let expected = exchange(redis, sequence);
            let got: Vec<String> = proxies
                .iter()
                .map(|addr| exchange(*addr, sequence))
                .collect();
            (expected, got)
        })
        .await;
        for got in got {
            assert_eq!(got, expected, "{}", String::from_utf8_lossy(sequence));
        }
    }
}

#[tokio::test]
async fn connection_commands_are_answered_as_redis_answers_them() {
    let proxy = start_proxy(&redis_addr()).await;
    let mut connection = client(&proxy).await;
    assert_eq!(
        run_text(&mut connection, &["ECHO", "hi there"]).await,
        "hi there"
    );
    assert_eq!(run_text(&mut connection, &["PING"]).await, "PONG");
    assert_eq!(run_text(&mut connection, &["PING", "back"]).await, "back");
    let time = run(&mut connection, &["TIME"]).await;
    assert!(
        matches!(&time, Value::Array(items) if items.len() == 2),
        "{time:?}"
    );
    let lolwut = run_text(&mut connection, &["LOLWUT"]).await;
    assert!(lolwut.contains("Redis ver."), "{lolwut}");
    let no_evict = run_text(&mut connection, &["CLIENT", "NO-EVICT", "on"]).await;
    assert!(no_evict.contains("not supported by rkproxy"), "{no_evict}");
    assert_eq!(
        run_text(&mut connection, &["CLIENT", "NO-EVICT", "off"]).await,
        "OK"
    );
    let bad = run_text(&mut connection, &["CLIENT", "NO-EVICT", "maybe"]).await;
    assert!(bad.contains("syntax error"), "{bad}");
    assert_eq!(
        run_text(&mut connection, &["CLIENT", "SETINFO", "LIB-NAME", "x"]).await,
        "OK"
    );
    // CLIENT NO-TOUCH is Redis 7.2's; the command table is 7.0's, whose servers do not know it either.
    let no_touch = run_text(&mut connection, &["CLIENT", "NO-TOUCH", "on"]).await;
    assert!(
        no_touch.contains("unknown subcommand 'NO-TOUCH'"),
        "{no_touch}"
    );
}
