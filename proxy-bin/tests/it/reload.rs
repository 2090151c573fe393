//! Hot reload: `Proxy::reload_from_file`, `RKPROXY RELOAD` and SIGHUP read the configuration file again and
//! apply it whole, or change nothing; clients stay connected. Each test has a proxy and a file of its own. The
//! Kafka test needs the broker (`cargo xtask test` without `--no-kafka`; with it, add `--skip kafka`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rkproxy::config::{CommandLineOverrides, Config};
use rkproxy::Proxy;

use crate::support::*;

/// Starts a proxy from `file`, as the binary does, so that a reload reads the file again.
async fn proxy_from(file: &ConfigFile) -> Proxy {
    let overrides = CommandLineOverrides::default();
    let config = Config::load(Some(&file.path), &overrides).unwrap();
    Proxy::builder(config)
        .reload_source(Some(file.path.clone()), overrides)
        .start()
        .await
        .unwrap()
}

/// A configuration with pools `main` and `side` on the test Redis, an admin tenant `boss`, and `tenants` (TOML
/// tables) after them.
fn with_tenants(tenants: &str) -> String {
    let redis = redis_addr();
    format!(
        "listen = '127.0.0.1:0'\ndefault_pool = 'main'\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['{redis}']\n\
         [pools.side]\nkind = 'standalone'\nnodes = ['{redis}']\n\
         [tenants.boss]\npassword = 'boss-pw'\npool = 'main'\nadmin = true\n\
         {tenants}"
    )
}

const ALPHA: &str =
    "[tenants.alpha]\npassword = 'alpha-pw'\npool = 'main'\nkey_prefix = 'alpha:'\n";
const BETA: &str = "[tenants.beta]\npassword = 'beta-pw'\npool = 'main'\nkey_prefix = 'beta:'\n";

/// Sends `commands` (inline, one per line) on a raw connection and reads `lines` reply lines.
async fn raw_exchange(addr: SocketAddr, commands: &'static str, lines: usize) -> Vec<String> {
    blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(commands.as_bytes());
        (0..lines).map(|_| raw.read_line()).collect()
    })
    .await
}

