//! Key isolation: the key prefix added to requests and removed from replies, the key pattern
//! check, and the default TTL.
//!
//! # What gets the prefix
//!
//! - Every key argument, as the command table finds them (`cluster_router::key_indices`, which
//!   matches Redis's `COMMAND GETKEYS`): GET/SET, MGET/MSET lists, EVAL/FCALL `KEYS`, XREAD
//!   `STREAMS`, SORT `STORE`, GEORADIUS `STORE`, MIGRATE `KEYS`, OBJECT/MEMORY USAGE, ...
//! - Patterns that name keys: `KEYS pat` becomes `KEYS <prefix>pat` (the prefix with glob
//!   characters escaped); `SCAN` gets its `MATCH` patterns prefixed, or `MATCH <prefix>*` when
//!   it has none; SORT's `BY` and `GET` patterns get the plain prefix (they are templates, not
//!   globs; `GET #` is left alone).
//! - Pub/sub channels, so tenants cannot eavesdrop on each other: SUBSCRIBE, UNSUBSCRIBE,
//!   PUBLISH, SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH channels; PSUBSCRIBE/PUNSUBSCRIBE and
//!   `PUBSUB CHANNELS|SHARDCHANNELS` patterns (escaped; a missing pattern becomes
//!   `<prefix>*`); `PUBSUB NUMSUB|SHARDNUMSUB` channels. Keyspace notifications
//!   (`__keyspace@0__:...`) are therefore out of reach of prefixed tenants.
//! - `CLIENT TRACKING ... PREFIX p` prefixes; `BCAST` without `PREFIX` gets `PREFIX <prefix>`.
//!
//! # What gets it removed
//!
//! See [`Tenant::reply_needs_rewrite`]: KEYS and SCAN (keys without the prefix, which cannot
//! occur, are dropped rather than shown), BLPOP/BRPOP/BZPOPMIN/BZPOPMAX, LMPOP/BLMPOP/ZMPOP/
//! BZMPOP, XREAD/XREADGROUP stream names (RESP2 arrays and RESP3 maps), pub/sub confirmations
//! and messages ([`Tenant::rewrite_push`]), PUBSUB CHANNELS/NUMSUB and CLIENT TRACKING
//! invalidations.
//!
//! # Limits of key isolation
//!
//! - RANDOMKEY is refused under a prefix (see [`Tenant::authorize`]).
//! - Scripts and functions can touch keys they were not given in `KEYS` (`redis.call('GET',
//!   'other')`); the server cannot tell, so a prefixed tenant that may run EVAL/FCALL can reach
//!   other tenants' keys in the same database. Give such tenants their own `db`.
//! - DBSIZE and INFO keyspace count every key of the database (INFO is admin-only).
//! - `MULTI`/`EXEC`: the proxy rewrites EXEC's reply with [`Tenant::rewrite_exec_reply`] and
//!   the specs of the queued commands.

use bytes::{BufMut, Bytes, BytesMut};
use cluster_router::commands::{channel_indices, key_indices};
use cluster_router::{Args, CommandSpec};
use resp_codec::Frame;

use crate::error::{sanitize, PolicyError};
use crate::tenant::Tenant;

/// The result of [`Tenant::rewrite_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rewrite {
    /// Forward the request as it is.
    Unchanged,
    /// Forward these arguments instead (re-encode with `resp_codec::encode_command`).
    Args(Vec<Bytes>),
}

/// How a command's reply carries keys or channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyKeys {
    /// An array of keys (KEYS).
    List,
    /// `[cursor, [keys]]` (SCAN).
    Scan,
    /// `[key, ...]`: the first element is a key (BLPOP, LMPOP, ...).
    First,
    /// XREAD: `[[stream, entries], ...]` or, in RESP3, `{stream: entries}`.
    Streams,
    /// Subscription confirmations and messages (SUBSCRIBE, ...).
    PubSub,
    /// An array of channels (PUBSUB CHANNELS).
    ChannelList,
    /// `[channel, count, ...]` (PUBSUB NUMSUB).
    ChannelCounts,
}

