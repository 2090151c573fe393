//! Counting what the proxy does, per tenant, pool and command, at a cost no benchmark can see.
//!
//! Three levels, so that nothing on the per-command path is shared between threads:
//! - [`SessionStats`]: each session counts into a [`SessionLive`] of its own, counters that only it writes
//!   (a relaxed load and store each: no lock, no read-modify-write) and that readers read in place, so a
//!   count is visible as soon as it is made and nothing is flushed;
//! - [`WorkerTable`]: one per worker thread (accept loop), behind a mutex that only that thread's sessions
//!   take, and only when they start, end, change labels or run out of slots (and for Kafka topics and sampled
//!   hot keys): it lists its live sessions and keeps the counts of those that moved on;
//! - [`Stats`]: the process-lifetime registry of the workers' cells and the slow log, merged when read
//!   ([`Stats::snapshot`]) by `RKPROXY STATS`, `INFO proxy` and `/metrics`.
//!
//! `Stats` lives as long as the process and is carried across configuration reloads (the configuration
//! snapshot in `ProxyState` is swapped, the counts are not); labels are the names in force when a command ran.
//! Label sets stay bounded: pool and tenant names come from the configuration, command names from the command
//! table (`unknown` for anything else), Kafka topics only when the pool serves them.
//!
//! The parts: this file holds what is counted (per command, per pool and tenant, per topic, per node) and a
//! worker's table; `live.rs` a session's live counts, `session.rs` the [`SessionStats`] a session counts
//! through, `registry.rs` the process-lifetime [`Stats`], `tests.rs` their tests.

pub mod clients;
mod histogram;
pub mod keys;
mod live;
mod registry;
pub mod report;
mod session;
pub mod slowlog;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use clients::ClientEntry;
pub use histogram::{Histogram, Observation};
use keys::HotKeys;
use live::{LiveCounts, SessionLive};
pub use registry::Stats;
pub use session::SessionStats;

/// The label of commands the command table does not know.
pub const UNKNOWN_COMMAND: &str = "unknown";
/// The tenant label of clients when no tenants are configured.
pub const NO_TENANT: &str = "default";
/// The tenant label of clients that have not authenticated yet.
pub const UNAUTHENTICATED: &str = "(unauthenticated)";

/// Why a request failed, as counted (`rkproxy_errors_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Refused by the proxy: unknown command, wrong arity, missing rights, a command it does not serve.
    Refused,
    /// The backend was unavailable or its connection broke.
    Backend,
    /// The backend made no progress within the timeout.
    Timeout,
    /// A tenant's traffic or size limit.
    Limit,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 4] = [
        ErrorKind::Refused,
        ErrorKind::Backend,
        ErrorKind::Timeout,
        ErrorKind::Limit,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::Backend => "backend",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Limit => "limit",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One command's counts (per pool and tenant).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandCounts {
    pub calls: u64,
    /// Request bytes, as the client sent them.
    pub bytes_in: u64,
    /// Time in the proxy of this command's requests, as `Traffic::latency` times them: each request gets the
    /// time of the reply-queue entry that carried it (a batch's time for each request of the batch).
    pub latency: Histogram,
}

impl CommandCounts {
    fn merge(&mut self, other: &CommandCounts) {
        self.calls += other.calls;
        self.bytes_in += other.bytes_in;
        self.latency.merge(&other.latency);
    }

    fn is_empty(&self) -> bool {
        self.calls == 0 && self.latency.is_empty()
    }
}

/// A (pool, tenant) pair's traffic: errors by kind, bytes, latency.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    pub errors: [u64; 4],
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Time in the proxy: from the read that framed a request until its reply is handed to the client's
    /// socket (requests the proxy answers itself are not timed).
    pub latency: Histogram,
    /// Time at the backend: from a request's dispatch to the backend until its reply is in the proxy (the
    /// same requests as `latency`; the difference is the proxy's own share).
    pub backend: Histogram,
    /// Requests sent on the big-request lane.
    pub lane_requests: u64,
    /// Of those, how many the lane refused as busy.
    pub lane_busy: u64,
}

impl Traffic {
    fn merge(&mut self, other: &Traffic) {
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors.iter()) {
            *mine += theirs;
        }
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.latency.merge(&other.latency);
        self.backend.merge(&other.backend);
        self.lane_requests += other.lane_requests;
        self.lane_busy += other.lane_busy;
    }

    fn is_empty(&self) -> bool {
        self.errors.iter().all(|&n| n == 0)
            && self.bytes_in == 0
            && self.bytes_out == 0
            && self.latency.is_empty()
            && self.backend.is_empty()
            && self.lane_requests == 0
            && self.lane_busy == 0
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn error(&self, kind: ErrorKind) -> u64 {
        self.errors[kind.index()]
    }
}

/// KPUSH/KPOP counts of one topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicCounts {
    pub pushes: u64,
    /// Request bytes of KPUSH.
    pub push_bytes: u64,
    pub pops: u64,
    /// Reply bytes of KPOP.
    pub pop_bytes: u64,
}

