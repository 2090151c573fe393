//! [`Tenant`]: one validated tenant, and its rights (which commands, which database, which
//! pools).
//!
//! Rights are decided from the command table (`cluster_router::CommandSpec`), never from a
//! list of names kept here, except for the few commands whose flags do not say enough
//! ([`ADMIN_EXTRA`], [`DANGEROUS_BUT_ALLOWED`], [`MAY_WRITE_UNFLAGGED`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use bytes::Bytes;
use cluster_router::commands::{AclCategories, CommandClass, CommandFlags, KeySpecFlags};
use cluster_router::{Args, CommandSpec};
use regex_lite::Regex;

use crate::error::{sanitize, PolicyError};
use crate::limits::TrafficLimits;

/// Commands with the `@dangerous` ACL category that non-admin tenants may still run, because
/// they only touch the tenant's own keys once prefixed: KEYS gets the prefix in its pattern, and
/// SORT's BY/GET patterns and STORE key get it too.
pub const DANGEROUS_BUT_ALLOWED: &[&str] = &["keys", "sort", "sort_ro"];

/// Commands that are administrative although their flags do not say so: they act on state
/// shared by every tenant of the server (the script cache and function libraries).
pub const ADMIN_EXTRA: &[&str] = &[
    "script|flush",
    "script|kill",
    "function|flush",
    "function|delete",
    "function|restore",
    "function|kill",
];

/// Why a command is safe for tenants when its connection is the tenant's own.
const LOCAL: &str = "answered by the proxy from this connection's own state";
/// Why CLIENT LIST and CLIENT KILL are safe for a tenant.
const OWN_SESSIONS: &str =
    "answered by the proxy from its own sessions, of which a tenant sees and kills only its own connections";
/// Why SLOWLOG is safe for a tenant.
const SLOWLOG: &str =
    "answered by the proxy from its own slow log, which shows and resets only the tenant's own entries";
/// Why the transaction commands are safe.
const OWN_TRANSACTION: &str = "the client's own transaction, on a backend connection of its own";
/// Why script and function commands are listed.
const SCRIPTS: &str =
    "refused on a pool shared with other tenants (Tenant::check_scripts); on a pool of \
                       its own the server's scripts and functions are the tenant's alone";
/// Why static server metadata is safe.
const STATIC: &str = "the server's static command table or help text: nothing of any tenant";
/// Why subscription commands are safe.
const OWN_CHANNELS: &str =
    "channels and patterns get the key prefix, on a backend connection of the client's own";

