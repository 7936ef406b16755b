//! The run's summary: `target/bench/summary.json`, the printed table, and the targets of
//! issue 5 marked met or missed.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use crate::{
    keyring::KeyringSummary,
    load::{Outcome, Workload},
    procfs::CpuUse,
    stats::ms,
    timeline::RestartRun,
};

/// Heading of the CPU column: CPU microseconds per request of each process, the machine's
/// busy share, and the cores used by anything else.
const CPU_HEADER: &str = "CPU µs/req gateway/enclave/loadgen; machine busy; other cores";

/// One measured point, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct PointReport {
    pub name: String,
    pub endpoint: &'static str,
    pub signatures_per_request: usize,
    pub connections: usize,
    /// `None` for a closed loop.
    pub offered_req_per_s: Option<f64>,
    pub achieved_req_per_s: f64,
    pub achieved_sigs_per_s: f64,
    pub measured_s: f64,
    pub ok: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    /// Open loop: sends more than 1 ms after their due time (latency still counts from it).
    pub late_sends: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Process → cores used (1.0 = one core busy for the whole window).
    pub cpu_cores: BTreeMap<String, f64>,
    /// Process → CPU microseconds per successful request.
    pub cpu_us_per_request: BTreeMap<String, f64>,
    /// Share of the machine's cores that were busy.
    pub machine_busy: f64,
    /// Cores used by processes outside the stack and the load generator.
    pub other_cores: f64,
}

impl PointReport {
    pub fn new(name: impl Into<String>, mut outcome: Outcome, cpu: CpuUse) -> Self {
        let achieved = outcome.requests_per_s();
        let per_request = |cores: f64| if achieved > 0.0 { cores * 1e6 / achieved } else { f64::NAN };
        PointReport {
            name: name.into(),
            endpoint: outcome.workload.path(),
            signatures_per_request: outcome.workload.signatures(),
            connections: outcome.connections,
            offered_req_per_s: outcome.offered_per_s,
            achieved_req_per_s: achieved,
            achieved_sigs_per_s: outcome.signatures_per_s(),
            measured_s: outcome.measured.as_secs_f64(),
            ok: outcome.samples.ok,
            failed: outcome.samples.failed(),
            failures: outcome.samples.failures.clone(),
            late_sends: outcome.samples.late,
            p50_ms: outcome.samples.percentile(0.50).map(ms),
            p99_ms: outcome.samples.percentile(0.99).map(ms),
            max_ms: outcome.samples.max().map(ms),
            cpu_us_per_request: cpu.cores.iter().map(|(n, c)| (n.clone(), per_request(*c))).collect(),
            cpu_cores: cpu.cores.into_iter().collect(),
            machine_busy: cpu.machine_busy,
            other_cores: cpu.other_cores,
        }
    }

    pub fn is_batch(&self) -> bool {
        self.endpoint == Workload::Batch(0).path()
    }
}

/// Everything one run measured. The first fields are the keys issue 5 asks for.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub raw_ecdsa_per_s: f64,
    pub raw_bip340_per_s: f64,
    pub e2e_single_per_s: f64,
    pub e2e_batch_sigs_per_s: f64,
    pub ratio_batch_to_raw: f64,
    pub p50_ms_at_1000: Option<f64>,
    pub p99_ms_at_1000: Option<f64>,
    pub restart_to_ready_s: f64,
    pub gateway_peak_rss_mib: Option<f64>,
    pub enclave_peak_rss_mib: Option<f64>,

    pub ratio_single_to_raw: f64,
    pub p50_ms_at_200: Option<f64>,
    pub p99_ms_at_200: Option<f64>,
    pub p50_ms_at_5000: Option<f64>,
    pub p99_ms_at_5000: Option<f64>,
    pub batch_size: usize,
    pub batch_latency_size: usize,
    pub single_connections: usize,
    pub batch_connections: usize,
    pub open_loop_connections: usize,
    /// p99 of signing at 1,000 req/s while `/v1/attestation` is flooded (issue 9).
    pub p99_ms_at_1000_attestation_flood: Option<f64>,
    /// That p99 over the quiet one (`p99_ms_at_1000`), measured in the same run.
    pub ratio_p99_flood_to_quiet: Option<f64>,
    /// Attestation requests per second offered during the flood.
    pub attestation_flood_offered_per_s: f64,
    /// What the flood got back.
    pub attestation_flood: crate::flood::FloodOutcome,
    /// Every restart measured, with its milestones; `restart_to_ready_s` is the median.
    pub restart_runs: Vec<RestartRun>,
    /// The enclave started by the restarts, at the end of the run.
    pub restarted_enclave_peak_rss_mib: Option<f64>,
    pub load_generator: String,
    pub warmup_s: f64,
    pub measure_s: f64,
    /// Builds seen running during the run; when not empty the numbers are not comparable.
    pub competing_builds: Vec<String>,
    /// Share of the machine busy during one idle second before the run (nothing of ours
    /// running): above a few percent, something else competes for the cores.
    pub machine_busy_before: f64,
    /// Cores each process used over two seconds without load.
    pub idle_cpu_cores: BTreeMap<String, f64>,
    pub cpus: usize,
    /// Issue 10's keys (top level in the JSON).
    #[serde(flatten)]
    pub keyring: KeyringSummary,
    /// Issue 11's keys (top level in the JSON).
    #[serde(flatten)]
    pub crypt: crate::crypt::CryptSummary,
    /// Issue 12's keys (top level in the JSON).
    #[serde(flatten)]
    pub authz: crate::authz::AuthzSummary,
    /// Issue 13's keys (top level in the JSON).
    #[serde(flatten)]
    pub tls: crate::tls::TlsSummary,
    /// Issue 14's keys (top level in the JSON).
    #[serde(flatten)]
    pub fleet: crate::fleet::FleetSummary,
    pub points: Vec<PointReport>,
    pub targets: Vec<Target>,
}

