//! The error replies the session writes itself, each text defined once, grouped by concern. A variant's
//! `Display` is the reply after `-` (it starts with the error code); [`ErrorReply::to_reply`] makes the RESP
//! line. Texts that imitate redis-server's are Redis's word for word: clients (and the tests) compare them.
//! Errors of the other crates keep their own texts: CROSSSLOT and CLUSTERDOWN for a slot come from
//! cluster-router's `RouteError`, the tenants' refusals from tenant-policy.

use bytes::Bytes;

use crate::reply;

/// An error the proxy answers a client with.
pub(crate) trait ErrorReply: std::fmt::Display {
    /// The RESP error line (kept on one line, whatever a name in it holds).
    fn to_reply(&self) -> Bytes {
        reply::error(&self.to_string())
    }
}

/// Commands the proxy answers itself, refused with redis-server's own texts.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    #[error("ERR value is not an integer or out of range")]
    NotAnInteger,
    #[error("ERR SELECT is not allowed in cluster mode")]
    SelectInCluster,
    #[error("ERR Protocol version is not an integer or out of range")]
    ProtocolVersion,
    #[error("NOPROTO unsupported protocol version")]
    NoProto,
    #[error("ERR Syntax error in HELLO option '{0}'")]
    HelloOption(String),
    #[error("ERR Client names cannot contain spaces, newlines or special characters.")]
    ClientName,
    /// CLIENT SETINFO of an attribute other than `lib-name` and `lib-ver`.
    #[error("ERR Unrecognized option '{0}'")]
    UnrecognizedOption(String),
    /// CLIENT SETINFO with a value that has spaces or control characters (the attribute is named).
    #[error("ERR {0} cannot contain spaces, newlines or special characters.")]
    AttributeValue(String),
    #[error("ERR Invalid client ID")]
    InvalidClientId,
    #[error("ERR Unknown client type '{0}'")]
    UnknownClientType(String),
    #[error("ERR syntax error")]
    Syntax,
    /// SLOWLOG GET with a count below -1.
    #[error("ERR count should be greater than or equal to -1")]
    SlowlogCount,
    /// CLUSTER commands: clients see one standalone server.
    #[error("ERR This instance has cluster support disabled")]
    NoCluster,
    /// CLIENT CACHING from a client that is not tracking (none is, through rkproxy).
    #[error(
        "ERR CLIENT CACHING can be called only when the client is in tracking mode \
         with OPTIN or OPTOUT mode enabled"
    )]
    CachingWithoutTracking,
}

impl ErrorReply for CommandError {}

/// What rkproxy does not offer, and why: the client's connection shares backend connections with others.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unsupported {
    #[error(
        "ERR CLIENT TRACKING is not supported by rkproxy: invalidation messages would go to \
         a backend connection shared with other clients and never reach this one; turn \
         client-side caching off"
    )]
    Tracking,
    #[error(
        "ERR CLIENT NO-EVICT is not supported by rkproxy: backend connections are shared \
         by many clients, so none can be exempted from eviction for one of them"
    )]
    NoEvict,
    #[error(
        "ERR CLIENT REPLY OFF and SKIP are not supported by rkproxy inside a \
         transaction, a blocking command or a subscription"
    )]
    ReplyOffDedicated,
    #[error("ERR CONFIG is not available on Kafka pool '{pool}': it has no Redis server")]
    ConfigOnKafka { pool: String },
    /// A safety net: the Kafka session code refuses every command that could need a Redis connection.
    #[error("ERR kafka pool '{pool}' has no Redis connections")]
    KafkaWithoutRedis { pool: String },
}

impl ErrorReply for Unsupported {}

/// AUTH and the limits on clients that have not authenticated.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    /// Redis's reply to AUTH when no password is configured; rkproxy has no client authentication until
    /// tenants are configured.
    #[error(
        "ERR AUTH <password> called without any password configured for the default user. \
         Are you sure your configuration is correct?"
    )]
    NoPassword,
    /// The `auth_max_failures`-th wrong password on a connection, which is then closed.
    #[error("ERR too many failed authentication attempts, closing the connection")]
    TooManyFailures,
    /// A connection over `client_limits.max_unauthenticated`, which is then closed.
    #[error("ERR max number of unauthenticated clients reached")]
    TooManyUnauthenticated,
    #[error("ERR pool '{pool}' of tenant '{tenant}' is not configured")]
    TenantPoolMissing { pool: String, tenant: String },
}

