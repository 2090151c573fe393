//! Which reply belongs to whom: the replies a connection is owed, oldest first (see the parent module's docs for
//! the invariant), and the flag raised when one of them is a cluster redirect.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cluster_router::redirect::{classify_reply, ClusterReplyKind};

use super::error::Broken;
use super::patience::Patience;

/// How many replies a job is owed, and which of them its waiter gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// One request, one reply.
    One,
    /// A pipelined batch: this many replies, handed back concatenated in order.
    Concatenated(NonZeroUsize),
    /// `ASKING` and one command: the `+OK` of `ASKING` is dropped, the command's reply handed back.
    AskingThenOne,
}

impl Expected {
    /// Replies owed.
    fn replies(self) -> NonZeroUsize {
        match self {
            Expected::One => NonZeroUsize::MIN,
            Expected::Concatenated(count) => count,
            Expected::AskingThenOne => NonZeroUsize::MIN.saturating_add(1),
        }
    }

    /// Whether every reply is handed back, or only the last.
    fn keeps_all(self) -> bool {
        matches!(self, Expected::One | Expected::Concatenated(_))
    }
}

/// Who waits for a job's answer.
pub(super) trait Waiter {
    /// Whether nobody will read the answer any more (its client went away): the job's replies are then framed
    /// and dropped, never joined (joining copies whatever did not arrive in one piece).
    fn abandoned(&self) -> bool;
}

impl<T> Waiter for tokio::sync::oneshot::Sender<T> {
    fn abandoned(&self) -> bool {
        self.is_closed()
    }
}

/// One job on the wire: who waits for it, and how many replies it is still owed.
#[derive(Debug)]
struct Owed<W> {
    waiter: W,
    remaining: NonZeroUsize,
    keeps_all: bool,
    /// The replies received so far, when every reply is handed back: the latest run of replies that lie one
    /// after another in the connection's read buffer, after the earlier runs (the queue's `front_runs`).
    collected: BytesMut,
    patience: Patience,
    /// Set when one of this job's replies is a cluster redirect (see [`SharedConnection::watching_redirects`]).
    redirects: Option<RedirectWatch>,
}

/// The replies a connection is owed, oldest first, and who gets each (see the module docs for the invariant).
/// Pure bookkeeping, without I/O, so that it can be tested on its own; `W` is the waiter (a oneshot sender).
#[derive(Debug)]
pub(super) struct ReplyQueue<W> {
    owed: VecDeque<Owed<W>>,
    /// How many entries of `owed` are [`Patience::Slow`].
    slow_owed: usize,
    /// The front job's earlier runs of replies (see [`ReplyQueue::pair`]); only the front job is owed the
    /// replies that arrive, so one list serves every job in turn.
    front_runs: Vec<BytesMut>,
}

impl<W> Default for ReplyQueue<W> {
    fn default() -> Self {
        ReplyQueue {
            owed: VecDeque::new(),
            slow_owed: 0,
            front_runs: Vec::new(),
        }
    }
}

impl<W: Waiter> ReplyQueue<W> {
    /// Records a job whose bytes were just queued for writing, behind every job queued before.
    #[cfg(test)]
    pub(super) fn push(&mut self, waiter: W, expected: Expected, patience: Patience) {
        self.push_watched(waiter, expected, patience, None);
    }

    /// [`ReplyQueue::push`], with the flag to raise if a reply to this job is a cluster redirect.
    pub(super) fn push_watched(
        &mut self,
        waiter: W,
        expected: Expected,
        patience: Patience,
        redirects: Option<RedirectWatch>,
    ) {
        if patience == Patience::Slow {
            self.slow_owed += 1;
        }
        self.owed.push_back(Owed {
            waiter,
            remaining: expected.replies(),
            keeps_all: expected.keeps_all(),
            collected: BytesMut::new(),
            patience,
            redirects,
        });
    }

