//! MULTI without WATCH on a cluster pool: queued in the session, sent at EXEC as one unit to one node.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cluster_router::commands::CommandSpec;
use cluster_router::plan::{route, RouteError, RoutePlan};
use cluster_router::redirect::{classify_reply, parse_redirect, ClusterReplyKind, RedirectKind};
use resp_codec::{split_replies, Limits, Request};

use crate::backend::{BackendReply, Patience, PatientSender};
use crate::reply;
use crate::session::errors::{ClusterError, ErrorReply, ReplyError};
use crate::session::pending::{ClusterExec, Pending};
use crate::session::transaction::TransactionError;
use crate::session::{transaction, Session};

use super::redirect::send_later;
use super::{no_topology, ClusterSession, MAX_REDIRECTS, TRY_AGAIN_DELAYS_MS};

/// A MULTI queued in the session.
#[derive(Default)]
pub(super) struct Transaction {
    commands: BytesMut,
    count: usize,
    slot: Option<u16>,
    /// Set by a queue-time error: EXEC then fails with EXECABORT.
    failed: bool,
    /// Slow if a queued command is (a script): the backend then waits longer for EXEC.
    patience: Patience,
}

impl Session {
    pub(in crate::session) fn begin_cluster_transaction(&mut self) {
        if let Some(cluster) = &mut self.cluster {
            cluster.transaction = Some(Transaction::default());
        }
        self.pending.push_back(Pending::Ready(reply::ok()));
    }

    /// Handles a command while a cluster MULTI is open: queue it, or run EXEC/DISCARD.
    pub(in crate::session) fn queue_in_transaction(
        &mut self,
        spec: &CommandSpec,
        request: Request,
    ) -> Option<Pending> {
        let (id, resp3) = (self.id, self.resp3);
        let cluster = self.cluster.as_mut()?;
        let transaction = cluster.transaction.as_mut()?;
        // A queue-time error: answered at once, and EXEC then fails with EXECABORT, as in Redis.
        let refuse = |transaction: &mut Transaction, reply: Bytes| {
            transaction.failed = true;
            Some(Pending::Ready(reply))
        };
        match spec.name {
            // Errors that do not abort the transaction, as in Redis.
            "multi" => return Some(Pending::Ready(TransactionError::NestedMulti.to_reply())),
            "watch" => {
                return Some(Pending::Ready(
                    TransactionError::WatchInsideMulti.to_reply(),
                ))
            }
            "discard" => {
                cluster.transaction = None;
                return Some(Pending::Ready(reply::ok()));
            }
            "exec" => {
                let transaction = cluster.transaction.take()?;
                return Some(cluster.send_transaction(transaction, id, resp3));
            }
            _ => {}
        }
        if !transaction::queueable(spec) {
            return refuse(transaction, transaction::refusal(spec, &request));
        }
        let crossslot = || Bytes::from(RouteError::CrossSlot.to_reply());
        match route(spec, &request, &cluster.topology.map) {
            Ok(RoutePlan::Slot(slot)) => match transaction.slot {
                Some(first) if first != slot => return refuse(transaction, crossslot()),
                _ => transaction.slot = Some(slot),
            },
            Ok(RoutePlan::Keyless) => {}
            Ok(_) => return refuse(transaction, crossslot()),
            Err(error) => return refuse(transaction, Bytes::from(error.to_reply())),
        }
        transaction.commands.extend_from_slice(request.raw());
        transaction.count += 1;
        transaction.patience = transaction.patience.max(Patience::for_command(spec));
        Some(Pending::Ready(reply::simple("QUEUED")))
    }

    /// A command refused while a MULTI is open (a cluster MULTI queued here, or one on a dedicated connection)
    /// makes EXEC fail, as in Redis.
    pub(in crate::session) fn fail_transaction(&mut self) {
        self.fail_dedicated_transaction();
        if let Some(transaction) = self.cluster.as_mut().and_then(|c| c.transaction.as_mut()) {
            transaction.failed = true;
        }
    }

