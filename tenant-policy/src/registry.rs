//! [`Tenants`]: every tenant of one configuration, validated; authentication; database
//! assignment.
//!
//! # How `db = "auto"` is assigned
//!
//! A tenant is *present* in its `pool` and in every pool of its `pools` list. Auto tenants
//! are taken in order of name (bytewise); each gets the lowest database number that
//! - exists in every pool it is present in (below the smallest `databases` count),
//! - no tenant present in any of those pools has as a fixed `db`, nor an auto tenant earlier
//!   in name order,
//! - is not 0 when a tenant without `db` is present in one of those pools (those tenants work
//!   in db 0).
//!
//! The result depends only on the configuration, so it is the same after a restart or a
//! reload of the same configuration. Adding an auto tenant whose name sorts before existing
//! ones moves them: [`Tenants::auto_db_changes`] lists such moves so a reload can refuse them,
//! and pinning `db = N` once a tenant holds data avoids them altogether.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use bytes::Bytes;
use cluster_router::{Args, CommandSpec};
use regex_lite::Regex;
use sha2::{Digest, Sha256};

use crate::config::{DbSetting, PoolInfo, TenantConfig, TenantsConfig};
use crate::error::{sanitize, ConfigError, PolicyError};
use crate::limits::TrafficLimits;
use crate::rewrite::escape_glob;
use crate::shared_budget::SharedBudget;
use crate::tenant::{BackendLogin, DbDirectory, PasswordDigest, PoolDbs, Tenant};

/// Every tenant of one configuration, by name. Built once per configuration (and per reload)
/// and shared; cheap to look up.
#[derive(Debug)]
pub struct Tenants {
    by_name: BTreeMap<String, Arc<Tenant>>,
    assignments: Vec<DbAssignment>,
}

/// One tenant's database, for an admin command that lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DbAssignment {
    /// The tenant.
    pub tenant: String,
    /// Its home pool.
    pub pool: String,
    /// Its database.
    pub db: u32,
    /// Whether it was assigned by `db = "auto"`.
    pub auto: bool,
}

/// A tenant whose auto-assigned database differs between two configurations.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DbChange {
    /// The tenant.
    pub tenant: String,
    /// Its database in the running configuration.
    pub old: u32,
    /// Its database in the new configuration.
    pub new: u32,
}

/// The user name and password of an AUTH or HELLO AUTH, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Credentials<'a> {
    /// The user name; `None` for `AUTH password`.
    pub username: Option<&'a [u8]>,
    /// The password.
    pub password: &'a [u8],
}

// === impl Tenants ===

impl Tenants {
    /// Validates the `[tenants.NAME]` tables against the pools and builds the tenants.
    ///
    /// `pools` maps every configured pool name to what validation needs to know about it. Errors
    /// name the key, for example `tenants.app1.key_pattern: invalid regex: ...`.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use tenant_policy::{PoolInfo, TenantConfig, Tenants};
    ///
    /// let pools = BTreeMap::from([("main".to_owned(), PoolInfo::standalone())]);
    /// let mut config = TenantConfig::new("pw", "main");
    /// config.key_pattern = Some("(unclosed".to_owned());
    /// let error = Tenants::new(&BTreeMap::from([("app1".to_owned(), config)]), &pools).unwrap_err();
    /// assert!(error.to_string().starts_with("tenants.app1.key_pattern: invalid regex: "), "{error}");
    /// ```
    pub fn new(
        configs: &TenantsConfig,
        pools: &BTreeMap<String, PoolInfo>,
    ) -> Result<Tenants, ConfigError> {
        let mut digests: BTreeMap<[u8; 32], &str> = BTreeMap::new();
        for (name, config) in configs {
            check_name(name)?;
            check_pools(name, config, pools)?;
            let digest = password_digest(name, &config.password)?;
            if let Some(other) = digests.insert(digest, name) {
                return Err(ConfigError::new(
                    key(name, "password"),
                    format!(
                        "same password as tenant '{other}'; passwords must be unique because \
                         `AUTH password` finds the tenant by its password"
                    ),
                ));
            }
        }
        check_backend_users_unique(configs)?;
        let dbs = assign_dbs(configs, pools)?;
        check_prefixes(configs, &dbs)?;
        let directory = Arc::new(directory(configs, pools, &dbs));

        let tenants_per_pool = tenants_per_pool(configs);
        let mut by_name = BTreeMap::new();
        for (name, config) in configs {
            let mut tenant = build_tenant(name, config, &dbs, &directory)?;
            tenant.shared_pools = present_pools(config)
                .filter(|pool| tenants_per_pool.get(pool).is_some_and(|count| *count > 1))
                .map(str::to_owned)
                .collect();
            by_name.insert(name.clone(), Arc::new(tenant));
        }
        let assignments = configs
            .iter()
            .filter_map(|(name, config)| {
                Some(DbAssignment {
                    tenant: name.clone(),
                    pool: config.pool.clone(),
                    db: *dbs.get(name.as_str())?,
                    auto: config.db == Some(DbSetting::Auto),
                })
            })
            .collect();
        Ok(Tenants {
            by_name,
            assignments,
        })
    }