fn reply_keys(spec: &CommandSpec) -> Option<ReplyKeys> {
    Some(match spec.name {
        "keys" => ReplyKeys::List,
        "scan" => ReplyKeys::Scan,
        "blpop" | "brpop" | "bzpopmin" | "bzpopmax" | "lmpop" | "blmpop" | "zmpop" | "bzmpop" => {
            ReplyKeys::First
        }
        "xread" | "xreadgroup" => ReplyKeys::Streams,
        "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ssubscribe"
        | "sunsubscribe" => ReplyKeys::PubSub,
        "pubsub|channels" | "pubsub|shardchannels" => ReplyKeys::ChannelList,
        "pubsub|numsub" | "pubsub|shardnumsub" => ReplyKeys::ChannelCounts,
        _ => return None,
    })
}

/// Escapes the glob characters of Redis's `stringmatchlen` (`* ? [ ] \`) so the text matches
/// only itself inside a pattern.
///
/// ```
/// assert_eq!(&tenant_policy::escape_glob(b"a*b[1]")[..], b"a\\*b\\[1\\]");
/// ```
pub fn escape_glob(text: &[u8]) -> Bytes {
    let mut escaped = BytesMut::with_capacity(text.len() + 4);
    for &byte in text {
        if matches!(byte, b'*' | b'?' | b'[' | b']' | b'\\') {
            escaped.put_u8(b'\\');
        }
        escaped.put_u8(byte);
    }
    escaped.freeze()
}

fn join(prefix: &[u8], rest: &[u8]) -> Bytes {
    let mut joined = BytesMut::with_capacity(prefix.len() + rest.len());
    joined.put_slice(prefix);
    joined.put_slice(rest);
    joined.freeze()
}

fn arg_is(arg: Option<&[u8]>, word: &str) -> bool {
    arg.is_some_and(|arg| arg.eq_ignore_ascii_case(word.as_bytes()))
}

/// A request being rewritten: the arguments are copied only when the first change is made.
struct Edit<'a, A: Args + ?Sized> {
    args: &'a A,
    copy: Option<Vec<Bytes>>,
}

impl<'a, A: Args + ?Sized> Edit<'a, A> {
    fn new(args: &'a A) -> Self {
        Edit { args, copy: None }
    }

    fn copy(&mut self) -> &mut Vec<Bytes> {
        let args = self.args;
        self.copy.get_or_insert_with(|| {
            (0..args.argc())
                .map(|index| Bytes::copy_from_slice(args.arg(index).unwrap_or_default()))
                .collect()
        })
    }

    fn prefix(&mut self, index: usize, prefix: &[u8]) {
        let Some(original) = self.args.arg(index) else {
            return;
        };
        let joined = join(prefix, original);
        if let Some(slot) = self.copy().get_mut(index) {
            *slot = joined;
        }
    }

    fn push(&mut self, arg: Bytes) {
        self.copy().push(arg);
    }

    fn finish(self) -> Rewrite {
        match self.copy {
            Some(args) => Rewrite::Args(args),
            None => Rewrite::Unchanged,
        }
    }
}

// === impl Tenant (rewrite) ===

impl Tenant {
    /// Whether [`Tenant::rewrite_request`] can change or refuse anything for this tenant; when
    /// false the proxy may skip it.
    pub fn rewrites_requests(&self) -> bool {
        self.key_prefix.is_some() || self.key_pattern.is_some() || self.default_ttl.is_some()
    }

