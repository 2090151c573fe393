//! The cursors of `KPOP topic`, committed to Kafka as consumer-group offsets, so that Kafka's own tools
//! (`kafka-consumer-groups.sh --describe --group G`, lag exporters) see each group's position and lag.
//!
//! The offset store stays the truth: a lease there is what hands a record out. Kafka gets a copy, written
//! asynchronously: each delivered record notes `offset + 1` (Kafka's committed offset is the next record to
//! read) for its (group, topic, partition) in memory, which is one map update under a lock and no I/O; a task
//! per bridge commits what was noted every `group_commit_interval`, one OffsetCommit request per group, and
//! once more when the bridge is dropped (a pool reload or shutdown). An admin reset of a cursor is noted as the
//! offset to commit (even backwards), and offsets given back to the group lower it to the lowest of them, so
//! Kafka's lag counts records the group will get again. A failed commit (broker down, coordinator
//! moving) keeps its offsets for the next round, unless newer ones were noted meanwhile.
//!
//! The requests are those of a "simple" consumer that commits without joining the group (generation -1, no
//! member id): FindCoordinator v2 on a bootstrap broker, then OffsetCommit v8 on the coordinator, over a
//! connection secured like every other one of the pool (`security`). rskafka has no group API; the requests are
//! encoded and decoded by the `kafka-protocol` crate.
//!
//! What Kafka shows lags behind the store by up to one interval. With several proxies sharing a Redis store,
//! each commits the offsets it delivered, so the committed offset can step back briefly when a proxy that
//! delivered an earlier record commits after one that delivered a later one; the next commit of the later one
//! corrects it. Records leased but not yet delivered (a KPOP in flight) are not committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{FindCoordinatorRequest, GroupId, OffsetCommitRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Notify;

use crate::config::KafkaPoolConfig;
use crate::error::KafkaError;
use crate::offsets::CursorKey;
use crate::security::{BrokerConnection, PreparedSecurity};

const FIND_COORDINATOR_VERSION: i16 = 2;
const OFFSET_COMMIT_VERSION: i16 = 8;
/// FindCoordinator's key type for a consumer group.
const GROUP_KEY_TYPE: i8 = 0;

/// One group's offsets: topic → partition → next offset.
type Offsets = BTreeMap<String, BTreeMap<i32, i64>>;
/// Offsets waiting to be committed, by Kafka group id.
type Pending = HashMap<String, Offsets>;

/// The handle the bridge keeps; dropping it makes the task commit once more and stop.
#[derive(Debug)]
pub(crate) struct GroupCommits {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    /// Tenant → Kafka group id, for the tenants whose group is not named after them.
    group_ids: HashMap<String, String>,
    closed: AtomicBool,
    wake: Notify,
}

/// What the committing task needs from the pool's configuration.
struct Settings {
    bootstrap: Vec<String>,
    client_id: String,
    security: PreparedSecurity,
    interval: Duration,
    request_timeout: Duration,
}

// === impl GroupCommits ===

impl GroupCommits {
    /// Starts the committing task, or returns `None` when the pool commits nothing. Needs a tokio runtime.
    pub(crate) fn start(
        config: &KafkaPoolConfig,
        security: PreparedSecurity,
    ) -> Option<GroupCommits> {
        let interval = config.group_commit_interval?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            group_ids: config.group_ids.clone(),
            closed: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let settings = Settings {
            bootstrap: config.bootstrap.clone(),
            client_id: config.client_id.clone(),
            security,
            interval,
            request_timeout: config.request_timeout,
        };
        tokio::spawn(commit_until_closed(Arc::clone(&shared), settings));
        Some(GroupCommits { shared })
    }

    /// Notes that the record at `offset` was delivered to the cursor's group: Kafka's committed offset becomes
    /// `offset + 1` at the next commit, unless a higher one was noted in the same interval. No I/O.
    pub(crate) fn note_delivered(&self, key: &CursorKey, offset: i64) {
        self.note(key, offset + 1, |noted, next_offset| noted.max(next_offset));
    }

    /// Notes that an admin reset the cursor (`RKPROXY KRESET`): the next commit is `next_offset`, whatever was
    /// noted before it (a reset may move the group back). Deliveries after it are noted as usual.
    pub(crate) fn note_reset(&self, key: &CursorKey, next_offset: i64) {
        self.note(key, next_offset, |_, reset| reset);
    }

    /// Notes that leased offsets from `lowest` were given back (or, at least once, released unacknowledged):
    /// the group has not been given the record at `lowest` after all, so the next commit is at most `lowest`
    /// and Kafka's lag counts those records until they are delivered again.
    pub(crate) fn note_given_back(&self, key: &CursorKey, lowest: i64) {
        self.note(key, lowest, |noted, lowest| noted.min(lowest));
    }