impl TopicCounts {
    fn merge(&mut self, other: &TopicCounts) {
        self.pushes += other.pushes;
        self.push_bytes += other.push_bytes;
        self.pops += other.pops;
        self.pop_bytes += other.pop_bytes;
    }
}

/// Requests one backend node answered, those it failed, and the backend round trip of those it answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeCounts {
    pub requests: u64,
    pub failures: u64,
    /// From dispatch to the node until the reply is in the proxy (a request split over several nodes counts
    /// its whole time at each).
    pub latency: Histogram,
    /// Requests sent on the node's big-request lane.
    pub lane_requests: u64,
    /// Of those, how many the lane refused as busy.
    pub lane_busy: u64,
}

impl NodeCounts {
    pub(crate) fn merge(&mut self, other: &NodeCounts) {
        self.requests += other.requests;
        self.failures += other.failures;
        self.latency.merge(&other.latency);
        self.lane_requests += other.lane_requests;
        self.lane_busy += other.lane_busy;
    }

    fn is_empty(&self) -> bool {
        self.requests == 0
            && self.failures == 0
            && self.latency.is_empty()
            && self.lane_requests == 0
            && self.lane_busy == 0
    }
}

/// (pool, node address).
pub type PoolNode = (Arc<str>, Arc<str>);
/// (pool, tenant).
pub type PoolTenant = (Arc<str>, Arc<str>);
/// (pool, tenant, command).
pub type CommandKey = (Arc<str>, Arc<str>, &'static str);
/// (pool, topic, tenant).
pub type TopicKey = (Arc<str>, Arc<str>, Arc<str>);

/// Counts of every session of one worker thread (and of sessions that ended), merged when read.
#[derive(Debug, Default, Clone)]
pub struct WorkerStats {
    pub commands: HashMap<CommandKey, CommandCounts>,
    pub traffic: HashMap<PoolTenant, Traffic>,
    pub topics: HashMap<TopicKey, TopicCounts>,
    pub nodes: HashMap<PoolNode, NodeCounts>,
}

impl WorkerStats {
    /// Adds what a live session counted so far.
    fn add_live(&mut self, live: &SessionLive) {
        let LiveCounts {
            commands,
            traffic,
            nodes,
        } = live.read();
        let (pool, tenant) = (&live.pool, &live.tenant);
        for (name, counts) in commands {
            let key = (Arc::clone(pool), Arc::clone(tenant), name);
            self.commands.entry(key).or_default().merge(&counts);
        }
        if !traffic.is_empty() {
            let key = (Arc::clone(pool), Arc::clone(tenant));
            self.traffic.entry(key).or_default().merge(&traffic);
        }
        for (node, counts) in nodes {
            let key = (Arc::clone(pool), node);
            self.nodes.entry(key).or_default().merge(&counts);
        }
    }

    fn merge(&mut self, other: &WorkerStats) {
        for (key, counts) in &other.commands {
            self.commands.entry(key.clone()).or_default().merge(counts);
        }
        for (key, traffic) in &other.traffic {
            self.traffic.entry(key.clone()).or_default().merge(traffic);
        }
        for (key, counts) in &other.topics {
            self.topics.entry(key.clone()).or_default().merge(counts);
        }
        for (key, counts) in &other.nodes {
            self.nodes.entry(key.clone()).or_default().merge(counts);
        }
    }
}

/// A map whose keys come from the proxy itself (ids, configured names), so it needs no defence against
/// chosen collisions: foldhash, several times cheaper than the default SipHash.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One worker's counts: its live sessions' (each counting into its own [`SessionLive`]) and what sessions
/// counted before they ended, changed labels or ran out of slots (only that worker's sessions write to it).
#[derive(Debug, Default)]
pub struct WorkerTable {
    /// The counts of this worker's sessions, read in place by readers.
    live: FastMap<u64, Arc<SessionLive>>,
    /// The id of the next `live` entry.
    next_live: u64,
    /// Counts of sessions no longer in `live`, and of Kafka topics (added at once: rare enough).
    retired: WorkerStats,
    /// The keys this worker's sessions sampled.
    hot: HotKeys,
    /// This worker's sessions, by client id.
    clients: FastMap<u64, ClientEntry>,
}

impl WorkerTable {
    /// Everything counted: the retired counts and every live session's.
    fn to_stats(&self) -> WorkerStats {
        let mut stats = self.retired.clone();
        for live in self.live.values() {
            stats.add_live(live);
        }
        stats
    }

    /// Starts reading a session's live counts; the id retires them.
    fn add_live(&mut self, live: Arc<SessionLive>) -> u64 {
        let id = self.next_live;
        self.next_live += 1;
        self.live.insert(id, live);
        id
    }

    /// Moves a live session's counts into the retired ones (under the same lock as readers take, so a reader
    /// sees them in one place or the other, never both).
    fn retire(&mut self, id: u64) {
        if let Some(live) = self.live.remove(&id) {
            self.retired.add_live(&live);
        }
    }
}

/// One worker's table behind its (uncontended) lock.
pub type WorkerCell = Arc<Mutex<WorkerTable>>;

fn lock<T>(cell: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain counters behind: still fine to read and add to.
    cell.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
