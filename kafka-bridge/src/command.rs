//! Parsing of the Kafka commands: a pure function from argument byte slices to a [`KafkaCommand`].
//!
//! The forms are the seed's:
//!
//! | command | meaning |
//! |---|---|
//! | `KPUSH topic value` | produce; the bridge picks the partition round-robin |
//! | `KPUSH topic partition value` | produce to that partition |
//! | `KPOP topic` | consume with offsets managed by the bridge (one cursor per tenant, topic and partition) |
//! | `KPOP topic partition offset [count]` | read at an offset the application manages; never touches cursors |
//! | `KACK topic partition offset` | acknowledges a record `KPOP topic` delivered (at-least-once topics): `1` if it was pending, else `0` |
//! | `KPARTITIONS topic` | the partition ids |
//! | `KOFFSET topic partition time` | the offset for a timestamp in ms, `-1` = latest, `-2` = earliest |
//!
//! Unlike the seed (which closed the connection), a non-numeric partition or offset is a plain error reply.

use crate::error::KafkaError;

/// The largest `count` accepted by `KPOP topic partition offset count`, which bounds one reply's size.
pub const MAX_POP_COUNT: u32 = 1000;

/// A parsed Kafka command; borrows the topic and value from the request's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KafkaCommand<'a> {
    /// `KPUSH topic [partition] value`.
    Push {
        /// The topic.
        topic: &'a str,
        /// The partition, or `None` to let the bridge choose round-robin.
        partition: Option<i32>,
        /// The record value (binary, may be empty).
        value: &'a [u8],
    },
    /// `KPOP topic`: the next record for this tenant, offsets managed by the bridge.
    PopManaged {
        /// The topic.
        topic: &'a str,
    },
    /// `KPOP topic partition offset [count]`: records at or after `offset`, offsets managed by the application.
    PopAt {
        /// The topic.
        topic: &'a str,
        /// The partition.
        partition: i32,
        /// The first offset wanted.
        offset: i64,
        /// `None`: one record (or nil). `Some(n)`: an array of up to `n` records.
        count: Option<u32>,
    },
    /// `KACK topic partition offset`: acknowledges a record delivered by `KPOP topic` (at least once).
    Ack {
        /// The topic.
        topic: &'a str,
        /// The partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
    },
    /// `KPARTITIONS topic`.
    Partitions {
        /// The topic.
        topic: &'a str,
    },
    /// `KOFFSET topic partition time`.
    Offset {
        /// The topic.
        topic: &'a str,
        /// The partition.
        partition: i32,
        /// Which offset is wanted.
        at: OffsetQuery,
    },
}

/// The `time` argument of KOFFSET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffsetQuery {
    /// `-1`: the offset the next record will get (the high watermark).
    Latest,
    /// `-2`: the earliest offset still kept.
    Earliest,
    /// A timestamp in ms since the Unix epoch: the first offset whose record timestamp is at or after it.
    Timestamp(i64),
}

// === impl KafkaCommand ===

impl KafkaCommand<'_> {
    /// The topic the command is about.
    pub fn topic(&self) -> &str {
        match self {
            KafkaCommand::Push { topic, .. }
            | KafkaCommand::PopManaged { topic }
            | KafkaCommand::PopAt { topic, .. }
            | KafkaCommand::Ack { topic, .. }
            | KafkaCommand::Partitions { topic }
            | KafkaCommand::Offset { topic, .. } => topic,
        }
    }

    /// True when the command writes to Kafka (needs producer rights); the others need consumer rights.
    pub fn is_produce(&self) -> bool {
        matches!(self, KafkaCommand::Push { .. })
    }
}

/// True when `name` (any case) is one of the bridge's commands, so the proxy knows where to send it.
///
/// ```
/// assert!(kafka_bridge::is_kafka_command(b"kpush"));
/// assert!(kafka_bridge::is_kafka_command(b"KOffset"));
/// assert!(!kafka_bridge::is_kafka_command(b"GET"));
/// ```
pub fn is_kafka_command(name: &[u8]) -> bool {
    ["KPUSH", "KPOP", "KACK", "KPARTITIONS", "KOFFSET"]
        .iter()
        .any(|known| name.eq_ignore_ascii_case(known.as_bytes()))
}

