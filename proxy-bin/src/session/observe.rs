//! What the session contributes to the proxy's stats: it counts each request as it is framed, times each
//! entry of its reply queue from dispatch to reply, logs slow ones, and answers `RKPROXY STATS`, `SLOWLOG` and
//! INFO's `# Proxy` section.
//!
//! Counting is into the session's own [`SessionStats`](crate::stats::SessionStats) (plain fields), flushed into
//! the worker's cell before each write of replies, so a client that has read a reply finds it counted.
//!
//! Timing: [`PendingQueue`] is the session's reply queue. It records when each entry waiting on a backend was
//! pushed (one clock read per entry: a batch of pipelined requests is one entry) and when it was taken off the
//! front complete; an entry taken off and put back (a cluster redirect, a merge still waiting for parts) keeps
//! its start. Entries the proxy answers itself are not timed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use resp_codec::{Frame, Request};
use tenant_policy::PolicyError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::errors::{AdminError, CommandError, ErrorReply};
use super::pending::{Expect, FrontEvent, Pending};
use super::Session;
use crate::backend::{BackendError, BackendReply, FailureKind};
use crate::pools::PoolHandle;
use crate::reply;
use crate::stats::clients::ClientNow;
use crate::stats::keys::{BigSeen, BigSide};
use crate::stats::report::{self, Facts, LagFacts, LaneFacts, NodeFacts, PoolFacts, Section};
use crate::stats::slowlog::{SlowArg, SlowEntry, SlowRequest};
use crate::stats::{ErrorKind, SessionStats, Stats, NO_TENANT, UNAUTHENTICATED, UNKNOWN_COMMAND};
use cluster_router::commands::{CommandFlags, CommandSpec};
use cluster_router::topology::NodeAddr;

/// Timing of one entry of the reply queue.
#[derive(Default)]
pub(super) struct Sent {
    /// When it was pushed (dispatched); `None` for entries the proxy answered itself.
    at: Option<Instant>,
    /// When the proxy framed its first request (the start of the time in the proxy); `at` if unknown.
    framed_at: Option<Instant>,
    /// How long until it was last taken off the front.
    took: Option<Duration>,
    /// Requests it stands for (a batch stands for several).
    requests: u32,
    /// Framed requests it carried (see `PendingQueue::commands`), set when it is taken off the front.
    carried: u32,
    /// Kept only while the slow log is on: what was sent, for a slow-log entry.
    request: Option<Bytes>,
    /// The backend node(s) that answered.
    target: Target,
}

/// Which backend node(s) answered an entry.
#[derive(Default)]
enum Target {
    #[default]
    Unknown,
    /// A standalone pool's node.
    Label(Arc<str>),
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
pub(super) struct PendingQueue {
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
    /// The entry taken off the front last, until it is put back or settled.
    popped: Option<Sent>,
    /// Entries taken off complete, not yet recorded.
    completed: Vec<Sent>,
    timing: bool,
    /// When the requests framed in the current pass over the read buffer began (one clock read per pass).
    framed_at: Option<Instant>,
    slow_after: Option<Duration>,
    /// Cluster nodes' labels, made once per session (not once per request).
    labels: Vec<(Arc<NodeAddr>, Arc<str>)>,
    /// While timing: the command of every request counted in `total`, in the order they were framed, as runs
    /// of one command. It changes in step with `total` (framed at the back, forgotten from the back, and taken
    /// from the front by each completed entry, as many as it carried), so each request's command gets the
    /// time of the entry that carried it, with no clock read or allocation per request.
    commands: VecDeque<(&'static str, u32)>,
}

impl PendingQueue {
    pub(super) fn new(timing: bool, slow_after: Option<Duration>) -> PendingQueue {
        PendingQueue {
            timing,
            slow_after,
            ..PendingQueue::default()
        }
    }

