//! Commands sent as several parts (a split across slots, a whole-keyspace command, SCAN) and their merge.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cluster_router::commands::{CommandSpec, MergePolicy};
use cluster_router::merge::{merge_ordered_raw, merge_replies};
use cluster_router::plan::{encode_parts, parts_by_node, RouteError, SplitPart};
use cluster_router::redirect::{classify_batch, ClusterReplyKind};
use cluster_router::scan_cursor::{self, CursorError};
use resp_codec::{encode_command, parse_frame, split_replies, Frame, Limits, Request};

use crate::backend::{BackendReply, Patience};
use crate::reply;
use crate::session::errors::{ClusterError, ErrorReply, ReplyError};
use crate::session::pending::{Combine, Merge, Part, Pending};
use crate::session::Session;

use super::{no_topology, ClusterSession};

impl ClusterSession {
    /// Sends a command split across slots: each master gets its share of the sub-commands in one write (encoded
    /// by `cluster_router::plan`) and answers them in one reply message; the merge waits for every master.
    // The session's routing context (client id, protocol) is passed as is, like `send_routed`'s.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_split(
        &mut self,
        request: &Request,
        split: Vec<SplitPart>,
        policy: MergePolicy,
        rewrite: Option<&'static CommandSpec>,
        client_id: u64,
        resp3: bool,
    ) -> Pending {
        // Room for every share at once (the keys, plus the name and headers per part): one allocation in all.
        let mut wire = BytesMut::with_capacity(
            request.raw().len() + split.len() * (request.name().len() + 16),
        );
        let mut shares = Vec::with_capacity(self.masters.len().min(split.len()));
        for run in parts_by_node(&split) {
            let Some(first) = run.first() else {
                continue;
            };
            encode_parts(request, run, &mut wire);
            let requests = wire.split().freeze();
            // Every share must go out, or the merged reply would miss keys.
            let Some((node, connection)) = self.master(first.node_index, client_id, resp3) else {
                self.pool.request_refresh();
                let error = RouteError::SlotNotServed { slot: first.slot };
                return Pending::Ready(Bytes::from(error.to_reply()));
            };
            let receiver = connection
                .with_patience(Patience::Normal)
                .send_many(requests.clone(), run.len());
            shares.push(Part {
                receiver: Some(receiver),
                request: requests,
                commands: run.len(),
                node,
                redirects: 0,
                reply: None,
            });
        }
        Pending::Merge(Box::new(Merge {
            parts: shares,
            combine: Combine::Policy { policy, split },
            rewrite,
        }))
    }
}

impl Session {
    /// A reply for one part of a merge; the merged reply once every part has answered.
    pub(in crate::session) fn cluster_part_reply(
        &mut self,
        mut merge: Box<Merge>,
        index: usize,
        reply: BackendReply,
    ) -> Result<Bytes, Pending> {
        let Some(part) = merge.parts.get_mut(index) else {
            return Ok(ClusterError::UnknownPart.to_reply());
        };
        let later_in_flight = self.later_requests_in_flight();
        if part.commands > 1 {
            self.settle_share(&mut merge.parts, index, reply, later_in_flight);
        } else {
            self.settle_part(part, reply, later_in_flight);
        }
        if merge.parts.iter().any(|part| part.reply.is_none()) {
            return Err(Pending::Merge(merge));
        }
        let rewrite = merge.rewrite;
        let bytes = combine(*merge, self.resp3);
        Ok(match rewrite {
            Some(spec) => self.rewrite_reply_bytes(spec, bytes),
            None => bytes,
        })
    }

    /// One command's reply in a merge: kept, or (MOVED, ASK, TRYAGAIN) the command goes out again and the part
    /// waits for the new reply.
    fn settle_part(&mut self, part: &mut Part, reply: BackendReply, later_in_flight: bool) {
        match self.follow_redirect(
            &part.request,
            &part.node,
            part.redirects,
            later_in_flight,
            &reply,
        ) {
            Some(Ok((receiver, node))) => {
                part.receiver = Some(receiver);
                part.node = Arc::new(node);
                part.redirects += 1;
            }
            Some(Err(error)) => part.reply = Some(error),
            None => part.reply = Some(self.finish_reply(reply)),
        }
    }

