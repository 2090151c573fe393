//! Bounded memory: clients that do not read are disconnected at `client_limits.max_output_bytes` (shared mode
//! and subscribers), `max_memory` pauses reading and recovers with every request answered once, and a partly
//! received request costs what arrived, not what it announced; clients that go away with big replies in flight
//! never shift another client's replies. Each test runs a proxy of its own (its counters are its own), with
//! unique keys on the shared Redis.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;

use crate::support::*;

/// A proxy in front of the shared standalone Redis, with `extra` TOML (top-level keys and sections).
async fn proxy_with(extra: &str) -> rkproxy::Proxy {
    start_proxy_toml(&format!(
        "default_pool = 'main'\n{extra}\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n",
        redis_addr()
    ))
    .await
}

/// GETs and SETs its own key until `stop`; returns how many round trips it made, or the first error.
async fn control_client(
    mut connection: redis::aio::MultiplexedConnection,
    key: String,
    stop: Arc<AtomicBool>,
) -> Result<usize, String> {
    let mut completed = 0;
    while !stop.load(Ordering::Relaxed) || completed == 0 {
        let _: () = connection
            .set(&key, completed)
            .await
            .map_err(|e| e.to_string())?;
        let value: usize = connection.get(&key).await.map_err(|e| e.to_string())?;
        if value != completed {
            return Err(format!("GET {key} gave {value}, expected {completed}"));
        }
        completed += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(completed)
}

/// Waits until the proxy has disconnected `count` clients at the output limit (at most 20 s).
async fn wait_for_output_disconnects(proxy: &rkproxy::Proxy, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.memory_counters().output_limit_disconnects < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} clients were disconnected at the output limit",
            proxy.memory_counters().output_limit_disconnects
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes a PING every 20 ms, never reading, until a write fails (the proxy closed the connection: true) or
/// 10 s passed (false).
fn closed_by_proxy(mut stream: TcpStream) -> bool {
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Err(error) = stream.write(b"*1\r\n$4\r\nPING\r\n") {
            if !matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn get_command(key: &str) -> Vec<u8> {
    format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).into_bytes()
}

fn set_command(key: &str, value: &[u8]) -> Vec<u8> {
    let mut command = format!(
        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n",
        key.len(),
        value.len()
    )
    .into_bytes();
    command.extend_from_slice(value);
    command.extend_from_slice(b"\r\n");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_disconnected_at_the_output_limit_and_a_control_client_is_unharmed() {
    let proxy = proxy_with("[client_limits]\nmax_output_bytes = 1048576").await;
    let key = unique("slow-reader");
    let mut setup = client(&proxy).await;
    let _: () = setup.set(&key, vec![b'v'; 100 * 1024]).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let control = tokio::spawn(control_client(
        patient_client(&proxy).await,
        unique("control"),
        Arc::clone(&stop),
    ));
    // 500 GETs of 100 KB: 50 MB of replies, fifty times the limit, and the client reads none of them.
    let address = proxy.local_addr();
    let slow = blocking(move || {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.write_all(&get_command(&key).repeat(500)).unwrap();
        closed_by_proxy(stream)
    })
    .await;
    assert!(slow, "the slow reader was not disconnected");
    wait_for_output_disconnects(&proxy, 1).await;
    stop.store(true, Ordering::Relaxed);
    let completed = control
        .await
        .unwrap()
        .expect("the control client got an error");
    assert!(completed > 0);
    // The proxy serves new clients as before, and counted exactly the one disconnect.
    let mut after = client(&proxy).await;
    let pong: String = redis::cmd("PING").query_async(&mut after).await.unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(proxy.memory_counters().output_limit_disconnects, 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_gets_a_value_bigger_than_the_output_limit() {
    let proxy = proxy_with("[client_limits]\nmax_output_bytes = 65536").await;
    let key = unique("big-value");
    let value: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut connection = client(&proxy).await;
    let _: () = connection.set(&key, &value).await.unwrap();
    let read: Vec<u8> = connection.get(&key).await.unwrap();
    assert!(read == value, "the value came back changed");
    assert_eq!(proxy.memory_counters().output_limit_disconnects, 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_is_disconnected_at_the_output_limit() {
    let proxy = proxy_with("[client_limits]\nmax_output_bytes = 1048576").await;
    let channel = unique("slow-subscriber");
    let address = proxy.local_addr();
    let mut subscriber = TcpStream::connect(address).unwrap();
    let subscribe = format!(
        "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{channel}\r\n",
        channel.len()
    );
    subscriber.write_all(subscribe.as_bytes()).unwrap();
    subscriber
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The confirmation is read, so the subscription is in place; no message is read after it.
    let confirmation = format!(
        "*3\r\n$9\r\nsubscribe\r\n${}\r\n{channel}\r\n:1\r\n",
        channel.len()
    );
    let mut read = vec![0u8; confirmation.len()];
    subscriber.read_exact(&mut read).unwrap();
    assert_eq!(String::from_utf8_lossy(&read), confirmation);

    let stop = Arc::new(AtomicBool::new(false));
    let control = tokio::spawn(control_client(
        patient_client(&proxy).await,
        unique("control"),
        Arc::clone(&stop),
    ));
    // Published straight to Redis: 200 messages of 100 KB, twenty times the limit.
    let mut publisher = direct(&redis_addr(), 0).await;
    let message = vec![b'm'; 100 * 1024];
    for _ in 0..200 {
        let _: i64 = publisher.publish(&channel, &message).await.unwrap();
        if proxy.memory_counters().output_limit_disconnects > 0 {
            break;
        }
    }
    wait_for_output_disconnects(&proxy, 1).await;
    assert!(
        blocking(move || closed_by_proxy(subscriber)).await,
        "the subscriber's connection is still open"
    );
    stop.store(true, Ordering::Relaxed);
    let completed = control
        .await
        .unwrap()
        .expect("the control client got an error");
    assert!(completed > 0);
    proxy.shutdown().await;
}

/// Pipelines `rounds` x (`SET key:n <value n>`, `INCR counter`) on a raw connection, writing from another
/// thread, and checks every reply in order: `+OK`, then 1, 2, 3, ...
fn pipelined_sets_and_incrs(proxy: SocketAddr, prefix: &str, rounds: usize, size: usize) {
    let stream = TcpStream::connect(proxy).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let counter = format!("{prefix}:counter");
    let incr = format!("*2\r\n$4\r\nINCR\r\n${}\r\n{counter}\r\n", counter.len());
    let mut pipeline = Vec::new();
    for n in 0..rounds {
        pipeline.extend_from_slice(&set_command(&format!("{prefix}:{n}"), &value(n, size)));
        pipeline.extend_from_slice(incr.as_bytes());
    }
    let mut writer = stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || writer.write_all(&pipeline));
    let mut reader = std::io::BufReader::new(stream);
    for n in 0..rounds {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert_eq!(line, "+OK\r\n", "SET {n} of {prefix}");
        line.clear();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert_eq!(line, format!(":{}\r\n", n + 1), "INCR {n} of {prefix}");
    }
    sending.join().unwrap().unwrap();
}

/// Value `n` of a test: `size` bytes that differ per `n`.
fn value(n: usize, size: usize) -> Vec<u8> {
    (0..size).map(|i| ((i + n * 7) % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_memory_is_reached_and_recovered_from_with_every_request_answered_once() {
    // 1 MiB: every 1 MiB SET held whole in a read buffer is over it, so the episode is certain. (The big
    // lane would stream them instead, holding a window: its threshold is out of reach here.)
    let proxy =
        proxy_with("max_memory = 1048576\n[big_requests]\nthreshold_bytes = 1099511627776").await;
    const CLIENTS: usize = 4;
    const ROUNDS: usize = 12;
    const SIZE: usize = 1024 * 1024;
    let prefixes: Vec<String> = (0..CLIENTS).map(|_| unique("max-memory")).collect();
    let address = proxy.local_addr();
    let mut clients = Vec::new();
    for prefix in prefixes.clone() {
        clients.push(blocking(move || {
            pipelined_sets_and_incrs(address, &prefix, ROUNDS, SIZE)
        }));
    }
    futures_util::future::join_all(clients).await;
    assert!(
        proxy.memory_counters().max_memory_episodes >= 1,
        "the proxy never went over max_memory"
    );
    // Every SET ran once with its own value and every INCR once: nothing lost, nothing twice.
    let mut check = direct(&redis_addr(), 0).await;
    for prefix in &prefixes {
        let count: usize = check.get(format!("{prefix}:counter")).await.unwrap();
        assert_eq!(count, ROUNDS);
        for n in 0..ROUNDS {
            let stored: Vec<u8> = check.get(format!("{prefix}:{n}")).await.unwrap();
            assert!(stored == value(n, SIZE), "{prefix}:{n} holds another value");
        }
    }
    // Recovered: once the clients left, the proxy holds nothing for them and serves new requests.
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.memory_counters().held_bytes > 0 {
        assert!(
            Instant::now() < deadline,
            "{} bytes still held",
            proxy.memory_counters().held_bytes
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut after = client(&proxy).await;
    let key = unique("after-max-memory");
    let _: () = after.set(&key, "ok").await.unwrap();
    let read: String = after.get(&key).await.unwrap();
    assert_eq!(read, "ok");
    proxy.shutdown().await;
}

#[test]
fn partly_received_requests_cost_what_arrived_not_what_they_announced() {
    let proxy = ReadyProxy::in_front_of(&redis_addr(), &[]);
    let address = proxy.listen;
    // One request through first, so the proxy's backend connection and buffers exist before measuring.
    let key = unique("partial");
    let mut warm = RawClient::connect(address);
    warm.send(&set_command(&key, &[b'w'; 64 * 1024]));
    assert_eq!(warm.read_line(), "+OK\r\n");
    let rss_before = proxy.status_kb("VmRSS");
    let size_before = proxy.status_kb("VmSize");

    // 200 connections, each announcing a 500 MB bulk string and sending 1 KB of it.
    let header = format!(
        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$524288000\r\n",
        key.len()
    );
    let mut partial = header.into_bytes();
    partial.extend_from_slice(&[b'p'; 1024]);
    let connections: Vec<RawClient> = (0..200)
        .map(|_| {
            let mut connection = RawClient::connect(address);
            connection.send(&partial);
            connection
        })
        .collect();
    // The proxy has read every connection's bytes once one more request on a fresh connection is answered
    // (it serves connections in the order they became readable).
    let mut probe = RawClient::connect(address);
    probe.send(b"*1\r\n$4\r\nPING\r\n");
    assert_eq!(probe.read_line(), "+PONG\r\n");
    std::thread::sleep(Duration::from_millis(200));
    let rss_growth = proxy.status_kb("VmRSS").saturating_sub(rss_before);
    let size_growth = proxy.status_kb("VmSize").saturating_sub(size_before);
    // What arrived is 200 KB; allow 100 KB of buffers and bookkeeping per connection. Reserving room for the
    // announced length (1 MiB per connection before) shows in the address space even where pages are untouched.
    assert!(rss_growth < 20 * 1024, "RSS grew by {rss_growth} kB");
    assert!(size_growth < 100 * 1024, "VmSize grew by {size_growth} kB");
    drop(connections);
}

/// A value of `len` bytes that names its key throughout, so a reply that reached the wrong request shows.
fn value_naming(key: &str, len: usize) -> Vec<u8> {
    key.bytes().chain(*b"|").cycle().take(len).collect()
}

/// Sends `gets` GETs of `keys` (picked at random from `seed`) in one pipeline and reads every reply, byte for
/// byte; `Err` names the first reply that is not the value of its own request's key.
fn read_own_replies(
    address: SocketAddr,
    keys: &[(String, Vec<u8>)],
    gets: usize,
    seed: u64,
) -> Result<(), String> {
    let mut random = fastrand::Rng::with_seed(seed);
    let picks: Vec<usize> = (0..gets).map(|_| random.usize(..keys.len())).collect();
    let pipeline: Vec<u8> = picks
        .iter()
        .flat_map(|&pick| get_command(&keys[pick].0))
        .collect();
    let stream = TcpStream::connect(address).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let sending = std::thread::spawn(move || writer.write_all(&pipeline));
    let mut reader = std::io::BufReader::new(stream);
    for (index, &pick) in picks.iter().enumerate() {
        let (key, value) = &keys[pick];
        let mut expected = format!("${}\r\n", value.len()).into_bytes();
        expected.extend_from_slice(value);
        expected.extend_from_slice(b"\r\n");
        let mut reply = vec![0u8; expected.len()];
        reader
            .read_exact(&mut reply)
            .map_err(|e| format!("reply {index} (GET {key}): {e}"))?;
        if reply != expected {
            let start = String::from_utf8_lossy(&reply[..reply.len().min(60)]).into_owned();
            return Err(format!(
                "reply {index} (GET {key}) was not its value: {start:?}..."
            ));
        }
    }
    sending
        .join()
        .map_err(|_| "the writer panicked".to_string())?
        .map_err(|e| e.to_string())
}

/// Sends `gets` GETs of `keys` in one pipeline, reads `read_first` bytes of the replies, and goes away.
fn vanish_with_replies_in_flight(
    address: SocketAddr,
    keys: &[(String, Vec<u8>)],
    gets: usize,
    read_first: usize,
) {
    let pipeline: Vec<u8> = (0..gets)
        .flat_map(|n| get_command(&keys[n % keys.len()].0))
        .collect();
    let Ok(mut stream) = TcpStream::connect(address) else {
        return;
    };
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.write_all(&pipeline);
    let mut first = vec![0u8; read_first];
    let _ = stream.read_exact(&mut first);
}

/// Clients that go away with replies of tens of KB in flight (batches of several jobs on the shared connection,
/// replies seldom in one piece) while other clients pipeline GETs of the same keys: every reader gets exactly
/// its own replies, in order, byte for byte, whatever the abandoned jobs' replies did on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_go_away_with_big_replies_in_flight_never_shift_another_clients_replies() {
    let proxy = proxy_with("").await;
    let mut setup = client(&proxy).await;
    let mut keys = Vec::new();
    for index in 0..6 {
        let key = unique(&format!("vanishing-{index}"));
        let value = value_naming(&key, 20_000 + index * 17_000);
        let _: () = setup.set(&key, &value).await.unwrap();
        keys.push((key, value));
    }
    let keys = Arc::new(keys);
    let address = proxy.local_addr();
    let seed = fastrand::u64(..);
    for round in 0..3u64 {
        let mut clients = Vec::new();
        for vanishing in 0..4usize {
            let keys = Arc::clone(&keys);
            clients.push(tokio::task::spawn_blocking(move || {
                vanish_with_replies_in_flight(address, &keys, 300, vanishing * 40_000);
                Ok(())
            }));
        }
        for reader in 0..3u64 {
            let keys = Arc::clone(&keys);
            let seed = seed ^ (round << 8) ^ reader;
            clients.push(tokio::task::spawn_blocking(move || {
                read_own_replies(address, &keys, 300, seed)
            }));
        }
        for outcome in futures_util::future::join_all(clients).await {
            if let Err(problem) = outcome.unwrap() {
                panic!("seed {seed}, round {round}: {problem}");
            }
        }
    }
    proxy.shutdown().await;
}
