//! The reply queue, [`PendingQueue`]: the session's pending replies in request order, with the timing of each
//! entry (see the parent module's docs) and the client's requests in flight and their bytes.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;

use super::super::pending::{Expect, Pending};
use crate::clock::Moment;
use crate::stats::Stats;
use cluster_router::topology::NodeAddr;

/// Timing of one entry of the reply queue.
#[derive(Default)]
pub(super) struct Sent {
    /// When its first request was framed, which also times its dispatch (see `start`): the start of both its
    /// time in the proxy and its time at the backend. `None` for entries the proxy answered itself.
    pub(super) at: Option<Moment>,
    /// Nanoseconds until it was last taken off the front.
    pub(super) took: Option<u64>,
    /// Requests it stands for (a batch stands for several).
    pub(super) requests: u32,
    /// Framed requests it carried (see `PendingQueue::commands`), set when it is taken off the front.
    pub(super) carried: u32,
    /// A cluster entry's request, taken when it turned out slow, for its slow-log entry.
    pub(super) request: Option<Bytes>,
    /// How many leading bytes of a standalone entry's request were copied into the queue's `SlowCopies`
    /// (while the slow log is on).
    pub(super) copied: u16,
    /// The backend node(s) that answered.
    pub(super) target: Target,
}

/// Which backend node(s) answered an entry.
#[derive(Default)]
pub(super) enum Target {
    #[default]
    Unknown,
    /// A standalone pool's node: its index in `PendingQueue::node_labels` (no reference count to take and
    /// drop per request).
    Label(u32),
    /// A cluster node (its label is looked up once per session, see `PendingQueue::label`).
    Node(Arc<NodeAddr>),
    /// Cluster nodes of a split or pipelined request, with the requests each answered.
    Parts(Vec<(Arc<NodeAddr>, u32)>),
}

/// What one queue entry stands for: client requests in flight and their bytes.
#[derive(Clone, Copy, Default)]
struct InFlight {
    requests: usize,
    bytes: usize,
}

/// The reply queue, with the timing of each entry (see the module docs). It also counts the client's requests
/// in flight and their bytes (for `client_limits.max_pending_requests` and `max_pending_bytes`); a batch of
/// requests is one entry but counts every request in it.
///
/// Requests are counted as they are framed ([`PendingQueue::framed`]) and attributed to the next entry pushed,
/// which is the one that carries them (a batch is pushed after its requests were framed); their count falls
/// when that entry completes. Requests framed that push no entry (held behind a barrier, CLIENT REPLY OFF) are
/// forgotten at the end of the read ([`PendingQueue::forget_unattributed`]): at most one request, so never a
/// count that cannot fall.
#[derive(Default)]
pub(in crate::session) struct PendingQueue {
    entries: VecDeque<Pending>,
    sent: VecDeque<Sent>,
    /// What each entry of `entries` stands for, in the same order.
    carried: VecDeque<InFlight>,
    /// Framed requests not attributed to an entry yet.
    unattributed: InFlight,
    /// Totals over `carried` and `unattributed`.
    total: InFlight,
    /// What the entry last taken by `pop_front` stood for, given back by `push_front`.
    last_carried: InFlight,
    /// While timing, `sent` starts with the timing of this many entries taken off the front, not yet recorded
    /// (see `next_completed`); the others are the timing of `entries`, in the same order. Kept in place: a
    /// `Sent` is moved once, when it is recorded.
    taken: usize,
    /// Whether the last of the `taken` is the entry `pop_front` took last, which `push_front` may put back.
    last_taken_open: bool,
    timing: bool,
    /// When the requests framed in the current pass over the read buffer began (one clock read per pass).
    framed_at: Option<Moment>,
    /// When the replies taken off in the current pass arrived (one clock read per pass; see
    /// `take_replies_clock`).
    replies_at: Option<Moment>,
    /// The slow log's threshold in nanoseconds (`None`: off).
    pub(super) slow_after: Option<u64>,
    /// Cluster nodes' labels, made once per session (not once per request).
    labels: Vec<(Arc<NodeAddr>, Arc<str>)>,
    /// Standalone pools' node labels that entries were sent to (see `Target::Label`), and the index of the
    /// one used last (tried first).
    node_labels: Vec<Arc<str>>,
    last_node_label: usize,
    /// The slow log's copies of standalone requests in flight (see [`SlowCopies`]).
    slow_copies: SlowCopies,
    /// While timing: the command of every request counted in `total`, in the order they were framed, as runs
    /// of one command. It changes in step with `total` (framed at the back, forgotten from the back, and taken
    /// from the front by each completed entry, as many as it carried), so each request's command gets the
    /// time of the entry that carried it, with no clock read or allocation per request.
    commands: CommandRuns,
}

