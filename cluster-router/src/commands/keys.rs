//! Finding the key arguments of a command, the way Redis 7.0 does.
//!
//! [`key_indices`] mirrors Redis's `getKeysFromCommandWithSpecs` (which a cluster node uses
//! to route, and `COMMAND GETKEYS` reports): it walks the command's key specs, and when a
//! spec cannot describe the call (SORT's STORE, MIGRATE's KEYS, a malformed numkeys, ...)
//! it falls back to a port of the command's own key-finding function. The result is a
//! [`KeyIndices`]: at most a few `first..=last step n` segments, so no allocation.
//!
//! Before that, commands with a key count (EVAL, SINTERCARD, ZUNION, LMPOP, ...) have the
//! count validated with Redis's own error text for that command, so a proxy can answer
//! exactly as Redis would without forwarding a request it cannot route. Where Redis checks
//! something else first (EVALSHA's SHA length, FCALL's function name), no error is made up:
//! the command gets no keys and goes to any node, which then answers with its own error.

use super::{BeginSearch, CommandError, CommandSpec, FindKeys, KeySpec, KeySpecFlags};
use crate::args::Args;

/// The most key specs any command has (SORT has three); [`KeyIndices`] holds this many
/// segments. A unit test checks the generated table against it.
pub(crate) const MAX_SEGMENTS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Segment {
    first: u32,
    last: u32,
    step: u32,
}

/// The argument indices that are keys, in Redis's order (the order `COMMAND GETKEYS`
/// reports), without allocating.
///
/// ```
/// use cluster_router::commands::{key_indices, lookup};
///
/// let args: &[&[u8]] = &[b"ZUNIONSTORE", b"dest", b"2", b"a", b"b", b"WEIGHTS", b"1", b"2"];
/// let keys = key_indices(lookup(&args).unwrap(), &args).unwrap();
/// assert_eq!(keys.iter().collect::<Vec<_>>(), vec![1, 3, 4]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyIndices {
    segments: [Segment; MAX_SEGMENTS],
    segment_count: u8,
}

impl KeyIndices {
    /// An empty set of keys.
    pub const fn none() -> KeyIndices {
        KeyIndices {
            segments: [Segment {
                first: 0,
                last: 0,
                step: 1,
            }; MAX_SEGMENTS],
            segment_count: 0,
        }
    }

    /// Adds `first..=last` every `step`. The generated table never needs more than
    /// `MAX_SEGMENTS` segments (tested), so an overflow cannot happen; it is ignored rather
    /// than panicking on request data.
    fn push(&mut self, first: usize, last: usize, step: usize) {
        let (Ok(first), Ok(last), Ok(step)) = (
            u32::try_from(first),
            u32::try_from(last),
            u32::try_from(step.max(1)),
        ) else {
            return;
        };
        if let Some(slot) = self.segments.get_mut(usize::from(self.segment_count)) {
            *slot = Segment { first, last, step };
            self.segment_count += 1;
        }
    }

    fn single(index: usize) -> KeyIndices {
        let mut keys = KeyIndices::none();
        keys.push(index, index, 1);
        keys
    }

    /// The key indices in order.
    pub fn iter(&self) -> KeyIndicesIter<'_> {
        KeyIndicesIter {
            indices: self,
            segment: 0,
            next: self.segments[0].first,
        }
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.segments[..usize::from(self.segment_count)]
            .iter()
            .map(|s| ((s.last - s.first) / s.step + 1) as usize)
            .sum()
    }

    /// Whether the command names no keys.
    pub fn is_empty(&self) -> bool {
        self.segment_count == 0
    }

    /// The first key's index.
    pub fn first(&self) -> Option<usize> {
        self.iter().next()
    }
}

impl std::fmt::Debug for KeyIndices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a KeyIndices {
    type Item = usize;
    type IntoIter = KeyIndicesIter<'a>;

    fn into_iter(self) -> KeyIndicesIter<'a> {
        self.iter()
    }
}

/// Iterator over [`KeyIndices`].
#[derive(Debug, Clone)]
pub struct KeyIndicesIter<'a> {
    indices: &'a KeyIndices,
    segment: usize,
    next: u32,
}

