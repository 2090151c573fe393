//! Connections that cannot be abused: AUTH failures, the auth deadline, the cap on unauthenticated clients,
//! HELLO before AUTH and the idle timeout (issue 12, items 2 and 3).

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use redis::AsyncCommands;

use crate::support::*;

const WRONGPASS: &str = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
const TOO_MANY_FAILURES: &str =
    "-ERR too many failed authentication attempts, closing the connection\r\n";
const TOO_MANY_UNAUTHENTICATED: &str = "-ERR max number of unauthenticated clients reached\r\n";

/// A proxy with one prefixed tenant `alpha` (password `alpha-pw`, at most 2 connections) on the test Redis.
async fn hardened_proxy(timeouts: &str, client_limits: &str) -> rkproxy::Proxy {
    let redis = redis_addr();
    start_proxy_toml(&format!(
        "default_pool = 'main'\n\
         [timeouts]\n{timeouts}\n\
         [client_limits]\n{client_limits}\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['{redis}']\n\
         [tenants.alpha]\npassword = 'alpha-pw'\npool = 'main'\nkey_prefix = 'alpha:'\nmax_connections = 2\n"
    ))
    .await
}

/// Sends `count` wrong passwords on one connection and reads their replies.
fn wrong_passwords(addr: SocketAddr, count: usize) -> (Vec<String>, bool) {
    let mut raw = RawClient::connect(addr);
    for _ in 0..count {
        raw.send(b"AUTH alpha wrong\r\n");
    }
    let replies: Vec<String> = (0..count).map(|_| raw.read_line()).collect();
    let closed = raw.is_closed();
    (replies, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_close_the_connection_and_slow_down() {
    let proxy = hardened_proxy("auth_ms = 20000", "").await;
    let addr = proxy.local_addr();
    let started = Instant::now();
    // Six wrong passwords: the fifth (auth_max_failures = 5) is answered with an error and the connection
    // closes; the sixth is never answered.
    let (replies, closed) = blocking(move || wrong_passwords(addr, 6)).await;
    let first_five = started.elapsed();
    assert_eq!(&replies[..4], [WRONGPASS; 4]);
    assert_eq!(replies[4], TOO_MANY_FAILURES);
    assert_eq!(replies[5], "", "no reply after the error");
    assert!(closed, "closed after auth_max_failures");
    // The per-IP delay grows: 25 + 50 + 100 + 200 + 400 ms at least.
    assert!(first_five >= Duration::from_millis(775), "{first_five:?}");

    // A new connection from the same address pays the grown delay: 800 + 1600 ms for two more failures.
    let started = Instant::now();
    let (replies, _) = blocking(move || wrong_passwords(addr, 2)).await;
    let next_two = started.elapsed();
    assert_eq!(replies, [WRONGPASS; 2]);
    assert!(next_two >= Duration::from_millis(2400), "{next_two:?}");
    // Seven guesses took over three seconds: no more tens of thousands per second.
    let total = first_five + next_two;
    assert!(total >= Duration::from_secs(3), "{total:?}");

    // The right password on a new connection works at once.
    let lines = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(b"AUTH alpha alpha-pw\r\nPING\r\n");
        [raw.read_line(), raw.read_line()]
    })
    .await;
    assert_eq!(lines, ["+OK\r\n", "+PONG\r\n"]);
    proxy.shutdown().await;
}