impl PendingQueue {
    pub(in crate::session) fn new(timing: bool, slow_after: Option<u64>) -> PendingQueue {
        PendingQueue {
            timing,
            slow_after,
            ..PendingQueue::default()
        }
    }

    pub(in crate::session) fn push_back(&mut self, entry: Pending) {
        let sent = self.start(&entry);
        self.sent.push_back(sent);
        self.entries.push_back(entry);
        self.carry_unattributed();
    }

    fn carry_unattributed(&mut self) {
        let carried = std::mem::take(&mut self.unattributed);
        self.carried.push_back(carried);
    }

    /// Counts a framed request of `bytes` bytes and command `command` (its stats label), in flight from now on.
    pub(in crate::session) fn framed(&mut self, bytes: usize, command: &'static str) {
        if self.timing {
            if self.framed_at.is_none() {
                self.framed_at = Some(Moment::now());
            }
            self.commands.push(command);
        }
        self.unattributed.requests += 1;
        self.unattributed.bytes += bytes;
        self.total.requests += 1;
        self.total.bytes += bytes;
    }

    /// Forgets framed requests that no entry carries (see the type's documentation).
    pub(in crate::session) fn forget_unattributed(&mut self) {
        self.framed_at = None;
        let forgotten = std::mem::take(&mut self.unattributed);
        self.total.requests -= forgotten.requests;
        self.total.bytes -= forgotten.bytes;
        if self.timing {
            self.commands.forget_newest(forgotten.requests);
        }
    }

