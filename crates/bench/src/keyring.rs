//! The keyring's part of the summary (issue 10): keys seeded through the batch API, signing
//! with a uniformly random key out of all of them against signing with one key through the
//! same endpoint, latency at 1,000 req/s over all keys, and the enclave's memory with every
//! key stored. Flattened into `summary.json` at the top level.

use serde::Serialize;

use crate::report::{PointReport, Target};

/// Point names.
pub const SINGLE_KEY_POINT: &str = "key single closed";
pub const MULTI_KEY_POINT: &str = "key multi closed";
pub const MULTI_KEY_OPEN_POINT: &str = "key multi open 1000";

#[derive(Debug, Clone, Serialize)]
pub struct KeyringSummary {
    /// Rows in `keys` when the signing points ran.
    pub keys_in_store: i64,
    /// Keys created per second through `POST /v1/keys/batch`, over the whole seeding.
    pub key_create_per_s: f64,
    pub key_create_batch: u64,
    pub key_create_connections: usize,
    /// `POST /v1/keys/{name}/sign`, a uniformly random key of all of them per request.
    pub multikey_sign_per_s: f64,
    /// The same endpoint, always one key.
    pub singlekey_sign_per_s: f64,
    pub ratio_multikey_to_singlekey: f64,
    pub key_sign_connections: usize,
    pub multikey_p50_ms_at_1000: Option<f64>,
    pub multikey_p99_ms_at_1000: Option<f64>,
    /// The enclave that served the seeding and the key points (peak over its life).
    pub enclave_peak_rss_mib_multikey: Option<f64>,
    pub gateway_peak_rss_mib_multikey: Option<f64>,
}

impl KeyringSummary {
    /// The keyring's keys this run could not measure.
    pub fn missing(&self) -> Vec<&'static str> {
        [
            ("multikey_p99_ms_at_1000", self.multikey_p99_ms_at_1000),
            ("enclave_peak_rss_mib_multikey", self.enclave_peak_rss_mib_multikey),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.is_none().then_some(key))
        .collect()
    }

    /// Issue 10's targets.
    pub fn targets(&self, points: &[PointReport]) -> Vec<Target> {
        let open_failed = points.iter().find(|p| p.name == MULTI_KEY_OPEN_POINT).map_or(1, |p| p.failed);
        let closed_failed: u64 =
            points.iter().filter(|p| p.name == MULTI_KEY_POINT || p.name == SINGLE_KEY_POINT).map(|p| p.failed).sum();
        vec![
            Target {
                name: "keys in the store",
                goal: "≥ 1,000,000 (batch API)",
                measured: format!("{}", self.keys_in_store),
                met: self.keys_in_store >= 1_000_000,
            },
            Target {
                name: "key creation (batched)",
                goal: "≥ 10,000 keys/s",
                measured: format!("{:.0} keys/s", self.key_create_per_s),
                met: self.key_create_per_s >= 10_000.0,
            },
            Target {
                name: "random key vs one key",
                goal: "≥ 0.8 × (no failures)",
                measured: format!(
                    "{:.2} × ({:.0} vs {:.0}/s; {closed_failed} failed)",
                    self.ratio_multikey_to_singlekey, self.multikey_sign_per_s, self.singlekey_sign_per_s
                ),
                met: self.ratio_multikey_to_singlekey >= 0.8 && closed_failed == 0,
            },
            Target {
                name: "p99, random key, 1,000 req/s",
                goal: "≤ 5 ms, no failures",
                measured: format!(
                    "{} ({open_failed} failed)",
                    self.multikey_p99_ms_at_1000.map_or("-".into(), |v| format!("{v:.2} ms"))
                ),
                met: self.multikey_p99_ms_at_1000.is_some_and(|v| v <= 5.0) && open_failed == 0,
            },
            Target {
                name: "enclave peak RSS, all keys",
                goal: "≤ 64 MiB",
                measured: self.enclave_peak_rss_mib_multikey.map_or("-".into(), |v| format!("{v:.1} MiB")),
                met: self.enclave_peak_rss_mib_multikey.is_some_and(|v| v <= 64.0),
            },
        ]
    }
}
