//! The `[tenants.NAME]` configuration tables, as serde structs.
//!
//! The proxy's figment configuration embeds them as `tenants: BTreeMap<String, TenantConfig>`
//! ([`TenantsConfig`]); [`Tenants::new`](crate::Tenants::new) then checks everything serde
//! cannot (regexes, pools, databases, unique passwords) and builds the runtime tenants.
//!
//! ```toml
//! [tenants.app1]
//! password = "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
//! pool = "main"
//! db = "auto"
//! key_prefix = "app1:"
//! key_pattern = '^[a-z0-9:_-]+$'
//! default_ttl = 86400
//! ops_per_sec = 5000
//! bytes_per_sec = 10000000
//! max_request_bytes = 1048576
//! max_connections = 200
//! backend_user = "app1"            # a Redis ACL user (see the proxy's README, Tenants)
//! backend_password = "acl-secret"
//! ```

use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// All tenants by name, as the proxy configuration holds them (`[tenants.NAME]`).
pub type TenantsConfig = BTreeMap<String, TenantConfig>;

/// One tenant: `[tenants.NAME]`.
///
/// ```
/// use tenant_policy::{DbSetting, TenantConfig};
///
/// let config: TenantConfig = figment::Figment::from(figment::providers::Serialized::defaults(
///     TenantConfig::new("secret", "main"),
/// ))
/// .extract()
/// .unwrap();
/// assert_eq!(config.db, None);
/// assert!(!config.readonly);
/// assert_eq!("auto".parse::<DbSetting>().unwrap(), DbSetting::Auto);
/// ```
///
/// Its `Debug` shows no password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TenantConfig {
    /// The AUTH secret: plain text, or `sha256:<64 hex digits>` (the SHA-256 of the password) so
    /// that configuration files need not hold secrets. Unique across tenants, because
    /// `AUTH password` finds the tenant by its password.
    pub password: String,
    /// The backend pool the tenant's connections start on.
    pub pool: String,
    /// Other pools this tenant may switch to with `USE pool` (admins may use any pool).
    #[serde(default)]
    pub pools: Vec<String>,
    /// Refuse every command that writes.
    #[serde(default)]
    pub readonly: bool,
    /// Allow administrative commands (CONFIG, INFO, FLUSHALL, the proxy's RELOAD/SHOW, ...).
    #[serde(default)]
    pub admin: bool,
    /// The tenant's database: a number, or `"auto"` for one of its own (see the crate docs for
    /// the assignment rule). Unset: the tenant starts in db 0 and may SELECT any database that
    /// no other tenant of the pool claims.
    #[serde(default)]
    pub db: Option<DbSetting>,
    /// Prepended to every key (and pub/sub channel) the tenant sends, removed from keys in
    /// replies.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// A regular expression (`regex-lite` syntax) every key must match, as sent by the client
    /// (before the prefix). It is searched, not anchored: write `^...$` to match whole keys.
    #[serde(default)]
    pub key_pattern: Option<String>,
    /// Seconds: a `SET` without EX/PX/EXAT/PXAT/KEEPTTL gets `EX default_ttl`. Off when unset.
    #[serde(default)]
    pub default_ttl: Option<NonZeroU64>,
    /// Most client connections of this tenant at once, across the whole proxy process.
    #[serde(default)]
    pub max_connections: Option<NonZeroUsize>,
    /// Commands per second, shared by all the tenant's connections.
    #[serde(default)]
    pub ops_per_sec: Option<NonZeroU32>,
    /// Request plus reply bytes per second, shared by all the tenant's connections.
    #[serde(default)]
    pub bytes_per_sec: Option<NonZeroU64>,
    /// Largest single request, in bytes.
    #[serde(default)]
    pub max_request_bytes: Option<NonZeroUsize>,
    /// How long a request may wait for ops/bytes budget before it is refused, in
    /// milliseconds; 0 refuses at once.
    #[serde(default = "default_limit_wait_ms")]
    pub limit_wait_ms: u64,
    /// Where `ops_per_sec` and `bytes_per_sec` are shared with other proxies: unset, each process
    /// allows the whole budget (N proxies allow N times the limit); with a pool, the budget is a
    /// token bucket in that pool's Redis, which every proxy takes batches from.
    #[serde(default)]
    pub limits_store: Option<LimitsStore>,
    /// The Redis ACL user the tenant's backend connections log in as (`AUTH backend_user
    /// backend_password`), with `backend_password`. The tenant then gets backend connections of its
    /// own, and Redis enforces the user's key, channel and command rules on everything the tenant
    /// runs, scripts included; so a tenant with one may run scripts on a pool it shares with other
    /// tenants. Unset: the pool's own `username`/`password`, on connections shared by tenants.
    #[serde(default)]
    pub backend_user: Option<String>,
    /// The password of `backend_user`.
    #[serde(default)]
    pub backend_password: Option<String>,
    /// Mutual TLS: a client whose verified certificate has this subject (`"CN=orders, O=Shop"`, the whole
    /// set of attributes in any order) is this tenant without AUTH. The proxy checks and uses it.
    #[serde(default)]
    pub tls_subject: Option<String>,
}

