//! Routing plans: where one command goes in a Redis Cluster.
//!
//! [`route`] turns a looked-up command and its arguments into a [`RoutePlan`]:
//! - one slot ([`RoutePlan::Slot`]) for keyed commands whose keys share a slot (the usual
//!   case, computed without allocating);
//! - any node ([`RoutePlan::Keyless`]) for commands without keys;
//! - a split ([`RoutePlan::Split`]) for MGET/MSET/DEL/UNLINK/EXISTS/TOUCH whose keys span
//!   slots, with a merge policy (see [`crate::merge`]);
//! - all masters or all nodes for whole-keyspace commands, and SCAN's cursor walk.
//!
//! Splits are per **key**, not per slot and not per node: Redis refuses a multi-key command
//! whose keys are in different slots even when one node serves them all, and a sub-command
//! with several keys of one slot can get `TRYAGAIN` while that slot migrates (its keys split
//! between two nodes), after the other slots' parts already ran. A one-key part never gets
//! `TRYAGAIN` (a missing key is an ASK), so a split command is never half done by a
//! migration. Each part carries its node's index so the proxy can write all parts for one
//! node in a single pipelined batch, in the caller's order.
//!
//! Everything else multi-key (MSETNX, SUNIONSTORE, EVAL, ...) must be single-slot, as in
//! Redis Cluster; otherwise the plan is the `CROSSSLOT` error Redis would give.
//!
//! How a split goes on the wire is decided here too: [`SplitPart::encode`] writes one part's
//! sub-command, [`parts_by_node`] groups the parts one run per node, and [`encode_parts`]
//! writes a run back to back, so the proxy sends each node its share in one write and gets the
//! replies back to back, in the order [`crate::merge::merge_ordered_raw`] reads them.

use std::ops::Range;

use bytes::BytesMut;
use resp_codec::{put_bulk, put_header};

use crate::args::Args;
use crate::commands::{
    channel_indices, key_indices, ClusterRouting, CommandError, CommandSpec, KeyIndices,
    MergePolicy, SplitPattern,
};
use crate::slot::{key_slot, SLOT_COUNT};
use crate::topology::SlotMap;

/// Where a command goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoutePlan {
    /// No keys: any node can run it (a master if the command writes).
    Keyless,
    /// The node serving this slot (its master, or a replica for reads if the proxy allows).
    Slot(u16),
    /// One sub-command per slot, then merge the replies in `parts` order.
    Split {
        /// The sub-commands.
        parts: Vec<SplitPart>,
        /// How to merge their replies.
        merge: MergePolicy,
    },
    /// Every master, replies merged.
    AllMasters(MergePolicy),
    /// Every node (masters and replicas), replies merged.
    AllNodes(MergePolicy),
    /// SCAN: walk the masters one after another, with a per-node cursor.
    Scan,
}

/// One sub-command of a split: the command name (argument 0) followed by the arguments at
/// `arg_indices`, for one key (see the module docs). Plain numbers, nothing on the heap: a
/// cross-slot MGET makes one per key on the proxy's per-command path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SplitPart {
    /// The slot all of this part's keys hash to.
    pub slot: u16,
    /// The shard serving `slot`: an index into [`SlotMap::masters`].
    pub node_index: usize,
    /// The arguments of the sub-command (after the name), in the caller's order: the key, and
    /// for MSET its value.
    pub arg_indices: Range<usize>,
    /// The key's position among all the caller's keys (0-based), so an ordered merge can put
    /// the part's reply element back where the caller expects it.
    pub key_position: usize,
}

