//! What a session counts through ([`SessionStats`]): its live counts ([`SessionLive`], read in place by
//! readers), its entry in its worker's client table, and the few counts that go to the worker at once.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::clients::{ClientEntry, ClientNow};
use super::keys::HOT_SAMPLE_EVERY;
use super::live::{LiveCommand, LiveNode, SessionLive};
use super::{lock, ErrorKind, Observation, Stats, WorkerCell};
use crate::clock::nanos_of;

/// How stale the `last_active` that CLIENT LIST reads may be.
const ACTIVE_PRECISION: Duration = Duration::from_millis(100);

/// One session's way into the stats: counts go to its [`SessionLive`] (no lock); its worker's table is locked
/// only when the session starts, ends, changes labels or runs out of slots, and for Kafka topics and sampled
/// hot keys.
#[derive(Debug)]
pub struct SessionStats {
    enabled: bool,
    worker: WorkerCell,
    live: Arc<SessionLive>,
    /// `live`'s id in the worker's table (`None` while the stats are off: nothing to read there).
    live_id: Option<u64>,
    /// The slot of the command counted last (tried first).
    command_hint: usize,
    /// The slot of the node counted last (tried first).
    node_hint: usize,
    /// Keyed requests left until the next one is sampled for the hot keys.
    hot_countdown: u32,
    /// Requests and replies of at least this many bytes are recorded as big keys.
    big_threshold: usize,
    /// The session's id in its worker's client table, once registered.
    client_id: Option<u64>,
    /// When the client-table entry was made: `last_active` is published as the time since.
    registered_at: Instant,
    /// `last_active` is published again once it is at least this late ([`ACTIVE_PRECISION`] after the last
    /// published: CLIENT LIST shows whole seconds, and the time arithmetic costs more than the rest of `publish`).
    publish_active_from: Instant,
    /// The client name published last (a session keeps one `Bytes` per CLIENT SETNAME: compared by pointer).
    published_name: Option<Bytes>,
    /// Requests of the latest command counted, not yet added to its live counts.
    run: CommandRun,
}

/// Requests of one command counted in a row by a session and added to the command's live counts together (at
/// the end of the read pass that framed them, see [`SessionStats::publish_commands`]): a pipeline of one command
/// costs the live counts one update, not one per request.
#[derive(Debug)]
struct CommandRun {
    /// The command table name of the latest request counted (`"NULL"` before the first).
    name: &'static str,
    calls: u64,
    bytes: u64,
}

