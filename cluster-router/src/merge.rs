//! Merging the replies of a command sent to several nodes into the one reply the client
//! expects, according to a [`MergePolicy`].
//!
//! All functions are pure, take the per-node replies in the order the parts were sent, and
//! return a [`Frame`], except [`merge_ordered_raw`], MGET's fast path, which reads and writes
//! RESP bytes without building trees. A backend error in any part becomes the merged reply (the first one
//! wins), except for [`MergePolicy::OneSucceeded`], where one success is enough. A reply of
//! an unexpected shape (which a healthy Redis never sends) becomes an `ERR` reply naming
//! the problem rather than a panic.

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};
use resp_codec::{put_header, Frame};

use crate::commands::MergePolicy;
use crate::plan::SplitPart;
use crate::walk;

/// Merges `replies` (one per part or node, in order) with `policy`. `parts` is only needed
/// for [`MergePolicy::OrderedByKey`]; pass `&[]` otherwise.
///
/// ```
/// use cluster_router::commands::MergePolicy;
/// use cluster_router::merge::merge_replies;
/// use resp_codec::Frame;
///
/// let merged = merge_replies(MergePolicy::Sum, &[], vec![Frame::Integer(2), Frame::Integer(3)]);
/// assert_eq!(merged, Frame::Integer(5));
/// ```
pub fn merge_replies(policy: MergePolicy, parts: &[SplitPart], replies: Vec<Frame>) -> Frame {
    match policy {
        MergePolicy::OrderedByKey => merge_ordered(parts, replies),
        MergePolicy::AllSucceeded => all_succeeded(replies),
        MergePolicy::Sum => sum_integers(replies),
        MergePolicy::Min => min_integers(replies),
        MergePolicy::ConcatArrays => concat_arrays(replies),
        MergePolicy::UnionArrays => union_arrays(replies),
        MergePolicy::LogicalAnd => logical_and(replies),
        MergePolicy::SumPairs => sum_pairs(replies),
        MergePolicy::OneSucceeded => one_succeeded(replies),
        MergePolicy::FirstNonNull => first_non_null(replies),
        MergePolicy::Info => merge_info(replies),
    }
}

fn is_error(frame: &Frame) -> bool {
    matches!(frame, Frame::Error(_) | Frame::BulkError(_))
}

fn first_error(replies: &[Frame]) -> Option<Frame> {
    replies.iter().find(|frame| is_error(frame)).cloned()
}

fn unexpected(what: &str) -> Frame {
    Frame::Error(Bytes::from(format!(
        "ERR unexpected reply from a cluster node while merging: expected {what}"
    )))
}

fn elements(frame: Frame) -> Option<Vec<Frame>> {
    match frame {
        Frame::Array(items) | Frame::Set(items) => Some(items),
        _ => None,
    }
}

/// MGET: each part's array holds its keys' values in order; put every value back at its
/// key's position in the caller's request.
///
/// ```
/// use cluster_router::merge::merge_ordered;
/// # use cluster_router::commands::lookup;
/// # use cluster_router::plan::{route, RoutePlan};
/// # use cluster_router::topology::{NodeAddr, ShardInfo, SlotMap};
/// use resp_codec::Frame;
///
/// # let map = SlotMap::from_shards(vec![ShardInfo::new(vec![(0, 16383)], NodeAddr::new("h", 1), vec![])]).unwrap();
/// let args: &[&[u8]] = &[b"MGET", b"foo", b"bar"];
/// let RoutePlan::Split { parts, .. } = route(lookup(&args).unwrap(), &args, &map).unwrap() else { panic!() };
/// // parts[0] is "bar" (slot 5061), parts[1] is "foo" (slot 12182).
/// let replies = vec![
///     Frame::Array(vec![Frame::Bulk("B".into())]),
///     Frame::Array(vec![Frame::NullBulk]),
/// ];
/// assert_eq!(
///     merge_ordered(&parts, replies),
///     Frame::Array(vec![Frame::NullBulk, Frame::Bulk("B".into())])
/// );
/// ```
pub fn merge_ordered(parts: &[SplitPart], replies: Vec<Frame>) -> Frame {
    if let Some(error) = first_error(&replies) {
        return error;
    }
    if replies.len() != parts.len() {
        return unexpected("one reply per part");
    }
    let mut merged: Vec<Option<Frame>> = vec![None; parts.len()];
    for (part, reply) in parts.iter().zip(replies) {
        let Some(items) = elements(reply) else {
            return unexpected("an array");
        };
        // One element: the value of the part's one key.
        let Ok([item]) = <[Frame; 1]>::try_from(items) else {
            return unexpected("one array element per key");
        };
        match merged.get_mut(part.key_position) {
            Some(slot @ None) => *slot = Some(item),
            _ => return unexpected("distinct key positions"),
        }
    }
    let merged: Option<Vec<Frame>> = merged.into_iter().collect();
    merged.map_or_else(|| unexpected("a value for every key"), Frame::Array)
}

