//! At-least-once bookkeeping of one client connection: the records `KPOP topic` gave it and it has not
//! acknowledged yet.
//!
//! The proxy keeps one [`ConnectionDeliveries`] per client connection and passes it with every Kafka command
//! ([`KafkaBridge::execute_for`](crate::KafkaBridge::execute_for)). On an at-least-once topic, the
//! connection's next `KPOP` on the topic acknowledges what it received before, `KACK` acknowledges one record,
//! and when the connection goes away (the value is dropped) whatever is still unacknowledged is released in
//! the offset store, so the group gets it again at once instead of after `ack_timeout`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::offsets::{BoxFuture, CursorKey};

/// What gives a closed connection's unacknowledged records back to the offset store they were leased from.
///
/// The bridge implements it; this module only holds it, so the bookkeeping sits below the bridge and needs
/// nothing of it (the bridge uses this module, not the other way round).
pub(crate) trait ReleaseUnacked: std::fmt::Debug + Send + Sync {
    /// Makes `offsets` of `key` due at once, so the group gets them again without waiting for their ack
    /// timeout. A failure leaves them to the timeout (logged, not returned: nobody is left to tell).
    fn release_unacked<'a>(&'a self, key: &'a CursorKey, offsets: &'a [i64]) -> BoxFuture<'a, ()>;
}

/// The unacknowledged records of one client connection; see the module documentation.
#[derive(Debug, Default)]
pub struct ConnectionDeliveries {
    // A std mutex: held for a few vector operations, never across an await.
    unacked: Mutex<Vec<Unacked>>,
}

/// One record delivered to the connection and not acknowledged; the bridge that delivered it is kept (as its
/// releaser) so the release on close reaches the same offset store (even after a configuration reload built a
/// new one).
#[derive(Debug)]
pub(crate) struct Unacked {
    pub(crate) releaser: Arc<dyn ReleaseUnacked>,
    pub(crate) key: CursorKey,
    pub(crate) offset: i64,
}

impl ConnectionDeliveries {
    /// Nothing delivered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many delivered records wait for an acknowledgement.
    pub fn unacked_count(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn record(&self, unacked: Unacked) {
        self.lock().push(unacked);
    }

    /// Takes every unacknowledged record of `topic` (the next KPOP on it acknowledges them).
    pub(crate) fn take_topic(&self, topic: &str) -> Vec<Unacked> {
        let mut unacked = self.lock();
        let (taken, kept) = std::mem::take(&mut *unacked)
            .into_iter()
            .partition(|record| record.key.topic == topic);
        *unacked = kept;
        taken
    }

    /// Forgets one record (acknowledged by KACK).
    pub(crate) fn forget(&self, key: &CursorKey, offset: i64) {
        self.lock()
            .retain(|record| !(record.offset == offset && &record.key == key));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Unacked>> {
        self.unacked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The records of one cursor, with the releaser (bridge) of the first of them.
type CursorRecords = (Arc<dyn ReleaseUnacked>, Vec<i64>);

/// Groups records by cursor, keeping the releaser (bridge) of each, for one store call per cursor.
pub(crate) fn by_cursor(records: Vec<Unacked>) -> BTreeMap<CursorKey, CursorRecords> {
    let mut grouped: BTreeMap<CursorKey, CursorRecords> = BTreeMap::new();
    for record in records {
        grouped
            .entry(record.key)
            .or_insert_with(|| (record.releaser, Vec::new()))
            .1
            .push(record.offset);
    }
    grouped
}

impl Drop for ConnectionDeliveries {
    fn drop(&mut self) {
        let records = std::mem::take(&mut *self.lock());
        if records.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Without a runtime the store cannot be reached; the records come again after `ack_timeout`.
            tracing::warn!(
                records = records.len(),
                "unacknowledged Kafka records are redelivered after their ack timeout"
            );
            return;
        };
        runtime.spawn(async move {
            for (key, (releaser, offsets)) in by_cursor(records) {
                releaser.release_unacked(&key, &offsets).await;
            }
        });
    }
}
