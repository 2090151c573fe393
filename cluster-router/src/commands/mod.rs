//! The Redis 7.0 command table and command lookup.
//!
//! The table has two halves:
//! - `generated.rs` holds what Redis itself reports in `COMMAND INFO` (name, arity, flags,
//!   ACL categories, the legacy key triple, key specs and tips). It is produced by
//!   `cargo xtask codegen` and never edited by hand.
//! - `added.rs` holds the few newer subcommands clients send at connect time (CLIENT SETINFO, Redis 7.2),
//!   written by hand, looked up only when the generated table has no match.
//! - `overlay.rs` holds what only a proxy cares about (the command's class, how the proxy
//!   handles it, and how it is routed in a cluster). It is hand-kept, with a reason per entry,
//!   and applied while the static table is built (`spec()` is a `const fn`).
//!
//! [`lookup`] resolves a request to its [`CommandSpec`] without allocating: the name is
//! lowercased into a stack buffer and found by binary search, then container commands
//! (`CLIENT`, `CONFIG`, ...) are resolved to their subcommand and the arity is checked.
//! [`key_indices`] finds which arguments are keys, following Redis's own key-spec algorithm.

mod added;
mod bits;
mod generated;
mod keys;
mod overlay;

pub use bits::{AclCategories, CommandFlags, KeySpecFlags, Tips};
pub use keys::{channel_indices, key_indices, KeyIndices};

use crate::args::Args;

/// The version of redis-server the generated table was read from.
pub const REDIS_VERSION: &str = generated::REDIS_VERSION;

/// Everything the proxy knows about one command or subcommand.
///
/// Subcommands are named like Redis 7 names them, `"client|setname"`; names are lowercase.
#[derive(Debug)]
#[non_exhaustive]
pub struct CommandSpec {
    /// The lowercase name; subcommands are `"container|sub"`.
    pub name: &'static str,
    /// Redis arity: positive means exactly that many arguments (counting the name), negative
    /// means at least `-arity`.
    pub arity: i32,
    /// Flags from `COMMAND INFO`.
    pub flags: CommandFlags,
    /// ACL categories from `COMMAND INFO`.
    pub acl_categories: AclCategories,
    /// The legacy first key index (0 when the command has no keys at fixed positions).
    pub first_key: i32,
    /// The legacy last key index (negative counts from the end).
    pub last_key: i32,
    /// The legacy key step.
    pub key_step: i32,
    /// The Redis 7 key specs, in Redis's order.
    pub key_specs: &'static [KeySpec],
    /// Command tips.
    pub tips: Tips,
    /// Subcommands of a container command, sorted by name; empty for plain commands.
    pub subcommands: &'static [CommandSpec],
    /// The command's class (overlay).
    pub class: CommandClass,
    /// How the proxy handles it (overlay).
    pub proxy: ProxyHandling,
    /// How it is routed in a cluster (overlay).
    pub cluster: ClusterRouting,
    /// `search_key` of the searched part of the name, precomputed for `lookup`.
    search_key: u128,
}

impl CommandSpec {
    /// Whether `argc` arguments (counting the command name, and for a subcommand also the
    /// container name) satisfy the arity.
    pub const fn arity_accepts(&self, argc: usize) -> bool {
        if self.arity >= 0 {
            argc == self.arity as usize
        } else {
            argc >= self.arity.unsigned_abs() as usize
        }
    }

    /// Whether this is a container command such as `CLIENT` or `CONFIG`.
    pub const fn is_container(&self) -> bool {
        !self.subcommands.is_empty()
    }

    /// The name of the container for a subcommand (`"client"` for `"client|setname"`).
    pub fn container_name(&self) -> Option<&'static str> {
        self.name.split_once('|').map(|(container, _)| container)
    }

    /// Whether the command writes data (the `write` flag).
    pub const fn is_write(&self) -> bool {
        self.flags.contains(CommandFlags::WRITE)
    }

    /// Whether the command only reads data (the `readonly` flag), so a replica may serve it.
    pub const fn is_readonly(&self) -> bool {
        self.flags.contains(CommandFlags::READONLY)
    }
}