    pub(super) fn push_back(&mut self, entry: Pending) {
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
    pub(super) fn framed(&mut self, bytes: usize, command: &'static str) {
        if self.timing {
            if self.framed_at.is_none() {
                self.framed_at = Some(Instant::now());
            }
            match self.commands.back_mut() {
                Some((last, run)) if std::ptr::eq(*last, command) => *run += 1,
                _ => self.commands.push_back((command, 1)),
            }
        }
        self.unattributed.requests += 1;
        self.unattributed.bytes += bytes;
        self.total.requests += 1;
        self.total.bytes += bytes;
    }

    /// Forgets framed requests that no entry carries (see the type's documentation).
    pub(super) fn forget_unattributed(&mut self) {
        self.framed_at = None;
        let forgotten = std::mem::take(&mut self.unattributed);
        self.total.requests -= forgotten.requests;
        self.total.bytes -= forgotten.bytes;
        if self.timing {
            self.forget_commands(forgotten.requests);
        }
    }

    /// Drops the commands of the `count` requests framed last.
    fn forget_commands(&mut self, mut count: usize) {
        while count > 0 {
            let Some((_, run)) = self.commands.back_mut() else {
                return;
            };
            let run_len = *run as usize;
            if run_len > count {
                *run -= count as u32;
                return;
            }
            count -= run_len;
            self.commands.pop_back();
        }
    }

    /// Takes the commands of the `count` oldest requests, giving each run of one command to `each`.
    fn take_commands(&mut self, mut count: u32, mut each: impl FnMut(&'static str, u32)) {
        while count > 0 {
            let Some(&mut (command, ref mut run)) = self.commands.front_mut() else {
                return;
            };
            let taken = (*run).min(count);
            each(command, taken);
            count -= taken;
            *run -= taken;
            if *run == 0 {
                self.commands.pop_front();
            }
        }
    }

    /// Client requests in flight (a batch counts each of its requests).
    pub(super) fn in_flight_requests(&self) -> usize {
        self.total.requests
    }

    /// Bytes of the client's requests in flight.
    pub(super) fn in_flight_bytes(&self) -> usize {
        self.total.bytes
    }

    /// Pushes an entry for `request`, sent to `node` (the request is kept for the slow log while it is on).
    pub(super) fn push_sent(&mut self, entry: Pending, request: &Bytes, node: &Arc<str>) {
        let mut sent = self.start(&entry);
        if self.timing {
            sent.target = Target::Label(Arc::clone(node));
            if self.slow_after.is_some() {
                // A copy of the first bytes, not the request: its buffer is not kept alive until the reply.
                let kept = request.len().min(SLOW_PREFIX);
                sent.request = Some(Bytes::copy_from_slice(&request[..kept]));
            }
        }
        self.sent.push_back(sent);
        self.entries.push_back(entry);
        self.carry_unattributed();
    }

    fn start(&self, entry: &Pending) -> Sent {
        if !self.timing || matches!(entry, Pending::Ready(_)) {
            return Sent::default();
        }
        let at = Instant::now();
        Sent {
            at: Some(at),
            framed_at: Some(self.framed_at.unwrap_or(at)),
            requests: requests_of(entry),
            ..Sent::default()
        }
    }

    /// Puts back the entry taken off last (it keeps its start), or another entry in its place.
    pub(super) fn push_front(&mut self, entry: Pending) {
        let sent = self.popped.take().unwrap_or_default();
        self.sent.push_front(sent);
        self.entries.push_front(entry);
        let carried = std::mem::take(&mut self.last_carried);
        self.total.requests += carried.requests;
        self.total.bytes += carried.bytes;
        self.carried.push_front(carried);
    }

    pub(super) fn pop_front(&mut self) -> Option<Pending> {
        let entry = self.entries.pop_front()?;
        let carried = self.carried.pop_front().unwrap_or_default();
        self.total.requests -= carried.requests;
        self.total.bytes -= carried.bytes;
        self.last_carried = carried;
        let mut sent = self.sent.pop_front().unwrap_or_default();
        sent.carried = u32::try_from(carried.requests).unwrap_or(u32::MAX);
        if let Some(previous) = self.popped.take() {
            // Completed entries are kept for `observe_before_write`, which runs only while timing.
            if self.timing {
                self.completed.push(previous);
            }
        }
        if let Some(at) = sent.at {
            let took = at.elapsed();
            sent.took = Some(took);
            if !matches!(sent.target, Target::Label(_)) {
                sent.target = target_of(&entry);
            }
            if self.slow_after.is_some_and(|limit| took >= limit) && sent.request.is_none() {
                sent.request = request_of(&entry);
            }
        }
        self.popped = Some(sent);
        Some(entry)
    }

    /// Whether entries completed since the last `settle`.
    fn has_completed(&self) -> bool {
        self.popped.is_some() || !self.completed.is_empty()
    }

    /// The entries completed since the last call (give the vector back with `reuse`, to keep its capacity).
    fn settle(&mut self) -> Vec<Sent> {
        if let Some(last) = self.popped.take() {
            self.completed.push(last);
        }
        std::mem::take(&mut self.completed)
    }

    fn reuse(&mut self, mut emptied: Vec<Sent>) {
        emptied.clear();
        self.completed = emptied;
    }

    /// A cluster node's label, made once per session.
    pub(super) fn label(&mut self, node: &Arc<NodeAddr>) -> Arc<str> {
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
    fn for_each_node(&mut self, sent: &Sent, mut count: impl FnMut(&Arc<str>, u32)) {
        match &sent.target {
            Target::Unknown => {}
            Target::Label(label) => count(label, sent.requests),
            Target::Node(node) => count(&self.label(node), sent.requests),
            Target::Parts(parts) => {
                for (node, requests) in parts {
                    count(&self.label(node), *requests);
                }
            }
        }
    }

    pub(super) fn front(&self) -> Option<&Pending> {
        self.entries.front()
    }

    pub(super) fn front_mut(&mut self) -> Option<&mut Pending> {
        self.entries.front_mut()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn iter(&self) -> std::collections::vec_deque::Iter<'_, Pending> {
        self.entries.iter()
    }

    /// The entries, to complete those a dedicated connection answers (see `dedicated`).
    pub(super) fn iter_mut(&mut self) -> std::collections::vec_deque::IterMut<'_, Pending> {
        self.entries.iter_mut()
    }
}

/// How many client requests an entry answers.
fn requests_of(entry: &Pending) -> u32 {
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
const SLOW_PREFIX: usize = 1024;

/// The arguments of the first request in `bytes`, as far as they are there (a prefix of a request, or of a
/// batch), and how many arguments it declared.
fn prefix_args(bytes: &[u8]) -> (Vec<SlowArg<'_>>, usize) {
    let mut args = Vec::new();
    let Some((argc, mut at)) = resp_number(bytes, 0, b'*') else {
        return (args, 0);
    };
    while args.len() < argc {
        let Some((len, start)) = resp_number(bytes, at, b'$') else {
            break;
        };
        let end = start.saturating_add(len).min(bytes.len());
        args.push(SlowArg {
            shown: bytes.get(start..end).unwrap_or_default(),
            len,
        });
        at = start.saturating_add(len).saturating_add(2);
        if at > bytes.len() {
            break;
        }
    }
    (args, argc)
}

/// A RESP header `<kind><digits>\r\n` at `at`: its number and where what follows it starts.
fn resp_number(bytes: &[u8], at: usize, kind: u8) -> Option<(usize, usize)> {
    if *bytes.get(at)? != kind {
        return None;
    }
    let digits = bytes.get(at + 1..)?;
    let end = digits.iter().position(|&b| b == b'\r')?;
    let number = std::str::from_utf8(&digits[..end]).ok()?.parse().ok()?;
    Some((number, at + 1 + end + 2))
}

/// The stats label of a request the command table does not know: the proxy's own and Kafka commands by name.
fn unlisted_command(name: &[u8]) -> &'static str {
    const OWN: [&str; 7] = [
        "use",
        "rkproxy",
        "kpush",
        "kpop",
        "kack",
        "kpartitions",
        "koffset",
    ];
    OWN.iter()
        .find(|own| name.eq_ignore_ascii_case(own.as_bytes()))
        .copied()
        .unwrap_or(UNKNOWN_COMMAND)
}

/// The tenant label a session starts with.
pub(super) fn initial_tenant(state: &crate::state::ProxyState) -> &'static str {
    if state.tenants().is_some() {
        UNAUTHENTICATED
    } else {
        NO_TENANT
    }
}

/// What [`Session::observe_lane_request`] records of one lane request.
pub(super) struct LaneTiming<'a> {
    /// The command's stats label.
    pub command: &'static str,
    /// What was sent first: the whole request, or a streamed request's head (its leading arguments).
    pub head: &'a Bytes,
    /// The cluster node; `None` on a standalone pool.
    pub node: Option<&'a Arc<NodeAddr>>,
    /// See [`Session::lane_clock`]: when the transfer began, and when its lane connection was checked out.
    pub started: Option<Instant>,
    pub dispatched: Option<Instant>,
}

/// The reply queue a session starts with.
pub(super) fn new_queue(stats: &Stats) -> PendingQueue {
    PendingQueue::new(stats.enabled(), stats.slowlog().threshold())
}

/// How a backend failure is counted: a timeout when the backend made no progress in time.
pub(super) fn failure_kind(error: &BackendError) -> ErrorKind {
    match error.kind() {
        FailureKind::Timeout => ErrorKind::Timeout,
        FailureKind::Unreachable
        | FailureKind::RefusedHandshake
        | FailureKind::ConnectionLost
        | FailureKind::Internal => ErrorKind::Backend,
    }
}

/// The request's first key, if it names any.
fn first_key<'a>(spec: &'static CommandSpec, request: &'a Request) -> Option<&'a [u8]> {
    // Most keyed commands have their first key at a fixed place (GET, SET, HSET, ...): no key spec walk.
    let fixed = usize::try_from(spec.first_key)
        .ok()
        .filter(|&index| index > 0);
    if let Some(index) = fixed.filter(|_| !spec.flags.contains(CommandFlags::MOVABLEKEYS)) {
        return request.arg(index);
    }
    let index = cluster_router::commands::key_indices(spec, request)
        .ok()?
        .first()?;
    request.arg(index)
}

/// How a tenant-policy refusal is counted.
pub(super) fn refusal_kind(error: &PolicyError) -> ErrorKind {
    match error {
        PolicyError::OverLimit { .. } | PolicyError::RequestTooLarge { .. } => ErrorKind::Limit,
        _ => ErrorKind::Refused,
    }
}

/// How many loop turns a session with requests always in flight may keep its counts before flushing them.
const FLUSH_EVERY_WRITES: u32 = 16;

impl Session {
    /// Counts a request as it is framed (each request once, whatever happens to it later). Returns its command
    /// table entry when counting looked it up.
    pub(super) fn count_request(&mut self, request: &Request) -> Option<&'static CommandSpec> {
        if !self.stats.enabled() {
            return None;
        }
        let spec = match self.lookup(request) {
            Ok(spec) => spec,
            Err(_) => {
                let name = unlisted_command(request.name());
                self.stats.command(name, request.raw().len());
                return None;
            }
        };
        let size = request.raw().len();
        self.stats.command(spec.name, size);
        let keyed = spec.first_key > 0 || !spec.key_specs.is_empty();
        if keyed && self.stats.sample_hot_key() {
            if let Some(key) = first_key(spec, request) {
                self.stats.hot_key(key);
            }
        }
        if size >= self.stats.big_threshold() {
            if let Some(key) = first_key(spec, request) {
                self.record_big_key(spec.name, key, BigSide::Request, size);
            }
        }
        Some(spec)
    }