/// Pipelines ECHO of 64 KiB without reading any reply until the proxy closes the connection (a write fails),
/// for at most `limit`. The replies are as big as the requests, so the proxy's socket fills within
/// milliseconds. Returns how long the connection stayed open, or `None` if it never closed.
fn pipeline_echo_without_reading(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let payload = vec![b'x'; 64 * 1024];
    let mut request = format!("*2\r\n$4\r\nECHO\r\n${}\r\n", payload.len()).into_bytes();
    request.extend_from_slice(&payload);
    request.extend_from_slice(b"\r\n");
    let started = Instant::now();
    while started.elapsed() < limit {
        match stream.write(&request) {
            Ok(_) => {}
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_pipeliner_that_never_reads_is_closed() {
    let proxy = hardened_proxy("auth_ms = 1000", "").await;
    let addr = proxy.local_addr();
    let open_for =
        blocking(move || pipeline_echo_without_reading(addr, Duration::from_secs(8))).await;
    let open_for = open_for.expect("the proxy closed the connection");
    assert!(open_for < Duration::from_secs(4), "{open_for:?}");
    proxy.shutdown().await;
}

/// An unauthenticated connection that has sent ECHO and read its NOAUTH; `None` when the proxy refused it.
fn hostile_client(addr: SocketAddr) -> Option<RawClient> {
    let mut raw = RawClient::connect(addr);
    raw.send(b"GET k\r\n");
    match raw.read_line().as_str() {
        "-NOAUTH Authentication required.\r\n" => Some(raw),
        TOO_MANY_UNAUTHENTICATED => None,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// AUTH as alpha on a new connection, retried while the cap is still full (closed clients are released as
/// the proxy notices them).
fn auth_alpha(addr: SocketAddr) -> RawClient {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut raw = RawClient::connect(addr);
        raw.send(b"AUTH alpha alpha-pw\r\n");
        let line = raw.read_line();
        if line == "+OK\r\n" {
            return raw;
        }
        assert_eq!(line, TOO_MANY_UNAUTHENTICATED);
        assert!(Instant::now() < deadline, "still refused");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_clients_have_their_own_cap() {
    let proxy = hardened_proxy("auth_ms = 20000", "max_unauthenticated = 5").await;
    let addr = proxy.local_addr();
    let (admitted, refused, tenant_lines) = blocking(move || {
        let mut admitted: Vec<RawClient> = Vec::new();
        let mut refused = 0;
        for _ in 0..20 {
            match hostile_client(addr) {
                Some(raw) => admitted.push(raw),
                None => refused += 1,
            }
        }
        let count = admitted.len();
        // Two of them leave; the three still open hold no place of the tenant's max_connections = 2.
        admitted.truncate(3);
        let mut first = auth_alpha(addr);
        let mut second = auth_alpha(addr);
        first.send(b"PING\r\n");
        second.send(b"PING\r\n");
        (count, refused, [first.read_line(), second.read_line()])
    })
    .await;
    assert_eq!(admitted, 5);
    assert_eq!(refused, 15);
    assert_eq!(tenant_lines, ["+PONG\r\n", "+PONG\r\n"]);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_before_auth_needs_auth() {
    let proxy = hardened_proxy("auth_ms = 20000", "").await;
    let addr = proxy.local_addr();
    let lines = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(b"HELLO 3\r\nHELLO 3 AUTH alpha alpha-pw\r\n");
        [raw.read_line(), raw.read_line()]
    })
    .await;
    assert_eq!(lines[0], "-NOAUTH Authentication required.\r\n");
    assert_eq!(lines[1], "%8\r\n");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_spares_subscribers_and_blocked_clients() {
    let proxy = hardened_proxy("auth_ms = 20000\nidle_ms = 300", "max_unauthenticated = 10").await;
    let addr = proxy.local_addr();
    let list = unique("idle-list");
    let channel = unique("idle-channel");
    let (plain_closed, subscriber, waiter) = {
        let (list, channel) = (list.clone(), channel.clone());
        blocking(move || {
            let mut plain = RawClient::connect(addr);
            plain.send(b"AUTH alpha alpha-pw\r\n");
            assert_eq!(plain.read_line(), "+OK\r\n");
            let started = Instant::now();
            let closed = plain.is_closed();
            let plain_closed = (closed, started.elapsed());
            drop(plain);

            let mut subscriber = RawClient::connect(addr);
            subscriber.send(b"AUTH alpha alpha-pw\r\n");
            assert_eq!(subscriber.read_line(), "+OK\r\n");
            subscriber.send(format!("SUBSCRIBE {channel}\r\n").as_bytes());
            let mut waiter = RawClient::connect(addr);
            waiter.send(b"AUTH alpha alpha-pw\r\n");
            assert_eq!(waiter.read_line(), "+OK\r\n");
            waiter.send(format!("BLPOP {list} 0\r\n").as_bytes());
            // Both sit idle for well over idle_ms.
            std::thread::sleep(Duration::from_millis(1200));
            (plain_closed, subscriber, waiter)
        })
        .await
    };
    assert!(plain_closed.0, "an idle client is closed");
    assert!(
        plain_closed.1 >= Duration::from_millis(250) && plain_closed.1 < Duration::from_secs(3),
        "{:?}",
        plain_closed.1
    );
    // The subscriber and the BLPOP waiter are still served.
    let mut direct = direct(&redis_addr(), 0).await;
    let _: () = direct.rpush(format!("alpha:{list}"), "item").await.unwrap();
    let (subscribed, pong, popped) = blocking(move || {
        let (mut subscriber, mut waiter) = (subscriber, waiter);
        // The SUBSCRIBE reply (6 lines), then PING's reply in subscribed mode (5 lines).
        let subscribed: Vec<String> = (0..6).map(|_| subscriber.read_line()).collect();
        subscriber.send(b"PING\r\n");
        let pong: Vec<String> = (0..5).map(|_| subscriber.read_line()).collect();
        let popped: Vec<String> = (0..5).map(|_| waiter.read_line()).collect();
        (subscribed.concat(), pong.concat(), popped.concat())
    })
    .await;
    assert!(
        subscribed.starts_with("*3\r\n$9\r\nsubscribe\r\n"),
        "{subscribed:?}"
    );
    assert_eq!(pong, "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    assert!(popped.contains("item"), "{popped:?}");
    proxy.shutdown().await;
}
