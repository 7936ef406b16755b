//! Latency samples of one measured point, its failures, and nearest-rank percentiles.

use std::{collections::BTreeMap, time::Duration};

/// What one measured window recorded.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    latencies_ns: Vec<u64>,
    sorted: bool,
    /// Requests that succeeded (each one is a latency sample).
    pub ok: u64,
    /// Requests that failed, by kind (`"http 503"`, `"connection"`, `"unsent"`...). Failures
    /// are never latency samples.
    pub failures: BTreeMap<String, u64>,
    /// Open loop only: requests sent more than [`LATE`] after they were due, because every
    /// connection was busy or the generator itself fell behind. Their latency still counts
    /// from the due time.
    pub late: u64,
}

/// A send this much after its due time counts as late.
pub const LATE: Duration = Duration::from_millis(1);

impl Samples {
    pub fn record_ok(&mut self, latency: Duration) {
        self.latencies_ns.push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        self.sorted = false;
        self.ok += 1;
    }

    pub fn record_failure(&mut self, kind: impl Into<String>) {
        self.record_failures(kind, 1);
    }

    pub fn record_failures(&mut self, kind: impl Into<String>, count: u64) {
        if count > 0 {
            *self.failures.entry(kind.into()).or_default() += count;
        }
    }

    /// Total failures of every kind.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Requests that got an outcome (success or failure).
    pub fn total(&self) -> u64 {
        self.ok + self.failed()
    }

    pub fn merge(&mut self, other: Samples) {
        self.latencies_ns.extend(other.latencies_ns);
        self.sorted = false;
        self.ok += other.ok;
        self.late += other.late;
        for (kind, count) in other.failures {
            *self.failures.entry(kind).or_default() += count;
        }
    }

    /// The nearest-rank percentile `q` (0 < q ≤ 1) of the successful requests' latencies;
    /// `None` without samples.
    pub fn percentile(&mut self, q: f64) -> Option<Duration> {
        if self.latencies_ns.is_empty() {
            return None;
        }
        if !self.sorted {
            self.latencies_ns.sort_unstable();
            self.sorted = true;
        }
        let n = self.latencies_ns.len();
        // Nearest rank: the smallest sample with at least q·n samples at or below it.
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as usize).clamp(1, n);
        Some(Duration::from_nanos(self.latencies_ns[rank - 1]))
    }

    /// The largest successful latency.
    pub fn max(&mut self) -> Option<Duration> {
        self.percentile(1.0)
    }
}

/// Milliseconds as a float, for reports.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut s = Samples::default();
        for ms in (1..=100).rev() {
            s.record_ok(Duration::from_millis(ms));
        }
        assert_eq!(s.percentile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(s.percentile(0.99), Some(Duration::from_millis(99)));
        assert_eq!(s.max(), Some(Duration::from_millis(100)));
        assert_eq!(s.percentile(0.001), Some(Duration::from_millis(1)));
    }

    #[test]
    fn one_sample_is_every_percentile_and_none_is_none() {
        let mut s = Samples::default();
        assert_eq!(s.percentile(0.5), None);
        s.record_ok(Duration::from_micros(700));
        assert_eq!(s.percentile(0.5), Some(Duration::from_micros(700)));
        assert_eq!(s.percentile(0.99), Some(Duration::from_micros(700)));
    }

    #[test]
    fn failures_are_counted_apart_from_latencies() {
        let mut a = Samples::default();
        a.record_ok(Duration::from_millis(2));
        a.record_failure("http 503");
        let mut b = Samples::default();
        b.record_failure("http 503");
        b.record_failures("unsent", 3);
        b.record_failures("never", 0);
        b.late = 2;
        a.merge(b);
        assert_eq!((a.ok, a.failed(), a.total(), a.late), (1, 5, 6, 2));
        assert_eq!(a.failures.get("http 503"), Some(&2));
        assert!(!a.failures.contains_key("never"));
        assert_eq!(a.percentile(0.99), Some(Duration::from_millis(2)), "failures are not samples");
    }
}
