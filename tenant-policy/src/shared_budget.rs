//! [`SharedBudget`]: a tenant's `ops_per_sec` / `bytes_per_sec` shared by every proxy through Redis
//! (`limits_store = { pool = "..." }`).
//!
//! The budget is a token bucket per tenant and limit in the store's Redis ([`TOKEN_BUCKET_SCRIPT`], one
//! second of burst, refilled at the configured rate by the server's clock). A proxy never asks Redis per
//! command: it takes a batch of tokens (a twentieth of a second's worth, at least one) per round trip into a
//! local lease, and commands draw from the lease. The proxy's refill task ([`SharedBudget::wanted`],
//! [`SharedBudget::granted`]) tops a lease up when it runs low. Admission needs the lease *and* the local
//! governor limits (which still hold per process), so N proxies together stay within the limit plus what the
//! leases hold (at most one batch per proxy).
//!
//! If the store does not answer (down, or no refill task could be started) for [`STORE_GRACE`], the leases
//! are ignored and only the local limits apply: a broken store makes the limit per process again, it never
//! stops the tenant's traffic.
//!
//! This module decides; the proxy does the I/O (tenant-policy never opens sockets).

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::LimitKind;

/// How long the store may stay silent before the leases are ignored (see the module docs).
pub const STORE_GRACE: Duration = Duration::from_secs(2);

/// A short wait for a lease that a refill is about to top up.
const REFILL_WAIT: Duration = Duration::from_millis(5);

/// A round trip takes this share of a second's budget (20: 50 ms worth).
const BATCHES_PER_SECOND: u64 = 20;

/// The token bucket in the store: `KEYS[1]` the bucket, `ARGV` rate per second, burst, tokens wanted. Takes
/// what it can (whole tokens, never more than wanted) and answers `[granted, ms until the next whole
/// token]`. The server's clock (TIME) is the only clock, so proxies with skewed clocks agree.
pub const TOKEN_BUCKET_SCRIPT: &str = r#"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
local at = tonumber(redis.call('HGET', KEYS[1], 'at'))
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate / 1000)
end
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], 10000)
local wait = 0
if granted < want then
  wait = math.ceil((1 - (tokens - math.floor(tokens))) * 1000 / rate)
end
return {granted, wait}
"#;

/// A tenant's share of the budgets kept in the store.
#[derive(Debug)]
pub struct SharedBudget {
    pool: String,
    tenant: String,
    ops: Option<Lease>,
    bytes: Option<Lease>,
    refiller: AtomicBool,
    epoch: Instant,
    /// When the store last answered, in ms since `epoch` (`u64::MAX`: never).
    last_answer_ms: AtomicU64,
}

/// The tokens of one limit held locally.
#[derive(Debug)]
struct Lease {
    rate: u64,
    batch: u64,
    /// Tokens held; negative after replies were charged beyond it (paid by the next batches).
    balance: AtomicI64,
    /// Until when the store has nothing to give, in ms since `epoch`.
    empty_until_ms: AtomicU64,
}

/// One batch the refill task should ask the store for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// Which limit.
    pub limit: LimitKind,
    /// The bucket's key in the store.
    pub key: String,
    /// Tokens per second.
    pub rate: u64,
    /// Tokens in a full bucket (one second's worth).
    pub burst: u64,
    /// Tokens to take.
    pub tokens: u64,
}

impl SharedBudget {
    /// The shared budget of a tenant with these limits, kept in `pool`; `None` without limits.
    pub(crate) fn new(
        tenant: &str,
        pool: &str,
        ops_per_sec: Option<NonZeroU32>,
        bytes_per_sec: Option<NonZeroU64>,
    ) -> Option<SharedBudget> {
        if ops_per_sec.is_none() && bytes_per_sec.is_none() {
            return None;
        }
        Some(SharedBudget {
            pool: pool.to_owned(),
            tenant: tenant.to_owned(),
            ops: ops_per_sec.map(|rate| Lease::new(u64::from(rate.get()))),
            bytes: bytes_per_sec.map(|rate| Lease::new(rate.get())),
            refiller: AtomicBool::new(false),
            epoch: Instant::now(),
            last_answer_ms: AtomicU64::new(u64::MAX),
        })
    }