/// The commands without keys that tenants who are not admins may run, each with why it cannot show or change
/// anything of another tenant (sorted by name). Every other command that names no key is for admins: a
/// command that a newer command table adds is refused to tenants until it is reviewed and listed here. The
/// proxy's integration test `tenants::hostile` runs every command without keys as a tenant while another
/// tenant has data, subscribers and blocked clients, and checks that nothing of it shows through these.
pub const KEYLESS_COMMANDS_FOR_TENANTS: &[(&str, &str)] = &[
    ("asking", LOCAL),
    ("auth", "authenticates this connection to the proxy"),
    ("client|caching", LOCAL),
    ("client|getname", LOCAL),
    ("client|getredir", LOCAL),
    ("client|help", STATIC),
    ("client|id", LOCAL),
    ("client|info", LOCAL),
    ("client|kill", OWN_SESSIONS),
    ("client|list", OWN_SESSIONS),
    ("client|reply", "the proxy drops this client's replies itself"),
    ("client|setinfo", LOCAL),
    ("client|setname", LOCAL),
    ("client|tracking", "answered by the proxy: ON is refused, OFF acknowledged"),
    ("client|trackinginfo", LOCAL),
    ("command", STATIC),
    ("command|count", STATIC),
    ("command|docs", STATIC),
    ("command|getkeys", "finds the keys of the arguments given; reads no data"),
    ("command|getkeysandflags", "finds the keys of the arguments given; reads no data"),
    ("command|help", STATIC),
    ("command|info", STATIC),
    ("command|list", STATIC),
    ("dbsize", "counts the tenant's own database; refused under a key prefix, where it would count every tenant's keys"),
    ("discard", OWN_TRANSACTION),
    ("echo", "answers its argument"),
    ("exec", OWN_TRANSACTION),
    ("function|dump", SCRIPTS),
    ("function|help", SCRIPTS),
    ("function|list", SCRIPTS),
    ("function|load", SCRIPTS),
    ("function|stats", SCRIPTS),
    ("hello", LOCAL),
    ("info", "answered by the proxy for tenants that are not admins: the proxy's facts, the tenant's own connections and keyspace"),
    ("keys", "the pattern gets the key prefix"),
    ("lolwut", "the server's version, drawn"),
    ("multi", OWN_TRANSACTION),
    ("ping", "answers PONG"),
    ("psubscribe", OWN_CHANNELS),
    ("publish", "the channel gets the key prefix: only the tenant's own subscribers receive it, and only they are counted"),
    ("pubsub|channels", "the pattern gets the key prefix, and the reply's channels lose it"),
    ("pubsub|numpat", "counts every pattern subscription of the server; refused under a key prefix"),
    ("pubsub|numsub", "the channels get the key prefix, and the reply's lose it"),
    ("pubsub|shardchannels", "the pattern gets the key prefix, and the reply's channels lose it"),
    ("pubsub|shardnumsub", "the channels get the key prefix, and the reply's lose it"),
    ("punsubscribe", OWN_CHANNELS),
    ("quit", LOCAL),
    ("randomkey", "picks a key of the tenant's own database; refused under a key prefix, where it would pick any tenant's key"),
    ("readonly", LOCAL),
    ("readwrite", LOCAL),
    ("reset", LOCAL),
    ("scan", "MATCH patterns get the key prefix (MATCH <prefix>* when there is none)"),
    ("script|exists", SCRIPTS),
    ("script|help", SCRIPTS),
    ("script|load", SCRIPTS),
    ("select", "checked by Tenant::check_select: the tenant's own db, or one no tenant of the pool has"),
    ("slowlog|get", SLOWLOG),
    ("slowlog|help", SLOWLOG),
    ("slowlog|len", SLOWLOG),
    ("slowlog|reset", SLOWLOG),
    ("spublish", "the shard channel gets the key prefix"),
    ("ssubscribe", OWN_CHANNELS),
    ("subscribe", OWN_CHANNELS),
    ("sunsubscribe", OWN_CHANNELS),
    ("time", "the server's clock"),
    ("unsubscribe", OWN_CHANNELS),
    ("unwatch", OWN_TRANSACTION),
];

/// Commands without the `write` flag that may write anyway: scripts and functions run
/// whatever they contain (their `_ro` variants are flagged read-only and allowed).
pub const MAY_WRITE_UNFLAGGED: &[&str] = &["eval", "evalsha", "fcall"];

/// The commands that work before authentication.
const BEFORE_AUTH: &[&str] = &["auth", "hello", "ping", "echo", "quit"];

/// Whether a command is allowed on a connection that has not authenticated yet: AUTH, HELLO,
/// PING, ECHO and QUIT. Everything else gets [`PolicyError::NoAuth`].
///
/// ```
/// use cluster_router::lookup;
/// use tenant_policy::allowed_before_auth;
///
/// assert!(allowed_before_auth(lookup(&[&b"PING"[..]]).unwrap()));
/// assert!(!allowed_before_auth(lookup(&[&b"GET"[..], b"k"]).unwrap()));
/// ```
pub fn allowed_before_auth(spec: &CommandSpec) -> bool {
    BEFORE_AUTH.contains(&spec.name)
}

