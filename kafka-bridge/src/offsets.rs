//! Proxy-managed offsets: the [`OffsetStore`] trait and the in-process [`MemoryOffsetStore`].
//!
//! # The model
//!
//! Each (consumer group, topic, partition) has a *cursor*: the next offset nobody has been given yet, starting
//! at 0. A `KPOP topic` *leases* one offset: a previously given-back offset if there is one (lowest first), else
//! the cursor, which then moves on by one, but only while the cursor is below the partition's high watermark, so
//! the cursor never runs ahead of the log. Every lease is atomic in the store, so two proxy processes sharing one
//! store never receive the same offset, and no master has to be elected.
//!
//! An offset that was leased but whose record could not be fetched (the broker failed, timed out, or the
//! record was not there yet) is *given back*, and the next lease returns it before moving the cursor.
//!
//! # The guarantee: at most once
//!
//! A leased offset counts as delivered. If a proxy process dies between the lease and the reply (or the
//! client goes away after the record was fetched), that one record is never delivered to the group: delivery is
//! **at most once**, and never twice. The alternative, at least once, needs a commit step after the client has
//! the reply and a lease expiry; an expiry shorter than a slow fetch would hand the same record to two consumers
//! in normal operation, which breaks the "never twice" rule the proxy promises, while a crash of a proxy process
//! is rare and loses at most the records that process had in flight (one per in-flight `KPOP`). The seed system
//! made the same choice (it has no commit step either).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

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
        let state = self.with_cursor(key, |cursor| CursorState {
            next_offset: cursor.next_offset,
            given_back: cursor.given_back.iter().copied().collect(),
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
                given_back: vec![1]
            }
        );
        store.skip_to(&key(0), 7).await.unwrap();
        assert_eq!(
            store.show(&key(0)).await.unwrap(),
            CursorState {
                next_offset: 7,
                given_back: vec![]
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