impl Iterator for KeyIndicesIter<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.segment < usize::from(self.indices.segment_count) {
            let segment = self.indices.segments[self.segment];
            if self.next <= segment.last {
                let index = self.next;
                self.next = index.saturating_add(segment.step);
                if self.next == index {
                    // Saturated at u32::MAX: this was the segment's last index.
                    self.segment += 1;
                    self.next = self.next_segment_start();
                }
                return Some(index as usize);
            }
            self.segment += 1;
            self.next = self.next_segment_start();
        }
        None
    }
}

impl KeyIndicesIter<'_> {
    fn next_segment_start(&self) -> u32 {
        self.indices
            .segments
            .get(self.segment)
            .map_or(0, |segment| segment.first)
    }
}

/// The argument indices of `args` that are keys for `spec`, as Redis 7.0 finds them.
///
/// Errors only for a bad key count, with Redis's text for that command (for example
/// `ERR Number of keys can't be greater than number of args` for EVAL, `ERR numkeys should
/// be greater than 0` for SINTERCARD/LMPOP). Other malformed calls yield no keys (and would
/// go to any node, which reports the syntax error itself, as Redis Cluster does).
///
/// `spec` must be what [`lookup`](super::lookup) returned for `args`.
pub fn key_indices(spec: &CommandSpec, args: &impl Args) -> Result<KeyIndices, CommandError> {
    if let Some(index) = single_fixed_key(spec, args.argc()) {
        return Ok(KeyIndices::single(index));
    }
    key_indices_by_walk(spec, args)
}

/// The index of the one key of a command whose only key spec is "the argument at `index`" (GET, SET, INCR,
/// HSET, ...: most keyed traffic), when the call has that argument. The general walk of
/// [`key_indices_by_walk`] gives the same answer (tested over the whole table); this skips it on the hot path.
fn single_fixed_key(spec: &CommandSpec, argc: usize) -> Option<usize> {
    let [KeySpec {
        flags,
        begin_search: BeginSearch::Index(index),
        find_keys:
            FindKeys::Range {
                last_key: 0,
                key_step: 1..,
                ..
            },
    }] = spec.key_specs
    else {
        return None;
    };
    const UNUSUAL: KeySpecFlags = KeySpecFlags::of(&[
        KeySpecFlags::NOT_KEY,
        KeySpecFlags::INCOMPLETE,
        KeySpecFlags::VARIABLE_FLAGS,
    ]);
    if flags.intersects(UNUSUAL) {
        return None;
    }
    usize::try_from(*index)
        .ok()
        .filter(|&index| index > 0 && index < argc)
}

/// [`key_indices`] by Redis's rules: the key-count checks, the key specs, and the command's own function where
/// the specs give up.
pub(super) fn key_indices_by_walk(
    spec: &CommandSpec,
    args: &impl Args,
) -> Result<KeyIndices, CommandError> {
    check_key_count(spec, args)?;
    let mut has_real_key_spec = false;
    let mut has_variable_flags = false;
    for key_spec in spec.key_specs {
        has_real_key_spec |= !key_spec.flags.contains(KeySpecFlags::NOT_KEY);
        has_variable_flags |= key_spec.flags.contains(KeySpecFlags::VARIABLE_FLAGS);
    }
    // Like Redis: prefer the key specs when their flags are reliable, and fall back to the
    // command's own function when they are not, or when a spec cannot describe the call.
    if has_real_key_spec && !has_variable_flags {
        if let Some(keys) = from_key_specs(spec, args, false) {
            return Ok(keys);
        }
    }
    Ok(fallback(spec, args))
}

/// The shard channels of SPUBLISH/SSUBSCRIBE/SUNSUBSCRIBE: key specs marked `not_key`,
/// which hash to slots like keys (Redis's `GET_KEYSPEC_INCLUDE_NOT_KEYS`). Other commands
/// get their keys.
pub fn channel_indices(spec: &CommandSpec, args: &impl Args) -> KeyIndices {
    from_key_specs(spec, args, true).unwrap_or_default()
}

