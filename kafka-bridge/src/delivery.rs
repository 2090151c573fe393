//! At-least-once bookkeeping of one client connection: the records `KPOP topic` gave it and it has not
//! acknowledged yet.
//!
//! The proxy keeps one [`ConnectionDeliveries`] per client connection and passes it with every Kafka command
//! ([`KafkaBridge::execute_for`](crate::KafkaBridge::execute_for)). On an at-least-once topic, the
//! connection's next `KPOP` on the topic acknowledges what it received before, `KACK` acknowledges one record,
//! and when the connection goes away (the value is dropped) whatever is still unacknowledged is released in
//! the offset store, so the group gets it again at once instead of after `ack_timeout`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::bridge::KafkaBridge;
use crate::offsets::CursorKey;

/// The unacknowledged records of one client connection; see the module documentation.
#[derive(Debug, Default)]
pub struct ConnectionDeliveries {
    // A std mutex: held for a few vector operations, never across an await.
    unacked: Mutex<Vec<Unacked>>,
}

/// One record delivered to the connection and not acknowledged; the bridge that delivered it is kept so the
/// release on close reaches the same offset store (even after a configuration reload built a new one).
#[derive(Debug)]
pub(crate) struct Unacked {
    pub(crate) bridge: KafkaBridge,
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

/// Groups records by cursor, keeping the bridge of each, for one store call per cursor.
pub(crate) fn by_cursor(records: Vec<Unacked>) -> BTreeMap<CursorKey, (KafkaBridge, Vec<i64>)> {
    let mut grouped: BTreeMap<CursorKey, (KafkaBridge, Vec<i64>)> = BTreeMap::new();
    for record in records {
        grouped
            .entry(record.key)
            .or_insert_with(|| (record.bridge, Vec::new()))
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
            for (key, (bridge, offsets)) in by_cursor(records) {
                bridge.release_unacked(&key, &offsets).await;
            }
        });
    }
}