    /// A request or reply of at least the big-request threshold for `key` (the client's key, unprefixed).
    fn record_big_key(&self, command: &'static str, key: &[u8], side: BigSide, bytes: usize) {
        self.state.stats().big_key(BigSeen {
            tenant: self.stats.tenant(),
            pool: self.stats.pool(),
            key,
            command,
            side,
            bytes,
        });
    }

    /// A big reply to a request for `key` as sent to the backend (with the tenant's prefix, which is taken off:
    /// a key without it is not recorded, so no other tenant's key is ever shown).
    pub(super) fn note_big_reply(&self, command: &'static str, backend_key: &[u8], bytes: usize) {
        if !self.stats.enabled() {
            return;
        }
        let prefix = self.tenant().and_then(|tenant| tenant.key_prefix());
        let key = match prefix {
            Some(prefix) => match backend_key.strip_prefix(prefix) {
                Some(key) => key,
                None => return,
            },
            None => backend_key,
        };
        self.record_big_key(command, key, BigSide::Reply, bytes);
    }

    /// A request sent on the big-request lane of cluster node `node`.
    pub(super) fn count_cluster_lane_request(&mut self, node: &Arc<NodeAddr>) -> Arc<str> {
        let label = self.pending.label(node);
        self.stats.lane_request(&label);
        label
    }

