//! One topic partition as the bridge sees it: a lazily created rskafka partition client, the last known high
//! watermark, and the produce batcher that turns concurrent KPUSHes into one produce request.
//!
//! # Batching
//!
//! Each partition has one task that owns the produce side. KPUSH callers put their record on the task's
//! channel with a oneshot for the answer. The task takes the first record, waits up to `linger` for more (up to
//! `max_batch_records` records and `max_batch_bytes` value bytes), sends them as one produce request, and answers
//! every caller with its own offset once Kafka has acknowledged the batch. Only one produce request per partition
//! is in flight at a time, which keeps the order of records equal to the order the task received them and lets
//! records that arrive during a round trip form the next batch.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::Client;
use rskafka::record::Record;
use tokio::sync::{mpsc, oneshot, OnceCell};
use tokio::time::Instant;

use crate::error::KafkaError;

/// How many KPUSHes may wait for one partition before callers are slowed down (backpressure).
const PRODUCE_QUEUE_CAPACITY: usize = 4096;

/// Batching knobs, copied out of the pool configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchSettings {
    pub(crate) linger: Duration,
    pub(crate) max_records: usize,
    pub(crate) max_bytes: usize,
    pub(crate) request_timeout: Duration,
}

/// A record waiting to be produced and the caller waiting for its offset.
#[derive(Debug)]
struct PushRequest {
    value: Vec<u8>,
    reply: oneshot::Sender<Result<i64, KafkaError>>,
}

/// The shared, read-mostly state of one partition.
#[derive(Debug)]
pub(crate) struct PartitionShared {
    pub(crate) topic: String,
    pub(crate) id: i32,
    client: Arc<Client>,
    partition_client: OnceCell<Arc<PartitionClient>>,
    high_watermark: AtomicI64,
    pub(crate) request_timeout: Duration,
}

/// One partition: the shared state plus the sending end of its produce batcher.
#[derive(Debug)]
pub(crate) struct Partition {
    pub(crate) shared: Arc<PartitionShared>,
    producer: mpsc::Sender<PushRequest>,
    batch: BatchSettings,
}

// === impl PartitionShared ===

impl PartitionShared {
    /// The partition's rskafka client, created on first use; a failed creation (broker down) is retried on the
    /// next call, so the bridge recovers by itself once the broker is back.
    pub(crate) async fn partition_client(&self) -> Result<Arc<PartitionClient>, KafkaError> {
        let client = self
            .partition_client
            .get_or_try_init(|| async {
                // `Error` rather than `Retry`: a topic deleted behind our back must give a fast
                // UNKNOWN_TOPIC_OR_PARTITION, not a wait until the request timeout.
                let created = tokio::time::timeout(
                    self.request_timeout,
                    self.client.partition_client(
                        self.topic.clone(),
                        self.id,
                        UnknownTopicHandling::Error,
                    ),
                )
                .await
                .map_err(|_| self.timeout_error("connecting to the partition leader"))?
                .map_err(|error| KafkaError::from_rskafka(&error, &self.context()))?;
                Ok::<_, KafkaError>(Arc::new(created))
            })
            .await?;
        Ok(Arc::clone(client))
    }

    /// The last high watermark seen (0 before the first fetch or produce).
    pub(crate) fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Relaxed)
    }

    /// Records a high watermark seen in a response; it only ever moves up.
    pub(crate) fn note_high_watermark(&self, high_watermark: i64) {
        self.high_watermark
            .fetch_max(high_watermark, Ordering::Relaxed);
    }

    /// `topic 'orders' partition 2`, for error messages.
    pub(crate) fn context(&self) -> String {
        format!("topic '{}' partition {}", self.topic, self.id)
    }

    pub(crate) fn timeout_error(&self, doing: &str) -> KafkaError {
        KafkaError::Timeout {
            operation: format!("{doing} ({})", self.context()),
            after: self.request_timeout,
        }
    }
}

// === impl Partition ===

impl Partition {
    /// Creates the partition and spawns its produce batcher on the current tokio runtime. The batcher ends when
    /// the partition (and so the channel's sending end) is dropped.
    pub(crate) fn spawn(
        client: Arc<Client>,
        topic: String,
        id: i32,
        batch: BatchSettings,
    ) -> Partition {
        let shared = Arc::new(PartitionShared {
            topic,
            id,
            client,
            partition_client: OnceCell::new(),
            high_watermark: AtomicI64::new(0),
            request_timeout: batch.request_timeout,
        });
        let (producer, receiver) = mpsc::channel(PRODUCE_QUEUE_CAPACITY);
        tokio::spawn(run_batcher(Arc::clone(&shared), receiver, batch));
        Partition {
            shared,
            producer,
            batch,
        }
    }

