//! Which reply belongs to whom: the replies a connection is owed, oldest first (see the parent module's docs for
//! the invariant), and the flag raised when one of them is a cluster redirect.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use cluster_router::redirect::{classify_reply, ClusterReplyKind};
use resp_codec::ReplyDecoder;

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
    patience: Patience,
    /// Set when one of this job's replies is a cluster redirect (see [`SharedConnection::watching_redirects`]).
    redirects: Option<RedirectWatch>,
}

/// What one reply does to the oldest job.
enum Paired<W> {
    /// The job keeps it and is owed more.
    Kept,
    /// Not the job's to keep (a RESP3 push frame, `ASKING`'s `+OK`).
    Skipped,
    /// Nobody will read the job's answer: its replies so far and this one are dropped.
    Abandoned,
    /// The job's last reply: its waiter, and whether its answer is its replies or nothing (abandoned).
    Last(W, bool),
}

/// The replies a connection is owed, oldest first, and who gets each (see the module docs for the invariant).
/// Pure bookkeeping, without I/O, so that it can be tested on its own; `W` is the waiter (a oneshot sender).
#[derive(Debug)]
pub(super) struct ReplyQueue<W> {
    owed: VecDeque<Owed<W>>,
    /// How many entries of `owed` are [`Patience::Slow`].
    slow_owed: usize,
    /// The oldest job's replies taken out of earlier reads, oldest first (see [`ReplyQueue::pair_buffered`]);
    /// only the oldest job is owed the replies that arrive, so one list serves every job in turn.
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
            patience,
            redirects,
        });
    }

    /// Frames the complete replies at the start of `buffer` (a connection's read buffer), gives each to the
    /// oldest job owed one, and hands every job that got its last reply to `answered`, with its whole answer.
    /// An error when a reply is malformed or no job is owed it.
    ///
    /// A job's replies are taken out of the buffer together, with one split and without a copy, when they
    /// arrived in one read (the usual case: a batch's replies arrive together). Replies of a job whose answer
    /// is still incomplete when the buffer runs out are taken out then (so that growing the buffer for the next
    /// read does not copy them), and joined to the rest once, at the end: in place when the next read landed
    /// right after them, else by one copy into a buffer of the answer's size. An abandoned job's replies are
    /// dropped as they come, and its waiter gets an empty answer. RESP3 push frames are not replies to a
    /// request (shared connections never enable tracking or subscriptions, so none should come); they are
    /// dropped, which keeps the pairing in step.
    pub(super) fn pair_buffered(
        &mut self,
        buffer: &mut BytesMut,
        decoder: &mut ReplyDecoder,
        mut answered: impl FnMut(W, Bytes),
    ) -> Result<(), Broken> {
        // Bytes at the start of `buffer` that are the oldest job's replies so far, not taken out yet.
        let mut kept = 0;
        while let Some(length) = decoder
            .reply_length(&buffer[kept..])
            .map_err(Broken::BadReply)?
        {
            let reply = kept..kept + length;
            match self.pair_one(&buffer[reply.clone()])? {
                Paired::Kept => kept = reply.end,
                Paired::Skipped => {
                    self.take_kept(buffer, kept);
                    buffer.advance(length);
                    kept = 0;
                }
                Paired::Abandoned => {
                    buffer.advance(reply.end);
                    kept = 0;
                }
                Paired::Last(waiter, true) => {
                    kept = 0;
                    answered(waiter, self.whole_answer(buffer.split_to(reply.end)));
                }
                Paired::Last(waiter, false) => {
                    kept = 0;
                    buffer.advance(reply.end);
                    answered(waiter, Bytes::new());
                }
            }
        }
        self.take_kept(buffer, kept);
        decoder.reserve_for_reply(buffer);
        Ok(())
    }

    /// Gives one reply frame (in a buffer of its own) to the oldest job: [`ReplyQueue::pair_buffered`] for a
    /// single reply.
    #[cfg(test)]
    pub(super) fn pair(&mut self, frame: BytesMut) -> Result<Option<(W, Bytes)>, Broken> {
        let mut decoder = ReplyDecoder::new(resp_codec::Limits::for_backend_replies());
        let mut buffer = frame;
        let mut done = None;
        self.pair_buffered(&mut buffer, &mut decoder, |waiter, answer| {
            done = Some((waiter, answer));
        })?;
        Ok(done)
    }

    /// What `reply` does to the oldest job (see [`Paired`]), its count of replies owed updated.
    fn pair_one(&mut self, reply: &[u8]) -> Result<Paired<W>, Broken> {
        if reply.first() == Some(&b'>') {
            return Ok(Paired::Skipped);
        }
        let front = self.owed.front_mut().ok_or(Broken::ReplyWithoutRequest)?;
        if let Some(watch) = &front.redirects {
            watch.note(reply);
        }
        let abandoned = front.waiter.abandoned();
        if abandoned {
            // Abandoned since its first replies: free what was kept.
            self.front_runs.clear();
        }
        if let Some(left) = NonZeroUsize::new(front.remaining.get() - 1) {
            front.remaining = left;
            return Ok(if abandoned {
                Paired::Abandoned
            } else if front.keeps_all {
                Paired::Kept
            } else {
                Paired::Skipped
            });
        }
        let Some(done) = self.owed.pop_front() else {
            return Err(Broken::ReplyWithoutRequest);
        };
        if done.patience == Patience::Slow {
            self.slow_owed -= 1;
        }
        Ok(Paired::Last(done.waiter, !abandoned))
    }

    /// Takes the oldest job's replies kept at the start of `buffer` (`kept` bytes) out, into its runs.
    fn take_kept(&mut self, buffer: &mut BytesMut, kept: usize) {
        if kept > 0 {
            add_run(&mut self.front_runs, buffer.split_to(kept));
        }
    }

    /// The oldest job's answer: its earlier runs, if any, then `last`, the rest of its replies.
    fn whole_answer(&mut self, last: BytesMut) -> Bytes {
        if self.front_runs.is_empty() {
            return last.freeze();
        }
        add_run(&mut self.front_runs, last);
        if self.front_runs.len() == 1 {
            if let Some(only) = self.front_runs.pop() {
                return only.freeze();
            }
        }
        join_runs(std::mem::take(&mut self.front_runs)).freeze()
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

/// Adds `run` to a job's runs: joined to the latest in place when it lies right after it, else as a new run.
fn add_run(runs: &mut Vec<BytesMut>, run: BytesMut) {
    match runs.last_mut() {
        Some(latest) if latest.as_ptr_range().end == run.as_ptr() => latest.unsplit(run),
        _ => runs.push(run),
    }
}

/// A job's runs of replies as one buffer.
#[cold]
fn join_runs(runs: Vec<BytesMut>) -> BytesMut {
    let size = runs.iter().map(BytesMut::len).sum::<usize>();
    let mut joined = BytesMut::with_capacity(size);
    for run in runs {
        joined.extend_from_slice(&run);
    }
    joined
}
