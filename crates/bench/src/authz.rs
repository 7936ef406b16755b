//! Authorization's part of the summary (issue 12): signing with one keyring key through
//! `POST /v1/keys/{name}/sign` when the enclave has an owner and every request carries the
//! owner's signature, checked in the enclave and appended to the audit chain, against the same
//! endpoint without authorization (`singlekey_sign_per_s`, measured earlier in the same run).
//! The CPU per request of the two points shows what verification and the audit append cost.
//! Flattened into `summary.json` at the top level.

use serde::Serialize;

use crate::report::{PointReport, Target};

/// Point name.
pub const SIGNED_KEY_POINT: &str = "key single signed closed";

#[derive(Debug, Clone, Serialize)]
pub struct AuthzSummary {
    /// Signed requests per second through the whole path (gateway, enclave check, audit).
    pub authz_sign_per_s: f64,
    pub ratio_authz_to_singlekey: f64,
    pub authz_sign_connections: usize,
    /// Enclave CPU µs per request, signed and unsigned: the difference is the check and the
    /// audit append.
    pub authz_enclave_cpu_us_per_request: Option<f64>,
    pub singlekey_enclave_cpu_us_per_request: Option<f64>,
}

impl AuthzSummary {
    pub fn new(points: &[PointReport], singlekey_sign_per_s: f64, connections: usize) -> Self {
        let point = |name: &str| points.iter().find(|p| p.name == name);
        let cpu = |name: &str| point(name).and_then(|p| p.cpu_us_per_request.get("enclave").copied());
        let authz_sign_per_s = point(SIGNED_KEY_POINT).map_or(0.0, |p| p.achieved_req_per_s);
        AuthzSummary {
            authz_sign_per_s,
            ratio_authz_to_singlekey: authz_sign_per_s / singlekey_sign_per_s,
            authz_sign_connections: connections,
            authz_enclave_cpu_us_per_request: cpu(SIGNED_KEY_POINT),
            singlekey_enclave_cpu_us_per_request: cpu(crate::keyring::SINGLE_KEY_POINT),
        }
    }

    /// Issue 12's target.
    pub fn targets(&self, points: &[PointReport]) -> Vec<Target> {
        let failed = points.iter().find(|p| p.name == SIGNED_KEY_POINT).map_or(1, |p| p.failed);
        vec![Target {
            name: "signed requests vs unsigned, one key",
            goal: "≥ 0.4 × (no failures)",
            measured: format!(
                "{:.2} × ({:.0}/s; {failed} failed)",
                self.ratio_authz_to_singlekey, self.authz_sign_per_s
            ),
            met: self.ratio_authz_to_singlekey >= 0.4 && failed == 0,
        }]
    }
}
