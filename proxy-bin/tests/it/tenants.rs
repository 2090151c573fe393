//! Tenants through the proxy: AUTH, rights, db and key-prefix isolation, limits, USE.

mod acl_users;
mod hardening;
mod hostile;
mod limits_store;

use std::time::{Duration, Instant};

use redis::AsyncCommands;

use crate::support::*;

/// A proxy with two pools (both on the test Redis) and a set of tenants.
async fn tenant_proxy(extra: &str) -> rkproxy::Proxy {
    let redis = redis_addr();
    start_proxy_toml(&format!(
        "default_pool = 'main'\n\
         [timeouts]\nauth_ms = 400\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['{redis}']\n\
         [pools.other]\nkind = 'standalone'\nnodes = ['{redis}']\n\
         [tenants.alpha]\npassword = 'alpha-pw'\npool = 'main'\nkey_prefix = 'alpha:'\npools = ['other']\n\
         [tenants.beta]\npassword = 'sha256:{beta_hash}'\npool = 'main'\nkey_prefix = 'beta:'\n\
         [tenants.reader]\npassword = 'reader-pw'\npool = 'main'\nkey_prefix = 'alpha:'\nreadonly = true\n\
         [tenants.boss]\npassword = 'boss-pw'\npool = 'main'\nadmin = true\ndb = 9\n\
         [tenants.own]\npassword = 'own-pw'\npool = 'main'\ndb = 'auto'\n\
         {extra}\n",
        // sha256("beta-pw")
        beta_hash = "81a80357fd6a9d82c592a32b33e1ecc2a15032504f442d7a4ca9fbc29326d4e0",
    ))
    .await
}

