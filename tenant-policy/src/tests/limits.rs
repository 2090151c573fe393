//! Traffic limits on governor's fake clock, the request size limit and connection permits.

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::FakeRelativeClock;

use super::{config, tenant};
use crate::{Admission, LimitKind, PolicyError, TrafficLimits};

fn limits(
    ops: Option<u32>,
    bytes: Option<u64>,
    max_wait_ms: u64,
) -> (TrafficLimits<FakeRelativeClock>, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    let limits = TrafficLimits::with_clock(
        "app",
        ops.and_then(NonZeroU32::new),
        bytes.and_then(NonZeroU64::new),
        Duration::from_millis(max_wait_ms),
        clock.clone(),
    );
    (limits, clock)
}

fn over(limit: LimitKind) -> Admission {
    Admission::Reject(PolicyError::OverLimit {
        tenant: "app".to_owned(),
        limit,
    })
}

#[test]
fn no_limits_admit_everything() {
    let (limits, _clock) = limits(None, None, 0);
    assert!(!limits.is_limited());
    for _ in 0..10_000 {
        assert_eq!(limits.admit(1 << 20), Admission::Ok);
    }
    limits.account_reply(1 << 30);
    assert_eq!(limits.debt_bytes(), 0);
}

#[test]
fn ops_per_second_waits_then_rejects() {
    let (limits, clock) = limits(Some(10), None, 150);
    for _ in 0..10 {
        assert_eq!(limits.admit(0), Admission::Ok);
    }
    // The bucket is empty; one op comes back every 100 ms.
    assert_eq!(limits.admit(0), Admission::Wait(Duration::from_millis(100)));
    clock.advance(Duration::from_millis(60));
    assert_eq!(limits.admit(0), Admission::Wait(Duration::from_millis(40)));
    clock.advance(Duration::from_millis(40));
    assert_eq!(limits.admit(0), Admission::Ok);

    // With a shorter patience the same situation is a refusal with the documented text.
    let (strict, _clock) = limits_strict();
    assert_eq!(strict.admit(0), Admission::Ok);
    let refused = strict.admit(0);
    assert_eq!(refused, over(LimitKind::OpsPerSec));
    let Admission::Reject(error) = refused else {
        unreachable!()
    };
    assert_eq!(
        error.to_string(),
        "ERR tenant 'app' is over its ops_per_sec limit"
    );
}

fn limits_strict() -> (TrafficLimits<FakeRelativeClock>, FakeRelativeClock) {
    limits(Some(1), None, 0)
}

#[test]
fn ops_over_a_second_average_to_the_rate() {
    let (limits, clock) = limits(Some(100), None, 1000);
    let mut admitted = 0;
    // Ten simulated seconds of a client that retries after each Wait.
    let end = Duration::from_secs(10);
    let mut now = Duration::ZERO;
    while now < end {
        match limits.admit(10) {
            Admission::Ok => admitted += 1,
            Admission::Wait(wait) => {
                clock.advance(wait);
                now += wait;
            }
            Admission::Reject(error) => panic!("{error}"),
        }
    }
    // One burst (100) plus 100 per second for 10 seconds.
    assert!((1090..=1110).contains(&admitted), "{admitted}");
}

#[test]
fn bytes_count_requests_and_replies_with_debt() {
    let (limits, clock) = limits(None, Some(1000), 1000);
    assert_eq!(limits.admit(600), Admission::Ok);
    assert_eq!(limits.admit(400), Admission::Ok);
    // Empty now: 500 bytes take half a second.
    assert_eq!(
        limits.admit(500),
        Admission::Wait(Duration::from_millis(500))
    );
    clock.advance(Duration::from_secs(1));

    // A reply of 3000 bytes: 1000 from the full bucket, 2000 owed.
    limits.account_reply(3000);
    assert_eq!(limits.debt_bytes(), 2000);
    // The next request must first pay a bucket of debt: it waits a whole second ...
    assert_eq!(limits.admit(10), Admission::Wait(Duration::from_secs(1)));
    assert_eq!(limits.debt_bytes(), 2000, "a Wait charges nothing");
    clock.advance(Duration::from_secs(1));
    // ... then goes, paying 1000 of the 2010 it owes.
    assert_eq!(limits.admit(10), Admission::Ok);
    assert_eq!(limits.debt_bytes(), 1010);
    clock.advance(Duration::from_secs(1));
    assert_eq!(limits.admit(10), Admission::Ok);
    assert_eq!(limits.debt_bytes(), 20);
    clock.advance(Duration::from_millis(30));
    assert_eq!(limits.admit(10), Admission::Ok);
    assert_eq!(limits.debt_bytes(), 0);
}