    /// Sets the offset to commit for the cursor's partition: `next_offset` when none is noted yet, else
    /// `merge(noted, next_offset)`.
    fn note(&self, key: &CursorKey, next_offset: i64, merge: impl FnOnce(i64, i64) -> i64) {
        let group = self.shared.group_ids.get(&key.group).unwrap_or(&key.group);
        let mut pending = self.shared.lock_pending();
        // Names are cloned only for the first record of a partition in each interval, not on every KPOP.
        if let Some(noted) = pending
            .get_mut(group)
            .and_then(|topics| topics.get_mut(&key.topic))
            .and_then(|partitions| partitions.get_mut(&key.partition))
        {
            *noted = merge(*noted, next_offset);
            return;
        }
        pending
            .entry(group.clone())
            .or_default()
            .entry(key.topic.clone())
            .or_default()
            .insert(key.partition, next_offset);
    }
}

impl Drop for GroupCommits {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

// === impl Shared ===

impl Shared {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Held for a map update, never across an await; a poisoned lock still holds plain numbers.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take_pending(&self) -> Pending {
        std::mem::take(&mut *self.lock_pending())
    }

    /// Puts back offsets whose commit failed, unless a newer delivery was noted for the same partition.
    fn put_back(&self, group: String, offsets: Offsets) {
        let mut pending = self.lock_pending();
        let topics = pending.entry(group).or_default();
        for (topic, partitions) in offsets {
            let kept = topics.entry(topic).or_default();
            for (partition, offset) in partitions {
                kept.entry(partition).or_insert(offset);
            }
        }
    }
}

// === the committing task ===

async fn commit_until_closed(shared: Arc<Shared>, settings: Settings) {
    let mut coordinators: HashMap<String, BrokerConnection> = HashMap::new();
    let mut failing: HashMap<String, String> = HashMap::new();
    loop {
        let closed = shared.closed.load(Ordering::Acquire);
        if !closed {
            // Woken early only by the drop of the handle.
            let _ = tokio::time::timeout(settings.interval, shared.wake.notified()).await;
        }
        for (group, offsets) in shared.take_pending() {
            if offsets.is_empty() {
                continue;
            }
            // Two round trips at most (coordinator lookup and connect, then the commit), each bounded.
            let attempt = tokio::time::timeout(
                settings.request_timeout * 3,
                commit_group(&mut coordinators, &settings, &group, &offsets),
            )
            .await
            .unwrap_or_else(|_| {
                Err(KafkaError::Timeout {
                    operation: format!("committing the offsets of group '{group}'"),
                    after: settings.request_timeout * 3,
                })
            });
            match attempt {
                Ok(()) => {
                    if failing.remove(&group).is_some() {
                        tracing::info!(group, "committing group offsets to Kafka works again");
                    }
                }
                Err(error) => {
                    coordinators.remove(&group);
                    let text = error.to_string();
                    // Logged when the failure starts or changes, not every interval.
                    if failing.get(&group) != Some(&text) {
                        tracing::warn!(group, error = %text, "could not commit group offsets to Kafka; retrying");
                        failing.insert(group.clone(), text);
                    }
                    if !closed {
                        shared.put_back(group, offsets);
                    }
                }
            }
        }
        if closed {
            return;
        }
    }
}

/// Commits `offsets` for `group`, finding and connecting to its coordinator first when needed.
async fn commit_group(
    coordinators: &mut HashMap<String, BrokerConnection>,
    settings: &Settings,
    group: &str,
    offsets: &Offsets,
) -> Result<(), KafkaError> {
    if !coordinators.contains_key(group) {
        let connection = connect_to_coordinator(settings, group).await?;
        coordinators.insert(group.to_owned(), connection);
    }
    let Some(connection) = coordinators.get_mut(group) else {
        return Err(KafkaError::Unavailable {
            message: format!("no coordinator connection for group '{group}'"),
        });
    };
    let request = offset_commit_request(group, offsets);
    let response = connection.request(OFFSET_COMMIT_VERSION, &request).await?;
    for topic in &response.topics {
        for partition in &topic.partitions {
            if partition.error_code != 0 {
                return Err(kafka_error(
                    partition.error_code,
                    format!(
                        "committing the offset of group '{group}' on topic '{}' partition {}",
                        topic.name.0.as_str(),
                        partition.partition_index
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// FindCoordinator on each bootstrap broker in turn, then a connection to the coordinator it names.
async fn connect_to_coordinator(
    settings: &Settings,
    group: &str,
) -> Result<BrokerConnection, KafkaError> {
    let mut last_error = KafkaError::Unavailable {
        message: "no bootstrap broker to find a group coordinator on".into(),
    };
    for broker in &settings.bootstrap {
        let found = find_coordinator(settings, broker, group).await;
        match found {
            Ok(coordinator) => {
                return settings
                    .security
                    .connect(&coordinator, &settings.client_id)
                    .await
            }
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

async fn find_coordinator(
    settings: &Settings,
    broker: &str,
    group: &str,
) -> Result<String, KafkaError> {
    let mut connection = settings
        .security
        .connect(broker, &settings.client_id)
        .await?;
    let request = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(group.to_owned()))
        .with_key_type(GROUP_KEY_TYPE);
    let response = connection
        .request(FIND_COORDINATOR_VERSION, &request)
        .await?;
    if response.error_code != 0 {
        return Err(kafka_error(
            response.error_code,
            format!("finding the coordinator of group '{group}' on {broker}"),
        ));
    }
    Ok(format!("{}:{}", response.host.as_str(), response.port))
}

/// One OffsetCommit for every noted partition of one group, as a simple consumer (no generation, no member).
fn offset_commit_request(group: &str, offsets: &Offsets) -> OffsetCommitRequest {
    let topic = |(name, partitions): (&String, &BTreeMap<i32, i64>)| {
        OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.clone())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|(partition, offset)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*partition)
                            .with_committed_offset(*offset)
                    })
                    .collect(),
            )
    };
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::default())
        .with_topics(offsets.iter().map(topic).collect())
}

/// A Kafka error code as Kafka's error name (`NOT_COORDINATOR`), like the bridge's other Kafka errors.
fn kafka_error(code: i16, context: String) -> KafkaError {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(error) => KafkaError::from_kafka_code(&format!("{error:?}"), context),
        None => KafkaError::from_kafka_code(&format!("Unknown({code})"), context),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    fn key(group: &str, topic: &str, partition: i32) -> CursorKey {
        CursorKey {
            group: group.into(),
            topic: topic.into(),
            partition,
        }
    }

    fn offsets(topics: &[(&str, &[(i32, i64)])]) -> Offsets {
        topics
            .iter()
            .map(|(topic, partitions)| (topic.to_string(), partitions.iter().copied().collect()))
            .collect()
    }

    fn commits_without_task(group_ids: HashMap<String, String>) -> GroupCommits {
        GroupCommits {
            shared: Arc::new(Shared {
                pending: Mutex::new(HashMap::new()),
                group_ids,
                closed: AtomicBool::new(false),
                wake: Notify::new(),
            }),
        }
    }

    #[test]
    fn the_highest_delivered_offset_plus_one_is_committed_under_the_group_id() {
        let commits = commits_without_task(HashMap::from([(
            "shop".to_owned(),
            "shop-group".to_owned(),
        )]));
        commits.note_delivered(&key("shop", "orders", 0), 4);
        commits.note_delivered(&key("shop", "orders", 0), 2);
        commits.note_delivered(&key("shop", "orders", 1), 0);
        commits.note_delivered(&key("audit", "orders", 0), 9);
        let pending = commits.shared.take_pending();
        assert_eq!(
            pending["shop-group"],
            offsets(&[("orders", &[(0, 5), (1, 1)])])
        );
        assert_eq!(pending["audit"], offsets(&[("orders", &[(0, 10)])]));
        assert!(commits.shared.take_pending().is_empty());
    }

    #[test]
    fn a_reset_replaces_what_was_noted_and_given_back_offsets_lower_it() {
        let commits = commits_without_task(HashMap::new());
        commits.note_delivered(&key("g", "t", 0), 40);
        commits.note_reset(&key("g", "t", 0), 3);
        commits.note_delivered(&key("g", "t", 1), 9);
        commits.note_given_back(&key("g", "t", 1), 6);
        commits.note_given_back(&key("g", "t", 2), 4);
        assert_eq!(
            commits.shared.take_pending()["g"],
            offsets(&[("t", &[(0, 3), (1, 6), (2, 4)])])
        );
        // After a reset, deliveries move the commit on as usual.
        commits.note_reset(&key("g", "t", 0), 3);
        commits.note_delivered(&key("g", "t", 0), 3);
        assert_eq!(
            commits.shared.take_pending()["g"],
            offsets(&[("t", &[(0, 4)])])
        );
    }

    #[test]
    fn a_failed_commit_never_overwrites_a_newer_delivery() {
        let commits = commits_without_task(HashMap::new());
        commits.note_delivered(&key("g", "t", 0), 7);
        let failed = offsets(&[("t", &[(0, 3), (1, 2)]), ("u", &[(0, 1)])]);
        commits.shared.put_back("g".to_owned(), failed);
        assert_eq!(
            commits.shared.take_pending()["g"],
            offsets(&[("t", &[(0, 8), (1, 2)]), ("u", &[(0, 1)])])
        );
    }

    #[test]
    fn the_commit_request_groups_partitions_by_topic() {
        let request = offset_commit_request(
            "g",
            &offsets(&[("a", &[(1, 10), (0, 5)]), ("b", &[(0, 1)])]),
        );
        assert_eq!(request.generation_id_or_member_epoch, -1);
        assert_eq!(request.topics.len(), 2);
        assert_eq!(request.topics[0].name.0.as_str(), "a");
        let partitions: Vec<(i32, i64)> = request.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.committed_offset))
            .collect();
        assert_eq!(partitions, [(0, 5), (1, 10)]);
        let mut encoded = bytes::BytesMut::new();
        request.encode(&mut encoded, OFFSET_COMMIT_VERSION).unwrap();
        assert!(!encoded.is_empty());
    }
}