/// MGET's merge without trees: the elements of each part's array reply are framed (not
/// parsed) where they lie and copied once, in the caller's key order, into the merged array.
///
/// `replies` are the parts' replies in `parts` order, back to back, in one or more chunks: a
/// chunk may hold several parts' replies (a node answering its share of the split in one
/// batch, see [`crate::plan::encode_parts`]); no reply spans two chunks. Each reply must be an
/// array with one element per key of its part. `None` when they are not (an error or a
/// redirect, a short array, bytes left over): the caller then parses the replies and uses
/// [`merge_ordered`], which passes errors on and names bad shapes.
///
/// ```
/// use cluster_router::merge::merge_ordered_raw;
/// # use cluster_router::commands::lookup;
/// # use cluster_router::plan::{route, RoutePlan};
/// # use cluster_router::topology::{NodeAddr, ShardInfo, SlotMap};
///
/// # let map = SlotMap::from_shards(vec![ShardInfo::new(vec![(0, 16383)], NodeAddr::new("h", 1), vec![])]).unwrap();
/// let args: &[&[u8]] = &[b"MGET", b"foo", b"bar"];
/// let RoutePlan::Split { parts, .. } = route(lookup(&args).unwrap(), &args, &map).unwrap() else { panic!() };
/// // parts[0] is "bar" (slot 5061), parts[1] is "foo" (slot 12182); one node, one batch.
/// let batch: &[u8] = b"*1\r\n$1\r\nB\r\n*1\r\n$-1\r\n";
/// assert_eq!(&merge_ordered_raw(&parts, [batch]).unwrap()[..], b"*2\r\n$-1\r\n$1\r\nB\r\n");
/// assert_eq!(merge_ordered_raw(&parts, [&b"-MOVED 5061 h:2\r\n"[..], b"*1\r\n$-1\r\n"]), None);
/// ```
pub fn merge_ordered_raw<'a>(
    parts: &[SplitPart],
    replies: impl IntoIterator<Item = &'a [u8]>,
) -> Option<Bytes> {
    let total = parts.len();
    // Every element is at least `_\r\n`, so an empty slice marks a position not filled yet.
    let mut elements: Vec<&[u8]> = vec![&[]; total];
    let mut chunks = replies.into_iter();
    let mut rest: &[u8] = &[];
    for part in parts {
        while rest.is_empty() {
            rest = chunks.next()?;
        }
        // One element: the value of the part's one key.
        let (1, at) = array_header(rest)? else {
            return None;
        };
        let element_len = walk::reply_len(rest.get(at..)?)?;
        let element = rest.get(at..at + element_len)?;
        match elements.get_mut(part.key_position) {
            Some(slot) if slot.is_empty() => *slot = element,
            _ => return None,
        }
        rest = rest.get(at + element_len..)?;
    }
    if !rest.is_empty() || chunks.any(|chunk| !chunk.is_empty()) {
        return None;
    }
    if elements.iter().any(|element| element.is_empty()) {
        return None;
    }
    let body: usize = elements.iter().map(|element| element.len()).sum();
    let mut merged = BytesMut::with_capacity(body + 24);
    put_header(&mut merged, b'*', total);
    for element in elements {
        merged.extend_from_slice(element);
    }
    Some(merged.freeze())
}

/// An array header at the start of `reply`: its element count and where the first element
/// starts. `None` for anything else (errors, null arrays, other types).
fn array_header(reply: &[u8]) -> Option<(usize, usize)> {
    /// Longer than any `usize` in decimal: the header is malformed.
    const MAX_DIGITS: usize = 20;
    // The header of every part's reply in a split, one element, is matched whole.
    if reply.starts_with(b"*1\r\n") {
        return Some((1, 4));
    }
    let digits = reply.strip_prefix(b"*")?;
    let line_len = digits
        .iter()
        .take(MAX_DIGITS + 1)
        .position(|&byte| byte == b'\r')?;
    if line_len == 0 || digits.get(line_len + 1) != Some(&b'\n') {
        return None;
    }
    let mut count: usize = 0;
    for &digit in &digits[..line_len] {
        if !digit.is_ascii_digit() {
            return None;
        }
        count = count
            .checked_mul(10)?
            .checked_add(usize::from(digit - b'0'))?;
    }
    // `*`, the digits, CRLF.
    Some((count, line_len + 3))
}