    /// The tenant called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.by_name.get(name)
    }

    /// All tenants, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.by_name.values()
    }

    /// How many tenants there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no tenant is configured (the proxy then needs no AUTH).
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every tenant that has a database, with its database, by tenant name.
    pub fn db_assignments(&self) -> &[DbAssignment] {
        &self.assignments
    }

    /// The auto-assigned tenants of `self` (the running configuration) whose database would be
    /// different in `next`, so that a reload can refuse to move a tenant onto other data.
    pub fn auto_db_changes(&self, next: &Tenants) -> Vec<DbChange> {
        self.assignments
            .iter()
            .filter(|old| old.auto)
            .filter_map(|old| {
                let new = next.by_name.get(&old.tenant)?.db?;
                (new != old.db).then(|| DbChange {
                    tenant: old.tenant.clone(),
                    old: old.db,
                    new,
                })
            })
            .collect()
    }

    /// Finds the tenant for `AUTH password` (`username` is `None`) or `AUTH username password`.
    ///
    /// Secrets are compared in constant time: both sides are hashed with SHA-256 and the
    /// digests compared without an early exit; `AUTH password` compares against every tenant.
    /// The user name `default` (what clients send for `redis://default:pw@host`) finds the
    /// tenant by password unless a tenant is called `default`.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use tenant_policy::{PolicyError, PoolInfo, TenantConfig, Tenants};
    ///
    /// let tenants = Tenants::new(
    ///     &BTreeMap::from([("app".to_owned(), TenantConfig::new("s3cret", "main"))]),
    ///     &BTreeMap::from([("main".to_owned(), PoolInfo::standalone())]),
    /// )
    /// .unwrap();
    /// assert_eq!(tenants.authenticate(None, b"s3cret").unwrap().name(), "app");
    /// assert_eq!(tenants.authenticate(Some(b"app"), b"s3cret").unwrap().name(), "app");
    /// assert_eq!(tenants.authenticate(Some(b"app"), b"nope").unwrap_err(), PolicyError::WrongPass);
    /// ```
    pub fn authenticate(
        &self,
        username: Option<&[u8]>,
        password: &[u8],
    ) -> Result<Arc<Tenant>, PolicyError> {
        let digest: [u8; 32] = Sha256::digest(password).into();
        let by_password = match username {
            None => true,
            Some(b"default") => !self.by_name.contains_key("default"),
            Some(_) => false,
        };
        if by_password {
            let mut found = None;
            for tenant in self.by_name.values() {
                if digests_equal(&tenant.password_digest.0, &digest) {
                    found = Some(tenant);
                }
            }
            return found.cloned().ok_or(PolicyError::WrongPass);
        }
        let tenant = username
            .and_then(|name| std::str::from_utf8(name).ok())
            .and_then(|name| self.by_name.get(name));
        match tenant {
            Some(tenant) if digests_equal(&tenant.password_digest.0, &digest) => Ok(tenant.clone()),
            _ => Err(PolicyError::WrongPass),
        }
    }
}

