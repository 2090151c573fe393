//! Bad input gets a precise error, fast, and never disturbs another client.

use std::time::Duration;

use redis::AsyncCommands;

use crate::support::*;

/// Sends `bytes` on a raw connection and returns the first reply line and whether the proxy closed the connection.
async fn exchange(proxy: std::net::SocketAddr, bytes: &'static [u8]) -> (String, bool) {
    blocking(move || {
        let mut raw = RawClient::connect(proxy);
        raw.send(bytes);
        let line = raw.read_line();
        (line, raw.is_closed())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protocol_is_refused_and_closed_while_others_go_on() {
    let proxy = start_proxy(&redis_addr()).await;
    let mut neighbour = client(&proxy).await;
    let key = unique("neighbour");
    let _: () = neighbour.set(&key, "safe").await.unwrap();

    let (line, closed) = exchange(proxy.local_addr(), b"*2\r\n$3\r\nGET\r\n:1\r\n").await;
    assert_eq!(line, "-ERR Protocol error: expected '$', got ':'\r\n");
    assert!(
        closed,
        "a protocol error closes the connection, as in Redis"
    );

    let (line, closed) = exchange(proxy.local_addr(), b"*1\r\n$abc\r\n").await;
    assert_eq!(line, "-ERR Protocol error: invalid bulk length\r\n");
    assert!(closed);

    let (line, closed) = exchange(proxy.local_addr(), b"*x\r\n").await;
    assert_eq!(line, "-ERR Protocol error: invalid multibulk length\r\n");
    assert!(closed);

    let (line, closed) = exchange(proxy.local_addr(), b"SET \"a b\r\n").await;
    assert_eq!(
        line,
        "-ERR Protocol error: unbalanced quotes in request\r\n"
    );
    assert!(closed);

    let value: String = neighbour.get(&key).await.unwrap();
    assert_eq!(value, "safe", "the other client is unaffected");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bulk_header_is_refused_at_once() {
    let proxy = start_proxy(&redis_addr()).await;
    let mut neighbour = client(&proxy).await;
    let started = std::time::Instant::now();
    // 600 MiB announced, above the 512 MiB default limit: refused on the header, before any data.
    let (line, closed) = exchange(
        proxy.local_addr(),
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$629145600\r\n",
    )
    .await;
    assert_eq!(line, "-ERR Protocol error: invalid bulk length\r\n");
    assert!(closed);
    assert!(started.elapsed() < Duration::from_secs(2));
    let pong: String = redis::cmd("PING")
        .query_async(&mut neighbour)
        .await
        .unwrap();
    assert_eq!(pong, "PONG");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_command_and_wrong_arity_keep_the_connection() {
    let proxy = start_proxy(&redis_addr()).await;
    let addr = proxy.local_addr();
    let lines = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(b"*2\r\n$7\r\nNOSUCHC\r\n$1\r\nx\r\n*1\r\n$3\r\nGET\r\n*3\r\n$3\r\nGET\r\n$1\r\na\r\n$1\r\nb\r\n*1\r\n$4\r\nPING\r\n");
        [raw.read_line(), raw.read_line(), raw.read_line(), raw.read_line()]
    })
    .await;
    assert_eq!(
        lines[0],
        "-ERR unknown or unsupported command 'NOSUCHC'\r\n"
    );
    assert_eq!(
        lines[1],
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(
        lines[2],
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(lines[3], "+PONG\r\n", "the connection stays usable");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_would_break_shared_connections_are_refused() {
    let proxy = start_proxy(&redis_addr()).await;
    let addr = proxy.local_addr();
    let lines = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(b"MONITOR\r\nCLIENT PAUSE 10\r\nPING\r\n");
        [raw.read_line(), raw.read_line(), raw.read_line()]
    })
    .await;
    assert_eq!(
        lines[0],
        "-ERR unknown or unsupported command 'MONITOR'\r\n"
    );
    assert!(
        lines[1].starts_with("-ERR"),
        "CLIENT PAUSE is refused: {}",
        lines[1]
    );
    assert_eq!(lines[2], "+PONG\r\n");
    proxy.shutdown().await;
}
