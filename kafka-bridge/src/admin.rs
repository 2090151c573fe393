//! The one admin request rskafka 0.6 lacks: CreatePartitions (API key 37), written by hand.
//!
//! rskafka can create topics but not grow them, and the bridge must add partitions when the configuration asks
//! for more than Kafka has (never fewer). The request is small and uses the non-flexible version 1, which Kafka
//! 4.x still serves (KIP-896 removed no CreatePartitions version). Any broker accepts it: in KRaft mode brokers
//! forward it to the active controller.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::KafkaError;
use crate::security::PreparedSecurity;

const API_KEY_CREATE_PARTITIONS: i16 = 37;
const API_VERSION: i16 = 1;
/// Responses to this request are a few dozen bytes; anything far larger means we are not talking to Kafka.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Grows `topic` to `total_partitions` partitions, asking each bootstrap broker in turn until one answers.
pub(crate) async fn create_partitions(
    security: &PreparedSecurity,
    bootstrap: &[String],
    client_id: &str,
    topic: &str,
    total_partitions: i32,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let mut last_error = KafkaError::Unavailable {
        message: "no bootstrap broker to send CreatePartitions to".into(),
    };
    for broker in bootstrap {
        let attempt = tokio::time::timeout(
            timeout,
            create_partitions_on(
                security,
                broker,
                client_id,
                topic,
                total_partitions,
                timeout,
            ),
        )
        .await;
        match attempt {
            Ok(Ok(())) => return Ok(()),
            // A Kafka error code is the cluster's answer; another broker would say the same.
            Ok(Err(error @ KafkaError::Kafka { .. })) => return Err(error),
            Ok(Err(error)) => last_error = error,
            Err(_) => {
                last_error = KafkaError::Timeout {
                    operation: format!(
                        "growing topic '{topic}' to {total_partitions} partitions on {broker}"
                    ),
                    after: timeout,
                }
            }
        }
    }
    Err(last_error)
}

async fn create_partitions_on(
    security: &PreparedSecurity,
    broker: &str,
    client_id: &str,
    topic: &str,
    total_partitions: i32,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let unavailable = |cause: std::io::Error| KafkaError::Unavailable {
        message: format!("CreatePartitions on {broker}: {cause}"),
    };
    // Secured like every connection of the pool (TLS, SASL); the request itself is written by hand below.
    let mut connection = security.connect(broker, client_id).await?;
    let stream = connection.stream();
    let correlation_id = 1;
    let request = encode_request(correlation_id, client_id, topic, total_partitions, timeout);
    stream.write_all(&request).await.map_err(unavailable)?;

    let length = stream.read_i32().await.map_err(unavailable)?;
    let length = usize::try_from(length)
        .ok()
        .filter(|length| *length <= MAX_RESPONSE_BYTES)
        .ok_or_else(|| KafkaError::Unavailable {
            message: format!("CreatePartitions on {broker}: bad response length {length}"),
        })?;
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.map_err(unavailable)?;
    decode_response(&body, correlation_id, topic)
}

fn encode_request(
    correlation_id: i32,
    client_id: &str,
    topic: &str,
    total_partitions: i32,
    timeout: Duration,
) -> BytesMut {
    let mut body = BytesMut::new();
    // Request header v1.
    body.put_i16(API_KEY_CREATE_PARTITIONS);
    body.put_i16(API_VERSION);
    body.put_i32(correlation_id);
    put_string(&mut body, client_id);
    // Body: one topic, no manual replica assignment.
    body.put_i32(1);
    put_string(&mut body, topic);
    body.put_i32(total_partitions);
    body.put_i32(-1); // assignments: null
    body.put_i32(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX));
    body.put_u8(0); // validate_only: false

    let mut framed = BytesMut::with_capacity(body.len() + 4);
    framed.put_i32(i32::try_from(body.len()).unwrap_or(i32::MAX));
    framed.extend_from_slice(&body);
    framed
}

