//! [`RedisOffsetStore`]: proxy-managed cursors kept in one Redis that every proxy process shares.
//!
//! Each cursor is three keys that share a hash tag (so they live on one node of a cluster too):
//! `{prefix}{topic/partition/group}:next` holds the next offset to lease, `{prefix}{...}:back` is a sorted
//! set of given-back offsets, and `{prefix}{...}:pending` (at least once only) a sorted set of leased,
//! unacknowledged offsets scored by their deadline in ms of the Redis server's clock (`TIME`), so proxies
//! with different clocks agree on when a record is due again. Every operation is one Lua script, which Redis runs atomically, so any number of
//! proxy processes can lease from the same cursors at once without a master: no offset is leased twice.
//! Cursors survive proxy restarts as long as Redis keeps its data (use Redis persistence for that).
//!
//! The guarantee is the one documented in [`offsets`](crate::offsets): at most once. A lease whose reply was
//! lost (a timeout, or a proxy that died) is never leased again. Calls that failed on a reused connection
//! before any reply came back are retried once on a fresh connection; a retried lease can only skip an offset,
//! never repeat one.
//!
//! The client is a deliberately tiny RESP2 request/reply over a few tokio `TcpStream`s, not the `redis` crate,
//! to keep the library's dependency tree small: requests are written by `resp_codec::encode_command`, replies
//! framed by `resp_codec::ReplyDecoder` (within [`REPLY_LIMITS`]) and read by `resp_codec::parse_frame`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use resp_codec::{encode_command, parse_frame, Frame, Limits, ReplyDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_util::codec::Decoder;

use crate::error::OffsetStoreError;
use crate::offsets::{BoxFuture, CursorKey, CursorState, Lease, OffsetStore};

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

/// Leases a block: KEYS next, back, pending; ARGV high watermark, max, hold in ms (0: at most once).
/// Replies `{kind, ...}`: `'x', offsets...` (pending offsets past their deadline, delivered again),
/// `'b', offsets...` (given back), `'r', first, end` (the cursor block `first..end`), or nil.
///
/// The block's bounds are Lua numbers (doubles), exact for offsets below 2^53, far beyond any Kafka log.
const LEASE_BLOCK_SCRIPT: &str = r"
local max = math.min(tonumber(ARGV[2]), 10000)
local hold = tonumber(ARGV[3])
local deadline = 0
if hold > 0 then
  -- Redis before 5 replicates scripts whole, which forbids writes after TIME unless told otherwise.
  if redis.replicate_commands then redis.replicate_commands() end
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  deadline = now + hold
  local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, max)
  if #due > 0 then
    local reply = {'x'}
    for _, offset in ipairs(due) do
      redis.call('ZADD', KEYS[3], deadline, offset)
      table.insert(reply, offset)
    end
    return reply
  end
end
local back = redis.call('ZRANGE', KEYS[2], 0, max - 1)
if #back > 0 then
  local reply = {'b'}
  for _, offset in ipairs(back) do
    redis.call('ZREM', KEYS[2], offset)
    if hold > 0 then redis.call('ZADD', KEYS[3], deadline, offset) end
    table.insert(reply, offset)
  end
  return reply
end
local first = tonumber(redis.call('GET', KEYS[1]) or '0')
local watermark = tonumber(ARGV[1])
if first >= watermark then return false end
local last = math.min(first + max, watermark)
redis.call('SET', KEYS[1], string.format('%.0f', last))
if hold > 0 then
  for offset = first, last - 1 do
    redis.call('ZADD', KEYS[3], deadline, string.format('%.0f', offset))
  end
end
return {'r', string.format('%.0f', first), string.format('%.0f', last)}
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
redis.call('DEL', KEYS[2], KEYS[3])
return 0
";

/// At least once: how many offsets are pending, and how many ms until the earliest deadline among them by the
/// Redis server's clock (0 when it has passed). Replies `{count}` or `{count, due_in_ms}`. Reads only.
const PENDING_SCRIPT: &str = r"
local count = redis.call('ZCARD', KEYS[3])
if count == 0 then return {0} end
local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
return {count, math.max(0, tonumber(oldest[2]) - now)}
";