    /// A big request refused because the lane of its node (`node`: a cluster node; `None`: the standalone pool's
    /// node) was busy: counted for the client's tenant and the node.
    pub(super) fn count_lane_busy(&mut self, node: Option<&Arc<NodeAddr>>) {
        if !self.stats.enabled() {
            return;
        }
        let Some(label) = self.lane_node_label(node) else {
            return;
        };
        self.state
            .stats()
            .lane_busy(self.stats.pool(), self.stats.tenant(), &label);
    }

    /// The stats label of a lane's node: `node` on a cluster pool, the pool's node on a standalone one.
    fn lane_node_label(&mut self, node: Option<&Arc<NodeAddr>>) -> Option<Arc<str>> {
        match (node, &self.pool) {
            (Some(node), _) => Some(self.pending.label(node)),
            (None, PoolHandle::Standalone(pool)) => Some(Arc::clone(pool.address())),
            (None, _) => None,
        }
    }

    /// The time a lane request starts, while the stats are on (a lane request is big and rare: one clock read
    /// at each end costs nothing visible).
    pub(super) fn lane_clock(&self) -> Option<Instant> {
        self.stats.enabled().then(Instant::now)
    }

    /// A lane request its node answered (see `big::transfer`), which bypasses the reply queue: recorded once,
    /// when it completes, through the same counts the reply queue feeds. The time in the proxy runs from
    /// `started` (the transfer began: every earlier reply had arrived), the time at the backend from
    /// `dispatched` (its lane connection was checked out; a streamed request's body arrives meanwhile).
    pub(super) fn observe_lane_request(&mut self, lane: LaneTiming<'_>) {
        let (Some(started), Some(dispatched)) = (lane.started, lane.dispatched) else {
            return;
        };
        let now = Instant::now();
        let in_proxy = now.saturating_duration_since(started);
        let at_backend = now.saturating_duration_since(dispatched);
        self.stats.latency(in_proxy, at_backend, 1);
        self.stats.command_latency(lane.command, in_proxy, 1);
        let label = self.lane_node_label(lane.node);
        if let Some(label) = &label {
            self.stats.node(label, 1, 0, Some(at_backend));
        }
        if self
            .pending
            .slow_after
            .is_some_and(|limit| at_backend >= limit)
        {
            let kept = lane.head.len().min(SLOW_PREFIX);
            let sent = Sent {
                requests: 1,
                request: Some(Bytes::copy_from_slice(&lane.head[..kept])),
                ..Sent::default()
            };
            self.log_slow(&sent, at_backend, label.as_deref().unwrap_or_default());
        }
    }

