//! Parsing Redis Cluster redirections: `-MOVED <slot> <host>:<port>` and `-ASK ...`.
//!
//! MOVED means the slot now lives elsewhere for good (refresh the slot map, then retry
//! there); ASK means "this one command, on that node, preceded by ASKING" while a slot is
//! being migrated. An empty host (`MOVED 3999 :6381`) is what Redis sends when it does not
//! know the target's address; it means "the same host as the node that replied".

use crate::slot::SLOT_COUNT;
use crate::topology::NodeAddr;

/// MOVED or ASK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RedirectKind {
    /// The slot moved permanently.
    Moved,
    /// Retry this command once on the target, after `ASKING`.
    Ask,
}

/// Where a redirect points.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RedirectTarget {
    /// A full address.
    Addr(NodeAddr),
    /// Only a port: the host is that of the node which sent the redirect.
    SameHost {
        /// The target port.
        port: u16,
    },
}

/// A parsed MOVED/ASK error.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Redirect {
    /// MOVED or ASK.
    pub kind: RedirectKind,
    /// The slot the command's keys hash to.
    pub slot: u16,
    /// The node to retry on.
    pub target: RedirectTarget,
}

impl Redirect {
    /// The target's full address, given the address of the node that sent the redirect.
    ///
    /// ```
    /// use cluster_router::redirect::parse_redirect;
    /// use cluster_router::topology::NodeAddr;
    ///
    /// let redirect = parse_redirect(b"-ASK 3999 :6381\r\n").unwrap();
    /// let replied_by = NodeAddr::new("10.0.0.1", 6379);
    /// assert_eq!(redirect.target_addr(&replied_by), NodeAddr::new("10.0.0.1", 6381));
    /// ```
    pub fn target_addr(&self, replied_by: &NodeAddr) -> NodeAddr {
        match &self.target {
            RedirectTarget::Addr(addr) => addr.clone(),
            RedirectTarget::SameHost { port } => NodeAddr::new(replied_by.host.clone(), *port),
        }
    }
}

/// Parses a MOVED or ASK error, with or without the leading `-` and trailing CRLF. Anything
/// else (other errors, bad slot numbers, missing ports) is `None`.
///
/// ```
/// use cluster_router::redirect::{parse_redirect, RedirectKind, RedirectTarget};
/// use cluster_router::topology::NodeAddr;
///
/// let redirect = parse_redirect(b"MOVED 3999 127.0.0.1:6381").unwrap();
/// assert_eq!(redirect.kind, RedirectKind::Moved);
/// assert_eq!(redirect.slot, 3999);
/// assert_eq!(redirect.target, RedirectTarget::Addr(NodeAddr::new("127.0.0.1", 6381)));
/// assert!(parse_redirect(b"-ERR no such key").is_none());
/// ```
pub fn parse_redirect(error_reply: &[u8]) -> Option<Redirect> {
    let text = error_reply.strip_prefix(b"-").unwrap_or(error_reply);
    let text = text.strip_suffix(b"\r\n").unwrap_or(text);
    let text = std::str::from_utf8(text).ok()?;
    let mut words = text.split(' ');
    let kind = match words.next()? {
        "MOVED" => RedirectKind::Moved,
        "ASK" => RedirectKind::Ask,
        _ => return None,
    };
    let slot: u16 = words.next()?.parse().ok()?;
    if slot >= SLOT_COUNT {
        return None;
    }
    let endpoint = words.next()?;
    if words.next().is_some() {
        return None;
    }
    let addr = NodeAddr::parse(endpoint)?;
    let target = if addr.host.is_empty() {
        RedirectTarget::SameHost { port: addr.port }
    } else {
        RedirectTarget::Addr(addr)
    };
    Some(Redirect { kind, slot, target })
}