    /// The pool whose Redis holds the buckets.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// True for the first caller only: that caller runs the refill task.
    pub fn claim_refiller(&self) -> bool {
        !self.refiller.swap(true, Ordering::AcqRel)
    }

    /// The batches to ask the store for now: every lease below half a batch.
    pub fn wanted(&self) -> Vec<Want> {
        [
            (LimitKind::OpsPerSec, &self.ops),
            (LimitKind::BytesPerSec, &self.bytes),
        ]
        .into_iter()
        .filter_map(|(limit, lease)| {
            let lease = lease.as_ref()?;
            let balance = lease.balance.load(Ordering::Acquire);
            let low = i64::try_from(lease.batch / 2).unwrap_or(i64::MAX);
            (balance <= low).then(|| Want {
                limit,
                key: format!("rkproxy:limits:{{{}}}:{}", self.tenant, limit_name(limit)),
                rate: lease.rate,
                burst: lease.rate,
                tokens: lease.batch.saturating_add(balance.min(0).unsigned_abs()),
            })
        })
        .collect()
    }

    /// What the store granted for `limit`, and how long until it has more (0 when it gave all).
    pub fn granted(&self, limit: LimitKind, tokens: u64, empty_for: Duration) {
        let now = self.now_ms();
        self.last_answer_ms.store(now, Ordering::Release);
        let Some(lease) = self.lease(limit) else {
            return;
        };
        lease
            .balance
            .fetch_add(i64::try_from(tokens).unwrap_or(i64::MAX), Ordering::AcqRel);
        let until = now.saturating_add(u64::try_from(empty_for.as_millis()).unwrap_or(u64::MAX));
        lease.empty_until_ms.store(until, Ordering::Release);
    }

