//! The errors of this crate.
//!
//! [`PolicyError`] is what a client sees: its `Display` is the exact text after `-` in the RESP
//! error reply (Redis's own wording where Redis has one: `NOAUTH`, `WRONGPASS`, `NOPERM`), and
//! [`PolicyError::to_reply`] gives the whole reply. [`ConfigError`] is what an operator sees
//! when the `[tenants.NAME]` tables are wrong; it names the key.

use bytes::{BufMut, Bytes, BytesMut};
use cluster_router::CommandError;

/// A request or connection refused by tenant policy.
///
/// ```
/// use tenant_policy::PolicyError;
///
/// let error = PolicyError::NoAuth;
/// assert_eq!(error.to_string(), "NOAUTH Authentication required.");
/// assert_eq!(&error.to_reply()[..], b"-NOAUTH Authentication required.\r\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A command other than AUTH, HELLO, PING, ECHO or QUIT before authentication.
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    /// AUTH or HELLO AUTH with an unknown user or a wrong password.
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    /// AUTH or HELLO with the wrong shape (for example `AUTH a b c`).
    #[error("ERR syntax error")]
    Syntax,
    /// HELLO with a bad option; `option` is as the client sent it, sanitized.
    #[error("ERR Syntax error in HELLO option '{option}'")]
    HelloSyntax {
        /// The option, sanitized and truncated.
        option: String,
    },
    /// A read-only tenant sent a command that writes (or may write).
    #[error(
        "NOPERM this user has no permissions to run the '{command}' command \
         (tenant '{tenant}' is read-only)"
    )]
    ReadOnly {
        /// The tenant.
        tenant: String,
        /// The command, lowercase, subcommands as `container|sub` (Redis 7's spelling).
        command: &'static str,
    },
    /// A non-admin tenant sent an administrative command.
    #[error(
        "NOPERM this user has no permissions to run the '{command}' command \
         (tenant '{tenant}' is not an admin)"
    )]
    AdminOnly {
        /// The tenant.
        tenant: String,
        /// The command, lowercase.
        command: &'static str,
    },
    /// A command that would cross the tenant's isolation (RANDOMKEY under a key prefix, MOVE,
    /// COPY ... DB n into another database).
    #[error(
        "NOPERM this user has no permissions to run the '{command}' command \
         (tenant '{tenant}' {reason})"
    )]
    Isolation {
        /// The tenant.
        tenant: String,
        /// The command, lowercase.
        command: &'static str,
        /// Why, completing "tenant 't' ...".
        reason: &'static str,
    },
    /// A script or function command (EVAL, EVALSHA, FCALL and their `_ro` variants, SCRIPT ...,
    /// FUNCTION ...) from a non-admin tenant on a pool that other tenants are configured on too.
    /// Scripts run inside Redis, out of the proxy's reach: they can name keys they were not
    /// given, SELECT any database, and load or read function libraries and cached scripts,
    /// which every tenant of the server shares.
    #[error(
        "NOPERM this user has no permissions to run the '{command}' command (tenant '{tenant}' \
         shares pool '{pool}' with other tenants, and scripts and functions can read and write \
         any key, select any db and replace other tenants' functions; give the tenant a \
         backend_user (a Redis ACL user, which Redis holds to its keys inside scripts too) or a pool \
         of its own, on servers no other tenant uses)"
    )]
    ScriptsOnSharedPool {
        /// The tenant.
        tenant: String,
        /// The command, lowercase, subcommands as `container|sub`.
        command: &'static str,
        /// The pool the connection is on.
        pool: String,
    },
    /// A FUNCTION command (LOAD, DELETE, LIST, DUMP, ...) from a non-admin tenant with a
    /// `backend_user` on a pool other tenants are configured on too. Its ACL user keeps its
    /// scripts to its own keys, but the function libraries are one per server: loading or
    /// replacing a library changes what every tenant's FCALL runs, and listing or dumping them
    /// shows every tenant's code.
    #[error(
        "NOPERM this user has no permissions to run the '{command}' command (tenant '{tenant}' \
         shares pool '{pool}' with other tenants, and the server's function libraries are shared by \
         all of them: FUNCTION is for admins there; FCALL runs the functions they load)"
    )]
    FunctionsOnSharedPool {
        /// The tenant.
        tenant: String,
        /// The command, lowercase, subcommands as `container|sub`.
        command: &'static str,
        /// The pool the connection is on.
        pool: String,
    },
    /// A pub/sub command (SUBSCRIBE, PUBLISH, PUBSUB ..., ...) from a non-admin tenant that has a `db` but no
    /// key prefix, on a pool other tenants are configured on too: channels are server-wide, not per database,
    /// so only a key prefix (which prefixes channels too) keeps its channels apart from the other tenants'.
    #[error(
        "NOPERM this user has no permissions to run the '{command}' command (tenant '{tenant}' \
         shares pool '{pool}' with other tenants and has a db but no key prefix; pub/sub channels are \
         server-wide, not per db, so it would hear and reach every tenant's channels; give the tenant a \
         key_prefix, which prefixes its channels too)"
    )]
    ChannelsWithoutPrefix {
        /// The tenant.
        tenant: String,
        /// The command, lowercase, subcommands as `container|sub`.
        command: &'static str,
        /// The pool the connection is on.
        pool: String,
    },
    /// A proxy admin command (RELOAD, SHOW, ...) from a non-admin tenant.
    #[error(
        "NOPERM this user has no permissions to run the '{command}' command \
         (tenant '{tenant}' is not an admin)"
    )]
    ProxyAdminOnly {
        /// The tenant.
        tenant: String,
        /// The command, lowercase, sanitized.
        command: String,
    },
    /// USE of a pool the tenant may not use.
    #[error("NOPERM tenant '{tenant}' may not use pool '{pool}'")]
    PoolNotAllowed {
        /// The tenant.
        tenant: String,
        /// The pool, sanitized.
        pool: String,
    },
    /// SELECT with an argument that is not an integer (Redis's text).
    #[error("ERR value is not an integer or out of range")]
    NotAnInteger,
    /// SELECT of a database the pool does not have (Redis's text).
    #[error("ERR DB index is out of range")]
    DbOutOfRange,
    /// SELECT of a database other than the tenant's own.
    #[error("ERR SELECT {requested} is not allowed: tenant '{tenant}' works in db {own}")]
    SelectOtherDb {
        /// The tenant.
        tenant: String,
        /// The database the client asked for.
        requested: u32,
        /// The tenant's database.
        own: u32,
    },
    /// SELECT of a database that belongs to another tenant (by a tenant without a `db`).
    #[error(
        "ERR SELECT {requested} is not allowed: db {requested} of pool '{pool}' is reserved \
         for another tenant"
    )]
    SelectReservedDb {
        /// The pool.
        pool: String,
        /// The database the client asked for.
        requested: u32,
    },
    /// A key that does not match the tenant's `key_pattern`.
    #[error("ERR key '{key}' does not match the key pattern of tenant '{tenant}'")]
    KeyPattern {
        /// The tenant.
        tenant: String,
        /// The key as the client sent it, sanitized and truncated.
        key: String,
    },
    /// The tenant is over its operations or bytes per second limit.
    #[error("ERR tenant '{tenant}' is over its {limit} limit")]
    OverLimit {
        /// The tenant.
        tenant: String,
        /// Which limit.
        limit: LimitKind,
    },
    /// One request larger than the tenant's `max_request_bytes`.
    #[error("ERR request of {size} bytes is over tenant '{tenant}' limit of {max} bytes")]
    RequestTooLarge {
        /// The tenant.
        tenant: String,
        /// The request's size in bytes.
        size: usize,
        /// The tenant's limit.
        max: usize,
    },
    /// The tenant already has `max_connections` connections.
    #[error("ERR tenant '{tenant}' has too many connections (max {max})")]
    TooManyConnections {
        /// The tenant.
        tenant: String,
        /// The tenant's limit.
        max: usize,
    },
    /// The command table refused the request (a bad key count, with Redis's own text).
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// Which traffic limit a tenant went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitKind {
    /// `ops_per_sec`.
    OpsPerSec,
    /// `bytes_per_sec`.
    BytesPerSec,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitKind::OpsPerSec => "ops_per_sec",
            LimitKind::BytesPerSec => "bytes_per_sec",
        })
    }
}

// === impl PolicyError ===

impl PolicyError {
    /// The error as a complete RESP error reply: `-TEXT\r\n`.
    ///
    /// ```
    /// use tenant_policy::PolicyError;
    ///
    /// assert_eq!(
    ///     &PolicyError::WrongPass.to_reply()[..],
    ///     &b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"[..]
    /// );
    /// ```
    pub fn to_reply(&self) -> Bytes {
        let text = self.to_string();
        let mut reply = BytesMut::with_capacity(text.len() + 3);
        reply.put_u8(b'-');
        reply.put_slice(text.as_bytes());
        reply.put_slice(b"\r\n");
        reply.freeze()
    }
}

/// A problem in the `[tenants.NAME]` configuration, naming the key.
///
/// ```
/// use tenant_policy::ConfigError;
///
/// let error = ConfigError::new("tenants.app1.key_pattern", "invalid regex: unclosed group");
/// assert_eq!(error.to_string(), "tenants.app1.key_pattern: invalid regex: unclosed group");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The dotted key, for example `tenants.app1.db`.
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Client-sent text in errors: see [`cluster_router::commands::sanitize`] (one rule for every error reply).
pub(crate) use cluster_router::commands::sanitize;