/// The credentials in an `AUTH` or `HELLO ... AUTH user password` request, or `None` for a
/// HELLO without AUTH (and any other command).
///
/// ```
/// use cluster_router::lookup;
/// use tenant_policy::credentials;
///
/// let args: &[&[u8]] = &[b"HELLO", b"3", b"AUTH", b"app", b"pw", b"SETNAME", b"c1"];
/// let found = credentials(lookup(&args).unwrap(), &args).unwrap().unwrap();
/// assert_eq!(found.username, Some(&b"app"[..]));
/// assert_eq!(found.password, b"pw");
///
/// let args: &[&[u8]] = &[b"AUTH", b"pw"];
/// let found = credentials(lookup(&args).unwrap(), &args).unwrap().unwrap();
/// assert_eq!((found.username, found.password), (None, &b"pw"[..]));
/// ```
pub fn credentials<'a, A: Args + ?Sized>(
    spec: &CommandSpec,
    args: &'a A,
) -> Result<Option<Credentials<'a>>, PolicyError> {
    match spec.name {
        "auth" => match (args.argc(), args.arg(1), args.arg(2)) {
            (2, Some(password), _) => Ok(Some(Credentials {
                username: None,
                password,
            })),
            (3, Some(username), Some(password)) => Ok(Some(Credentials {
                username: Some(username),
                password,
            })),
            _ => Err(PolicyError::Syntax),
        },
        "hello" => {
            // HELLO [protover [AUTH username password] [SETNAME clientname]], as Redis parses it.
            let mut found = None;
            let mut index = 2;
            while let Some(option) = args.arg(index) {
                let has = |n: usize| index + n < args.argc();
                if option.eq_ignore_ascii_case(b"auth") && has(2) {
                    found = match (args.arg(index + 1), args.arg(index + 2)) {
                        (Some(username), Some(password)) => Some(Credentials {
                            username: Some(username),
                            password,
                        }),
                        _ => None,
                    };
                    index += 3;
                } else if option.eq_ignore_ascii_case(b"setname") && has(1) {
                    index += 2;
                } else {
                    return Err(PolicyError::HelloSyntax {
                        option: sanitize(option),
                    });
                }
            }
            Ok(found)
        }
        _ => Ok(None),
    }
}

/// Compares two digests without stopping at the first difference.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut difference = 0u8;
    for (x, y) in a.iter().zip(b) {
        difference |= x ^ y;
    }
    std::hint::black_box(difference) == 0
}

fn key(tenant: &str, field: &str) -> String {
    format!("tenants.{tenant}.{field}")
}

/// Tenant names are AUTH user names and appear in error replies: printable ASCII without
/// spaces or quotes keeps both unambiguous.
fn check_name(name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'\'' && b != b'"');
    if valid {
        Ok(())
    } else {
        Err(ConfigError::new(
            format!("tenants.{name}"),
            "a tenant name is 1 to 64 printable ASCII characters without spaces or quotes",
        ))
    }
}

fn check_pools(
    name: &str,
    config: &TenantConfig,
    pools: &BTreeMap<String, PoolInfo>,
) -> Result<(), ConfigError> {
    let defined = || pools.keys().cloned().collect::<Vec<_>>().join(", ");
    if !pools.contains_key(&config.pool) {
        return Err(ConfigError::new(
            key(name, "pool"),
            format!(
                "pool '{}' is not defined (defined: {})",
                config.pool,
                defined()
            ),
        ));
    }
    if let Some(store) = &config.limits_store {
        if !pools.contains_key(&store.pool) {
            return Err(ConfigError::new(
                key(name, "limits_store.pool"),
                format!(
                    "pool '{}' is not defined (defined: {})",
                    store.pool,
                    defined()
                ),
            ));
        }
    }
    for pool in &config.pools {
        if !pools.contains_key(pool) {
            return Err(ConfigError::new(
                key(name, "pools"),
                format!("pool '{pool}' is not defined (defined: {})", defined()),
            ));
        }
    }
    Ok(())
}

/// The SHA-256 of the password: hashed here, or given as `sha256:<hex>`.
fn password_digest(name: &str, password: &str) -> Result<[u8; 32], ConfigError> {
    let error = |problem: &str| Err(ConfigError::new(key(name, "password"), problem));
    if password.is_empty() {
        return error("must not be empty");
    }
    let Some(hex) = password.strip_prefix("sha256:") else {
        return Ok(Sha256::digest(password.as_bytes()).into());
    };
    if hex.len() != 64 {
        return error("`sha256:` must be followed by 64 hex digits (the SHA-256 of the password)");
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let text = std::str::from_utf8(pair).unwrap_or("");
        match u8::from_str_radix(text, 16) {
            Ok(value) => *byte = value,
            Err(_) => return error("`sha256:` must be followed by 64 hex digits"),
        }
    }
    Ok(digest)
}

/// The pools a tenant is present in: its own and its `pools`.
fn present_pools(config: &TenantConfig) -> impl Iterator<Item = &str> {
    std::iter::once(config.pool.as_str()).chain(config.pools.iter().map(String::as_str))
}

