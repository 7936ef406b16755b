//! A token bucket: a steady rate with a burst, for endpoints that cost the enclave work and
//! need no token (`/v1/attestation`).

use std::{sync::Mutex, time::Instant};

#[derive(Debug)]
pub struct RateLimit {
    per_second: u32,
    burst: u32,
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimit {
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimit { per_second, burst, bucket: Mutex::new((f64::from(burst), Instant::now())) }
    }

    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Takes one token if there is one.
    pub fn try_take(&self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> bool {
        // The bucket is two numbers replaced together; a poisoned lock still holds valid ones.
        let mut bucket = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = *bucket;
        let refilled = (tokens + now.saturating_duration_since(last).as_secs_f64() * f64::from(self.per_second))
            .min(f64::from(self.burst));
        if refilled >= 1.0 {
            *bucket = (refilled - 1.0, now);
            true
        } else {
            *bucket = (refilled, now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_refills() {
        let limit = RateLimit::new(10, 3);
        let start = Instant::now();
        assert!((0..3).all(|_| limit.take_at(start)), "the burst");
        assert!(!limit.take_at(start), "then empty");
        assert!(!limit.take_at(start + Duration::from_millis(50)), "half a token after 50 ms");
        assert!(limit.take_at(start + Duration::from_millis(110)), "one token after 100 ms");
        assert!(!limit.take_at(start + Duration::from_millis(110)));
        assert!((0..3).all(|_| limit.take_at(start + Duration::from_secs(60))), "never more than the burst");
        assert!(!limit.take_at(start + Duration::from_secs(60)));
    }
}