    /// The replies to a master's share of a split (`parts[index]`, several sub-commands answered back to back).
    /// Kept whole when every reply is final, the usual case: the merge reads them where they are. Otherwise the
    /// share becomes one part per sub-command, in its place, and each is settled on its own.
    fn settle_share(
        &mut self,
        parts: &mut Vec<Part>,
        index: usize,
        reply: BackendReply,
        later_in_flight: bool,
    ) {
        let Some(share) = parts.get_mut(index) else {
            return;
        };
        let bytes = match reply {
            Ok(bytes) => bytes,
            Err(error) => {
                share.reply = Some(self.finish_reply(Err(error)));
                return;
            }
        };
        // The connection tasks raise `redirects` when they read a MOVED, ASK or TRYAGAIN for this session, before
        // they hand the reply on, and it is lowered only when nothing is owed (see `RedirectWatch`): while it is
        // down, every reply of the share is final, and the share is kept whole without reading it here (the
        // merge reads it once). The connection pairs exactly `commands` replies with the share.
        let redirected = self.cluster.as_ref().is_none_or(|c| c.redirects.seen());
        if !redirected {
            share.reply = Some(bytes);
            return;
        }
        match classify_batch(&bytes) {
            Some((count, ClusterReplyKind::Final)) if count == share.commands => {
                share.reply = Some(bytes);
                return;
            }
            Some((count, _)) if count == share.commands => {}
            _ => {
                share.reply = Some(ReplyError::Unreadable.to_reply());
                return;
            }
        }
        // The sub-commands are RESP arrays of bulk strings, so the reply framer splits them as well.
        let limits = Limits::for_backend_replies();
        let (Ok(requests), Ok(replies)) = (
            split_replies(&share.request, &limits),
            split_replies(&bytes, &limits),
        ) else {
            share.reply = Some(ReplyError::Unreadable.to_reply());
            return;
        };
        let mut singles: Vec<Part> = requests
            .into_iter()
            .map(|request| Part {
                receiver: None,
                request,
                commands: 1,
                node: Arc::clone(&share.node),
                redirects: share.redirects,
                reply: None,
            })
            .collect();
        for (single, reply) in singles.iter_mut().zip(replies) {
            self.settle_part(single, Ok(reply), later_in_flight);
        }
        parts.splice(index..=index, singles);
    }
}

/// Starts one step of a cluster-wide SCAN.
pub(super) fn scan(
    cluster: &mut ClusterSession,
    request: &Request,
    id: u64,
    resp3: bool,
    rewrite: Option<&'static CommandSpec>,
) -> Pending {
    let masters = cluster.topology.map.masters().len();
    if masters == 0 {
        return Pending::Ready(no_topology(&cluster.pool));
    }
    let position = match scan_cursor::decode(request.arg(1).unwrap_or_default(), masters) {
        Ok(position) => position,
        Err(error) => return Pending::Ready(reply::error(&error.to_string())),
    };
    let node_index = position.node_index;
    let Some(node) = cluster.topology.map.masters().get(node_index).cloned() else {
        return Pending::Ready(reply::error(&CursorError::Invalid.to_string()));
    };
    let node_cursor = position.node_cursor.to_string();
    let mut sub = BytesMut::new();
    let args: Vec<&[u8]> = request
        .args()
        .enumerate()
        .map(|(index, arg)| {
            if index == 1 {
                node_cursor.as_bytes()
            } else {
                arg
            }
        })
        .collect();
    encode_command(&mut sub, args);
    let sub = sub.freeze();
    let receiver = cluster
        .connection(&node, false, id, resp3)
        .send(sub.clone());
    Pending::Merge(Box::new(Merge {
        parts: vec![Part {
            receiver: Some(receiver),
            request: sub,
            commands: 1,
            node: Arc::new(node),
            redirects: 0,
            reply: None,
        }],
        combine: Combine::Scan {
            node_index,
            masters,
        },
        rewrite,
    }))
}

/// Merges the parts' replies into the client's reply. Any error is the reply.
fn combine(merge: Merge, _resp3: bool) -> Bytes {
    if let Combine::Policy {
        policy: MergePolicy::OrderedByKey,
        split,
    } = &merge.combine
    {
        let replies = merge
            .parts
            .iter()
            .map(|part| part.reply.as_deref().unwrap_or_default());
        if let Some(merged) = merge_ordered_raw(split, replies) {
            return merged;
        }
    }
    let limits = Limits::default();
    let mut frames = Vec::with_capacity(merge.parts.len());
    for part in merge.parts {
        let raw = part.reply.unwrap_or_default();
        // A part holds one reply per command it sent (several for a master's share of a split).
        let Ok(replies) = split_replies(&raw, &Limits::for_backend_replies()) else {
            return ReplyError::Unmergeable.to_reply();
        };
        for one in replies {
            if one.first() == Some(&b'-') {
                return one;
            }
            match parse_frame(&one, &limits) {
                Ok(Some((frame, _))) => frames.push(frame),
                _ => return ReplyError::Unmergeable.to_reply(),
            }
        }
    }
    match merge.combine {
        Combine::Policy { policy, split } => merge_replies(policy, &split, frames).to_bytes(),
        Combine::Scan {
            node_index,
            masters,
        } => {
            let Some(Frame::Array(mut items)) = frames.pop() else {
                return ReplyError::ScanReply.to_reply();
            };
            let node_cursor = match items.first() {
                Some(Frame::Bulk(text)) => std::str::from_utf8(text)
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok()),
                _ => None,
            };
            let Some(node_cursor) = node_cursor else {
                return ReplyError::ScanCursor.to_reply();
            };
            let next = match scan_cursor::next_cursor(node_index, node_cursor, masters) {
                Ok(next) => next,
                Err(error) => return reply::error(&error.to_string()),
            };
            items[0] = Frame::Bulk(Bytes::from(next.to_string()));
            Frame::Array(items).to_bytes()
        }
    }
}
