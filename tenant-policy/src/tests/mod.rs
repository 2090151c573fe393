//! Unit tests, one file per concern, with shared helpers here.

mod config;
mod isolation;
mod limits;
mod police;
mod rights;
mod scripts;

use std::collections::BTreeMap;
use std::sync::Arc;

use cluster_router::{lookup, CommandSpec};

use crate::{PoolInfo, Tenant, TenantConfig, Tenants};

/// Pools `main` and `other` (standalone, 16 databases) and `cluster` (db 0 only).
fn pools() -> BTreeMap<String, PoolInfo> {
    BTreeMap::from([
        ("main".to_owned(), PoolInfo::standalone()),
        ("other".to_owned(), PoolInfo::standalone()),
        ("cluster".to_owned(), PoolInfo::cluster()),
    ])
}

/// A config for tenant `name` on pool `main` with password `pw-<name>`.
fn config(name: &str) -> TenantConfig {
    TenantConfig::new(format!("pw-{name}"), "main")
}

fn build(configs: Vec<(&str, TenantConfig)>) -> Tenants {
    try_build(configs).unwrap()
}

fn try_build(configs: Vec<(&str, TenantConfig)>) -> Result<Tenants, crate::ConfigError> {
    let configs = configs
        .into_iter()
        .map(|(name, config)| (name.to_owned(), config))
        .collect();
    Tenants::new(&configs, &pools())
}

/// One tenant built from `config`.
fn tenant(name: &str, config: TenantConfig) -> Arc<Tenant> {
    build(vec![(name, config)]).get(name).unwrap().clone()
}

fn spec(args: &[&str]) -> &'static CommandSpec {
    lookup(&args).unwrap_or_else(|error| panic!("{args:?}: {error}"))
}

#[test]
fn tenants_are_shared_across_threads_and_do_not_print_secrets() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tenant>();
    assert_send_sync::<Tenants>();
    assert_send_sync::<crate::ConnectionPermit>();
    let tenant = tenant("t", config("t"));
    let debug = format!("{tenant:?}");
    assert!(debug.contains("PasswordDigest(..)"), "{debug}");
    assert!(!debug.contains("pw-t"), "{debug}");
}
