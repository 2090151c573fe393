//! What a request on shared connections does: framed from the read buffer, looked up in the command table,
//! policed by its tenant, then batched (standalone), sent by slot (cluster), answered by the proxy, held
//! behind a barrier or moved to a dedicated connection.

use std::sync::Arc;

use bytes::Bytes;
use cluster_router::commands::{self, CommandError, CommandSpec, ProxyHandling};
use resp_codec::Request;
use tokio_util::codec::Decoder;

use super::pending::{Expect, Pending, Sent};
use super::tenancy::Verdict;
use super::{
    transaction, unsupported, LastCommand, Session, SessionEnd, LAST_COMMAND_NAME, MAX_BATCH_BYTES,
    MAX_BATCH_REQUESTS, MIN_UNBATCHED_REQUEST,
};
use crate::backend::{Patience, SharedConnection};
use crate::pools::PoolHandle;
use crate::reply;

impl Session {
    /// Frames and handles buffered requests until the buffer runs dry or something asks to pause.
    /// Returns whether it handled anything.
    pub(super) fn decode_buffered(&mut self, max_pending: usize) -> bool {
        let mut handled = false;
        while self.accepting_requests(max_pending) {
            match self.decoder.decode(&mut self.read_buffer) {
                Ok(Some(request)) => {
                    let counted = self.count_request(&request);
                    self.pending
                        .framed(request.raw().len(), self.stats.last_command());
                    if !self.screen_for_reply_mode(&request) {
                        self.looked_up = counted;
                        self.handle(request);
                    }
                    handled = true;
                }
                Ok(None) => {
                    // A big request whose head arrived is streamed rather than buffered (see `big`).
                    handled |= self.begin_streamed_request();
                    break;
                }
                Err(error) => {
                    // Like redis-server: reply with the protocol error, then close the connection.
                    self.flush_batch();
                    self.pending.push_back(Pending::Ready(error.to_reply()));
                    self.closing = Some(SessionEnd::Protocol(error.to_string()));
                    handled = true;
                    break;
                }
            }
        }
        self.flush_batch();
        self.pending.forget_unattributed();
        self.stats.publish_commands();
        handled
    }

    /// Standalone pools: the shared connection for the session's (db, protocol), looked up once.
    pub(super) fn standalone_route(&mut self) -> Option<&SharedConnection> {
        let PoolHandle::Standalone(pool) = &self.pool else {
            return None;
        };
        Some(self.route.get_or_insert_with(|| {
            pool.shared_connection(self.worker, self.id, self.db, self.resp3)
        }))
    }

    /// Standalone pools: the node's address (for the slow log).
    fn standalone_address(&self) -> Arc<str> {
        match &self.pool {
            PoolHandle::Standalone(pool) => Arc::clone(pool.address()),
            _ => Arc::from(""),
        }
    }

    /// Sends the batched requests, if any, as one pending entry.
    pub(super) fn flush_batch(&mut self) {
        if self.cluster.is_some() {
            self.flush_cluster_batch();
            return;
        }
        if self.batch_count == 0 {
            return;
        }
        let requests = self.batch.split().freeze();
        let count = std::mem::take(&mut self.batch_count);
        let patience = std::mem::take(&mut self.batch_patience);
        self.send_batch(requests, count, patience);
    }

    /// Sends a request of [`MIN_UNBATCHED_REQUEST`] or more from the read buffer it arrived in, after the batch
    /// before it: a copy into the batch would cost more than a job of its own.
    #[inline(never)]
    fn send_unbatched(&mut self, spec: &'static CommandSpec, request: Request) {
        self.flush_batch();
        self.send_batch(request.into_raw(), 1, Patience::for_command(spec));
    }

    /// Sends `count` requests to the standalone pool's node as one pending entry.
    fn send_batch(&mut self, requests: Bytes, count: usize, patience: Patience) {
        // Only standalone pools batch, so there is always a route here.
        let node = self.standalone_address();
        let Some(route) = self.standalone_route() else {
            return;
        };
        let route = route.with_patience(patience);
        let entry = if requests.len() <= MAX_BATCH_BYTES {
            // Small enough to keep until answered: a big reply is then traced to its key (see `big`).
            let receiver = route.send_many(requests.clone(), count);
            Pending::Sent(Sent {
                receiver,
                requests: requests.clone(),
                count,
            })
        } else if count == 1 {
            Pending::Waiting(route.send(requests.clone()), Expect::Forward)
        } else {
            Pending::Waiting(
                route.send_many(requests.clone(), count),
                Expect::Batch(count),
            )
        };
        self.pending.push_sent(entry, &requests, &node);
    }