/// How many tenants are configured on each pool (as their `pool` or in their `pools`), admins
/// included.
fn tenants_per_pool(configs: &TenantsConfig) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for config in configs.values() {
        let pools: BTreeSet<&str> = present_pools(config).collect();
        for pool in pools {
            *counts.entry(pool).or_insert(0) += 1;
        }
    }
    counts
}

/// Each tenant's database (fixed or auto); tenants without `db` are absent.
fn assign_dbs<'a>(
    configs: &'a TenantsConfig,
    pools: &BTreeMap<String, PoolInfo>,
) -> Result<BTreeMap<&'a str, u32>, ConfigError> {
    let databases_of = |config: &TenantConfig| {
        present_pools(config)
            .filter_map(|pool| pools.get(pool))
            .map(|pool| pool.databases)
            .min()
            .unwrap_or(0)
    };
    let mut claimed: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    let mut dbless_pools: BTreeSet<&str> = BTreeSet::new();
    let mut dbs = BTreeMap::new();
    for (name, config) in configs {
        match config.db {
            Some(DbSetting::Number(db)) => {
                let databases = databases_of(config);
                if db >= databases {
                    return Err(ConfigError::new(
                        key(name, "db"),
                        format!(
                            "db {db} does not exist in every pool of this tenant (the smallest \
                             has {databases} databases; a Redis Cluster has only db 0)"
                        ),
                    ));
                }
                for pool in present_pools(config) {
                    claimed.entry(pool).or_default().insert(db);
                }
                dbs.insert(name.as_str(), db);
            }
            Some(DbSetting::Auto) => {}
            None => dbless_pools.extend(present_pools(config)),
        }
    }
    // BTreeMap iteration is by name, which makes the assignment deterministic.
    for (name, config) in configs {
        if config.db != Some(DbSetting::Auto) {
            continue;
        }
        let databases = databases_of(config);
        let needs_free_zero = present_pools(config).any(|pool| dbless_pools.contains(pool));
        let free = (0..databases).find(|&db| {
            !(db == 0 && needs_free_zero)
                && present_pools(config)
                    .all(|pool| claimed.get(pool).is_none_or(|taken| !taken.contains(&db)))
        });
        let Some(db) = free else {
            return Err(ConfigError::new(
                key(name, "db"),
                format!(
                    "no free database left for \"auto\" in pool(s) {} ({databases} databases, \
                     all taken by other tenants{}); raise `databases` or give some tenants a \
                     fixed db",
                    present_pools(config).collect::<Vec<_>>().join(", "),
                    if needs_free_zero {
                        ", db 0 kept for tenants without db"
                    } else {
                        ""
                    }
                ),
            ));
        };
        for pool in present_pools(config) {
            claimed.entry(pool).or_default().insert(db);
        }
        dbs.insert(name.as_str(), db);
    }
    Ok(dbs)
}

fn directory(
    configs: &TenantsConfig,
    pools: &BTreeMap<String, PoolInfo>,
    dbs: &BTreeMap<&str, u32>,
) -> DbDirectory {
    let mut directory = DbDirectory::default();
    for (pool, info) in pools {
        directory.pools.insert(
            pool.clone(),
            PoolDbs {
                databases: info.databases,
                claimed: BTreeSet::new(),
            },
        );
    }
    for (name, config) in configs {
        let Some(&db) = dbs.get(name.as_str()) else {
            continue;
        };
        for pool in present_pools(config) {
            if let Some(pool) = directory.pools.get_mut(pool) {
                pool.claimed.insert(db);
            }
        }
    }
    directory
}

