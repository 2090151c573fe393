//! The proxy's own client table, for `CLIENT LIST` and `CLIENT KILL` across its sessions.
//!
//! Each session has one [`ClientEntry`] in its worker's table (`WorkerTable::clients`): added when the session
//! starts, removed when it ends. What changes with every request (db, latest command, requests in flight, ...)
//! the session publishes into its live counts ([`SessionLive`]), which the entry reads in place; the name,
//! which changes rarely, is set in the entry under the worker's lock.
//!
//! Killing: the entry holds a duplicate of the client's socket descriptor, so a session on another worker can
//! shut the socket down (`shutdown(2)` acts on the socket, not the descriptor); the session then reads the end
//! of its client's stream and ends as if the client had left. The duplicate closes with the entry, when the
//! session ends, so no descriptor number is ever reused under a killer.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::live::SessionLive;

/// One session as the client table shows it.
#[derive(Debug)]
pub struct ClientEntry {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub fd: i64,
    pub started: Instant,
    pub tenant: Arc<str>,
    pub pool: Arc<str>,
    pub name: Option<Bytes>,
    /// The session's live counts, with what it publishes of itself.
    live: Arc<SessionLive>,
    /// A duplicate of the client's socket, to shut it down (`None` if it could not be duplicated).
    socket: Option<TcpStream>,
    /// Shut down by CLIENT KILL: no longer listed, nor killed again, while the session ends.
    killed: bool,
}

/// What a session publishes of itself before it writes replies.
#[derive(Debug, Clone, Copy)]
pub struct ClientNow<'a> {
    pub name: Option<&'a Bytes>,
    pub db: u32,
    pub resp3: bool,
    pub last_active: Instant,
    pub pending: usize,
    pub output_bytes: usize,
}

impl ClientEntry {
    /// The entry of a session starting now on `stream`, counting into `live`.
    pub fn new(id: u64, stream: &tokio::net::TcpStream, live: &Arc<SessionLive>) -> Self {
        let addr = |addr: std::io::Result<std::net::SocketAddr>| {
            addr.map(|a| a.to_string()).unwrap_or_default()
        };
        let (socket, fd) = duplicate(stream);
        ClientEntry {
            id,
            addr: addr(stream.peer_addr()),
            laddr: addr(stream.local_addr()),
            fd,
            started: Instant::now(),
            tenant: Arc::clone(&live.tenant),
            pool: Arc::clone(&live.pool),
            name: None,
            live: Arc::clone(live),
            socket,
            killed: false,
        }
    }

    /// The session counts into `live` from now on (new labels, or a fresh set of slots).
    pub fn follow(&mut self, live: &Arc<SessionLive>) {
        self.tenant = Arc::clone(&live.tenant);
        self.pool = Arc::clone(&live.pool);
        self.live = Arc::clone(live);
    }

    /// Shuts the client's socket down; the session ends when it notices.
    pub fn kill(&mut self) {
        self.killed = true;
        if let Some(socket) = &self.socket {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Whether the session is still to be listed (not killed).
    pub fn is_live(&self) -> bool {
        !self.killed
    }

    /// A copy for reading outside the worker's lock (without the socket).
    pub fn view(&self) -> ClientView {
        let client = &self.live.client;
        let last_active = self.started + Duration::from_nanos(client.last_active_ns.load(Relaxed));
        ClientView {
            id: self.id,
            addr: self.addr.clone(),
            laddr: self.laddr.clone(),
            fd: self.fd,
            age_seconds: self.started.elapsed().as_secs(),
            idle_seconds: last_active.elapsed().as_secs(),
            tenant: Arc::clone(&self.tenant),
            pool: Arc::clone(&self.pool),
            name: self.name.clone(),
            db: client.db.load(Relaxed),
            resp3: client.resp3.load(Relaxed),
            last_command: self.live.last_command(),
            pending: client.pending.load(Relaxed),
            output_bytes: client.output_bytes.load(Relaxed),
        }
    }
}

/// A client as listed.
#[derive(Debug, Clone)]
pub struct ClientView {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub fd: i64,
    pub age_seconds: u64,
    pub idle_seconds: u64,
    pub tenant: Arc<str>,
    pub pool: Arc<str>,
    pub name: Option<Bytes>,
    pub db: u32,
    pub resp3: bool,
    pub last_command: &'static str,
    pub pending: usize,
    pub output_bytes: usize,
}

/// Which clients `CLIENT KILL` closes: every given condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillFilter {
    pub id: Option<u64>,
    pub addr: Option<String>,
    pub laddr: Option<String>,
    pub user: Option<String>,
    /// `TYPE pubsub`, `master`, `replica`: no proxy client is listed as one.
    pub no_type_matches: bool,
    /// Only clients connected longer than this many seconds.
    pub max_age: Option<u64>,
    /// The caller's own id, spared (`SKIPME yes`, the default of the filter form).
    pub skip: Option<u64>,
}

impl KillFilter {
    pub fn matches(&self, entry: &ClientEntry) -> bool {
        entry.is_live()
            && !self.no_type_matches
            && self.id.is_none_or(|id| id == entry.id)
            && self.addr.as_deref().is_none_or(|addr| addr == entry.addr)
            && self
                .laddr
                .as_deref()
                .is_none_or(|laddr| laddr == entry.laddr)
            && self
                .user
                .as_deref()
                .is_none_or(|user| user == &*entry.tenant)
            && self
                .max_age
                .is_none_or(|age| entry.started.elapsed().as_secs() > age)
            && self.skip.is_none_or(|skip| skip != entry.id)
    }
}

/// Why a CLIENT KILL request is refused (the text is the client's error reply, after `-`), as Redis words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KillError {
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR client-id should be greater than 0")]
    BadId,
    #[error("ERR Unknown client type '{0}'")]
    UnknownType(String),
    #[error("ERR No such client")]
    NoSuchClient,
}