    /// Takes the commands of the `count` oldest requests, giving each run of one command to `each`.
    pub(super) fn take_commands(&mut self, count: u32, each: impl FnMut(&'static str, u32)) {
        self.commands.take_oldest(count, each);
    }

    /// Client requests in flight (a batch counts each of its requests).
    pub(in crate::session) fn in_flight_requests(&self) -> usize {
        self.total.requests
    }

    /// Bytes of the client's requests in flight.
    pub(in crate::session) fn in_flight_bytes(&self) -> usize {
        self.total.bytes
    }

    /// Pushes an entry for `request`, sent to `node` (the request is kept for the slow log while it is on).
    pub(in crate::session) fn push_sent(
        &mut self,
        entry: Pending,
        request: &Bytes,
        node: &Arc<str>,
    ) {
        let mut sent = self.start(&entry);
        if self.timing {
            sent.target = Target::Label(self.node_label_index(node));
            if self.slow_after.is_some() {
                let kept = request.len().min(SLOW_PREFIX);
                self.slow_copies.append(&request[..kept]);
                sent.copied = u16::try_from(kept).unwrap_or(u16::MAX);
            }
        }
        self.sent.push_back(sent);
        self.entries.push_back(entry);
        self.carry_unattributed();
    }

    /// `node`'s index in `node_labels` (added if new).
    #[inline]
    fn node_label_index(&mut self, node: &Arc<str>) -> u32 {
        match self.node_labels.get(self.last_node_label) {
            Some(last) if Arc::ptr_eq(last, node) => {}
            _ => self.find_node_label(node),
        }
        u32::try_from(self.last_node_label).unwrap_or(u32::MAX)
    }

    #[cold]
    #[inline(never)]
    fn find_node_label(&mut self, node: &Arc<str>) {
        // Equal text is the same node (a reload makes new labels for the same addresses): the table holds one
        // label per address the session sent to.
        let found = self.node_labels.iter().position(|known| **known == **node);
        self.last_node_label = found.unwrap_or_else(|| {
            self.node_labels.push(Arc::clone(node));
            self.node_labels.len() - 1
        });
    }

    fn start(&self, entry: &Pending) -> Sent {
        if !self.timing || matches!(entry, Pending::Ready(_)) {
            return Sent::default();
        }
        // An entry pushed while its requests are framed is dispatched in the same pass: the pass's time serves
        // (the few microseconds of framing and routing fall in the time at the backend, not in a clock read).
        let at = self.framed_at.unwrap_or_else(Moment::now);
        Sent {
            at: Some(at),
            requests: requests_of(entry),
            ..Sent::default()
        }
    }

    /// Puts back the entry taken off last (it keeps its start), or another entry in its place.
    pub(in crate::session) fn push_front(&mut self, entry: Pending) {
        if self.last_taken_open {
            self.last_taken_open = false;
            self.taken -= 1;
        } else {
            self.sent.insert(self.taken, Sent::default());
        }
        self.entries.push_front(entry);
        let carried = std::mem::take(&mut self.last_carried);
        self.total.requests += carried.requests;
        self.total.bytes += carried.bytes;
        self.carried.push_front(carried);
    }

    pub(in crate::session) fn pop_front(&mut self) -> Option<Pending> {
        let entry = self.entries.pop_front()?;
        let carried = self.carried.pop_front().unwrap_or_default();
        self.total.requests -= carried.requests;
        self.total.bytes -= carried.bytes;
        self.last_carried = carried;
        if !self.timing {
            // Nothing to record (a put-back entry gets a default `Sent`, which is what this is).
            self.sent.pop_front();
            return Some(entry);
        }
        let replies_at = self.replies_at;
        let slow_after = self.slow_after;
        let Some(sent) = self.sent.get_mut(self.taken) else {
            return Some(entry);
        };
        sent.carried = u32::try_from(carried.requests).unwrap_or(u32::MAX);
        if let Some(at) = sent.at {
            let replies_at = replies_at.unwrap_or_else(Moment::now);
            let took = replies_at.nanos_since(at);
            sent.took = Some(took);
            if !matches!(sent.target, Target::Label(_)) {
                sent.target = target_of(&entry);
            }
            if slow_after.is_some_and(|limit| took >= limit) && sent.request.is_none() {
                sent.request = request_of(&entry);
            }
            self.replies_at = Some(replies_at);
        }
        self.taken += 1;
        self.last_taken_open = true;
        Some(entry)
    }

    /// Takes the replies' time of this pass, if replies were taken off. The session calls it when it writes
    /// them, and after any wait between taking replies off and writing them (holding replies back for a
    /// tenant's limit, writing to a dedicated connection), so a time read before a wait is never used after it.
    pub(in crate::session) fn take_replies_clock(&mut self) -> Option<Moment> {
        self.replies_at.take()
    }

    /// Whether entries were taken off complete and not recorded yet (only while timing).
    pub(super) fn has_completed(&self) -> bool {
        self.taken > 0
    }

    /// The timing of the oldest entry taken off complete and not recorded yet (only while timing; the replies'
    /// time of the current pass is read once, by the first `pop_front` that needs it).
    ///
    /// Give each back with `release_copy` once recorded: the slow log's copy of its request is the oldest one
    /// left until then.
    pub(super) fn next_completed(&mut self) -> Option<Sent> {
        if self.taken == 0 {
            return None;
        }
        self.taken -= 1;
        self.last_taken_open = false;
        self.sent.pop_front()
    }

    /// What was kept of the request of `sent`, just taken by `next_completed` (empty if nothing was).
    pub(super) fn copied_request(&self, sent: &Sent) -> &[u8] {
        self.slow_copies.oldest(usize::from(sent.copied))
    }

    /// `sent` is recorded: its copy is no longer needed.
    pub(super) fn release_copy(&mut self, sent: &Sent) {
        if sent.copied > 0 {
            self.slow_copies.release(usize::from(sent.copied));
        }
    }

    /// A cluster node's label, made once per session.
    pub(in crate::session) fn label(&mut self, node: &Arc<NodeAddr>) -> Arc<str> {
        if let Some((_, label)) = self
            .labels
            .iter()
            .find(|(known, _)| Arc::ptr_eq(known, node) || **known == **node)
        {
            return Arc::clone(label);
        }
        let label: Arc<str> = Arc::from(node.to_string());
        self.labels.push((Arc::clone(node), Arc::clone(&label)));
        label
    }

    /// Calls `count` with each node of a completed entry and the requests it answered (no allocation: this
    /// runs once per completed entry).
    #[inline]
    pub(super) fn for_each_node(&mut self, sent: &Sent, mut count: impl FnMut(&Arc<str>, u32)) {
        match &sent.target {
            Target::Unknown => {}
            Target::Label(index) => {
                let label = usize::try_from(*index)
                    .ok()
                    .and_then(|index| self.node_labels.get(index));
                if let Some(label) = label {
                    count(label, sent.requests);
                }
            }
            Target::Node(node) => count(&self.label(node), sent.requests),
            Target::Parts(parts) => {
                for (node, requests) in parts {
                    count(&self.label(node), *requests);
                }
            }
        }
    }

    pub(in crate::session) fn front(&self) -> Option<&Pending> {
        self.entries.front()
    }

    pub(in crate::session) fn front_mut(&mut self) -> Option<&mut Pending> {
        self.entries.front_mut()
    }

    pub(in crate::session) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(in crate::session) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(in crate::session) fn iter(&self) -> std::collections::vec_deque::Iter<'_, Pending> {
        self.entries.iter()
    }

