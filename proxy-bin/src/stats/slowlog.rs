//! The proxy's own slow log, answered by `SLOWLOG GET [n] | LEN | RESET` like Redis's, with two more fields per
//! entry: the tenant and the backend node.
//!
//! A request is slow when the time from its dispatch to the backend until its reply reached the proxy is at
//! least `[slowlog] slower_than_us` (Redis's `slowlog-log-slower-than`: negative turns the log off, 0 logs
//! everything). The log keeps the newest `max_len` entries. Arguments are truncated as Redis does: at most 32
//! (the last saying how many more there were), each at most 128 bytes (saying how many more bytes). Only the
//! slow path takes the log's lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use resp_codec::Frame;

/// Redis's SLOWLOG_ENTRY_MAX_ARGC and SLOWLOG_ENTRY_MAX_STRING.
const MAX_ARGS: usize = 32;
const MAX_ARG_BYTES: usize = 128;

/// One slow request.
#[derive(Debug, Clone)]
pub struct SlowEntry {
    pub id: u64,
    /// Unix time (seconds) when it was logged.
    pub time: u64,
    pub duration_us: u64,
    /// Already truncated.
    pub args: Vec<Bytes>,
    pub client_addr: String,
    pub client_name: String,
    pub tenant: Arc<str>,
    /// The backend node that answered (empty when not known).
    pub node: String,
}

impl SlowEntry {
    /// The entry as SLOWLOG GET gives it: Redis's six fields, then the tenant and the node.
    pub fn to_frame(&self) -> Frame {
        let bulk = |text: &str| Frame::Bulk(Bytes::copy_from_slice(text.as_bytes()));
        Frame::Array(vec![
            Frame::Integer(i64::try_from(self.id).unwrap_or(i64::MAX)),
            Frame::Integer(i64::try_from(self.time).unwrap_or(i64::MAX)),
            Frame::Integer(i64::try_from(self.duration_us).unwrap_or(i64::MAX)),
            Frame::Array(self.args.iter().cloned().map(Frame::Bulk).collect()),
            bulk(&self.client_addr),
            bulk(&self.client_name),
            bulk(&self.tenant),
            bulk(&self.node),
        ])
    }
}

/// One argument as far as the proxy kept it: its first bytes and its full length.
#[derive(Debug, Clone, Copy)]
pub struct SlowArg<'a> {
    pub shown: &'a [u8],
    pub len: usize,
}

impl<'a> SlowArg<'a> {
    /// A whole argument.
    pub fn whole(arg: &'a [u8]) -> SlowArg<'a> {
        SlowArg {
            shown: arg,
            len: arg.len(),
        }
    }
}

/// What a session knows about a slow request when it logs it.
#[derive(Debug)]
pub struct SlowRequest<'a> {
    pub duration: Duration,
    /// The leading arguments kept (possibly fewer than `argc`: the proxy keeps only a request's first bytes).
    pub args: Vec<SlowArg<'a>>,
    /// How many arguments the request had.
    pub argc: usize,
    pub client_addr: String,
    pub client_name: String,
    pub tenant: Arc<str>,
    pub node: String,
}

/// The slow log: its settings (changeable while running) and its newest entries.
#[derive(Debug)]
pub struct SlowLog {
    slower_than_us: AtomicI64,
    max_len: AtomicUsize,
    next_id: AtomicU64,
    entries: Mutex<VecDeque<SlowEntry>>,
}