/// What a cluster node's reply asks of the client, beyond passing it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClusterReplyKind {
    /// `-MOVED` or `-ASK`: send the command to another node ([`parse_redirect`] says where).
    Redirect,
    /// `-TRYAGAIN`: a multi-key command met a slot being migrated with its keys on both sides; the same command
    /// succeeds once the migration of those keys is done, so a client waits a little and sends it again.
    TryAgain,
    /// Any other reply: it is the command's answer.
    Final,
}

/// Classifies a node's reply (complete RESP bytes) by what it asks of the client. Only the first bytes are
/// looked at, so this is cheap on any reply.
///
/// ```
/// use cluster_router::redirect::{classify_reply, ClusterReplyKind};
///
/// assert_eq!(classify_reply(b"-MOVED 3999 127.0.0.1:6381\r\n"), ClusterReplyKind::Redirect);
/// assert_eq!(classify_reply(b"-ASK 3999 127.0.0.1:6381\r\n"), ClusterReplyKind::Redirect);
/// assert_eq!(
///     classify_reply(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"),
///     ClusterReplyKind::TryAgain
/// );
/// assert_eq!(classify_reply(b"$5\r\n-MOVE\r\n"), ClusterReplyKind::Final);
/// ```
pub fn classify_reply(reply: &[u8]) -> ClusterReplyKind {
    if reply.starts_with(b"-MOVED ") || reply.starts_with(b"-ASK ") {
        ClusterReplyKind::Redirect
    } else if reply.starts_with(b"-TRYAGAIN") {
        ClusterReplyKind::TryAgain
    } else {
        ClusterReplyKind::Final
    }
}

