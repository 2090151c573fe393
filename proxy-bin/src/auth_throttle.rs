//! Failed AUTH attempts per client IP: each failure makes the next WRONGPASS reply to that IP wait longer, so
//! guessing passwords costs time instead of running at wire speed.
//!
//! The delay doubles with every failure (from [`FIRST_DELAY`] up to [`MAX_DELAY`]) and is applied by the
//! failing client's own session to its own reply, so no other client waits. An IP's count is forgotten
//! [`FORGET_AFTER`] after its last failure. The table is bounded ([`MAX_ADDRESSES`]): when full, forgotten
//! entries go first, then the entry whose last failure is oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The delay after an IP's first failure.
pub const FIRST_DELAY: Duration = Duration::from_millis(25);
/// The longest delay, however many failures.
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// An IP with no failure for this long starts again from [`FIRST_DELAY`].
pub const FORGET_AFTER: Duration = Duration::from_secs(60);
/// Most IPs remembered at once.
pub const MAX_ADDRESSES: usize = 4096;

/// One IP's recent failures.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Recent AUTH failures per client IP, and the total since start.
#[derive(Debug, Default)]
pub struct AuthThrottle {
    by_address: Mutex<HashMap<IpAddr, Failures>>,
    total: AtomicU64,
}

impl AuthThrottle {
    /// Records a failure from `address`; returns how long its WRONGPASS reply must wait.
    pub fn failure(&self, address: IpAddr) -> Duration {
        self.total.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut table = match self.by_address.lock() {
            Ok(table) => table,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !table.contains_key(&address) && table.len() >= MAX_ADDRESSES {
            make_room(&mut table, now);
        }
        let entry = table.entry(address).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(entry.last) > FORGET_AFTER {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        delay_for(entry.count)
    }

    /// AUTH failures since the proxy started.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// The delay after `count` failures in a row: doubling from [`FIRST_DELAY`], at most [`MAX_DELAY`].
fn delay_for(count: u32) -> Duration {
    let doublings = count.saturating_sub(1).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

/// Drops forgotten entries, or else the one whose last failure is oldest.
fn make_room(table: &mut HashMap<IpAddr, Failures>, now: Instant) {
    table.retain(|_, failures| now.duration_since(failures.last) <= FORGET_AFTER);
    if table.len() < MAX_ADDRESSES {
        return;
    }
    let oldest = table
        .iter()
        .min_by_key(|(_, failures)| failures.last)
        .map(|(address, _)| *address);
    if let Some(address) = oldest {
        table.remove(&address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let throttle = AuthThrottle::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let delays: Vec<Duration> = (0..10).map(|_| throttle.failure(ip)).collect();
        assert_eq!(delays[0], FIRST_DELAY);
        assert_eq!(delays[1], FIRST_DELAY * 2);
        assert_eq!(delays[9], MAX_DELAY);
        assert_eq!(throttle.total(), 10);
        let other: IpAddr = [10, 0, 0, 2].into();
        assert_eq!(throttle.failure(other), FIRST_DELAY);
    }

    #[test]
    fn table_stays_bounded() {
        let throttle = AuthThrottle::default();
        for n in 0..(MAX_ADDRESSES as u32 + 10) {
            throttle.failure(IpAddr::from(n.to_be_bytes()));
        }
        let table = throttle.by_address.lock().unwrap();
        assert!(table.len() <= MAX_ADDRESSES);
    }
}