/// Parses a Kafka command; `args[0]` is the command name (any case).
///
/// Pure: no I/O, no configuration. Topic existence, permissions and partition ranges are checked by the bridge.
///
/// ```
/// use kafka_bridge::{parse_command, KafkaCommand, OffsetQuery};
///
/// let command = parse_command(&[b"KPUSH", b"orders", b"2", b"hello"]).unwrap();
/// assert_eq!(command, KafkaCommand::Push { topic: "orders", partition: Some(2), value: b"hello" });
///
/// let command = parse_command(&[b"koffset", b"orders", b"0", b"-2"]).unwrap();
/// assert_eq!(command, KafkaCommand::Offset { topic: "orders", partition: 0, at: OffsetQuery::Earliest });
///
/// let error = parse_command(&[b"KPOP", b"orders", b"x", b"0"]).unwrap_err();
/// assert_eq!(error.to_string(), "ERR partition is not an integer or out of range");
/// ```
pub fn parse_command<'a>(args: &[&'a [u8]]) -> Result<KafkaCommand<'a>, KafkaError> {
    let Some(name) = args.first() else {
        return Err(KafkaError::UnknownCommand {
            name: String::new(),
        });
    };
    if name.eq_ignore_ascii_case(b"KPUSH") {
        match args {
            [_, topic, value] => Ok(KafkaCommand::Push {
                topic: parse_topic(topic)?,
                partition: None,
                value,
            }),
            [_, topic, partition, value] => Ok(KafkaCommand::Push {
                topic: parse_topic(topic)?,
                partition: Some(parse_partition(partition)?),
                value,
            }),
            _ => Err(KafkaError::WrongArity { command: "kpush" }),
        }
    } else if name.eq_ignore_ascii_case(b"KPOP") {
        match args {
            [_, topic] => Ok(KafkaCommand::PopManaged {
                topic: parse_topic(topic)?,
            }),
            [_, topic, partition, offset] => Ok(KafkaCommand::PopAt {
                topic: parse_topic(topic)?,
                partition: parse_partition(partition)?,
                offset: parse_offset(offset)?,
                count: None,
            }),
            [_, topic, partition, offset, count] => Ok(KafkaCommand::PopAt {
                topic: parse_topic(topic)?,
                partition: parse_partition(partition)?,
                offset: parse_offset(offset)?,
                count: Some(parse_count(count)?),
            }),
            _ => Err(KafkaError::WrongArity { command: "kpop" }),
        }
    } else if name.eq_ignore_ascii_case(b"KACK") {
        match args {
            [_, topic, partition, offset] => Ok(KafkaCommand::Ack {
                topic: parse_topic(topic)?,
                partition: parse_partition(partition)?,
                offset: parse_offset(offset)?,
            }),
            _ => Err(KafkaError::WrongArity { command: "kack" }),
        }
    } else if name.eq_ignore_ascii_case(b"KPARTITIONS") {
        match args {
            [_, topic] => Ok(KafkaCommand::Partitions {
                topic: parse_topic(topic)?,
            }),
            _ => Err(KafkaError::WrongArity {
                command: "kpartitions",
            }),
        }
    } else if name.eq_ignore_ascii_case(b"KOFFSET") {
        match args {
            [_, topic, partition, time] => Ok(KafkaCommand::Offset {
                topic: parse_topic(topic)?,
                partition: parse_partition(partition)?,
                at: parse_time(time)?,
            }),
            _ => Err(KafkaError::WrongArity { command: "koffset" }),
        }
    } else {
        Err(KafkaError::UnknownCommand {
            name: String::from_utf8_lossy(name).into_owned(),
        })
    }
}

/// Topic names are ASCII in Kafka; a name that is not UTF-8 cannot be a configured topic.
fn parse_topic(raw: &[u8]) -> Result<&str, KafkaError> {
    std::str::from_utf8(raw).map_err(|_| KafkaError::UnknownTopic {
        topic: String::from_utf8_lossy(raw).into_owned(),
    })
}