fn raw_lines(addr: std::net::SocketAddr, send: &'static [u8], lines: usize) -> Vec<String> {
    let mut raw = RawClient::connect(addr);
    raw.send(send);
    (0..lines).map(|_| raw.read_line()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_rules() {
    let proxy = tenant_proxy("").await;
    let addr = proxy.local_addr();
    let lines = blocking(move || {
        raw_lines(
            addr,
            b"GET k\r\nPING\r\nAUTH nope\r\nAUTH alpha wrong\r\nAUTH alpha-pw\r\nAUTH alpha alpha-pw\r\nAUTH default alpha-pw\r\nSET k 1\r\n",
            8,
        )
    })
    .await;
    assert_eq!(lines[0], "-NOAUTH Authentication required.\r\n");
    assert_eq!(lines[1], "+PONG\r\n");
    assert_eq!(
        lines[2],
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        lines[3],
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(&lines[4..], ["+OK\r\n", "+OK\r\n", "+OK\r\n", "+OK\r\n"]);
    // HELLO 3 AUTH user pass.
    let lines = blocking(move || raw_lines(addr, b"HELLO 3 AUTH alpha alpha-pw\r\n", 1)).await;
    assert_eq!(lines[0], "%8\r\n");
    // An idle unauthenticated connection is closed after timeouts.auth_ms.
    let closed = blocking(move || {
        let mut raw = RawClient::connect(addr);
        let started = Instant::now();
        let closed = raw.is_closed();
        (closed, started.elapsed())
    })
    .await;
    assert!(closed.0, "closed");
    assert!(
        closed.1 >= Duration::from_millis(300) && closed.1 < Duration::from_secs(3),
        "{:?}",
        closed.1
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_prefix_isolates_tenants() {
    let proxy = tenant_proxy("").await;
    let mut alpha = as_tenant(&proxy, "alpha", "alpha-pw").await;
    let mut beta = as_tenant(&proxy, "beta", "beta-pw").await;
    let mut direct = direct(&redis_addr(), 0).await;
    let key = unique("secret");
    let _: () = alpha.set(&key, "alpha-data").await.unwrap();
    let _: () = alpha.hset(format!("{key}:h"), "f", "v").await.unwrap();
    let _: () = alpha.rpush(format!("{key}:l"), "x").await.unwrap();
    // Stored under the prefix on the backend.
    let stored: String = direct.get(format!("alpha:{key}")).await.unwrap();
    assert_eq!(stored, "alpha-data");

    // Beta cannot read, change or even see alpha's keys, whatever command it uses.
    let got: Option<String> = beta.get(&key).await.unwrap();
    assert_eq!(got, None);
    let exists: i64 = beta.exists(&key).await.unwrap();
    assert_eq!(exists, 0);
    let values: Vec<Option<String>> = beta.mget(&[&key, &format!("{key}:h")]).await.unwrap();
    assert_eq!(values, vec![None, None]);
    let deleted: i64 = beta
        .del(&[&key, &format!("{key}:h"), &format!("{key}:l")])
        .await
        .unwrap();
    assert_eq!(deleted, 0);
    let _: () = beta.set(&key, "beta-data").await.unwrap();
    let renamed = redis::cmd("RENAME")
        .arg(format!("{key}:h"))
        .arg("stolen")
        .query_async::<()>(&mut beta)
        .await;
    assert!(renamed.is_err(), "no such key for beta");
    let hash: std::collections::HashMap<String, String> =
        beta.hgetall(format!("{key}:h")).await.unwrap();
    assert!(hash.is_empty());
    let popped: Option<String> = beta.lpop(format!("{key}:l"), None).await.unwrap();
    assert_eq!(popped, None);
    let moved: Option<String> = redis::cmd("LMOVE")
        .arg(format!("{key}:l"))
        .arg("mine")
        .arg("LEFT")
        .arg("LEFT")
        .query_async(&mut beta)
        .await
        .unwrap();
    assert_eq!(moved, None);
    let union: Vec<String> = redis::cmd("SUNION")
        .arg(&key)
        .arg("x")
        .query_async(&mut beta)
        .await
        .unwrap_or_default();
    assert!(union.is_empty());
    // Scripts could name any key: on a pool shared with other tenants they are refused
    // (tenant_scripts.rs has the hostile cases).
    let script = redis::cmd("EVAL")
        .arg("return redis.call('GET', KEYS[1])")
        .arg(1)
        .arg(&key)
        .query_async::<Option<String>>(&mut beta)
        .await
        .expect_err("beta shares pool main with alpha");
    assert_eq!(script.code(), Some("NOPERM"), "{script}");
    let dumped: Option<Vec<u8>> = redis::cmd("DUMP")
        .arg(format!("{key}:h"))
        .query_async(&mut beta)
        .await
        .unwrap();
    assert_eq!(dumped, None);
    let kind: String = redis::cmd("TYPE")
        .arg(format!("{key}:l"))
        .query_async(&mut beta)
        .await
        .unwrap();
    assert_eq!(kind, "none");
    let blpop: Option<(String, String)> = redis::cmd("BLPOP")
        .arg(format!("{key}:l"))
        .arg(0.1)
        .query_async(&mut beta)
        .await
        .unwrap();
    assert_eq!(blpop, None);
    let listed: Vec<String> = beta.keys(format!("{key}*")).await.unwrap();
    assert_eq!(
        listed,
        vec![key.clone()],
        "KEYS shows beta's own key only, without the prefix"
    );
    let mut scanned: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut beta)
            .await
            .unwrap();
        scanned.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert!(scanned.contains(&key));
    assert!(
        scanned
            .iter()
            .all(|k| !k.starts_with("alpha:") && !k.starts_with("beta:")),
        "SCAN shows no prefixes"
    );
    assert!(
        !scanned.contains(&format!("{key}:h")),
        "SCAN shows beta's keys only"
    );
    let random = redis::cmd("RANDOMKEY")
        .query_async::<Option<String>>(&mut beta)
        .await
        .unwrap_err();
    assert!(random.to_string().contains("RANDOMKEY"), "{random}");

    // Alpha's data is untouched; its own BLPOP reply names the key without the prefix.
    let still: String = alpha.get(&key).await.unwrap();
    assert_eq!(still, "alpha-data");
    let popped: Option<(String, String)> = redis::cmd("BLPOP")
        .arg(format!("{key}:l"))
        .arg(1)
        .query_async(&mut alpha)
        .await
        .unwrap();
    assert_eq!(popped, Some((format!("{key}:l"), "x".to_owned())));
    let _: i64 = alpha.del(&[&key, &format!("{key}:h")]).await.unwrap();
    let _: i64 = beta.del(&key).await.unwrap();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rights_readonly_and_admin() {
    let proxy = tenant_proxy("").await;
    let mut reader = as_tenant(&proxy, "reader", "reader-pw").await;
    let mut alpha = as_tenant(&proxy, "alpha", "alpha-pw").await;
    let mut boss = as_tenant(&proxy, "boss", "boss-pw").await;
    let key = unique("ro");
    let _: () = alpha.set(&key, "shared-prefix").await.unwrap();
    let value: String = reader.get(&key).await.unwrap();
    assert_eq!(
        value, "shared-prefix",
        "the read-only tenant reads alpha's prefix"
    );
    let error = reader
        .set::<_, _, ()>(&key, "x")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("NOPERM") || error.contains("permission"),
        "{error}"
    );
    assert!(
        error.contains("'set'") && error.contains("read-only"),
        "{error}"
    );
    for command in [
        vec!["FLUSHALL"],
        vec!["CONFIG", "GET", "maxmemory"],
        vec!["DEBUG", "SLEEP", "0"],
    ] {
        let mut cmd = redis::cmd(command[0]);
        cmd.arg(&command[1..]);
        let error = cmd
            .query_async::<redis::Value>(&mut alpha)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("not an admin"), "{command:?}: {error}");
    }
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async(&mut boss)
        .await
        .unwrap();
    assert_eq!(config[0], "maxmemory");
    let _: i64 = alpha.del(&key).await.unwrap();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_works_in_its_own_db() {
    let proxy = tenant_proxy("").await;
    let mut boss = as_tenant(&proxy, "boss", "boss-pw").await;
    let mut own = as_tenant(&proxy, "own", "own-pw").await;
    let key = unique("db");
    let _: () = boss.set(&key, "in-9").await.unwrap();
    let mut direct9 = direct(&redis_addr(), 9).await;
    let stored: String = direct9.get(&key).await.unwrap();
    assert_eq!(stored, "in-9");
    // The auto tenant gets a db of its own, shown by the admin command.
    let assignments: Vec<String> = redis::cmd("RKPROXY")
        .arg("TENANTS")
        .query_async(&mut boss)
        .await
        .unwrap();
    let own_line = assignments
        .iter()
        .find(|l| l.starts_with("tenant=own "))
        .unwrap();
    let own_db: u32 = own_line
        .split("db=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        own_line.contains("(auto)") && own_db != 0 && own_db != 9,
        "{own_line}"
    );
    let _: () = own.set(&key, "auto").await.unwrap();
    let mut direct_own = direct(&redis_addr(), own_db).await;
    let stored: String = direct_own.get(&key).await.unwrap();
    assert_eq!(stored, "auto");
    // SELECT of another db is refused; of its own db, allowed.
    let error = redis::cmd("SELECT")
        .arg(0)
        .query_async::<()>(&mut own)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains(&format!("works in db {own_db}")), "{error}");
    let _: () = redis::cmd("SELECT")
        .arg(own_db)
        .query_async(&mut own)
        .await
        .unwrap();
    let mut alpha = as_tenant(&proxy, "alpha", "alpha-pw").await;
    let error = redis::cmd("RKPROXY")
        .arg("TENANTS")
        .query_async::<Vec<String>>(&mut alpha)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("not an admin"), "{error}");
    let _: i64 = boss.del(&key).await.unwrap();
    let _: i64 = own.del(&key).await.unwrap();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_switches_this_connection_only() {
    let proxy = tenant_proxy("").await;
    let mut first = as_tenant(&proxy, "alpha", "alpha-pw").await;
    let mut second = as_tenant(&proxy, "alpha", "alpha-pw").await;
    let _: () = redis::cmd("USE")
        .arg("other")
        .query_async(&mut first)
        .await
        .unwrap();
    let pool: String = redis::cmd("RKPROXY")
        .arg("POOL")
        .query_async(&mut first)
        .await
        .unwrap();
    assert_eq!(pool, "other");
    let pool: String = redis::cmd("RKPROXY")
        .arg("POOL")
        .query_async(&mut second)
        .await
        .unwrap();
    assert_eq!(
        pool, "main",
        "the other connection of the same tenant stays"
    );
    let mut beta = as_tenant(&proxy, "beta", "beta-pw").await;
    let error = redis::cmd("USE")
        .arg("other")
        .query_async::<()>(&mut beta)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("may not use pool 'other'"), "{error}");
    let mut boss = as_tenant(&proxy, "boss", "boss-pw").await;
    let _: () = redis::cmd("USE")
        .arg("other")
        .query_async(&mut boss)
        .await
        .unwrap();
    let error = redis::cmd("USE")
        .arg("nowhere")
        .query_async::<()>(&mut boss)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown pool"), "{error}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_limits() {
    let proxy = tenant_proxy(
        "[tenants.small]\npassword = 'small-pw'\npool = 'main'\nkey_prefix = 'small:'\n\
         ops_per_sec = 20\nlimit_wait_ms = 0\nmax_request_bytes = 1000\nmax_connections = 2\ndefault_ttl = 60\n",
    )
    .await;
    let mut small = as_tenant(&proxy, "small", "small-pw").await;
    // Over ops_per_sec with no waiting allowed: refused with a clear error, the connection stays.
    let mut refused = 0;
    for _ in 0..60 {
        match redis::cmd("PING").query_async::<String>(&mut small).await {
            Ok(_) => {}
            Err(error) => {
                assert!(
                    error
                        .to_string()
                        .contains("tenant 'small' is over its ops_per_sec limit"),
                    "{error}"
                );
                refused += 1;
            }
        }
    }
    assert!(refused >= 20, "only {refused} of 60 refused");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // An oversized request is refused before it reaches Redis; the connection stays usable.
    let key = unique("big");
    let error = small
        .set::<_, _, ()>(&key, "x".repeat(2000))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("over tenant 'small' limit of 1000 bytes"),
        "{error}"
    );
    let _: () = small.set(&key, "small").await.unwrap();
    // default_ttl: a SET without expiry gets one.
    let mut direct = direct(&redis_addr(), 0).await;
    let ttl: i64 = direct.ttl(format!("small:{key}")).await.unwrap();
    assert!(ttl > 0 && ttl <= 60, "ttl {ttl}");
    // max_connections = 2: the third connection's AUTH is refused.
    let _second = as_tenant(&proxy, "small", "small-pw").await;
    let addr = proxy.local_addr();
    let (line, closed) = blocking(move || {
        let mut raw = RawClient::connect(addr);
        raw.send(b"AUTH small small-pw\r\n");
        (raw.read_line(), raw.is_closed())
    })
    .await;
    assert_eq!(
        line,
        "-ERR tenant 'small' has too many connections (max 2)\r\n"
    );
    assert!(closed, "the connection over the limit is closed");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_limit_delays_briefly_before_refusing() {
    let proxy = tenant_proxy(
        "[tenants.paced]\npassword = 'paced-pw'\npool = 'main'\nops_per_sec = 50\nlimit_wait_ms = 2000\n",
    )
    .await;
    let mut paced = as_tenant(&proxy, "paced", "paced-pw").await;
    let started = Instant::now();
    for _ in 0..100 {
        let _: String = redis::cmd("PING").query_async(&mut paced).await.unwrap();
    }
    let elapsed = started.elapsed();
    // 100 commands at 50 per second (with a one-second burst): delayed, not refused.
    assert!(
        elapsed >= Duration::from_millis(700),
        "not paced: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    proxy.shutdown().await;
}

/// Every key-taking command of the command table, sent through the proxy by a prefixed tenant that names
/// another tenant's keys (`t2:...`), must neither read nor change them. It lists every key of its db (`KEYS *`)
/// and flushes it, so it runs on a redis-server of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_taking_command_reaches_another_tenants_keys() {
    const DB: u32 = 12;
    let backend = blocking(|| OwnRedis::start(&[])).await;
    let redis = backend.addr();
    let proxy = start_proxy_toml(&format!(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{redis}']\n\
         [tenants.t1]\npassword = 't1-pw'\npool = 'main'\nkey_prefix = 't1:'\ndb = {DB}\n"
    ))
    .await;
    let mut direct = direct(&redis, DB).await;
    let mut victims: Vec<String> = (0..20).map(|i| format!("t2:k{i}")).collect();
    victims.extend(
        [
            "t2:s1", "t2:s2", "t2:list", "t2:geo", "t2:dst", "t2:a", "t2:b", "t2:k",
        ]
        .map(String::from),
    );
    for key in &victims {
        let _: () = direct.set(key, "victim-secret").await.unwrap();
    }
    let dumps_before: Vec<Vec<u8>> = {
        let mut dumps = Vec::new();
        for key in &victims {
            dumps.push(
                redis::cmd("DUMP")
                    .arg(key)
                    .query_async(&mut direct)
                    .await
                    .unwrap(),
            );
        }
        dumps
    };

    let specs: Vec<_> = tenant_policy::testing::every_spec()
        .into_iter()
        .filter(|spec| tenant_policy::testing::has_real_keys(spec))
        .collect();
    let addr = proxy.local_addr();
    let names: Vec<&str> = specs.iter().map(|spec| spec.name).collect();
    let leaks = blocking(move || {
        let mut leaks = Vec::new();
        for spec in &specs {
            let args = tenant_policy::testing::sample_args(spec);
            let mut request = format!("*{}\r\n", args.len()).into_bytes();
            for arg in &args {
                request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
                request.extend_from_slice(arg);
                request.extend_from_slice(b"\r\n");
            }
            let mut raw = RawClient::connect(addr);
            raw.send(b"AUTH t1 t1-pw\r\n");
            assert_eq!(raw.read_line(), "+OK\r\n");
            raw.send(&request);
            raw.send(b"PING\r\n");
            // Everything up to the PONG is this command's reply.
            let mut reply = String::new();
            loop {
                let line = raw.read_line();
                assert!(
                    !line.is_empty(),
                    "{}: connection closed or timed out",
                    spec.name
                );
                if line == "+PONG\r\n" {
                    break;
                }
                reply.push_str(&line);
            }
            if reply.contains("victim-secret") {
                leaks.push(format!("{}: {reply}", spec.name));
            }
        }
        leaks
    })
    .await;
    assert!(
        leaks.is_empty(),
        "replies leaked another tenant's data: {leaks:?}"
    );
    assert!(names.len() > 150, "only {} commands sent", names.len());

    // Nothing of the other tenant changed, and no key outside the tenant's prefix appeared.
    for (key, before) in victims.iter().zip(&dumps_before) {
        let after: Vec<u8> = redis::cmd("DUMP")
            .arg(key)
            .query_async(&mut direct)
            .await
            .unwrap();
        assert_eq!(&after, before, "{key} was changed");
    }
    let outside: Vec<String> = direct.keys("*").await.unwrap();
    let mut outside: Vec<String> = outside
        .into_iter()
        .filter(|k| !k.starts_with("t1:"))
        .collect();
    outside.sort();
    let mut expected = victims.clone();
    expected.sort();
    assert_eq!(outside, expected, "keys outside the tenant's prefix");
    let _: () = redis::cmd("FLUSHDB")
        .query_async(&mut direct)
        .await
        .unwrap();
    proxy.shutdown().await;
}

/// A request that waits behind earlier replies (a barrier: SUBSCRIBE, BLPOP, SELECT, ...) was policed when it
/// was read; it must not be policed again when it runs, or its keys and channels get the prefix twice (and it is
/// charged twice against the tenant's budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_behind_a_barrier_gets_the_prefix_once() {
    let proxy = tenant_proxy("").await;
    let addr = proxy.local_addr();
    let channel = unique("barrier-channel");
    let list = unique("barrier-list");
    let mut direct = direct(&redis_addr(), 0).await;
    let _: () = direct.rpush(format!("alpha:{list}"), "item").await.unwrap();
    let (channel_sent, list_sent) = (channel.clone(), list.clone());
    let redis = redis_addr();
    let (replies, channels) = blocking(move || {
        let mut raw = RawClient::connect(addr);
        // AUTH's reply is still owed when BLPOP (a move to a dedicated connection) is read.
        let pipeline =
            format!("AUTH alpha alpha-pw\r\nBLPOP {list_sent} 1\r\nSUBSCRIBE {channel_sent}\r\n");
        raw.send(pipeline.as_bytes());
        // +OK, BLPOP's array (5 lines), SUBSCRIBE's confirmation (6 lines).
        let replies: Vec<String> = (0..12).map(|_| raw.read_line()).collect();
        // Asked while the client is still subscribed.
        let channels = redis_cli_at(&redis, &["PUBSUB", "CHANNELS", &format!("*{channel_sent}")]);
        (replies, channels)
    })
    .await;
    assert_eq!(replies[0], "+OK\r\n", "{replies:?}");
    // BLPOP found the list under the prefix given once: `alpha:<list>`, not `alpha:alpha:<list>`.
    assert_eq!(replies[1], "*2\r\n", "{replies:?}");
    assert_eq!(replies[3], format!("{list}\r\n"), "{replies:?}");
    assert_eq!(replies[5], "item\r\n", "{replies:?}");
    assert_eq!(replies[7], "$9\r\n", "{replies:?}");
    assert_eq!(channels.trim(), format!("alpha:{channel}"));
}