fn integers(replies: &[Frame]) -> Option<Vec<i64>> {
    replies
        .iter()
        .map(|frame| match frame {
            Frame::Integer(n) => Some(*n),
            _ => None,
        })
        .collect()
}

/// DEL/EXISTS/DBSIZE: the sum of the integer replies.
pub fn sum_integers(replies: Vec<Frame>) -> Frame {
    if let Some(error) = first_error(&replies) {
        return error;
    }
    match integers(&replies) {
        Some(values) => Frame::Integer(values.iter().fold(0i64, |sum, n| sum.saturating_add(*n))),
        None => unexpected("integers"),
    }
}

/// The smallest integer reply (WAIT-like commands).
pub fn min_integers(replies: Vec<Frame>) -> Frame {
    if let Some(error) = first_error(&replies) {
        return error;
    }
    match integers(&replies).and_then(|values| values.into_iter().min()) {
        Some(min) => Frame::Integer(min),
        None => unexpected("integers"),
    }
}

/// MSET/FLUSHALL/SCRIPT LOAD: the first error if any part failed, else the first reply.
pub fn all_succeeded(replies: Vec<Frame>) -> Frame {
    if let Some(error) = first_error(&replies) {
        return error;
    }
    replies
        .into_iter()
        .next()
        .unwrap_or_else(|| unexpected("at least one reply"))
}

/// SCRIPT KILL/FUNCTION KILL: the first success, or the first error if none succeeded.
pub fn one_succeeded(replies: Vec<Frame>) -> Frame {
    let mut first_error = None;
    for reply in replies {
        if !is_error(&reply) {
            return reply;
        }
        first_error.get_or_insert(reply);
    }
    first_error.unwrap_or_else(|| unexpected("at least one reply"))
}

/// KEYS/SLOWLOG GET: the arrays concatenated in reply order.
pub fn concat_arrays(replies: Vec<Frame>) -> Frame {
    if let Some(error) = first_error(&replies) {
        return error;
    }
    let mut merged = Vec::new();
    for reply in replies {
        match elements(reply) {
            Some(items) => merged.extend(items),
            None => return unexpected("arrays"),
        }
    }
    Frame::Array(merged)
}

/// PUBSUB CHANNELS: the arrays concatenated, dropping repeated strings.
pub fn union_arrays(replies: Vec<Frame>) -> Frame {
    let Frame::Array(items) = concat_arrays(replies) else {
        // concat_arrays only returns a non-array for errors.
        return unexpected("arrays");
    };
    let mut seen: HashSet<Bytes> = HashSet::new();
    let unique = items
        .into_iter()
        .filter(|item| match item {
            Frame::Bulk(bytes) | Frame::Simple(bytes) => seen.insert(bytes.clone()),
            _ => true,
        })
        .collect();
    Frame::Array(unique)
}

fn truthy(frame: &Frame) -> Option<bool> {
    match frame {
        Frame::Integer(n) => Some(*n != 0),
        Frame::Boolean(b) => Some(*b),
        _ => None,
    }
}

/// SCRIPT EXISTS: element-wise AND of equally long arrays of 0/1.
pub fn logical_and(replies: Vec<Frame>) -> Frame {
    if let Some(error) = first_error(&replies) {
        return error;
    }
    let mut merged: Option<Vec<Frame>> = None;
    for reply in replies {
        let Some(items) = elements(reply) else {
            return unexpected("arrays");
        };
        match &mut merged {
            None => merged = Some(items),
            Some(so_far) => {
                if so_far.len() != items.len() {
                    return unexpected("arrays of equal length");
                }
                for (kept, item) in so_far.iter_mut().zip(items) {
                    match (truthy(kept), truthy(&item)) {
                        (Some(true), Some(false)) => *kept = item,
                        (Some(_), Some(_)) => {}
                        _ => return unexpected("integers"),
                    }
                }
            }
        }
    }
    merged.map_or_else(|| unexpected("at least one reply"), Frame::Array)
}