/// Whether non-admin tenants are refused this command.
pub(crate) fn is_admin_command(spec: &CommandSpec) -> bool {
    spec.class == CommandClass::Admin
        || spec.flags.contains(CommandFlags::ADMIN)
        || spec.acl_categories.contains(AclCategories::ADMIN)
        || (spec.acl_categories.contains(AclCategories::DANGEROUS)
            && !DANGEROUS_BUT_ALLOWED.contains(&spec.name))
        || ADMIN_EXTRA.contains(&spec.name)
}

/// Whether a command names no key (every key spec, if any, is flagged `not_key`: the shard channels of
/// SSUBSCRIBE and friends) and is not in [`KEYLESS_COMMANDS_FOR_TENANTS`]: such commands are for admins.
pub(crate) fn is_unlisted_keyless(spec: &CommandSpec) -> bool {
    let takes_keys = spec
        .key_specs
        .iter()
        .any(|key_spec| !key_spec.flags.contains(KeySpecFlags::NOT_KEY));
    !takes_keys
        && KEYLESS_COMMANDS_FOR_TENANTS
            .binary_search_by(|(name, _)| name.cmp(&spec.name))
            .is_err()
}

/// Whether read-only tenants are refused this command.
pub(crate) fn may_write(spec: &CommandSpec) -> bool {
    spec.is_write() || MAY_WRITE_UNFLAGGED.contains(&spec.name)
}

/// Whether a command runs or manages scripts or functions: the `@scripting` ACL category (EVAL,
/// EVALSHA, FCALL and their `_ro` variants, every SCRIPT and FUNCTION subcommand), and the bare
/// SCRIPT and FUNCTION containers.
pub(crate) fn is_script_command(spec: &CommandSpec) -> bool {
    spec.acl_categories.contains(AclCategories::SCRIPTING)
        || matches!(spec.name, "script" | "function")
}

/// Whether a command is FUNCTION or one of its subcommands (FUNCTION LOAD, LIST, DUMP, ...): they act on the
/// function libraries, of which a server has one set for all its users.
fn is_function_command(spec: &CommandSpec) -> bool {
    spec.name == "function" || spec.name.starts_with("function|")
}

/// A tenant's Redis ACL user (`backend_user` and `backend_password`): what its backend connections log in
/// as. Its `Debug` shows no password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BackendLogin {
    user: Arc<str>,
    password: Arc<str>,
}

impl BackendLogin {
    /// The ACL user `user` with `password`.
    pub fn new(user: &str, password: &str) -> BackendLogin {
        BackendLogin {
            user: Arc::from(user),
            password: Arc::from(password),
        }
    }

    /// The ACL user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Its password.
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl std::fmt::Debug for BackendLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendLogin")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Which databases of each pool are taken by tenants with a `db`; shared by all tenants of one
/// configuration.
#[derive(Debug, Default)]
pub(crate) struct DbDirectory {
    pub(crate) pools: BTreeMap<String, PoolDbs>,
}

/// The databases of one pool.
#[derive(Debug, Default)]
pub(crate) struct PoolDbs {
    pub(crate) databases: u32,
    /// Databases some tenant has as its `db` (fixed or auto).
    pub(crate) claimed: BTreeSet<u32>,
}

/// The SHA-256 of a tenant's password. Its `Debug` hides it, so that logging a tenant does not
/// log something a weak password could be recovered from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct PasswordDigest(pub(crate) [u8; 32]);

impl std::fmt::Debug for PasswordDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordDigest(..)")
    }
}

