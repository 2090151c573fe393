//! Counting and timing on the request path: each request as it is framed (command, hot-key sample, big keys),
//! failures by kind, lane requests, and at each write the timing of the entries completed since (and the slow
//! ones), then what the client table shows of the session.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use resp_codec::Request;
use tenant_policy::PolicyError;
use tokio::time::Instant;

use super::super::pending::{FrontEvent, Pending};
use super::super::Session;
use super::queue::{requests_of, Sent, SLOW_PREFIX};
use crate::backend::{BackendError, FailureKind};
use crate::clock::{nanos_of, Moment};
use crate::pools::PoolHandle;
use crate::stats::clients::ClientNow;
use crate::stats::keys::{BigSeen, BigSide};
use crate::stats::{
    ErrorKind, Observation, SessionStats, NO_TENANT, UNAUTHENTICATED, UNKNOWN_COMMAND,
};
use cluster_router::commands::{CommandFlags, CommandSpec};
use cluster_router::topology::NodeAddr;

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
pub(in crate::session) fn initial_tenant(state: &crate::state::ProxyState) -> &'static str {
    if state.tenants().is_some() {
        UNAUTHENTICATED
    } else {
        NO_TENANT
    }
}

/// What [`Session::observe_lane_request`] records of one lane request.
pub(in crate::session) struct LaneTiming<'a> {
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