/// PUBSUB NUMSUB/SHARDNUMSUB: `[name, count, ...]` (RESP2) or a map (RESP3), counts added
/// per name; the first reply's names and shape are kept.
pub fn sum_pairs(replies: Vec<Frame>) -> Frame {
    if let Some(error) = first_error(&replies) {
        return error;
    }
    let mut names: Vec<Frame> = Vec::new();
    let mut counts: Vec<i64> = Vec::new();
    let mut as_map = false;
    for reply in replies {
        let pairs: Vec<(Frame, Frame)> = match reply {
            Frame::Map(pairs) => {
                as_map = true;
                pairs
            }
            Frame::Array(items) if items.len() % 2 == 0 => {
                let mut pairs = Vec::with_capacity(items.len() / 2);
                let mut items = items.into_iter();
                while let (Some(name), Some(count)) = (items.next(), items.next()) {
                    pairs.push((name, count));
                }
                pairs
            }
            _ => return unexpected("name/count pairs"),
        };
        for (name, count) in pairs {
            let Frame::Integer(count) = count else {
                return unexpected("integer counts");
            };
            match names.iter().position(|known| *known == name) {
                Some(index) => counts[index] = counts[index].saturating_add(count),
                None => {
                    names.push(name);
                    counts.push(count);
                }
            }
        }
    }
    let pairs = names
        .into_iter()
        .zip(counts.into_iter().map(Frame::Integer));
    if as_map {
        Frame::Map(pairs.collect())
    } else {
        Frame::Array(pairs.flat_map(|(name, count)| [name, count]).collect())
    }
}

fn is_null(frame: &Frame) -> bool {
    matches!(frame, Frame::NullBulk | Frame::NullArray | Frame::Null)
}

/// RANDOMKEY: the first non-null reply (an empty master answers nil), or nil.
pub fn first_non_null(replies: Vec<Frame>) -> Frame {
    if let Some(error) = first_error(&replies) {
        return error;
    }
    let mut null = None;
    for reply in replies {
        if !is_null(&reply) {
            return reply;
        }
        null.get_or_insert(reply);
    }
    null.unwrap_or(Frame::NullBulk)
}

/// INFO: the first node's text, with the `# Keyspace` section replaced by the per-database
/// sums of `keys` and `expires` over all nodes (and the largest `avg_ttl`), since the key
/// counts are what differ between shards of one data set.
pub fn merge_info(replies: Vec<Frame>) -> Frame {
    if let Some(error) = first_error(&replies) {
        return error;
    }
    let mut texts = Vec::with_capacity(replies.len());
    for reply in &replies {
        match reply {
            Frame::Bulk(text) | Frame::Verbatim { text, .. } => {
                texts.push(String::from_utf8_lossy(text))
            }
            _ => return unexpected("INFO text"),
        }
    }
    let Some(first) = texts.first() else {
        return unexpected("at least one reply");
    };
    // (db, keys, expires, avg_ttl), in first-seen order.
    let mut databases: Vec<(String, i64, i64, i64)> = Vec::new();
    for text in &texts {
        for line in keyspace_lines(text) {
            let Some((db, fields)) = line.split_once(':') else {
                continue;
            };
            let mut values = [0i64; 3];
            for field in fields.split(',') {
                let Some((name, value)) = field.split_once('=') else {
                    continue;
                };
                let value = value.trim().parse::<i64>().unwrap_or(0);
                match name {
                    "keys" => values[0] = value,
                    "expires" => values[1] = value,
                    "avg_ttl" => values[2] = value,
                    _ => {}
                }
            }
            match databases.iter_mut().find(|entry| entry.0 == db) {
                Some(entry) => {
                    entry.1 = entry.1.saturating_add(values[0]);
                    entry.2 = entry.2.saturating_add(values[1]);
                    entry.3 = entry.3.max(values[2]);
                }
                None => databases.push((db.to_owned(), values[0], values[1], values[2])),
            }
        }
    }
    let mut merged = String::with_capacity(first.len());
    let mut in_keyspace = false;
    for line in first.split_inclusive("\r\n") {
        let content = line.trim_end_matches("\r\n");
        if content.starts_with('#') {
            in_keyspace = content.trim() == "# Keyspace";
            merged.push_str(line);
            if in_keyspace {
                for (db, keys, expires, avg_ttl) in &databases {
                    merged.push_str(&format!(
                        "{db}:keys={keys},expires={expires},avg_ttl={avg_ttl}\r\n"
                    ));
                }
            }
        } else if !in_keyspace || content.is_empty() {
            // Everything but the first node's own database lines, which were replaced.
            merged.push_str(line);
        }
    }
    match &replies[0] {
        Frame::Verbatim { format, .. } => Frame::Verbatim {
            format: *format,
            text: Bytes::from(merged),
        },
        _ => Frame::Bulk(Bytes::from(merged)),
    }
}

fn keyspace_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut in_keyspace = false;
    text.split("\r\n").filter(move |line| {
        if line.starts_with('#') {
            in_keyspace = line.trim() == "# Keyspace";
            return false;
        }
        in_keyspace && !line.is_empty()
    })
}

#[cfg(test)]
mod tests;