/// Redis's `getKeysUsingKeySpecs`; `None` where Redis reports an invalid spec.
fn from_key_specs(
    spec: &CommandSpec,
    args: &impl Args,
    include_not_keys: bool,
) -> Option<KeyIndices> {
    let argc = args.argc() as i64;
    let mut keys = KeyIndices::none();
    for key_spec in spec.key_specs {
        if key_spec.flags.contains(KeySpecFlags::NOT_KEY) && !include_not_keys {
            continue;
        }
        let mut first = match key_spec.begin_search {
            BeginSearch::Index(index) => i64::from(index),
            BeginSearch::Keyword {
                keyword,
                start_from,
            } => match find_keyword(args, keyword, i64::from(start_from)) {
                Some(first) => first,
                // A missing optional keyword (GEORADIUS without STORE) means no such keys.
                None => continue,
            },
            BeginSearch::Unknown => return None,
        };
        let (last, step) = match key_spec.find_keys {
            FindKeys::Range {
                last_key,
                key_step,
                limit,
            } => {
                let (last_key, limit) = (i64::from(last_key), i64::from(limit));
                let last = if last_key >= 0 {
                    first + last_key
                } else if limit == 0 {
                    argc + last_key
                } else {
                    // "Keys take 1/limit of what is left", as in XREAD's STREAMS k1 k2 id1 id2.
                    first + ((argc - first) / limit + last_key)
                };
                (last, i64::from(key_step))
            }
            FindKeys::KeyNum {
                key_num_index,
                first_key,
                key_step,
            } => {
                let count_index = first + i64::from(key_num_index);
                let count = args.arg(usize::try_from(count_index).ok()?)?;
                let count = parse_strict_i64(count).filter(|n| *n >= 0)?;
                first += i64::from(first_key);
                (first + count - 1, i64::from(key_step))
            }
            FindKeys::Unknown => return None,
        };
        if last >= argc || last < first || first >= argc || first < 0 || step < 1 {
            return None;
        }
        keys.push(first as usize, last as usize, step as usize);
        if key_spec.flags.contains(KeySpecFlags::INCOMPLETE) {
            return None;
        }
    }
    Some(keys)
}

/// The index after `keyword`, searched like Redis does: forwards from `start_from`, or
/// backwards from `argc + start_from` when negative, never looking at the far end's last
/// argument (index 1 backwards, `argc - 1` forwards).
fn find_keyword(args: &impl Args, keyword: &str, start_from: i64) -> Option<i64> {
    let argc = args.argc() as i64;
    let (start, end) = if start_from > 0 {
        (start_from, argc - 1)
    } else {
        (argc + start_from, 1)
    };
    let forwards = start <= end;
    let mut index = start;
    while index != end {
        if index >= argc || index < 1 {
            break;
        }
        let arg = args.arg(index as usize)?;
        if arg.eq_ignore_ascii_case(keyword.as_bytes()) {
            return Some(index + 1);
        }
        index += if forwards { 1 } else { -1 };
    }
    None
}

/// Ports of the Redis key functions for commands whose key specs are incomplete or whose
/// flags vary; reached only when the specs gave up (see [`key_indices`]).
fn fallback(spec: &CommandSpec, args: &impl Args) -> KeyIndices {
    let argc = args.argc();
    match spec.name {
        "set" | "bitfield" | "sort_ro" if argc > 1 => KeyIndices::single(1),
        "sort" if argc > 1 => sort_keys(args),
        "migrate" => migrate_keys(args),
        "georadius" | "georadiusbymember" if argc > 1 => georadius_keys(args),
        "xread" | "xreadgroup" => xread_keys(args),
        "zunionstore" | "zinterstore" | "zdiffstore" => generic_keys(args, Some(1), 2, 3),
        "zunion" | "zinter" | "zdiff" | "zintercard" | "sintercard" | "lmpop" | "zmpop" => {
            generic_keys(args, None, 1, 2)
        }
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro" | "blmpop"
        | "bzmpop" => generic_keys(args, None, 2, 3),
        _ => KeyIndices::none(),
    }
}