impl SplitPart {
    /// Writes this part's sub-command to `dst`: the command name (argument 0 of `args`, as the
    /// client spelled it) followed by the arguments at [`SplitPart::arg_indices`], as a RESP
    /// multibulk. `args` must be the request the part was planned from.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use cluster_router::commands::lookup;
    /// use cluster_router::plan::{route, RoutePlan};
    /// use cluster_router::topology::{NodeAddr, ShardInfo, SlotMap};
    ///
    /// let map = SlotMap::from_shards(vec![ShardInfo::new(vec![(0, 16383)], NodeAddr::new("h", 1), vec![])])
    ///     .unwrap();
    /// let args: &[&[u8]] = &[b"MSET", b"foo", b"1", b"bar", b"2"];
    /// let RoutePlan::Split { parts, .. } = route(lookup(&args).unwrap(), &args, &map).unwrap() else {
    ///     panic!("two slots")
    /// };
    /// let mut wire = BytesMut::new();
    /// parts[0].encode(&args, &mut wire); // "bar" is in the lower slot.
    /// assert_eq!(&wire[..], b"*3\r\n$4\r\nMSET\r\n$3\r\nbar\r\n$1\r\n2\r\n");
    /// ```
    pub fn encode(&self, args: &impl Args, dst: &mut BytesMut) {
        put_header(dst, b'*', self.arg_indices.len() + 1);
        put_bulk(dst, args.arg(0).unwrap_or_default());
        self.encode_args(args, dst);
    }

    /// Writes this part's arguments after the name (see [`SplitPart::encode`]).
    fn encode_args(&self, args: &impl Args, dst: &mut BytesMut) {
        for index in self.arg_indices.clone() {
            put_bulk(dst, args.arg(index).unwrap_or_default());
        }
    }
}

/// Writes the sub-commands of `parts` to `dst`, back to back in `parts` order: one node's
/// share of a split (see [`parts_by_node`]), sent in one write. The node answers them in the
/// same order, one reply each. `dst` grows as needed; a caller writing every share into one
/// buffer can size it once beforehand (the request's length plus the name and a few header
/// bytes per part is enough).
///
/// ```
/// use bytes::BytesMut;
/// use cluster_router::commands::lookup;
/// use cluster_router::plan::{encode_parts, route, RoutePlan};
/// use cluster_router::topology::{NodeAddr, ShardInfo, SlotMap};
///
/// let map = SlotMap::from_shards(vec![ShardInfo::new(vec![(0, 16383)], NodeAddr::new("h", 1), vec![])])
///     .unwrap();
/// let args: &[&[u8]] = &[b"DEL", b"foo", b"bar"];
/// let RoutePlan::Split { parts, .. } = route(lookup(&args).unwrap(), &args, &map).unwrap() else {
///     panic!("two slots")
/// };
/// let mut wire = BytesMut::new();
/// encode_parts(&args, &parts, &mut wire);
/// assert_eq!(&wire[..], b"*2\r\n$3\r\nDEL\r\n$3\r\nbar\r\n*2\r\n$3\r\nDEL\r\n$3\r\nfoo\r\n");
/// ```
pub fn encode_parts(args: &impl Args, parts: &[SplitPart], dst: &mut BytesMut) {
    /// Room for the header and name of any command in the table (the longest name is 20-odd
    /// bytes); a longer name, which no known command has, is written part by part.
    const PREFIX_ROOM: usize = 64;
    let Some(first) = parts.first() else {
        return;
    };
    // Every part of a split has as many arguments (the key, or the key and its value) behind
    // the same name, so they all start with the same bytes: written once, copied for the rest,
    // which halves the cost of encoding a cross-slot MGET.
    let start = dst.len();
    put_header(dst, b'*', first.arg_indices.len() + 1);
    put_bulk(dst, args.arg(0).unwrap_or_default());
    let mut prefix = [0u8; PREFIX_ROOM];
    let prefix_len = dst.len() - start;
    let same_prefix = |part: &SplitPart| part.arg_indices.len() == first.arg_indices.len();
    if prefix_len > PREFIX_ROOM || !parts.iter().all(same_prefix) {
        first.encode_args(args, dst);
        encode_each(args, &parts[1..], dst);
        return;
    }
    prefix[..prefix_len].copy_from_slice(&dst[start..]);
    first.encode_args(args, dst);
    for part in &parts[1..] {
        dst.extend_from_slice(&prefix[..prefix_len]);
        part.encode_args(args, dst);
    }
}