/// One Redis 7 key spec: where to start looking, then how to find the keys from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeySpec {
    /// How the command uses these keys.
    pub flags: KeySpecFlags,
    /// Where the search for keys begins.
    pub begin_search: BeginSearch,
    /// How keys are found from the beginning.
    pub find_keys: FindKeys,
}

/// The `begin_search` part of a key spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BeginSearch {
    /// Keys start at this argument index.
    Index(i32),
    /// Keys start after this keyword, searched from `start_from` (negative: from the end,
    /// backwards).
    Keyword {
        /// The keyword, compared case-insensitively.
        keyword: &'static str,
        /// Where the keyword search starts.
        start_from: i32,
    },
    /// Not describable; Redis uses a custom function for these commands.
    Unknown,
}

/// The `find_keys` part of a key spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FindKeys {
    /// A range from the beginning: `last_key` relative to it (negative: from the end), every
    /// `key_step` arguments; `limit` > 0 means "only 1/limit of the remaining arguments".
    Range {
        /// The last key, relative to the first (negative counts from the end).
        last_key: i32,
        /// Distance between keys.
        key_step: i32,
        /// Divisor of the remaining arguments (0: no limit).
        limit: i32,
    },
    /// A count argument followed by that many keys.
    KeyNum {
        /// The index of the count, relative to the beginning.
        key_num_index: i32,
        /// The first key, relative to the beginning.
        first_key: i32,
        /// Distance between keys.
        key_step: i32,
    },
    /// Not describable; Redis uses a custom function for these commands.
    Unknown,
}

/// The kind of a command, one per command, for policy (for example read-only tenants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CommandClass {
    /// Reads data.
    Read,
    /// Writes data.
    Write,
    /// Server administration and introspection.
    Admin,
    /// May block the connection waiting for data.
    Blocking,
    /// Publish/subscribe.
    PubSub,
    /// Connection state and handshake.
    Connection,
    /// MULTI/EXEC/WATCH.
    Transaction,
    /// Lua scripts and functions.
    Scripting,
}

/// How the proxy handles a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyHandling {
    /// A normal command, sent over a connection shared with other clients.
    Forward,
    /// Needs a backend connection dedicated to the client (transactions, blocking commands,
    /// subscriptions, client-side caching).
    Dedicated,
    /// Dedicated only when it actually blocks (XREAD/XREADGROUP with `BLOCK`); see
    /// [`needs_dedicated_connection`].
    DedicatedWhenBlocking,
    /// Answered by the proxy itself (connection state the proxy owns).
    Local,
    /// Refused: it would break shared connections, other tenants, or the proxy.
    Unsupported,
}

/// How a command is routed in a Redis Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClusterRouting {
    /// By the slot of its keys; all keys must hash to one slot (else `CROSSSLOT`). A command
    /// without keys goes to any node.
    ByKeys,
    /// By the slot of its shard channels (SPUBLISH, SSUBSCRIBE, SUNSUBSCRIBE), which Redis
    /// hashes like keys but does not report as keys.
    ByShardChannels,
    /// Split into one sub-command per node, then merged.
    Split {
        /// How the arguments after the name are grouped per key.
        pattern: SplitPattern,
        /// How the per-node replies are combined.
        merge: MergePolicy,
    },
    /// Sent to every master, replies merged.
    AllMasters(MergePolicy),
    /// Sent to every node (masters and replicas), replies merged.
    AllNodes(MergePolicy),
    /// Any single node can answer.
    AnyNode,
    /// SCAN: iterates the masters one after another with a per-node cursor.
    Scan,
    /// The argument at this index is a slot number (CLUSTER COUNTKEYSINSLOT/GETKEYSINSLOT).
    SlotArgument(u8),
}