/// What the arguments after `CLIENT KILL` ask: the old form (one address: `OK` or an error) or filters (the
/// number closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillRequest {
    Address(String),
    Filters(KillFilter),
}

/// Parses the arguments after `CLIENT KILL`; `me` is the caller's id.
pub fn parse_kill(args: &[&[u8]], me: u64) -> Result<KillRequest, KillError> {
    if let [address] = args {
        return Ok(KillRequest::Address(
            String::from_utf8_lossy(address).into_owned(),
        ));
    }
    if args.is_empty() || args.len() % 2 != 0 {
        return Err(KillError::Syntax);
    }
    let mut filter = KillFilter {
        skip: Some(me),
        ..KillFilter::default()
    };
    for pair in args.chunks(2) {
        let [option, value] = pair else {
            return Err(KillError::Syntax);
        };
        let text = String::from_utf8_lossy(value).into_owned();
        match option.to_ascii_lowercase().as_slice() {
            b"id" => match text.parse::<u64>() {
                Ok(id) if id > 0 => filter.id = Some(id),
                _ => return Err(KillError::BadId),
            },
            b"addr" => filter.addr = Some(text),
            b"laddr" => filter.laddr = Some(text),
            b"user" => filter.user = Some(text),
            b"type" => match text.to_ascii_lowercase().as_str() {
                "normal" => {}
                "pubsub" | "master" | "replica" | "slave" => filter.no_type_matches = true,
                _ => return Err(KillError::UnknownType(text)),
            },
            b"skipme" => match text.to_ascii_lowercase().as_str() {
                "yes" => filter.skip = Some(me),
                "no" => filter.skip = None,
                _ => return Err(KillError::Syntax),
            },
            b"maxage" => match text.parse::<u64>() {
                Ok(age) => filter.max_age = Some(age),
                Err(_) => return Err(KillError::Syntax),
            },
            _ => return Err(KillError::Syntax),
        }
    }
    Ok(KillRequest::Filters(filter))
}

/// A duplicate of the stream's socket (and the original's descriptor number, for `fd=`).
#[cfg(unix)]
fn duplicate(stream: &tokio::net::TcpStream) -> (Option<TcpStream>, i64) {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = i64::from(stream.as_raw_fd());
    let socket = stream
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(TcpStream::from);
    (socket, fd)
}

#[cfg(not(unix))]
fn duplicate(_stream: &tokio::net::TcpStream) -> (Option<TcpStream>, i64) {
    (None, -1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_arguments_parse_like_redis() {
        assert_eq!(
            parse_kill(&[b"127.0.0.1:5"], 9),
            Ok(KillRequest::Address("127.0.0.1:5".to_owned()))
        );
        let Ok(KillRequest::Filters(filter)) = parse_kill(&[b"ID", b"4", b"USER", b"shop"], 9)
        else {
            panic!("filters expected");
        };
        assert_eq!(
            (filter.id, filter.user.as_deref(), filter.skip),
            (Some(4), Some("shop"), Some(9))
        );
        let Ok(KillRequest::Filters(filter)) = parse_kill(&[b"skipme", b"no"], 9) else {
            panic!("filters expected");
        };
        assert_eq!(filter.skip, None);
        assert_eq!(parse_kill(&[b"ID", b"0"], 9), Err(KillError::BadId));
        assert_eq!(
            parse_kill(&[b"ID"], 9).ok(),
            Some(KillRequest::Address("ID".into()))
        );
        assert_eq!(parse_kill(&[b"COLOUR", b"red"], 9), Err(KillError::Syntax));
        assert_eq!(
            parse_kill(&[b"TYPE", b"x"], 9),
            Err(KillError::UnknownType("x".into()))
        );
    }
}