/// Refuses prefixes that nest (`a:` and `a:b:`) between tenants that can reach the same
/// database: the shorter prefix's tenant could read the other's keys with `KEYS *`. The very
/// same prefix is allowed: that is deliberate sharing (say, a read-only tenant over an
/// application's data), not an accident.
fn check_prefixes(configs: &TenantsConfig, dbs: &BTreeMap<&str, u32>) -> Result<(), ConfigError> {
    for (name_a, a) in configs {
        let Some(prefix_a) = a.key_prefix.as_deref() else {
            continue;
        };
        if prefix_a.is_empty() {
            return Err(ConfigError::new(
                key(name_a, "key_prefix"),
                "must not be empty (leave it out for no prefix)",
            ));
        }
        for (name_b, b) in configs {
            let Some(prefix_b) = b.key_prefix.as_deref() else {
                continue;
            };
            if name_a == name_b || prefix_a == prefix_b || !prefix_b.starts_with(prefix_a) {
                continue;
            }
            let share_pool = present_pools(a).any(|pool| present_pools(b).any(|p| p == pool));
            let (db_a, db_b) = (dbs.get(name_a.as_str()), dbs.get(name_b.as_str()));
            let may_share_db = db_a.is_none() || db_b.is_none() || db_a == db_b;
            if share_pool && may_share_db {
                return Err(ConfigError::new(
                    key(name_b, "key_prefix"),
                    format!(
                        "'{prefix_b}' starts with the key_prefix '{prefix_a}' of tenant \
                         '{name_a}', which can reach the same database and so could read this \
                         tenant's keys"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `backend_user` and `backend_password`: both or neither; a user name Redis accepts; a password.
fn backend_login(name: &str, config: &TenantConfig) -> Result<Option<BackendLogin>, ConfigError> {
    let (user, password) =
        match (&config.backend_user, &config.backend_password) {
            (None, None) => return Ok(None),
            (Some(user), Some(password)) => (user, password),
            (Some(_), None) | (None, Some(_)) => return Err(ConfigError::new(
                key(name, "backend_user"),
                "backend_user and backend_password go together: set both (the Redis ACL user the \
                 tenant's backend connections log in as) or neither",
            )),
        };
    if user.is_empty() || user.len() > 128 || !user.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            key(name, "backend_user"),
            "a Redis ACL user name is 1 to 128 printable ASCII characters without spaces",
        ));
    }
    if password.is_empty() {
        return Err(ConfigError::new(
            key(name, "backend_password"),
            "must not be empty: give the ACL user a password (`>password` in ACL SETUSER)",
        ));
    }
    Ok(Some(BackendLogin::new(user, password)))
}

/// Two tenants with the same `backend_user` would have the same rights in Redis, so Redis would not keep
/// either from the other's keys: each tenant needs an ACL user of its own.
fn check_backend_users_unique(configs: &TenantsConfig) -> Result<(), ConfigError> {
    let mut users: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, config) in configs {
        let Some(user) = config.backend_user.as_deref() else {
            continue;
        };
        if let Some(other) = users.insert(user, name) {
            return Err(ConfigError::new(
                key(name, "backend_user"),
                format!(
                    "'{user}' is the backend_user of tenant '{other}' too; each tenant needs a Redis \
                     ACL user of its own, or Redis would give both the same keys"
                ),
            ));
        }
    }
    Ok(())
}

fn build_tenant(
    name: &str,
    config: &TenantConfig,
    dbs: &BTreeMap<&str, u32>,
    directory: &Arc<DbDirectory>,
) -> Result<Tenant, ConfigError> {
    let key_pattern = match &config.key_pattern {
        Some(pattern) => Some(Regex::new(pattern).map_err(|error| {
            ConfigError::new(key(name, "key_pattern"), format!("invalid regex: {error}"))
        })?),
        None => None,
    };
    let key_prefix = config
        .key_prefix
        .as_ref()
        .map(|prefix| Bytes::copy_from_slice(prefix.as_bytes()));
    Ok(Tenant {
        name: name.to_owned(),
        password_digest: PasswordDigest(password_digest(name, &config.password)?),
        pool: config.pool.clone(),
        pools: config.pools.clone(),
        readonly: config.readonly,
        admin: config.admin,
        db: dbs.get(name).copied(),
        db_is_auto: config.db == Some(DbSetting::Auto),
        dbs: directory.clone(),
        glob_prefix: key_prefix.as_deref().map(escape_glob),
        key_prefix,
        key_pattern,
        default_ttl: config
            .default_ttl
            .map(|ttl| Bytes::from(ttl.get().to_string())),
        max_request_bytes: config.max_request_bytes.map(|max| max.get()),
        max_connections: config.max_connections.map(|max| max.get()),
        shared_pools: BTreeSet::new(),
        backend_login: backend_login(name, config)?,
        connections: AtomicUsize::new(0),
        limits: TrafficLimits::new(
            name,
            config.ops_per_sec,
            config.bytes_per_sec,
            std::time::Duration::from_millis(config.limit_wait_ms),
        )
        .with_shared(config.limits_store.as_ref().and_then(|store| {
            SharedBudget::new(name, &store.pool, config.ops_per_sec, config.bytes_per_sec)
        })),
    })
}