pub(crate) fn parse_integer<T: std::str::FromStr>(
    raw: &[u8],
    what: &'static str,
) -> Result<T, KafkaError> {
    // `FromStr` for integers accepts a leading `+`; Redis does not, and neither do we.
    if raw.first() == Some(&b'+') {
        return Err(KafkaError::NotAnInteger { what });
    }
    std::str::from_utf8(raw)
        .ok()
        .and_then(|text| text.parse::<T>().ok())
        .ok_or(KafkaError::NotAnInteger { what })
}

pub(crate) fn parse_partition(raw: &[u8]) -> Result<i32, KafkaError> {
    parse_integer(raw, "partition")
}

fn parse_offset(raw: &[u8]) -> Result<i64, KafkaError> {
    let offset: i64 = parse_integer(raw, "offset")?;
    if offset < 0 {
        return Err(KafkaError::InvalidArgument {
            what:
                "offset must be >= 0 (use KOFFSET topic partition -2 to find the earliest offset)"
                    .into(),
        });
    }
    Ok(offset)
}

fn parse_count(raw: &[u8]) -> Result<u32, KafkaError> {
    let count: u32 = parse_integer(raw, "count")?;
    if count == 0 || count > MAX_POP_COUNT {
        return Err(KafkaError::InvalidArgument {
            what: format!("count must be between 1 and {MAX_POP_COUNT}"),
        });
    }
    Ok(count)
}

