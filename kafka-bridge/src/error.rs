//! Errors of the Kafka bridge.
//!
//! Every error's `Display` text is exactly the RESP error line the client receives (without the leading
//! `-` and the trailing CRLF), so the proxy never has to invent wording: `ERR kafka UNKNOWN_TOPIC_OR_PARTITION: ...`,
//! `NOPERM ...`, `ERR partition is not an integer or out of range`. Redis's own prefixes are used where one fits,
//! so client libraries map them to the right exception types.
//!
//! Errors are `Clone` because one failed produce request fails every caller whose record was in that batch.

use std::time::Duration;

/// An error of a Kafka command, ready to be sent to the client as a RESP error.
///
/// ```
/// use kafka_bridge::KafkaError;
/// let error = KafkaError::NotAnInteger { what: "partition" };
/// assert_eq!(error.to_string(), "ERR partition is not an integer or out of range");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// The command had the wrong number of arguments.
    #[error("ERR wrong number of arguments for '{command}' command")]
    WrongArity {
        /// The command name in lower case.
        command: &'static str,
    },

    /// The command name is not one of KPUSH, KPOP, KPARTITIONS, KOFFSET.
    #[error(
        "ERR unknown command '{name}', the Kafka pool accepts KPUSH, KPOP, KPARTITIONS and KOFFSET"
    )]
    UnknownCommand {
        /// The command name as sent (lossy UTF-8).
        name: String,
    },

    /// A numeric argument (partition, offset, time, count) did not parse.
    #[error("ERR {what} is not an integer or out of range")]
    NotAnInteger {
        /// Which argument: `partition`, `offset`, `time` or `count`.
        what: &'static str,
    },

    /// A numeric argument parsed but is outside what the command accepts.
    #[error("ERR {what}")]
    InvalidArgument {
        /// The full explanation, for example `offset must be >= 0`.
        what: String,
    },

    /// The topic is not configured in this Kafka pool.
    #[error("ERR unknown topic '{topic}': it is not configured in this Kafka pool")]
    UnknownTopic {
        /// The topic as sent (lossy UTF-8).
        topic: String,
    },

    /// The tenant is not a producer (KPUSH) or consumer (the other commands) of the topic.
    #[error("NOPERM tenant '{tenant}' is not allowed to {action} topic '{topic}'")]
    NotPermitted {
        /// The tenant that sent the command.
        tenant: String,
        /// The topic.
        topic: String,
        /// `produce to` or `consume from`.
        action: &'static str,
    },

    /// The partition does not exist in the topic.
    #[error(
        "ERR wrong partition {partition} for topic '{topic}': it has partitions {first} to {last}"
    )]
    WrongPartition {
        /// The topic.
        topic: String,
        /// The partition that was asked for.
        partition: i32,
        /// The lowest partition id.
        first: i32,
        /// The highest partition id.
        last: i32,
    },

    /// Kafka answered with an error code; `name` is Kafka's error name such as `UNKNOWN_TOPIC_OR_PARTITION`.
    #[error("ERR kafka {name}: {message}")]
    Kafka {
        /// Kafka's error name in upper snake case.
        name: String,
        /// The broker's message, or a description with the topic and partition.
        message: String,
    },

    /// No Kafka broker could be reached (connection refused, reset, or closed).
    #[error("ERR kafka BROKER_NOT_AVAILABLE: {message}")]
    Unavailable {
        /// What failed, with the underlying cause.
        message: String,
    },

    /// Kafka did not answer within the configured request timeout.
    #[error("ERR kafka REQUEST_TIMED_OUT: no answer from Kafka within {} ms while {operation}; is the broker up?", after.as_millis())]
    Timeout {
        /// What the bridge was doing.
        operation: String,
        /// The configured timeout.
        after: Duration,
    },

    /// An `RKPROXY KOFFSETS` or `RKPROXY KRESET` admin command had the wrong number of arguments.
    #[error("ERR wrong number of arguments: {usage}")]
    AdminArity {
        /// The command's whole form, for example `RKPROXY KOFFSETS group topic`.
        usage: &'static str,
    },

    /// The `next_offset` of `RKPROXY KRESET` is not an integer >= 0.
    #[error("ERR next_offset is not an integer >= 0 or out of range")]
    NotANextOffset,

    /// The offset store (memory or Redis) failed.
    #[error("ERR kafka offset store: {0}")]
    OffsetStore(#[from] OffsetStoreError),

    /// The pool configuration is invalid or could not be applied to Kafka (at connect time).
    #[error("ERR kafka config: {0}")]
    Config(String),
}

/// An error of an [`OffsetStore`](crate::OffsetStore).
///
/// ```
/// use kafka_bridge::OffsetStoreError;
/// let error = OffsetStoreError::Unavailable("connection refused".into());
/// assert_eq!(error.to_string(), "offset store unavailable: connection refused");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OffsetStoreError {
    /// The store's backend could not be reached or did not answer in time.
    #[error("offset store unavailable: {0}")]
    Unavailable(String),
    /// The store's backend answered something unexpected (an error reply or a malformed reply).
    #[error("offset store protocol error: {0}")]
    Protocol(String),
}