    /// Takes one op and `bytes` bytes from the leases, or nothing and says how long to wait and which limit
    /// is short. Bytes may overdraw the lease by this request (the next batches pay it back).
    pub(crate) fn take(&self, bytes: u64) -> Result<(), (Duration, LimitKind)> {
        if !self.store_answers() {
            return Ok(());
        }
        if let Some(ops) = &self.ops {
            if ops
                .balance
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n >= 1).then_some(n - 1)
                })
                .is_err()
            {
                return Err((self.wait(ops), LimitKind::OpsPerSec));
            }
        }
        if let Some(lease) = &self.bytes {
            if lease.balance.load(Ordering::Acquire) <= 0 {
                self.give_back(0);
                return Err((self.wait(lease), LimitKind::BytesPerSec));
            }
            lease.balance.fetch_sub(to_i64(bytes), Ordering::AcqRel);
        }
        Ok(())
    }

    /// Returns what [`SharedBudget::take`] took for a request that then had to wait for the local limits.
    pub(crate) fn give_back(&self, bytes: u64) {
        if let Some(ops) = &self.ops {
            ops.balance.fetch_add(1, Ordering::AcqRel);
        }
        if let Some(lease) = &self.bytes {
            lease.balance.fetch_add(to_i64(bytes), Ordering::AcqRel);
        }
    }

    /// Charges reply bytes to the bytes lease (it may go negative: the next batches pay it).
    pub(crate) fn charge_reply(&self, bytes: u64) {
        if let Some(lease) = &self.bytes {
            lease.balance.fetch_sub(to_i64(bytes), Ordering::AcqRel);
        }
    }

    fn lease(&self, limit: LimitKind) -> Option<&Lease> {
        match limit {
            LimitKind::OpsPerSec => self.ops.as_ref(),
            LimitKind::BytesPerSec => self.bytes.as_ref(),
        }
    }

    /// Whether the store answered within [`STORE_GRACE`] (before its first answer: since the budget was
    /// made), so that the leases count.
    fn store_answers(&self) -> bool {
        let now = self.now_ms();
        let last = match self.last_answer_ms.load(Ordering::Acquire) {
            u64::MAX => 0,
            last => last,
        };
        now.saturating_sub(last) < u64::try_from(STORE_GRACE.as_millis()).unwrap_or(u64::MAX)
    }

    fn wait(&self, lease: &Lease) -> Duration {
        let until = lease.empty_until_ms.load(Ordering::Acquire);
        let now = self.now_ms();
        if until > now {
            Duration::from_millis(until - now)
        } else {
            REFILL_WAIT
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Lease {
    fn new(rate: u64) -> Lease {
        Lease {
            rate,
            batch: (rate / BATCHES_PER_SECOND).max(1),
            balance: AtomicI64::new(0),
            empty_until_ms: AtomicU64::new(0),
        }
    }
}

fn limit_name(limit: LimitKind) -> &'static str {
    match limit {
        LimitKind::OpsPerSec => "ops",
        LimitKind::BytesPerSec => "bytes",
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> SharedBudget {
        SharedBudget::new("t", "main", NonZeroU32::new(40), NonZeroU64::new(1000))
            .unwrap_or_else(|| unreachable!("limits are set"))
    }

    #[test]
    fn commands_draw_from_leases_that_the_store_fills_in_batches() {
        let budget = budget();
        assert!(budget.claim_refiller());
        assert!(!budget.claim_refiller(), "one refill task per tenant");
        // Empty leases: nothing is admitted, and both limits want a batch (40/20 = 2 ops, 50 bytes).
        assert!(matches!(budget.take(10), Err((_, LimitKind::OpsPerSec))));
        let wanted = budget.wanted();
        assert_eq!(wanted.len(), 2);
        assert_eq!(wanted[0].key, "rkproxy:limits:{t}:ops");
        assert_eq!(
            (wanted[0].rate, wanted[0].burst, wanted[0].tokens),
            (40, 40, 2)
        );
        assert_eq!(wanted[1].key, "rkproxy:limits:{t}:bytes");
        assert_eq!(wanted[1].tokens, 50);
        budget.granted(LimitKind::OpsPerSec, 2, Duration::ZERO);
        budget.granted(LimitKind::BytesPerSec, 50, Duration::ZERO);
        assert!(budget.take(30).is_ok());
        // The bytes lease may be overdrawn by one request; then it waits for the next batch.
        assert!(budget.take(30).is_ok());
        assert!(matches!(budget.take(1), Err((_, LimitKind::OpsPerSec))));
        budget.granted(LimitKind::OpsPerSec, 2, Duration::ZERO);
        assert!(matches!(budget.take(1), Err((_, LimitKind::BytesPerSec))));
        // What is owed is asked for on top of the next batch.
        let bytes = budget
            .wanted()
            .into_iter()
            .find(|want| want.limit == LimitKind::BytesPerSec);
        assert_eq!(bytes.map(|want| want.tokens), Some(60));
        // A store with nothing left says for how long: that is the wait.
        budget.granted(LimitKind::BytesPerSec, 0, Duration::from_millis(300));
        match budget.take(1) {
            Err((wait, LimitKind::BytesPerSec)) => {
                assert!(wait > Duration::from_millis(200), "{wait:?}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_request_that_waits_for_the_local_limits_gets_its_tokens_back() {
        let budget = budget();
        budget.granted(LimitKind::OpsPerSec, 1, Duration::ZERO);
        budget.granted(LimitKind::BytesPerSec, 100, Duration::ZERO);
        assert!(budget.take(100).is_ok());
        budget.give_back(100);
        assert!(budget.take(100).is_ok());
        budget.charge_reply(500);
        assert_eq!(
            budget
                .bytes
                .as_ref()
                .map(|lease| lease.balance.load(Ordering::Acquire)),
            Some(-500)
        );
    }

    #[test]
    fn without_limits_there_is_no_shared_budget() {
        assert!(SharedBudget::new("t", "main", None, None).is_none());
    }
}
