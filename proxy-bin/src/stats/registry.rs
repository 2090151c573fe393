//! The process-lifetime registry ([`Stats`]): every worker's cell, the counts kept off the sessions' hot path
//! (Kafka reply bytes, big-lane refusals), the big keys and the slow log; read by merging the workers' counts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::clients::{ClientEntry, ClientView, KillFilter};
use super::keys::{self, BigKey, BigKeys, BigSeen, HotKey, HotKeys};
use super::slowlog::SlowLog;
use super::{lock, TopicKey, WorkerCell, WorkerStats, WorkerTable};

/// The process-lifetime registry: every worker's counts and the slow log.
#[derive(Debug)]
pub struct Stats {
    pub(super) enabled: bool,
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
