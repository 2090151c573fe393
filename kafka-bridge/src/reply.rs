//! The bridge's replies, as a small RESP value type that writes itself as RESP2.
//!
//! The bridge keeps its own reply type so that it does not depend on the codec crate's progress; the proxy
//! either writes [`KafkaReply::to_resp`] bytes to the client as they are or converts the value into its own frame.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::KafkaError;

/// A reply to a Kafka command.
///
/// ```
/// use kafka_bridge::KafkaReply;
/// let reply = KafkaReply::Array(vec![KafkaReply::Integer(0), KafkaReply::Integer(42)]);
/// assert_eq!(&reply.to_resp()[..], b"*2\r\n:0\r\n:42\r\n");
/// assert_eq!(&KafkaReply::Nil.to_resp()[..], b"$-1\r\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KafkaReply {
    /// A RESP integer (`:42`).
    Integer(i64),
    /// A RESP bulk string (binary safe).
    Bulk(Bytes),
    /// The RESP2 null bulk string (`$-1`): nothing new to read.
    Nil,
    /// A RESP array.
    Array(Vec<KafkaReply>),
    /// A RESP error; the text is the whole line without `-`, for example `ERR kafka UNKNOWN_TOPIC_OR_PARTITION: ...`.
    Error(String),
}

// === impl KafkaReply ===

impl KafkaReply {
    /// The reply written as RESP2 bytes.
    pub fn to_resp(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len_hint());
        self.write_resp(&mut out);
        out.freeze()
    }

    /// Appends the reply as RESP2 to `out`, for callers that batch several replies into one write.
    pub fn write_resp(&self, out: &mut BytesMut) {
        match self {
            KafkaReply::Integer(value) => {
                out.put_u8(b':');
                out.put_slice(value.to_string().as_bytes());
                out.put_slice(b"\r\n");
            }
            KafkaReply::Bulk(bytes) => {
                out.put_u8(b'$');
                out.put_slice(bytes.len().to_string().as_bytes());
                out.put_slice(b"\r\n");
                out.put_slice(bytes);
                out.put_slice(b"\r\n");
            }
            KafkaReply::Nil => out.put_slice(b"$-1\r\n"),
            KafkaReply::Array(items) => {
                out.put_u8(b'*');
                out.put_slice(items.len().to_string().as_bytes());
                out.put_slice(b"\r\n");
                for item in items {
                    item.write_resp(out);
                }
            }
            KafkaReply::Error(text) => {
                out.put_u8(b'-');
                // A CR or LF inside an error line would end the line early and desynchronise the client, so
                // broker messages that contain them are flattened to spaces.
                for &byte in text.as_bytes() {
                    out.put_u8(if byte == b'\r' || byte == b'\n' {
                        b' '
                    } else {
                        byte
                    });
                }
                out.put_slice(b"\r\n");
            }
        }
    }

    /// True for [`KafkaReply::Error`].
    pub fn is_error(&self) -> bool {
        matches!(self, KafkaReply::Error(_))
    }

    fn encoded_len_hint(&self) -> usize {
        match self {
            KafkaReply::Integer(_) | KafkaReply::Nil => 24,
            KafkaReply::Bulk(bytes) => bytes.len() + 24,
            KafkaReply::Array(items) => {
                16 + items.iter().map(Self::encoded_len_hint).sum::<usize>()
            }
            KafkaReply::Error(text) => text.len() + 3,
        }
    }

    /// The `[partition, offset, value]` triple of one record; a record without a value (a tombstone) gives a
    /// nil value.
    pub(crate) fn record(partition: i32, offset: i64, value: Option<Vec<u8>>) -> KafkaReply {
        KafkaReply::Array(vec![
            KafkaReply::Integer(i64::from(partition)),
            KafkaReply::Integer(offset),
            match value {
                Some(bytes) => KafkaReply::Bulk(Bytes::from(bytes)),
                None => KafkaReply::Nil,
            },
        ])
    }
}

impl From<KafkaError> for KafkaReply {
    fn from(error: KafkaError) -> Self {
        KafkaReply::Error(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_shape_as_resp2() {
        let reply = KafkaReply::Array(vec![
            KafkaReply::Integer(-2),
            KafkaReply::Bulk(Bytes::from_static(b"a\r\nb")),
            KafkaReply::Bulk(Bytes::new()),
            KafkaReply::Nil,
            KafkaReply::Array(vec![]),
        ]);
        assert_eq!(
            &reply.to_resp()[..],
            b"*5\r\n:-2\r\n$4\r\na\r\nb\r\n$0\r\n\r\n$-1\r\n*0\r\n"
        );
    }

    #[test]
    fn error_lines_never_contain_line_breaks() {
        let reply = KafkaReply::Error("ERR kafka X: line one\r\nline two".into());
        assert_eq!(
            &reply.to_resp()[..],
            b"-ERR kafka X: line one  line two\r\n"
        );
    }
}