/// How a multi-key command's arguments are grouped when it is split across nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SplitPattern {
    /// Every argument after the name is a key (MGET, DEL, EXISTS, ...).
    KeysOnly,
    /// Arguments come in key/value pairs (MSET).
    KeyValuePairs,
}

/// How the replies of a command sent to several nodes are combined into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MergePolicy {
    /// Arrays with one element per key, put back into the caller's key order (MGET).
    OrderedByKey,
    /// All parts must succeed; the reply is the first part's reply (MSET, FLUSHALL).
    AllSucceeded,
    /// Integer replies added up (DEL, EXISTS, DBSIZE).
    Sum,
    /// The smallest integer reply.
    Min,
    /// Arrays concatenated in node order (KEYS, SLOWLOG GET).
    ConcatArrays,
    /// Arrays concatenated without duplicates (PUBSUB CHANNELS).
    UnionArrays,
    /// Arrays of integers combined element-wise with AND (SCRIPT EXISTS).
    LogicalAnd,
    /// `[name, count, ...]` arrays with counts added per name (PUBSUB NUMSUB).
    SumPairs,
    /// Succeeds when any part succeeds (SCRIPT KILL, FUNCTION KILL).
    OneSucceeded,
    /// The first non-null reply (RANDOMKEY).
    FirstNonNull,
    /// INFO text: the first node's text, with the Keyspace section summed across nodes.
    Info,
}

/// Errors of [`lookup`] and [`key_indices`]; `Display` is the text after `-` in the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The command does not exist (name as the client sent it, sanitized).
    #[error("ERR unknown or unsupported command '{name}'")]
    Unknown {
        /// The sanitized, truncated name.
        name: String,
    },
    /// The command exists but the proxy refuses it (same text as `Unknown`).
    #[error("ERR unknown or unsupported command '{name}'")]
    Unsupported {
        /// The sanitized, truncated name.
        name: String,
    },
    /// Wrong argument count; `command` is `get` or `client|setname`.
    #[error("ERR wrong number of arguments for '{command}' command")]
    WrongArity {
        /// The lowercase command name.
        command: &'static str,
    },
    /// A container command with an unknown subcommand.
    #[error("ERR unknown subcommand '{subcommand}'. Try {container} HELP.")]
    UnknownSubcommand {
        /// The sanitized, truncated subcommand as sent.
        subcommand: String,
        /// The container name, uppercase.
        container: String,
    },
    /// A bad key count, with Redis's own message for that command (already prefixed).
    #[error("{message}")]
    BadKeyCount {
        /// The full error text, for example `ERR numkeys should be greater than 0`.
        message: String,
    },
}

impl CommandError {
    /// The error as a complete RESP error reply: `-TEXT\r\n`.
    ///
    /// ```
    /// use cluster_router::commands::lookup;
    ///
    /// let error = lookup(&[&b"GET"[..]]).unwrap_err();
    /// assert_eq!(error.to_reply(), b"-ERR wrong number of arguments for 'get' command\r\n");
    /// ```
    pub fn to_reply(&self) -> Vec<u8> {
        let text = self.to_string();
        let mut reply = Vec::with_capacity(text.len() + 3);
        reply.push(b'-');
        reply.extend_from_slice(text.as_bytes());
        reply.extend_from_slice(b"\r\n");
        reply
    }

    /// The error for a command the proxy refuses (`ProxyHandling::Unsupported`), named as
    /// the client sent it (with the subcommand, if any).
    pub fn unsupported(args: &impl Args) -> CommandError {
        let name = args.arg(0).unwrap_or_default();
        let mut text = sanitize(name);
        if let (Ok(spec), Some(sub)) = (lookup(args), args.arg(1)) {
            if spec.container_name().is_some() {
                text.push(' ');
                text.push_str(&sanitize(sub));
            }
        }
        CommandError::Unsupported { name: text }
    }
}

