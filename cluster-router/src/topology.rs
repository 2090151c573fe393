//! The cluster topology: which master (and which replicas) serve each hash slot.
//!
//! A [`SlotMap`] is immutable. The proxy builds a new one from a `CLUSTER SLOTS` or
//! `CLUSTER SHARDS` reply (or from [`ShardInfo`]s) and swaps it in whole; commands in flight
//! keep routing with the map they started with. Shards are numbered in a stable order
//! (by their lowest slot), and that shard index is what routing plans call `node_index`:
//! `map.masters()[node_index]` is the master to send to.
//!
//! Because a single node can be wrong (for example a node on the minority side of a
//! partition), [`SlotMap::agrees_with`] compares two maps, so a refresh can require two
//! nodes to agree before trusting a new map.

use std::fmt;

use resp_codec::Frame;

use crate::slot::SLOT_COUNT;

/// A node's address as the cluster reports it.
///
/// ```
/// use cluster_router::topology::NodeAddr;
///
/// let addr = NodeAddr::parse("127.0.0.1:7000").unwrap();
/// assert_eq!((addr.host.as_str(), addr.port), ("127.0.0.1", 7000));
/// assert_eq!(addr.to_string(), "127.0.0.1:7000");
/// assert_eq!(NodeAddr::parse("[::1]:7000").unwrap().to_string(), "[::1]:7000");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct NodeAddr {
    /// Host name or IP address, without brackets for IPv6.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl NodeAddr {
    /// Creates an address.
    pub fn new(host: impl Into<String>, port: u16) -> NodeAddr {
        NodeAddr {
            host: host.into(),
            port,
        }
    }

    /// Parses `host:port`, `[ipv6]:port` or Redis's bracketless `ipv6:port` (the port is
    /// after the last colon). Returns `None` without a valid port.
    pub fn parse(text: &str) -> Option<NodeAddr> {
        let (host, port) = text.rsplit_once(':')?;
        let port = port.parse().ok()?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        Some(NodeAddr::new(host, port))
    }
}

impl fmt::Display for NodeAddr {
    /// `host:port`, with brackets around IPv6 addresses so the result can be connected to.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One shard as input to [`SlotMap::from_shards`]: its slot ranges and nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardInfo {
    /// Inclusive slot ranges served by this shard.
    pub slots: Vec<(u16, u16)>,
    /// The master.
    pub master: NodeAddr,
    /// The replicas fit to serve reads.
    pub replicas: Vec<NodeAddr>,
}

impl ShardInfo {
    /// Creates a shard description.
    pub fn new(slots: Vec<(u16, u16)>, master: NodeAddr, replicas: Vec<NodeAddr>) -> ShardInfo {
        ShardInfo {
            slots,
            master,
            replicas,
        }
    }
}

/// Why a topology reply could not be turned into a [`SlotMap`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// The reply does not have the documented shape.
    #[error("malformed cluster topology reply: {0}")]
    Malformed(&'static str),
    /// A slot number is 16384 or more, or a range is reversed.
    #[error("invalid slot range {start}-{end} in cluster topology reply")]
    BadSlotRange {
        /// First slot of the range.
        start: i64,
        /// Last slot of the range.
        end: i64,
    },
    /// Two different masters claim the same slot.
    #[error("slot {slot} is claimed by both {first} and {second}")]
    ConflictingOwners {
        /// The slot.
        slot: u16,
        /// The first claimant.
        first: NodeAddr,
        /// The second claimant.
        second: NodeAddr,
    },
    /// The node reported an error instead of a topology.
    #[error("cluster topology request failed: {0}")]
    ErrorReply(String),
}

/// Marks a slot no shard serves.
const UNASSIGNED: u16 = u16::MAX;

/// An immutable slot → shard table with the shards' masters and replicas.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotMap {
    masters: Vec<NodeAddr>,
    replicas: Vec<Vec<NodeAddr>>,
    /// Shard index per slot, `UNASSIGNED` when no shard serves it.
    owners: Box<[u16]>,
}

impl fmt::Debug for SlotMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (shard, master) in self.masters.iter().enumerate() {
            list.entry(&format_args!(
                "{master} (replicas {:?}) slots {:?}",
                self.replicas[shard]
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
                self.slot_ranges(shard)
            ));
        }
        list.finish()
    }
}

