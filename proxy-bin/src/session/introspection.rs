//! Connection and introspection commands that clients send at connect time or to look at their connection:
//! INFO, CLIENT INFO / LIST / SETINFO, CLIENT TRACKING and friends, CLIENT NO-EVICT, READONLY, HELLO's version,
//! CONFIG, and CLIENT REPLY.
//!
//! - INFO: admin tenants (and every client when no tenants are configured) get the backend's INFO (every
//!   master's, merged, on a cluster pool); other tenants, and Kafka pools, get the proxy's own: Server (the
//!   backend's version, `redis_mode:standalone`, rkproxy's version, process id, port, uptime), Clients, and the
//!   tenant's own keyspace line where it can be known (no key prefix: the db it works in).
//! - The backend's version is learned from the first INFO or HELLO and kept per pool (`ProxyState`).
//! - CLIENT INFO / LIST describe the client's connection to the proxy, with every field Redis gives.
//! - CLIENT TRACKING ON is refused with the reason: invalidations would go to a shared backend connection and
//!   never reach the client.
//! - CONFIG (admins only; tenant-policy refuses it to others): forwarded on a standalone pool, sent to every
//!   node of a cluster pool (an error names the node).
//! - CLIENT REPLY OFF / SKIP: in shared mode the proxy drops the client's replies itself (see [`ReplyFilter`]);
//!   the backend connections never see the command.
//!
//! The parts: this file dispatches the commands answered from session state and holds [`ClientState`];
//! `introspection/info.rs` has INFO, HELLO's backend version and CONFIG (the replies that may need the
//! backend), `introspection/client.rs` the CLIENT subcommands that describe connections (INFO, LIST, KILL,
//! SETINFO, TRACKING), and `introspection/reply_mode.rs` CLIENT REPLY and its [`ReplyFilter`].

mod client;
mod info;
mod reply_mode;

use bytes::Bytes;
use cluster_router::commands::CommandSpec;
use resp_codec::Request;
use tokio::time::Instant;

use self::reply_mode::ReplyFilter;
use super::errors::{CommandError, ErrorReply, Unsupported};
use super::Session;
use crate::pools::PoolHandle;
use crate::reply;

/// What the proxy keeps about the client's connection beyond the protocol state: when it started, the
/// library it named (CLIENT SETINFO), and its CLIENT REPLY mode.
pub(super) struct ClientState {
    started: Instant,
    lib_name: Option<Bytes>,
    lib_ver: Option<Bytes>,
    /// Set while some replies are being dropped (CLIENT REPLY OFF or SKIP).
    pub(super) reply_filter: Option<ReplyFilter>,
}

impl ClientState {
    pub(super) fn new() -> ClientState {
        ClientState {
            started: Instant::now(),
            lib_name: None,
            lib_ver: None,
            reply_filter: None,
        }
    }
}

impl Session {
    /// The introspection commands answered from session state, in shared and dedicated mode. `None`: not one
    /// of them.
    pub(super) fn answer_introspection(
        &mut self,
        spec: &CommandSpec,
        request: &Request,
    ) -> Option<Bytes> {
        Some(match spec.name {
            "client|setinfo" => self.client_setinfo(request),
            "client|info" => reply::text(&self.client_line("client|info", request), self.resp3),
            "client|list" => self.client_list(request),
            "client|kill" => self.client_kill(request),
            "client|tracking" => Self::client_tracking(request),
            "client|caching" => CommandError::CachingWithoutTracking.to_reply(),
            "client|getredir" => reply::integer(-1),
            "client|trackinginfo" => self.tracking_info(),
            "client|no-evict" => Self::client_no_evict(request),
            // Dedicated mode (shared mode handles CLIENT REPLY before this).
            "client|reply" => match request.arg(2).unwrap_or_default() {
                mode if mode.eq_ignore_ascii_case(b"on") => reply::ok(),
                mode if mode.eq_ignore_ascii_case(b"off") || mode.eq_ignore_ascii_case(b"skip") => {
                    Unsupported::ReplyOffDedicated.to_reply()
                }
                _ => CommandError::Syntax.to_reply(),
            },
            // The proxy routes replica reads and follows ASK itself; a standalone pool answers as a Redis
            // without cluster support does.
            "readonly" | "readwrite" | "asking" => match self.pool {
                PoolHandle::Cluster(_) => reply::ok(),
                _ => CommandError::NoCluster.to_reply(),
            },
            // Dedicated mode, non-admins (admins' INFO goes to the backend).
            "info" => self.proxy_info_now(request),
            _ => return None,
        })
    }

    /// In dedicated mode: whether the backend connection itself answers this local command (INFO and CONFIG for
    /// admins, or when no tenants are configured).
    pub(super) fn backend_answers_on_dedicated(&self, spec: &CommandSpec) -> bool {
        spec.name.starts_with("config|")
            || (spec.name == "info" && self.tenant().is_none_or(|tenant| tenant.is_admin()))
    }
}
