//! Points in time for certificate validity. The verifier never reads the clock itself: the
//! caller says when "now" is, which keeps verification reproducible (tests verify expired
//! real documents at their own timestamps).

use std::fmt;
use std::time::{Duration, SystemTime};

/// A point in time in whole seconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(u64);

impl UnixTime {
    /// The time `secs` seconds after 1970-01-01T00:00:00Z.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs)
    }

    /// The second containing `millis` milliseconds after the epoch (the unit of an attestation
    /// document's `timestamp`).
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis / 1000)
    }

    /// Converts a [`SystemTime`]; times before the epoch become the epoch.
    pub fn from_system_time(time: SystemTime) -> Self {
        Self(time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_secs()))
    }

    /// Reads the system clock. Only callers use this: [`crate::verify`] takes the time it is
    /// given and never reads the clock.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0
    }
}

impl fmt::Display for UnixTime {
    /// RFC 3339 in UTC, e.g. `2023-09-18T14:37:09Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match der::DateTime::from_unix_duration(Duration::from_secs(self.0)) {
            Ok(datetime) => write!(f, "{datetime}"),
            // Past year 9999: no calendar form; print the raw count instead.
            Err(_) => write!(f, "{} s after the Unix epoch", self.0),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    #[test]
    fn displays_as_rfc3339_utc() {
        assert_eq!(UnixTime::from_secs(1_695_047_829).to_string(), "2023-09-18T14:37:09Z");
    }

    #[test]
    fn millisecond_timestamps_round_down_to_the_second() {
        assert_eq!(UnixTime::from_millis(1_695_049_410_860).as_secs(), 1_695_049_410);
    }

    #[test]
    fn times_beyond_year_9999_still_display() {
        assert!(UnixTime::from_secs(u64::MAX).to_string().contains("after the Unix epoch"));
    }
}