/// `RKPROXY RELOAD` as the admin tenant; the reply line.
async fn reload_command(addr: SocketAddr) -> String {
    raw_exchange(addr, "AUTH boss-pw\r\nRKPROXY RELOAD\r\n", 2)
        .await
        .pop()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tenant_and_a_new_pool_work_at_once() {
    let file = ConfigFile::new(&with_tenants(ALPHA));
    let proxy = proxy_from(&file).await;
    let mut alpha = as_tenant(&proxy, "alpha", "alpha-pw").await;
    let key = unique("reload-new");
    let lines = raw_exchange(proxy.local_addr(), "AUTH alpha-pw\r\nRKPROXY RELOAD\r\n", 2).await;
    assert_eq!(
        lines[1],
        "-NOPERM this user has no permissions to run the 'rkproxy reload' command (tenant 'alpha' is not an admin)\r\n"
    );
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("before")
        .query_async(&mut alpha)
        .await
        .unwrap();

    let redis = redis_addr();
    file.write(&format!(
        "{}{BETA}pools = ['third']\n[pools.third]\nkind = 'standalone'\nnodes = ['{redis}']\n\
         [tenants.alpha]\npassword = 'alpha-pw'\npool = 'main'\nkey_prefix = 'alpha:'\npools = ['third']\n",
        with_tenants("")
    ));
    let reply = reload_command(proxy.local_addr()).await;
    assert!(
        reply.starts_with("+OK configuration generation 1 in force")
            && reply.contains("pools added: third")
            && reply.contains("tenants added: beta")
            && reply.contains("tenants changed: alpha"),
        "{reply}"
    );

    // The new tenant works on a new connection, at once.
    let mut beta = as_tenant(&proxy, "beta", "beta-pw").await;
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("beta's")
        .query_async(&mut beta)
        .await
        .unwrap();
    // The connection opened before the reload keeps working, and can use the new pool.
    let value: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut alpha)
        .await
        .unwrap();
    assert_eq!(value, "before");
    let () = redis::cmd("USE")
        .arg("third")
        .query_async(&mut alpha)
        .await
        .unwrap();
    let pool: String = redis::cmd("RKPROXY")
        .arg("POOL")
        .query_async(&mut alpha)
        .await
        .unwrap();
    assert_eq!(pool, "third");
    let value: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut alpha)
        .await
        .unwrap();
    assert_eq!(value, "before", "same Redis, same prefix");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_changes_nothing_and_the_reply_names_the_key() {
    let file = ConfigFile::new(&with_tenants(ALPHA));
    let proxy = proxy_from(&file).await;
    let mut alpha = as_tenant(&proxy, "alpha", "alpha-pw").await;

    // Valid TOML, a new tenant, and one bad value: none of it may apply.
    let side = format!(
        "[pools.side]\nkind = 'standalone'\nnodes = ['{}']",
        redis_addr()
    );
    let bad = with_tenants(&format!("{ALPHA}{BETA}")).replace(
        &side,
        "[pools.side]\nkind = 'standalone'\nnodes = ['nowhere:x']",
    );
    assert_ne!(bad, with_tenants(&format!("{ALPHA}{BETA}")));
    file.write(&bad);
    let reply = reload_command(proxy.local_addr()).await;
    assert!(
        reply.starts_with("-ERR reload refused, nothing changed: config key `pools.side.nodes`"),
        "{reply}"
    );
    let error = proxy.reload_from_file().await.unwrap_err().to_string();
    assert!(error.contains("pools.side.nodes"), "{error}");

    // A key the proxy does not know, and a file that is not TOML.
    file.write(&with_tenants(&format!("{ALPHA}{BETA}lmits = 1\n")));
    let error = proxy.reload_from_file().await.unwrap_err().to_string();
    assert!(error.contains("lmits"), "{error}");
    file.write("default_pool = [");
    assert!(proxy.reload_from_file().await.is_err());

    // The old configuration still serves: beta does not exist, alpha works, new connections too.
    let lines = raw_exchange(
        proxy.local_addr(),
        "AUTH beta-pw\r\nAUTH alpha-pw\r\nPING\r\n",
        3,
    )
    .await;
    assert_eq!(
        lines,
        [
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
            "+OK\r\n",
            "+PONG\r\n"
        ]
    );
    let pong: String = redis::cmd("PING").query_async(&mut alpha).await.unwrap();
    assert_eq!(pong, "PONG");

    // Fixed, the same file applies.
    file.write(&with_tenants(&format!("{ALPHA}{BETA}")));
    let report = proxy.reload_from_file().await.unwrap();
    assert_eq!(
        (report.generation, report.tenants_added.as_slice()),
        (1, &["beta".to_owned()][..])
    );
    proxy.shutdown().await;
}

/// Turning tenants on (clients connected without AUTH) or moving an auto-assigned tenant's db is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_tenants_on_or_moving_an_auto_db_is_refused() {
    let without_tenants = with_tenants("").replace(
        "[tenants.boss]\npassword = 'boss-pw'\npool = 'main'\nadmin = true\n",
        "",
    );
    let file = ConfigFile::new(&without_tenants);
    let proxy = proxy_from(&file).await;
    file.write(&with_tenants(ALPHA));
    let error = proxy.reload_from_file().await.unwrap_err().to_string();
    assert!(
        error.starts_with("config key `tenants`: turning tenants on or off needs a restart"),
        "{error}"
    );
    let lines = raw_exchange(proxy.local_addr(), "PING\r\n", 1).await;
    assert_eq!(lines, ["+PONG\r\n"], "still no AUTH needed");
    proxy.shutdown().await;

    let auto = "[tenants.zed]\npassword = 'zed-pw'\npool = 'main'\ndb = 'auto'\n";
    let file = ConfigFile::new(&with_tenants(auto));
    let proxy = proxy_from(&file).await;
    // A new auto tenant whose name sorts first would take zed's db.
    file.write(&with_tenants(&format!(
        "{auto}[tenants.abe]\npassword = 'abe-pw'\npool = 'main'\ndb = 'auto'\n"
    )));
    let reply = reload_command(proxy.local_addr()).await;
    assert!(
        reply.starts_with("-ERR reload refused, nothing changed: config key `tenants.zed.db`"),
        "{reply}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_tenant_gets_a_clear_error_on_its_next_command() {
    let file = ConfigFile::new(&with_tenants(&format!("{ALPHA}{BETA}")));
    let proxy = proxy_from(&file).await;
    let addr = proxy.local_addr();
    let (mut raw, first) = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(b"AUTH beta-pw\r\nPING\r\n");
        let first = [raw.read_line(), raw.read_line()];
        (raw, first)
    })
    .await;
    assert_eq!(first, ["+OK\r\n", "+PONG\r\n"]);
    let mut alpha = as_tenant(&proxy, "alpha", "alpha-pw").await;

    file.write(&with_tenants(ALPHA));
    let report = proxy.reload_from_file().await.unwrap();
    assert_eq!(report.tenants_removed, ["beta"]);

    let (reply, closed) = blocking(move || {
        raw.send(b"PING\r\n");
        let reply = raw.read_line();
        (reply, raw.is_closed())
    })
    .await;
    assert_eq!(
        reply,
        "-ERR tenant 'beta' was removed by a configuration reload\r\n"
    );
    assert!(closed, "the removed tenant's connection is closed");
    let pong: String = redis::cmd("PING").query_async(&mut alpha).await.unwrap();
    assert_eq!(pong, "PONG", "other tenants keep their connections");
    let lines = raw_exchange(addr, "AUTH beta-pw\r\n", 1).await;
    assert_eq!(
        lines,
        ["-WRONGPASS invalid username-password pair or user is disabled.\r\n"]
    );
    proxy.shutdown().await;
}