    /// Applies the tenant's key isolation to one request: checks every key against
    /// `key_pattern` (the error names the key), adds `key_prefix` to keys, key patterns and
    /// channels (see the module docs), and gives a `SET` without EX/PX/EXAT/PXAT/KEEPTTL the
    /// tenant's `default_ttl` (`EX seconds`). Allocates only when it changes something.
    ///
    /// `spec` must be what `cluster_router::lookup` returned for `args`.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use cluster_router::lookup;
    /// use tenant_policy::{PoolInfo, Rewrite, TenantConfig, Tenants};
    ///
    /// let mut config = TenantConfig::new("pw", "main");
    /// config.key_prefix = Some("app1:".to_owned());
    /// let tenants = Tenants::new(
    ///     &BTreeMap::from([("app1".to_owned(), config)]),
    ///     &BTreeMap::from([("main".to_owned(), PoolInfo::standalone())]),
    /// )
    /// .unwrap();
    /// let app1 = tenants.get("app1").unwrap();
    ///
    /// let args: &[&[u8]] = &[b"MSET", b"a", b"1", b"b", b"2"];
    /// let Rewrite::Args(rewritten) = app1.rewrite_request(lookup(&args).unwrap(), &args).unwrap()
    /// else { panic!("MSET keys get the prefix") };
    /// assert_eq!(rewritten, ["MSET", "app1:a", "1", "app1:b", "2"]);
    ///
    /// let args: &[&[u8]] = &[b"SCAN", b"0"];
    /// let Rewrite::Args(rewritten) = app1.rewrite_request(lookup(&args).unwrap(), &args).unwrap()
    /// else { panic!("SCAN gets a MATCH") };
    /// assert_eq!(rewritten, ["SCAN", "0", "MATCH", "app1:*"]);
    /// ```
    pub fn rewrite_request<A: Args + ?Sized>(
        &self,
        spec: &CommandSpec,
        args: &A,
    ) -> Result<Rewrite, PolicyError> {
        if !self.rewrites_requests() {
            return Ok(Rewrite::Unchanged);
        }
        let keys = key_indices(spec, &args)?;
        if let Some(pattern) = &self.key_pattern {
            for index in &keys {
                let key = args.arg(index).unwrap_or_default();
                let matches = std::str::from_utf8(key).is_ok_and(|key| pattern.is_match(key));
                if !matches {
                    return Err(PolicyError::KeyPattern {
                        tenant: self.name.clone(),
                        key: sanitize(key),
                    });
                }
            }
        }
        let mut edit = Edit::new(args);
        if let (Some(prefix), Some(glob)) = (&self.key_prefix, &self.glob_prefix) {
            for index in &keys {
                edit.prefix(index, prefix);
            }
            prefix_non_keys(spec, args, prefix, glob, &mut edit);
        }
        if let Some(ttl) = &self.default_ttl {
            if spec.name == "set" && !set_has_expiry(args) {
                edit.push(Bytes::from_static(b"EX"));
                edit.push(ttl.clone());
            }
        }
        Ok(edit.finish())
    }

    /// Whether replies to `spec` carry keys or channels that [`Tenant::rewrite_reply`] must
    /// strip the prefix from; when false the proxy forwards replies without parsing them.
    pub fn reply_needs_rewrite(&self, spec: &CommandSpec) -> bool {
        self.key_prefix.is_some() && reply_keys(spec).is_some()
    }

    /// Removes the tenant's key prefix from the keys and channels in a reply to `spec` (see
    /// [`Tenant::reply_needs_rewrite`]). Error replies and replies of other commands are
    /// returned unchanged. Never copies key bytes (prefix removal is a `Bytes` slice).
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use cluster_router::lookup;
    /// use resp_codec::Frame;
    /// use tenant_policy::{PoolInfo, TenantConfig, Tenants};
    ///
    /// let mut config = TenantConfig::new("pw", "main");
    /// config.key_prefix = Some("app1:".to_owned());
    /// let tenants = Tenants::new(
    ///     &BTreeMap::from([("app1".to_owned(), config)]),
    ///     &BTreeMap::from([("main".to_owned(), PoolInfo::standalone())]),
    /// )
    /// .unwrap();
    /// let app1 = tenants.get("app1").unwrap();
    /// let spec = lookup(&[&b"BLPOP"[..], b"q", b"0"]).unwrap();
    /// let reply = Frame::Array(vec![Frame::Bulk("app1:q".into()), Frame::Bulk("job".into())]);
    /// assert_eq!(
    ///     app1.rewrite_reply(spec, reply),
    ///     Frame::Array(vec![Frame::Bulk("q".into()), Frame::Bulk("job".into())])
    /// );
    /// ```
    pub fn rewrite_reply(&self, spec: &CommandSpec, reply: Frame) -> Frame {
        let (Some(prefix), Some(kind)) = (self.key_prefix.as_deref(), reply_keys(spec)) else {
            return reply;
        };
        rewrite_frame(prefix, kind, reply)
    }

    /// Removes the prefix from an out-of-band message on a subscribed or tracking connection:
    /// `message`, `pmessage`, `smessage`, the (un)subscribe confirmations, and `invalidate`
    /// (client-side caching), as RESP2 arrays or RESP3 pushes. Other frames are unchanged.
    pub fn rewrite_push(&self, frame: Frame) -> Frame {
        match self.key_prefix.as_deref() {
            Some(prefix) => rewrite_frame(prefix, ReplyKeys::PubSub, frame),
            None => frame,
        }
    }

