//! Proxy-managed offsets: the [`OffsetStore`] trait and the in-process [`MemoryOffsetStore`].
//!
//! # The model
//!
//! Each (consumer group, topic, partition) has a *cursor*: the next offset nobody has been given yet, starting
//! at 0. A *lease* takes previously given-back offsets if there are any (lowest first), else offsets from the
//! cursor, which then moves on past them, but only while the cursor is below the partition's high watermark,
//! so the cursor never runs ahead of the log. Every lease is atomic in the store, so two proxy processes sharing one
//! store never receive the same offset, and no master has to be elected.
//!
//! An offset that was leased but whose record could not be fetched (the broker failed, timed out, or the
//! record was not there yet) is *given back*, and the next lease returns it before moving the cursor.
//!
//! # Blocks and prefetching
//!
//! `KPOP topic` leases offsets in blocks ([`OffsetStore::lease_block`]): up to `prefetch_records` offsets at
//! once per (group, partition), which the bridge then fetches ahead into a bounded buffer and serves from
//! memory. A block belongs to the proxy process that leased it (the store moved the cursor past it
//! atomically), so several processes sharing one store never serve the same record in at-most-once mode.
//!
//! # The guarantees
//!
//! **At most once** (the default): a leased offset counts as delivered. If a proxy process dies, the records
//! it had leased and not yet served are never delivered to the group: at most `prefetch_records` per (group,
//! partition) it was consuming (one per in-flight `KPOP` with `prefetch_records = 1`). Nothing is delivered
//! twice.
//!
//! **At least once**: every leased offset is also *pending* in the store with a deadline (`ack_timeout`
//! after the lease, measured by the store's clock). Acknowledging ([`OffsetStore::ack`]) removes it; a
//! connection that closes with records unacknowledged [`releases`](OffsetStore::release) them (deadline now).
//! A lease takes pending offsets whose deadline passed before anything else, so a record leased by a proxy
//! that died is delivered again by any proxy sharing the store once its deadline passes: nothing is lost,
//! and a record may be delivered twice (the lease says [`Lease::redelivered`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::OffsetStoreError;

/// A boxed future, so that [`OffsetStore`] stays object safe without the async-trait crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Names one cursor: a consumer group (the tenant), a topic and a partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CursorKey {
    /// The consumer group: the tenant name.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

/// What a cursor looks like, for an admin command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CursorState {
    /// The next offset the cursor will lease.
    pub next_offset: i64,
    /// Offsets that were leased, then given back, and not leased again yet (ascending).
    pub given_back: Vec<i64>,
    /// At least once: leased offsets not acknowledged yet (served or still in some proxy's prefetch buffer).
    pub pending: u64,
    /// At least once: how long until the earliest deadline among the pending offsets, by the store's clock
    /// (zero when it has passed: the next lease delivers that record again); `None` without pending offsets.
    pub oldest_deadline_in: Option<Duration>,
}

/// Offsets leased by one [`OffsetStore::lease_block`] call, ascending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lease {
    /// The leased offsets, ascending.
    pub offsets: Vec<i64>,
    /// True when these were pending past their deadline: delivered before and not acknowledged.
    pub redelivered: bool,
    /// Where the cursor moved to when the lease took offsets from the cursor (not given-back or pending ones).
    pub cursor_advanced_to: Option<i64>,
}

/// Where proxy-managed cursors live. Implementations must make `lease` atomic with respect to every other
/// caller of the same store, in this process and in others that share it.
pub trait OffsetStore: Send + Sync + fmt::Debug {
    /// Leases one offset: the lowest given-back offset if any; else the cursor if it is below
    /// `high_watermark` (the cursor then moves on by one); else `None` (nothing new to read).
    fn lease<'a>(
        &'a self,
        key: &'a CursorKey,
        high_watermark: i64,
    ) -> BoxFuture<'a, Result<Option<i64>, OffsetStoreError>>;

    /// Leases up to `max` offsets (at least 1): pending offsets whose deadline passed, when `hold` is set (at
    /// least once); else given-back offsets (lowest first); else a block of the cursor, below
    /// `high_watermark`. With `hold`, every leased offset becomes pending with a deadline `hold` from now.
    /// `None` when there is nothing to lease.
    fn lease_block<'a>(
        &'a self,
        key: &'a CursorKey,
        high_watermark: i64,
        max: usize,
        hold: Option<Duration>,
    ) -> BoxFuture<'a, Result<Option<Lease>, OffsetStoreError>>;

    /// Acknowledges pending offsets (at least once); returns how many were pending.
    fn ack<'a>(
        &'a self,
        key: &'a CursorKey,
        offsets: &'a [i64],
    ) -> BoxFuture<'a, Result<u64, OffsetStoreError>>;

    /// Makes pending offsets due now (their connection closed unacknowledged): the next lease redelivers them.
    fn release<'a>(
        &'a self,
        key: &'a CursorKey,
        offsets: &'a [i64],
    ) -> BoxFuture<'a, Result<(), OffsetStoreError>>;

    /// Gives back a leased offset whose record could not be delivered; the next lease returns it.
    fn give_back<'a>(
        &'a self,
        key: &'a CursorKey,
        offset: i64,
    ) -> BoxFuture<'a, Result<(), OffsetStoreError>>;

    /// Moves the cursor up to `log_start` if it is below (records below were deleted by retention) and drops
    /// given-back offsets below it.
    fn skip_to<'a>(
        &'a self,
        key: &'a CursorKey,
        log_start: i64,
    ) -> BoxFuture<'a, Result<(), OffsetStoreError>>;

    /// The cursor's state, for admin commands.
    fn show<'a>(
        &'a self,
        key: &'a CursorKey,
    ) -> BoxFuture<'a, Result<CursorState, OffsetStoreError>>;

    /// Sets the cursor to `next_offset` and forgets the given-back offsets (an admin repair).
    fn reset<'a>(
        &'a self,
        key: &'a CursorKey,
        next_offset: i64,
    ) -> BoxFuture<'a, Result<(), OffsetStoreError>>;
}

