//! The proxy's SCAN cursors on a cluster pool: which master is being walked, and that master's own cursor,
//! packed into one number that stays below 2^53.
//!
//! JavaScript clients (ioredis, node-redis) parse cursors as IEEE doubles, which hold integers exactly only
//! below 2^53; a larger cursor is rounded, sent back wrong, and the scan never ends. So the master's index goes
//! in the low [`NODE_BITS`] bits and the master's cursor above them: `cursor = node_cursor << NODE_BITS |
//! node_index`. The first master's start is cursor 0, as for Redis, and 0 means "done" once the last master
//! finished.
//!
//! A Redis cursor is a position in a hash table with 2^n buckets (the larger table while rehashing), so it is
//! below 2^n; Redis 7.4+ in cluster mode adds the slot (14 bits) below it. 43 bits for the master's cursor
//! leave room for a table of 2^29 buckets per slot, far beyond what a node holds. A node cursor that does not
//! fit is reported as an error ([`CursorError::TooLarge`]) rather than rounded or wrapped.

/// Bits of the proxy cursor holding the master's index: up to 1024 masters (Redis Cluster's own
/// recommended limit is 1000 nodes).
pub const NODE_BITS: u32 = 10;
/// Every cursor the proxy gives is below this (2^53, the largest exact integer of a double).
pub const CURSOR_LIMIT: u64 = 1 << 53;
/// The largest master cursor that can be packed.
pub const MAX_NODE_CURSOR: u64 = (CURSOR_LIMIT >> NODE_BITS) - 1;
const NODE_MASK: u64 = (1 << NODE_BITS) - 1;

/// Where a cluster-wide SCAN is: master `node_index` (in slot map order) at its cursor `node_cursor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanPosition {
    /// The master's index among the slot map's masters.
    pub node_index: usize,
    /// The cursor to send to that master.
    pub node_cursor: u64,
}

/// Errors of [`decode`] and [`next_cursor`]; `Display` is the text after `-` in the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CursorError {
    /// Not a cursor the proxy gave (not a number, too large, or naming a master that does not exist).
    #[error("ERR invalid cursor")]
    Invalid,
    /// A master answered with a cursor too large to pack below 2^53.
    #[error(
        "ERR SCAN cursor {node_cursor} of cluster master {node_index} is too large for rkproxy to pack below 2^53"
    )]
    TooLarge {
        /// The master's index.
        node_index: usize,
        /// The cursor the master answered.
        node_cursor: u64,
    },
}

/// Reads a client's cursor for a pool with `masters` masters.
///
/// ```
/// use cluster_router::scan_cursor::{decode, ScanPosition};
///
/// assert_eq!(decode(b"0", 3), Ok(ScanPosition { node_index: 0, node_cursor: 0 }));
/// assert_eq!(decode(b"2049", 3), Ok(ScanPosition { node_index: 1, node_cursor: 2 }));
/// assert!(decode(b"5", 3).is_err());
/// assert!(decode(b"abc", 3).is_err());
/// ```
pub fn decode(cursor: &[u8], masters: usize) -> Result<ScanPosition, CursorError> {
    let cursor: u64 = std::str::from_utf8(cursor)
        .ok()
        .filter(|text| text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse().ok())
        .ok_or(CursorError::Invalid)?;
    if cursor >= CURSOR_LIMIT {
        return Err(CursorError::Invalid);
    }
    let node_index = (cursor & NODE_MASK) as usize;
    if node_index >= masters {
        return Err(CursorError::Invalid);
    }
    Ok(ScanPosition {
        node_index,
        node_cursor: cursor >> NODE_BITS,
    })
}

/// Packs a position into the proxy's cursor.
pub fn encode(position: ScanPosition) -> Result<u64, CursorError> {
    let too_large = CursorError::TooLarge {
        node_index: position.node_index,
        node_cursor: position.node_cursor,
    };
    if position.node_cursor > MAX_NODE_CURSOR || position.node_index as u64 > NODE_MASK {
        return Err(too_large);
    }
    Ok((position.node_cursor << NODE_BITS) | position.node_index as u64)
}