    /// Rewrites EXEC's reply: element `i` is the reply of the `i`-th queued command, whose
    /// spec is `queued[i]`.
    pub fn rewrite_exec_reply(&self, queued: &[&CommandSpec], reply: Frame) -> Frame {
        if self.key_prefix.is_none() {
            return reply;
        }
        match reply {
            Frame::Array(items) => Frame::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(index, item)| match queued.get(index) {
                        Some(spec) => self.rewrite_reply(spec, item),
                        None => item,
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}

/// Prefixes the arguments that are not keys but name keys or channels.
fn prefix_non_keys<A: Args + ?Sized>(
    spec: &CommandSpec,
    args: &A,
    prefix: &Bytes,
    glob: &Bytes,
    edit: &mut Edit<'_, A>,
) {
    let argc = args.argc();
    match spec.name {
        "keys" => edit.prefix(1, glob),
        "scan" => {
            // SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]: every option has a value.
            let mut has_match = false;
            let mut index = 2;
            while index + 1 < argc {
                if arg_is(args.arg(index), "match") {
                    edit.prefix(index + 1, glob);
                    has_match = true;
                }
                index += 2;
            }
            if !has_match {
                edit.push(Bytes::from_static(b"MATCH"));
                edit.push(join(glob, b"*"));
            }
        }
        "sort" | "sort_ro" => {
            // SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
            // [STORE destination]; STORE is a key (prefixed above).
            let mut index = 2;
            while index < argc {
                let arg = args.arg(index);
                if arg_is(arg, "limit") {
                    index += 2;
                } else if arg_is(arg, "by") || arg_is(arg, "store") {
                    if arg_is(arg, "by") {
                        edit.prefix(index + 1, prefix);
                    }
                    index += 1;
                } else if arg_is(arg, "get") {
                    if args.arg(index + 1) != Some(b"#") {
                        edit.prefix(index + 1, prefix);
                    }
                    index += 1;
                }
                index += 1;
            }
        }
        "subscribe" | "unsubscribe" | "ssubscribe" | "sunsubscribe" => {
            for index in 1..argc {
                edit.prefix(index, prefix);
            }
        }
        "psubscribe" | "punsubscribe" => {
            for index in 1..argc {
                edit.prefix(index, glob);
            }
        }
        "publish" => edit.prefix(1, prefix),
        "spublish" => {
            for index in &channel_indices(spec, &args) {
                edit.prefix(index, prefix);
            }
        }
        "pubsub|channels" | "pubsub|shardchannels" => {
            if argc > 2 {
                edit.prefix(2, glob);
            } else {
                edit.push(join(glob, b"*"));
            }
        }
        "pubsub|numsub" | "pubsub|shardnumsub" => {
            for index in 2..argc {
                edit.prefix(index, prefix);
            }
        }
        "client|tracking" => {
            let mut bcast = false;
            let mut has_prefix = false;
            let mut index = 3;
            while index < argc {
                let arg = args.arg(index);
                if arg_is(arg, "prefix") {
                    edit.prefix(index + 1, prefix);
                    has_prefix = true;
                    index += 1;
                } else if arg_is(arg, "redirect") {
                    index += 1;
                } else if arg_is(arg, "bcast") {
                    bcast = true;
                }
                index += 1;
            }
            // Broadcast mode without a prefix would report every key of the database.
            if bcast && !has_prefix && arg_is(args.arg(2), "on") {
                edit.push(Bytes::from_static(b"PREFIX"));
                edit.push(prefix.clone());
            }
        }
        _ => {}
    }
}

/// Whether `SET key value ...` sets or keeps an expiry.
fn set_has_expiry<A: Args + ?Sized>(args: &A) -> bool {
    (3..args.argc()).any(|index| {
        let arg = args.arg(index);
        ["ex", "px", "exat", "pxat", "keepttl"]
            .iter()
            .any(|option| arg_is(arg, option))
    })
}

fn strip(prefix: &[u8], frame: Frame) -> Frame {
    match frame {
        Frame::Bulk(key) if key.starts_with(prefix) => Frame::Bulk(key.slice(prefix.len()..)),
        Frame::Simple(key) if key.starts_with(prefix) => Frame::Simple(key.slice(prefix.len()..)),
        Frame::Verbatim { format, text } if text.starts_with(prefix) => Frame::Verbatim {
            format,
            text: text.slice(prefix.len()..),
        },
        other => other,
    }
}

fn has_prefix(prefix: &[u8], frame: &Frame) -> bool {
    match frame {
        Frame::Bulk(key) | Frame::Simple(key) => key.starts_with(prefix),
        Frame::Verbatim { text, .. } => text.starts_with(prefix),
        _ => false,
    }
}

/// Strips the prefix from a list of keys, dropping any key without it (which would be another
/// tenant's).
fn strip_list(prefix: &[u8], items: Vec<Frame>) -> Vec<Frame> {
    items
        .into_iter()
        .filter(|item| has_prefix(prefix, item))
        .map(|item| strip(prefix, item))
        .collect()
}

fn map_aggregate(frame: Frame, rewrite: impl FnOnce(Vec<Frame>) -> Vec<Frame>) -> Frame {
    match frame {
        Frame::Array(items) => Frame::Array(rewrite(items)),
        Frame::Set(items) => Frame::Set(rewrite(items)),
        Frame::Push(items) => Frame::Push(rewrite(items)),
        other => other,
    }
}

fn strip_first(prefix: &[u8], mut items: Vec<Frame>) -> Vec<Frame> {
    if let Some(first) = items.first_mut() {
        *first = strip(prefix, std::mem::replace(first, Frame::Null));
    }
    items
}

fn rewrite_frame(prefix: &[u8], kind: ReplyKeys, frame: Frame) -> Frame {
    if let Frame::Attribute { attributes, value } = frame {
        return Frame::Attribute {
            attributes,
            value: Box::new(rewrite_frame(prefix, kind, *value)),
        };
    }
    match kind {
        ReplyKeys::List | ReplyKeys::ChannelList => {
            map_aggregate(frame, |items| strip_list(prefix, items))
        }
        ReplyKeys::Scan => map_aggregate(frame, |mut items| {
            if let Some(keys) = items.get_mut(1) {
                let list = std::mem::replace(keys, Frame::Null);
                *keys = map_aggregate(list, |keys| strip_list(prefix, keys));
            }
            items
        }),
        ReplyKeys::First => map_aggregate(frame, |items| strip_first(prefix, items)),
        ReplyKeys::Streams => match frame {
            Frame::Map(entries) => Frame::Map(
                entries
                    .into_iter()
                    .map(|(stream, entries)| (strip(prefix, stream), entries))
                    .collect(),
            ),
            other => map_aggregate(other, |streams| {
                streams
                    .into_iter()
                    .map(|stream| map_aggregate(stream, |pair| strip_first(prefix, pair)))
                    .collect()
            }),
        },
        ReplyKeys::ChannelCounts => map_aggregate(frame, |items| {
            items
                .into_iter()
                .enumerate()
                .map(|(index, item)| {
                    if index % 2 == 0 {
                        strip(prefix, item)
                    } else {
                        item
                    }
                })
                .collect()
        }),
        ReplyKeys::PubSub => map_aggregate(frame, |mut items| {
            let kind = match items.first() {
                Some(Frame::Bulk(kind) | Frame::Simple(kind)) => kind.to_ascii_lowercase(),
                _ => return items,
            };
            match &kind[..] {
                // [kind, channel-or-pattern, count-or-payload]
                b"subscribe" | b"unsubscribe" | b"ssubscribe" | b"sunsubscribe" | b"message"
                | b"smessage" => {
                    if let Some(channel) = items.get_mut(1) {
                        *channel = strip(prefix, std::mem::replace(channel, Frame::Null));
                    }
                }
                // Patterns got the prefix with its glob characters escaped.
                b"psubscribe" | b"punsubscribe" => {
                    let escaped = escape_glob(prefix);
                    if let Some(pattern) = items.get_mut(1) {
                        *pattern = strip(&escaped, std::mem::replace(pattern, Frame::Null));
                    }
                }
                // [pmessage, pattern, channel, payload]
                b"pmessage" => {
                    let escaped = escape_glob(prefix);
                    if let Some(pattern) = items.get_mut(1) {
                        *pattern = strip(&escaped, std::mem::replace(pattern, Frame::Null));
                    }
                    if let Some(channel) = items.get_mut(2) {
                        *channel = strip(prefix, std::mem::replace(channel, Frame::Null));
                    }
                }
                // [invalidate, [keys] | null]
                b"invalidate" => {
                    if let Some(keys) = items.get_mut(1) {
                        let list = std::mem::replace(keys, Frame::Null);
                        *keys = map_aggregate(list, |keys| strip_list(prefix, keys));
                    }
                }
                _ => {}
            }
            items
        }),
    }
}