impl SessionStats {
    pub fn new(stats: &Stats, worker: usize, pool: &str, tenant: &str) -> SessionStats {
        let worker = stats.worker(worker);
        let live = Arc::new(SessionLive::new(Arc::from(pool), Arc::from(tenant)));
        let live_id = stats
            .enabled
            .then(|| lock(&worker).add_live(Arc::clone(&live)));
        SessionStats {
            enabled: stats.enabled,
            worker,
            live,
            live_id,
            command_hint: 0,
            node_hint: 0,
            hot_countdown: HOT_SAMPLE_EVERY,
            big_threshold: usize::MAX,
            client_id: None,
            registered_at: Instant::now(),
            publish_active_from: Instant::now(),
            published_name: None,
            run: CommandRun {
                name: "NULL",
                calls: 0,
                bytes: 0,
            },
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
        let entry = ClientEntry::new(id, stream, &self.live);
        self.registered_at = entry.started;
        self.publish_active_from = entry.started;
        lock(&self.worker).clients.insert(id, entry);
        self.client_id = Some(id);
    }

    pub fn pool(&self) -> &Arc<str> {
        &self.live.pool
    }

    pub fn tenant(&self) -> &Arc<str> {
        &self.live.tenant
    }

    pub fn enabled(&self) -> bool {
        self.enabled
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
        true
    }

    /// A sampled request's key (see [`SessionStats::sample_hot_key`]), added to the worker's sketch at once.
    pub fn hot_key(&mut self, key: &[u8]) {
        let (tenant, pool) = (&self.live.tenant, &self.live.pool);
        lock(&self.worker).hot.add_key(tenant, pool, key);
    }

    /// The session moved to another pool or authenticated: earlier counts keep their labels.
    pub fn relabel(&mut self, pool: &str, tenant: &str) {
        if *self.live.pool == *pool && *self.live.tenant == *tenant {
            return;
        }
        self.start_over(Arc::from(pool), Arc::from(tenant));
    }

    /// Retires the live counts into the worker's table and counts on into a fresh set, under `pool` and
    /// `tenant` (new labels, or the same ones when the slots ran out).
    #[inline(never)]
    fn start_over(&mut self, pool: Arc<str>, tenant: Arc<str>) {
        // Requests counted before count under the labels they were made under.
        self.publish_commands();
        let fresh = Arc::new(SessionLive::new(pool, tenant));
        fresh.continue_client(&self.live);
        let mut worker = lock(&self.worker);
        if let Some(id) = self.live_id.take() {
            worker.retire(id);
            self.live_id = Some(worker.add_live(Arc::clone(&fresh)));
        }
        if let Some(entry) = self.client_id.and_then(|id| worker.clients.get_mut(&id)) {
            entry.follow(&fresh);
        }
        drop(worker);
        self.live = fresh;
        self.command_hint = 0;
        self.node_hint = 0;
    }

    /// Starts over under the same labels (every slot of one kind is taken).
    fn start_over_here(&mut self) {
        let (pool, tenant) = (Arc::clone(&self.live.pool), Arc::clone(&self.live.tenant));
        self.start_over(pool, tenant);
    }

    /// One request of command `name` (a command table name, or [`UNKNOWN_COMMAND`](super::UNKNOWN_COMMAND)),
    /// added to the command's live counts by [`SessionStats::publish_commands`]. Runs for every request: the usual
    /// case is one comparison and two additions.
    #[inline]
    pub fn command(&mut self, name: &'static str, request_bytes: usize) {
        if !self.enabled {
            return;
        }
        if !std::ptr::eq(self.run.name, name) {
            self.start_run(name);
        }
        self.run.calls += 1;
        self.run.bytes += request_bytes as u64;
    }

    /// Another command than the latest: the latest one's run is published first.
    #[inline(never)]
    fn start_run(&mut self, name: &'static str) {
        self.publish_commands();
        self.run.name = name;
    }

    /// Adds the requests counted since the last call to their command's live counts, where readers see them.
    /// A session calls it at the end of each read pass, before it answers a request about the stats, and when
    /// its labels change; dropping the stats publishes too.
    #[inline]
    pub fn publish_commands(&mut self) {
        if self.run.calls == 0 {
            return;
        }
        let CommandRun { name, calls, bytes } = self.run;
        self.run.calls = 0;
        self.run.bytes = 0;
        self.count_command(name, |command| {
            command.calls.add(calls);
            command.bytes_in.add(bytes);
        });
        self.live.set_last_command(self.command_hint);
    }

    /// The command table name of the latest request counted (`"NULL"` before the first).
    pub fn last_command(&self) -> &'static str {
        self.run.name
    }

    /// `requests` of command `name` answered after `in_proxy` in the proxy (see
    /// [`CommandCounts::latency`](super::CommandCounts::latency); the pool and tenant's time in the proxy is
    /// the sum of its commands').
    #[inline]
    pub fn command_latency(&mut self, name: &'static str, in_proxy: Observation, requests: u64) {
        if !self.enabled {
            return;
        }
        self.count_command(name, |command| command.latency.record(in_proxy, requests));
    }

    /// Counts into command `name`'s slot, starting over first when the slots ran out.
    #[inline(always)]
    fn count_command(&mut self, name: &'static str, count: impl Fn(&LiveCommand)) {
        match self.live.command(name, &mut self.command_hint) {
            Some(command) => count(command),
            None => self.count_command_after_start_over(name, &count),
        }
    }

    #[cold]
    #[inline(never)]
    fn count_command_after_start_over(&mut self, name: &'static str, count: &dyn Fn(&LiveCommand)) {
        self.start_over_here();
        if let Some(command) = self.live.command(name, &mut self.command_hint) {
            count(command);
        }
    }

    pub fn error(&mut self, kind: ErrorKind, times: u64) {
        if !self.enabled {
            return;
        }
        if let Some(errors) = self.live.traffic.errors.get(kind.index()) {
            errors.add(times);
        }
    }

    pub fn bytes_out(&mut self, bytes: usize) {
        if !self.enabled {
            return;
        }
        self.live.traffic.bytes_out.add(bytes as u64);
    }

