//! [`RedisOffsetStore`]: proxy-managed cursors kept in one Redis that every proxy process shares.
//!
//! Each cursor is two keys that share a hash tag (so they live on one node of a cluster too):
//! `{prefix}{topic/partition/group}:next` holds the next offset to lease, and `{prefix}{...}:back` is a sorted
//! set of given-back offsets. Every operation is one Lua script, which Redis runs atomically, so any number of
//! proxy processes can lease from the same cursors at once without a master: no offset is leased twice.
//! Cursors survive proxy restarts as long as Redis keeps its data (use Redis persistence for that).
//!
//! The guarantee is the one documented in [`offsets`](crate::offsets): at most once. A lease whose reply was
//! lost (a timeout, or a proxy that died) is never leased again. Calls that failed on a reused connection
//! before any reply came back are retried once on a fresh connection; a retried lease can only skip an offset,
//! never repeat one.
//!
//! The client is a deliberately tiny RESP2 request/reply over a few tokio `TcpStream`s, not the `redis` crate,
//! to keep the library's dependency tree small.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::error::OffsetStoreError;
use crate::offsets::{BoxFuture, CursorKey, CursorState, OffsetStore};

// The scripts never turn an offset into a Lua number for arithmetic or a reply: Lua numbers are doubles, exact
// only up to 2^53. Offsets travel as decimal strings, are compared exactly by length then by bytes (they are
// never negative and have no leading zeros), and the cursor moves with INCR, which Redis does on 64-bit integers.

/// Leases one offset: a given-back one first (lowest), else the cursor while it is below the high watermark.
/// Replies with the offset as a bulk string, or nil.
const LEASE_SCRIPT: &str = r"
local function less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local back = redis.call('ZRANGE', KEYS[2], 0, 0)
if back[1] then
  redis.call('ZREM', KEYS[2], back[1])
  return back[1]
end
local next = redis.call('GET', KEYS[1]) or '0'
if less(next, ARGV[1]) then
  redis.call('INCR', KEYS[1])
  return next
end
return false
";

/// Gives an offset back, but only one the cursor has already passed (so it was leased before).
const GIVE_BACK_SCRIPT: &str = r"
local function less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local next = redis.call('GET', KEYS[1]) or '0'
if less(ARGV[1], next) then
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
end
return 0
";

/// Moves the cursor up to the log start and drops given-back offsets below it.
const SKIP_TO_SCRIPT: &str = r"
local function less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local next = redis.call('GET', KEYS[1]) or '0'
if less(next, ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
return 0
";

/// Sets the cursor and forgets given-back offsets.
const RESET_SCRIPT: &str = r"
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 0
";

/// Longest line (simple string, error, integer, length) accepted from Redis.
const MAX_LINE_BYTES: u64 = 64 * 1024;
/// Largest bulk string accepted from Redis; our replies are offsets.
const MAX_BULK_BYTES: usize = 1024 * 1024;
/// Largest array accepted from Redis (given-back offsets in SHOW).
const MAX_ARRAY_LEN: usize = 1_000_000;

/// Where the Redis offset store connects and how.
///
/// ```
/// use kafka_bridge::RedisStoreConfig;
/// let mut config = RedisStoreConfig::new("127.0.0.1:6380");
/// config.password = Some("secret".into());
/// assert_eq!(config.key_prefix, "rkproxy:kafka:");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisStoreConfig {
    /// `host:port` of the Redis server.
    pub address: String,
    /// ACL user name for `AUTH user password`; `None` sends `AUTH password`.
    pub username: Option<String>,
    /// Password; `None` sends no AUTH.
    pub password: Option<String>,
    /// Prefix of every key this store writes.
    pub key_prefix: String,
    /// Longest wait for one call (connect, AUTH, script).
    pub timeout: Duration,
    /// Connections opened (lazily) to Redis; calls are spread over them round-robin.
    pub connections: usize,
}

/// Cursors in one Redis, shared by every proxy process; see the module documentation.
#[derive(Debug)]
pub struct RedisOffsetStore {
    config: RedisStoreConfig,
    connections: Vec<Mutex<Option<RedisConnection>>>,
    next_connection: AtomicUsize,
}

#[derive(Debug)]
struct RedisConnection {
    stream: BufStream<TcpStream>,
}

/// The subset of RESP2 values our scripts and AUTH reply with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RedisValue {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<RedisValue>),
}

/// Why a call failed, and whether it may be retried on a fresh connection.
struct CallError {
    error: OffsetStoreError,
    /// True when nothing came back at all on a reused connection: Redis most likely closed it while idle.
    retry_on_fresh_connection: bool,
}

// === impl RedisStoreConfig ===

