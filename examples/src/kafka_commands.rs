//! rkproxy's Kafka commands over redis-rs: [`KafkaCommands`] adds `kpush`, `kpop`, `kpartitions`
//! and `koffset` with typed results to every async redis-rs connection.
//!
//! A connection reaches a Kafka pool as its tenant's default pool, or with `USE pool`, which holds
//! for that connection only. redis-rs's multiplexed connection does not reconnect by itself: make
//! every connection with [`connect_to_pool`], which sends `USE` after redis-rs's own handshake
//! (AUTH, HELLO, SELECT from the URL). redis-rs's `ConnectionManager` reconnects on its own and has
//! no hook to run a command after connecting (redis 1.8), so with it use a tenant whose default
//! pool is the Kafka pool.
//!
//! ```no_run
//! use rkproxy_examples::kafka_commands::{connect_to_pool, KafkaCommands, LATEST};
//!
//! # async fn run() -> Result<(), rkproxy_examples::kafka_commands::KafkaCommandError> {
//! let client = redis::Client::open("redis://app1:app1-secret@127.0.0.1:7480/")?;
//! // KPUSH answers once Kafka acknowledged: allow more than redis-rs's default 500 ms.
//! let config = redis::AsyncConnectionConfig::new()
//!     .set_response_timeout(Some(std::time::Duration::from_secs(5)));
//! let mut kafka = connect_to_pool(&client, &config, "events").await?;
//! let pushed = kafka.kpush("orders", b"order 1").await?;
//! let record = kafka.kpop_at("orders", pushed.partition, pushed.offset).await?;
//! assert_eq!(record.and_then(|record| record.value), Some(b"order 1".to_vec()));
//! let next = kafka.kpop("orders").await?; // None when nothing is new for this tenant
//! let end = kafka.koffset("orders", pushed.partition, LATEST).await?;
//! assert!(end.offset > pushed.offset);
//! # let _ = next;
//! # Ok(())
//! # }
//! ```
//!
//! Kafka's own errors (`ERR kafka OFFSET_OUT_OF_RANGE: ...`) are [`KafkaCommandError::Kafka`],
//! with Kafka's error name; every other failure (an unknown topic, a permission, a wrong partition,
//! a lost connection) is redis-rs's error in [`KafkaCommandError::Redis`].

use std::future::Future;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, FromRedisValue, RedisError};

/// `koffset` time for the offset after the last record.
pub const LATEST: i64 = -1;
/// `koffset` time for the earliest offset Kafka still keeps.
pub const EARLIEST: i64 = -2;

/// Where KPUSH wrote a record, once Kafka acknowledged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    pub partition: i32,
    pub offset: i64,
}

/// A record read by KPOP; `value` is `None` for a Kafka tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub value: Option<Vec<u8>>,
}

/// KOFFSET's answer: the offset, and the record's timestamp in ms (-1 when Kafka gives none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAt {
    pub offset: i64,
    pub timestamp: i64,
}

/// Why a K* command failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaCommandError {
    /// Kafka reported an error; `name` is Kafka's name for it (`OFFSET_OUT_OF_RANGE`,
    /// `BROKER_NOT_AVAILABLE`, `REQUEST_TIMED_OUT`, ...), `message` rkproxy's whole reply.
    #[error("{message}")]
    Kafka { name: String, message: String },
    /// Any other failure: an error reply without a Kafka name, a lost connection, an unexpected
    /// reply shape.
    #[error(transparent)]
    Redis(#[from] RedisError),
}

impl KafkaCommandError {
    /// Kafka's error name, when Kafka reported the error.
    pub fn kafka_error_name(&self) -> Option<&str> {
        match self {
            KafkaCommandError::Kafka { name, .. } => Some(name),
            KafkaCommandError::Redis(_) => None,
        }
    }

    /// Sorts a redis-rs error: rkproxy writes Kafka's errors as `kafka NAME: details`, alone
    /// (`ERR kafka NAME: ...`) or inside a pool error (`ERR kafka pool 'p' unavailable: kafka
    /// NAME: ...`).
    fn from_redis(error: RedisError) -> Self {
        let message = match (error.code(), error.detail()) {
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            _ => return KafkaCommandError::Redis(error),
        };
        match kafka_error_name(&message) {
            Some(name) => KafkaCommandError::Kafka {
                name: name.to_owned(),
                message,
            },
            None => KafkaCommandError::Redis(error),
        }
    }
}