/// Cursors in this process's memory: the zero-configuration default.
///
/// Atomic across every bridge in this process that shares the same `Arc<MemoryOffsetStore>`, but lost when
/// the process exits and not shared with other processes; use [`RedisOffsetStore`](crate::RedisOffsetStore) for
/// those.
///
/// ```
/// use kafka_bridge::{CursorKey, MemoryOffsetStore, OffsetStore};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryOffsetStore::new();
/// let key = CursorKey { group: "billing".into(), topic: "orders".into(), partition: 0 };
/// assert_eq!(store.lease(&key, 2).await.unwrap(), Some(0));
/// assert_eq!(store.lease(&key, 2).await.unwrap(), Some(1));
/// assert_eq!(store.lease(&key, 2).await.unwrap(), None); // the cursor reached the high watermark
/// store.give_back(&key, 0).await.unwrap();
/// assert_eq!(store.lease(&key, 2).await.unwrap(), Some(0));
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryOffsetStore {
    // A std mutex is right here: it is held for a few map operations and never across an await.
    cursors: Mutex<HashMap<CursorKey, Cursor>>,
}

#[derive(Debug, Default)]
struct Cursor {
    next_offset: i64,
    given_back: BTreeSet<i64>,
    /// At least once: leased offsets not acknowledged yet, with their deadline.
    pending: BTreeMap<i64, Instant>,
}

impl Cursor {
    /// See [`OffsetStore::lease_block`]; `now` is the store's clock.
    fn lease_block(
        &mut self,
        high_watermark: i64,
        max: usize,
        hold: Option<Duration>,
        now: Instant,
    ) -> Option<Lease> {
        let max = max.max(1);
        let mut lease = Lease::default();
        if let Some(hold) = hold {
            let due: Vec<i64> = self
                .pending
                .iter()
                .filter(|(_, deadline)| **deadline <= now)
                .map(|(offset, _)| *offset)
                .take(max)
                .collect();
            if !due.is_empty() {
                for offset in &due {
                    self.pending.insert(*offset, now + hold);
                }
                lease.offsets = due;
                lease.redelivered = true;
                return Some(lease);
            }
        }
        while lease.offsets.len() < max {
            let Some(offset) = self.given_back.pop_first() else {
                break;
            };
            lease.offsets.push(offset);
        }
        if lease.offsets.is_empty() && self.next_offset < high_watermark {
            let end = high_watermark.min(self.next_offset.saturating_add(max as i64));
            lease.offsets = (self.next_offset..end).collect();
            self.next_offset = end;
            lease.cursor_advanced_to = Some(end);
        }
        if lease.offsets.is_empty() {
            return None;
        }
        if let Some(hold) = hold {
            for offset in &lease.offsets {
                self.pending.insert(*offset, now + hold);
            }
        }
        Some(lease)
    }
}

// === impl MemoryOffsetStore ===

impl MemoryOffsetStore {
    /// An empty store: every cursor starts at offset 0.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_cursor<T>(&self, key: &CursorKey, action: impl FnOnce(&mut Cursor) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-update of plain integers; the data is still
        // usable, so recover it instead of failing every later call.
        let mut cursors = self
            .cursors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let cursor = cursors.entry(key.clone()).or_default();
        action(cursor)
    }
}