impl RedisStoreConfig {
    /// No AUTH, prefix `rkproxy:kafka:`, 1 s timeout, 4 connections.
    pub fn new(address: impl Into<String>) -> Self {
        RedisStoreConfig {
            address: address.into(),
            username: None,
            password: None,
            key_prefix: "rkproxy:kafka:".into(),
            timeout: Duration::from_secs(1),
            connections: 4,
        }
    }
}

// === impl RedisOffsetStore ===

impl RedisOffsetStore {
    /// A store that connects lazily on first use (so a Redis that is down at start does not stop the proxy) and
    /// reconnects after any failure.
    pub fn new(config: RedisStoreConfig) -> Self {
        let connections = (0..config.connections.max(1))
            .map(|_| Mutex::new(None))
            .collect();
        RedisOffsetStore {
            config,
            connections,
            next_connection: AtomicUsize::new(0),
        }
    }

    /// Connects once and checks that Redis answers `PING`, so a misconfigured store is reported at start.
    pub async fn check(&self) -> Result<(), OffsetStoreError> {
        match self.call(&[b"PING"]).await? {
            RedisValue::Simple(pong) if pong == "PONG" => Ok(()),
            other => Err(OffsetStoreError::Protocol(format!(
                "PING answered {other:?}"
            ))),
        }
    }

    fn keys(&self, key: &CursorKey) -> (String, String) {
        let tag = format!(
            "{}{{{}/{}/{}}}",
            self.config.key_prefix, key.topic, key.partition, key.group
        );
        (format!("{tag}:next"), format!("{tag}:back"))
    }

    async fn eval(
        &self,
        script: &str,
        key: &CursorKey,
        argument: i64,
    ) -> Result<RedisValue, OffsetStoreError> {
        let (next_key, back_key) = self.keys(key);
        let argument = argument.to_string();
        self.call(&[
            b"EVAL",
            script.as_bytes(),
            b"2",
            next_key.as_bytes(),
            back_key.as_bytes(),
            argument.as_bytes(),
        ])
        .await
    }

    /// Sends one command and reads its reply, connecting first if needed; see [`CallError`] for the retry.
    async fn call(&self, args: &[&[u8]]) -> Result<RedisValue, OffsetStoreError> {
        let index = self.next_connection.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        let mut slot = self.connections[index].lock().await;
        for attempt in 0..2 {
            let reused = slot.is_some();
            let connection = match slot.as_mut() {
                Some(connection) => connection,
                None => slot.insert(self.connect().await?),
            };
            let outcome = tokio::time::timeout(self.config.timeout, connection.call(args)).await;
            let failure = match outcome {
                Ok(Ok(RedisValue::Error(text))) => return Err(OffsetStoreError::Protocol(text)),
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(failure)) => failure,
                Err(_) => CallError {
                    error: OffsetStoreError::Unavailable(format!(
                        "no reply from Redis at {} within {} ms",
                        self.config.address,
                        self.config.timeout.as_millis()
                    )),
                    retry_on_fresh_connection: false,
                },
            };
            // The connection's state is unknown after a failure (a reply may still be on its way): drop it.
            *slot = None;
            if !(reused && failure.retry_on_fresh_connection && attempt == 0) {
                return Err(failure.error);
            }
        }
        Err(OffsetStoreError::Unavailable(format!(
            "Redis at {} keeps closing connections",
            self.config.address
        )))
    }

    async fn connect(&self) -> Result<RedisConnection, OffsetStoreError> {
        let address = &self.config.address;
        let unavailable =
            |cause: String| OffsetStoreError::Unavailable(format!("Redis at {address}: {cause}"));
        let stream = tokio::time::timeout(self.config.timeout, TcpStream::connect(address))
            .await
            .map_err(|_| unavailable("connect timed out".into()))?
            .map_err(|error| unavailable(error.to_string()))?;
        // Small request/reply round trips: do not let Nagle's algorithm hold them back.
        stream
            .set_nodelay(true)
            .map_err(|error| unavailable(error.to_string()))?;
        let mut connection = RedisConnection {
            stream: BufStream::new(stream),
        };
        if let Some(password) = &self.config.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(username) = &self.config.username {
                auth.push(username.as_bytes());
            }
            auth.push(password.as_bytes());
            let reply = tokio::time::timeout(self.config.timeout, connection.call(&auth))
                .await
                .map_err(|_| unavailable("AUTH timed out".into()))?
                .map_err(|failure| failure.error)?;
            match reply {
                RedisValue::Simple(ok) if ok == "OK" => {}
                RedisValue::Error(text) => {
                    return Err(OffsetStoreError::Protocol(format!("AUTH refused: {text}")))
                }
                other => {
                    return Err(OffsetStoreError::Protocol(format!(
                        "AUTH answered {other:?}"
                    )))
                }
            }
        }
        Ok(connection)
    }
}