    /// The reply to a transaction unit: EXEC's reply, or (MOVED/ASK for any queued command, or for EXEC) the
    /// whole unit goes again to the named node. Redis discards a transaction in which a command was redirected,
    /// so nothing ran and sending it again is safe; the client never sees the redirect nor a spurious EXECABORT.
    pub(in crate::session) fn cluster_exec_reply(
        &mut self,
        exec: ClusterExec,
        reply: BackendReply,
    ) -> Result<Bytes, Pending> {
        let bytes = match reply {
            Ok(bytes) => bytes,
            Err(error) => return Ok(self.finish_reply(Err(error))),
        };
        let expected = exec.commands + usize::from(exec.asking);
        let mut frames = match split_replies(&bytes, &Limits::for_backend_replies()) {
            Ok(frames) if frames.len() == expected => frames,
            _ => return Ok(ReplyError::Unreadable.to_reply()),
        };
        let (redirect, try_again) = unit_outcome(&frames, exec.asking);
        let later_in_flight = self.later_requests_in_flight();
        let (id, resp3) = (self.id, self.resp3);
        let redirect = match (redirect, try_again) {
            (Some(redirect), _) => redirect,
            // Nothing ran; the client gets Redis's TRYAGAIN as EXEC's reply when sending the unit again could
            // put it behind later requests, or when the attempts are used up.
            (None, Some(try_again)) if later_in_flight => return Ok(try_again),
            (None, Some(try_again)) => {
                let Some(cluster) = self.cluster.as_mut() else {
                    return Ok(try_again);
                };
                return match cluster.send_unit_again_later(exec, id, resp3) {
                    Some(again) => {
                        self.try_again_hold = true;
                        Err(again)
                    }
                    None => Ok(try_again),
                };
            }
            (None, None) => return Ok(frames.pop().unwrap_or_default()),
        };
        let Some(cluster) = self.cluster.as_mut() else {
            return Ok(redirect);
        };
        let Some(parsed) = parse_redirect(&redirect) else {
            return Ok(redirect);
        };
        if parsed.kind == RedirectKind::Moved {
            cluster.pool.request_refresh();
        }
        if exec.redirects >= MAX_REDIRECTS {
            let last = String::from_utf8_lossy(&redirect[1..])
                .trim_end()
                .to_owned();
            return Ok(ClusterError::TooManyRedirections { last }.to_reply());
        }
        let target = parsed.target_addr(&exec.node);
        let asking = parsed.kind == RedirectKind::Ask;
        tracing::debug!(target: "rkproxy::cluster", client = id, from = %exec.node, to = %target, ask = asking,
            commands = exec.commands, replies = %reply_kinds(&frames), "transaction redirected");
        let receiver = cluster
            .connection(&target, false, id, resp3)
            .with_patience(exec.patience);
        let receiver = send_unit(receiver, &exec.unit, exec.commands, asking);
        Err(Pending::Transaction(Box::new(ClusterExec {
            receiver,
            unit: exec.unit,
            commands: exec.commands,
            asking,
            node: Arc::new(target),
            redirects: exec.redirects + 1,
            try_again: exec.try_again,
            patience: exec.patience,
        })))
    }
}

impl ClusterSession {
    /// EXEC of a queued transaction: EXECABORT after a queue-time error, `*0` when empty, otherwise the unit
    /// (`MULTI` ... `EXEC`) goes to the master of its slot.
    fn send_transaction(&mut self, transaction: Transaction, id: u64, resp3: bool) -> Pending {
        if transaction.failed {
            return Pending::Ready(TransactionError::ExecAbort.to_reply());
        }
        if transaction.count == 0 {
            return Pending::Ready(Bytes::from_static(b"*0\r\n"));
        }
        let node = match transaction.slot {
            Some(slot) => self.topology.map.master_for_slot(slot).cloned(),
            None => self.any_master(id),
        };
        let Some(node) = node else {
            return Pending::Ready(no_topology(&self.pool));
        };
        let mut unit = BytesMut::with_capacity(transaction.commands.len() + 32);
        unit.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n");
        unit.extend_from_slice(&transaction.commands);
        unit.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
        let unit = unit.freeze();
        let commands = transaction.count + 2;
        let patience = transaction.patience;
        let connection = self.connection(&node, false, id, resp3);
        let receiver = send_unit(connection.with_patience(patience), &unit, commands, false);
        Pending::Transaction(Box::new(ClusterExec {
            receiver,
            unit,
            commands,
            asking: false,
            node: Arc::new(node),
            redirects: 0,
            try_again: 0,
            patience,
        }))
    }

