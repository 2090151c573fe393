//! The bridge: executes parsed Kafka commands for a tenant against one Kafka pool.
//!
//! [`KafkaBridge::connect`] makes sure every configured topic exists with at least its configured partition
//! count, then serves commands. Every Kafka round trip is bounded by the pool's `request_timeout`, so a broker
//! that is down gives a fast error, and rskafka reconnects by itself on later commands once the broker is back.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rskafka::client::error::{Error as RsError, ProtocolError};
use rskafka::client::partition::OffsetAt;
use rskafka::client::{Client, ClientBuilder};
use rskafka::BackoffConfig;

use crate::admin;
use crate::command::{parse_command, KafkaCommand, OffsetQuery};
use crate::config::{Delivery, KafkaPoolConfig, TopicConfig};
use crate::cursor_admin::CursorAdmin;
use crate::delivery::{by_cursor, ConnectionDeliveries, ReleaseUnacked, Unacked};
use crate::error::KafkaError;
use crate::group_commit::GroupCommits;
use crate::offsets::{BoxFuture, CursorKey, CursorState, OffsetStore};
use crate::partition::{BatchSettings, Partition, PartitionShared};
use crate::prefetch::{GroupTopic, Limits, PartitionBuffer, Ready};
use crate::reply::KafkaReply;
use crate::security::PreparedSecurity;

/// How many missing offsets (gaps left by transaction markers or compaction) one managed KPOP skips over in a
/// partition before it moves on; the next KPOP continues where this one stopped.
const MAX_GAPS_PER_POP: usize = 64;

/// How far one consumer group is behind on one partition ([`KafkaBridge::consumer_lag`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub group: String,
    /// The offset the next record will get.
    pub high_watermark: i64,
    /// The group's next offset to lease.
    pub next_offset: i64,
    /// Records the group has not taken: from its cursor to the high watermark, plus those given back for a
    /// later KPOP.
    pub lag: i64,
}

impl PartitionLag {
    fn new(
        group: &str,
        partition: &PartitionShared,
        high_watermark: i64,
        cursor: &CursorState,
        unserved_here: usize,
    ) -> Self {
        // Given back, and leased by this process but not served yet (its prefetch window), count as not taken.
        let given_back = i64::try_from(cursor.given_back.len() + unserved_here).unwrap_or(i64::MAX);
        PartitionLag {
            topic: partition.topic.clone(),
            partition: partition.id,
            group: group.to_owned(),
            high_watermark,
            next_offset: cursor.next_offset,
            lag: (high_watermark - cursor.next_offset)
                .max(0)
                .saturating_add(given_back),
        }
    }
}

/// A connected Kafka pool that executes KPUSH, KPOP, KPARTITIONS and KOFFSET for tenants.
///
/// Cheap to clone; clones share connections, batchers and cursors.
#[derive(Debug, Clone)]
pub struct KafkaBridge {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: KafkaPoolConfig,
    topics: HashMap<String, Topic>,
    offsets: Arc<dyn OffsetStore>,
    /// The prefetch buffers of `KPOP topic`, per (group, topic), shared by every connection of the group.
    groups: Mutex<HashMap<(String, String), Arc<GroupTopic>>>,
    /// Copies delivered cursors to Kafka as consumer-group offsets; `None` when the pool commits none.
    group_commits: Option<GroupCommits>,
}

#[derive(Debug)]
struct Topic {
    config: TopicConfig,
    /// Sorted by partition id. Never empty: `connect` waits until Kafka shows at least the configured count,
    /// which validation keeps at 1 or more, so the round-robin `%` below never divides by zero.
    partitions: Vec<Partition>,
    next_push: AtomicUsize,
}

// === impl KafkaBridge ===