    /// Gives one reply frame to the oldest job. Returns that job's waiter and its whole answer when this was
    /// the job's last reply; `None` while it is owed more. An error when no job is owed a reply.
    ///
    /// A job's replies are joined with `BytesMut::unsplit`: without a copy while they lie one after another in
    /// the connection's read buffer (the usual case: a batch's replies arrive together). Where a read buffer
    /// ended between them, the runs are kept apart and copied once, at the end, into one buffer of the answer's
    /// size (growing one buffer reply by reply copied each byte about three times). An abandoned job's replies
    /// are dropped as they come, and its waiter gets an empty answer.
    pub(super) fn pair(&mut self, frame: BytesMut) -> Result<Option<(W, Bytes)>, Broken> {
        let front = self.owed.front_mut().ok_or(Broken::ReplyWithoutRequest)?;
        if let Some(watch) = &front.redirects {
            watch.note(&frame);
        }
        let abandoned = front.waiter.abandoned();
        if abandoned && !front.collected.is_empty() {
            // Abandoned since its first replies: free what was kept.
            front.collected = BytesMut::new();
            self.front_runs = Vec::new();
        }
        if let Some(left) = NonZeroUsize::new(front.remaining.get() - 1) {
            front.remaining = left;
            if front.keeps_all && !abandoned {
                collect(&mut front.collected, &mut self.front_runs, frame);
            }
            return Ok(None);
        }
        let Some(done) = self.owed.pop_front() else {
            return Err(Broken::ReplyWithoutRequest);
        };
        if done.patience == Patience::Slow {
            self.slow_owed -= 1;
        }
        let mut collected = done.collected;
        if !abandoned {
            collect(&mut collected, &mut self.front_runs, frame);
        }
        if !self.front_runs.is_empty() {
            collected = join_runs(std::mem::take(&mut self.front_runs), collected);
        }
        Ok(Some((done.waiter, collected.freeze())))
    }

    /// Slow while any job owed a reply is slow. Not only the oldest: Redis runs every command of a pipeline
    /// it has read before it writes their replies, so the replies to requests sent before a script wait for
    /// the script too.
    pub(super) fn patience(&self) -> Patience {
        if self.slow_owed > 0 {
            Patience::Slow
        } else {
            Patience::Normal
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.owed.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.owed.len()
    }

    /// Every waiter still owed a reply, oldest first (to fail them).
    pub(super) fn into_waiters(self) -> impl Iterator<Item = W> {
        self.owed.into_iter().map(|owed| owed.waiter)
    }
}

/// A flag a cluster session shares with its connection handles: the connection task raises it as soon as it
/// reads a MOVED, ASK or TRYAGAIN reply to one of the session's jobs, long before the session gets to that
/// reply in its queue. The session then sends no new request until every redirected one has run again, so no
/// later request can run first (the slot may have moved on, or back, meanwhile).
#[derive(Clone, Debug, Default)]
pub struct RedirectWatch(Arc<AtomicBool>);

impl RedirectWatch {
    /// Whether a redirect was seen since the last [`RedirectWatch::clear`].
    pub fn seen(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn clear(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    fn note(&self, reply: &[u8]) {
        if reply.first() == Some(&b'-') && classify_reply(reply) != ClusterReplyKind::Final {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Adds `frame` to a job's replies: to the latest run when it lies right after it, else as a new run.
#[inline]
fn collect(latest: &mut BytesMut, runs: &mut Vec<BytesMut>, frame: BytesMut) {
    if latest.is_empty() || latest.as_ptr_range().end == frame.as_ptr() {
        // In place when both are parts of one buffer (a copy in the rare case of two buffers that touch).
        latest.unsplit(frame);
    } else {
        runs.push(std::mem::replace(latest, frame));
    }
}

/// The runs of a job's replies, then `latest`, as one buffer.
#[cold]
fn join_runs(runs: Vec<BytesMut>, latest: BytesMut) -> BytesMut {
    let size = runs.iter().map(BytesMut::len).sum::<usize>() + latest.len();
    let mut joined = BytesMut::with_capacity(size);
    for run in runs {
        joined.extend_from_slice(&run);
    }
    joined.extend_from_slice(&latest);
    joined
}