    /// A lane request that failed at its node (writing the request or reading the reply): counted like a
    /// backend failure of the reply queue.
    pub(super) fn count_lane_failure(&mut self, failure: &BackendError) {
        self.stats.error(failure_kind(failure), 1);
        let BackendError::Unavailable { address, .. } = failure;
        self.stats.node(address, 0, 1, None);
    }

    /// Counts the requests of the entry `front` failed by a backend error in `event`.
    pub(super) fn count_backend_failure(&mut self, front: &Pending, event: &FrontEvent) {
        let (FrontEvent::Reply(Err(error)) | FrontEvent::Part(_, Err(error))) = event else {
            return;
        };
        let times = u64::from(requests_of(front));
        self.stats.error(failure_kind(error), times);
        let BackendError::Unavailable { address, .. } = error;
        self.stats.node(address, 0, times, None);
    }

    /// Before replies are written: records the timing of completed entries (and logs slow ones), counts the
    /// reply bytes, and flushes the session's counts into its worker's.
    pub(super) fn observe_before_write(&mut self, reply_bytes: usize) {
        // Most loop turns write nothing (a request was read, a reply is still on its way): nothing to count.
        if !self.stats.enabled() || (reply_bytes == 0 && !self.pending.has_completed()) {
            return;
        }
        let mut completed = self.pending.settle();
        // One clock read per write: the end of the time in the proxy of every entry completed since.
        let mut now: Option<Instant> = None;
        for sent in completed.drain(..) {
            let Some(took) = sent.took else {
                // Answered by the proxy itself: its requests are not timed.
                self.pending.take_commands(sent.carried, |_, _| {});
                continue;
            };
            let written_at = *now.get_or_insert_with(Instant::now);
            let in_proxy = sent
                .framed_at
                .map_or(took, |framed| written_at.saturating_duration_since(framed))
                .max(took);
            self.stats
                .latency(in_proxy, took, u64::from(sent.requests.max(1)));
            let stats = &mut self.stats;
            self.pending
                .take_commands(sent.carried, |command, requests| {
                    stats.command_latency(command, in_proxy, u64::from(requests));
                });
            let mut first_node: Option<Arc<str>> = None;
            let stats = &mut self.stats;
            self.pending.for_each_node(&sent, |node, requests| {
                stats.node(node, u64::from(requests), 0, Some(took));
                first_node.get_or_insert_with(|| Arc::clone(node));
            });
            if self.pending.slow_after.is_some_and(|limit| took >= limit) {
                self.log_slow(&sent, took, first_node.as_deref().unwrap_or_default());
            }
        }
        self.pending.reuse(completed);
        self.stats.bytes_out(reply_bytes);
        // Flushing takes the worker's table lock and merges every row: once the client's replies are all in
        // (so a client that got its replies finds them counted), or every `FLUSH_EVERY_WRITES` turns under a
        // pipeline that never drains.
        self.writes_since_flush += 1;
        if self.pending.is_empty() || self.writes_since_flush >= FLUSH_EVERY_WRITES {
            self.writes_since_flush = 0;
            self.stats.flush_and_publish(Some(ClientNow {
                name: self.name.as_ref(),
                db: self.db,
                resp3: self.resp3,
                last_active: self.last_activity.into_std(),
                pending: self.pending.in_flight_requests(),
                output_bytes: self.output.len() + self.write_buffer.len(),
            }));
        }
        // Settings may have changed (a reload): the next entries use the current threshold.
        self.pending.slow_after = self.state.stats().slowlog().threshold();
    }

    fn log_slow(&self, sent: &Sent, took: Duration, node: &str) {
        let (mut args, mut argc) = sent.request.as_deref().map_or((Vec::new(), 0), prefix_args);
        let batch_note = format!("... ({} requests in one batch)", sent.requests);
        if sent.requests > 1 && argc < 32 {
            // The note is an argument of its own (so it is never cut), unless the request has 32 or more.
            args.truncate(argc);
            args.push(SlowArg::whole(batch_note.as_bytes()));
            argc += 1;
        }
        self.state.stats().slowlog().log(SlowRequest {
            duration: took,
            argc,
            args,
            client_addr: self
                .stream
                .peer_addr()
                .map(|addr| addr.to_string())
                .unwrap_or_default(),
            client_name: self
                .name
                .as_ref()
                .map(|name| String::from_utf8_lossy(name).into_owned())
                .unwrap_or_default(),
            tenant: Arc::clone(self.stats.tenant()),
            node: node.to_owned(),
        });
    }

