//! CLIENT REPLY ON / OFF / SKIP: in shared mode the proxy drops the client's replies itself (see
//! [`ReplyFilter`]); the backend connections never see the command.

use std::collections::VecDeque;

use resp_codec::{split_replies, Limits, Request};

use crate::reply;
use crate::session::errors::{CommandError, ErrorReply};
use crate::session::pending::Pending;
use crate::session::Session;

/// CLIENT REPLY's modes, as Redis has them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ReplyMode {
    On,
    Off,
    /// The next command's reply is dropped.
    SkipNext,
}

/// Drops the replies of a client that asked for none (CLIENT REPLY OFF, or SKIP for one command).
///
/// Every request framed in shared mode gets exactly one reply, in order. While the filter is on, each framed
/// request records whether its reply is dropped (decided when it is framed, in request order, from the mode
/// at that point); before replies are written, they are split and the dropped ones removed. The filter starts
/// after every earlier reply was written (CLIENT REPLY OFF/SKIP waits for them, like SELECT), and ends when
/// replies are on again and every reply it decided on was written. RESP3 pushes are never dropped, as in
/// Redis.
#[derive(Debug)]
pub(in crate::session) struct ReplyFilter {
    mode: ReplyMode,
    dropped: VecDeque<bool>,
}

impl ReplyFilter {
    /// Whether the reply of the request being framed now is dropped; moves SKIP on.
    fn decide(&mut self) -> bool {
        let drop = self.mode != ReplyMode::On;
        if self.mode == ReplyMode::SkipNext {
            self.mode = ReplyMode::On;
        }
        self.dropped.push_back(drop);
        drop
    }
}

/// Whether `request` is `CLIENT REPLY <mode>` (cheap: only requests named CLIENT look further).
fn is_client_reply(request: &Request) -> bool {
    request.argc() == 3
        && request.name().eq_ignore_ascii_case(b"client")
        && request
            .arg(1)
            .is_some_and(|sub| sub.eq_ignore_ascii_case(b"reply"))
}

impl Session {
    /// CLIENT REPLY in shared mode while no filter runs (every earlier reply was written: it waits like
    /// SELECT). OFF and SKIP start the filter and have no reply.
    pub(in crate::session) fn client_reply(&mut self, request: &Request) {
        let mode = request.arg(2).unwrap_or_default();
        let start = |mode| ReplyFilter {
            mode,
            dropped: VecDeque::new(),
        };
        if mode.eq_ignore_ascii_case(b"on") {
            self.pending.push_back(Pending::Ready(reply::ok()));
        } else if mode.eq_ignore_ascii_case(b"off") {
            self.client.reply_filter = Some(start(ReplyMode::Off));
        } else if mode.eq_ignore_ascii_case(b"skip") {
            self.client.reply_filter = Some(start(ReplyMode::SkipNext));
        } else {
            self.pending
                .push_back(Pending::Ready(CommandError::Syntax.to_reply()));
        }
    }

    /// While the filter runs, called for every request framed in shared mode, before it is handled: records
    /// whether its reply is dropped, and handles CLIENT REPLY itself. Returns true when the request was
    /// consumed here.
    pub(in crate::session) fn screen_for_reply_mode(&mut self, request: &Request) -> bool {
        let Some(filter) = self.client.reply_filter.as_mut() else {
            return false;
        };
        if request.argc() == 1 && request.name().eq_ignore_ascii_case(b"reset") {
            // RESET turns replies on, and its own reply is sent.
            filter.mode = ReplyMode::On;
        }
        if !is_client_reply(request) {
            filter.decide();
            return false;
        }
        let mode = request.arg(2).unwrap_or_default();
        let reply = if mode.eq_ignore_ascii_case(b"on") {
            filter.mode = ReplyMode::On;
            filter.dropped.push_back(false);
            reply::ok()
        } else if mode.eq_ignore_ascii_case(b"off") {
            filter.mode = ReplyMode::Off;
            return true;
        } else if mode.eq_ignore_ascii_case(b"skip") {
            if filter.mode == ReplyMode::On {
                filter.mode = ReplyMode::SkipNext;
            }
            return true;
        } else {
            filter.decide();
            CommandError::Syntax.to_reply()
        };
        // Earlier batched requests go first, so replies keep request order.
        self.flush_batch();
        self.pending.push_back(Pending::Ready(reply));
        true
    }

    /// Removes dropped replies from the write buffer (a no-op without a filter).
    pub(in crate::session) fn filter_replies(&mut self) {
        if self.client.reply_filter.is_none() {
            return;
        }
        self.gathered.join_pieces();
        let Some(filter) = self.client.reply_filter.as_mut() else {
            return;
        };
        if !self.gathered.buffer.is_empty() {
            let written = self.gathered.buffer.split().freeze();
            let limits = Limits {
                max_bulk_len: usize::MAX,
                max_array_len: usize::MAX,
                max_depth: usize::MAX,
                ..Limits::default()
            };
            match split_replies(&written, &limits) {
                Ok(replies) => {
                    for one in replies {
                        let push = one.first() == Some(&b'>');
                        if push || !filter.dropped.pop_front().unwrap_or(false) {
                            self.gathered.buffer.extend_from_slice(&one);
                        }
                    }
                }
                // Cannot happen for replies the proxy framed itself; pass them on rather than lose them.
                Err(_) => self.gathered.buffer.extend_from_slice(&written),
            }
        }
        if filter.mode == ReplyMode::On && filter.dropped.is_empty() {
            self.client.reply_filter = None;
        }
    }

    /// The client moves to a dedicated connection (every earlier reply was written): replies come back on
    /// there, since a dedicated connection's replies are not filtered.
    pub(in crate::session) fn reply_filter_leaves_shared_mode(&mut self) {
        self.client.reply_filter = None;
    }
}
