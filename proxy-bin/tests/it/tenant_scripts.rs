//! Scripts and functions on a pool shared between tenants (issue 12): a hostile tenant must not
//! read or replace another tenant's functions, run its cached scripts, or escape its key prefix
//! or database through a script. Each test has its own redis-server: the function libraries and
//! the script cache are server-wide, and FUNCTION FLUSH empties them for everyone.

use crate::support::*;

const B_LIBRARY: &str =
    "#!lua name=blib\nredis.register_function('bfunc', function(keys, args) return 'b-code' end)";
const HIJACKED_LIBRARY: &str =
    "#!lua name=blib\nredis.register_function('bfunc', function(keys, args) return 'a-code' end)";

/// Tenants `a` and `b` (prefixed) and the admin `boss` on pool `main`; `solo` alone on pool
/// `solo`. Both pools are `redis`.
async fn shared_pool_proxy(redis: &OwnRedis) -> rkproxy::Proxy {
    let addr = redis.addr();
    start_proxy_toml(&format!(
        "default_pool = 'main'\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['{addr}']\n\
         [pools.solo]\nkind = 'standalone'\nnodes = ['{addr}']\n\
         [tenants.a]\npassword = 'a-pw'\npool = 'main'\nkey_prefix = 'a:'\n\
         [tenants.b]\npassword = 'b-pw'\npool = 'main'\nkey_prefix = 'b:'\n\
         [tenants.boss]\npassword = 'boss-pw'\npool = 'main'\nadmin = true\n\
         [tenants.solo]\npassword = 'solo-pw'\npool = 'solo'\nkey_prefix = 's:'\n"
    ))
    .await
}

/// A connection authenticated as `user`, whose password in these tests is `<user>-pw`.
async fn as_user(proxy: &rkproxy::Proxy, user: &str) -> redis::aio::MultiplexedConnection {
    as_tenant(proxy, user, &format!("{user}-pw")).await
}

/// Sends `args` and expects the shared-pool refusal for `command`, for tenant `a` on `main`.
async fn assert_refused(client: &mut redis::aio::MultiplexedConnection, args: &[&str]) {
    let command = args[0].to_ascii_lowercase();
    let command = match args[0].to_ascii_uppercase().as_str() {
        "FUNCTION" | "SCRIPT" => format!("{command}|{}", args[1].to_ascii_lowercase()),
        _ => command,
    };
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    let result: redis::RedisResult<redis::Value> = cmd.query_async(client).await;
    let error = match result {
        Ok(value) => panic!("{args:?} was run: {value:?}"),
        Err(error) => error,
    };
    assert_eq!(error.code(), Some("NOPERM"), "{args:?}: {error}");
    let expected = format!(
        "this user has no permissions to run the '{command}' command (tenant 'a' shares pool \
         'main' with other tenants"
    );
    let detail = error.detail().unwrap_or_default();
    assert!(detail.starts_with(&expected), "{args:?}: {error}");
    assert!(detail.contains("a pool of its own"), "{args:?}: {error}");
}