#[test]
fn requests_bigger_than_a_bucket_go_through_and_leave_debt() {
    let (limits, clock) = limits(None, Some(1000), 1000);
    assert_eq!(limits.admit(5000), Admission::Ok);
    assert_eq!(limits.debt_bytes(), 4000);
    assert!(matches!(limits.admit(1), Admission::Wait(_)));
    clock.advance(Duration::from_secs(4));
    // Four seconds pay the debt a bucket at a time.
    for _ in 0..4 {
        assert_eq!(limits.admit(0), Admission::Ok);
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(limits.debt_bytes(), 0);
}

#[test]
fn a_retry_after_waiting_for_bytes_costs_one_op() {
    let (limits, clock) = limits(Some(2), Some(100), 1000);
    assert_eq!(limits.admit(100), Admission::Ok); // 1 op, bytes bucket empty
    assert!(matches!(limits.admit(50), Admission::Wait(_))); // op charged, kept as credit
    clock.advance(Duration::from_millis(500));
    assert_eq!(limits.admit(50), Admission::Ok); // uses the credit
                                                 // The half second refilled one op, and the retry did not take it.
    assert_eq!(limits.admit(0), Admission::Ok);
    assert_eq!(limits.admit(0), Admission::Wait(Duration::from_millis(500)));
}

#[test]
fn huge_byte_rates_use_coarser_cells() {
    let (limits, _clock) = limits(None, Some(10_000_000_000), 0);
    assert_eq!(limits.admit(9_000_000_000), Admission::Ok);
    assert_eq!(limits.admit(2_000_000_000), over(LimitKind::BytesPerSec));
}

#[test]
fn limits_are_shared_across_threads() {
    let (limits, _clock) = limits(Some(1000), None, 0);
    let limits = Arc::new(limits);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let limits = limits.clone();
            std::thread::spawn(move || {
                (0..1000)
                    .filter(|_| limits.admit(1) == Admission::Ok)
                    .count()
            })
        })
        .collect();
    let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    // Exactly one bucket, however the threads interleave (the clock does not move).
    assert_eq!(admitted, 1000);
}

#[test]
fn tenant_limits_come_from_config() {
    let mut config = config("lim");
    config.ops_per_sec = NonZeroU32::new(1);
    config.limit_wait_ms = 0;
    config.max_request_bytes = NonZeroUsize::new(10);
    let lim = tenant("lim", config);
    assert!(lim.limits().is_limited());
    assert_eq!(lim.admit(5), Admission::Ok);
    let Admission::Reject(error) = lim.admit(5) else {
        panic!("second op in the same second must be refused");
    };
    assert_eq!(
        &error.to_reply()[..],
        b"-ERR tenant 'lim' is over its ops_per_sec limit\r\n"
    );
    assert_eq!(lim.max_request_bytes(), Some(10));
    assert_eq!(
        lim.check_request_size(11).unwrap_err().to_string(),
        "ERR request of 11 bytes is over tenant 'lim' limit of 10 bytes"
    );
}

#[test]
fn connection_permits_count_across_threads() {
    let mut config = config("conn");
    config.max_connections = NonZeroUsize::new(3);
    let conn = tenant("conn", config);
    let permits: Vec<_> = (0..8)
        .map(|_| {
            let conn = conn.clone();
            std::thread::spawn(move || conn.try_connect().ok())
        })
        .filter_map(|thread| thread.join().unwrap())
        .collect();
    assert_eq!(permits.len(), 3);
    assert_eq!(conn.connection_count(), 3);
    assert_eq!(
        conn.try_connect().unwrap_err().to_string(),
        "ERR tenant 'conn' has too many connections (max 3)"
    );
    assert_eq!(permits[0].tenant().name(), "conn");
    drop(permits);
    assert_eq!(conn.connection_count(), 0);

    // Without a limit connections are still counted.
    let free = tenant("free", super::config("free"));
    let permit = free.try_connect().unwrap();
    assert_eq!(free.connection_count(), 1);
    drop(permit);
    assert_eq!(free.connection_count(), 0);
}
