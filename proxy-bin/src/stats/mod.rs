//! Counting what the proxy does, per tenant, pool and command, at a cost no benchmark can see.
//!
//! Three levels, so that nothing on the per-command path is shared between threads:
//! - [`SessionStats`]: each session counts into plain fields of its own (no lock, no atomic);
//! - [`WorkerStats`]: one per worker thread (accept loop), behind a mutex that only that thread's sessions take,
//!   once per write of replies, when they flush their counts into it (so the lock is never contended on the
//!   hot path; a reader takes it briefly);
//! - [`Stats`]: the process-lifetime registry of the workers' cells and the slow log, merged when read
//!   ([`Stats::snapshot`]) by `RKPROXY STATS`, `INFO proxy` and `/metrics`.
//!
//! `Stats` lives as long as the process and is carried across configuration reloads (the configuration
//! snapshot in `ProxyState` is swapped, the counts are not); labels are the names in force when a command ran.
//! Label sets stay bounded: pool and tenant names come from the configuration, command names from the command
//! table (`unknown` for anything else), Kafka topics only when the pool serves them.

pub mod clients;
mod histogram;
pub mod keys;
pub mod report;
pub mod slowlog;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use clients::{ClientEntry, ClientNow, ClientView, KillFilter};
pub use histogram::Histogram;
use keys::{
    BigKey, BigKeys, BigSeen, HotKey, HotKeys, SampledKeys, HOT_SAMPLE_EVERY, SAMPLED_PER_FLUSH,
};
use slowlog::SlowLog;

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

/// Rows of one kind in a worker's table: appended, never removed, so a session keeps a row's index after its
/// first flush and later flushes find it without hashing.
#[derive(Debug)]
struct Rows<K, V> {
    rows: Vec<(K, V)>,
    index: HashMap<K, usize>,
}