/// The `NAME` of the first ` kafka NAME: ` in an error line (upper case, digits and `_`).
fn kafka_error_name(message: &str) -> Option<&str> {
    let mut rest = message;
    while let Some(start) = rest.find("kafka ") {
        let at_word_start = start == 0 || rest[..start].ends_with(' ');
        let after = &rest[start + "kafka ".len()..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        let starts_upper = name.starts_with(|c: char| c.is_ascii_uppercase());
        if at_word_start && starts_upper && after[name_len..].starts_with(": ") {
            return Some(name);
        }
        rest = after;
    }
    None
}

/// Runs one K* command and converts its reply.
async fn run<C, T>(connection: &mut C, command: &redis::Cmd) -> Result<T, KafkaCommandError>
where
    C: ConnectionLike + Send,
    T: FromRedisValue,
{
    command
        .query_async(connection)
        .await
        .map_err(KafkaCommandError::from_redis)
}

type RawRecord = (i32, i64, Option<Vec<u8>>);

fn record((partition, offset, value): RawRecord) -> Record {
    Record {
        partition,
        offset,
        value,
    }
}

/// KPUSH, KPOP, KPARTITIONS and KOFFSET on any async redis-rs connection that is on a Kafka pool.
pub trait KafkaCommands: ConnectionLike + Send + Sized {
    /// Writes `value` to `topic`; the proxy picks the partition round-robin.
    fn kpush(
        &mut self,
        topic: &str,
        value: &[u8],
    ) -> impl Future<Output = Result<Pushed, KafkaCommandError>> + Send {
        let command = redis::cmd("KPUSH").arg(topic).arg(value).clone();
        async move {
            let (partition, offset) = run(self, &command).await?;
            Ok(Pushed { partition, offset })
        }
    }

    /// Writes `value` to `topic`'s `partition`.
    fn kpush_to(
        &mut self,
        topic: &str,
        partition: i32,
        value: &[u8],
    ) -> impl Future<Output = Result<Pushed, KafkaCommandError>> + Send {
        let command = redis::cmd("KPUSH")
            .arg(topic)
            .arg(partition)
            .arg(value)
            .clone();
        async move {
            let (partition, offset) = run(self, &command).await?;
            Ok(Pushed { partition, offset })
        }
    }

    /// The next record of `topic` for this tenant (offsets kept by the proxy: each record once per
    /// consumer group), or `None` when nothing is new.
    fn kpop(
        &mut self,
        topic: &str,
    ) -> impl Future<Output = Result<Option<Record>, KafkaCommandError>> + Send {
        let command = redis::cmd("KPOP").arg(topic).clone();
        async move {
            let reply: Option<RawRecord> = run(self, &command).await?;
            Ok(reply.map(record))
        }
    }

    /// The record at or after `offset` in `partition`, or `None`.
    fn kpop_at(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> impl Future<Output = Result<Option<Record>, KafkaCommandError>> + Send {
        let command = redis::cmd("KPOP")
            .arg(topic)
            .arg(partition)
            .arg(offset)
            .clone();
        async move {
            let reply: Option<RawRecord> = run(self, &command).await?;
            Ok(reply.map(record))
        }
    }

    /// Up to `count` records at or after `offset` in `partition`.
    fn kpop_many(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        count: u32,
    ) -> impl Future<Output = Result<Vec<Record>, KafkaCommandError>> + Send {
        let command = redis::cmd("KPOP")
            .arg(topic)
            .arg(partition)
            .arg(offset)
            .arg(count)
            .clone();
        async move {
            let reply: Vec<RawRecord> = run(self, &command).await?;
            Ok(reply.into_iter().map(record).collect())
        }
    }

    /// The topic's partition ids.
    fn kpartitions(
        &mut self,
        topic: &str,
    ) -> impl Future<Output = Result<Vec<i32>, KafkaCommandError>> + Send {
        let command = redis::cmd("KPARTITIONS").arg(topic).clone();
        async move { run(self, &command).await }
    }

    /// The first offset at or after `time` (ms) in `partition`, or the [`LATEST`] / [`EARLIEST`]
    /// offset.
    fn koffset(
        &mut self,
        topic: &str,
        partition: i32,
        time: i64,
    ) -> impl Future<Output = Result<OffsetAt, KafkaCommandError>> + Send {
        let command = redis::cmd("KOFFSET")
            .arg(topic)
            .arg(partition)
            .arg(time)
            .clone();
        async move {
            let (offset, timestamp) = run(self, &command).await?;
            Ok(OffsetAt { offset, timestamp })
        }
    }
}

impl<C: ConnectionLike + Send> KafkaCommands for C {}

/// A new multiplexed connection from `client` (which authenticates as its URL says) with `config`,
/// switched to `pool` with `USE`. Make every connection, reconnections included, this way.
pub async fn connect_to_pool(
    client: &redis::Client,
    config: &AsyncConnectionConfig,
    pool: &str,
) -> Result<MultiplexedConnection, KafkaCommandError> {
    let mut connection = client
        .get_multiplexed_async_connection_with_config(config)
        .await?;
    let () = redis::cmd("USE")
        .arg(pool)
        .query_async(&mut connection)
        .await?;
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::kafka_error_name;

    #[test]
    fn kafka_error_names_are_found_alone_and_inside_pool_errors() {
        assert_eq!(
            kafka_error_name("ERR kafka OFFSET_OUT_OF_RANGE: offset 3 is below 10"),
            Some("OFFSET_OUT_OF_RANGE")
        );
        assert_eq!(
            kafka_error_name(
                "ERR kafka pool 'events' unavailable: kafka BROKER_NOT_AVAILABLE: refused"
            ),
            Some("BROKER_NOT_AVAILABLE")
        );
        assert_eq!(kafka_error_name("ERR kafka offset store: down"), None);
        assert_eq!(
            kafka_error_name("ERR unknown topic 'x': it is not configured"),
            None
        );
        assert_eq!(kafka_error_name("ERR mykafka NAME: x"), None);
    }
}
