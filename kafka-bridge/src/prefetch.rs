//! The prefetch buffer of `KPOP topic`: per (consumer group, partition), the offsets this process leased from
//! the offset store and the records already fetched for them, served from memory.
//!
//! One [`GroupTopic`] per (group, topic) is shared by every connection of the group in this process. A
//! [`PartitionBuffer`] holds two queues: *leased* offsets whose records are not fetched yet, and *ready*
//! records. Both are bounded together by `prefetch_records`, and the ready records' bytes by about
//! `prefetch_bytes`. Everything here is plain data under a short-held lock; the bridge does the I/O (leasing
//! and fetching) under the buffer's refill lock, so only one refill per buffer runs at a time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::offsets::Lease;

/// A leased offset whose record is not fetched yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leased {
    pub(crate) offset: i64,
    /// Delivered before and not acknowledged (at least once).
    pub(crate) redelivered: bool,
    /// At least once: when the store will hand the offset out again; serving it later would only make a
    /// duplicate, so it is dropped then.
    pub(crate) expires: Option<Instant>,
}

/// A fetched record waiting in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ready {
    pub(crate) offset: i64,
    /// The record's value; `None` for a tombstone.
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) redelivered: bool,
    pub(crate) expires: Option<Instant>,
}

/// The buffer's bounds, from the topic's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) records: usize,
    pub(crate) bytes: usize,
}

/// The queues of one (group, partition).
#[derive(Debug, Default)]
pub(crate) struct BufferState {
    leased: VecDeque<Leased>,
    ready: VecDeque<Ready>,
    ready_bytes: usize,
}

/// One (group, partition): its queues, and the lock that lets one refill run at a time.
#[derive(Debug, Default)]
pub(crate) struct PartitionBuffer {
    // A std mutex: held for a few queue operations, never across an await.
    state: Mutex<BufferState>,
    pub(crate) refill: Arc<tokio::sync::Mutex<()>>,
}

/// One (group, topic) in this process: a buffer per partition (in the topic's partition order) and the
/// round-robin start of the next KPOP, so partitions are served fairly.
#[derive(Debug)]
pub(crate) struct GroupTopic {
    pub(crate) partitions: Vec<Arc<PartitionBuffer>>,
    pub(crate) next_pop: AtomicUsize,
    /// Records this process delivered to the group again (at least once: not acknowledged in time, their
    /// connection closed, or the proxy that had them died).
    pub(crate) redelivered: AtomicU64,
}

// === impl BufferState ===

impl BufferState {
    /// The next ready record, skipping (and dropping) those whose at-least-once lease has expired: the store
    /// hands those out again, so serving them here would only add a duplicate.
    pub(crate) fn take(&mut self, now: Instant) -> Option<Ready> {
        while let Some(ready) = self.ready.pop_front() {
            self.ready_bytes = self.ready_bytes.saturating_sub(value_len(&ready.value));
            if ready.expires.is_some_and(|expires| expires <= now) {
                continue;
            }
            return Some(ready);
        }
        None
    }

    /// How many more offsets may be leased now.
    pub(crate) fn room(&self, limits: Limits) -> usize {
        limits
            .records
            .saturating_sub(self.leased.len() + self.ready.len())
    }