/// A subscriber owes nothing between messages: a removed tenant's subscriber gets the error at its next message
/// and is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_tenants_subscriber_is_closed_with_the_error() {
    let file = ConfigFile::new(&with_tenants(&format!("{ALPHA}{BETA}")));
    let proxy = proxy_from(&file).await;
    let addr = proxy.local_addr();
    let channel = unique("reload-channel");
    let subscribe = format!("AUTH beta-pw\r\nSUBSCRIBE {channel}\r\n");
    let (mut raw, confirmation) = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(subscribe.as_bytes());
        let lines: Vec<String> = (0..7).map(|_| raw.read_line()).collect();
        (raw, lines)
    })
    .await;
    assert_eq!(confirmation[0], "+OK\r\n");
    assert_eq!(confirmation[1..3], ["*3\r\n", "$9\r\n"]);
    assert_eq!(confirmation[3], "subscribe\r\n");

    file.write(&with_tenants(ALPHA));
    proxy.reload_from_file().await.unwrap();
    // The next message wakes the subscriber (its channel carries the tenant's prefix at the backend). The session
    // may also have woken for another reason and closed already: then nobody receives it, and the error line was
    // written anyway.
    let mut publisher = direct(&redis_addr(), 0).await;
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg(format!("beta:{channel}"))
        .arg("after the reload")
        .query_async(&mut publisher)
        .await
        .unwrap();
    assert!(receivers <= 1, "{receivers} receivers");
    let (lines, closed) = blocking(move || {
        let mut lines = Vec::new();
        while lines.len() < 20 {
            let line = raw.read_line();
            let done = line.is_empty() || line.starts_with('-');
            lines.push(line);
            if done {
                break;
            }
        }
        (lines, raw.is_closed())
    })
    .await;
    assert_eq!(
        lines.last().map(String::as_str),
        Some("-ERR tenant 'beta' was removed by a configuration reload\r\n"),
        "{lines:?}"
    );
    assert!(closed);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_password_is_asked_only_of_new_connections() {
    let file = ConfigFile::new(&with_tenants(ALPHA));
    let proxy = proxy_from(&file).await;
    let mut open = as_tenant(&proxy, "alpha", "alpha-pw").await;
    let key = unique("reload-password");

    file.write(&with_tenants(&ALPHA.replace("alpha-pw", "alpha-new-pw")));
    let report = proxy.reload_from_file().await.unwrap();
    assert_eq!(report.tenants_changed, ["alpha"]);

    // The open connection keeps working, with its tenant's prefix.
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("kept")
        .query_async(&mut open)
        .await
        .unwrap();
    let value: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut open)
        .await
        .unwrap();
    assert_eq!(value, "kept");
    let mut direct_redis = direct(&redis_addr(), 0).await;
    let stored: String = redis::cmd("GET")
        .arg(format!("alpha:{key}"))
        .query_async(&mut direct_redis)
        .await
        .unwrap();
    assert_eq!(stored, "kept");

    // A new connection needs the new password.
    let lines = raw_exchange(
        proxy.local_addr(),
        "AUTH alpha-pw\r\nAUTH alpha-new-pw\r\nPING\r\n",
        3,
    )
    .await;
    assert_eq!(
        lines,
        [
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
            "+OK\r\n",
            "+PONG\r\n"
        ]
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_pool_gives_its_clients_a_clear_error_until_they_move() {
    let redis = redis_addr();
    let both = format!(
        "listen = '127.0.0.1:0'\ndefault_pool = 'main'\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['{redis}']\n\
         [pools.side]\nkind = 'standalone'\nnodes = ['{redis}']\n"
    );
    let file = ConfigFile::new(&both);
    let proxy = proxy_from(&file).await;
    let addr = proxy.local_addr();
    let (mut raw, first) = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(b"USE side\r\nPING\r\n");
        let first = [raw.read_line(), raw.read_line()];
        (raw, first)
    })
    .await;
    assert_eq!(first, ["+OK\r\n", "+PONG\r\n"]);

    file.write(&both.replace("[pools.side]", "[pools.gone]"));
    let report = proxy.reload_from_file().await.unwrap();
    assert_eq!(
        (report.pools_removed, report.pools_added),
        (vec!["side".to_owned()], vec!["gone".to_owned()])
    );

    let lines = blocking(move || {
        raw.send(b"PING\r\nGET k\r\nUSE main\r\nPING\r\n");
        (0..4).map(|_| raw.read_line()).collect::<Vec<_>>()
    })
    .await;
    let error = "-ERR pool 'side' was removed by a configuration reload; USE another pool\r\n";
    assert_eq!(lines, [error, error, "+OK\r\n", "+PONG\r\n"]);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_and_worker_threads_need_a_restart_and_the_rest_applies() {
    let file = ConfigFile::new(&with_tenants(ALPHA));
    let proxy = proxy_from(&file).await;
    let moved = with_tenants(&format!("{ALPHA}{BETA}")).replace(
        "listen = '127.0.0.1:0'",
        "listen = '127.0.0.1:1'\nworker_threads = 3",
    );
    file.write(&moved);
    let reply = reload_command(proxy.local_addr()).await;
    assert!(
        reply.ends_with(
            "tenants added: beta; not applied, needs a restart: listen, worker_threads\r\n"
        ),
        "{reply}"
    );
    let lines = raw_exchange(proxy.local_addr(), "AUTH beta-pw\r\n", 1).await;
    assert_eq!(lines, ["+OK\r\n"]);
    proxy.shutdown().await;
}