fn parse_time(raw: &[u8]) -> Result<OffsetQuery, KafkaError> {
    match parse_integer::<i64>(raw, "time")? {
        -1 => Ok(OffsetQuery::Latest),
        -2 => Ok(OffsetQuery::Earliest),
        timestamp if timestamp >= 0 => Ok(OffsetQuery::Timestamp(timestamp)),
        _ => Err(KafkaError::InvalidArgument {
            what: "time must be a timestamp in ms, -1 (latest) or -2 (earliest)".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&'static str]) -> Result<KafkaCommand<'static>, KafkaError> {
        let args: Vec<&'static [u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        parse_command(&args)
    }

    fn error_text(args: &[&'static str]) -> String {
        parse(args).unwrap_err().to_string()
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(
            parse(&["kpush", "t", "v"]).unwrap(),
            KafkaCommand::Push {
                topic: "t",
                partition: None,
                value: b"v"
            }
        );
        assert_eq!(
            parse(&["KPUSH", "t", "3", ""]).unwrap(),
            KafkaCommand::Push {
                topic: "t",
                partition: Some(3),
                value: b""
            }
        );
        assert_eq!(
            parse(&["KPOP", "t"]).unwrap(),
            KafkaCommand::PopManaged { topic: "t" }
        );
        assert_eq!(
            parse(&["KPOP", "t", "1", "17"]).unwrap(),
            KafkaCommand::PopAt {
                topic: "t",
                partition: 1,
                offset: 17,
                count: None
            }
        );
        assert_eq!(
            parse(&["KPOP", "t", "1", "17", "10"]).unwrap(),
            KafkaCommand::PopAt {
                topic: "t",
                partition: 1,
                offset: 17,
                count: Some(10)
            }
        );
        assert_eq!(
            parse(&["KPARTITIONS", "t"]).unwrap(),
            KafkaCommand::Partitions { topic: "t" }
        );
        assert_eq!(
            parse(&["kack", "t", "2", "41"]).unwrap(),
            KafkaCommand::Ack {
                topic: "t",
                partition: 2,
                offset: 41
            }
        );
        assert_eq!(
            error_text(&["KACK", "t", "2"]),
            "ERR wrong number of arguments for 'kack' command"
        );
        assert_eq!(
            error_text(&["KACK", "t", "2", "-1"]),
            "ERR offset must be >= 0 (use KOFFSET topic partition -2 to find the earliest offset)"
        );
        assert_eq!(
            parse(&["KOFFSET", "t", "0", "-1"]).unwrap(),
            KafkaCommand::Offset {
                topic: "t",
                partition: 0,
                at: OffsetQuery::Latest
            }
        );
        assert_eq!(
            parse(&["KOFFSET", "t", "0", "1700000000000"]).unwrap(),
            KafkaCommand::Offset {
                topic: "t",
                partition: 0,
                at: OffsetQuery::Timestamp(1_700_000_000_000)
            }
        );
    }

    #[test]
    fn binary_values_are_kept_as_they_are() {
        let value: &[u8] = &[0, 255, b'\r', b'\n', 1];
        let args: [&[u8]; 3] = [b"KPUSH", b"t", value];
        assert_eq!(
            parse_command(&args).unwrap(),
            KafkaCommand::Push {
                topic: "t",
                partition: None,
                value
            }
        );
    }

    #[test]
    fn wrong_arity_names_the_command() {
        assert_eq!(
            error_text(&["KPUSH", "t"]),
            "ERR wrong number of arguments for 'kpush' command"
        );
        assert_eq!(
            error_text(&["KPUSH", "t", "0", "v", "x"]),
            "ERR wrong number of arguments for 'kpush' command"
        );
        assert_eq!(
            error_text(&["KPOP"]),
            "ERR wrong number of arguments for 'kpop' command"
        );
        // The seed rejects the 3-argument KPOP too: an offset without a partition means nothing.
        assert_eq!(
            error_text(&["KPOP", "t", "0"]),
            "ERR wrong number of arguments for 'kpop' command"
        );
        assert_eq!(
            error_text(&["KPARTITIONS"]),
            "ERR wrong number of arguments for 'kpartitions' command"
        );
        assert_eq!(
            error_text(&["KOFFSET", "t", "0"]),
            "ERR wrong number of arguments for 'koffset' command"
        );
    }

    #[test]
    fn numbers_are_checked_precisely() {
        assert_eq!(
            error_text(&["KPUSH", "t", "one", "v"]),
            "ERR partition is not an integer or out of range"
        );
        assert_eq!(
            error_text(&["KPUSH", "t", "+1", "v"]),
            "ERR partition is not an integer or out of range"
        );
        assert_eq!(
            error_text(&["KPUSH", "t", "99999999999", "v"]),
            "ERR partition is not an integer or out of range"
        );
        assert_eq!(
            error_text(&["KPOP", "t", "0", "1.5"]),
            "ERR offset is not an integer or out of range"
        );
        assert_eq!(
            error_text(&["KPOP", "t", "0", "-3"]),
            "ERR offset must be >= 0 (use KOFFSET topic partition -2 to find the earliest offset)"
        );
        assert_eq!(
            error_text(&["KPOP", "t", "0", "0", "x"]),
            "ERR count is not an integer or out of range"
        );
        assert_eq!(
            error_text(&["KPOP", "t", "0", "0", "0"]),
            "ERR count must be between 1 and 1000"
        );
        assert_eq!(
            error_text(&["KPOP", "t", "0", "0", "1001"]),
            "ERR count must be between 1 and 1000"
        );
        assert_eq!(
            error_text(&["KOFFSET", "t", "0", "now"]),
            "ERR time is not an integer or out of range"
        );
        assert_eq!(
            error_text(&["KOFFSET", "t", "0", "-3"]),
            "ERR time must be a timestamp in ms, -1 (latest) or -2 (earliest)"
        );
    }

    #[test]
    fn unknown_commands_and_bad_topics_are_errors() {
        assert_eq!(
            error_text(&["GET", "k"]),
            "ERR unknown command 'GET', the Kafka pool accepts KPUSH, KPOP, KPARTITIONS and KOFFSET"
        );
        let args: [&[u8]; 2] = [b"KPARTITIONS", &[0xff, 0xfe]];
        assert!(matches!(
            parse_command(&args),
            Err(KafkaError::UnknownTopic { .. })
        ));
        assert!(matches!(
            parse_command(&[]),
            Err(KafkaError::UnknownCommand { .. })
        ));
    }
}