impl OffsetStore for MemoryOffsetStore {
    fn lease<'a>(
        &'a self,
        key: &'a CursorKey,
        high_watermark: i64,
    ) -> BoxFuture<'a, Result<Option<i64>, OffsetStoreError>> {
        let leased = self.with_cursor(key, |cursor| {
            if let Some(offset) = cursor.given_back.pop_first() {
                return Some(offset);
            }
            if cursor.next_offset < high_watermark {
                let offset = cursor.next_offset;
                cursor.next_offset += 1;
                return Some(offset);
            }
            None
        });
        Box::pin(async move { Ok(leased) })
    }

    fn lease_block<'a>(
        &'a self,
        key: &'a CursorKey,
        high_watermark: i64,
        max: usize,
        hold: Option<Duration>,
    ) -> BoxFuture<'a, Result<Option<Lease>, OffsetStoreError>> {
        let now = Instant::now();
        let leased = self.with_cursor(key, |cursor| {
            cursor.lease_block(high_watermark, max, hold, now)
        });
        Box::pin(async move { Ok(leased) })
    }

    fn ack<'a>(
        &'a self,
        key: &'a CursorKey,
        offsets: &'a [i64],
    ) -> BoxFuture<'a, Result<u64, OffsetStoreError>> {
        let acked = self.with_cursor(key, |cursor| {
            offsets
                .iter()
                .filter(|offset| cursor.pending.remove(offset).is_some())
                .count() as u64
        });
        Box::pin(async move { Ok(acked) })
    }

    fn release<'a>(
        &'a self,
        key: &'a CursorKey,
        offsets: &'a [i64],
    ) -> BoxFuture<'a, Result<(), OffsetStoreError>> {
        let now = Instant::now();
        self.with_cursor(key, |cursor| {
            for offset in offsets {
                if let Some(deadline) = cursor.pending.get_mut(offset) {
                    *deadline = now;
                }
            }
        });
        Box::pin(async { Ok(()) })
    }

    fn give_back<'a>(
        &'a self,
        key: &'a CursorKey,
        offset: i64,
    ) -> BoxFuture<'a, Result<(), OffsetStoreError>> {
        self.with_cursor(key, |cursor| {
            // An offset at or above the cursor was never leased from this store (for example after a reset);
            // keeping it would lease it twice.
            if offset >= 0 && offset < cursor.next_offset {
                cursor.given_back.insert(offset);
            }
        });
        Box::pin(async { Ok(()) })
    }

    fn skip_to<'a>(
        &'a self,
        key: &'a CursorKey,
        log_start: i64,
    ) -> BoxFuture<'a, Result<(), OffsetStoreError>> {
        self.with_cursor(key, |cursor| {
            cursor.next_offset = cursor.next_offset.max(log_start);
            cursor.given_back = cursor.given_back.split_off(&log_start);
        });
        Box::pin(async { Ok(()) })
    }

    fn show<'a>(
        &'a self,
        key: &'a CursorKey,
    ) -> BoxFuture<'a, Result<CursorState, OffsetStoreError>> {
        let now = Instant::now();
        let state = self.with_cursor(key, |cursor| CursorState {
            next_offset: cursor.next_offset,
            given_back: cursor.given_back.iter().copied().collect(),
            pending: cursor.pending.len() as u64,
            oldest_deadline_in: cursor
                .pending
                .values()
                .min()
                .map(|deadline| deadline.saturating_duration_since(now)),
        });
        Box::pin(async move { Ok(state) })
    }

    fn reset<'a>(
        &'a self,
        key: &'a CursorKey,
        next_offset: i64,
    ) -> BoxFuture<'a, Result<(), OffsetStoreError>> {
        self.with_cursor(key, |cursor| {
            cursor.next_offset = next_offset.max(0);
            cursor.given_back.clear();
            cursor.pending.clear();
        });
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn key(partition: i32) -> CursorKey {
        CursorKey {
            group: "g".into(),
            topic: "t".into(),
            partition,
        }
    }

    #[tokio::test]
    async fn given_back_offsets_come_first_and_lowest_first() {
        let store = MemoryOffsetStore::new();
        for expected in 0..5 {
            assert_eq!(store.lease(&key(0), 5).await.unwrap(), Some(expected));
        }
        store.give_back(&key(0), 3).await.unwrap();
        store.give_back(&key(0), 1).await.unwrap();
        assert_eq!(store.lease(&key(0), 5).await.unwrap(), Some(1));
        assert_eq!(store.lease(&key(0), 5).await.unwrap(), Some(3));
        assert_eq!(store.lease(&key(0), 5).await.unwrap(), None);
        assert_eq!(store.lease(&key(0), 6).await.unwrap(), Some(5));
        // Cursors are independent per partition.
        assert_eq!(store.lease(&key(1), 6).await.unwrap(), Some(0));
    }

    #[tokio::test]
    async fn skip_to_and_reset() {
        let store = MemoryOffsetStore::new();
        store.lease(&key(0), 10).await.unwrap();
        store.lease(&key(0), 10).await.unwrap();
        store.give_back(&key(0), 0).await.unwrap();
        store.give_back(&key(0), 1).await.unwrap();
        store.skip_to(&key(0), 1).await.unwrap();
        assert_eq!(
            store.show(&key(0)).await.unwrap(),
            CursorState {
                next_offset: 2,
                given_back: vec![1],
                ..CursorState::default()
            }
        );
        store.skip_to(&key(0), 7).await.unwrap();
        assert_eq!(
            store.show(&key(0)).await.unwrap(),
            CursorState {
                next_offset: 7,
                given_back: vec![],
                ..CursorState::default()
            }
        );
        store.reset(&key(0), 3).await.unwrap();
        assert_eq!(store.lease(&key(0), 10).await.unwrap(), Some(3));
        // Giving back an offset the store never leased is ignored.
        store.give_back(&key(0), 9).await.unwrap();
        assert_eq!(
            store.show(&key(0)).await.unwrap().given_back,
            Vec::<i64>::new()
        );
    }

    #[tokio::test]
    async fn blocks_stop_at_the_high_watermark_and_give_backs_come_first() {
        let store = MemoryOffsetStore::new();
        let first = store
            .lease_block(&key(0), 10, 4, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.offsets, vec![0, 1, 2, 3]);
        assert_eq!(first.cursor_advanced_to, Some(4));
        store.give_back(&key(0), 2).await.unwrap();
        let back = store
            .lease_block(&key(0), 10, 4, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((back.offsets, back.cursor_advanced_to), (vec![2], None));
        let rest = store
            .lease_block(&key(0), 10, 100, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rest.offsets, (4..10).collect::<Vec<i64>>());
        assert_eq!(store.lease_block(&key(0), 10, 4, None).await.unwrap(), None);
    }

    #[tokio::test]
    async fn unacknowledged_offsets_are_leased_again_after_their_deadline() {
        let store = MemoryOffsetStore::new();
        // Long enough that a loaded machine does not pass a deadline between steps that expect it ahead.
        let hold = Some(Duration::from_millis(500));
        let first = store
            .lease_block(&key(0), 3, 3, hold)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.offsets, vec![0, 1, 2]);
        assert_eq!(store.ack(&key(0), &[0, 2]).await.unwrap(), 2);
        // Acknowledging twice counts nothing the second time.
        assert_eq!(store.ack(&key(0), &[0]).await.unwrap(), 0);
        // Offset 1 is still within its deadline: nothing to lease.
        assert_eq!(store.lease_block(&key(0), 3, 3, hold).await.unwrap(), None);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let again = store
            .lease_block(&key(0), 3, 3, hold)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.offsets, again.redelivered), (vec![1], true));
        // Released (its connection closed): due at once.
        store.release(&key(0), &[1]).await.unwrap();
        let released = store
            .lease_block(&key(0), 3, 3, hold)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((released.offsets, released.redelivered), (vec![1], true));
        assert_eq!(store.ack(&key(0), &[1]).await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(store.lease_block(&key(0), 3, 3, hold).await.unwrap(), None);
    }

    #[tokio::test]
    async fn show_counts_pending_offsets_and_the_time_to_the_oldest_deadline() {
        let store = MemoryOffsetStore::new();
        let empty = store.show(&key(0)).await.unwrap();
        assert_eq!((empty.pending, empty.oldest_deadline_in), (0, None));
        let hold = Duration::from_secs(60);
        store
            .lease_block(&key(0), 5, 3, Some(hold))
            .await
            .unwrap()
            .unwrap();
        store.ack(&key(0), &[1]).await.unwrap();
        let shown = store.show(&key(0)).await.unwrap();
        assert_eq!((shown.next_offset, shown.pending), (3, 2));
        let due_in = shown.oldest_deadline_in.unwrap();
        assert!(due_in > Duration::ZERO && due_in <= hold, "{due_in:?}");
        // Released (its connection closed): due now.
        store.release(&key(0), &[2]).await.unwrap();
        let released = store.show(&key(0)).await.unwrap();
        assert_eq!(
            (released.pending, released.oldest_deadline_in),
            (2, Some(Duration::ZERO))
        );
    }

    #[tokio::test]
    async fn concurrent_leases_never_repeat_an_offset() {
        let store = Arc::new(MemoryOffsetStore::new());
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(offset) = store.lease(&key(0), 1000).await.unwrap() {
                    mine.push(offset);
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<i64>>());
    }
}
