//! Traffic limits: operations and bytes per second (with `governor`). A tenant's own limits (its
//! limiters, request size and connection count) are applied in `tenant_limits.rs`; this module
//! knows nothing of tenants.
//!
//! # Policy
//!
//! - **Shared per tenant.** Each tenant has one ops limiter and one bytes limiter, behind its
//!   `Arc<Tenant>`, used by all its connections on all threads.
//! - **Buckets of one second.** Both limiters allow a burst of one second's worth
//!   (`ops_per_sec` commands, `bytes_per_sec` bytes) and refill continuously (GCRA).
//! - **Wait, then refuse.** [`TrafficLimits::admit`] answers [`Admission::Ok`] (charged, go
//!   ahead), [`Admission::Wait`] (nothing charged: sleep that long, then call `admit` again)
//!   or [`Admission::Reject`] when the wait would be longer than the tenant's
//!   `limit_wait_ms` (default 1000 ms, the time a bucket takes to refill; 0 refuses at once).
//!   A tenant over its limit on average is therefore slowed down to its limit; the per-client
//!   pending-request limit of the proxy bounds how much waits in memory.
//! - **Replies count too.** [`TrafficLimits::account_reply`] charges reply bytes to the bytes
//!   limiter at once. What the bucket cannot cover becomes *debt*, paid (up to a bucket at a
//!   time) before the tenant's next request is admitted, so a big reply delays the next
//!   requests instead of being refused after the fact. Requests bigger than a bucket are
//!   handled the same way: one bucket now, the rest as debt.
//! - **No double charge.** When the ops limiter admits a request but the bytes limiter makes it
//!   wait, the op is kept as a credit that the retry uses, so a retried request costs one op.

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::error::{LimitKind, PolicyError};
use crate::shared_budget::SharedBudget;

/// The limiter type for a clock.
type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The most bytes-limiter cells per second. Above it, one cell stands for several bytes, so
/// that governor's per-cell interval (whole nanoseconds) stays accurate to 0.1%.
const MAX_CELLS_PER_SEC: u64 = 1_000_000;

/// What to do with a request, from [`TrafficLimits::admit`] (or `Tenant::admit`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admission {
    /// Within the limits; the request has been charged.
    Ok,
    /// Over a limit for now; nothing was charged. Sleep this long, then call `admit` again.
    Wait(Duration),
    /// Over a limit for longer than the tenant's `limit_wait_ms`: reply with this error.
    Reject(PolicyError),
}

/// The outcome of trying to charge a request, before deciding whether it may wait.
enum Charge {
    /// Within the limits; charged.
    Charged,
    /// `limit` is short for now; nothing was charged. It allows the request in `wait`.
    Over { wait: Duration, limit: LimitKind },
}

/// The ops and bytes limiters of one tenant. `C` is the clock: the real monotonic clock in the
/// proxy, governor's `FakeRelativeClock` in tests.
#[derive(Debug)]
pub struct TrafficLimits<C: Clock = MonotonicClock> {
    tenant: String,
    ops: Option<Limiter<C>>,
    /// Ops already charged for a request that then had to wait for bytes.
    ops_credit: AtomicU64,
    bytes: Option<ByteLimiter<C>>,
    max_wait: Duration,
    clock: C,
    /// The budget shared with other proxies (`limits_store`), if any.
    shared: Option<SharedBudget>,
}

#[derive(Debug)]
struct ByteLimiter<C: Clock> {
    limiter: Limiter<C>,
    /// Bytes per cell (1 unless `bytes_per_sec` is above [`MAX_CELLS_PER_SEC`]).
    bytes_per_cell: u64,
    /// Cells in a full bucket.
    burst: u32,
    /// Cells owed: reply bytes and the parts of big requests a bucket could not cover.
    debt: AtomicU64,
}

// === impl TrafficLimits ===

impl TrafficLimits<MonotonicClock> {
    /// Limits on the real clock.
    pub fn new(
        tenant: &str,
        ops_per_sec: Option<NonZeroU32>,
        bytes_per_sec: Option<NonZeroU64>,
        max_wait: Duration,
    ) -> TrafficLimits<MonotonicClock> {
        TrafficLimits::with_clock(tenant, ops_per_sec, bytes_per_sec, max_wait, MonotonicClock)
    }
}