    /// A transaction unit answered TRYAGAIN for a queued command (Redis discarded it): the unit goes again to the
    /// same node, after `ASKING` and a wait. `None` when the attempts are used up.
    fn send_unit_again_later(
        &mut self,
        exec: ClusterExec,
        id: u64,
        resp3: bool,
    ) -> Option<Pending> {
        let delay = *TRY_AGAIN_DELAYS_MS.get(usize::from(exec.try_again))?;
        let connection = self.connection(&exec.node, false, id, resp3).clone();
        let (unit, commands, patience) = (exec.unit.clone(), exec.commands, exec.patience);
        let receiver = send_later(std::time::Duration::from_millis(delay), move || {
            send_unit(connection.with_patience(patience), &unit, commands, true)
        });
        Some(Pending::Transaction(Box::new(ClusterExec {
            receiver,
            asking: true,
            try_again: exec.try_again + 1,
            ..exec
        })))
    }

    /// Ends an open MULTI (QUIT or RESET inside it).
    pub(in crate::session) fn end_transaction(&mut self) {
        self.transaction = None;
    }
}

/// Writes a transaction unit (after `ASKING`: Redis keeps the ASKING flag for the whole MULTI block) and asks
/// for every reply.
fn send_unit(
    connection: PatientSender<'_>,
    unit: &Bytes,
    commands: usize,
    asking: bool,
) -> tokio::sync::oneshot::Receiver<BackendReply> {
    if !asking {
        return connection.send_many(unit.clone(), commands);
    }
    let mut both = BytesMut::with_capacity(unit.len() + 20);
    both.extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
    both.extend_from_slice(unit);
    connection.send_many(both.freeze(), commands + 1)
}

/// The first bytes of each reply, for debug logs (`+QUEUED -ASK -TRYAGAIN ...`).
fn reply_kinds(frames: &[Bytes]) -> String {
    let kinds: Vec<String> = frames
        .iter()
        .map(|frame| {
            let end = frame
                .iter()
                .position(|&byte| byte == b' ' || byte == b'\r')
                .unwrap_or(frame.len());
            String::from_utf8_lossy(&frame[..end]).into_owned()
        })
        .collect();
    kinds.join(" ")
}

/// What stopped a transaction unit from running, from its replies (`frames`, after `ASKING`'s own when
/// `asking`): the redirect to follow, or the TRYAGAIN to handle; neither when EXEC's reply is final.
fn unit_outcome(frames: &[Bytes], asking: bool) -> (Option<Bytes>, Option<Bytes>) {
    let queued = || frames.iter().skip(usize::from(asking));
    let redirect = queued()
        .find(|frame| classify_reply(frame) == ClusterReplyKind::Redirect)
        .cloned();
    // ASK for some queued commands while others were queued or answered TRYAGAIN: the transaction's keys
    // are split between the two nodes of a migration, and neither can run it whole (the importing node
    // would treat the keys still on the other side as missing). Redis's answer to a multi-key command in
    // that state is TRYAGAIN, and it is handled as one: sending the unit to the importing node could run it
    // after later requests of the client that ran on the keys still at the old owner.
    let asked = |r: &Bytes| parse_redirect(r).is_some_and(|r| r.kind == RedirectKind::Ask);
    let split_by_migration = redirect.as_ref().is_some_and(asked)
        && queued().any(|frame| {
            frame.starts_with(b"+QUEUED") || classify_reply(frame) == ClusterReplyKind::TryAgain
        });
    if split_by_migration {
        (None, Some(ClusterError::TryAgain.to_reply()))
    } else {
        let try_again = queued()
            .find(|frame| classify_reply(frame) == ClusterReplyKind::TryAgain)
            .cloned();
        (redirect, try_again)
    }
}