    /// After AUTH or USE: later counts carry the new tenant and pool.
    pub(super) fn relabel_stats(&mut self) {
        let tenant = self
            .tenant()
            .map(|tenant| tenant.name().to_owned())
            .unwrap_or_else(|| initial_tenant(&self.state).to_owned());
        let pool = self.pool.name().to_owned();
        self.stats.relabel(&pool, &tenant);
    }

    /// The tenant whose rows this client may see: `None` (all) for admins and when no tenants are configured.
    pub(super) fn visible_tenant(&self) -> Option<String> {
        match self.tenant() {
            Some(tenant) if !tenant.is_admin() => Some(tenant.name().to_owned()),
            _ => None,
        }
    }

    /// SLOWLOG GET [count] | LEN | RESET | HELP, from the proxy's own slow log (a tenant sees only its own).
    pub(super) fn slowlog_command(&mut self, spec_name: &str, request: &Request) -> Bytes {
        if self.awaiting_auth() {
            return PolicyError::NoAuth.to_reply();
        }
        let mine = self.visible_tenant();
        let visible = |entry: &SlowEntry| mine.as_deref().is_none_or(|t| t == &*entry.tenant);
        let log = self.state.stats().slowlog();
        match spec_name {
            "slowlog|get" => {
                let count = match request.arg(2) {
                    None => Some(10),
                    Some(text) => match parse_count(text) {
                        Some(count) => count,
                        None => return CommandError::SlowlogCount.to_reply(),
                    },
                };
                let entries = log.get(count, visible);
                Frame::Array(entries.iter().map(SlowEntry::to_frame).collect()).to_bytes()
            }
            "slowlog|len" => reply::integer(i64::try_from(log.len(visible)).unwrap_or(i64::MAX)),
            "slowlog|reset" => {
                log.reset(visible);
                reply::ok()
            }
            _ => reply::array_of_bulks(
                [
                    &b"SLOWLOG GET [<count>] -- entries of the proxy's slow log (-1: all), newest first"[..],
                    b"SLOWLOG LEN -- how many entries",
                    b"SLOWLOG RESET -- empties it (a tenant: its own entries)",
                ]
                .into_iter(),
            ),
        }
    }

    /// `RKPROXY STATS [tenants|commands|pools|nodes|kafka]`: the section's lines; the nodes section probes
    /// every node first, so its reply comes from a task.
    pub(super) fn stats_command(&mut self, request: &Request) -> Pending {
        if self.awaiting_auth() {
            return Pending::Ready(PolicyError::NoAuth.to_reply());
        }
        let sub = request.arg(1).unwrap_or_default();
        if !sub.eq_ignore_ascii_case(b"STATS") {
            return Pending::Ready(self.keys_command(sub, request));
        }
        let Some(section) = Section::parse(request.arg(2)) else {
            return Pending::Ready(AdminError::UnknownStatsSection.to_reply());
        };
        // The client's own counts so far are part of the answer.
        self.stats.flush();
        let state = Arc::clone(&self.state);
        let visible = self.visible_tenant();
        if section == Section::Kafka {
            return Pending::Waiting(kafka_section(state, visible), Expect::Forward);
        }
        if section != Section::Nodes {
            let facts = proxy_facts(&state);
            let lines = report::stats_lines(
                section,
                &state.stats().snapshot(),
                &facts,
                visible.as_deref(),
            );
            return Pending::Ready(reply::array_of_bulks(lines.iter().map(String::as_bytes)));
        }
        if visible.is_some() {
            return Pending::Ready(AdminError::StatsNodesForAdmins.to_reply());
        }
        let (sender, receiver) = oneshot::channel::<BackendReply>();
        tokio::spawn(async move {
            let mut facts = proxy_facts(&state);
            facts.nodes = probe_nodes(&state).await;
            let lines = report::stats_lines(section, &state.stats().snapshot(), &facts, None);
            let _ = sender.send(Ok(reply::array_of_bulks(
                lines.iter().map(String::as_bytes),
            )));
        });
        Pending::Waiting(receiver, Expect::Forward)
    }

    /// `RKPROXY BIGKEYS [n]` and `RKPROXY HOTKEYS [n]`: each visible tenant's `n` (default 10) biggest or most
    /// requested keys, one `key=value` line each.
    fn keys_command(&mut self, sub: &[u8], request: &Request) -> Bytes {
        let per_tenant = match request.arg(2).map(parse_positive) {
            None => DEFAULT_KEYS_SHOWN,
            Some(Some(n)) => n,
            Some(None) => return AdminError::CountNotPositive.to_reply(),
        };
        if request.argc() > 3 {
            return AdminError::KeysSyntax.to_reply();
        }
        // Keys sampled so far by this client are part of the answer.
        self.stats.flush();
        let visible = self.visible_tenant();
        let visible = |tenant: &str| visible.as_deref().is_none_or(|mine| mine == tenant);
        let stats = self.state.stats();
        let lines = if sub.eq_ignore_ascii_case(b"BIGKEYS") {
            report::big_key_lines(&stats.big_keys(&visible, per_tenant))
        } else {
            report::hot_key_lines(&stats.hot_keys(&visible, per_tenant))
        };
        reply::array_of_bulks(lines.iter().map(String::as_bytes))
    }