/// One tenant, validated and ready for the hot path. Shared as `Arc<Tenant>` by all its
/// connections; every method takes `&self` and is thread-safe.
#[derive(Debug)]
pub struct Tenant {
    pub(crate) name: String,
    pub(crate) password_digest: PasswordDigest,
    pub(crate) pool: String,
    pub(crate) pools: Vec<String>,
    pub(crate) readonly: bool,
    pub(crate) admin: bool,
    pub(crate) db: Option<u32>,
    pub(crate) db_is_auto: bool,
    pub(crate) dbs: Arc<DbDirectory>,
    pub(crate) key_prefix: Option<Bytes>,
    /// The prefix with glob characters escaped, for KEYS/SCAN/PSUBSCRIBE patterns.
    pub(crate) glob_prefix: Option<Bytes>,
    pub(crate) key_pattern: Option<Regex>,
    /// `default_ttl` in seconds, as the decimal text that goes after `EX`.
    pub(crate) default_ttl: Option<Bytes>,
    pub(crate) max_request_bytes: Option<usize>,
    pub(crate) max_connections: Option<usize>,
    /// The pools this tenant is configured on (its `pool` and `pools`) together with at least
    /// one other tenant: there it may not run scripts ([`Tenant::check_scripts`]).
    pub(crate) shared_pools: BTreeSet<String>,
    /// The Redis ACL user its backend connections log in as, if it has one.
    pub(crate) backend_login: Option<BackendLogin>,
    pub(crate) connections: AtomicUsize,
    pub(crate) limits: TrafficLimits,
}

// === impl Tenant ===

impl Tenant {
    /// The tenant's name (its AUTH username).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pool its connections start on.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// Whether it may only read.
    pub fn is_readonly(&self) -> bool {
        self.readonly
    }

    /// Whether it may run administrative commands and use any pool.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// The database its connections use: the configured number, the one assigned for
    /// `db = "auto"`, or `None` when unset (start in db 0; SELECT as [`Tenant::check_select`]
    /// allows).
    pub fn db(&self) -> Option<u32> {
        self.db
    }

    /// Whether [`Tenant::db`] was assigned by `db = "auto"`.
    pub fn db_is_auto(&self) -> bool {
        self.db_is_auto
    }

    /// The traffic budget shared with other proxies (`limits_store`), if the tenant has one and limits.
    pub fn shared_budget(&self) -> Option<&crate::SharedBudget> {
        self.limits.shared()
    }

    /// The Redis ACL user its backend connections log in as (`backend_user`), if it has one.
    pub fn backend_login(&self) -> Option<&BackendLogin> {
        self.backend_login.as_ref()
    }

