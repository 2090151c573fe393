//! The bridge's replies: a small value type, written as RESP2 or RESP3 through resp-codec's [`Frame`].
//!
//! The bridge owns the shape of every K* reply and of the cursor admin replies, so the proxy writes
//! [`KafkaReply::resp_bytes`] to the client as they are and never builds a Kafka reply itself.

use bytes::{Bytes, BytesMut};
use resp_codec::Frame;

use crate::error::KafkaError;
use crate::offsets::CursorState;

/// A reply to a Kafka command.
///
/// ```
/// use kafka_bridge::KafkaReply;
/// let reply = KafkaReply::Array(vec![KafkaReply::Integer(0), KafkaReply::Integer(42)]);
/// assert_eq!(&reply.to_resp()[..], b"*2\r\n:0\r\n:42\r\n");
/// assert_eq!(&KafkaReply::Nil.to_resp()[..], b"$-1\r\n");
/// assert_eq!(&KafkaReply::Nil.resp_bytes(true)[..], b"_\r\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KafkaReply {
    /// A RESP integer (`:42`).
    Integer(i64),
    /// A RESP bulk string (binary safe).
    Bulk(Bytes),
    /// Nothing new to read: the null bulk string (`$-1`) in RESP2, the null (`_`) in RESP3.
    Nil,
    /// A RESP array.
    Array(Vec<KafkaReply>),
    /// A RESP error; the text is the whole line without `-`, for example `ERR kafka UNKNOWN_TOPIC_OR_PARTITION: ...`.
    Error(String),
    /// The simple string `+OK`: an admin command that changed something.
    Ok,
}

// === impl KafkaReply ===

impl KafkaReply {
    /// The reply written as RESP2 bytes; the same as `resp_bytes(false)`.
    pub fn to_resp(&self) -> Bytes {
        self.resp_bytes(false)
    }