    /// INFO's `# Proxy` section as this client may see it.
    pub(super) fn proxy_section(&mut self) -> String {
        self.stats.flush();
        let facts = proxy_facts(&self.state);
        report::info_section(
            &self.state.stats().snapshot(),
            &facts,
            self.state.uptime().as_secs(),
            self.visible_tenant().as_deref(),
        )
    }
}

/// Keys per tenant that RKPROXY BIGKEYS and HOTKEYS show without a count.
const DEFAULT_KEYS_SHOWN: usize = 10;

fn parse_positive(text: &[u8]) -> Option<usize> {
    let count: usize = std::str::from_utf8(text).ok()?.parse().ok()?;
    (count > 0).then_some(count)
}

/// SLOWLOG GET's count: -1 for all, else at least 0.
fn parse_count(text: &[u8]) -> Option<Option<usize>> {
    let count: i64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    match count {
        -1 => Some(None),
        n if n >= 0 => Some(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        _ => None,
    }
}

/// Connections per tenant and the pools' states, from the proxy's state.
pub fn proxy_facts(state: &crate::state::ProxyState) -> Facts {
    let mut facts = Facts::default();
    let total = state.connected_clients();
    match state.tenants() {
        Some(tenants) => {
            let mut authenticated = 0;
            for tenant in tenants.iter() {
                let count = tenant.connection_count();
                authenticated += count;
                facts.connections.insert(tenant.name().to_owned(), count);
            }
            facts.connections.insert(
                UNAUTHENTICATED.to_owned(),
                total.saturating_sub(authenticated),
            );
        }
        None => {
            facts.connections.insert(NO_TENANT.to_owned(), total);
        }
    }
    facts.pools = state.pool_handles().map(pool_facts).collect();
    facts.pools.sort_by(|a, b| a.name.cmp(&b.name));
    facts.lanes = state
        .pool_handles()
        .filter_map(|pool| {
            let counts = pool.big_lanes()?.stats().snapshot();
            Some(LaneFacts {
                pool: pool.name().to_owned(),
                requests: counts.big_requests,
                queued: counts.queue_waits,
                busy: counts.rejections,
            })
        })
        .collect();
    facts.lanes.sort_by(|a, b| a.pool.cmp(&b.pool));
    for pool in state.kafka_pools() {
        for ((group, topic), count) in pool.redelivered() {
            facts
                .kafka_redelivered
                .insert((pool.name().to_owned(), topic, group), count);
        }
    }
    facts
}

/// `RKPROXY STATS KAFKA` in a task: the counts, and the consumer lag read from Kafka now.
fn kafka_section(
    state: Arc<crate::state::ProxyState>,
    visible: Option<String>,
) -> oneshot::Receiver<BackendReply> {
    let (sender, receiver) = oneshot::channel::<BackendReply>();
    tokio::spawn(async move {
        let snapshot = state.stats().snapshot();
        let mut facts = proxy_facts(&state);
        facts.lag = kafka_lag(&state, &snapshot).await;
        let lines = report::stats_lines(Section::Kafka, &snapshot, &facts, visible.as_deref());
        let _ = sender.send(Ok(reply::array_of_bulks(
            lines.iter().map(String::as_bytes),
        )));
    });
    receiver
}

/// Every connected Kafka pool's consumer lag, per topic, partition and group: the groups are the topic's
/// configured consumers and the tenants that popped from it (a `*` consumer list names no group). A pool
/// that is not connected, or a topic whose offsets cannot be read now, is left out (and logged at debug).
pub async fn kafka_lag(
    state: &crate::state::ProxyState,
    snapshot: &crate::stats::WorkerStats,
) -> Vec<LagFacts> {
    let mut rows = Vec::new();
    for pool in state.pool_handles() {
        let PoolHandle::Kafka(kafka) = pool else {
            continue;
        };
        let Some(bridge) = kafka.connected_bridge() else {
            continue;
        };
        for topic in &bridge.config().topics {
            let groups = lag_groups(kafka.name(), topic, snapshot);
            match bridge.consumer_lag(&topic.name, &groups).await {
                Ok(lags) => rows.extend(lags.into_iter().map(|lag| LagFacts {
                    pool: kafka.name().to_owned(),
                    topic: lag.topic,
                    partition: lag.partition,
                    group: lag.group,
                    high_watermark: lag.high_watermark,
                    next_offset: lag.next_offset,
                    lag: lag.lag,
                })),
                Err(error) => {
                    tracing::debug!(pool = kafka.name(), topic = %topic.name, %error, "consumer lag not read");
                }
            }
        }
    }
    rows
}

/// The consumer groups whose lag is read for `topic`: its named consumers and the tenants that popped from it.
fn lag_groups(
    pool: &str,
    topic: &kafka_bridge::TopicConfig,
    snapshot: &crate::stats::WorkerStats,
) -> Vec<String> {
    let mut groups: Vec<String> = topic
        .consumers
        .iter()
        .filter(|consumer| *consumer != "*")
        .cloned()
        .collect();
    for ((topic_pool, name, tenant), counts) in &snapshot.topics {
        if &**topic_pool == pool && **name == *topic.name && counts.pops > 0 {
            groups.push(tenant.to_string());
        }
    }
    groups.sort();
    groups.dedup();
    groups
}

fn pool_facts(pool: &PoolHandle) -> PoolFacts {
    match pool {
        PoolHandle::Standalone(standalone) => PoolFacts {
            name: standalone.name().to_owned(),
            kind: "standalone",
            state: "lazy".to_owned(),
            nodes: vec![standalone.address().to_string()],
        },
        PoolHandle::Cluster(cluster) => {
            let topology = cluster.topology();
            let nodes: Vec<String> = topology.map.nodes().map(ToString::to_string).collect();
            PoolFacts {
                name: cluster.name().to_owned(),
                kind: "cluster",
                state: if topology.map.masters().is_empty() {
                    "no_slot_map".to_owned()
                } else {
                    "ok".to_owned()
                },
                nodes,
            }
        }
        PoolHandle::Kafka(kafka) => PoolFacts {
            name: kafka.name().to_owned(),
            kind: "kafka",
            state: kafka.state_name().to_owned(),
            nodes: kafka.brokers().to_vec(),
        },
    }
}

/// Whether each Redis node of every pool accepts a connection (with the pool's handshake) within the connect
/// timeout; a Kafka pool's brokers are up when the pool is connected.
pub async fn probe_nodes(state: &crate::state::ProxyState) -> Vec<NodeFacts> {
    let mut probes = Vec::new();
    for pool in state.pool_handles() {
        match pool {
            PoolHandle::Standalone(standalone) => {
                probes.push((pool.name().to_owned(), standalone.endpoint(0, false)));
            }
            PoolHandle::Cluster(cluster) => {
                for node in cluster.topology().map.nodes() {
                    probes.push((pool.name().to_owned(), cluster.endpoint(node, false, false)));
                }
            }
            PoolHandle::Kafka(_) => {}
        }
    }
    let checks = probes.into_iter().map(|(pool, endpoint)| async move {
        let up = crate::backend::connect(&endpoint).await.is_ok();
        NodeFacts {
            pool,
            node: endpoint.address.to_string(),
            up,
        }
    });
    let mut nodes: Vec<NodeFacts> = futures_join_all(checks).await;
    for pool in state.pool_handles() {
        if let PoolHandle::Kafka(kafka) = pool {
            for broker in kafka.brokers() {
                nodes.push(NodeFacts {
                    pool: kafka.name().to_owned(),
                    node: broker.clone(),
                    up: kafka.state_name() == "up",
                });
            }
        }
    }
    nodes.sort_by(|a, b| (&a.pool, &a.node).cmp(&(&b.pool, &b.node)));
    nodes
}

/// Runs the probes concurrently (each bounded by its connect timeout).
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        if let Ok(result) = handle.await {
            out.push(result);
        }
    }
    out
}

