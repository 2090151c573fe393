//! One session's share of the process's memory budget (`max_memory`, see `crate::memory`), and the limits on
//! what one client may make the proxy hold (`client_limits.max_pending_bytes`, `max_output_bytes`).

use std::sync::Arc;

use tracing::warn;

use crate::memory::MemoryBudget;

use super::output::OverOutputLimit;
use super::{Session, SessionEnd};

/// How often a session paused by `max_memory` looks whether the proxy is below it again, should it miss the
/// wake-up (see `MemoryBudget::room`).
const MEMORY_RECHECK: std::time::Duration = std::time::Duration::from_millis(50);

/// The bytes one session reported to the budget, given back when the session ends.
#[derive(Debug)]
pub(super) struct ClientMemory {
    budget: Arc<MemoryBudget>,
    id: u64,
    reported: usize,
    /// This session may finish the request it is receiving although the proxy is over `max_memory`.
    finishing: bool,
    /// The proxy is over `max_memory` and this session reads no new request (checked once per loop turn).
    pub(super) paused: bool,
}

impl ClientMemory {
    pub(super) fn new(budget: Arc<MemoryBudget>, id: u64) -> ClientMemory {
        ClientMemory {
            budget,
            id,
            reported: 0,
            finishing: false,
            paused: false,
        }
    }

    /// Reports that the session now holds `held` bytes, and decides whether it may read requests: not while
    /// the proxy is over `max_memory`, unless it is receiving a request (`receiving`) and has nothing in flight
    /// that could drain (`idle`): then one such session at a time finishes its request, so a budget filled
    /// with partly received requests still drains.
    pub(super) fn update(&mut self, held: usize, receiving: bool, idle: bool) {
        if held != self.reported {
            self.budget.change(self.reported, held);
            self.reported = held;
        }
        let over = self.budget.over();
        let may_finish = over && receiving && idle && self.budget.may_finish_request(self.id);
        if self.finishing && !may_finish {
            self.budget.finished_request(self.id);
        }
        self.finishing = may_finish;
        self.paused = over && !may_finish;
    }

    /// Waits until the proxy may be below `max_memory` again.
    pub(super) async fn wait_for_room(&self) {
        self.budget.room(MEMORY_RECHECK).await;
    }
}

impl Drop for ClientMemory {
    fn drop(&mut self) {
        self.budget.change(self.reported, 0);
        if self.finishing {
            self.budget.finished_request(self.id);
        }
    }
}

impl Session {
    /// What this session holds for its client: read buffer, requests in flight, replies not written yet.
    fn held_bytes(&self) -> usize {
        self.read_buffer.len()
            + self.pending.in_flight_bytes()
            + self.gathered.len()
            + self.output.len()
    }

    /// Reports the session's bytes to the process's budget (once per loop turn) and decides whether it may
    /// read requests; `extra` is what dedicated mode holds besides (its backend buffers).
    pub(super) fn account_memory(&mut self, extra: usize) {
        let held = self.held_bytes() + extra;
        let receiving = !self.read_buffer.is_empty();
        let idle = self.pending.is_empty();
        self.memory.update(held, receiving, idle);
    }

    /// Whether the bytes held for this client's requests in flight and replies not yet written have reached
    /// `client_limits.max_pending_bytes` (then the session reads no more of its requests until they drain).
    pub(super) fn over_pending_bytes(&self, in_flight: usize) -> bool {
        in_flight + self.gathered.len() + self.output.len()
            >= self.state.config().client_limits.max_pending_bytes
    }

    /// The client's replies waiting exceed `client_limits.max_output_bytes`: log it (client address and
    /// tenant), count it, and end the session. Other clients are not affected.
    pub(super) fn output_limit_reached(&self, over: OverOutputLimit) -> SessionEnd {
        let client = self
            .peer
            .map_or_else(|| "unknown".to_owned(), |address| address.to_string());
        let tenant = self.tenant().map_or("-", |tenant| tenant.name());
        warn!(
            %client,
            tenant,
            waiting = over.waiting,
            limit = over.limit,
            "client disconnected: replies waiting to be written exceed client_limits.max_output_bytes"
        );
        self.state.memory().count_output_limit_disconnect();
        SessionEnd::OutputLimit(over)
    }
}