    /// The reply in the client's protocol: RESP3 clients (`resp3`) get `_` for [`KafkaReply::Nil`], RESP2
    /// clients `$-1`; every other shape is written the same in both.
    ///
    /// ```
    /// use kafka_bridge::KafkaReply;
    /// let record = KafkaReply::Array(vec![KafkaReply::Integer(0), KafkaReply::Integer(7), KafkaReply::Nil]);
    /// assert_eq!(&record.resp_bytes(false)[..], b"*3\r\n:0\r\n:7\r\n$-1\r\n");
    /// assert_eq!(&record.resp_bytes(true)[..], b"*3\r\n:0\r\n:7\r\n_\r\n");
    /// assert_eq!(&KafkaReply::Ok.resp_bytes(true)[..], b"+OK\r\n");
    /// ```
    pub fn resp_bytes(&self, resp3: bool) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len_hint());
        self.to_frame(resp3).encode(&mut out);
        out.freeze()
    }

    /// True for [`KafkaReply::Error`].
    pub fn is_error(&self) -> bool {
        matches!(self, KafkaReply::Error(_))
    }

    /// The reply as a RESP frame; bulk strings are shared, not copied.
    fn to_frame(&self, resp3: bool) -> Frame {
        match self {
            KafkaReply::Integer(value) => Frame::Integer(*value),
            KafkaReply::Bulk(bytes) => Frame::Bulk(bytes.clone()),
            KafkaReply::Nil if resp3 => Frame::Null,
            KafkaReply::Nil => Frame::NullBulk,
            KafkaReply::Array(items) => {
                Frame::Array(items.iter().map(|item| item.to_frame(resp3)).collect())
            }
            KafkaReply::Error(text) => Frame::Error(one_line(text)),
            KafkaReply::Ok => Frame::Simple(Bytes::from_static(b"OK")),
        }
    }

    fn encoded_len_hint(&self) -> usize {
        match self {
            KafkaReply::Integer(_) | KafkaReply::Nil | KafkaReply::Ok => 24,
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

    /// The reply of `RKPROXY KOFFSETS`: one bulk line per partition with the group's next offset, the
    /// offsets given back for a later KPOP, and (at least once) how many leased offsets wait for an
    /// acknowledgement and the ms until the earliest of their deadlines (empty when none is pending).
    ///
    /// ```
    /// use std::time::Duration;
    /// use kafka_bridge::{CursorState, KafkaReply};
    /// let cursor = CursorState { next_offset: 5, given_back: vec![2, 3], pending: 2, oldest_deadline_in: Some(Duration::from_millis(900)) };
    /// let reply = KafkaReply::cursors(&[(0, cursor)]);
    /// let line = "partition=0 next_offset=5 given_back=2,3 pending=2 oldest_deadline_in_ms=900";
    /// assert_eq!(reply.to_resp(), format!("*1\r\n${}\r\n{line}\r\n", line.len()));
    /// ```
    pub fn cursors(cursors: &[(i32, CursorState)]) -> KafkaReply {
        KafkaReply::Array(
            cursors
                .iter()
                .map(|(partition, cursor)| {
                    KafkaReply::Bulk(Bytes::from(cursor_line(*partition, cursor)))
                })
                .collect(),
        )
    }
}

impl From<KafkaError> for KafkaReply {
    fn from(error: KafkaError) -> Self {
        KafkaReply::Error(error.to_string())
    }
}

/// `partition=0 next_offset=5 given_back=2,3 pending=1 oldest_deadline_in_ms=900`: one partition's cursor as
/// an admin reads it.
fn cursor_line(partition: i32, cursor: &CursorState) -> String {
    let given_back: Vec<String> = cursor.given_back.iter().map(i64::to_string).collect();
    let oldest_deadline_in_ms = cursor
        .oldest_deadline_in
        .map(|due_in| due_in.as_millis().to_string())
        .unwrap_or_default();
    format!(
        "partition={partition} next_offset={} given_back={} pending={} oldest_deadline_in_ms={oldest_deadline_in_ms}",
        cursor.next_offset,
        given_back.join(","),
        cursor.pending,
    )
}

/// A CR or LF inside an error line would end the line early and desynchronise the client, so broker messages
/// that contain them are flattened to spaces.
fn one_line(text: &str) -> Bytes {
    let flattened: Vec<u8> = text
        .bytes()
        .map(|byte| {
            if byte == b'\r' || byte == b'\n' {
                b' '
            } else {
                byte
            }
        })
        .collect();
    Bytes::from(flattened)
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
            KafkaReply::Ok,
        ]);
        assert_eq!(
            &reply.to_resp()[..],
            b"*6\r\n:-2\r\n$4\r\na\r\nb\r\n$0\r\n\r\n$-1\r\n*0\r\n+OK\r\n"
        );
    }

    #[test]
    fn nil_follows_the_protocol_at_any_depth() {
        let records = KafkaReply::Array(vec![KafkaReply::Array(vec![
            KafkaReply::Integer(0),
            KafkaReply::Integer(7),
            KafkaReply::Nil,
        ])]);
        assert_eq!(
            &records.resp_bytes(false)[..],
            b"*1\r\n*3\r\n:0\r\n:7\r\n$-1\r\n"
        );
        assert_eq!(
            &records.resp_bytes(true)[..],
            b"*1\r\n*3\r\n:0\r\n:7\r\n_\r\n"
        );
        assert_eq!(&KafkaReply::Nil.resp_bytes(true)[..], b"_\r\n");
    }

    #[test]
    fn error_lines_never_contain_line_breaks() {
        let reply = KafkaReply::Error("ERR kafka X: line one\r\nline two".into());
        assert_eq!(
            &reply.to_resp()[..],
            b"-ERR kafka X: line one  line two\r\n"
        );
        assert_eq!(reply.resp_bytes(true), reply.to_resp());
    }

    #[test]
    fn cursor_lines_list_every_partition() {
        let reply = KafkaReply::cursors(&[
            (
                0,
                CursorState {
                    next_offset: 5,
                    given_back: vec![],
                    ..CursorState::default()
                },
            ),
            (
                1,
                CursorState {
                    next_offset: 9,
                    given_back: vec![4, 7],
                    pending: 3,
                    oldest_deadline_in: Some(std::time::Duration::ZERO),
                },
            ),
        ]);
        assert_eq!(
            &reply.to_resp()[..],
            &b"*2\r\n$70\r\npartition=0 next_offset=5 given_back= pending=0 oldest_deadline_in_ms=\r\n\
               $74\r\npartition=1 next_offset=9 given_back=4,7 pending=3 oldest_deadline_in_ms=0\r\n"[..]
        );
    }
}