impl OffsetStore for RedisOffsetStore {
    fn lease<'a>(
        &'a self,
        key: &'a CursorKey,
        high_watermark: i64,
    ) -> BoxFuture<'a, Result<Option<i64>, OffsetStoreError>> {
        Box::pin(async move {
            // The scripts compare decimal strings, which is only exact for non-negative numbers.
            match self.eval(LEASE_SCRIPT, key, high_watermark.max(0)).await? {
                RedisValue::Bulk(Some(text)) => Ok(Some(parse_i64(&text)?)),
                RedisValue::Bulk(None) => Ok(None),
                other => Err(OffsetStoreError::Protocol(format!(
                    "lease script answered {other:?}"
                ))),
            }
        })
    }

    fn give_back<'a>(
        &'a self,
        key: &'a CursorKey,
        offset: i64,
    ) -> BoxFuture<'a, Result<(), OffsetStoreError>> {
        Box::pin(async move {
            // A negative offset was never leased; the scripts only compare non-negative decimals.
            if offset < 0 {
                return Ok(());
            }
            self.eval(GIVE_BACK_SCRIPT, key, offset).await.map(|_| ())
        })
    }

    fn skip_to<'a>(
        &'a self,
        key: &'a CursorKey,
        log_start: i64,
    ) -> BoxFuture<'a, Result<(), OffsetStoreError>> {
        Box::pin(async move {
            self.eval(SKIP_TO_SCRIPT, key, log_start.max(0))
                .await
                .map(|_| ())
        })
    }

    fn show<'a>(
        &'a self,
        key: &'a CursorKey,
    ) -> BoxFuture<'a, Result<CursorState, OffsetStoreError>> {
        Box::pin(async move {
            let (next_key, back_key) = self.keys(key);
            let next_offset = match self.call(&[b"GET", next_key.as_bytes()]).await? {
                RedisValue::Bulk(None) => 0,
                RedisValue::Bulk(Some(text)) => parse_i64(&text)?,
                other => {
                    return Err(OffsetStoreError::Protocol(format!(
                        "GET answered {other:?}"
                    )))
                }
            };
            let given_back = match self
                .call(&[b"ZRANGE", back_key.as_bytes(), b"0", b"-1"])
                .await?
            {
                RedisValue::Array(items) => items
                    .into_iter()
                    .map(|item| match item {
                        RedisValue::Bulk(Some(text)) => parse_i64(&text),
                        other => Err(OffsetStoreError::Protocol(format!("ZRANGE item {other:?}"))),
                    })
                    .collect::<Result<Vec<i64>, _>>()?,
                other => {
                    return Err(OffsetStoreError::Protocol(format!(
                        "ZRANGE answered {other:?}"
                    )))
                }
            };
            Ok(CursorState {
                next_offset,
                given_back,
            })
        })
    }

    fn reset<'a>(
        &'a self,
        key: &'a CursorKey,
        next_offset: i64,
    ) -> BoxFuture<'a, Result<(), OffsetStoreError>> {
        Box::pin(async move {
            self.eval(RESET_SCRIPT, key, next_offset.max(0))
                .await
                .map(|_| ())
        })
    }
}

fn parse_i64(text: &[u8]) -> Result<i64, OffsetStoreError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| {
            OffsetStoreError::Protocol(format!(
                "not an offset: {:?}",
                String::from_utf8_lossy(text)
            ))
        })
}

// === impl RedisConnection ===

impl RedisConnection {
    async fn call(&mut self, args: &[&[u8]]) -> Result<RedisValue, CallError> {
        let mut request = BytesMut::new();
        encode_command(args, &mut request);
        let sent = async {
            self.stream.write_all(&request).await?;
            self.stream.flush().await
        };
        sent.await.map_err(|error| CallError {
            error: OffsetStoreError::Unavailable(format!("writing to Redis: {error}")),
            // A failed write to an idle connection means Redis closed it; the command was not run.
            retry_on_fresh_connection: true,
        })?;
        let mut first_line = Vec::new();
        let read = self
            .read_line(&mut first_line)
            .await
            .map_err(|error| CallError {
                retry_on_fresh_connection: error.kind() == std::io::ErrorKind::UnexpectedEof,
                error: OffsetStoreError::Unavailable(format!("reading from Redis: {error}")),
            })?;
        debug_assert!(read > 0);
        let value = self
            .read_value(first_line, true)
            .await
            .map_err(|error| CallError {
                error,
                retry_on_fresh_connection: false,
            })?;
        Ok(value)
    }