/// A session's stats, labelled with its starting pool and tenant, and its entry in the client table.
pub(super) fn session_stats(
    state: &crate::state::ProxyState,
    worker: usize,
    id: u64,
    stream: &crate::tls::ClientStream,
) -> SessionStats {
    let mut stats = SessionStats::new(
        state.stats(),
        worker,
        state.default_pool().name(),
        initial_tenant(state),
    )
    .with_big_threshold(state.config().big_requests.threshold_bytes);
    stats.register(id, stream.tcp());
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_prefix_gives_its_leading_arguments_and_their_lengths() {
        let request = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\n";
        let (args, argc) = prefix_args(request);
        assert_eq!(argc, 3);
        let shown: Vec<(&[u8], usize)> = args.iter().map(|a| (a.shown, a.len)).collect();
        assert_eq!(
            shown,
            [(&b"SET"[..], 3), (&b"k"[..], 1), (&b"0123456789"[..], 10)]
        );
        // Cut inside the value: the value is partly there, its length still known.
        let (args, argc) = prefix_args(&request[..30]);
        assert_eq!(argc, 3);
        assert_eq!(args.len(), 3);
        assert_eq!((args[2].shown, args[2].len), (&b"01234"[..], 10));
        // Cut inside a header: the arguments before it.
        let (args, _) = prefix_args(&request[..15]);
        assert_eq!(args.len(), 1);
        assert_eq!(prefix_args(b"PING\r\n").1, 0);
    }
}