/// The proxy's cursor after master `node_index` of `masters` answered `node_cursor`: the same master again,
/// the next master from its start, or 0 when the last master is done.
///
/// ```
/// use cluster_router::scan_cursor::next_cursor;
///
/// assert_eq!(next_cursor(0, 7, 3), Ok(7 << 10));
/// assert_eq!(next_cursor(0, 0, 3), Ok(1));
/// assert_eq!(next_cursor(2, 0, 3), Ok(0));
/// ```
pub fn next_cursor(
    node_index: usize,
    node_cursor: u64,
    masters: usize,
) -> Result<u64, CursorError> {
    if node_cursor != 0 {
        encode(ScanPosition {
            node_index,
            node_cursor,
        })
    } else if node_index + 1 < masters {
        encode(ScanPosition {
            node_index: node_index + 1,
            node_cursor: 0,
        })
    } else {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zero_is_the_first_master_from_its_start() {
        assert_eq!(
            decode(b"0", 1),
            Ok(ScanPosition {
                node_index: 0,
                node_cursor: 0
            })
        );
    }

    #[test]
    fn cursors_that_the_proxy_never_gives_are_invalid() {
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b" 1",
            b"1.0",
            b"abc",
            b"9007199254740992",
            b"18446744073709551616",
        ] {
            assert_eq!(decode(bad, 3), Err(CursorError::Invalid), "{bad:?}");
        }
        // Master index 3 of 3 masters.
        assert_eq!(decode(b"3", 3), Err(CursorError::Invalid));
    }

    #[test]
    fn a_node_cursor_too_large_to_pack_is_an_error() {
        assert_eq!(
            next_cursor(1, MAX_NODE_CURSOR + 1, 3),
            Err(CursorError::TooLarge {
                node_index: 1,
                node_cursor: MAX_NODE_CURSOR + 1
            })
        );
        let largest = next_cursor(1, MAX_NODE_CURSOR, 3).unwrap();
        assert!(largest < CURSOR_LIMIT);
    }

    #[test]
    fn the_old_layout_example_stays_below_two_to_the_53() {
        // The cursor that JavaScript clients rounded: master 2 at node cursor 8577 in the old layout.
        let cursor = next_cursor(2, 8577, 3).unwrap();
        assert!(cursor < CURSOR_LIMIT);
        assert_eq!(
            decode(cursor.to_string().as_bytes(), 3),
            Ok(ScanPosition {
                node_index: 2,
                node_cursor: 8577
            })
        );
    }

    proptest! {
        #[test]
        fn every_packable_position_round_trips_below_the_limit(
            node_index in 0usize..1024,
            node_cursor in 0u64..=MAX_NODE_CURSOR,
        ) {
            let cursor = encode(ScanPosition { node_index, node_cursor }).unwrap();
            prop_assert!(cursor < CURSOR_LIMIT);
            let back = decode(cursor.to_string().as_bytes(), node_index + 1).unwrap();
            prop_assert_eq!(back, ScanPosition { node_index, node_cursor });
        }

        #[test]
        fn next_cursor_is_below_the_limit_or_an_error(
            node_index in 0usize..1024,
            node_cursor in any::<u64>(),
            extra in 0usize..4,
        ) {
            let masters = node_index + 1 + extra;
            match next_cursor(node_index, node_cursor, masters) {
                Ok(cursor) => {
                    prop_assert!(cursor < CURSOR_LIMIT);
                    if cursor != 0 {
                        let position = decode(cursor.to_string().as_bytes(), masters).unwrap();
                        prop_assert!(position.node_index >= node_index);
                    }
                }
                Err(error) => prop_assert!(node_cursor > MAX_NODE_CURSOR, "{error}"),
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..24), masters in 0usize..2000) {
            let _ = decode(&bytes, masters);
        }
    }
}