impl SlotMap {
    /// Builds a map from shard descriptions. Shards with the same master are merged; shards
    /// are renumbered by their lowest slot so that equal topologies get equal numbering.
    ///
    /// ```
    /// use cluster_router::topology::{NodeAddr, ShardInfo, SlotMap};
    ///
    /// let map = SlotMap::from_shards(vec![
    ///     ShardInfo::new(vec![(0, 8191)], NodeAddr::new("10.0.0.1", 6379), vec![]),
    ///     ShardInfo::new(vec![(8192, 16383)], NodeAddr::new("10.0.0.2", 6379), vec![]),
    /// ])
    /// .unwrap();
    /// assert!(map.is_complete());
    /// assert_eq!(map.master_for_slot(12182).unwrap().host, "10.0.0.2");
    /// ```
    pub fn from_shards(
        shards: impl IntoIterator<Item = ShardInfo>,
    ) -> Result<SlotMap, TopologyError> {
        // Merge shards by master, then order them by lowest slot.
        let mut merged: Vec<ShardInfo> = Vec::new();
        for shard in shards {
            match merged.iter_mut().find(|m| m.master == shard.master) {
                Some(existing) => {
                    existing.slots.extend(shard.slots);
                    for replica in shard.replicas {
                        if !existing.replicas.contains(&replica) {
                            existing.replicas.push(replica);
                        }
                    }
                }
                None => merged.push(shard),
            }
        }
        for shard in &mut merged {
            for &(start, end) in &shard.slots {
                if start > end || end >= SLOT_COUNT {
                    return Err(TopologyError::BadSlotRange {
                        start: i64::from(start),
                        end: i64::from(end),
                    });
                }
            }
            shard.slots.sort_unstable();
            shard.replicas.sort();
        }
        merged.retain(|shard| !shard.slots.is_empty());
        merged.sort_by_key(|shard| shard.slots.first().map(|range| range.0));
        if merged.len() >= usize::from(UNASSIGNED) {
            return Err(TopologyError::Malformed("more shards than slots"));
        }

        let mut owners = vec![UNASSIGNED; usize::from(SLOT_COUNT)].into_boxed_slice();
        for (index, shard) in merged.iter().enumerate() {
            for &(start, end) in &shard.slots {
                for slot in start..=end {
                    let owner = &mut owners[usize::from(slot)];
                    if *owner != UNASSIGNED && usize::from(*owner) != index {
                        return Err(TopologyError::ConflictingOwners {
                            slot,
                            first: merged[usize::from(*owner)].master.clone(),
                            second: shard.master.clone(),
                        });
                    }
                    *owner = index as u16;
                }
            }
        }
        let (masters, replicas) = merged
            .into_iter()
            .map(|shard| (shard.master, shard.replicas))
            .unzip();
        Ok(SlotMap {
            masters,
            replicas,
            owners,
        })
    }

    /// Builds a map from a `CLUSTER SLOTS` reply sent by the node at `replied_by`.
    ///
    /// Entries are `[start, end, [host, port, id, ...], replica...]`. An empty host means
    /// "the host of the node that replied" (Redis sends it when it does not know its own
    /// address); a `?` host means "unknown", and such nodes are left out (a master left out
    /// leaves its slots unassigned).
    pub fn from_cluster_slots(
        reply: &Frame,
        replied_by: &NodeAddr,
    ) -> Result<SlotMap, TopologyError> {
        reject_error(reply)?;
        let entries =
            array(reply).ok_or(TopologyError::Malformed("CLUSTER SLOTS is not an array"))?;
        let mut shards = Vec::new();
        for entry in entries {
            let fields =
                array(entry).ok_or(TopologyError::Malformed("slot range is not an array"))?;
            let [start, end, master, replicas @ ..] = fields else {
                return Err(TopologyError::Malformed(
                    "slot range has fewer than 3 fields",
                ));
            };
            let slots = slot_range(start, end)?;
            let Some(master) = slots_node(master, replied_by)? else {
                continue;
            };
            let mut replica_addrs = Vec::new();
            for replica in replicas {
                if let Some(addr) = slots_node(replica, replied_by)? {
                    replica_addrs.push(addr);
                }
            }
            shards.push(ShardInfo::new(vec![slots], master, replica_addrs));
        }
        SlotMap::from_shards(shards)
    }

