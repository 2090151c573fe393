//! One session's counts ([`SessionStats`]): plain fields the session adds to without a lock, flushed into its
//! worker's table before replies are written (and when the session ends or changes labels).

use std::sync::Arc;
use std::time::Duration;

use super::clients::{ClientEntry, ClientNow};
use super::keys::{SampledKeys, HOT_SAMPLE_EVERY, SAMPLED_PER_FLUSH};
use super::{lock, CommandCounts, ErrorKind, NodeCounts, Stats, TopicCounts, Traffic, WorkerCell};

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

    /// The session's counts for command `name`, added if new. Inlined: it runs for every request, and its usual
    /// case is a comparison.
    #[inline]
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

    #[inline(never)]
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
            counts.clear();
        }
        if !self.traffic.is_empty() {
            let key = || (Arc::clone(pool), Arc::clone(tenant));
            if let Some(total) = worker.traffic.row(&mut self.traffic_row, key) {
                total.merge(&self.traffic);
            }
            self.traffic.clear();
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
            counts.clear();
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
