//! Plain proxying to a standalone Redis: commands, pipelines, many clients, big values.

use redis::AsyncCommands;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_set_get_through_proxy() {
    let proxy = start_proxy(&redis_addr()).await;
    let key = unique("cli");
    assert_eq!(
        redis_cli(proxy.local_addr(), &["SET", &key, "hello world"]).await,
        "OK\n"
    );
    assert_eq!(
        redis_cli(proxy.local_addr(), &["GET", &key]).await,
        "hello world\n"
    );
    assert_eq!(
        redis_cli(proxy.local_addr(), &["INCRBY", &format!("{key}:n"), "5"]).await,
        "5\n"
    );
    assert_eq!(
        redis_cli(proxy.local_addr(), &["DEL", &key, &format!("{key}:n")]).await,
        "2\n"
    );
    assert_eq!(redis_cli(proxy.local_addr(), &["PING"]).await, "PONG\n");
    // The value really is on the backend.
    let mut direct = direct(&redis_addr(), 0).await;
    let _: () = direct.set(&key, "direct").await.unwrap();
    assert_eq!(
        redis_cli(proxy.local_addr(), &["GET", &key]).await,
        "direct\n"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_replies_come_back_in_order() {
    let proxy = start_proxy(&redis_addr()).await;
    let mut connection = client(&proxy).await;
    let key = unique("pipe");
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("SET").arg(format!("{key}:{i}")).arg(i).ignore();
        pipe.cmd("GET").arg(format!("{key}:{i}"));
        pipe.cmd("INCR").arg(format!("{key}:counter"));
    }
    let replies: Vec<i64> = pipe.query_async(&mut connection).await.unwrap();
    assert_eq!(replies.len(), 4000);
    for i in 0..2000 {
        assert_eq!(replies[2 * i], i as i64, "GET {i}");
        assert_eq!(replies[2 * i + 1], i as i64 + 1, "INCR {i}");
    }
    proxy.shutdown().await;
}

/// Counts the backend's connections, so it runs on a redis-server of its own: on the shared one, other tests
/// open and close connections at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_share_few_backend_connections() {
    let backend = blocking(|| OwnRedis::start(&[])).await;
    let proxy = start_proxy(&backend.addr()).await;
    let mut direct = direct(&backend.addr(), 0).await;
    let before: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut direct)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for client_index in 0..40 {
        let url = format!("redis://{}/", proxy.local_addr());
        tasks.push(tokio::spawn(async move {
            let mut connection = redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let key = unique(&format!("many:{client_index}"));
            for i in 0..100 {
                let _: () = connection.set(&key, i).await.unwrap();
                let value: i64 = connection.get(&key).await.unwrap();
                assert_eq!(value, i);
            }
            connection
        }));
    }
    let mut connections = Vec::new();
    for task in tasks {
        connections.push(task.await.unwrap());
    }
    let after: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut direct)
        .await
        .unwrap();
    let added = after.lines().count() as i64 - before.lines().count() as i64;
    assert!(
        added <= 2,
        "40 clients should share the pool's connection(s), but Redis gained {added} connections"
    );
    drop(connections);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_values_round_trip() {
    let proxy = start_proxy(&redis_addr()).await;
    let mut connection = client(&proxy).await;
    let key = unique("big");
    let value: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let _: () = connection.set(&key, &value).await.unwrap();
    let back: Vec<u8> = connection.get(&key).await.unwrap();
    assert_eq!(back, value);
    let _: () = connection.del(&key).await.unwrap();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_commands_work() {
    let proxy = start_proxy(&redis_addr()).await;
    let addr = proxy.local_addr();
    let key = unique("inline");
    let replies = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(format!("PING\r\nSET {key} \"two words\"\r\n\r\nGET {key}\r\n").as_bytes());
        [
            raw.read_line(),
            raw.read_line(),
            raw.read_line(),
            raw.read_line(),
        ]
    })
    .await;
    assert_eq!(replies, ["+PONG\r\n", "+OK\r\n", "$9\r\n", "two words\r\n"]);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_3_switches_to_resp3() {
    let proxy = start_proxy(&redis_addr()).await;
    let addr = proxy.local_addr();
    let key = unique("resp3");
    let mut direct = direct(&redis_addr(), 0).await;
    let _: () = direct.hset(&key, "f", "v").await.unwrap();
    let replies = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(b"HELLO 3\r\n");
        let first = raw.read_line();
        // Skip the rest of the HELLO map (8 pairs of one-line-or-two-line values), then ask for a hash.
        let mut rest = Vec::new();
        for _ in 0..40 {
            let line = raw.read_line();
            if line.starts_with("+rkproxy") || line.starts_with("rkproxy") {
                rest.push(line);
                break;
            }
            rest.push(line);
        }
        raw.send(format!("HGETALL {key}\r\n").as_bytes());
        let map = [
            raw.read_line(),
            raw.read_line(),
            raw.read_line(),
            raw.read_line(),
            raw.read_line(),
        ];
        (first, map)
    })
    .await;
    assert_eq!(replies.0, "%8\r\n", "HELLO 3 answers with a RESP3 map");
    assert_eq!(
        replies.1,
        ["%1\r\n", "$1\r\n", "f\r\n", "$1\r\n", "v\r\n"],
        "HGETALL is a map in RESP3"
    );
    proxy.shutdown().await;
}