    /// Builds a map from a `CLUSTER SHARDS` reply (Redis 7), RESP2 or RESP3, sent by the node
    /// at `replied_by`.
    ///
    /// Each shard has `slots` (flat start/end pairs) and `nodes` (maps with `endpoint`/`ip`,
    /// `port`, `role`, `health`). Replicas that are not `online` are left out, since they
    /// cannot serve reads; a shard without an online master keeps its failed master (the
    /// proxy will get errors and refresh, which is the truthful outcome).
    pub fn from_cluster_shards(
        reply: &Frame,
        replied_by: &NodeAddr,
    ) -> Result<SlotMap, TopologyError> {
        reject_error(reply)?;
        let entries =
            array(reply).ok_or(TopologyError::Malformed("CLUSTER SHARDS is not an array"))?;
        let mut shards = Vec::new();
        for entry in entries {
            let shard = map_entries(entry).ok_or(TopologyError::Malformed("shard is not a map"))?;
            let slot_list = field(&shard, "slots")
                .and_then(array)
                .ok_or(TopologyError::Malformed("shard has no slots array"))?;
            let mut slots = Vec::new();
            for pair in slot_list.chunks(2) {
                let [start, end] = pair else {
                    return Err(TopologyError::Malformed("odd number of slot bounds"));
                };
                slots.push(slot_range(start, end)?);
            }
            let nodes = field(&shard, "nodes")
                .and_then(array)
                .ok_or(TopologyError::Malformed("shard has no nodes array"))?;
            let mut master = None;
            let mut replicas = Vec::new();
            for node in nodes {
                let node =
                    map_entries(node).ok_or(TopologyError::Malformed("node is not a map"))?;
                let Some(addr) = shards_node_addr(&node, replied_by)? else {
                    continue;
                };
                let role = field(&node, "role").and_then(text).unwrap_or_default();
                let online = field(&node, "health").and_then(text) == Some("online");
                if role == "master" {
                    // Prefer an online master if (transiently) two claim the shard.
                    if master.is_none() || online {
                        master = Some(addr);
                    }
                } else if online {
                    replicas.push(addr);
                }
            }
            if let Some(master) = master {
                shards.push(ShardInfo::new(slots, master, replicas));
            }
        }
        SlotMap::from_shards(shards)
    }

    /// The master serving `slot`, if any.
    pub fn master_for_slot(&self, slot: u16) -> Option<&NodeAddr> {
        self.shard_for_slot(slot).map(|shard| &self.masters[shard])
    }

    /// The replicas of the shard serving `slot` (empty if none or unassigned).
    pub fn replicas_for_slot(&self, slot: u16) -> &[NodeAddr] {
        self.shard_for_slot(slot)
            .map_or(&[][..], |shard| &self.replicas[shard])
    }

    /// The index (into [`masters`](Self::masters)) of the shard serving `slot`.
    pub fn shard_for_slot(&self, slot: u16) -> Option<usize> {
        match self.owners.get(usize::from(slot)) {
            Some(&owner) if owner != UNASSIGNED => Some(usize::from(owner)),
            _ => None,
        }
    }

    /// The masters, one per shard, in shard order.
    pub fn masters(&self) -> &[NodeAddr] {
        &self.masters
    }

    /// The replicas of shard `shard`.
    pub fn replicas_of(&self, shard: usize) -> &[NodeAddr] {
        self.replicas.get(shard).map_or(&[][..], Vec::as_slice)
    }

    /// Every node, masters first (in shard order), then each shard's replicas.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeAddr> {
        self.masters.iter().chain(self.replicas.iter().flatten())
    }

    /// The slot ranges of shard `shard`, ascending.
    pub fn slot_ranges(&self, shard: usize) -> Vec<(u16, u16)> {
        let mut ranges: Vec<(u16, u16)> = Vec::new();
        for (slot, &owner) in self.owners.iter().enumerate() {
            if usize::from(owner) != shard || owner == UNASSIGNED {
                continue;
            }
            let slot = slot as u16;
            match ranges.last_mut() {
                Some((_, end)) if *end + 1 == slot => *end = slot,
                _ => ranges.push((slot, slot)),
            }
        }
        ranges
    }

    /// Whether every one of the 16384 slots has a master.
    pub fn is_complete(&self) -> bool {
        self.owners.iter().all(|&owner| owner != UNASSIGNED)
    }

    /// How many slots have no master.
    pub fn unassigned_slots(&self) -> usize {
        self.owners
            .iter()
            .filter(|&&owner| owner == UNASSIGNED)
            .count()
    }

    /// Whether two maps describe the same topology: the same master for every slot and the
    /// same replicas for every master (in any order). Use it to require agreement between
    /// nodes before trusting a refreshed map.
    pub fn agrees_with(&self, other: &SlotMap) -> bool {
        self.slots_disagreeing_with(other) == 0
            && self.masters.iter().enumerate().all(|(shard, master)| {
                other
                    .masters
                    .iter()
                    .position(|m| m == master)
                    .is_some_and(|theirs| self.replicas[shard] == other.replicas[theirs])
            })
    }

    /// How many slots have a different master (or are assigned in one map only).
    pub fn slots_disagreeing_with(&self, other: &SlotMap) -> usize {
        (0..SLOT_COUNT)
            .filter(|&slot| self.master_for_slot(slot) != other.master_for_slot(slot))
            .count()
    }
}