impl KafkaBridge {
    /// Connects to the pool's brokers and ensures its topics: a missing topic is created, a topic with fewer
    /// partitions than configured is grown (partitions never shrink; a topic with more keeps them all).
    ///
    /// Must be called inside a tokio runtime: each partition gets a produce-batching task.
    pub async fn connect(
        config: KafkaPoolConfig,
        offsets: Arc<dyn OffsetStore>,
    ) -> Result<Self, KafkaError> {
        config.validate().map_err(KafkaError::Config)?;
        let security = config.security.prepare()?;
        let timeout = config.request_timeout;
        let backoff = BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            base: 2.0,
            // rskafka retries broken connections with backoff, forever unless it has a deadline. Its retries
            // nest (a request retries, and so does the connect inside it), so their deadlines add up; the real
            // bound is our own `request_timeout` around every call, and a broker that is down is reported as
            // REQUEST_TIMED_OUT after that long (measured: 2.00 s with the default).
            deadline: Some(timeout),
        };
        let built = tokio::time::timeout(
            timeout,
            security
                .apply(
                    ClientBuilder::new(config.bootstrap.clone())
                        .client_id(config.client_id.clone())
                        .backoff_config(backoff),
                )
                .build(),
        )
        .await;
        let connecting = || format!("connecting to {}", config.bootstrap.join(","));
        let built_client = match built {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(error)) => Err(KafkaError::from_rskafka(&error, &connecting())),
            Err(_) => Err(KafkaError::Timeout {
                operation: connecting(),
                after: timeout,
            }),
        };
        let client = match built_client {
            Ok(client) => Arc::new(client),
            Err(error) => return Err(explain_connect_failure(&config, &security, error).await),
        };

        let partition_ids = ensure_topics(&client, &config, &security).await?;
        let batch = BatchSettings {
            linger: config.linger,
            max_records: config.max_batch_records,
            max_bytes: config.max_batch_bytes,
            request_timeout: timeout,
        };
        let mut topics = HashMap::new();
        for topic_config in &config.topics {
            let ids = partition_ids
                .get(&topic_config.name)
                .cloned()
                .unwrap_or_default();
            let partitions: Vec<Partition> = ids
                .into_iter()
                .map(|id| {
                    Partition::spawn(Arc::clone(&client), topic_config.name.clone(), id, batch)
                })
                .collect();
            // Connect to every leader now, so the first commands do not pay for it. Right after a topic was
            // created its leaders may not be known yet; that is retried until they are, within a deadline.
            for partition in &partitions {
                warm_up(&partition.shared, timeout * 5).await?;
            }
            topics.insert(
                topic_config.name.clone(),
                Topic {
                    config: topic_config.clone(),
                    partitions,
                    next_push: AtomicUsize::new(0),
                },
            );
        }
        let group_commits = GroupCommits::start(&config, security);
        Ok(KafkaBridge {
            inner: Arc::new(Inner {
                config,
                topics,
                offsets,
                groups: Mutex::new(HashMap::new()),
                group_commits,
            }),
        })
    }

    /// Parses and executes one command for `tenant`. Never panics; every failure is a [`KafkaReply::Error`].
    ///
    /// `args[0]` is the command name; the rest are its arguments as the client sent them.
    ///
    /// Without a connection's [`ConnectionDeliveries`], records of at-least-once topics are acknowledged only
    /// by `KACK` (or delivered again after `ack_timeout`); see [`KafkaBridge::execute_for`].
    pub async fn execute(&self, tenant: &str, args: &[&[u8]]) -> KafkaReply {
        self.execute_for(tenant, args, None).await
    }

    /// Like [`KafkaBridge::execute`], for a client connection: on at-least-once topics its next `KPOP topic`
    /// acknowledges what it received before, and what it has not acknowledged when `deliveries` is dropped is
    /// delivered again at once.
    pub async fn execute_for(
        &self,
        tenant: &str,
        args: &[&[u8]],
        deliveries: Option<&Arc<ConnectionDeliveries>>,
    ) -> KafkaReply {
        match parse_command(args) {
            Ok(command) => self
                .execute_command_for(tenant, command, deliveries)
                .await
                .unwrap_or_else(KafkaReply::from),
            Err(error) => error.into(),
        }
    }

    /// How many records `KPOP topic` of this bridge delivered again (at least once), by (group, topic),
    /// for the stats.
    pub fn redelivered(&self) -> Vec<((String, String), u64)> {
        let groups = self
            .inner
            .groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        groups
            .iter()
            .map(|(key, group)| (key.clone(), group.redelivered.load(Ordering::Relaxed)))
            .collect()
    }

    /// Executes an already parsed command for `tenant`.
    ///
    /// Replies: KPUSH `[partition, offset]`; KPOP `[partition, offset, value]` or nil; KPOP with a count an
    /// array of such triples (empty when nothing is there); KPARTITIONS an array of partition ids; KOFFSET
    /// `[offset, timestamp]`. All numbers are RESP integers.
    pub async fn execute_command(
        &self,
        tenant: &str,
        command: KafkaCommand<'_>,
    ) -> Result<KafkaReply, KafkaError> {
        self.execute_command_for(tenant, command, None).await
    }

    /// [`KafkaBridge::execute_command`] for a client connection; see [`KafkaBridge::execute_for`].
    pub async fn execute_command_for(
        &self,
        tenant: &str,
        command: KafkaCommand<'_>,
        deliveries: Option<&Arc<ConnectionDeliveries>>,
    ) -> Result<KafkaReply, KafkaError> {
        let topic = self.topic(command.topic())?;
        let allowed = if command.is_produce() {
            topic.config.may_produce(tenant)
        } else {
            topic.config.may_consume(tenant)
        };
        if !allowed {
            return Err(KafkaError::NotPermitted {
                tenant: tenant.to_string(),
                topic: topic.config.name.clone(),
                action: if command.is_produce() {
                    "produce to"
                } else {
                    "consume from"
                },
            });
        }
        match command {
            KafkaCommand::Push {
                partition, value, ..
            } => {
                let partition = match partition {
                    Some(id) => topic.partition(id)?,
                    None => topic.next_push_partition(),
                };
                let offset = partition.push(value.to_vec()).await?;
                Ok(KafkaReply::Array(vec![
                    KafkaReply::Integer(i64::from(partition.shared.id)),
                    KafkaReply::Integer(offset),
                ]))
            }
            KafkaCommand::PopManaged { topic: name } => {
                self.pop_managed(tenant, name, deliveries.cloned()).await
            }
            KafkaCommand::Ack {
                partition, offset, ..
            } => {
                let partition = topic.partition(partition)?;
                self.ack(tenant, &partition.shared, offset, deliveries)
                    .await
            }
            KafkaCommand::PopAt {
                partition,
                offset,
                count,
                ..
            } => {
                let partition = topic.partition(partition)?;
                self.pop_at(&partition.shared, offset, count).await
            }
            KafkaCommand::Partitions { .. } => Ok(KafkaReply::Array(
                topic
                    .partitions
                    .iter()
                    .map(|partition| KafkaReply::Integer(i64::from(partition.shared.id)))
                    .collect(),
            )),
            KafkaCommand::Offset { partition, at, .. } => {
                let partition = topic.partition(partition)?;
                self.offset(&partition.shared, at).await
            }
        }
    }

    /// Runs `RKPROXY KOFFSETS` (the cursors, see [`KafkaReply::cursors`]) or `RKPROXY KRESET` (`+OK`). Never
    /// panics; every failure is a [`KafkaReply::Error`].
    pub async fn run_cursor_admin(&self, command: &CursorAdmin) -> KafkaReply {
        let ran = match command {
            CursorAdmin::Show { group, topic } => self
                .show_cursors(group, topic)
                .await
                .map(|cursors| KafkaReply::cursors(&cursors)),
            CursorAdmin::Reset {
                group,
                topic,
                partition,
                next_offset,
            } => self
                .reset_cursor(group, topic, *partition, *next_offset)
                .await
                .map(|()| KafkaReply::Ok),
        };
        ran.unwrap_or_else(KafkaReply::from)
    }

    /// The cursor of every partition of `topic` for `group`, for an admin command.
    pub async fn show_cursors(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Vec<(i32, CursorState)>, KafkaError> {
        let topic = self.topic(topic)?;
        let mut states = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            let key = cursor_key(group, &partition.shared);
            states.push((partition.shared.id, self.inner.offsets.show(&key).await?));
        }
        Ok(states)
    }

    /// Sets the cursor of `group` on one partition to `next_offset` (an admin repair). This process's
    /// prefetched records of that partition are dropped, so its next `KPOP topic` reads from `next_offset`
    /// (other proxies sharing the store serve what they had prefetched first), and the reset is noted for the
    /// group's offsets in Kafka, which show `next_offset` after the next commit.
    pub async fn reset_cursor(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), KafkaError> {
        let topic = self.topic(topic)?;
        let index = topic.partition_index(partition)?;
        let key = cursor_key(group, &topic.partitions[index].shared);
        let buffer = self.existing_buffer(group, topic, index);
        // Held across the reset, so no refill of this process adds a block leased before it.
        let _refilling = match &buffer {
            Some(buffer) => Some(buffer.refill.lock().await),
            None => None,
        };
        self.inner.offsets.reset(&key, next_offset).await?;
        if let Some(buffer) = &buffer {
            buffer.state().clear();
        }
        if let Some(commits) = &self.inner.group_commits {
            commits.note_reset(&key, next_offset.max(0));
        }
        Ok(())
    }

    /// The buffer of `group` on the topic's partition at `index` in this process, if it has been made.
    fn existing_buffer(
        &self,
        group: &str,
        topic: &Topic,
        index: usize,
    ) -> Option<Arc<PartitionBuffer>> {
        let groups = self
            .inner
            .groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let buffers = groups.get(&(group.to_string(), topic.config.name.clone()))?;
        buffers.partitions.get(index).cloned()
    }

    /// The lag of each of `groups` on every partition of `topic`: one ListOffsets per partition (the high
    /// watermark, asked of Kafka now) and one cursor read per group and partition, each bounded by the request
    /// timeout. For the stats, read when asked, never per command.
    pub async fn consumer_lag(
        &self,
        topic: &str,
        groups: &[String],
    ) -> Result<Vec<PartitionLag>, KafkaError> {
        let topic = self.topic(topic)?;
        let mut rows = Vec::with_capacity(topic.partitions.len() * groups.len());
        for partition in &topic.partitions {
            let shared = &partition.shared;
            let high_watermark = list_offset(shared, OffsetAt::Latest).await?;
            for group in groups {
                let key = cursor_key(group, shared);
                let cursor =
                    with_timeout(shared, "reading a cursor", self.inner.offsets.show(&key))
                        .await??;
                let unserved = self.unserved_in_process(group, topic, partition.shared.id);
                rows.push(PartitionLag::new(
                    group,
                    shared,
                    high_watermark,
                    &cursor,
                    unserved,
                ));
            }
        }
        Ok(rows)
    }

    /// The pool configuration this bridge was connected with.
    pub fn config(&self) -> &KafkaPoolConfig {
        &self.inner.config
    }

    fn topic(&self, name: &str) -> Result<&Topic, KafkaError> {
        self.inner
            .topics
            .get(name)
            .ok_or_else(|| KafkaError::UnknownTopic {
                topic: name.to_string(),
            })
    }

    /// `KPOP topic partition offset [count]`: a stateless fetch; never touches the cursors.
    async fn pop_at(
        &self,
        partition: &PartitionShared,
        offset: i64,
        count: Option<u32>,
    ) -> Result<KafkaReply, KafkaError> {
        let (max_bytes, max_records) = match count {
            // One byte still returns the whole first record batch (Kafka always returns at least one batch),
            // and no more: the smallest fetch that has the record.
            None => (1, 1),
            Some(count) => (self.inner.config.fetch_max_bytes, count as usize),
        };
        let records = match fetch(partition, offset, max_bytes, self.fetch_max_wait_ms()).await {
            Ok(records) => records,
            Err(FetchError::OutOfRange) => {
                let earliest = list_offset(partition, OffsetAt::Earliest).await?;
                if offset < earliest {
                    return Err(KafkaError::Kafka {
                        name: "OFFSET_OUT_OF_RANGE".into(),
                        message: format!(
                            "offset {offset} is below the earliest kept offset {earliest} of {}",
                            partition.context()
                        ),
                    });
                }
                Vec::new()
            }
            Err(FetchError::Other(error)) => return Err(error),
        };
        let mut triples = records
            .into_iter()
            .take(max_records)
            .map(|record| KafkaReply::record(partition.id, record.offset, record.record.value));
        match count {
            None => Ok(triples.next().unwrap_or(KafkaReply::Nil)),
            Some(_) => Ok(KafkaReply::Array(triples.collect())),
        }
    }

    /// `KPOP topic`: the next record for the tenant's group, from this process's prefetch buffers (fairly:
    /// each KPOP starts at the next partition), refilling an empty buffer when none has a record ready.
    ///
    /// The work runs in its own task, so that a caller that goes away (a client that disconnects) does not
    /// interrupt a refill halfway; leased offsets stay in the buffer for the next KPOP.
    async fn pop_managed(
        &self,
        tenant: &str,
        topic_name: &str,
        deliveries: Option<Arc<ConnectionDeliveries>>,
    ) -> Result<KafkaReply, KafkaError> {
        let bridge = self.clone();
        let group = tenant.to_string();
        let topic_name = topic_name.to_string();
        let acknowledging = deliveries.clone();
        let task = tokio::spawn(async move {
            let topic = bridge.topic(&topic_name)?;
            let delivery = topic.config.delivery_for(&group);
            if let (Delivery::AtLeastOnce, Some(deliveries)) = (delivery, &acknowledging) {
                // The connection's next KPOP on the topic acknowledges what it received before.
                bridge.ack_all(deliveries.take_topic(&topic_name)).await;
            }
            let buffers = bridge.group_topic(&group, topic);
            let Some((partition, ready)) = bridge.next_record(&group, topic, &buffers).await?
            else {
                return Ok(None);
            };
            if ready.redelivered {
                buffers.redelivered.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, KafkaError>(Some((cursor_key(&group, partition), delivery, ready)))
        });
        let popped = task.await.map_err(|join_error| KafkaError::Unavailable {
            message: format!("the KPOP task failed: {join_error}"),
        })??;
        let Some((key, delivery, ready)) = popped else {
            return Ok(KafkaReply::Nil);
        };
        // Recorded here, not in the task: a caller that gave up (the pool's command timeout) never passes the
        // record on, so it must stay unacknowledged for the store to deliver it again.
        if let (Delivery::AtLeastOnce, Some(deliveries)) = (delivery, &deliveries) {
            deliveries.record(Unacked {
                releaser: Arc::clone(&self.inner) as Arc<dyn ReleaseUnacked>,
                key: key.clone(),
                offset: ready.offset,
            });
        }
        self.record_delivered(&key, ready.offset);
        Ok(KafkaReply::record(key.partition, ready.offset, ready.value))
    }

    /// Offsets of `partition` this process leased for `group` and has not served (0 without buffers). Other
    /// processes' windows are not known here: with several proxies the lag reads low by their windows.
    fn unserved_in_process(&self, group: &str, topic: &Topic, partition: i32) -> usize {
        let groups = self
            .inner
            .groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(buffers) = groups.get(&(group.to_string(), topic.config.name.clone())) else {
            return 0;
        };
        let index = topic
            .partitions
            .iter()
            .position(|known| known.shared.id == partition);
        index
            .and_then(|index| buffers.partitions.get(index))
            .map_or(0, |buffer| buffer.state().unserved_count())
    }

    /// The group's buffers for `topic` in this process, made on first use.
    fn group_topic(&self, group: &str, topic: &Topic) -> Arc<GroupTopic> {
        let mut groups = self
            .inner
            .groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = groups
            .entry((group.to_string(), topic.config.name.clone()))
            .or_insert_with(|| Arc::new(GroupTopic::new(topic.partitions.len())));
        Arc::clone(entry)
    }

    /// The next record for `group`: first from any buffer that has one ready (starting round-robin), else by
    /// refilling each partition's buffer in turn. `None` when no partition has anything new.
    async fn next_record<'t>(
        &self,
        group: &str,
        topic: &'t Topic,
        buffers: &GroupTopic,
    ) -> Result<Option<(&'t PartitionShared, Ready)>, KafkaError> {
        let limits = prefetch_limits(&topic.config);
        let count = topic.partitions.len();
        let start = buffers.next_pop.fetch_add(1, Ordering::Relaxed);
        for step in 0..count {
            let index = (start + step) % count;
            let buffer = &buffers.partitions[index];
            let (taken, wants_refill) = {
                let mut state = buffer.state();
                let taken = state.take(Instant::now());
                (taken, state.wants_refill(limits))
            };
            if let Some(ready) = taken {
                if wants_refill {
                    self.refill_in_background(group, topic, index, buffer);
                }
                return Ok(Some((&topic.partitions[index].shared, ready)));
            }
        }
        for step in 0..count {
            let index = (start + step) % count;
            let buffer = &buffers.partitions[index];
            let partition = &topic.partitions[index].shared;
            let _refilling = buffer.refill.lock().await;
            // Another KPOP may have refilled it while this one waited.
            let waiting = buffer.state().take(Instant::now());
            if let Some(ready) = waiting {
                return Ok(Some((partition, ready)));
            }
            self.refill(group, partition, buffer, &topic.config).await?;
            let refilled = buffer.state().take(Instant::now());
            if let Some(ready) = refilled {
                return Ok(Some((partition, ready)));
            }
        }
        Ok(None)
    }

    /// Starts a refill of a buffer that runs low, unless one is already running; KPOPs keep being served from
    /// what is left meanwhile.
    fn refill_in_background(
        &self,
        group: &str,
        topic: &Topic,
        index: usize,
        buffer: &Arc<PartitionBuffer>,
    ) {
        let Ok(refilling) = Arc::clone(&buffer.refill).try_lock_owned() else {
            return;
        };
        let bridge = self.clone();
        let group = group.to_string();
        let topic_name = topic.config.name.clone();
        let buffer = Arc::clone(buffer);
        tokio::spawn(async move {
            let _refilling = refilling;
            let Ok(topic) = bridge.topic(&topic_name) else {
                return;
            };
            let partition = &topic.partitions[index].shared;
            if let Err(error) = bridge
                .refill(&group, partition, &buffer, &topic.config)
                .await
            {
                tracing::debug!(group, topic = %topic_name, partition = partition.id, error = %error, "background prefetch failed; the next KPOP tries again");
            }
        });
    }

    /// Fills one (group, partition) buffer: leases a block of offsets from the store when none is waiting,
    /// then fetches records for the leased offsets. Runs under the buffer's refill lock.
    async fn refill(
        &self,
        group: &str,
        partition: &PartitionShared,
        buffer: &PartitionBuffer,
        config: &TopicConfig,
    ) -> Result<(), KafkaError> {
        let limits = prefetch_limits(config);
        let key = cursor_key(group, partition);
        buffer.state().drop_expired_leases(Instant::now());
        let has_leased = buffer.state().has_leased();
        if !has_leased && !self.lease_into(&key, partition, buffer, config).await? {
            return Ok(());
        }
        for _ in 0..MAX_GAPS_PER_POP {
            let (first, budget) = {
                let state = buffer.state();
                (state.next_fetch_offset(), state.fetch_budget(limits))
            };
            let Some(first) = first else {
                return Ok(());
            };
            let budget = i32::try_from(budget).unwrap_or(i32::MAX);
            match fetch(partition, first, budget, 0).await {
                Ok(records) => {
                    // Below the high watermark yet empty: not readable yet. The offsets stay leased here.
                    if records.is_empty() {
                        return Ok(());
                    }
                    let records = records
                        .into_iter()
                        .map(|record| (record.offset, record.record.value))
                        .collect();
                    let mut state = buffer.state();
                    state.accept_fetched(records);
                    if state.has_ready() || !state.has_leased() {
                        return Ok(());
                    }
                }
                Err(FetchError::OutOfRange) => {
                    let earliest = list_offset(partition, OffsetAt::Earliest).await?;
                    if first >= earliest {
                        return Ok(());
                    }
                    // Retention deleted the records below `earliest`: they can never be delivered, so the
                    // leases below it are dropped and the cursor jumps to the first kept record.
                    let dropped = buffer.state().drop_leased_below(earliest);
                    tracing::warn!(group, topic = %partition.topic, partition = partition.id, first, earliest, dropped, "records deleted before they were consumed; skipping ahead");
                    let store = &self.inner.offsets;
                    with_timeout(partition, "moving a cursor", store.skip_to(&key, earliest))
                        .await??;
                }
                Err(FetchError::Other(error)) => return Err(error),
            }
        }
        Ok(())
    }

    /// Leases a block of offsets into the buffer (as many as it has room for); false when there is nothing
    /// new. A store with nothing below our high watermark gets one more try after asking Kafka for it, as
    /// another proxy or client may have produced since.
    async fn lease_into(
        &self,
        key: &CursorKey,
        partition: &PartitionShared,
        buffer: &PartitionBuffer,
        config: &TopicConfig,
    ) -> Result<bool, KafkaError> {
        let room = buffer.state().room(prefetch_limits(config));
        if room == 0 {
            return Ok(false);
        }
        let hold = match config.delivery_for(&key.group) {
            Delivery::AtLeastOnce => Some(config.ack_timeout),
            Delivery::AtMostOnce => None,
        };
        let store = &self.inner.offsets;
        let mut refreshed = false;
        loop {
            // Taken before the store call, so the local deadline is never later than the store's.
            let leased_at = Instant::now();
            let leased = with_timeout(
                partition,
                "leasing offsets",
                store.lease_block(key, partition.high_watermark(), room, hold),
            )
            .await??;
            let Some(lease) = leased else {
                if refreshed {
                    return Ok(false);
                }
                refreshed = true;
                let known = partition.high_watermark();
                // `list_offset` records the new high watermark itself.
                let latest = list_offset(partition, OffsetAt::Latest).await?;
                if latest <= known {
                    return Ok(false);
                }
                continue;
            };
            if let Some(next_offset) = lease.cursor_advanced_to {
                self.cursor_advanced(key, next_offset);
            }
            let expires = hold.map(|hold| leased_at + hold);
            buffer.state().add_lease(&lease, expires);
            return Ok(true);
        }
    }

    /// The one place where a record handed to a client is noted for the group's offsets in Kafka: copied there
    /// as the consumer group's committed offset (asynchronously, in batches; see `group_commit`).
    fn record_delivered(&self, key: &CursorKey, delivered_offset: i64) {
        if let Some(commits) = &self.inner.group_commits {
            commits.note_delivered(key, delivered_offset);
        }
    }

    /// The one place where a group's cursor moves: `key`'s cursor now stands at `next_offset` in the offset
    /// store (every offset below it was leased by some proxy process). Called once per leased block, after
    /// the store moved the cursor and before any of the block's records is served.
    ///
    /// Hook for mirroring cursors elsewhere (for example committing them to Kafka as the consumer group's
    /// offsets). In at-least-once mode, leased offsets below it may still be pending (not acknowledged).
    fn cursor_advanced(&self, key: &CursorKey, next_offset: i64) {
        tracing::trace!(group = %key.group, topic = %key.topic, partition = key.partition, next_offset, "cursor advanced");
    }

    /// `KACK topic partition offset`: acknowledges one record of the group; `1` if it was pending.
    async fn ack(
        &self,
        group: &str,
        partition: &PartitionShared,
        offset: i64,
        deliveries: Option<&Arc<ConnectionDeliveries>>,
    ) -> Result<KafkaReply, KafkaError> {
        let key = cursor_key(group, partition);
        if let Some(deliveries) = deliveries {
            deliveries.forget(&key, offset);
        }
        let acked = with_timeout(
            partition,
            "acknowledging a record",
            self.inner.offsets.ack(&key, &[offset]),
        )
        .await??;
        Ok(KafkaReply::Integer(
            i64::try_from(acked).unwrap_or(i64::MAX),
        ))
    }

    /// Acknowledges records a connection received (its next KPOP on their topic). A failure only means they
    /// are delivered again after their ack timeout, which at least once allows: it is logged, not returned.
    async fn ack_all(&self, records: Vec<Unacked>) {
        for (key, (_, offsets)) in by_cursor(records) {
            let timeout = self.inner.config.request_timeout;
            let acked = tokio::time::timeout(timeout, self.inner.offsets.ack(&key, &offsets)).await;
            if !matches!(acked, Ok(Ok(_))) {
                tracing::warn!(group = %key.group, topic = %key.topic, partition = key.partition, records = offsets.len(), "could not acknowledge records; they will be delivered again");
            }
        }
    }

    /// `KOFFSET topic partition time`: `[offset, timestamp]`. Kafka reports timestamp -1 for the earliest and
    /// latest queries; for a timestamp query it is the found record's timestamp, and `[-1, -1]` means no record
    /// is that recent.
    async fn offset(
        &self,
        partition: &PartitionShared,
        at: OffsetQuery,
    ) -> Result<KafkaReply, KafkaError> {
        let pair = |offset: i64, timestamp: i64| {
            Ok(KafkaReply::Array(vec![
                KafkaReply::Integer(offset),
                KafkaReply::Integer(timestamp),
            ]))
        };
        match at {
            OffsetQuery::Latest => pair(list_offset(partition, OffsetAt::Latest).await?, -1),
            OffsetQuery::Earliest => pair(list_offset(partition, OffsetAt::Earliest).await?, -1),
            OffsetQuery::Timestamp(millis) => {
                let Some(time) = rskafka::chrono::DateTime::from_timestamp_millis(millis) else {
                    return Err(KafkaError::InvalidArgument {
                        what: format!("time {millis} is out of range"),
                    });
                };
                let offset = list_offset(partition, OffsetAt::Timestamp(time)).await?;
                if offset < 0 {
                    return pair(-1, -1);
                }
                // rskafka drops the timestamp Kafka sends with the offset, so read it from the record itself.
                let timestamp = match fetch(partition, offset, 1, 0).await {
                    Ok(records) => records
                        .into_iter()
                        .next()
                        .map(|record| record.record.timestamp.timestamp_millis())
                        .unwrap_or(-1),
                    Err(FetchError::OutOfRange) => -1,
                    Err(FetchError::Other(error)) => return Err(error),
                };
                pair(offset, timestamp)
            }
        }
    }

    fn fetch_max_wait_ms(&self) -> i32 {
        i32::try_from(self.inner.config.fetch_max_wait.as_millis()).unwrap_or(i32::MAX)
    }
}

