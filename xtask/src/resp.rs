//! A tiny blocking Redis client, just enough for health checks and cluster status.
//!
//! Using redis-cli for every poll would fork a process per check; a few dozen lines of RESP keep
//! the wait loops cheap and let us inspect replies directly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::{bail, Result};

/// A reply from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text, for status and bulk replies.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Status(text) => Some(text.clone()),
            Reply::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        }
    }
}

/// One connection to a Redis server (or to a proxy speaking RESP).
pub struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    /// Connects with short timeouts: every use is a local health check.
    pub fn connect(addr: SocketAddr) -> Result<Connection> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            reader: BufReader::new(stream),
        })
    }

    /// Connects and authenticates with the given password (as the default user), if any.
    pub fn connect_with_password(addr: SocketAddr, password: Option<&str>) -> Result<Connection> {
        let mut connection = Connection::connect(addr)?;
        if let Some(password) = password {
            match connection.command(&["AUTH", password])? {
                Reply::Status(_) => {}
                other => bail!("AUTH on {addr} failed: {other:?}"),
            }
        }
        Ok(connection)
    }

    /// Sends one command and reads its reply.
    pub fn command(&mut self, args: &[&str]) -> Result<Reply> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&request)?;
        self.read_reply(0)
    }

    /// Sends one command and returns its reply as text, failing on error replies.
    pub fn text_command(&mut self, args: &[&str]) -> Result<String> {
        match self.command(args)? {
            Reply::Error(message) => bail!("{} failed: {message}", args.join(" ")),
            reply => reply
                .text()
                .ok_or_else(|| format!("{}: unexpected reply {reply:?}", args.join(" ")).into()),
        }
    }

    fn read_reply(&mut self, depth: usize) -> Result<Reply> {
        if depth > 8 {
            bail!("reply nested too deeply");
        }
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("connection closed");
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let Some(kind) = line.chars().next() else {
            bail!("empty reply line");
        };
        let rest = &line[kind.len_utf8()..];
        let reply = match kind {
            '+' => Reply::Status(rest.to_string()),
            '-' => Reply::Error(rest.to_string()),
            ':' => Reply::Integer(rest.parse()?),
            '$' => {
                let length: i64 = rest.parse()?;
                if length < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut bytes = vec![0; usize::try_from(length)? + 2];
                    self.reader.read_exact(&mut bytes)?;
                    bytes.truncate(bytes.len() - 2);
                    Reply::Bulk(Some(bytes))
                }
            }
            '*' => {
                let count: i64 = rest.parse()?;
                if count < 0 {
                    Reply::Array(None)
                } else {
                    let mut items = Vec::new();
                    for _ in 0..count {
                        items.push(self.read_reply(depth + 1)?);
                    }
                    Reply::Array(Some(items))
                }
            }
            other => bail!("unexpected reply type {other:?}"),
        };
        Ok(reply)
    }
}

/// Reads `field:value` lines (the INFO and CLUSTER INFO format) into a lookup.
pub fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.trim_end()
            .strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_field_finds_exact_field_names() {
        let info = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_known_nodes:6\r\n";
        assert_eq!(info_field(info, "cluster_state"), Some("ok"));
        assert_eq!(info_field(info, "cluster_known_nodes"), Some("6"));
        assert_eq!(info_field(info, "cluster_slots"), None);
    }

    #[test]
    fn reads_nested_replies_from_a_real_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = [0u8; 64];
            let _ = socket.read(&mut request).unwrap();
            socket
                .write_all(b"*3\r\n+OK\r\n$5\r\nhello\r\n*2\r\n:7\r\n$-1\r\n")
                .unwrap();
        });
        let mut connection = Connection::connect(addr).unwrap();
        let reply = connection.command(&["PING"]).unwrap();
        server.join().unwrap();
        assert_eq!(
            reply,
            Reply::Array(Some(vec![
                Reply::Status("OK".into()),
                Reply::Bulk(Some(b"hello".to_vec())),
                Reply::Array(Some(vec![Reply::Integer(7), Reply::Bulk(None)])),
            ]))
        );
    }
}
