//! Milestones of an enclave restart, read from the enclave's structured log (JSON lines with an
//! `event` field and tracing's RFC 3339 UTC `timestamp`), so the restart time can be split
//! into its parts.

use serde::Serialize;

/// One timed restart: seconds from spawning the enclave to each milestone.
#[derive(Debug, Clone, Serialize)]
pub struct RestartRun {
    /// Until a signature succeeded through the gateway.
    pub ready_s: f64,
    /// Until the enclave listened (`enclave_listening`).
    pub listening_s: Option<f64>,
    /// Until the gateway's supervisor had reconnected and authenticated (`link_authenticated`).
    pub connected_s: Option<f64>,
    /// Until the stored key was unsealed through the dev KMS (`key_unsealed`).
    pub unsealed_s: Option<f64>,
}

impl RestartRun {
    /// Reads the milestones of the latest start from `log` (the log file is appended to by
    /// every start), relative to `spawned_unix`.
    pub fn from_log(log: &str, spawned_unix: f64, ready_s: f64) -> Self {
        let since = |event: &str| last_event_unix(log, event).map(|t| t - spawned_unix).filter(|s| *s >= 0.0);
        RestartRun {
            ready_s,
            listening_s: since("enclave_listening"),
            connected_s: since("link_authenticated"),
            unsealed_s: since("key_unsealed"),
        }
    }
}

/// Unix time of the last JSON log line whose `event` is `event`.
pub fn last_event_unix(log: &str, event: &str) -> Option<f64> {
    log.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["event"] == event)
        .and_then(|line| parse_utc(line["timestamp"].as_str()?))
}

/// `2026-11-23T01:29:22.422139Z` → Unix seconds.
pub fn parse_utc(stamp: &str) -> Option<f64> {
    let stamp = stamp.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let hours: f64 = t.next()?.parse().ok()?;
    let minutes: f64 = t.next()?.parse().ok()?;
    let seconds: f64 = t.next()?.parse().ok()?;
    let days = days_from_civil(year, month, day)?;
    Some(days as f64 * 86_400.0 + hours * 3600.0 + minutes * 60.0 + seconds)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12; // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tracing_timestamps() {
        assert_eq!(parse_utc("1970-01-01T00:00:00.000000Z"), Some(0.0));
        assert_eq!(parse_utc("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
        let t = parse_utc("2026-11-23T01:29:22.422139Z").unwrap();
        assert!((t - 1_795_397_362.422139).abs() < 1e-6, "{t}");
        assert_eq!(parse_utc("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_utc("garbage"), None);
    }

    #[test]
    fn milestones_come_from_the_latest_start() {
        let log = r#"{"timestamp":"2026-11-23T01:00:00.000000Z","level":"INFO","event":"enclave_listening"}
{"timestamp":"2026-11-23T01:00:00.100000Z","level":"INFO","event":"link_authenticated"}
{"timestamp":"2026-11-23T01:00:00.200000Z","level":"INFO","event":"key_unsealed","enclave_id":"1"}
{"timestamp":"2026-11-23T01:29:22.050000Z","level":"INFO","event":"enclave_listening"}
{"timestamp":"2026-11-23T01:29:22.250000Z","level":"INFO","event":"link_authenticated"}
KEYWARD_FAULT: a line that is not JSON is skipped
"#;
        let spawned = parse_utc("2026-11-23T01:29:22.000000Z").unwrap();
        let run = RestartRun::from_log(log, spawned, 0.4);
        assert!((run.listening_s.unwrap() - 0.05).abs() < 1e-6);
        assert!((run.connected_s.unwrap() - 0.25).abs() < 1e-6);
        assert_eq!(run.unsealed_s, None, "the earlier start's unseal is not this restart's");
    }
}
