//! Replies the proxy writes itself, encoded as RESP.

use bytes::{Bytes, BytesMut};
use resp_codec::{put_integer, Frame};

use crate::backend::one_line;

pub fn ok() -> Bytes {
    Bytes::from_static(b"+OK\r\n")
}

pub fn simple(text: &str) -> Bytes {
    Bytes::from(format!("+{}\r\n", one_line(text)))
}

/// An error reply; `text` starts with the error code (`ERR`, `NOPERM`, ...).
pub fn error(text: &str) -> Bytes {
    Bytes::from(format!("-{}\r\n", one_line(text)))
}

pub fn integer(value: i64) -> Bytes {
    let mut reply = BytesMut::with_capacity(24);
    put_integer(&mut reply, b':', value);
    reply.freeze()
}

pub fn bulk(value: &[u8]) -> Bytes {
    Frame::Bulk(Bytes::copy_from_slice(value)).to_bytes()
}

/// An array of bulk strings.
pub fn array_of_bulks<'a>(items: impl Iterator<Item = &'a [u8]>) -> Bytes {
    Frame::Array(
        items
            .map(|item| Frame::Bulk(Bytes::copy_from_slice(item)))
            .collect(),
    )
    .to_bytes()
}

/// The null reply in the client's protocol.
pub fn null(resp3: bool) -> Bytes {
    if resp3 {
        Bytes::from_static(b"_\r\n")
    } else {
        Bytes::from_static(b"$-1\r\n")
    }
}

pub fn wrong_arity(command: &str) -> Bytes {
    error(&format!(
        "ERR wrong number of arguments for '{command}' command"
    ))
}

/// A text reply (INFO, CLIENT INFO, CLIENT LIST): a verbatim `txt` string in RESP3, a bulk string in RESP2, as
/// redis-server sends them.
pub fn text(text: &str, resp3: bool) -> Bytes {
    let text = Bytes::copy_from_slice(text.as_bytes());
    if resp3 {
        Frame::Verbatim {
            format: *b"txt",
            text,
        }
        .to_bytes()
    } else {
        Frame::Bulk(text).to_bytes()
    }
}

/// The HELLO reply: a map in RESP3, a flat array in RESP2, like redis-server's. `version` is the backend's
/// Redis version.
pub fn hello(client_id: u64, resp3: bool, version: &str) -> Bytes {
    let text = |s: &str| Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()));
    let fields = vec![
        (text("server"), text("redis")),
        // The backend's version: clients use it for feature checks.
        (text("version"), text(version)),
        (text("proto"), Frame::Integer(if resp3 { 3 } else { 2 })),
        (text("id"), Frame::Integer(client_id as i64)),
        // Clients see one standalone server, whatever the pool is (INFO's redis_mode says the same).
        (text("mode"), text("standalone")),
        (text("role"), text("master")),
        (text("modules"), Frame::Array(Vec::new())),
        (
            text("proxy"),
            text(concat!("rkproxy ", env!("CARGO_PKG_VERSION"))),
        ),
    ];
    let frame = if resp3 {
        Frame::Map(fields)
    } else {
        Frame::Array(fields.into_iter().flat_map(|(k, v)| [k, v]).collect())
    };
    frame.to_bytes()
}
