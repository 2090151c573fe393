//! `limits_store` (issue 12, item 5): a tenant's ops budget shared by two proxies through Redis. Without the
//! store each proxy would allow the whole budget, so two proxies would allow twice the limit.

use std::time::{Duration, Instant};

use crate::support::*;

/// A proxy whose tenant `t` has `ops_per_sec = 20`, refuses at once when over it, and shares the budget
/// through `redis`. (Without `limits_store` the test below fails: two proxies admitted 38 PINGs in 83 ms.)
async fn limited_proxy(redis: &OwnRedis) -> rkproxy::Proxy {
    let addr = redis.addr();
    start_proxy_toml(&format!(
        "default_pool = 'main'\n[pools.main]\nkind = 'standalone'\nnodes = ['{addr}']\n\
         [tenants.t]\npassword = 't-pw'\npool = 'main'\nkey_prefix = 't:'\nops_per_sec = 20\n\
         limit_wait_ms = 0\nlimits_store = {{ pool = 'main' }}\n"
    ))
    .await
}

/// PINGs as tenant `t` through each proxy at once, as fast as each answers, until `attempts` each; the
/// commands admitted in all, and how long it took.
async fn hammer(proxies: &[&rkproxy::Proxy], attempts: usize) -> (usize, Duration) {
    let mut clients = Vec::new();
    for proxy in proxies {
        clients.push(as_tenant(proxy, "t", "t-pw").await);
    }
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let mut admitted = 0;
                for _ in 0..attempts {
                    match redis::cmd("PING").query_async::<String>(&mut client).await {
                        Ok(_) => admitted += 1,
                        Err(error) => assert!(
                            error.to_string().contains("over its ops_per_sec limit"),
                            "{error}"
                        ),
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    (admitted, started.elapsed())
}

/// Two proxies sharing the budget admit no more than one budget: the bucket's burst (20) plus its refill
/// over the measured time, plus what the two leases can hold (one op each). The bound uses the time the run
/// really took, so a slow machine cannot make it fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_share_one_ops_budget_through_redis() {
    let redis = blocking(|| OwnRedis::start(&[])).await;
    let first = limited_proxy(&redis).await;
    let second = limited_proxy(&redis).await;
    let (admitted, took) = hammer(&[&first, &second], 400).await;
    let bound = 20.0 + 20.0 * took.as_secs_f64() + 2.0;
    assert!(
        admitted as f64 <= bound,
        "{admitted} admitted in {took:?} by two proxies sharing 20 ops/s (at most {bound:.0})"
    );
    // How many get through depends on the machine's speed (leases are topped up every 5 ms); that some do
    // shows the store hands out tokens.
    assert!(admitted >= 1, "none admitted in {took:?}");
    // The budget is in the store: a bucket per tenant and limit.
    let mut direct = direct(&redis.addr(), 0).await;
    let exists: bool = redis::cmd("EXISTS")
        .arg("rkproxy:limits:{t}:ops")
        .query_async(&mut direct)
        .await
        .unwrap();
    assert!(exists, "no bucket in the store");
    first.shutdown().await;
    second.shutdown().await;
}