fn arg_is(args: &impl Args, index: usize, word: &str) -> bool {
    args.arg(index)
        .is_some_and(|arg| arg.eq_ignore_ascii_case(word.as_bytes()))
}

/// Redis's `genericGetKeys`: `[store] numkeys key...`, sources first, then the store key.
fn generic_keys(
    args: &impl Args,
    store: Option<usize>,
    count_index: usize,
    first: usize,
) -> KeyIndices {
    let argc = args.argc();
    let count = args.arg(count_index).map_or(0, c_atoi);
    let available = argc.saturating_sub(first) as i64;
    if count < 1 || count > available {
        return KeyIndices::none();
    }
    let mut keys = KeyIndices::none();
    keys.push(first, first + count as usize - 1, 1);
    if let Some(store) = store {
        keys.push(store, store, 1);
    }
    keys
}

/// Redis's `sortGetKeys`: the sorted key, then the last `STORE` destination.
fn sort_keys(args: &impl Args) -> KeyIndices {
    let argc = args.argc();
    let mut store = None;
    let mut index = 2;
    while index < argc {
        if arg_is(args, index, "limit") {
            index += 2;
        } else if arg_is(args, index, "store") && index + 1 < argc {
            // The last STORE wins, as in SORT itself; its argument is not skipped (same as Redis).
            store = Some(index + 1);
        } else if arg_is(args, index, "get") || arg_is(args, index, "by") {
            index += 1;
        }
        index += 1;
    }
    let mut keys = KeyIndices::single(1);
    if let Some(store) = store {
        keys.push(store, store, 1);
    }
    keys
}

/// Redis's `migrateGetKeys`: the key argument, or the keys after `KEYS` when the key
/// argument is empty.
fn migrate_keys(args: &impl Args) -> KeyIndices {
    let argc = args.argc();
    let mut first = 3;
    let mut count = 1;
    if argc > 6 {
        let mut index = 6;
        while index < argc {
            if arg_is(args, index, "keys") {
                if args.arg(3).is_some_and(|key| !key.is_empty()) {
                    // A syntax error that MIGRATE itself reports.
                    count = 0;
                } else {
                    first = index + 1;
                    count = argc - first;
                }
                break;
            }
            if arg_is(args, index, "auth") {
                index += 1;
            } else if arg_is(args, index, "auth2") {
                index += 2;
            }
            index += 1;
        }
    }
    let mut keys = KeyIndices::none();
    if count > 0 && first < argc {
        keys.push(first, first + count - 1, 1);
    }
    keys
}

/// Redis's `georadiusGetKeys`: the key, then the last STORE/STOREDIST destination.
fn georadius_keys(args: &impl Args) -> KeyIndices {
    let argc = args.argc();
    let mut stored = None;
    let mut index = 5;
    while index < argc {
        if (arg_is(args, index, "store") || arg_is(args, index, "storedist")) && index + 1 < argc {
            stored = Some(index + 1);
            index += 1;
        }
        index += 1;
    }
    let mut keys = KeyIndices::single(1);
    if let Some(stored) = stored {
        keys.push(stored, stored, 1);
    }
    keys
}

/// Redis's `xreadGetKeys`: the first half of what follows STREAMS.
fn xread_keys(args: &impl Args) -> KeyIndices {
    let argc = args.argc();
    let mut streams = None;
    let mut index = 1;
    while index < argc {
        if arg_is(args, index, "block") || arg_is(args, index, "count") {
            index += 1;
        } else if arg_is(args, index, "group") {
            index += 2;
        } else if arg_is(args, index, "noack") {
            // No argument.
        } else if arg_is(args, index, "streams") {
            streams = Some(index);
            break;
        } else {
            break;
        }
        index += 1;
    }
    let Some(streams) = streams else {
        return KeyIndices::none();
    };
    let remaining = argc - streams - 1;
    if remaining == 0 || remaining % 2 != 0 {
        return KeyIndices::none();
    }
    let mut keys = KeyIndices::none();
    keys.push(streams + 1, streams + remaining / 2, 1);
    keys
}