impl<C: Clock + Clone> TrafficLimits<C> {
    /// Limits on the given clock (tests use governor's `FakeRelativeClock`).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use std::time::Duration;
    /// use governor::clock::FakeRelativeClock;
    /// use tenant_policy::{Admission, TrafficLimits};
    ///
    /// let clock = FakeRelativeClock::default();
    /// let limits = TrafficLimits::with_clock(
    ///     "app", NonZeroU32::new(2), None, Duration::from_millis(100), clock.clone(),
    /// );
    /// assert_eq!(limits.admit(10), Admission::Ok);
    /// assert_eq!(limits.admit(10), Admission::Ok);
    /// // The bucket is empty; the next op comes back after half a second, more than 100 ms.
    /// assert!(matches!(limits.admit(10), Admission::Reject(_)));
    /// clock.advance(Duration::from_millis(500));
    /// assert_eq!(limits.admit(10), Admission::Ok);
    /// ```
    pub fn with_clock(
        tenant: &str,
        ops_per_sec: Option<NonZeroU32>,
        bytes_per_sec: Option<NonZeroU64>,
        max_wait: Duration,
        clock: C,
    ) -> TrafficLimits<C> {
        let ops = ops_per_sec
            .map(|rate| RateLimiter::direct_with_clock(Quota::per_second(rate), clock.clone()));
        let bytes = bytes_per_sec.map(|rate| {
            let bytes_per_cell = rate.get().div_ceil(MAX_CELLS_PER_SEC);
            let cells = (rate.get() / bytes_per_cell).clamp(1, u64::from(u32::MAX));
            let burst = NonZeroU32::new(u32::try_from(cells).unwrap_or(u32::MAX))
                .unwrap_or(NonZeroU32::MIN);
            ByteLimiter {
                limiter: RateLimiter::direct_with_clock(Quota::per_second(burst), clock.clone()),
                bytes_per_cell,
                burst: burst.get(),
                debt: AtomicU64::new(0),
            }
        });
        TrafficLimits {
            tenant: tenant.to_owned(),
            ops,
            ops_credit: AtomicU64::new(0),
            bytes,
            max_wait,
            clock,
            shared: None,
        }
    }

    /// The same limits, shared with other proxies through `shared` too.
    pub(crate) fn with_shared(mut self, shared: Option<SharedBudget>) -> TrafficLimits<C> {
        self.shared = shared;
        self
    }

    /// The budget shared with other proxies, when the tenant has a `limits_store`.
    pub fn shared(&self) -> Option<&SharedBudget> {
        self.shared.as_ref()
    }

    /// Whether any limit is configured (if not, [`TrafficLimits::admit`] always says Ok and the
    /// proxy may skip it).
    pub fn is_limited(&self) -> bool {
        self.ops.is_some() || self.bytes.is_some()
    }

    /// Charges one request of `request_bytes` bytes (the whole RESP request) against the ops
    /// and bytes limits, after any debt from earlier replies. See the module docs for the
    /// policy.
    pub fn admit(&self, request_bytes: usize) -> Admission {
        match self.charge(request_bytes) {
            Charge::Charged => Admission::Ok,
            Charge::Over { wait, limit } => self.wait_or_reject(wait, limit),
        }
    }

    /// Like [`TrafficLimits::admit`], for a request that may not wait: over a limit it is
    /// refused at once, with the limit's name, and nothing is charged.
    pub(crate) fn admit_without_waiting(&self, request_bytes: usize) -> Result<(), PolicyError> {
        match self.charge(request_bytes) {
            Charge::Charged => Ok(()),
            Charge::Over { limit, .. } => Err(self.over(limit)),
        }
    }

