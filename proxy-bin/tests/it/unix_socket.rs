//! A standalone pool whose node is a Unix domain socket (`nodes = ["unix:/path"]`): every kind of backend
//! connection (shared, per db, dedicated for transactions and blocking commands, the big-request lane) goes
//! over the socket, to a real redis-server of the test's own, and comes back after the server restarts.

use std::path::PathBuf;

use redis::AsyncCommands;

use crate::support::*;

/// A redis-server of the test's own that also listens on a Unix socket in a fresh directory, and a proxy whose
/// pool reaches it only through that socket.
async fn redis_and_proxy_over_a_socket() -> (OwnRedis, PathBuf, rkproxy::Proxy) {
    let directory = std::env::temp_dir().join(format!("rkproxy-unix-{}", unique("t")));
    std::fs::create_dir_all(&directory).unwrap();
    let socket = directory.join("redis.sock");
    let path = socket.to_str().unwrap().to_owned();
    let redis =
        blocking(move || OwnRedis::start(&["--unixsocket", &path, "--unixsocketperm", "700"]))
            .await;
    let proxy = start_proxy_toml(&format!(
        "default_pool = 'local'\n[pools.local]\nkind = 'standalone'\nnodes = ['unix:{}']\n\
         [big_requests]\nthreshold_bytes = 262144\n",
        socket.display()
    ))
    .await;
    (redis, socket, proxy)
}

/// The clients redis-server has on its Unix socket (`flags` with `U` in CLIENT LIST).
async fn clients_on_the_socket(redis: &OwnRedis) -> usize {
    let mut direct = direct(&redis.addr(), 0).await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut direct)
        .await
        .unwrap();
    list.lines()
        .filter(|line| {
            line.split(' ')
                .any(|field| field.starts_with("flags=") && field.contains('U'))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_backend_connection_goes_over_the_unix_socket() {
    let (redis, socket, proxy) = redis_and_proxy_over_a_socket().await;
    let mut connection = client(&proxy).await;
    let mut direct = direct(&redis.addr(), 0).await;
    let key = unique("unix");

    // A pipeline of mixed sizes (small, kilobytes sent without a copy, a big-lane megabyte) in order.
    let values: Vec<Vec<u8>> = (0..300usize)
        .map(|n| {
            let size = match n % 50 {
                0 => 1024 * 1024 + n,
                7 | 19 => 20_000 + n,
                _ => n % 40,
            };
            (0..size).map(|i| (i * 31 + n) as u8).collect()
        })
        .collect();
    let mut pipe = redis::pipe();
    for (n, value) in values.iter().enumerate() {
        pipe.set(format!("{key}:{n}"), value).ignore();
        pipe.get(format!("{key}:{n}"));
    }
    let back: Vec<Vec<u8>> = pipe.query_async(&mut connection).await.unwrap();
    assert_eq!(back, values);
    // The same server: what the proxy wrote is there over TCP too.
    let seen: Vec<u8> = direct.get(format!("{key}:0")).await.unwrap();
    assert_eq!(seen, values[0]);

    // A transaction and a blocking command run on dedicated connections; SELECT 3 on shared ones of db 3.
    let (incremented, _): (i64, ()) = redis::pipe()
        .atomic()
        .incr(format!("{key}:n"), 5)
        .set(format!("{key}:m"), "x")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(incremented, 5);
    let _: () = direct.rpush(format!("{key}:list"), "item").await.unwrap();
    let popped: (String, String) = connection.blpop(format!("{key}:list"), 5.0).await.unwrap();
    assert_eq!(popped.1, "item");
    let url = format!("redis://{}/3", proxy.local_addr());
    let mut db3 = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = db3.set(&key, "in db 3").await.unwrap();
    let mut direct3 = crate::support::direct(&redis.addr(), 3).await;
    let in_db3: String = direct3.get(&key).await.unwrap();
    assert_eq!(in_db3, "in db 3");

    // Every connection the proxy made is on the socket: none came over TCP but the test's own.
    assert!(
        clients_on_the_socket(&redis).await >= 2,
        "the proxy's connections should be on {}",
        socket.display()
    );
    drop((connection, db3));
    proxy.shutdown().await;
    let _ = std::fs::remove_dir_all(socket.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_on_the_socket_is_reached_again_and_a_stopped_one_is_a_clear_error() {
    let (mut redis, socket, proxy) = redis_and_proxy_over_a_socket().await;
    let mut connection = client(&proxy).await;
    let key = unique("unix-restart");
    let _: () = connection.set(&key, "before").await.unwrap();
    tokio::task::block_in_place(|| redis.stop());
    let error = connection
        .get::<_, String>(&key)
        .await
        .expect_err("the server is down");
    let text = error.to_string();
    assert!(
        text.contains("unavailable") && text.contains(&format!("unix:{}", socket.display())),
        "{text}"
    );
    tokio::task::block_in_place(|| redis.restart());
    // The first request may find the old connection closed; a client retries, as after any restart.
    let mut value = None;
    for _ in 0..50 {
        match connection.set::<_, _, ()>(&key, "after").await {
            Ok(()) => {
                value = connection.get::<_, Option<String>>(&key).await.ok();
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert_eq!(value.flatten().as_deref(), Some("after"));
    proxy.shutdown().await;
    let _ = std::fs::remove_dir_all(socket.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_path_with_no_server_is_a_fast_clear_error() {
    // Fast: the connect fails at once with the system's reason, not after `connect_ms` with a timeout.
    let missing = std::env::temp_dir().join(format!("rkproxy-unix-{}.sock", unique("none")));
    let proxy = start_proxy(&format!("unix:{}", missing.display())).await;
    let mut connection = client(&proxy).await;
    let error = connection
        .get::<_, String>("k")
        .await
        .expect_err("no server listens there");
    let text = error.to_string();
    assert!(
        text.contains(&format!("backend unix:{} unavailable", missing.display()))
            && text.contains("No such file"),
        "{text}"
    );
    proxy.shutdown().await;
}