impl ErrorReply for AuthError {}

/// The proxy's own commands (`RKPROXY ...`, `USE`) and its own state.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    #[error(
        "ERR unknown subcommand for RKPROXY. Try RKPROXY POOL, TENANTS, RELOAD, KOFFSETS or KRESET."
    )]
    UnknownSubcommand,
    #[error("ERR unknown pool '{0}'")]
    UnknownPool(String),
    #[error(
        "ERR unknown RKPROXY STATS section. Try TENANTS, COMMANDS, POOLS, NODES, KAFKA or LANES."
    )]
    UnknownStatsSection,
    #[error("NOPERM RKPROXY STATS NODES is for admins: backend nodes are shared by every tenant")]
    StatsNodesForAdmins,
    #[error("ERR the count must be a positive integer")]
    CountNotPositive,
    #[error("ERR syntax error: RKPROXY BIGKEYS|HOTKEYS [count]")]
    KeysSyntax,
    #[error("ERR rkproxy is shutting down")]
    ShuttingDown,
    #[error("ERR reload refused, nothing changed: {0}")]
    ReloadRefused(String),
}

impl ErrorReply for AdminError {}

/// Cluster pools: what the proxy's own routing could not do.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClusterError {
    #[error("CLUSTERDOWN no slot map known yet for pool '{pool}'")]
    NoSlotMap { pool: String },
    /// Never expected: a batched command whose master vanished (see `ClusterSession::flush_batch`).
    #[error("CLUSTERDOWN rkproxy lost the master of a batched command")]
    LostBatchMaster,
    #[error("ERR rkproxy cannot route this command")]
    CannotRoute,
    #[error("ERR internal: reply for an unknown part")]
    UnknownPart,
    /// `last` is the text of the last redirect.
    #[error("ERR too many cluster redirections (last: {last})")]
    TooManyRedirections { last: String },
    /// Redis's reply to a multi-key command whose keys a slot migration has split between two nodes.
    #[error("TRYAGAIN Multiple keys request during rehashing of slot")]
    TryAgain,
    #[error("ERR no cluster node answered")]
    NoNodeAnswered,
}

impl ErrorReply for ClusterError {}

/// A backend reply the proxy had to read (to split, merge or show it) and could not, or lost.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplyError {
    /// A backend's replies cannot be framed as expected.
    #[error("ERR rkproxy could not read a backend reply")]
    Unreadable,
    /// A part's reply cannot be parsed for merging.
    #[error("ERR rkproxy could not read a backend reply to merge")]
    Unmergeable,
    #[error("ERR unexpected SCAN reply from the backend")]
    ScanReply,
    #[error("ERR unexpected SCAN cursor from the backend")]
    ScanCursor,
    /// A node answered a command that must be `+OK` with something else.
    #[error("ERR unexpected reply")]
    Unexpected,
    /// The task gathering a node's reply went away without it.
    #[error("ERR rkproxy lost a backend reply")]
    Lost,
    /// A backend connection's task went away without answering.
    #[error("ERR backend connection closed before replying")]
    ConnectionClosed,
    #[error("ERR rkproxy could not read INFO")]
    Info,
}

impl ErrorReply for ReplyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continued_lines_keep_redis_texts() {
        assert_eq!(
            &AuthError::NoPassword.to_reply()[..],
            &b"-ERR AUTH <password> called without any password configured for the default user. \
               Are you sure your configuration is correct?\r\n"[..]
        );
        assert_eq!(
            &CommandError::CachingWithoutTracking.to_reply()[..],
            &b"-ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or \
               OPTOUT mode enabled\r\n"[..]
        );
    }

    #[test]
    fn names_in_a_text_stay_on_one_line() {
        let reply = AdminError::UnknownPool("a\r\nb".to_owned()).to_reply();
        assert_eq!(&reply[..], b"-ERR unknown pool 'a  b'\r\n");
    }
}
