//! The proxy's own client table, for `CLIENT LIST` and `CLIENT KILL` across its sessions.
//!
//! Each session has one [`ClientEntry`] in its worker's table (`WorkerTable::clients`): added when the session
//! starts, brought up to date when the session flushes its counts (before a write of replies, under the lock
//! that flush takes anyway, so nothing is added to the per-request path), removed when the session ends.
//!
//! Killing: the entry holds a duplicate of the client's socket descriptor, so a session on another worker can
//! shut the socket down (`shutdown(2)` acts on the socket, not the descriptor); the session then reads the end
//! of its client's stream and ends as if the client had left. The duplicate closes with the entry, when the
//! session ends, so no descriptor number is ever reused under a killer.

use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

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
    pub db: u32,
    pub resp3: bool,
    /// The command table name of the client's latest request (`NULL` before any).
    pub last_command: &'static str,
    pub last_active: Instant,
    /// Requests in flight (read, not yet answered).
    pub pending: usize,
    /// Reply bytes waiting to be written to the client.
    pub output_bytes: usize,
    /// A duplicate of the client's socket, to shut it down (`None` if it could not be duplicated).
    socket: Option<TcpStream>,
    /// Shut down by CLIENT KILL: no longer listed, nor killed again, while the session ends.
    killed: bool,
}

/// What a session publishes of itself when it flushes.
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
    /// The entry of a session starting now on `stream`.
    pub fn new(
        id: u64,
        stream: &tokio::net::TcpStream,
        tenant: &Arc<str>,
        pool: &Arc<str>,
    ) -> Self {
        let addr = |addr: std::io::Result<std::net::SocketAddr>| {
            addr.map(|a| a.to_string()).unwrap_or_default()
        };
        let (socket, fd) = duplicate(stream);
        let now = Instant::now();
        ClientEntry {
            id,
            addr: addr(stream.peer_addr()),
            laddr: addr(stream.local_addr()),
            fd,
            started: now,
            tenant: Arc::clone(tenant),
            pool: Arc::clone(pool),
            name: None,
            db: 0,
            resp3: false,
            last_command: "NULL",
            last_active: now,
            pending: 0,
            output_bytes: 0,
            socket,
            killed: false,
        }
    }

    pub fn update(&mut self, now: ClientNow<'_>, last_command: &'static str) {
        let name_changed = match (&self.name, now.name) {
            (Some(old), Some(new)) => old.as_ptr() != new.as_ptr() || old.len() != new.len(),
            (None, None) => false,
            _ => true,
        };
        if name_changed {
            self.name = now.name.cloned();
        }
        self.db = now.db;
        self.resp3 = now.resp3;
        self.last_command = last_command;
        self.last_active = now.last_active;
        self.pending = now.pending;
        self.output_bytes = now.output_bytes;
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
        ClientView {
            id: self.id,
            addr: self.addr.clone(),
            laddr: self.laddr.clone(),
            fd: self.fd,
            age_seconds: self.started.elapsed().as_secs(),
            idle_seconds: self.last_active.elapsed().as_secs(),
            tenant: Arc::clone(&self.tenant),
            pool: Arc::clone(&self.pool),
            name: self.name.clone(),
            db: self.db,
            resp3: self.resp3,
            last_command: self.last_command,
            pending: self.pending,
            output_bytes: self.output_bytes,
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
