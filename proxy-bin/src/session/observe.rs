//! What the session contributes to the proxy's stats: it counts each request as it is framed, times each
//! entry of its reply queue from dispatch to reply, logs slow ones, and answers `RKPROXY STATS`, `SLOWLOG` and
//! INFO's `# Proxy` section.
//!
//! Counting is through the session's own [`SessionStats`](crate::stats::SessionStats) into counters that
//! readers read in place (nothing is flushed): a client that has read a reply finds it counted.
//!
//! Timing: [`PendingQueue`] is the session's reply queue. It records when each entry waiting on a backend was
//! pushed and when it was taken off the front complete, with one clock read per pass over the client's input
//! (which times the requests framed and the entries dispatched in it) and one per pass over arrived replies
//! (which also ends their time in the proxy at the write that follows); an entry taken off and put back (a
//! cluster redirect, a merge still waiting for parts) keeps its start. Entries the proxy answers itself are
//! not timed.
//!
//! The parts: `queue` (the reply queue and its timing), `counting` (counting and timing on the request path,
//! and what the client table shows at each write), `slow` (slow-log entries), `commands` (SLOWLOG, RKPROXY STATS / BIGKEYS /
//! HOTKEYS, INFO's `# Proxy`) and `facts` (what the report needs from the proxy's state: pools, lanes, Kafka
//! lag, node probes).

mod commands;
mod counting;
mod facts;
mod queue;
mod slow;

pub(super) use self::counting::{failure_kind, refusal_kind, session_stats, LaneTiming};
pub use self::facts::{kafka_lag, probe_nodes, proxy_facts};
pub(super) use self::queue::{new_queue, PendingQueue};
