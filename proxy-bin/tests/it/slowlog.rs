//! `SLOWLOG GET | LEN | RESET` answered from the proxy's own slow log: a slow request is logged with Redis's
//! fields plus the tenant and the backend node, arguments truncated as Redis does, and a tenant sees and resets
//! only its own entries.

use redis::Value;
use rkproxy::Proxy;

use crate::support::*;

/// A script that keeps the server busy for at least `ms` milliseconds (by the server's own clock).
fn busy_script(ms: u32) -> String {
    format!(
        "local t = redis.call('TIME') local start = t[1] * 1000000 + t[2] \
         repeat local n = redis.call('TIME') until n[1] * 1000000 + n[2] - start >= {} return 1",
        ms * 1000
    )
}

/// One SLOWLOG GET entry, by field.
#[derive(Debug)]
struct Entry {
    id: i64,
    duration_us: i64,
    args: Vec<String>,
    client_addr: String,
    client_name: String,
    tenant: String,
    node: String,
}

fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) => text.clone(),
        other => format!("{other:?}"),
    }
}

fn int(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

async fn slowlog_get(
    connection: &mut redis::aio::MultiplexedConnection,
    count: &str,
) -> Vec<Entry> {
    let reply: Vec<Vec<Value>> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(count)
        .query_async(connection)
        .await
        .unwrap();
    reply
        .iter()
        .map(|fields| {
            assert_eq!(
                fields.len(),
                8,
                "Redis's six fields, the tenant and the node: {fields:?}"
            );
            let args = match &fields[3] {
                Value::Array(args) => args.iter().map(text).collect(),
                other => panic!("args are {other:?}"),
            };
            Entry {
                id: int(&fields[0]),
                duration_us: int(&fields[2]),
                args,
                client_addr: text(&fields[4]),
                client_name: text(&fields[5]),
                tenant: text(&fields[6]),
                node: text(&fields[7]),
            }
        })
        .collect()
}

async fn slowlog_len(connection: &mut redis::aio::MultiplexedConnection) -> i64 {
    redis::cmd("SLOWLOG")
        .arg("LEN")
        .query_async(connection)
        .await
        .unwrap()
}

/// A proxy in front of the standalone server at `backend`, logging requests slower than 100 ms.
async fn proxy_logging_over_100_ms(backend: &str) -> Proxy {
    let toml = format!(
        "default_pool = 'main'\n[slowlog]\nslower_than_us = 100000\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['{backend}']\n"
    );
    start_proxy_toml(&toml).await
}

#[tokio::test]
async fn a_slow_request_is_logged_with_its_client_tenant_and_node() {
    // A server of the test's own: the script keeps it busy, and no other test's commands wait for it.
    let redis = OwnRedis::start(&[]);
    let proxy = proxy_logging_over_100_ms(&redis.addr()).await;
    let mut connection = client(&proxy).await;
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("slow-one")
        .query_async(&mut connection)
        .await
        .unwrap();
    let script = busy_script(250);
    let _: i64 = redis::cmd("EVAL")
        .arg(&script)
        .arg(0)
        .query_async(&mut connection)
        .await
        .unwrap();
    let entries = slowlog_get(&mut connection, "-1").await;
    let slow = entries
        .iter()
        .find(|entry| entry.args.first().map(String::as_str) == Some("EVAL"))
        .unwrap_or_else(|| panic!("the EVAL is logged: {entries:?}"));
    assert!(slow.duration_us >= 250_000, "{slow:?}");
    // The script is longer than 128 bytes: cut like Redis cuts it.
    assert_eq!(slow.args.len(), 3);
    assert!(slow.args[1].starts_with(&script[..128]), "{slow:?}");
    assert!(
        slow.args[1].ends_with(&format!("... ({} more bytes)", script.len() - 128)),
        "{slow:?}"
    );
    assert_eq!(slow.args[2], "0");
    assert_eq!(slow.client_name, "slow-one");
    assert!(slow.client_addr.starts_with("127.0.0.1:"), "{slow:?}");
    assert_eq!(slow.tenant, "default");
    assert_eq!(slow.node, redis.addr());
    assert!(slowlog_len(&mut connection).await >= 1);

    let reset: String = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(reset, "OK");
    assert_eq!(slowlog_len(&mut connection).await, 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_negative_threshold_turns_the_log_off() {
    let redis = OwnRedis::start(&[]);
    let toml = format!(
        "default_pool = 'main'\n[slowlog]\nslower_than_us = -1\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['{}']\n",
        redis.addr()
    );
    let proxy = start_proxy_toml(&toml).await;
    let mut connection = client(&proxy).await;
    let _: i64 = redis::cmd("EVAL")
        .arg(busy_script(50))
        .arg(0)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(slowlog_len(&mut connection).await, 0);
    assert!(slowlog_get(&mut connection, "10").await.is_empty());
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_tenant_sees_and_resets_only_its_own_slow_entries() {
    // Every request is logged (threshold 0), so the test needs no slow command.
    let toml = format!(
        "default_pool = 'main'\n[slowlog]\nslower_than_us = 0\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['{}']\n\
         [tenants.alpha]\npassword = 'alpha-pw'\npool = 'main'\nkey_prefix = 'alpha:'\n\
         [tenants.beta]\npassword = 'beta-pw'\npool = 'main'\nkey_prefix = 'beta:'\n\
         [tenants.boss]\npassword = 'boss-pw'\npool = 'main'\nadmin = true\n",
        redis_addr()
    );
    let proxy = start_proxy_toml(&toml).await;
    let mut alpha = as_tenant(&proxy, "alpha", "alpha-pw").await;
    let mut beta = as_tenant(&proxy, "beta", "beta-pw").await;
    let mut boss = as_tenant(&proxy, "boss", "boss-pw").await;
    let key = unique("slowlog");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("a")
        .query_async(&mut alpha)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("b")
        .query_async(&mut beta)
        .await
        .unwrap();

    let alpha_entries = slowlog_get(&mut alpha, "-1").await;
    assert!(!alpha_entries.is_empty());
    assert!(
        alpha_entries.iter().all(|entry| entry.tenant == "alpha"),
        "{alpha_entries:?}"
    );
    assert!(alpha_entries
        .iter()
        .any(|entry| entry.args.first().map(String::as_str) == Some("SET")));
    let beta_entries = slowlog_get(&mut beta, "-1").await;
    assert!(
        beta_entries.iter().all(|entry| entry.tenant == "beta"),
        "{beta_entries:?}"
    );
    // Newest first.
    let ids: Vec<i64> = beta_entries.iter().map(|entry| entry.id).collect();
    assert!(ids.windows(2).all(|pair| pair[0] > pair[1]), "{ids:?}");

    let all = slowlog_get(&mut boss, "-1").await;
    assert!(all.iter().any(|entry| entry.tenant == "alpha"));
    assert!(all.iter().any(|entry| entry.tenant == "beta"));

    // alpha's RESET removes alpha's entries only.
    let _: String = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(&mut alpha)
        .await
        .unwrap();
    assert_eq!(slowlog_len(&mut alpha).await, 0);
    assert!(!slowlog_get(&mut beta, "-1").await.is_empty());
    let after = slowlog_get(&mut boss, "-1").await;
    assert!(
        after.iter().all(|entry| entry.tenant != "alpha"),
        "{after:?}"
    );
    assert_eq!(slowlog_get(&mut boss, "1").await.len(), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_slow_blocking_command_on_a_dedicated_connection_is_logged() {
    // BLPOP with a timeout runs on a backend connection of the client's own; it blocks for 300 ms.
    let proxy = proxy_logging_over_100_ms(&redis_addr()).await;
    let mut connection = client(&proxy).await;
    let key = unique("slowlog-blpop");
    let popped: Option<(String, String)> = redis::cmd("BLPOP")
        .arg(&key)
        .arg("0.3")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(popped, None);
    let entries = slowlog_get(&mut connection, "-1").await;
    let slow = entries
        .iter()
        .find(|entry| entry.args.first().map(String::as_str) == Some("BLPOP"))
        .unwrap_or_else(|| panic!("the BLPOP is logged: {entries:?}"));
    assert_eq!(slow.args, ["BLPOP", key.as_str(), "0.3"]);
    assert!(slow.duration_us >= 250_000, "{slow:?}");
    assert_eq!(slow.node, redis_addr());
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_watching_client_gets_the_proxys_slow_log_and_commands() {
    // Every request is logged (threshold 0). After WATCH the client is on a dedicated connection.
    let toml = format!(
        "default_pool = 'main'\n[slowlog]\nslower_than_us = 0\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['{}']\n",
        redis_addr()
    );
    let proxy = start_proxy_toml(&toml).await;
    let mut connection = client(&proxy).await;
    let key = unique("slowlog-watch");
    let _: () = redis::cmd("WATCH")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    let _: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    // The proxy's slow log (its entries have the tenant and the node), not the backend's.
    let entries = slowlog_get(&mut connection, "-1").await;
    let get = entries
        .iter()
        .find(|entry| entry.args.first().map(String::as_str) == Some("GET"))
        .unwrap_or_else(|| panic!("the GET on the dedicated connection is logged: {entries:?}"));
    assert_eq!(get.args, ["GET", key.as_str()]);
    assert_eq!(get.node, redis_addr());
    let pool: String = redis::cmd("RKPROXY")
        .arg("POOL")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(pool, "main");
    let _: () = redis::cmd("UNWATCH")
        .query_async(&mut connection)
        .await
        .unwrap();
    proxy.shutdown().await;
}

#[tokio::test]
async fn entries_in_flight_together_are_each_logged_with_their_own_arguments() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The proxy keeps the leading bytes of each standalone request in flight, one after another, and gives
    // each back to its own entry: three requests read in three passes (three entries in flight at once, all
    // slow: the second and third wait behind the first script) must come out with their own arguments.
    let redis = OwnRedis::start(&[]);
    let proxy = proxy_logging_over_100_ms(&redis.addr()).await;
    let script = busy_script(150);
    let eval = |marker: &str| {
        format!(
            "*4\r\n$4\r\nEVAL\r\n${}\r\n{script}\r\n$1\r\n0\r\n${}\r\n{marker}\r\n",
            script.len(),
            marker.len()
        )
    };
    let mut raw = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .unwrap();
    for request in [
        eval("first-marker"),
        eval("second-marker"),
        "*2\r\n$3\r\nGET\r\n$12\r\nthird-marker\r\n".to_owned(),
    ] {
        raw.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    let mut replies = Vec::new();
    while replies.windows(2).filter(|pair| pair == b"\r\n").count() < 3 {
        let mut chunk = [0u8; 64];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), raw.read(&mut chunk))
            .await
            .expect("the replies in time")
            .unwrap();
        assert!(read > 0, "the proxy closed the connection");
        replies.extend_from_slice(&chunk[..read]);
    }
    assert_eq!(replies, b":1\r\n:1\r\n$-1\r\n");
    let mut connection = client(&proxy).await;
    let entries = slowlog_get(&mut connection, "-1").await;
    let logged_with = |marker: &str| {
        entries
            .iter()
            .find(|entry| entry.args.last().map(String::as_str) == Some(marker))
            .unwrap_or_else(|| panic!("an entry ending with {marker}: {entries:?}"))
    };
    for marker in ["first-marker", "second-marker"] {
        let entry = logged_with(marker);
        assert_eq!(entry.args.len(), 4, "{entry:?}");
        assert_eq!(entry.args[0], "EVAL", "{entry:?}");
        assert_eq!(entry.args[2], "0", "{entry:?}");
    }
    assert_eq!(logged_with("third-marker").args, ["GET", "third-marker"]);
    proxy.shutdown().await;
}