/// [`encode_parts`] without the shared prefix.
fn encode_each(args: &impl Args, parts: &[SplitPart], dst: &mut BytesMut) {
    for part in parts {
        part.encode(args, dst);
    }
}

/// The parts of a split in runs of one node each (consecutive parts with the same
/// [`SplitPart::node_index`]). [`route`] orders a split's parts by node, so each node has
/// exactly one run.
///
/// ```
/// use cluster_router::commands::lookup;
/// use cluster_router::plan::{parts_by_node, route, RoutePlan};
/// use cluster_router::topology::{NodeAddr, ShardInfo, SlotMap};
///
/// let map = SlotMap::from_shards(vec![
///     ShardInfo::new(vec![(0, 8191)], NodeAddr::new("a", 1), vec![]),
///     ShardInfo::new(vec![(8192, 16383)], NodeAddr::new("b", 1), vec![]),
/// ])
/// .unwrap();
/// // Slots 12182, 5061, 4813: two on node 0, one on node 1.
/// let args: &[&[u8]] = &[b"MGET", b"foo", b"bar", b"baz"];
/// let RoutePlan::Split { parts, .. } = route(lookup(&args).unwrap(), &args, &map).unwrap() else {
///     panic!("three slots")
/// };
/// let runs: Vec<(usize, usize)> = parts_by_node(&parts).map(|run| (run[0].node_index, run.len())).collect();
/// assert_eq!(runs, [(0, 2), (1, 1)]);
/// ```
pub fn parts_by_node(parts: &[SplitPart]) -> impl Iterator<Item = &[SplitPart]> {
    parts.chunk_by(|one, next| one.node_index == next.node_index)
}

/// Why a command cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The keys of a command that must be single-slot hash to different slots.
    #[error("CROSSSLOT Keys in request don't hash to the same slot")]
    CrossSlot,
    /// No master serves a slot the command needs.
    #[error("CLUSTERDOWN Hash slot not served")]
    SlotNotServed {
        /// The slot.
        slot: u16,
    },
    /// The command itself is malformed (bad key count, odd MSET arguments, ...).
    #[error(transparent)]
    Command(#[from] CommandError),
}

impl RouteError {
    /// The error as a complete RESP error reply: `-TEXT\r\n`.
    ///
    /// ```
    /// use cluster_router::plan::RouteError;
    ///
    /// assert_eq!(
    ///     RouteError::CrossSlot.to_reply(),
    ///     b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    /// );
    /// ```
    pub fn to_reply(&self) -> Vec<u8> {
        match self {
            RouteError::Command(error) => error.to_reply(),
            other => format!("-{other}\r\n").into_bytes(),
        }
    }
}