/// `limits_store = { pool = "main" }`: the Redis pool that holds a tenant's shared traffic budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsStore {
    /// A standalone pool of the configuration.
    pub pool: String,
}

impl std::fmt::Debug for TenantConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantConfig")
            .field("password", &"<redacted>")
            .field("pool", &self.pool)
            .field("pools", &self.pools)
            .field("readonly", &self.readonly)
            .field("admin", &self.admin)
            .field("db", &self.db)
            .field("key_prefix", &self.key_prefix)
            .field("key_pattern", &self.key_pattern)
            .field("default_ttl", &self.default_ttl)
            .field("max_connections", &self.max_connections)
            .field("ops_per_sec", &self.ops_per_sec)
            .field("bytes_per_sec", &self.bytes_per_sec)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("limit_wait_ms", &self.limit_wait_ms)
            .field("limits_store", &self.limits_store)
            .field("backend_user", &self.backend_user)
            .field(
                "backend_password",
                &self.backend_password.as_ref().map(|_| "<redacted>"),
            )
            .field("tls_subject", &self.tls_subject)
            .finish()
    }
}

/// The default of [`TenantConfig::limit_wait_ms`]: one second, the time a limiter needs to
/// refill completely, so a tenant within its limits on average is delayed, not refused.
pub const DEFAULT_LIMIT_WAIT_MS: u64 = 1000;

fn default_limit_wait_ms() -> u64 {
    DEFAULT_LIMIT_WAIT_MS
}

impl TenantConfig {
    /// A tenant with a password and a pool, everything else at its default.
    pub fn new(password: impl Into<String>, pool: impl Into<String>) -> TenantConfig {
        TenantConfig {
            password: password.into(),
            pool: pool.into(),
            pools: Vec::new(),
            readonly: false,
            admin: false,
            db: None,
            key_prefix: None,
            key_pattern: None,
            default_ttl: None,
            max_connections: None,
            ops_per_sec: None,
            bytes_per_sec: None,
            max_request_bytes: None,
            limit_wait_ms: DEFAULT_LIMIT_WAIT_MS,
            limits_store: None,
            backend_user: None,
            backend_password: None,
            tls_subject: None,
        }
    }
}

/// `db = N` or `db = "auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DbSetting {
    /// This database.
    Number(u32),
    /// A database of the tenant's own, chosen deterministically from the configuration.
    Auto,
}

impl std::str::FromStr for DbSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<DbSetting, String> {
        if text.eq_ignore_ascii_case("auto") {
            return Ok(DbSetting::Auto);
        }
        text.parse::<u32>()
            .map(DbSetting::Number)
            .map_err(|_| format!("expected a database number or \"auto\", found '{text}'"))
    }
}

impl Serialize for DbSetting {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            DbSetting::Number(db) => serializer.serialize_u32(*db),
            DbSetting::Auto => serializer.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for DbSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DbSetting, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = DbSetting;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a database number or \"auto\"")
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<DbSetting, E> {
                u32::try_from(value)
                    .map(DbSetting::Number)
                    .map_err(|_| E::custom(format!("database {value} is too large")))
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<DbSetting, E> {
                u32::try_from(value)
                    .map(DbSetting::Number)
                    .map_err(|_| E::custom(format!("database {value} is out of range")))
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<DbSetting, E> {
                // Environment variables arrive as strings, so "3" is accepted as well as 3.
                value.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

/// What tenant validation needs to know about one backend pool.
///
/// ```
/// use tenant_policy::PoolInfo;
///
/// assert_eq!(PoolInfo::standalone().databases, 16);
/// assert_eq!(PoolInfo::cluster().databases, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolInfo {
    /// How many databases the pool's servers have (`databases` in redis.conf; a Redis Cluster
    /// has only db 0).
    pub databases: u32,
}

impl PoolInfo {
    /// A standalone redis-server with the default 16 databases.
    pub const fn standalone() -> PoolInfo {
        PoolInfo { databases: 16 }
    }

    /// A Redis Cluster: db 0 only.
    pub const fn cluster() -> PoolInfo {
        PoolInfo { databases: 1 }
    }

    /// A pool whose servers have `databases` databases.
    pub const fn with_databases(databases: u32) -> PoolInfo {
        PoolInfo { databases }
    }
}
