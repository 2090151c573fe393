//! Tenants with a `backend_user` (issue 12): their backend connections log in as a Redis ACL user of their own,
//! so Redis holds their scripts to their keys, channels and commands; the proxy checks the user's rules at start
//! and at reload. Each test has its own servers and creates the ACL users itself.

use redis::AsyncCommands;

use crate::support::*;

/// The ACL rules the README recommends for a prefixed tenant on db 0 of a shared pool.
fn recommended_rules(prefix: &str) -> Vec<String> {
    [
        "on",
        "resetkeys",
        &format!("~{prefix}*"),
        "resetchannels",
        &format!("&{prefix}*"),
        "nocommands",
        "+@all",
        "-@dangerous",
        "+keys",
        "+sort",
        "+sort_ro",
        "-select",
        "-function",
        "-move",
        "-copy",
        "-randomkey",
        "-dbsize",
    ]
    .iter()
    .map(|rule| rule.to_string())
    .collect()
}

/// Creates ACL user `user` with password `<user>-secret` and `rules` on the server at `addr`.
fn create_user(addr: &str, user: &str, rules: &[String]) {
    let password = format!(">{user}-secret");
    let mut args = vec!["ACL", "SETUSER", user, "reset", &password];
    args.extend(rules.iter().map(String::as_str));
    let answer = redis_cli_at(addr, &args);
    assert_eq!(answer.trim(), "OK", "ACL SETUSER {user} on {addr}");
}

/// The `[tenants.*]` tables: `a` (prefix `a:`, ACL user `acl-a`), `b` (prefix `b:`, ACL user `acl-b`), `plain`
/// (prefix `p:`, no ACL user) and the admin `boss`, all on pool `main`.
fn acl_tenants() -> String {
    "[tenants.a]\npassword = 'a-pw'\npool = 'main'\nkey_prefix = 'a:'\n\
     backend_user = 'acl-a'\nbackend_password = 'acl-a-secret'\n\
     [tenants.b]\npassword = 'b-pw'\npool = 'main'\nkey_prefix = 'b:'\n\
     backend_user = 'acl-b'\nbackend_password = 'acl-b-secret'\n\
     [tenants.plain]\npassword = 'plain-pw'\npool = 'main'\nkey_prefix = 'p:'\n\
     [tenants.boss]\npassword = 'boss-pw'\npool = 'main'\nadmin = true\n"
        .to_owned()
}

fn standalone_config(addr: &str, tenants: &str) -> rkproxy::config::Config {
    let toml = format!(
        "listen = '127.0.0.1:0'\ndefault_pool = 'main'\n\
         [big_requests]\nthreshold_bytes = 4096\n\
         [pools.main]\nkind = 'standalone'\nnodes = ['{addr}']\n{tenants}"
    );
    rkproxy::config::Config::from_toml(&toml).expect("test config is valid")
}

/// A redis-server of the test's own with ACL users `acl-a` (with `a_rules`) and `acl-b` (the recommended
/// rules for `b:`), the backend users of [`acl_tenants`].
fn redis_with_acl_users(a_rules: &[String]) -> OwnRedis {
    let redis = OwnRedis::start(&[]);
    create_user(&redis.addr(), "acl-a", a_rules);
    create_user(&redis.addr(), "acl-b", &recommended_rules("b:"));
    redis
}

/// The error of a proxy start from `config` that must be refused; `why` says what should have refused it.
async fn refused_start(config: rkproxy::config::Config, why: &str) -> String {
    match rkproxy::Proxy::builder(config).start().await {
        Ok(proxy) => {
            proxy.shutdown().await;
            panic!("the proxy started although {why}");
        }
        Err(error) => error.to_string(),
    }
}

/// A redis-server with `acl-a` and `acl-b` (the recommended rules) and a proxy with [`acl_tenants`] in front.
async fn acl_proxy() -> (OwnRedis, rkproxy::Proxy) {
    let redis = redis_with_acl_users(&recommended_rules("a:"));
    let proxy = rkproxy::Proxy::builder(standalone_config(&redis.addr(), &acl_tenants()))
        .start()
        .await
        .expect("proxy starts");
    (redis, proxy)
}

