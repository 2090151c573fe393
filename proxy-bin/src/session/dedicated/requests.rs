//! A request on a dedicated connection: written to the backend (which owes its replies), mirrored in the
//! session (SELECT, HELLO, RESET), answered here, or refused (inside MULTI this aborts the transaction; in a
//! cluster, keys on another node get `CROSSSLOT`).

use bytes::Bytes;
use cluster_router::commands::{CommandClass, CommandSpec, ProxyHandling};
use cluster_router::plan::{route, RouteError, RoutePlan};
use resp_codec::Request;

use crate::pools::PoolHandle;
use crate::session::pending::{Owed, Pending};
use crate::session::transaction::{self, TransactionError};
use crate::session::{parse_u32, unsupported, Session, SessionEnd};

impl Session {
    /// A request (looked up and policed, like any) on a dedicated connection: written to the backend, which
    /// owes its replies, or answered here.
    pub(in crate::session) fn send_dedicated(
        &mut self,
        spec: &'static CommandSpec,
        request: Request,
    ) {
        let in_transaction = self
            .dedicated
            .as_ref()
            .is_some_and(|dedicated| dedicated.in_transaction);
        if in_transaction && !self.queue_on_dedicated(spec, &request) {
            return;
        }
        if !self.mirror_on_dedicated(spec, &request) {
            return;
        }
        if let Some(refusal) = self.cluster_refusal(spec, &request) {
            self.refuse_on_dedicated(refusal);
            return;
        }
        // Inside MULTI the reply is +QUEUED; EXEC's array is passed on as it is.
        let rewrite = self.reply_rewrite(spec).filter(|_| !in_transaction);
        // The backend switches protocol; the client gets the proxy's own HELLO (its id, the backend's version,
        // one standalone mode), as on shared connections, not the node's.
        let hello = (spec.name == "hello" && !in_transaction).then(|| self.hello_reply_now());
        let Some(dedicated) = self.dedicated.as_mut() else {
            return;
        };
        let mut owed = Owed::one(rewrite);
        owed.replies = dedicated.replies_owed(spec, &request);
        owed.pubsub = spec.class == CommandClass::PubSub && !in_transaction;
        owed.unsubscribe =
            owed.pubsub && matches!(spec.name, "unsubscribe" | "punsubscribe" | "sunsubscribe");
        if spec.name == "exec" && in_transaction && dedicated.aborted {
            // A command was refused while queued: Redis would discard the transaction at EXEC. DISCARD ends
            // it on the server (and its WATCH), and the client gets Redis's EXECABORT.
            dedicated
                .to_backend
                .extend_from_slice(b"*1\r\n$7\r\nDISCARD\r\n");
            owed.instead = Some(TransactionError::ExecAbort.to_reply());
        } else {
            dedicated.to_backend.extend_from_slice(request.raw());
        }
        if hello.is_some() {
            owed.instead = hello;
        }
        dedicated.track(spec, &request);
        let node = dedicated.endpoint.address.clone();
        self.pending
            .push_sent(Pending::Dedicated(Box::new(owed)), request.raw(), &node);
    }

    /// A command the proxy refuses itself on a dedicated connection; inside MULTI this aborts the transaction,
    /// as in Redis.
    fn refuse_on_dedicated(&mut self, reply: Bytes) {
        self.fail_transaction();
        self.pending.push_back(Pending::Ready(reply));
    }

    /// Inside MULTI on a dedicated connection: marks the transaction so that EXEC fails with EXECABORT.
    pub(in crate::session) fn fail_dedicated_transaction(&mut self) {
        if let Some(dedicated) = self.dedicated.as_mut() {
            dedicated.aborted |= dedicated.in_transaction;
        }
    }

    /// Whether the client is inside MULTI on a dedicated connection.
    pub(in crate::session) fn in_dedicated_transaction(&self) -> bool {
        self.dedicated
            .as_ref()
            .is_some_and(|dedicated| dedicated.in_transaction)
    }