    /// Looks a request up in the command table (see [`commands::lookup`]), remembering the last plain command.
    pub(super) fn lookup(
        &mut self,
        request: &Request,
    ) -> Result<&'static CommandSpec, CommandError> {
        let name = request.name();
        if let Some(last) = &self.last_command {
            // A client spells its commands the same way each time: an exact comparison first (a bytewise
            // case-insensitive one costs about 13 instructions per byte).
            let stored = last.name.get(..last.len).unwrap_or_default();
            if (name == stored || name.eq_ignore_ascii_case(stored))
                && last.spec.arity_accepts(request.argc())
            {
                return Ok(last.spec);
            }
        }
        let spec = commands::lookup(request)?;
        // Subcommands depend on the second argument too; only plain commands are remembered.
        if !spec.name.contains('|') && name.len() <= LAST_COMMAND_NAME {
            let mut stored = [0u8; LAST_COMMAND_NAME];
            stored[..name.len()].copy_from_slice(name);
            self.last_command = Some(LastCommand {
                name: stored,
                len: name.len(),
                spec,
            });
        }
        Ok(spec)
    }

    /// Holds a request that was policed (and rewritten) already until every earlier reply arrived.
    pub(super) fn defer_policed(&mut self, request: Request) {
        self.deferred = Some(request);
        self.deferred_is_policed = true;
    }

    /// Routes one request in shared mode.
    pub(super) fn handle(&mut self, request: Request) {
        // Taken first, so that no later call of `handle` (a deferred request) finds it.
        let mut looked_up = self.looked_up.take();
        if let Some(refusal) = self.refuse_after_reload(&request) {
            self.pending.push_back(Pending::Ready(refusal));
            return;
        }
        // Kafka commands, Kafka pools and the Kafka admin commands are served by `kafka.rs` (not on a dedicated
        // connection, where the command table refuses them as unknown, as before: they cannot be queued).
        let request = if self.dedicated.is_none() && self.may_concern_kafka(&request) {
            looked_up = None;
            match self.route_kafka(request) {
                Some(request) => request,
                None => return,
            }
        } else {
            request
        };
        if let Some(name) = request.arg(0) {
            if self.is_proxy_command(name) {
                self.answer_proxy_command(request);
                return;
            }
        }
        let spec = match looked_up.map_or_else(|| self.lookup(&request), Ok) {
            Ok(spec) => spec,
            Err(error) => {
                self.flush_batch();
                self.fail_transaction();
                self.stats.error(crate::stats::ErrorKind::Refused, 1);
                self.pending
                    .push_back(Pending::Ready(Bytes::from(error.to_reply())));
                return;
            }
        };
        if spec.name.starts_with("slowlog|") {
            // The proxy's own slow log, not the backend's (a tenant sees only its own entries). Inside MULTI on
            // a dedicated connection it cannot be queued (its reply would belong in EXEC's array).
            self.flush_batch();
            let reply = if self.in_dedicated_transaction() {
                self.fail_transaction();
                transaction::TransactionError::not_queueable(spec).to_reply()
            } else {
                self.slowlog_command(spec.name, &request)
            };
            self.pending.push_back(Pending::Ready(reply));
            return;
        }
        // A request over the tenant's traffic limit waits in shared mode; on a dedicated connection (a
        // transaction, a blocking command, a subscription) it is refused at once.
        let policed = if std::mem::take(&mut self.deferred_is_policed) {
            Verdict::Proceed(request)
        } else {
            let may_wait = self.dedicated.is_none();
            self.police(spec, request, may_wait)
        };
        let request = match policed {
            Verdict::Proceed(request) => request,
            Verdict::Refuse(reply) => {
                self.flush_batch();
                self.fail_transaction();
                self.pending.push_back(Pending::Ready(reply));
                return;
            }
            Verdict::Later(request, at) => {
                self.flush_batch();
                self.deferred = Some(request);
                self.resume_at = Some(at);
                return;
            }
        };
        self.send_policed(spec, request);
    }

    /// `USE` or `RKPROXY` (see `is_proxy_command`): answered once every earlier reply has arrived.
    fn answer_proxy_command(&mut self, request: Request) {
        self.flush_batch();
        // Its answer may show this session's own counts.
        self.stats.publish_commands();
        // USE moves the connection to another pool: earlier replies first.
        if !self.pending.is_empty() {
            self.deferred = Some(request);
            return;
        }
        if is_stats_command(&request) {
            let entry = self.stats_command(&request);
            self.pending.push_back(entry);
            return;
        }
        if let Some(reply) = self.proxy_command(&request) {
            self.pending.push_back(Pending::Ready(reply));
        }
    }

    /// A request `handle` looked up and policed: sent on the dedicated connection, down the big lane, batched
    /// (standalone) or by slot (cluster), queued in a cluster transaction, held behind a barrier, or answered.
    fn send_policed(&mut self, spec: &'static CommandSpec, request: Request) {
        if self.dedicated.is_some() {
            self.send_dedicated(spec, request);
            return;
        }
        let Some(request) = self.route_big_request(spec, request) else {
            return;
        };
        let plain = spec.proxy == ProxyHandling::Forward && self.reply_rewrite(spec).is_none();
        if plain
            && self
                .cluster
                .as_ref()
                .is_some_and(|cluster| !cluster.in_transaction())
        {
            self.cluster_forward_or_batch(spec, request);
            return;
        }
        if plain && self.cluster.is_none() {
            if request.raw().len() >= MIN_UNBATCHED_REQUEST {
                self.send_unbatched(spec, request);
                return;
            }
            self.batch.extend_from_slice(request.raw());
            self.batch_count += 1;
            self.batch_patience = self.batch_patience.max(Patience::for_command(spec));
            if self.batch_count >= MAX_BATCH_REQUESTS || self.batch.len() >= MAX_BATCH_BYTES {
                self.flush_batch();
            }
            return;
        }
        // Anything else is queued behind the batch, so the batch goes first.
        self.flush_batch();
        if let Some(cluster) = &mut self.cluster {
            if cluster.in_transaction() {
                if !matches!(spec.name, "quit" | "reset") {
                    let reply = self.queue_in_transaction(spec, request);
                    if let Some(reply) = reply {
                        self.pending.push_back(reply);
                    }
                    return;
                }
                // QUIT and RESET run at once inside MULTI, as in Redis; the transaction ends with them.
                cluster.end_transaction();
            }
        }
        if let Some(reply) = transaction_command_without_state(spec) {
            self.pending.push_back(Pending::Ready(reply));
            return;
        }
        let needs_barrier = self.changes_connection(spec, &request);
        if needs_barrier && !self.pending.is_empty() {
            self.defer_policed(request);
            return;
        }
        match spec.proxy {
            ProxyHandling::Forward => self.forward(spec, request),
            ProxyHandling::Dedicated | ProxyHandling::DedicatedWhenBlocking => {
                if !commands::needs_dedicated_connection(spec, &request) {
                    self.forward(spec, request);
                } else if self.cluster.is_some() && spec.name == "multi" {
                    self.begin_cluster_transaction();
                } else {
                    self.go_dedicated = Some(request);
                }
            }
            ProxyHandling::Local => self.answer_locally(spec, request),
            _ => self
                .pending
                .push_back(Pending::Ready(unsupported(&request))),
        }
    }

    /// `USE` and `RKPROXY`, the proxy's own commands, answered here. On a dedicated connection USE is not one
    /// (the connection belongs to the current pool), nor is RKPROXY inside MULTI (it cannot be queued): the
    /// command table then refuses them as unknown commands.
    fn is_proxy_command(&self, name: &[u8]) -> bool {
        if name.eq_ignore_ascii_case(b"USE") {
            return self.dedicated.is_none();
        }
        name.eq_ignore_ascii_case(b"RKPROXY") && !self.in_dedicated_transaction()
    }

    /// Sends a request down the pool's shared connections.
    pub(super) fn forward(&mut self, spec: &'static CommandSpec, request: Request) {
        if self.cluster.is_some() {
            self.cluster_forward(spec, request);
            return;
        }
        let node = self.standalone_address();
        let Some(route) = self.standalone_route() else {
            return;
        };
        let receiver = route
            .with_patience(Patience::for_command(spec))
            .send(request.raw().clone());
        let expect = match self.reply_rewrite(spec) {
            Some(spec) => Expect::Rewrite(spec),
            None => Expect::Forward,
        };
        self.pending
            .push_sent(Pending::Waiting(receiver, expect), request.raw(), &node);
    }

    /// Commands after which the client is served by another backend connection.
    fn changes_connection(&self, spec: &CommandSpec, request: &Request) -> bool {
        match spec.proxy {
            // CLIENT REPLY OFF/SKIP starts dropping replies once the earlier ones are written.
            ProxyHandling::Local => matches!(
                spec.name,
                "select" | "hello" | "reset" | "auth" | "client|reply"
            ),
            _ => {
                commands::needs_dedicated_connection(spec, request)
                    // A cluster MULTI is queued in the session and needs no barrier.
                    && !(self.cluster.is_some() && spec.name == "multi")
            }
        }
    }
}

/// On shared connections the client has no transaction and no WATCHed keys on the server (both move it to a
/// dedicated connection, or, for a cluster MULTI, into the session), so EXEC, DISCARD and UNWATCH get Redis's
/// replies for that state at once.
fn transaction_command_without_state(spec: &CommandSpec) -> Option<Bytes> {
    match spec.name {
        "exec" => Some(transaction::TransactionError::ExecWithoutMulti.to_reply()),
        "discard" => Some(transaction::TransactionError::DiscardWithoutMulti.to_reply()),
        "unwatch" => Some(reply::ok()),
        _ => None,
    }
}

/// Whether `request` is `RKPROXY STATS | BIGKEYS | HOTKEYS ...` (answered by `observe`).
fn is_stats_command(request: &Request) -> bool {
    request.name().eq_ignore_ascii_case(b"RKPROXY")
        && request.arg(1).is_some_and(|sub| {
            [&b"STATS"[..], b"BIGKEYS", b"HOTKEYS"]
                .iter()
                .any(|name| sub.eq_ignore_ascii_case(name))
        })
}
