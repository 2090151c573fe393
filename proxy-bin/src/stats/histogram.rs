//! A fixed-bucket latency histogram: cheap to record into (a short scan of constant bounds), cheap to merge
//! (bucket by bucket), and exactly what the Prometheus histogram type wants (cumulative `le` buckets).

use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (1-2.5-5 per decade, 50 µs to 10 s); one more bucket holds
/// everything slower.
pub const BOUNDS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// The number of buckets: one per bound and one above them all.
pub const BUCKETS: usize = BOUNDS_US.len() + 1;

/// One observation's bucket and whole microseconds, worked out once for every histogram it goes into (a
/// request's time at the backend goes into its pool's and its node's; its time in the proxy into its
/// command's, which add up to its pool's when read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub(super) bucket: usize,
    pub(super) micros: u64,
}

impl Observation {
    #[inline]
    pub fn of(duration: Duration) -> Observation {
        // Whole microseconds without `as_micros`'s 128-bit arithmetic.
        let micros = duration
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(duration.subsec_micros()));
        Observation::of_micros(micros)
    }

    /// An observation of `nanos` nanoseconds (see [`crate::clock::Moment`]).
    #[inline]
    pub fn of_nanos(nanos: u64) -> Observation {
        Observation::of_micros(nanos / 1_000)
    }

    #[inline]
    fn of_micros(micros: u64) -> Observation {
        let bucket = BOUNDS_US
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(BOUNDS_US.len());
        Observation { bucket, micros }
    }
}

/// Counts of observations per bucket, their number and their sum.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Not cumulative: `buckets[i]` counts observations in `(BOUNDS_US[i-1], BOUNDS_US[i]]`; the last one
    /// counts those above every bound.
    buckets: [u64; BUCKETS],
    count: u64,
    sum_us: u64,
    /// Bit `i` set when `buckets[i]` may be non-zero: a session's histogram touches one or two buckets, so
    /// merging it into a total visits those, not all 18.
    touched: u32,
}

/// Equal counts, whichever buckets were touched on the way.
impl PartialEq for Histogram {
    fn eq(&self, other: &Histogram) -> bool {
        self.buckets == other.buckets && self.count == other.count && self.sum_us == other.sum_us
    }
}

impl Eq for Histogram {}

impl Histogram {
    /// Records `times` observations of `duration` (sessions record into a `LiveHistogram`; this is the
    /// reference its tests compare with).
    #[cfg(test)]
    pub fn record(&mut self, duration: Duration, times: u64) {
        let Observation {
            bucket: index,
            micros,
        } = Observation::of(duration);
        if let Some(bucket) = self.buckets.get_mut(index) {
            *bucket += times;
            self.touched |= 1 << index;
        }
        self.count += times;
        self.sum_us = self.sum_us.saturating_add(micros.saturating_mul(times));
    }

    /// The histogram of these bucket counts (as [`BUCKETS`] counts) and sum of observations.
    pub fn from_buckets(buckets: [u64; BUCKETS], sum_us: u64) -> Histogram {
        let mut touched = 0;
        for (index, &count) in buckets.iter().enumerate() {
            if count > 0 {
                touched |= 1 << index;
            }
        }
        Histogram {
            buckets,
            count: buckets.iter().sum(),
            sum_us,
            touched,
        }
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        for index in bits(other.touched) {
            if let (Some(mine), Some(theirs)) =
                (self.buckets.get_mut(index), other.buckets.get(index))
            {
                *mine += theirs;
            }
        }
        self.touched |= other.touched;
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }

    /// The mean in microseconds (0 without observations).
    pub fn mean_us(&self) -> u64 {
        self.sum_us.checked_div(self.count).unwrap_or(0)
    }

    /// The upper bound (µs) of the bucket holding the `quantile` (0..=1) observation: an upper estimate, as
    /// Prometheus's `histogram_quantile` gives. `None` without observations or above the last bound.
    pub fn quantile_upper_us(&self, quantile: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((self.count as f64) * quantile.clamp(0.0, 1.0))
            .ceil()
            .max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return BOUNDS_US.get(index).copied();
            }
        }
        None
    }

    /// Cumulative `(upper bound in seconds, count)` pairs for the bounded buckets, as Prometheus encodes them
    /// (the `+Inf` bucket is the total count).
    pub fn cumulative_seconds(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        let mut out: Vec<(f64, u64)> = BOUNDS_US
            .iter()
            .zip(self.buckets.iter())
            .map(|(&bound, &count)| {
                total += count;
                (bound as f64 / 1e6, total)
            })
            .collect();
        out.push((f64::INFINITY, self.count));
        out
    }
}

/// The indices of the bits set in `mask`, lowest first.
fn bits(mut mask: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let index = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(index)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_visits_every_touched_bucket() {
        let durations = [3u64, 70, 400, 9_000, 60_000, 3_000_000, 50_000_000];
        let mut total = Histogram::default();
        let mut expected = Histogram::default();
        for (round, &first) in durations.iter().enumerate() {
            let mut session = Histogram::default();
            for &micros in durations.iter().skip(round % 3) {
                let duration = Duration::from_micros(micros.max(first));
                session.record(duration, 2);
                expected.record(duration, 2);
            }
            total.merge(&session);
            assert_eq!(total, expected);
        }
        assert_eq!(total.cumulative_seconds(), expected.cumulative_seconds());
        let copy = Histogram::from_buckets(total.buckets, total.sum_us);
        assert_eq!(copy, total);
        assert_eq!(copy.touched, total.touched);
    }

    #[test]
    fn an_observation_has_the_bucket_and_microseconds_of_its_duration() {
        let cases = [
            (Duration::from_nanos(999), 0, 0),
            (Duration::from_micros(50), 0, 50),
            (Duration::from_nanos(50_001), 0, 50),
            (Duration::from_nanos(50_999), 0, 50),
            (Duration::from_micros(51), 1, 51),
            (Duration::from_millis(10), 7, 10_000),
            (Duration::new(9, 999_999_999), 16, 9_999_999),
            (Duration::from_secs(10), 16, 10_000_000),
            (Duration::from_secs(11), 17, 11_000_000),
            (Duration::MAX, 17, u64::MAX),
        ];
        for (duration, bucket, micros) in cases {
            assert_eq!(
                Observation::of(duration),
                Observation { bucket, micros },
                "{duration:?}"
            );
        }
    }

    #[test]
    fn observations_land_in_their_bucket_and_merge() {
        let mut one = Histogram::default();
        one.record(Duration::from_micros(40), 3);
        one.record(Duration::from_millis(20), 1);
        let mut other = Histogram::default();
        other.record(Duration::from_secs(60), 1);
        one.merge(&other);
        assert_eq!(one.count(), 5);
        let buckets = one.cumulative_seconds();
        assert_eq!(buckets[0], (0.00005, 3));
        // 20 ms is in the 25 ms bucket.
        assert_eq!(buckets[8], (0.025, 4));
        assert_eq!(buckets[BOUNDS_US.len() - 1].1, 4);
        assert_eq!(buckets.last().map(|b| b.1), Some(5));
        assert_eq!(one.quantile_upper_us(0.5), Some(50));
        assert_eq!(one.quantile_upper_us(0.8), Some(25_000));
        assert_eq!(one.quantile_upper_us(1.0), None);
    }
}