    /// Reads one CRLF-terminated line (without the CRLF); EOF before any byte is `UnexpectedEof`.
    async fn read_line(&mut self, line: &mut Vec<u8>) -> std::io::Result<usize> {
        line.clear();
        let read = (&mut self.stream)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', line)
            .await?;
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "Redis closed the connection",
            ));
        }
        if !line.ends_with(b"\r\n") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a reply line without CRLF or too long",
            ));
        }
        line.truncate(line.len() - 2);
        Ok(read)
    }

    /// Decodes the value that starts with `line`; arrays may hold only scalars (all our replies are flat).
    async fn read_value(
        &mut self,
        line: Vec<u8>,
        allow_array: bool,
    ) -> Result<RedisValue, OffsetStoreError> {
        let protocol = |what: String| OffsetStoreError::Protocol(what);
        let io = |error: std::io::Error| {
            OffsetStoreError::Unavailable(format!("reading from Redis: {error}"))
        };
        let (&kind, rest) = line
            .split_first()
            .ok_or_else(|| protocol("empty reply line".into()))?;
        let text = String::from_utf8_lossy(rest).into_owned();
        let number = || {
            text.parse::<i64>()
                .map_err(|_| protocol(format!("bad number {text:?}")))
        };
        match kind {
            b'+' => Ok(RedisValue::Simple(text)),
            b'-' => Ok(RedisValue::Error(text)),
            b':' => Ok(RedisValue::Integer(number()?)),
            b'$' => {
                let length = number()?;
                if length < 0 {
                    return Ok(RedisValue::Bulk(None));
                }
                let length = usize::try_from(length)
                    .ok()
                    .filter(|length| *length <= MAX_BULK_BYTES)
                    .ok_or_else(|| {
                        protocol(format!("bulk string of {length} bytes is too large"))
                    })?;
                let mut data = vec![0u8; length + 2];
                self.stream.read_exact(&mut data).await.map_err(io)?;
                if !data.ends_with(b"\r\n") {
                    return Err(protocol("bulk string without CRLF".into()));
                }
                data.truncate(length);
                Ok(RedisValue::Bulk(Some(data)))
            }
            b'*' if allow_array => {
                let length = number()?;
                if length < 0 {
                    return Ok(RedisValue::Array(Vec::new()));
                }
                let length = usize::try_from(length)
                    .ok()
                    .filter(|length| *length <= MAX_ARRAY_LEN)
                    .ok_or_else(|| protocol(format!("array of {length} items is too large")))?;
                let mut items = Vec::with_capacity(length.min(1024));
                for _ in 0..length {
                    let mut item_line = Vec::new();
                    self.read_line(&mut item_line).await.map_err(io)?;
                    items.push(Box::pin(self.read_value(item_line, false)).await?);
                }
                Ok(RedisValue::Array(items))
            }
            other => Err(protocol(format!(
                "unexpected reply type {:?}",
                char::from(other)
            ))),
        }
    }
}

/// Writes a command as a RESP2 array of bulk strings.
fn encode_command(args: &[&[u8]], out: &mut BytesMut) {
    out.put_u8(b'*');
    out.put_slice(args.len().to_string().as_bytes());
    out.put_slice(b"\r\n");
    for arg in args {
        out.put_u8(b'$');
        out.put_slice(arg.len().to_string().as_bytes());
        out.put_slice(b"\r\n");
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        encode_command(&[b"GET", b"a\r\nb"], &mut out);
        assert_eq!(&out[..], b"*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n");
    }

    #[test]
    fn keys_share_a_hash_tag() {
        let store = RedisOffsetStore::new(RedisStoreConfig::new("127.0.0.1:1"));
        let key = CursorKey {
            group: "billing".into(),
            topic: "orders".into(),
            partition: 2,
        };
        assert_eq!(
            store.keys(&key),
            (
                "rkproxy:kafka:{orders/2/billing}:next".to_string(),
                "rkproxy:kafka:{orders/2/billing}:back".to_string()
            )
        );
    }

    #[tokio::test]
    async fn a_redis_that_is_down_gives_an_error_quickly() {
        // Port 1 on loopback is closed on any normal machine: the connect is refused at once.
        let mut config = RedisStoreConfig::new("127.0.0.1:1");
        config.timeout = Duration::from_millis(500);
        let store = RedisOffsetStore::new(config);
        let key = CursorKey {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
        };
        let started = std::time::Instant::now();
        let error = store.lease(&key, 10).await.unwrap_err();
        assert!(
            matches!(error, OffsetStoreError::Unavailable(_)),
            "{error:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
