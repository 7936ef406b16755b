//! Encryption's part of the summary (issue 11): AES-256-GCM on one core in this process (the
//! physical limit), encryption of 1 MiB payloads end to end through
//! `POST /v1/keys/{name}/encrypt` (JSON, base64 both ways), data keys per second, and 1 GiB
//! streamed through the same endpoint with the memory it took.
//! Flattened into `summary.json` at the top level.

use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use serde::Serialize;

use crate::report::{PointReport, Target};

/// Point names.
pub const ENCRYPT_POINT: &str = "encrypt 1 MiB binary closed";
pub const ENCRYPT_JSON_POINT: &str = "encrypt 1 MiB json closed";
pub const DATAKEY_POINT: &str = "datakey closed";
/// Plaintext of each encryption request.
pub const ENCRYPT_PAYLOAD: usize = 1 << 20;

const MIB: f64 = (1 << 20) as f64;

#[derive(Debug, Clone, Serialize)]
pub struct CryptSummary {
    /// AES-256-GCM sealing of 1 MiB buffers on one thread, no I/O (aws-lc-rs, as the enclave).
    pub raw_aes_gcm_mib_per_s: f64,
    /// Plaintext MiB per second through `POST /v1/keys/{name}/encrypt` with 1 MiB binary
    /// bodies (`application/octet-stream`, answered with the ciphertext as it is sealed).
    pub encrypt_mib_per_s: f64,
    /// The same with JSON bodies (base64 both ways).
    pub encrypt_json_mib_per_s: f64,
    pub ratio_encrypt_to_raw: f64,
    pub encrypt_payload_bytes: usize,
    pub encrypt_connections: usize,
    /// `POST /v1/keys/{name}/datakey` (aes-256, with its plaintext) per second.
    pub datakey_per_s: f64,
    pub datakey_connections: usize,
    /// 1 GiB streamed through `POST /v1/keys/{name}/encrypt` (`application/octet-stream`),
    /// plaintext MiB/s.
    pub stream_encrypt_mib_per_s: Option<f64>,
    /// Peak RSS of the gateway and the enclave, started afresh for the stream.
    pub stream_1gib_gateway_peak_rss_mib: Option<f64>,
    pub stream_1gib_enclave_peak_rss_mib: Option<f64>,
}

/// MiB per second of AES-256-GCM over `buffer_len` buffers on the calling thread, after a
/// warm-up.
pub fn raw_aes_gcm_mib_per_s(buffer_len: usize, warmup: Duration, measure: Duration) -> f64 {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap_or_else(|_| unreachable!()));
    let mut buffer = vec![0x5au8; buffer_len];
    let mut counter = 0u64;
    let mut seal = |buffer: &mut [u8]| {
        counter += 1;
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&counter.to_le_bytes());
        let tag = key.seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(b"aad"), buffer);
        std::hint::black_box(tag.is_ok());
    };
    let start = Instant::now();
    while start.elapsed() < warmup {
        seal(&mut buffer);
    }
    let (start, mut sealed) = (Instant::now(), 0u64);
    while start.elapsed() < measure {
        seal(&mut buffer);
        sealed += 1;
    }
    sealed as f64 * buffer_len as f64 / MIB / start.elapsed().as_secs_f64()
}

impl CryptSummary {
    /// From the raw rate and the two points.
    pub fn new(raw_aes_gcm_mib_per_s: f64, points: &[PointReport]) -> Self {
        let point = |name: &str| points.iter().find(|p| p.name == name);
        let encrypt = point(ENCRYPT_POINT);
        let mib_per_s =
            |point: Option<&PointReport>| point.map_or(0.0, |p| p.achieved_req_per_s * ENCRYPT_PAYLOAD as f64 / MIB);
        let encrypt_mib_per_s = mib_per_s(encrypt);
        CryptSummary {
            raw_aes_gcm_mib_per_s,
            encrypt_mib_per_s,
            encrypt_json_mib_per_s: mib_per_s(point(ENCRYPT_JSON_POINT)),
            ratio_encrypt_to_raw: encrypt_mib_per_s / raw_aes_gcm_mib_per_s,
            encrypt_payload_bytes: ENCRYPT_PAYLOAD,
            encrypt_connections: encrypt.map_or(0, |p| p.connections),
            datakey_per_s: point(DATAKEY_POINT).map_or(0.0, |p| p.achieved_req_per_s),
            datakey_connections: point(DATAKEY_POINT).map_or(0, |p| p.connections),
            stream_encrypt_mib_per_s: None,
            stream_1gib_gateway_peak_rss_mib: None,
            stream_1gib_enclave_peak_rss_mib: None,
        }
    }

    /// Issue 11's targets.
    pub fn targets(&self, points: &[PointReport]) -> Vec<Target> {
        let failed = |name: &str| points.iter().find(|p| p.name == name).map_or(1, |p| p.failed);
        vec![
            Target {
                name: "encrypt 1 MiB (binary) vs raw AES-GCM",
                goal: "≥ 0.2 × (no failures)",
                measured: format!(
                    "{:.2} × ({:.0} vs {:.0} MiB/s; {} failed)",
                    self.ratio_encrypt_to_raw,
                    self.encrypt_mib_per_s,
                    self.raw_aes_gcm_mib_per_s,
                    failed(ENCRYPT_POINT)
                ),
                met: self.ratio_encrypt_to_raw >= 0.2 && failed(ENCRYPT_POINT) == 0,
            },
            Target {
                name: "data keys",
                goal: "≥ 10,000/s (no failures)",
                measured: format!("{:.0}/s ({} failed)", self.datakey_per_s, failed(DATAKEY_POINT)),
                met: self.datakey_per_s >= 10_000.0 && failed(DATAKEY_POINT) == 0,
            },
            Target {
                name: "stream 1 GiB, peak RSS",
                goal: "≤ 64 MiB gateway and enclave",
                measured: format!(
                    "gateway {}, enclave {} MiB",
                    self.stream_1gib_gateway_peak_rss_mib.map_or("-".into(), |v| format!("{v:.1}")),
                    self.stream_1gib_enclave_peak_rss_mib.map_or("-".into(), |v| format!("{v:.1}"))
                ),
                met: self.stream_1gib_gateway_peak_rss_mib.is_some_and(|v| v <= 64.0)
                    && self.stream_1gib_enclave_peak_rss_mib.is_some_and(|v| v <= 64.0),
            },
        ]
    }
}
