//! Transaction rules shared by both pool kinds: which commands the proxy can queue inside MULTI, and the
//! errors Redis gives for transaction misuse (the proxy gives the same ones where it answers itself).
//!
//! Redis 7 flags a transaction when a command is refused at queue time (unknown command, wrong arity, missing
//! rights, ...): the refusal is answered at once, and EXEC then fails with `EXECABORT` without running
//! anything. A command the proxy refuses itself inside MULTI (its own checks, tenant rules, a command it cannot
//! queue) is such a queue-time error too. Errors at EXEC time (a type error in one queued command) are inside
//! EXEC's array and pass through. A nested MULTI and WATCH inside MULTI are errors that do not abort.

use bytes::Bytes;
use cluster_router::commands::{CommandClass, CommandSpec, ProxyHandling};
use resp_codec::Request;

use crate::reply;

/// Transaction errors, with Redis's texts where Redis has one.
#[derive(Debug, thiserror::Error)]
pub(super) enum TransactionError {
    #[error("EXECABORT Transaction discarded because of previous errors.")]
    ExecAbort,
    #[error("ERR EXEC without MULTI")]
    ExecWithoutMulti,
    #[error("ERR DISCARD without MULTI")]
    DiscardWithoutMulti,
    #[error("ERR MULTI calls can not be nested")]
    NestedMulti,
    #[error("ERR WATCH inside MULTI is not allowed")]
    WatchInsideMulti,
    /// A command Redis would queue but the proxy cannot run inside a transaction (one it answers itself, a
    /// subscription, client tracking): a queue-time error, so EXEC fails with `EXECABORT`.
    #[error("ERR '{0}' cannot be queued in a transaction through rkproxy")]
    NotQueueable(String),
}

impl TransactionError {
    pub(super) fn not_queueable(spec: &CommandSpec) -> TransactionError {
        TransactionError::NotQueueable(spec.name.replace('|', " "))
    }

    pub(super) fn to_reply(&self) -> Bytes {
        reply::error(&self.to_string())
    }
}

/// The reply for a command [`queueable`] refused: a command the proxy never serves keeps its usual error.
pub(super) fn refusal(spec: &CommandSpec, request: &Request) -> Bytes {
    if spec.proxy == ProxyHandling::Unsupported {
        super::unsupported(request)
    } else {
        TransactionError::not_queueable(spec).to_reply()
    }
}

/// Whether the proxy can queue this command inside MULTI. MULTI, EXEC, DISCARD, WATCH, UNWATCH, QUIT and
/// RESET are handled before this is asked. Commands the proxy answers itself cannot be queued (their reply
/// would have to appear inside EXEC's array), nor can subscriptions and client tracking (run at EXEC they
/// would change the backend connection, which in a cluster pool is shared).
pub(super) fn queueable(spec: &CommandSpec) -> bool {
    match spec.proxy {
        ProxyHandling::Forward | ProxyHandling::DedicatedWhenBlocking => true,
        // Blocking commands run without blocking inside a transaction, as in Redis.
        ProxyHandling::Dedicated => {
            spec.class != CommandClass::PubSub && spec.container_name() != Some("client")
        }
        _ => false,
    }
}