impl<K, V> Default for Rows<K, V> {
    fn default() -> Self {
        Rows {
            rows: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V: Default> Rows<K, V> {
    /// The row of `key` (`known`: its index from an earlier flush), created if new.
    fn row(&mut self, known: &mut Option<usize>, key: impl FnOnce() -> K) -> Option<&mut V> {
        let index = match *known {
            Some(index) => index,
            None => {
                let key = key();
                let next = self.rows.len();
                let index = *self.index.entry(key.clone()).or_insert(next);
                if index == next {
                    self.rows.push((key, V::default()));
                }
                *known = Some(index);
                index
            }
        };
        self.rows.get_mut(index).map(|(_, value)| value)
    }
}

/// A map whose keys come from the proxy itself (ids, configured names), so it needs no defence against
/// chosen collisions: foldhash, several times cheaper than the default SipHash.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One worker's counts, as its sessions flush them (only that worker's sessions write to it).
#[derive(Debug, Default)]
pub struct WorkerTable {
    commands: Rows<CommandKey, CommandCounts>,
    traffic: Rows<PoolTenant, Traffic>,
    nodes: Rows<PoolNode, NodeCounts>,
    /// Kafka topics, rare enough to be looked up by key.
    topics: HashMap<TopicKey, TopicCounts>,
    /// The keys this worker's sessions sampled.
    hot: HotKeys,
    /// This worker's sessions, by client id (looked up at every flush: a fast hash, ids are the proxy's own).
    clients: FastMap<u64, ClientEntry>,
}

impl WorkerTable {
    fn to_stats(&self) -> WorkerStats {
        WorkerStats {
            commands: self.commands.rows.iter().cloned().collect(),
            traffic: self.traffic.rows.iter().cloned().collect(),
            nodes: self.nodes.rows.iter().cloned().collect(),
            topics: self.topics.clone(),
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

/// The process-lifetime registry: every worker's counts and the slow log.
#[derive(Debug)]
pub struct Stats {
    enabled: bool,
    workers: Mutex<BTreeMap<usize, WorkerCell>>,
    /// Counts kept by tasks off the sessions' hot path: Kafka reply bytes (by the tasks that run Kafka
    /// commands) and big-lane busy refusals (by the tasks that watch lane replies).
    kafka_replies: Mutex<WorkerStats>,
    /// Keys of big requests and replies (rare: each is recorded at once).
    big_keys: Mutex<BigKeys>,
    slowlog: SlowLog,
}

impl Stats {
    /// A registry; with `enabled` false sessions count nothing (the slow log then stays empty too).
    pub fn new(enabled: bool, slower_than_us: i64, slowlog_max_len: usize) -> Arc<Stats> {
        Arc::new(Stats {
            enabled,
            workers: Mutex::new(BTreeMap::new()),
            kafka_replies: Mutex::new(WorkerStats::default()),
            big_keys: Mutex::new(BigKeys::default()),
            slowlog: SlowLog::new(slower_than_us, slowlog_max_len),
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Worker `index`'s cell, created on first use.
    pub fn worker(&self, index: usize) -> WorkerCell {
        let mut workers = self
            .workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(workers.entry(index).or_default())
    }

    pub fn slowlog(&self) -> &SlowLog {
        &self.slowlog
    }

    /// Adds a KPOP reply's bytes (called from the task that ran it).
    pub fn kafka_reply(&self, key: TopicKey, bytes: usize) {
        let mut replies = lock(&self.kafka_replies);
        let counts = replies.topics.entry(key).or_default();
        counts.pop_bytes += bytes as u64;
    }

    /// A big request that `pool`'s lane of `node` refused as busy, sent by a client of `tenant`.
    pub fn lane_busy(&self, pool: &Arc<str>, tenant: &Arc<str>, node: &Arc<str>) {
        if !self.enabled {
            return;
        }
        let mut rare = lock(&self.kafka_replies);
        let traffic = rare
            .traffic
            .entry((Arc::clone(pool), Arc::clone(tenant)))
            .or_default();
        traffic.lane_busy += 1;
        let node = rare
            .nodes
            .entry((Arc::clone(pool), Arc::clone(node)))
            .or_default();
        node.lane_busy += 1;
    }

    /// A big request or reply (at least the big-request threshold).
    pub fn big_key(&self, seen: BigSeen<'_>) {
        if self.enabled {
            lock(&self.big_keys).record(seen);
        }
    }

    /// The `per_tenant` biggest keys of each visible tenant.
    pub fn big_keys(&self, visible: &dyn Fn(&str) -> bool, per_tenant: usize) -> Vec<BigKey> {
        lock(&self.big_keys).top(visible, per_tenant)
    }

    /// The `per_tenant` most requested keys of each visible tenant, merged over the workers.
    pub fn hot_keys(&self, visible: &dyn Fn(&str) -> bool, per_tenant: usize) -> Vec<HotKey> {
        let cells = self.cells();
        let guards: Vec<MutexGuard<'_, WorkerTable>> =
            cells.iter().map(|cell| lock(cell)).collect();
        let workers: Vec<&HotKeys> = guards.iter().map(|table| &table.hot).collect();
        keys::merge_hot_keys(&workers, visible, per_tenant)
    }

    /// Every session's entry of the client table that `visible` accepts (by tenant), by id.
    pub fn clients(&self, visible: &dyn Fn(&str) -> bool) -> Vec<ClientView> {
        let mut clients: Vec<ClientView> = Vec::new();
        for cell in self.cells() {
            let table = lock(&cell);
            clients.extend(
                table
                    .clients
                    .values()
                    .filter(|entry| entry.is_live() && visible(&entry.tenant))
                    .map(ClientEntry::view),
            );
        }
        clients.sort_by_key(|client| client.id);
        clients
    }

    /// Shuts down the sessions that `filter` matches among those `visible` accepts; how many.
    pub fn kill_clients(&self, filter: &KillFilter, visible: &dyn Fn(&str) -> bool) -> usize {
        let mut killed = 0;
        for cell in self.cells() {
            let mut table = lock(&cell);
            for entry in table.clients.values_mut() {
                if visible(&entry.tenant) && filter.matches(entry) {
                    entry.kill();
                    killed += 1;
                }
            }
        }
        killed
    }

    fn cells(&self) -> Vec<WorkerCell> {
        self.workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Every worker's counts, merged.
    pub fn snapshot(&self) -> WorkerStats {
        let cells = self.cells();
        let mut all = lock(&self.kafka_replies).clone();
        for cell in cells {
            let worker = lock(&cell).to_stats();
            all.merge(&worker);
        }
        all
    }
}

/// One session's counts since its last flush, kept in plain fields; flushed into its worker's cell.
#[derive(Debug)]
pub struct SessionStats {
    enabled: bool,
    worker: WorkerCell,
    pool: Arc<str>,
    tenant: Arc<str>,
    /// A session runs few distinct commands: a short list beats a map. Each entry keeps its row in the
    /// worker's table once known (until the labels change).
    commands: Vec<(&'static str, CommandCounts, Option<usize>)>,
    /// The index in `commands` of the command counted last.
    last_command_row: usize,
    traffic: Traffic,
    traffic_row: Option<usize>,
    topics: Vec<(Arc<str>, TopicCounts)>,
    nodes: Vec<(Arc<str>, NodeCounts, Option<usize>)>,
    /// Keyed requests left until the next one is sampled for the hot keys.
    hot_countdown: u32,
    /// Keys sampled since the last flush (at most [`SAMPLED_PER_FLUSH`]).
    sampled: SampledKeys,
    /// Requests and replies of at least this many bytes are recorded as big keys.
    big_threshold: usize,
    /// The session's id in its worker's client table, once registered.
    client_id: Option<u64>,
    /// The command table name of the latest request counted.
    last_command: &'static str,
    dirty: bool,
}

impl SessionStats {
    pub fn new(stats: &Stats, worker: usize, pool: &str, tenant: &str) -> SessionStats {
        SessionStats {
            enabled: stats.enabled,
            worker: stats.worker(worker),
            pool: Arc::from(pool),
            tenant: Arc::from(tenant),
            commands: Vec::new(),
            last_command_row: 0,
            traffic: Traffic::default(),
            traffic_row: None,
            topics: Vec::new(),
            nodes: Vec::new(),
            hot_countdown: HOT_SAMPLE_EVERY,
            sampled: SampledKeys::default(),
            big_threshold: usize::MAX,
            client_id: None,
            last_command: "NULL",
            dirty: false,
        }
    }

    /// Sets the size from which requests and replies are recorded as big keys.
    pub fn with_big_threshold(mut self, bytes: usize) -> SessionStats {
        self.big_threshold = bytes;
        self
    }

    pub fn big_threshold(&self) -> usize {
        self.big_threshold
    }

    /// Adds the session to its worker's client table (until it ends), with the session's current labels.
    pub fn register(&mut self, id: u64, stream: &tokio::net::TcpStream) {
        let entry = ClientEntry::new(id, stream, &self.tenant, &self.pool);
        lock(&self.worker).clients.insert(id, entry);
        self.client_id = Some(id);
    }

    pub fn pool(&self) -> &Arc<str> {
        &self.pool
    }

    /// Counts down one keyed request; true for the one in [`HOT_SAMPLE_EVERY`] whose key is sampled.
    #[inline]
    pub fn sample_hot_key(&mut self) -> bool {
        if !self.enabled {
            return false;
        }
        self.hot_countdown -= 1;
        if self.hot_countdown > 0 {
            return false;
        }
        self.hot_countdown = HOT_SAMPLE_EVERY;
        self.sampled.len() < SAMPLED_PER_FLUSH
    }

    /// A sampled request's key (see [`SessionStats::sample_hot_key`]).
    pub fn hot_key(&mut self, key: &[u8]) {
        self.dirty = true;
        self.sampled.push(key);
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn tenant(&self) -> &Arc<str> {
        &self.tenant
    }

    /// The session moved to another pool or authenticated: earlier counts keep their labels.
    pub fn relabel(&mut self, pool: &str, tenant: &str) {
        if *self.pool == *pool && *self.tenant == *tenant {
            return;
        }
        self.flush();
        // Rows are per labels: the new labels find theirs on the next flush.
        self.commands.clear();
        self.nodes.clear();
        self.traffic_row = None;
        self.pool = Arc::from(pool);
        self.tenant = Arc::from(tenant);
        if let Some(id) = self.client_id {
            if let Some(entry) = lock(&self.worker).clients.get_mut(&id) {
                entry.tenant = Arc::clone(&self.tenant);
                entry.pool = Arc::clone(&self.pool);
            }
        }
    }

    /// One request of command `name` (a command table name, or [`UNKNOWN_COMMAND`]).
    #[inline]
    pub fn command(&mut self, name: &'static str, request_bytes: usize) {
        if !self.enabled {
            return;
        }
        self.dirty = true;
        self.last_command = name;
        self.traffic.bytes_in += request_bytes as u64;
        let counts = self.command_counts(name);
        counts.calls += 1;
        counts.bytes_in += request_bytes as u64;
    }

    /// The command table name of the latest request counted (`"NULL"` before the first).
    pub fn last_command(&self) -> &'static str {
        self.last_command
    }

    /// `requests` of command `name` answered after `in_proxy` in the proxy (see [`CommandCounts::latency`]).
    #[inline]
    pub fn command_latency(&mut self, name: &'static str, in_proxy: Duration, requests: u64) {
        if !self.enabled {
            return;
        }
        self.dirty = true;
        self.command_counts(name).latency.record(in_proxy, requests);
    }

    /// The session's counts for command `name`, added if new.
    fn command_counts(&mut self, name: &'static str) -> &mut CommandCounts {
        // A session mostly repeats its latest command: that row is tried first.
        let last = self.last_command_row;
        let index = match self.commands.get(last) {
            Some((known, _, _)) if std::ptr::eq(*known, name) => last,
            _ => self.find_or_add_command(name),
        };
        self.last_command_row = index;
        &mut self.commands[index].1
    }

    fn find_or_add_command(&mut self, name: &'static str) -> usize {
        // Names are 'static table entries: the same command is the same pointer (compared first, so a session
        // with several commands compares no bytes); equal text is the same command too.
        let found = self
            .commands
            .iter()
            .position(|(known, _, _)| std::ptr::eq(*known, name))
            .or_else(|| {
                self.commands
                    .iter()
                    .position(|(known, _, _)| *known == name)
            });
        found.unwrap_or_else(|| {
            self.commands.push((name, CommandCounts::default(), None));
            self.commands.len() - 1
        })
    }

    pub fn error(&mut self, kind: ErrorKind, times: u64) {
        if !self.enabled {
            return;
        }
        self.dirty = true;
        self.traffic.errors[kind.index()] += times;
    }

    pub fn bytes_out(&mut self, bytes: usize) {
        if !self.enabled || bytes == 0 {
            return;
        }
        self.dirty = true;
        self.traffic.bytes_out += bytes as u64;
    }

    /// `requests` answered together: `in_proxy` from their read to their reply's write, `at_backend` from
    /// their dispatch to their reply.
    pub fn latency(&mut self, in_proxy: Duration, at_backend: Duration, requests: u64) {
        if !self.enabled {
            return;
        }
        self.dirty = true;
        self.traffic.latency.record(in_proxy, requests);
        self.traffic.backend.record(at_backend, requests);
    }

    /// A request sent on the big-request lane of `node`.
    pub fn lane_request(&mut self, node: &Arc<str>) {
        if !self.enabled {
            return;
        }
        self.traffic.lane_requests += 1;
        self.node_counts(node).lane_requests += 1;
    }

    /// `requests` answered by backend node `node` (`took`: their round trip there), of which `failures`
    /// failed there.
    pub fn node(&mut self, node: &Arc<str>, requests: u64, failures: u64, took: Option<Duration>) {
        if !self.enabled {
            return;
        }
        let counts = self.node_counts(node);
        counts.requests += requests;
        counts.failures += failures;
        if let Some(took) = took {
            counts.latency.record(took, requests);
        }
    }

    /// The session's counts for `node`, added if new (marks the session's counts changed).
    fn node_counts(&mut self, node: &Arc<str>) -> &mut NodeCounts {
        self.dirty = true;
        let index = match self
            .nodes
            .iter()
            .position(|(known, _, _)| Arc::ptr_eq(known, node) || **known == **node)
        {
            Some(index) => index,
            None => {
                self.nodes
                    .push((Arc::clone(node), NodeCounts::default(), None));
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[index].1
    }

    /// A KPUSH (`push`) or KPOP to a topic the pool serves.
    pub fn kafka(&mut self, topic: &str, push: bool, request_bytes: usize) {
        if !self.enabled {
            return;
        }
        self.dirty = true;
        let index = match self.topics.iter().position(|(t, _)| **t == *topic) {
            Some(index) => index,
            None => {
                self.topics.push((Arc::from(topic), TopicCounts::default()));
                self.topics.len() - 1
            }
        };
        if let Some((_, counts)) = self.topics.get_mut(index) {
            if push {
                counts.pushes += 1;
                counts.push_bytes += request_bytes as u64;
            } else {
                counts.pops += 1;
            }
        }
    }

    /// Moves the counts into the worker's cell (when the session ends, or to read its own counts).
    pub fn flush(&mut self) {
        self.flush_and_publish(None);
    }

    /// Moves the counts into the worker's cell and, with `now`, brings the session's client-table entry up to
    /// date (before replies are written; only when requests were counted since the last flush).
    pub fn flush_and_publish(&mut self, now: Option<ClientNow<'_>>) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let (pool, tenant) = (&self.pool, &self.tenant);
        let mut worker = lock(&self.worker);
        if let (Some(now), Some(id)) = (now, self.client_id) {
            if let Some(entry) = worker.clients.get_mut(&id) {
                entry.update(now, self.last_command);
            }
        }
        for (name, counts, row) in &mut self.commands {
            if counts.is_empty() {
                continue;
            }
            let key = || (Arc::clone(pool), Arc::clone(tenant), *name);
            if let Some(total) = worker.commands.row(row, key) {
                total.merge(counts);
            }
            *counts = CommandCounts::default();
        }
        if !self.traffic.is_empty() {
            let key = || (Arc::clone(pool), Arc::clone(tenant));
            if let Some(total) = worker.traffic.row(&mut self.traffic_row, key) {
                total.merge(&self.traffic);
            }
            self.traffic = Traffic::default();
        }
        for (topic, counts) in self.topics.drain(..) {
            let key = (Arc::clone(pool), topic, Arc::clone(tenant));
            worker.topics.entry(key).or_default().merge(&counts);
        }
        worker.hot.add_sampled(tenant, pool, &mut self.sampled);
        for (node, counts, row) in &mut self.nodes {
            if counts.is_empty() {
                continue;
            }
            let key = || (Arc::clone(pool), Arc::clone(node));
            if let Some(total) = worker.nodes.row(row, key) {
                total.merge(counts);
            }
            *counts = NodeCounts::default();
        }
    }
}

impl Drop for SessionStats {
    fn drop(&mut self) {
        self.flush();
        if let Some(id) = self.client_id {
            lock(&self.worker).clients.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_flush_into_their_worker_and_reads_merge_workers() {
        let stats = Stats::new(true, 10_000, 128);
        let mut one = SessionStats::new(&stats, 0, "main", "shop");
        let mut two = SessionStats::new(&stats, 1, "main", "shop");
        one.command("get", 10);
        one.command("get", 10);
        one.error(ErrorKind::Limit, 1);
        two.command("get", 5);
        two.bytes_out(7);
        // Nothing is visible before a flush.
        assert!(stats.snapshot().commands.is_empty());
        one.flush();
        drop(two);
        let all = stats.snapshot();
        let key: CommandKey = (Arc::from("main"), Arc::from("shop"), "get");
        assert_eq!(
            all.commands.get(&key),
            Some(&CommandCounts {
                calls: 3,
                bytes_in: 25,
                latency: Histogram::default(),
            })
        );
        let traffic = &all.traffic[&(Arc::from("main"), Arc::from("shop"))];
        assert_eq!(traffic.error(ErrorKind::Limit), 1);
        assert_eq!((traffic.bytes_in, traffic.bytes_out), (25, 7));
    }

    #[test]
    fn command_latency_is_kept_per_command_and_flushed_after_its_calls() {
        let stats = Stats::new(true, 10_000, 128);
        let mut session = SessionStats::new(&stats, 0, "main", "shop");
        session.command("get", 10);
        session.command("set", 10);
        session.flush();
        // Replies come after the calls were flushed: their times still reach the worker's table.
        session.command_latency("get", Duration::from_micros(80), 1);
        session.command_latency("set", Duration::from_millis(20), 1);
        drop(session);
        let all = stats.snapshot();
        let key =
            |name: &'static str| -> CommandKey { (Arc::from("main"), Arc::from("shop"), name) };
        let (get, set) = (&all.commands[&key("get")], &all.commands[&key("set")]);
        assert_eq!((get.calls, get.latency.count()), (1, 1));
        assert_eq!(get.latency.quantile_upper_us(1.0), Some(100));
        assert_eq!(set.latency.quantile_upper_us(1.0), Some(25_000));
    }

    #[test]
    fn relabelling_keeps_earlier_counts_under_the_old_labels() {
        let stats = Stats::new(true, 10_000, 128);
        let mut session = SessionStats::new(&stats, 0, "main", UNAUTHENTICATED);
        session.command("auth", 20);
        session.relabel("cache", "shop");
        session.command("get", 10);
        drop(session);
        let all = stats.snapshot();
        assert_eq!(all.commands.len(), 2);
        assert!(all.commands.contains_key(&(
            Arc::from("main"),
            Arc::from(UNAUTHENTICATED),
            "auth"
        )));
        assert!(all
            .commands
            .contains_key(&(Arc::from("cache"), Arc::from("shop"), "get")));
    }

    #[test]
    fn disabled_stats_count_nothing() {
        let stats = Stats::new(false, 10_000, 128);
        let mut session = SessionStats::new(&stats, 0, "main", "shop");
        session.command("get", 10);
        session.latency(Duration::from_millis(2), Duration::from_millis(1), 1);
        drop(session);
        assert!(stats.snapshot().commands.is_empty());
    }
}
