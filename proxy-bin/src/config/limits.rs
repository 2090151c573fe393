//! `[timeouts]`, `[client_limits]` and `[big_requests]`: the bounds every wait and every client keeps.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Timeouts. Every wait in the proxy has one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Connecting to a backend, including its AUTH and SELECT handshake.
    pub connect_ms: u64,
    /// How long a shared backend connection that owes replies may make no progress (no reply bytes read, no
    /// request bytes written) before the backend counts as unavailable. A slow reply that keeps arriving, or a
    /// big request that keeps leaving, is progress. Blocking commands (BLPOP, ...) run on dedicated
    /// connections and are exempt.
    pub command_ms: u64,
    /// The same allowance while a script or function (EVAL, EVALSHA, FCALL, ...) waits for its reply on the
    /// connection, or on any shared connection of this process to the same server: Redis answers no one until
    /// the script ends. Never shorter than `command_ms`.
    pub slow_command_ms: u64,
    /// With tenants configured: a connection that has not authenticated within this time is closed, whatever
    /// it sends, and even while the proxy waits to write replies it does not read.
    pub auth_ms: u64,
    /// An authenticated client that sends nothing for this long is closed (0: never, like Redis's `timeout`).
    /// Subscribers and clients waiting in a blocking command are exempt.
    pub idle_ms: u64,
    /// On SIGTERM/SIGINT (or [`Proxy::shutdown`](crate::Proxy::shutdown)): how long requests already read may
    /// take to be answered before the remaining connections are closed.
    pub shutdown_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 1000,
            command_ms: 1000,
            slow_command_ms: 30_000,
            auth_ms: 10_000,
            idle_ms: 0,
            shutdown_ms: 10_000,
        }
    }
}

/// Per-client bounds that keep one client from hurting the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientLimits {
    /// Requests a client may have in flight before the proxy stops reading from it (backpressure).
    pub max_pending_requests: usize,
    /// Bytes of a client's requests in flight and replies not yet written at which the proxy stops reading
    /// from it until they drain (a request bigger than this is still read, alone).
    pub max_pending_bytes: usize,
    /// Bytes of replies waiting to be written above which a client is disconnected (as Redis's
    /// `client-output-buffer-limit`); 0 = no limit. One bulk string bigger than this is still written when
    /// nothing else waits.
    pub max_output_bytes: usize,
    /// Largest single bulk string accepted from a client, in bytes (Redis's proto-max-bulk-len).
    pub max_bulk_bytes: usize,
    /// Most elements in one request array.
    pub max_arguments: usize,
    /// Most client connections at once; new ones beyond it get an error and are closed.
    pub max_connections: usize,
    /// With tenants configured: most connections at once that have not authenticated yet; new ones beyond it
    /// get an error and are closed. They never hold a tenant's `max_connections` place (taken at AUTH).
    pub max_unauthenticated: usize,
    /// With tenants configured: wrong passwords one connection may send; the last of them is answered with an
    /// error and the connection is closed.
    pub auth_max_failures: u32,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_pending_requests: 1024,
            max_pending_bytes: 1024 * 1024,
            max_output_bytes: 256 * 1024 * 1024,
            max_bulk_bytes: 512 * 1024 * 1024,
            max_arguments: 1024 * 1024,
            max_connections: 10_000,
            max_unauthenticated: 1024,
            auth_max_failures: 5,
        }
    }
}

/// The big-request lane (`[big_requests]`): a request of at least `threshold_bytes`, or one for a key recently
/// seen with a reply (or a value written) that big, goes to backend connections of its own, so a big transfer
/// never queues in front of the small requests of other clients on a shared connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BigRequests {
    /// A request (or reply) this big, in bytes, or bigger, is big.
    pub threshold_bytes: usize,
    /// Lane connections per backend node (per worker, db and protocol, like the shared ones); each carries one
    /// big request at a time.
    pub connections_per_node: usize,
    /// Big requests that may wait for a free lane connection of one node; one more is refused at once.
    pub max_queued: usize,
    /// How long a big request may wait for a free lane connection before it is refused.
    pub queue_wait_ms: u64,
}

impl Default for BigRequests {
    fn default() -> Self {
        BigRequests {
            threshold_bytes: 256 * 1024,
            connections_per_node: 2,
            max_queued: 64,
            queue_wait_ms: 5000,
        }
    }
}

impl BigRequests {
    pub fn queue_wait(&self) -> Duration {
        Duration::from_millis(self.queue_wait_ms)
    }

    /// Every key in range. The threshold is at least 1 KiB: below that, ordinary requests would take the lane
    /// and queue behind each other.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.threshold_bytes < 1024 {
            return Err(invalid(
                "big_requests.threshold_bytes",
                "must be at least 1024",
            ));
        }
        if self.connections_per_node == 0 || self.connections_per_node > 64 {
            return Err(invalid(
                "big_requests.connections_per_node",
                "must be between 1 and 64",
            ));
        }
        if self.queue_wait_ms == 0 {
            return Err(invalid("big_requests.queue_wait_ms", "must be above 0"));
        }
        Ok(())
    }
}

impl Timeouts {
    /// `connect_ms`, `command_ms` and `auth_ms` are above 0; scripts get at least `command_ms`.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.connect_ms == 0 {
            return Err(invalid("timeouts.connect_ms", "must be above 0"));
        }
        if self.auth_ms == 0 {
            return Err(invalid("timeouts.auth_ms", "must be above 0"));
        }
        if self.command_ms == 0 {
            return Err(invalid("timeouts.command_ms", "must be above 0"));
        }
        if self.slow_command_ms < self.command_ms {
            return Err(invalid(
                "timeouts.slow_command_ms",
                "must not be below timeouts.command_ms",
            ));
        }
        Ok(())
    }
}

impl ClientLimits {
    /// The limits that would stop every client at 0 are above 0.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let above_zero = [
            ("max_pending_requests", self.max_pending_requests),
            ("max_pending_bytes", self.max_pending_bytes),
            ("max_connections", self.max_connections),
            ("max_unauthenticated", self.max_unauthenticated),
            ("auth_max_failures", self.auth_max_failures as usize),
        ];
        match above_zero.into_iter().find(|(_, value)| *value == 0) {
            Some((field, _)) => Err(invalid(format!("client_limits.{field}"), "must be above 0")),
            None => Ok(()),
        }
    }
}