// === impl Inner ===

impl Inner {
    /// Notes offsets that go back to the group (given back, or released unacknowledged) for its offsets in
    /// Kafka: the commit steps back to the lowest, so Kafka's lag counts them until they are delivered again.
    fn note_given_back(&self, key: &CursorKey, offsets: &[i64]) {
        if let (Some(commits), Some(lowest)) = (&self.group_commits, offsets.iter().min()) {
            commits.note_given_back(key, *lowest);
        }
    }
}

/// Records a closed connection had not acknowledged are made due at once, so the group gets them again
/// without waiting for their ack timeout. A failure leaves them to the timeout.
impl ReleaseUnacked for Inner {
    fn release_unacked<'a>(&'a self, key: &'a CursorKey, offsets: &'a [i64]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.note_given_back(key, offsets);
            let timeout = self.config.request_timeout;
            let released = tokio::time::timeout(timeout, self.offsets.release(key, offsets)).await;
            if !matches!(released, Ok(Ok(()))) {
                tracing::warn!(group = %key.group, topic = %key.topic, partition = key.partition, records = offsets.len(), "could not release unacknowledged records; they will be delivered again after their ack timeout");
            }
        })
    }
}

/// A bridge replaced by a reload (or shut down) gives back the offsets it leased and did not serve, so the
/// group gets them from the next bridge instead of losing them (at least once: makes them due at once).
impl Drop for Inner {
    fn drop(&mut self) {
        let groups = std::mem::take(
            &mut *self
                .groups
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let mut unserved = Vec::new();
        for ((group, topic_name), buffers) in groups {
            let Some(topic) = self.topics.get(&topic_name) else {
                continue;
            };
            let delivery = topic.config.delivery_for(&group);
            for (partition, buffer) in topic.partitions.iter().zip(&buffers.partitions) {
                let offsets = buffer.state().unserved_offsets();
                if let (Some(commits), Some(lowest)) = (&self.group_commits, offsets.first()) {
                    // Noted before the commit handle is dropped with `self`, so its last commit has it.
                    commits.note_given_back(&cursor_key(&group, &partition.shared), *lowest);
                }
                if !offsets.is_empty() {
                    unserved.push((cursor_key(&group, &partition.shared), delivery, offsets));
                }
            }
        }
        if unserved.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = Arc::clone(&self.offsets);
        let timeout = self.config.request_timeout;
        runtime.spawn(async move {
            for (key, delivery, offsets) in unserved {
                let given_back = tokio::time::timeout(timeout, async {
                    match delivery {
                        Delivery::AtLeastOnce => store.release(&key, &offsets).await,
                        Delivery::AtMostOnce => {
                            for offset in &offsets {
                                store.give_back(&key, *offset).await?;
                            }
                            Ok(())
                        }
                    }
                })
                .await;
                if !matches!(given_back, Ok(Ok(()))) {
                    tracing::warn!(group = %key.group, topic = %key.topic, partition = key.partition, records = offsets.len(), "could not give prefetched offsets back; at most once loses them");
                }
            }
        });
    }
}

// === impl Topic ===

impl Topic {
    fn partition(&self, id: i32) -> Result<&Partition, KafkaError> {
        Ok(&self.partitions[self.partition_index(id)?])
    }

