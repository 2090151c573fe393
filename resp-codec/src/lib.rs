//! RESP2/RESP3 framing for rkproxy.
//!
//! **Architecture invariant:** this crate does no I/O and knows no commands. It turns bytes
//! into frames and frames into bytes; what a command means is decided elsewhere.
//!
//! # Layout
//!
//! - [`RequestDecoder`] (hand-written, resumable) frames client requests into [`Request`]s:
//!   zero-copy multibulk bytes plus where each argument is. Inline commands are split like
//!   redis-server does and re-encoded as multibulk.
//! - [`ReplyDecoder`] (hand-written, resumable) frames one complete reply of any RESP2/RESP3
//!   type and returns its raw bytes without building a tree; [`split_replies`] splits a batch
//!   of complete replies the same way, and [`reply_len`] measures one reply in a slice.
//! - [`FrameScanner`] walks one frame as it arrives in chunks, holding no part of it, and
//!   [`big_request_head`] finds the routing part of a request with a big argument, so a proxy can
//!   forward a big value as it arrives instead of buffering it.
//! - [`Frame`], [`parse_frame`] and [`FrameCodec`] (built on `combine`) give the full tree
//!   when something really needs to look inside a reply.
//! - [`encode_command`] writes a command; [`put_header`], [`put_integer`] and [`put_bulk`]
//!   write single RESP lines and bulk strings for callers that assemble RESP by hand (the
//!   proxy's split sub-commands and merged replies); [`ProtocolError::to_reply`] writes
//!   Redis's `-ERR Protocol error: ...` reply.
//!
//! All decoders share one grammar and the [`Limits`], so they accept and reject the same
//! inputs. The hand-written framers are used on the hot path because they are several
//! times faster than the combine parser (see the crate README for numbers).
//!
//! ```
//! use bytes::BytesMut;
//! use resp_codec::{encode_command, RequestDecoder};
//! use tokio_util::codec::Decoder;
//!
//! let mut buffer = BytesMut::new();
//! encode_command(&mut buffer, ["SET", "key", "value"]);
//! let request = RequestDecoder::default().decode(&mut buffer).unwrap().unwrap();
//! assert_eq!(request.name(), b"SET");
//! ```

mod combine_frame;
mod error;
mod frame;
mod grammar;
mod inline;
mod limits;
mod reply;
mod request;
mod stream;
#[cfg(test)]
mod test_support;
mod write;

pub use combine_frame::{parse_frame, FrameCodec};
pub use error::ProtocolError;
pub use frame::Frame;
pub use limits::Limits;
pub use reply::{reply_len, split_replies, split_replies_into, ReplyDecoder};
pub use request::{encode_command, Request, RequestDecoder};
pub use stream::{big_request_head, BigRequestHead, FrameScanner, HeadScan};
pub use write::{put_bulk, put_header, put_integer};