/// The longest name or subcommand echoed back in an error, like Redis's `%.128s`.
const MAX_ECHOED_BYTES: usize = 128;

/// Makes client-sent bytes safe to echo in a one-line error: truncated to 128 bytes, with
/// control characters, quotes and non-ASCII bytes replaced by `?` so the reply stays one line.
/// Used for every error that quotes the client (here and in tenant-policy).
///
/// ```
/// use cluster_router::commands::sanitize;
///
/// assert_eq!(sanitize(b"GET\r\n'x'"), "GET???x?");
/// ```
pub fn sanitize(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(MAX_ECHOED_BYTES)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) && b != b'\'' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// The longest command or subcommand name in the table is shorter than this; longer input
/// cannot match and is rejected without looking.
const NAME_BUFFER: usize = 32;

/// How many leading name bytes the packed search key holds.
const KEY_BYTES: usize = 16;

/// The binary-search key of a name: its first 16 bytes, lowercased, packed big-endian into a
/// `u128` (zero-padded). Comparing keys orders names like comparing their bytes, so the
/// search over the name-sorted table mostly compares integers instead of calling `memcmp`.
const fn search_key(name: &[u8]) -> u128 {
    let mut key = 0u128;
    let mut index = 0;
    while index < KEY_BYTES {
        key <<= 8;
        if index < name.len() {
            key |= name[index].to_ascii_lowercase() as u128;
        }
        index += 1;
    }
    key
}

/// The part of a table name that lookup compares: the subcommand after `|`, or the name.
const fn searched_part(name: &str) -> &[u8] {
    let bytes = name.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'|' {
            return bytes.split_at(index + 1).1;
        }
        index += 1;
    }
    bytes
}

/// Orders a table name (already lowercase) against client input (any case) bytewise, as if
/// the input were lowercased.
fn compare_lowercase(table_name: &[u8], input: &[u8]) -> std::cmp::Ordering {
    table_name
        .iter()
        .copied()
        .cmp(input.iter().map(u8::to_ascii_lowercase))
}

/// Finds `name` (any case) in a table sorted by name (by subcommand for subcommand tables).
fn find(table: &'static [CommandSpec], name: &[u8]) -> Option<&'static CommandSpec> {
    if name.len() > NAME_BUFFER {
        return None;
    }
    let key = search_key(name);
    table
        .binary_search_by(|spec| {
            spec.search_key.cmp(&key).then_with(|| {
                let part = searched_part(spec.name);
                if part.len() <= KEY_BYTES && name.len() <= KEY_BYTES {
                    // Equal keys of short names differ only in length (names have no NULs;
                    // input with NULs sorts after the shorter table name, as bytewise).
                    part.len().cmp(&name.len())
                } else {
                    compare_lowercase(part, name)
                }
            })
        })
        .ok()
        .map(|index| &table[index])
}

/// Looks up the command in `args` (case-insensitive), resolving container subcommands, and
/// checks the arity. Does not allocate unless it returns an error.
///
/// A command the proxy refuses still resolves here (its `proxy` is
/// [`ProxyHandling::Unsupported`]), so policy code can see what it is; reply with
/// [`CommandError::unsupported`].
///
/// ```
/// use cluster_router::commands::{lookup, ProxyHandling};
///
/// let spec = lookup(&[&b"client"[..], b"SetName", b"app"]).unwrap();
/// assert_eq!(spec.name, "client|setname");
/// assert_eq!(spec.proxy, ProxyHandling::Local);
///
/// let error = lookup(&[&b"CLIENT"[..], b"nope"]).unwrap_err();
/// assert_eq!(error.to_string(), "ERR unknown subcommand 'nope'. Try CLIENT HELP.");
/// ```
pub fn lookup(args: &impl Args) -> Result<&'static CommandSpec, CommandError> {
    let name = args.arg(0).unwrap_or_default();
    let Some(spec) = find(&generated::COMMANDS, name) else {
        return Err(CommandError::Unknown {
            name: sanitize(name),
        });
    };
    let argc = args.argc();
    let spec = match (spec.is_container(), args.arg(1)) {
        (true, Some(sub)) => match find(spec.subcommands, sub) {
            Some(sub_spec) => sub_spec,
            None => match added::find(spec.name, sub) {
                Some(sub_spec) => sub_spec,
                None => {
                    return Err(CommandError::UnknownSubcommand {
                        subcommand: sanitize(sub),
                        container: spec.name.to_ascii_uppercase(),
                    })
                }
            },
        },
        _ => spec,
    };
    if spec.arity_accepts(argc) {
        Ok(spec)
    } else {
        Err(CommandError::WrongArity { command: spec.name })
    }
}

