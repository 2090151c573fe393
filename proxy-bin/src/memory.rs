//! The whole process's memory budget for client data (`max_memory`), and the counters of the memory limits.
//!
//! What is counted: the bytes every session holds for its client, in client read buffers (whole and partly
//! received requests), requests in flight (sent to a backend, not answered yet; this also stands for their copy
//! in the backend connection's write buffer) and replies waiting to be written. Each session reports the change
//! of its own total once per turn of its loop, with one relaxed atomic add; nothing is added per command.
//!
//! Why not the process's resident size (`/proc/self/statm`)? The allocator keeps memory it was given back, so
//! RSS may stay above the limit after every client drained, and the proxy would then stop reading forever. The
//! bytes held for clients always fall back to zero once replies are written, so an episode always ends. What is
//! not counted (backend read buffers while a reply arrives, replies that arrived behind one still awaited,
//! allocator overhead) is bounded by the per-client limits (`client_limits.max_pending_requests`,
//! `max_pending_bytes`, `max_output_bytes`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tracing::{info, warn};

/// The process-wide count of bytes held for clients, the `max_memory` limit, and the counters a stats reader
/// can show.
#[derive(Debug, Default)]
pub struct MemoryBudget {
    /// `max_memory`; 0 = no limit.
    limit: usize,
    held: AtomicUsize,
    /// Whether the last check saw `held` above `limit` (an episode is running).
    over: AtomicBool,
    /// How often `held` went above `max_memory`.
    episodes: AtomicU64,
    /// Clients disconnected because their replies waiting exceeded `client_limits.max_output_bytes`.
    output_limit_disconnects: AtomicU64,
    /// While over the limit: the client allowed to finish the request it is receiving (0 = none), so that a
    /// budget filled with partly received requests still drains, one request at a time.
    finisher: AtomicU64,
    /// Wakes the sessions paused by the limit once the held bytes fell below it.
    room: tokio::sync::Notify,
}

/// Counters for the operations stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryCounters {
    /// Bytes held for clients now.
    pub held_bytes: usize,
    /// Times the proxy went over `max_memory` and stopped reading requests.
    pub max_memory_episodes: u64,
    /// Clients disconnected at `client_limits.max_output_bytes`.
    pub output_limit_disconnects: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes (`max_memory`; 0 = no limit).
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            limit,
            ..MemoryBudget::default()
        }
    }

    /// Records that a session now holds `now` bytes instead of `before`. During an episode, a fall below the
    /// limit wakes the paused sessions.
    pub fn change(&self, before: usize, now: usize) {
        if now > before {
            self.held.fetch_add(now - before, Ordering::Relaxed);
        } else if before > now {
            let held = self.held.fetch_sub(before - now, Ordering::Relaxed) - (before - now);
            if self.limit > 0 && held <= self.limit && self.over.load(Ordering::Relaxed) {
                self.room.notify_waiters();
            }
        }
    }

    /// Completes once the held bytes fell below the limit during an episode (or `fallback` passed: a fall
    /// that happened between the caller's check and this call would otherwise go unseen).
    pub async fn room(&self, fallback: std::time::Duration) {
        tokio::select! {
            () = self.room.notified() => {}
            () = tokio::time::sleep(fallback) => {}
        }
    }

    /// Whether the proxy holds more than `max_memory` for its clients; sessions then read no new request.
    /// The first check that sees an episode begin logs it and counts it, and the first that sees it end logs
    /// that too.
    pub fn over(&self) -> bool {
        if self.limit == 0 {
            return false;
        }
        let held = self.held.load(Ordering::Relaxed);
        let over = held > self.limit;
        if over != self.over.load(Ordering::Relaxed)
            && self
                .over
                .compare_exchange(!over, over, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            if over {
                self.episodes.fetch_add(1, Ordering::Relaxed);
                warn!(
                    held_bytes = held,
                    max_memory = self.limit,
                    "over max_memory: reading no new requests until replies drain"
                );
            } else {
                info!(
                    held_bytes = held,
                    max_memory = self.limit,
                    "below max_memory again: reading requests"
                );
            }
        }
        over
    }

    /// While over the limit, whether session `id`, which is receiving a request and has nothing in flight
    /// that could drain, may go on reading until that request is complete. One session at a time may.
    pub fn may_finish_request(&self, id: u64) -> bool {
        match self
            .finisher
            .compare_exchange(0, id, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => true,
            Err(holder) => holder == id,
        }
    }

    /// Session `id` no longer needs to finish a request (it is complete, or the session ended).
    pub fn finished_request(&self, id: u64) {
        let _ = self
            .finisher
            .compare_exchange(id, 0, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Counts a client disconnected at `client_limits.max_output_bytes`.
    pub fn count_output_limit_disconnect(&self) {
        self.output_limit_disconnects
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn counters(&self) -> MemoryCounters {
        MemoryCounters {
            held_bytes: self.held.load(Ordering::Relaxed),
            max_memory_episodes: self.episodes.load(Ordering::Relaxed),
            output_limit_disconnects: self.output_limit_disconnects.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_is_counted_once_and_ends_when_held_bytes_fall() {
        let budget = MemoryBudget::new(100);
        budget.change(0, 150);
        assert!(budget.over());
        assert!(budget.over());
        budget.change(150, 20);
        assert!(!budget.over());
        budget.change(20, 101);
        assert!(budget.over());
        assert_eq!(budget.counters().max_memory_episodes, 2);
        assert_eq!(budget.counters().held_bytes, 101);
    }

    #[test]
    fn no_limit_is_never_over() {
        let budget = MemoryBudget::new(0);
        budget.change(0, usize::MAX / 2);
        assert!(!budget.over());
    }

    #[test]
    fn one_session_at_a_time_finishes_its_request() {
        let budget = MemoryBudget::new(1);
        assert!(budget.may_finish_request(7));
        assert!(budget.may_finish_request(7));
        assert!(!budget.may_finish_request(8));
        budget.finished_request(8);
        assert!(!budget.may_finish_request(8));
        budget.finished_request(7);
        assert!(budget.may_finish_request(8));
    }
}