/// What `bfunc` answers when called on Redis directly: whose code the library holds.
async fn bfunc_directly(redis: &OwnRedis) -> String {
    let mut direct = direct(&redis.addr(), 0).await;
    redis::cmd("FCALL")
        .arg("bfunc")
        .arg(0)
        .query_async(&mut direct)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_read_or_replace_the_functions_of_a_tenant_on_its_pool() {
    let redis = OwnRedis::start(&[]);
    let mut direct = direct(&redis.addr(), 0).await;
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(B_LIBRARY)
        .query_async(&mut direct)
        .await
        .unwrap();
    let proxy = shared_pool_proxy(&redis).await;
    let mut a = as_user(&proxy, "a").await;

    assert_refused(&mut a, &["FUNCTION", "LIST", "WITHCODE"]).await;
    assert_refused(&mut a, &["FUNCTION", "DUMP"]).await;
    assert_refused(&mut a, &["FUNCTION", "LOAD", "REPLACE", HIJACKED_LIBRARY]).await;
    assert_refused(&mut a, &["FCALL", "bfunc", "0"]).await;
    assert_eq!(
        bfunc_directly(&redis).await,
        "b-code",
        "b's library untouched"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_run_scripts_that_escape_its_prefix_or_its_db() {
    let redis = OwnRedis::start(&[]);
    let mut direct0 = direct(&redis.addr(), 0).await;
    let mut direct4 = direct(&redis.addr(), 4).await;
    let _: () = redis::AsyncCommands::set(&mut direct0, "b:secret", "b-data")
        .await
        .unwrap();
    let _: () = redis::AsyncCommands::set(&mut direct4, "k", "db4-data")
        .await
        .unwrap();
    let b_script: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return redis.call('get', 'b:secret')")
        .query_async(&mut direct0)
        .await
        .unwrap();
    let proxy = shared_pool_proxy(&redis).await;
    let mut a = as_user(&proxy, "a").await;

    assert_refused(&mut a, &["EVALSHA", &b_script, "0"]).await;
    assert_refused(&mut a, &["EVALSHA_RO", &b_script, "0"]).await;
    assert_refused(
        &mut a,
        &[
            "EVAL",
            "redis.call('select','4'); return redis.call('get','k')",
            "0",
        ],
    )
    .await;
    assert_refused(
        &mut a,
        &["EVAL_RO", "return redis.call('get','b:secret')", "0"],
    )
    .await;
    assert_refused(
        &mut a,
        &["EVAL", "return redis.call('set','b:secret','stolen')", "0"],
    )
    .await;
    assert_refused(&mut a, &["SCRIPT", "EXISTS", &b_script]).await;

    let secret: String = redis::AsyncCommands::get(&mut direct0, "b:secret")
        .await
        .unwrap();
    assert_eq!(secret, "b-data", "b's key untouched");
    let other_db: String = redis::AsyncCommands::get(&mut direct4, "k").await.unwrap();
    assert_eq!(other_db, "db4-data");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_refused_inside_multi_and_the_transaction_is_aborted() {
    let redis = OwnRedis::start(&[]);
    let mut direct0 = direct(&redis.addr(), 0).await;
    let _: () = redis::AsyncCommands::set(&mut direct0, "b:secret", "b-data")
        .await
        .unwrap();
    let proxy = shared_pool_proxy(&redis).await;
    let mut a = as_user(&proxy, "a").await;

    let _: () = redis::cmd("MULTI").query_async(&mut a).await.unwrap();
    let _: String = redis::cmd("SET")
        .arg("mine")
        .arg("1")
        .query_async(&mut a)
        .await
        .unwrap();
    assert_refused(
        &mut a,
        &["EVAL", "return redis.call('set','b:secret','stolen')", "0"],
    )
    .await;
    let exec: redis::RedisResult<redis::Value> = redis::cmd("EXEC").query_async(&mut a).await;
    let error = exec.expect_err("the transaction is aborted");
    assert_eq!(error.code(), Some("EXECABORT"), "{error}");

    let secret: String = redis::AsyncCommands::get(&mut direct0, "b:secret")
        .await
        .unwrap();
    assert_eq!(secret, "b-data", "b's key untouched");
    let mine: Option<String> = redis::AsyncCommands::get(&mut direct0, "a:mine")
        .await
        .unwrap();
    assert_eq!(mine, None, "nothing of the aborted transaction ran");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_manage_functions_and_a_tenant_alone_on_its_pool_keeps_scripts() {
    let redis = OwnRedis::start(&[]);
    let proxy = shared_pool_proxy(&redis).await;
    let mut boss = as_user(&proxy, "boss").await;
    let loaded: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(B_LIBRARY)
        .query_async(&mut boss)
        .await
        .unwrap();
    assert_eq!(loaded, "blib");
    assert_eq!(bfunc_directly(&redis).await, "b-code");
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut boss)
        .await
        .unwrap();
    let mut direct0 = direct(&redis.addr(), 0).await;
    let libraries: Vec<redis::Value> = redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async(&mut direct0)
        .await
        .unwrap();
    assert!(libraries.is_empty(), "{libraries:?}");

    let mut solo = as_user(&proxy, "solo").await;
    let set: String = redis::cmd("EVAL")
        .arg("return redis.call('set', KEYS[1], ARGV[1])")
        .arg(1)
        .arg("k")
        .arg("by-script")
        .query_async(&mut solo)
        .await
        .unwrap();
    assert_eq!(set, "OK");
    let stored: String = redis::AsyncCommands::get(&mut direct0, "s:k")
        .await
        .unwrap();
    assert_eq!(stored, "by-script", "KEYS are prefixed as before");
    proxy.shutdown().await;
}