    /// Inside MULTI: whether the command goes to the backend to be queued there. QUIT and RESET run at once
    /// (as in Redis); a command the proxy cannot queue is refused, which aborts the transaction.
    fn queue_on_dedicated(&mut self, spec: &CommandSpec, request: &Request) -> bool {
        let handled_by_redis = matches!(
            spec.name,
            "multi" | "exec" | "discard" | "watch" | "unwatch" | "quit" | "reset"
        );
        if handled_by_redis || transaction::queueable(spec) {
            return true;
        }
        self.refuse_on_dedicated(transaction::refusal(spec, request));
        false
    }

    /// Commands the proxy answers itself, on a dedicated connection: the backend keeps this state itself
    /// (SELECT, HELLO), so the session mirrors it and the request goes on; others are answered here. Returns
    /// whether the request goes to the backend.
    fn mirror_on_dedicated(&mut self, spec: &CommandSpec, request: &Request) -> bool {
        match spec.proxy {
            ProxyHandling::Forward
            | ProxyHandling::Dedicated
            | ProxyHandling::DedicatedWhenBlocking => true,
            ProxyHandling::Local if matches!(spec.name, "select" | "hello" | "reset") => {
                if let Some(dedicated) = self.dedicated.as_mut() {
                    dedicated.reconfigured = true;
                }
                self.mirror_connection_state(spec, request)
            }
            ProxyHandling::Local => match spec.name {
                // Sent on: Redis answers +OK after every reply owed, then closes the connection.
                "quit" => {
                    self.closing = Some(SessionEnd::Quit);
                    true
                }
                // INFO and CONFIG for admins: this connection's backend answers.
                _ if self.backend_answers_on_dedicated(spec) => true,
                _ => {
                    let reply = self.answer_session_command(spec, request);
                    self.pending.push_back(Pending::Ready(reply));
                    false
                }
            },
            _ => {
                self.refuse_on_dedicated(unsupported(request));
                false
            }
        }
    }

    /// SELECT, HELLO and RESET on a dedicated connection: the backend keeps this state itself, so the request
    /// goes on and the session mirrors it (HELLO with AUTH is answered here). Returns whether it goes on.
    fn mirror_connection_state(&mut self, spec: &CommandSpec, request: &Request) -> bool {
        match spec.name {
            "select" if self.cluster.is_none() => {
                // A tenant stays in its own db here too.
                if let Some(tenant) = self.tenant() {
                    let checked =
                        tenant.check_select(self.pool.name(), request.arg(1).unwrap_or_default());
                    if let Err(error) = checked {
                        self.refuse_on_dedicated(error.to_reply());
                        return false;
                    }
                }
                if let Some(db) = request.arg(1).and_then(parse_u32) {
                    self.db = db;
                }
                true
            }
            "hello" => {
                if request.args().any(|arg| arg.eq_ignore_ascii_case(b"AUTH")) {
                    let reply = self.hello(spec, request);
                    self.pending.push_back(Pending::Ready(reply));
                    return false;
                }
                match request.arg(1) {
                    Some(b"3") => self.resp3 = true,
                    Some(b"2") => self.resp3 = false,
                    _ => {}
                }
                true
            }
            "reset" => {
                self.db = 0;
                self.resp3 = false;
                self.name = None;
                true
            }
            // SELECT on a cluster pool.
            _ => {
                let reply = self.answer_session_command(spec, request);
                self.pending.push_back(Pending::Ready(reply));
                false
            }
        }
    }

    /// Cluster pools: a command whose keys are not all in one slot, or whose slot is on another node than this
    /// connection, gets `CROSSSLOT` (the client could not follow a MOVED to this connection).
    fn cluster_refusal(&self, spec: &'static CommandSpec, request: &Request) -> Option<Bytes> {
        let node = self.dedicated.as_ref()?.node.as_ref()?;
        let PoolHandle::Cluster(pool) = &self.pool else {
            return None;
        };
        let topology = pool.topology();
        match route(spec, request, &topology.map) {
            Ok(RoutePlan::Slot(slot)) if topology.map.master_for_slot(slot) != Some(node) => {
                Some(Bytes::from(RouteError::CrossSlot.to_reply()))
            }
            Err(error) => Some(Bytes::from(error.to_reply())),
            _ => None,
        }
    }
}