    /// True when a background refill should start: leased and ready records together at or below half of the
    /// bound.
    pub(crate) fn wants_refill(&self, limits: Limits) -> bool {
        self.ready.len() + self.leased.len() <= limits.records / 2
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    pub(crate) fn has_leased(&self) -> bool {
        !self.leased.is_empty()
    }

    /// Queues a lease's offsets for fetching. `expires` is the local deadline of an at-least-once lease.
    /// The queue is kept in ascending order (fetches walk it in offset order); a store may list pending
    /// offsets by deadline instead.
    pub(crate) fn add_lease(&mut self, lease: &Lease, expires: Option<Instant>) {
        self.leased
            .extend(lease.offsets.iter().map(|&offset| Leased {
                offset,
                redelivered: lease.redelivered,
                expires,
            }));
        self.leased
            .make_contiguous()
            .sort_unstable_by_key(|leased| leased.offset);
    }

    /// Drops leased offsets whose at-least-once lease expired before they were fetched.
    pub(crate) fn drop_expired_leases(&mut self, now: Instant) {
        self.leased
            .retain(|leased| leased.expires.is_none_or(|expires| expires > now));
    }

    /// Where the next fetch starts: the first leased offset.
    pub(crate) fn next_fetch_offset(&self) -> Option<i64> {
        self.leased.front().map(|leased| leased.offset)
    }

    /// How many bytes the next fetch may ask for (at least 1: Kafka still returns one whole batch).
    pub(crate) fn fetch_budget(&self, limits: Limits) -> usize {
        limits.bytes.saturating_sub(self.ready_bytes).max(1)
    }

    /// Matches fetched records (ascending, starting at or before the first leased offset) with the leased
    /// offsets: a leased offset with a record becomes ready; a leased offset below the last fetched record
    /// without one holds no record (a transaction marker or a compacted record) and is consumed; leased offsets
    /// past the last fetched record stay leased for the next fetch. Records not leased (another process's, or
    /// before the first leased offset) are ignored. Returns how many records became ready.
    ///
    /// A fetch that returned only records below the first leased offset (Kafka returns whole batches that end
    /// at or after the fetch offset, so the ones after were control records) consumes that offset as a gap,
    /// so the next fetch makes progress.
    pub(crate) fn accept_fetched(&mut self, records: Vec<(i64, Option<Vec<u8>>)>) -> usize {
        let Some(last) = records.last().map(|record| record.0) else {
            return 0;
        };
        if self
            .leased
            .front()
            .is_some_and(|leased| leased.offset > last)
        {
            self.leased.pop_front();
            return 0;
        }
        let mut records = records.into_iter().peekable();
        let mut accepted = 0;
        while let Some(leased) = self.leased.front().copied() {
            if leased.offset > last {
                break;
            }
            self.leased.pop_front();
            while records.next_if(|record| record.0 < leased.offset).is_some() {}
            if let Some((offset, value)) = records.next_if(|record| record.0 == leased.offset) {
                self.ready_bytes += value_len(&value);
                self.ready.push_back(Ready {
                    offset,
                    value,
                    redelivered: leased.redelivered,
                    expires: leased.expires,
                });
                accepted += 1;
            }
        }
        accepted
    }

    /// Drops leased offsets below `log_start` (retention deleted their records); returns how many.
    pub(crate) fn drop_leased_below(&mut self, log_start: i64) -> usize {
        let before = self.leased.len();
        self.leased.retain(|leased| leased.offset >= log_start);
        before - self.leased.len()
    }

    /// Forgets everything leased and not served: the cursor was reset, so the store leases from the new
    /// position (and holds no pending or given-back offsets any more).
    pub(crate) fn clear(&mut self) {
        self.leased.clear();
        self.ready.clear();
        self.ready_bytes = 0;
    }

    /// How many offsets are leased and not served (ready or still to fetch).
    pub(crate) fn unserved_count(&self) -> usize {
        self.ready.len() + self.leased.len()
    }

    /// Everything leased and not served, for giving back when the buffer goes away.
    pub(crate) fn unserved_offsets(&self) -> Vec<i64> {
        let mut offsets: Vec<i64> = self
            .ready
            .iter()
            .map(|ready| ready.offset)
            .chain(self.leased.iter().map(|leased| leased.offset))
            .collect();
        offsets.sort_unstable();
        offsets
    }
}

fn value_len(value: &Option<Vec<u8>>) -> usize {
    value.as_ref().map_or(0, Vec::len)
}

// === impl PartitionBuffer ===

impl PartitionBuffer {
    /// The queues, locked for a few operations. A poisoned lock only means another thread panicked between
    /// queue operations; the queues are still consistent enough to serve from.
    pub(crate) fn state(&self) -> MutexGuard<'_, BufferState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

// === impl GroupTopic ===

impl GroupTopic {
    pub(crate) fn new(partitions: usize) -> Self {
        GroupTopic {
            partitions: (0..partitions).map(|_| Arc::default()).collect(),
            next_pop: AtomicUsize::new(0),
            redelivered: AtomicU64::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn lease(offsets: impl IntoIterator<Item = i64>) -> Lease {
        Lease {
            offsets: offsets.into_iter().collect(),
            ..Lease::default()
        }
    }

    fn record(offset: i64, value: &str) -> (i64, Option<Vec<u8>>) {
        (offset, Some(value.as_bytes().to_vec()))
    }

    const LIMITS: Limits = Limits {
        records: 4,
        bytes: 10,
    };

    #[test]
    fn records_are_served_in_offset_order_and_room_counts_both_queues() {
        let mut state = BufferState::default();
        assert_eq!(state.room(LIMITS), 4);
        state.add_lease(&lease(5..8), None);
        assert_eq!(state.room(LIMITS), 1);
        assert_eq!(state.next_fetch_offset(), Some(5));
        let ready = state.accept_fetched(vec![record(5, "a"), record(6, "bb")]);
        assert_eq!(ready, 2);
        // Offset 7 was not in this fetch: still leased, the next fetch starts there.
        assert_eq!(state.next_fetch_offset(), Some(7));
        assert_eq!(state.room(LIMITS), 1);
        assert_eq!(state.fetch_budget(LIMITS), 7);
        let now = Instant::now();
        assert_eq!(state.take(now).map(|ready| ready.offset), Some(5));
        assert_eq!(state.take(now).map(|ready| ready.offset), Some(6));
        assert_eq!(state.take(now), None);
        assert_eq!(state.fetch_budget(LIMITS), 10);
        assert!(state.has_leased());
    }

    #[test]
    fn gaps_are_consumed_and_other_records_ignored() {
        let mut state = BufferState::default();
        // A lease of scattered offsets (pending ones may come in deadline order).
        state.add_lease(&lease([9, 4, 2, 6]), None);
        // Offset 4 holds no record (a transaction marker); 3 and 5 are not ours; 9 is past this fetch.
        let ready = state.accept_fetched(vec![
            record(1, "x"),
            record(2, "a"),
            record(3, "x"),
            record(5, "x"),
            record(6, "b"),
            record(7, "x"),
        ]);
        assert_eq!(ready, 2);
        let now = Instant::now();
        let served: Vec<i64> = std::iter::from_fn(|| state.take(now).map(|r| r.offset)).collect();
        assert_eq!(served, vec![2, 6]);
        assert_eq!(state.next_fetch_offset(), Some(9));
        // An empty fetch changes nothing.
        assert_eq!(state.accept_fetched(Vec::new()), 0);
        assert_eq!(state.next_fetch_offset(), Some(9));
        // A fetch that ends below the first leased offset: that offset held a control record.
        state.add_lease(&lease([10]), None);
        assert_eq!(state.accept_fetched(vec![record(8, "x")]), 0);
        assert_eq!(state.next_fetch_offset(), Some(10));
    }

    #[test]
    fn expired_at_least_once_leases_are_not_served() {
        let mut state = BufferState::default();
        let now = Instant::now();
        let soon = now + Duration::from_millis(10);
        let later = now + Duration::from_secs(60);
        state.add_lease(&lease([0, 1]), Some(soon));
        state.accept_fetched(vec![record(0, "a"), record(1, "b")]);
        state.add_lease(&lease([2]), Some(later));
        state.accept_fetched(vec![record(2, "c")]);
        state.add_lease(&lease([3]), Some(soon));
        let after = now + Duration::from_millis(20);
        state.drop_expired_leases(after);
        assert!(!state.has_leased());
        let served = state.take(after).unwrap();
        assert_eq!((served.offset, served.value), (2, Some(b"c".to_vec())));
        assert_eq!(state.take(after), None);
    }

    #[test]
    fn retention_drops_leases_below_the_log_start_and_unserved_are_listed() {
        let mut state = BufferState::default();
        state.add_lease(&lease(10..14), None);
        assert_eq!(state.drop_leased_below(12), 2);
        state.accept_fetched(vec![record(12, "a")]);
        assert_eq!(state.unserved_offsets(), vec![12, 13]);
        assert!(state.wants_refill(LIMITS));
    }
}