    /// The pools it is configured on (its `pool` and `pools`).
    pub fn configured_pools(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.pool.as_str()).chain(self.pools.iter().map(String::as_str))
    }

    /// Whether other tenants are configured on `pool` too.
    pub fn shares_pool(&self, pool: &str) -> bool {
        self.shared_pools.contains(pool)
    }

    /// The key prefix, if any.
    pub fn key_prefix(&self) -> Option<&[u8]> {
        self.key_prefix.as_deref()
    }

    /// The SELECT check: parses the client's db argument and says whether this tenant may use
    /// that database on `pool` (the connection's current pool). Returns the database number.
    ///
    /// Tenants with a `db` may select only it; tenants without one may select db 0 and any
    /// database no tenant of that pool has as its `db`; admins may select any database.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use tenant_policy::{DbSetting, PoolInfo, TenantConfig, Tenants};
    ///
    /// let mut config = TenantConfig::new("pw", "main");
    /// config.db = Some(DbSetting::Number(3));
    /// let tenants = Tenants::new(
    ///     &BTreeMap::from([("app".to_owned(), config)]),
    ///     &BTreeMap::from([("main".to_owned(), PoolInfo::standalone())]),
    /// )
    /// .unwrap();
    /// let app = tenants.get("app").unwrap();
    /// assert_eq!(app.check_select("main", b"3"), Ok(3));
    /// assert_eq!(
    ///     app.check_select("main", b"4").unwrap_err().to_string(),
    ///     "ERR SELECT 4 is not allowed: tenant 'app' works in db 3"
    /// );
    /// ```
    pub fn check_select(&self, pool: &str, db: &[u8]) -> Result<u32, PolicyError> {
        let requested = std::str::from_utf8(db)
            .ok()
            .and_then(|text| text.parse::<i64>().ok())
            .ok_or(PolicyError::NotAnInteger)?;
        let pool_dbs = self.dbs.pools.get(pool);
        let databases = pool_dbs.map_or(0, |pool| pool.databases);
        let requested = u32::try_from(requested)
            .ok()
            .filter(|db| *db < databases)
            .ok_or(PolicyError::DbOutOfRange)?;
        if self.admin {
            return Ok(requested);
        }
        match self.db {
            Some(own) if own == requested => Ok(requested),
            Some(own) => Err(PolicyError::SelectOtherDb {
                tenant: self.name.clone(),
                requested,
                own,
            }),
            None if requested != 0
                && pool_dbs.is_some_and(|pool| pool.claimed.contains(&requested)) =>
            {
                Err(PolicyError::SelectReservedDb {
                    pool: pool.to_owned(),
                    requested,
                })
            }
            None => Ok(requested),
        }
    }

    /// The USE check: admins may use any pool, other tenants their own pool and the ones in
    /// their `pools` list. (That the pool exists is the proxy's check.)
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use tenant_policy::{PoolInfo, TenantConfig, Tenants};
    ///
    /// let tenants = Tenants::new(
    ///     &BTreeMap::from([("app".to_owned(), TenantConfig::new("pw", "main"))]),
    ///     &BTreeMap::from([
    ///         ("main".to_owned(), PoolInfo::standalone()),
    ///         ("other".to_owned(), PoolInfo::standalone()),
    ///     ]),
    /// )
    /// .unwrap();
    /// let app = tenants.get("app").unwrap();
    /// assert!(app.may_use_pool("main").is_ok());
    /// assert_eq!(
    ///     app.may_use_pool("other").unwrap_err().to_string(),
    ///     "NOPERM tenant 'app' may not use pool 'other'"
    /// );
    /// ```
    pub fn may_use_pool(&self, pool: &str) -> Result<(), PolicyError> {
        if self.admin || self.pool == pool || self.pools.iter().any(|p| p == pool) {
            Ok(())
        } else {
            Err(PolicyError::PoolNotAllowed {
                tenant: self.name.clone(),
                pool: sanitize(pool.as_bytes()),
            })
        }
    }

    /// The script check, for a connection on `pool`: a tenant that is configured on `pool`
    /// together with other tenants (admins count) may not run script or function commands
    /// (EVAL, EVALSHA, FCALL and their `_ro` variants, SCRIPT ..., FUNCTION ...): a script can
    /// name keys it was not given, SELECT any database, and read or replace the function
    /// libraries and cached scripts that every tenant of the server shares, so neither the key
    /// prefix nor the `db` would hold. Admins may run them anywhere (FUNCTION LOAD, FUNCTION
    /// FLUSH, ... are theirs on a shared pool); a tenant alone on its pool may run them as before.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use cluster_router::lookup;
    /// use tenant_policy::{PoolInfo, TenantConfig, Tenants};
    ///
    /// let tenants = Tenants::new(
    ///     &BTreeMap::from([
    ///         ("a".to_owned(), TenantConfig::new("pw-a", "main")),
    ///         ("b".to_owned(), TenantConfig::new("pw-b", "main")),
    ///         ("solo".to_owned(), TenantConfig::new("pw-solo", "own")),
    ///     ]),
    ///     &BTreeMap::from([
    ///         ("main".to_owned(), PoolInfo::standalone()),
    ///         ("own".to_owned(), PoolInfo::standalone()),
    ///     ]),
    /// )
    /// .unwrap();
    /// let eval = lookup(&[&b"EVAL"[..], b"return 1", b"0"]).unwrap();
    /// assert!(tenants.get("a").unwrap().check_scripts(eval, "main").unwrap_err().to_string()
    ///     .starts_with("NOPERM this user has no permissions to run the 'eval' command (tenant 'a' shares pool 'main'"));
    /// assert!(tenants.get("solo").unwrap().check_scripts(eval, "own").is_ok());
    /// ```
    pub fn check_scripts(&self, spec: &CommandSpec, pool: &str) -> Result<(), PolicyError> {
        if self.admin || !is_script_command(spec) || !self.shared_pools.contains(pool) {
            return Ok(());
        }
        if self.backend_login.is_some() {
            // Redis holds the tenant's ACL user to its keys, channels and commands inside scripts; only the
            // function libraries, one per server, stay out of its reach.
            if !is_function_command(spec) {
                return Ok(());
            }
            return Err(PolicyError::FunctionsOnSharedPool {
                tenant: self.name.clone(),
                command: spec.name,
                pool: pool.to_owned(),
            });
        }
        Err(PolicyError::ScriptsOnSharedPool {
            tenant: self.name.clone(),
            command: spec.name,
            pool: pool.to_owned(),
        })
    }

    /// The channel check, for a connection on `pool`: a tenant that has a `db` but no key prefix, configured
    /// on `pool` together with other tenants, may not run pub/sub commands there (SUBSCRIBE, PSUBSCRIBE,
    /// SSUBSCRIBE, their UNSUBSCRIBEs, PUBLISH, SPUBLISH, PUBSUB ...). Its db keeps its keys apart, but
    /// channels are server-wide: `SUBSCRIBE b:news` or `PSUBSCRIBE *` would hear the other tenants'
    /// messages, including keyspace notifications of their databases. A key prefix prefixes channels too,
    /// so a prefixed tenant keeps pub/sub. Admins, a tenant alone on its pool, and a tenant with neither a db
    /// nor a prefix (which shares db 0 and its keys with the others by configuration) are not checked.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use cluster_router::lookup;
    /// use tenant_policy::{DbSetting, PoolInfo, TenantConfig, Tenants};
    ///
    /// let mut own_db = TenantConfig::new("pw-c", "main");
    /// own_db.db = Some(DbSetting::Number(3));
    /// let mut prefixed = TenantConfig::new("pw-b", "main");
    /// prefixed.key_prefix = Some("b:".to_owned());
    /// let tenants = Tenants::new(
    ///     &BTreeMap::from([("c".to_owned(), own_db), ("b".to_owned(), prefixed)]),
    ///     &BTreeMap::from([("main".to_owned(), PoolInfo::standalone())]),
    /// )
    /// .unwrap();
    /// let subscribe = lookup(&[&b"SUBSCRIBE"[..], b"b:news"]).unwrap();
    /// assert!(tenants.get("c").unwrap().check_channels(subscribe, "main").unwrap_err().to_string()
    ///     .contains("has a db but no key prefix"));
    /// assert!(tenants.get("b").unwrap().check_channels(subscribe, "main").is_ok());
    /// ```
    pub fn check_channels(&self, spec: &CommandSpec, pool: &str) -> Result<(), PolicyError> {
        if self.admin
            || spec.class != CommandClass::PubSub
            || self.key_prefix.is_some()
            || self.db.is_none()
            || !self.shared_pools.contains(pool)
        {
            return Ok(());
        }
        Err(PolicyError::ChannelsWithoutPrefix {
            tenant: self.name.clone(),
            command: spec.name,
            pool: pool.to_owned(),
        })
    }

    /// The check for the proxy's own admin commands (RELOAD, SHOW, ...), which are not in the
    /// Redis command table: admins only. `command` is the name as the client sent it.
    pub fn may_run_proxy_admin(&self, command: &[u8]) -> Result<(), PolicyError> {
        if self.admin {
            Ok(())
        } else {
            Err(PolicyError::ProxyAdminOnly {
                tenant: self.name.clone(),
                command: sanitize(command).to_ascii_lowercase(),
            })
        }
    }

    /// The rights check for one command: admin-only commands for non-admins, writes for
    /// read-only tenants, and commands that would cross the tenant's isolation. Allocates only
    /// when it refuses.
    ///
    /// - Admin-only: class `Admin`, the `admin` flag, the `@admin` category, the `@dangerous`
    ///   category except [`DANGEROUS_BUT_ALLOWED`], [`ADMIN_EXTRA`], and every command without
    ///   keys that is not in [`KEYLESS_COMMANDS_FOR_TENANTS`].
    /// - Writes: the `write` flag and [`MAY_WRITE_UNFLAGGED`] (EVAL, EVALSHA, FCALL; their
    ///   `_ro` variants are allowed).
    /// - Isolation: under a key prefix RANDOMKEY (the server cannot pick a random key among the
    ///   tenant's keys: use SCAN), DBSIZE and PUBSUB NUMPAT (they would count every tenant's keys
    ///   and patterns), and for non-admins MOVE and `COPY ... DB n` into a database other than
    ///   the tenant's.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use cluster_router::lookup;
    /// use tenant_policy::{PoolInfo, TenantConfig, Tenants};
    ///
    /// let mut config = TenantConfig::new("pw", "main");
    /// config.readonly = true;
    /// let tenants = Tenants::new(
    ///     &BTreeMap::from([("reports".to_owned(), config)]),
    ///     &BTreeMap::from([("main".to_owned(), PoolInfo::standalone())]),
    /// )
    /// .unwrap();
    /// let reports = tenants.get("reports").unwrap();
    /// let args: &[&[u8]] = &[b"SET", b"k", b"v"];
    /// assert_eq!(
    ///     reports.authorize(lookup(&args).unwrap(), &args).unwrap_err().to_string(),
    ///     "NOPERM this user has no permissions to run the 'set' command (tenant 'reports' is read-only)"
    /// );
    /// let args: &[&[u8]] = &[b"CONFIG", b"GET", b"maxmemory"];
    /// assert_eq!(
    ///     reports.authorize(lookup(&args).unwrap(), &args).unwrap_err().to_string(),
    ///     "NOPERM this user has no permissions to run the 'config|get' command (tenant 'reports' is not an admin)"
    /// );
    /// ```
    pub fn authorize(&self, spec: &CommandSpec, args: &impl Args) -> Result<(), PolicyError> {
        if !self.admin && (is_admin_command(spec) || is_unlisted_keyless(spec)) {
            return Err(PolicyError::AdminOnly {
                tenant: self.name.clone(),
                command: spec.name,
            });
        }
        if self.readonly && may_write(spec) {
            return Err(PolicyError::ReadOnly {
                tenant: self.name.clone(),
                command: spec.name,
            });
        }
        let isolation = |reason| PolicyError::Isolation {
            tenant: self.name.clone(),
            command: spec.name,
            reason,
        };
        match spec.name {
            "randomkey" if self.key_prefix.is_some() => Err(isolation(
                "has a key prefix and RANDOMKEY would pick any tenant's key; use SCAN",
            )),
            "dbsize" if self.key_prefix.is_some() => Err(isolation(
                "has a key prefix and DBSIZE would count every tenant's keys; use SCAN",
            )),
            "pubsub|numpat" if self.key_prefix.is_some() => Err(isolation(
                "has a key prefix and PUBSUB NUMPAT would count every tenant's patterns",
            )),
            "move" if !self.admin => Err(isolation("may not move keys to another database")),
            "copy" if !self.admin && copies_to_other_db(args, self.db) => {
                Err(isolation("may not copy keys to another database"))
            }
            _ => Ok(()),
        }
    }
}

/// Whether `COPY src dst [DB n] [REPLACE]` names a database other than `own`.
fn copies_to_other_db(args: &impl Args, own: Option<u32>) -> bool {
    let mut index = 3;
    while let Some(arg) = args.arg(index) {
        if arg.eq_ignore_ascii_case(b"db") {
            let target = args
                .arg(index + 1)
                .and_then(|db| std::str::from_utf8(db).ok())
                .and_then(|db| db.parse::<u32>().ok());
            // A malformed number is the server's syntax error to report; only a real other
            // database (or any database for a tenant without one) is refused here.
            return match (target, own) {
                (Some(target), Some(own)) => target != own,
                (Some(_), None) => true,
                (None, _) => false,
            };
        }
        index += 1;
    }
    false
}
