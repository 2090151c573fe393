//! Dead, slow and password-protected backends.

use std::time::{Duration, Instant};

use redis::AsyncCommands;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backend_fails_fast_and_recovers_by_itself() {
    let mut backend = OwnRedis::start(&[]);
    let proxy = start_proxy(&backend.addr()).await;
    let mut connection = client(&proxy).await;
    let _: () = connection.set("k", "v").await.unwrap();

    backend.stop();
    let started = Instant::now();
    let error = connection.get::<_, String>("k").await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&format!("backend {} unavailable", backend.addr())),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    // Still down: still a fast error.
    let started = Instant::now();
    let error = connection.get::<_, String>("k").await.unwrap_err();
    assert!(error.to_string().contains("unavailable"), "{error}");
    assert!(started.elapsed() < Duration::from_millis(1500));

    backend.restart();
    // The proxy reconnects on its own; the client keeps its connection to the proxy.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match connection.set::<_, _, ()>("k", "again").await {
            Ok(()) => break,
            Err(error) => assert!(Instant::now() < deadline, "no recovery: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let value: String = connection.get("k").await.unwrap();
    assert_eq!(value, "again");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_gives_an_error_within_the_timeout() {
    let backend = OwnRedis::start(&[]);
    let proxy = start_proxy(&backend.addr()).await;
    let mut connection = client(&proxy).await;
    let _: () = connection.set("k", "v").await.unwrap();

    backend.pause();
    let started = Instant::now();
    let error = connection.get::<_, String>("k").await.unwrap_err();
    let waited = started.elapsed();
    assert!(error.to_string().contains("unavailable"), "{error}");
    assert!(
        error.to_string().contains("no reply within 1000 ms"),
        "{error}"
    );
    assert!(waited < Duration::from_millis(1800), "took {waited:?}");
    // Other requests during the stall also fail within the timeout instead of piling up.
    let started = Instant::now();
    let error = connection.get::<_, String>("k").await.unwrap_err();
    assert!(error.to_string().contains("unavailable"), "{error}");
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "took {:?}",
        started.elapsed()
    );
    backend.resume();
    // After the stall, service resumes without restarting anything.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match connection.get::<_, String>("k").await {
            Ok(value) => {
                assert_eq!(value, "v");
                break;
            }
            Err(error) => assert!(Instant::now() < deadline, "no recovery: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_password_and_acl_user() {
    let addr = env_addr("RKPROXY_TEST_REDIS_AUTH");
    let key = unique("auth");
    for (credentials, label) in [
        ("password = 'rkproxy-test-pass'", "password"),
        (
            "username = 'proxyuser'\npassword = 'proxyuser-pass'",
            "ACL user",
        ),
    ] {
        let proxy = start_proxy_toml(&format!(
            "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{addr}']\n{credentials}\n"
        ))
        .await;
        let mut connection = client(&proxy).await;
        let _: () = connection.set(&key, label).await.unwrap();
        let value: String = connection.get(&key).await.unwrap();
        assert_eq!(value, label);
        proxy.shutdown().await;
    }

    let proxy = start_proxy_toml(&format!(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{addr}']\npassword = 'wrong'\n"
    ))
    .await;
    let mut connection = client(&proxy).await;
    let error = connection
        .get::<_, String>(&key)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("unavailable") && error.contains("WRONGPASS"),
        "{error}"
    );
    proxy.shutdown().await;

    let proxy = start_proxy(&addr).await;
    let mut connection = client(&proxy).await;
    let error = connection
        .get::<_, String>(&key)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("NOAUTH"),
        "without credentials the backend refuses: {error}"
    );
    proxy.shutdown().await;
}

/// The helper every dead/slow-backend test starts its server with: a server that could not bind its port
/// must not count as started because another test's server answers there (CI once failed
/// `slow_backend_gives_an_error_within_the_timeout` with "Connection refused" after that other server
/// stopped).
#[test]
fn own_redis_is_not_started_when_another_server_holds_its_port() {
    let holder = OwnRedis::start(&[]);
    let mut second = OwnRedis::placeholder(holder.port);
    assert!(
        !second.try_restart(),
        "counted {}'s server as its own",
        holder.addr()
    );
    assert!(!second.is_running());
    assert!(holder.is_running());
}
