//! Embeds the whole proxy in a small service: builds rkproxy's configuration from a TOML string, starts the
//! proxy on the service's own tokio runtime, sends PING, SET and GET through it as any Redis client would,
//! and stops it.
//!
//! Needs a Redis server to stand in front of:
//! `cargo run -p rkproxy-examples --example embed_proxy -- 127.0.0.1:6379` (the default address).
//! `cargo xtask test` also runs it as a test, against the throw-away Redis it starts.

use std::error::Error;

use rkproxy::config::Config;
use rkproxy::Proxy;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let backend = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6379".to_owned());
    for (command, reply) in serve_through_proxy(&backend, "rkproxy-examples:embed").await? {
        println!("{command} -> {reply}");
    }
    Ok(())
}

/// Starts a proxy in front of the Redis server at `backend`, sends PING, SET `key` and GET `key` through it,
/// and stops it. Returns each command with its reply.
async fn serve_through_proxy(
    backend: &str,
    key: &str,
) -> Result<Vec<(String, String)>, Box<dyn Error>> {
    // Port 0: the system picks a free port, which `local_addr` tells.
    let config = Config::from_toml(&format!(
        r#"
        listen = "127.0.0.1:0"
        default_pool = "main"

        [pools.main]
        kind = "standalone"
        nodes = ["{backend}"]
        "#
    ))?;
    let proxy = Proxy::builder(config).start().await?;

    let client = redis::Client::open(format!("redis://{}/", proxy.local_addr()))?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let commands = [
        ("PING".to_owned(), redis::cmd("PING")),
        // Expires on its own: the example leaves nothing behind.
        (
            format!("SET {key} hello EX 60"),
            redis::cmd("SET")
                .arg(key)
                .arg("hello")
                .arg("EX")
                .arg(60)
                .clone(),
        ),
        (format!("GET {key}"), redis::cmd("GET").arg(key).clone()),
    ];
    let mut replies = Vec::new();
    for (shown, command) in commands {
        let reply: String = command.query_async(&mut connection).await?;
        replies.push((shown, reply));
    }
    drop(connection);

    proxy.shutdown().await;
    Ok(replies)
}

#[cfg(test)]
mod tests {
    /// The example against the standalone Redis that `cargo xtask test` starts (`RKPROXY_TEST_REDIS`).
    #[tokio::test]
    async fn embedded_proxy_answers_ping_set_get() {
        let backend = std::env::var("RKPROXY_TEST_REDIS").expect(
            "RKPROXY_TEST_REDIS is not set: run this test with `cargo xtask test`, which starts Redis",
        );
        let key = format!("rkproxy-examples:embed:{}", std::process::id());
        let replies = super::serve_through_proxy(&backend, &key)
            .await
            .expect("the embedded proxy serves the commands");
        let replies: Vec<&str> = replies.iter().map(|(_, reply)| reply.as_str()).collect();
        assert_eq!(replies, ["PONG", "OK", "hello"]);
    }
}