/// Reads a batch of replies written back to back (a node's answers to several commands sent in
/// one write): how many replies it holds, and the batch's kind, [`ClusterReplyKind::Final`]
/// only if every reply is final; otherwise `Redirect` if any reply is one, else `TryAgain`.
/// `None` if the bytes do not end at the end of a reply. Nothing is copied or allocated for
/// flat replies, so the proxy pays little for the usual all-final batch.
///
/// ```
/// use cluster_router::redirect::{classify_batch, ClusterReplyKind};
///
/// assert_eq!(classify_batch(b"*1\r\n$1\r\na\r\n:1\r\n"), Some((2, ClusterReplyKind::Final)));
/// assert_eq!(classify_batch(b":1\r\n-ASK 1 h:2\r\n"), Some((2, ClusterReplyKind::Redirect)));
/// assert_eq!(classify_batch(b":1\r\n$5\r\nab"), None);
/// ```
pub fn classify_batch(replies: &[u8]) -> Option<(usize, ClusterReplyKind)> {
    let mut kind = ClusterReplyKind::Final;
    let mut count = 0;
    let mut rest = replies;
    while !rest.is_empty() {
        let len = crate::walk::reply_len(rest)?;
        let (reply, after) = rest.split_at_checked(len)?;
        kind = match (kind, classify_reply(reply)) {
            (ClusterReplyKind::Redirect, _) | (_, ClusterReplyKind::Redirect) => {
                ClusterReplyKind::Redirect
            }
            (ClusterReplyKind::TryAgain, _) | (_, ClusterReplyKind::TryAgain) => {
                ClusterReplyKind::TryAgain
            }
            _ => ClusterReplyKind::Final,
        };
        count += 1;
        rest = after;
    }
    Some((count, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_classified_by_their_error_code_only() {
        let cases: [(&[u8], ClusterReplyKind); 7] = [
            (b"-MOVED 1 a:1\r\n", ClusterReplyKind::Redirect),
            (b"-ASK 1 a:1\r\n", ClusterReplyKind::Redirect),
            (b"-TRYAGAIN x\r\n", ClusterReplyKind::TryAgain),
            (b"-MOVEDX\r\n", ClusterReplyKind::Final),
            (b"-ERR MOVED 1 a:1\r\n", ClusterReplyKind::Final),
            (b"+TRYAGAIN\r\n", ClusterReplyKind::Final),
            (b"", ClusterReplyKind::Final),
        ];
        for (reply, kind) in cases {
            assert_eq!(
                classify_reply(reply),
                kind,
                "{:?}",
                String::from_utf8_lossy(reply)
            );
        }
    }

    #[test]
    fn a_batch_is_final_only_when_every_reply_is() {
        type Read = Option<(usize, ClusterReplyKind)>;
        let cases: [(&[u8], Read); 7] = [
            (b"", Some((0, ClusterReplyKind::Final))),
            (
                b"+OK\r\n*2\r\n-MOVED 1 a:1\r\n:1\r\n",
                Some((2, ClusterReplyKind::Final)),
            ),
            (
                b"-TRYAGAIN x\r\n:1\r\n",
                Some((2, ClusterReplyKind::TryAgain)),
            ),
            (
                b"-TRYAGAIN x\r\n-MOVED 1 a:1\r\n",
                Some((2, ClusterReplyKind::Redirect)),
            ),
            (
                b"-ASK 1 a:1\r\n-TRYAGAIN x\r\n",
                Some((2, ClusterReplyKind::Redirect)),
            ),
            (b":1\r\n*2\r\n:1\r\n", None),
            (b":1\r\n?\r\n", None),
        ];
        for (batch, expected) in cases {
            assert_eq!(
                classify_batch(batch),
                expected,
                "{:?}",
                String::from_utf8_lossy(batch)
            );
        }
    }

    #[test]
    fn moved_and_ask_parse_in_every_framing() {
        for input in [
            &b"MOVED 3999 127.0.0.1:6381"[..],
            b"-MOVED 3999 127.0.0.1:6381",
            b"-MOVED 3999 127.0.0.1:6381\r\n",
            b"MOVED 3999 127.0.0.1:6381\r\n",
        ] {
            let redirect = parse_redirect(input).unwrap();
            assert_eq!(redirect.kind, RedirectKind::Moved);
            assert_eq!(redirect.slot, 3999);
            assert_eq!(
                redirect.target,
                RedirectTarget::Addr(NodeAddr::new("127.0.0.1", 6381))
            );
        }
        let ask = parse_redirect(b"-ASK 0 redis-2.internal:7001\r\n").unwrap();
        assert_eq!(ask.kind, RedirectKind::Ask);
        assert_eq!(ask.slot, 0);
        assert_eq!(
            ask.target_addr(&NodeAddr::new("x", 1)),
            NodeAddr::new("redis-2.internal", 7001)
        );
    }

    #[test]
    fn empty_host_means_same_host() {
        let redirect = parse_redirect(b"-MOVED 16383 :6380\r\n").unwrap();
        assert_eq!(redirect.target, RedirectTarget::SameHost { port: 6380 });
        assert_eq!(
            redirect.target_addr(&NodeAddr::new("10.1.2.3", 6379)),
            NodeAddr::new("10.1.2.3", 6380)
        );
    }

    #[test]
    fn ipv6_targets_use_the_last_colon() {
        let redirect = parse_redirect(b"MOVED 1 ::1:7000").unwrap();
        assert_eq!(
            redirect.target,
            RedirectTarget::Addr(NodeAddr::new("::1", 7000))
        );
    }

    #[test]
    fn other_errors_and_garbage_are_not_redirects() {
        for input in [
            &b"-ERR unknown command"[..],
            b"-CROSSSLOT Keys in request don't hash to the same slot",
            b"MOVED",
            b"MOVED 3999",
            b"MOVED x 127.0.0.1:6381",
            b"MOVED 16384 127.0.0.1:6381",
            b"MOVED -1 127.0.0.1:6381",
            b"MOVED 1 127.0.0.1",
            b"MOVED 1 127.0.0.1:99999",
            b"MOVED 1 127.0.0.1:6381 extra",
            b"moved 1 127.0.0.1:6381",
            b"-MOVED 1 \xff:1",
            b"",
        ] {
            assert_eq!(
                parse_redirect(input),
                None,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
