//! A session's counts as it keeps them ([`SessionLive`]): written by the session alone, read by anyone
//! (`RKPROXY STATS`, `INFO proxy`, `/metrics`, `CLIENT LIST`) at any time, with no lock and no read-modify-write
//! on the session's path.
//!
//! Each counter is a [`Tally`], an atomic that only its session writes: adding is a relaxed load and a relaxed
//! store (plain moves on x86-64 and AArch64, no `lock` prefix), and a reader on another thread loads it when it
//! likes. A reader may see one count of a request and not yet another (a command's call but not yet its
//! bytes); every count it sees happened, and no count goes down.
//!
//! Commands and nodes get a slot each on first use, out of [`SLOTS`]; a session that needs one more retires
//! its counts into its worker's table and starts a fresh `SessionLive` (see `SessionStats`).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use super::histogram::{Histogram, Observation, BUCKETS};
use super::{CommandCounts, NodeCounts, Traffic};

/// Commands (and, apart, nodes) one `SessionLive` has room for.
pub const SLOTS: usize = 16;

/// A counter that one thread adds to and any thread reads.
#[derive(Debug, Default)]
pub struct Tally(AtomicU64);

impl Tally {
    /// Adds `amount`. Only the owning session calls this, so a load and a store cannot lose a count.
    #[inline]
    pub fn add(&self, amount: u64) {
        self.0
            .store(self.0.load(Relaxed).wrapping_add(amount), Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A [`Histogram`] made of tallies.
#[derive(Debug, Default)]
pub struct LiveHistogram {
    buckets: [Tally; BUCKETS],
    sum_us: Tally,
}

impl LiveHistogram {
    /// Records `times` observations (a batch of requests answered together).
    #[inline]
    pub fn record(&self, observation: Observation, times: u64) {
        if let Some(bucket) = self.buckets.get(observation.bucket) {
            bucket.add(times);
        }
        self.sum_us.add(observation.micros.saturating_mul(times));
    }

    pub fn read(&self) -> Histogram {
        Histogram::from_buckets(
            std::array::from_fn(|index| self.buckets[index].get()),
            self.sum_us.get(),
        )
    }
}

/// One command's counts in a session.
#[derive(Debug)]
pub struct LiveCommand {
    pub name: &'static str,
    pub calls: Tally,
    pub bytes_in: Tally,
    pub latency: LiveHistogram,
}

impl LiveCommand {
    fn read(&self) -> CommandCounts {
        CommandCounts {
            calls: self.calls.get(),
            bytes_in: self.bytes_in.get(),
            latency: self.latency.read(),
        }
    }
}

/// One backend node's counts in a session.
#[derive(Debug)]
pub struct LiveNode {
    pub node: Arc<str>,
    pub requests: Tally,
    pub failures: Tally,
    pub latency: LiveHistogram,
    pub lane_requests: Tally,
}

impl LiveNode {
    fn read(&self) -> NodeCounts {
        NodeCounts {
            requests: self.requests.get(),
            failures: self.failures.get(),
            latency: self.latency.read(),
            lane_requests: self.lane_requests.get(),
            lane_busy: 0,
        }
    }
}

/// A session's [`Traffic`]. Its request bytes and its time in the proxy are its commands' (counted once, per
/// command, and added up when read).
#[derive(Debug, Default)]
pub struct LiveTraffic {
    pub errors: [Tally; 4],
    pub bytes_out: Tally,
    pub backend: LiveHistogram,
    pub lane_requests: Tally,
}

impl LiveTraffic {
    fn read(&self) -> Traffic {
        Traffic {
            errors: std::array::from_fn(|index| self.errors[index].get()),
            bytes_in: 0,
            bytes_out: self.bytes_out.get(),
            latency: Histogram::default(),
            backend: self.backend.read(),
            lane_requests: self.lane_requests.get(),
            lane_busy: 0,
        }
    }
}

/// What `CLIENT LIST` shows of a session that changes with every request.
#[derive(Debug, Default)]
pub struct LiveClient {
    pub db: AtomicU32,
    pub resp3: AtomicBool,
    /// Since the client table entry's `started`.
    pub last_active_ns: AtomicU64,
    pub pending: AtomicUsize,
    pub output_bytes: AtomicUsize,
    /// The slot of the latest command, plus one (0 before any).
    last_command: AtomicUsize,
}

/// A session's counts under one pool and tenant (see the module docs).
#[derive(Debug)]
pub struct SessionLive {
    pub pool: Arc<str>,
    pub tenant: Arc<str>,
    pub traffic: LiveTraffic,
    pub client: LiveClient,
    commands: [OnceLock<Box<LiveCommand>>; SLOTS],
    nodes: [OnceLock<Box<LiveNode>>; SLOTS],
}

/// Everything a [`SessionLive`] counted, read out.
#[derive(Debug, Default)]
pub struct LiveCounts {
    pub commands: Vec<(&'static str, CommandCounts)>,
    pub traffic: Traffic,
    pub nodes: Vec<(Arc<str>, NodeCounts)>,
}

impl SessionLive {
    pub fn new(pool: Arc<str>, tenant: Arc<str>) -> SessionLive {
        SessionLive {
            pool,
            tenant,
            traffic: LiveTraffic::default(),
            client: LiveClient::default(),
            commands: std::array::from_fn(|_| OnceLock::new()),
            nodes: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// The slot of command `name`, taken if new; `None` when every slot holds another command. `hint` is the
    /// slot found last (tried first: a session mostly repeats its command) and becomes this one's.
    #[inline]
    pub fn command(&self, name: &'static str, hint: &mut usize) -> Option<&LiveCommand> {
        if let Some(known) = self.commands.get(*hint).and_then(OnceLock::get) {
            if std::ptr::eq(known.name, name) {
                return Some(known);
            }
        }
        self.find_command(name, hint)
    }

    #[inline(never)]
    fn find_command(&self, name: &'static str, hint: &mut usize) -> Option<&LiveCommand> {
        // Slots fill in order: the first empty one ends the search and is the new command's. Names are table
        // entries (the same command, the same pointer), but equal text is the same command too.
        for (index, slot) in self.commands.iter().enumerate() {
            let command = match slot.get() {
                Some(known) if std::ptr::eq(known.name, name) || known.name == name => known,
                Some(_) => continue,
                None => slot.get_or_init(|| Box::new(LiveCommand::new(name))),
            };
            *hint = index;
            return Some(command);
        }
        None
    }

    /// The slot of `node`, taken if new; `None` when every slot holds another node. `hint` works as in
    /// [`SessionLive::command`] (a standalone pool has one node; a cluster session often repeats one).
    #[inline]
    pub fn node(&self, node: &Arc<str>, hint: &mut usize) -> Option<&LiveNode> {
        if let Some(known) = self.nodes.get(*hint).and_then(OnceLock::get) {
            if Arc::ptr_eq(&known.node, node) {
                return Some(known);
            }
        }
        self.find_node(node, hint)
    }

    #[inline(never)]
    fn find_node(&self, node: &Arc<str>, hint: &mut usize) -> Option<&LiveNode> {
        for (index, slot) in self.nodes.iter().enumerate() {
            let counts = match slot.get() {
                Some(known) if Arc::ptr_eq(&known.node, node) || known.node == *node => known,
                Some(_) => continue,
                None => slot.get_or_init(|| Box::new(LiveNode::new(node))),
            };
            *hint = index;
            return Some(counts);
        }
        None
    }

    /// Notes the command in slot `slot` as the client's latest.
    #[inline]
    pub fn set_last_command(&self, slot: usize) {
        self.client.last_command.store(slot + 1, Relaxed);
    }

    /// The client's latest command (`NULL` before any).
    pub fn last_command(&self) -> &'static str {
        let slot = self.client.last_command.load(Relaxed);
        slot.checked_sub(1)
            .and_then(|index| self.commands.get(index))
            .and_then(OnceLock::get)
            .map_or("NULL", |command| command.name)
    }

    /// Everything counted so far (empty rows left out).
    pub fn read(&self) -> LiveCounts {
        let commands: Vec<(&'static str, CommandCounts)> = self
            .commands
            .iter()
            .map_while(OnceLock::get)
            .map(|command| (command.name, command.read()))
            .filter(|(_, counts)| !counts.is_empty())
            .collect();
        let nodes = self
            .nodes
            .iter()
            .map_while(OnceLock::get)
            .map(|node| (Arc::clone(&node.node), node.read()))
            .filter(|(_, counts)| !counts.is_empty())
            .collect();
        // A pool and tenant's request bytes and time in the proxy are its commands' (counted once, per command).
        let mut traffic = self.traffic.read();
        traffic.bytes_in = commands.iter().map(|(_, counts)| counts.bytes_in).sum();
        for (_, counts) in &commands {
            traffic.latency.merge(&counts.latency);
        }
        LiveCounts {
            commands,
            traffic,
            nodes,
        }
    }

    /// Copies what `CLIENT LIST` shows from `old` (a session starting a fresh set of counts), with the latest
    /// command's slot taken here.
    pub fn continue_client(&self, old: &SessionLive) {
        let (from, to) = (&old.client, &self.client);
        to.db.store(from.db.load(Relaxed), Relaxed);
        to.resp3.store(from.resp3.load(Relaxed), Relaxed);
        to.last_active_ns
            .store(from.last_active_ns.load(Relaxed), Relaxed);
        to.pending.store(from.pending.load(Relaxed), Relaxed);
        to.output_bytes
            .store(from.output_bytes.load(Relaxed), Relaxed);
        let latest = old.last_command();
        if latest != "NULL" {
            let mut slot = 0;
            if self.command(latest, &mut slot).is_some() {
                self.set_last_command(slot);
            }
        }
    }
}

impl LiveCommand {
    fn new(name: &'static str) -> LiveCommand {
        LiveCommand {
            name,
            calls: Tally::default(),
            bytes_in: Tally::default(),
            latency: LiveHistogram::default(),
        }
    }
}

impl LiveNode {
    fn new(node: &Arc<str>) -> LiveNode {
        LiveNode {
            node: Arc::clone(node),
            requests: Tally::default(),
            failures: Tally::default(),
            latency: LiveHistogram::default(),
            lane_requests: Tally::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_live_histogram_reads_as_the_histogram_of_the_same_observations() {
        let live = LiveHistogram::default();
        let mut plain = Histogram::default();
        for (micros, times) in [(3u64, 2u64), (70, 1), (400, 5), (9_000, 1), (50_000_000, 3)] {
            live.record(Observation::of(Duration::from_micros(micros)), times);
            plain.record(Duration::from_micros(micros), times);
        }
        assert_eq!(live.read(), plain);
        assert_eq!(live.read().count(), 12);
    }

    #[test]
    fn commands_and_nodes_get_a_slot_each_until_the_slots_run_out() {
        const NAMES: [&str; SLOTS + 1] = [
            "c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9", "c10", "c11", "c12", "c13",
            "c14", "c15", "c16",
        ];
        let live = SessionLive::new(Arc::from("main"), Arc::from("shop"));
        let mut hint = 0;
        for name in &NAMES[..SLOTS] {
            if let Some(command) = live.command(name, &mut hint) {
                command.calls.add(1);
            }
            live.set_last_command(hint);
        }
        assert_eq!(live.last_command(), NAMES[SLOTS - 1]);
        assert!(live.command(NAMES[SLOTS], &mut hint).is_none());
        // Equal text, another pointer: the same command.
        let again = String::from("c3");
        let same = live.command(Box::leak(again.into_boxed_str()), &mut hint);
        assert_eq!(same.map(|command| command.calls.get()), Some(1));
        assert_eq!(hint, 3);
        let mut node_hint = 0;
        for index in 0..SLOTS {
            let node = Arc::from(format!("n{index}"));
            assert!(live.node(&node, &mut node_hint).is_some());
            assert_eq!(node_hint, index);
        }
        assert!(live.node(&Arc::from("n99"), &mut node_hint).is_none());
        // Equal text, another pointer: the same node, found past the hint.
        assert!(live.node(&Arc::from("n7"), &mut node_hint).is_some());
        assert_eq!(node_hint, 7);
        let counts = live.read();
        assert_eq!(counts.commands.len(), SLOTS);
        assert!(
            counts.nodes.is_empty(),
            "nodes with nothing counted are left out"
        );
    }

    #[test]
    fn a_reader_on_another_thread_sees_counts_that_only_grow_and_end_exact() {
        let live = Arc::new(SessionLive::new(Arc::from("main"), Arc::from("shop")));
        let writer = {
            let live = Arc::clone(&live);
            std::thread::spawn(move || {
                let mut hint = 0;
                for round in 0..200_000u64 {
                    let name = if round % 3 == 0 { "get" } else { "set" };
                    if let Some(command) = live.command(name, &mut hint) {
                        command.calls.add(1);
                        command.bytes_in.add(3);
                        command
                            .latency
                            .record(Observation::of(Duration::from_micros(round % 700)), 1);
                    }
                    live.traffic.bytes_out.add(2);
                }
            })
        };
        let mut last = 0;
        while !writer.is_finished() {
            let counts = live.read();
            let calls: u64 = counts.commands.iter().map(|(_, c)| c.calls).sum();
            assert!(calls >= last, "{calls} after {last}");
            last = calls;
        }
        writer.join().expect("the writer thread");
        let counts = live.read();
        let calls: u64 = counts.commands.iter().map(|(_, c)| c.calls).sum();
        let timed: u64 = counts.commands.iter().map(|(_, c)| c.latency.count()).sum();
        assert_eq!(counts.traffic.bytes_in, 600_000, "the commands' bytes");
        assert_eq!(
            counts.traffic.latency.count(),
            200_000,
            "the commands' times"
        );
        assert_eq!(
            (calls, timed, counts.traffic.bytes_out),
            (200_000, 200_000, 400_000)
        );
    }
}
