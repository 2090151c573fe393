//! Commands that carry connection state: emulated by the proxy or run on a dedicated connection, never leaking
//! into the shared connections other clients use.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::AsyncCommands;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_is_per_client() {
    let proxy = start_proxy(&redis_addr()).await;
    let key = unique("select");
    let mut in_db3 = client(&proxy).await;
    let mut in_db0 = client(&proxy).await;
    let _: () = redis::cmd("SELECT")
        .arg(3)
        .query_async(&mut in_db3)
        .await
        .unwrap();
    let _: () = in_db3.set(&key, "three").await.unwrap();
    let _: () = in_db0.set(&key, "zero").await.unwrap();
    let three: String = in_db3.get(&key).await.unwrap();
    let zero: String = in_db0.get(&key).await.unwrap();
    assert_eq!((three.as_str(), zero.as_str()), ("three", "zero"));
    // Checked on the backend directly.
    let mut direct3 = direct(&redis_addr(), 3).await;
    let on_backend: String = direct3.get(&key).await.unwrap();
    assert_eq!(on_backend, "three");

    let error = redis::cmd("SELECT")
        .arg(99_999)
        .query_async::<()>(&mut in_db0)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("DB index is out of range"),
        "{error}"
    );
    let error = redis::cmd("SELECT")
        .arg("x")
        .query_async::<()>(&mut in_db0)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not an integer"), "{error}");
    let _: () = direct3.del(&key).await.unwrap();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_run_on_a_dedicated_connection() {
    let proxy = start_proxy(&redis_addr()).await;
    let key = unique("multi");
    let mut transaction_client = client(&proxy).await;
    let mut other = client(&proxy).await;

    let (set, incr): (String, i64) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(&key)
        .arg(41)
        .cmd("INCR")
        .arg(&key)
        .query_async(&mut transaction_client)
        .await
        .unwrap();
    assert_eq!((set.as_str(), incr), ("OK", 42));

    // A MULTI left open by one client must not capture another client's commands.
    let _: () = redis::cmd("MULTI")
        .query_async(&mut transaction_client)
        .await
        .unwrap();
    let queued: String = redis::cmd("SET")
        .arg(&key)
        .arg("queued")
        .query_async(&mut transaction_client)
        .await
        .unwrap();
    assert_eq!(queued, "QUEUED");
    let seen: i64 = other.get(&key).await.unwrap();
    assert_eq!(seen, 42, "the other client is not inside the transaction");
    let _: () = redis::cmd("DISCARD")
        .query_async(&mut transaction_client)
        .await
        .unwrap();
    let after: i64 = other.get(&key).await.unwrap();
    assert_eq!(after, 42);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_aborts_when_the_key_changes() {
    let proxy = start_proxy(&redis_addr()).await;
    let key = unique("watch");
    let mut watcher = client(&proxy).await;
    let mut writer = client(&proxy).await;
    let _: () = writer.set(&key, 1).await.unwrap();
    let _: () = redis::cmd("WATCH")
        .arg(&key)
        .query_async(&mut watcher)
        .await
        .unwrap();
    let _: () = writer.set(&key, 2).await.unwrap();
    let result: Option<(String,)> = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(&key)
        .arg(3)
        .query_async(&mut watcher)
        .await
        .unwrap();
    assert_eq!(result, None, "EXEC returns nil after a watched key changed");
    let value: i64 = writer.get(&key).await.unwrap();
    assert_eq!(value, 2);
    proxy.shutdown().await;
}

/// While one client waits in BLPOP, other clients are served. It checks that the BLPOP really is blocked on the
/// server (`blocked_clients` in INFO, so it runs on a redis-server of its own) instead of sleeping and hoping, and
/// the BLPOP waits far longer than the PINGs may take, so a PING stuck behind it cannot pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_pop_does_not_stall_other_clients() {
    const BLPOP_SECONDS: u64 = 60;
    let backend = blocking(|| OwnRedis::start(&[])).await;
    let proxy = start_proxy(&backend.addr()).await;
    let key = unique("blpop");
    let mut blocked = client(&proxy).await;
    let mut other = client(&proxy).await;
    let waiting_key = key.clone();
    let waiter = tokio::spawn(async move {
        let popped: Option<(String, String)> = redis::cmd("BLPOP")
            .arg(&waiting_key)
            .arg(BLPOP_SECONDS)
            .query_async(&mut blocked)
            .await
            .unwrap();
        popped
    });
    let backend_addr = backend.addr();
    blocking(move || wait_for_blocked_clients(&backend_addr, 1)).await;
    let started = Instant::now();
    for _ in 0..50 {
        let _: String = redis::cmd("PING").query_async(&mut other).await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(BLPOP_SECONDS / 2),
        "PINGs took {:?}: they waited for the BLPOP",
        started.elapsed()
    );
    let _: () = other.rpush(&key, "job").await.unwrap();
    let popped = tokio::time::timeout(Duration::from_secs(BLPOP_SECONDS), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(popped, Some((key, "job".to_owned())));
    proxy.shutdown().await;
}

/// Waits (at most 10 s) until the redis-server at `addr` reports `count` clients blocked in a command.
fn wait_for_blocked_clients(addr: &str, count: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let wanted = format!("blocked_clients:{count}");
    loop {
        let info = redis_cli_at(addr, &["INFO", "clients"]);
        if info.lines().any(|line| line.trim() == wanted) {
            return;
        }
        assert!(Instant::now() < deadline, "never {wanted}: {info}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_receives_published_messages() {
    let proxy = start_proxy(&redis_addr()).await;
    let channel = unique("channel");
    let url = format!("redis://{}/", proxy.local_addr());
    let mut pubsub = redis::Client::open(url)
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    pubsub.subscribe(&channel).await.unwrap();
    pubsub.psubscribe(format!("{channel}:*")).await.unwrap();
    let mut publisher = client(&proxy).await;
    let receivers: i64 = publisher.publish(&channel, "hello").await.unwrap();
    assert_eq!(receivers, 1);
    let _: i64 = publisher
        .publish(format!("{channel}:sub"), "pattern")
        .await
        .unwrap();
    let mut messages = pubsub.on_message();
    let first = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.get_channel_name(), channel);
    assert_eq!(first.get_payload::<String>().unwrap(), "hello");
    let second = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.get_payload::<String>().unwrap(), "pattern");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_name_is_per_client() {
    let proxy = start_proxy(&redis_addr()).await;
    let mut named = client(&proxy).await;
    let mut unnamed = client(&proxy).await;
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("worker-1")
        .query_async(&mut named)
        .await
        .unwrap();
    let name: Option<String> = redis::cmd("CLIENT")
        .arg("GETNAME")
        .query_async(&mut named)
        .await
        .unwrap();
    let other: Option<String> = redis::cmd("CLIENT")
        .arg("GETNAME")
        .query_async(&mut unnamed)
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("worker-1"));
    assert_eq!(other, None, "the name did not leak to another client");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_replies_ok_and_closes() {
    let proxy = start_proxy(&redis_addr()).await;
    let addr = proxy.local_addr();
    let (line, closed) = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(b"QUIT\r\n");
        (raw.read_line(), raw.is_closed())
    })
    .await;
    assert_eq!(line, "+OK\r\n");
    assert!(closed);
    proxy.shutdown().await;
}