/// What the store accepts from Redis: bulk strings and lines of 1 MiB (our replies are offsets), arrays of a
/// million items (given-back offsets in SHOW), and no nesting (all our replies are flat).
const REPLY_LIMITS: Limits = Limits {
    max_bulk_len: 1024 * 1024,
    max_array_len: 1_000_000,
    max_depth: 1,
    max_inline_len: 64 * 1024,
};

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
    /// For a Redis reached over TLS: what turns each new socket into the stream the store talks over. The
    /// caller brings the TLS, so this crate needs none. `None`: plain TCP.
    pub transport: Option<Arc<dyn StoreTransport>>,
}

/// Turns a connected socket into the stream the offset store talks over (a TLS handshake, within the store's
/// `timeout`); the error text says why it failed.
pub trait StoreTransport: Send + Sync + std::fmt::Debug {
    fn wrap(
        &self,
        tcp: TcpStream,
        address: &str,
    ) -> BoxFuture<'static, Result<Box<dyn StoreStream>, String>>;
}

/// A stream the offset store can talk over.
pub trait StoreStream: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug> StoreStream for T {}

/// Cursors in one Redis, shared by every proxy process; see the module documentation.
#[derive(Debug)]
pub struct RedisOffsetStore {
    config: RedisStoreConfig,
    connections: Vec<Mutex<Option<RedisConnection>>>,
    next_connection: AtomicUsize,
}

#[derive(Debug)]
struct RedisConnection {
    stream: Box<dyn StoreStream>,
    /// Bytes read from Redis and not yet framed into a reply.
    read_buffer: BytesMut,
    replies: ReplyDecoder,
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
            transport: None,
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
            Frame::Simple(pong) if &pong[..] == b"PONG" => Ok(()),
            other => Err(unexpected("PING", &other)),
        }
    }

    fn keys(&self, key: &CursorKey) -> (String, String) {
        let tag = self.tag(key);
        (format!("{tag}:next"), format!("{tag}:back"))
    }

    fn pending_key(&self, key: &CursorKey) -> String {
        format!("{}:pending", self.tag(key))
    }

    fn tag(&self, key: &CursorKey) -> String {
        format!(
            "{}{{{}/{}/{}}}",
            self.config.key_prefix, key.topic, key.partition, key.group
        )
    }

    async fn eval(
        &self,
        script: &str,
        key: &CursorKey,
        argument: i64,
    ) -> Result<Frame, OffsetStoreError> {
        self.eval_with(script, key, &[argument.to_string()]).await
    }

    /// Runs `script` with the cursor's three keys and `arguments`.
    async fn eval_with(
        &self,
        script: &str,
        key: &CursorKey,
        arguments: &[String],
    ) -> Result<Frame, OffsetStoreError> {
        let (next_key, back_key) = self.keys(key);
        let pending_key = self.pending_key(key);
        let mut args: Vec<&[u8]> = vec![
            b"EVAL",
            script.as_bytes(),
            b"3",
            next_key.as_bytes(),
            back_key.as_bytes(),
            pending_key.as_bytes(),
        ];
        args.extend(arguments.iter().map(|argument| argument.as_bytes()));
        self.call(&args).await
    }

    /// Sends one command and reads its reply, connecting first if needed; see [`CallError`] for the retry.
    async fn call(&self, args: &[&[u8]]) -> Result<Frame, OffsetStoreError> {
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
                Ok(Ok(Frame::Error(text))) => return Err(OffsetStoreError::Protocol(lossy(&text))),
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
        let stream: Box<dyn StoreStream> = match &self.config.transport {
            None => Box::new(stream),
            Some(transport) => {
                tokio::time::timeout(self.config.timeout, transport.wrap(stream, address))
                    .await
                    .map_err(|_| unavailable("TLS handshake timed out".into()))?
                    .map_err(unavailable)?
            }
        };
        let mut connection = RedisConnection::new(stream);
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
                Frame::Simple(ok) if &ok[..] == b"OK" => {}
                Frame::Error(text) => {
                    return Err(OffsetStoreError::Protocol(format!(
                        "AUTH refused: {}",
                        lossy(&text)
                    )))
                }
                other => return Err(unexpected("AUTH", &other)),
            }
        }
        Ok(connection)
    }
}