    /// The entries, to complete those a dedicated connection answers (see `dedicated`).
    pub(in crate::session) fn iter_mut(
        &mut self,
    ) -> std::collections::vec_deque::IterMut<'_, Pending> {
        self.entries.iter_mut()
    }
}

/// How many client requests an entry answers.
pub(super) fn requests_of(entry: &Pending) -> u32 {
    let requests = match entry {
        Pending::Waiting(_, Expect::Batch(count)) => *count,
        Pending::Sent(sent) => sent.count,
        Pending::Pipeline(pipeline) => pipeline.order.len(),
        _ => 1,
    };
    u32::try_from(requests).unwrap_or(u32::MAX)
}

/// What a cluster entry sent, for the slow log (standalone entries carry it from `push_sent`).
fn request_of(entry: &Pending) -> Option<Bytes> {
    match entry {
        Pending::Routed(routed) => Some(routed.request.clone()),
        Pending::Transaction(exec) => Some(exec.unit.clone()),
        Pending::Merge(merge) => merge.parts.first().map(|part| part.request.clone()),
        Pending::Pipeline(pipeline) => pipeline.parts.first().map(|part| part.requests.clone()),
        Pending::Ready(_) | Pending::Waiting(..) | Pending::Sent(_) | Pending::Dedicated(_) => None,
    }
}

/// The cluster node(s) that answered an entry.
fn target_of(entry: &Pending) -> Target {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    match entry {
        Pending::Routed(routed) => Target::Node(Arc::clone(&routed.node)),
        Pending::Transaction(exec) => Target::Node(Arc::clone(&exec.node)),
        Pending::Merge(merge) => Target::Parts(
            merge
                .parts
                .iter()
                .map(|part| (Arc::clone(&part.node), count(part.commands)))
                .collect(),
        ),
        Pending::Pipeline(pipeline) => Target::Parts(
            pipeline
                .parts
                .iter()
                .map(|part| (Arc::clone(&part.node), count(part.ends.len())))
                .collect(),
        ),
        Pending::Ready(_) | Pending::Waiting(..) | Pending::Sent(_) | Pending::Dedicated(_) => {
            Target::Unknown
        }
    }
}

/// The slow log keeps at most this many leading bytes of a request sent to a standalone pool (enough for
/// 32 short arguments; a big value is not kept alive until its reply).
pub(super) const SLOW_PREFIX: usize = 1024;

/// The commands of framed requests in the order they were framed, as runs of one command.
#[derive(Default)]
struct CommandRuns {
    runs: VecDeque<(&'static str, u32)>,
}

impl CommandRuns {
    /// One more request of `command`, the newest.
    #[inline]
    fn push(&mut self, command: &'static str) {
        match self.runs.back_mut() {
            Some((last, run)) if std::ptr::eq(*last, command) => *run += 1,
            _ => self.runs.push_back((command, 1)),
        }
    }

    /// Drops the `count` newest requests.
    fn forget_newest(&mut self, mut count: usize) {
        while count > 0 {
            let Some((_, run)) = self.runs.back_mut() else {
                return;
            };
            let run_len = *run as usize;
            if run_len > count {
                *run -= count as u32;
                return;
            }
            count -= run_len;
            self.runs.pop_back();
        }
    }