// === reply parsing helpers ===

fn reject_error(reply: &Frame) -> Result<(), TopologyError> {
    match reply {
        Frame::Error(message) | Frame::BulkError(message) => Err(TopologyError::ErrorReply(
            String::from_utf8_lossy(message).into_owned(),
        )),
        _ => Ok(()),
    }
}

fn array(frame: &Frame) -> Option<&[Frame]> {
    match frame {
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => Some(items),
        Frame::Attribute { value, .. } => array(value),
        _ => None,
    }
}

fn text(frame: &Frame) -> Option<&str> {
    match frame {
        Frame::Bulk(bytes) | Frame::Simple(bytes) => std::str::from_utf8(bytes).ok(),
        Frame::Verbatim { text, .. } => std::str::from_utf8(text).ok(),
        _ => None,
    }
}

fn integer(frame: &Frame) -> Option<i64> {
    match frame {
        Frame::Integer(n) => Some(*n),
        other => text(other).and_then(|t| t.parse().ok()),
    }
}

/// A RESP3 map, or a RESP2 flat `[key, value, ...]` array, as key/value pairs.
fn map_entries(frame: &Frame) -> Option<Vec<(&Frame, &Frame)>> {
    match frame {
        Frame::Map(pairs) => Some(pairs.iter().map(|(k, v)| (k, v)).collect()),
        Frame::Attribute { value, .. } => map_entries(value),
        other => {
            let items = array(other)?;
            if items.len() % 2 != 0 {
                return None;
            }
            Some(items.chunks(2).map(|pair| (&pair[0], &pair[1])).collect())
        }
    }
}

fn field<'a>(entries: &[(&'a Frame, &'a Frame)], name: &str) -> Option<&'a Frame> {
    entries
        .iter()
        .find(|(key, _)| text(key) == Some(name))
        .map(|(_, value)| *value)
}

fn slot_range(start: &Frame, end: &Frame) -> Result<(u16, u16), TopologyError> {
    let (Some(start), Some(end)) = (integer(start), integer(end)) else {
        return Err(TopologyError::Malformed("slot bound is not an integer"));
    };
    match (u16::try_from(start), u16::try_from(end)) {
        (Ok(s), Ok(e)) if s <= e && e < SLOT_COUNT => Ok((s, e)),
        _ => Err(TopologyError::BadSlotRange { start, end }),
    }
}

/// Applies Redis's endpoint conventions: `""` is the replying node's host, `"?"` unknown.
fn resolve_host(host: &str, replied_by: &NodeAddr) -> Option<String> {
    match host {
        "" => Some(replied_by.host.clone()),
        "?" => None,
        host => Some(host.to_owned()),
    }
}

fn port(frame: &Frame) -> Result<u16, TopologyError> {
    integer(frame)
        .and_then(|port| u16::try_from(port).ok())
        .ok_or(TopologyError::Malformed("bad port"))
}

/// A `[host, port, id, ...]` node of CLUSTER SLOTS.
fn slots_node(frame: &Frame, replied_by: &NodeAddr) -> Result<Option<NodeAddr>, TopologyError> {
    let fields = array(frame).ok_or(TopologyError::Malformed("node is not an array"))?;
    let [host, port_field, ..] = fields else {
        return Err(TopologyError::Malformed("node has fewer than 2 fields"));
    };
    let host = text(host).ok_or(TopologyError::Malformed("host is not a string"))?;
    let port = port(port_field)?;
    Ok(resolve_host(host, replied_by).map(|host| NodeAddr::new(host, port)))
}

/// A node map of CLUSTER SHARDS: `endpoint` (falling back to `ip`) and `port` (falling back
/// to `tls-port`).
fn shards_node_addr(
    node: &[(&Frame, &Frame)],
    replied_by: &NodeAddr,
) -> Result<Option<NodeAddr>, TopologyError> {
    let host = field(node, "endpoint")
        .and_then(text)
        .filter(|h| !h.is_empty())
        .or_else(|| field(node, "ip").and_then(text))
        .unwrap_or_default();
    let port_field = field(node, "port")
        .or_else(|| field(node, "tls-port"))
        .ok_or(TopologyError::Malformed("node has no port"))?;
    let port = port(port_field)?;
    Ok(resolve_host(host, replied_by).map(|host| NodeAddr::new(host, port)))
}

#[cfg(test)]
mod tests;