// === impl KafkaError ===

impl KafkaError {
    /// Builds the error for a Kafka error code, given rskafka's name for it (`UnknownTopicOrPartition`),
    /// turned into Kafka's own spelling (`UNKNOWN_TOPIC_OR_PARTITION`).
    pub(crate) fn from_kafka_code(camel_name: &str, message: String) -> Self {
        KafkaError::Kafka {
            name: upper_snake_case(camel_name),
            message,
        }
    }

    /// A refused SASL login, under Kafka's own name for it, so the client sees the same error whichever
    /// connection (rskafka's or the bridge's own) failed.
    pub(crate) fn sasl_authentication_failed(message: String) -> Self {
        KafkaError::Kafka {
            name: SASL_AUTHENTICATION_FAILED.into(),
            message,
        }
    }

    /// Converts an rskafka error, naming the topic and partition in the message when the broker gave none.
    pub(crate) fn from_rskafka(error: &rskafka::client::error::Error, context: &str) -> Self {
        use rskafka::client::error::Error as RsError;
        match error {
            RsError::ServerError {
                protocol_error,
                error_message,
                ..
            } => {
                let message = match error_message {
                    Some(text) if !text.is_empty() => format!("{text} ({context})"),
                    _ => context.to_string(),
                };
                KafkaError::from_kafka_code(&format!("{protocol_error:?}"), message)
            }
            RsError::Connection(cause) => {
                let text = cause.to_string();
                if is_sasl_failure(&text) {
                    // The broker refused the login: say so under Kafka's name, not as an unreachable broker.
                    KafkaError::sasl_authentication_failed(format!("{context}: {text}"))
                } else {
                    KafkaError::Unavailable {
                        message: format!("{context}: {text}"),
                    }
                }
            }
            RsError::Request(cause) => KafkaError::Unavailable {
                message: format!("{context}: {cause}"),
            },
            RsError::RetryFailed(rskafka::BackoffError::DeadlineExceded { source, .. }) => {
                // rskafka retries connection failures until its deadline; report the last underlying cause.
                match source.downcast_ref::<RsError>() {
                    Some(inner) => KafkaError::from_rskafka(inner, context),
                    None => KafkaError::Unavailable {
                        message: format!("{context}: {source}"),
                    },
                }
            }
            RsError::Timeout => KafkaError::Kafka {
                name: "REQUEST_TIMED_OUT".to_string(),
                message: context.to_string(),
            },
            RsError::InvalidResponse(text) => KafkaError::Kafka {
                name: "INVALID_RESPONSE".to_string(),
                message: format!("{text} ({context})"),
            },
            other => KafkaError::Unavailable {
                message: format!("{context}: {other}"),
            },
        }
    }

    /// The Kafka error name when this error came from a Kafka error code.
    ///
    /// ```
    /// use kafka_bridge::KafkaError;
    /// let error = KafkaError::Kafka { name: "OFFSET_OUT_OF_RANGE".into(), message: "t/0".into() };
    /// assert_eq!(error.kafka_error_name(), Some("OFFSET_OUT_OF_RANGE"));
    /// ```
    pub fn kafka_error_name(&self) -> Option<&str> {
        match self {
            KafkaError::Kafka { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// Kafka's name for a refused login (its error code 58).
const SASL_AUTHENTICATION_FAILED: &str = "SASL_AUTHENTICATION_FAILED";

/// Whether `text` (an rskafka connection error) is a refused SASL login; it is reported under Kafka's name.
fn is_sasl_failure(text: &str) -> bool {
    text.contains("Sasl handshake failed")
}

/// `UnknownTopicOrPartition` → `UNKNOWN_TOPIC_OR_PARTITION`; `Unknown(87)` → `UNKNOWN_ERROR_CODE_87`.
fn upper_snake_case(camel_name: &str) -> String {
    if let Some(code) = camel_name
        .strip_prefix("Unknown(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        return format!("UNKNOWN_ERROR_CODE_{code}");
    }
    let mut out = String::with_capacity(camel_name.len() + 8);
    for (index, ch) in camel_name.chars().enumerate() {
        if ch.is_ascii_uppercase() && index > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_are_upper_snake_case() {
        assert_eq!(
            upper_snake_case("UnknownTopicOrPartition"),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(upper_snake_case("OffsetOutOfRange"), "OFFSET_OUT_OF_RANGE");
        assert_eq!(upper_snake_case("Unknown(87)"), "UNKNOWN_ERROR_CODE_87");
    }

    #[test]
    fn server_errors_keep_the_kafka_name_and_context() {
        let error = rskafka::client::error::Error::ServerError {
            protocol_error: rskafka::client::error::ProtocolError::UnknownTopicOrPartition,
            error_message: None,
            request: rskafka::client::error::RequestContext::Topic("orders".into()),
            response: None,
            is_virtual: false,
        };
        let converted = KafkaError::from_rskafka(&error, "topic 'orders' partition 3");
        assert_eq!(
            converted.to_string(),
            "ERR kafka UNKNOWN_TOPIC_OR_PARTITION: topic 'orders' partition 3"
        );
    }
}