    /// Charges the request if both limits allow it now; otherwise charges nothing and says how
    /// long until they would, and which limit is short.
    fn charge(&self, request_bytes: usize) -> Charge {
        let Some(shared) = &self.shared else {
            return self.charge_locally(request_bytes);
        };
        if let Err((wait, limit)) = shared.take(request_bytes as u64) {
            return Charge::Over { wait, limit };
        }
        let charge = self.charge_locally(request_bytes);
        if matches!(charge, Charge::Over { .. }) {
            shared.give_back(request_bytes as u64);
        }
        charge
    }

    /// [`TrafficLimits::charge`] against this process's limiters.
    fn charge_locally(&self, request_bytes: usize) -> Charge {
        let mut charged_op = false;
        if let Some(ops) = &self.ops {
            if !take_one(&self.ops_credit) {
                if let Err(not_until) = ops.check() {
                    return Charge::Over {
                        wait: not_until.wait_time_from(self.clock.now()),
                        limit: LimitKind::OpsPerSec,
                    };
                }
                charged_op = true;
            }
        }
        let Some(bytes) = &self.bytes else {
            return Charge::Charged;
        };
        let debt = bytes.debt.swap(0, Ordering::AcqRel);
        let wanted = bytes.cells(request_bytes as u64).saturating_add(debt);
        let now = wanted.min(u64::from(bytes.burst));
        let Some(now_cells) = NonZeroU32::new(u32::try_from(now).unwrap_or(u32::MAX)) else {
            return Charge::Charged;
        };
        let over_bytes = |wait| {
            bytes.debt.fetch_add(debt, Ordering::AcqRel);
            if charged_op {
                // The retry must not pay for this op again.
                self.ops_credit.fetch_add(1, Ordering::AcqRel);
            }
            Charge::Over {
                wait,
                limit: LimitKind::BytesPerSec,
            }
        };
        match bytes.limiter.check_n(now_cells) {
            Ok(Ok(())) => {
                if wanted > now {
                    bytes.debt.fetch_add(wanted - now, Ordering::AcqRel);
                }
                Charge::Charged
            }
            Ok(Err(not_until)) => over_bytes(not_until.wait_time_from(self.clock.now())),
            // Cannot happen: at most one bucket is asked for. Refuse rather than panic.
            Err(_insufficient) => over_bytes(Duration::MAX),
        }
    }

    /// Charges `reply_bytes` of a reply to the bytes limit: from the bucket if it has them,
    /// otherwise as debt that delays the tenant's next requests.
    pub fn account_reply(&self, reply_bytes: usize) {
        if let Some(shared) = &self.shared {
            shared.charge_reply(reply_bytes as u64);
        }
        let Some(bytes) = &self.bytes else {
            return;
        };
        let cells = bytes.cells(reply_bytes as u64);
        let now = cells.min(u64::from(bytes.burst));
        let charged = match NonZeroU32::new(u32::try_from(now).unwrap_or(u32::MAX)) {
            Some(now_cells) => matches!(bytes.limiter.check_n(now_cells), Ok(Ok(()))),
            None => true,
        };
        let owed = if charged { cells - now } else { cells };
        if owed > 0 {
            bytes.debt.fetch_add(owed, Ordering::AcqRel);
        }
    }

    /// Bytes owed from replies and big requests, not yet charged.
    pub fn debt_bytes(&self) -> u64 {
        self.bytes.as_ref().map_or(0, |bytes| {
            bytes
                .debt
                .load(Ordering::Acquire)
                .saturating_mul(bytes.bytes_per_cell)
        })
    }

    fn wait_or_reject(&self, wait: Duration, limit: LimitKind) -> Admission {
        if wait <= self.max_wait {
            Admission::Wait(wait)
        } else {
            Admission::Reject(self.over(limit))
        }
    }

    fn over(&self, limit: LimitKind) -> PolicyError {
        PolicyError::OverLimit {
            tenant: self.tenant.clone(),
            limit,
        }
    }
}

impl<C: Clock> ByteLimiter<C> {
    /// Bytes to cells, rounded up.
    fn cells(&self, bytes: u64) -> u64 {
        bytes.div_ceil(self.bytes_per_cell)
    }
}

/// Takes one from a counter if it is positive.
fn take_one(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}