    /// Where partition `id` is in `partitions` (and in a group's buffers).
    fn partition_index(&self, id: i32) -> Result<usize, KafkaError> {
        self.partitions
            .iter()
            .position(|partition| partition.shared.id == id)
            .ok_or_else(|| KafkaError::WrongPartition {
                topic: self.config.name.clone(),
                partition: id,
                first: self.partitions.first().map_or(0, |p| p.shared.id),
                last: self.partitions.last().map_or(0, |p| p.shared.id),
            })
    }

    fn next_push_partition(&self) -> &Partition {
        let index = self.next_push.fetch_add(1, Ordering::Relaxed) % self.partitions.len();
        &self.partitions[index]
    }
}

// === Kafka round trips ===

enum FetchError {
    /// OFFSET_OUT_OF_RANGE: the offset is below the log start or above the high watermark.
    OutOfRange,
    Other(KafkaError),
}

/// Fetches records at or after `offset`, noting the high watermark on the way.
async fn fetch(
    partition: &PartitionShared,
    offset: i64,
    max_bytes: i32,
    max_wait_ms: i32,
) -> Result<Vec<rskafka::record::RecordAndOffset>, FetchError> {
    let client = partition
        .partition_client()
        .await
        .map_err(FetchError::Other)?;
    // rskafka sends `end - 1` as the byte limit.
    let bytes = 1..max_bytes.saturating_add(1);
    let fetched = tokio::time::timeout(
        partition.request_timeout,
        client.fetch_records(offset, bytes, max_wait_ms),
    )
    .await
    .map_err(|_| FetchError::Other(partition.timeout_error("fetching")))?;
    match fetched {
        Ok((records, high_watermark)) => {
            partition.note_high_watermark(high_watermark);
            Ok(records)
        }
        Err(RsError::ServerError {
            protocol_error: ProtocolError::OffsetOutOfRange,
            ..
        }) => Err(FetchError::OutOfRange),
        Err(error) => Err(FetchError::Other(KafkaError::from_rskafka(
            &error,
            &format!("{} offset {offset}", partition.context()),
        ))),
    }
}

/// Kafka's ListOffsets for one partition.
async fn list_offset(partition: &PartitionShared, at: OffsetAt) -> Result<i64, KafkaError> {
    let client = partition.partition_client().await?;
    let offset = tokio::time::timeout(partition.request_timeout, client.get_offset(at))
        .await
        .map_err(|_| partition.timeout_error("listing offsets"))?
        .map_err(|error| KafkaError::from_rskafka(&error, &partition.context()))?;
    if at == OffsetAt::Latest {
        partition.note_high_watermark(offset);
    }
    Ok(offset)
}

/// Bounds an offset-store call by the request timeout, like every Kafka call.
async fn with_timeout<T>(
    partition: &PartitionShared,
    doing: &str,
    future: impl std::future::Future<Output = T>,
) -> Result<T, KafkaError> {
    tokio::time::timeout(partition.request_timeout, future)
        .await
        .map_err(|_| partition.timeout_error(doing))
}

fn prefetch_limits(config: &TopicConfig) -> Limits {
    Limits {
        records: config.prefetch_records.max(1),
        bytes: config.prefetch_bytes.max(1),
    }
}

fn cursor_key(group: &str, partition: &PartitionShared) -> CursorKey {
    CursorKey {
        group: group.to_string(),
        topic: partition.topic.clone(),
        partition: partition.id,
    }
}

/// rskafka retries a refused login or a rejected certificate like a broken connection until its deadline,
/// which ends up as a timeout without the cause. On a secured pool, one connection of our own (TLS and SASL,
/// no retries) to the first bootstrap broker finds the cause: its error replaces `error` when it fails.
///
/// A refused connection is retried the same way, and rskafka's deadline and ours around the connect are
/// the same length: whichever fires first named the error. So a timeout is probed too, and a broker that
/// refuses connections is reported as not available (BROKER_NOT_AVAILABLE), never as REQUEST_TIMED_OUT.
async fn explain_connect_failure(
    config: &KafkaPoolConfig,
    security: &PreparedSecurity,
    error: KafkaError,
) -> KafkaError {
    let worth_probing = security.is_secured() || matches!(error, KafkaError::Timeout { .. });
    let (Some(broker), true) = (config.bootstrap.first(), worth_probing) else {
        return error;
    };
    let probe = tokio::time::timeout(
        config.request_timeout,
        security.connect(broker, &config.client_id),
    )
    .await;
    match probe {
        Ok(Err(cause)) => cause,
        Ok(Ok(_)) | Err(_) => error,
    }
}

/// Creates missing topics and grows small ones, then waits until the metadata shows every configured topic with
/// at least its configured partitions. Returns the partition ids of each configured topic.
async fn ensure_topics(
    client: &Client,
    config: &KafkaPoolConfig,
    security: &PreparedSecurity,
) -> Result<HashMap<String, BTreeSet<i32>>, KafkaError> {
    let timeout = config.request_timeout;
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let existing = list_topics(client, timeout).await?;
    let controller = client
        .controller_client()
        .map_err(|error| KafkaError::from_rskafka(&error, "opening the controller client"))?;
    for topic in &config.topics {
        match existing.get(&topic.name) {
            None => {
                tracing::info!(topic = %topic.name, partitions = topic.partitions, "creating Kafka topic");
                let created = tokio::time::timeout(
                    timeout,
                    controller.create_topic(
                        topic.name.clone(),
                        topic.partitions,
                        topic.replication_factor,
                        timeout_ms,
                    ),
                )
                .await
                .map_err(|_| KafkaError::Timeout {
                    operation: format!("creating topic '{}'", topic.name),
                    after: timeout,
                })?;
                match created {
                    Ok(()) => {}
                    // Another proxy created it at the same moment; the growth check below still applies.
                    Err(RsError::ServerError {
                        protocol_error: ProtocolError::TopicAlreadyExists,
                        ..
                    }) => {}
                    Err(error) => {
                        return Err(KafkaError::from_rskafka(
                            &error,
                            &format!("creating topic '{}'", topic.name),
                        ))
                    }
                }
            }
            Some(ids) if (ids.len() as i64) < i64::from(topic.partitions) => {
                tracing::info!(topic = %topic.name, from = ids.len(), to = topic.partitions, "adding partitions to Kafka topic");
                let grown = admin::create_partitions(
                    security,
                    &config.bootstrap,
                    &config.client_id,
                    &topic.name,
                    topic.partitions,
                    timeout,
                )
                .await;
                match grown {
                    Ok(()) => {}
                    // Another proxy grew it at the same moment (to at least as many, checked below).
                    Err(error) if error.kafka_error_name() == Some("INVALID_PARTITIONS") => {}
                    Err(error) => return Err(error),
                }
            }
            Some(_) => {}
        }
    }

    // New topics and partitions show up in the metadata a little later; wait for them, within a deadline.
    let deadline = tokio::time::Instant::now() + timeout * 10;
    loop {
        let current = list_topics(client, timeout).await?;
        let missing: Vec<&TopicConfig> = config
            .topics
            .iter()
            .filter(|topic| {
                current
                    .get(&topic.name)
                    .is_none_or(|ids| (ids.len() as i64) < i64::from(topic.partitions))
            })
            .collect();
        if missing.is_empty() {
            return Ok(config
                .topics
                .iter()
                .map(|topic| {
                    (
                        topic.name.clone(),
                        current.get(&topic.name).cloned().unwrap_or_default(),
                    )
                })
                .collect());
        }
        if tokio::time::Instant::now() >= deadline {
            let names: Vec<&str> = missing.iter().map(|topic| topic.name.as_str()).collect();
            return Err(KafkaError::Config(format!(
                "topics {} do not show their configured partitions in Kafka's metadata",
                names.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn list_topics(
    client: &Client,
    timeout: Duration,
) -> Result<HashMap<String, BTreeSet<i32>>, KafkaError> {
    let topics = tokio::time::timeout(timeout, client.list_topics())
        .await
        .map_err(|_| KafkaError::Timeout {
            operation: "listing topics".into(),
            after: timeout,
        })?
        .map_err(|error| KafkaError::from_rskafka(&error, "listing topics"))?;
    Ok(topics
        .into_iter()
        .map(|topic| (topic.name, topic.partitions))
        .collect())
}

/// Creates the partition's client, retrying the errors a brand-new topic gives until its leader is known.
async fn warm_up(partition: &PartitionShared, within: Duration) -> Result<(), KafkaError> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match partition.partition_client().await {
            Ok(_) => return Ok(()),
            Err(error) if tokio::time::Instant::now() >= deadline => return Err(error),
            Err(error) => {
                tracing::debug!(topic = %partition.topic, partition = partition.id, error = %error, "partition not ready yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