/// How a backend failure is counted: a timeout when the backend made no progress in time.
pub(in crate::session) fn failure_kind(error: &BackendError) -> ErrorKind {
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
pub(in crate::session) fn refusal_kind(error: &PolicyError) -> ErrorKind {
    match error {
        PolicyError::OverLimit { .. } | PolicyError::RequestTooLarge { .. } => ErrorKind::Limit,
        _ => ErrorKind::Refused,
    }
}

impl Session {
    /// Counts a request as it is framed (each request once, whatever happens to it later). Returns its command
    /// table entry when counting looked it up.
    #[inline]
    pub(in crate::session) fn count_request(
        &mut self,
        request: &Request,
    ) -> Option<&'static CommandSpec> {
        if !self.stats.enabled() {
            return None;
        }
        let Ok(spec) = self.lookup(request) else {
            self.count_unlisted_request(request);
            return None;
        };
        let size = request.raw().len();
        self.stats.command(spec.name, size);
        let keyed = spec.first_key > 0 || !spec.key_specs.is_empty();
        if keyed && self.stats.sample_hot_key() {
            self.sample_hot_key(spec, request);
        }
        if size >= self.stats.big_threshold() {
            self.note_big_request(spec, request, size);
        }
        Some(spec)
    }

    /// A request the command table does not know, counted by its name (see [`unlisted_command`]).
    #[inline(never)]
    fn count_unlisted_request(&mut self, request: &Request) {
        let name = unlisted_command(request.name());
        self.stats.command(name, request.raw().len());
    }

    /// The request sampled for the hot keys (one keyed request in `HOT_SAMPLE_EVERY`).
    #[inline(never)]
    fn sample_hot_key(&mut self, spec: &'static CommandSpec, request: &Request) {
        if let Some(key) = first_key(spec, request) {
            self.stats.hot_key(key);
        }
    }

    /// A request of at least the big-request threshold, recorded under its key.
    #[inline(never)]
    fn note_big_request(&mut self, spec: &'static CommandSpec, request: &Request, size: usize) {
        if let Some(key) = first_key(spec, request) {
            self.record_big_key(spec.name, key, BigSide::Request, size);
        }
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
    pub(in crate::session) fn note_big_reply(
        &self,
        command: &'static str,
        backend_key: &[u8],
        bytes: usize,
    ) {
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
    pub(in crate::session) fn count_cluster_lane_request(
        &mut self,
        node: &Arc<NodeAddr>,
    ) -> Arc<str> {
        let label = self.pending.label(node);
        self.stats.lane_request(&label);
        label
    }

    /// A big request refused because the lane of its node (`node`: a cluster node; `None`: the standalone pool's
    /// node) was busy: counted for the client's tenant and the node.
    pub(in crate::session) fn count_lane_busy(&mut self, node: Option<&Arc<NodeAddr>>) {
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
    pub(in crate::session) fn lane_clock(&self) -> Option<Instant> {
        self.stats.enabled().then(Instant::now)
    }

    /// A lane request its node answered (see `big::transfer`), which bypasses the reply queue: recorded once,
    /// when it completes, through the same counts the reply queue feeds. The time in the proxy runs from
    /// `started` (the transfer began: every earlier reply had arrived), the time at the backend from
    /// `dispatched` (its lane connection was checked out; a streamed request's body arrives meanwhile).
    pub(in crate::session) fn observe_lane_request(&mut self, lane: LaneTiming<'_>) {
        let (Some(started), Some(dispatched)) = (lane.started, lane.dispatched) else {
            return;
        };
        let now = Instant::now();
        let in_proxy = now.saturating_duration_since(started);
        let at_backend = now.saturating_duration_since(dispatched);
        let (in_proxy_seen, at_backend_seen) =
            (Observation::of(in_proxy), Observation::of(at_backend));
        self.stats.backend_latency(at_backend_seen, 1);
        self.stats.command_latency(lane.command, in_proxy_seen, 1);
        let label = self.lane_node_label(lane.node);
        if let Some(label) = &label {
            self.stats.node(label, 1, 0, Some(at_backend_seen));
        }
        if self
            .pending
            .slow_after
            .is_some_and(|limit| nanos_of(at_backend) >= limit)
        {
            let kept = lane.head.len().min(SLOW_PREFIX);
            let sent = Sent {
                requests: 1,
                ..Sent::default()
            };
            let label = label.as_deref().unwrap_or_default();
            self.log_slow(&sent, &lane.head[..kept], at_backend, label);
        }
    }

    /// A lane request that failed at its node (writing the request or reading the reply): counted like a
    /// backend failure of the reply queue.
    pub(in crate::session) fn count_lane_failure(&mut self, failure: &BackendError) {
        self.stats.error(failure_kind(failure), 1);
        let BackendError::Unavailable { address, .. } = failure;
        self.stats.node(address, 0, 1, None);
    }

    /// Counts the requests of the entry `front` failed by a backend error in `event`.
    pub(in crate::session) fn count_backend_failure(
        &mut self,
        front: &Pending,
        event: &FrontEvent,
    ) {
        let (FrontEvent::Reply(Err(error)) | FrontEvent::Part(_, Err(error))) = event else {
            return;
        };
        let times = u64::from(requests_of(front));
        self.stats.error(failure_kind(error), times);
        let BackendError::Unavailable { address, .. } = error;
        self.stats.node(address, 0, times, None);
    }

    /// Before replies are written: records the timing of completed entries (and logs slow ones), counts the
    /// reply bytes, and publishes what the client table shows of the session.
    #[inline]
    pub(in crate::session) fn observe_before_write(&mut self, reply_bytes: usize) {
        let replies_at = self.pending.take_replies_clock();
        // Most loop turns write nothing (a request was read, a reply is still on its way): nothing to count.
        if !self.stats.enabled() || (reply_bytes == 0 && !self.pending.has_completed()) {
            return;
        }
        self.record_before_write(reply_bytes, replies_at);
    }

    /// [`Session::observe_before_write`] when there is something to record (`replies_at`: the replies' time
    /// of this pass, if replies were taken off).
    #[inline(never)]
    fn record_before_write(&mut self, reply_bytes: usize, replies_at: Option<Moment>) {
        // The end of the time in the proxy of every entry completed since: the time its replies were taken off
        // in this pass (the write follows without a wait), or one clock read.
        let mut now: Option<Moment> = replies_at;
        while let Some(sent) = self.pending.next_completed() {
            self.record_completed(&sent, &mut now);
            self.pending.release_copy(&sent);
        }
        self.stats.bytes_out(reply_bytes);
        self.stats.publish(ClientNow {
            name: self.name.as_ref(),
            db: self.db,
            resp3: self.resp3,
            last_active: self.last_activity.into_std(),
            pending: self.pending.in_flight_requests(),
            output_bytes: self.output.len() + self.gathered.len(),
        });
        // Settings may have changed (a reload): the next entries use the current threshold.
        self.pending.slow_after = self.state.stats().slowlog().threshold_nanos();
    }

    /// Records one completed entry's times (`now`: the end of its time in the proxy, read once per write).
    fn record_completed(&mut self, sent: &Sent, now: &mut Option<Moment>) {
        let Some(took) = sent.took else {
            // Answered by the proxy itself: its requests are not timed.
            self.pending.take_commands(sent.carried, |_, _| {});
            return;
        };
        let written_at = *now.get_or_insert_with(Moment::now);
        let in_proxy = sent
            .at
            .map_or(took, |at| written_at.nanos_since(at))
            .max(took);
        // Each time's bucket is found once, for every histogram it goes into (and once for both when the two
        // are one: the usual case, when the replies' clock read also ends their time in the proxy).
        let took_seen = Observation::of_nanos(took);
        let in_proxy_seen = if in_proxy == took {
            took_seen
        } else {
            Observation::of_nanos(in_proxy)
        };
        self.stats
            .backend_latency(took_seen, u64::from(sent.requests.max(1)));
        let stats = &mut self.stats;
        self.pending
            .take_commands(sent.carried, |command, requests| {
                stats.command_latency(command, in_proxy_seen, u64::from(requests));
            });
        let stats = &mut self.stats;
        self.pending.for_each_node(sent, |node, requests| {
            stats.node(node, u64::from(requests), 0, Some(took_seen));
        });
        if self.pending.slow_after.is_some_and(|limit| took >= limit) {
            let mut first_node: Option<Arc<str>> = None;
            self.pending.for_each_node(sent, |node, _| {
                first_node.get_or_insert_with(|| Arc::clone(node));
            });
            let request = match &sent.request {
                Some(request) => &request[..],
                None => self.pending.copied_request(sent),
            };
            let took = Duration::from_nanos(took);
            self.log_slow(
                sent,
                request,
                took,
                first_node.as_deref().unwrap_or_default(),
            );
        }
    }

    /// After AUTH or USE: later counts carry the new tenant and pool.
    pub(in crate::session) fn relabel_stats(&mut self) {
        let tenant = self
            .tenant()
            .map(|tenant| tenant.name().to_owned())
            .unwrap_or_else(|| initial_tenant(&self.state).to_owned());
        let pool = self.pool.name().to_owned();
        self.stats.relabel(&pool, &tenant);
    }
}

/// A session's stats, labelled with its starting pool and tenant, and its entry in the client table.
pub(in crate::session) fn session_stats(
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