/// Plans how to run `args` (already resolved to `spec` by [`lookup`](crate::commands::lookup))
/// on the cluster described by `map`.
///
/// ```
/// use cluster_router::commands::{lookup, MergePolicy};
/// use cluster_router::plan::{route, RoutePlan};
/// use cluster_router::topology::{NodeAddr, ShardInfo, SlotMap};
///
/// let map = SlotMap::from_shards(vec![
///     ShardInfo::new(vec![(0, 8191)], NodeAddr::new("10.0.0.1", 6379), vec![]),
///     ShardInfo::new(vec![(8192, 16383)], NodeAddr::new("10.0.0.2", 6379), vec![]),
/// ])
/// .unwrap();
///
/// let get: &[&[u8]] = &[b"GET", b"foo"];
/// assert_eq!(route(lookup(&get).unwrap(), &get, &map).unwrap(), RoutePlan::Slot(12182));
///
/// let mget: &[&[u8]] = &[b"MGET", b"foo", b"bar", b"{foo}.2"];
/// let RoutePlan::Split { parts, merge } = route(lookup(&mget).unwrap(), &mget, &map).unwrap() else {
///     panic!("MGET across slots is split");
/// };
/// assert_eq!(merge, MergePolicy::OrderedByKey);
/// assert_eq!(parts.len(), 3); // one part per key, even "foo" and "{foo}.2" (same slot).
///
/// let sunion: &[&[u8]] = &[b"SUNION", b"foo", b"bar"];
/// let error = route(lookup(&sunion).unwrap(), &sunion, &map).unwrap_err();
/// assert_eq!(error.to_string(), "CROSSSLOT Keys in request don't hash to the same slot");
/// ```
pub fn route(spec: &CommandSpec, args: &impl Args, map: &SlotMap) -> Result<RoutePlan, RouteError> {
    match spec.cluster {
        ClusterRouting::ByKeys => single_slot(&key_indices(spec, args)?, args),
        ClusterRouting::ByShardChannels => single_slot(&channel_indices(spec, args), args),
        ClusterRouting::Split { pattern, merge } => split(spec, args, map, pattern, merge),
        ClusterRouting::AllMasters(merge) => Ok(RoutePlan::AllMasters(merge)),
        ClusterRouting::AllNodes(merge) => Ok(RoutePlan::AllNodes(merge)),
        ClusterRouting::AnyNode => Ok(RoutePlan::Keyless),
        ClusterRouting::Scan => Ok(RoutePlan::Scan),
        ClusterRouting::SlotArgument(index) => Ok(args
            .arg(usize::from(index))
            .and_then(|arg| std::str::from_utf8(arg).ok())
            .and_then(|text| text.parse::<u16>().ok())
            .filter(|slot| *slot < SLOT_COUNT)
            // An invalid slot goes anywhere; the node answers with Redis's own error.
            .map_or(RoutePlan::Keyless, RoutePlan::Slot)),
    }
}

/// The one slot of all keys, or `CROSSSLOT`. Allocation-free.
fn single_slot(keys: &KeyIndices, args: &impl Args) -> Result<RoutePlan, RouteError> {
    let mut slot = None;
    for index in keys {
        let Some(key) = args.arg(index) else {
            continue;
        };
        let this = key_slot(key);
        match slot {
            None => slot = Some(this),
            Some(previous) if previous != this => return Err(RouteError::CrossSlot),
            Some(_) => {}
        }
    }
    Ok(slot.map_or(RoutePlan::Keyless, RoutePlan::Slot))
}

fn split(
    spec: &CommandSpec,
    args: &impl Args,
    map: &SlotMap,
    pattern: SplitPattern,
    merge: MergePolicy,
) -> Result<RoutePlan, RouteError> {
    if pattern == SplitPattern::KeyValuePairs && args.argc() % 2 == 0 {
        // MSET k1 v1 k2: Redis checks this before anything else.
        return Err(CommandError::WrongArity { command: spec.name }.into());
    }
    let keys = key_indices(spec, args)?;
    // The common case, all keys in one slot, needs no split and no allocation.
    if let Ok(plan) = single_slot(&keys, args) {
        return Ok(plan);
    }
    let args_per_key = match pattern {
        SplitPattern::KeyValuePairs => 2,
        _ => 1,
    };
    // One part per key (see the module docs), in the caller's order, in one list allocated at its
    // final size: on the proxy's path for cross-slot MGETs, allocations cost more than the routing.
    let mut parts: Vec<SplitPart> = Vec::with_capacity(keys.len());
    for (position, index) in keys.iter().enumerate() {
        let Some(key) = args.arg(index) else {
            continue;
        };
        let slot = key_slot(key);
        let node_index = map
            .shard_for_slot(slot)
            .ok_or(RouteError::SlotNotServed { slot })?;
        parts.push(SplitPart {
            slot,
            node_index,
            arg_indices: index..index + args_per_key,
            key_position: position,
        });
    }
    // Grouped by node, so the proxy can write each node's parts as one batch, and by slot within
    // a node. The sort is stable: each slot's keys stay in the caller's order. Sorting (rather
    // than a search per key) keeps huge MGETs O(n log n).
    parts.sort_by_key(|part| (part.node_index, part.slot));
    Ok(RoutePlan::Split { parts, merge })
}

#[cfg(test)]
mod tests;
