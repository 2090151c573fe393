//! How long a connection that owes replies may go without progress: the patience a request needs, what the
//! connections of this process to one server know about the scripts it runs, and the watchdog that decides.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use cluster_router::commands::{self, CommandClass, CommandSpec};
use resp_codec::RequestDecoder;
use tokio::time::Instant;
use tokio_util::codec::Decoder;

/// How long the backend may go without progress while a request is owed its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Patience {
    /// `timeouts.command_ms`.
    #[default]
    Normal,
    /// `timeouts.slow_command_ms`: the command may legitimately keep the server busy, without a byte of
    /// progress, for longer (Lua scripts and functions: EVAL, EVALSHA, FCALL, ... which Redis runs to the end
    /// before it answers anyone).
    Slow,
}

impl Patience {
    /// The patience a command needs: slow for the command table's scripting class.
    pub fn for_command(spec: &CommandSpec) -> Patience {
        if spec.class == CommandClass::Scripting {
            Patience::Slow
        } else {
            Patience::Normal
        }
    }

    /// The patience for a request given as raw bytes (a redirected request, where only the bytes are kept).
    /// Normal for anything that is not one well-formed, known command, and for requests over 1 MiB, which
    /// are not copied to be looked at (a script is rarely that big; a huge SET often is).
    pub fn for_request_bytes(request: &[u8]) -> Patience {
        const MAX_LOOKED_AT: usize = 1024 * 1024;
        if request.len() > MAX_LOOKED_AT {
            return Patience::Normal;
        }
        let mut buffer = BytesMut::from(request);
        match RequestDecoder::default().decode(&mut buffer) {
            Ok(Some(request)) => {
                commands::lookup(&request).map_or(Patience::Normal, Self::for_command)
            }
            _ => Patience::Normal,
        }
    }
}

/// What the shared connections of this process to one server know about its scripts.
#[derive(Debug, Default)]
struct ServerScripts {
    /// How many connections owe a reply to a slow request. While one does, the server may be running a script
    /// and answer no one, so the others are patient too.
    busy_connections: AtomicUsize,
    /// Bumped whenever a connection stops owing a slow reply: the server finished a script, which is progress
    /// for every connection to it (the replies it held back meanwhile may still be on their way).
    finished: AtomicU64,
}

/// One connection's share of its server's [`ServerScripts`].
#[derive(Debug)]
pub(super) struct SlowOwed {
    server: Arc<ServerScripts>,
    /// Whether this connection is counted in `busy_connections`.
    counted: bool,
    /// The value of `finished` this connection saw last.
    seen_finished: u64,
}

impl SlowOwed {
    pub(super) fn for_address(address: &str) -> SlowOwed {
        static BY_ADDRESS: OnceLock<Mutex<HashMap<String, Arc<ServerScripts>>>> = OnceLock::new();
        let mut map = BY_ADDRESS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let server = Arc::clone(map.entry(address.to_owned()).or_default());
        let seen_finished = server.finished.load(Ordering::Relaxed);
        SlowOwed {
            server,
            counted: false,
            seen_finished,
        }
    }

    /// Records whether this connection owes a reply to a slow request.
    pub(super) fn set(&mut self, slow: bool) {
        if slow == self.counted {
            return;
        }
        if slow {
            self.server.busy_connections.fetch_add(1, Ordering::Relaxed);
        } else {
            self.server.busy_connections.fetch_sub(1, Ordering::Relaxed);
            // Only compared for a change, so wrapping around is harmless. This connection read the script's
            // reply itself: that is not news to it.
            let before = self.server.finished.fetch_add(1, Ordering::Relaxed);
            self.seen_finished = before.wrapping_add(1);
        }
        self.counted = slow;
    }

    /// Whether some connection of this process to the server owes a reply to a slow request.
    pub(super) fn server_may_be_busy(&self) -> bool {
        self.server.busy_connections.load(Ordering::Relaxed) > 0
    }

    /// Whether the server finished a script since this connection last asked (it asks when it starts owing
    /// replies, so older news do not count).
    pub(super) fn script_finished_since_last_look(&mut self) -> bool {
        let finished = self.server.finished.load(Ordering::Relaxed);
        let news = finished != self.seen_finished;
        self.seen_finished = finished;
        news
    }
}

impl Drop for SlowOwed {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// Decides when a connection that owes replies has made no progress for too long.
#[derive(Debug)]
pub(super) struct Watchdog {
    pub(super) command_timeout: Duration,
    pub(super) slow_command_timeout: Duration,
    pub(super) last_progress: Instant,
}

impl Watchdog {
    pub(super) fn progress(&mut self) {
        self.last_progress = Instant::now();
    }

    /// `Ok(when to look again)`, or the allowance that ran out. Looks again at least every `command_timeout`,
    /// so a connection that stops being patient is failed on time.
    pub(super) fn check(&self, now: Instant, patience: Patience) -> Result<Instant, Duration> {
        let allowance = match patience {
            Patience::Normal => self.command_timeout,
            Patience::Slow => self.slow_command_timeout.max(self.command_timeout),
        };
        let due = self.last_progress + allowance;
        if now >= due {
            Err(allowance)
        } else {
            Ok(due.min(now + self.command_timeout))
        }
    }
}