/// Pools whose settings did not change keep their backend connections; a changed pool gets new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_pool_keeps_its_backend_connections() {
    let redis = OwnRedis::start(&[]);
    let config = |extra: &str| {
        format!(
            "listen = '127.0.0.1:0'\ndefault_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{}']\n{extra}",
            redis.addr()
        )
    };
    let file = ConfigFile::new(&config(""));
    let proxy = proxy_from(&file).await;
    let mut client = client(&proxy).await;
    let mut watcher = direct(&redis.addr(), 0).await;
    let backend_ids = |list: String| {
        let mut ids: Vec<String> = list
            .lines()
            .filter(|line| !line.contains("cmd=client|list"))
            .filter_map(|line| line.split(' ').next().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    };
    let () = redis::cmd("SET")
        .arg("k")
        .arg("1")
        .query_async(&mut client)
        .await
        .unwrap();
    let before = backend_ids(
        redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut watcher)
            .await
            .unwrap(),
    );
    assert_eq!(before.len(), 1, "{before:?}");

    // Only the idle timeout changes: the pool is kept.
    file.write(&config("[timeouts]\nidle_ms = 600000\n"));
    let report = proxy.reload_from_file().await.unwrap();
    assert!(report.pools_changed.is_empty(), "{report:?}");
    let () = redis::cmd("SET")
        .arg("k")
        .arg("2")
        .query_async(&mut client)
        .await
        .unwrap();
    let kept = backend_ids(
        redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut watcher)
            .await
            .unwrap(),
    );
    assert_eq!(kept, before);

    // The pool's own settings change: it is rebuilt, and the client moves to a new backend connection.
    file.write(
        &config("[timeouts]\nidle_ms = 600000\n")
            .replace("nodes =", "connections_per_node = 2\nnodes ="),
    );
    let report = proxy.reload_from_file().await.unwrap();
    assert_eq!(report.pools_changed, ["main"]);
    let value: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut client)
        .await
        .unwrap();
    assert_eq!(value, "2");
    let after = backend_ids(
        redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut watcher)
            .await
            .unwrap(),
    );
    assert!(
        after.iter().any(|id| !before.contains(id)),
        "{before:?} {after:?}"
    );
    proxy.shutdown().await;
}

