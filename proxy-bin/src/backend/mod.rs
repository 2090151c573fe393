//! Backend connections: connecting with a handshake, and shared, multiplexed connections.
//!
//! A [`SharedConnection`] is a handle to one TCP connection to one redis-server, used by many clients at once.
//! A task owns the socket. It takes jobs (requests) from an unbounded channel, yields once to the event loop so
//! that clients made ready by the same round of I/O can add theirs, gathers the waiting requests into one write
//! buffer (so many clients' commands reach Redis in one read there), and answers each job's oneshot in the order
//! the replies arrive, which is the order Redis received the requests. Reading replies and writing requests go on
//! at the same time: a big request being written never stops replies being read, and the reverse.
//!
//! # Why a reply can never reach the wrong client
//!
//! Redis answers the commands of one connection in the order it read them, one reply per command. The task
//! keeps a FIFO [`ReplyQueue`](reply_queue::ReplyQueue) with one entry per job, in the order the jobs' bytes go into the write buffer,
//! and each entry records exactly how many replies it is owed ([`Expected`], counted in a `NonZeroUsize`: no
//! counter that can saturate or wrap, and no job that is owed nothing). Every reply read is consumed by the
//! oldest entry, and an entry's waiter is answered only with its own replies, once the last one arrived. A
//! reply that arrives when no entry is owed one means the connection is out of step: it is handed to no one;
//! the connection is dropped and every waiter gets [`BackendError::Unavailable`]. RESP3 push frames are not
//! replies and are never paired (shared connections never enable anything that sends them).
//!
//! # Deadlines: a backend that makes no progress
//!
//! A connect (with its AUTH/SELECT handshake) has `connect_timeout`. On a live connection the deadline is for
//! a backend that makes **no progress**: while replies are owed, the connection breaks only when, for
//! `command_timeout`, no reply bytes arrived and no request bytes left. So one client's long pipeline of big
//! replies, or a big request, delays the others but fails no one. A request that may keep the server busy
//! without a byte of progress ([`Patience::Slow`]: scripts and functions) gets `slow_command_timeout` instead
//! while it is owed a reply (Redis runs every command of a pipeline it has read before writing their replies,
//! so the replies to requests sent before the script wait for it too), and so do the other shared connections
//! of this process to the same server, which cannot be answered while it runs. Every request that cannot be answered gets
//! [`BackendError::Unavailable`] fast, and the task reconnects by itself when the next request arrives. Replies
//! already received are delivered before a broken connection is given up.
//!
//! The parts, each importing only the ones listed before it: `error` (why a backend could not answer),
//! `endpoint` (where and how to log in), `connect` (opening a connection and its handshake), `patience`
//! (how long a connection that owes replies may go without progress), `reply_queue` (which reply belongs to
//! whom) and `shared` (the handle and the task that owns one shared connection).

mod connect;
mod endpoint;
mod error;
mod outgoing;
mod patience;
mod reply_queue;
mod shared;
#[cfg(test)]
mod tests;

pub use self::connect::connect;
pub use self::endpoint::Endpoint;
pub use self::error::{one_line, BackendError, BackendReply, Broken, ConnectError, FailureKind};
pub use self::patience::Patience;
pub use self::reply_queue::RedirectWatch;
pub use self::shared::{PatientSender, SharedConnection};
pub use crate::tls::{BackendReader, BackendStream, BackendWriter};
