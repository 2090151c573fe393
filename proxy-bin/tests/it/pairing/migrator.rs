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

use crate::support::SlotMove;

/// Keys moved by one MIGRATE: small, so a slot stays split over several steps.
const KEYS_PER_MIGRATE: usize = 3;
/// The pause between two MIGRATE steps of one slot.
const STEP_PAUSE: Duration = Duration::from_millis(10);

/// The migrating thread; [`Migrator::finish`] stops it after the move in progress.
pub struct Migrator {
    slots: usize,
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicUsize>,
    thread: JoinHandle<Result<(), String>>,
}

impl Migrator {
    /// Starts moving `slots` (with their current owners in `owners`, by address) among `masters`.
    pub fn start(masters: Vec<String>, owners: HashMap<u16, String>, seed: u64) -> Migrator {
        let slots = owners.len();
        let stop = Arc::new(AtomicBool::new(false));
        let completed = Arc::new(AtomicUsize::new(0));
        let (thread_stop, thread_completed) = (stop.clone(), completed.clone());
        let thread = std::thread::spawn(move || {
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
    masters: &[String],
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
            let source = &owners[&slot];
            if !masters.contains(source) {
                return Err(format!("slot {slot}: owner {source} is no master"));
            }
            let others: Vec<&String> = masters.iter().filter(|m| *m != source).collect();
            let target = others[rng.usize(0..others.len())].clone();
            move_slot(masters, slot, source, &target)?;
            owners.insert(slot, target);
            completed.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Moves `slot` from `source` to `target`, keys and ownership.
fn move_slot(masters: &[String], slot: u16, source: &str, target: &str) -> Result<(), String> {
    let in_slot = |error: String| format!("slot {slot}: {error}");
    let slot_move = SlotMove::begin(slot, source, target).map_err(in_slot)?;
    slot_move
        .migrate_all(KEYS_PER_MIGRATE, STEP_PAUSE)
        .map_err(in_slot)?;
    slot_move.finish(masters).map_err(in_slot)
}