    /// `requests` answered together after `at_backend` from their dispatch to their reply.
    pub fn backend_latency(&mut self, at_backend: Observation, requests: u64) {
        if !self.enabled {
            return;
        }
        self.live.traffic.backend.record(at_backend, requests);
    }

    /// A request sent on the big-request lane of `node`.
    pub fn lane_request(&mut self, node: &Arc<str>) {
        if !self.enabled {
            return;
        }
        self.live.traffic.lane_requests.add(1);
        self.count_node(node, |counts| counts.lane_requests.add(1));
    }

    /// `requests` answered by backend node `node` (`took`: their round trip there), of which `failures`
    /// failed there.
    #[inline]
    pub fn node(
        &mut self,
        node: &Arc<str>,
        requests: u64,
        failures: u64,
        took: Option<Observation>,
    ) {
        if !self.enabled {
            return;
        }
        self.count_node(node, |counts| {
            counts.requests.add(requests);
            counts.failures.add(failures);
            if let Some(took) = took {
                counts.latency.record(took, requests);
            }
        });
    }

    /// Counts into `node`'s slot, starting over first when the slots ran out.
    #[inline(always)]
    fn count_node(&mut self, node: &Arc<str>, count: impl Fn(&LiveNode)) {
        match self.live.node(node, &mut self.node_hint) {
            Some(counts) => count(counts),
            None => self.count_node_after_start_over(node, &count),
        }
    }

    #[cold]
    #[inline(never)]
    fn count_node_after_start_over(&mut self, node: &Arc<str>, count: &dyn Fn(&LiveNode)) {
        self.start_over_here();
        if let Some(counts) = self.live.node(node, &mut self.node_hint) {
            count(counts);
        }
    }

    /// A KPUSH (`push`) or KPOP to a topic the pool serves (added to the worker's table at once: a Kafka
    /// command costs far more than the lock).
    pub fn kafka(&mut self, topic: &str, push: bool, request_bytes: usize) {
        if !self.enabled {
            return;
        }
        let key = (
            Arc::clone(&self.live.pool),
            Arc::from(topic),
            Arc::clone(&self.live.tenant),
        );
        let mut worker = lock(&self.worker);
        let counts = worker.retired.topics.entry(key).or_default();
        if push {
            counts.pushes += 1;
            counts.push_bytes += request_bytes as u64;
        } else {
            counts.pops += 1;
        }
    }

    /// Brings what `CLIENT LIST` shows of the session up to date (before replies are written).
    #[inline]
    pub fn publish(&mut self, now: ClientNow<'_>) {
        if !self.enabled {
            return;
        }
        let client = &self.live.client;
        client.db.store(now.db, Relaxed);
        client.resp3.store(now.resp3, Relaxed);
        if now.last_active >= self.publish_active_from {
            let active = now
                .last_active
                .saturating_duration_since(self.registered_at);
            client.last_active_ns.store(nanos_of(active), Relaxed);
            self.publish_active_from = now.last_active + ACTIVE_PRECISION;
        }
        client.pending.store(now.pending, Relaxed);
        client.output_bytes.store(now.output_bytes, Relaxed);
        if !same_name(self.published_name.as_ref(), now.name) {
            self.publish_name(now.name);
        }
    }

    /// The client's name changed (CLIENT SETNAME): its client-table entry gets the new one.
    #[cold]
    #[inline(never)]
    fn publish_name(&mut self, name: Option<&Bytes>) {
        self.published_name = name.cloned();
        if let Some(id) = self.client_id {
            if let Some(entry) = lock(&self.worker).clients.get_mut(&id) {
                entry.name = name.cloned();
            }
        }
    }
}

/// Whether two client names are the same `Bytes` (a session keeps one per CLIENT SETNAME).
fn same_name(published: Option<&Bytes>, now: Option<&Bytes>) -> bool {
    match (published, now) {
        (Some(old), Some(new)) => old.as_ptr() == new.as_ptr() && old.len() == new.len(),
        (None, None) => true,
        _ => false,
    }
}

impl Drop for SessionStats {
    fn drop(&mut self) {
        self.publish_commands();
        let mut worker = lock(&self.worker);
        if let Some(id) = self.live_id {
            worker.retire(id);
        }
        if let Some(id) = self.client_id {
            worker.clients.remove(&id);
        }
    }
}