impl SlowLog {
    pub fn new(slower_than_us: i64, max_len: usize) -> SlowLog {
        SlowLog {
            slower_than_us: AtomicI64::new(slower_than_us),
            max_len: AtomicUsize::new(max_len),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    /// Applies new settings (a configuration reload); entries over the new length are dropped.
    pub fn configure(&self, slower_than_us: i64, max_len: usize) {
        self.slower_than_us.store(slower_than_us, Ordering::Relaxed);
        self.max_len.store(max_len, Ordering::Relaxed);
        self.entries().truncate(max_len);
    }

    /// The threshold in nanoseconds, or `None` when the log is off (the sessions compare their requests'
    /// times with it).
    pub fn threshold_nanos(&self) -> Option<u64> {
        let micros = self.slower_than_us.load(Ordering::Relaxed);
        u64::try_from(micros)
            .ok()
            .map(|micros| micros.saturating_mul(1_000))
    }

    fn entries(&self) -> MutexGuard<'_, VecDeque<SlowEntry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Logs a slow request (the caller checked the threshold).
    pub fn log(&self, request: SlowRequest<'_>) {
        let max_len = self.max_len.load(Ordering::Relaxed);
        if max_len == 0 {
            return;
        }
        let entry = SlowEntry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            duration_us: u64::try_from(request.duration.as_micros()).unwrap_or(u64::MAX),
            args: truncate_args(&request.args, request.argc),
            client_addr: request.client_addr,
            client_name: request.client_name,
            tenant: request.tenant,
            node: request.node,
        };
        let mut entries = self.entries();
        entries.push_front(entry);
        entries.truncate(max_len);
    }

    /// The newest `count` entries (all with `None`) that `visible` lets through, newest first.
    pub fn get(
        &self,
        count: Option<usize>,
        visible: impl Fn(&SlowEntry) -> bool,
    ) -> Vec<SlowEntry> {
        self.entries()
            .iter()
            .filter(|entry| visible(entry))
            .take(count.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    pub fn len(&self, visible: impl Fn(&SlowEntry) -> bool) -> usize {
        self.entries().iter().filter(|entry| visible(entry)).count()
    }

    /// Removes the entries `visible` lets through.
    pub fn reset(&self, visible: impl Fn(&SlowEntry) -> bool) {
        self.entries().retain(|entry| !visible(entry));
    }
}

/// Redis's truncation: at most 32 arguments (the 32nd says how many more there were), each at most 128 bytes
/// (then saying how many more bytes it had). Arguments the proxy did not keep are counted as more arguments.
fn truncate_args(args: &[SlowArg<'_>], argc: usize) -> Vec<Bytes> {
    let kept = if argc > MAX_ARGS { MAX_ARGS - 1 } else { argc };
    let mut out: Vec<Bytes> = args
        .iter()
        .take(kept)
        .map(|arg| {
            if arg.len > MAX_ARG_BYTES || arg.shown.len() < arg.len {
                let shown = &arg.shown[..arg.shown.len().min(MAX_ARG_BYTES)];
                let mut text = shown.to_vec();
                text.extend_from_slice(
                    format!("... ({} more bytes)", arg.len - shown.len()).as_bytes(),
                );
                Bytes::from(text)
            } else {
                Bytes::copy_from_slice(arg.shown)
            }
        })
        .collect();
    if argc > out.len() {
        out.push(Bytes::from(format!(
            "... ({} more arguments)",
            argc - out.len()
        )));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(tenant: &str, args: Vec<&'a [u8]>) -> SlowRequest<'a> {
        SlowRequest {
            duration: Duration::from_millis(20),
            argc: args.len(),
            args: args.into_iter().map(SlowArg::whole).collect(),
            client_addr: "127.0.0.1:5000".into(),
            client_name: String::new(),
            tenant: Arc::from(tenant),
            node: "127.0.0.1:6379".into(),
        }
    }

    #[test]
    fn arguments_are_truncated_like_redis() {
        let long = [b'x'; 200];
        let many: Vec<SlowArg> = std::iter::repeat_n(SlowArg::whole(b"a"), 40).collect();
        let truncated = truncate_args(&many, 40);
        assert_eq!(truncated.len(), 32);
        assert_eq!(&truncated[31][..], b"... (9 more arguments)");
        let one = truncate_args(&[SlowArg::whole(&long)], 1);
        assert_eq!(one[0].len(), 128 + "... (72 more bytes)".len());
        assert!(one[0].ends_with(b"... (72 more bytes)"));
        // Only the first bytes were kept: a cut argument and the arguments after it are still counted.
        let cut = truncate_args(
            &[
                SlowArg::whole(b"SET"),
                SlowArg {
                    shown: b"ke",
                    len: 3,
                },
            ],
            3,
        );
        assert_eq!(cut.len(), 3);
        assert_eq!(&cut[1][..], b"ke... (1 more bytes)");
        assert_eq!(&cut[2][..], b"... (1 more arguments)");
    }

    #[test]
    fn the_log_keeps_the_newest_and_filters_by_tenant() {
        let log = SlowLog::new(0, 2);
        log.log(request("a", vec![b"GET", b"k1"]));
        log.log(request("b", vec![b"GET", b"k2"]));
        log.log(request("a", vec![b"GET", b"k3"]));
        assert_eq!(log.len(|_| true), 2);
        let mine = log.get(None, |entry| &*entry.tenant == "a");
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].id, 2);
        assert_eq!(&mine[0].args[1][..], b"k3");
        log.reset(|entry| &*entry.tenant == "a");
        assert_eq!(log.len(|_| true), 1);
        log.configure(2_500, 2);
        assert_eq!(log.threshold_nanos(), Some(2_500_000));
        log.configure(-1, 2);
        assert_eq!(log.threshold_nanos(), None);
    }
}