    /// Takes the `count` oldest requests, giving each run of one command to `each`.
    fn take_oldest(&mut self, mut count: u32, mut each: impl FnMut(&'static str, u32)) {
        while count > 0 {
            let Some(&mut (command, ref mut run)) = self.runs.front_mut() else {
                return;
            };
            let taken = (*run).min(count);
            each(command, taken);
            count -= taken;
            *run -= taken;
            if *run == 0 {
                self.runs.pop_front();
            }
        }
    }
}

/// The leading bytes of standalone requests in flight, kept for the slow log (the request's own buffer is not
/// kept alive until its reply), one after another in queue order: appended as entries are pushed and released
/// as they are recorded, which is the same order, so the oldest copy is always at the front. One buffer for
/// all, reused: no allocation per request.
#[derive(Default)]
struct SlowCopies {
    bytes: Vec<u8>,
    /// Where the oldest copy not yet released starts.
    head: usize,
}

/// Released bytes are moved out of the front of `SlowCopies` once there are this many and they are at least
/// half of it (so a client that always has requests in flight does not grow it forever).
const SLOW_COPIES_COMPACT: usize = 16 * 1024;

impl SlowCopies {
    fn append(&mut self, prefix: &[u8]) {
        self.bytes.extend_from_slice(prefix);
    }

    /// The oldest copy, `len` bytes long.
    fn oldest(&self, len: usize) -> &[u8] {
        let end = self.head.saturating_add(len).min(self.bytes.len());
        self.bytes.get(self.head..end).unwrap_or_default()
    }

    fn release(&mut self, len: usize) {
        self.head = self.head.saturating_add(len).min(self.bytes.len());
        if self.head == self.bytes.len() {
            self.bytes.clear();
            self.head = 0;
        } else if self.head >= SLOW_COPIES_COMPACT && self.head * 2 >= self.bytes.len() {
            self.bytes.drain(..self.head);
            self.head = 0;
        }
    }
}

/// The reply queue a session starts with.
pub(in crate::session) fn new_queue(stats: &Stats) -> PendingQueue {
    PendingQueue::new(stats.enabled(), stats.slowlog().threshold_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runs against a plain list of commands, one per request, under random pushes, forgets and takes.
    #[test]
    fn command_runs_give_each_request_its_own_command() {
        const NAMES: [&str; 3] = ["get", "set", "mget"];
        let mut runs = CommandRuns::default();
        let mut model: VecDeque<&'static str> = VecDeque::new();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for _ in 0..20_000 {
            match next(4) {
                0 | 1 => {
                    let command = NAMES[next(3) as usize];
                    runs.push(command);
                    model.push_back(command);
                }
                2 => {
                    let count = next(4) as usize;
                    runs.forget_newest(count);
                    let keep = model.len().saturating_sub(count);
                    model.truncate(keep);
                }
                _ => {
                    let count = next(5) as u32;
                    let mut taken = Vec::new();
                    runs.take_oldest(count, |command, run| {
                        taken.extend(std::iter::repeat_n(command, run as usize));
                    });
                    let expected: Vec<&str> =
                        (0..count).filter_map(|_| model.pop_front()).collect();
                    assert_eq!(taken, expected);
                }
            }
        }
    }

    #[test]
    fn slow_copies_give_back_each_copy_in_order_and_stay_small() {
        let mut copies = SlowCopies::default();
        copies.append(b"first");
        copies.append(b"second");
        assert_eq!(copies.oldest(5), b"first");
        copies.release(5);
        assert_eq!(copies.oldest(6), b"second");
        copies.release(6);
        assert!(
            copies.bytes.is_empty(),
            "emptied once every copy is released"
        );
        // A client that always has requests in flight: the released front is dropped now and then.
        let request = [b'x'; 1000];
        copies.append(&request);
        for round in 0..1000 {
            copies.append(&request);
            assert_eq!(copies.oldest(1000), &request[..], "round {round}");
            copies.release(1000);
            assert!(copies.bytes.len() <= 2 * SLOW_COPIES_COMPACT + 2000);
        }
        // Asking past the end gives what is there, never a panic.
        assert_eq!(copies.oldest(5000).len(), 1000);
    }
}