/// Every top-level command in the table, sorted by name.
pub fn all_commands() -> &'static [CommandSpec] {
    &generated::COMMANDS
}

/// The hand-written subcommands newer than the generated table (CLIENT SETINFO), which [`lookup`] finds too
/// but [`all_commands`] does not list under their container.
pub fn added_commands() -> &'static [CommandSpec] {
    &added::ADDED
}

/// Whether this request needs a dedicated backend connection: always for
/// [`ProxyHandling::Dedicated`], and for [`ProxyHandling::DedicatedWhenBlocking`] only when a
/// `BLOCK` option is present before `STREAMS` (XREAD/XREADGROUP).
///
/// ```
/// use cluster_router::commands::{lookup, needs_dedicated_connection};
///
/// let args: &[&[u8]] = &[b"XREAD", b"BLOCK", b"0", b"STREAMS", b"s", b"$"];
/// assert!(needs_dedicated_connection(lookup(&args).unwrap(), &args));
/// let args: &[&[u8]] = &[b"XREAD", b"STREAMS", b"block", b"0"];
/// assert!(!needs_dedicated_connection(lookup(&args).unwrap(), &args));
/// ```
pub fn needs_dedicated_connection(spec: &CommandSpec, args: &impl Args) -> bool {
    match spec.proxy {
        ProxyHandling::Dedicated => true,
        ProxyHandling::DedicatedWhenBlocking => {
            // Walk the options like Redis's xreadGetKeys does: option values (a group or
            // consumer named "block", say) and stream names after STREAMS are not options.
            let mut index = 1;
            while let Some(arg) = args.arg(index) {
                if arg.eq_ignore_ascii_case(b"block") {
                    return true;
                } else if arg.eq_ignore_ascii_case(b"count") {
                    index += 2;
                } else if arg.eq_ignore_ascii_case(b"group") {
                    index += 3;
                } else if arg.eq_ignore_ascii_case(b"noack") {
                    index += 1;
                } else {
                    // STREAMS, or a syntax error that the server will report.
                    return false;
                }
            }
            false
        }
        _ => false,
    }
}

/// Builds one table entry, applying the overlay. Called only from `generated.rs`.
#[allow(clippy::too_many_arguments)]
const fn spec(
    name: &'static str,
    arity: i32,
    flags: CommandFlags,
    acl_categories: AclCategories,
    legacy_keys: [i32; 3],
    key_specs: &'static [KeySpec],
    tips: Tips,
    subcommands: &'static [CommandSpec],
) -> CommandSpec {
    let policy = overlay::policy(name, flags, acl_categories);
    CommandSpec {
        name,
        arity,
        flags,
        acl_categories,
        first_key: legacy_keys[0],
        last_key: legacy_keys[1],
        key_step: legacy_keys[2],
        key_specs,
        tips,
        subcommands,
        class: policy.class,
        proxy: policy.proxy,
        cluster: policy.cluster,
        search_key: search_key(searched_part(name)),
    }
}

#[cfg(test)]
mod tests;
