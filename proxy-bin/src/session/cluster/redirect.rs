//! Following MOVED and ASK, and sending a command answered TRYAGAIN again later.

use bytes::Bytes;
use cluster_router::redirect::{classify_reply, parse_redirect, ClusterReplyKind, RedirectKind};
use cluster_router::topology::NodeAddr;
use resp_codec::{parse_frame, Frame, Limits};

use crate::backend::{BackendReply, Patience, SharedConnection};
use crate::session::errors::{ClusterError, ErrorReply};
use crate::session::Session;

use super::{MAX_REDIRECTS, TRY_AGAIN_DELAYS_MS};

impl Session {
    /// If `reply` is MOVED or ASK, sends `request` to the named node. `None`: not a redirect.
    /// `Some(Err)`: too many redirects, the client's error.
    #[allow(clippy::type_complexity)]
    pub(super) fn follow_redirect(
        &mut self,
        request: &Bytes,
        replied_by: &NodeAddr,
        redirects: u8,
        later_in_flight: bool,
        reply: &BackendReply,
    ) -> Option<Result<(tokio::sync::oneshot::Receiver<BackendReply>, NodeAddr), Bytes>> {
        let Ok(frame) = reply else {
            return None;
        };
        let kind = classify_reply(frame);
        // TRYAGAIN: sending the command again later is only safe when none of the client's later requests can
        // have run meanwhile (they might touch the same keys); otherwise the client gets Redis's TRYAGAIN.
        if kind == ClusterReplyKind::Final
            || (kind == ClusterReplyKind::TryAgain && later_in_flight)
        {
            return None;
        }
        if kind == ClusterReplyKind::TryAgain {
            self.try_again_hold = true;
        }
        let (id, resp3) = (self.id, self.resp3);
        let cluster = self.cluster.as_mut()?;
        if kind == ClusterReplyKind::TryAgain {
            tracing::debug!(target: "rkproxy::cluster", client = id, node = %replied_by,
                command = %command_summary(request), "TRYAGAIN: sending again later");
            let connection = cluster.connection(replied_by, false, id, resp3).clone();
            let patience = Patience::for_request_bytes(request);
            let receiver = send_until_not_try_again(connection, patience, request.clone());
            return Some(Ok((receiver, replied_by.clone())));
        }
        let redirect = parse_redirect(frame)?;
        if redirect.kind == RedirectKind::Moved {
            cluster.pool.request_refresh();
        }
        if redirects >= MAX_REDIRECTS {
            let last = String::from_utf8_lossy(&frame[1..]).trim_end().to_owned();
            return Some(Err(ClusterError::TooManyRedirections { last }.to_reply()));
        }
        let target = redirect.target_addr(replied_by);
        tracing::debug!(target: "rkproxy::cluster", client = id, from = %replied_by, to = %target,
            ask = redirect.kind == RedirectKind::Ask, command = %command_summary(request), "redirected");
        // A big request goes again on the big lane of the node named.
        let threshold = cluster.pool.big_lanes().threshold();
        let asking = redirect.kind == RedirectKind::Ask;
        let lane = || cluster.big_lane(&target, resp3);
        if let Some(receiver) =
            crate::session::big::redirect_on_lane(lane, threshold, request, asking)
        {
            return Some(Ok((receiver, target)));
        }
        // Only the bytes of a redirected request are kept; redirects are rare enough to look it up again.
        let connection = cluster
            .connection(&target, false, id, resp3)
            .with_patience(Patience::for_request_bytes(request));
        let receiver = match redirect.kind {
            RedirectKind::Ask => connection.send_asking(request),
            _ => connection.send(request.clone()),
        };
        Some(Ok((receiver, target)))
    }
}

/// Sends a request that was answered TRYAGAIN again, after `ASKING` (TRYAGAIN after ASK comes from the importing
/// node, which needs it; on the slot's owner it changes nothing), waiting [`TRY_AGAIN_DELAYS_MS`] before each
/// attempt, until the reply is something else or the attempts are used up (the client then gets TRYAGAIN).
fn send_until_not_try_again(
    connection: SharedConnection,
    patience: Patience,
    request: Bytes,
) -> tokio::sync::oneshot::Receiver<BackendReply> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut reply = crate::session::pending::lost();
        for delay in TRY_AGAIN_DELAYS_MS {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            let attempt = connection.with_patience(patience).send_asking(&request);
            reply = attempt
                .await
                .unwrap_or_else(|_| crate::session::pending::lost());
            let again =
                matches!(&reply, Ok(frame) if classify_reply(frame) == ClusterReplyKind::TryAgain);
            if !again {
                break;
            }
        }
        let _ = sender.send(reply);
    });
    receiver
}

/// The command name and first argument of a request, for debug logs (values are never logged).
fn command_summary(request: &[u8]) -> String {
    let limits = Limits::for_backend_replies();
    match parse_frame(request, &limits) {
        Ok(Some((Frame::Array(args), _))) => args
            .iter()
            .take(2)
            .filter_map(|arg| match arg {
                Frame::Bulk(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::from("?"),
    }
}

/// Runs `send` after `delay`, in a task of its own, and hands its reply on.
pub(super) fn send_later(
    delay: std::time::Duration,
    send: impl FnOnce() -> tokio::sync::oneshot::Receiver<BackendReply> + Send + 'static,
) -> tokio::sync::oneshot::Receiver<BackendReply> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let reply = send()
            .await
            .unwrap_or_else(|_| crate::session::pending::lost());
        let _ = sender.send(reply);
    });
    receiver
}
