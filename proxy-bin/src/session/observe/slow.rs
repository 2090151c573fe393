//! Slow-log entries: a slow request's leading arguments, read back from the bytes the reply queue kept, and
//! the entry written into the proxy's slow log.

use std::sync::Arc;
use std::time::Duration;

use super::super::Session;
use super::queue::Sent;
use crate::stats::slowlog::{SlowArg, SlowRequest};

/// The arguments of the first request in `bytes`, as far as they are there (a prefix of a request, or of a
/// batch), and how many arguments it declared.
fn prefix_args(bytes: &[u8]) -> (Vec<SlowArg<'_>>, usize) {
    let mut args = Vec::new();
    let Some((argc, mut at)) = resp_number(bytes, 0, b'*') else {
        return (args, 0);
    };
    while args.len() < argc {
        let Some((len, start)) = resp_number(bytes, at, b'$') else {
            break;
        };
        let end = start.saturating_add(len).min(bytes.len());
        args.push(SlowArg {
            shown: bytes.get(start..end).unwrap_or_default(),
            len,
        });
        at = start.saturating_add(len).saturating_add(2);
        if at > bytes.len() {
            break;
        }
    }
    (args, argc)
}

/// A RESP header `<kind><digits>\r\n` at `at`: its number and where what follows it starts.
fn resp_number(bytes: &[u8], at: usize, kind: u8) -> Option<(usize, usize)> {
    if *bytes.get(at)? != kind {
        return None;
    }
    let digits = bytes.get(at + 1..)?;
    let end = digits.iter().position(|&b| b == b'\r')?;
    let number = std::str::from_utf8(&digits[..end]).ok()?.parse().ok()?;
    Some((number, at + 1 + end + 2))
}

impl Session {
    /// Logs `sent`, slow: `request` is what the proxy kept of what it sent (its leading bytes; empty when
    /// nothing was kept).
    pub(super) fn log_slow(&self, sent: &Sent, request: &[u8], took: Duration, node: &str) {
        let (mut args, mut argc) = prefix_args(request);
        let batch_note = format!("... ({} requests in one batch)", sent.requests);
        if sent.requests > 1 && argc < 32 {
            // The note is an argument of its own (so it is never cut), unless the request has 32 or more.
            args.truncate(argc);
            args.push(SlowArg::whole(batch_note.as_bytes()));
            argc += 1;
        }
        self.state.stats().slowlog().log(SlowRequest {
            duration: took,
            argc,
            args,
            client_addr: self.peer_text(),
            client_name: self
                .name
                .as_ref()
                .map(|name| String::from_utf8_lossy(name).into_owned())
                .unwrap_or_default(),
            tenant: Arc::clone(self.stats.tenant()),
            node: node.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_prefix_gives_its_leading_arguments_and_their_lengths() {
        let request = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\n";
        let (args, argc) = prefix_args(request);
        assert_eq!(argc, 3);
        let shown: Vec<(&[u8], usize)> = args.iter().map(|a| (a.shown, a.len)).collect();
        assert_eq!(
            shown,
            [(&b"SET"[..], 3), (&b"k"[..], 1), (&b"0123456789"[..], 10)]
        );
        // Cut inside the value: the value is partly there, its length still known.
        let (args, argc) = prefix_args(&request[..30]);
        assert_eq!(argc, 3);
        assert_eq!(args.len(), 3);
        assert_eq!((args[2].shown, args[2].len), (&b"01234"[..], 10));
        // Cut inside a header: the arguments before it.
        let (args, _) = prefix_args(&request[..15]);
        assert_eq!(args.len(), 1);
        assert_eq!(prefix_args(b"PING\r\n").1, 0);
    }
}