/// What each traffic client does per round: a pipeline whose every reply it checks.
async fn checked_round(
    connection: &mut redis::aio::MultiplexedConnection,
    counter: &str,
    value_key: &str,
    round: i64,
) -> Result<(), String> {
    let value = format!("value-{round}");
    let mut pipe = redis::pipe();
    for _ in 0..5 {
        pipe.cmd("INCR").arg(counter);
    }
    pipe.cmd("SET").arg(value_key).arg(&value).ignore();
    pipe.cmd("GET").arg(value_key);
    pipe.cmd("MGET").arg(counter).arg(value_key);
    let (a, b, c, d, e, got, both): (i64, i64, i64, i64, i64, String, Vec<String>) = pipe
        .query_async(connection)
        .await
        .map_err(|error| format!("round {round}: {error}"))?;
    let base = round * 5;
    let expected = (base + 1, base + 2, base + 3, base + 4, base + 5);
    if (a, b, c, d, e) != expected || got != value || both != [(base + 5).to_string(), value] {
        return Err(format!(
            "round {round}: got {:?} {got} {both:?}, expected {expected:?}",
            (a, b, c, d, e)
        ));
    }
    Ok(())
}

/// 100 reloads, alternating between two valid files that rebuild every pool (two standalone, one cluster),
/// change a tenant's password and limits and add or remove another tenant, while 6 clients (2 per pool) send
/// pipelines and check every reply. Every tenth reload is an admin's `RKPROXY RELOAD`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_under_pipelined_traffic_lose_no_reply() {
    const CLIENTS: usize = 6;
    const POOLS: [&str; 3] = ["main", "side", "ring"];
    const RELOADS: u64 = 100;
    let seeds = cluster_nodes()
        .iter()
        .map(|node| format!("'{node}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let ring = format!("[pools.ring]\nkind = 'cluster'\nnodes = [{seeds}]\n");
    let app = "[tenants.app]\npassword = 'app-pw'\npool = 'main'\npools = ['side', 'ring']\nkey_prefix = 'app:'\n";
    let first = with_tenants(&format!("{app}{ring}"));
    let second = with_tenants(&format!(
        "{}ops_per_sec = 1000000\n[tenants.extra]\npassword = 'extra-pw'\npool = 'side'\nkey_prefix = 'extra:'\n{ring}",
        app.replace("app-pw", "app-new-pw")
    ))
    .replace("nodes =", "connections_per_node = 2\nnodes =")
    .replace("[pools.main]", "[timeouts]\ncommand_ms = 3000\nslow_command_ms = 30000\n[pools.main]");
    let file = ConfigFile::new(&first);
    let proxy = proxy_from(&file).await;

    let rounds_done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for index in 0..CLIENTS {
        let mut connection = as_tenant(&proxy, "app", "app-pw").await;
        let () = redis::cmd("USE")
            .arg(POOLS[index % POOLS.len()])
            .query_async(&mut connection)
            .await
            .unwrap();
        let (rounds_done, stop) = (Arc::clone(&rounds_done), Arc::clone(&stop));
        let counter = unique("reload-traffic-counter");
        let value_key = unique("reload-traffic-value");
        clients.push(tokio::spawn(async move {
            let mut round = 0;
            while !stop.load(Ordering::Acquire) {
                checked_round(&mut connection, &counter, &value_key, round).await?;
                round += 1;
                rounds_done.fetch_add(1, Ordering::AcqRel);
            }
            Ok::<i64, String>(round)
        }));
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    for reload in 1..=RELOADS {
        // Every reload happens while the clients are busy: wait for a few more rounds first.
        let target = rounds_done.load(Ordering::Acquire) + CLIENTS;
        while rounds_done.load(Ordering::Acquire) < target {
            assert!(
                Instant::now() < deadline,
                "the clients stopped making progress"
            );
            if clients.iter().any(|client| client.is_finished()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        file.write(if reload % 2 == 1 { &second } else { &first });
        if reload % 10 == 0 {
            let reply = reload_command(proxy.local_addr()).await;
            let expected = format!("+OK configuration generation {reload} in force");
            assert!(reply.starts_with(&expected), "{reply}");
        } else {
            let report = proxy.reload_from_file().await.unwrap();
            assert_eq!(report.generation, reload);
            assert_eq!(report.pools_changed, ["main", "ring", "side"]);
        }
    }
    stop.store(true, Ordering::Release);
    for client in clients {
        let rounds = client.await.unwrap().unwrap();
        assert!(rounds > 0);
    }
    // The last file was the first one again: `extra` is gone, and the old password is back.
    let lines = raw_exchange(proxy.local_addr(), "AUTH extra-pw\r\nAUTH app-pw\r\n", 2).await;
    assert_eq!(
        lines,
        [
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
            "+OK\r\n"
        ]
    );
    proxy.shutdown().await;
}

/// Reads one reply line for `command` on a new connection, or `None` if the proxy does not answer yet.
fn try_command(addr: SocketAddr, command: &[u8]) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    std::io::Write::write_all(&mut stream, command).ok()?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stream), &mut line).ok()?;
    Some(line)
}

#[test]
fn sighup_makes_the_binary_read_its_file_again() {
    let file = ConfigFile::new(&with_tenants(ALPHA));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rkproxy"));
    command
        .arg("--config")
        .arg(&file.path)
        .stdout(std::process::Stdio::null());
    let proxy = ReadyProxy::start(command);
    let addr = proxy.listen;
    let deadline = Instant::now() + Duration::from_secs(20);
    assert_eq!(
        try_command(addr, b"AUTH alpha-pw\r\n").as_deref(),
        Some("+OK\r\n"),
        "alpha cannot log in:\n{}",
        proxy.log_text()
    );
    assert_ne!(
        try_command(addr, b"AUTH beta-pw\r\n").as_deref(),
        Some("+OK\r\n"),
        "beta exists before the reload"
    );
    let mut open = RawClient::connect(addr);
    open.send(b"AUTH alpha-pw\r\n");
    assert_eq!(open.read_line(), "+OK\r\n");

    // The file keeps `listen` on port 0, which the reload sees as unchanged.
    file.write(&with_tenants(&format!("{ALPHA}{BETA}")));
    proxy.signal("-HUP");
    // The reload runs in the background of the signal: wait until beta can log in.
    while try_command(addr, b"AUTH beta-pw\r\n").as_deref() != Some("+OK\r\n") {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the configuration:\n{}",
            proxy.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    open.send(b"PING\r\n");
    assert_eq!(
        open.read_line(),
        "+PONG\r\n",
        "a connection opened before the reload broke"
    );
}

/// A reload creates a topic and grows another while the client stays connected, and KPOP's cursors (kept in
/// memory) carry over to the rebuilt pool: no record is handed out twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_creates_and_grows_kafka_topics_and_keeps_kpop_cursors() {
    let (kept, added) = (unique_name("reload-kept"), unique_name("reload-added"));
    let topic = |name: &str, partitions: i32| topic_toml(name, partitions, &["*"], &["*"]);
    let config = |topics: String| {
        format!(
            "listen = '127.0.0.1:0'\ndefault_pool = 'events'\n{}",
            kafka_pool_toml(&kafka_addr(), "", &topics)
        )
    };
    let file = ConfigFile::new(&config(topic(&kept, 1)));
    let proxy = proxy_from(&file).await;
    let mut connection = client(&proxy).await;
    assert_eq!(
        wait_serving(&mut connection, &kept, Retry::WhileUnavailable).await,
        [0]
    );
    for value in ["first", "second"] {
        let _: (i64, i64) = redis::cmd("KPUSH")
            .arg(&kept)
            .arg(0)
            .arg(value)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    assert_eq!(
        kpop(&mut connection, &kept).await,
        Some((0, 0, b"first".to_vec()))
    );

    file.write(&config(format!("{}{}", topic(&kept, 2), topic(&added, 1))));
    let report = proxy.reload_from_file().await.unwrap();
    assert_eq!(report.pools_changed, ["events"]);

    assert_eq!(
        wait_serving(&mut connection, &added, Retry::WhileUnavailable).await,
        [0]
    );
    assert_eq!(
        wait_serving(&mut connection, &kept, Retry::WhileUnavailable).await,
        [0, 1]
    );
    assert_eq!(
        kpop(&mut connection, &kept).await,
        Some((0, 1, b"second".to_vec())),
        "the cursor carried over"
    );
    assert_eq!(kpush(&mut connection, &added, "new").await, (0, 0));
    proxy.shutdown().await;
}
