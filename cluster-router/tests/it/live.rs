//! A tiny synchronous RESP2 client over `std::net::TcpStream`, enough to ask a live Redis
//! `COMMAND GETKEYS` and to run commands for their error replies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
}

/// One connection to the Redis named by `variable`.
pub struct Live {
    reader: BufReader<TcpStream>,
}

impl Live {
    /// Connects to the address in the environment variable, failing the test with
    /// instructions when it is not set.
    pub fn connect(variable: &str) -> Live {
        let address = env_addresses(variable).remove(0);
        Live::connect_to(&address)
    }

    /// Connects to `address` (`host:port`).
    pub fn connect_to(address: &str) -> Live {
        let stream = TcpStream::connect(address)
            .unwrap_or_else(|e| panic!("cannot connect to {address}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Live {
            reader: BufReader::new(stream),
        }
    }

    /// Sends one command and reads its reply.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            let arg = arg.as_ref();
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&request).unwrap();
        self.read()
    }

    fn read(&mut self) -> Reply {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => Reply::Simple(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Integer(rest.parse().unwrap()),
            "$" => {
                let length: i64 = rest.parse().unwrap();
                if length < 0 {
                    return Reply::Nil;
                }
                let mut data = vec![0; length as usize + 2];
                self.reader.read_exact(&mut data).unwrap();
                data.truncate(length as usize);
                Reply::Bulk(data)
            }
            "*" => {
                let length: i64 = rest.parse().unwrap();
                if length < 0 {
                    return Reply::Nil;
                }
                (0..length).map(|_| self.read()).collect::<Vec<_>>().into()
            }
            _ => panic!("unexpected reply line {line:?}"),
        }
    }
}

/// The comma-separated addresses in `variable`; fails the test with instructions when the
/// variable is not set.
pub fn env_addresses(variable: &str) -> Vec<String> {
    let value = std::env::var(variable).unwrap_or_else(|_| {
        panic!(
            "{variable} is not set. Run these tests with `cargo xtask test`, which starts the \
             servers and exports it; or start them yourself (for RKPROXY_TEST_REDIS: \
             redis-server --port 7700 --save '' &, then export RKPROXY_TEST_REDIS=127.0.0.1:7700; \
             for RKPROXY_TEST_CLUSTER: a 3-master, 3-replica cluster, exported as \
             127.0.0.1:P1,...,127.0.0.1:P6)"
        )
    });
    value
        .split(',')
        .map(str::trim)
        .filter(|address| !address.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Reply {
    /// The same value as a `resp_codec::Frame`, for the functions under test.
    pub fn to_frame(&self) -> resp_codec::Frame {
        use resp_codec::Frame;
        match self {
            Reply::Simple(text) => Frame::Simple(text.clone().into()),
            Reply::Error(text) => Frame::Error(text.clone().into()),
            Reply::Integer(n) => Frame::Integer(*n),
            Reply::Bulk(data) => Frame::Bulk(data.clone().into()),
            Reply::Nil => Frame::NullBulk,
            Reply::Array(items) => Frame::Array(items.iter().map(Reply::to_frame).collect()),
        }
    }
}

impl From<Vec<Reply>> for Reply {
    fn from(items: Vec<Reply>) -> Reply {
        Reply::Array(items)
    }
}