fn put_string(out: &mut BytesMut, text: &str) {
    // Topic names and client ids are short; Kafka limits topic names to 249 bytes.
    let length = i16::try_from(text.len()).unwrap_or(i16::MAX);
    out.put_i16(length);
    out.extend_from_slice(&text.as_bytes()[..usize::try_from(length).unwrap_or(0)]);
}

fn decode_response(mut body: &[u8], correlation_id: i32, topic: &str) -> Result<(), KafkaError> {
    let malformed = |what: &str| KafkaError::Kafka {
        name: "INVALID_RESPONSE".into(),
        message: format!("malformed CreatePartitions response ({what}) for topic '{topic}'"),
    };
    if body.remaining() < 12 {
        return Err(malformed("too short"));
    }
    if body.get_i32() != correlation_id {
        return Err(malformed("correlation id"));
    }
    let _throttle_time_ms = body.get_i32();
    let results = body.get_i32();
    for _ in 0..results {
        let name = get_string(&mut body).ok_or_else(|| malformed("topic name"))?;
        if body.remaining() < 2 {
            return Err(malformed("error code"));
        }
        let error_code = body.get_i16();
        let message = get_string(&mut body).ok_or_else(|| malformed("error message"))?;
        if name.as_deref() != Some(topic) || error_code == 0 {
            continue;
        }
        let kafka_name = match error_code {
            37 => "INVALID_PARTITIONS",
            3 => "UNKNOWN_TOPIC_OR_PARTITION",
            41 => "NOT_CONTROLLER",
            29 => "TOPIC_AUTHORIZATION_FAILED",
            31 => "CLUSTER_AUTHORIZATION_FAILED",
            38 => "INVALID_REPLICATION_FACTOR",
            44 => "POLICY_VIOLATION",
            _ => "UNKNOWN_SERVER_ERROR",
        };
        return Err(KafkaError::Kafka {
            name: kafka_name.into(),
            message: format!(
                "growing topic '{topic}' failed (error code {error_code}): {}",
                message.unwrap_or_default()
            ),
        });
    }
    Ok(())
}

/// Reads a Kafka (nullable) STRING; `Some(None)` is the null string, `None` means the buffer ran out.
fn get_string(body: &mut &[u8]) -> Option<Option<String>> {
    if body.remaining() < 2 {
        return None;
    }
    let length = body.get_i16();
    if length < 0 {
        return Some(None);
    }
    let length = usize::try_from(length).ok()?;
    if body.remaining() < length {
        return None;
    }
    let text = String::from_utf8_lossy(&body[..length]).into_owned();
    body.advance(length);
    Some(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout_matches_the_protocol() {
        let request = encode_request(7, "id", "tp", 5, Duration::from_millis(1500));
        let expected: Vec<u8> = [
            &[0, 0, 0, 33][..],    // size
            &[0, 37, 0, 1],        // api key, version
            &[0, 0, 0, 7],         // correlation id
            &[0, 2, b'i', b'd'],   // client id
            &[0, 0, 0, 1],         // one topic
            &[0, 2, b't', b'p'],   // name
            &[0, 0, 0, 5],         // count
            &[255, 255, 255, 255], // null assignments
            &[0, 0, 5, 220],       // timeout 1500
            &[0],                  // validate only
        ]
        .concat();
        assert_eq!(&request[..], &expected[..]);
    }

    #[test]
    fn response_errors_are_named() {
        let mut body = BytesMut::new();
        body.put_i32(7);
        body.put_i32(0);
        body.put_i32(1);
        put_string(&mut body, "tp");
        body.put_i16(37);
        put_string(
            &mut body,
            "Topic currently has 3 partitions, which is higher than the requested 2.",
        );
        let error = decode_response(&body, 7, "tp").unwrap_err();
        assert_eq!(error.kafka_error_name(), Some("INVALID_PARTITIONS"));

        let mut ok = BytesMut::new();
        ok.put_i32(7);
        ok.put_i32(0);
        ok.put_i32(1);
        put_string(&mut ok, "tp");
        ok.put_i16(0);
        ok.put_i16(-1);
        assert!(decode_response(&ok, 7, "tp").is_ok());
        assert!(decode_response(&ok[..5], 7, "tp").is_err());
    }
}