    /// Produces one record through the batcher and returns its offset once Kafka acknowledged it.
    pub(crate) async fn push(&self, value: Vec<u8>) -> Result<i64, KafkaError> {
        let (reply, answer) = oneshot::channel();
        // A safety net above the batcher's own per-request timeout: a caller never waits longer than a queue
        // slot, one linger and two request timeouts, even if the queue is long because the broker is down.
        let deadline = self.batch.linger + self.batch.request_timeout * 2;
        let wait = async {
            self.producer
                .send(PushRequest { value, reply })
                .await
                .map_err(|_| KafkaError::Unavailable {
                    message: format!(
                        "the produce batcher of {} has stopped",
                        self.shared.context()
                    ),
                })?;
            answer.await.map_err(|_| KafkaError::Unavailable {
                message: format!(
                    "the produce batcher of {} dropped the request",
                    self.shared.context()
                ),
            })?
        };
        tokio::time::timeout(deadline, wait).await.map_err(|_| {
            self.shared
                .timeout_error("waiting for the produce acknowledgement")
        })?
    }
}

/// The produce batcher of one partition; see the module documentation.
async fn run_batcher(
    shared: Arc<PartitionShared>,
    mut receiver: mpsc::Receiver<PushRequest>,
    batch: BatchSettings,
) {
    // A request that did not fit into the previous batch (byte limit) starts the next one.
    let mut carried: Option<PushRequest> = None;
    loop {
        let first = match carried.take() {
            Some(request) => request,
            None => match receiver.recv().await {
                Some(request) => request,
                None => return,
            },
        };
        let mut bytes = first.value.len();
        let mut requests = vec![first];
        let linger_until = Instant::now() + batch.linger;
        while requests.len() < batch.max_records {
            let next = if batch.linger.is_zero() {
                receiver.try_recv().ok()
            } else {
                match tokio::time::timeout_at(linger_until, receiver.recv()).await {
                    Ok(next) => next,
                    // The linger is over: still take whatever is already queued, without waiting.
                    Err(_) => receiver.try_recv().ok(),
                }
            };
            let Some(next) = next else { break };
            if bytes + next.value.len() > batch.max_bytes {
                carried = Some(next);
                break;
            }
            bytes += next.value.len();
            requests.push(next);
        }
        produce_batch(&shared, requests).await;
    }
}

/// Sends one batch and answers every caller in it.
async fn produce_batch(shared: &PartitionShared, requests: Vec<PushRequest>) {
    // rskafka's chrono is built without its clock feature, so the timestamp comes from the std clock.
    let now_millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
    let now = rskafka::chrono::DateTime::from_timestamp_millis(now_millis).unwrap_or_default();
    let mut replies = Vec::with_capacity(requests.len());
    let mut records = Vec::with_capacity(requests.len());
    for request in requests {
        replies.push(request.reply);
        records.push(Record {
            key: None,
            value: Some(request.value),
            headers: Default::default(),
            timestamp: now,
        });
    }
    let outcome = async {
        let client = shared.partition_client().await?;
        tokio::time::timeout(
            shared.request_timeout,
            client.produce(records, Compression::NoCompression),
        )
        .await
        .map_err(|_| shared.timeout_error("producing"))?
        .map_err(|error| KafkaError::from_rskafka(&error, &shared.context()))
    }
    .await;
    match outcome {
        Ok(offsets) if offsets.len() == replies.len() => {
            if let Some(last) = offsets.last() {
                shared.note_high_watermark(last + 1);
            }
            for (reply, offset) in replies.into_iter().zip(offsets) {
                // The caller may have gone away (client disconnected); its record is written all the same.
                let _ = reply.send(Ok(offset));
            }
        }
        Ok(offsets) => {
            let error = KafkaError::Kafka {
                name: "INVALID_RESPONSE".into(),
                message: format!(
                    "Kafka acknowledged {} records of a batch of {} ({})",
                    offsets.len(),
                    replies.len(),
                    shared.context()
                ),
            };
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
        Err(error) => {
            tracing::warn!(topic = %shared.topic, partition = shared.id, error = %error, records = replies.len(), "produce failed");
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}
