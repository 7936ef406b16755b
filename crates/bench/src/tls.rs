//! The enclave's TLS API's part of the summary (issue 13): signing with one keyring key
//! through `POST /v1/keys/{name}/sign` over kept-alive TLS connections that end in the
//! enclave (the gateway passes them through; rows come through its store service), against
//! the same requests on the gateway's plain API (`singlekey_sign_per_s`, same run); and full
//! handshakes per second. Flattened into `summary.json` at the top level.

use serde::Serialize;

use crate::report::{PointReport, Target};

/// Point name.
pub const TLS_KEY_POINT: &str = "key single enclave-tls closed";

#[derive(Debug, Clone, Serialize)]
pub struct TlsSummary {
    /// Requests per second over the enclave's TLS API.
    pub enclave_tls_sign_per_s: f64,
    pub ratio_enclave_tls_to_singlekey: f64,
    pub enclave_tls_connections: usize,
    /// Full handshakes (no resumption), each with one request after it, per second.
    pub enclave_tls_handshakes_per_s: f64,
    pub enclave_tls_handshakes_failed: u64,
    /// Enclave CPU µs per request over TLS (TLS, HTTP and the API now run in the enclave).
    pub enclave_tls_enclave_cpu_us_per_request: Option<f64>,
}

impl TlsSummary {
    pub fn new(
        points: &[PointReport],
        singlekey_sign_per_s: f64,
        connections: usize,
        (handshakes_per_s, handshakes_failed): (f64, u64),
    ) -> Self {
        let point = points.iter().find(|p| p.name == TLS_KEY_POINT);
        let rate = point.map_or(0.0, |p| p.achieved_req_per_s);
        TlsSummary {
            enclave_tls_sign_per_s: rate,
            ratio_enclave_tls_to_singlekey: rate / singlekey_sign_per_s,
            enclave_tls_connections: connections,
            enclave_tls_handshakes_per_s: handshakes_per_s,
            enclave_tls_handshakes_failed: handshakes_failed,
            enclave_tls_enclave_cpu_us_per_request: point.and_then(|p| p.cpu_us_per_request.get("enclave").copied()),
        }
    }

    /// Issue 13's target.
    pub fn targets(&self, points: &[PointReport]) -> Vec<Target> {
        let failed = points.iter().find(|p| p.name == TLS_KEY_POINT).map_or(1, |p| p.failed);
        vec![Target {
            name: "one key over the enclave's TLS vs the plain API",
            goal: "≥ 0.7 × (no failures)",
            measured: format!(
                "{:.2} × ({:.0}/s; {failed} failed)",
                self.ratio_enclave_tls_to_singlekey, self.enclave_tls_sign_per_s
            ),
            met: self.ratio_enclave_tls_to_singlekey >= 0.7 && failed == 0,
        }]
    }
}
