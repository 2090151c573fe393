//! A live slot migration on a test's own cluster: a thread that keeps moving the given slots from master to
//! master, the way `redis-cli --cluster reshard` does, so the proxy meets ASK (keys half moved) and MOVED (the
//! move finished, the proxy's map is old) while clients run.
//!
//! One move of slot S from master A to master B: B `CLUSTER SETSLOT S IMPORTING <A>`, A `CLUSTER SETSLOT S
//! MIGRATING <B>`, then `MIGRATE <B> "" 0 5000 KEYS ...` a few keys at a time (with a short pause, so clients
//! see the slot split between two nodes), then `CLUSTER SETSLOT S NODE <B>` on every master.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::support::redis_cli_at;

/// Keys moved by one MIGRATE: small, so a slot stays split over several steps.
const KEYS_PER_MIGRATE: &str = "3";
/// The pause between two MIGRATE steps of one slot.
const STEP_PAUSE: Duration = Duration::from_millis(10);

/// The migrating thread; [`Migrator::finish`] stops it after the move in progress.
pub struct Migrator {
    slots: usize,
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicUsize>,
    thread: JoinHandle<Result<(), String>>,
}

/// A master: its address and node id.
#[derive(Clone)]
struct Master {
    addr: String,
    id: String,
}

impl Migrator {
    /// Starts moving `slots` (with their current owners in `owners`, by address) among `masters`.
    pub fn start(masters: Vec<String>, owners: HashMap<u16, String>, seed: u64) -> Migrator {
        let slots = owners.len();
        let stop = Arc::new(AtomicBool::new(false));
        let completed = Arc::new(AtomicUsize::new(0));
        let (thread_stop, thread_completed) = (stop.clone(), completed.clone());
        let thread = std::thread::spawn(move || {
            let masters: Vec<Master> = masters
                .into_iter()
                .map(|addr| Master {
                    id: redis_cli_at(&addr, &["CLUSTER", "MYID"]).trim().to_owned(),
                    addr,
                })
                .collect();
            move_slots(&masters, owners, seed, &thread_stop, &thread_completed)
        });
        Migrator {
            slots,
            stop,
            completed,
            thread,
        }
    }

    /// Moves finished so far.
    pub fn completed(&self) -> usize {
        self.completed.load(Ordering::Relaxed)
    }

    /// The counter of finished moves, to watch while the migrator runs.
    pub fn progress(&self) -> Arc<AtomicUsize> {
        self.completed.clone()
    }

    /// How many slots it moves.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Stops after the move in progress; returns the number of finished moves, or what went wrong.
    pub fn finish(self) -> Result<usize, String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(result) => result.map(|()| self.completed.load(Ordering::Relaxed)),
            Err(_) => Err("the migrator thread panicked".to_owned()),
        }
    }
}

/// Moves the slots round-robin, each to a random other master, until `stop`.
fn move_slots(
    masters: &[Master],
    mut owners: HashMap<u16, String>,
    seed: u64,
    stop: &AtomicBool,
    completed: &AtomicUsize,
) -> Result<(), String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut slots: Vec<u16> = owners.keys().copied().collect();
    slots.sort_unstable();
    while !stop.load(Ordering::Relaxed) {
        for &slot in &slots {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let source = masters
                .iter()
                .find(|m| m.addr == owners[&slot])
                .ok_or_else(|| format!("slot {slot}: owner {} is no master", owners[&slot]))?;
            let others: Vec<&Master> = masters.iter().filter(|m| m.addr != source.addr).collect();
            let target = others[rng.usize(0..others.len())];
            move_slot(masters, slot, source, target)?;
            owners.insert(slot, target.addr.clone());
            completed.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Moves `slot` from `source` to `target`, keys and ownership.
fn move_slot(
    masters: &[Master],
    slot: u16,
    source: &Master,
    target: &Master,
) -> Result<(), String> {
    let slot_text = slot.to_string();
    expect_ok(
        &target.addr,
        &["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &source.id],
    )?;
    expect_ok(
        &source.addr,
        &["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &target.id],
    )?;
    let (host, port) = target
        .addr
        .rsplit_once(':')
        .ok_or_else(|| format!("bad address {}", target.addr))?;
    loop {
        let listed = redis_cli_at(
            &source.addr,
            &["CLUSTER", "GETKEYSINSLOT", &slot_text, KEYS_PER_MIGRATE],
        );
        let keys: Vec<&str> = listed.lines().filter(|line| !line.is_empty()).collect();
        if keys.is_empty() {
            break;
        }
        let mut migrate = vec!["MIGRATE", host, port, "", "0", "5000", "KEYS"];
        migrate.extend(&keys);
        let reply = redis_cli_at(&source.addr, &migrate);
        if !matches!(reply.trim(), "OK" | "NOKEY") {
            return Err(format!(
                "slot {slot}: {migrate:?} on {}: {reply}",
                source.addr
            ));
        }
        std::thread::sleep(STEP_PAUSE);
    }
    // The target first, so the slot is never owned by nobody.
    let others = masters
        .iter()
        .filter(|m| m.addr != target.addr && m.addr != source.addr);
    for master in [target, source].into_iter().chain(others) {
        expect_ok(
            &master.addr,
            &["CLUSTER", "SETSLOT", &slot_text, "NODE", &target.id],
        )?;
    }
    Ok(())
}

fn expect_ok(addr: &str, args: &[&str]) -> Result<(), String> {
    let reply = redis_cli_at(addr, args);
    if reply.trim() == "OK" {
        Ok(())
    } else {
        Err(format!("{args:?} on {addr}: {reply}"))
    }
}