/// Runs `EVAL script 0` (or with `keys`) and returns Redis's error text, or panics if it ran.
async fn eval_error(
    client: &mut redis::aio::MultiplexedConnection,
    script: &str,
    keys: &[&str],
) -> String {
    let result: redis::RedisResult<redis::Value> = redis::cmd("EVAL")
        .arg(script)
        .arg(keys.len())
        .arg(keys)
        .query_async(client)
        .await;
    match result {
        Ok(value) => panic!("{script} ran: {value:?}"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_an_acl_tenants_scripts_to_its_keys_on_a_shared_pool() {
    let (redis, proxy) = acl_proxy().await;
    let mut direct = direct(&redis.addr(), 0).await;
    let _: () = direct.set("b:secret", "b-data").await.unwrap();
    let _: () = direct.set("outside", "x").await.unwrap();
    let mut a = as_tenant(&proxy, "a", "a-pw").await;

    // Its own keys, given in KEYS (prefixed by the proxy) or named in the script with the prefix.
    let set: String = redis::cmd("EVAL")
        .arg("return redis.call('set', KEYS[1], ARGV[1])")
        .arg(1)
        .arg("k")
        .arg("mine")
        .query_async(&mut a)
        .await
        .unwrap();
    assert_eq!(set, "OK");
    let got: String = redis::cmd("EVAL")
        .arg("return redis.call('get', 'a:k')")
        .arg(0)
        .query_async(&mut a)
        .await
        .unwrap();
    assert_eq!(got, "mine");
    let stored: String = direct.get("a:k").await.unwrap();
    assert_eq!(stored, "mine");

    // Redis refuses the rest, and its error reaches the client.
    let error = eval_error(&mut a, "return redis.call('get', 'b:secret')", &[]).await;
    assert!(
        error.contains("can't access at least one of the keys"),
        "{error}"
    );
    let error = eval_error(&mut a, "return redis.call('get', 'outside')", &[]).await;
    assert!(
        error.contains("can't access at least one of the keys"),
        "{error}"
    );
    let error = eval_error(
        &mut a,
        "redis.call('select', '1'); return redis.call('get', 'k')",
        &[],
    )
    .await;
    assert!(error.contains("can't run this command"), "{error}");
    let error = eval_error(&mut a, "return redis.call('flushall')", &[]).await;
    assert!(error.contains("can't run this command"), "{error}");
    let error = eval_error(&mut a, "return redis.call('publish', 'b:news', 'x')", &[]).await;
    assert!(error.contains("can't publish to the channel"), "{error}");
    let error = eval_error(
        &mut a,
        "return redis.call('function', 'load', '#!lua name=x\\nredis.register_function(\"f\", function() return 1 end)')",
        &[],
    )
    .await;
    assert!(error.contains("not allowed from script"), "{error}");

    // FUNCTION itself stays refused by the proxy on a shared pool (one set of libraries per server).
    let result: redis::RedisResult<String> = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("#!lua name=x\nredis.register_function('f', function() return 1 end)")
        .query_async(&mut a)
        .await;
    let error = result.unwrap_err();
    assert_eq!(error.code(), Some("NOPERM"), "{error}");
    assert!(
        error.to_string().contains("FUNCTION is for admins there"),
        "{error}"
    );

    // Nothing of `b` or outside changed.
    let b_data: String = direct.get("b:secret").await.unwrap();
    assert_eq!(b_data, "b-data");
    // A tenant of the same pool without an ACL user keeps the refusal, which now names backend_user.
    let mut plain = as_tenant(&proxy, "plain", "plain-pw").await;
    let error = eval_error(&mut plain, "return 1", &[]).await;
    assert!(error.contains("give the tenant a backend_user"), "{error}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_and_big_lane_connections_log_in_as_the_tenants_acl_user() {
    let (redis, proxy) = acl_proxy().await;
    let mut direct = direct(&redis.addr(), 0).await;
    let _: () = direct.set("b:secret", "b-data").await.unwrap();
    let mut a = as_tenant(&proxy, "a", "a-pw").await;

    // A transaction runs on a dedicated connection.
    let (ok, refused): (String, redis::RedisResult<String>) = {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg("t")
            .arg("in-multi")
            .cmd("EVAL")
            .arg("return redis.call('get', 'b:secret')")
            .arg(0);
        let result: redis::RedisResult<(String, redis::Value)> = pipe.query_async(&mut a).await;
        match result {
            Ok((ok, value)) => (ok, Ok(format!("{value:?}"))),
            Err(error) => ("?".to_owned(), Err(error)),
        }
    };
    // Redis answers EXEC with the SET's OK and the script's error inside the array.
    match refused {
        Ok(value) => {
            assert_eq!(ok, "OK");
            assert!(value.contains("can't access"), "{value}");
            assert!(!value.contains("b-data"), "{value}");
        }
        Err(error) => {
            assert!(error.to_string().contains("can't access"), "{error}");
            assert!(!error.to_string().contains("b-data"), "{error}");
        }
    }

    // A request over big_requests.threshold_bytes (4096 here) goes to a big-request lane connection, a new
    // one, which logs in as acl-a too.
    let before = users_on_server(&mut direct).await;
    let padding = "-".repeat(8192);
    let script = format!("-- {padding}\nreturn redis.call('get', 'b:secret')");
    let error = eval_error(&mut a, &script, &[]).await;
    assert!(
        error.contains("can't access at least one of the keys"),
        "{error}"
    );
    let script = format!("-- {padding}\nreturn redis.call('get', 'a:t')");
    let own: String = redis::cmd("EVAL")
        .arg(&script)
        .arg(0)
        .query_async(&mut a)
        .await
        .unwrap();
    assert_eq!(own, "in-multi");
    let after = users_on_server(&mut direct).await;
    let count = |users: &[(String, usize)], user: &str| {
        users
            .iter()
            .find(|(name, _)| name == user)
            .map_or(0, |(_, count)| *count)
    };
    assert!(
        count(&after, "acl-a") > count(&before, "acl-a"),
        "{before:?} {after:?}"
    );
    assert_eq!(count(&after, "default"), count(&before, "default"));
    proxy.shutdown().await;
}

/// The `user=` of every connection CLIENT LIST shows on the server, with how many each.
async fn users_on_server(direct: &mut redis::aio::MultiplexedConnection) -> Vec<(String, usize)> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(direct)
        .await
        .unwrap();
    let mut users = std::collections::BTreeMap::new();
    for line in list.lines() {
        if let Some(user) = line
            .split(' ')
            .find_map(|field| field.strip_prefix("user="))
        {
            *users.entry(user.to_owned()).or_insert(0) += 1;
        }
    }
    users.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_acl_tenants_have_their_own_connections_and_pipelines_never_cross() {
    let (redis, proxy) = acl_proxy().await;
    let mut direct = direct(&redis.addr(), 0).await;
    let mut tasks = Vec::new();
    for tenant in ["a", "b"] {
        let mut client = as_tenant(&proxy, tenant, &format!("{tenant}-pw")).await;
        tasks.push(tokio::spawn(async move {
            // Each script increments a key the tenant names with its own prefix: run as the other tenant's
            // user it would be refused.
            let script = format!("return redis.call('incr', '{tenant}:count')");
            for _ in 0..20 {
                let mut pipe = redis::pipe();
                for _ in 0..50 {
                    pipe.cmd("EVAL").arg(&script).arg(0);
                    pipe.cmd("INCR").arg("plain-count");
                }
                let replies: Vec<i64> = pipe.query_async(&mut client).await.unwrap();
                assert_eq!(replies.len(), 100);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for tenant in ["a", "b"] {
        let scripted: i64 = direct.get(format!("{tenant}:count")).await.unwrap();
        let plain: i64 = direct.get(format!("{tenant}:plain-count")).await.unwrap();
        assert_eq!((scripted, plain), (1000, 1000), "{tenant}");
    }
    let users = users_on_server(&mut direct).await;
    let count = |user: &str| {
        users
            .iter()
            .find(|(name, _)| name == user)
            .map_or(0, |(_, count)| *count)
    };
    assert!(count("acl-a") >= 1, "{users:?}");
    assert!(count("acl-b") >= 1, "{users:?}");
    proxy.shutdown().await;
}

/// Starting a proxy whose tenant `a` has `rules` (with `acl-b` as recommended) gives this error.
async fn start_error(rules: &[String], password: &str) -> String {
    let redis = redis_with_acl_users(rules);
    let tenants = acl_tenants().replace("'acl-a-secret'", &format!("'{password}'"));
    let config = standalone_config(&redis.addr(), &tenants);
    refused_start(config, &format!("acl-a has rules {rules:?}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_is_refused_for_a_wrong_password_and_for_rules_too_wide() {
    let error = start_error(&recommended_rules("a:"), "wrong").await;
    assert!(
        error.contains("config key `tenants.a.backend_user`: 'acl-a' cannot log in to")
            && error.contains("WRONGPASS"),
        "{error}"
    );

    let mut every_key = recommended_rules("a:");
    every_key[2] = "~*".to_owned();
    let error = start_error(&every_key, "acl-a-secret").await;
    assert!(
        error.contains("'acl-a' may run `GET x:rkproxy-acl-check` (a key outside its prefix)")
            && error.contains("resetkeys ~a:*"),
        "{error}"
    );

    let mut functions = recommended_rules("a:");
    functions.retain(|rule| rule != "-function");
    let error = start_error(&functions, "acl-a-secret").await;
    assert!(error.contains("may run `FUNCTION LOAD x`"), "{error}");
    assert!(error.contains("-function"), "{error}");

    let mut channels = recommended_rules("a:");
    channels[4] = "allchannels".to_owned();
    let error = start_error(&channels, "acl-a-secret").await;
    assert!(
        error.contains("may run `PUBLISH x:rkproxy-acl-check x`"),
        "{error}"
    );

    let mut flush = recommended_rules("a:");
    flush.push("+flushall".to_owned());
    let error = start_error(&flush, "acl-a-secret").await;
    assert!(error.contains("may run `FLUSHALL`"), "{error}");

    let mut own_keys = recommended_rules("a:");
    own_keys[2] = "~other:*".to_owned();
    let error = start_error(&own_keys, "acl-a-secret").await;
    assert!(
        error.contains("may not run `GET a:rkproxy-acl-check` (its own keys)"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_in_its_own_db_must_not_select_another() {
    let redis = OwnRedis::start(&[]);
    let mut rules = recommended_rules("d:");
    rules.push("+select|5".to_owned());
    create_user(&redis.addr(), "acl-d", &rules);
    let tenants = "[tenants.d]\npassword = 'd-pw'\npool = 'main'\nkey_prefix = 'd:'\ndb = 5\n\
                   backend_user = 'acl-d'\nbackend_password = 'acl-d-secret'\n\
                   [tenants.e]\npassword = 'e-pw'\npool = 'main'\nkey_prefix = 'e:'\n";
    let proxy = rkproxy::Proxy::builder(standalone_config(&redis.addr(), tenants))
        .start()
        .await
        .expect("proxy starts with select|5 only");
    let mut d = as_tenant(&proxy, "d", "d-pw").await;
    let _: () = d.set("k", "in-5").await.unwrap();
    let mut db5 = direct(&redis.addr(), 5).await;
    let stored: String = db5.get("d:k").await.unwrap();
    assert_eq!(stored, "in-5");
    let error = eval_error(&mut d, "redis.call('select', '0'); return 1", &[]).await;
    assert!(error.contains("can't run this command"), "{error}");
    proxy.shutdown().await;

    // With every SELECT allowed the start is refused, naming the rule.
    create_user(
        &redis.addr(),
        "acl-d",
        &[recommended_rules("d:"), vec!["+select".to_owned()]].concat(),
    );
    let config = standalone_config(&redis.addr(), tenants);
    let error = refused_start(config, "acl-d may run every SELECT").await;
    assert!(
        error.contains("may run `SELECT 0` (the tenant works in its own db)")
            && error.contains("-select +select|5"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_gives_takes_and_checks_a_tenants_backend_user() {
    let redis = redis_with_acl_users(&recommended_rules("a:"));
    let without = "[tenants.a]\npassword = 'a-pw'\npool = 'main'\nkey_prefix = 'a:'\n\
                   [tenants.b]\npassword = 'b-pw'\npool = 'main'\nkey_prefix = 'b:'\n";
    let proxy = rkproxy::Proxy::builder(standalone_config(&redis.addr(), without))
        .start()
        .await
        .unwrap();
    let mut direct = direct(&redis.addr(), 0).await;
    let mut a = as_tenant(&proxy, "a", "a-pw").await;
    let error = eval_error(&mut a, "return 1", &[]).await;
    assert!(error.contains("give the tenant a backend_user"), "{error}");

    // Gaining one: the open connection moves to connections logged in as acl-a at its next command.
    let report = proxy
        .reload(standalone_config(&redis.addr(), &acl_tenants()))
        .await
        .unwrap();
    assert!(report.tenants_changed.contains(&"a".to_owned()), "{report}");
    let one: i64 = redis::cmd("EVAL")
        .arg("return 1")
        .arg(0)
        .query_async(&mut a)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let error = eval_error(&mut a, "return redis.call('get', 'b:k')", &[]).await;
    assert!(error.contains("can't access"), "{error}");
    let users = users_on_server(&mut direct).await;
    assert!(users.iter().any(|(user, _)| user == "acl-a"), "{users:?}");

    // A wrong password is refused, naming the tenant; nothing changes.
    let wrong = acl_tenants().replace("'acl-a-secret'", "'nope'");
    let error = proxy
        .reload(standalone_config(&redis.addr(), &wrong))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("tenants.a.backend_user") && error.contains("WRONGPASS"),
        "{error}"
    );
    let one: i64 = redis::cmd("EVAL")
        .arg("return 1")
        .arg(0)
        .query_async(&mut a)
        .await
        .unwrap();
    assert_eq!(one, 1);

    // Changing it: the open connection moves to connections logged in as the new user, whose rules also let it
    // read the key `extra` (the old user's did not).
    let _: () = direct.set("extra", "seen").await.unwrap();
    let error = eval_error(&mut a, "return redis.call('get', 'extra')", &[]).await;
    assert!(error.contains("can't access"), "{error}");
    let mut wider = recommended_rules("a:");
    wider.push("~extra".to_owned());
    create_user(&redis.addr(), "acl-a2", &wider);
    let changed = acl_tenants()
        .replace("'acl-a'", "'acl-a2'")
        .replace("'acl-a-secret'", "'acl-a2-secret'");
    proxy
        .reload(standalone_config(&redis.addr(), &changed))
        .await
        .unwrap();
    let extra: String = redis::cmd("EVAL")
        .arg("return redis.call('get', 'extra')")
        .arg(0)
        .query_async(&mut a)
        .await
        .unwrap();
    assert_eq!(extra, "seen");

    // Losing it: scripts are refused again, and the connection is back on the pool's shared ones.
    proxy
        .reload(standalone_config(&redis.addr(), without))
        .await
        .unwrap();
    let error = eval_error(&mut a, "return 1", &[]).await;
    assert!(error.contains("give the tenant a backend_user"), "{error}");
    let _: () = a.set("after", "x").await.unwrap();
    let stored: String = direct.get("a:after").await.unwrap();
    assert_eq!(stored, "x");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_pool_every_node_holds_the_acl_tenant_to_its_keys() {
    let cluster = OwnCluster::start(5000);
    // `b`'s prefix `{a}b:` has the same hash tag as `a`'s `{a}:`: both tenants' keys are in one slot, on one
    // master, where only the ACL users keep them apart inside a script.
    for node in cluster.addrs() {
        create_user(&node, "acl-a", &recommended_rules("{a}:"));
        create_user(&node, "acl-b", &recommended_rules("{a}b:"));
    }
    let nodes = cluster
        .addrs()
        .iter()
        .map(|node| format!("'{node}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let tenants = acl_tenants()
        .replace("'a:'", "'{a}:'")
        .replace("'b:'", "'{a}b:'")
        .replace("'p:'", "'{p}:'");
    let toml = format!(
        "listen = '127.0.0.1:0'\ndefault_pool = 'main'\n\
         [pools.main]\nkind = 'cluster'\nnodes = [{nodes}]\n{tenants}"
    );
    let config = rkproxy::config::Config::from_toml(&toml).unwrap();
    let proxy = rkproxy::Proxy::builder(config).start().await.unwrap();
    let mut a = as_tenant(&proxy, "a", "a-pw").await;
    let mut b = as_tenant(&proxy, "b", "b-pw").await;
    let _: () = b.set("secret", "b-data").await.unwrap();
    let _: () = a.set("k", "mine").await.unwrap();
    let got: String = redis::cmd("EVAL")
        .arg("return redis.call('get', KEYS[1])")
        .arg(1)
        .arg("k")
        .query_async(&mut a)
        .await
        .unwrap();
    assert_eq!(got, "mine");
    // KEYS[1] routes the script to the slot's master, where `b`'s key lives too.
    let error = eval_error(&mut a, "return redis.call('get', '{a}b:secret')", &["k"]).await;
    assert!(
        error.contains("can't access at least one of the keys"),
        "{error}"
    );
    let error = eval_error(&mut a, "return redis.call('get', 'x{a}')", &["k"]).await;
    assert!(
        error.contains("can't access at least one of the keys"),
        "{error}"
    );
    let master = cluster
        .master_of_slot(15495)
        .expect("slot of tag 'a' has a master");
    let mut on_master = direct(&master, 0).await;
    let b_data: String = on_master.get("{a}b:secret").await.unwrap();
    assert_eq!(b_data, "b-data");
    let users = users_on_server(&mut on_master).await;
    assert!(users.iter().any(|(user, _)| user == "acl-a"), "{users:?}");
    assert!(users.iter().any(|(user, _)| user == "acl-b"), "{users:?}");
    proxy.shutdown().await;
}