/// Validates the key count of commands that have one, with the error Redis gives first.
fn check_key_count(spec: &CommandSpec, args: &impl Args) -> Result<(), CommandError> {
    let argc = args.argc() as i64;
    let error = |message: String| Err(CommandError::BadKeyCount { message });
    match spec.name {
        "evalsha" | "evalsha_ro" if args.arg(1).is_some_and(|sha| sha.len() != 40) => {
            // Redis answers NOSCRIPT before looking at the key count; let the node say so.
            Ok(())
        }
        "eval" | "eval_ro" | "evalsha" | "evalsha_ro" => match parse_key_count(args, 2) {
            None => error("ERR value is not an integer or out of range".to_owned()),
            Some(n) if n < 0 => error("ERR Number of keys can't be negative".to_owned()),
            Some(n) if n > argc - 3 => {
                error("ERR Number of keys can't be greater than number of args".to_owned())
            }
            Some(_) => Ok(()),
        },
        "sintercard" => match parse_key_count(args, 1) {
            Some(n) if n > 0 && n > argc - 2 => {
                error("ERR Number of keys can't be greater than number of args".to_owned())
            }
            Some(n) if n > 0 => Ok(()),
            _ => error("ERR numkeys should be greater than 0".to_owned()),
        },
        "lmpop" | "zmpop" => check_pop_key_count(args, 1),
        "blmpop" | "bzmpop" => check_pop_key_count(args, 2),
        "zunion" | "zinter" | "zdiff" | "zintercard" => check_set_key_count(spec, args, 1),
        "zunionstore" | "zinterstore" | "zdiffstore" => check_set_key_count(spec, args, 2),
        _ => Ok(()),
    }
}

/// LMPOP/ZMPOP/BLMPOP/BZMPOP: a positive count, and at least one argument after the keys.
fn check_pop_key_count(args: &impl Args, count_index: usize) -> Result<(), CommandError> {
    let argc = args.argc() as i64;
    let message = match parse_key_count(args, count_index) {
        Some(n) if n > 0 && n > argc - count_index as i64 - 2 => "ERR syntax error",
        Some(n) if n > 0 => return Ok(()),
        _ => "ERR numkeys should be greater than 0",
    };
    Err(CommandError::BadKeyCount {
        message: message.to_owned(),
    })
}

/// ZUNION/ZINTER/ZDIFF/ZINTERCARD and the STORE variants.
fn check_set_key_count(
    spec: &CommandSpec,
    args: &impl Args,
    count_index: usize,
) -> Result<(), CommandError> {
    let argc = args.argc() as i64;
    let message = match parse_key_count(args, count_index) {
        None => "ERR value is not an integer or out of range".to_owned(),
        Some(n) if n < 1 => format!(
            "ERR at least 1 input key is needed for '{}' command",
            spec.name
        ),
        Some(n) if n > argc - count_index as i64 - 1 => "ERR syntax error".to_owned(),
        Some(_) => return Ok(()),
    };
    Err(CommandError::BadKeyCount { message })
}

fn parse_key_count(args: &impl Args, index: usize) -> Option<i64> {
    args.arg(index).and_then(parse_strict_i64)
}

/// Redis's `string2ll`: an optional `-`, then `0` alone or digits without a leading zero, no
/// spaces or `+`, within `i64`.
pub(crate) fn parse_strict_i64(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, bytes),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let mut value: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(digit - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(digit)?
        } else {
            value.checked_add(digit)?
        };
    }
    Some(value)
}

/// C's `atoi` as Redis's key functions use it: leading spaces, a sign, then digits up to the
/// first non-digit; 0 when there are none. Saturates instead of overflowing.
fn c_atoi(bytes: &[u8]) -> i64 {
    let mut rest = bytes;
    while let [b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c', tail @ ..] = rest {
        rest = tail;
    }
    let negative = matches!(rest.first(), Some(b'-'));
    if let [b'-' | b'+', tail @ ..] = rest {
        rest = tail;
    }
    let mut value: i64 = 0;
    for &digit in rest.iter().take_while(|b| b.is_ascii_digit()) {
        value = value
            .saturating_mul(10)
            .saturating_add(i64::from(digit - b'0'));
    }
    if negative {
        -value
    } else {
        value
    }
}