/// One target of an issue.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub goal: &'static str,
    pub measured: String,
    pub met: bool,
}

impl Summary {
    /// The keys issue 5 requires as numbers that this run could not measure.
    pub fn missing_required(&self) -> Vec<&'static str> {
        [
            ("p50_ms_at_1000", self.p50_ms_at_1000),
            ("p99_ms_at_1000", self.p99_ms_at_1000),
            ("gateway_peak_rss_mib", self.gateway_peak_rss_mib),
            ("enclave_peak_rss_mib", self.enclave_peak_rss_mib),
            ("p99_ms_at_1000_attestation_flood", self.p99_ms_at_1000_attestation_flood),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.is_none().then_some(key))
        .chain(self.keyring.missing())
        .collect()
    }

    /// Fills `targets` from the measurements.
    pub fn judge(&mut self) {
        let single_1000_failed = self.point("single open 1000").map_or(1, |p| p.failed);
        let flooded_failed = self.point("single open 1000 + attestation flood").map_or(1, |p| p.failed);
        self.targets = vec![
            Target {
                name: "batched end-to-end vs raw",
                goal: "≥ 0.5 × raw single-core ECDSA",
                measured: format!("{:.2} ×", self.ratio_batch_to_raw),
                met: self.ratio_batch_to_raw >= 0.5,
            },
            Target {
                name: "single-signature throughput",
                goal: "≥ 5,000 req/s",
                measured: format!("{:.0} req/s", self.e2e_single_per_s),
                met: self.e2e_single_per_s >= 5000.0,
            },
            Target {
                name: "p99 at 1,000 req/s",
                goal: "≤ 5 ms, no failures",
                measured: format!(
                    "{} ({single_1000_failed} failed)",
                    self.p99_ms_at_1000.map_or("-".into(), |v| format!("{v:.2} ms"))
                ),
                met: self.p99_ms_at_1000.is_some_and(|v| v <= 5.0) && single_1000_failed == 0,
            },
            Target {
                name: "p99 at 1,000 req/s, /v1/attestation flooded",
                goal: "≤ 5 ms, no failures (issue 9: unchanged by the flood)",
                measured: format!(
                    "{} ({flooded_failed} failed; {} × quiet)",
                    self.p99_ms_at_1000_attestation_flood.map_or("-".into(), |v| format!("{v:.2} ms")),
                    self.ratio_p99_flood_to_quiet.map_or("-".into(), |v| format!("{v:.2}")),
                ),
                met: self.p99_ms_at_1000_attestation_flood.is_some_and(|v| v <= 5.0) && flooded_failed == 0,
            },
            Target {
                name: "restart to ready",
                goal: "≤ 1 s (median)",
                measured: format!("{:.3} s", self.restart_to_ready_s),
                met: self.restart_to_ready_s <= 1.0,
            },
            Target {
                name: "enclave peak RSS",
                goal: "≤ 32 MiB",
                measured: self.enclave_peak_rss_mib.map_or("-".into(), |v| format!("{v:.1} MiB")),
                met: self.enclave_peak_rss_mib.is_some_and(|v| v <= 32.0),
            },
        ];
        self.targets.extend(self.keyring.targets(&self.points));
        self.targets.extend(self.crypt.targets(&self.points));
        self.targets.extend(self.authz.targets(&self.points));
        self.targets.extend(self.tls.targets(&self.points));
        self.targets.extend(self.fleet.targets(&self.points));
    }

    pub fn point(&self, name: &str) -> Option<&PointReport> {
        self.points.iter().find(|p| p.name == name)
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
        let _ =
            writeln!(out, "raw, one core: ECDSA {:.0}/s, BIP340 {:.0}/s", self.raw_ecdsa_per_s, self.raw_bip340_per_s);
        let _ = writeln!(
            out,
            "\n{:<20} {:>5} {:>5} {:>8} {:>9} {:>9} {:>7} {:>6} {:>6} {:>8} {:>8} {:>8}  {CPU_HEADER}",
            "point", "sigs", "conns", "offered", "req/s", "sigs/s", "ok", "fail", "late", "p50 ms", "p99 ms", "max ms",
        );
        for p in &self.points {
            let cpu = |name: &str| p.cpu_us_per_request.get(name).map_or("-".to_owned(), |v| format!("{v:.0}"));
            let _ = writeln!(
                out,
                "{:<20} {:>5} {:>5} {:>8} {:>9.0} {:>9.0} {:>7} {:>6} {:>6} {:>8} {:>8} {:>8}  {}/{}/{}; {:.0}%; {:.2}",
                p.name,
                p.signatures_per_request,
                p.connections,
                p.offered_req_per_s.map_or("closed".to_owned(), |r| format!("{r:.0}")),
                p.achieved_req_per_s,
                p.achieved_sigs_per_s,
                p.ok,
                p.failed,
                p.late_sends,
                opt(p.p50_ms),
                opt(p.p99_ms),
                opt(p.max_ms),
                cpu("gateway"),
                cpu("enclave"),
                cpu("loadgen"),
                p.machine_busy * 100.0,
                p.other_cores,
            );
            for (kind, count) in &p.failures {
                let _ = writeln!(out, "{:<20}   failed: {count} × {kind}", "");
            }
        }
        let _ = writeln!(out, "\nrestart to ready: {:.3} s median", self.restart_to_ready_s);
        let opt_s = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
        for run in &self.restart_runs {
            let _ = writeln!(
                out,
                "  ready after {:.3} s: enclave listening {} s, gateway reconnected {} s, key unsealed {} s",
                run.ready_s,
                opt_s(run.listening_s),
                opt_s(run.connected_s),
                opt_s(run.unsealed_s),
            );
        }
        let _ = writeln!(
            out,
            "peak RSS: gateway {} MiB, enclave {} MiB (restarted enclave {} MiB)",
            opt(self.gateway_peak_rss_mib),
            opt(self.enclave_peak_rss_mib),
            opt(self.restarted_enclave_peak_rss_mib),
        );
        let k = &self.keyring;
        let _ = writeln!(
            out,
            "keyring: {} keys stored, created at {:.0}/s (batches of {}, {} at once); enclave peak RSS {} MiB, gateway {} MiB",
            k.keys_in_store,
            k.key_create_per_s,
            k.key_create_batch,
            k.key_create_connections,
            opt(k.enclave_peak_rss_mib_multikey),
            opt(k.gateway_peak_rss_mib_multikey),
        );
        let c = &self.crypt;
        let _ = writeln!(
            out,
            "encryption: raw AES-256-GCM {:.0} MiB/s on one core; {:.0} MiB/s end to end with {} KiB binary payloads, {:.0} MiB/s in JSON ({} connections); {:.0} data keys/s ({} connections); 1 GiB streamed at {} MiB/s",
            c.raw_aes_gcm_mib_per_s,
            c.encrypt_mib_per_s,
            c.encrypt_payload_bytes / 1024,
            c.encrypt_json_mib_per_s,
            c.encrypt_connections,
            c.datakey_per_s,
            c.datakey_connections,
            opt(c.stream_encrypt_mib_per_s),
        );
        let idle: Vec<String> = self.idle_cpu_cores.iter().map(|(n, c)| format!("{n} {:.3}", c)).collect();
        let _ = writeln!(out, "CPU without load (cores): {}", idle.join(", "));
        let _ = writeln!(out, "load generator: {}", self.load_generator);
        let _ = writeln!(out, "\n{:<30} {:<32} {:<24} result", "target", "goal", "measured");
        for t in &self.targets {
            let _ = writeln!(
                out,
                "{:<30} {:<32} {:<24} {}",
                t.name,
                t.goal,
                t.measured,
                if t.met { "met" } else { "MISSED" }
            );
        }
        if self.machine_busy_before > 0.1 {
            let _ = writeln!(
                out,
                "\nWARNING: the machine was {:.0}% busy before the run started; these numbers are not comparable",
                self.machine_busy_before * 100.0
            );
        }
        if !self.competing_builds.is_empty() {
            let _ = writeln!(
                out,
                "\nWARNING: builds ran during the measurement ({}); these numbers are not comparable, run again",
                self.competing_builds.join(", ")
            );
        }
        out
    }
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