impl OffsetStore for RedisOffsetStore {
    fn lease_block<'a>(
        &'a self,
        key: &'a CursorKey,
        high_watermark: i64,
        max: usize,
        hold: Option<Duration>,
    ) -> BoxFuture<'a, Result<Option<Lease>, OffsetStoreError>> {
        Box::pin(async move {
            // A zero hold would mean at most once to the script: at least once holds for 1 ms at least.
            let hold_ms = hold.map_or(0, |hold| hold.as_millis().clamp(1, u128::from(u32::MAX)));
            let arguments = [
                high_watermark.max(0).to_string(),
                max.max(1).to_string(),
                hold_ms.to_string(),
            ];
            let reply = self.eval_with(LEASE_BLOCK_SCRIPT, key, &arguments).await?;
            parse_lease(reply)
        })
    }

    fn ack<'a>(
        &'a self,
        key: &'a CursorKey,
        offsets: &'a [i64],
    ) -> BoxFuture<'a, Result<u64, OffsetStoreError>> {
        Box::pin(async move {
            if offsets.is_empty() {
                return Ok(0);
            }
            let pending_key = self.pending_key(key);
            let members: Vec<String> = offsets.iter().map(i64::to_string).collect();
            let mut args: Vec<&[u8]> = vec![b"ZREM", pending_key.as_bytes()];
            args.extend(members.iter().map(|member| member.as_bytes()));
            match self.call(&args).await? {
                Frame::Integer(removed) => Ok(u64::try_from(removed).unwrap_or(0)),
                other => Err(unexpected("ZREM", &other)),
            }
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a CursorKey,
        offsets: &'a [i64],
    ) -> BoxFuture<'a, Result<(), OffsetStoreError>> {
        Box::pin(async move {
            if offsets.is_empty() {
                return Ok(());
            }
            // Deadline 0 is long past: the next lease takes them. XX: an acknowledged offset stays gone.
            let pending_key = self.pending_key(key);
            let members: Vec<String> = offsets.iter().map(i64::to_string).collect();
            let mut args: Vec<&[u8]> = vec![b"ZADD", pending_key.as_bytes(), b"XX"];
            for member in &members {
                args.push(b"0");
                args.push(member.as_bytes());
            }
            self.call(&args).await.map(|_| ())
        })
    }

    fn lease<'a>(
        &'a self,
        key: &'a CursorKey,
        high_watermark: i64,
    ) -> BoxFuture<'a, Result<Option<i64>, OffsetStoreError>> {
        Box::pin(async move {
            // The scripts compare decimal strings, which is only exact for non-negative numbers.
            match self.eval(LEASE_SCRIPT, key, high_watermark.max(0)).await? {
                Frame::Bulk(text) => Ok(Some(parse_i64(&text)?)),
                Frame::NullBulk => Ok(None),
                other => Err(unexpected("lease script", &other)),
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
                Frame::NullBulk => 0,
                Frame::Bulk(text) => parse_i64(&text)?,
                other => return Err(unexpected("GET", &other)),
            };
            let given_back = match self
                .call(&[b"ZRANGE", back_key.as_bytes(), b"0", b"-1"])
                .await?
            {
                Frame::Array(items) => items
                    .into_iter()
                    .map(|item| match item {
                        Frame::Bulk(text) => parse_i64(&text),
                        other => Err(unexpected("an item of ZRANGE", &other)),
                    })
                    .collect::<Result<Vec<i64>, _>>()?,
                other => return Err(unexpected("ZRANGE", &other)),
            };
            let (pending, oldest_deadline_in) =
                parse_pending(self.eval_with(PENDING_SCRIPT, key, &[]).await?)?;
            Ok(CursorState {
                next_offset,
                given_back,
                pending,
                oldest_deadline_in,
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

/// Reads the lease script's reply (see [`LEASE_BLOCK_SCRIPT`]).
fn parse_lease(reply: Frame) -> Result<Option<Lease>, OffsetStoreError> {
    let items = match reply {
        Frame::NullBulk => return Ok(None),
        Frame::Array(items) => items,
        other => return Err(unexpected("lease script", &other)),
    };
    let mut numbers = Vec::with_capacity(items.len());
    let mut kind = None;
    for item in items {
        match (item, kind.is_none()) {
            (Frame::Bulk(text), true) => kind = Some(text),
            (Frame::Bulk(text), false) => numbers.push(parse_i64(&text)?),
            (other, _) => return Err(unexpected("an item of the lease script", &other)),
        }
    }
    let mut lease = Lease::default();
    match (kind.as_deref(), numbers.as_slice()) {
        (Some(b"x"), _) => {
            // The script lists them by deadline; a lease is ascending.
            numbers.sort_unstable();
            lease.offsets = numbers;
            lease.redelivered = true;
        }
        (Some(b"b"), _) => lease.offsets = numbers,
        (Some(b"r"), [first, end]) => {
            lease.offsets = (*first..*end).collect();
            lease.cursor_advanced_to = Some(*end);
        }
        _ => {
            return Err(OffsetStoreError::Protocol(
                "the lease script answered an unknown kind".into(),
            ))
        }
    }
    Ok((!lease.offsets.is_empty()).then_some(lease))
}

/// Reads the pending script's reply (see [`PENDING_SCRIPT`]).
fn parse_pending(reply: Frame) -> Result<(u64, Option<Duration>), OffsetStoreError> {
    let count = |value: i64| u64::try_from(value).unwrap_or(0);
    let millis = |value: i64| Duration::from_millis(u64::try_from(value).unwrap_or(0));
    match reply {
        Frame::Array(items) => match items.as_slice() {
            [Frame::Integer(pending)] => Ok((count(*pending), None)),
            [Frame::Integer(pending), Frame::Integer(due_in)] => {
                Ok((count(*pending), Some(millis(*due_in))))
            }
            _ => Err(unexpected("pending script", &Frame::Array(items))),
        },
        other => Err(unexpected("pending script", &other)),
    }
}

fn parse_i64(text: &[u8]) -> Result<i64, OffsetStoreError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| OffsetStoreError::Protocol(format!("not an offset: {:?}", lossy(text))))
}

/// The error for a reply of the wrong shape: `what` (a command or script) answered `reply`.
fn unexpected(what: &str, reply: &Frame) -> OffsetStoreError {
    OffsetStoreError::Protocol(format!("{what} answered {reply:?}"))
}

fn lossy(text: &[u8]) -> String {
    String::from_utf8_lossy(text).into_owned()
}

// === impl RedisConnection ===

impl RedisConnection {
    fn new(stream: Box<dyn StoreStream>) -> Self {
        RedisConnection {
            stream,
            read_buffer: BytesMut::with_capacity(4096),
            replies: ReplyDecoder::new(REPLY_LIMITS),
        }
    }

    async fn call(&mut self, args: &[&[u8]]) -> Result<Frame, CallError> {
        let mut request = BytesMut::new();
        encode_command(&mut request, args);
        self.stream
            .write_all(&request)
            .await
            .map_err(|error| CallError {
                error: OffsetStoreError::Unavailable(format!("writing to Redis: {error}")),
                // A failed write to an idle connection means Redis closed it; the command was not run.
                retry_on_fresh_connection: true,
            })?;
        self.read_reply().await
    }

    /// Reads until one whole reply is framed, then parses it. Redis closing the connection before any byte of
    /// the reply arrived may be retried on a fresh connection (see [`CallError`]); nothing else may.
    async fn read_reply(&mut self) -> Result<Frame, CallError> {
        let no_retry = |error: OffsetStoreError| CallError {
            error,
            retry_on_fresh_connection: false,
        };
        loop {
            let framed = self
                .replies
                .decode(&mut self.read_buffer)
                .map_err(|error| no_retry(OffsetStoreError::Protocol(error.to_string())))?;
            if let Some(reply) = framed {
                return parse_frame(&reply, &REPLY_LIMITS)
                    .map_err(|error| no_retry(OffsetStoreError::Protocol(error.to_string())))?
                    .map(|(frame, _)| frame)
                    .ok_or_else(|| {
                        no_retry(OffsetStoreError::Protocol(
                            "a framed reply did not parse whole".into(),
                        ))
                    });
            }
            let nothing_yet = self.read_buffer.is_empty();
            let read = self
                .stream
                .read_buf(&mut self.read_buffer)
                .await
                .map_err(|error| {
                    no_retry(OffsetStoreError::Unavailable(format!(
                        "reading from Redis: {error}"
                    )))
                })?;
            if read == 0 {
                return Err(CallError {
                    error: OffsetStoreError::Unavailable(
                        "reading from Redis: Redis closed the connection".into(),
                    ),
                    retry_on_fresh_connection: nothing_yet,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pending_reply_is_a_count_and_the_time_to_the_oldest_deadline() {
        let reply =
            |items: &[i64]| Frame::Array(items.iter().map(|n| Frame::Integer(*n)).collect());
        assert_eq!(parse_pending(reply(&[0])).ok(), Some((0, None)));
        assert_eq!(
            parse_pending(reply(&[3, 1500])).ok(),
            Some((3, Some(Duration::from_millis(1500))))
        );
        assert!(parse_pending(reply(&[])).is_err());
        assert!(parse_pending(Frame::NullBulk).is_err());
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

    /// A connection to a one-shot server on loopback that reads one request, then writes `chunks` one by one
    /// (each its own write, a little apart) and closes. Returns the connection and what the server read.
    async fn scripted_server(
        chunks: &'static [&'static [u8]],
    ) -> (RedisConnection, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 1024];
            let read = socket.read(&mut request).await.unwrap();
            request.truncate(read);
            for chunk in chunks {
                socket.write_all(chunk).await.unwrap();
                socket.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            request
        });
        let stream = TcpStream::connect(address).await.unwrap();
        (RedisConnection::new(Box::new(stream)), server)
    }

    #[tokio::test]
    async fn a_reply_split_over_reads_is_read_whole() {
        let (mut connection, server) =
            scripted_server(&[b"*2\r\n$1\r", b"\n3\r\n$2", b"\r\n10\r\n"]).await;
        let reply = connection.call(&[b"ZRANGE", b"k", b"0", b"-1"]).await;
        assert_eq!(
            reply.ok(),
            Some(Frame::Array(vec![
                Frame::Bulk("3".into()),
                Frame::Bulk("10".into())
            ]))
        );
        assert_eq!(
            server.await.unwrap(),
            b"*4\r\n$6\r\nZRANGE\r\n$1\r\nk\r\n$1\r\n0\r\n$2\r\n-1\r\n"
        );
    }

    #[tokio::test]
    async fn only_a_close_before_any_reply_byte_may_be_retried() {
        let (mut connection, _server) = scripted_server(&[]).await;
        let failure = connection.call(&[b"PING"]).await.unwrap_err();
        assert!(failure.retry_on_fresh_connection);
        let (mut connection, _server) = scripted_server(&[b"$5\r\nab"]).await;
        let failure = connection.call(&[b"GET", b"k"]).await.unwrap_err();
        assert!(!failure.retry_on_fresh_connection);
        assert!(matches!(failure.error, OffsetStoreError::Unavailable(_)));
    }

    #[tokio::test]
    async fn nested_or_oversized_replies_are_protocol_errors() {
        let (mut connection, _server) = scripted_server(&[b"*1\r\n*0\r\n"]).await;
        let failure = connection.call(&[b"PING"]).await.unwrap_err();
        assert!(matches!(failure.error, OffsetStoreError::Protocol(_)));
        let (mut connection, _server) = scripted_server(&[b"$2000000\r\n"]).await;
        let failure = connection.call(&[b"PING"]).await.unwrap_err();
        assert!(matches!(failure.error, OffsetStoreError::Protocol(_)));
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
